"""Keeping leases alive while long steps run: the engine's heartbeat.

An engine moves an instance only while it holds the instance's lease, which
expires (`Engine(lease_seconds=...)`) so that a dead worker's instances are
taken over. A step that runs longer than the lease must not be taken over
while it is still running: one keeper thread per process renews every lease
an engine of this process holds, each time a third of its length has passed
since the last renewal, for as long as the engine holds it. The operation that
holds it pays nothing per step: the keeper sleeps until some lease is a third
old.

A step can also report progress by hand with `heartbeat("half done")`: it
renews the lease at once and puts the note in the journal (when it is on) and
in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from genflow.errors import GenflowError
from genflow.observe import fields
from genflow.runtime import current_step

if TYPE_CHECKING:
    from genflow.engine import Engine

__all__ = ["heartbeat"]

log = logging.getLogger("genflow.engine")


class _Keeper:
    """The one thread that renews held leases (started at the first lease held)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        #: (engine id, instance id) -> (engine, monotonic time of the last renewal)
        self._held: dict[tuple[int, str], tuple[Engine, float]] = {}
        self._thread: threading.Thread | None = None

    def hold(self, engine: Engine, instance_id: str) -> None:
        with self._cond:
            self._held[(id(engine), instance_id)] = (engine, time.monotonic())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="genflow-leases",
                                                daemon=True)
                self._thread.start()

    def drop(self, engine: Engine, instance_id: str) -> None:
        with self._cond:
            self._held.pop((id(engine), instance_id), None)

    def holder(self, instance_id: str) -> Engine | None:
        with self._cond:
            for (_, held_id), (engine, _) in self._held.items():
                if held_id == instance_id:
                    return engine
        return None

    def renew(self, engine: Engine, instance_id: str) -> bool:
        """Extend `engine`'s lease of the instance now; False if it no longer holds it."""
        now = engine.clock()
        try:
            renewed = engine.store.acquire(instance_id, engine.owner, now, now + engine.lease)
        except GenflowError as exc:  # the store's trouble: the next round tries again
            log.warning("instance %s: renewing its lease failed: %s", instance_id, exc,
                        extra=fields(instance_id))
            return False
        with self._cond:
            key = (id(engine), instance_id)
            if key in self._held:
                self._held[key] = (engine, time.monotonic())
        if renewed is None:
            log.warning("instance %s: its lease was taken over by another worker while a "
                        "step ran", instance_id, extra=fields(instance_id))
        return renewed is not None

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._held:
                    self._thread = None
                    return  # started again by the next `hold`
                due = [(engine, instance_id, last)
                       for (_, instance_id), (engine, last) in self._held.items()]
            now = time.monotonic()
            waits = []
            for engine, instance_id, last in due:
                third = engine.lease.total_seconds() / 3
                if now - last >= third:
                    self.renew(engine, instance_id)
                    waits.append(third)
                else:
                    waits.append(third - (now - last))
            time.sleep(max(0.05, min(waits, default=1.0)))


KEEPER = _Keeper()


def heartbeat(note: str | None = None, **details: Any) -> bool:
    """From inside a step run by an `Engine`: the step is alive. Its instance's
    lease is renewed now (the keeper renews it anyway every third of the lease;
    call this to report progress), and `note` goes in the journal (when it is
    on) and the log. Returns False outside an engine (the pure core, a test)."""
    ctx = current_step()
    engine = KEEPER.holder(ctx.instance_id)
    if engine is None:
        return False
    renewed = KEEPER.renew(engine, ctx.instance_id)
    if note is not None or details:
        entry = {"step": ctx.step, "thread": ctx.thread_id, "attempt": ctx.attempt,
                 "note": note, **details}
        engine._record(ctx.instance_id, [("heartbeat", entry)])
        log.info("instance %s, step %r: %s", ctx.instance_id, ctx.step, note or details,
                 extra=fields(ctx.instance_id, ctx.workflow, ctx.thread_id, ctx.step,
                              ctx.attempt))
    return renewed
