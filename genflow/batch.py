"""Drive many instances in one job: start them, deliver events, run until idle.

`drive()` runs each phase in this process or, with `processes > 1`, in forked
worker processes that share the store (SQLite file or PostgreSQL). Nothing is
pickled: children inherit the work list by forking and report progress through
a shared counter; everything else goes through the store.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import attrs

from genflow.engine import Engine
from genflow.errors import GenflowError
from genflow.stores import open_store

__all__ = ["BatchResult", "Progress", "drive"]


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
    """A one-line progress bar on a terminal (or quiet, with `enabled=False`)."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, out: TextIO | None = None):
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled
        self.out = out or sys.stderr
        self.started = time.perf_counter()
        self.last = 0.0

    def show(self, done: int, *, final: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not final and now - self.last < 0.2):
            return
        self.last = now
        width = 30
        filled = int(width * min(done, self.total) / self.total)
        rate = done / (now - self.started) if now > self.started else 0.0
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if final else ""
        self.out.write(f"\r{self.label:<8} [{bar}] {done:,}/{self.total:,} {rate:,.0f}/s{end}")
        self.out.flush()


# The work of the current job: set before forking so children inherit it.
_JOB: list[Any] = []


def drive(
    store: str,
    *,
    starts: Sequence[tuple[str | None, Any]] = (),
    events: Sequence[tuple[str, str, Any]] = (),
    processes: int = 1,
    progress: bool = True,
    engine: Callable[[Any], Engine] | None = None,
    commit_every: int = 100,
) -> BatchResult:
    """Start `starts` ((id or None, data) pairs), deliver `events` ((id, event,
    payload) triples), then run due work until nothing is due.

    `store` is a store URL (each process opens its own connection). `engine`
    builds the Engine from an open store (default: `Engine(store)`).
    `commit_every` groups the writes of that many items into one commit
    (`Store.transaction`): a commit is the cost of a durable write, so this is
    most of a batch's speed. The price: a crash loses the uncommitted group,
    whose steps then run again (at least once, as always); `commit_every=1`
    commits every checkpoint.
    """
    if commit_every < 1:
        raise ValueError("commit_every must be at least 1")
    if processes < 1:
        raise ValueError("processes must be at least 1")
    if processes > 1 and store.startswith("memory"):
        raise GenflowError("an in-memory store cannot be shared by worker processes")
    make = engine or Engine
    began = time.perf_counter()
    if processes > 1:  # create and migrate the store once, before the workers open it
        open_store(store).close()
    failed = _phase(store, make, "start", list(starts), processes, progress, _start_one,
                    commit_every)
    failed += _phase(store, make, "events", list(events), processes, progress, _send_one,
                     commit_every)
    with open_store(store) as opened:
        moved = _work(make(opened), processes, store, make, commit_every)
    return BatchResult(len(starts), len(events), moved, failed, time.perf_counter() - began)


def _start_one(engine: Engine, item: tuple[str | None, Any]) -> None:
    engine.start(item[1], id=item[0])


def _send_one(engine: Engine, item: tuple[str, str, Any]) -> None:
    engine.send(item[0], item[1], item[2])


def _phase(
    store: str, make: Callable[[Any], Engine], label: str, items: list[Any],
    processes: int, progress: bool, action: Callable[[Engine, Any], None], commit_every: int,
) -> int:
    """Run `action` on every item; returns how many raised a GenflowError."""
    if not items:
        return 0
    bar = Progress(len(items), label, enabled=progress)
    if processes == 1:
        with open_store(store) as opened:
            failed = _apply(make(opened), items, action, commit_every, bar.show)
        bar.show(len(items), final=True)
        return failed
    _JOB[:] = items
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
    bar.show(done.value, final=True)
    _JOB.clear()
    return int(failures.value)


def _apply(engine: Engine, items: Sequence[Any], action: Callable[[Engine, Any], None],
           commit_every: int, report: Callable[[int], None]) -> int:
    """`action` on each item, `commit_every` items to a commit; returns the failures."""
    failed = 0
    for first in range(0, len(items), commit_every):
        with engine.store.transaction():
            for item in items[first:first + commit_every]:
                try:
                    action(engine, item)
                except GenflowError:
                    failed += 1
        report(min(first + commit_every, len(items)))
    return failed


def _child(store: str, make: Callable[[Any], Engine], index: int, count: int,
           action: Callable[[Engine, Any], None], commit_every: int, done: Any,
           failures: Any) -> None:
    def report(handled: int) -> None:
        with done.get_lock():
            done.value += handled - reported[0]
        reported[0] = handled

    reported = [0]
    with open_store(store) as opened:
        failed = _apply(make(opened), _JOB[index::count], action, commit_every, report)
    with failures.get_lock():
        failures.value += failed


def _drain(engine: Engine, commit_every: int) -> int:
    """Run due work until nothing is due, `commit_every` instances to a commit."""
    total = 0
    while True:
        with engine.store.transaction():
            moved = engine.run_due(commit_every)
        if not moved:
            return total
        total += moved


def _work(engine: Engine, processes: int, store: str, make: Callable[[Any], Engine],
          commit_every: int) -> int:
    """Run due work until idle, in `processes` processes sharing the store."""
    if processes == 1:
        return _drain(engine, commit_every)
    ctx = multiprocessing.get_context("fork")
    moved = ctx.Value("q", 0)
    workers = [ctx.Process(target=_work_child, args=(store, make, commit_every, moved))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return int(moved.value)


def _work_child(store: str, make: Callable[[Any], Engine], commit_every: int, moved: Any) -> None:
    with open_store(store) as opened:
        count = _drain(make(opened), commit_every)
    with moved.get_lock():
        moved.value += count
