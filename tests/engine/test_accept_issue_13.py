"""Acceptance of issue 13 ("every failure typed, atomic and explained"), as a
user meets it first: opening a store with a mistyped URL or option, or an
Engine with a setting that cannot work, is an `ArgumentError` (a
`GenflowError`) that says what to write, never a raw AttributeError (a
`pathlib.Path` opens that SQLite file); `cancel` with a failing teardown
returns and warns rather than raising, as its docstring says."""

from __future__ import annotations

import logging
import pathlib

import attrs
import pytest

import genflow
from genflow import Engine, FakeClock, GenflowError, Handler, On, Wait, WorkflowStatus, open_store
from genflow.errors import ArgumentError
from genflow.stores import SQLiteStore


@pytest.mark.parametrize("url", [None, 5, b"sqlite:///x.db"])
def test_a_url_that_is_not_text_is_an_argument_error(url) -> None:
    with pytest.raises(ArgumentError, match="a store URL is a str"):
        open_store(url)


@pytest.mark.parametrize(("url", "words"), [
    ("sqlite:///{dir}/a.db?synchronus=FULL", "unknown SQLite store option"),
    ("sqlite:///{dir}/a.db?synchronous=SOMETIMES", "synchronous is one of"),
    ("memory:?size=3", "takes no options"),
])
def test_an_option_a_store_does_not_take_is_an_argument_error(tmp_path, url, words) -> None:
    with pytest.raises(ArgumentError, match=words) as refused:
        open_store(url.format(dir=tmp_path))
    assert isinstance(refused.value, GenflowError)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_path_opens_that_sqlite_file(tmp_path: pathlib.Path) -> None:
    with open_store(tmp_path / "app.db") as store:
        assert isinstance(store, SQLiteStore)
    assert (tmp_path / "app.db").exists()


@pytest.mark.parametrize(("settings", "words"), [
    ({"mailbox_size": -1}, "mailbox_size is a count"),
    ({"mailbox_size": True}, "mailbox_size is a count"),
    ({"parallel_steps": 0}, "parallel_steps is a number"),
    ({"workflows": "counter"}, "workflows is a list of workflow classes"),
    ({"workflows": SQLiteStore}, "workflows is a list of workflow classes"),
])
def test_an_engine_setting_that_cannot_work_is_an_argument_error(settings, words) -> None:
    with pytest.raises(ArgumentError, match=words):
        Engine(open_store("memory:"), **settings)


class _FlakyTeardown(Handler):
    """A handler whose teardown fails the first `fails` times."""

    calls = 0

    def __init__(self, fails: int) -> None:
        self.fails = fails

    def handle(self, payload: int) -> None:
        pass

    def teardown(self, *args: object) -> None:
        type(self).calls += 1
        if type(self).calls <= self.fails:
            raise RuntimeError("the mail server is down")


@genflow.workflow("accept13-teardown")
@attrs.define
class Subscription:
    def definition(self):
        yield Wait("renewal?", On("renew", _FlakyTeardown(fails=1)))


def test_cancel_with_a_failing_teardown_returns_warns_and_ends_cancelled(caplog) -> None:
    _FlakyTeardown.calls = 0
    engine = Engine(open_store("memory:"), clock=FakeClock())
    engine.start(Subscription(), id="s1")
    with caplog.at_level(logging.WARNING, logger="genflow.engine"):
        assert engine.cancel("s1") is None  # no HandlerError: the cancel took place
    assert any("the mail server is down" in r.getMessage() for r in caplog.records)
    assert engine.get("s1").status is WorkflowStatus.CANCELLING  # its teardown is owed
    with pytest.raises(GenflowError):
        engine.send("s1", "renew", 1)
    engine.work(until_done=True)  # a worker tears it down again
    assert engine.get("s1").status is WorkflowStatus.CANCELLED
    assert _FlakyTeardown.calls == 2


@genflow.workflow("accept13-nap")
@attrs.define
class Nap:
    def definition(self):
        yield Wait("wake?", On("wake", self.wake))

    def wake(self) -> None:
        pass


def test_a_blob_that_does_not_decode_names_its_instance_and_what_to_do(tmp_path) -> None:
    import sqlite3

    engine = Engine(open_store(f"sqlite:///{tmp_path / 'c.db'}"))
    engine.start(Nap(), id="n1")
    with sqlite3.connect(tmp_path / "c.db") as db:
        db.execute("UPDATE instances SET blob = x'00ff00' WHERE id = 'n1'")
    before = engine.store.get("n1")
    for call in (lambda: engine.get("n1"), lambda: engine.send("n1", "wake"),
                 lambda: engine.cancel("n1")):
        with pytest.raises(genflow.CorruptStateError,
                           match=r"instance 'n1' of workflow 'accept13-nap' cannot be loaded: "
                                 r"not a genflow blob .*repair its blob"):
            call()
    after = engine.store.get("n1")
    assert (after.blob, after.version, after.status) == (before.blob, before.version,
                                                         before.status)


@genflow.workflow("accept13-guarded")
@attrs.define
class Guarded:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield genflow.Try("charge", genflow.Step("bill", lambda: self.log.append("bill"))) \
            .Catch("declined", genflow.Step("refund", lambda: self.log.append("refund"))) \
            .Finally("always", genflow.Step("tidy", lambda: self.log.append("tidy")))
        yield Wait("done?", On("done", lambda: None))


@pytest.mark.parametrize(("target", "kind"), [("charge", "Try"), ("declined", "Catch"),
                                              ("always", "Finally")])
def test_a_move_to_a_try_or_one_of_its_branches_says_why_it_cannot(target, kind) -> None:
    engine = Engine(open_store("memory:"))
    engine.start(Guarded(), id="g1")
    before = engine.store.get("g1")
    with pytest.raises(genflow.MoveError, match=f"'{target}' is a {kind}: a {kind} cannot be a "
                                                "move target; choose a Step, Wait or WaitFor"):
        engine.move("g1", genflow.MAIN_THREAD, target)
    assert engine.store.get("g1").blob == before.blob
    engine.move("g1", genflow.MAIN_THREAD, "refund")  # a statement inside the branch is
    assert engine.get("g1").data.log == ["bill", "tidy", "refund", "tidy"]


def test_a_field_type_defined_in_a_function_says_where_to_define_it() -> None:
    # this file has `from __future__ import annotations`: `list[Line]` is the text
    # "list[Line]", and a class local to this function cannot be found from it
    @attrs.define
    class Line:
        sku: str

    @genflow.workflow("accept13-local-type")
    @attrs.define
    class Basket:
        lines: list[Line] = attrs.Factory(list)

        def definition(self):
            yield Wait("add?", On("add", lambda: None))

    engine = Engine(open_store("memory:"))
    with pytest.raises(genflow.SerializationError,
                       match=r"name 'Line' is not defined.*define the classes the fields name "
                             r"at module level"):
        engine.start(Basket([Line("tea")]), id="b1")
    assert engine.list() == []
