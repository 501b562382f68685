"""Child workflows across processes on PostgreSQL: 3 workers, 50 parents x 10
children, workers killed with SIGKILL during the fan-out and started again.
Every parent finishes with the right fan-in result; no child is started
twice (each statement's children exist once, with the ids derived from the
parent). The full 4 x 500 x 10 run is benchmarks/children_workers.py."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kids_app import SumOfSquares, expected
from postgres_db import fresh_schema, postgres_dsn

from genflow.engine import Engine

pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg: pip install -e '.[postgres]'")

from genflow.stores.postgres import PostgresStore

WORKER = Path(__file__).resolve().parents[1] / "support" / "kids_worker.py"
PARENTS, WIDTH, WORKERS, LEASE = 50, 10, 3, 2.0

pytestmark = pytest.mark.postgres


def _spawn(dsn: str, schema: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(WORKER), dsn, schema, str(PARENTS), str(LEASE)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    return proc


def test_killed_workers_lose_no_child_and_start_none_twice():
    dsn = postgres_dsn()
    schema = fresh_schema()
    store = PostgresStore(dsn, schema=schema, drop_schema_on_close=True)
    rng = random.Random(16)
    workers: list[subprocess.Popen[str]] = []
    try:
        engine = Engine(store)
        # the workers first, idle: the parents are started under their feet, so that
        # the first kill (a moment later) lands in the fan-out, however fast they are
        workers = [_spawn(dsn, schema) for _ in range(WORKERS)]
        parents = [engine.start(SumOfSquares(base=n * WIDTH, width=WIDTH), id=f"p{n:03}",
                                run=False) for n in range(PARENTS)]
        deadline = time.monotonic() + 50
        kills = 0
        first_kill_mid_run = False
        while store.count(workflow="kids-sum", status="finished") < PARENTS:
            assert time.monotonic() < deadline, "the parents did not all finish in time"
            time.sleep(rng.uniform(0.05, 0.25) if kills == 0 else rng.uniform(0.2, 0.8))
            if kills < 4:
                if kills == 0:
                    first_kill_mid_run = store.count(workflow="kids-square",
                                                     status="finished") < PARENTS * WIDTH
                victim = rng.randrange(len(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = _spawn(dsn, schema)
                kills += 1
        assert kills >= 1 and first_kill_mid_run
        for n, pid in enumerate(parents):
            parent = engine.get(pid)
            assert parent.status.value == "finished", pid
            assert parent.data.total == expected(n * WIDTH, WIDTH), pid
            assert parent.data.squares == [(n * WIDTH + i) ** 2 for i in range(WIDTH)]
            children = engine.list(parent=pid)
            assert [r.id for r in children] == [f"{pid}/squares/1/{i}" for i in range(WIDTH)]
            assert {r.status for r in children} == {"finished"}
        assert store.count(workflow="kids-square") == PARENTS * WIDTH  # none started twice
        assert store.list_outbox(limit=10) == []
    finally:
        for proc in workers:
            proc.kill()
            proc.wait()
        store.close()
