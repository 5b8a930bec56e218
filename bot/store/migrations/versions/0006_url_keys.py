"""Article keys without scheme or "www." differences: http:// and https://, a host with and
without a leading "www.", are one page (bot/stories.py canonical_url, since this release).
Rows stored before keep their old keys unless rewritten here, and a copy of one of them in the
other form would alert once more.

items.url (unique) and stories.key (unique per topic) are rewritten to the new form; when the
new form is already taken by another row, the item's key is cleared (NULL: that other row
stands for the article from now on) and the story keeps its old key (it joins nothing new
under it; the other story does).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BATCH = 1000


def new_key(url: str) -> str:
    """A frozen copy of canonical_url's final step (a migration never imports the app)."""
    if url.startswith("http://"):
        url = "https://" + url[7:]
    if url.startswith("https://www."):
        host = url[12:].split("/", 1)[0].split(":", 1)[0]
        if "." in host.strip("."):
            url = "https://" + url[12:]
    return url


def old(column: sa.ColumnElement) -> sa.ColumnElement:
    """Keys that may change: http:// ones, and https://www. ones."""
    return sa.or_(column.like("http://%"), column.like("https://www.%"))


def upgrade() -> None:
    bind = op.get_bind()
    items = sa.table("items", sa.column("id", sa.BigInteger), sa.column("url", sa.Text))
    stories = sa.table("stories", sa.column("id", sa.BigInteger), sa.column("topic", sa.Text),
                       sa.column("key", sa.Text))
    rows = bind.execute(sa.select(items.c.id, items.c.url).where(old(items.c.url))
                        .order_by(items.c.id)).all()
    for start in range(0, len(rows), _BATCH):
        chunk = rows[start:start + _BATCH]
        wanted = {r.id: new_key(r.url) for r in chunk if new_key(r.url) != r.url}
        taken = set(bind.scalars(sa.select(items.c.url).where(
            items.c.url.in_(set(wanted.values())))))
        for item_id, key in wanted.items():
            if key in taken:  # another row already is that article
                bind.execute(sa.update(items).where(items.c.id == item_id).values(url=None))
            else:
                bind.execute(sa.update(items).where(items.c.id == item_id).values(url=key))
                taken.add(key)
    rows = bind.execute(sa.select(stories.c.id, stories.c.topic, stories.c.key)
                        .where(old(stories.c.key))).all()
    for r in rows:
        key = new_key(r.key)
        if key == r.key:
            continue
        clash = bind.scalar(sa.select(stories.c.id).where(stories.c.topic == r.topic,
                                                          stories.c.key == key))
        if clash is None:
            bind.execute(sa.update(stories).where(stories.c.id == r.id).values(key=key))


def downgrade() -> None:
    """Nothing to undo: the old code reads the new keys as any other https URL."""
