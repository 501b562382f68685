"""PostgreSQL: schema migrations, many worker processes, kill -9 and takeover,
concurrent senders, LISTEN/NOTIFY wake-ups.

Every test needs `GENFLOW_TEST_POSTGRES_DSN`; without it they are skipped with
a visible reason (and fail in CI, where `GENFLOW_REQUIRE_POSTGRES=1`).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_app import PgOrder, SlowSteps, Tally, expected
from postgres_db import fresh_schema, postgres_dsn

from genflow import WorkflowStatus
from genflow.engine import Engine
from genflow.errors import (
    GenflowError,
    ReadOnlyStoreError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from genflow.stores import InstanceRecord, open_store

pytestmark = pytest.mark.postgres

SUPPORT = Path(__file__).resolve().parents[1] / "support"
WORKER = SUPPORT / "pg_worker.py"
T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def dsn() -> str:
    return postgres_dsn()


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A fresh schema, dropped after the test."""
    import psycopg

    from genflow.stores.postgres import split_dsn

    name = fresh_schema()
    yield name
    with psycopg.connect(split_dsn(dsn)[0], autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def pg(dsn: str, schema: str):
    from genflow.stores.postgres import PostgresStore

    store = PostgresStore(dsn, schema=schema)
    yield store
    store.close()


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


def rec(id_: str, **kw) -> InstanceRecord:
    return InstanceRecord(id=id_, **({"workflow": "wf", "status": "waiting", "blob": b"x"} | kw))


def sql(store, query: str, *params):
    with store._pool.connection() as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


# -- schema ---------------------------------------------------------------------------------------


def test_schema_is_created_versioned_and_migrated_once(dsn, schema, pg):
    from genflow.stores.postgres import SCHEMA_VERSION, PostgresStore

    rows = sql(pg, f"SELECT version, description FROM {schema}.schema_migrations")
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert pg.schema_version() == SCHEMA_VERSION
    indexes = {r[0] for r in sql(pg, "SELECT indexname FROM pg_indexes WHERE schemaname = %s",
                                  schema)}
    assert {"instances_due", "instances_waiting", "instances_status"} <= indexes
    pg.create(rec("kept"))
    with PostgresStore(dsn, schema=schema) as again:  # reopening changes nothing
        assert again.get("kept").blob == b"x"
    assert len(sql(pg, f"SELECT * FROM {schema}.schema_migrations")) == SCHEMA_VERSION
    sql(pg, f"INSERT INTO {schema}.schema_migrations VALUES (99, 'from the future')")
    with pytest.raises(GenflowError, match=r"version 99.*upgrade genflow"):
        PostgresStore(dsn, schema=schema)


def test_without_migrate_an_empty_schema_is_refused(dsn):
    from genflow.stores.postgres import PostgresStore

    with pytest.raises(GenflowError, match="migrate=True"):
        PostgresStore(dsn, schema=fresh_schema(), migrate=False)


def test_concurrent_first_opens_migrate_once(dsn, schema):
    from genflow.stores.postgres import SCHEMA_VERSION, PostgresStore

    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    stores = []

    def open_one():
        barrier.wait()
        try:
            stores.append(PostgresStore(dsn, schema=schema))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(sql(stores[0], f"SELECT * FROM {schema}.schema_migrations")) == SCHEMA_VERSION
    for store in stores:
        store.close()


def test_open_store_url_names_the_schema(dsn, schema):
    from genflow.stores.postgres import PostgresStore

    with open_store(with_schema(dsn, schema)) as store:
        assert isinstance(store, PostgresStore) and store.schema == schema
        store.create(rec("a"))
    with PostgresStore(dsn, schema=schema) as store:
        assert store.get("a").workflow == "wf"
    with pytest.raises(StoreUnavailableError, match=r"cannot open the store: .*unavailable"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
                      retry_seconds=0.5)


@pytest.mark.parametrize("name", ["1st", "a-b", "x" * 64, "semi;colon", 'quo"te'])
def test_odd_schema_names_are_refused(dsn, name):
    from genflow.stores.postgres import PostgresStore

    with pytest.raises(GenflowError, match="schema name"):
        PostgresStore(dsn, schema=name)


def test_naive_datetimes_are_refused(pg):
    with pytest.raises(ValueError, match="aware"):
        pg.create(rec("a", wake_at=dt.datetime(2030, 1, 1)))


def test_reopen_is_a_new_store_on_the_same_schema(pg):
    pg.create(rec("a"))
    other = pg.reopen()
    try:
        assert other is not pg and other.schema == pg.schema
        assert other.get("a").blob == b"x"
    finally:
        other.close()
    assert pg.get("a").version == 1  # the original is still open


def test_batch_drive_on_postgres_with_processes(dsn, schema):
    from genflow.batch import run_batch

    url = with_schema(dsn, schema)
    starts = [(f"t{k}", Tally()) for k in range(40)]
    events = [(f"t{k}", "add", f"x{k}") for k in range(40)]
    events += [(f"t{k}", "close", None) for k in range(40)]
    result = run_batch(url, starts=starts, events=events[:40], processes=2, progress=False)
    assert (result.started, result.delivered, result.failed) == (40, 40, 0)
    result = run_batch(url, events=events[40:], processes=2, progress=False, commit_every=7)
    assert result.failed == 0
    with open_store(url) as store:
        assert store.count(status="finished") == 40
        assert Engine(store).get("t7").data.seen == ["x7"]


# -- faults, read-only, fork ----------------------------------------------------------------------


def test_a_killed_connection_is_replaced_without_the_caller_noticing(dsn, pg):
    """A server restart kills every pooled connection: the next call fails on a
    dead one, drops the dead ones and succeeds on a new one."""
    import psycopg

    pg.create(rec("a"))
    pids = {pg._one("SELECT pg_backend_pid()")[0] for _ in range(3)}
    with psycopg.connect(dsn, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert pg.get("a").blob == b"x"
    saved = pg.save(rec("a", blob=b"y"), expected_version=1)
    assert saved.version == 2 and pg.get("a").blob == b"y"


def test_readonly_postgres_refuses_writes_and_needs_the_schema(dsn, schema, pg):
    from genflow.stores.postgres import PostgresStore

    pg.create(rec("a"))
    with PostgresStore(dsn, schema=schema, readonly=True) as reader:
        assert reader.get("a").blob == b"x" and reader.count() == 1
        with pytest.raises(ReadOnlyStoreError, match="opened read-only"):
            reader.save(rec("a", blob=b"y"), expected_version=1)
        with pytest.raises(ReadOnlyStoreError, match="opened read-only"):
            reader.claim_due("w", T0, T0, 5)
    assert pg.get("a").version == 1
    missing = fresh_schema()
    with pytest.raises(StoreNotFoundError, match="holds no genflow store"):
        PostgresStore(dsn, schema=missing, readonly=True)
    with pytest.raises(StoreNotFoundError, match="holds no genflow store"):
        open_store(with_schema(dsn, missing), readonly=True)
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as admin:  # a read-only open created nothing
        assert admin.execute("SELECT to_regnamespace(%s)", (missing,)).fetchone()[0] is None


def test_a_missing_database_is_store_not_found(dsn):
    import psycopg

    from genflow.stores.postgres import PostgresStore

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = "genflow_no_such_database"
    with pytest.raises(StoreNotFoundError, match="no such database"):
        PostgresStore(psycopg.conninfo.make_conninfo(**info), retry_seconds=1)


def _use_inherited(store, out) -> None:
    try:
        out.put(("ok", store.get("a").blob, store.count()))
    except BaseException as exc:  # pragma: no cover - reported to the parent
        out.put(("error", repr(exc), 0))


def test_a_forked_child_gets_connections_of_its_own(pg):
    """The child may use the store it inherited: it gets a pool of its own, and
    the parent's connections stay the parent's (both go on working)."""
    pg.create(rec("a"))
    before = pg._one("SELECT pg_backend_pid()")[0]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_use_inherited, args=(pg, out))
    child.start()
    assert out.get(timeout=60) == ("ok", b"x", 1)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert pg._one("SELECT pg_backend_pid()")[0] == before  # the same connection, unharmed
    assert pg.get("a").version == 1


# -- claims and wake-ups across processes ---------------------------------------------------------


def _claim_in_process(dsn: str, schema: str, owner: str, out) -> None:
    from genflow.stores.postgres import PostgresStore

    store = PostgresStore(dsn, schema=schema)
    ids = []
    while batch := store.claim_due(owner, T0, T0 + dt.timedelta(minutes=1), limit=5):
        ids.extend(r.id for r in batch)
    out.put(ids)
    store.close()


def test_claims_across_processes_never_share(dsn, schema, pg):
    for n in range(300):
        pg.create(rec(f"i{n:03}", wake_at=T0 - dt.timedelta(seconds=n % 5)))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(dsn, schema, f"p{n}", out))
             for n in range(4)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    everything = [i for ids in claimed for i in ids]
    assert sorted(everything) == [f"i{n:03}" for n in range(300)]


def test_notify_reaches_another_connection_at_once(dsn, schema, pg):
    from genflow.stores.postgres import PostgresStore

    with PostgresStore(dsn, schema=schema) as other:
        pg.wait_wake(0.01)  # the listener is up before the notification is sent
        waker = threading.Timer(0.1, other.notify_wake)
        waker.start()
        started = time.monotonic()
        pg.wait_wake(10.0)
        waker.join()
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        pg.wait_wake(0.2)  # nothing left over: a full (short) sleep
        assert time.monotonic() - started >= 0.15


def test_idle_worker_starts_new_work_at_once(dsn, schema, pg):
    from genflow.stores.postgres import PostgresStore

    worker = Engine(pg)
    stop = threading.Event()
    thread = threading.Thread(target=worker.work,
                              kwargs={"stop": stop.is_set, "idle_sleep": 30.0})
    thread.start()
    try:
        time.sleep(0.3)  # the worker is asleep, for up to 30 s
        with PostgresStore(dsn, schema=schema) as elsewhere:
            client = Engine(elsewhere)
            started = time.monotonic()
            iid = client.start(Tally(), run=False)  # due now; the client does not run it
            while elsewhere.get(iid).status != WorkflowStatus.WAITING.value:
                assert time.monotonic() - started < 5.0, "the idle worker did not wake"
                time.sleep(0.01)
    finally:
        stop.set()
        pg.notify_wake()
        thread.join(timeout=30)
    assert not thread.is_alive()


# -- many workers ---------------------------------------------------------------------------------


def _read_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_four_workers_drive_2000_instances(dsn, schema, pg, tmp_path):
    """4 `genflow worker` processes, 2,000 instances: events sent while they run,
    timers fired by them; every instance ends with the right data and no step
    ever runs twice."""
    count = 2000
    log = tmp_path / "executions.log"
    client = Engine(pg)
    for n in range(count):
        client.start(PgOrder(n=n, log_path=str(log)), id=f"o{n:04}", run=False)
    url = with_schema(dsn, schema)
    env = {**os.environ, "GENFLOW_STORE": url}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "genflow.cli", "--app", str(SUPPORT / "pg_app.py"), "worker",
             "--idle-sleep", "0.5", "--batch", "10"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]
    try:
        paid: set[str] = set()
        deadline = time.monotonic() + 240
        while pg.count(status="finished") < count:
            assert time.monotonic() < deadline, "the workers did not finish in time"
            assert all(w.poll() is None for w in workers), "a worker died"
            waiting = [r.id for r in pg.list(waiting="pay", limit=200) if r.id not in paid]
            for iid in waiting:  # the payment arrives while the workers run
                client.send(iid, "pay", int(iid[1:]) * 10)
                paid.add(iid)
            if not waiting:
                time.sleep(0.05)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        outputs = [w.communicate(timeout=60) for w in workers]
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    processed = [int(out.split()[-3]) for out, _ in outputs]  # "worker processed N due ..."
    assert all(n > 0 for n in processed), processed  # every worker took a share

    assert paid == {f"o{n:04}" for n in range(0, count, 2)}
    executions = _read_log(log)
    twice = [key for key, times in Counter(executions).items() if times > 1]
    assert twice == [], f"steps ran twice: {twice[:5]}"
    keys = set()
    for record in pg.scan():
        inst = client.get(record.id)
        assert inst.status is WorkflowStatus.FINISHED
        want = expected(inst.data.n)
        got = {"n": inst.data.n, "paid": inst.data.paid, "expired": inst.data.expired,
               "lines": inst.data.lines, "closed": inst.data.closed,
               "steps": len(inst.data.done)}
        assert got == want, record.id
        assert record.lease_owner is None and record.wake_at is None
        keys.update(inst.data.done)
    assert keys == set(executions)  # what the store holds is exactly what ran, once


def _spawn(dsn: str, schema: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(WORKER), args[0], dsn, schema, *args[1:]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[:1] == ["ready"], line
    return proc, line[1]


@pytest.mark.slow
def test_kill_9_worker_then_another_takes_over_after_lease_expiry(dsn, schema, pg, tmp_path):
    count, lease = 6, 1.5
    log = tmp_path / "executions.log"
    client = Engine(pg)
    for n in range(count):
        client.start(SlowSteps(log_path=str(log)), id=f"s{n}", run=False)

    def done_keys() -> set[str]:
        return {key for r in pg.list() for key in client.get(r.id).data.done}

    kills: list[tuple[int, set[str]]] = []  # (log lines at the kill, keys checkpointed)
    held: list[InstanceRecord] = []
    for _ in range(5):  # until a kill lands while the worker holds an instance
        before = len(_read_log(log))
        proc, owner = _spawn(dsn, schema, "work", str(count), str(lease))
        deadline = time.monotonic() + 30
        while len(_read_log(log)) < before + 4:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append((len(_read_log(log)), done_keys()))
        held = [r for r in pg.list() if r.lease_owner == owner]
        if held:
            break
    assert held, "no kill landed while the worker held an instance"
    victim = held[0]
    assert victim.lease_until is not None

    rescuer, _ = _spawn(dsn, schema, "work", str(count), str(lease))
    # the dead worker's lease still stands: the other worker leaves the instance alone
    while dt.datetime.now(dt.UTC) < victim.lease_until - dt.timedelta(seconds=0.3):
        assert pg.get(victim.id).version == victim.version
        time.sleep(0.02)
    out, _ = rescuer.communicate(timeout=120)
    assert rescuer.returncode == 0 and "processed" in out

    for n in range(count):
        inst = client.get(f"s{n}")
        assert inst.status is WorkflowStatus.FINISHED
        assert inst.data.n == inst.data.steps and len(set(inst.data.done)) == inst.data.steps
    executions = _read_log(log)
    assert set(executions) == done_keys()
    for at_kill, checkpointed in kills:
        again = [key for key in executions[at_kill:] if key in checkpointed]
        assert again == [], f"checkpointed steps ran again after a kill: {again}"
    # a step runs twice only when a kill interrupted it: at least once, never lost
    assert len(executions) - len(set(executions)) <= len(kills)


@pytest.mark.slow
def test_concurrent_sends_from_several_processes_lose_nothing(dsn, schema, pg):
    senders, each = 4, 25
    client = Engine(pg)
    iid = client.start(Tally())
    procs = [_spawn(dsn, schema, "send", iid, f"p{n}", str(each))[0] for n in range(senders)]
    for proc in procs:  # go
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0 and f"sent {each}" in out
    client.send(iid, "close")
    inst = client.get(iid)
    assert inst.status is WorkflowStatus.FINISHED
    assert sorted(inst.data.seen) == sorted(f"p{n}-{k}" for n in range(senders)
                                            for k in range(each))
    for n in range(senders):  # each sender's events arrived in the order it sent them
        mine = [tag for tag in inst.data.seen if tag.startswith(f"p{n}-")]
        assert mine == [f"p{n}-{k}" for k in range(each)]
    assert pg.get(iid).version >= senders * each
