"""A step's `timeout=`: its action wrapped to keep to it.

Its own module, which is never compiled (docs/compiled.md): the wrapper takes
the `__qualname__` of the user's function, so that what reports a call of it
(a span, a log line, the sync API's refusal of an async step) names that
function and not the wrapper, and a closure that mypyc compiles has no
`__qualname__` to set.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import inspect
from collections.abc import Callable
from typing import Any

from genflow.context import StepContext, _current
from genflow.errors import StepTimeoutError
from genflow.statements import Step

__all__ = ["timed"]


def timed(step: Step, ctx: StepContext) -> Callable[[], Any]:
    """The step's action within its timeout: an async step is cancelled at its
    timeout; a sync one cannot be interrupted, so its overrun (by the engine's
    clock) fails it when it returns. The step sees its deadline in `ctx`."""
    seconds = step.timeout
    assert seconds is not None
    action, clock = step.action, ctx.clock

    def attempt() -> Any:
        began = clock()
        _current.set(ctx._replace(deadline=began + _dt.timedelta(seconds=seconds)))
        result = action()
        if result is not None and inspect.isawaitable(result):
            return _within(result, step.name or "", seconds)
        if (clock() - began).total_seconds() > seconds:
            raise StepTimeoutError(f"step {step.name!r} ran past its timeout of {seconds}s "
                                   "(a sync step is not interrupted: its result is dropped)")
        return result

    attempt.__qualname__ = getattr(action, "__qualname__", attempt.__qualname__)
    return attempt


async def _within(awaitable: Any, name: str, seconds: float) -> Any:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise StepTimeoutError(f"step {name!r} was cancelled at its timeout of {seconds}s") \
            from None
