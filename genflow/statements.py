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
from collections.abc import Callable
from typing import Any

import attrs

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
    "Retry",
    "Return",
    "S",
    "Section",
    "Step",
    "Stmt",
    "Switch",
    "Timeout",
    "Wait",
    "WaitFor",
    "WaitGroup",
]

#: What a statement body may contain (see the module docstring).
Body = Any


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
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("Retry.attempts must be at least 1 (or None: retry forever)")
        if self.backoff < 0 or self.factor < 1 or self.max_backoff < 0:
            raise ValueError("Retry backoff must be >= 0 and factor >= 1")

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
        """May a failure with `exc` be tried again (given attempts are left)?"""
        return isinstance(exc, self.on) and not isinstance(exc, self.never)

    def allows(self, attempt: int) -> bool:
        """Is attempt number `attempt` (1-based) within the policy?"""
        return self.attempts is None or attempt <= self.attempts


class Step(Stmt):
    """Run `action()` (a callable of no arguments, often a bound method)."""

    __slots__ = ("action", "name", "retry")

    def __init__(self, name: str, action: Callable[[], Any], *, retry: Retry | None = None):
        self.name = name
        self.action = action
        self.retry = retry


class Case(Stmt):
    """One branch of a `Switch`: taken when `cond` holds and no earlier case did."""

    __slots__ = ("bodies", "cond", "name")
    #: True for `Default` and `Else`: the branch taken when no case holds (diagrams
    #: draw no "no branch taken" edge past a Switch that has one).
    otherwise = False

    def __init__(self, cond: Any, name: str, *body: Body):
        self.cond = bool(cond)
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

    def __init__(self, *cases: Case):
        for case in cases:
            if not isinstance(case, Case):
                raise TypeError(f"Switch takes Case/Default statements, not {case!r}")
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
        self.cond = bool(cond)
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
    """

    __slots__ = ("bodies", "handler", "name")

    def __init__(self, event: str, handler: Any, *body: Body):
        self.name = event
        self.handler = handler
        self.bodies = (body,)

    @property
    def event(self) -> str:
        return self.name  # type: ignore[return-value]


class Timeout(On):
    """An event that arrives by itself `after` (seconds or a timedelta) the wait began."""

    __slots__ = ("after",)

    def __init__(self, name: str, after: float | _dt.timedelta, *body: Body):
        from genflow.handlers import TimerHandler  # handlers depend on statements, not back

        seconds = after.total_seconds() if isinstance(after, _dt.timedelta) else float(after)
        if seconds < 0:
            raise ValueError(f"Timeout {name!r}: `after` must not be negative")
        self.after = seconds
        super().__init__(name, TimerHandler(seconds), *body)


class Wait(Stmt):
    """Wait for the first of several events (a select): exactly one wins,
    the others are torn down."""

    __slots__ = ("bodies", "events", "name")

    def __init__(self, name: str, *events: On):
        for event in events:
            if not isinstance(event, On):
                raise TypeError(f"Wait {name!r} takes On/Timeout events, not {event!r}")
        self.name = name
        self.events = events
        self.bodies = tuple([event.bodies[0] for event in events])  # a list: cheaper than a genexpr

    def event(self, event: str) -> On | None:
        for on in self.events:
            if on.name == event:
                return on
        return None


class WaitFor(Stmt):
    """Block the thread until `cond` holds (re-checked whenever other threads
    move), then run `handler()` if given."""

    __slots__ = ("cond", "handler", "name")

    def __init__(self, name: str, cond: Any, handler: Callable[[], Any] | None = None):
        self.name = name
        self.cond = bool(cond)
        self.handler = handler


class Go(Stmt):
    """Start `body` in a new thread and carry on at once.

    `id` names the thread (default: the statement's name); threads started in a
    loop need distinct ids. A callable body that takes one parameter is called
    with the thread's id, so one definition can serve many threads.
    """

    __slots__ = ("bodies", "body", "id", "name")

    def __init__(self, name: str, body: Body, id: str | None = None):
        self.name = name
        self.body = body
        self.id = name if id is None else str(id)
        self.bodies = ((body,),)

    def body_for(self, thread_id: str) -> tuple[Any, ...]:
        from genflow.handlers import takes_argument

        if callable(self.body) and takes_argument(self.body):
            return (self.body(thread_id),)
        return (self.body,)


class Section(tuple):
    """A body written as one value: `S(step1, step2)`."""

    __slots__ = ()


def S(*items: Body) -> Section:
    """Group statements into one body (a `Section`)."""
    return Section(items)


@attrs.define
class WaitGroup:
    """Wait for threads to finish. Keep it as a field of the workflow's data.

    `wg.go(name, body, id=...)` starts a tracked thread (two statements: a step
    that records the id, then the `Go`); `wg.wait(name)` blocks until every
    tracked thread has finished.
    """

    pending: list[str] = attrs.field(factory=list)

    def go(self, name: str, body: Body, id: str | None = None) -> list[Stmt]:
        thread_id = name if id is None else str(id)
        tracked = _Tracked(self, name, thread_id, body)
        return [Step(f"{name}: add", tracked.add), Go(name, tracked.body, id=thread_id)]

    def wait(self, name: str, handler: Callable[[], Any] | None = None) -> WaitFor:
        return WaitFor(name, not self.pending, handler)


class _Tracked:
    """The thread body `WaitGroup.go` wraps: the user's body, then a `done` step."""

    __slots__ = ("group", "inner", "name", "thread_id")

    def __init__(self, group: WaitGroup, name: str, thread_id: str, inner: Body):
        self.group = group
        self.name = name
        self.thread_id = thread_id
        self.inner = inner

    def add(self) -> None:
        if self.thread_id in self.group.pending:
            from genflow.errors import DuplicateThreadError

            raise DuplicateThreadError(f"WaitGroup already tracks thread {self.thread_id!r}")
        self.group.pending.append(self.thread_id)

    def body(self, thread_id: str) -> list[Any]:
        from genflow.handlers import takes_argument

        inner = self.inner
        if callable(inner) and takes_argument(inner):
            inner = inner(thread_id)
        pending = self.group.pending

        def done() -> None:
            if thread_id in pending:
                pending.remove(thread_id)

        return [inner, Step(f"{self.name}: done", done)]
