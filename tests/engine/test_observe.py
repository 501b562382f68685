"""Logs, traces, metrics and the journal's timings (genflow.observe).

Logging is checked through a handler that keeps each record's `__dict__` (what a
JSON formatter prints); OpenTelemetry through the SDK's in-memory exporters,
handed to the engine as its providers (no global state shared between tests).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from obs_app import Broken, Flaky, Kid
from otel_helpers import in_memory_otel

import genflow
from genflow import For, On, Step, Wait, current_step
from genflow.codec import dumps, loads
from genflow.engine import Engine
from genflow.errors import CorruptStateError, UnknownEventError
from genflow.handlers import Handler
from genflow.observe import FIELDS, current_traceparent, traced
from genflow.state import Parent, new_state
from genflow.statements import Retry, Try
from genflow.stores import MemoryStore
from genflow.testing import FakeClock

ROOT = Path(__file__).resolve().parents[2]
#: a `python -c` child imports obs_app from tests/support, as this process does
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in [str(ROOT / "tests" / "support"), os.environ.get("PYTHONPATH")] if p)}


# -- workflows ------------------------------------------------------------------------------


@genflow.workflow("obs-caught")
@attrs.define
class Caught:
    handled: bool = False

    def definition(self):
        yield Try("attempt", Step("explode", self.explode, retry=Retry(attempts=1))).Catch(
            "recover", Step("handle", self.handle), errors=ValueError)

    def explode(self) -> None:
        raise ValueError("no")

    def handle(self) -> None:
        self.handled = True


class Hook(Handler):
    """A handler with a setup (a call of user code on the way into the wait)."""

    def setup(self, req):
        return {"url": f"https://example.test/{req.instance_id}"}

    def handle(self, req, payload: Any = None) -> str:
        return "done"


@genflow.workflow("obs-hooked")
@attrs.define
class Hooked:
    n: int = 0

    def definition(self):
        yield For("loop", self.n < 2, Step("tick", self.tick))
        yield Wait("hook", On("called", Hook()))

    def tick(self) -> None:
        self.n += 1


# -- logs -----------------------------------------------------------------------------------


class Records(logging.Handler):
    """Every record's `__dict__`, as a JSON formatter sees it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.dicts: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.dicts.append({**record.__dict__, "message": record.getMessage()})

    def at(self, level: str) -> list[dict[str, Any]]:
        return [d for d in self.dicts if d["levelname"] == level]


@pytest.fixture(autouse=True)
def _genflow_level():
    """Each test leaves the `genflow` logger's level as it found it."""
    top = logging.getLogger("genflow")
    level = top.level
    yield
    top.setLevel(level)


@pytest.fixture
def records():
    handler = Records()
    top = logging.getLogger("genflow")
    level = top.level
    top.addHandler(handler)
    top.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        top.removeHandler(handler)
        top.setLevel(level)


def _engine(**kw: Any) -> tuple[Engine, FakeClock]:
    clock = FakeClock()
    return Engine(MemoryStore(), clock=clock, otel=False, **kw), clock


def test_every_record_carries_the_fields_and_a_json_formatter_shows_them(records):
    engine, clock = _engine()
    engine.start(Flaky(fails=1), id="f1")
    clock.advance(seconds=10)
    engine.run_due()
    engine.send("f1", "confirmed", "yes")
    engine.start(Broken(), id="b1")
    assert records.dicts
    for record in records.dicts:
        assert record["name"].startswith("genflow."), record["name"]
        for name in FIELDS:
            assert name in record, (name, record["message"])
        json.dumps({k: record[k] for k in (*FIELDS, "message", "levelname")}, default=str)
    steps = [r for r in records.at("DEBUG") if r["statement"] == "ship"]
    assert steps and all(r["instance"] == "f1" and r["workflow"] == "obs-flaky"
                         and r["thread_id"] == "_main_" and r["attempt"] == 1 for r in steps)


def test_a_step_that_will_be_retried_is_a_warning_with_its_attempt_and_next_try(records):
    engine, clock = _engine()
    engine.start(Flaky(fails=2), id="f2")
    warnings = records.at("WARNING")
    assert len(warnings) == 1
    (warning,) = warnings
    assert (warning["instance"], warning["workflow"], warning["thread_id"],
            warning["statement"], warning["attempt"]) == ("f2", "obs-flaky", "_main_",
                                                          "charge", 1)
    assert warning["retry_at"] == clock.now + __import__("datetime").timedelta(seconds=5)
    assert "next try at" in warning["message"] and "the bank is down" in warning["message"]
    clock.advance(seconds=5)
    engine.run_due()
    assert [w["attempt"] for w in records.at("WARNING")] == [1, 2]
    assert not records.at("ERROR")


def test_an_instance_that_fails_is_an_error(records):
    engine, _ = _engine()
    engine.start(Broken(), id="b2")
    errors = records.at("ERROR")
    assert len(errors) == 1
    assert errors[0]["instance"] == "b2" and errors[0]["statement"] == "explode"
    assert errors[0]["attempt"] == 1 and "failed" in errors[0]["message"]


def test_a_failure_a_try_handles_is_a_warning_not_an_error(records):
    engine, _ = _engine()
    engine.start(Caught(), id="c1")
    assert engine.get("c1").data.handled
    assert not records.at("ERROR")
    (warning,) = records.at("WARNING")
    assert warning["statement"] == "explode" and "Try" in warning["message"]


def test_moves_are_debug_records_and_nothing_is_made_when_debug_is_off(records):
    engine, _ = _engine()
    logging.getLogger("genflow").setLevel(logging.INFO)
    engine.start(Flaky(fails=0), id="quiet")
    assert records.dicts == []
    logging.getLogger("genflow").setLevel(logging.DEBUG)
    engine.send("quiet", "confirmed", "y")
    moves = [r for r in records.at("DEBUG") if r.get("move")]
    assert [m["move"] for m in moves][:2] == ["after_event", "after_resume"]


def test_heartbeat_logs_its_note_with_the_fields(records):
    from genflow.lease import heartbeat

    @genflow.workflow("obs-beat")
    @attrs.define
    class Beat:
        def definition(self):
            yield Step("long", self.long)

        def long(self) -> None:
            heartbeat("half done")

    engine, _ = _engine()
    engine.start(Beat(), id="hb")
    (note,) = [r for r in records.at("INFO") if "half done" in r["message"]]
    assert (note["instance"], note["thread_id"], note["statement"], note["attempt"]) == (
        "hb", "_main_", "long", 1)


# -- nothing printed --------------------------------------------------------------------------

#: where genflow/ writes to a standard stream, each for a reason
_MAY_PRINT = {
    "genflow/cli.py": "the command line's own output",
    "genflow/batch.py": "Progress: the progress line a caller asks for (progress=True)",
    "genflow/testing/crossprocess.py": "a child process's main: its answers go to stdout",
}


def test_the_library_prints_nothing_outside_the_cli():
    found = []
    for path in sorted((ROOT / "genflow").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in _MAY_PRINT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "print":
                found.append(f"{rel}:{node.lineno}: print(")
            if isinstance(node, ast.Attribute) and node.attr in ("stderr", "stdout") \
                    and isinstance(node.value, ast.Name) and node.value.id == "sys":
                found.append(f"{rel}:{node.lineno}: sys.{node.attr}")
    assert found == []


def test_an_engine_at_work_writes_nothing_to_stdout_or_stderr(capfd):
    """Warnings and errors go to the `genflow` loggers only (their NullHandler keeps
    Python's last-resort handler from printing them)."""
    code = textwrap.dedent("""
        from genflow.engine import Engine
        from genflow.stores import MemoryStore
        from obs_app import Broken, Flaky, Kid
        engine = Engine(MemoryStore())
        engine.start(Flaky(fails=1))
        engine.start(Broken())
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=CHILD_ENV,
                          capture_output=True, text=True, check=True)
    assert (done.stdout, done.stderr) == ("", "")


# -- the journal's timings ----------------------------------------------------------------------


def test_the_journal_records_each_step_run_and_handler_call_with_start_end_and_attempt():
    engine, clock = _engine(journal=True)
    engine.start(Flaky(fails=1), id="j1")
    clock.advance(seconds=10)
    engine.run_due()
    engine.send("j1", "confirmed", "yes")
    entries = engine.store.journal("j1")
    steps = [(e.kind, e.detail["step"], e.detail["attempt"], e.detail.get("error"))
             for e in entries if e.kind in ("step", "handler")]
    assert steps == [("step", "charge", 1, "ConnectionError: the bank is down"),
                     ("step", "charge", 2, None), ("handler", "confirm", 1, None),
                     ("step", "ship", 1, None)]
    first, second = [e.detail for e in entries if e.kind == "step"][:2]
    assert first["start"] == first["end"] == "2030-01-01T00:00:00+00:00"
    assert second["start"] == "2030-01-01T00:00:10+00:00"
    handler = next(e.detail for e in entries if e.kind == "handler")
    assert (handler["event"], handler["phase"], handler["thread"]) == ("confirmed", "handle",
                                                                       "_main_")
    assert all(e.detail["seconds"] >= 0 for e in entries if e.kind in ("step", "handler"))
    # each step's entry is written before the checkpoint that saved its result
    kinds = [e.kind for e in entries]
    assert kinds[kinds.index("handler") + 1] == "after_event"


def test_a_step_that_advances_the_clock_has_that_duration():
    @genflow.workflow("obs-slow")
    @attrs.define
    class Slow:
        def definition(self):
            yield Step("slow", self.slow)

        def slow(self) -> None:
            current_step().clock.advance(seconds=90)  # (a FakeClock: the step takes 90 s)

    engine, _ = _engine(journal=True)
    engine.start(Slow(), id="slow")
    (detail,) = [e.detail for e in engine.store.journal("slow") if e.kind == "step"]
    assert (detail["start"], detail["end"]) == ("2030-01-01T00:00:00+00:00",
                                                "2030-01-01T00:01:30+00:00")


def test_handler_setups_are_timed_too():
    engine, _ = _engine(journal=True)
    engine.start(Hooked(), id="h1")
    handlers = [e.detail for e in engine.store.journal("h1") if e.kind == "handler"]
    assert [(h["phase"], h["event"], h["step"]) for h in handlers] == [
        ("setup", "called", "hook")]


def test_a_refused_send_leaves_its_handler_call_on_record_and_the_instance_unchanged():
    @genflow.workflow("obs-refuse")
    @attrs.define
    class Refuse:
        def definition(self):
            yield Wait("w", On("go", self.go))

        def go(self, payload: int) -> None:
            raise ValueError("refused")

    engine, _ = _engine(journal=True)
    engine.start(Refuse(), id="r1")
    before = engine.store.get("r1")
    with pytest.raises(genflow.errors.HandlerError):
        engine.send("r1", "go", 1)
    after = engine.store.get("r1")
    assert (after.blob, after.version, after.status, after.wake_at, after.waiting_for) == (
        before.blob, before.version, before.status, before.wake_at, before.waiting_for)
    (call,) = [e.detail for e in engine.store.journal("r1") if e.kind == "handler"]
    assert call["error"] == "ValueError: refused"


def test_with_the_journal_off_no_otel_and_no_debug_the_driver_is_not_watched():
    engine, _ = _engine()
    logging.getLogger("genflow").setLevel(logging.WARNING)
    assert engine.observer.watching() is None
    engine.start(Flaky(fails=0), id="plain")
    assert engine.store.journal("plain") == [] and engine.observer.pending == {}


# -- the trace context in the State ----------------------------------------------------------------


_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@given(parent=st.none() | st.builds(Parent, st.text(min_size=1, max_size=5),
                                     st.text(min_size=1, max_size=5), st.integers(0, 9)),
       trace=st.none() | st.just(_TRACEPARENT))
def test_the_trace_context_round_trips_in_the_blob_and_costs_nothing_when_absent(parent, trace):
    data = Flaky()
    state = new_state("i", data)
    plain = dumps(data, state)
    state.parent, state.trace = parent, trace
    blob = dumps(data, state)
    _, back = loads(blob, {"obs-flaky": Flaky})
    assert (back.parent, back.trace) == (parent, trace)
    if parent is None and trace is None:
        assert blob == plain


@pytest.mark.parametrize("bad", [7, b"x", ["00-..."], {}])
def test_a_trace_context_that_is_not_text_is_a_corrupt_state(bad):
    import msgpack

    data = Flaky()
    state = new_state("i", data)
    state.trace = _TRACEPARENT
    blob = dumps(data, state)
    envelope = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    text = json.dumps(envelope, default=repr)
    assert _TRACEPARENT in text  # (where it is, to corrupt it)

    def swap(value: Any) -> Any:
        if value == _TRACEPARENT:
            return bad
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    corrupt = msgpack.packb(swap(envelope), use_bin_type=True)
    with pytest.raises(CorruptStateError, match="trace context"):
        loads(corrupt, {"obs-flaky": Flaky})


# -- OpenTelemetry ---------------------------------------------------------------------------------

@pytest.fixture
def otel():
    """A tracer and a meter provider of the SDK, with in-memory exporters."""
    return in_memory_otel()


def _named(spans: list[Any], name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


def test_a_span_per_operation_step_and_handler_with_the_attributes(otel):
    engine, clock = otel.engine()
    engine.start(Flaky(fails=1), id="s1")
    clock.advance(seconds=10)
    engine.run_due()
    engine.send("s1", "confirmed", "yes")
    spans = otel.spans()
    names = [s.name for s in spans]
    assert names.count("genflow.step charge") == 2
    assert {"genflow.start", "genflow.run", "genflow.send", "genflow.handle confirmed",
            "genflow.step ship"} <= set(names)
    failed, passed = _named(spans, "genflow.step charge")
    assert dict(failed.attributes) == {
        "genflow.instance_id": "s1", "genflow.workflow": "obs-flaky",
        "genflow.thread_id": "_main_", "genflow.statement": "charge", "genflow.attempt": 1,
        "genflow.kind": "step", "genflow.outcome": "error"}
    assert failed.status.status_code.name == "ERROR"
    assert "the bank is down" in failed.status.description
    assert [e.name for e in failed.events] == ["exception"]
    assert passed.attributes["genflow.attempt"] == 2
    assert passed.attributes["genflow.outcome"] == "ok"
    assert passed.status.status_code.name == "UNSET"
    (handle,) = _named(spans, "genflow.handle confirmed")
    assert handle.attributes["genflow.event"] == "confirmed"
    assert handle.attributes["genflow.statement"] == "confirm"
    # each step is a child of its operation's span
    by_id = {s.context.span_id: s for s in spans}
    assert by_id[failed.parent.span_id].name == "genflow.start"
    assert by_id[passed.parent.span_id].name == "genflow.run"
    assert by_id[handle.parent.span_id].name == "genflow.send"


def test_a_failed_instance_marks_its_operation_span(otel):
    engine, _ = otel.engine()
    engine.start(Broken(), id="fb")
    (start,) = _named(otel.spans(), "genflow.start")
    assert start.status.status_code.name == "ERROR"
    assert start.attributes["genflow.status"] == "failed"


def test_the_callers_trace_reaches_the_steps_a_worker_runs_later(otel, tmp_path):
    """`start(run=False)` in a request's span; a worker (another engine, another
    store connection, no span of its own) runs the steps later: they are in the
    caller's trace, under its span, through the traceparent the State keeps."""
    from genflow.stores import SQLiteStore

    path = tmp_path / "t.db"
    caller_engine, clock = otel.engine(SQLiteStore(path))
    with otel.tracer.start_as_current_span("POST /orders") as request:
        caller_engine.start(Flaky(fails=0), id="t1", run=False)
    assert caller_engine.get("t1").state.trace is not None
    worker, _ = otel.engine(SQLiteStore(path), clock=clock)
    assert current_traceparent() is None  # the worker runs outside any span
    worker.run_due()
    spans = otel.spans()
    by_id = {s.context.span_id: s for s in spans}
    (step,) = _named(spans, "genflow.step charge")
    assert step.context.trace_id == request.get_span_context().trace_id
    chain = []
    span = step
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        chain.append(span.name)
    assert chain == ["genflow.run", "genflow.start", "POST /orders"]


def test_a_send_carries_its_callers_trace_into_the_moves_after_it(otel):
    engine, _ = otel.engine()
    engine.start(Flaky(fails=0), id="t2")
    with otel.tracer.start_as_current_span("webhook") as hook:
        engine.send("t2", "confirmed", "yes")
    (ship,) = _named(otel.spans(), "genflow.step ship")
    assert ship.context.trace_id == hook.get_span_context().trace_id
    assert engine.get("t2").state.trace.split("-")[1] == f"{hook.get_span_context().trace_id:032x}"


def test_traced_and_current_traceparent_carry_a_trace_across(otel):
    engine, _ = otel.engine()
    with otel.tracer.start_as_current_span("producer") as producer:
        carried = current_traceparent()
    assert carried is not None and current_traceparent() is None
    engine.start(Flaky(fails=0), id="t3")
    with traced(carried):
        engine.send("t3", "confirmed", "yes")
    (send,) = _named(otel.spans(), "genflow.send")
    assert send.context.trace_id == producer.get_span_context().trace_id
    assert send.parent.span_id == producer.get_span_context().span_id
    with traced(None):  # nothing to carry: a no-op
        assert current_traceparent() is None


def test_without_a_recording_span_the_blob_keeps_no_trace(otel):
    engine, _ = otel.engine(otel=True)
    plain, _ = _engine()
    engine.start(Flaky(fails=0), id="n1", run=False)
    plain.start(Flaky(fails=0), id="n1", run=False)
    # the engine's own start span is recorded (so the instance is in its trace)
    assert engine.get("n1").state.trace is not None
    off, _ = otel.engine(otel=False)
    off.start(Flaky(fails=0), id="n2", run=False)
    assert off.get("n2").state.trace is None
    assert off.store.get("n2").blob == plain.store.get("n1").blob.replace(b"n1", b"n2")


def test_the_metrics(otel):
    engine, clock = otel.engine()
    engine.start(Flaky(fails=1), id="m1")
    engine.start(Broken(), id="m2")
    engine.start(Flaky(fails=0), id="m3", run=False)
    found = otel.metrics()

    def total(name: str, **attrs_: str) -> float:
        return sum(p.value for p in found.get(name, ())
                   if all(p.attributes.get(f"genflow.{k}") == v for k, v in attrs_.items()))

    assert total("genflow.steps", workflow="obs-flaky", outcome="error") == 1
    assert total("genflow.steps", workflow="obs-broken", outcome="error") == 1
    assert total("genflow.step.failures") == 2
    assert total("genflow.step.retries", workflow="obs-flaky") == 1
    assert total("genflow.instance.failures", workflow="obs-broken") == 1
    (backlog,) = [p for p in found["genflow.due.backlog"]
                  if p.attributes["genflow.engine"] == engine.owner]
    assert backlog.value == 1  # m3, left due for a worker
    durations = found["genflow.step.duration"]
    assert sum(p.count for p in durations) == 2
    clock.advance(seconds=10)
    engine.run_due()
    found = otel.metrics()
    assert total("genflow.steps", workflow="obs-flaky", outcome="ok") == 2  # m1's retry, m3


def test_async_steps_are_spanned_and_timed_as_well(otel):
    import asyncio

    @genflow.workflow("obs-async")
    @attrs.define
    class Later:
        def definition(self):
            yield Step("wait_a_bit", self.wait_a_bit)

        async def wait_a_bit(self) -> None:
            await asyncio.sleep(0)

    engine, _ = otel.engine(journal=True)
    asyncio.run(engine.start_async(Later(), id="a1"))
    (step,) = _named(otel.spans(), "genflow.step wait_a_bit")
    assert step.attributes["genflow.outcome"] == "ok"
    assert [e.kind for e in engine.store.journal("a1")].count("step") == 1


def test_an_async_step_on_the_sync_api_is_refused_inside_its_span(otel):
    @genflow.workflow("obs-async-refused")
    @attrs.define
    class Later:
        def definition(self):
            yield Step("a", self.a)

        async def a(self) -> None:
            pass

    engine, _ = otel.engine()
    engine.start(Later(), id="a2")
    assert "the sync API cannot await it; call the async twin" in engine.get("a2").error
    (step,) = _named(otel.spans(), "genflow.step a")
    assert step.status.status_code.name == "ERROR"


def test_a_refused_send_is_a_span_with_its_error(otel):
    engine, _ = otel.engine()
    engine.start(Flaky(fails=0), id="r2")
    with pytest.raises(UnknownEventError):
        engine.send("r2", "nope")
    (send,) = _named(otel.spans(), "genflow.send")
    assert send.attributes["genflow.instance_id"] == "r2"


def test_genflow_imports_and_runs_without_opentelemetry():
    code = textwrap.dedent("""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
        import genflow
        from genflow.engine import Engine
        from genflow.observe import current_traceparent, otel_available, traced
        from genflow.stores import MemoryStore
        from obs_app import Flaky
        engine = Engine(MemoryStore(), journal=True)
        engine.start(Flaky(fails=1), id="x")
        with traced("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
            assert current_traceparent() is None
        assert not otel_available() and engine.observer.tracer is None
        assert engine.get("x").state.trace is None
        assert not [m for m in sys.modules if m.startswith("opentelemetry")]
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=CHILD_ENV,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


# -- the store's due backlog ---------------------------------------------------------------


def test_count_due_counts_the_unleased_due_instances(store):
    import datetime as dt

    clock = FakeClock()
    engine = Engine(store, clock=clock, otel=False)
    for k in range(3):
        engine.start(Flaky(fails=0), id=f"d{k}", run=False)
    engine.start(Flaky(fails=0), id="waits")  # waits for an event: not due
    now = clock.now
    assert store.count_due(now) == 3
    assert store.count_due(now, {"obs-flaky"}) == 3
    assert store.count_due(now, {"someone-else"}) == 0
    assert store.count_due(now - dt.timedelta(seconds=1)) == 0
    store.acquire("d0", "w", now, now + dt.timedelta(seconds=60))
    assert store.count_due(now) == 2
    assert store.count_due(now + dt.timedelta(seconds=61)) == 3  # its lease expired


def test_a_lease_taken_over_from_a_dead_worker_is_a_warning_and_a_metric(store, records):
    """A worker died mid-step (its lease left to expire): the next worker's claim says
    whose lease it took over, on every store; a free instance's claim says nothing."""
    import datetime as dt

    clock = FakeClock()
    engine = Engine(store, clock=clock, otel=False, lease_seconds=30)
    engine.start(Flaky(fails=0), id="orphan", run=False)
    engine.start(Flaky(fails=0), id="free", run=False)
    now = clock.now
    assert store.acquire("orphan", "dead-worker", now, now + dt.timedelta(seconds=30))
    assert [r.taken_from for r in store.claim_due("w1", now, now, 10)] == [None]  # "free"
    store.release("free", "w1")
    clock.advance(seconds=31)
    claimed = {r.id: r.taken_from for r in store.claim_due("w2", clock.now, clock.now, 10)}
    assert claimed == {"orphan": "dead-worker", "free": None}
    assert store.get("orphan").taken_from is None  # (one claim's news, never stored)
    for record_id in claimed:
        store.release(record_id, "w2")
    assert store.acquire("orphan", "dead-again", clock.now, clock.now)  # expires at once
    clock.advance(seconds=1)
    engine.run_due()
    (warning,) = [r for r in records.at("WARNING") if "taken over" in r["message"]]
    assert (warning["instance"], warning["workflow"], warning["previous_owner"]) == (
        "orphan", "obs-flaky", "dead-again")


def test_takeovers_are_counted(otel):

    engine, clock = otel.engine()
    engine.start(Flaky(fails=0), id="o1", run=False)
    engine.store.acquire("o1", "dead", clock.now, clock.now)
    clock.advance(seconds=1)
    engine.run_due()
    (point,) = otel.metrics()["genflow.lease.takeovers"]
    assert point.value == 1 and point.attributes["genflow.workflow"] == "obs-flaky"


# -- the CLI prints the records ------------------------------------------------------------------


def test_the_cli_prints_genflows_records_as_json_lines(tmp_path, capsys):
    from genflow.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    code = main(["--store", url, "--app", "obs_app", "--log-format", "json",
                 "start", "obs-flaky", "--id", "c1", "--data", '{"fails": 1}'])
    assert code == 0
    err = capsys.readouterr().err
    (line,) = [json.loads(text) for text in err.splitlines()]
    assert (line["level"], line["logger"], line["instance"], line["workflow"],
            line["thread_id"], line["statement"], line["attempt"]) == (
        "WARNING", "genflow.engine", "c1", "obs-flaky", "_main_", "charge", 1)
    assert line["retry_at"] and "the bank is down" in line["error"]
    code = main(["--store", url, "--app", "obs_app", "start", "obs-broken",
                 "--id", "c2", "--log-level", "error"])
    err = capsys.readouterr().err
    assert code == 0 and "ERROR genflow.engine: instance c2 failed" in err
    assert "WARNING" not in err


def test_a_bad_log_level_is_a_usage_error(tmp_path, capsys, monkeypatch):
    from genflow.cli import main

    monkeypatch.setenv("GENFLOW_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as stop:
        main(["--store", f"sqlite:///{tmp_path / 'x.db'}", "list"])
    assert stop.value.code == 2
    assert "unknown log level 'loud'" in capsys.readouterr().err


# -- the timeline: console, report and `genflow show` ----------------------------------------------


def _timed_engine(tmp_path):
    from genflow.stores import SQLiteStore

    clock = FakeClock()
    engine = Engine(SQLiteStore(tmp_path / "tl.db"), clock=clock, journal=True, otel=False)
    engine.start(Flaky(fails=1), id="tl")
    clock.advance(seconds=10)
    engine.run_due()
    clock.advance(seconds=5)
    engine.send("tl", "confirmed", "yes")
    engine.start(Broken(), id="bad")
    return engine


def test_the_timeline_has_one_row_per_run_with_its_attempt_duration_and_error(tmp_path):
    from genflow.render.views import timeline

    engine = _timed_engine(tmp_path)
    rows = timeline(engine.store.journal("tl"))
    runs = [(r["kind"], r["label"], r["attempt"], r["outcome"], r["start"][11:19])
            for r in rows if r["kind"] in ("step", "handler")]
    assert runs == [("step", "charge", 1, "failed", "00:00:00"),
                    ("step", "charge", 2, "done", "00:00:10"),
                    ("handler", "handle confirmed (confirm)", 1, "done", "00:00:15"),
                    ("step", "ship", 1, "done", "00:00:15")]
    assert rows[1]["error"] == "ConnectionError: the bank is down"
    assert all(r["duration"] == 0.0 for r in rows if r["kind"] == "step")  # a FakeClock
    bad = timeline(engine.store.journal("bad"))
    assert [(r["label"], r["outcome"]) for r in bad if r["outcome"] == "failed"] == [
        ("explode", "failed")]  # the instance's failure is told by its step's row


def test_the_console_and_report_views_carry_the_timed_rows(tmp_path):
    from genflow.render.views import instance_view

    engine = _timed_engine(tmp_path)
    view = instance_view(engine.get("tl"), now=engine.clock(),
                         journal=engine.store.journal("tl"))
    assert [r["label"] for r in view["timeline"] if r["kind"] == "step"] == [
        "charge", "charge", "ship"]


def test_show_prints_the_last_steps_with_their_durations(tmp_path, capsys):
    from genflow.cli import main

    engine = _timed_engine(tmp_path)
    engine.store.close()
    assert main(["--store", f"sqlite:///{tmp_path / 'tl.db'}", "--app", "obs_app",
                 "show", "tl"]) == 0
    out = capsys.readouterr().out
    tail = out.split("  last steps (from the journal):\n", 1)[1].splitlines()
    assert tail == [
        "    2030-01-01 00:00:00  charge          main thread  attempt 1  0.000s  failed: "
        "ConnectionError: the bank is down",
        "    2030-01-01 00:00:10  charge          main thread  attempt 2  0.000s  done",
        "    2030-01-01 00:00:15  handle confirmed (confirm)  main thread  attempt 1  0.000s  "
        "done",
        "    2030-01-01 00:00:15  ship            main thread  attempt 1  0.000s  done"]


def test_show_without_the_journal_prints_no_steps(tmp_path, capsys):
    from genflow.cli import main
    from genflow.stores import SQLiteStore

    engine = Engine(SQLiteStore(tmp_path / "off.db"), otel=False)
    engine.start(Flaky(fails=0), id="off")
    engine.store.close()
    assert main(["--store", f"sqlite:///{tmp_path / 'off.db'}", "--app", "obs_app",
                 "show", "off"]) == 0
    assert "last steps" not in capsys.readouterr().out


def test_the_benchmark_cases_run_what_they_say(tmp_path):
    pytest.importorskip("opentelemetry.sdk.trace")
    from benchmarks import observability

    for fn, _ in observability.CASES:
        getattr(observability, fn)()
    sdk = observability._engine("run_sdk")
    assert sdk.observer.tracer is not None and sdk.store.count() == 0
    assert observability._engine("run_off").observer.watching() is None or \
        logging.getLogger("genflow").isEnabledFor(logging.DEBUG)
    journal = observability._engine("run_journal")
    assert journal.journal and journal.observer.api is None
    for case in ("round_off", "round_sdk"):  # ten instances run, then deleted
        assert observability._engine(case).store.count() == 0
    assert observability._engine("round_off").observer.watching() is None or \
        logging.getLogger("genflow").isEnabledFor(logging.DEBUG)
    assert observability._engine("round_sdk").observer.watching() is not None
    # the traced worker: every instance finished, a run span and its steps' each
    # (`traced_rate` asserts both), rounds or not
    from genflow.stores import SQLiteStore

    for rounds in (True, False):
        store = SQLiteStore(tmp_path / f"rounds-{rounds}.db")
        assert observability.traced_rate(store, 3, rounds=rounds) > 0
        store.close()


def test_every_logging_call_in_genflow_gives_the_fields():
    """Statically: each `log.<level>(...)` of genflow/ passes `extra=fields(...)` (or
    `step_fields`), so no record lacks the five fields, whatever path logs it."""
    missing = []
    for path in sorted((ROOT / "genflow").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("debug", "info", "warning", "error", "exception",
                                           "critical") \
                    and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id.endswith("log"):
                extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
                made = isinstance(extra, ast.Call) and isinstance(extra.func, ast.Name) \
                    and extra.func.id in ("fields", "step_fields")
                if not made and not (isinstance(extra, ast.Name) and extra.id == "extra"):
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert missing == []


def test_the_http_api_takes_the_callers_traceparent_header(otel):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from genflow.web.app import create_app

    engine, _ = otel.engine(workflows=[Flaky])
    client = TestClient(create_app(engine, token="t" * 16))
    headers = {"Authorization": "Bearer " + "t" * 16, "traceparent": _TRACEPARENT}
    started = client.post("/api/v1/instances", json={"workflow": "obs-flaky", "id": "h1",
                                                     "data": {"fails": 0}}, headers=headers)
    assert started.status_code == 201, started.text
    sent = client.post("/api/v1/instances/h1/events/confirmed", json="yes", headers=headers)
    assert sent.status_code == 200, sent.text
    spans = otel.spans()
    caller = int(_TRACEPARENT.split("-")[1], 16)
    for name in ("genflow.start", "genflow.step charge", "genflow.send", "genflow.step ship"):
        (span,) = _named(spans, name)
        assert span.context.trace_id == caller, name
    (start,) = _named(spans, "genflow.start")
    assert start.parent.span_id == int(_TRACEPARENT.split("-")[2], 16)


def test_a_refused_operation_leaves_no_span_current(otel):
    from genflow.errors import DuplicateInstanceError, InvalidIdError

    engine, _ = otel.engine()
    engine.start(Flaky(fails=0), id="dup")
    with pytest.raises(DuplicateInstanceError):
        engine.start(Flaky(fails=0), id="dup")
    with pytest.raises(InvalidIdError):
        engine.send("", "confirmed", "x")
    with pytest.raises(genflow.errors.InstanceNotFoundError):
        engine.cancel("nobody")
    assert current_traceparent() is None  # every operation's span was ended and detached
    starts = _named(otel.spans(), "genflow.start")
    assert len(starts) == 2


def test_the_api_without_an_sdk_leaves_the_driver_unwatched():
    """Installed but idle (the global providers are the API's proxies until an SDK
    is set): steps are called as without OpenTelemetry; an engine given providers
    is watched."""
    pytest.importorskip("opentelemetry.trace")
    from opentelemetry import metrics, trace

    if type(trace.get_tracer_provider()).__name__ != "ProxyTracerProvider" or \
            type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider":
        pytest.skip("an SDK is installed globally in this process")
    logging.getLogger("genflow").setLevel(logging.WARNING)
    idle = Engine(MemoryStore())
    assert idle.observer.api is not None and idle.observer.watching() is None
    from opentelemetry.sdk.trace import TracerProvider

    given_one = Engine(MemoryStore(), tracer_provider=TracerProvider())
    assert given_one.observer.watching() is given_one.observer


def test_the_cli_puts_genflows_logging_back_after_a_command(tmp_path):
    from genflow.cli import main

    top = logging.getLogger("genflow")
    before = (top.level, list(top.handlers))
    main(["--store", f"sqlite:///{tmp_path / 'r.db'}", "--log-level", "debug", "list"])
    assert (top.level, list(top.handlers)) == before


def test_async_steps_run_at_once_are_each_spanned_and_timed(otel):
    import asyncio

    from genflow import Go

    @genflow.workflow("obs-at-once")
    @attrs.define
    class Both:
        """Each step writes a field of its own: no conflict, each runs once."""

        a_in: bool = False
        b_in: bool = False
        c_in: bool = False

        def definition(self):
            yield Go("left", Step("a", self.a), id="l")
            yield Go("right", Step("b", self.b), id="r")
            yield Step("c", self.c)

        async def a(self) -> None:
            await asyncio.sleep(0.01)
            self.a_in = current_traceparent() is not None

        async def b(self) -> None:
            await asyncio.sleep(0)
            self.b_in = current_traceparent() is not None

        def c(self) -> None:
            self.c_in = current_traceparent() is not None

    engine, _ = otel.engine(journal=True)
    asyncio.run(engine.start_async(Both(), id="both"))
    spans = otel.spans()
    by_id = {s.context.span_id: s for s in spans}
    for name in ("genflow.step a", "genflow.step b", "genflow.step c"):
        (span,) = _named(spans, name)
        assert by_id[span.parent.span_id].name == "genflow.start", name
        assert span.attributes["genflow.outcome"] == "ok"
    data = engine.get("both").data
    assert data.a_in and data.b_in and data.c_in  # each step ran inside its own span
    steps = [e.detail["step"] for e in engine.store.journal("both") if e.kind == "step"]
    assert sorted(steps) == ["a", "b", "c"]
    assert current_traceparent() is None


@genflow.workflow("obs-parent")
@attrs.define
class ParentOfKid:
    result: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        from genflow import Child

        yield Child("kid", Kid(n=21), into="result", result="doubled")


def test_a_child_and_an_outbox_start_join_the_trace_of_the_step_that_asks(otel):
    """The caller's trace reaches the child's steps, run by a worker later:
    the child keeps the traceparent of the parent's operation that started it."""
    engine, _ = otel.engine()
    with otel.tracer.start_as_current_span("POST /parents") as request:
        engine.start(ParentOfKid(), id="p1")
    (kid,) = engine.list(parent="p1")
    assert engine.get(kid.id).state.trace is not None
    worker, _ = otel.engine(engine.store)
    worker.work(until_idle=True, idle_sleep=0.01)
    assert engine.get("p1").data.result == 42
    (step,) = _named(otel.spans(), "genflow.step double")
    assert step.context.trace_id == request.get_span_context().trace_id
