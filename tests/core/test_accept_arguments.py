"""Statements built with a wrong argument, as a new user writes them from the
docs: each refusal is a `StatementError` (a `GenflowError`) naming the
statement at construction, never a bare TypeError or ValueError from inside,
and never accepted to fail later inside the engine."""

from __future__ import annotations

import datetime as dt

import pytest

from genflow import (
    Children,
    GenflowError,
    Go,
    On,
    Retry,
    Sleep,
    Step,
    Switch,
    Timeout,
    Wait,
)
from genflow.errors import StatementError, StatementTypeError
from genflow.saga import Saga

UTC = dt.UTC


@pytest.mark.parametrize(("build", "words"), [
    (lambda: Sleep("nap", "soon"), "Sleep 'nap': a duration is seconds"),
    (lambda: Sleep("nap", True), "Sleep 'nap': a duration is seconds"),
    (lambda: Sleep("nap", -5), "Sleep 'nap': a duration must not be negative"),
    (lambda: Sleep("nap", until=dt.datetime(2030, 1, 1)), "Sleep 'nap': `until` must be an aware"),
    (lambda: Sleep("nap", 5, until=dt.datetime(2030, 1, 1, tzinfo=UTC)), "give `seconds` or"),
    (lambda: Timeout("late", "5"), "Timeout 'late': a duration is seconds"),
    (lambda: Timeout("late", None), "give either `after` or `at`"),
    (lambda: Step("s", print, timeout="30"), "Step 's': a duration is seconds"),
    (lambda: Step("s", print, retry=3), "Step 's': retry= takes a genflow.Retry, not 3"),
    (lambda: Retry(attempts="3"), "Retry.attempts must be an int"),
    (lambda: Retry(attempts=2.5), "Retry.attempts must be an int"),
    (lambda: Retry(backoff="1"), "Retry.backoff is a number of seconds"),
    (lambda: Retry(never=5), "Retry.never takes exception classes, got 5"),
    (lambda: Retry(never="ValueError"), "Retry.never takes exception classes"),
    (lambda: Retry(on=(ValueError, 3)), "Retry.on takes exception classes, got 3"),
    (lambda: Children("kids", 5), "Children 'kids': items is a list"),
    (lambda: Children("kids", "abc"), "Children 'kids': items is a list"),
    (lambda: Children("kids", [], first="1"), "first='1' must be 1 to 1"),
    (lambda: Go("helper", [], daemon="yes"), "Go 'helper': daemon is True or False"),
    (lambda: Saga().step("book", print, compensate=5), "saga step 'book': compensate="),
])
def test_a_wrong_argument_is_a_statement_error(build, words):
    with pytest.raises(StatementError) as refused:
        build()
    assert words in str(refused.value)
    assert isinstance(refused.value, GenflowError)


def test_events_that_are_no_events_are_a_statement_type_error():
    with pytest.raises(StatementTypeError, match="Wait 'w' takes On/Timeout events"):
        Wait("w", Step("s", print))
    with pytest.raises(StatementTypeError, match="Switch takes Case/Default"):
        Switch("x", 1)
    # still a TypeError, as it was before it became a GenflowError
    assert issubclass(StatementTypeError, TypeError)


def test_retry_takes_one_error_class_as_a_tuple_of_one():
    policy = Retry(attempts=3, never=KeyError, on=LookupError)
    assert policy.never == (KeyError,) and policy.on == (LookupError,)
    assert not policy.retries(KeyError("x")) and policy.retries(IndexError("x"))
    assert not policy.retries(ValueError("x"))


def test_what_the_docs_write_is_accepted():
    Sleep("a week", dt.timedelta(days=7))
    Sleep("until", until=dt.datetime(2030, 1, 2, tzinfo=UTC))
    Sleep("a second", 1)
    Sleep("a bit", 0.5)
    Timeout("expired", at=None)  # a deadline the data has not set yet
    Step("s", print, retry=Retry(attempts=None, max_backoff=2, never=(KeyError,)), timeout=5)
    Wait("w", On("e"), Timeout("t", 5))
    Go("helper", [], daemon=True)


def test_a_fake_clock_of_a_naive_time_is_a_clock_error():
    from genflow import FakeClock
    from genflow.errors import ClockError

    with pytest.raises(ClockError, match="FakeClock needs an aware datetime"):
        FakeClock(dt.datetime(2030, 1, 1))
    assert issubclass(ClockError, ValueError)  # what it raised before


def test_a_fake_clock_moves_by_seconds_or_a_timedelta_and_stays_aware():
    """Sleep and Timeout take seconds or a timedelta; so does `advance` (`advance(60)`
    was a raw TypeError). A naive time set on `now` is refused where it is set,
    not where an engine reads it."""
    from genflow import FakeClock
    from genflow.errors import ClockError

    clock = FakeClock()
    start = clock()
    clock.advance(60)
    clock.advance(dt.timedelta(minutes=1), seconds=0.5)
    assert clock() - start == dt.timedelta(minutes=2, seconds=0.5)
    clock.advance(-30)  # back in time: the schedules' tests jump so
    assert clock() - start == dt.timedelta(minutes=1, seconds=30.5)
    for bad in ("5", True):
        with pytest.raises(ClockError, match="advance takes a timedelta or a number of seconds"):
            clock.advance(bad)  # type: ignore[arg-type]
    with pytest.raises(ClockError, match="FakeClock needs an aware datetime"):
        clock.now = dt.datetime(2030, 1, 1)
    assert clock() - start == dt.timedelta(minutes=1, seconds=30.5)
