"""Shared fixtures: every store kind the suite can reach.

PostgreSQL joins the list when `GENFLOW_TEST_POSTGRES_DSN` names a database
(support/postgres_db.py: skipped with a visible reason without one, failed
under `GENFLOW_REQUIRE_POSTGRES=1`, as in CI). Every PostgreSQL case carries
the `postgres` mark (`-m "not postgres"`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from postgres_db import fresh_schema, postgres_dsn

from genflow.stores import MemoryStore, SQLiteStore, Store

STORE_KINDS = ["memory", "sqlite", "postgres"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and params.params.get("store_kind") == "postgres":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(store_kind: str, tmp_path) -> Iterator[Callable[[], Store]]:
    """A factory of stores that share one database (two opens = two connections)."""
    opened: list[Store] = []
    path = tmp_path / "store.db"
    shared_memory: list[Store] = []
    schema = fresh_schema()

    def make() -> Store:
        store: Store
        if store_kind == "memory":
            if not shared_memory:
                shared_memory.append(MemoryStore())
            return shared_memory[0]
        if store_kind == "sqlite":
            store = SQLiteStore(path)
        else:
            dsn = postgres_dsn()
            from genflow.stores.postgres import PostgresStore

            store = PostgresStore(dsn, schema=schema,
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
