"""Storage: tables, queries and the SQLite / PostgreSQL differences."""

from engine.store.store import ConcurrentIngest, IngestWrite, Store

__all__ = ["ConcurrentIngest", "IngestWrite", "Store"]
