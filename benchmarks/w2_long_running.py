"""W2 "long-running": the cost of the k-th event must not grow with k.

loop forever: wait for "tick" (handler n += 1), then step "work" total += n.
Cost of the k-th event = deliver + resume until waiting + dumps + loads.
"""

from __future__ import annotations

import time

import attrs

import genflow
from genflow import For, On, Step, Wait, dumps, handle_callback, loads, new_state, resume

from .common import Figure, figure


@genflow.workflow("bench-w2")
@attrs.define
class LongRunning:
    n: int = 0
    total: int = 0

    def definition(self):
        yield For("forever", True, Wait("tick?", On("tick", self.on_tick)), Step("work", self.work))

    def on_tick(self) -> None:
        self.n += 1

    def work(self) -> None:
        self.total += self.n


def one_event(blob: bytes) -> bytes:
    wf, state = loads(blob)
    handle_callback(state.threads[0].events[0].req, wf, state)
    resume(wf, state)
    return dumps(wf, state)


def run(quick: bool = False) -> list[Figure]:
    wf = LongRunning()
    state = new_state("w2", wf)
    resume(wf, state)
    blob = dumps(wf, state)
    figures = []
    sample = 100 if quick else 500
    marks = (10, 100, 1000, 10000)
    k = 0
    for mark in marks:
        while k < mark - 1:
            blob = one_event(blob)
            k += 1
        batches = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(sample // 5):
                blob_next = one_event(blob)  # the k-th event, measured from the same blob
            batches.append((time.perf_counter() - start) / (sample // 5) * 1e6)
        wf_k, _ = loads(blob_next)
        assert wf_k.n == mark and wf_k.total == mark * (mark + 1) // 2, (wf_k, mark)
        figures.append(figure("W2 long-running", f"event k={mark}", batches,
                              note=f"blob {len(blob_next)} bytes"))
    base = figures[0].median
    last = figures[-1]
    figures[-1] = attrs.evolve(last, note=f"{last.note}; {last.median / base:.2f}x k=10")
    return figures
