"""Queues across worker processes: 4 workers on PostgreSQL share one queue's
limits (global, per key, rate), sampled from outside while they run; kill -9
while admitting loses and doubles nothing."""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from postgres_db import fresh_schema, postgres_dsn
from sched_app import Job

from genflow.engine import Engine
from genflow.queues import Queue
from genflow.stores import SQLiteStore

pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg: pip install -e '.[postgres]'")

from genflow.stores.postgres import PostgresStore

WORKER = Path(__file__).resolve().parents[1] / "support" / "sched_worker.py"


def _spawn(url: str, count: int, lease: float = 5.0) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(WORKER), url, str(count), str(lease)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    return proc


def _steps(log: Path) -> list[tuple[float, int, str, str]]:
    """(time, +1 at a start / -1 at an end, instance, tenant), in time order."""
    events = []
    for line in log.read_text().splitlines():
        kind, n, tenant, at = line.split()
        events.append((float(at), 1 if kind == "start" else -1, n, tenant))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    return events


def _max_overlap(events: list[tuple[float, int, str, str]]) -> tuple[int, dict[str, int]]:
    running = peak = 0
    per_key: dict[str, int] = {}
    peak_key: dict[str, int] = {}
    for _, delta, _n, tenant in events:
        running += delta
        per_key[tenant] = per_key.get(tenant, 0) + delta
        peak = max(peak, running)
        peak_key[tenant] = max(peak_key.get(tenant, 0), per_key[tenant])
    return peak, peak_key


@pytest.mark.slow
@pytest.mark.postgres
def test_four_workers_on_postgres_hold_every_limit(tmp_path, capsys):
    dsn = postgres_dsn()
    schema = fresh_schema()
    store = PostgresStore(dsn, schema=schema, drop_schema_on_close=True)
    url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    log = tmp_path / "steps.log"
    total, keys, rate, period = 1000, 20, 150, 1.0
    engine = Engine(store)
    engine.queues.define(Queue("tenants", concurrency=5, per_key=1, key="tenant", rate=rate,
                               per=period))
    with store.transaction():
        for n in range(total):
            engine.start(Job(tenant=f"t{n % keys}", n=n, pause=0.004, log=str(log)),
                         queue="tenants", id=f"job{n:04d}")
    samples: list[tuple[int, int]] = []
    admissions: dict[str, dt.datetime] = {}
    stop = threading.Event()

    def sample() -> None:
        reader = PostgresStore(dsn, schema=schema, migrate=False)
        table = f'"{schema}".queue_entries'
        while not stop.is_set():
            samples.append(reader.queue_counts("tenants"))
            for instance_id, at in reader._all(
                    f"SELECT instance_id, admitted_at FROM {table} WHERE admitted_at IS NOT NULL"):
                admissions.setdefault(instance_id, at)  # (exact: no float seconds)
            time.sleep(0.01)
        reader.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    workers = [_spawn(url, total) for _ in range(4)]
    try:
        for proc in workers:
            proc.wait(timeout=240)
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
    assert store.count(status="finished") == total  # nothing starved
    assert all(proc.returncode == 0 for proc in workers)
    assert max(running for _, running in samples) <= 5
    assert len(samples) > 50  # sampled throughout, not once
    peak, peak_key = _max_overlap(_steps(log))
    assert peak <= 5 and max(peak_key.values()) <= 1, (peak, peak_key)
    assert sum(1 for line in log.read_text().splitlines() if line.startswith("end")) == total
    # the rate limit: no window of `period` seconds holds more than `rate` admissions
    # (in microseconds, as admission counts them: float seconds since 1970 can put two
    # admissions exactly a period apart inside one window)
    times = sorted(admissions.values())
    assert len(times) == total  # every admission was seen (entries outlive their window)
    window = dt.timedelta(seconds=period)
    worst = max(sum(1 for t in times[i:i + rate + 1] if t - times[i] < window)
                for i in range(len(times)))
    assert worst <= rate
    with capsys.disabled():
        print(f"\n4 workers, {total} instances over {keys} keys (limit 5, 1 per key, "
              f"{rate}/{period:g}s): {total / elapsed:.0f} instances/s, peak running "
              f"{peak}, peak per key {max(peak_key.values())}")
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_kill_9_while_admitting_loses_and_doubles_nothing(tmp_path, kind):
    """Workers admit and run 200 queued instances under a limit of 3 while the
    test kills one with SIGKILL every few tenths of a second: every instance runs
    its step (again only where a kill fell between its end and its checkpoint),
    and the limit held throughout."""
    if kind == "sqlite":
        path = tmp_path / "q.db"
        store = SQLiteStore(path)
        url = f"sqlite:///{path}"
    else:
        dsn = postgres_dsn()
        schema = fresh_schema()
        store = PostgresStore(dsn, schema=schema, drop_schema_on_close=True)
        url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    log = tmp_path / "steps.log"
    total = 200
    engine = Engine(store)
    engine.queues.define(Queue("q", concurrency=3))
    for n in range(total):
        engine.start(Job(tenant="t", n=n, pause=0.02, log=str(log)), queue="q", id=f"j{n:03d}")
    workers = [_spawn(url, total, lease=0.5) for _ in range(2)]
    kills = 0
    deadline = time.monotonic() + 180
    try:
        while store.count(status="finished") < total:
            assert time.monotonic() < deadline, "the workers did not finish"
            time.sleep(0.15 + 0.1 * (kills % 3))
            i = kills % 2
            os.kill(workers[i].pid, signal.SIGKILL)
            workers[i].wait()
            kills += 1
            workers[i] = _spawn(url, total, lease=0.5)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert kills >= 3
    lines = log.read_text().splitlines()
    ends = [line.split()[1] for line in lines if line.startswith("end")]
    # every step ended; steps are at least once: a worker killed after a step's end
    # and before its checkpoint makes that step run again, at most one per kill
    ended = collections.Counter(ends)
    assert set(ended) == {str(n) for n in range(total)}
    assert sum(count - 1 for count in ended.values()) <= kills
    # the runs that ended (a start, then its end): never more than 3 at once; a run
    # killed mid-step held its slot until its lease expired and it ran again
    runs: list[tuple[float, int, str, str]] = []
    open_at: dict[str, float] = {}
    for at, delta, n, tenant in _steps(log):
        if delta == 1:
            open_at[n] = at
        elif n in open_at:
            runs += [(open_at.pop(n), 1, n, tenant), (at, -1, n, tenant)]
    runs.sort(key=lambda e: (e[0], e[1]))
    peak, _ = _max_overlap(runs)
    assert peak <= 3
    assert store.queue_counts("q") == (0, 0)
    store.close()
