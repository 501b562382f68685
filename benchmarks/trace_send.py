"""Following one `Engine.send` from the API to the SQLite write: how many
function entries, calls across genflow modules, crossings of the engine/core
seam, replays of the definition and SQL statements it takes.

Issue 14 measured the engine of the previous round at 211 function entries,
83 cross-module calls, the engine and the runtime alternating ten times, three
replays and four SQL statements for a send that runs one step. The figures here
are counted by a profile hook (they do not vary from run to run).

The seam is counted two ways. *Turns* counts every change of side among the
function entries the profiler sees, and it sees each resumption of a generator
as an entry: an engine operation is a generator that `yield from`s the core's,
so each value the core yields to the driver passes back through the engine's
frames. *Seam calls* counts only real calls from one side into the other: one
down (the operation), and one up per checkpoint the core hands its driver (the
engine's saver, which writes the durable ones: a send that runs a step must save
after the event and after the step, before anything else runs).
"""

from __future__ import annotations

import inspect
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs

import genflow
from genflow import Engine, On, Step, Wait
from genflow.clock import FakeClock
from genflow.stores import SQLiteStore

from .common import Figure


@genflow.workflow("bench-trace-send")
@attrs.define
class Counter:
    ticks: int = 0
    total: int = 0

    def definition(self):
        yield Wait("tick?", On("tick", self.on_tick))
        yield Step("add", self.add)
        yield Wait("again?", On("tick", self.on_tick))

    def on_tick(self, n: int) -> None:
        self.ticks = n

    def add(self) -> None:
        self.total += self.ticks


def _module(frame: Any) -> str | None:
    name = frame.f_globals.get("__name__", "")
    return name if name.startswith("genflow") else None


_GENERATOR = inspect.CO_GENERATOR


def _side(module: str | None) -> str | None:
    return "engine" if module == "genflow.engine" else \
        "core" if module in ("genflow.runtime", "genflow.replay") else None


def trace() -> dict[str, int]:
    """Counts for one `send` (the instance waits at 'tick?', runs 'add', waits again)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "trace.db")
        engine = Engine(store, clock=FakeClock())
        iid = engine.start(Counter())
        engine.send(iid, "tick", 1)  # warm: caches, prepared statements
        iid = engine.start(Counter())
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        counts = {"entries": 0, "cross": 0, "turns": 0, "replays": 0, "seam": 0,
                  "checkpoints": 0}
        last_side: list[str] = []
        frames: set[int] = set()  # generator frames seen: a later entry is a resumption

        def profile(frame: Any, event: str, arg: Any) -> None:
            if event != "call":
                return
            module = _module(frame)
            if module is None:
                return
            counts["entries"] += 1
            caller = frame.f_back
            caller_module = _module(caller) if caller is not None else None
            if caller_module is not None and caller_module != module:
                counts["cross"] += 1
            if frame.f_code.co_name == "__iter__" and module == "genflow.replay":
                counts["replays"] += 1
            side = _side(module)
            if side is not None and last_side and last_side[-1] != side:
                counts["turns"] += 1
            if side is not None:
                last_side.append(side)
            resumed = frame.f_code.co_flags & _GENERATOR and id(frame) in frames
            if frame.f_code.co_flags & _GENERATOR:
                frames.add(id(frame))
            caller_side = _side(caller_module)
            if side is not None and caller_side is not None and side != caller_side \
                    and not resumed:
                counts["seam"] += 1
                if side == "engine" and frame.f_code.co_name == "__call__":
                    counts["checkpoints"] += 1

        sys.setprofile(profile)
        try:
            engine.send(iid, "tick", 2)
        finally:
            sys.setprofile(None)
        store._db.set_trace_callback(None)
        # SQLite's trace reports a statement again for each trigger it fires
        distinct = [s for i, s in enumerate(statements) if i == 0 or s != statements[i - 1]]
        counts["sql"] = sum(1 for s in distinct
                            if s.split(None, 1)[0].upper() in ("SELECT", "UPDATE", "INSERT",
                                                               "DELETE"))
        store.close()
        return counts


def run(quick: bool = False) -> list[Figure]:
    counts = trace()
    return [Figure("send trace", what, counts[key], counts[key], counts[key], "", 0,
                   note="one Engine.send on SQLite (a handler, a step, a wait)")
            for key, what in (("entries", "function entries"), ("cross", "cross-module calls"),
                              ("turns", "engine/core turns"),
                              ("seam", "engine/core seam calls"),
                              ("checkpoints", "of them, checkpoints to the saver"),
                              ("replays", "replays"),
                              ("sql", "SQL statements"))]
