"""Several instances on PostgreSQL: procrastinate's job queue, and the names of the
instances running its workers (`veille workers`).

On PostgreSQL this applies the schema of the procrastinate release pinned in pyproject.toml
(read from the installed package: its SQL is not ours to copy). A later procrastinate release
that changes its schema comes with its own migration here, running the SQL migration files
it ships. SQLite has no queue: one instance polls and delivers by itself.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("worker_id", sa.BigInteger, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name="pk_instances"),
    )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    exists = bind.exec_driver_sql("SELECT to_regclass('procrastinate_jobs')").scalar()
    if exists is None:
        from procrastinate.schema import SchemaManager

        # the driver's own connection: the schema holds %, :: and $$ bodies that neither
        # SQLAlchemy's text() nor a parametrised execute may rewrite
        bind.connection.driver_connection.execute(SchemaManager.get_schema())


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(
            "DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, "
            "procrastinate_jobs, procrastinate_workers CASCADE")
    op.drop_table("instances")
