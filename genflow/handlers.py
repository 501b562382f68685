"""Event handlers: objects with setup/handle/teardown, or plain typed functions.

A handler's `handle` receives the payload already structured (by the codec's
strict converter, genflow/strict.py) into the type its signature declares, so a
payload that does not fit, or that msgpack could not store, is refused with
`PayloadError` before the handler runs. The declared type is read from the
annotation of the payload parameter; one that does not resolve (a class local to
a function, under `from __future__ import annotations`) is kept as its string,
and the codec refuses it with a `DefinitionError` that says so.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from genflow.state import CallbackRequest

__all__ = [
    "EventHandler",
    "FunctionHandler",
    "Handler",
    "TimerHandler",
    "as_handler",
    "overrides",
    "takes_argument",
]


@runtime_checkable
class Handler(Protocol):
    """What `On(event, handler)` needs. `input_type` is the payload's type (or
    `None` for an event without payload)."""

    input_type: Any

    def setup(self, req: CallbackRequest) -> Any:
        """Start listening (register a webhook, a timer...). What it returns is kept
        on the request as `setup_data`."""

    def handle(self, req: CallbackRequest, payload: Any) -> Any:
        """The event arrived: update the workflow's data; the result goes back to the sender."""

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        """Stop listening: another event won (`handled` False) or this one was handled."""


class EventHandler:
    """A convenient base for handler classes: setup and teardown do nothing, and
    `input_type` is read from `handle`'s payload annotation."""

    input_type: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "input_type" not in cls.__dict__ and "handle" in cls.__dict__:
            hints = _hints(cls.handle)
            params = list(inspect.signature(cls.handle).parameters)
            if len(params) >= 3:
                cls.input_type = _no_payload(hints.get(params[2]))

    def setup(self, req: CallbackRequest) -> Any:
        return None

    def handle(self, req: CallbackRequest, payload: Any) -> Any:
        return None

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        return None


class FunctionHandler(EventHandler):
    """Adapts `def on_event(self, payload: T) -> R` (or no parameter)."""

    __slots__ = ("fn", "input_type", "takes_payload")

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.takes_payload, self.input_type = _payload_parameter(fn)

    def handle(self, req: CallbackRequest, payload: Any) -> Any:
        return self.fn(payload) if self.takes_payload else self.fn()

    def __repr__(self) -> str:
        return f"FunctionHandler({getattr(self.fn, '__qualname__', self.fn)!r})"


class TimerHandler(EventHandler):
    """The handler behind `Timeout`: its setup fixes the due time (`after` the
    wait began, or `at` a given time); the engine fires it."""

    __slots__ = ("after", "at", "name", "sleep")
    input_type = None

    def __init__(self, after: float | None, at: _dt.datetime | None = None, name: str = "",
                 sleep: str = ""):
        self.after = after
        self.at = at
        self.name = name
        self.sleep = sleep  # the Sleep it is the timer of (named in its errors, not 'wake')

    def due(self, now: _dt.datetime) -> _dt.datetime:
        if self.at is not None:
            return self.at
        if self.after is None:  # `at=None`: a time the data was to set by now
            from genflow.errors import DefinitionError

            if self.sleep:
                raise DefinitionError(
                    f"Sleep {self.sleep!r}: its time (`until`) was not set when the sleep "
                    "began; set the field it reads in a step before the Sleep")
            raise DefinitionError(
                f"Timeout {self.name!r}: its time (`at`) was not set when the wait began; "
                "set the field it reads in a step before the Wait (or the WaitFor)")
        return now + _dt.timedelta(seconds=self.after)

    def __repr__(self) -> str:
        if self.at is not None:
            return f"TimerHandler(at={self.at.isoformat()})"
        return f"TimerHandler(after={self.after}s)"


def as_handler(obj: Any) -> Handler:
    """The `Handler` for what was given to `On` (one without `input_type` takes no payload)."""
    if type(obj) in _FUNCTIONS:  # the common case first: `hasattr` misses are slow on methods
        return FunctionHandler(obj)
    if isinstance(obj, EventHandler) or (
        hasattr(obj, "handle") and hasattr(obj, "setup") and hasattr(obj, "teardown")
    ):
        return obj
    if callable(obj):
        return FunctionHandler(obj)
    raise TypeError(f"{obj!r} is neither a handler nor a function")


def overrides(obj: Any, method: str) -> bool:
    """Whether the handler given to `On` (an object or a function) has a `setup`
    or `teardown` that does something: the engine skips calling the do-nothing
    ones of `EventHandler` (plain functions, timers, handlers that keep them)."""
    if type(obj) in _FUNCTIONS:
        return False
    bound = getattr(as_handler(obj), method, None)  # an instance may carry its own
    return getattr(bound, "__func__", None) is not getattr(EventHandler, method)


_FUNCTIONS = (types.FunctionType, types.MethodType)


def takes_argument(fn: Callable[..., Any]) -> bool:
    """Whether `fn` takes one positional argument (bound `self` not counted)."""
    return _payload_parameter(fn)[0]


def _payload_parameter(fn: Callable[..., Any]) -> tuple[bool, Any]:
    # Every replay rebuilds bound methods and lambdas, so the answer is cached
    # by code object (stable across replays) and whether `self` is bound. A
    # decorator's wrapper shares one code object among every function it wraps,
    # so wrapped functions are unwrapped first (off the hot path).
    func = getattr(fn, "__func__", fn)
    if hasattr(func, "__wrapped__"):
        func = inspect.unwrap(func)
    code = getattr(func, "__code__", None)
    if code is None:  # builtins, callable objects: inspect each time (rare)
        return _inspect_parameter(fn)
    key = (code, hasattr(fn, "__self__"))
    cached = _PARAM_CACHE.get(key)
    if cached is None:
        cached = _PARAM_CACHE[key] = _inspect_parameter(fn)
    return cached


_PARAM_CACHE: dict[Any, tuple[bool, Any]] = {}


def _inspect_parameter(fn: Callable[..., Any]) -> tuple[bool, Any]:
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return False, None
    if not params:
        return False, None
    if len(params) > 1:
        raise TypeError(f"{fn!r} must take at most one required argument (the payload)")
    hints = _hints(fn)
    return True, _no_payload(hints.get(params[0].name, Any))


def _no_payload(hint: Any) -> Any:
    """A payload annotated `None` (`payload: None`) is none: `input_type` None, as the
    codec, the diagrams and the console read it."""
    return None if hint is type(None) else hint


@functools.lru_cache(maxsize=1024)
def _hints_cached(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolved forward references: fall back to raw annotations
        return dict(getattr(fn, "__annotations__", {}))


def _hints(fn: Any) -> dict[str, Any]:
    return _hints_cached(getattr(fn, "__func__", fn))
