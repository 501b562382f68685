"""Delivering events: typed payloads, handler objects, and every way to get it wrong."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import functools
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import genflow
from genflow import (
    MAIN_THREAD,
    CallbackRequest,
    EventError,
    EventHandler,
    EventNotReadyError,
    For,
    Go,
    HandlerError,
    NotWaitingError,
    On,
    PayloadError,
    Retry,
    StaleCallbackError,
    Step,
    UnknownEventError,
    UnknownThreadError,
    Wait,
    WaitEventStatus,
    WorkflowFinishedError,
    handle_callback,
    resume,
    validate,
)
from genflow.testing import MODES, Instance
from genflow.testing.instance import request


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


@attrs.define
class Line:
    sku: str
    qty: int
    price: decimal.Decimal = decimal.Decimal("0")


@attrs.define
class Order:
    number: int
    lines: list[Line]
    placed: dt.datetime
    note: str | None = None
    size: Size = Size.SMALL
    ship_by: dt.date | None = None


@genflow.workflow("events-shop")
@attrs.define
class Shop:
    orders: list[Order] = attrs.field(factory=list)
    counts: list[int] = attrs.field(factory=list)
    words: list[str] = attrs.field(factory=list)
    pings: int = 0
    raw: list[Any] = attrs.field(factory=list)
    broken: bool = False
    open: bool = True

    def definition(self):
        yield For("serve", self.open,
            Wait("next",
                On("order", self.on_order),
                On("count", self.on_count),
                On("words", self.on_words),
                On("ping", self.on_ping),
                On("raw", self.on_raw),
                On("close", self.on_close),
                On("fragile", self.on_fragile),
            ),
        )

    def on_order(self, order: Order) -> int:
        self.orders.append(order)
        return sum(line.qty for line in order.lines)

    def on_count(self, n: int) -> int:
        self.counts.append(n)
        return n + 1

    def on_words(self, words: list[str]) -> None:
        self.words.extend(words)

    def on_ping(self) -> str:
        self.pings += 1
        return "pong"

    def on_raw(self, value) -> None:  # unannotated: the payload as given
        self.raw.append(value)

    def on_close(self) -> None:
        self.open = False

    def on_fragile(self, n: int) -> None:
        self.counts.append(n)  # changed, then rolled back
        self.pings += 100
        if self.broken:
            raise LookupError("fragile handler broke")


ORDER = {
    "number": 7,
    "lines": [{"sku": "tea", "qty": 2, "price": "3.10"}, {"sku": "mug", "qty": 1}],
    "placed": "2030-02-03T04:05:06.000007+05:30",
    "size": "l",
    "ship_by": "2030-02-10",
}


@pytest.mark.parametrize("mode", MODES)
def test_payloads_are_structured_into_the_annotated_type(mode: str) -> None:
    run = Instance(Shop(), mode=mode)
    run.resume()
    assert run.send("order", ORDER) == 3
    assert run.send("count", 41) == 42
    before = run.blob()
    for wrong in ("5", 5.5, True, [5]):  # primitives must match: no str(), int() guessing
        with pytest.raises(PayloadError, match="does not fit int"):
            run.handle_callback("count", wrong)
        assert run.blob() == before
    with pytest.raises(PayloadError, match="event 'count' needs a payload of type int"):
        run.handle_callback("count", None)
    assert run.blob() == before
    assert run.send("count", 5) == 6
    assert run.send("words", ["a", "b"]) is None
    assert run.send("ping") == "pong"
    assert run.send("raw", {"as": ["given"]}) is None
    order = run.wf.orders[0]
    assert order == Order(
        number=7,
        lines=[Line("tea", 2, decimal.Decimal("3.10")), Line("mug", 1)],
        placed=dt.datetime(2030, 2, 3, 4, 5, 6, 7, tzinfo=dt.timezone(dt.timedelta(hours=5.5))),
        size=Size.LARGE,
        ship_by=dt.date(2030, 2, 10),
    )
    assert order.placed.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert order.note is None
    assert (run.wf.counts, run.wf.words, run.wf.pings) == ([41, 5], ["a", "b"], 1)
    assert run.wf.raw == [{"as": ["given"]}]
    run.send("close")
    assert run.state.status is genflow.WorkflowStatus.FINISHED


def _changes_nothing(run: Instance, op: Callable[[], Any], error: type[Exception]) -> Exception:
    before = run.blob()
    with pytest.raises(error) as err:
        op()
    assert run.blob() == before
    return err.value


def _bad(field_path: str, payload: Any) -> tuple[str, Any, str]:
    return ("order", payload, field_path)


BAD_PAYLOADS = [
    _bad("lines[1].qty", {**ORDER, "lines": [ORDER["lines"][0], {"sku": "mug", "qty": "one"}]}),
    _bad("lines[0].qty", {**ORDER, "lines": [{"sku": "mug"}]}),
    _bad("placed", {**ORDER, "placed": "yesterday"}),
    _bad("placed", {**ORDER, "placed": 1234}),
    _bad("number", {key: value for key, value in ORDER.items() if key != "number"}),
    _bad("size", {**ORDER, "size": "medium"}),
    _bad("lines[0].price", {**ORDER, "lines": [{"sku": "x", "qty": 1, "price": "cheap"}]}),
    _bad("ship_by", {**ORDER, "ship_by": "soon"}),
    _bad("Order", None),
    _bad("Order", ["not", "a", "mapping"]),
    ("count", "many", "int"),
    ("count", None, "int"),
    ("words", 5, "list"),
    ("ping", {"unexpected": True}, "takes no payload"),
    ("ping", 0, "takes no payload"),
]


@pytest.mark.parametrize(("event", "payload", "named"), BAD_PAYLOADS)
def test_payload_that_does_not_fit_is_refused_naming_the_field(event, payload, named) -> None:
    run = Instance(Shop())
    run.resume()
    req = request(run.state, event)
    deliver = lambda: handle_callback(req, run.wf, run.state, payload)  # noqa: E731
    err = _changes_nothing(run, deliver, PayloadError)
    assert named in str(err)
    assert repr(event) in str(err)
    # the instance still takes a good event afterwards
    assert run.send("ping") == "pong"


@pytest.mark.parametrize("mode", MODES[:2])
def test_handler_that_raises_is_rolled_back_and_the_event_can_come_again(mode: str) -> None:
    run = Instance(Shop(broken=True), mode=mode)
    run.resume()
    err = _changes_nothing(run, lambda: run.handle_callback("fragile", 3), HandlerError)
    assert (err.phase, err.event, err.thread) == ("handle", "fragile", MAIN_THREAD)
    assert isinstance(err.__cause__, LookupError)
    assert run.wf.counts == [] and run.wf.pings == 0
    run.wf.broken = False
    run.send("fragile", 4)
    assert (run.wf.counts, run.wf.pings) == ([4], 100)


class Sign(EventHandler):
    """A handler object whose payload type comes from `handle`'s annotation."""

    def setup(self, req):
        return f"sig:{req.thread_id}"

    def handle(self, req, payload: Line) -> str:
        return f"{payload.sku}x{payload.qty} {req.setup_data}"


@genflow.workflow("events-sign")
@attrs.define
class Signed:
    def definition(self):
        yield Wait("sign", On("sign", Sign()))


def test_handler_object_payload_type_comes_from_its_annotation() -> None:
    assert Sign.input_type is Line
    run = Instance(Signed())
    run.resume()
    req = request(run.state, "sign")
    _changes_nothing(run, lambda: run.handle_callback("sign", {"sku": 3}), PayloadError)
    _changes_nothing(run, lambda: run.handle_callback("sign", {"sku": "pen", "qty": "2"}),
                     PayloadError)
    assert run.handle_callback("sign", {"sku": "pen", "qty": 2}) == f"penx2 sig:{MAIN_THREAD}"
    assert req.setup_data == f"sig:{MAIN_THREAD}"


class SlottedDuck:
    """A handler by shape only, without `input_type`, that cannot take new attributes."""

    __slots__ = ()

    def setup(self, req: CallbackRequest) -> str:
        return "quack"

    def handle(self, req: CallbackRequest, payload: Any) -> str:
        return f"{req.setup_data} {payload}"

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        return None


@genflow.workflow("events-duck")
@attrs.define
class Ducky:
    def definition(self):
        yield Wait("w", On("quack", SlottedDuck()))


def test_handler_without_input_type_takes_no_payload_and_is_not_mutated() -> None:
    validate(Ducky())
    run = Instance(Ducky())
    run.resume()
    _changes_nothing(run, lambda: run.handle_callback("quack", "loud"), PayloadError)
    assert run.handle_callback("quack") == "quack None"


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator: its one wrapper code object serves every function it wraps."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@genflow.workflow("events-decorated")
@attrs.define
class Decorated:
    log: list[Any] = attrs.field(factory=list)

    def definition(self):
        yield Wait("w", On("ping", self.ping), On("line", self.line), On("n", logged(self.n)))

    @logged
    def ping(self) -> None:
        self.log.append("ping")

    @logged
    def line(self, line: Line) -> None:
        self.log.append(line)

    def n(self, n: int) -> None:
        self.log.append(n)


@pytest.mark.parametrize(
    ("event", "payload", "logged_value"),
    [("ping", None, "ping"), ("line", {"sku": "a", "qty": 1}, Line("a", 1)), ("n", 3, 3)],
)
def test_decorated_handlers_keep_their_own_payload_types(event, payload, logged_value) -> None:
    run = Instance(Decorated())
    run.resume()
    run.send(event, payload)
    assert run.wf.log == [logged_value]
    fresh = Instance(Decorated())
    fresh.resume()
    with pytest.raises(PayloadError):
        fresh.handle_callback("ping", {"sku": "a", "qty": 1})


# -- refusals ----------------------------------------------------------------------------------


@genflow.workflow("events-two-threads")
@attrs.define
class TwoThreads:
    fail: bool = True
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("side", Wait("side wait", On("poke", lambda: self.log.append("poked"))))
        yield Wait("main wait", On("go", lambda: self.log.append("go")))
        yield Step("work", self.work, retry=Retry(attempts=None, backoff=60))

    def work(self) -> None:
        if self.fail:
            raise RuntimeError("not yet")
        self.log.append("worked")


def _stuck() -> Instance:
    """Main thread stuck retrying a failing step; thread 'side' waiting."""
    run = Instance(TwoThreads())
    run.resume()
    run.handle_callback("go")
    run.resume()  # the step fails, and waits a minute for its next attempt
    main = run.state.thread(MAIN_THREAD)
    assert main.status is genflow.ThreadStatus.EXECUTING
    assert main.attempts == 1 and "not yet" in main.error
    assert main.retry_at == run.clock() + dt.timedelta(seconds=60)
    assert run.state.thread("side").status is genflow.ThreadStatus.WAITING_EVENT
    return run


Forge = Callable[[Instance, CallbackRequest], CallbackRequest]
REFUSALS: dict[str, tuple[type[Exception], Forge]] = {
    "unknown event": (UnknownEventError, lambda run, req: attrs.evolve(req, event="shove")),
    "unknown thread": (UnknownThreadError, lambda run, req: attrs.evolve(req, thread_id="ghost")),
    "other instance": (UnknownThreadError, lambda run, req: attrs.evolve(req, instance_id="i-2")),
    "stale counter": (StaleCallbackError, lambda run, req: attrs.evolve(req, pc=req.pc - 1)),
    "future counter": (StaleCallbackError, lambda run, req: attrs.evolve(req, pc=req.pc + 1)),
    "thread not waiting": (
        NotWaitingError,
        lambda run, req: CallbackRequest(
            run.state.id, MAIN_THREAD, "go", run.state.thread(MAIN_THREAD).pc
        ),
    ),
    "main's old request": (
        StaleCallbackError,
        lambda run, req: CallbackRequest(run.state.id, MAIN_THREAD, "go", 0),
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_event_refusals_change_nothing(case: str) -> None:
    error, forge = REFUSALS[case]
    run = _stuck()
    req = forge(run, request(run.state, "poke", "side"))
    err = _changes_nothing(run, lambda: handle_callback(req, run.wf, run.state, None), error)
    assert isinstance(err, EventError)
    # the genuine request still works
    handle_callback(request(run.state, "poke", "side"), run.wf, run.state, None)
    assert run.wf.log == ["go", "poked"]


def test_event_before_setup_is_not_ready() -> None:
    run = _stuck()
    event = run.state.thread("side").events[0]
    event.status = WaitEventStatus.PENDING_SETUP
    _changes_nothing(run, lambda: run.handle_callback("poke", thread="side"), EventNotReadyError)
    event.status = WaitEventStatus.SETUP_ERROR
    _changes_nothing(run, lambda: run.handle_callback("poke", thread="side"), EventNotReadyError)


def test_event_for_a_finished_instance_is_refused() -> None:
    run = _stuck()
    old = request(run.state, "poke", "side")
    run.wf.fail = False
    run.clock.advance(seconds=60)
    run.send("poke", thread="side")
    assert run.wf.log == ["go", "poked", "worked"]
    assert run.state.status is genflow.WorkflowStatus.FINISHED
    _changes_nothing(run, lambda: handle_callback(old, run.wf, run.state), WorkflowFinishedError)
    _changes_nothing(run, lambda: resume(run.wf, run.state), WorkflowFinishedError)



# -- handlers with nothing to set up or tear down ------------------------------------------

CALLED: list[str] = []


class HandleOnly(EventHandler):
    """Keeps EventHandler's do-nothing setup and teardown."""

    def handle(self, req: CallbackRequest, payload: str) -> None:
        CALLED.append(f"handle {payload}")


class SetupOnly(EventHandler):
    def setup(self, req: CallbackRequest) -> str:
        CALLED.append("setup")
        return "token"

    def handle(self, req: CallbackRequest, payload: str) -> None:
        CALLED.append(f"handle {payload}")


class Duck:
    """Not an EventHandler: every method counts as doing something."""

    input_type = str

    def setup(self, req: CallbackRequest) -> None:
        CALLED.append("duck setup")

    def handle(self, req: CallbackRequest, payload: str) -> None:
        CALLED.append(f"duck {payload}")

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        CALLED.append(f"duck teardown {handled}")


def _own_teardown() -> HandleOnly:
    handler = HandleOnly()
    handler.teardown = lambda req, handled: CALLED.append(f"own teardown {handled}")  # type: ignore[method-assign]
    return handler


HANDLERS: dict[str, Callable[[], Any]] = {
    "function": lambda: (lambda payload: CALLED.append(f"fn {payload}")),
    "handle only": HandleOnly,
    "setup only": SetupOnly,
    "duck": Duck,
    "instance teardown": _own_teardown,
}


@genflow.workflow("events-noop")
@attrs.define
class Listens:
    kind: str = "function"

    def definition(self):
        yield Wait("w", On("go", HANDLERS[self.kind]()), genflow.Timeout("late", 60))
        yield Step("after", lambda: CALLED.append("after"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(HANDLERS))
def test_only_handlers_that_do_something_make_moves(kind: str, mode: str) -> None:
    CALLED.clear()
    run = Instance(Listens(kind), mode=mode)
    run.resume()
    sets_up = kind in ("setup only", "duck")
    tears_down = kind in ("duck", "instance teardown")
    kinds = [k.value for k in run.kinds]
    assert kinds.count("after_setup") == (1 if sets_up else 0)
    assert (["setup"] if kind == "setup only" else ["duck setup"] if sets_up else []) == CALLED
    thread = run.state.threads[0]
    # every event listens once the resume is over; the timer was armed when the wait began
    assert [e.status for e in thread.events] == [WaitEventStatus.SETUP] * 2
    assert thread.events[1].due == thread.since + dt.timedelta(seconds=60)
    CALLED.clear()
    run.kinds.clear()
    run.handle_callback("go", "now")
    # only a teardown that does something is left to do; the timer is done with
    assert [e.event for e in run.state.threads[0].events] == (["go"] if tears_down else [])
    run.resume()
    kinds = [k.value for k in run.kinds]
    assert kinds.count("after_teardown") == (1 if tears_down else 0)
    assert CALLED[-1] == "after"
    assert any(c.endswith("teardown True") for c in CALLED) is tears_down
    assert run.state.status is genflow.WorkflowStatus.FINISHED
