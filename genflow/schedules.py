"""Schedules: instances started by the clock, exactly once per tick, on any number of workers.

A schedule is stored data, not code: a cron expression (parsed by croniter,
`pip install 'genflow[cron]'`) or an interval, a time zone, the workflow and
its start data, jitter, a catch-up policy, an overlap policy and, optionally,
a queue. Any worker whose engine runs the workflow fires its ticks
(`Engine.work` does, every round): the store locks the schedules that are due
(PostgreSQL `FOR UPDATE SKIP LOCKED`, SQLite's single writer), the engine
decides what each tick does (`_Turn`), and the store writes the new instance
and the schedule's advance in one transaction. The instance's id is derived
from the schedule and the tick (`nightly@2030-01-02T02:00:00Z`), so even a
store that lost its answer to a commit cannot start a tick twice, and a
clock that jumps backwards finds every earlier tick already behind the
schedule's `next_tick`.

Start data: the schedule keeps the workflow's fields as plain data (checked
against the workflow's types when the schedule is made), so every worker
builds the same instance and `genflow schedule show` can print them. When a
tick needs data of its own (the day to report on), the schedule names a
*factory*: a function registered in every worker with `@factory("name")`,
called with the stored data and the tick time, that returns the instance to
start. Code is never stored; a schedule names it, as an instance names its
workflow.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import enum
import hashlib
import logging
import re
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import msgpack

from genflow.clock import MAX_DURATION, system_clock
from genflow.codec import dumps, explain, structure, structure_data, unstructure
from genflow.errors import (
    ArgumentError,
    ConcurrencyError,
    GenflowError,
    ScheduleError,
    ScheduleNotFoundError,
    WorkflowFinishedError,
)
from genflow.observe import fields
from genflow.registry import workflow_name
from genflow.runtime import drive
from genflow.state import new_state
from genflow.stores.base import InstanceRecord
from genflow.stores.scheduling import ENDED, Firing, QueueEntry, ScheduleRecord
from genflow.validation import validate
from genflow.wire import storable_key

if TYPE_CHECKING:
    from genflow.engine import Engine

_Ops = Generator[Any, Any, Any]

__all__ = ["Catchup", "Overlap", "Schedule", "ScheduleInfo", "Schedules", "factory",
           "info_of", "instance_id_for", "schedule_of"]

log = logging.getLogger("genflow.schedules")

F = TypeVar("F", bound=Callable[..., Any])

#: a schedule's id leaves room in an instance id (255) for "@" and the tick
MAX_SCHEDULE_ID = 200
#: ticks one schedule fires in one turn (the rest fire in the next turns)
MAX_TICKS_PER_TURN = 100
#: how long a tick that could not start its instance waits before it is tried again
ERROR_BACKOFF = _dt.timedelta(seconds=60)
#: the catch-up window of `Catchup.SKIP` when none is given: a busy worker's slack
SKIP_WINDOW = _dt.timedelta(seconds=60)
_US = _dt.timedelta(microseconds=1)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_LAST = _dt.datetime.max.replace(tzinfo=_dt.UTC)


class Catchup(str, enum.Enum):  # noqa: UP042 - str() and format() as the other enums
    """What happens to ticks missed while no worker ran."""

    SKIP = "skip"  #: dropped: only a tick due within the window (default 1 minute) fires
    ALL = "all"  #: every missed tick within the window (default: all) fires, oldest first
    LATEST = "latest"  #: only the newest missed tick fires (within the window, if given)


class Overlap(str, enum.Enum):  # noqa: UP042
    """What a tick does while the instance of the previous tick still runs."""

    SKIP = "skip"  #: nothing: the tick is skipped (counted in `skipped`)
    ALLOW = "allow"  #: starts its instance anyway
    CANCEL = "cancel"  #: cancels the previous instance, then starts its own


_FACTORIES: dict[str, Callable[[Any, _dt.datetime], Any]] = {}


def factory(name: str) -> Callable[[F], F]:
    """Register `fn(data, tick) -> workflow instance` as the start-data factory
    `name`. `data` is the schedule's stored data, `tick` the tick's time in the
    schedule's time zone. It runs inside the transaction that fires the tick
    (keep it pure and quick: it may run again if that transaction is retried);
    every worker that fires the schedule must import the module that registers it."""
    if not isinstance(name, str) or not name:
        raise ScheduleError("a factory needs a non-empty string name")

    def register(fn: F) -> F:
        _FACTORIES[name] = fn
        return fn

    return register


@attrs.frozen
class Schedule:
    """A schedule's definition, as stored (see `Schedules.add` for each field)."""

    id: str
    workflow: str
    data: dict[str, Any]
    cron: str | None = None
    every: _dt.timedelta | None = None
    timezone: str = "UTC"
    factory: str | None = None
    jitter: _dt.timedelta = _dt.timedelta(0)
    catchup: Catchup = Catchup.SKIP
    catchup_window: _dt.timedelta | None = None
    overlap: Overlap = Overlap.SKIP
    queue: str | None = None
    priority: int = 0
    start: _dt.datetime | None = None
    end: _dt.datetime | None = None
    #: each started instance's deadline, from its start (`Engine.start(deadline=...)`)
    deadline: _dt.timedelta | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def window(self) -> _dt.timedelta | None:
        """The catch-up window in force (the policy's default when none is given)."""
        if self.catchup_window is None and self.catchup is Catchup.SKIP:
            return SKIP_WINDOW
        return self.catchup_window

    @property
    def spec_text(self) -> str:
        """`cron '0 2 * * *' (Europe/Paris)` / `every 0:15:00`."""
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {self.every}"

    # -- ticks --

    def next_after(self, moment: _dt.datetime) -> _dt.datetime | None:
        """The first tick strictly after `moment` (UTC), None past `end` (or past
        the year 9999, where datetimes end)."""
        if self.start is not None and moment < self.start:
            moment = self.start - _US
        try:
            if self.cron is not None:
                cron = _cron(self.cron, moment.astimezone(self.zone))
                tick = cron.get_next(_dt.datetime)
                while self._repeated(tick):
                    tick = cron.get_next(_dt.datetime)
                tick = tick.astimezone(_dt.UTC)
            else:
                assert self.every is not None
                anchor = self.start or _EPOCH
                steps = (moment - anchor) // self.every + 1
                tick = anchor + steps * self.every
        except Exception as exc:
            if isinstance(exc, OverflowError) or _past_the_years(exc):
                return None
            raise
        return None if self.end is not None and tick > self.end else tick

    def latest_at_or_before(self, moment: _dt.datetime) -> _dt.datetime | None:
        """The last tick at or before `moment` (None: none since `start`)."""
        if self.cron is not None:
            cron = _cron(self.cron, (moment + _US).astimezone(self.zone))
            try:
                tick = cron.get_prev(_dt.datetime)
                while self._repeated(tick):
                    tick = cron.get_prev(_dt.datetime)
            except Exception as exc:
                if _past_the_years(exc):
                    return None
                raise
            tick = tick.astimezone(_dt.UTC)
        else:
            assert self.every is not None
            anchor = self.start or _EPOCH
            if moment < anchor:
                return None
            tick = anchor + ((moment - anchor) // self.every) * self.every
        if self.start is not None and tick < self.start:
            return None
        if self.end is not None and tick > self.end:
            return self.latest_at_or_before(self.end) if moment > self.end else None
        return tick

    def _repeated(self, tick: _dt.datetime) -> bool:
        """Whether `tick` is the second pass of a wall time the autumn's DST change
        repeats, for a cron whose hour is fixed: `30 2 * * *` fires once that
        night, at the first 02:30 (as Vixie cron does), while a wildcard or
        stepped hour (`30 * * * *`, `*/15 * * * *`) keeps its cadence through both."""
        local = tick.astimezone(self.zone)
        if not local.fold:
            return False
        first = local.replace(fold=0)
        if first.utcoffset() == local.utcoffset():
            return False  # not a repeated wall time
        assert self.cron is not None
        parts = self.cron.split()
        hour = parts[1] if len(parts) >= 5 else "*"
        return "*" not in hour and "/" not in hour

    def jitter_of(self, tick: _dt.datetime) -> _dt.timedelta:
        """The tick's delay: the same on every worker (a hash of the schedule and
        the tick), spread evenly over [0, jitter), and over [0, the time to the next
        tick) when that is shorter (as Temporal caps it): ticks fire in their order,
        and a jitter longer than the interval does not leave a tick's catch-up
        window behind the next tick's (under `skip` only a few ticks in a hundred
        fired)."""
        if not self.jitter:
            return _dt.timedelta(0)
        spread = self.jitter
        following = None if self.cron is None and self.every is None else self.next_after(tick)
        if following is not None:
            spread = min(spread, following - tick)
        digest = hashlib.blake2b(f"{self.id}|{_stamp(tick)}".encode(), digest_size=8).digest()
        fraction = int.from_bytes(digest, "big") / 2**64
        return _dt.timedelta(microseconds=int(spread / _US * fraction))

    def fires_at(self, tick: _dt.datetime) -> _dt.datetime:
        try:
            return tick + self.jitter_of(tick)
        except OverflowError:  # a tick in the year 9999
            return _LAST

    def upcoming(self, after: _dt.datetime | None, n: int) -> list[_dt.datetime]:
        """The next `n` ticks from `after` (included)."""
        ticks: list[_dt.datetime] = []
        tick = after
        while tick is not None and len(ticks) < n:
            ticks.append(tick)
            tick = self.next_after(tick)
        return ticks

    # -- packing (the store keeps it as bytes) --

    def pack(self) -> bytes:
        return msgpack.packb(unstructure(self), use_bin_type=True, datetime=False,
                             default=str)

    @classmethod
    def unpack(cls, blob: bytes) -> Schedule:
        return structure(msgpack.unpackb(blob, raw=False), cls)


@attrs.frozen
class ScheduleInfo:
    """A schedule as a worker sees it: its definition and where it stands."""

    schedule: Schedule
    paused: bool
    next_tick: _dt.datetime | None  #: the next tick (None: paused, or past its end)
    due_at: _dt.datetime | None  #: when that tick fires (jitter included)
    last_tick: _dt.datetime | None
    last_instance: str | None
    fired: int
    skipped: int
    error: str
    version: int

    @property
    def id(self) -> str:
        return self.schedule.id

    def next_fire_times(self, n: int = 5) -> list[_dt.datetime]:
        """When the next `n` ticks fire (jitter included); [] while paused."""
        if type(n) is not int or n < 0:
            raise ArgumentError(f"next_fire_times takes a count of ticks (0 or more), not {n!r}")
        if self.paused:
            return []
        return [self.schedule.fires_at(t) for t in self.schedule.upcoming(self.next_tick, n)]


def instance_id_for(schedule_id: str, tick: _dt.datetime) -> str:
    """The id of the instance a tick starts: the same on every worker, every attempt."""
    return f"{schedule_id}@{_stamp(tick)}"


_STARTED = re.compile(r"(.+)@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z)", re.S)


def schedule_of(instance_id: str) -> tuple[str, _dt.datetime] | None:
    """(schedule id, tick) of an id `instance_id_for` made, else None. (An id
    of that shape given by hand reads the same: check the schedule exists.)"""
    match = _STARTED.fullmatch(instance_id)
    if match is None:
        return None
    try:
        tick = _dt.datetime.fromisoformat(match.group(2).replace("Z", "+00:00"))
    except ValueError:
        return None
    return match.group(1), tick


def _stamp(tick: _dt.datetime) -> str:
    tick = tick.astimezone(_dt.UTC)
    text = tick.strftime("%Y-%m-%dT%H:%M:%S")
    if tick.microsecond:
        text += f".{tick.microsecond:06d}"
    return text + "Z"


def _cron(expression: str, start: _dt.datetime) -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise GenflowError("cron schedules need croniter: pip install 'genflow[cron]' "
                           "(or give the schedule an interval: every=timedelta(...))") from None
    return croniter(expression, start)


def _past_the_years(exc: Exception) -> bool:
    """Whether croniter found no date: a cron with a year field (its seventh) has
    no tick after its last year, nor before its first (as `end` and `start` do)."""
    return type(exc).__name__ == "CroniterBadDateError"


#: what `Schedules.update` changes: the spec's fields (`Schedule`), and `paused`
_SPEC = ("cron", "every", "timezone", "factory", "jitter", "catchup", "catchup_window",
         "overlap", "queue", "priority", "start", "end", "deadline")
_UPDATABLE = frozenset((*_SPEC, "paused"))
_KEEP: Any = object()  # `Schedules.update`: the data as it is


class Schedules:
    """`engine.schedules`: add, list, get, pause, resume, trigger, backfill and
    delete schedules, and fire the due ticks (the worker loop calls `run_due`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- the API --

    def add(
        self,
        schedule_id: str,
        data: Any,
        *,
        cron: str | None = None,
        every: _dt.timedelta | None = None,
        timezone: str = "UTC",
        factory: str | None = None,
        jitter: _dt.timedelta | float = 0,
        catchup: Catchup | str = Catchup.SKIP,
        catchup_window: _dt.timedelta | float | None = None,
        overlap: Overlap | str = Overlap.SKIP,
        queue: str | None = None,
        priority: int = 0,
        start: _dt.datetime | None = None,
        end: _dt.datetime | None = None,
        deadline: _dt.timedelta | float | None = None,
        paused: bool = False,
    ) -> ScheduleInfo:
        """Create a schedule that starts `data`'s workflow at every tick.

        `cron` (croniter's syntax, in `timezone`, DST included) or `every` (an
        interval from `start`, else from the Unix epoch, so `every=15 minutes`
        ticks at :00, :15...). `data` is an instance of the workflow (its
        fields are stored); `factory` names a registered `@factory` that
        makes each tick's instance from it. `jitter`: each tick fires up to
        this much later (the same delay on every worker). `catchup` and
        `catchup_window`: what happens to missed ticks (`Catchup`); `overlap`:
        what a tick does while the previous tick's instance runs (`Overlap`).
        `queue`/`priority`: ticks start their instances on that queue, admitted
        by that priority (lower first; a priority without a queue is refused).
        `start`/`end` bound the ticks. `deadline` (a timedelta, or seconds):
        each instance a tick starts is cancelled if it has not finished that
        long after its start, as `Engine.start(deadline=...)` cancels (Temporal's
        workflow execution timeout); with `overlap="skip"`, a run that hangs
        then no longer holds back every later tick.

        Refused with `ScheduleError` (nothing written) for a bad cron
        expression, an unknown time zone, data that does not fit the
        workflow's types, an unknown factory or queue, a priority without a
        queue; `UnknownWorkflowError` for a workflow this engine does not run;
        `DuplicateScheduleError` for an id in use.
        """
        engine = self.engine
        if type(paused) is not bool:  # (stored as an integer column: 'yes' would be a ValueError)
            raise ScheduleError(f"schedule {schedule_id!r}: paused is True or False, "
                                f"not {paused!r}")
        schedule = self._checked(
            schedule_id, data, cron=cron, every=every, timezone=timezone, factory=factory,
            jitter=_delta(jitter, "jitter"), catchup=_enum(Catchup, catchup, "catchup"),
            catchup_window=None if catchup_window is None
            else _delta(catchup_window, "catchup_window"),
            overlap=_enum(Overlap, overlap, "overlap"), queue=queue, priority=priority,
            start=start, end=end, deadline=None if deadline is None
            else _delta(deadline, "deadline"))
        now = engine.clock()
        tick = schedule.next_after(now)
        record = ScheduleRecord(
            schedule.id, schedule.workflow, schedule.pack(), tick,
            None if paused or tick is None else schedule.fires_at(tick), paused=paused)
        stored = engine.store.create_schedule(record)
        engine.store.notify_wake()
        log.info("schedule %s added: %s, workflow %s", schedule.id, schedule.spec_text,
                 schedule.workflow, extra=fields(workflow=schedule.workflow, schedule=schedule.id))
        return _info(stored)

    def update(self, schedule_id: str, data: Any = _KEEP, **changes: Any) -> ScheduleInfo:
        """Change schedule `schedule_id` in place (Temporal's `handle.update`):
        its start `data` and any keyword `add` takes (`cron`, `every`,
        `timezone`, `jitter`, `overlap`, `catchup_window`, `paused`...); what is
        not given stays. Giving `cron` drops `every` and the other way round;
        `queue=None` drops the priority (it orders a queue's admission).
        The id, the counts (`fired`, `skipped`) and the last run stay; the next
        tick is computed again from now under the new spec. Refused as `add`
        refuses (`ScheduleError`, `UnknownWorkflowError`, `QueueNotFoundError`)
        with the row unchanged; `data` of another workflow is refused too
        (delete and add for that). Atomic: a compare-and-swap of the row, tried
        again when a worker fires a tick meanwhile."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ScheduleError(f"schedule {schedule_id!r}: update takes "
                                f"{', '.join(sorted(_UPDATABLE))}, not "
                                f"{', '.join(sorted(unknown))}")
        engine = self.engine

        def updated(record: ScheduleRecord, old: Schedule) -> ScheduleRecord:
            given = data
            if given is _KEEP:
                given = structure_data(old.data, engine._class(old.workflow))
            elif workflow_name(given) != old.workflow:
                raise ScheduleError(f"schedule {schedule_id!r} starts workflow "
                                    f"{old.workflow!r}, not {workflow_name(given)!r}: delete "
                                    "it and add another to change the workflow")
            spec = {name: getattr(old, name) for name in _SPEC}
            if "cron" in changes or "every" in changes:
                spec["cron"], spec["every"] = changes.get("cron"), changes.get("every")
            if "queue" in changes and changes["queue"] is None and "priority" not in changes:
                spec["priority"] = 0  # (a priority orders a queue: none is left to order)
            spec.update((k, v) for k, v in changes.items() if k in _SPEC)
            spec["jitter"] = _delta(spec["jitter"], "jitter")
            spec["catchup"] = _enum(Catchup, spec["catchup"], "catchup")
            spec["overlap"] = _enum(Overlap, spec["overlap"], "overlap")
            for name in ("catchup_window", "deadline"):  # (None: unset)
                if spec[name] is not None:
                    spec[name] = _delta(spec[name], name)
            paused = changes.get("paused", record.paused)
            if type(paused) is not bool:
                raise ScheduleError(f"schedule {schedule_id!r}: paused is True or False, "
                                    f"not {paused!r}")
            schedule = self._checked(schedule_id, given, **spec)
            tick = schedule.next_after(engine.clock())
            return record.replace(spec=schedule.pack(), next_tick=tick, paused=paused,
                                  due_at=None if paused or tick is None
                                  else schedule.fires_at(tick))

        info = self._update(schedule_id, updated)
        engine.store.notify_wake()
        log.info("schedule %s updated: %s", schedule_id, info.schedule.spec_text,
                 extra=fields(workflow=info.schedule.workflow, schedule=schedule_id))
        return info

    def get(self, schedule_id: str) -> ScheduleInfo:
        """The schedule (`ScheduleNotFoundError` if none)."""
        return _info(self.record(schedule_id))

    def record(self, schedule_id: str) -> ScheduleRecord:
        """The schedule's row as stored, its spec not read (`ScheduleNotFoundError`
        if none: an id no store could keep names none, and no store is asked for
        it, as PostgreSQL would refuse a NUL with a `StoreError`)."""
        return self.engine.store.get_schedule(_known(schedule_id))

    def list(self) -> builtins.list[ScheduleInfo]:
        return [_info(r) for r in self.engine.store.list_schedules()]

    def pause(self, schedule_id: str) -> ScheduleInfo:
        """No tick fires until `resume` (ticks meanwhile are not caught up)."""
        return self._update(schedule_id, lambda r, s: r.replace(paused=True, due_at=None))

    def resume(self, schedule_id: str) -> ScheduleInfo:
        """Fire again from the next tick after now."""
        def resumed(record: ScheduleRecord, schedule: Schedule) -> ScheduleRecord:
            if not record.paused:
                return record
            tick = schedule.next_after(self.engine.clock())
            return record.replace(paused=False, next_tick=tick,
                                  due_at=None if tick is None else schedule.fires_at(tick))
        info = self._update(schedule_id, resumed)
        self.engine.store.notify_wake()
        return info

    def delete(self, schedule_id: str) -> None:
        """Remove the schedule (the instances it started stay)."""
        if not self.engine.store.delete_schedule(_known(schedule_id)):
            self.engine.store.get_schedule(schedule_id)  # ScheduleNotFoundError

    def instances(self, schedule_id: str, *, workflow: str | None = None,
                  status: str | None = None, waiting: str | None = None,
                  after: str | None = None, limit: int = 100) -> builtins.list[InstanceRecord]:
        """The instances schedule `schedule_id` started (its ticks, triggers and
        backfills), ordered by id, which is tick order; `after` pages (an id).
        Their ids all start with ``ID@`` (`instance_id_for`), so this is one
        range read of the store's id order from there, stopped at the first id
        past it. The schedule need not exist any more: its instances stay (an id
        no store could keep started none)."""
        if not storable_key(schedule_id, MAX_SCHEDULE_ID):
            return []
        prefix = f"{schedule_id}@"
        cursor = after if after is not None and after > prefix else prefix
        found: builtins.list[InstanceRecord] = []
        while len(found) < limit:
            want = limit - len(found) + 1
            page = self.engine.list(workflow=workflow, status=status, waiting=waiting,
                                    after=cursor, limit=want)
            for record in page:
                if not record.id.startswith(prefix):
                    return found  # ids are in order: none after this one is the schedule's
                started = schedule_of(record.id)
                if started is not None and started[0] == schedule_id:
                    found.append(record)
                    if len(found) == limit:
                        return found
            if len(page) < want:
                break
            cursor = page[-1].id
        return found

    def trigger(self, schedule_id: str) -> str | None:
        """Fire one tick now, paused or not, under the overlap policy; the id
        of the instance it started (None: the overlap policy skipped it).
        The schedule's own ticks go on as before."""
        _known(schedule_id)
        for _ in range(3):  # a cancel of the previous run first, then the tick
            now = self.engine.clock()
            turn = _Turn(self.engine, now, manual=True)
            firings = self.engine.store.fire_schedules(now, turn.decide, schedule_id=schedule_id)
            cancel = [f.cancel for f in firings if f.cancel is not None]
            if not cancel:
                self._started(firings)
                return turn.started[0] if turn.started else None
            self._cancel(cancel)
        raise GenflowError(f"schedule {schedule_id!r}: the previous run could not be cancelled "
                           "(it is busy); try again")

    def backfill(self, schedule_id: str, start: _dt.datetime,
                 end: _dt.datetime) -> builtins.list[str]:
        """Start the instance of every tick in [start, end) that has none yet
        (the overlap policy does not apply: each tick runs). Returns the ids
        started. Refused beyond 10,000 ticks (backfill in parts)."""
        info = self.get(schedule_id)
        for moment in (start, end):
            if not isinstance(moment, _dt.datetime) or moment.tzinfo is None:
                raise ScheduleError(f"backfill of {schedule_id!r}: start and end are aware "
                                    f"datetimes, not {moment!r}")
        if end < start:
            raise ScheduleError(f"backfill of {schedule_id!r}: end ({end}) is before start "
                                f"({start})")
        ticks = []
        tick = info.schedule.next_after(start - _US)
        while tick is not None and tick < end:
            ticks.append(tick)
            if len(ticks) > 10_000:
                raise ScheduleError(f"backfill of {schedule_id!r}: over 10,000 ticks between "
                                    f"{start} and {end}: backfill in parts")
            tick = info.schedule.next_after(tick)
        started: builtins.list[str] = []
        for n in range(0, len(ticks), 500):
            turn = _Turn(self.engine, self.engine.clock(), backfill=ticks[n:n + 500])
            firings = self.engine.store.fire_schedules(turn.now, turn.decide,
                                                       schedule_id=schedule_id)
            self._started(firings)
            started += [i for f in firings for i in f.created]
        return started

    # -- the worker's part --

    def run_due(self, limit: int = 10) -> int:
        """Fire the due ticks of up to `limit` schedules (of the workflows this
        engine runs); how many instances were started. A previous run that
        the overlap policy cancels is cancelled here, and its tick fires on
        the next turn."""
        return int(drive(self.firing(limit), self.engine.observer.watching()))

    def firing(self, limit: int = 10) -> _Ops:
        """`run_due` as an operation of the worker's round (`Engine.work`,
        `work_async`): the cancels of previous runs tear down their handlers,
        which may be async."""
        engine = self.engine
        now = engine.clock()
        due = engine.store.next_schedule_due(engine.runs())
        if due is None or due > now:
            return 0  # (a read: no write transaction on a round with nothing to fire)
        turn = _Turn(engine, now)
        firings = engine.store.fire_schedules(now, turn.decide, limit=limit,
                                              workflows=engine.runs())
        self._started(firings)
        cancel = [f.cancel for f in firings if f.cancel is not None]
        for instance_id in cancel:
            try:
                yield from engine._relaying(engine._cancel(instance_id, 5.0))
            except WorkflowFinishedError:
                pass  # it ended meanwhile: the tick fires next turn all the same
            except GenflowError as exc:
                log.warning("schedule: cannot cancel the previous run %s yet: %s", instance_id,
                            exc, extra=fields(instance_id))
        return sum(len(f.created) for f in firings) + len(cancel)

    def next_due(self, now: _dt.datetime) -> _dt.datetime | None:
        return self.engine.store.next_schedule_due(self.engine.runs())

    # -- helpers --

    def _started(self, firings: builtins.list[Firing]) -> None:
        engine = self.engine
        created = [i for f in firings for i in f.created]
        for firing in firings:
            for instance_id in firing.created:
                log.info("schedule %s started %s", firing.schedule.id, instance_id,
                         extra=fields(instance_id, firing.schedule.workflow,
                                      schedule=firing.schedule.id))
                engine._record(instance_id, [("start", {"schedule": firing.schedule.id})])
        if created:
            engine.store.notify_wake()

    def _cancel(self, ids: builtins.list[str]) -> None:
        for instance_id in ids:
            try:
                self.engine.cancel(instance_id, timeout=5.0)
            except WorkflowFinishedError:
                pass  # it ended meanwhile: the tick fires next turn all the same
            except GenflowError as exc:
                log.warning("schedule: cannot cancel the previous run %s yet: %s", instance_id,
                            exc, extra=fields(instance_id))

    def _update(self, schedule_id: str,
                change: Callable[[ScheduleRecord, Schedule], ScheduleRecord]) -> ScheduleInfo:
        store = self.engine.store
        for attempt in range(5):  # a worker firing a tick meanwhile moves the version on
            record = self.record(schedule_id)
            new = change(record, Schedule.unpack(record.spec))
            if new == record:
                return _info(record)
            try:
                return _info(store.save_schedule(new, expected_version=record.version))
            except ConcurrencyError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _checked(self, schedule_id: str, data: Any, **fields: Any) -> Schedule:
        """The schedule, or `ScheduleError` saying what is wrong with it."""
        engine = self.engine
        if not storable_key(schedule_id, MAX_SCHEDULE_ID):
            raise ScheduleError(f"a schedule id is a text of 1 to {MAX_SCHEDULE_ID} characters "
                                f"(valid UTF-8, no NUL), not {schedule_id!r}")
        name = workflow_name(data)
        cls = engine._class(name)  # UnknownWorkflowError: this engine does not run it
        if not isinstance(data, cls):
            raise ScheduleError(f"schedule {schedule_id!r}: the start data is an instance of "
                                f"the workflow to run (an {cls.__name__}), not {data!r}")
        cron, every = fields["cron"], fields["every"]
        if (cron is None) == (every is None):
            raise ScheduleError(f"schedule {schedule_id!r}: give cron='...' or every=timedelta(...)"
                                ", one of them")
        if cron is not None:
            if not isinstance(cron, str):
                raise ScheduleError(f"schedule {schedule_id!r}: cron is a text, not {cron!r}")
            try:  # (croniter refuses a date that never comes, `0 0 31 2 *`, at get_next)
                _cron(cron, system_clock()).get_next(_dt.datetime)
            except GenflowError:
                raise
            except Exception as exc:
                raise ScheduleError(f"schedule {schedule_id!r}: bad cron expression {cron!r}: "
                                    f"{exc} (five fields: minute hour day month weekday, as in "
                                    "'0 2 * * *'; a sixth for seconds)") from None
        else:
            every = _delta(every, "every")
            if every <= _dt.timedelta(0):
                raise ScheduleError(f"schedule {schedule_id!r}: every= must be positive, "
                                    f"not {every}")
        zone = fields["timezone"]
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ScheduleError(f"schedule {schedule_id!r}: unknown time zone {zone!r} (use an "
                                "IANA name such as 'Europe/Paris' or 'UTC')") from None
        for when in ("start", "end"):
            moment = fields[when]
            if moment is not None and (not isinstance(moment, _dt.datetime)
                                       or moment.tzinfo is None):
                raise ScheduleError(f"schedule {schedule_id!r}: {when} is an aware datetime, "
                                    f"not {moment!r}")
        if not isinstance(fields["priority"], int) or isinstance(fields["priority"], bool) \
                or not -2**63 <= fields["priority"] < 2**63:
            raise ScheduleError(f"schedule {schedule_id!r}: priority is a whole number (64 bits), "
                                f"not {fields['priority']!r}")
        if fields["queue"] is None and fields["priority"] != 0:  # (as `Engine.start` refuses it)
            raise ScheduleError(f"schedule {schedule_id!r}: priority={fields['priority']!r} "
                                "orders a queue's admission, and its ticks start on no queue: "
                                "give the queue too (queue=...), or no priority")
        if fields["start"] is not None and fields["end"] is not None \
                and fields["end"] < fields["start"]:
            raise ScheduleError(f"schedule {schedule_id!r}: end ({fields['end']}) is before "
                                f"start ({fields['start']})")
        if fields["jitter"] < _dt.timedelta(0) or (
                fields["catchup_window"] is not None
                and fields["catchup_window"] < _dt.timedelta(0)):
            raise ScheduleError(f"schedule {schedule_id!r}: jitter and catchup_window are "
                                "durations of 0 or more")
        if fields["deadline"] is not None and fields["deadline"] <= _dt.timedelta(0):
            raise ScheduleError(f"schedule {schedule_id!r}: deadline is a duration above 0 "
                                f"(from each instance's start), not {fields['deadline']}")
        name_of_factory = fields["factory"]
        if name_of_factory is not None and name_of_factory not in _FACTORIES:
            raise ScheduleError(
                f"schedule {schedule_id!r}: no factory {name_of_factory!r} is registered (known:"
                f" {', '.join(sorted(_FACTORIES)) or 'none'}): import the module whose "
                f"@genflow.schedules.factory({name_of_factory!r}) registers it")
        queue = fields["queue"]
        if queue is not None:
            engine.queues.get(queue)  # QueueNotFoundError
        try:  # stored plain, made again at each tick: it must come back as it went in
            plain = unstructure(data)
            back = structure_data(plain, cls)
        except Exception as exc:
            raise ScheduleError(f"schedule {schedule_id!r}: the start data does not fit workflow "
                                f"{name!r}: {explain(exc)}") from None
        schedule = Schedule(id=schedule_id, workflow=name, data=plain,
                            **{**fields, "every": every})
        tick = schedule.next_after(engine.clock())
        try:  # what a tick will start, made once now: its failures are the user's to see
            validate(back)
            _Turn(engine, engine.clock()).instance(schedule, tick or engine.clock())
        except Exception as exc:
            raise ScheduleError(f"schedule {schedule_id!r}: its first tick could not start an "
                                f"instance: {_reason(exc)}") from None
        return schedule


class _Turn:
    """One call of `fire_schedules`: decides, for each locked schedule row, which
    ticks start an instance, which are skipped, and where the schedule goes next."""

    def __init__(self, engine: Engine, now: _dt.datetime, *, manual: bool = False,
                 backfill: list[_dt.datetime] | None = None) -> None:
        self.engine = engine
        self.now = now
        self.manual = manual
        self.backfill = backfill
        self.started: list[str] = []

    def instance(self, schedule: Schedule, tick: _dt.datetime,
                 instance_id: str | None = None) -> tuple[InstanceRecord, QueueEntry | None]:
        """The instance a tick starts (and its queue entry), made and serialised."""
        engine = self.engine
        cls = engine._class(schedule.workflow)
        data = structure_data(schedule.data, cls)
        if schedule.factory is not None:
            make = _FACTORIES.get(schedule.factory)
            if make is None:
                raise ScheduleError(f"no factory {schedule.factory!r} is registered in this "
                                    "process: import the module that registers it")
            data = make(data, tick.astimezone(schedule.zone))
            if not isinstance(data, cls):
                raise ScheduleError(f"factory {schedule.factory!r} returned {data!r}, not an "
                                    f"instance of {cls.__name__}")
        instance_id = instance_id or instance_id_for(schedule.id, tick)
        state = new_state(instance_id, data)
        if schedule.deadline is not None:
            state.deadline = self.now + schedule.deadline
        record = InstanceRecord(id=instance_id, workflow=schedule.workflow,
                                status=state.status.value,
                                blob=dumps(data, state, check=True),
                                wake_at=None if schedule.queue else self.now)
        entry = None
        if schedule.queue is not None:
            entry = engine.queues.entry_for(schedule.queue, instance_id, data, schedule.priority)
        return record, entry

    def decide(self, record: ScheduleRecord, last_status: str | None) -> Firing | None:
        try:
            schedule = Schedule.unpack(record.spec)
        except Exception as exc:  # a row this genflow cannot read: set it aside, visibly
            return Firing(record.replace(due_at=None, error=f"unreadable schedule: {exc}"))
        if self.backfill is not None:
            return self._backfill(record, schedule)
        if self.manual:
            return self._manual(record, schedule, last_status)
        if record.paused or record.next_tick is None or record.due_at is None \
                or record.due_at > self.now:
            return None  # (a row another turn moved on meanwhile)
        try:
            return self._ticks(record, schedule, last_status)
        except Exception as exc:  # one schedule must not stop the worker, nor spin it
            reason = f"{type(exc).__name__}: {exc}"
            log.error("schedule %s cannot fire: %s; tried again in %s", schedule.id, reason,
                      ERROR_BACKOFF, extra=fields(workflow=schedule.workflow,
                                                      schedule=schedule.id))
            return Firing(record.replace(due_at=self.now + ERROR_BACKOFF, error=reason))

    def _ticks(self, record: ScheduleRecord, schedule: Schedule,
               last_status: str | None) -> Firing:
        now = self.now
        assert record.next_tick is not None
        window = schedule.window
        due: list[_dt.datetime] = []
        following: _dt.datetime | None
        if schedule.catchup is Catchup.ALL:
            tick: _dt.datetime | None = record.next_tick
            if window is not None and tick is not None and tick < now - window - schedule.jitter:
                tick = schedule.next_after(now - window - schedule.jitter - _US)
            while tick is not None and schedule.fires_at(tick) <= now \
                    and len(due) < MAX_TICKS_PER_TURN:
                due.append(tick)
                tick = schedule.next_after(tick)
            following = tick
        else:  # the newest due tick only
            latest = schedule.latest_at_or_before(now)
            while latest is not None and latest >= record.next_tick \
                    and schedule.fires_at(latest) > now:
                latest = schedule.latest_at_or_before(latest - _US)
            if latest is not None and latest >= record.next_tick:
                due.append(latest)
                following = schedule.next_after(latest)
            else:
                following = record.next_tick
        fire = [t for t in due if window is None or now - schedule.fires_at(t) <= window]
        if len(fire) < len(due) or (due and due[0] > record.next_tick):
            log.info("schedule %s catches up (%s): ticks from %s to %s missed, %d started",
                     schedule.id, schedule.catchup.value, record.next_tick,
                     due[-1] if due else now, len(fire), extra=fields(workflow=schedule.workflow,
                                                       schedule=schedule.id))
        running = last_status is not None and last_status not in ENDED
        if schedule.overlap is Overlap.CANCEL:
            fire = fire[-1:]
            if fire and running:
                return Firing(record, cancel=record.last_instance)
        advanced = record.replace(
            next_tick=following,
            due_at=None if following is None else schedule.fires_at(following))
        return self._start(advanced, schedule, fire, running)

    def _start(self, record: ScheduleRecord, schedule: Schedule, ticks: list[_dt.datetime],
               running: bool, ids: list[str] | None = None) -> Firing:
        instances: list[tuple[InstanceRecord, QueueEntry | None]] = []
        skipped = 0
        last_tick, last_instance = record.last_tick, record.last_instance
        for n, tick in enumerate(ticks):
            if running and schedule.overlap is Overlap.SKIP:
                skipped += 1
                continue
            try:
                made = self.instance(schedule, tick, None if ids is None else ids[n])
            except Exception as exc:  # the factory, a queue this process lacks...
                reason = _reason(exc)
                log.error("schedule %s: the tick of %s cannot start its instance: %s; tried "
                          "again in %s", schedule.id, tick, reason, ERROR_BACKOFF,
                          extra=fields(workflow=schedule.workflow, schedule=schedule.id))
                if self.manual:
                    raise
                # the schedule stays at this tick, looked at again after the backoff
                return Firing(record.replace(
                    next_tick=tick, due_at=self.now + ERROR_BACKOFF, error=reason,
                    last_tick=last_tick, last_instance=last_instance,
                    fired=record.fired + len(instances), skipped=record.skipped + skipped),
                    tuple(instances))
            instances.append(made)
            self.started.append(made[0].id)
            last_tick, last_instance = tick, made[0].id
            running = True
        return Firing(record.replace(last_tick=last_tick, last_instance=last_instance,
                                     fired=record.fired + len(instances),
                                     skipped=record.skipped + skipped, error=""),
                      tuple(instances))

    def _manual(self, record: ScheduleRecord, schedule: Schedule,
                last_status: str | None) -> Firing:
        running = last_status is not None and last_status not in ENDED
        if running and schedule.overlap is Overlap.CANCEL:
            return Firing(record, cancel=record.last_instance)
        firing = self._start(record, schedule, [self.now], running)
        # a manual tick is not one of the schedule's: it leaves last_tick as it was
        return attrs.evolve(firing, schedule=firing.schedule.replace(last_tick=record.last_tick))

    def _backfill(self, record: ScheduleRecord, schedule: Schedule) -> Firing:
        assert self.backfill is not None
        made = [self.instance(schedule, tick) for tick in self.backfill]
        return Firing(record.replace(fired=record.fired + len(made)), tuple(made))


def _known(schedule_id: Any) -> str:
    """`schedule_id`, or `ScheduleNotFoundError` when no store could keep it as an
    id (`add` refuses such an id: no schedule has it)."""
    if not storable_key(schedule_id, MAX_SCHEDULE_ID):
        raise ScheduleNotFoundError(f"no schedule {schedule_id!r}: a schedule's id is a text "
                                    f"of 1 to {MAX_SCHEDULE_ID} characters (valid UTF-8, no NUL)")
    return str(schedule_id)


def info_of(record: ScheduleRecord) -> ScheduleInfo:
    """The `ScheduleInfo` of a stored row (whatever unpacking its spec raises,
    for a row this genflow cannot read)."""
    return _info(record)


def _info(record: ScheduleRecord) -> ScheduleInfo:
    return ScheduleInfo(Schedule.unpack(record.spec), record.paused, record.next_tick,
                        record.due_at, record.last_tick, record.last_instance, record.fired,
                        record.skipped, record.error, record.version)


def _reason(exc: BaseException) -> str:
    """`ConnectionError: db down`: the error's type named once (`explain` names it
    for an error that is not the converter's)."""
    words = explain(exc)
    name = type(exc).__name__
    return words if words.startswith(f"{name}:") else f"{name}: {words}"


def _delta(value: Any, what: str) -> _dt.timedelta:
    """`value` (a timedelta or seconds) as a timedelta of at most `MAX_DURATION`."""
    delta = value if isinstance(value, _dt.timedelta) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError, ValueError):  # NaN, infinite, too long
            delta = _dt.timedelta(seconds=value)
        if delta is None and value > 0 and value != float("inf"):  # a number, too long
            raise ScheduleError(f"{what} is at most {MAX_DURATION.days} days (100 years), "
                                f"not {value!r} seconds")
    if delta is None:
        raise ScheduleError(f"{what} is a timedelta or a number of seconds, not {value!r}")
    if delta > MAX_DURATION:
        raise ScheduleError(f"{what} is at most {MAX_DURATION.days} days (100 years), "
                            f"not {delta}")
    return delta


E = TypeVar("E", bound=enum.Enum)


def _enum(kind: type[E], value: Any, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise ScheduleError(f"{what} is one of {', '.join(repr(k.value) for k in kind)}, "
                            f"not {value!r}") from None


def iter_ticks(schedule: Schedule, start: _dt.datetime) -> Iterator[_dt.datetime]:
    """Every tick after `start` (for tests and tools)."""
    tick = schedule.next_after(start)
    while tick is not None:
        yield tick
        tick = schedule.next_after(tick)
