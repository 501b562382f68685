"""Acceptance: the toolkit on a fresh small workflow of a user's own. The sandbox
refuses the clock, randomness and a set's order; the crash checker catches an
unkeyed outside effect; lint names a dict read from a module global, which a
single process cannot see change. A mistyped mode is an `ArgumentError`."""

from __future__ import annotations

import random
import time

import attrs
import pytest

import genflow
from genflow import On, Step, Wait
from genflow.errors import ArgumentError
from genflow.testing import FakeService, Instance, check_determinism, check_replay, lint

mailer = FakeService("accept-mailer")
FLAGS = {"fast": True}


@genflow.workflow("accept-tk-clock")
@attrs.define
class UsesClock:
    def definition(self):
        if time.time() > 0:
            yield Step("a", lambda: None)


@genflow.workflow("accept-tk-random")
@attrs.define
class UsesRandom:
    def definition(self):
        if random.random() < 2:
            yield Step("a", lambda: None)


@genflow.workflow("accept-tk-set")
@attrs.define
class UsesSet:
    tags: set[str] = attrs.Factory(lambda: {"a", "b", "c", "d"})

    def definition(self):
        for tag in self.tags:
            yield Step(f"tag {tag}", lambda: None)


@genflow.workflow("accept-tk-global")
@attrs.define
class UsesGlobal:
    def definition(self):
        if FLAGS["fast"]:
            yield Step("fast", lambda: None)


@genflow.workflow("accept-tk-mail")
@attrs.define
class Mail:
    keyed: bool = False
    receipt: str = ""

    def definition(self):
        yield Wait("go?", On("go", self.go))
        yield Step("mail", self.mail)

    def go(self) -> None:
        pass

    def mail(self) -> None:
        key = genflow.current_step().idempotency_key if self.keyed else None
        self.receipt = mailer.send("hi", key=key)


@pytest.mark.parametrize(("start", "words"), [
    (UsesClock(), "reads the clock"),
    (UsesRandom(), "reads randomness"),
    (UsesSet(), "iteration order of a set"),
])
def test_the_sandbox_refuses_what_another_process_would_see_otherwise(start, words):
    report = check_determinism(start)
    assert report is not None and words in report.splitlines()[0]


def test_a_global_dict_is_the_static_check_s_to_name():
    assert check_determinism(UsesGlobal()) is None  # one process: it never changes
    found = [w for w in lint(__file__) if "accept-tk-global" in str(w)]
    assert found and "module global: FLAGS" in str(found[0])


def test_an_unkeyed_effect_happens_twice_across_a_crash_and_a_keyed_one_once():
    unkeyed = check_replay(Mail(), ["go"], services=[mailer])
    assert not unkeyed.ok
    assert "makes an outside effect happen twice" in unkeyed.problems[0].text()
    assert check_replay(Mail(keyed=True), ["go"], services=[mailer]).ok


def test_a_mistyped_mode_is_an_argument_error():
    with pytest.raises(ArgumentError, match="mode must be one of"):
        Instance(Mail(), "weird")


@genflow.workflow("accept-tk-nap")
@attrs.define
class Nap:
    woke: bool = False

    def definition(self):
        yield genflow.Sleep("nap", 3600)
        yield Step("up", lambda: setattr(self, "woke", True))


def test_a_timer_send_that_names_no_timer_is_the_tests_mistake_said_so():
    """`Send("nap", timer=True)` for a Sleep named "nap" used to pass as a refused
    event, the timer never fired, and the test's own assertion failed later."""
    from genflow.testing import Send, assert_replay_equivalent

    with pytest.raises(ArgumentError) as refused:
        assert_replay_equivalent(Nap(), [Send("nap", timer=True)])
    assert str(refused.value) == (
        "Send('nap', timer=True): workflow 'accept-tk-nap' has no timer 'nap'; its timers "
        "are 'wake' (a Timeout's name; a Sleep's timer is 'wake')")
    assert assert_replay_equivalent(Nap(), [Send("wake", timer=True)]).data.woke
