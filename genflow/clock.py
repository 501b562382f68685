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

    @property
    def now(self) -> _dt.datetime:
        return self._now

    @now.setter
    def now(self, moment: _dt.datetime) -> None:
        if not isinstance(moment, _dt.datetime) or moment.tzinfo is None:
            raise ClockError(f"FakeClock needs an aware datetime (tzinfo=datetime.UTC), not "
                             f"{moment!r}")
        self._now = moment

    def __call__(self) -> _dt.datetime:
        return self._now

    def advance(self, delta: _dt.timedelta | float | None = None, *, seconds: float = 0) -> None:
        """Move the time on by `delta` (a timedelta, or seconds, as `Sleep` and
        `Timeout` take them) and `seconds`; a negative one moves it back."""
        if delta is not None and not isinstance(delta, _dt.timedelta):
            if isinstance(delta, bool) or not isinstance(delta, (int, float)):
                raise ClockError(f"advance takes a timedelta or a number of seconds, not "
                                 f"{delta!r}")
            delta = _dt.timedelta(seconds=delta)
        self._now += (delta or _dt.timedelta()) + _dt.timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        """What a sleeper on this clock sees: the time jumps `seconds` ahead at
        once. A worker loop (`Engine.work`) sleeps on its clock when the clock
        can, so a test runs a day of timers and retries in no time."""
        if seconds > 0:
            self.advance(seconds=seconds)

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"
