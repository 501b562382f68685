"""What a user coming from Temporal, DBOS or Azure Durable Functions writes
first, from the peers' canonical samples and the docs: the slips they make
(a URL where a store goes, the class where its data goes, a `Timeout` for a
sleep, an id given to `deliver`) are refused before anything is written, as
a `GenflowError` that says what to write instead, never a raw `AttributeError`."""

from __future__ import annotations

import attrs
import pytest

import genflow
from genflow import Engine, FakeClock, On, Retry, Step, Timeout, Wait
from genflow.errors import ArgumentError, DefinitionError, QueueNotFoundError


@genflow.workflow("accept-samples-greeter")
@attrs.define
class Greeter:
    names: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Wait("name?", On("name", self.on_name))

    def on_name(self, name: str) -> str:
        self.names.append(name)
        return f"hello {name}"


@genflow.workflow("accept-samples-timeout-as-sleep")
@attrs.define
class TimeoutAsSleep:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("a", lambda: self.log.append("a"))
        yield Timeout("a while", 5)  # Temporal's `workflow.sleep`, written as a Timeout
        yield Step("b", lambda: self.log.append("b"))


@pytest.mark.parametrize(("store_arg", "words"), [
    ("sqlite:///app.db", "Engine takes a store, not its URL: Engine(open_store('sqlite:///app.db'))"),
    (None, "Engine takes a store (open_store(url), MemoryStore()), not None"),
])
def test_an_engine_takes_a_store_and_says_so(store_arg, words):
    with pytest.raises(ArgumentError) as refused:
        Engine(store_arg)
    assert str(refused.value) == words


@pytest.mark.parametrize(("option", "words"), [
    ({"default_retry": 3}, "default_retry takes a genflow.Retry (or None), not 3: "
                           "default_retry=Retry(attempts=3)"),
    ({"handler_retry": "forever"}, "handler_retry takes a genflow.Retry (or None), not 'forever'"),
    ({"lease_seconds": -1}, "lease_seconds is a number of seconds above 0, not -1"),
    ({"lease_seconds": 0}, "lease_seconds is a number of seconds above 0, not 0"),
    ({"max_moves": 0}, "max_moves is a number of moves, at least 1, not 0"),
])
def test_engine_options_that_cannot_work_are_refused_where_they_are_given(store, option, words):
    with pytest.raises(ArgumentError) as refused:
        Engine(store, **option)
    assert str(refused.value) == words
    Engine(store, default_retry=Retry(attempts=3), lease_seconds=0.5)  # what works


def test_the_class_where_its_data_goes_is_refused_and_nothing_is_written(store):
    engine = Engine(store, clock=FakeClock())
    words = ("the data to start from is an instance of the workflow's class (Greeter(...)), "
             "not the class Greeter itself")
    with pytest.raises(ArgumentError) as refused:
        engine.start(Greeter)
    assert str(refused.value) == words
    with pytest.raises(ArgumentError) as refused:
        engine.send("g", "name", "ada", start=Greeter)  # signal-with-start
    assert str(refused.value) == words
    assert list(store.list()) == []


def test_a_priority_without_a_queue_is_refused_not_ignored(store):
    engine = Engine(store, clock=FakeClock())
    with pytest.raises(ArgumentError, match=r"priority=3 orders a queue's admission: give the "
                                            r"queue too \(queue=\.\.\.\)"):
        engine.start(Greeter(), id="g", priority=3)
    with pytest.raises(QueueNotFoundError, match=r"no queue 'jobs' is defined in this store: "
                                                 r"define it first \(engine\.queues\.define"):
        engine.start(Greeter(), id="g", queue="jobs", priority=3)
    assert list(store.list()) == []


def test_deliver_takes_a_request_and_points_to_send_for_an_id(store):
    engine = Engine(store, clock=FakeClock())
    engine.start(Greeter(), id="g")
    before = store.get("g")
    with pytest.raises(ArgumentError) as refused:
        engine.deliver("g", "ada")  # type: ignore[arg-type]
    assert "to send an event by instance id, use send(instance_id, event, payload)" in \
        str(refused.value)
    assert store.get("g") == before
    req = engine.get("g").state.threads[0].events[0].req
    assert engine.deliver(req, "ada") == "hello ada"


def test_a_timeout_written_for_a_sleep_is_refused_at_start_with_the_fix(store):
    """It used to be accepted, then failed the instance after its first step."""
    engine = Engine(store, clock=FakeClock())
    with pytest.raises(DefinitionError) as refused:
        engine.start(TimeoutAsSleep(), id="t")
    assert "Timeout 'a while' stands alone: it is an event of a Wait, not a statement: " \
           "write Sleep('a while', seconds) for a durable sleep" in str(refused.value)
    assert list(store.list()) == []


@genflow.workflow("accept-samples-optional-reason")
@attrs.define
class Review:
    outcome: str = ""

    def definition(self):
        yield Wait("decision",
                   On("approve", self.approve),
                   On("reject", self.reject))  # the rejecter may give a reason, or not

    def approve(self, reason: str | None) -> None:
        self.outcome = f"approved ({reason})"

    def reject(self, reason: str = "") -> None:  # a default: takes no payload
        self.outcome = f"rejected ({reason})"


def test_a_handler_whose_parameter_has_a_default_says_how_to_take_an_optional_payload(store):
    engine = Engine(store, clock=FakeClock())
    engine.start(Review(), id="r")
    before = store.get("r")
    with pytest.raises(genflow.PayloadError) as refused:
        engine.send("r", "reject", "too dear")
    assert str(refused.value) == (
        "event 'reject' takes no payload, got str 'too dear': its handler's parameter "
        "'reason' has a default, so it is given none; for an optional payload declare it "
        "without a default, as `reason: str | None`")
    assert store.get("r") == before
    engine.send("r", "approve")  # what the message advises: None when nothing is sent
    assert engine.get("r").data.outcome == "approved (None)"


@genflow.workflow("accept-samples-kid")
@attrs.define
class Kid:
    n: int = 0

    def definition(self):
        yield Step("work", lambda: None)


@genflow.workflow("accept-samples-class-child")
@attrs.define
class ClassChild:
    def definition(self):
        yield genflow.Child("kid", Kid)  # Temporal's execute_child_workflow(Kid.run, ...)


def test_a_childs_class_where_its_data_goes_is_refused_at_start(store):
    """It used to be accepted, then failed the parent at the wait's setup."""
    engine = Engine(store, clock=FakeClock())
    with pytest.raises(DefinitionError) as refused:
        engine.start(ClassChild(), id="p")
    assert "Child 'kid': a child is the data of an instance of its workflow (Kid(...)), not " \
           "the class Kid" in str(refused.value)
    assert list(store.list()) == []


@genflow.workflow("accept-samples-report")
@attrs.define
class Report:
    def definition(self):
        yield Step("build", lambda: None)


def test_a_schedule_or_instance_id_taken_says_how_to_go_on(store):
    engine = Engine(store, clock=FakeClock())
    engine.schedules.add("nightly", Report(), cron="0 2 * * *")
    with pytest.raises(genflow.errors.DuplicateScheduleError) as refused:
        engine.schedules.add("nightly", Report(), cron="0 3 * * *")
    assert str(refused.value) == (
        "schedule 'nightly' already exists: to replace it, delete it first "
        "(engine.schedules.delete('nightly'); the instances it started stay)")
    assert engine.schedules.get("nightly").schedule.cron == "0 2 * * *"
    engine.start(Report(), id="r")
    with pytest.raises(genflow.errors.DuplicateInstanceError) as refused:
        engine.start(Report(), id="r")
    assert str(refused.value) == ("instance 'r' already exists (to have its id back instead, "
                                  "start with if_exists='return')")
    assert engine.start(Report(), id="r", if_exists="return") == "r"


@pytest.mark.parametrize("count", ["3", -1, 2.0])
def test_next_fire_times_takes_a_count(store, count):
    engine = Engine(store, clock=FakeClock())
    info = engine.schedules.add("hourly", Report(), cron="@hourly")
    with pytest.raises(ArgumentError, match="next_fire_times takes a count of ticks"):
        info.next_fire_times(count)
    assert len(info.next_fire_times(2)) == 2


@genflow.workflow("accept-samples-async-step")
@attrs.define
class AsyncStep:
    got: str = ""

    def definition(self):
        yield Step("fetch", self.fetch)

    async def fetch(self) -> None:
        self.got = "fetched"


def test_an_async_step_under_the_sync_api_names_the_async_twins(store):
    engine = Engine(store, clock=FakeClock())
    engine.start(AsyncStep(), id="a")
    error = engine.get("a").error
    assert "is async: the sync API cannot await it; call the async twin (the Engine's " \
           "start_async, send_async, run_due_async..., a worker's work_async or `genflow " \
           "worker --async`; the core's resume_async...), or make it a plain def" in error, error


def test_an_event_sent_to_no_instance_points_to_signal_with_start(store):
    engine = Engine(store, clock=FakeClock())
    with pytest.raises(genflow.errors.InstanceNotFoundError) as refused:
        engine.send("g", "name", "ada")
    assert str(refused.value) == ("no instance 'g' (to start it with this event, send it "
                                  "with the data to start from: start=...)")
    assert list(store.list()) == []
    assert engine.send("g", "name", "ada", start=Greeter()) == "hello ada"


def test_keep_is_a_bool_or_none(store):
    engine = Engine(store, clock=FakeClock())
    engine.start(Greeter(), id="g")
    before = store.get("g")
    with pytest.raises(ArgumentError, match=r"keep is True .*, not 'no'"):
        engine.send("g", "name", "ada", keep="no")  # type: ignore[arg-type]
    assert store.get("g") == before


def test_run_is_a_bool_and_a_refused_start_writes_nothing(store):
    """`run="no"` was taken as true: the instance ran."""
    engine = Engine(store, clock=FakeClock())
    with pytest.raises(ArgumentError, match=r"run is True .* or False .*, not 'no'"):
        engine.start(Greeter(), id="g", run="no")  # type: ignore[arg-type]
    assert list(store.list()) == []


def test_a_callback_counter_and_the_worker_s_stop_and_a_retention_policy_are_checked(store):
    from genflow.errors import ScheduleError

    engine = Engine(store, clock=FakeClock())
    engine.start(Greeter(), id="g")
    before = store.get("g")
    with pytest.raises(ArgumentError, match=r"pc is a thread's counter .* not '1'"):
        engine.send("g", "name", "ada", pc="1")  # type: ignore[arg-type]
    assert store.get("g") == before
    with pytest.raises(ArgumentError, match="stop is a function the loop calls"):
        engine.work(stop=True, until_idle=True)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match=r"retention\.add takes a genflow\.retention\."):
        engine.retention.add("30d")  # type: ignore[arg-type]
    assert engine.retention.policies == []
