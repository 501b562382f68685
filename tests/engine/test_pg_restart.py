"""PostgreSQL killed and restarted under four running workers.

The test starts a throwaway cluster of its own (`.ci/postgres`), never the
shared server: four worker processes (`pg_worker.py work`) run instances of
many short steps; the server is stopped with `pg_ctl stop -m immediate` (a
crash: no shutdown checkpoint, every backend killed at once), left down for a
few seconds, and started again, twice. Every instance must finish, no worker
may exit, and no step checkpointed before a crash may run again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from pg_app import SlowSteps
from postgres_db import POSTGRES_REQUIRED

from genflow.engine import Engine

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CI_POSTGRES = ROOT / ".ci" / "postgres"
WORKER = ROOT / "tests" / "support" / "pg_worker.py"


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@attrs.define
class Cluster:
    """A PostgreSQL cluster in `dir` (made by `.ci/postgres start`), to crash at will."""

    dir: Path
    dsn: str
    bindir: Path

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def crash(self) -> None:
        self._pg_ctl("stop", "-m", "immediate", "-w")

    def start(self) -> None:
        port = (self.dir / "port").read_text().strip()
        self._pg_ctl("-l", str(self.dir / "server.log"), "-w", "-t", "60", "-o",
                     f"-c listen_addresses=127.0.0.1 -p {port} -k {self.dir} -c fsync=off "
                     "-c max_connections=200", "start")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not POSTGRES_REQUIRED:
        pytest.importorskip("psycopg", reason="pip install -e '.[postgres]'")
    bindir = _bindir()
    if bindir is None and os.geteuid() != 0 and not POSTGRES_REQUIRED:
        pytest.skip("no PostgreSQL server binaries to start a throwaway cluster")
    where = Path(tempfile.mkdtemp(prefix="genflow-pg-restart-"))
    os.chmod(where, 0o755)
    try:
        started = subprocess.run([str(CI_POSTGRES), "start", str(where)], capture_output=True,
                                 text=True, timeout=600)
        assert started.returncode == 0, started.stderr
        dsn = started.stdout.strip().rpartition("=")[2]
        bindir = _bindir()
        assert bindir is not None
        made = Cluster(where, dsn, bindir)
        # The cluster is tuned for tests (synchronous_commit=off): a crash would
        # lose acknowledged commits, by that setting's design. The workers'
        # role commits durably, as in production, so a checkpoint survives.
        import psycopg

        port = (where / "port").read_text().strip()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                             autocommit=True) as conn:
            conn.execute("ALTER ROLE genflow SET synchronous_commit = on")
        made.crash()  # a clean slate of settings, and a first crash recovery
        made.start()
        yield made
    finally:
        subprocess.run([str(CI_POSTGRES), "stop", str(where)], capture_output=True, timeout=120)
        shutil.rmtree(where, ignore_errors=True)


def _log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_workers_survive_postgres_crashing_and_restarting(cluster, tmp_path):
    from genflow.stores.postgres import PostgresStore

    count, workers, lease, down = 48, 4, 2.0, 4.0
    log = tmp_path / "executions.log"
    schema = "restart"
    client_store = PostgresStore(cluster.dsn, schema=schema, retry_seconds=30)
    client = Engine(client_store)
    for n in range(count):
        client.start(SlowSteps(steps=16, pause=0.02, log_path=str(log)), id=f"r{n:02}",
                     run=False)
    total_steps = count * 16

    def checkpointed() -> set[str]:
        return {key for r in client_store.list() for key in client.get(r.id).data.done}

    procs = [subprocess.Popen([sys.executable, str(WORKER), "work", cluster.dsn, schema,
                               str(count), str(lease), "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    crashes: list[tuple[int, set[str]]] = []  # (log lines, keys checkpointed) at each crash
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("ready")
        for share in (0.25, 0.6):
            deadline = time.monotonic() + 120
            while len(_log(log)) < share * total_steps:
                assert time.monotonic() < deadline, "the workers made no progress"
                assert all(p.poll() is None for p in procs), "a worker exited"
                time.sleep(0.05)
            snapshot = checkpointed()
            crashes.append((len(_log(log)), snapshot))
            cluster.crash()
            time.sleep(down)  # longer than the workers' retry_seconds: their loop retries
            assert all(p.poll() is None for p in procs), "a worker exited while the server was down"
            cluster.start()
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "processed" in out
    errs = "".join(err for _, err in outputs)
    # each worker logged its attempts while the server was away: attempt numbers and waits
    assert "genflow.worker WARNING" in errs and "(attempt 1)" in errs
    assert "next attempt in" in errs

    for n in range(count):
        inst = client.get(f"r{n:02}")
        assert inst.status.value == "finished", (inst.id, inst.status, inst.error)
        assert inst.data.n == 16 and len(set(inst.data.done)) == 16
    executions = _log(log)
    assert set(executions) == checkpointed()  # every step ran, and what ran is stored
    for at_crash, before in crashes:
        again = [key for key in executions[at_crash:] if key in before]
        assert again == [], f"steps checkpointed before a crash ran again: {again[:5]}"
    # a step runs twice only when the crash took its checkpoint: at most one per
    # worker per crash (at least once, never lost)
    assert len(executions) - len(set(executions)) <= workers * len(crashes)
    client_store.close()
