"""Every failure typed and atomic (issue 13): the engine's share.

Each test is a case a user met: the failure must be a `GenflowError` saying what
to do, the stored row byte-identical to before (blob, version, status, wake_at,
waiting_for), and a worker must keep serving every other instance.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genflow
from genflow import (
    EventHandler,
    Go,
    On,
    Retry,
    Step,
    Timeout,
    Wait,
    WorkflowStatus,
)
from genflow.clock import FakeClock
from genflow.codec import dumps
from genflow.engine import Engine
from genflow.errors import (
    CorruptStateError,
    GenflowError,
    InstanceFailedError,
    InvalidIdError,
    NonDeterminismError,
    SerializationError,
    UnknownEventError,
)
from genflow.state import new_state

CALLS: dict[str, int] = {}
EDITION = {"v": 1}


def row(engine: Engine, instance_id: str) -> tuple[Any, ...]:
    """What must not change when an operation is refused."""
    r = engine.store.get(instance_id)
    return (r.blob, r.version, r.status, r.wake_at, r.waiting_for)


@pytest.fixture
def engine(make_store):
    CALLS.clear()
    EDITION["v"] = 1
    return Engine(make_store(), clock=FakeClock())


# -- a step's attempts belong to that step -------------------------------------------------


@genflow.workflow("robust-busy")
@attrs.define
class Busy:
    pokes: int = 0

    def definition(self):
        yield Go("side", self.side)
        yield Step("call out", self.call_out, retry=Retry(attempts=5, backoff=30, factor=1))

    def side(self):
        for n in range(10):
            yield Wait(f"poke {n}?", On("poke", self.on_poke))

    def on_poke(self) -> None:
        self.pokes += 1

    def call_out(self) -> None:
        CALLS["call out"] = CALLS.get("call out", 0) + 1
        raise ConnectionError("service down")


def test_events_for_another_thread_neither_reset_nor_hurry_a_failing_step(engine):
    iid = engine.start(Busy())
    start = engine.clock()
    assert CALLS["call out"] == 1
    record = engine.store.get(iid)
    assert record.attempts == 1 and "service down" in record.error
    assert record.wake_at == start + dt.timedelta(seconds=30)
    for _ in range(3):  # each send moves the side thread, never the failing step
        engine.send(iid, "poke")
    record = engine.store.get(iid)
    assert CALLS["call out"] == 1
    assert record.attempts == 1 and record.wake_at == start + dt.timedelta(seconds=30)
    assert engine.get(iid).data.pokes == 3
    for attempt in range(2, 6):
        engine.clock.advance(seconds=30)
        engine.run_due()
        assert CALLS["call out"] == attempt
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.FAILED and inst.attempts == 5
    with pytest.raises(InstanceFailedError, match="retry it"):
        engine.send(iid, "poke")


# -- an operation that fails after user code ran leaves nothing behind ------------------------


@genflow.workflow("robust-big")
@attrs.define
class Big:
    n: int = 0

    def definition(self):
        yield Wait("set?", On("set", self.on_set), Timeout("late", 3600))
        yield Step("use", self.use)

    def on_set(self, value: int) -> None:
        self.n = value * 2 ** 40  # fits as a payload, not once stored

    def use(self) -> None:
        pass


def test_a_send_that_leaves_unserialisable_data_changes_nothing(engine):
    iid = engine.start(Big())
    before = row(engine, iid)
    with pytest.raises(SerializationError):
        engine.send(iid, "set", 2 ** 30)
    assert row(engine, iid) == before
    assert engine.send(iid, "set", 1) is None  # and the instance works as before
    assert engine.get(iid).status is WorkflowStatus.FINISHED


def test_a_timer_is_fired_by_the_clock_not_by_its_name(engine):
    iid = engine.start(Big())
    before = row(engine, iid)
    with pytest.raises(UnknownEventError) as err:
        engine.send(iid, "late")
    message = str(err.value)
    assert "'late'" in message and "timer" in message and "it waits for 'set'" in message
    assert "{" not in message  # words, not a dict of waits
    assert row(engine, iid) == before


# -- cancel: atomic, and it does not raise after it succeeded ---------------------------------


class Flimsy(EventHandler):
    def teardown(self, req, won):
        CALLS["teardown"] = CALLS.get("teardown", 0) + 1
        if CALLS["teardown"] < 3:
            raise ConnectionError("webhook service down")

    def handle(self, req, payload: str) -> str:
        return payload


@genflow.workflow("robust-cancel")
@attrs.define
class Cancellable:
    def definition(self):
        name = "wait for it" if EDITION["v"] == 1 else "renamed wait"
        yield Wait(name, On("go", Flimsy()))


def test_cancel_of_a_renamed_wait_is_refused_with_nothing_changed(engine):
    iid = engine.start(Cancellable())
    EDITION["v"] = 2
    before = row(engine, iid)
    with pytest.raises(NonDeterminismError, match="wait for it"):
        engine.cancel(iid)
    assert row(engine, iid) == before
    EDITION["v"] = 1
    CALLS["teardown"] = 5  # the teardown works now
    engine.cancel(iid)
    assert engine.get(iid).status is WorkflowStatus.CANCELLED


def test_cancel_does_not_raise_when_a_teardown_fails(engine, caplog):
    iid = engine.start(Cancellable())
    with caplog.at_level(logging.WARNING, logger="genflow.engine"):
        assert engine.cancel(iid) is None
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.CANCELLING  # cancelled; a teardown still owed
    with pytest.raises(genflow.EventError):
        engine.send(iid, "go", "x")  # it takes no more events
    assert any("webhook service down" in r.getMessage() for r in caplog.records)
    event = inst.state.threads[0].events[0]
    assert event.attempts == 1 and event.retry_at is not None  # a worker retries it
    for _ in range(3):
        engine.clock.advance(seconds=600)
        engine.run_due()
    inst = engine.get(iid)
    assert inst.status is WorkflowStatus.CANCELLED and inst.state.threads == []
    assert CALLS["teardown"] == 3


# -- ids that no store can keep ---------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\udc80", "", "x" * 256, "a\x00b", 7])
def test_ids_that_cannot_be_stored_are_refused_at_the_api(engine, bad):
    iid = engine.start(Big())
    for call in (lambda: engine.send(bad, "set", 1), lambda: engine.get(bad),
                 lambda: engine.cancel(bad), lambda: engine.retry(bad),
                 lambda: engine.move(bad, "_main_", "use"),
                 lambda: engine.start(Big(), id=bad),
                 lambda: engine.start(Big(), id=bad, if_exists="return"),
                 lambda: engine.send(bad, "set", 1, start=Big()),
                 lambda: engine.send(bad, "set", 1, keep=False)):
        with pytest.raises(InvalidIdError):
            call()
    assert engine.store.count() == 1 and engine.get(iid).status is WorkflowStatus.WAITING


# -- poison instances: set aside, and the worker goes on --------------------------------------


@genflow.workflow("robust-other")
@attrs.define
class Other:
    def definition(self):
        yield Wait("w", On("go", lambda: None))


def _poison(engine: Engine, kind: str) -> str:
    """Store an instance that cannot run, as an accident or an edit by hand would."""
    iid = engine.start(Big(), id=f"poison-{kind}")
    record = engine.store.get(iid)
    if kind == "undecodable":
        blob = b"\x95\xa7genflow\x03garbage"
    elif kind == "another workflow":
        blob = dumps(Other(), new_state(iid, Other))
    elif kind == "another instance":
        blob = dumps(Big(), new_state("someone-else", Big))
    elif kind == "naive timer":
        envelope = msgpack.unpackb(record.blob)
        due = envelope[4][4][0][5][1][4]  # state, threads, main, events, 'late', due
        envelope[4][4][0][5][1][4] = due.replace("+00:00", "")
        blob = msgpack.packb(envelope)
    else:  # "resuming with no threads"
        state = new_state(iid, Big)
        state.threads = []
        blob = dumps(Big(), state)
    engine.store.save(record.replace(blob=blob, wake_at=engine.clock()),
                      expected_version=record.version)
    return iid


@pytest.mark.parametrize("kind", ["undecodable", "another workflow", "another instance",
                                  "naive timer", "resuming with no threads"])
def test_an_instance_that_cannot_run_is_set_aside_and_the_others_are_served(engine, kind):
    bad = _poison(engine, kind)
    good = engine.start(Big(), id="good", run=False)
    processed = engine.run_due()  # never raises
    assert processed >= 1
    assert engine.get(good).status is WorkflowStatus.WAITING
    record = engine.store.get(bad)
    if kind == "resuming with no threads":  # a State with nothing left to do has finished
        assert record.status == "finished"
        return
    assert record.status == "failed" and record.wake_at is None
    assert record.error.startswith("CorruptStateError")
    assert engine.run_due() == 0  # not claimed again: no hot loop
    with pytest.raises(CorruptStateError):
        engine.get(bad)


def test_a_blob_of_another_workflow_never_runs_that_workflows_code(make_store):
    store = make_store()
    Engine(store, clock=FakeClock()).start(Big(), id="x")
    record = store.get("x")
    store.save(record.replace(blob=dumps(Other(), new_state("x", Other))),
               expected_version=record.version)
    only_big = Engine(store, [Big], clock=FakeClock())
    with pytest.raises(CorruptStateError, match=r"'robust-other'.*'robust-big'"):
        only_big.get("x")


# -- a refused operation leaves the row as it was: every operation, any input ------------------


@genflow.workflow("robust-later")
@attrs.define
class Later:
    """Waits for "first", then for "then": a "then" sent before is kept."""

    got: list[int] = attrs.field(factory=list)

    def definition(self):
        yield Wait("first", On("first"))
        yield Wait("then", On("then", self.on_then))

    def on_then(self, value: int) -> None:
        self.got.append(value)


def _ops(engine: Engine, iid: str, later: str = "later") -> dict[str, Any]:
    return {
        "start again": lambda arg: engine.start(Big(), id=iid),
        "start if_exists": lambda arg: engine.start(Big(), id=iid, if_exists=arg),
        "start other if_exists": lambda arg: engine.start(Later(), id=iid, if_exists="return"),
        "send no keep": lambda arg: engine.send(iid, arg, 1, keep=False),
        "send with start": lambda arg: engine.send(iid, arg, 1, start=Big()),
        "send with start, another workflow": lambda arg: engine.send(iid, "set", 1,
                                                                     start=Later()),
        "keep": lambda arg: engine.send(later, "then", arg),
        "keep to a thread": lambda arg: engine.send(later, "then", 1, thread=arg),
        "keep an unknown event": lambda arg: engine.send(later, arg, 1),
        "send": lambda arg: engine.send(iid, arg, 1),
        "send payload": lambda arg: engine.send(iid, "set", arg),
        "deliver": lambda arg: engine.deliver(
            genflow.CallbackRequest(iid, "_main_", "set", 99), 1),
        "move a ghost": lambda arg: engine.move(iid, arg, "use"),
        "move": lambda arg: engine.move(iid, "_main_", arg),
        "retry": lambda arg: engine.retry(iid),
        "run_due": lambda arg: engine.run_due(),
    }


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(
    st.sampled_from(["start again", "send", "send payload", "deliver", "move a ghost",
                     "move", "retry", "run_due", "start if_exists", "start other if_exists",
                     "send no keep", "send with start", "send with start, another workflow",
                     "keep", "keep to a thread", "keep an unknown event"]),
    st.one_of(st.sampled_from(["set", "late", "nope", "use", "set?", "_main_", "ghost",
                               "then", "first", "return", "raise"]),
              st.integers(min_value=-2 ** 70, max_value=2 ** 70), st.text(max_size=3),
              st.none())),
    min_size=1, max_size=6))
def test_any_refused_operation_leaves_the_row_byte_identical(make_store, calls):
    """Every operation, any argument: refused with a typed error and both rows
    (an instance that waits, one whose mailbox holds at most two) as they were."""
    engine = Engine(make_store(), clock=FakeClock(), mailbox_size=2)
    n = len(engine.store.list())
    iid = engine.start(Big(), id=f"p{n}")
    later = engine.start(Later(), id=f"later{n}")
    ops = _ops(engine, iid, later)
    for name, arg in calls:
        before = row(engine, iid), row(engine, later)
        try:
            ops[name](arg)
        except GenflowError:
            assert (row(engine, iid), row(engine, later)) == before, name
        except TypeError:
            pytest.fail(f"{name}({arg!r}) raised an untyped error")


def test_show_says_why_an_instance_was_set_aside(tmp_path, capsys, monkeypatch):
    from genflow.cli import main
    from genflow.stores import SQLiteStore

    path = tmp_path / "poison.db"
    engine = Engine(SQLiteStore(path), clock=FakeClock())
    bad = _poison(engine, "another instance")
    engine.run_due()
    engine.store.close()
    monkeypatch.setenv("GENFLOW_APP", __file__)
    code = main(["--store", f"sqlite:///{path}", "show", bad])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"instance {bad} of workflow 'robust-big': FAILED, cannot be loaded" in out
    assert "holds the blob of instance 'someone-else'" in out
    assert f"genflow retry {bad}" in out and err.startswith("genflow: error: ")
