"""Worker rounds while OpenTelemetry records (`Engine._together` with a watch):
the saves of a round share commits as untraced, and the spans and metrics are
those of the same instances run one at a time (`share_commits=False`): the same
spans, with the same parents, attributes, statuses and events; a failure on
its own instance's spans only; each step's span current while it runs, and
nothing left current after the round. On every store.

OpenTelemetry is the SDK's, with in-memory exporters (tests/support/otel_helpers).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import attrs
import pytest
from commits import Commits
from obs_app import Broken, Flaky, Parent
from otel_helpers import in_memory_otel, named
from postgres_db import fresh_schema, postgres_dsn

import genflow
from genflow import For, Step
from genflow.engine import Engine
from genflow.observe import current_traceparent
from genflow.stores import MemoryStore, SQLiteStore
from genflow.stores.base import Store

pytest.importorskip("opentelemetry.sdk.trace", reason="the otel-test extra is not installed")


@genflow.workflow("traced-rounds-steps")
@attrs.define
class Steps:
    """Three steps, each keeping the traceparent current while it runs."""

    i: int = 0
    seen: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        yield For("steps", self.i < 3, Step("step", self.step))

    def step(self) -> None:
        self.i += 1
        self.seen.append(current_traceparent() or "")


@pytest.fixture(autouse=True)
def _unhurried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turns that never split: a step that takes longer than the budget on a
    loaded machine would commit its turn in parts (`Engine._together`)."""
    import genflow.engine as engine_module

    monkeypatch.setattr(engine_module, "_SHARE_BUDGET", 60.0)


@pytest.fixture
def fresh(store_kind: str, tmp_path: Any) -> Any:
    """A factory of empty stores of the kind, each its own database."""
    opened: list[Store] = []

    def make() -> Store:
        store: Store
        if store_kind == "memory":
            store = MemoryStore()
        elif store_kind == "sqlite":
            store = SQLiteStore(tmp_path / f"{len(opened)}.db")
        else:
            dsn = postgres_dsn()  # (first: without one the case is skipped, psycopg or not)
            from genflow.stores.postgres import PostgresStore

            store = PostgresStore(dsn, schema=fresh_schema(), drop_schema_on_close=True)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


STEPS = ("s0", "s1", "s2")


def _worker_round(fresh: Any, *, rounds: bool, traced: bool = True, loop: str = "sync"
                  ) -> tuple[Any, Engine, Commits]:
    """Instances started in requests' spans (and one untraced), then a worker
    round over them in a span of the worker's own, its commits counted, then
    the worker runs the rest (a retry later, the child, the relay). `loop`:
    the round and the rest run by the sync API or the async one."""
    otel = in_memory_otel()
    store = fresh()
    web, clock = otel.engine(store)
    for iid in STEPS:
        with otel.tracer.start_as_current_span(f"POST {iid}"):
            web.start(Steps(), id=iid, run=False)
    with otel.tracer.start_as_current_span("POST bad"):
        web.start(Broken(), id="bad", run=False)
    with otel.tracer.start_as_current_span("POST flaky"):
        web.start(Flaky(fails=1), id="flaky", run=False)
    with otel.tracer.start_as_current_span("POST parent"):
        web.start(Parent(), id="parent", run=False)
    Engine(store, clock=clock, otel=False).start(Steps(), id="plain", run=False)  # no trace
    if traced:
        worker, _ = otel.engine(store, clock=clock, share_commits=rounds)
    else:
        worker = Engine(store, clock=clock, otel=False, share_commits=rounds)
    assert (worker.observer.watching() is not None) is traced
    counted = Commits(store)
    with otel.tracer.start_as_current_span("tick"):  # (asyncio.run: a copy of its context)
        assert (worker.run_due(10) if loop == "sync" else
                asyncio.run(worker.run_due_async(10))) == 7
    counted.stop()
    assert current_traceparent() is None  # nothing of the round left current
    if loop == "sync":
        worker.work(until_done=True)
    else:
        asyncio.run(worker.work_async(until_done=True))
    assert current_traceparent() is None
    return otel, worker, counted


def _shape(spans: list[Any]) -> collections.Counter[Any]:
    """The spans as what they say, ids and times aside: name, attributes,
    status, events, and the same of their parent, up to the root."""
    by_id = {s.context.span_id: s for s in spans}

    def key(span: Any) -> Any:
        parent = None
        if span.parent is not None:
            parent = by_id[span.parent.span_id]  # (every parent is one of these spans)
            assert parent.context.trace_id == span.context.trace_id
            parent = key(parent)
        return (span.name, tuple(sorted(span.attributes.items())),
                span.status.status_code.name, span.status.description,
                tuple(e.name for e in span.events), parent)

    return collections.Counter(key(s) for s in spans)


def _totals(otel: Any) -> dict[Any, Any]:
    """Each metric's points, by their attributes: sums, and histograms' counts.
    Not the due-backlog gauge: it reads the store when the metrics are collected,
    for the engines still alive then (a weak set), so it tells of the moment of
    collection and of garbage collection, not of what the run did."""
    found = {}
    for name, points in otel.metrics().items():
        if name == "genflow.due.backlog":
            continue
        for point in points:
            labels = tuple(sorted((k, v) for k, v in point.attributes.items()
                                  if k != "genflow.engine"))
            found[name, labels] = getattr(point, "value", None) if name != \
                "genflow.step.duration" else point.count
    return found


LOOPS = pytest.mark.parametrize("loop", ["sync", "async"])


@LOOPS
def test_a_traced_round_shares_commits_as_an_untraced_one(fresh, loop):
    """The traced round's commits are the untraced round's, each turn one commit
    of every instance still going; one at a time, a commit per save. The
    async loop's round commits as the sync loop's."""
    _, _, traced = _worker_round(fresh, rounds=True, loop=loop)
    _, _, untraced = _worker_round(fresh, rounds=True, traced=False, loop=loop)
    _, _, alone = _worker_round(fresh, rounds=False, loop=loop)
    assert traced.commits == untraced.commits
    if loop == "async":
        assert traced.commits == _worker_round(fresh, rounds=True)[2].commits
    assert sorted(traced.commits[0]) == sorted([*STEPS, "bad", "flaky", "parent", "plain"])
    assert len(traced.commits) < len(alone.commits)
    assert all(len(ids) == 1 for ids in alone.commits)
    # the same saves either way, shared or not
    assert sorted(i for ids in traced.commits for i in ids) == \
        sorted(i for ids in alone.commits for i in ids)


@LOOPS
def test_a_traced_round_makes_the_spans_and_metrics_of_one_at_a_time(fresh, loop):
    otel, worker, _ = _worker_round(fresh, rounds=True, loop=loop)
    alone_otel, _, _ = _worker_round(fresh, rounds=False, loop=loop)
    spans = otel.spans()
    assert _shape(spans) == _shape(alone_otel.spans())
    assert _totals(otel) == _totals(alone_otel)
    by_id = {s.context.span_id: s for s in spans}
    runs = {s.attributes["genflow.instance_id"]: s for s in named(spans, "genflow.run")
            if s.attributes["genflow.instance_id"] in (*STEPS, "plain")}
    for iid in (*STEPS, "plain"):
        steps = [s for s in named(spans, "genflow.step step")
                 if s.attributes["genflow.instance_id"] == iid]
        assert len(steps) == 3
        # each step's span is its own instance's run's child, in that instance's trace
        assert {by_id[s.parent.span_id].attributes["genflow.instance_id"] for s in steps} == \
            {iid}
        assert {s.parent.span_id for s in steps} == {runs[iid].context.span_id}
        # and it was the current span while the step ran
        assert worker.get(iid).data.seen == [
            f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}-{s.context.trace_flags:02x}"
            for s in sorted(steps, key=lambda s: s.start_time)]
    chain = by_id[runs["s1"].parent.span_id]
    assert (chain.name, by_id[chain.parent.span_id].name) == ("genflow.start", "POST s1")
    assert by_id[runs["plain"].parent.span_id].name == "tick"  # no trace kept: the worker's
    assert len({runs[iid].context.trace_id for iid in STEPS}) == 3


@LOOPS
def test_a_failing_step_in_a_round_is_on_its_own_spans_only(fresh, loop):
    otel, _, _ = _worker_round(fresh, rounds=True, loop=loop)
    errors = [s for s in otel.spans() if s.status.status_code.name == "ERROR"]
    assert sorted((s.name, s.attributes["genflow.instance_id"]) for s in errors) == [
        ("genflow.run", "bad"), ("genflow.step charge", "flaky"),
        ("genflow.step explode", "bad")]
    by_id = {s.context.span_id: s for s in otel.spans()}
    (explode,) = named(errors, "genflow.step explode")
    assert [e.name for e in explode.events] == ["exception"]
    assert by_id[explode.parent.span_id].attributes["genflow.instance_id"] == "bad"
    (run,) = named(errors, "genflow.run")
    assert run.attributes["genflow.status"] == "failed"
    found = otel.metrics()
    assert sum(p.value for p in found["genflow.step.failures"]) == 2
    assert sum(p.value for p in found["genflow.instance.failures"]) == 1
