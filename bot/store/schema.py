"""The state tables, as SQLAlchemy Core metadata (migrations/ creates them; this is for queries).

Keep this file and the latest migration in step: tests/test_store.py compares the two.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Deterministic constraint names, identical on SQLite and PostgreSQL, so migrations can name them.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY aliases the rowid.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ALERT_STATUSES = ("pending", "sent", "failed")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back tz-aware (SQLite keeps no zone).

    A naive datetime is taken to be UTC already, as everywhere else in veille.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = _as_utc(value)
        # SQLite compares timestamps as text: store one zone, one format, no offset.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else _as_utc(value)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


metadata = sa.MetaData(naming_convention=NAMING)

feeds = sa.Table(
    "feeds",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("declared_url", sa.Text, nullable=False, unique=True),
    sa.Column("url", sa.Text, nullable=False),  # current fetch URL (follows permanent redirects)
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("body_hash", sa.Text),
    sa.Column("last_poll_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("first_success_at", UTCDateTime),  # NULL until the first successful parse
    sa.Column("next_poll_at", UTCDateTime),
    sa.Column("error_streak", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("last_status", sa.Integer),
    sa.Column("polls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("items_total", sa.Integer, nullable=False, server_default="0"),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("feed_id", ID, sa.ForeignKey("feeds.id"), nullable=False),
    sa.Column("guid", sa.Text, nullable=False),
    sa.Column("url", sa.Text),  # canonical; NULL when the item has none
    sa.Column("title_fp", sa.Text),  # NULL when the item has no title nor summary
    sa.Column("source_key", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("link", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("lang", sa.Text),
    sa.Column("author", sa.Text),
    sa.Column("published", UTCDateTime),
    sa.Column("first_seen_at", UTCDateTime, nullable=False, index=True),
    sa.Column("last_seen_at", UTCDateTime, nullable=False, index=True),
    sa.UniqueConstraint("feed_id", "guid"),
    sa.UniqueConstraint("url"),
    sa.UniqueConstraint("source_key", "title_fp"),
)

matches = sa.Table(
    "matches",
    metadata,
    sa.Column("item_id", ID, sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("terms", sa.Text, nullable=False),  # JSON list of matched texts
    sa.Column("hits", sa.Text, nullable=False),  # JSON list of {term, field, start, end, text}
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("item_id", ID, sa.ForeignKey("items.id"), nullable=False, index=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("destination", sa.Text, nullable=False),
    sa.Column("story_id", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("message_id", sa.Text),
    sa.UniqueConstraint("destination", "topic", "item_id"),
    sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="status"),
    sa.Index(None, "status", "next_attempt_at"),
)

# ---------------------------------------------------------------- Telegram (migration 0002)

SUBSCRIBER_KINDS = ("private", "group", "supergroup", "channel")
DELIVERY_STATUSES = ("pending", "digest", "sent", "failed", "dropped")

# One row per chat that talks to the bot (a person, a group, a channel that added it).
subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("title", sa.Text),  # a group's title or a person's first name, for operators
    sa.Column("user_lang", sa.Text),  # Telegram's language_code of the last user seen
    sa.Column("lang", sa.Text),  # set by /lang; NULL: follow user_lang
    sa.Column("tz", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("mode", sa.String(16), nullable=False, server_default="instant"),
    sa.Column("digest_every", sa.String(16), nullable=False, server_default="daily"),
    sa.Column("digest_at", sa.String(5), nullable=False, server_default="08:00"),
    sa.Column("quiet_start", sa.String(5)),
    sa.Column("quiet_end", sa.String(5)),
    sa.Column("paused_until", UTCDateTime),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("inactive_reason", sa.Text),
    sa.Column("dropped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_digest_at", UTCDateTime),
    sa.CheckConstraint("kind IN ('private', 'group', 'supergroup', 'channel')", name="kind"),
    sa.CheckConstraint("mode IN ('instant', 'digest')", name="mode"),
    sa.CheckConstraint("digest_every IN ('hourly', 'daily')", name="digest_every"),
)

# A chat follows a topic from created_at on (older alerts come through /latest).
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("muted_until", UTCDateTime),
    sa.Index(None, "topic"),
)

# One row per (alert, chat): a subscriber's private chat or group, or a destination chat that
# the watchlist names (chat is the numeric id as text, or "@channel"; thread 0: no forum topic).
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("alert_id", ID, sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("chat", sa.Text, nullable=False),
    sa.Column("thread", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("kind", sa.String(16), nullable=False),  # subscriber | destination
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("message_id", sa.BigInteger),
    sa.Column("silent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("edited_at", UTCDateTime),  # last "also: …" edit of the sent message
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("alert_id", "chat", "thread"),
    sa.CheckConstraint(
        "status IN ('pending', 'digest', 'sent', 'failed', 'dropped')", name="status"),
    sa.CheckConstraint("kind IN ('subscriber', 'destination')", name="kind"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "chat", "status"),
)

# A group that Telegram upgraded to a supergroup: destinations named by the old id follow it.
chat_moves = sa.Table(
    "chat_moves",
    metadata,
    sa.Column("old_chat", sa.Text, primary_key=True),
    sa.Column("new_chat", sa.Text, nullable=False),
    sa.Column("moved_at", UTCDateTime, nullable=False),
)

# ---------------------------------------------------------------- stories (migration 0003)

STORY_HOWS = ("first", "url", "copy", "report")

# One row per story of a topic: opened by the first matched item that no open story took.
stories = sa.Table(
    "stories",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),  # the first item's article URL, else "item:<id>"
    sa.Column("item_id", ID, nullable=False),  # the first item (no FK: items are pruned apart)
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # the first item's outlet
    sa.Column("lang", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),  # when an item last joined it
    sa.Column("item_count", sa.Integer, nullable=False, server_default="1"),
    # the summary made when the story opened from the article's text or by the LLM (NULL:
    # the feed's text is summarised when rendering); origin: article | llm
    sa.Column("summary", sa.Text),
    sa.Column("summary_origin", sa.String(8)),
    sa.UniqueConstraint("topic", "key"),
    sa.Index(None, "topic", "created_at"),
    sa.Index(None, "updated_at"),
)

# Which story each matched item joined, and why (one row per item and topic).
story_items = sa.Table(
    "story_items",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("story_id", ID, sa.ForeignKey("stories.id"), nullable=False, index=True),
    sa.Column("item_id", ID, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("how", sa.String(8), nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # the outlet (behind a news search's link)
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("joined_at", UTCDateTime, nullable=False, index=True),
    sa.UniqueConstraint("item_id", "topic"),
    sa.CheckConstraint("how IN ('first', 'url', 'copy', 'report')", name="how"),
)

# Coverage surges detected (the surge alert is an outbox row of topic "surge:<topic>").
surges = sa.Table(
    "surges",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("detected_at", UTCDateTime, nullable=False),
    sa.Column("until", UTCDateTime, nullable=False),  # the end of its cool-down
    sa.Column("recent", sa.Integer, nullable=False),  # new stories in the recent window
    sa.Column("baseline", sa.Float, nullable=False),  # the usual number in such a window
    sa.Column("stories", sa.Text, nullable=False),  # JSON: [{story, title, url, source, outlets}]
    sa.Index(None, "topic", "detected_at"),
)

# One alert per (destination, topic, story): the outbox's own guard against a story alerted twice.
sa.Index("uq_alerts_destination_topic_story_id", alerts.c.destination, alerts.c.topic,
         alerts.c.story_id, unique=True)

# ---------------------------------------------------------------- watching the watch (0004)

WATCH_KINDS = ("feed_failing", "feed_silent", "topic_quiet")

# One row per condition told to the operators (bot/watch.py), from the moment it is found
# until its end has been told: the primary key is the guard that makes two instances (or a
# restart) tell it once. A notice is sent by whoever leases the row (lease_until).
watch_conditions = sa.Table(
    "watch_conditions",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),  # "<kind>:<feed URL or topic id>"
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("since", UTCDateTime, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("usual_seconds", sa.Float),
    sa.Column("count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("raised_at", UTCDateTime, nullable=False),
    sa.Column("told_at", UTCDateTime),  # the notice that it began was sent
    sa.Column("cleared_at", UTCDateTime),  # it ended: the notice of its end is due
    sa.Column("lease_until", UTCDateTime),  # a notice is being sent by one instance until then
    sa.CheckConstraint("kind IN ('feed_failing', 'feed_silent', 'topic_quiet')", name="kind"),
)

# Several instances on PostgreSQL (bot/queue.py): the procrastinate worker each `veille run`
# registered, by its name (host:pid), for `veille workers`. procrastinate's own tables
# (procrastinate_*) are its schema, applied by migration 0005, not described here.
instances = sa.Table(
    "instances",
    metadata,
    sa.Column("worker_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
)


def ours(name: str | None, type_: str) -> bool:
    """Whether a database object is described here (alembic's include_name filter)."""
    return type_ != "table" or not (name or "").startswith("procrastinate_")
