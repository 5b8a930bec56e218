"""Watching the watch: the conditions told to the operators (failing or silent feeds, quiet
topics), one row each while it lasts and until its end is told.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# A frozen copy of the type in bot/store/schema.py: a migration never imports the app.
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "watch_conditions",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("usual_seconds", sa.Float),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("raised_at", TS, nullable=False),
        sa.Column("told_at", TS),
        sa.Column("cleared_at", TS),
        sa.Column("lease_until", TS),
        sa.PrimaryKeyConstraint("key", name="pk_watch_conditions"),
        sa.CheckConstraint("kind IN ('feed_failing', 'feed_silent', 'topic_quiet')",
                           name="ck_watch_conditions_kind"),
    )


def downgrade() -> None:
    op.drop_table("watch_conditions")
