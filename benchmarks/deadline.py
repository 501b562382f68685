"""`deadline=`: what a deadline costs a start, an event's save, and a child.

A start with a deadline checks the argument, keeps one more element in the
blob, and its saves reckon the deadline into the instance's wake time. Counted
in instructions (callgrind: the same count every run, whatever the VM's
neighbours do) on a MemoryStore, so the figure is genflow's own work, not a
database's: a start that runs its instance to its first wait, and an event
delivered to a waiting instance (load, handler, save), and a parent whose
`Child` runs to its end (its report finishing the parent), each without a
deadline and with one, and their ratio. Skipped (no figure) without valgrind.
"""

from __future__ import annotations

import shutil
from typing import Any

import attrs

import genflow
from genflow import Child, Engine, FakeClock, On, Step, Wait
from genflow.stores import MemoryStore

from .common import Figure
from .instructions import instructions


@genflow.workflow("bench-deadline")
@attrs.define
class Order:
    paid: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("hold", lambda: None)
        yield Wait("payment?", On("paid", self.pay))

    def pay(self) -> None:
        self.paid += 1


@genflow.workflow("bench-deadline-parent")
@attrs.define
class Parent:
    deadline: float | None = None
    paid: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Child("pay", Kid(), into="paid", result="paid", deadline=self.deadline)


@genflow.workflow("bench-deadline-kid")
@attrs.define
class Kid:
    paid: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("pay", self.pay)

    def pay(self) -> None:
        self.paid = 1


_ENGINE: list[Engine] = []
#: the deadline of the "with" cases: an hour from the start
_HOUR = 3600


def _engine() -> Engine:
    if not _ENGINE:
        _ENGINE.append(Engine(MemoryStore(), [Order, Parent, Kid], clock=FakeClock()))
    return _ENGINE[0]


def start_plain() -> None:
    _engine().start(Order())


def start_deadline() -> None:
    _engine().start(Order(), deadline=_HOUR)


def _sent(deadline: Any) -> None:
    """A start, and the event that finishes the instance (load, handler, save)."""
    engine = _engine()
    engine.send(engine.start(Order(), deadline=deadline), "paid")


def send_plain() -> None:
    _sent(None)


def send_deadline() -> None:
    _sent(_HOUR)


def _child(deadline: float | None) -> None:
    """A parent started, its child run by a worker round, the report finishing it."""
    engine = _engine()
    engine.start(Parent(deadline))
    engine.run_due()


def child_plain() -> None:
    _child(None)


def child_deadline() -> None:
    _child(_HOUR)


def run(quick: bool = False) -> list[Figure]:
    if shutil.which("valgrind") is None:
        return []
    runs = 20 if quick else 200
    here = "benchmarks.deadline"
    counts = {fn: instructions(fn, runs, module=here) / 1000
              for fn in ("start_plain", "start_deadline", "send_plain", "send_deadline",
                         "child_plain", "child_deadline")}
    figures = []
    for what, plain, timed in (("start, run to its first wait", "start_plain", "start_deadline"),
                               ("start + an event that finishes it", "send_plain",
                                "send_deadline"),
                               ("a parent and its Child, to the end", "child_plain",
                                "child_deadline")):
        ratio = counts[timed] / counts[plain]
        figures += [
            Figure("deadline", f"{what}: without", counts[plain], counts[plain], counts[plain],
                   "k instr.", 1, note="callgrind, MemoryStore"),
            Figure("deadline", f"{what}: with a deadline", counts[timed], counts[timed],
                   counts[timed], "k instr.", 1,
                   note=f"callgrind; {ratio:.3f}x without"),
        ]
    return figures
