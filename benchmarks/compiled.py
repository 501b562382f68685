"""The compiled build (GENFLOW_COMPILE=1, docs/compiled.md) beside the pure one, in one run.

W1 to W4 in instructions (callgrind, as benchmarks/instructions.py counts them:
the same count every run), and W1's wall time in memory as a ratio to the
hand-written floor timed in the same process, pure and compiled processes
taking turns so that both share the machine's speed of the moment.

The compiled build is a wheel of this checkout built with GENFLOW_COMPILE=1
(pip fetches mypy into the build's environment; a C compiler is needed, about
two minutes), unpacked in a temporary directory; GENFLOW_COMPILED_SITE names a
directory that already holds one (a compiled editable checkout, or an unpacked
wheel). Each process says which build it imported, and a figure is refused if
that is not the build asked for. No figures without a C compiler.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .common import Figure
from .instructions import instructions

ROOT = Path(__file__).resolve().parent.parent

_WALL = """
import json, sys
from genflow.cli import build
from benchmarks.common import per_call_us
from benchmarks import w1_seed_loop as w1
number, rounds = int(sys.argv[1]), int(sys.argv[2])
plain, memory = [], []
for _ in range(rounds):
    plain += per_call_us(w1.run_plain, number=number * 5, repeat=1)
    memory += per_call_us(w1.run_memory, number=number, repeat=1)
print(json.dumps({"build": build(), "plain": plain, "memory": memory}))
"""

_BUILD = """
from genflow.cli import build
print(build())
"""


def compiled_site(tmp: Path) -> Path | None:
    """A directory whose genflow is the compiled build (None: no C compiler here)."""
    given = os.environ.get("GENFLOW_COMPILED_SITE")
    if given:
        return Path(given)
    if shutil.which("cc") is None:
        return None
    out = tmp / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
                    str(ROOT)], check=True, env={**os.environ, "GENFLOW_COMPILE": "1"})
    site = tmp / "site"
    with zipfile.ZipFile(next(out.glob("genflow-*.whl"))) as wheel:
        wheel.extractall(site)
    return site


def _run(script: str, site: Path | None, *args: str) -> str:
    """`script` in a process importing the pure checkout (site None) or the compiled build."""
    env = dict(os.environ)
    if site is not None:  # the working directory comes first on sys.path; benchmarks/ after
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", script, *args], cwd=site or ROOT, env=env,
                          capture_output=True, text=True, check=True).stdout


def _check(site: Path) -> None:
    pure, compiled = _run(_BUILD, None).strip(), _run(_BUILD, site).strip()
    if pure != "pure Python" or not compiled.startswith("compiled: "):
        raise RuntimeError(f"builds: {pure!r} from the checkout, {compiled!r} from {site}")


def run(quick: bool = False) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        site = compiled_site(Path(tmp))
        if site is None:
            return []
        _check(site)
        return _wall(site, quick) + _instructions(site, quick)


def _wall(site: Path, quick: bool) -> list[Figure]:
    number, rounds, turns = (100, 2, 2) if quick else (1000, 3, 5)
    samples: dict[str, dict[str, list[float]]] = {
        "pure": {"plain": [], "memory": []}, "compiled": {"plain": [], "memory": []}}
    for _ in range(turns):
        for build, where in (("pure", None), ("compiled", site)):
            got = json.loads(_run(_WALL, where, str(number), str(rounds)))
            assert (got["build"] == "pure Python") == (build == "pure"), got["build"]
            samples[build]["plain"] += got["plain"]
            samples[build]["memory"] += got["memory"]
    median = {build: {k: statistics.median(v) for k, v in s.items()}
              for build, s in samples.items()}
    floor = statistics.median(samples["pure"]["plain"] + samples["compiled"]["plain"])
    pure, compiled = median["pure"]["memory"], median["compiled"]["memory"]
    return [
        Figure("compiled W1", "plain Python floor (msgpack per checkpoint)", floor,
               min(samples["pure"]["plain"]), max(samples["pure"]["plain"]), "µs",
               len(samples["pure"]["plain"]), "both processes"),
        Figure("compiled W1", "genflow pure, in memory", pure, min(samples["pure"]["memory"]),
               max(samples["pure"]["memory"]), "µs", len(samples["pure"]["memory"]),
               f"{pure / floor:.1f}x the floor"),
        Figure("compiled W1", "genflow compiled, in memory", compiled,
               min(samples["compiled"]["memory"]), max(samples["compiled"]["memory"]), "µs",
               len(samples["compiled"]["memory"]),
               f"{compiled / floor:.1f}x the floor; {compiled / pure:.2f}x pure's time"),
    ]


def _instructions(site: Path, quick: bool) -> list[Figure]:
    if shutil.which("valgrind") is None:
        return []
    runs = 20 if quick else 100
    here = "benchmarks.instructions"
    cases = [  # workload, case, module, fn, per, calls
        ("W1", "floor (plain Python)", "benchmarks.w1_seed_loop", "run_plain", 1, runs),
        ("W1", "in memory", "benchmarks.w1_seed_loop", "run_memory", 1, runs),
        ("W1", "dumps at every checkpoint", "benchmarks.w1_seed_loop", "run_checkpointed", 1,
         runs),
        ("W2", "event k=1,000", here, "w2_event", 1, runs),
        ("W3", "durable step, SQLite", here, "w3_instance", 100, max(2, runs // 10)),
        ("W4", "batch of 100, per instance", here, "w4_batch", 100, 2),
    ]
    figures = []
    floor = 0.0
    for workload, case, module, fn, per, calls in cases:
        count = {build: instructions(fn, calls, module=module, warmup=min(10, calls),
                                     genflow_from=where) / per / 1000
                 for build, where in (("pure", None), ("compiled", site))}
        if fn == "run_plain":
            floor = count["pure"]
            figures.append(Figure("compiled instructions", f"{workload} {case}", floor, floor,
                                  floor, "k instr.", 1, "callgrind"))
            continue
        of_floor = (f"; {count['pure'] / floor:.1f}x / {count['compiled'] / floor:.1f}x "
                    "the floor") if workload == "W1" else ""
        for build in ("pure", "compiled"):
            note = "callgrind"
            if build == "compiled":
                note += (f"; {count['compiled'] / count['pure']:.2f}x pure's count"
                         + of_floor)
            figures.append(Figure("compiled instructions", f"{workload} {case}, {build}",
                                  count[build], count[build], count[build], "k instr.", 1, note))
    return figures
