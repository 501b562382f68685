"""A step's save writes no index: ended instances are found by when they ended.

Retention reads ended instances in the order of an index. It was on
`(status, updated_at, id)`, and `updated_at` is written by every save, so on
PostgreSQL no save could be a HOT update (each wrote an entry in every index of
the table) and on SQLite every save went through that index. The index is now
on `(status, ended_at, id)`: `ended_at` is set by triggers when the status
changes to an ended one, and cleared when it leaves it (an operator's retry),
whichever code writes the row. The SQL stores' last migration adds it.

Also here: SQLite's save of a row as the saver last saw it assumes the lease it
saw, and so needs no `RETURNING` (which costs SQLite as much as the UPDATE); the
property below runs random leases, releases and saves against the row as stored.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from postgres_db import fresh_schema, postgres_dsn

import genflow
from genflow import Engine, For, On, Step, Wait
from genflow.errors import ConcurrencyError
from genflow.stores import SQLiteStore
from genflow.stores.base import InstanceRecord, utcnow

HOUR = dt.timedelta(hours=1)
#: the columns a step's save writes (sqlite: `_save_sql`; PostgreSQL: its `save`)
EVERY_SAVE = ("blob", "version", "updated_at")


#: what the step does: fail while this says so (an operator's fix: set it False)
BROKEN = {"now": False}


@genflow.workflow("ended-at-steps")
@attrs.define
class Steps:
    i: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield For("steps", self.i < 3, Step("step", self.step))
        yield Wait("hold", On("go", self.go))

    def step(self) -> None:
        if BROKEN["now"]:
            raise RuntimeError("broken")
        self.i += 1

    def go(self) -> None:
        pass


def _ended_at(store: Any, instance_id: str) -> Any:
    """The row's `ended_at` as the store keeps it (None: not ended)."""
    if isinstance(store, SQLiteStore):
        return store._db.execute("SELECT ended_at FROM instances WHERE id = ?",
                                 (instance_id,)).fetchone()[0]
    with store._conn() as conn:
        return conn.execute(f'SELECT ended_at FROM "{store.schema}".instances WHERE id = %s',
                            (instance_id,)).fetchone()[0]


def _index_definitions(store: Any) -> list[str]:
    if isinstance(store, SQLiteStore):
        return [sql for (sql,) in store._db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'instances' "
            "AND sql IS NOT NULL")]
    with store._conn() as conn:
        return [d for (d,) in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'instances'",
            (store.schema,))]


sql_kinds = pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)


@sql_kinds
def test_no_index_of_instances_names_a_column_every_save_writes(store: Any) -> None:
    definitions = _index_definitions(store)
    assert any("ended_at" in d for d in definitions)
    for definition in definitions:
        for column in EVERY_SAVE:
            assert column not in definition, definition


@sql_kinds
def test_ended_at_follows_the_status_whoever_writes_it(store: Any) -> None:
    engine = Engine(store)
    iid = engine.start(Steps(), id="s")
    assert _ended_at(store, iid) is None  # waiting: not ended
    engine.send(iid, "go")
    row = store.get(iid)
    assert row.status == "finished"
    assert _ended_at(store, iid) is not None
    BROKEN["now"] = True
    try:
        engine.start(Steps(), id="f")  # (the failure is logged and saved)
    finally:
        BROKEN["now"] = False
    assert store.get("f").status == "failed"
    assert _ended_at(store, "f") is not None
    engine.retry("f")  # fixed: due again, so no longer ended (nor purgeable)
    assert store.get("f").status != "failed"
    assert _ended_at(store, "f") is None
    assert engine.retention.purge(HOUR, now=utcnow() + 2 * HOUR).instances == 1  # "s" only
    assert [r.id for r in store.list()] == ["f"]


@sql_kinds
def test_retention_ages_an_instance_from_when_it_ended(store: Any) -> None:
    engine = Engine(store)
    iid = engine.start(Steps(), id="done")
    engine.send(iid, "go")
    waiting = engine.start(Steps(), id="alive")
    ended = _ended_at(store, iid)
    assert ended is not None and _ended_at(store, waiting) is None
    assert engine.retention.purge(HOUR).instances == 0  # it ended just now
    assert engine.retention.purge(HOUR, now=utcnow() + 2 * HOUR).instances == 1
    assert [r.id for r in store.list()] == ["alive"]


def test_sqlite_migration_backfills_ended_at(tmp_path: Any) -> None:
    from genflow.stores import sqlite as sqlite_store

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE genflow_schema (version INTEGER NOT NULL)")
    before = sqlite_store.SCHEMA_VERSION - 1
    for migration in sqlite_store._MIGRATIONS[:before]:
        for statement in migration:
            db.execute(statement)
    db.execute("INSERT INTO genflow_schema VALUES (?)", (before,))
    for iid, status in (("old-done", "finished"), ("old-live", "resuming")):
        db.execute("INSERT INTO instances (id, workflow, status, blob, version, created_at, "
                   "updated_at) VALUES (?, 'w', ?, x'00', 3, 1, 2)", (iid, status))
    db.close()
    store = SQLiteStore(path)
    assert store._schema_version() == sqlite_store.SCHEMA_VERSION
    assert _ended_at(store, "old-done") == 2 and _ended_at(store, "old-live") is None
    assert store.get("old-done").version == 3
    assert Engine(store).retention.purge(HOUR).instances == 1
    assert [r.id for r in store.list()] == ["old-live"]


def test_postgres_migration_backfills_ended_at(monkeypatch: pytest.MonkeyPatch) -> None:
    psycopg = pytest.importorskip("psycopg", reason="pip install 'genflow[postgres]'")
    from genflow.stores import postgres as pg_store

    dsn, schema = postgres_dsn(), fresh_schema()
    full = pg_store._MIGRATIONS
    monkeypatch.setattr(pg_store, "_MIGRATIONS", full[:-1])
    monkeypatch.setattr(pg_store, "SCHEMA_VERSION", len(full) - 1)
    try:
        with pg_store.PostgresStore(dsn, schema=schema) as old, old._conn() as conn:
            for iid, status in (("old-done", "finished"), ("old-live", "resuming")):
                conn.execute(
                    f'INSERT INTO "{schema}".instances (id, workflow, status, blob, version, '
                    "created_at, updated_at) VALUES (%s, 'w', %s, '\\x00', 3, "
                    "'2020-01-01Z', '2020-01-02Z')", (iid, status))
        monkeypatch.setattr(pg_store, "_MIGRATIONS", full)
        monkeypatch.setattr(pg_store, "SCHEMA_VERSION", len(full))
        with pg_store.PostgresStore(dsn, schema=schema) as store:
            assert store.schema_version() == len(full)
            assert _ended_at(store, "old-done") == dt.datetime(2020, 1, 2, tzinfo=dt.UTC)
            assert _ended_at(store, "old-live") is None
            assert Engine(store).retention.purge(HOUR).instances == 1
            assert [r.id for r in store.list()] == ["old-live"]
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.postgres
def test_a_step_save_on_postgres_is_a_hot_update() -> None:
    """HOT: the row's new version on its page, no index entry written. The
    statistics are the backend's, flushed when its connection closes."""
    psycopg = pytest.importorskip("psycopg", reason="pip install 'genflow[postgres]'")
    from genflow.stores.postgres import PostgresStore

    dsn, schema = postgres_dsn(), fresh_schema()
    try:
        with PostgresStore(dsn, schema=schema) as store:
            engine = Engine(store)
            for n in range(5):
                engine.start(Steps(), id=f"hot{n}")
        deadline = time.monotonic() + 30
        with psycopg.connect(dsn, autocommit=True) as conn:
            while True:
                upd, hot = conn.execute(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                    "WHERE schemaname = %s AND relname = 'instances'", (schema,)).fetchone()
                if upd >= 15 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert upd >= 15  # three steps and a wait for each of five instances
        assert hot >= 15, (upd, hot)  # (a save that moves a row off its page may not be)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- the record a save returns is the row as stored, whoever holds its lease --------------

OWNERS = [None, "a", "b"]
actions = st.lists(st.tuples(st.sampled_from(["acquire", "release", "save", "stale"]),
                             st.sampled_from(OWNERS)), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(script=actions)
def test_a_save_returns_the_row_as_stored(tmp_path_factory: Any, script: list[Any]) -> None:
    store = SQLiteStore(tmp_path_factory.mktemp("lease") / "s.db")
    now = utcnow()
    base = InstanceRecord(id="x", workflow="w", status="resuming", blob=b"0")
    seen = store.create(base)  # what the saver last read
    for n, (action, owner) in enumerate(script):
        if action == "acquire" and owner is not None:
            store.acquire("x", owner, now, now + HOUR)
        elif action == "release" and owner is not None:
            store.release("x", owner)
        elif action == "stale":
            seen = store.get("x")
        else:
            record = seen.replace(blob=str(n).encode())
            try:
                saved = store.save(record, expected_version=seen.version, lease_owner=owner,
                                   previous=seen)
            except ConcurrencyError:
                assert store.get("x").version != seen.version or (
                    owner is not None and store.get("x").lease_owner not in (None, owner))
                seen = store.get("x")
                continue
            stored = store.get("x")
            assert (saved.version, saved.blob, saved.lease_owner, saved.lease_until) == (
                stored.version, stored.blob, stored.lease_owner, stored.lease_until)
            seen = saved
    store.close()


def test_an_ended_instance_saved_again_keeps_its_age(store: Any) -> None:
    """Every store ages an ended instance from when it ended, not from its
    last save (an operator's repair of a failed instance's error, say)."""
    created = store.create(InstanceRecord(id="old", workflow="w", status="failed", blob=b"0",
                                          error="boom"))
    time.sleep(0.05)
    resaved = store.save(created.replace(error="boom, seen"), expected_version=1,
                         previous=created)
    assert resaved.updated_at is not None and created.updated_at is not None
    between = created.updated_at + (resaved.updated_at - created.updated_at) / 2
    engine = Engine(store)
    assert engine.retention.purge(HOUR, now=between + HOUR).instances == 1
    assert store.list() == []
