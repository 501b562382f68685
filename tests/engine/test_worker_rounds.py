"""Worker rounds whose saves share commits (`Engine._together`, on by default):
`Store.saves_together` on every store (PostgreSQL puts a turn's saves off to
one statement at the block's end), a turn that holds whole saves only (a save
that failed half-way, or a crash, undoes the whole turn and no operation goes
on as saved), and crashes at every store call of rounds that end as the
uninterrupted run, under `work` and under `work_async` (the same turns,
`Engine._turns`, driven by the sync driver or the async one)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import uuid
from typing import Any

import attrs
import pytest
from faults import dies_at_call, round_writes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from otel_helpers import in_memory_otel
from postgres_db import fresh_schema, postgres_dsn

import genflow.engine as engine_module
from genflow import Child, Engine, FakeClock, For, Step, workflow
from genflow.errors import ConcurrencyError, StoreUnavailableError
from genflow.observe import current_traceparent
from genflow.stores import MemoryStore, SQLiteStore
from genflow.stores.base import InstanceRecord

RAN: list[tuple[str, int]] = []  # (instance, step number) for each run of a step


@workflow("rounds-steps")
@attrs.define
class Steps:
    name: str
    total: int = 3
    i: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield For("steps", self.i < self.total, Step("step", self.step))

    def step(self) -> None:
        self.i += 1
        RAN.append((self.name, self.i))


@workflow("rounds-parent")
@attrs.define
class Parent:
    """A step, then a child (its start written with the parent's save, its
    report through the outbox), then a step."""

    name: str
    before: int = 0
    got: int = 0
    after: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("before", self.first)
        yield Child("kid", Steps(f"{self.name}-kid", total=2), into="got", result="i")
        yield Step("after", self.last)

    def first(self) -> None:
        self.before += 1
        RAN.append((self.name, 1))

    def last(self) -> None:
        self.after += 1
        RAN.append((self.name, 2))


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


def _start_all(engine: Engine, parents: int = 1, plain: int = 3) -> None:
    for k in range(parents):
        engine.start(Parent(f"p{k}"), id=f"p{k}", run=False)
    for k in range(plain):
        engine.start(Steps(f"s{k}"), id=f"s{k}", run=False)


def _outcome(engine: Engine) -> dict[str, Any]:
    return {r.id: (r.status, attrs.asdict(engine.get(r.id).data)) for r in engine.list()}


def _record(name: str) -> InstanceRecord:
    return InstanceRecord(id=name, workflow="w", status="resuming", blob=b"b0")


def _work(engine: Engine, loop: str) -> int:
    """`work(until_idle=True)` of the sync loop, or of the async one (`work_async`)."""
    if loop == "sync":
        return engine.work(until_idle=True)
    return asyncio.run(engine.work_async(until_idle=True))


LOOPS = pytest.mark.parametrize("loop", ["sync", "async"])


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


# -- Store.saves_together on every store -----------------------------------------------


def _leased(store: Any, name: str) -> InstanceRecord:
    now = _now()
    store.create(_record(name), lease_owner="me", lease_until=now + _dt.timedelta(minutes=1))
    return store.get(name)


def test_saves_together_stores_each_save_as_the_record_it_returned(make_store):
    store = make_store()
    rows = [_leased(store, f"r{k}") for k in range(3)]
    wake = _now().replace(microsecond=0)
    with store.saves_together() as refused:
        got = [store.save(row.replace(status="waiting", blob=f"b{k}".encode(), wake_at=wake,
                                      waiting_for=("go", "stop"), attempts=k, error=f"e{k}"),
                          expected_version=1, lease_owner="me", previous=row,
                          release=k == 2)
               for k, row in enumerate(rows)]
    assert refused == {}
    for record in got:
        stored = store.get(record.id)
        assert stored == record  # what the store returned at once is what it holds
    assert [r.version for r in got] == [2, 2, 2]
    assert [r.lease_owner for r in got] == ["me", "me", None]  # the last one let go


def test_a_refused_save_in_a_turn_leaves_the_others_standing(make_store):
    """A stale save wrote nothing; the turn's other saves commit (a store that
    writes at once refuses it at the call, one that puts it off names it)."""
    store = make_store()
    rows = [_leased(store, f"r{k}") for k in range(3)]
    store.save(rows[1].replace(blob=b"moved on"), expected_version=1, lease_owner="me")
    errors: list[Exception] = []
    with store.saves_together() as refused:
        for row in rows:
            try:
                store.save(row.replace(blob=b"turn"), expected_version=1, lease_owner="me")
            except ConcurrencyError as exc:
                errors.append(exc)
    errors.extend(refused.values())
    assert [type(e) for e in errors] == [ConcurrencyError]
    assert "at version 2, not 1" in str(errors[0])
    assert [store.get(f"r{k}").blob for k in range(3)] == [b"turn", b"moved on", b"turn"]


def test_a_turn_that_raises_leaves_nothing_of_it(make_store):
    store = make_store()
    rows = [_leased(store, f"r{k}") for k in range(2)]
    with pytest.raises(RuntimeError), store.saves_together():
        for row in rows:
            store.save(row.replace(blob=b"turn"), expected_version=1, lease_owner="me")
        store.append_journal("r0", [("note", {})], _now())
        raise RuntimeError("the process goes down")
    assert [store.get(f"r{k}").blob for k in range(2)] == [b"b0", b"b0"]
    assert [store.get(f"r{k}").version for k in range(2)] == [1, 1]
    assert store.journal("r0") == []


def _postgres() -> Any:
    dsn = postgres_dsn()  # (first: without PostgreSQL, a skip, before psycopg is imported)
    from genflow.stores.postgres import PostgresStore

    return PostgresStore(dsn, schema=fresh_schema(), drop_schema_on_close=True)


@pytest.mark.postgres
def test_postgres_a_refused_save_beside_other_writes_undoes_the_turn():
    """PostgreSQL learns of a refusal at the turn's end: when the turn wrote
    anything else (a journal entry, an outbox row), it is all rolled back."""
    store = _postgres()
    try:
        rows = [_leased(store, f"r{k}") for k in range(3)]
        store.save(rows[1].replace(blob=b"moved on"), expected_version=1, lease_owner="me")
        with pytest.raises(ConcurrencyError, match="rolled back"), \
                store.saves_together() as refused:
            for row in rows:
                store.save(row.replace(blob=b"turn"), expected_version=1, lease_owner="me")
            store.append_journal("r0", [("note", {})], _now())
        assert list(refused) == ["r1"]
        assert [store.get(f"r{k}").blob for k in range(3)] == [b"b0", b"moved on", b"b0"]
        assert store.journal("r0") == []
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
def test_postgres_a_turn_of_plain_saves_is_one_statement(monkeypatch, traced):
    """Five instances of three steps in one round: a statement per turn (the
    saves of all five), no transaction around it, no save of its own; the
    same while OpenTelemetry records."""
    monkeypatch.setattr(engine_module, "_SHARE_BUDGET", 60.0)  # turns never split
    store = _postgres()
    seen: list[str] = []
    try:
        engine = in_memory_otel().engine(store)[0] if traced else Engine(store, clock=FakeClock())
        assert (engine.observer.watching() is not None) is traced
        for k in range(5):
            engine.start(Steps(f"s{k}"), id=f"s{k}", run=False)
        pool = store._pool

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(pool, name)

            def connection(self) -> Any:
                @contextlib.contextmanager
                def counted() -> Any:
                    with pool.connection() as conn:
                        real = conn.execute

                        def execute(query: Any, *args: Any, **kw: Any) -> Any:
                            seen.append(" ".join(str(query).split())[:40])
                            return real(query, *args, **kw)
                        conn.execute = execute  # type: ignore[method-assign]
                        try:
                            yield conn
                        finally:
                            del conn.execute
                return counted()

        store._pool = Counting()  # type: ignore[assignment]
        assert engine.run_due(10) == 5
        store._pool = pool
        saves = [q for q in seen if q.startswith("UPDATE") and "instances" in q]
        assert len(saves) == 4  # three steps and the last save, each a turn of five
        assert all(" i SET " in q for q in saves)  # the turn's statement, not `save`
        assert not [q for q in seen if q in ("BEGIN", "COMMIT")]
        assert all(engine.get(f"s{k}").data.i == 3 for k in range(5))
    finally:
        store.close()


@pytest.mark.postgres
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.text(st.characters(blacklist_categories=("Cs",),
                                             blacklist_characters="\x00"), max_size=8),
                       max_size=4))
def test_postgres_waiting_for_goes_through_a_turn_as_it_is(events):
    """Each row's events cross as a text[] literal: quotes, backslashes, commas,
    braces and blanks come back as they went."""
    store = _postgres()
    try:
        rows = [_leased(store, f"r{k}") for k in range(2)]
        with store.saves_together():
            for row in rows:
                store.save(row.replace(waiting_for=tuple(events)), expected_version=1,
                           lease_owner="me")
        assert [store.get(f"r{k}").waiting_for for k in range(2)] == [tuple(events)] * 2
    finally:
        store.close()


# -- the engine: a turn holds whole saves only -----------------------------------------


def _open(kind: str, tmp_path: Any, n: int = 0) -> Any:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / f"rounds-{n}-{uuid.uuid4().hex[:8]}.db")
    return _postgres()


def _uninterrupted(kind: str, tmp_path: Any) -> dict[str, Any]:
    store = _open(kind, tmp_path, 999)
    try:
        engine = Engine(store, clock=FakeClock(), lease_seconds=10)
        _start_all(engine)
        engine.work(until_idle=True)
        return _outcome(engine)
    finally:
        store.close()


@LOOPS
@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_save_that_fails_half_way_undoes_its_turn(kind, loop, tmp_path):
    """The parent's save is written, then its child's start fails: the turn is
    rolled back whole (the parent's save with it: never a parent without its
    child), no instance of the turn runs a step past it, and a later round
    ends every instance as an uninterrupted run. Under either loop."""
    expected = _uninterrupted(kind, tmp_path)
    RAN.clear()
    store = _open(kind, tmp_path)
    try:
        clock = FakeClock()
        engine = Engine(store, clock=clock, lease_seconds=10)
        _start_all(engine)
        real = store.create_if_absent
        calls = {"n": 0}

        def fails_once(*args: Any, **kw: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise StoreUnavailableError("the server went away mid-turn")
            return real(*args, **kw)

        store.create_if_absent = fails_once  # type: ignore[method-assign]
        with pytest.raises(StoreUnavailableError):
            if loop == "sync":
                engine.run_due(10)
            else:
                asyncio.run(engine.run_due_async(10))
        for record in store.list():  # no step ran past a save that does not stand
            data = engine.get(record.id).data
            done = data.i if isinstance(data, Steps) else data.before + data.after
            assert sum(1 for name, _ in RAN if name == record.id) <= done + 1, record.id
        assert not [r for r in store.list() if "/" in r.id]  # the failed start: not half-made
        assert store.get("p0").status == "resuming"  # at its step's save, not past it
        clock.advance(seconds=30)  # (any lease the failure left runs out)
        _work(engine, loop)
        assert _outcome(engine) == expected
    finally:
        store.close()


def _crash_run(kind: str, tmp_path: Any, crash_at: int | None, n: int,
               parents: int = 1, plain: int = 3, traced: bool = False, loop: str = "sync"
               ) -> tuple[dict[str, Any], int]:
    """A worker round over parents (with a child each) and plain instances,
    dying at the `crash_at`-th store write; then another worker, once the
    leases have run out, finishes what is left. `traced`: every engine
    records spans and metrics (the SDK's, in memory). `loop`: the worker
    that dies runs `work` ("sync") or `work_async` ("async"); the one that
    finishes, `work`."""
    class Crash(BaseException):
        pass

    otel = in_memory_otel() if traced else None

    def engine_of(store: Any, **kw: Any) -> Engine:
        return otel.engine(store, **kw)[0] if otel is not None else Engine(store, **kw)

    store = _open(kind, tmp_path, n)
    try:
        clock = FakeClock()
        setup = engine_of(store, clock=clock, lease_seconds=10)
        _start_all(setup, parents, plain)
        with dies_at_call(store, crash_at, round_writes(kind), Crash) as count:
            engine = engine_of(store, clock=clock, lease_seconds=10)
            with contextlib.suppress(Crash):
                _work(engine, loop)
        assert current_traceparent() is None  # the crash left no operation's span current
        worker = engine_of(store, clock=clock, lease_seconds=10)
        for _ in range(3):
            clock.advance(seconds=30)
            worker.work(until_idle=True)
        return _outcome(worker), count["n"]
    finally:
        store.close()


@LOOPS
@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_crash_at_every_write_of_a_round_ends_as_the_uninterrupted_run(kind, traced, loop,
                                                                         tmp_path):
    """Every store write of a worker run (saves put off to a turn's end, the
    turn's statement, a child's start and outbox rows, leases), each in turn the
    one where the process dies: the next worker ends every instance as the
    uninterrupted run, each step's effect on the data counted once. Traced,
    the round is the same (its saves at the same points); under `work_async`,
    its writes are those of `work`."""
    if kind == "postgres":
        postgres_dsn()
    expected, writes = _crash_run(kind, tmp_path, None, 0, traced=traced, loop=loop)
    assert all(status == "finished" for status, _ in expected.values())
    assert expected["p0"][1]["got"] == 2
    if loop == "async":
        same, sync_writes = _crash_run(kind, tmp_path, None, 0, traced=traced)
        assert expected == same
        if kind == "postgres":  # a turn's put-off saves (`_save_deferred`) may take two
            # statements where work's took one: which of the async loop's steps have
            # ended when its turn ends is a matter of timing (the saves are the same)
            assert abs(writes - sync_writes) <= 2, (writes, sync_writes)
        else:
            assert writes == sync_writes
    for crash_at in range(1, writes + 1):
        got, _ = _crash_run(kind, tmp_path, crash_at, crash_at, traced=traced, loop=loop)
        assert got == expected, crash_at


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(parents=st.integers(0, 2), plain=st.integers(1, 4), crash_at=st.integers(1, 80),
       kind=st.sampled_from(["memory", "sqlite"]), loop=st.sampled_from(["sync", "async"]))
def test_a_crash_anywhere_in_any_round_ends_as_the_uninterrupted_run(parents, plain, crash_at,
                                                                       kind, loop, tmp_path):
    RAN.clear()
    expected, _ = _crash_run(kind, tmp_path, None, 0, parents, plain)
    RAN.clear()
    got, _ = _crash_run(kind, tmp_path, crash_at, crash_at, parents, plain, loop=loop)
    assert got == expected
    for k in range(plain):  # at least once: every step of every instance ran
        assert {i for name, i in RAN if name == f"s{k}"} == {1, 2, 3}
