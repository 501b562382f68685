"""W1 "seed loop": the Go library's README workflow, driven start to finish.

The Go library reports 35.6 µs for this run (19 engine steps). The floor is a
hand-written plain-Python version of the same logic: direct calls and one
msgpack dump per checkpoint.
"""

from __future__ import annotations

import attrs
import msgpack

import genflow
from genflow import For, On, Step, Wait, dumps, handle_callback, loads, new_state, resume

from .common import Figure, figure, per_call_us


@genflow.workflow("bench-w1")
@attrs.define
class SeedLoop:
    i: int = 0
    log: str = ""

    def definition(self):
        yield For("loop", self.i < 5, Step("inc", self.inc))
        yield Step("reset i", self.reset)
        yield For("loop2", self.i < 2,
            Wait("wait", On("event", self.on_event)),
            Step("step2", self.step2),
        )

    def inc(self) -> None:
        self.i += 1
        self.log += "l"

    def reset(self) -> None:
        self.i = 0

    def on_event(self) -> None:
        self.log += "h"
        self.i += 1

    def step2(self) -> None:
        self.log += "a"


def run_memory() -> SeedLoop:
    wf = SeedLoop()
    state = new_state("w1", wf)
    resume(wf, state)
    for _ in range(2):
        handle_callback(state.threads[0].events[0].req, wf, state)
        resume(wf, state)
    return wf


def run_checkpointed() -> SeedLoop:
    """As above, with a dumps at every checkpoint (what a store would save)."""
    wf = SeedLoop()
    state = new_state("w1", wf)

    def save(_kind: object) -> None:
        dumps(wf, state)

    resume(wf, state, save)
    for _ in range(2):
        handle_callback(state.threads[0].events[0].req, wf, state)
        resume(wf, state, save)
    return wf


def run_reloaded() -> SeedLoop:
    """dumps/loads between every call."""
    wf = SeedLoop()
    state = new_state("w1", wf)
    resume(wf, state)
    for _ in range(2):
        wf, state = loads(dumps(wf, state))
        handle_callback(state.threads[0].events[0].req, wf, state)
        wf, state = loads(dumps(wf, state))
        resume(wf, state)
    wf, state = loads(dumps(wf, state))
    return wf


def run_plain() -> dict:
    """The floor: the same logic by hand, one msgpack dump per checkpoint."""
    packb = msgpack.packb
    data = {"i": 0, "log": ""}
    while data["i"] < 5:
        data["i"] += 1
        data["log"] += "l"
        packb(data)
    data["i"] = 0
    packb(data)
    for _event in range(2):
        data["log"] += "h"  # the handler
        data["i"] += 1
        packb(data)
        data["log"] += "a"  # step2
        packb(data)
    return data


def run(quick: bool = False) -> list[Figure]:
    assert run_memory().log == "lllllhaha"
    assert run_checkpointed().log == "lllllhaha"
    assert run_reloaded().log == "lllllhaha"
    assert run_plain()["log"] == "lllllhaha"
    number = 200 if quick else 2000
    # interleaved rounds: the floor and each driver share the VM's speed of the moment
    plain: list[float] = []
    memory: list[float] = []
    checkpointed: list[float] = []
    reloaded: list[float] = []
    for _ in range(7):
        plain += per_call_us(run_plain, number=number * 5, repeat=1)
        memory += per_call_us(run_memory, number=number, repeat=1)
        checkpointed += per_call_us(run_checkpointed, number=number, repeat=1)
        reloaded += per_call_us(run_reloaded, number=number, repeat=1)
    floor = sorted(plain)[len(plain) // 2]
    ratio = lambda samples: f"{sorted(samples)[len(samples) // 2] / floor:.1f}x the floor"  # noqa: E731
    return [
        figure("W1 seed loop", "plain Python floor (msgpack per checkpoint)", plain),
        figure("W1 seed loop", "genflow, in memory", memory, note=ratio(memory)),
        figure("W1 seed loop", "genflow, dumps at every checkpoint", checkpointed,
               note=ratio(checkpointed)),
        figure("W1 seed loop", "genflow, dumps/loads between calls", reloaded,
               note=ratio(reloaded)),
    ]
