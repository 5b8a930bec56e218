"""veille's state: SQLAlchemy Core schema, Alembic migrations, and the Store that uses them.

SQLite (the default, one file, WAL) or PostgreSQL (several instances); the same SQL runs on
both. Only this package imports SQLAlchemy and maps its errors to bot.errors.StoreError.
"""

from .store import AlertRow, ClaimResult, FeedState, FetchRecord, PruneResult, Store

__all__ = ["AlertRow", "ClaimResult", "FeedState", "FetchRecord", "PruneResult", "Store"]
