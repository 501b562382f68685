"""Shared fixtures: every store kind the suite can reach.

PostgreSQL joins the list when `GENFLOW_TEST_POSTGRES_DSN` names a database
(CI always sets it); without it, the PostgreSQL cases are skipped with a
visible reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from genflow.stores import MemoryStore, SQLiteStore, Store

POSTGRES_DSN = os.environ.get("GENFLOW_TEST_POSTGRES_DSN")
STORE_KINDS = ["memory", "sqlite", "postgres"]


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, tmp_path) -> Iterator[Callable[[], Store]]:
    """A factory of stores that share one database (two opens = two connections)."""
    opened: list[Store] = []
    path = tmp_path / "store.db"
    shared_memory: list[Store] = []
    schema = f"t_{uuid.uuid4().hex[:12]}"

    def make() -> Store:
        store: Store
        if store_kind == "memory":
            if not shared_memory:
                shared_memory.append(MemoryStore())
            return shared_memory[0]
        if store_kind == "sqlite":
            store = SQLiteStore(path)
        else:
            if not POSTGRES_DSN:
                pytest.skip("no PostgreSQL: set GENFLOW_TEST_POSTGRES_DSN to run these cases")
            from genflow.stores.postgres import PostgresStore

            store = PostgresStore(POSTGRES_DSN, schema=schema,
                                  drop_schema_on_close=not opened)
        opened.append(store)
        return store

    yield make
    for store in reversed(opened):
        store.close()
    for store in shared_memory:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()
