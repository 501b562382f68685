"""kill -9 of a worker in the middle of firing a tick (inside the transaction
that starts the tick's instance and advances the schedule): the tick fires
once, later, and no tick is lost."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from postgres_db import fresh_schema, postgres_dsn
from sched_app import Report

from genflow.engine import Engine
from genflow.schedules import instance_id_for
from genflow.stores import SQLiteStore

WORKER = Path(__file__).resolve().parents[1] / "support" / "sched_worker.py"


def _spawn(url: str, log: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, GENFLOW_SCHED_LOG=str(log), GENFLOW_SCHED_SLEEP="0.3")
    proc = subprocess.Popen([sys.executable, str(WORKER), url, "1000000", "0.5"],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("ready")
    return proc


def _lines(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_kill_9_while_firing_a_tick(tmp_path, kind):
    if kind == "sqlite":
        path = tmp_path / "s.db"
        store = SQLiteStore(path)
        url = f"sqlite:///{path}"
    else:
        dsn = postgres_dsn()  # (skips first when there is no PostgreSQL to use)
        from genflow.stores.postgres import PostgresStore

        schema = fresh_schema()
        store = PostgresStore(dsn, schema=schema, drop_schema_on_close=True)
        url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    log = tmp_path / "firing.log"
    engine = Engine(store)
    engine.schedules.add("tick", Report(), every=dt.timedelta(seconds=0.5),
                         factory="sched-slow", catchup="all", overlap="allow",
                         deadline=dt.timedelta(hours=1))
    first = engine.schedules.get("tick").next_tick
    kills = 0
    deadline = time.monotonic() + 90
    while kills < 5:
        assert time.monotonic() < deadline
        proc = _spawn(url, log)
        seen = _lines(log)
        while _lines(log) == seen:  # wait until it is inside a firing transaction
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    # the killed transactions wrote nothing: their ticks are still due
    info = engine.schedules.get("tick")
    assert info.fired == len(store.list(workflow="sched-report"))
    while engine.schedules.run_due():  # a worker that lives (no sleep in its factory)
        pass
    info = engine.schedules.get("tick")
    started = sorted(r.id for r in store.list(workflow="sched-report"))
    expected = []
    tick = first
    while tick is not None and tick < info.next_tick:
        expected.append(instance_id_for("tick", tick))
        tick = info.schedule.next_after(tick)
    assert started == sorted(expected)  # every tick once, none lost
    assert info.fired == len(started)
    for instance_id in started:  # each with its run's deadline, written with it
        instance = engine.get(instance_id)
        assert instance.state.deadline is not None
        assert dt.timedelta(0) < instance.state.deadline - instance.updated_at \
            <= dt.timedelta(hours=1)
    assert _lines(log) >= kills  # the kills did land inside a firing
    store.close()
