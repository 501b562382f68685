"""Issue 16's fault run: 4 worker processes on PostgreSQL, 500 parents x 10
children (`tests/support/kids_app.py`: each parent sums its children's squares),
a worker killed with SIGKILL every second or so (and started again) while
the fan-outs run. It asserts every parent finished with the right sum, each
statement's children exist once (500 x 10 rows, their ids derived from the
parent), the outbox is empty; it reports the wall time and children per second.

    GENFLOW_TEST_POSTGRES_DSN=postgresql://... python -m benchmarks.children_workers
        [--parents 500] [--width 10] [--workers 4] [--kills 10]

Not in `python -m benchmarks` (it needs PostgreSQL and a minute): its figure
is quoted in docs/together.md.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent.parent / "tests" / "support"
sys.path.insert(0, str(SUPPORT))

from kids_app import SumOfSquares, expected  # noqa: E402

from genflow.engine import Engine  # noqa: E402
from genflow.stores.postgres import PostgresStore  # noqa: E402

WORKER = SUPPORT / "kids_worker.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.children_workers")
    parser.add_argument("--parents", type=int, default=500)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease", type=float, default=3.0)
    args = parser.parse_args(argv)
    dsn = os.environ.get("GENFLOW_BENCH_POSTGRES_DSN") or os.environ.get(
        "GENFLOW_TEST_POSTGRES_DSN")
    if not dsn:
        parser.error("set GENFLOW_TEST_POSTGRES_DSN (or GENFLOW_BENCH_POSTGRES_DSN)")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(dsn, schema=schema, drop_schema_on_close=True)
    rng = random.Random(16)

    def spawn() -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(WORKER), dsn, schema, str(args.parents),
                                 str(args.lease)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        return proc

    workers: list[subprocess.Popen[str]] = []
    try:
        engine = Engine(store)
        with store.transaction():
            for n in range(args.parents):
                engine.start(SumOfSquares(base=n * args.width, width=args.width),
                             id=f"p{n:04}", run=False)
        started = time.monotonic()
        workers = [spawn() for _ in range(args.workers)]
        kills = 0
        while store.count(workflow="kids-sum", status="finished") < args.parents:
            time.sleep(rng.uniform(0.5, 1.5))
            if kills < args.kills:
                victim = rng.randrange(len(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = spawn()
                kills += 1
        elapsed = time.monotonic() - started
        for n in range(args.parents):
            parent = engine.get(f"p{n:04}")
            assert parent.data.total == expected(n * args.width, args.width), parent.id
        children = store.count(workflow="kids-square")
        assert children == args.parents * args.width, children
        assert store.list_outbox(limit=1) == []
        print(f"{args.workers} workers, {args.parents} parents x {args.width} children, "
              f"{kills} kills (SIGKILL): every parent right, {children} children (none twice), "
              f"{elapsed:.1f} s, {children / elapsed:.0f} children/s")
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
