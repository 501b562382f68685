"""The `Store` interface: where instances live between moves.

A store knows nothing of workflows: it keeps rows of (id, workflow, status, blob,
version, wake_at, lease) and guarantees three things the engine builds on:

* every write is a compare-and-swap on `version`: of two writers that read the
  same version, exactly one wins; the other gets `ConcurrencyError`;
* `wake_at` is indexed: `claim_due` finds the instances whose next work (a resume,
  a retry, a timer) is due without reading any blob;
* a *lease* (`lease_owner`, `lease_until`) lets one process at a time move an
  instance; an expired lease can be taken over, so a dead worker's instances
  are not stuck.

The optional journal (`append_journal` / `journal`) is write-only for the engine:
resume never reads it, so it cannot make resuming slower as an instance ages.
Its details arrive plain (made so by the engine): the store only packs them.

A store's own failures (its database, disk or server) are `StoreError`s:
`StoreUnavailableError` for transient ones, retried inside the store first
where that is safe, `StoreFullError`, `ReadOnlyStoreError` and
`StoreNotFoundError`. No driver exception leaves a store method.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import datetime as _dt
import inspect
import time
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

import attrs
import msgpack

from genflow.clock import system_clock
from genflow.errors import ConcurrencyError, GenflowError, SerializationError
from genflow.wire import STORED_DEPTH, misfit

if TYPE_CHECKING:
    from genflow.stores.scheduling import (
        Admission,
        Decide,
        Firing,
        QueueEntry,
        QueueRecord,
        ScheduleRecord,
    )

__all__ = ["InstanceRecord", "JournalEntry", "OutboxEntry", "Store", "lease_free", "new_record",
           "pack_detail", "refused_save", "unpack_detail", "utcnow"]


# Aliases: inside `Store`, the name `list` is the method, not the builtin.
Records = list["InstanceRecord"]
Journal = list["JournalEntry"]
JournalEntries = list[tuple[str, dict[str, Any]]]


#: bookkeeping time (created_at, updated_at): the system's clock, not the engine's
utcnow = system_clock


_KEEP: Any = object()  # `InstanceRecord.replace`: this field as it is


_FIELDS = ("id", "workflow", "status", "blob", "version", "wake_at", "waiting_for", "attempts",
           "error", "lease_owner", "lease_until", "created_at", "updated_at", "taken_from")


class _RecordSlots:
    """`InstanceRecord`'s slots, in a base of their own, so that `new_record` can
    fill them by plain writes in a sibling class (`_Filling`): a frozen attrs
    class's `__init__` writes each field through `object.__setattr__`, which
    made building the two records of every save a sixth of a durable step's
    instructions (benchmarks/instructions.py)."""

    __slots__ = _FIELDS


@attrs.frozen(weakref_slot=False)  # (no slot of its own: `_Filling` shares its layout)
class InstanceRecord(_RecordSlots):
    """One stored instance.

    `wake_at` is when the engine should next look at the instance (None: only an
    event can move it). `attempts` and `error` describe the last failing step for
    retry policies and operators. `waiting_for` lists the event names it waits
    for, so operators can find instances without decoding blobs. `taken_from`
    is set by `Store.claim_due` only (never stored, not compared): the worker
    whose expired lease the claim took over (it died or hung mid-operation).
    """

    id: str
    workflow: str
    status: str
    # (its size, not its bytes: a blob is the whole encoded instance, kilobytes in a log line)
    blob: bytes = attrs.field(repr=lambda blob: f"<{len(blob)} bytes>")
    version: int = 0
    wake_at: _dt.datetime | None = None
    waiting_for: tuple[str, ...] = ()
    attempts: int = 0
    error: str = ""
    lease_owner: str | None = None
    lease_until: _dt.datetime | None = None
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None
    taken_from: str | None = attrs.field(default=None, eq=False)

    def replace(
        self, *, id: Any = _KEEP, workflow: Any = _KEEP, status: Any = _KEEP, blob: Any = _KEEP,
        version: Any = _KEEP, wake_at: Any = _KEEP, waiting_for: Any = _KEEP,
        attempts: Any = _KEEP, error: Any = _KEEP, lease_owner: Any = _KEEP,
        lease_until: Any = _KEEP, created_at: Any = _KEEP, updated_at: Any = _KEEP,
        taken_from: Any = None,
    ) -> InstanceRecord:
        """A copy with the fields given changed: `attrs.evolve`, written out
        field by field because every save makes two of these, and `evolve`
        (or a dict of the fields) costs twice as much (see benchmarks/).
        `taken_from` is not kept: it tells of one claim only."""
        return new_record(
            self.id if id is _KEEP else id,
            self.workflow if workflow is _KEEP else workflow,
            self.status if status is _KEEP else status,
            self.blob if blob is _KEEP else blob,
            self.version if version is _KEEP else version,
            self.wake_at if wake_at is _KEEP else wake_at,
            self.waiting_for if waiting_for is _KEEP else waiting_for,
            self.attempts if attempts is _KEEP else attempts,
            self.error if error is _KEEP else error,
            self.lease_owner if lease_owner is _KEEP else lease_owner,
            self.lease_until if lease_until is _KEEP else lease_until,
            self.created_at if created_at is _KEEP else created_at,
            self.updated_at if updated_at is _KEEP else updated_at,
            taken_from,
        )


class _Filling(_RecordSlots):
    """A record being built: its fields written plainly, then it is an
    `InstanceRecord` (frozen from then on; the layouts are the same slots)."""

    __slots__ = ()

    def __init__(self, id: str, workflow: str, status: str, blob: bytes, version: int = 0,
                 wake_at: _dt.datetime | None = None, waiting_for: tuple[str, ...] = (),
                 attempts: int = 0, error: str = "", lease_owner: str | None = None,
                 lease_until: _dt.datetime | None = None,
                 created_at: _dt.datetime | None = None,
                 updated_at: _dt.datetime | None = None,
                 taken_from: str | None = None) -> None:
        self.id = id
        self.workflow = workflow
        self.status = status
        self.blob = blob
        self.version = version
        self.wake_at = wake_at
        self.waiting_for = waiting_for
        self.attempts = attempts
        self.error = error
        self.lease_owner = lease_owner
        self.lease_until = lease_until
        self.created_at = created_at
        self.updated_at = updated_at
        self.taken_from = taken_from
        self.__class__ = InstanceRecord  # type: ignore[assignment]


#: `InstanceRecord(...)`, positionally or by name, for the hot paths (every save
#: builds records): the same record, without the frozen class's per-field writes
new_record: Callable[..., InstanceRecord] = _Filling  # type: ignore[assignment]

# `replace` and `new_record` name every field, in order: adding a field means adding it there.
assert list(inspect.signature(InstanceRecord.replace).parameters)[1:] == [
    field.name for field in attrs.fields(InstanceRecord)] == list(_FIELDS) == list(
    inspect.signature(_Filling).parameters), "InstanceRecord.replace or new_record is stale"


@attrs.frozen
class JournalEntry:
    """One recorded move of an instance (only when the engine's journal is on)."""

    instance_id: str
    seq: int
    at: _dt.datetime
    kind: str
    detail: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class OutboxEntry:
    """One effect an instance's checkpoint asked for, waiting for the relay
    (`genflow.outbox`, `Engine`): `kind` "event" delivers `event` with
    `payload` (msgpack of plain values) to `target`, pinned to the wait
    (`thread`, `pc`) when given (a child's report); "cancel" cancels `target`.

    `due_at` is when it may go (None: given up, kept for an operator with
    its `error`); `attempts` counts the deliveries that did not happen yet
    (the target did not wait for it, or was busy). A relay leases the entry
    (`lease_owner`, `lease_until`) while it delivers it; `seq` orders the
    entries (and is 0 before the store numbers them). `trace` is the W3C
    ``traceparent`` of the code that asked for it (None: not traced): its
    delivery's span is that span's child, as an instance started through the
    outbox keeps its asker's trace."""

    origin: str
    target: str
    kind: str = "event"
    event: str = ""
    payload: bytes = b""
    thread: str | None = None
    pc: int | None = None
    due_at: _dt.datetime | None = None
    attempts: int = 0
    error: str = ""
    seq: int = 0
    lease_owner: str | None = None
    lease_until: _dt.datetime | None = None
    created_at: _dt.datetime | None = None
    trace: str | None = None


OUTBOX_KINDS = ("event", "cancel")


def pack_detail(detail: dict[str, Any]) -> bytes:
    """A journal entry's detail as msgpack (every store keeps the same form).

    Details come plain from the engine; anything that is not (a caller's
    datetime) is kept as its `str`, so a journal write never fails on it. What
    msgpack cannot hold even so (a lone surrogate, nesting too deep) is a
    `SerializationError` naming the place."""
    try:
        return msgpack.packb(detail, use_bin_type=True, default=str)
    except Exception as exc:
        found = misfit(detail, depth=STORED_DEPTH)
        why = f"{found[0]}: {found[1]}" if found else f"{type(exc).__name__}: {exc}"
        raise SerializationError(f"journal entry cannot be stored: {why}") from exc


def unpack_detail(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def refused_save(instance_id: str, version: int, holder: str | None, expected_version: int,
                 lease_owner: str | None) -> ConcurrencyError | None:
    """Why a save at `expected_version` by `lease_owner` must be refused, given the
    stored `version` and lease `holder` (None: it may go ahead). Every store words it so."""
    if version != expected_version:
        return ConcurrencyError(f"instance {instance_id!r} is at version {version}, "
                                f"not {expected_version}: someone else saved it first")
    if lease_owner is not None and holder not in (None, lease_owner):
        return ConcurrencyError(
            f"instance {instance_id!r} is leased by {holder!r}, not {lease_owner!r}")
    return None


def lease_free(record: InstanceRecord, owner: str | None, now: _dt.datetime) -> bool:
    """May `owner` (None: anyone) take the lease of `record` at `now`?"""
    return (record.lease_owner is None or record.lease_owner == owner
            or record.lease_until is None or record.lease_until <= now)


def _unsupported(store: Store, what: str) -> GenflowError:
    return GenflowError(f"{type(store).__name__} keeps no {what}: use MemoryStore, SQLiteStore "
                        "or PostgresStore")


class Store(abc.ABC):
    """Abstract store. Datetimes are timezone-aware UTC both ways."""

    #: opened for reading only: every write raises `ReadOnlyStoreError`
    readonly: bool = False

    # -- instances --

    @abc.abstractmethod
    def create(self, record: InstanceRecord, *, lease_owner: str | None = None,
               lease_until: _dt.datetime | None = None) -> InstanceRecord:
        """Insert a new instance with version 1 (optionally leased to `lease_owner`).

        Raises `DuplicateInstanceError` if the id exists. Returns the stored record.
        """

    @abc.abstractmethod
    def get(self, instance_id: str) -> InstanceRecord:
        """The instance, or `InstanceNotFoundError`."""

    @abc.abstractmethod
    def save(self, record: InstanceRecord, *, expected_version: int,
             lease_owner: str | None = None,
             previous: InstanceRecord | None = None,
             release: bool = False) -> InstanceRecord:
        """Replace the instance's status, blob, wake_at, waiting_for, attempts and
        error if its version is still `expected_version`; the new version is
        `expected_version + 1`.

        `previous` is the record as stored at `expected_version` (what the
        caller read): a store may then write only the columns that changed,
        which spares index updates on the commonest save, a step's.

        If `lease_owner` is given, the write also requires that owner to hold an
        unexpired lease (or no one to hold it). Raises `ConcurrencyError` when
        the version moved or the lease is someone else's, `InstanceNotFoundError`
        when the row is gone. Leases are left as they are, unless `release`
        (with `lease_owner`): then the same write drops the lease, as
        `release(record.id, lease_owner)` right after it would (an operation's
        last save, one statement fewer).
        """

    @abc.abstractmethod
    def delete(self, instance_id: str) -> None:
        """Remove the instance and every row that belongs to it (its journal,
        its queue entry). Missing ids are ignored. Retention purges through
        this method, so a table of an instance's rows is emptied here."""

    @abc.abstractmethod
    def list(self, *, workflow: str | None = None, status: str | None = None,
             limit: int | None = None, after: str | None = None,
             waiting: str | None = None, shard: tuple[int, int] | None = None) -> Records:
        """Instances ordered by id, filtered by workflow, status and an event
        they wait for (`waiting`, indexed); `after` pages. `shard=(index,
        count)` keeps one of `count` disjoint parts of the ids, so `count`
        processes can scan a store between them."""

    @abc.abstractmethod
    def count(self, *, workflow: str | None = None, status: str | None = None,
              waiting: str | None = None) -> int:
        """How many instances match."""

    def scan(self, *, workflow: str | None = None, batch: int = 1000) -> Iterator[InstanceRecord]:
        """Every instance (of `workflow`), paged by id: for checks over a whole store."""
        after = None
        while True:
            page = self.list(workflow=workflow, limit=batch, after=after)
            yield from page
            if len(page) < batch:
                return
            after = page[-1].id

    # -- leases and due work --

    @abc.abstractmethod
    def acquire(self, instance_id: str, owner: str, now: _dt.datetime,
                until: _dt.datetime) -> InstanceRecord | None:
        """Lease one instance to `owner` until `until` if no one else holds an
        unexpired lease (re-acquiring one's own lease extends it). Returns the
        record, or None if another owner holds it. `InstanceNotFoundError` if missing.
        """

    @abc.abstractmethod
    def claim_due(self, owner: str, now: _dt.datetime, until: _dt.datetime,
                  limit: int, workflows: Collection[str] | None = None) -> Records:
        """Lease up to `limit` instances with `wake_at <= now` and no unexpired
        lease, earliest first, to `owner` until `until`. Two concurrent callers
        never receive the same instance (PostgreSQL: FOR UPDATE SKIP LOCKED).
        With `workflows`, only instances of those workflows (the ones the
        caller can run) are claimed. A record whose lease had expired in
        another worker's hands says whose (`taken_from`)."""

    @abc.abstractmethod
    def release(self, instance_id: str, owner: str) -> None:
        """Drop `owner`'s lease (no-op if it holds none)."""

    @abc.abstractmethod
    def next_wake(self, workflows: Collection[str] | None = None) -> _dt.datetime | None:
        """The earliest `wake_at` of all instances (of `workflows`): how long a
        worker may sleep."""

    def count_due(self, now: _dt.datetime, workflows: Collection[str] | None = None) -> int:
        """How many instances (of `workflows`) are due at `now` and leased to no
        one: the backlog a worker has yet to claim (the metric
        ``genflow.due.backlog``). This default pages through the store; the
        stores count in one query."""
        return sum(1 for r in self.scan() if r.wake_at is not None and r.wake_at <= now
                   and (r.lease_owner is None or r.lease_until is None or r.lease_until <= now)
                   and (workflows is None or r.workflow in workflows))

    # -- grouping writes --

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """Group the writes made inside into one commit, for batch jobs.

        A crash before the end loses every write inside, so a step checkpointed
        there may run again (steps are at least once anyway). Stores that
        cannot group writes commit each at once (the default).
        """
        return contextlib.nullcontext()

    def grouping(self) -> bool:
        """Is this thread inside `transaction()`? Then nothing it writes is
        durable before the end, and the engine saves an instance once per
        operation rather than at every checkpoint."""
        return False

    def saves_together(self) -> contextlib.AbstractContextManager[dict[str, Exception]]:
        """One commit for the saves of a worker round's turn (`Engine._together`):
        the saves of different instances, each at most once, and the writes
        that go with them (outbox rows, journal entries).

        Like `transaction()`, with one freedom: a store may put off each `save`
        made inside to the end of the block, returning at once the record as
        it will be stored (the lease as the record says, None with `release`),
        and write them all together there (PostgreSQL: one statement, and no
        transaction at all when nothing else was written). A save refused then
        (`ConcurrencyError`, `InstanceNotFoundError`) is in the dict the block
        yields, by instance id, its other writes undone: when any other write
        was made in the block, the block raises `ConcurrencyError` after
        rolling back everything, the refused saves still named in the dict.
        Stores that write each save at once yield an empty dict (the default:
        `transaction()`)."""
        return _saves_in(self.transaction())

    # -- the outbox and children (genflow.outbox; the engine's relay) --

    def create_if_absent(self, record: InstanceRecord,
                         parent: tuple[str, int] | None = None) -> bool:
        """`create` the instance (no lease) unless its id exists; with
        `parent` (the parent's id, the child's index) also the link that
        `children` reads. Whether it was created. Inside `transaction()` it
        joins that commit (a checkpoint's effects go with its save)."""
        raise _unsupported(self, "outbox")

    def children(self, parent_id: str) -> builtins.list[tuple[str, int]]:
        """The (child id, index) of every instance started as a child of
        `parent_id`, in the order they were started."""
        return []

    def put_outbox(self, entries: builtins.list[OutboxEntry]) -> builtins.list[int]:
        """Insert entries (their `seq`s are the store's); their seqs, in order."""
        raise _unsupported(self, "outbox")

    def claim_outbox(self, owner: str, now: _dt.datetime, until: _dt.datetime, limit: int,
                     seqs: Collection[int] | None = None) -> builtins.list[OutboxEntry]:
        """Lease up to `limit` entries due at `now` that no one else holds (only
        those of `seqs` when given), oldest first, to `owner` until `until`.
        Two relays never receive the same entry."""
        return []

    def done_outbox(self, seq: int) -> None:
        """Delete an entry: it was carried out (inside the transaction that
        saved its target, so it happens exactly once)."""
        raise _unsupported(self, "outbox")

    def retry_outbox(self, seq: int, due_at: _dt.datetime | None, attempts: int,
                     error: str) -> None:
        """An entry that could not be carried out now: due again at `due_at`
        (None: given up), its lease dropped."""
        raise _unsupported(self, "outbox")

    def list_outbox(self, *, origin: str | None = None, target: str | None = None,
                    limit: int = 100) -> builtins.list[OutboxEntry]:
        """Entries waiting for the relay (from `origin`, to `target`), oldest first."""
        return []

    def next_outbox_due(self) -> _dt.datetime | None:
        """The earliest `due_at` of the outbox (a worker's sleep ends there)."""
        return None

    # -- waking idle workers --

    def notify_wake(self) -> None:
        """Tell idle workers that something became due now (a hint, may be lost)."""

    def wait_wake(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning early if `notify_wake` reaches this store.

        The default just sleeps: polling `claim_due` stays correct without it.
        """
        if seconds > 0:
            time.sleep(seconds)

    # -- journal --

    @abc.abstractmethod
    def append_journal(self, instance_id: str, entries: JournalEntries,
                       at: _dt.datetime) -> None:
        """Append (kind, detail) entries to the instance's journal, in order.
        `detail` holds msgpack-able primitives."""

    @abc.abstractmethod
    def journal(self, instance_id: str) -> Journal:
        """The instance's journal, oldest first."""

    # -- schedules, queues and retention (genflow.schedules, .queues, .retention;
    # -- the records and the admission rule: genflow.stores.scheduling) --

    def create_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        """Insert a `ScheduleRecord` (version 1); `DuplicateScheduleError` if its id exists."""
        raise _unsupported(self, "schedules")

    def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        """The `ScheduleRecord`, or `ScheduleNotFoundError`."""
        raise _unsupported(self, "schedules")

    def list_schedules(self) -> builtins.list[ScheduleRecord]:
        """Every schedule, ordered by id."""
        raise _unsupported(self, "schedules")

    def save_schedule(self, record: ScheduleRecord, *,
                      expected_version: int) -> ScheduleRecord:
        """Replace a schedule's row if it is still at `expected_version`
        (`ConcurrencyError` otherwise, `ScheduleNotFoundError` if it is gone)."""
        raise _unsupported(self, "schedules")

    def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule (its instances stay); whether it existed."""
        raise _unsupported(self, "schedules")

    def fire_schedules(self, now: _dt.datetime, decide: Decide, *, limit: int = 10,
                       workflows: Collection[str] | None = None,
                       schedule_id: str | None = None) -> builtins.list[Firing]:
        """In one transaction: lock up to `limit` unpaused schedules due at
        `now` (of `workflows`) that no other caller holds (or the one
        `schedule_id`, due or not), call `decide(record, last_status)` for
        each, and write what it returns (`Firing`): its instances (ids that
        exist are left alone) with their queue entries, and the schedule.
        Returns the firings, each with the ids it created. (A store that
        keeps no schedules has none to fire.)"""
        return []

    def next_schedule_due(self, workflows: Collection[str] | None = None) -> _dt.datetime | None:
        """The earliest `due_at` of the unpaused schedules (of `workflows`)."""
        return None

    def put_queue(self, record: QueueRecord) -> None:
        """Create or replace a `QueueRecord` (every worker reads the limits from here)."""
        raise _unsupported(self, "queues")

    def get_queue(self, name: str) -> QueueRecord:
        """The `QueueRecord`, or `QueueNotFoundError`."""
        raise _unsupported(self, "queues")

    def list_queues(self) -> builtins.list[QueueRecord]:
        return []

    def enqueue(self, record: InstanceRecord, entry: QueueEntry) -> InstanceRecord:
        """`create` the instance (no `wake_at`: it waits) and its `QueueEntry`,
        in one transaction. `DuplicateInstanceError` if the id exists."""
        raise _unsupported(self, "queues")

    def admit(self, now: _dt.datetime,
              queues: Collection[str] | None = None) -> Admission | None:
        """One admission round over each queue (or those named) that no other
        caller is admitting: entries admitted by `plan_admission` get
        `admitted_at = now` and their instances `wake_at = now`, in the
        queue's own transaction. Returns an `Admission`."""
        return None

    def queue_entry(self, instance_id: str) -> tuple[QueueEntry, int] | None:
        """The instance's `QueueEntry` and its position among the waiting
        (1 = next; 0 = admitted), or None when it is on no queue."""
        return None

    def queue_counts(self, name: str) -> tuple[int, int]:
        """(waiting, running) entries of a queue."""
        raise _unsupported(self, "queues")

    def queue_entries(self, queue: str, *, waiting: bool = True,
                      after: tuple[int, int] | None = None,
                      limit: int = 100) -> builtins.list[QueueEntry]:
        """One page of a queue's entries in admission order (priority, then
        `seq`), after the entry `after` = (priority, seq): the waiting ones
        (`waiting`), or the admitted ones the queue still holds (running, or
        within its rate window). A keyset read of the index the admission
        reads; at most `limit` entries (a store keeping no queues has none)."""
        return []

    def purge(self, before: _dt.datetime, *, statuses: Collection[str],
              workflow: str | None = None, exclude: Collection[str] = (), limit: int = 500,
              dry_run: bool = False) -> builtins.list[str]:
        """Delete up to `limit` instances whose status is one of `statuses` (ended
        ones only) and that last changed before `before`, oldest first, each
        through `delete` (its journal and every row that belongs to it) and
        all in one short transaction, so a purge of millions runs as many
        small batches between the workers' writes. Leased instances are left
        alone; `exclude` names workflows to leave alone. With `dry_run`, only
        the ids that would go. Returns the ids."""
        ids = self._purgeable(before, statuses, workflow, exclude, limit)
        if not dry_run and ids:
            with self.transaction():
                for instance_id in ids:
                    self.delete(instance_id)
        return ids

    def _purgeable(self, before: _dt.datetime, statuses: Collection[str],
                   workflow: str | None, exclude: Collection[str],
                   limit: int) -> builtins.list[str]:
        raise _unsupported(self, "retention")

    def trim_journal(self, *, before: _dt.datetime | None = None, keep: int | None = None,
                     workflow: str | None = None, limit: int = 10_000) -> int:
        """Delete up to `limit` journal entries older than `before`, or beyond
        the last `keep` of their instance (of `workflow`); how many went. An
        instance's newest entry outlives an age trim, so its numbering goes on."""
        raise _unsupported(self, "retention")

    # -- lifecycle --

    def reopen(self) -> Store:
        """A new connection to the same database, for another process (after a
        fork, a connection must not be shared). Stores that live in one
        process's memory cannot."""
        raise GenflowError(f"{type(self).__name__} cannot be opened from another process")

    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _saves_in(transaction: contextlib.AbstractContextManager[None]
              ) -> Iterator[dict[str, Exception]]:
    """`Store.saves_together` of a store that writes each save at once."""
    with transaction:
        yield {}
