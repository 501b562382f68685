"""Group commit (genflow.stores.group) and worker rounds that share commits
(`Engine.run_due`): what a returned call guarantees stays what it was.

* every call that returned is durable: the store opened again finds it;
* a write that fails inside a group loses and changes no one else's write;
* a refused operation leaves its row byte-identical;
* a worker round's instances each go on only after their own save committed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genflow
from genflow import For, On, Step, Wait
from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import (
    ConcurrencyError,
    DuplicateInstanceError,
    GenflowError,
    StoreUnavailableError,
    UnknownEventError,
)
from genflow.stores import SQLiteStore
from genflow.stores.base import InstanceRecord
from genflow.stores.group import GroupCommit


@genflow.workflow("gc-small")
@attrs.define
class Small:
    n: int = 0

    def definition(self):
        yield Step("one", self.bump)
        yield Wait("go?", On("go", self.on_go))
        yield Step("two", self.bump)

    def bump(self) -> None:
        self.n += 1

    def on_go(self, by: int) -> None:
        self.n += by


_FAR = FakeClock()().replace(year=2100)


def row(store: Any, instance_id: str) -> tuple[Any, ...]:
    r = store.get(instance_id)
    return (r.blob, r.version, r.status, r.wake_at, r.waiting_for, r.attempts, r.error)


def _durable(store_kind: str) -> None:
    if store_kind == "memory":
        pytest.skip("a MemoryStore is not durable: nothing to reopen")


# -- GroupCommit itself: each caller gets its own write's outcome ---------------------------


class _Book:
    """A toy store: `alone` commits one write, `together` all or none."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.committed: list[int] = []
        self.groups: list[list[int]] = []

    def alone(self, fn: Any, args: tuple[Any, ...]) -> Any:
        result = fn(*args)
        self.committed.append(args[0])
        return result

    def together(self, writes: Any) -> list[Any]:
        staged = []
        for fn, args in writes:
            staged.append(fn(*args))  # a failure raises: nothing of the group is kept
        self.groups.append([args[0] for _, args in writes])
        self.committed += [args[0] for _, args in writes]
        return staged


def _write(n: int, fails: bool) -> int:
    if fails:
        raise ValueError(f"write {n} fails")
    return n * 10


@settings(max_examples=40, deadline=None)
@given(fails=st.lists(st.booleans(), min_size=1, max_size=12), limit=st.integers(1, 5))
def test_each_caller_gets_its_own_outcome_and_only_successes_commit(fails, limit):
    book = _Book()
    group = GroupCommit(book.lock, book.alone, book.together, limit=limit)
    outcomes: dict[int, Any] = {}
    book.lock.acquire()  # hold the store: every caller queues, then they run as groups
    threads = []
    for n, fail in enumerate(fails):
        def call(n: int = n, fail: bool = fail) -> None:
            try:
                outcomes[n] = group.run(_write, n, fail)
            except ValueError as exc:
                outcomes[n] = exc
        threads.append(threading.Thread(target=call))
        threads[-1].start()
    while len(group._pending) < len(fails):
        time.sleep(0.001)
    book.lock.release()
    for thread in threads:
        thread.join()
    for n, fail in enumerate(fails):
        if fail:
            assert isinstance(outcomes[n], ValueError) and str(outcomes[n]) == f"write {n} fails"
        else:
            assert outcomes[n] == n * 10
    assert sorted(book.committed) == [n for n, fail in enumerate(fails) if not fail]
    assert all(len(g) <= limit for g in book.groups)
    assert group.writes == len(fails)


def test_one_writer_alone_writes_at_once():
    book = _Book()
    group = GroupCommit(book.lock, book.alone, book.together)
    assert [group.run(_write, n, False) for n in range(3)] == [0, 10, 20]
    assert book.groups == [] and group.commits == 3


# -- on the stores: durable, isolated, refused writes leave rows as they were ---------------


def _queue_while_held(store: Any, calls: list[Any]) -> list[Any]:
    """Run `calls` in threads while the store's group lock is held, so they
    queue and then go in as one group; each one's result or exception."""
    writes = store._writes
    outcomes: list[Any] = [None] * len(calls)

    def run(k: int) -> None:
        try:
            outcomes[k] = calls[k]()
        except BaseException as exc:
            outcomes[k] = exc

    writes._lock.acquire()
    try:
        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(writes._pending) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(writes._pending) == len(calls), "the calls did not queue"
    finally:
        writes._lock.release()
    for thread in threads:
        thread.join()
    return outcomes


def test_a_failed_write_in_a_group_loses_no_one_elses(make_store, store_kind):
    _durable(store_kind)
    store = make_store()
    store.create(InstanceRecord(id="taken", workflow="w", status="waiting", blob=b"first"))
    before = row(store, "taken")
    commits = store._writes.commits
    calls = [lambda k=k: store.create(InstanceRecord(id=f"new{k}", workflow="w",
                                                     status="waiting", blob=b"x%d" % k))
             for k in range(5)]
    calls.insert(2, lambda: store.create(InstanceRecord(id="taken", workflow="w",
                                                        status="waiting", blob=b"second")))
    outcomes = _queue_while_held(store, calls)
    assert isinstance(outcomes[2], DuplicateInstanceError)
    assert [o.id for k, o in enumerate(outcomes) if k != 2] == [f"new{k}" for k in range(5)]
    assert store._writes.commits > commits
    reopened = make_store()
    assert row(reopened, "taken") == before
    assert [reopened.get(f"new{k}").blob for k in range(5)] == [b"x%d" % k for k in range(5)]


def test_a_group_of_saves_commits_each_and_refuses_a_stale_one(make_store, store_kind):
    _durable(store_kind)
    store = make_store()
    records = [store.create(InstanceRecord(id=f"s{k}", workflow="w", status="waiting",
                                           blob=b"v1"), lease_owner="me",
                            lease_until=_FAR)
               for k in range(4)]
    stale = records[1]
    records[1] = store.save(stale.replace(blob=b"moved"), expected_version=stale.version,
                            lease_owner="me", previous=stale)
    before = row(store, "s1")
    calls: list[Any] = [
        (lambda r=r: store.save(r.replace(blob=b"v2"), expected_version=r.version,
                                lease_owner="me", previous=r))
        for r in records]
    calls[1] = lambda: store.save(stale.replace(blob=b"late"), expected_version=stale.version,
                                  lease_owner="me", previous=stale)
    outcomes = _queue_while_held(store, calls)
    assert isinstance(outcomes[1], ConcurrencyError)
    assert [outcomes[k].version for k in (0, 2, 3)] == [2, 2, 2]
    reopened = make_store()
    assert row(reopened, "s1") == before
    assert [reopened.get(f"s{k}").blob for k in (0, 2, 3)] == [b"v2"] * 3


_ACTIONS = st.lists(st.tuples(st.sampled_from(["start", "start again", "send", "send wrong"]),
                              st.integers(0, 3), st.integers(1, 9)), min_size=1, max_size=6)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scripts=st.lists(_ACTIONS, min_size=2, max_size=6))
def test_every_returned_call_is_durable_and_every_refused_one_changed_nothing(
        make_store, store_kind, scripts):
    """Concurrent callers, one engine: each thread works on its own instances
    (so it knows what each of its calls should have left), the calls of all
    threads sharing commits. The store opened again holds every returned call's
    write; a refused call left its row byte-identical."""
    _durable(store_kind)
    store = make_store()
    engine = Engine(store)
    tag = f"{time.monotonic_ns()}"
    expected: dict[str, Any] = {}
    problems: list[str] = []

    def caller(t: int, script: list[tuple[str, int, int]]) -> None:
        for action, k, by in script:
            iid = f"{tag}-{t}-{k}"
            was = expected.get(iid)
            before = row(store, iid) if was is not None else None
            try:
                if action.startswith("start"):
                    engine.start(Small(), id=iid)
                    expected[iid] = ("waiting", 1)
                elif action == "send":
                    engine.send(iid, "go", by)
                    expected[iid] = ("finished", was[1] + by + 1 if was else None)
                else:
                    engine.send(iid, "stop", by)
                    problems.append(f"{iid}: an unknown event was accepted")
            except GenflowError as exc:
                if was is None and action.startswith("start"):
                    problems.append(f"{iid}: a first start failed: {exc!r}")
                if before is not None and row(store, iid) != before:
                    problems.append(f"{iid}: refused {action} changed the row")
                if action == "send wrong" and was is not None and was[0] == "waiting" \
                        and not isinstance(exc, UnknownEventError):
                    problems.append(f"{iid}: a wrong event raised {exc!r}")

    threads = [threading.Thread(target=caller, args=(t, s)) for t, s in enumerate(scripts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    reopened = Engine(make_store())
    for iid, (status, n) in expected.items():
        got = reopened.get(iid)
        assert got.status.value == status, iid
        if n is not None:
            assert got.data.n == n, iid


# -- worker rounds: the claimed instances' saves share commits -------------------------------


STEPS = 4
RAN: list[int] = []  # every step execution, as (i after it)


@genflow.workflow("gc-steps")
@attrs.define
class Steps:
    i: int = 0
    log: list[int] = attrs.field(factory=list)

    def definition(self):
        yield For("steps", self.i < STEPS, Step("step", self.step))

    def step(self) -> None:
        self.i += 1
        self.log.append(self.i)
        RAN.append(self.i)


@pytest.fixture
def unhurried(monkeypatch):
    """Turns that never split: on a loaded machine a step can take longer than the
    budget a save waits for others (`Engine._together`), and a turn then commits in
    parts, which these tests do not test."""
    import genflow.engine as engine_module

    monkeypatch.setattr(engine_module, "_SHARE_BUDGET", 60.0)


@pytest.mark.usefixtures("unhurried")
def test_a_round_saves_each_step_of_each_instance_in_shared_commits(make_store, store_kind):
    store = make_store()
    engine = Engine(store, clock=FakeClock(), share_commits=True)
    ids = [engine.start(Steps(), id=f"r{k}", run=False) for k in range(5)]
    engine.start(Steps(), id="alone")  # run at once, alone: the saves to compare with
    assert engine.run_due(10) == 5
    for iid in ids:
        got = engine.get(iid)
        assert (got.data.i, got.data.log, got.status.value) == (STEPS, [1, 2, 3, 4],
                                                               "finished")
        # a save per step and the last one, as an instance run alone makes
        assert got.version == store.get("alone").version


@pytest.mark.usefixtures("unhurried")
def test_a_round_goes_on_only_after_its_saves_commit(tmp_path, monkeypatch):
    """The turn's commit fails: no instance runs its next step (each is left
    at its last committed save, its lease let go), and a worker later
    finishes them."""
    store = SQLiteStore(tmp_path / "round.db")
    clock = FakeClock()
    engine = Engine(store, clock=clock, lease_seconds=5, share_commits=True)
    for k in range(3):
        engine.start(Steps(), id=f"c{k}", run=False)
    real = store.transaction
    fails = {"left": 1}

    class _Broken:
        def __init__(self) -> None:
            self.inner = real()

        def __enter__(self) -> None:
            self.inner.__enter__()

        def __exit__(self, *exc: Any) -> Any:
            if fails["left"] and exc[0] is None:
                fails["left"] -= 1
                lost = StoreUnavailableError("the commit failed (disk I/O error)")
                self.inner.__exit__(StoreUnavailableError, lost, None)
                raise lost
            return self.inner.__exit__(*exc)

    monkeypatch.setattr(store, "transaction", _Broken)
    RAN.clear()
    with pytest.raises(StoreUnavailableError):
        engine.run_due(10)
    assert RAN == [1, 1, 1]  # each ran its first step; none went on past the failed commit
    monkeypatch.setattr(store, "transaction", real)
    for k in range(3):  # nothing of the failed turn stands: each at its start
        got = engine.get(f"c{k}")
        assert (got.data.i, got.version) == (0, 1)
    engine.work(until_done=True)
    for k in range(3):
        got = engine.get(f"c{k}")
        assert (got.data.i, got.data.log, got.status.value) == (STEPS, [1, 2, 3, 4],
                                                               "finished")


def test_a_round_inside_a_transaction_saves_once_per_instance(tmp_path):
    """Inside `transaction()` (a batch job) a round is the batch's: one save per
    operation, as before rounds shared commits."""
    store = SQLiteStore(tmp_path / "batch.db")
    engine = Engine(store, clock=FakeClock(), share_commits=True)
    for k in range(3):
        engine.start(Steps(), id=f"b{k}", run=False)
    with store.transaction():
        assert engine.run_due(10) == 3
    assert [store.get(f"b{k}").version for k in range(3)] == [2, 2, 2]


# -- SQLite: migration 3 keeps the rows and swaps the two indexes -----------------------------


def test_sqlite_speed_migration_keeps_rows_and_rebuilds_the_indexes(tmp_path):
    from genflow.stores import sqlite as sqlite_store

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE genflow_schema (version INTEGER NOT NULL)")
    before = 3  # migration 4 (`_MIGRATIONS[3]`) rebuilds the two indexes
    for migration in sqlite_store._MIGRATIONS[:before]:
        for statement in migration:
            db.execute(statement)
    db.execute("INSERT INTO genflow_schema VALUES (?)", (before,))
    db.execute("INSERT INTO instances (id, workflow, status, blob, version, wake_at, "
               "created_at, updated_at) VALUES ('old', 'w', 'resuming', x'00', 3, 5, 1, 2)")
    db.close()
    store = SQLiteStore(path)
    assert store._schema_version() == sqlite_store.SCHEMA_VERSION
    assert store.get("old").version == 3
    sql = dict(store._db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                 "AND name IN ('instances_due', 'instances_ended')"))
    assert "(wake_at, id)" in sql["instances_due"]
    assert "(status, ended_at, id)" in sql["instances_ended"]  # (then migration 5's)
    claimed = store.claim_due("me", FakeClock()(), FakeClock()().replace(year=2100), 5)
    assert [r.id for r in claimed] == ["old"]
    store.close()


def test_due_ties_are_claimed_in_id_order_reading_the_index(tmp_path):
    store = SQLiteStore(tmp_path / "ties.db")
    at = FakeClock()()
    for k in (5, 3, 9, 1, 7):
        store.create(InstanceRecord(id=f"t{k}", workflow="w", status="resuming", blob=b"",
                                    wake_at=at))
    plan = " ".join(r[3] for r in store._db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM instances INDEXED BY instances_due "
        "WHERE wake_at IS NOT NULL AND wake_at <= 0 AND +workflow IN ('w') "
        "ORDER BY wake_at, id LIMIT 2"))
    assert "TEMP B-TREE" not in plan  # read in order: no sort of every due row
    claimed = store.claim_due("me", at, at.replace(year=2100), 2, workflows={"w"})
    assert [r.id for r in claimed] == ["t1", "t3"]
    store.close()
