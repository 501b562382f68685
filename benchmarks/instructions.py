"""W1 in instructions: a figure this shared VM cannot blur.

Wall-clock times here vary by up to 2x from one run of the suite to the next
(the VM's neighbours), so each optimisation of the core was judged by the
instructions one W1 run executes, counted by valgrind's callgrind: the same
count every time for the same code, whatever else the machine is doing.

The count is the difference between a process that runs W1 `10 + n` times and
one that runs it 10 times, divided by `n`: start-up and warm-up cancel out.
Skipped (no figure) when valgrind is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .common import Figure

_RUNS = """
import sys
from {module} import {fn}
for _ in range(int(sys.argv[1])):
    {fn}()
"""
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(fn: str, runs: int, module: str = "benchmarks.w1_seed_loop") -> int:
    """Instructions executed by `runs` calls of `<module>.<fn>`."""
    root = Path(__file__).resolve().parent.parent
    counts = []
    for n in (10, 10 + runs):
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, "-c", _RUNS.format(module=module, fn=fn), str(n)],
            cwd=root, capture_output=True, text=True, check=True,
        )
        found = _COLLECTED.search(done.stderr)
        if found is None:
            raise RuntimeError(f"callgrind printed no count:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) // runs


def run(quick: bool = False) -> list[Figure]:
    if shutil.which("valgrind") is None:
        return []
    runs = 20 if quick else 100
    counts = {fn: instructions(fn, runs) / 1000
              for fn in ("run_plain", "run_memory", "run_checkpointed")}
    floor = counts["run_plain"]
    return [
        Figure("W1 instructions", case, counts[fn], counts[fn], counts[fn], "k instr.", 1,
               note="callgrind, per run" + (f"; {counts[fn] / floor:.1f}x the floor"
                                            if fn != "run_plain" else ""))
        for fn, case in (("run_plain", "plain Python floor"),
                         ("run_memory", "genflow, in memory"),
                         ("run_checkpointed", "genflow, dumps at every checkpoint"))
    ]
