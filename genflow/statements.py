"""The statements a workflow's `definition()` yields.

A definition is replayed from scratch on every move, so statements are small
slotted objects that are cheap to build and hold plain values: a condition is a
`bool` computed from the current data, never a lambda. Nothing here runs user
code; the replay engine (`genflow.replay`) decides what runs and when.

A *body* is whatever may follow a statement's name: statements, lists or tuples
of them, generators, and generator functions (called lazily, once per replay, so
`yield from self.sub_flow()` and `For(..., self.loop_body)` both compose).
"""

from __future__ import annotations

import datetime as _dt
import inspect
from collections.abc import Callable
from inspect import CO_GENERATOR
from types import FunctionType, GeneratorType, MethodType
from typing import Any

import attrs

from genflow.compiled import mypyc_attr
from genflow.errors import (
    DefinitionError,
    NonRetryable,
    StatementError,
    StatementTypeError,
)
from genflow.handlers import EventHandler, TimerHandler, takes_argument
from genflow.sections import Section  # (a tuple subclass: a module of its own, see there)
from genflow.state import Failure

__all__ = [
    "Body",
    "Break",
    "Case",
    "Continue",
    "Default",
    "For",
    "Go",
    "If",
    "On",
    "Raise",
    "Retry",
    "Return",
    "S",
    "Section",
    "Sleep",
    "Step",
    "Stmt",
    "Switch",
    "Timeout",
    "Try",
    "Wait",
    "WaitFor",
]

#: What a statement body may contain (see the module docstring).
Body = Any

#: `Timeout(at=...)` / `Sleep(until=...)` not given (None given: not set yet)
_NOT_GIVEN: Any = object()


# Compiled, a class is closed to subclasses in Python unless it says otherwise: a
# statement may be subclassed (genflow.children's `Children` is a `Wait`)
@mypyc_attr(allow_interpreted_subclasses=True)
class Stmt:
    """Base class of every statement. `name` is `None` for unnamed ones (Break...)."""

    __slots__ = ()
    name: str | None = None
    #: child bodies, for compound statements: one per branch, loop, event or thread.
    bodies: tuple[tuple[Any, ...], ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})" if self.name else f"{type(self).__name__}()"


@attrs.frozen
class Retry:
    """How a failing step (or handler) is tried again: `attempts` in all (None:
    forever), waiting `backoff * factor**(n-1)` seconds, capped at `max_backoff`,
    after failed attempt n; only for exceptions that are instances of `on` and
    of none of `never` (an error a retry cannot mend, such as a refused card).

    The attempt count and the next try belong to the step: the core records them
    on the thread, so an event for another thread neither resets nor hurries them.
    """

    attempts: int | None = 3
    backoff: float = 1.0
    factor: float = 2.0
    max_backoff: float = 300.0
    on: tuple[type[BaseException], ...] = (Exception,)
    never: tuple[type[BaseException], ...] = ()

    def __attrs_post_init__(self) -> None:
        # (read untyped: compiled, a typed read of a wrong value raises before this check)
        attempts = getattr(self, "attempts")  # noqa: B009
        if attempts is not None and (type(attempts) is not int or attempts < 1):
            raise StatementError(f"Retry.attempts must be an int, at least 1 (or None: retry "
                                 f"forever), not {attempts!r}")
        for name in ("backoff", "max_backoff"):  # durations: seconds, or a timedelta
            value = getattr(self, name)
            if isinstance(value, _dt.timedelta):
                object.__setattr__(self, name, value.total_seconds())
        for name in ("backoff", "factor", "max_backoff"):
            value = getattr(self, name)
            if type(value) is bool or not isinstance(value, (int, float)):
                raise StatementError(f"Retry.{name} is a number"
                                     f"{'' if name == 'factor' else ' of seconds or a timedelta'}"
                                     f", not {value!r}")
        if not (self.backoff >= 0 and self.factor >= 1 and self.max_backoff >= 0):
            raise StatementError(f"Retry backoff and max_backoff must be >= 0 and factor >= 1, "
                                 f"not backoff={self.backoff!r}, factor={self.factor!r}, "
                                 f"max_backoff={self.max_backoff!r}")
        for name in ("on", "never"):  # one class or several, as `except` takes
            value = getattr(self, name)
            errors = tuple(value) if isinstance(value, (tuple, list, set, frozenset)) \
                else (value,)
            for error in errors:
                if not (isinstance(error, type) and issubclass(error, BaseException)):
                    raise StatementError(
                        f"Retry.{name} takes exception classes, got {error!r}"
                        + (f" (a name: give the class, {name}=({error},))"
                           if isinstance(error, str) and error.isidentifier() else ""))
            object.__setattr__(self, name, errors)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if self.factor == 1 or self.backoff == 0:
            return min(self.max_backoff, self.backoff)
        # factor**n overflows a float long before a forever-retrying step stops:
        # past the cap the delay is the cap
        try:
            return min(self.max_backoff, self.backoff * self.factor ** (attempt - 1))
        except OverflowError:
            return self.max_backoff

    def retries(self, exc: BaseException) -> bool:
        """May a failure with `exc` be tried again (given attempts are left)?
        Never a `NonRetryable`, whatever `on` says."""
        return isinstance(exc, self.on) and not isinstance(exc, self.never) \
            and not isinstance(exc, NonRetryable)

    def allows(self, attempt: int) -> bool:
        """Is attempt number `attempt` (1-based) within the policy?"""
        return self.attempts is None or attempt <= self.attempts


class Step(Stmt):
    """Run `action()` (a callable of no arguments, often a bound method).

    `retry` is its `Retry` policy (default: the engine's). `timeout` (seconds or
    a timedelta) bounds one attempt: an `async` step is cancelled at its timeout;
    a sync step cannot be interrupted safely, so one that overruns counts as
    failed when it returns (its changes to the data rolled back). Either way
    the attempt fails with `StepTimeoutError`, retried by the policy and
    catchable like any failure.

    `blocking=True` says a sync `action` blocks (it waits on I/O): the async
    API runs it in a worker thread (asyncio's default executor), on its own
    copy of the data, so that the other threads' steps run meanwhile; the sync
    API runs it as any step. An `async def` action never blocks: refused.
    """

    __slots__ = ("action", "blocking", "name", "retry", "timeout")

    def __init__(self, name: str, action: Callable[[], Any], *, retry: Any = None,
                 timeout: Any = None, blocking: Any = False):
        # (`retry`, `timeout` and `blocking` Any, not Retry, seconds and bool: compiled, an
        # annotation is checked at the call, before the clear errors below; docs/compiled.md)
        self.name = name
        self.action = action
        if retry is not None and not isinstance(retry, Retry):
            raise StatementError(f"Step {name!r}: retry= takes a genflow.Retry, not {retry!r}")
        self.retry = retry
        self.timeout = None if timeout is None else _seconds(f"Step {name!r}", timeout)
        self.blocking = blocking
        if blocking is not False:  # (a Step is built at every replay: checked when set)
            _check_blocking(name, action, blocking)


class Case(Stmt):
    """One branch of a `Switch`: taken when `cond` holds and no earlier case did."""

    __slots__ = ("bodies", "cond", "name")
    #: True for `Default` and `Else`: the branch taken when no case holds (diagrams
    #: draw no "no branch taken" edge past a Switch that has one).
    otherwise = False

    def __init__(self, cond: Any, name: str, *body: Body):
        self.cond = cond if cond is True or cond is False else _truth(cond, "If/Case", name)
        self.name = name
        self.bodies = (body,)


class _Otherwise(Case):
    """A `Default` / `Else` branch: a `Case` whose condition always holds."""

    __slots__ = ()
    otherwise = True


def Default(name: str, *body: Body) -> Case:
    """The `Switch` branch taken when no case holds."""
    return _Otherwise(True, name, *body)


class Switch(Stmt):
    """Run the body of the first case whose condition holds."""

    __slots__ = ("bodies", "cases")

    def __init__(self, *cases: Any):
        # (Any, not Case: compiled, an annotation is checked at the call, before the clear
        # error below could be raised; docs/compiled.md)
        for case in cases:
            if not isinstance(case, Case):
                raise StatementTypeError(f"Switch takes Case/Default statements, not {case!r}")
        self.cases = list(cases)
        self.bodies = tuple([case.bodies[0] for case in cases])  # a list: cheaper than a genexpr

    def ElseIf(self, cond: Any, name: str, *body: Body) -> Switch:
        self.cases.append(Case(cond, name, *body))
        self.bodies = (*self.bodies, body)
        return self

    def Else(self, name: str, *body: Body) -> Switch:
        self.cases.append(_Otherwise(True, name, *body))
        self.bodies = (*self.bodies, body)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(c.name) for c in self.cases)})"


class If(Switch):
    """`If(cond, name, *body).ElseIf(cond, name, *body).Else(name, *body)`."""

    __slots__ = ()

    def __init__(self, cond: Any, name: str, *body: Body):
        # Switch.__init__ inlined for its one case: an If is built on every replay
        case = Case(cond, name, *body)
        self.cases = [case]
        self.bodies = case.bodies


class For(Stmt):
    """Loop over `body` while `cond` holds (re-evaluated on the replay after each move)."""

    __slots__ = ("bodies", "cond", "name")

    def __init__(self, name: str, cond: Any, *body: Body):
        self.name = name
        self.cond = cond if cond is True or cond is False else _truth(cond, "For", name)
        self.bodies = (body,)


class Break(Stmt):
    """Leave the innermost `For` at once."""

    __slots__ = ()


class Continue(Stmt):
    """Start the innermost `For`'s next iteration at once (if its condition holds)."""

    __slots__ = ()


class Return(Stmt):
    """End the current thread at once."""

    __slots__ = ()


class On(Stmt):
    """One event of a `Wait`: when it arrives, `handler` runs, then `body`.

    `handler` is an object with `setup`/`handle`/`teardown` (see
    `genflow.handlers.Handler`) or a plain function whose single annotated
    parameter is the payload's type (no parameter: the event carries no payload).
    A bare trigger needs no handler: `On("go", *body)` (what follows the name is
    then all body: a statement, a list, a generator or a generator function;
    `None` as the handler says so explicitly). Such an event carries no payload.

    `keep` says what becomes of this event when it is sent while no thread
    waits for it: kept in the instance's mailbox until one does (True), or
    refused (False); None: the workflow's default (`@workflow(keep=...)`),
    else kept. Every `On` of one event must agree (docs/mailbox.md).
    """

    __slots__ = ("bodies", "handler", "keep", "name")

    def __init__(self, event: str, handler: Any = None, *body: Body, keep: bool | None = None):
        self.name = event
        self.bodies = (body,)
        self.keep = keep
        if type(handler) is MethodType and not handler.__func__.__code__.co_flags & CO_GENERATOR:
            self.handler: Any = handler  # the common case, first: every replay builds Ons
        elif handler is None or _is_body(handler):
            self.handler = _NO_HANDLER
            if handler is not None:
                self.bodies = ((handler, *body),)
        else:
            self.handler = handler

    @property
    def event(self) -> str:
        return self.name  # type: ignore[return-value]


class Timeout(On):
    """An event that arrives by itself: `after` (seconds or a timedelta) the wait
    began, or `at` an aware datetime, typically computed from the data (a
    deadline across several waits: `Timeout("expired", at=self.deadline)`; its
    body then follows the name, `Timeout("expired", Break(), at=...)`, as
    `On(event, *body)` takes one without a handler).

    With `raises` (an exception class), the timer firing fails the thread with
    that error at the Wait instead of running a body: a `Try`'s `Catch` can
    handle it, and uncaught it fails the instance.
    """

    __slots__ = ("after", "at", "raises")

    def __init__(self, name: str, after: Any = None, *body: Body,
                 at: Any = _NOT_GIVEN, raises: Any = None):
        # (`after`, `at` and `raises` Any, not seconds, datetime and exception class:
        # compiled, an annotation is checked at the call, before the clear errors below;
        # docs/compiled.md)
        # `at=None` given is a deadline the data has not set yet (a step sets it
        # before the wait begins): the definition must build meanwhile, since the
        # engine validates and the diagrams draw a fresh instance
        if at is _NOT_GIVEN:
            if after is None:
                raise StatementError(f"Timeout {name!r}: give either `after` or `at`")
            at = None
        elif after is not None and _is_body(after):
            # `Timeout(name, Break(), at=...)`: with `at`, what follows the name is the body
            body = (after, *body)
            after = None
        elif after is not None and at is not None:
            raise StatementError(f"Timeout {name!r}: give either `after` or `at`")
        seconds = None if after is None else _seconds(f"Timeout {name!r}", after)
        if at is not None:
            _check_at(f"Timeout {name!r}", at)
        if raises is not None and not (isinstance(raises, type)
                                       and issubclass(raises, BaseException)):
            raise StatementError(f"Timeout {name!r}: `raises` must be an exception class")
        if raises is not None and body:
            raise StatementError(f"Timeout {name!r}: a timer that raises has no body")
        self.after = seconds
        self.at = at
        self.raises = raises
        super().__init__(name, TimerHandler(seconds, at, name), *body)


@mypyc_attr(allow_interpreted_subclasses=True)
class Wait(Stmt):
    """Wait for the first of several events (a select): exactly one wins,
    the others are torn down."""

    __slots__ = ("bodies", "events", "name")

    def __init__(self, name: str, *events: Any):
        # (Any, not On: compiled, an annotation is checked at the call, before the clear
        # error below; docs/compiled.md)
        for event in events:
            if not isinstance(event, On):
                raise StatementTypeError(f"Wait {name!r} takes On/Timeout events, not {event!r}")
        self.name = name
        self.events = events
        self.bodies = tuple([event.bodies[0] for event in events])  # a list: cheaper than a genexpr

    def event(self, event: str) -> On | None:
        for on in self.events:
            if on.name == event:
                return on
        return None


class Sleep(Wait):
    """Sleep durably: a `Wait` whose one event is a timer, `seconds` (or a
    timedelta) from when the sleep began, or `until` an aware datetime."""

    __slots__ = ()

    def __init__(self, name: str, seconds: Any = None, *,
                 until: Any = _NOT_GIVEN):
        # (`seconds` and `until` Any, not seconds and datetime: compiled, an annotation is
        # checked at the call, before Timeout's clear error; docs/compiled.md)
        if (seconds is None) == (until is _NOT_GIVEN):
            raise StatementError(f"Sleep {name!r}: give `seconds` or `until`")
        # checked here too, so that a refusal names this Sleep rather than its timer
        if seconds is not None:
            _seconds(f"Sleep {name!r}", seconds)
        elif until is not None:
            _check_at(f"Sleep {name!r}", until, "until")
        timer = Timeout(WAKE, seconds, at=until)
        timer.handler.sleep = name  # (its refusals name this Sleep)
        super().__init__(name, timer)


#: the name of a `Sleep`'s timer
WAKE = "wake"


class WaitFor(Stmt):
    """Block the thread until `cond` holds (re-checked whenever other threads
    move), then run `handler()` if given.

    `timeout` (a `Timeout`) bounds the wait: when its timer fires before the
    condition holds, the Timeout's body runs instead of the handler (or, with
    `raises=`, the thread fails with that error at the WaitFor), as a Timeout
    does in a `Wait`. When the condition holds first, the timer is dropped.
    A condition that holds when the thread arrives passes at once: no timer.
    """

    __slots__ = ("bodies", "cond", "handler", "name", "timeout")

    def __init__(self, name: str, cond: Any, handler: Callable[[], Any] | None = None, *,
                 timeout: Any = None):
        # (`timeout` Any, not Timeout: compiled, an annotation is checked at the call,
        # before the clear error below; docs/compiled.md)
        self.name = name
        self.cond = cond if cond is True or cond is False else _truth(cond, "WaitFor", name)
        self.handler = handler
        if timeout is None:
            self.timeout: Timeout | None = None
            self.bodies = ()
            return
        if not isinstance(timeout, Timeout):
            raise StatementTypeError(
                f"WaitFor {name!r}: timeout= takes a genflow.Timeout, not {timeout!r} (write "
                f"timeout=Timeout('expired', after=seconds, *body), or at=a deadline, "
                f"or raises=AnError)")
        self.timeout = timeout
        self.bodies = timeout.bodies  # its body: a branch of this statement (paths, search)


class Go(Stmt):
    """Start `body` in a new thread and carry on at once.

    `id` names the thread (default: the statement's name); threads started in a
    loop need distinct ids. A callable body that takes one parameter is called
    with the thread's id, so one definition can serve many threads.

    A `daemon` thread is a helper (a reminder timer, an inbox): when the main
    thread ends, daemon threads still running are cancelled (their `Finally`
    and `Catch(errors=Cancelled)` bodies run, their handlers are torn down) and
    the instance finishes. Without `daemon`, the instance waits for every thread.
    """

    __slots__ = ("bodies", "body", "daemon", "id", "name")

    def __init__(self, name: str, body: Body, id: Any = None, *, daemon: Any = False):
        # (`id` and `daemon` Any, not str and bool: `id` is made a str below, `daemon` is
        # checked below, and compiled, an annotation is checked at the call; docs/compiled.md)
        self.name = name
        self.body = body
        self.id = name if id is None else str(id)
        if daemon is not False and daemon is not True:
            raise StatementError(f"Go {name!r}: daemon is True or False, not {daemon!r}")
        self.daemon = daemon
        self.bodies = ((body,),)

    def body_for(self, thread_id: str) -> tuple[Any, ...]:
        if callable(self.body) and takes_argument(self.body):
            return (self.body(thread_id),)
        return (self.body,)


class Try(Stmt):
    """`Try(name, *body).Catch(name, *body, errors=...).Finally(name, *body)`.

    When a step of the body fails for good (its retries used up), or a handler's
    setup or teardown does, or a timer declared with `raises=` fires, the thread
    leaves the body at once for the first `Catch` whose `errors` (an exception
    class or a tuple of them, default `Exception`) match the failure's type or
    one of its bases; nothing caught, the failure goes on outward, and the
    instance fails if no `Try` catches it. The failure (a `genflow.Failure`:
    type, message, step, attempt) is `current_step().failure` in the catch body,
    and with `into="field"` it is also put into that field of the data. It is
    persisted, so a crash inside a catch body resumes inside it.

    `Finally` runs after the body and after any catch: on success, on failure
    (then the failure goes on outward), on cancellation, and when `Break`,
    `Continue` or `Return` leave the body (they take effect after it).
    Cancellation reaches a thread as `genflow.Cancelled`: `Catch(errors=Cancelled)`
    runs its body as cleanup; the thread then ends (after its Finally).
    """

    __slots__ = ("bodies", "catches", "finally_", "name")

    def __init__(self, name: str, *body: Body):
        self.name = name
        self.bodies: tuple[tuple[Any, ...], ...] = (body,)
        #: per branch index (1, 2...): the Catch or Finally that owns that body
        self.catches: list[CatchClause] = []
        self.finally_: FinallyClause | None = None

    def Catch(self, name: str, *body: Body,
              errors: type[BaseException] | tuple[type[BaseException], ...] = Exception,
              into: str | None = None) -> Try:
        if self.finally_ is not None:
            raise DefinitionError(f"Try {self.name!r}: a Catch cannot follow the Finally")
        self.catches.append(CatchClause(name, errors, into, len(self.bodies)))
        self.bodies = (*self.bodies, body)
        return self

    def Finally(self, name: str, *body: Body) -> Try:
        if self.finally_ is not None:
            raise DefinitionError(f"Try {self.name!r} has two Finally branches")
        self.finally_ = FinallyClause(name, len(self.bodies))
        self.bodies = (*self.bodies, body)
        return self

    def branch(self, name: str) -> int | None:
        """The body index of the branch called `name` (a Catch or the Finally)."""
        for catch in self.catches:
            if catch.name == name:
                return catch.index
        if self.finally_ is not None and self.finally_.name == name:
            return self.finally_.index
        return None

    def catching(self, types: Any) -> CatchClause | None:
        """The first Catch whose errors match a failure of these type names."""
        for catch in self.catches:
            if any(name in types for name in catch.names):
                return catch
        return None

    def branch_name(self, index: int) -> str:
        if self.finally_ is not None and index == self.finally_.index:
            return self.finally_.name
        return self.catches[index - 1].name

    def __repr__(self) -> str:
        return f"Try({self.name!r})"


class CatchClause:
    """A `Try`'s branch for failures of `errors`; see `Try.Catch`."""

    __slots__ = ("errors", "index", "into", "name", "names")

    def __init__(self, name: str, errors: Any, into: str | None, index: int):
        if not isinstance(errors, tuple):
            errors = (errors,)
        for error in errors:
            if not (isinstance(error, type) and issubclass(error, BaseException)):
                raise StatementError(
                    f"Catch {name!r}: errors must be exception classes, got {error!r} "
                    f"(one class, or a tuple of them, as `except` takes)")
        self.name = name
        self.errors: tuple[type[BaseException], ...] = errors
        self.names = tuple(type_key(error) for error in errors)
        self.into = into
        self.index = index


class FinallyClause:
    """A `Try`'s branch that always runs; see `Try.Finally`."""

    __slots__ = ("index", "name")

    def __init__(self, name: str, index: int):
        self.name = name
        self.index = index


def type_key(cls: type) -> str:
    """How a failure's type is kept (and matched after a reload): module.qualname."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Raise(Stmt):
    """Fail the thread from the definition: with no arguments, inside a Catch
    body, the failure it caught goes on outward (`raise` in an `except`);
    `Raise(SomeError, "message")` starts a new failure of that type. A Try
    catches it as it would a step's; nothing catching it, the instance fails."""

    __slots__ = ("error", "message")

    def __init__(self, error: Any = None, message: str = ""):
        # (Any, not an exception class: compiled, an annotation is checked at the call,
        # before the clear error below; docs/compiled.md)
        if error is not None and not (isinstance(error, type)
                                      and issubclass(error, BaseException)):
            raise StatementError(f"Raise takes an exception class, not {error!r}")
        self.error = error
        self.message = message

    def failure(self, failures: list[Failure]) -> Failure:
        """The failure this Raise sends outward, given the thread's failures."""
        if self.error is None:
            caught = [f for f in failures if f.at]
            if not caught:
                raise DefinitionError("Raise() outside a Catch body: there is no failure "
                                      "to raise again (give Raise an error class)")
            return attrs.evolve(caught[-1], at="")
        return Failure(type=self.error.__qualname__, message=self.message or self.error.__name__,
                       step="", types=tuple(type_key(c) for c in self.error.__mro__
                                            if c is not object))


def S(*items: Body) -> Section:
    """Group statements into one body (a `Section`)."""
    return Section(items)


def _truth(cond: Any, what: str, name: Any) -> bool:
    """A condition that is not a bool, as a bool; a function or a statement
    refused: each is always true, so a `WaitFor(name, lambda: self.done)` (the
    way Temporal's `wait_condition` is written) would pass at once, silently.
    (Only called for a condition that is not True or False: most are a
    comparison, and the statements are built at every replay.)"""
    if callable(cond) or isinstance(cond, Stmt):
        raise StatementTypeError(
            f"{what} {name!r}: the condition is a value computed from the data "
            f"(such as self.done or len(self.items) < 3), not {cond!r}: it is evaluated "
            "each time the definition is replayed, which genflow does whenever the data "
            "may have changed, so no function is needed")
    return bool(cond)


def _check_blocking(name: str, action: Any, blocking: Any) -> None:
    if blocking is not True:
        raise StatementError(f"Step {name!r}: blocking is True or False, not {blocking!r}")
    if inspect.iscoroutinefunction(getattr(action, "func", action)):  # (functools.partial)
        raise StatementError(
            f"Step {name!r}: blocking=True is for a sync action that blocks (it runs in a "
            "worker thread); an async def action already lets the others run: drop it")


def _seconds(what: str, value: Any) -> float:
    # (`value` Any: this is the check of what a caller gave, compiled too)
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif type(value) is not bool and isinstance(value, (int, float)):
        seconds = float(value)
    else:
        raise StatementError(f"{what}: a duration is seconds (a number) or a timedelta, "
                             f"not {value!r}")
    if not seconds >= 0:  # (NaN too)
        raise StatementError(f"{what}: a duration must not be negative, got {value!r}")
    return seconds


def _check_at(what: str, at: Any, argument: str = "at") -> None:
    if not isinstance(at, _dt.datetime) or at.tzinfo is None:
        raise StatementError(
            f"{what}: `{argument}` must be an aware datetime (UTC), got {at!r}; "
            "naive times are ambiguous across machines and time zones")


def _is_body(obj: Any) -> bool:
    """Is what was given to `On` after the event's name a body rather than a handler?
    (Every replay builds its `On`s again: the common case, a plain function or a
    bound method, is answered from its code's flags alone.)"""
    kind = type(obj)
    if kind is MethodType:
        return bool(obj.__func__.__code__.co_flags & CO_GENERATOR)
    if kind is FunctionType:
        return bool(obj.__code__.co_flags & CO_GENERATOR)
    if isinstance(obj, (Stmt, list, tuple, GeneratorType)):
        return True
    return inspect.isgeneratorfunction(getattr(obj, "__func__", obj))


class _NoHandler(EventHandler):
    """The handler of `On(event, *body)`: the event carries no payload, does nothing."""

    input_type = None

    def __repr__(self) -> str:
        return "no handler"


_NO_HANDLER = _NoHandler()
