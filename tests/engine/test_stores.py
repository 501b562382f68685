"""Store conformance: every store keeps the same promises (CAS, leases, due work, journal)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from postgres_db import NO_POSTGRES, POSTGRES_DSN, POSTGRES_REQUIRED, fresh_schema, postgres_dsn

from genflow.errors import (
    ConcurrencyError,
    DuplicateInstanceError,
    GenflowError,
    InstanceNotFoundError,
    StoreNotFoundError,
)
from genflow.stores import InstanceRecord, MemoryStore, SQLiteStore, open_store
from genflow.stores.base import OutboxEntry

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def sec(n: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=n)


def rec(id_: str, **kw) -> InstanceRecord:
    fields = {"workflow": "wf", "status": "waiting", "blob": b"\x00blob"} | kw
    return InstanceRecord(id=id_, **fields)


# -- instances ---------------------------------------------------------------------------------


def test_create_get_roundtrip(store):
    wake = T0 + dt.timedelta(microseconds=123457)
    made = store.create(rec("a", wake_at=wake, waiting_for=("go", "stop"), attempts=2,
                            error="boom", blob=bytes(range(256))))
    got = store.get("a")
    assert made.version == got.version == 1
    assert (got.workflow, got.status, got.blob) == ("wf", "waiting", bytes(range(256)))
    assert got.wake_at == wake and got.wake_at.tzinfo is not None
    assert got.waiting_for == ("go", "stop")
    assert (got.attempts, got.error) == (2, "boom")
    assert got.created_at is not None and got.updated_at is not None
    assert got.lease_owner is None


def test_a_records_repr_shows_its_blobs_size_not_its_bytes(store):
    made = store.create(rec("a", blob=b"\x01" * 79, error="boom"))
    text = repr(store.get("a"))
    assert "blob=<79 bytes>" in text and "\\x01" not in text
    assert text.startswith("InstanceRecord(id='a', workflow='wf', status='waiting', blob=<79")
    assert f"version={made.version}, " in text and "error='boom'" in text


def test_duplicate_and_missing(store):
    store.create(rec("a"))
    with pytest.raises(DuplicateInstanceError, match="'a'"):
        store.create(rec("a", blob=b"other"))
    assert store.get("a").blob == b"\x00blob"
    with pytest.raises(InstanceNotFoundError):
        store.get("zz")
    with pytest.raises(InstanceNotFoundError):
        store.save(rec("zz"), expected_version=1)
    with pytest.raises(InstanceNotFoundError):
        store.acquire("zz", "me", T0, sec(1))
    store.delete("zz")  # missing ids are ignored


def test_save_is_compare_and_swap(store):
    first = store.create(rec("a"))
    second = store.save(rec("a", blob=b"v2", status="finished"), expected_version=1)
    assert second.version == 2
    with pytest.raises(ConcurrencyError, match="version 2"):
        store.save(rec("a", blob=b"stale"), expected_version=first.version)
    got = store.get("a")
    assert (got.version, got.blob, got.status) == (2, b"v2", "finished")


def test_two_writers_exactly_one_wins(make_store):
    stores = [make_store(), make_store()]
    stores[0].create(rec("a"))
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def write(s, n):
        barrier.wait()
        try:
            s.save(rec("a", blob=f"w{n}".encode()), expected_version=1)
            outcomes.append(f"w{n}")
        except ConcurrencyError:
            outcomes.append("lost")

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "lost"]
    assert len(winners) == 1 and outcomes.count("lost") == 1
    assert stores[1].get("a").blob == winners[0].encode()
    assert stores[1].get("a").version == 2


def test_save_respects_leases(store):
    store.create(rec("a"))
    assert store.acquire("a", "w1", T0, sec(30)) is not None
    with pytest.raises(ConcurrencyError, match="leased by 'w1'"):
        store.save(rec("a", blob=b"x"), expected_version=1, lease_owner="w2")
    saved = store.save(rec("a", blob=b"y"), expected_version=1, lease_owner="w1")
    assert saved.lease_owner == "w1"  # a save leaves the lease alone
    assert store.get("a").lease_owner == "w1"
    store.release("a", "w1")
    store.save(rec("a", blob=b"z"), expected_version=2, lease_owner="w2")  # no one holds it


def test_a_last_save_can_release_the_lease(store):
    store.create(rec("a"))
    held = store.acquire("a", "w1", T0, sec(30))
    assert held is not None
    # another owner's release-save is refused and changes nothing
    with pytest.raises(ConcurrencyError, match="leased by 'w1'"):
        store.save(rec("a", blob=b"x"), expected_version=1, lease_owner="w2", release=True)
    assert (store.get("a").blob, store.get("a").lease_owner) == (b"\x00blob", "w1")
    # without lease_owner, release means nothing: the lease stays
    kept = store.save(rec("a", blob=b"k"), expected_version=1, release=True)
    assert store.get("a").lease_owner == "w1" and kept.version == 2
    # the holder's save writes and lets go in one write (also with `previous`)
    saved = store.save(rec("a", blob=b"y", status="finished"), expected_version=2,
                       lease_owner="w1", previous=store.get("a"), release=True)
    stored = store.get("a")
    assert (saved.version, saved.lease_owner, saved.lease_until) == (3, None, None)
    assert (stored.version, stored.blob, stored.status) == (3, b"y", "finished")
    assert (stored.lease_owner, stored.lease_until) == (None, None)
    got = store.acquire("a", "w2", sec(1), sec(31))  # free for anyone at once
    assert got is not None and got.lease_owner == "w2"


def test_delete_removes_instance_and_journal(store):
    store.create(rec("a"))
    store.append_journal("a", [("start", {})], T0)
    store.delete("a")
    with pytest.raises(InstanceNotFoundError):
        store.get("a")
    assert store.journal("a") == []
    store.create(rec("a"))  # the id is free again


def test_list_count_filter_and_page(store):
    for n in range(7):
        store.create(rec(f"i{n}", workflow="even" if n % 2 == 0 else "odd",
                         status="finished" if n < 3 else "waiting",
                         waiting_for=("go",) if n in (4, 5) else ()))
    assert [r.id for r in store.list()] == [f"i{n}" for n in range(7)]
    assert [r.id for r in store.list(workflow="even")] == ["i0", "i2", "i4", "i6"]
    assert [r.id for r in store.list(workflow="even", status="waiting")] == ["i4", "i6"]
    assert [r.id for r in store.list(waiting="go")] == ["i4", "i5"]
    assert store.count(waiting="go", workflow="odd") == 1
    assert store.count() == 7 and store.count(status="finished") == 3
    assert [r.id for r in store.list(limit=3, after="i1")] == ["i2", "i3", "i4"]
    assert [r.id for r in store.scan(batch=2)] == [f"i{n}" for n in range(7)]
    # what an instance waits for follows its saves
    store.save(rec("i4", waiting_for=("stop",)), expected_version=1)
    assert [r.id for r in store.list(waiting="go")] == ["i5"]
    assert [r.id for r in store.list(waiting="stop")] == ["i4"]


# -- leases and due work -------------------------------------------------------------------------


def test_acquire_release_and_expiry(store):
    store.create(rec("a"))
    got = store.acquire("a", "w1", T0, sec(30))
    assert got is not None and (got.lease_owner, got.lease_until) == ("w1", sec(30))
    assert store.acquire("a", "w2", sec(10), sec(40)) is None
    assert store.acquire("a", "w1", sec(10), sec(60)) is not None  # extends its own
    assert store.acquire("a", "w2", sec(59), sec(90)) is None
    taken = store.acquire("a", "w2", sec(60), sec(90))  # w1's lease ran out
    assert taken is not None and taken.lease_owner == "w2"
    store.release("a", "w1")  # not w1's any more: no-op
    assert store.get("a").lease_owner == "w2"
    store.release("a", "w2")
    assert store.get("a").lease_owner is None


def test_claim_due_order_limit_and_leases(store):
    store.create(rec("late", wake_at=sec(30)))
    store.create(rec("soon", wake_at=sec(5)))
    store.create(rec("now", wake_at=sec(0)))
    store.create(rec("never"))
    store.create(rec("busy", wake_at=sec(1)), lease_owner="other", lease_until=sec(100))
    assert store.next_wake() == sec(0)
    claimed = store.claim_due("me", sec(10), sec(70), limit=10)
    assert [r.id for r in claimed] == ["now", "soon"]
    assert all(r.lease_owner == "me" and r.lease_until == sec(70) for r in claimed)
    assert store.claim_due("you", sec(10), sec(70), limit=10) == []  # leased to me
    assert [r.id for r in store.claim_due("you", sec(200), sec(300), limit=2)] == [
        "now", "busy"]  # every lease has expired by then; earliest first, limit 2


def test_concurrent_claims_never_share_an_instance(make_store):
    stores = [make_store() for _ in range(4)]
    for n in range(200):
        stores[0].create(rec(f"i{n:03}", wake_at=sec(n % 7)))
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(stores))

    def claim(s, owner):
        barrier.wait()
        mine = got.setdefault(owner, [])
        while True:
            batch = s.claim_due(owner, sec(10), sec(100), limit=7)
            if not batch:
                return
            mine.extend(r.id for r in batch)

    threads = [threading.Thread(target=claim, args=(s, f"w{n}")) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in got.values() for i in ids]
    assert sorted(everything) == [f"i{n:03}" for n in range(200)]  # each once


def _claim_in_process(path: str, owner: str, out) -> None:
    store = SQLiteStore(path)
    ids = []
    while batch := store.claim_due(owner, sec(10), sec(100), limit=5):
        ids.extend(r.id for r in batch)
    out.put(ids)
    store.close()


def test_sqlite_claims_across_processes(tmp_path):
    path = str(tmp_path / "p.db")
    with SQLiteStore(path) as store:
        for n in range(300):
            store.create(rec(f"i{n:03}", wake_at=sec(0)))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(path, f"p{n}", out)) for n in range(3)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    everything = [i for ids in claimed for i in ids]
    assert sorted(everything) == [f"i{n:03}" for n in range(300)]


def test_wait_wake_returns_on_notify(store):
    import time

    waker = threading.Timer(0.05, store.notify_wake)
    waker.start()
    started = time.monotonic()
    store.wait_wake(5.0)
    waker.join()
    assert time.monotonic() - started < 4.0


# -- journal -------------------------------------------------------------------------------------


def test_journal_appends_in_order(store):
    store.create(rec("a"))
    store.append_journal("a", [("start", {"data": {"n": 1}}), ("after_step", {"x": [1, 2]})], T0)
    store.append_journal("a", [("event", {"payload": {"when": T0}, "event": "go"})], sec(1))
    entries = store.journal("a")
    assert [(e.seq, e.kind) for e in entries] == [(1, "start"), (2, "after_step"), (3, "event")]
    assert entries[0].detail == {"data": {"n": 1}}
    assert entries[1].detail == {"x": [1, 2]}
    assert entries[2].at == sec(1)
    assert entries[2].detail["event"] == "go"
    assert isinstance(entries[2].detail["payload"]["when"], str)  # plain, msgpack-able form
    assert store.journal("b") == []


# -- a model of the whole interface --------------------------------------------------------------


class StoreModel(RuleBasedStateMachine):
    """Random operations against a store and a dict model: both must agree."""

    kind = "memory"

    @initialize()
    def open(self):
        self.tmp = None
        if self.kind == "memory":
            self.store = MemoryStore()
        elif self.kind == "sqlite":
            self.store = SQLiteStore(":memory:")
        else:
            from genflow.stores.postgres import PostgresStore

            self.store = PostgresStore(postgres_dsn(), schema=fresh_schema(),
                                       drop_schema_on_close=True)
        self.model: dict[str, tuple[int, bytes, str | None, dt.datetime | None]] = {}
        self.now = 0

    def teardown(self):
        if hasattr(self, "store"):
            self.store.close()

    ids = st.sampled_from(["a", "b", "c"])
    owners = st.sampled_from(["w1", "w2", None])

    @rule(id_=ids, blob=st.binary(max_size=8), wake=st.none() | st.integers(0, 20))
    def create(self, id_, blob, wake):
        wake_at = None if wake is None else sec(wake)
        if id_ in self.model:
            with pytest.raises(DuplicateInstanceError):
                self.store.create(rec(id_, blob=blob, wake_at=wake_at))
        else:
            self.store.create(rec(id_, blob=blob, wake_at=wake_at))
            self.model[id_] = (1, blob, None, wake_at)

    @rule(id_=ids, blob=st.binary(max_size=8), version=st.integers(0, 6), owner=owners,
          wake=st.none() | st.integers(0, 20))
    def save(self, id_, blob, version, owner, wake):
        wake_at = None if wake is None else sec(wake)
        record = rec(id_, blob=blob, wake_at=wake_at)
        if id_ not in self.model:
            with pytest.raises(InstanceNotFoundError):
                self.store.save(record, expected_version=version, lease_owner=owner)
            return
        current, _, holder, _ = self.model[id_]
        if version != current or (owner is not None and holder not in (None, owner)):
            with pytest.raises(ConcurrencyError):
                self.store.save(record, expected_version=version, lease_owner=owner)
        else:
            assert self.store.save(record, expected_version=version,
                                   lease_owner=owner).version == current + 1
            self.model[id_] = (current + 1, blob, holder, wake_at)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), owner=st.sampled_from(["w1", "w2"]))
    def acquire(self, data, owner):
        id_ = data.draw(st.sampled_from(sorted(self.model)))
        version, blob, holder, wake_at = self.model[id_]
        got = self.store.acquire(id_, owner, sec(self.now), sec(self.now + 1000))
        if holder in (None, owner):
            assert got is not None and got.blob == blob
            self.model[id_] = (version, blob, owner, wake_at)
        else:
            assert got is None

    @rule(id_=ids, owner=st.sampled_from(["w1", "w2"]))
    def release(self, id_, owner):
        self.store.release(id_, owner)
        if id_ in self.model and self.model[id_][2] == owner:
            version, blob, _, wake_at = self.model[id_]
            self.model[id_] = (version, blob, None, wake_at)

    @rule(owner=st.sampled_from(["w1", "w2"]), limit=st.integers(1, 3))
    def claim(self, owner, limit):
        self.now += 5
        due = sorted(
            (w, i) for i, (_, _, holder, w) in self.model.items()
            if w is not None and w <= sec(self.now) and holder is None
        )[:limit]
        claimed = self.store.claim_due(owner, sec(self.now), sec(self.now + 1000), limit)
        assert [r.id for r in claimed] == [i for _, i in due]
        for _, i in due:
            version, blob, _, wake_at = self.model[i]
            self.model[i] = (version, blob, owner, wake_at)

    @rule(id_=ids)
    def delete(self, id_):
        self.store.delete(id_)
        self.model.pop(id_, None)

    @invariant()
    def agrees(self):
        if not hasattr(self, "store"):
            return
        rows = {r.id: r for r in self.store.list()}
        assert set(rows) == set(self.model)
        for id_, (version, blob, holder, wake_at) in self.model.items():
            assert (rows[id_].version, rows[id_].blob, rows[id_].lease_owner,
                    rows[id_].wake_at) == (version, blob, holder, wake_at)
        wakes = [w for _, _, _, w in self.model.values() if w is not None]
        assert self.store.next_wake() == (min(wakes) if wakes else None)


class SQLiteStoreModel(StoreModel):
    kind = "sqlite"


class PostgresStoreModel(StoreModel):
    kind = "postgres"


_machine_settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
TestMemoryStoreModel = StoreModel.TestCase
TestMemoryStoreModel.settings = _machine_settings
TestSQLiteStoreModel = SQLiteStoreModel.TestCase
TestSQLiteStoreModel.settings = _machine_settings
TestPostgresStoreModel = pytest.mark.postgres(pytest.mark.skipif(
    not POSTGRES_DSN and not POSTGRES_REQUIRED, reason=NO_POSTGRES)(PostgresStoreModel.TestCase))
TestPostgresStoreModel.settings = _machine_settings


# -- opening stores ------------------------------------------------------------------------------


def test_open_store_urls(tmp_path):
    assert isinstance(open_store("memory:"), MemoryStore)
    absolute = tmp_path / "abs.db"
    with open_store(f"sqlite:///{absolute}?synchronous=FULL") as s:
        assert isinstance(s, SQLiteStore) and s.path == str(absolute)
    assert absolute.exists()
    with open_store(str(tmp_path / "bare.db")) as s:
        assert isinstance(s, SQLiteStore)


@pytest.mark.parametrize("url, message", [
    ("mysql://x", "unknown store URL"),
    ("sqlite:relative.db", "sqlite:///"),
    ("sqlite:///", "names no file"),
    ("sqlite:///x.db?journal=off", "unknown SQLite store option"),
    ("sqlite:///x.db?synchronous=SOMETIMES", "synchronous"),
    ("memory:?x=1", "takes no options"),
])
def test_open_store_refuses_bad_urls(url, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GenflowError, match=message):
        open_store(url)


def test_sqlite_refuses_garbage_and_newer_schemas(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreNotFoundError, match=r"cannot open the store: .* is not an SQLite "
                       r"database .*check the path"):
        SQLiteStore(garbage)
    newer = tmp_path / "newer.db"
    SQLiteStore(newer).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE genflow_schema SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(GenflowError, match="schema version 99"):
        SQLiteStore(newer)


def test_sqlite_survives_reopen(tmp_path):
    path = tmp_path / "r.db"
    with SQLiteStore(path) as s:
        s.create(rec("a", wake_at=sec(3), waiting_for=("go",)))
        s.save(rec("a", blob=b"second", wake_at=sec(3), waiting_for=("go",)), expected_version=1)
        s.append_journal("a", [("start", {})], T0)
    with SQLiteStore(path) as s:
        got = s.get("a")
        assert (got.version, got.blob, got.waiting_for) == (2, b"second", ("go",))
        assert [e.kind for e in s.journal("a")] == ["start"]
        assert s.count(waiting="go") == 1


def test_claim_due_and_next_wake_only_for_the_workflows_asked(store):
    store.create(rec("a", workflow="mine", wake_at=sec(5)))
    store.create(rec("b", workflow="theirs", wake_at=sec(1)))
    assert store.next_wake({"mine"}) == sec(5)
    assert store.next_wake(set()) is None
    assert store.claim_due("me", sec(10), sec(20), 10, workflows=set()) == []
    assert [r.id for r in store.claim_due("me", sec(10), sec(20), 10, workflows={"mine"})] == ["a"]
    assert store.get("b").lease_owner is None


def test_transaction_groups_writes_into_one_commit(make_store, store_kind):
    writer, reader = make_store(), make_store()
    if store_kind == "memory":  # all or nothing too (other threads wait for the end)
        writer.create(rec("keep"))
        with pytest.raises(RuntimeError), writer.transaction():
            assert writer.grouping()
            writer.create(rec("a"))
            writer.save(rec("keep", blob=b"v2"), expected_version=1)
            writer.append_journal("keep", [("x", {})], T0)
            writer.put_outbox([OutboxEntry("keep", "a", due_at=T0)])
            raise RuntimeError("crash")
        assert not writer.grouping()
        with pytest.raises(InstanceNotFoundError):
            reader.get("a")
        assert reader.get("keep").blob == b"\x00blob" and reader.journal("keep") == []
        assert reader.list_outbox() == []
        return
    writer.create(rec("a"))
    with writer.transaction():
        assert writer.grouping()
        writer.save(rec("a", blob=b"v2"), expected_version=1)
        writer.create(rec("b"))
        with writer.transaction():  # nested: joins the outer commit
            writer.append_journal("a", [("x", {})], T0)
        assert reader.get("a").blob == b"\x00blob"  # nothing is visible before the commit
        with pytest.raises(InstanceNotFoundError):
            reader.get("b")
    assert not writer.grouping()
    assert reader.get("a").blob == b"v2" and reader.get("b").version == 1
    assert [e.kind for e in reader.journal("a")] == ["x"]
    with pytest.raises(RuntimeError), writer.transaction():
        writer.save(rec("a", blob=b"v3"), expected_version=2)
        raise RuntimeError("crash in the middle of a batch")
    assert reader.get("a").blob == b"v2"  # the whole group rolled back
    with writer.transaction():  # a failed statement inside leaves the rest standing
        with pytest.raises(DuplicateInstanceError):
            writer.create(rec("b"))
        writer.save(rec("a", blob=b"v3"), expected_version=2)
    assert reader.get("a").blob == b"v3"


def test_shards_split_the_instances_exactly(store):
    ids = [f"s{n:02}" for n in range(40)]
    for id_ in ids:
        store.create(rec(id_, status="waiting" if id_ < "s30" else "finished"))
    for count in (1, 3):
        parts = [[r.id for r in store.list(shard=(index, count))] for index in range(count)]
        assert sorted(i for part in parts for i in part) == ids  # every id in exactly one
        assert all(part == sorted(part) and part for part in parts)
        waiting = [store.list(status="waiting", shard=(index, count), limit=100, after="s05")
                   for index in range(count)]
        assert sorted(r.id for part in waiting for r in part) == ids[6:30]


def _open_new_file_at_once(path: str, start, n: int) -> None:
    start.wait()
    with SQLiteStore(path) as store:
        store.create(rec(f"p{n}"))


@pytest.mark.parametrize("attempt", range(3))
def test_sqlite_processes_opening_a_new_file_at_once(tmp_path, attempt):
    """Switching a new file to WAL can fail with "database is locked" at once; the
    store retries, so workers started together on a fresh file all open it."""
    path = str(tmp_path / f"new{attempt}.db")
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_open_new_file_at_once, args=(path, start, n)) for n in range(6)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 6
    with SQLiteStore(path) as store:
        assert store.count() == 6


def test_save_with_previous_writes_what_changed(store):
    """`previous` lets a store write only the columns that changed; what is read
    back must be the same as after a full write."""
    current = store.create(rec("a", wake_at=sec(5), waiting_for=("go",), attempts=1, error="e"))
    changes = [{"blob": b"b2"}, {"status": "finished", "wake_at": None}, {"waiting_for": ()},
               {"waiting_for": ("x", "y"), "attempts": 0, "error": ""}, {"wake_at": sec(9)},
               {}]
    for change in changes:
        new = current.replace(**change)
        saved = store.save(new, expected_version=current.version, previous=current)
        got = store.get("a")
        for field in ("status", "blob", "wake_at", "waiting_for", "attempts", "error"):
            assert getattr(got, field) == getattr(new, field) == getattr(saved, field), field
        assert got.version == current.version + 1
        current = got
    assert [r.id for r in store.list(waiting="x")] == ["a"]
    assert store.count(waiting="go") == 0
