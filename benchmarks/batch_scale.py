"""How a batch's cost grows: N instances of W4's shape (three steps, an event,
a step) through `run_batch` from generators, N = 10^4 and 10^5 (and 10^6 when
`GENFLOW_BENCH_MILLION=1`: minutes on two cores), on SQLite and (with
`GENFLOW_BENCH_POSTGRES_DSN`) PostgreSQL.

Each N runs in a process of its own, which reports its peak RSS: memory must
stay bounded (the ids are generated as they are read, never listed) and the
time per instance flat (linear in N).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .common import Figure
from .postgres_workers import dsn

_CHILD = """
import json, sys
from benchmarks.batch_scale import one
print(json.dumps(one(sys.argv[1], int(sys.argv[2]))))
"""


def one(url: str, n: int) -> dict[str, float]:
    """Run the batch of `n` in this process: seconds, peak RSS (MiB), finished."""
    from genflow.batch import run_batch
    from genflow.stores import open_store

    from .w4_batch import Small

    starts = ((f"i{k:07}", Small()) for k in range(n))
    events = ((f"i{k:07}", "go", None) for k in range(n))
    began = time.perf_counter()
    result = run_batch(url, starts=starts, events=events, progress=False)
    seconds = time.perf_counter() - began
    with open_store(url) as store:
        finished = store.count(status="finished")
        if url.startswith("postgresql"):
            store.drop_schema_on_close = True  # type: ignore[attr-defined]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "rss_mib": rss, "finished": finished,
            "failed": result.failed}


def _measure(url: str, n: int) -> dict[str, float]:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _CHILD, url, str(n)], cwd=root,
                          capture_output=True, text=True, check=True)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["finished"] == n and got["failed"] == 0, got
    return got


def sizes(quick: bool) -> list[int]:
    if quick:
        return [1000, 10_000]
    return [10_000, 100_000] + ([1_000_000] if os.environ.get("GENFLOW_BENCH_MILLION") else [])


def run(quick: bool = False) -> list[Figure]:
    figures = []
    targets = [("SQLite", lambda: f"sqlite:///{Path(tempfile.mkdtemp()) / 'scale.db'}")]
    url = dsn()
    if url:
        sep = "&" if "?" in url else "?"
        targets.append(("PostgreSQL", lambda: f"{url}{sep}schema=bench_{uuid.uuid4().hex[:10]}"))
    else:
        print("batch scale on PostgreSQL: skipped (set GENFLOW_BENCH_POSTGRES_DSN)",
              file=sys.stderr)
    for label, make in targets:
        first = None
        for n in sizes(quick):
            got = _measure(make(), n)
            per = got["seconds"] / n * 1e6
            first = first or per
            figures.append(Figure(
                "batch scale", f"{label}, N = {n:,}", n / got["seconds"], n / got["seconds"],
                n / got["seconds"], "inst/s", 1,
                note=f"{got['seconds']:,.1f} s; {per:,.0f} µs per instance ({per / first:.2f}x "
                     f"the smallest N's); peak RSS {got['rss_mib']:,.0f} MiB"))
    return figures
