"""Alembic environment for veille's state database.

Store.open passes its open connection in `config.attributes["connection"]` and owns the
transaction (and the lock around it). From the alembic command line
(`alembic -c bot/store/alembic.ini ...`) the URL comes from -x url=..., sqlalchemy.url, or
VEILLE_DATABASE_URL.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from bot.store.schema import metadata, ours

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
        include_name=lambda name, type_, _parents: ours(name, type_),
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or config.get_main_option("sqlalchemy.url") or os.environ.get("VEILLE_DATABASE_URL")
    return url or "sqlite:///state/veille.db"


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(_url())
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
