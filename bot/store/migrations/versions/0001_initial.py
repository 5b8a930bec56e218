"""Initial state: feeds, items, matches, alerts (the outbox).

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types in bot/store/schema.py: a migration never imports the app.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("id", ID, primary_key=True),
        sa.Column("declared_url", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("body_hash", sa.Text),
        sa.Column("last_poll_at", TS),
        sa.Column("last_success_at", TS),
        sa.Column("first_success_at", TS),
        sa.Column("next_poll_at", TS),
        sa.Column("error_streak", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("last_status", sa.Integer),
        sa.Column("polls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("items_total", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_feeds"),
        sa.UniqueConstraint("declared_url", name="uq_feeds_declared_url"),
    )
    op.create_table(
        "items",
        sa.Column("id", ID, primary_key=True),
        sa.Column("feed_id", ID, nullable=False),
        sa.Column("guid", sa.Text, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("title_fp", sa.Text),
        sa.Column("source_key", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("link", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("lang", sa.Text),
        sa.Column("author", sa.Text),
        sa.Column("published", TS),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_items"),
        sa.ForeignKeyConstraint(["feed_id"], ["feeds.id"], name="fk_items_feed_id_feeds"),
        sa.UniqueConstraint("feed_id", "guid", name="uq_items_feed_id_guid"),
        sa.UniqueConstraint("url", name="uq_items_url"),
        sa.UniqueConstraint("source_key", "title_fp", name="uq_items_source_key_title_fp"),
    )
    op.create_index("ix_items_first_seen_at", "items", ["first_seen_at"])
    op.create_index("ix_items_last_seen_at", "items", ["last_seen_at"])
    op.create_table(
        "matches",
        sa.Column("item_id", ID, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("terms", sa.Text, nullable=False),
        sa.Column("hits", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("item_id", "topic", name="pk_matches"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_matches_item_id_items"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("item_id", ID, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("story_id", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("message_id", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], name="fk_alerts_item_id_items"),
        sa.UniqueConstraint(
            "destination", "topic", "item_id", name="uq_alerts_destination_topic_item_id"
        ),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_alerts_status"),
    )
    op.create_index("ix_alerts_item_id", "alerts", ["item_id"])
    op.create_index("ix_alerts_created_at", "alerts", ["created_at"])
    op.create_index("ix_alerts_status_next_attempt_at", "alerts", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("matches")
    op.drop_table("items")
    op.drop_table("feeds")
