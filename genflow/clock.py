"""Clocks: the system's, and a fake one that tests move by hand.

Everything in genflow that needs the time takes a clock (a callable returning
an aware UTC datetime), so timers can be tested instantly and deterministically.
"""

from __future__ import annotations

import datetime as _dt

from genflow.errors import ArgumentError

__all__ = ["FakeClock", "system_clock"]


def system_clock() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


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
        if self.now.tzinfo is None:
            raise ArgumentError("FakeClock needs an aware datetime")

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
