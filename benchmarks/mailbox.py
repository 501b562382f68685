"""What keeping an event costs: a send kept and taken later against a direct send.

The workflow waits for "a", then for "b". The direct run sends "a" then "b"
(each delivered at once); the kept run sends "b" first (no thread waits for
it: kept in the mailbox, after walking the definition for the event and
checking its payload), then "a" (delivered; the moves after it reach the wait
for "b" and take the kept one). Both end in the same State. Measured three
ways, each in one run:

* instructions (callgrind, as `benchmarks/instructions.py` counts them) of one
  pair of sends through the core, on data in memory: the same count every
  time, whatever the machine's neighbours do (no figure without valgrind);
* time of the pair through an `Engine` on a `MemoryStore` and on SQLite, the
  two runs interleaved so that their ratio is the figure to read;
* the walk alone, on a definition of 200 statements: a kept send walks every
  branch of the definition once (a direct send never does).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs

import genflow
from genflow import Engine, On, Step, Wait
from genflow.clock import FakeClock
from genflow.runtime import resume, send
from genflow.state import new_state
from genflow.stores import MemoryStore, SQLiteStore

from .common import Figure, figure, per_call_us
from .instructions import instructions


@genflow.workflow("mailbox-bench")  # (sorts after the CLI tests' own workflows)
@attrs.define
class TwoWaits:
    a: int = 0
    b: int = 0
    #: steps before the waits: a bigger definition for the walk a kept send makes
    steps: int = 0

    def definition(self):
        for n in range(self.steps):
            yield Step(f"step {n}", self.nothing)
        yield Wait("a?", On("a", self.on_a))
        yield Wait("b?", On("b", self.on_b))

    def nothing(self) -> None:
        pass

    def on_a(self, value: int) -> None:
        self.a = value

    def on_b(self, value: int) -> None:
        self.b = value


def core_direct() -> Any:
    wf = TwoWaits()
    state = new_state("m", wf)
    resume(wf, state)
    send(wf, state, "a", 1)
    send(wf, state, "b", 2)
    return wf, state


def core_kept() -> Any:
    wf = TwoWaits()
    state = new_state("m", wf)
    resume(wf, state)
    send(wf, state, "b", 2)  # kept
    send(wf, state, "a", 1)  # delivered, then "b" taken
    return wf, state


def _engine_pair(engine: Engine, kept: bool, counter: list[int]) -> None:
    counter[0] += 1
    iid = engine.start(TwoWaits(), id=f"m{counter[0]}")
    for event, value in ((("b", 2), ("a", 1)) if kept else (("a", 1), ("b", 2))):
        engine.send(iid, event, value)


def walk_us(steps: int, number: int) -> tuple[list[float], list[float]]:
    """A send kept by an instance at the first wait of a definition of `steps`
    steps and two waits, against a send of the event it waits for."""
    wf = TwoWaits(steps=steps)
    state = new_state("w", wf)
    resume(wf, state)
    snapshot = genflow.dumps(wf, state)

    def keep() -> None:
        data, fresh = genflow.loads(snapshot)
        send(data, fresh, "b", 2)

    def deliver() -> None:
        data, fresh = genflow.loads(snapshot)
        send(data, fresh, "a", 1)

    return per_call_us(keep, number=number), per_call_us(deliver, number=number)


def run(quick: bool = False) -> list[Figure]:
    figures: list[Figure] = []
    if shutil.which("valgrind") is not None:
        runs = 20 if quick else 100
        direct = instructions("core_direct", runs, "benchmarks.mailbox") / 1000
        kept = instructions("core_kept", runs, "benchmarks.mailbox") / 1000
        figures.append(Figure("mailbox", "core: direct sends a, b", direct, direct, direct,
                              "k instr.", 1, note="callgrind, per instance (start + 2 sends)"))
        figures.append(Figure("mailbox", "core: b kept, then a", kept, kept, kept, "k instr.",
                              1, note=f"callgrind; {kept / direct:.2f}x the direct sends"))
    number = 50 if quick else 300
    for label, make in (("memory", lambda tmp: MemoryStore()),
                        ("SQLite", lambda tmp: SQLiteStore(Path(tmp) / "m.db"))):
        with tempfile.TemporaryDirectory() as tmp:
            store = make(tmp)
            engine = Engine(store, clock=FakeClock())
            counter = [0]
            direct_samples, kept_samples = [], []

            def direct(engine: Engine = engine, counter: list[int] = counter) -> None:
                _engine_pair(engine, False, counter)

            def kept_first(engine: Engine = engine, counter: list[int] = counter) -> None:
                _engine_pair(engine, True, counter)

            for _ in range(5):  # interleaved: the two share the machine's moods
                direct_samples += per_call_us(direct, number=number // 5, repeat=1)
                kept_samples += per_call_us(kept_first, number=number // 5, repeat=1)
            store.close()
        ratio = sorted(k / d for k, d in zip(kept_samples, direct_samples, strict=True))[2]
        figures.append(figure("mailbox", f"{label}: direct sends a, b", direct_samples,
                              note="per instance: start + 2 sends"))
        figures.append(figure("mailbox", f"{label}: b kept, then a", kept_samples,
                              note=f"{ratio:.2f}x the direct sends (median of 5 "
                                   "interleaved rounds)"))
    keep, deliver = walk_us(200, 20 if quick else 200)
    figures.append(figure("mailbox", "kept send, 200-step definition", keep,
                          note=f"{sorted(keep)[3] / sorted(deliver)[3]:.2f}x a direct send "
                               "there (load + send, in memory)"))
    return figures
