"""Where instances live between moves: the `Store` interface and its implementations.

`open_store(url)` picks one from a URL:

* `memory:` — `MemoryStore`, for tests;
* `sqlite:///relative/path.db`, `sqlite:////absolute/path.db` (or a bare path
  ending in `.db`/`.sqlite`) — `SQLiteStore`, the embedded default; the query
  `?synchronous=FULL` sets SQLite's durability;
* `postgresql://...` — `PostgresStore` (`pip install genflow[postgres]`).

`open_store(url, readonly=True)` opens a store for reading only: it writes
nothing, creates nothing (a missing SQLite file is `StoreNotFoundError`, not a
new empty store), and refuses writes with `ReadOnlyStoreError`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any
from urllib.parse import parse_qsl

from genflow.errors import ArgumentError, GenflowError, StoreNotFoundError
from genflow.stores.base import InstanceRecord, JournalEntry, Store
from genflow.stores.memory import MemoryStore
from genflow.stores.sqlite import SQLiteStore, sqlite_path

__all__ = ["InstanceRecord", "JournalEntry", "MemoryStore", "SQLiteStore", "Store", "open_store"]


def open_store(url: str, *, readonly: bool = False) -> Store:
    """Open the store a URL names (read-only with `readonly`); a clear
    `GenflowError` for anything else (an `ArgumentError` for a URL that is not
    text or an option a store does not take). A path (`pathlib.Path`) is a
    SQLite file, as its text would be."""
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str):
        raise ArgumentError(f"a store URL is a str (memory:, sqlite:///path.db or "
                            f"postgresql://...), not {type(url).__name__} {url!r}")
    base, _, query = url.partition("?")
    options: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if base in ("memory:", "memory://"):
        _no_options(url, options)
        return MemoryStore(readonly=readonly)
    if base.startswith("sqlite:"):
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ArgumentError(f"unknown SQLite store option(s) {sorted(unknown)} in {url!r}: "
                                "the one option is ?synchronous=NORMAL or FULL")
        return SQLiteStore(sqlite_path(base), readonly=readonly, **options)
    if base.startswith(("postgresql:", "postgres:")):
        try:
            postgres = importlib.import_module("genflow.stores.postgres")
        except ImportError as exc:
            raise GenflowError(
                "the PostgreSQL store needs psycopg 3 and psycopg_pool: "
                f"pip install 'genflow[postgres]' ({exc})"
            ) from None
        return postgres.PostgresStore(url, readonly=readonly)
    if "://" not in base and base.endswith((".db", ".sqlite", ".sqlite3")):
        _no_options(url, options)
        return SQLiteStore(base, readonly=readonly)
    raise StoreNotFoundError(
        f"unknown store URL {url!r}: use memory:, sqlite:///path.db or postgresql://..."
    )


def _no_options(url: str, options: dict[str, Any]) -> None:
    if options:
        raise ArgumentError(f"store URL {url!r} takes no options: remove its '?...'")
