"""W5 "scale": a workflow of N statements resumed at its last one, and a fan-out of N threads.

Two curves, N = 10, 100, 1,000, each point in µs and as a ratio to N = 10 in
the same run:

* **long**: N - 1 steps, then a wait; the instance stands at the wait. One
  event = `loads` + deliver + resume to the end: the replay walks the whole
  definition to the last statement (by its path hint), and nothing else grows.
* **fan-out**: one `Go` per thread, N threads each waiting for its own event.
  Starting = resume from nothing until all N wait; one event = `loads` +
  deliver to the last thread + resume (that thread ends, the others stay).
"""

from __future__ import annotations

import attrs

import genflow
from genflow import Go, On, Step, Wait, deliver, dumps, loads, new_state, resume

from .common import Figure, figure, per_call_us

SIZES = (10, 100, 1000)


@genflow.workflow("scale-w5-long")
@attrs.define
class Long:
    size: int = 10
    done: int = 0

    def definition(self):
        for index in range(self.size - 1):
            yield Step(f"s{index}", self.step)
        yield Wait("last", On("go", self.on_go))

    def step(self) -> None:
        self.done += 1

    def on_go(self) -> None:
        self.done += 1


@genflow.workflow("scale-w5-fanout")
@attrs.define
class FanOut:
    threads: int = 10
    done: int = 0

    def definition(self):
        for index in range(self.threads):
            yield Go(f"t{index}", self.branch, id=f"t{index}")

    def branch(self, thread_id: str):
        yield Wait(f"wait {thread_id}", On("go", self.on_go))

    def on_go(self) -> None:
        self.done += 1


def waiting(wf: object) -> bytes:
    """The blob of `wf` run until it waits."""
    state = new_state("w5", wf)
    resume(wf, state)
    return dumps(wf, state)


def one_event(blob: bytes, thread: int = 0) -> object:
    """`loads`, deliver "go" to the waiting thread number `thread`, resume: the data after."""
    wf, state = loads(blob)
    deliver(state.threads[thread].events[0].req, wf, state)
    return wf


def fan_out(threads: int) -> FanOut:
    wf = FanOut(threads=threads)
    state = new_state("w5", wf)
    resume(wf, state)
    assert len(state.threads) == threads
    return wf


def _curve(name: str, case: str, samples: dict[int, list[float]], note: str) -> list[Figure]:
    base = figure(name, "", samples[SIZES[0]]).median
    return [figure(name, case.format(n=n), s,
                   note=f"{note}; {figure(name, '', s).median / base:.1f}x N={SIZES[0]}")
            for n, s in samples.items()]


def run(quick: bool = False) -> list[Figure]:
    budget = 200 if quick else 2000
    long: dict[int, list[float]] = {}
    start: dict[int, list[float]] = {}
    event: dict[int, list[float]] = {}
    for n in SIZES:
        number = max(5, budget // n)
        blob = waiting(Long(size=n))
        wf = one_event(blob)
        assert isinstance(wf, Long) and wf.done == n, wf
        long[n] = per_call_us(lambda b=blob: one_event(b), number=number, repeat=5)
        start[n] = per_call_us(lambda n=n: fan_out(n), number=max(2, number // 4), repeat=5)
        blob = waiting(FanOut(threads=n))
        wf = one_event(blob, n - 1)
        assert isinstance(wf, FanOut) and wf.done == 1, wf
        event[n] = per_call_us(lambda b=blob, n=n: one_event(b, n - 1), number=number, repeat=5)
    return [
        *_curve("W5 long", "{n} statements, event at the last", long,
                "loads + deliver + resume"),
        *_curve("W5 fan-out", "start {n} threads", start, "resume until all wait"),
        *_curve("W5 fan-out", "event to thread {n} of {n}", event,
                "loads + deliver + resume"),
    ]
