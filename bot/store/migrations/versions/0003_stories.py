"""Stories: stories of a topic, which story each matched item joined, coverage surges, and
one alert per (destination, topic, story).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of the types in bot/store/schema.py: a migration never imports the app.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stories",
        sa.Column("id", ID, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("item_id", ID, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("lang", sa.Text),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("item_count", sa.Integer, nullable=False, server_default="1"),
        sa.Column("summary", sa.Text),
        sa.Column("summary_origin", sa.String(8)),
        sa.PrimaryKeyConstraint("id", name="pk_stories"),
        sa.UniqueConstraint("topic", "key", name="uq_stories_topic_key"),
    )
    op.create_index("ix_stories_topic_created_at", "stories", ["topic", "created_at"])
    op.create_index("ix_stories_updated_at", "stories", ["updated_at"])
    op.create_table(
        "story_items",
        sa.Column("id", ID, primary_key=True),
        sa.Column("story_id", ID, nullable=False),
        sa.Column("item_id", ID, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("how", sa.String(8), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("joined_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_story_items"),
        sa.ForeignKeyConstraint(["story_id"], ["stories.id"],
                                name="fk_story_items_story_id_stories"),
        sa.UniqueConstraint("item_id", "topic", name="uq_story_items_item_id_topic"),
        sa.CheckConstraint("how IN ('first', 'url', 'copy', 'report')", name="ck_story_items_how"),
    )
    op.create_index("ix_story_items_story_id", "story_items", ["story_id"])
    op.create_index("ix_story_items_joined_at", "story_items", ["joined_at"])
    op.create_table(
        "surges",
        sa.Column("id", ID, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("detected_at", TS, nullable=False),
        sa.Column("until", TS, nullable=False),
        sa.Column("recent", sa.Integer, nullable=False),
        sa.Column("baseline", sa.Float, nullable=False),
        sa.Column("stories", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_surges"),
    )
    op.create_index("ix_surges_topic_detected_at", "surges", ["topic", "detected_at"])
    op.create_index("uq_alerts_destination_topic_story_id", "alerts",
                    ["destination", "topic", "story_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_alerts_destination_topic_story_id", table_name="alerts")
    op.drop_table("surges")
    op.drop_table("story_items")
    op.drop_table("stories")
