"""Clocks: the system's, and a fake one that tests move by hand.

Everything in genflow that needs the time takes a clock (a callable returning
an aware UTC datetime), so timers can be tested instantly and deterministically.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from genflow.errors import ClockError

__all__ = ["FakeClock", "checked_clock", "system_clock"]


def system_clock() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def checked_clock(clock: Any) -> Any:
    """`clock`, once it has told an aware datetime: a clock of naive times
    (`datetime.utcnow`) is refused where it is given, not at a first timer."""
    if not callable(clock):
        raise ClockError(f"a clock is a callable returning an aware datetime, not {clock!r}")
    now = clock()
    if not isinstance(now, _dt.datetime) or now.tzinfo is None:
        raise ClockError(
            f"the clock {getattr(clock, '__qualname__', clock)!r} returned {now!r}: a clock "
            "returns an aware datetime (datetime.now(datetime.UTC), not datetime.utcnow())")
    return clock


class FakeClock:
    """A clock that stands still until told to move.

    >>> clock = FakeClock()
    >>> start = clock()
    >>> clock.advance(seconds=30)
    >>> (clock() - start).total_seconds()
    30.0
    """

    def __init__(self, start: _dt.datetime | None = None) -> None:
        self.now = start or _dt.datetime(2030, 1, 1, tzinfo=_dt.UTC)
        if not isinstance(self.now, _dt.datetime) or self.now.tzinfo is None:
            raise ClockError(f"FakeClock needs an aware datetime (tzinfo=datetime.UTC), not "
                             f"{self.now!r}")

    def __call__(self) -> _dt.datetime:
        return self.now

    def advance(self, delta: _dt.timedelta | None = None, *, seconds: float = 0) -> None:
        self.now += (delta or _dt.timedelta()) + _dt.timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        """What a sleeper on this clock sees: the time jumps `seconds` ahead at
        once. A worker loop (`Engine.work`) sleeps on its clock when the clock
        can, so a test runs a day of timers and retries in no time."""
        if seconds > 0:
            self.advance(seconds=seconds)

    def __repr__(self) -> str:
        return f"FakeClock({self.now.isoformat()})"
