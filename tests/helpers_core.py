"""Drive core instances in three modes, so every scenario also proves replay-equivalence.

* ``plain``: one in-memory instance, never serialised.
* ``reload``: `dumps`/`loads` between every operation, and a round trip checked
  inside the checkpoint callback.
* ``crash``: as ``reload``, and every resume "crashes" right after each
  checkpoint: the instance is reloaded from the blob that checkpoint saved and
  resumed again, as a process that dies after saving would be.

A scenario run in each mode must end with byte-identical blobs.
"""

from __future__ import annotations

from typing import Any

import attrs

from genflow import (
    MAIN_THREAD,
    CallbackRequest,
    CheckpointType,
    GenflowError,
    HandlerError,
    State,
    StepError,
    ThreadStatus,
    WaitEventStatus,
    WorkflowStatus,
    cancel,
    dumps,
    handle_callback,
    loads,
    new_state,
    resume,
)
from genflow.clock import FakeClock
from genflow.codec import unstructure

__all__ = ["MODES", "Crash", "Run", "blob", "ready_events", "request"]

MODES = ("plain", "reload", "crash")


class Crash(Exception):
    """Raised by the crash-mode checkpoint: the process 'dies' right after saving."""


def _failure(state: State) -> GenflowError:
    for thread in state.threads:
        if thread.error:
            return StepError(thread.stmt, thread.id, RuntimeError(thread.error))  # (its repr)
        if thread.failures:  # (a failure whose thread ended after its cleanup ran)
            failure = thread.failures[-1]
            return StepError(failure.step, thread.id, RuntimeError(failure.message))
        for event in thread.events:
            if event.error:
                return HandlerError("setup", event.event, thread.id, RuntimeError(event.error))
    return GenflowError(f"instance {state.id!r} failed")


def blob(wf: Any, state: State) -> bytes:
    """The instance as bytes: the one comparison that sees data and State together."""
    return dumps(wf, state)


def request(state: State, event: str, thread: str = MAIN_THREAD) -> CallbackRequest:
    """The request for `event` of a waiting thread (it must exist)."""
    found = state.thread(thread)
    assert found is not None, f"no thread {thread!r} in {[t.id for t in state.threads]}"
    for waiting in found.events:
        if waiting.event == event:
            return waiting.req
    raise AssertionError(f"thread {thread!r} does not wait for {event!r}: {found}")


def ready_events(state: State) -> list[tuple[str, str]]:
    """Every (thread, event) that could be delivered right now, in a stable order."""
    return [
        (t.id, e.event)
        for t in state.threads
        if t.status is ThreadStatus.WAITING_EVENT
        for e in t.events
        if e.status is WaitEventStatus.SETUP
    ]


@attrs.define
class Run:
    """One instance driven in one of `MODES`; `kinds` lists every checkpoint seen."""

    wf: Any
    mode: str = "plain"
    instance_id: str = "i-1"
    clock: FakeClock = attrs.field(factory=FakeClock)
    state: State = attrs.field(default=None)
    kinds: list[CheckpointType] = attrs.field(factory=list)
    #: the blob saved at the last checkpoint: what a store would hold.
    saved: bytes = b""

    def __attrs_post_init__(self) -> None:
        assert self.mode in MODES
        if self.state is None:
            self.state = new_state(self.instance_id, self.wf)
        self.saved = blob(self.wf, self.state)

    def _reload(self) -> None:
        if self.mode != "plain":
            self.wf, self.state = loads(blob(self.wf, self.state))

    def _checkpoint(self, kind: CheckpointType) -> None:
        self.kinds.append(kind)
        self.saved = blob(self.wf, self.state)
        if self.mode == "plain":
            return
        wf, state = loads(self.saved)
        current = (unstructure(self.wf), unstructure(self.state))
        assert (unstructure(wf), unstructure(state)) == current
        if self.mode == "crash":
            raise Crash(kind)

    def resume(self, **kwargs: Any) -> None:
        self._reload()
        while True:
            try:
                resume(self.wf, self.state, self._checkpoint, clock=self.clock, **kwargs)
                return
            except Crash:
                self.wf, self.state = loads(self.saved)
                if self.state.status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED):
                    return
                if self.state.status is WorkflowStatus.FAILED:
                    # the crash came right after the failure was saved: what a caller
                    # then learns is the failed State, so the run reports it as raised
                    failure = _failure(self.state)
                    raise failure from failure.__cause__

    def cancel(self) -> None:
        """Cancel, crash-tested like `resume`: after a crash, cancelling again goes on."""
        self._reload()
        while True:
            try:
                cancel(self.wf, self.state, self._checkpoint, clock=self.clock)
                return
            except Crash:
                self.wf, self.state = loads(self.saved)
                if self.state.status in (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED):
                    return

    def send(self, event: str, payload: Any = None, thread: str = MAIN_THREAD) -> Any:
        self._reload()
        return handle_callback(request(self.state, event, thread), self.wf, self.state, payload)

    def step(self, event: str, payload: Any = None, thread: str = MAIN_THREAD) -> Any:
        """Deliver an event, then resume: the usual pair."""
        out = self.send(event, payload, thread)
        self.resume()
        return out

    def blob(self) -> bytes:
        return blob(self.wf, self.state)
