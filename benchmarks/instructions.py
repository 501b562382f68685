"""W1 to W4 in instructions: figures this shared VM cannot blur.

Wall-clock times here vary by up to 2x from one run of the suite to the next
(the VM's neighbours), so each optimisation of the core was judged by the
instructions one W1 run executes, counted by valgrind's callgrind: the same
count every time for the same code, whatever else the machine is doing.

The count is the difference between a process that runs W1 `10 + n` times and
one that runs it 10 times, divided by `n`: start-up and warm-up cancel out.
Skipped (no figure) when valgrind is not installed.

W2 is one event at k = 1,000 (deliver + resume + dumps + loads, from the same
blob), W3 one 100-step instance on SQLite (per step), W4 a `run_batch` of 100
instances of W4's shape on a fresh SQLite file (per instance, the file's
creation included): the `w2_event`, `w3_instance` and `w4_batch` below. Beside W3,
the bare commit of `benchmarks.w3_durable_steps.run_bare` (its floor) and the
ratio of the two, counted in the same run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from genflow import dumps, new_state, resume
from genflow.batch import run_batch
from genflow.engine import Engine
from genflow.stores import SQLiteStore

from .common import Figure

_RUNS = """
import sys
from {module} import {fn}
for _ in range(int(sys.argv[1])):
    {fn}()
"""
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(fn: str, runs: int, module: str = "benchmarks.w1_seed_loop",
                 warmup: int = 10, genflow_from: Path | None = None) -> int:
    """Instructions executed by `runs` calls of `<module>.<fn>` (after `warmup` calls).

    `genflow_from`: a directory whose genflow is imported in place of this
    checkout's (benchmarks/compiled.py: the compiled build's).
    """
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # str hashes vary the count otherwise
    if genflow_from is not None:  # first on sys.path as the working directory; then benchmarks/
        env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    counts = []
    for n in (warmup, warmup + runs):
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, "-c", _RUNS.format(module=module, fn=fn), str(n)],
            cwd=genflow_from or root, capture_output=True, text=True, check=True, env=env,
        )
        found = _COLLECTED.search(done.stderr)
        if found is None:
            raise RuntimeError(f"callgrind printed no count:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) // runs


_W2_BLOB: list[bytes] = []
_W3_ENGINE: list[Any] = []
_W4_INSTANCES = 100


def w2_event() -> None:
    """W2's k-th event at k = 1,000 (the blob is built on the first call)."""
    from . import w2_long_running as w2

    if not _W2_BLOB:
        wf = w2.LongRunning()
        state = new_state("w2", wf)
        resume(wf, state)
        blob = dumps(wf, state)
        for _ in range(999):
            blob = w2.one_event(blob)
        _W2_BLOB.append(blob)
    w2.one_event(_W2_BLOB[0])


def w3_instance() -> None:
    """One W3 instance: 100 durable steps on SQLite (the store opened on the first call)."""
    from . import w3_durable_steps as w3

    if not _W3_ENGINE:
        path = Path(tempfile.mkdtemp()) / "w3.db"
        _W3_ENGINE.append(Engine(SQLiteStore(path)))
    _W3_ENGINE[0].start(w3.HundredSteps())


def w4_batch() -> None:
    """A W4 batch of `_W4_INSTANCES` on a fresh SQLite file, in this process."""
    from . import w4_batch as w4

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'w4.db'}"
        starts = [(f"i{k}", w4.Small()) for k in range(_W4_INSTANCES)]
        events = [(f"i{k}", "go", None) for k in range(_W4_INSTANCES)]
        run_batch(url, starts=starts, events=events, progress=False)


def _w3_parts(step: float, calls: int) -> list[Figure]:
    """Where a W3 step's instructions go (k per step): the save's UPDATE as
    genflow issues it, the same steps in memory (the core), the blob's `dumps`,
    and what is left, the save path's Python (engine, store, group commit)."""
    parts = {fn: instructions(fn, calls, module="benchmarks.w3_durable_steps",
                              warmup=min(10, calls)) / 100 / 1000
             for fn in ("run_statement", "run_memory", "run_dumps")}
    parts["rest"] = step - sum(parts.values())
    return [Figure("W3 instructions", f"of a step: {case}", parts[fn], parts[fn], parts[fn],
                   "k instr.", 1, note=f"callgrind; {parts[fn] / step:.0%} of the step")
            for fn, case in (("run_statement", "the save's UPDATE alone"),
                             ("run_memory", "the same steps in memory (the core)"),
                             ("run_dumps", "dumps"),
                             ("rest", "the save path's Python (the rest)"))]


def run(quick: bool = False) -> list[Figure]:
    if shutil.which("valgrind") is None:
        return []
    runs = 20 if quick else 100
    counts = {fn: instructions(fn, runs) / 1000
              for fn in ("run_plain", "run_memory", "run_checkpointed")}
    floor = counts["run_plain"]
    figures = [
        Figure("W1 instructions", case, counts[fn], counts[fn], counts[fn], "k instr.", 1,
               note="callgrind, per run" + (f"; {counts[fn] / floor:.1f}x the floor"
                                            if fn != "run_plain" else ""))
        for fn, case in (("run_plain", "plain Python floor"),
                         ("run_memory", "genflow, in memory"),
                         ("run_checkpointed", "genflow, dumps at every checkpoint"))
    ]
    here = "benchmarks.instructions"
    for workload, fn, case, per, calls in (
        ("W2 instructions", "w2_event", "event k=1,000 (deliver, resume, dumps, loads)", 1,
         runs),
        ("W3 instructions", "w3_instance", "durable step, SQLite", 100, max(2, runs // 10)),
        ("W4 instructions", "w4_batch", f"batch of {_W4_INSTANCES}, per instance",
         _W4_INSTANCES, 2),
    ):
        count = instructions(fn, calls, module=here, warmup=min(10, calls)) / per / 1000
        figures.append(Figure(workload, case, count, count, count, "k instr.", 1,
                              note="callgrind"))
        if fn == "w3_instance":  # the floor beside it: a bare commit of a W3-sized blob
            bare = instructions("run_bare", calls, module="benchmarks.w3_durable_steps",
                                warmup=min(10, calls)) / 100 / 1000
            figures.append(Figure(workload, "bare commit (BEGIN; UPDATE; COMMIT)", bare, bare,
                                  bare, "k instr.", 1, note="callgrind, per commit"))
            ratio = count / bare
            figures.append(Figure(workload, "durable step / bare commit", ratio, ratio, ratio,
                                  "x", 1, note="instructions, same run"))
            figures += _w3_parts(count, calls)
    return figures
