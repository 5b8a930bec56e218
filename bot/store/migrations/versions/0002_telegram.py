"""Telegram: subscribers, their topic subscriptions, per-chat deliveries, moved chats.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the types in bot/store/schema.py: a migration never imports the app.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("chat_id", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.Text),
        sa.Column("user_lang", sa.Text),
        sa.Column("lang", sa.Text),
        sa.Column("tz", sa.Text, nullable=False, server_default="UTC"),
        sa.Column("mode", sa.String(16), nullable=False, server_default="instant"),
        sa.Column("digest_every", sa.String(16), nullable=False, server_default="daily"),
        sa.Column("digest_at", sa.String(5), nullable=False, server_default="08:00"),
        sa.Column("quiet_start", sa.String(5)),
        sa.Column("quiet_end", sa.String(5)),
        sa.Column("paused_until", TS),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("inactive_reason", sa.Text),
        sa.Column("dropped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_digest_at", TS),
        sa.PrimaryKeyConstraint("chat_id", name="pk_subscribers"),
        sa.CheckConstraint("kind IN ('private', 'group', 'supergroup', 'channel')",
                           name="ck_subscribers_kind"),
        sa.CheckConstraint("mode IN ('instant', 'digest')", name="ck_subscribers_mode"),
        sa.CheckConstraint("digest_every IN ('hourly', 'daily')",
                           name="ck_subscribers_digest_every"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("chat_id", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("muted_until", TS),
        sa.PrimaryKeyConstraint("chat_id", "topic", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_topic", "subscriptions", ["topic"])
    op.create_table(
        "deliveries",
        sa.Column("id", ID, primary_key=True),
        sa.Column("alert_id", ID, nullable=False),
        sa.Column("chat", sa.Text, nullable=False),
        sa.Column("thread", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("message_id", sa.BigInteger),
        sa.Column("silent", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("edited_at", TS),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name="fk_deliveries_alert_id_alerts"),
        sa.UniqueConstraint("alert_id", "chat", "thread", name="uq_deliveries_alert_id_chat_thread"),
        sa.CheckConstraint("status IN ('pending', 'digest', 'sent', 'failed', 'dropped')",
                           name="ck_deliveries_status"),
        sa.CheckConstraint("kind IN ('subscriber', 'destination')", name="ck_deliveries_kind"),
    )
    op.create_index("ix_deliveries_status_next_attempt_at", "deliveries",
                    ["status", "next_attempt_at"])
    op.create_index("ix_deliveries_chat_status", "deliveries", ["chat", "status"])
    op.create_table(
        "chat_moves",
        sa.Column("old_chat", sa.Text, nullable=False),
        sa.Column("new_chat", sa.Text, nullable=False),
        sa.Column("moved_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("old_chat", name="pk_chat_moves"),
    )


def downgrade() -> None:
    op.drop_table("chat_moves")
    op.drop_table("deliveries")
    op.drop_table("subscriptions")
    op.drop_table("subscribers")
