"""`work_async`'s rounds share commits as `work`'s do (`Engine._turns`, driven by
`_together_async`): a round of N instances commits fewer times than N, async
steps (one after another across the round, at once within an instance) and
failing steps end in the rows of one instance at a time and, made sync, in
the rows of `work`; a crash at any write of an async round loses nothing
acknowledged, and a cancelled worker nothing committed; each async step's span
is its own instance's. On every store."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import attrs
import pytest
from commits import Commits
from faults import dies_at_call, round_writes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postgres_db import fresh_schema, postgres_dsn

import genflow
import genflow.engine as engine_module
from genflow import Engine, FakeClock, Go, Retry, Sleep, Step, current_step
from genflow.observe import current_traceparent
from genflow.stores import MemoryStore, SQLiteStore
from genflow.stores.base import Store


@pytest.fixture(autouse=True)
def _unhurried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turns that never split on a loaded machine (`_SHARE_BUDGET`)."""
    monkeypatch.setattr(engine_module, "_SHARE_BUDGET", 60.0)


@genflow.workflow("war-mixed")
@attrs.define
class Mixed:
    """A step per kind: "sync", "fails" (its first attempt), "dies" (every
    attempt: the instance fails); "a" before the kind makes the step async.
    `naps`: a Sleep before each of the first steps (more rounds)."""

    kinds: list[str] = attrs.field(factory=lambda: ["sync"])
    naps: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        for n in range(len(self.kinds)):
            if n < self.naps:
                yield Sleep(f"nap {n}", 2 * (n + 1))
            yield Step(f"step {n}", self.step, retry=Retry(attempts=2, backoff=1.0))

    def step(self) -> Any:
        ctx = current_step()
        kind = self.kinds[int(ctx.step.split()[1])]
        if kind.startswith("a"):
            return self._later(ctx.step, ctx.attempt, kind[1:])
        self._do(ctx.step, ctx.attempt, kind)
        return None

    async def _later(self, name: str, attempt: int, kind: str) -> None:
        await asyncio.sleep(0)
        self._do(name, attempt, kind)

    def _do(self, name: str, attempt: int, kind: str) -> None:
        self.log.append(f"{name}#{attempt}")
        if kind == "dies" or (kind == "fails" and attempt == 1):
            raise ValueError(f"{name} fails")


@genflow.workflow("war-pair")
@attrs.define
class Pair:
    """Two threads, each with async steps: under the async API they run at once."""

    left: int = 0
    right: int = 0
    seen: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        yield Go("l", Step("left", self.go_left))
        yield Go("r", Step("right", self.go_right))
        yield Step("both", self.both)

    async def go_left(self) -> None:
        await asyncio.sleep(0)
        self.left += 1
        self.seen.append(current_traceparent() or "")

    async def go_right(self) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.right += 1
        self.seen.append(current_traceparent() or "")

    async def both(self) -> None:
        await asyncio.sleep(0)
        self.seen.append(current_traceparent() or "")


def _rows(engine: Engine, ids: list[str]) -> list[Any]:
    found = []
    for iid in ids:
        inst = engine.get(iid)
        found.append((inst.status, inst.data, inst.attempts, inst.wake_at, inst.error))
    return found


def _empty(store: Store) -> None:
    for record in store.list():  # (one database for every example)
        store.delete(record.id)


def test_a_round_of_n_instances_makes_fewer_commits_than_n(store):
    """Five instances of three async steps in one `run_due_async`: a commit per
    turn (three steps, then the last save), each of all five; one at a time,
    a commit per save."""
    counts = {}
    for shared in (True, False):
        _empty(store)
        engine = Engine(store, clock=FakeClock(), share_commits=shared)
        ids = [engine.start(Mixed(kinds=["async"] * 3), id=f"m{k}", run=False)
               for k in range(5)]
        counted = Commits(store)
        try:
            assert asyncio.run(engine.run_due_async(10)) == 5
        finally:
            counted.stop()
        assert all(engine.get(iid).data.log == ["step 0#1", "step 1#1", "step 2#1"]
                   for iid in ids)
        counts[shared] = counted.commits
    assert len(counts[True]) < 5
    assert [sorted(ids) for ids in counts[True]] == [[f"m{k}" for k in range(5)]] * 4
    assert len(counts[False]) == 20 and all(len(ids) == 1 for ids in counts[False])


def test_steps_at_once_in_a_round_end_as_one_instance_at_a_time(store):
    """Each instance's two threads run their async steps at once (tasks of its
    own), inside a round whose instances share commits."""
    rows, commits = [], []
    for shared in (True, False):
        _empty(store)
        engine = Engine(store, clock=FakeClock(), share_commits=shared)
        ids = [engine.start(Pair(), id=f"p{k}", run=False) for k in range(4)]
        counted = Commits(store)
        try:
            assert asyncio.run(engine.work_async(until_idle=True)) == 4
        finally:
            counted.stop()
        rows.append(_rows(engine, ids))
        commits.append(counted.commits)
    assert rows[0] == rows[1]
    assert all((data.left, data.right, status.value) == (1, 1, "finished")
               for status, data, *_ in rows[0])
    assert len(commits[0]) < len(commits[1])
    assert sorted(i for ids in commits[0] for i in ids) == \
        sorted(i for ids in commits[1] for i in ids)


_kinds = st.lists(st.sampled_from(["sync", "fails", "dies", "async", "afails", "adies"]),
                  min_size=1, max_size=3)
_mixed = st.builds(Mixed, kinds=_kinds, naps=st.integers(0, 2))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(workload=st.lists(st.tuples(_mixed, st.booleans()), min_size=1, max_size=5),
       until_done=st.booleans())
def test_async_and_failing_steps_end_in_the_rows_of_work(store, workload, until_done):
    """The same instances on the same clock under `work_async` (rounds), under
    `work_async` one instance at a time, and, their async steps made sync,
    under `work`: the same rows (data, status, attempts, wake, error), the
    same count and the same time."""
    def sync(kinds: list[str]) -> list[str]:
        return [k[1:] if k.startswith("a") else k for k in kinds]

    ended = []
    for loop, shared in (("work_async", True), ("work_async", False), ("work", True)):
        _empty(store)
        clock = FakeClock()
        engine = Engine(store, clock=clock, share_commits=shared)
        ids = []
        for n, (data, run) in enumerate(workload):
            kinds = sync(data.kinds) if loop == "work" else data.kinds
            mine = attrs.evolve(data, kinds=kinds, log=[])
            ids.append(asyncio.run(engine.start_async(mine, id=f"i{n}", run=run)))
        kwargs = {"until_done": True} if until_done else {"until_idle": True,
                                                            "idle_sleep": 2.0}
        done = engine.work(**kwargs) if loop == "work" else \
            asyncio.run(engine.work_async(**kwargs))
        rows = [(status, attrs.evolve(data, kinds=sync(data.kinds)), *rest)
                for status, data, *rest in _rows(engine, ids)]
        ended.append((done, clock(), rows))
    assert ended[0] == ended[1] == ended[2]


def _open(kind: str, tmp_path: Any) -> Any:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / f"war-{uuid.uuid4().hex[:8]}.db")
    dsn = postgres_dsn()
    from genflow.stores.postgres import PostgresStore

    return PostgresStore(dsn, schema=fresh_schema(), drop_schema_on_close=True)


def _crash_run(kind: str, tmp_path: Any, crash_at: int | None) -> tuple[Any, int]:
    """An async round (instances with async and failing steps, steps at once),
    dying at the `crash_at`-th store write; another worker finishes it."""
    class Crash(BaseException):
        pass

    store = _open(kind, tmp_path)
    try:
        clock = FakeClock()
        setup = Engine(store, clock=clock, lease_seconds=10)
        ids = [setup.start(Mixed(kinds=["async", "afails", "sync"]), id="m0", run=False),
               setup.start(Mixed(kinds=["fails", "async"]), id="m1", run=False),
               setup.start(Pair(), id="p0", run=False)]
        with dies_at_call(store, crash_at, round_writes(kind), Crash) as count:
            engine = Engine(store, clock=clock, lease_seconds=10)
            with contextlib.suppress(Crash):
                asyncio.run(engine.work_async(until_idle=True))
        worker = Engine(store, clock=clock, lease_seconds=10)
        for _ in range(3):
            clock.advance(seconds=30)
            asyncio.run(worker.work_async(until_idle=True))
        return [(s, attrs.evolve(d, log=sorted(set(d.log))) if isinstance(d, Mixed) else d)
                for s, d, *_ in _rows(worker, ids)], count["n"]
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_a_crash_at_every_write_of_an_async_round_ends_as_the_uninterrupted_run(kind,
                                                                               tmp_path):
    """Each write in turn is where the process dies: the next worker ends every
    instance as the uninterrupted run (each step's effect counted once; a step
    a crash interrupted runs again: the logs are compared as sets)."""
    if kind == "postgres":
        postgres_dsn()
    expected, writes = _crash_run(kind, tmp_path, None)
    assert [status.value for status, _ in expected] == ["finished"] * 3
    for crash_at in range(1, writes + 1):
        got, _ = _crash_run(kind, tmp_path, crash_at)
        assert got == expected, crash_at


def test_each_async_step_of_a_traced_round_is_in_its_own_instances_trace(store):
    """Steps at once of several instances in one async round: the span current
    in each step (across its awaits) is that step's, a child of its own
    instance's `genflow.run` span."""
    pytest.importorskip("opentelemetry.sdk.trace", reason="the otel-test extra is missing")
    from otel_helpers import in_memory_otel, named

    otel = in_memory_otel()
    engine, _ = otel.engine(store)
    ids = [engine.start(Pair(), id=f"p{k}", run=False) for k in range(3)]
    assert asyncio.run(engine.run_due_async(10)) == 3
    assert current_traceparent() is None
    spans = otel.spans()
    by_id = {s.context.span_id: s for s in spans}
    runs = {s.attributes["genflow.instance_id"]: s for s in named(spans, "genflow.run")}
    for iid in ids:
        steps = [s for s in spans if s.name.startswith("genflow.step ")
                 and s.attributes["genflow.instance_id"] == iid]
        assert sorted(s.name for s in steps) == ["genflow.step both", "genflow.step left",
                                                 "genflow.step right"]
        assert {by_id[s.parent.span_id].context.span_id for s in steps} == \
            {runs[iid].context.span_id}
        parents = {f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}-"
                   f"{s.context.trace_flags:02x}" for s in steps}
        assert set(engine.get(iid).data.seen) == parents


GATE: list[asyncio.Event] = []


@genflow.workflow("war-gated")
@attrs.define
class Gated:
    """A quick step, then one that waits for the test to open its gate."""

    done: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("quick", self.quick)
        yield Go("beside", Step("side", self.side))
        yield Step("gated", self.gated)

    async def quick(self) -> None:
        await asyncio.sleep(0)
        self.done.append("quick")

    async def side(self) -> None:
        await GATE[0].wait()
        self.done.append("side")

    async def gated(self) -> None:
        await GATE[0].wait()
        self.done.append("gated")


def test_a_cancelled_work_async_leaves_its_round_at_its_last_commits(store):
    """The worker's task is cancelled while a round's step (and a step at once
    beside it) awaits: the cancellation ends the loop, every task the round
    started is cancelled with it, each instance is as its last committed save
    left it, and a later worker finishes them all."""
    clock = FakeClock()
    engine = Engine(store, clock=clock, lease_seconds=10)
    ids = [engine.start(Gated(), id=f"g{k}", run=False) for k in range(3)]

    async def cancelled() -> None:
        GATE[:] = [asyncio.Event()]
        worker = asyncio.create_task(engine.work_async(until_idle=True))
        while not all(engine.get(iid).data.done == ["quick"] for iid in ids):
            await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)  # (the round reaches the gated steps)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert left == []  # no step of the round still runs

    asyncio.run(cancelled())
    assert [engine.get(iid).data.done for iid in ids] == [["quick"]] * 3
    clock.advance(seconds=30)  # (the leases run out)

    async def finished() -> int:
        GATE[:] = [asyncio.Event()]
        GATE[0].set()
        return await Engine(store, clock=clock).work_async(until_idle=True)

    assert asyncio.run(finished()) == 3
    assert [sorted(engine.get(iid).data.done) for iid in ids] == \
        [["gated", "quick", "side"]] * 3
