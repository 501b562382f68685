"""An event sent through the outbox carries its sender's trace context, as an
instance started through it does: the delivery's span is the sending step's
child, and what the target runs after it stays in that trace (a mailbox
message, a child's report to its parent, a send due later and relayed by
another engine over the same store).

OpenTelemetry is the SDK's, with in-memory exporters (tests/support/otel_helpers).
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from typing import Any

import attrs
import pytest
from obs_app import Parent
from otel_helpers import in_memory_otel, named

import genflow
from genflow import On, Step, Wait, current_step
from genflow.engine import Engine
from genflow.stores import MemoryStore, SQLiteStore
from genflow.stores.base import OutboxEntry
from genflow.testing import FakeClock


@genflow.workflow("trace-receiver")
@attrs.define
class Receiver:
    """Waits for "ping" (maybe after a first wait, so a ping sent early is kept)."""

    first: bool = False
    got: str = ""
    after: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        if self.first:
            yield Wait("first", On("go", self.go))
        yield Wait("ping", On("ping", self.on_ping))
        yield Step("after ping", self.after_ping)

    def go(self) -> None:
        pass

    def on_ping(self, payload: str) -> None:
        self.got = payload

    def after_ping(self) -> None:
        self.after += 1


@genflow.workflow("trace-sender")
@attrs.define
class Sender:
    target: str = ""
    delay: float = 0.0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("tell", self.tell)

    def tell(self) -> None:
        ctx = current_step()
        at = ctx.now + _dt.timedelta(seconds=self.delay) if self.delay else None
        ctx.send(self.target, "ping", "hello", at=at)


@pytest.fixture
def otel() -> Any:
    return in_memory_otel()


def _span_of(spans: list[Any], name: str, instance: str) -> Any:
    (span,) = [s for s in named(spans, name)
               if s.attributes.get("genflow.instance_id") == instance]
    return span


def _sends_to(spans: list[Any], instance: str) -> list[Any]:
    return [s for s in named(spans, "genflow.send")
            if s.attributes.get("genflow.instance_id") == instance]


def test_a_send_s_delivery_is_the_child_of_the_step_that_sent_it(otel) -> None:
    engine, _ = otel.engine()
    engine.start(Receiver(), id="r")
    with otel.tracer.start_as_current_span("POST /senders") as request:
        engine.start(Sender(target="r"), id="s")
    assert engine.get("r").data.got == "hello" and engine.get("r").data.after == 1
    spans = otel.spans()
    tell = _span_of(spans, "genflow.step tell", "s")
    (delivery,) = _sends_to(spans, "r")
    assert delivery.parent is not None and delivery.parent.span_id == tell.context.span_id
    trace = request.get_span_context().trace_id
    assert delivery.context.trace_id == trace
    # what the target ran because of it is in the sender's trace too
    assert _span_of(spans, "genflow.handle ping", "r").context.trace_id == trace
    assert _span_of(spans, "genflow.step after ping", "r").context.trace_id == trace


def test_the_delivery_that_keeps_a_message_is_in_the_sender_s_trace(otel) -> None:
    engine, _ = otel.engine()
    engine.start(Receiver(first=True), id="r")  # waits for "go": a ping now is kept
    with otel.tracer.start_as_current_span("POST /senders") as request:
        engine.start(Sender(target="r"), id="s")
    assert engine.get("r").state.mailbox, "the ping should wait in r's mailbox"
    engine.send("r", "go")  # (untraced: no span of the caller's)
    assert engine.get("r").data.got == "hello"
    spans = otel.spans()
    tell = _span_of(spans, "genflow.step tell", "s")
    kept = [s for s in _sends_to(spans, "r") if s.parent is not None
            and s.parent.span_id == tell.context.span_id]
    assert len(kept) == 1  # the delivery that kept it
    assert kept[0].context.trace_id == request.get_span_context().trace_id


def test_a_child_s_report_is_in_the_trace_of_the_child_s_last_operation(otel) -> None:
    engine, _ = otel.engine()
    with otel.tracer.start_as_current_span("POST /parents") as request:
        engine.start(Parent(), id="p")
    worker, _ = otel.engine(engine.store)
    worker.work(until_idle=True, idle_sleep=0.01)
    assert engine.get("p").data.done and engine.get("p").data.result == 42
    spans = otel.spans()
    (kid,) = [s for s in named(spans, "genflow.run")
              if s.attributes.get("genflow.workflow") == "obs-kid"]
    reports = [s for s in _sends_to(spans, "p") if s.parent is not None
               and s.parent.span_id == kid.context.span_id]
    assert len(reports) == 1
    trace = request.get_span_context().trace_id
    assert reports[0].context.trace_id == trace
    assert _span_of(spans, "genflow.step finish", "p").context.trace_id == trace


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_send_due_later_keeps_its_trace_in_the_store_for_another_engine(
        otel, kind: str, tmp_path) -> None:
    def store() -> Any:
        return MemoryStore() if kind == "memory" else SQLiteStore(str(tmp_path / "s.db"))

    first = store()
    engine, clock = otel.engine(first)
    engine.start(Receiver(), id="r")
    with otel.tracer.start_as_current_span("POST /senders") as request:
        engine.start(Sender(target="r", delay=60), id="s")
    (row,) = engine.store.list_outbox(origin="s")
    trace = request.get_span_context().trace_id
    assert row.trace is not None and int(row.trace.split("-")[1], 16) == trace
    clock.advance(seconds=61)
    worker, _ = otel.engine(first if kind == "memory" else store(), clock=clock)
    worker.work(until_idle=True, idle_sleep=0.01)
    assert engine.get("r").data.got == "hello"
    spans = otel.spans()
    tell = _span_of(spans, "genflow.step tell", "s")
    (delivery,) = _sends_to(spans, "r")
    assert delivery.parent.span_id == tell.context.span_id
    assert delivery.context.trace_id == trace


def test_an_untraced_engine_writes_no_trace(tmp_path) -> None:
    clock = FakeClock()
    engine = Engine(SQLiteStore(str(tmp_path / "s.db")), clock=clock, otel=False)
    engine.start(Receiver(), id="r")
    engine.start(Sender(target="r", delay=60), id="s")
    (row,) = engine.store.list_outbox(origin="s")
    assert row.trace is None


def test_an_sqlite_store_of_schema_4_gains_the_column_and_keeps_its_rows(tmp_path) -> None:
    from genflow.stores import sqlite as sqlite_store

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE genflow_schema (version INTEGER NOT NULL)")
    for migration in sqlite_store._MIGRATIONS[:4]:
        for statement in migration:
            db.execute(statement)
    db.execute("INSERT INTO genflow_schema VALUES (4)")
    db.execute("INSERT INTO outbox (origin, target, kind, event, payload, due_at, created_at) "
               "VALUES ('a', 'b', 'event', 'ping', x'c0', 5, 1)")
    db.close()
    store = SQLiteStore(path)
    assert store._schema_version() == sqlite_store.SCHEMA_VERSION
    (row,) = store.list_outbox(origin="a")
    assert (row.event, row.trace) == ("ping", None)
    store.put_outbox([OutboxEntry("a", "c", event="pong", due_at=row.due_at,
                                  trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01")])
    assert [e.trace for e in store.list_outbox(origin="a")] == [
        None, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"]
