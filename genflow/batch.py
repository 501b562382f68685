"""Drive many instances in one job: start them, deliver events, run until idle.

`run_batch()` runs each phase in this process or, with `processes > 1`, in forked
worker processes that share the store (SQLite file or PostgreSQL). Nothing is
pickled: children inherit the work list by forking and report progress through
a shared counter; everything else goes through the store. Each phase has its
progress line (`Progress`): the run-until-idle phase's total is the work due
when it begins, and grows if more falls due while it runs.

Memory stays bounded whatever the batch's size: the work lists are read as
they go (`commit_every` items at a time; a generator is never made a list),
and the run-until-idle phase claims due work in pages from the store's index.
"""

from __future__ import annotations

import itertools
import multiprocessing
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, TextIO

import attrs

from genflow.engine import Engine
from genflow.errors import ArgumentError, GenflowError
from genflow.state import WorkflowStatus
from genflow.stores import open_store

__all__ = ["BatchResult", "Progress", "drive", "run_batch"]


@attrs.frozen
class BatchResult:
    started: int
    delivered: int
    moved: int
    failed: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.started / self.seconds if self.seconds else 0.0


class Progress:
    """One phase's progress: a bar, done of total, the phase's own rate, the time
    elapsed and the time left (or quiet, with `enabled=False`).

    On a terminal the line is redrawn in place (a carriage return) at most five
    times a second. Anywhere else (a pipe, a file, a CI log) each update is a
    plain line of its own, one every `every` seconds and a last one at the end:
    no carriage returns to garble the log. `total` may grow while the phase runs
    (work that falls due meanwhile), or be None when it cannot be known: then
    there is a count but no bar and no ETA. The rate is the phase's: what it
    has done over the time since it began, in its own `unit`.
    """

    WIDTH = 30

    def __init__(self, total: int | None, label: str, *, unit: str = "items",
                 enabled: bool = True, out: TextIO | None = None, tty: bool | None = None,
                 every: float = 10.0, clock: Callable[[], float] = time.perf_counter):
        self.total = total
        self.label = label
        self.unit = unit
        self.enabled = enabled
        self.out = out or sys.stderr
        self.tty = _isatty(self.out) if tty is None else tty
        self.every = 0.2 if self.tty else every
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.drawn = 0  # the length of the line on the terminal now

    def show(self, done: int, *, final: bool = False) -> None:
        """Report `done` items (at most one update per interval, unless `final`)."""
        if not self.enabled:
            return
        now = self.clock()
        if not final and now - self.last < self.every:
            return
        self.last = now
        line = self.line(done, now - self.started, final=final)
        if self.tty:  # redraw in place, blanking what a longer line left
            self.out.write("\r" + line.ljust(self.drawn) + ("\n" if final else ""))
            self.drawn = 0 if final else len(line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def line(self, done: int, elapsed: float, *, final: bool = False) -> str:
        """The text of one update: `done` items after `elapsed` seconds."""
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.label:<7}"]
        total = None if self.total is None else max(self.total, done)
        if total is None:
            parts.append(f"{done:,}")
        else:
            filled = self.WIDTH * done // total if total else self.WIDTH
            parts.append(f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done:,}/{total:,}")
        parts.append(f"{rate:,.{1 if rate < 10 else 0}f} {self.unit}/s")
        parts.append(f"elapsed {_duration(elapsed)}")
        if not final and total is not None:
            parts.append(f"ETA {_duration((total - done) / rate) if rate else '?'}")
        return "  ".join(parts)


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # no such method; a closed file
        return False


def _duration(seconds: float) -> str:
    """`0:07`, `12:34`, `1:02:03`: minutes and seconds, hours when there are any."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


# The work of the current job: set before forking so children inherit it.
_JOB: list[Any] = []


def run_batch(
    store: str,
    *,
    starts: Iterable[tuple[str | None, Any]] = (),
    events: Iterable[tuple[str, str, Any]] = (),
    processes: int = 1,
    progress: bool = False,
    engine: Callable[[Any], Engine] | None = None,
    commit_every: int = 100,
) -> BatchResult:
    """Start `starts` ((id or None, data) pairs), deliver `events` ((id, event,
    payload) triples), then run due work until nothing is due.

    `starts` and `events` may be any iterables, generators included: they are
    read `commit_every` items at a time, never held whole (a million ids need
    not fit in memory). With `processes > 1`, each worker process reads its own
    forked copy and acts on its share of the items, shared by instance id (so
    an instance's events keep their order): a generator works, but
    not an iterator that shares an open file with the parent (give a generator
    that opens the file itself, or a sequence).

    `store` is a store URL (each process opens its own connection). `engine`
    builds the Engine from an open store (default: `Engine(store)`).
    `commit_every` groups the writes of that many items into one commit
    (`Store.transaction`): a commit is the cost of a durable write, so this is
    most of a batch's speed. The price: a crash loses the uncommitted group,
    whose steps then run again (at least once, as always); `commit_every=1`
    commits every checkpoint. `progress=True` writes each phase's progress to
    stderr (`Progress`); off by default: a library prints nothing unasked.
    """
    if commit_every < 1:
        raise ArgumentError("commit_every must be at least 1")
    if processes < 1:
        raise ArgumentError("processes must be at least 1")
    if processes > 1 and store.startswith("memory"):
        raise ArgumentError("an in-memory store cannot be shared by worker processes: give a "
                            "sqlite:/// or postgresql:// URL, or processes=1")
    make = engine or Engine
    began = time.perf_counter()
    if processes > 1:  # create and migrate the store once, before the workers open it
        open_store(store).close()
    started, failed = _phase(store, make, "start", "starts", starts, processes, progress,
                             _start_one, commit_every)
    delivered, failed_events = _phase(store, make, "events", "events", events, processes,
                                      progress, _send_one, commit_every)
    with open_store(store) as opened:
        moved = _work(make(opened), processes, store, make, commit_every, progress)
    return BatchResult(started, delivered, moved, failed + failed_events,
                       time.perf_counter() - began)



#: `run_batch`'s name in earlier releases (`drive` now names the core's driver only)
drive = run_batch

def _start_one(engine: Engine, item: tuple[str | None, Any]) -> None:
    engine.start(item[1], id=item[0])


def _send_one(engine: Engine, item: tuple[str, str, Any]) -> None:
    engine.send(item[0], item[1], item[2])


def _phase(
    store: str, make: Callable[[Any], Engine], label: str, unit: str, items: Iterable[Any],
    processes: int, progress: bool, action: Callable[[Engine, Any], None], commit_every: int,
) -> tuple[int, int]:
    """Run `action` on every item; returns how many items there were, and how
    many raised a GenflowError."""
    total = len(items) if isinstance(items, Sized) else None
    if total == 0:
        return 0, 0
    bar = Progress(total, label, unit=unit, enabled=progress)
    if processes == 1:
        with open_store(store) as opened:
            handled, failed = _apply(make(opened), iter(items), action, commit_every, bar.show)
        if handled:
            bar.show(handled, final=True)
        return handled, failed
    _JOB[:] = [items]
    ctx = multiprocessing.get_context("fork")
    done = ctx.Value("q", 0)
    failures = ctx.Value("q", 0)
    workers = [
        ctx.Process(target=_child, args=(store, make, index, processes, action, commit_every,
                                         done, failures))
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):
        bar.show(done.value)
        time.sleep(0.05)
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise GenflowError(f"batch worker exited with code {worker.exitcode}")
    if done.value:
        bar.show(done.value, final=True)
    _JOB.clear()
    return int(done.value), int(failures.value)


def _apply(engine: Engine, items: Iterable[Any], action: Callable[[Engine, Any], None],
           commit_every: int, report: Callable[[int], None]) -> tuple[int, int]:
    """`action` on each item, `commit_every` items to a commit, reading the items
    a group at a time; returns how many there were and how many failed."""
    failed = handled = 0
    items = iter(items)
    while True:
        group = list(itertools.islice(items, commit_every))
        if not group:
            return handled, failed
        with engine.store.transaction():
            for item in group:
                try:
                    action(engine, item)
                except GenflowError:
                    failed += 1
        handled += len(group)
        report(handled)


def _share(items: Iterable[Any], index: int, count: int) -> Iterator[Any]:
    """Worker `index`'s share of `items` (of `count` workers). An item naming its
    instance (a start with an id, an event) goes by that id, so every event of
    one instance is sent by one process, in the order given: shared by position,
    an instance's `pay` could overtake its `add` in another process. Starts
    without an id are shared by position."""
    for position, item in enumerate(items):
        key = item[0]
        if isinstance(key, str):
            if zlib.crc32(key.encode()) % count == index:
                yield item
        elif position % count == index:
            yield item


def _child(store: str, make: Callable[[Any], Engine], index: int, count: int,
           action: Callable[[Engine, Any], None], commit_every: int, done: Any,
           failures: Any) -> None:
    def report(handled: int) -> None:
        with done.get_lock():
            done.value += handled - reported[0]
        reported[0] = handled

    reported = [0]
    mine = _share(_JOB[0], index, count)  # (this process's forked copy)
    with open_store(store) as opened:
        _, failed = _apply(make(opened), mine, action, commit_every, report)
    with failures.get_lock():
        failures.value += failed


def _drain(engine: Engine, commit_every: int, report: Callable[[int], None]) -> int:
    """Run due work until nothing is due, `commit_every` instances to a commit;
    `report(moved)` after each commit with how many this call has moved so far."""
    total = 0
    while True:
        with engine.store.transaction():
            moved = engine.run_due(commit_every)
        if not moved:
            return total
        total += moved
        report(total)


#: The most records `_due` reads to count the work due (beyond: the total is unknown).
DUE_SCAN_LIMIT = 100_000


def _due(engine: Engine, page: int = 2000) -> int | None:
    """How many instances this engine runs are due now (their `wake_at` has come):
    the run-until-idle phase's total. Reads at most `DUE_SCAN_LIMIT` records of the
    statuses that can be due (None beyond: a store that big is left uncounted)."""
    store, runs, now = engine.store, engine.runs(), engine.clock()
    due = read = 0
    for status in (WorkflowStatus.RESUMING, WorkflowStatus.WAITING, WorkflowStatus.CANCELLED):
        after = None
        while True:
            rows = store.list(status=status.value, limit=page, after=after)
            due += sum(1 for r in rows
                       if r.workflow in runs and r.wake_at is not None and r.wake_at <= now)
            read += len(rows)
            if read > DUE_SCAN_LIMIT:
                return None
            if len(rows) < page:
                break
            after = rows[-1].id
    return due


def _work(engine: Engine, processes: int, store: str, make: Callable[[Any], Engine],
          commit_every: int, progress: bool) -> int:
    """Run due work until idle, in `processes` processes sharing the store."""
    total = _due(engine) if progress else None
    bar = Progress(total, "work", unit="runs", enabled=progress)
    if processes == 1:
        moved = _drain(engine, commit_every, bar.show)
    else:
        ctx = multiprocessing.get_context("fork")
        shared = ctx.Value("q", 0)
        workers = [ctx.Process(target=_work_child, args=(store, make, commit_every, shared))
                   for _ in range(processes)]
        for worker in workers:
            worker.start()
        while any(w.is_alive() for w in workers):
            bar.show(shared.value)
            time.sleep(0.05)
        for worker in workers:
            worker.join()
            if worker.exitcode != 0:
                raise GenflowError(f"batch worker exited with code {worker.exitcode}")
        moved = int(shared.value)
    if moved or total:
        bar.show(moved, final=True)
    return moved


def _work_child(store: str, make: Callable[[Any], Engine], commit_every: int,
                moved: Any) -> None:
    reported = [0]

    def report(count: int) -> None:
        with moved.get_lock():
            moved.value += count - reported[0]
        reported[0] = count

    with open_store(store) as opened:
        _drain(make(opened), commit_every, report)
