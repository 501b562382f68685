"""`WaitFor(..., timeout=Timeout(...))`: what a deadline costs a condition.

The same approval three ways, each started and then approved by an event to
its inbox thread, which sets the flag the main thread waits on: a `WaitFor`
with no timeout, one with a `Timeout` (its timer armed on arrival, dropped
when the condition holds), and the way it was written before WaitFor took a
timeout, a `Wait` with an `On` and a `Timeout`. Counted in instructions
(callgrind: the same count every run, whatever the VM's neighbours do) on a
MemoryStore, so the figure is genflow's own work; the ratios are to the
WaitFor with no timeout. Skipped (no figure) without valgrind.
"""

from __future__ import annotations

import shutil

import attrs

import genflow
from genflow import Engine, FakeClock, Go, On, Step, Timeout, Wait, WaitFor
from genflow.stores import MemoryStore

from .common import Figure
from .instructions import instructions

#: the approval's deadline: a day after the wait began
_DAY = 86400


@attrs.define
class _Approval:
    approved: bool = False
    escalated: bool = False

    def inbox(self):  # type: ignore[no-untyped-def]
        yield Wait("decision", On("approve", self.approve))

    def approve(self) -> None:
        self.approved = True

    def escalate(self) -> None:
        self.escalated = True


@genflow.workflow("bench-waitfor")
@attrs.define
class Plain(_Approval):
    def definition(self):  # type: ignore[no-untyped-def]
        yield Go("inbox", self.inbox, daemon=True)
        yield WaitFor("approved?", self.approved)


@genflow.workflow("bench-waitfor-timeout")
@attrs.define
class Timed(_Approval):
    def definition(self):  # type: ignore[no-untyped-def]
        yield Go("inbox", self.inbox, daemon=True)
        yield WaitFor("approved?", self.approved,
                      timeout=Timeout("expired", _DAY, Step("escalate", self.escalate)))


@genflow.workflow("bench-waitfor-as-wait")
@attrs.define
class AsWait(_Approval):
    def definition(self):  # type: ignore[no-untyped-def]
        yield Wait("approved?", On("approve", self.approve),
                   Timeout("expired", _DAY, Step("escalate", self.escalate)))


_ENGINE: list[Engine] = []


def _approved(data: _Approval) -> None:
    """A start, and the event that approves it (load, handler, save, the wait over)."""
    if not _ENGINE:
        _ENGINE.append(Engine(MemoryStore(), [Plain, Timed, AsWait], clock=FakeClock()))
    engine = _ENGINE[0]
    engine.send(engine.start(data), "approve")


def plain() -> None:
    _approved(Plain())


def timed() -> None:
    _approved(Timed())


def as_wait() -> None:
    _approved(AsWait())


def run(quick: bool = False) -> list[Figure]:
    if shutil.which("valgrind") is None:
        return []
    runs = 20 if quick else 200
    counts = {fn: instructions(fn, runs, module="benchmarks.waitfor_timeout") / 1000
              for fn in ("plain", "timed", "as_wait")}
    base = counts["plain"]
    return [Figure("WaitFor timeout", f"start + the approving event: {what}", counts[fn],
                   counts[fn], counts[fn], "k instr.", 1,
                   note=f"callgrind, MemoryStore; {counts[fn] / base:.3f}x the plain WaitFor")
            for fn, what in (("plain", "WaitFor, no timeout"), ("timed", "WaitFor with a Timeout"),
                             ("as_wait", "Wait with On and a Timeout"))]
