"""What a child workflow costs: starting one child and awaiting it, against
doing the same work in a step of the parent, on SQLite and (when
`GENFLOW_BENCH_POSTGRES_DSN` or `GENFLOW_TEST_POSTGRES_DSN` names one)
PostgreSQL. Each run works in a fresh file or schema, one engine.

* inline: `parents` instances whose one step does the work, started and run
  to the end (`Engine.start`, then `Engine.work(until_idle=True)`);
* child: the same, but the step is the child's: the parent's `Child` wait is
  set up (the child row created in that checkpoint's transaction), a worker
  runs the child, the child's ending save writes its report to the outbox,
  the relay delivers it (row deleted in the parent's save), the parent goes
  on. Per parent: two instances, and a few more writes;
* fan-out: one parent with `Children` over `width` children, per child.

The figure to read is the ratio in one run (child / inline), not the times.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import attrs

import genflow
from genflow import Child, Children, Step
from genflow.engine import Engine
from genflow.stores import SQLiteStore, Store

from .common import Figure, figure


@genflow.workflow("kidbench")
@attrs.define
class Kid:
    n: int = 0
    out: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("work", self.work)

    def work(self) -> None:
        self.out = self.n + 1


@genflow.workflow("kidbench-inline")
@attrs.define
class Inline(Kid):
    """The child's work done by the parent itself, as a step: the baseline."""


@genflow.workflow("kidbench-parent")
@attrs.define
class WithChild:
    n: int = 0
    out: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Child("work", Kid(self.n), into="out", result="out")


@genflow.workflow("kidbench-fanout")
@attrs.define
class FanOut:
    width: int = 10
    outs: list[int] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        yield Children("work", [Kid(n) for n in range(self.width)], into="outs", result="out")


def _dsn() -> str | None:
    return os.environ.get("GENFLOW_BENCH_POSTGRES_DSN") or os.environ.get(
        "GENFLOW_TEST_POSTGRES_DSN")


def stores() -> list[tuple[str, Callable[[], Store]]]:
    folder = Path(tempfile.mkdtemp(prefix="genflow-bench-children-"))

    def sqlite() -> Store:
        return SQLiteStore(folder / f"{uuid.uuid4().hex}.db")

    kinds: list[tuple[str, Callable[[], Store]]] = [("SQLite", sqlite)]
    dsn = _dsn()
    if dsn is None:
        print("children: no PostgreSQL DSN, PostgreSQL cases skipped", file=sys.stderr)
        return kinds
    try:
        from genflow.stores.postgres import PostgresStore
    except ImportError:
        return kinds

    def postgres() -> Store:
        return PostgresStore(dsn, schema=f"bench_{uuid.uuid4().hex[:10]}",
                             drop_schema_on_close=True)

    return [*kinds, ("PostgreSQL", postgres)]


def per_parent(make: Callable[[], Store], cls: type, parents: int) -> float:
    """Microseconds per parent started and run to its end, with its children."""
    store = make()
    try:
        engine = Engine(store)
        started = time.perf_counter()
        for n in range(parents):
            engine.start(cls(n))
        engine.work(until_idle=True, idle_sleep=0.001)
        elapsed = time.perf_counter() - started
        finished = store.count(workflow=genflow.registry.workflow_name(cls), status="finished")
        assert finished == parents, (finished, parents)
        assert store.list_outbox(limit=1) == []
        return elapsed / parents * 1e6
    finally:
        store.close()


def per_child(make: Callable[[], Store], width: int) -> float:
    """Microseconds per child of one fan-out over `width` children."""
    store = make()
    try:
        engine = Engine(store)
        started = time.perf_counter()
        pid = engine.start(FanOut(width))
        engine.work(until_idle=True, idle_sleep=0.001)
        elapsed = time.perf_counter() - started
        assert engine.get(pid).data.outs == [n + 1 for n in range(width)]
        return elapsed / width * 1e6
    finally:
        store.close()


def run(quick: bool = False) -> list[Figure]:
    parents = 50 if quick else 500
    width = 50 if quick else 500
    runs = 1 if quick else 3
    figures = []
    for name, make in stores():
        inline, child = [], []
        for _ in range(runs):  # paired, so a run's ratio compares like with like
            inline.append(per_parent(make, Inline, parents))
            child.append(per_parent(make, WithChild, parents))
        figures.append(figure("children", f"{parents} parents, the work in a step, {name}",
                              inline, note="start + run, per parent"))
        figures.append(figure("children", f"the same work in a Child, {name}", child,
                              note="start + child + report + go on, per parent"))
        figures.append(figure("children", f"a Child's cost over a step's, {name}",
                              [c / i for c, i in zip(child, inline, strict=True)], unit="x",
                              note="child / inline, each run paired"))
        figures.append(figure("children", f"fan-out over {width} children, {name}",
                              [per_child(make, width) for _ in range(runs)],
                              note="per child, one parent"))
    return figures
