"""The stores under faults: every driver failure typed, transient ones retried where
safe, a write whose answer was lost never done twice, opening without writing,
read-only opens, and the engine over a full disk or a locked database.

The worker loop's own idleness (`until_idle`, `until_done`) is tested here too,
with a FakeClock: what it waits for, and when it returns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import attrs
import pytest
from faults import Faults, faulty, faulty_sqlite, sqlite_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genflow
from genflow import For, On, Retry, Step, Timeout, Wait
from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import (
    GenflowError,
    ReadOnlyStoreError,
    StoreError,
    StoreFullError,
    StoreNotFoundError,
    StoreUnavailableError,
)
from genflow.state import WorkflowStatus
from genflow.stores import InstanceRecord, MemoryStore, SQLiteStore, open_store

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
SUPPORT = Path(__file__).resolve().parents[1] / "support"


def sec(n: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=n)


def rec(id_: str, **kw) -> InstanceRecord:
    return InstanceRecord(id=id_, **({"workflow": "wf", "status": "waiting", "blob": b"x"} | kw))


def rows(store) -> dict[str, tuple]:
    """What must not change when a write is refused: every stored field but the times."""
    return {r.id: (r.workflow, r.status, r.blob, r.version, r.wake_at, r.waiting_for,
                   r.attempts, r.error, r.lease_owner, r.lease_until)
            for r in store.list()} | {
        f"journal:{r.id}": tuple((e.seq, e.kind, e.detail) for e in store.journal(r.id))
        for r in store.list()}


def seed(store) -> None:
    store.create(rec("a", wake_at=sec(0)))
    store.acquire("a", "w1", sec(0), sec(60))
    store.create(rec("b", wake_at=sec(5), waiting_for=("go",)))
    store.append_journal("b", [("start", {"n": 1})], T0)


#: every Store method, as (name, call): each reads or writes the seeded rows
CALLS = {
    "create": lambda s: s.create(rec("c", wake_at=sec(1))),
    "get": lambda s: s.get("b"),
    "save": lambda s: s.save(rec("b", blob=b"y"), expected_version=1),
    "save-held": lambda s: s.save(rec("a", blob=b"y", wake_at=sec(0)), expected_version=1,
                                  lease_owner="w1", previous=s.get("a")),
    "save-release": lambda s: s.save(rec("a", blob=b"y"), expected_version=1,
                                     lease_owner="w1", release=True),
    "delete": lambda s: s.delete("b"),
    "list": lambda s: s.list(waiting="go"),
    "count": lambda s: s.count(status="waiting"),
    "acquire": lambda s: s.acquire("b", "w2", sec(0), sec(60)),
    "claim_due": lambda s: s.claim_due("w2", sec(10), sec(70), 5),
    "release": lambda s: s.release("a", "w1"),
    "next_wake": lambda s: s.next_wake({"wf"}),
    "append_journal": lambda s: s.append_journal("b", [("x", {"k": [1]})], sec(1)),
    "journal": lambda s: s.journal("b"),
}
SQLITE_FAULTS = {"busy": StoreUnavailableError, "locked": StoreUnavailableError,
                 "ioerr": StoreUnavailableError, "full": StoreFullError,
                 "readonly": ReadOnlyStoreError, "corrupt": StoreError,
                 "cantopen": StoreNotFoundError}


def _comparable(value):
    """A call's result without its bookkeeping times (they differ between runs)."""
    if isinstance(value, InstanceRecord):
        return attrs.evolve(value, created_at=None, updated_at=None)
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=st.sampled_from(sorted(CALLS)), kind=st.sampled_from(sorted(SQLITE_FAULTS)),
       times=st.sampled_from([1, 2, 1000]))
def test_sqlite_faults_are_typed_and_retried_where_safe(call, kind, times):
    """Any fault of any statement of any method: a transient one that passes is
    retried and the call does what it does without faults; anything else is a
    typed StoreError (never a raw sqlite3 exception) and nothing was written."""
    twin = SQLiteStore(":memory:")
    seed(twin)
    expected = _comparable(CALLS[call](twin))
    after = rows(twin)
    store = SQLiteStore(":memory:", retry_seconds=0.05)
    seed(store)
    before = rows(store)
    transient = SQLITE_FAULTS[kind] is StoreUnavailableError
    error: StoreError | None = None
    with faulty_sqlite(store, Faults(lambda: sqlite_error(kind), times=times)) as faults:
        try:
            got = CALLS[call](store)
        except StoreError as exc:
            error = exc
    if error is not None:
        assert type(error) is SQLITE_FAULTS[kind], error
        assert isinstance(error.__cause__, sqlite3.Error)
        assert not (transient and times == 1)  # one transient fault is retried away
        assert faults.raised >= 1
        assert rows(store) == before  # nothing half-written
        return
    assert transient and faults.raised == times  # only a retried transient fault passes
    assert _comparable(got) == expected
    assert rows(store) == after
    twin.close()
    store.close()


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("call", ["create", "save", "save-held", "save-release",
                                  "append_journal", "acquire", "release", "delete"])
def test_a_write_whose_answer_was_lost_is_not_done_twice(make_store, store_kind, call):
    """The statement commits, then the connection breaks before the answer (a
    server dying at that moment): the retried call finds its own write and
    reports success, as if nothing had happened."""
    store = make_store()
    seed(store)
    expected = _comparable(CALLS[call](store))  # the call without a fault
    after = rows(store)
    for instance_id in ("a", "b", "c"):
        store.delete(instance_id)
    seed(store)
    if store_kind == "sqlite":
        def lost() -> BaseException:
            return sqlite_error("ioerr")
    else:
        import psycopg

        def lost() -> BaseException:
            return psycopg.OperationalError("server closed the connection unexpectedly")
    writes = ("INSERT", "UPDATE", "DELETE", "WITH")
    with faulty(store, Faults(lost, after=True, match=lambda q: q.lstrip().startswith(writes))):
        got = CALLS[call](store)
    if call.startswith("save"):  # SQLite's save answers with the lease_until it was given
        got, expected = (attrs.evolve(r, lease_until=None) for r in (_comparable(got), expected))
    assert _comparable(got) == expected
    assert rows(store) == after


def test_unencodable_text_is_a_typed_error(make_store):
    store = make_store()
    if isinstance(store, MemoryStore):
        pytest.skip("a dict holds any str")
    with pytest.raises(StoreError, match="not valid Unicode text"):
        store.create(rec("bad\ud800"))
    with pytest.raises(StoreError, match="not valid Unicode text"):
        store.get("bad\ud800")
    assert store.count() == 0


# -- opening: no write, read-only, missing --------------------------------------------------


class _Traced(SQLiteStore):
    """An SQLiteStore that records every statement it runs, from the first."""

    def _set_up(self) -> None:
        self.statements: list[str] = []
        self._db.set_trace_callback(self.statements.append)
        super()._set_up()


def test_opening_a_set_up_store_writes_nothing(tmp_path):
    path = tmp_path / "s.db"
    SQLiteStore(path).close()
    store = _Traced(path)
    writes = [s for s in store.statements
              if not s.startswith(("SELECT", "PRAGMA journal_mode", "PRAGMA synchronous"))
              or "=WAL" in s]
    assert writes == [], store.statements
    store.close()
    fresh = _Traced(tmp_path / "new.db")  # a new file is set up: WAL, then the schema
    assert any(s.startswith("CREATE TABLE instances") for s in fresh.statements)
    fresh.close()


def test_readonly_store_refuses_writes_and_changes_nothing(tmp_path, make_store, store_kind):
    writer = make_store()
    seed(writer)
    if store_kind == "memory":
        reader = MemoryStore(readonly=True)
        for name in ("create", "delete", "claim_due", "append_journal"):
            with pytest.raises(ReadOnlyStoreError, match="read-only"):
                CALLS[name](reader)
        return
    if store_kind == "sqlite":
        reader = SQLiteStore(writer.path, readonly=True)
    else:
        reader = type(writer)(writer._dsn, schema=writer.schema, readonly=True)
    try:
        before = rows(writer)
        assert rows(reader) == before  # it reads everything
        for name in ("create", "save", "save-held", "delete", "acquire", "claim_due",
                     "release", "append_journal"):
            with pytest.raises(ReadOnlyStoreError, match="opened read-only"):
                CALLS[name](reader)
        assert rows(writer) == before
    finally:
        reader.close()


def test_readonly_open_of_a_missing_file_creates_nothing(tmp_path):
    path = tmp_path / "typo.db"
    with pytest.raises(StoreNotFoundError, match="no such file"):
        SQLiteStore(path, readonly=True)
    with pytest.raises(StoreNotFoundError, match="no such file"):
        open_store(f"sqlite:///{path}", readonly=True)
    assert not path.exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreNotFoundError, match="holds no genflow store"):
        SQLiteStore(other, readonly=True)
    with pytest.raises(StoreNotFoundError, match=r"directory .* does not exist"):
        SQLiteStore(tmp_path / "no" / "dir.db")


def test_a_chmod_read_only_file_refuses_writes(tmp_path):
    """A file this user may not write: typed refusal, nothing changed. As root,
    chmod does not bite: then the file is opened with mode=ro instead."""
    path = tmp_path / "ro.db"
    with SQLiteStore(path) as store:
        seed(store)
        before = rows(store)
    os.chmod(path, 0o444)
    try:
        bites = not os.access(path, os.W_OK)
        store = SQLiteStore(path) if bites else SQLiteStore(path, readonly=True)
        with pytest.raises(ReadOnlyStoreError, match="refuses writes" if bites else "read-only"):
            store.save(rec("b", blob=b"new"), expected_version=1)
        assert rows(store) == before
        store.close()
    finally:
        os.chmod(path, 0o644)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["list"], ["show", "x"], ["history", "x"],
                                     ["report", "-o", "out"], ["check"]])
def test_read_only_commands_never_create_a_store(tmp_path, command):
    app = str(SUPPORT / "cli_app.py")
    for url in ("sqlite:///genfow.db", "sqlite://genflow.db"):  # a typo; two slashes
        done = _cli("--store", url, "--app", app, *command, cwd=tmp_path)
        assert done.returncode == 2, done
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("genflow: error: ")
        assert "no such file" in done.stderr or "three slashes" in done.stderr
        assert list(tmp_path.iterdir()) == []


# -- the engine over a full disk -------------------------------------------------------------


@genflow.workflow("faults-grow")
@attrs.define
class Grow:
    """Each step and each `feed` event makes the data bigger: a full disk shows."""

    steps: int = 6
    notes: list[str] = attrs.field(factory=list)
    food: str = ""

    def definition(self):
        yield For("growing", len(self.notes) < self.steps, Step("grow", self.grow))
        yield Wait("fed?", On("feed", self.feed))

    def feed(self, text: str) -> None:
        self.food += text

    def grow(self) -> None:
        self.notes.append(genflow.current_step().idempotency_key + "." * 3000)


def _cap(store: SQLiteStore, extra_pages: int = 0) -> None:
    """A full disk, to SQLite: the file may not grow beyond its pages now."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def _uncap(store: SQLiteStore) -> None:
    store._db.execute("PRAGMA max_page_count = 1073741823")


def test_a_full_disk_refuses_an_event_typed_and_byte_identical(tmp_path):
    store = SQLiteStore(tmp_path / "full.db")
    engine = Engine(store)
    iid = engine.start(Grow(steps=0))  # waits for `feed` at once
    before = store.get(iid)
    _cap(store)
    # an event whose handler grows the data: refused, the row byte-identical
    with pytest.raises(StoreFullError, match="free space"):
        engine.send(iid, "feed", "x" * 200_000)
    after = store.get(iid)
    assert (after.blob, after.version, after.status, after.wake_at, after.waiting_for) == (
        before.blob, before.version, before.status, before.wake_at, before.waiting_for)
    # the lease was released at once: a release grows nothing (when even that
    # cannot be written, the lease is left to expire)
    assert (after.lease_owner, after.lease_until) == (None, None)
    _uncap(store)  # the space is back: the same call works
    engine.send(iid, "feed", "x" * 200_000)
    assert engine.get(iid).status is WorkflowStatus.FINISHED
    store.close()


def test_steps_on_a_full_disk_wait_for_space_and_none_runs_twice(tmp_path):
    store = SQLiteStore(tmp_path / "full.db")
    engine = Engine(store)
    iid = engine.start(Grow(steps=8), run=False)
    _cap(store, extra_pages=2)  # room for a step or two
    with pytest.raises(StoreFullError):
        for _ in range(20):
            engine.run_due()
    stuck = engine.get(iid)  # each save whole: the last checkpoint loads
    assert stuck.status is WorkflowStatus.RESUMING and stuck.error == ""  # not failed
    assert 0 < len(stuck.data.notes) < 8
    record = store.get(iid)
    assert record.lease_owner is None and record.wake_at is not None  # due again
    _uncap(store)  # the space is back
    assert engine.work(until_done=True) >= 1
    done = engine.get(iid)
    assert done.status is WorkflowStatus.WAITING  # for `feed`, its steps all done
    keys = [note.rstrip(".") for note in done.data.notes]
    assert len(keys) == len(set(keys)) == 8
    store.close()


@pytest.mark.parametrize("kind", ["full", "busy", "ioerr"])
def test_a_store_error_in_a_save_never_fails_the_instance(tmp_path, kind):
    """One save of a step fails (the next would pass): the store's trouble is
    raised typed; the instance is not marked failed, and runs on later."""
    store = SQLiteStore(tmp_path / "once.db", retry_seconds=0)
    engine = Engine(store)
    iid = engine.start(Grow(steps=3), run=False)
    saves = Faults(lambda: sqlite_error(kind),
                   match=lambda q: q.startswith("UPDATE instances SET") and "blob=?" in q)
    with faulty_sqlite(store, saves), pytest.raises(StoreError):
        engine.run_due()
    record = store.get(iid)
    assert (record.status, record.error, record.attempts, record.lease_owner) == (
        "resuming", "", 0, None)
    assert engine.work(until_done=True) == 1
    assert len(engine.get(iid).data.notes) == 3


@contextlib.contextmanager
def _small_filesystem(where: Path, size: str = "1m"):
    """A tmpfs of `size` at `where` (root only; else skip)."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 512)
    return filler


def test_a_really_full_file_system(tmp_path):
    """On a file system with no space left: a worker still opens the store (it
    writes nothing), reads work, writes are StoreFullError with the row as it
    was, and everything works again once space is freed."""
    with _small_filesystem(tmp_path / "fs") as fs:
        path = fs / "s.db"
        first = SQLiteStore(path)  # open meanwhile, as other workers are: -wal, -shm stay
        iid = Engine(first).start(Grow(steps=0))
        filler = _fill(fs)
        store = SQLiteStore(path)  # a worker starting on the full disk
        engine = Engine(store)
        before = store.get(iid)
        assert [r.id for r in store.list()] == [iid]
        with pytest.raises(StoreFullError):
            engine.send(iid, "feed", "x" * 300_000)
        after = store.get(iid)
        assert (after.blob, after.version, after.status, after.wake_at) == (
            before.blob, before.version, before.status, before.wake_at)
        with pytest.raises(StoreFullError):
            engine.start(Grow(), id="new")
        filler.unlink()  # the space is back
        engine.send(iid, "feed", "x" * 1000)
        assert engine.get(iid).status is WorkflowStatus.FINISHED
        store.close()
        first.close()


# -- a worker survives a locked database -----------------------------------------------------


def test_a_worker_survives_a_database_locked_for_a_while(tmp_path, caplog):
    path = tmp_path / "locked.db"
    setup = Engine(SQLiteStore(path))
    ids = [setup.start(Grow(steps=3), run=False) for _ in range(3)]  # due, for the worker
    setup.store.close()
    store = SQLiteStore(path, busy_timeout=0.05, retry_seconds=0.1)
    engine = Engine(store)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    release = threading.Timer(2.0, lambda: blocker.execute("COMMIT"))
    release.start()
    caplog.set_level(logging.WARNING, logger="genflow.worker")
    started = time.monotonic()
    done = engine.work(until_done=True)
    release.join()
    blocker.close()
    assert time.monotonic() - started >= 1.5  # it waited for the lock, it did not give up
    assert done >= 3
    assert all(len(engine.get(iid).data.notes) == 3 for iid in ids)
    attempts = [r for r in caplog.records if r.name == "genflow.worker"]
    assert attempts and all(r.levelno == logging.WARNING for r in attempts)
    assert [r.attempt for r in attempts] == list(range(1, len(attempts) + 1))
    assert "attempt 1" in attempts[0].getMessage()
    assert "next attempt in" in attempts[0].getMessage()
    assert "busy" in attempts[0].getMessage()
    store.close()


# -- what "idle" means -----------------------------------------------------------------------

calls: dict[str, int] = {}


@genflow.workflow("faults-flaky")
@attrs.define
class Flaky:
    """A step that fails `failures` times, retried after 1 s, then 2 s, then 4 s..."""

    name: str = "f"
    failures: int = 2
    ok: bool = False

    def definition(self):
        yield Step("call", self.call, retry=Retry(attempts=10, backoff=1, factor=2))

    def call(self) -> None:
        calls[self.name] = calls.get(self.name, 0) + 1
        if calls[self.name] <= self.failures:
            raise ConnectionError("not yet")
        self.ok = True


@genflow.workflow("faults-later")
@attrs.define
class Later:
    """A timer an hour away, then an event that never comes."""

    fired: bool = False

    def definition(self):
        yield Wait("an hour", Timeout("hour", 3600, Step("fire", self.fire)))
        yield Wait("forever", On("never", lambda: None))

    def fire(self) -> None:
        self.fired = True


def test_until_idle_waits_for_a_retry_due_within_idle_sleep():
    calls.clear()
    clock = FakeClock()
    engine = Engine(MemoryStore(), clock=clock)
    iid = engine.start(Flaky(name="soon", failures=1))  # retry due in 1 s
    assert engine.get(iid).attempts == 1
    assert engine.work(until_idle=True, idle_sleep=1.0) == 1  # not 0: it was due in 1 s
    assert engine.get(iid).data.ok and clock() == T0 + dt.timedelta(seconds=1)


def test_until_idle_leaves_work_due_beyond_idle_sleep():
    calls.clear()
    clock = FakeClock()
    engine = Engine(MemoryStore(), clock=clock)
    iid = engine.start(Flaky(name="later", failures=2))
    assert engine.work(until_idle=True, idle_sleep=1.0) == 1  # the 1 s retry; the 2 s one waits
    inst = engine.get(iid)
    assert (inst.data.ok, inst.attempts) == (False, 2)
    assert inst.wake_at == clock() + dt.timedelta(seconds=2)
    assert engine.work(until_idle=True, idle_sleep=2.0) == 1
    assert engine.get(iid).data.ok
    later = engine.start(Later())  # an hour away: idle at once
    assert engine.work(until_idle=True) == 0 and not engine.get(later).data.fired


def test_until_done_runs_until_nothing_has_a_wake():
    calls.clear()
    clock = FakeClock()
    engine = Engine(MemoryStore(), clock=clock)
    flaky = engine.start(Flaky(name="done", failures=3))  # retries after 1, 2 and 4 s
    later = engine.start(Later())
    assert engine.work(until_done=True) == 4  # three retries, one timer
    assert engine.get(flaky).data.ok and engine.get(later).data.fired
    assert clock() == T0 + dt.timedelta(seconds=3600)  # it slept straight to the timer
    assert engine.store.next_wake() is None  # what is left waits for an event only
    assert engine.work(until_done=True) == 0


def test_until_done_with_stop_returns_when_told():
    clock = FakeClock()
    engine = Engine(MemoryStore(), clock=clock)
    engine.start(Later())
    assert engine.work(until_done=True, stop=lambda: True) == 0


def test_the_worker_loop_never_ends_on_store_errors(caplog):
    """Any StoreError of a round is logged and retried with a capped backoff."""
    clock = FakeClock()
    store = MemoryStore()
    engine = Engine(store, clock=clock)
    engine.start(Later())
    failures = iter([StoreUnavailableError("down"), StoreFullError("full"),
                     StoreUnavailableError("down")])
    real = store.claim_due

    def claim(*args, **kwargs):
        for error in failures:
            raise error
        return real(*args, **kwargs)

    store.claim_due = claim  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="genflow.worker")
    start = clock()
    assert engine.work(until_done=True) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [(r.attempt, r.wait) for r in warnings] == [(1, 0.5), (2, 1.0), (3, 2.0)]
    assert any("works again after 3" in r.getMessage() for r in caplog.records)
    assert clock() - start >= dt.timedelta(seconds=3600)


def test_send_waits_out_a_store_that_is_briefly_unavailable(caplog):
    store = MemoryStore()
    engine = Engine(store)
    iid = engine.start(Later())
    real = store.acquire
    failures = iter([StoreUnavailableError("restarting")])

    def acquire(*args, **kwargs):
        for error in failures:
            raise error
        return real(*args, **kwargs)

    store.acquire = acquire  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="genflow.engine")
    engine.cancel(iid)
    assert engine.get(iid).status is WorkflowStatus.CANCELLED
    assert [r.attempt for r in caplog.records if r.name == "genflow.engine"] == [1]
    store.acquire = lambda *a, **k: (_ for _ in ()).throw(StoreUnavailableError("gone"))
    with pytest.raises(StoreUnavailableError):
        engine.cancel(iid, timeout=0.1)


def test_store_errors_are_genflow_errors():
    for cls in (StoreUnavailableError, StoreFullError, ReadOnlyStoreError, StoreNotFoundError):
        assert issubclass(cls, StoreError) and issubclass(cls, GenflowError)
