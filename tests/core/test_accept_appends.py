"""Steps at once that append to one list, as a user writes a fan-in
(`self.results.append(...)`): every step's items land, each step runs once,
and the steps run at once, rather than each append conflicting with the
others and running again alone (docs/statements.md, "Steps at once")."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

import genflow
from genflow import Go, Step, WaitFor, new_state
from genflow.runtime import Operation, drive_async

RUNS: Counter[str] = Counter()


class Gauge:
    now = peak = 0


@genflow.workflow("accept-appends")
@attrs.define
class Gather:
    pauses: list[int] = attrs.field(factory=lambda: [0, 0, 0, 0])
    results: list[str] = attrs.field(factory=list)
    by_item: dict[str, list[int]] = attrs.field(factory=lambda: {"x": [1]})
    replace: bool = False

    def definition(self):
        for i in range(len(self.pauses)):
            yield Go(f"ask {i}", Step(f"get {i}", functools.partial(self.get, i)), id=f"t{i}")
        if self.replace:
            yield Go("reset", Step("clear", self.clear), id="reset")
        yield WaitFor("all in", len(self.results) >= len(self.pauses))

    async def get(self, i: int) -> None:
        RUNS[f"get {i}"] += 1
        Gauge.now += 1
        Gauge.peak = max(Gauge.peak, Gauge.now)
        for _ in range(1 + self.pauses[i]):  # (at least once: the others start)
            await asyncio.sleep(0)
        Gauge.now -= 1
        self.results.append(f"r{i}")
        self.by_item["x"].append(i)

    async def clear(self) -> None:
        RUNS["clear"] += 1
        self.results = []


def run(wf: Gather) -> Operation:
    RUNS.clear()
    Gauge.now = Gauge.peak = 0
    op = Operation(wf, new_state("g-1", wf), None, None)
    asyncio.run(drive_async(op.resume(1000)))
    return op


@settings(max_examples=40, deadline=None)
@given(pauses=st.lists(st.integers(0, 5), min_size=2, max_size=6))
def test_appends_of_steps_at_once_all_land_once_each(pauses: list[int]) -> None:
    wf = Gather(pauses=pauses)
    op = run(wf)
    assert op.state.status.value == "finished"
    assert op.conflicts == []
    assert Gauge.peak == len(pauses)  # all at once
    assert all(n == 1 for n in RUNS.values()) and len(RUNS) == len(pauses)
    # each once, in the order they landed: the same order in both lists
    assert sorted(wf.results) == sorted(f"r{i}" for i in range(len(pauses)))
    assert wf.by_item == {"x": [1, *(int(r[1:]) for r in wf.results)]}


def test_a_list_replaced_meanwhile_is_a_conflict_and_the_append_runs_again() -> None:
    wf = Gather(pauses=[3], results=["old"], replace=True)
    op = run(wf)
    assert op.state.status.value == "finished"
    assert [c.place for c in op.conflicts] == ["results"]
    assert wf.results == ["r0"] and RUNS == {"get 0": 2, "clear": 1}
