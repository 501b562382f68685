"""`Instance`: one workflow instance driven through the core by hand, as a process would.

Three modes, for tests that want to see the same behaviour whatever happens
between the moves:

* ``plain``: one instance in memory, never serialised;
* ``reload``: saved and loaded (`dumps`/`loads`) between operations and at every
  checkpoint, going on from the loaded copy, which must equal the one in memory
  exactly (`Unsaved` names what a save loses);
* ``crash``: as a process that dies right after each save: at every durable
  checkpoint the memory is thrown away, the blob a store holds is loaded and
  the operation resumed again.

A scenario run in each mode must end with byte-identical blobs; `blob()`
gives the instance's bytes, `saved` what a store would hold (the last durable
checkpoint, or the end of the last operation), `kinds` every checkpoint the
core reported, and `calls` every call of user code (see `genflow.testing.driver`).

    run = Instance(Order(), mode="crash")
    run.resume()
    run.send("add", Pizza("margherita"))     # deliver the event, then resume
    assert run.wf.pizzas == [Pizza("margherita")]

`deliver` delivers without resuming (`handle_callback` alone); `resume(max_moves=...)`
bounds the moves of one call, across the reloads and crashes of its mode.
Errors of the core reach the caller as they are (`pytest.raises(StepError)`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genflow.clock import FakeClock
from genflow.codec import dumps, loads
from genflow.errors import MoveLimitError, SerializationError
from genflow.runtime import DEFAULT_MAX_MOVES
from genflow.state import (
    MAIN_THREAD,
    CallbackRequest,
    CheckpointType,
    State,
    WorkflowStatus,
    new_state,
)
from genflow.testing.compare import Difference, differences
from genflow.testing.driver import (
    CrashInCall,
    Recorder,
    callback_moves,
    has_async_code,
    resume_moves,
)
from genflow.testing.records import DURABLE, Call

__all__ = ["MODES", "Instance", "ResumeFrom", "Unsaved", "request"]

MODES = ("plain", "reload", "crash")
_FINAL = (WorkflowStatus.FINISHED, WorkflowStatus.CANCELLED)


class Unsaved(AssertionError):
    """A save and reload does not give back the instance in memory."""

    def __init__(self, found: list[Difference], kind: CheckpointType | None):
        self.differences = found
        self.kind = kind
        where = f"at checkpoint {kind.value}" if kind is not None else "between operations"
        super().__init__(f"a save and reload {where} loses: " + "; ".join(
            d.words(("in memory", "after dumps/loads")) for d in found))


class ResumeFrom(Exception):
    """Raised at a checkpoint (by the mode, or by `on_checkpoint`): memory is
    dropped and the operation goes on from `blob`."""

    def __init__(self, blob: bytes):
        super().__init__("reload")
        self.blob = blob


def request(state: State, event: str, thread: str = MAIN_THREAD) -> CallbackRequest:
    """The live request for `event` of a waiting thread (AssertionError if none)."""
    found = state.thread(thread)
    assert found is not None, f"no thread {thread!r} in {[t.id for t in state.threads]}"
    for waiting in found.events:
        if waiting.event == event:
            return waiting.req
    raise AssertionError(f"thread {thread!r} does not wait for {event!r}: {found}")


class Instance:
    """One instance in one of `MODES`; see the module docstring."""

    def __init__(
        self,
        wf: Any,
        mode: str = "plain",
        *,
        instance_id: str = "i-1",
        clock: FakeClock | None = None,
        state: State | None = None,
        asynchronous: bool | None = None,
        on_checkpoint: Callable[[CheckpointType], Any] | None = None,
        on_reload: Callable[[bytes, bool], Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.wf = wf
        self.state = new_state(instance_id, wf) if state is None else state
        self.clock = clock if clock is not None else FakeClock()
        self.kinds: list[CheckpointType] = []
        #: called after each checkpoint is recorded; may raise to stop the operation
        self.on_checkpoint = on_checkpoint
        #: called with (blob, crashed) when an operation goes on from a loaded blob:
        #: a reload, or (crashed) what a store held when a call of user code crashed
        self.on_reload = on_reload
        #: context stamped on each recorded call: (operation number, mark a store held)
        self.context: Callable[[], tuple[int, int]] = lambda: (-1, 0)
        self.recorder = Recorder(self, has_async_code(wf) if asynchronous is None
                                 else asynchronous, lambda: self.context())
        try:
            start = self.blob()
        except SerializationError:  # the caller finds out when it saves
            start = b""
        self.checkpointed = start  # the blob at the last checkpoint
        self.saved = start  # what a store holds
        self._moves = 0
        self._limit = DEFAULT_MAX_MOVES
        self._seen = 0  # calls recorded at the last checkpoint

    @property
    def calls(self) -> list[Call]:
        return self.recorder.calls

    @property
    def finished(self) -> bool:
        return self.state.status in _FINAL

    def blob(self) -> bytes:
        return dumps(self.wf, self.state)

    def request(self, event: str, thread: str = MAIN_THREAD) -> CallbackRequest:
        return request(self.state, event, thread)

    # -- operations --------------------------------------------------------------------

    def resume(self, *, max_moves: int = DEFAULT_MAX_MOVES) -> None:
        """Move every thread on until blocked or finished (`runtime.resume`),
        with this mode's reloads and crashes; then a store saves the result."""
        self.between_operations()
        self._moves, self._limit = 0, max_moves
        while True:
            try:
                self.recorder.drive(resume_moves(self.wf, self.state, self._checkpoint,
                                                 self.clock, max_moves))
                break
            except ResumeFrom as reload:
                self._load(reload.blob, False)
            except CrashInCall:
                self._load(self.saved, True)
            if self.finished:
                break
        self.saved = self.blob()

    def deliver(self, event: str, payload: Any = None, thread: str = MAIN_THREAD) -> Any:
        """Deliver one event (`handle_callback`, no resume); returns what the
        handler returned. A crash inside the handler is retried, as a sender
        whose request failed would."""
        self.between_operations()
        return self.deliver_request(self.request(event, thread), payload)

    def deliver_request(self, req: CallbackRequest, payload: Any = None) -> Any:
        """`deliver` with a request of your own (a stale or forged one...)."""
        while True:
            try:
                output = self.recorder.drive(callback_moves(self.wf, self.state, req, payload))
                break
            except CrashInCall:
                self._load(self.saved, True)
        self.saved = self.blob()
        return output

    def send(self, event: str, payload: Any = None, thread: str = MAIN_THREAD) -> Any:
        """Deliver an event, then resume (what `Engine.send` does); returns the
        handler's output."""
        output = self.deliver(event, payload, thread)
        self.resume()
        return output

    # -- modes ---------------------------------------------------------------------------

    def between_operations(self) -> None:
        """What happens between two operations: in reload and crash modes, a
        save and load (checked to lose nothing)."""
        if self.mode != "plain":
            blob = self.blob()
            self._round_trip(blob, None)
            self.wf, self.state = loads(blob)

    def _load(self, blob: bytes, crashed: bool) -> None:
        self.wf, self.state = loads(blob)
        if self.on_reload is not None:
            self.on_reload(blob, crashed)

    def _checkpoint(self, kind: CheckpointType) -> None:
        self.kinds.append(kind)
        blob = self.blob()
        self.checkpointed = blob
        if kind.value in DURABLE:
            self.saved = blob
        if self.on_checkpoint is not None:
            self.on_checkpoint(kind)
        calls = self.recorder.calls
        since, self._seen = self._seen, len(calls)
        if self.mode == "plain" or any(not c.ok for c in calls[since:]):
            return  # (after a failed setup or teardown the core raises next: let it)
        self._moves += 1
        if self._moves >= self._limit:  # the core's own count restarts at each reload
            raise MoveLimitError(
                f"instance {self.state.id!r} made {self._moves} moves in one resume "
                f"({self.mode} mode; a loop of steps that never waits?); resume again to go on")
        if self.mode == "reload":
            self._round_trip(blob, kind)
            raise ResumeFrom(blob)
        if kind.value in DURABLE:  # crash: the process dies right after the save
            raise ResumeFrom(blob)

    def _round_trip(self, blob: bytes, kind: CheckpointType | None) -> None:
        wf, state = loads(blob)
        found = differences(self.wf, wf) + differences(self.state, state)
        if found:
            raise Unsaved(found, kind)
