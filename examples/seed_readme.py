"""The Go seed library's README workflow (gorchestrate/async), ported to genflow.

The Go original counts to five in a loop, resets its counter, then loops twice
waiting for an outside event, logging a letter at every move::

    For(wf.I < 5, "loop", Step("inc", ...)),
    Step("reset i", ...),
    For(wf.I < 2, "loop2", Wait("wait", On("event", handler)), Step("step2", ...)),

Driven with resume, event, resume, event, resume its log reads ``lllllhaha``:
five ``l`` from the first loop, then ``h`` (the handler) and ``a`` (step2) per event.

The differences from Go are the point of the port: the loop conditions are
plain booleans computed from the data on every replay (no closures), the handler
is a method, and the whole instance is the pair (data, State) that `dumps` turns
into bytes. `benchmarks/w1_seed_loop.py` times the same workflow; it keeps its own
copy so that the benchmark never changes when this example is edited for readers.

Run it: ``python -m examples.seed_readme``.
"""

from __future__ import annotations

import attrs

import genflow
from genflow import For, On, State, Step, Wait, handle_callback, new_state, resume


@genflow.workflow("seed-readme")
@attrs.define
class SeedReadme:
    """The seed's README workflow: its data is a counter and a log."""

    i: int = 0
    log: str = ""

    def definition(self):
        yield For("loop", self.i < 5,
            Step("loop body", self.count),
        )
        yield Step("reset i", self.reset)
        yield For("loop2", self.i < 2,
            Wait("wait for event", On("event", self.on_event)),
            Step("step2", self.step2),
        )

    def count(self) -> None:
        self.i += 1
        self.log += "l"

    def reset(self) -> None:
        self.i = 0

    def on_event(self) -> None:
        """The handler of "event": it runs when the event is delivered, before step2."""
        self.log += "h"
        self.i += 1

    def step2(self) -> None:
        self.log += "a"


def drive(wf: SeedReadme, state: State) -> None:
    """resume, event, resume, event, resume: exactly the Go README's sequence."""
    resume(wf, state)
    for _ in range(2):
        req = state.threads[0].events[0].req  # the one thread waits for "event"
        handle_callback(req, wf, state)
        resume(wf, state)


def main() -> None:
    wf = SeedReadme()
    state = new_state("seed-readme-1", wf)
    drive(wf, state)
    print(f"log: {wf.log}  status: {state.status.value}")
    assert wf.log == "lllllhaha", wf.log


if __name__ == "__main__":
    main()
