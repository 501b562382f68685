"""The recording driver: the core's own driver, with every call of user code seen.

genflow's operations are generators of the user calls they need
(`(function, args, step_context)`, see `genflow.runtime.Operation`), run by
`genflow.runtime.drive`. The checker drives them the same way, through
`drive` itself, after wrapping each user call so that it is recorded (a
`Call`: which step or handler, which thread, which counter, whether it
returned) and, when a test asks for it, cut short by a simulated crash: right
after the call's k-th outside effect (see `genflow.testing.services`) or right
after it returns, before the checkpoint that would have saved its work.

This module is also the toolkit's one door into the core's call-level API, so
that the rest of the toolkit names no private detail of it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable, Generator
from typing import Any

import attrs

from genflow import runtime
from genflow.errors import GenflowError
from genflow.replay import as_body, iter_tree
from genflow.state import CallbackRequest, CheckpointType, State, Thread, ThreadStatus
from genflow.statements import Retry, Stmt, WaitFor
from genflow.testing.records import Call

__all__ = [
    "CrashInCall",
    "CrashPlan",
    "Recorder",
    "current_call",
    "effect_happened",
    "has_async_code",
    "operation",
    "statement_at",
]

Moves = Generator[Any, Any, Any]


def operation(wf: Any, state: State, checkpoint: Any, clock: Any, *,
              retry: Retry | None = None, handler_retry: Retry | None = None,
              parallel_steps: int = runtime.DEFAULT_PARALLEL_STEPS) -> runtime.Operation:
    """One operation of the core on the instance: `.resume(max_moves)`,
    `.deliver(req, payload, max_moves)`, `.fire_due(now, max_moves)`,
    `.callback(req, payload)` are its moves; `.failure` what a delivery's moves
    failed with. `retry` is the policy of steps without one of their own,
    `handler_retry` that of handler set-ups and teardowns; `parallel_steps`
    how many steps the async driver runs at once (1: one at a time)."""
    return runtime.Operation(wf, state, checkpoint, clock, retry=retry,
                             handler_retry=handler_retry, parallel_steps=parallel_steps)


def statement_at(wf: Any, state: State, thread: Thread, kind: type) -> Any:
    """The statement `thread` stands at, replayed on the current data, if it is
    a `kind` (None if it is gone or is not one)."""
    try:
        found = runtime.locate(wf, state, thread.id).statement
    except GenflowError:
        return None
    return found if isinstance(found, kind) else None


# -- simulated crashes inside user code ---------------------------------------------------


class CrashInCall(BaseException):
    """A simulated crash inside user code: what the call did outside stays done,
    what it did to the data is lost with the process. A BaseException, so that
    neither user code (`except Exception`) nor the core (which rolls the data
    back and re-raises it) mistakes it for a failure."""


@attrs.frozen
class CrashPlan:
    """Crash inside the `call`-th user call a recorder makes (from 0): right after
    its `effect`-th outside effect (from 0), or, with `effect=None`, right after it
    returns."""

    call: int
    effect: int | None = None


_running: contextvars.ContextVar[_Running | None] = contextvars.ContextVar(
    "genflow_testing_call", default=None)


class _Running:
    """The user call running now, as outside effects see it: which execution
    (`key`), which attempt of it (a number no other attempt has)."""

    __slots__ = ("attempt", "crash_after", "effects", "key")
    attempts = 0

    def __init__(self, key: tuple[str, str, str, int], crash_after: int | None):
        self.effects = 0
        self.crash_after = crash_after
        self.key = key
        _Running.attempts += 1
        self.attempt = _Running.attempts


def current_call() -> tuple[tuple[str, str, str, int], int] | None:
    """(the execution's key, the attempt's number) of the user call running now
    in a checker's run, for outside effects to say who made them; None outside one."""
    running = _running.get()
    return None if running is None else (running.key, running.attempt)


def effect_happened() -> None:
    """An outside effect just took place (a FakeService calls this): count it for
    the running call, and crash there if the test planned a crash at this effect."""
    running = _running.get()
    if running is None:
        return
    running.effects += 1
    if running.crash_after is not None and running.effects == running.crash_after + 1:
        raise CrashInCall(f"simulated crash after outside effect #{running.effects}")


# -- recording ----------------------------------------------------------------------------


class Recorder:
    """Drives operations of one instance through `runtime.drive` (or
    `drive_async`), recording every user call in `calls`.

    `owner` is the object holding the instance (`wf`, `state`); `context()`
    gives the `(op, saved)` to stamp on each call."""

    def __init__(self, owner: Any, asynchronous: bool,
                 context: Callable[[], tuple[int, int]] = lambda: (-1, 0)):
        self.owner = owner
        self.asynchronous = asynchronous
        self.context = context
        self.calls: list[Call] = []
        self.crash: CrashPlan | None = None
        self.made = 0  # user calls made (the crash plan counts them)
        self.handled: Any = None  # what the last event handler returned

    def drive(self, moves: Moves) -> Any:
        recorded = self._recorded(moves)
        if self.asynchronous:
            return asyncio.run(runtime.drive_async(recorded))
        return runtime.drive(recorded)

    def _recorded(self, moves: Moves) -> Moves:
        value: Any = None
        error: BaseException | None = None
        checkpoint = None
        while True:
            try:
                call = moves.throw(error) if error is not None else moves.send(value)
            except StopIteration as stop:
                return stop.value
            passed: Any
            if call is runtime.NEXT or call is runtime.CANCEL:  # (steps at once)
                passed = call
            else:
                fn, args, ctx = call
                if checkpoint is None and _is_checkpoint(fn, args, ctx):
                    checkpoint = fn
                if fn is not checkpoint:
                    fn = self._recording(fn, args, ctx)
                passed = runtime.Start(fn, args, ctx) if type(call) is runtime.Start \
                    else (fn, args, ctx)
            try:
                value, error = (yield passed), None
            except BaseException as exc:
                value, error = None, exc

    def _recording(self, fn: Callable[..., Any], args: tuple[Any, ...], ctx: Any) -> Any:
        if args and isinstance(args[0], CallbackRequest):  # a handler (it has a context too)
            req = args[0]
            kind = getattr(fn, "__name__", "handle")
            if kind not in ("setup", "handle", "teardown"):
                kind = "handle"
            thread, name, pc = req.thread_id, req.event, req.pc
        elif ctx is not None:
            kind, thread, name, pc = "step", ctx.thread_id, ctx.step, ctx.pc
        else:
            kind, thread, name, pc = "condition handler", "", _fn_name(fn), -1
            holding = self._condition_holding()
            if holding is not None:
                thread, name, pc = holding.id, holding.stmt, holding.pc
        op, saved = self.context()
        number = self.made
        self.made += 1
        plan = self.crash
        crash_here = plan is not None and plan.call == number
        running = _Running((kind, thread, name, pc),
                           plan.effect if crash_here and plan is not None else None)

        def record(ok: bool, crashed: bool = False) -> None:
            self.calls.append(Call(kind, thread, name, pc, ok, op, saved, running.effects,
                                   crashed))

        def finish(result: Any) -> Any:
            if crash_here:
                record(False, crashed=True)
                raise CrashInCall("simulated crash after the call returned, before its "
                                  "checkpoint")
            record(True)
            if kind == "handle":
                self.handled = result
            return result

        def call(*a: Any) -> Any:
            token = _running.set(running)
            try:
                result = fn(*a)
            except CrashInCall:
                record(False, crashed=True)
                raise
            except BaseException:
                record(False)
                raise
            finally:
                _running.reset(token)
            if result is not None and inspect.isawaitable(result):
                if not self.asynchronous:  # `drive` refuses it (and closes it): a failure
                    record(False)
                    return result
                return _awaited(result, running, record, finish)
            return finish(result)

        return call

    def _condition_holding(self) -> Any:
        """The thread whose WaitFor handler runs now: the first, in creation order,
        that waits for a condition that holds (the core moves threads in that order)."""
        wf, state = self.owner.wf, self.owner.state
        for thread in state.threads:
            if thread.status is not ThreadStatus.WAITING_CONDITION:
                continue
            wait_for = statement_at(wf, state, thread, WaitFor)
            if wait_for is not None and wait_for.cond:
                return thread
        return None


def _is_checkpoint(fn: Any, args: tuple[Any, ...], ctx: Any) -> bool:
    """The checkpoint callback is the one call whose only argument is a kind."""
    return ctx is None and len(args) == 1 and isinstance(args[0], CheckpointType)


async def _awaited(awaitable: Any, running: _Running, record: Callable[..., None],
                   finish: Callable[[Any], Any]) -> Any:
    token = _running.set(running)
    try:
        result = await awaitable
    except CrashInCall:
        record(False, crashed=True)
        raise
    except BaseException:
        record(False)
        raise
    finally:
        _running.reset(token)
    return finish(result)


def _fn_name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


# -- what kind of code a definition calls ---------------------------------------------------


def has_async_code(wf: Any) -> bool:
    """Whether any user code of the definition (every branch) is `async def`:
    whatever callable a statement holds, and a handler object's setup, handle
    and teardown. Statements are read generically, by their slots, so that
    statements added later are covered too."""
    try:
        for stmt, _ in iter_tree(as_body(wf)):
            if any(_is_async(fn) for fn in _user_callables(stmt)):
                return True
    except Exception:
        return False
    return False


def _user_callables(stmt: Stmt) -> list[Any]:
    found: list[Any] = []
    for name in _slots(type(stmt)):
        if name in ("bodies", "body"):
            continue
        value = getattr(stmt, name, None)
        if value is None or isinstance(value, (Stmt, str, bytes, int, float)):
            continue
        if callable(value):
            found.append(value)
        for part in ("setup", "handle", "teardown"):
            method = getattr(value, part, None)
            if callable(method):
                found.append(method)
    return found


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        # compiled (docs/compiled.md), a statement's class has `__mypyc_attrs__`, no slots
        slots = vars(klass).get("__slots__", vars(klass).get("__mypyc_attrs__", ()))
        names.extend([slots] if isinstance(slots, str) else slots)
    return names


def _is_async(fn: Any) -> bool:
    fn = getattr(fn, "func", fn)  # functools.partial
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    )
