"""Clocks: the system's, and a fake one that tests move by hand; deadlines on them.

Everything in genflow that needs the time takes a clock (a callable returning
an aware UTC datetime), so timers can be tested instantly and deterministically.
An instance's deadline (`Engine.start(deadline=...)`, a child's, a schedule's
run's) is checked here, once, into the UTC moment it names.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from collections.abc import Callable
from typing import Any

from genflow.errors import ArgumentError, ClockError

__all__ = ["MAX_DEADLINE", "MAX_DURATION", "Deadline", "FakeClock", "aware_deadline",
           "checked_clock", "checked_deadline", "deadline_span", "system_clock"]


#: the system's time, aware (UTC); a partial, not a function: every durable
#: save reads a clock, and a partial's call adds no Python frame to the reading
system_clock: Callable[[], _dt.datetime] = functools.partial(_dt.datetime.now, _dt.UTC)


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


#: what a `deadline=` takes (`Engine.start`, `current_step().start`, `Child`): an
#: aware datetime, a timedelta, or seconds
Deadline = _dt.datetime | _dt.timedelta | float | None
#: the longest span genflow takes (a deadline from now, a schedule's interval,
#: jitter or window): a hundred years. Longer is surely a mistake (a count of
#: milliseconds taken for seconds), and a datetime cannot hold much more
MAX_DURATION = _dt.timedelta(days=36525)
#: the furthest deadline taken, from now
MAX_DEADLINE = MAX_DURATION


def checked_deadline(deadline: Any, now: _dt.datetime) -> _dt.datetime:
    """A `deadline=` as the UTC moment it names, or `ArgumentError`
    saying what it takes: an aware datetime later than `now`, or a duration
    above zero (a timedelta, or seconds) from `now`, neither beyond
    `MAX_DEADLINE`."""
    if not isinstance(deadline, _dt.datetime):
        return now + deadline_span(deadline)
    moment = aware_deadline(deadline)
    if moment <= now:
        raise ArgumentError(
            f"deadline {moment.isoformat()} is not later than now ({now.isoformat()}): the "
            "instance would be cancelled before it ran; give a later one (or cancel it)")
    if moment - now > MAX_DEADLINE:
        raise ArgumentError(f"deadline {moment.isoformat()} is over {MAX_DEADLINE.days} "
                            "days away: give a nearer one (or none)")
    return moment


def aware_deadline(deadline: _dt.datetime) -> _dt.datetime:
    """A deadline given as a datetime, in UTC; `ArgumentError` for a naive one."""
    if deadline.tzinfo is None or deadline.utcoffset() is None:
        raise ArgumentError(f"deadline {deadline.isoformat()} has no time zone: give an "
                            "aware datetime (e.g. datetime.now(timezone.utc) + ...)")
    return deadline.astimezone(_dt.UTC)


def deadline_span(deadline: Any) -> _dt.timedelta:
    """A deadline given as a duration (a timedelta, or seconds) as a timedelta
    above 0 and at most `MAX_DEADLINE`; `ArgumentError` saying what a deadline
    takes for anything else (a datetime is `checked_deadline`'s)."""
    takes = ("an aware datetime, or a duration from the start (a timedelta, or seconds "
             "above 0)")
    if isinstance(deadline, _dt.timedelta):
        span = deadline
    elif isinstance(deadline, (int, float)) and not isinstance(deadline, bool):
        if not math.isfinite(deadline):
            raise ArgumentError(f"deadline is {takes}, not {deadline!r}")
        if not 0 < deadline <= MAX_DEADLINE.total_seconds():
            raise ArgumentError(f"a deadline of {deadline!r} seconds is not above 0 and at most "
                                f"{MAX_DEADLINE.days} days: give one that is (or none)")
        span = _dt.timedelta(seconds=deadline)
    else:
        raise ArgumentError(f"deadline is {takes}, not {type(deadline).__name__} "
                            f"{deadline!r}")
    if not _dt.timedelta(0) < span <= MAX_DEADLINE:
        raise ArgumentError(f"a deadline of {span} is not above 0 and at most "
                            f"{MAX_DEADLINE.days} days: give one that is (or none)")
    return span


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
