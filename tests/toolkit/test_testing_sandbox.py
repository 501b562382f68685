"""The determinism sandbox: every read of the outside definition() makes, named where made."""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import time
import uuid

import attrs
import pytest
import toolkit_helpers

import genflow
from genflow import Go, If, On, Step, Wait
from genflow.testing import check_determinism, check_replay
from genflow.testing.determinism import examine
from genflow.testing.sandbox import Sandbox


def noop() -> None:
    pass


def reads(body, **fields):
    """The first violation the sandbox records while walking a definition built by `body`."""

    @attrs.define
    class Flow:
        tags: set[str] = attrs.field(factory=lambda: {"a", "b", "c"})
        ts: float = 1_700_000_000.0

        def definition(self):
            yield from body(self)

    found, _ = examine(Flow(**fields))
    return found


@pytest.mark.parametrize(("body", "category", "call"), [
    (lambda s: [If(time.time() > 0, "x?", Step("x", noop))], "clock", "time.time()"),
    (lambda s: [If(time.localtime(s.ts).tm_hour > 0, "x?", Step("x", noop))], "clock",
     "time.localtime()"),
    (lambda s: [If(dt.datetime.now(dt.UTC).year > 0, "x?", Step("x", noop))], "clock",
     "datetime.datetime.now()"),
    (lambda s: [If(dt.date.today().year > 0, "x?", Step("x", noop))], "clock",
     "datetime.date.today()"),
    (lambda s: [If(time.gmtime().tm_year > 0, "x?", Step("x", noop))], "clock",
     "time.gmtime()"),
    (lambda s: [If(toolkit_helpers.now_hour() > 0, "x?", Step("x", noop))], "clock",
     "time.time()"),
    (lambda s: [If(random.random() < 2, "x?", Step("x", noop))], "random", "random.random()"),
    (lambda s: [If(random.choice([1]) == 1, "x?", Step("x", noop))], "random",
     "random.choice()"),
    (lambda s: [If(random.Random().random() < 2, "x?", Step("x", noop))], "random",
     "random.Random() without a seed"),
    (lambda s: [Step(f"x {uuid.uuid4()}", noop)], "uuid", "uuid.uuid4()"),
    (lambda s: [If("PATH" in os.environ, "x?", Step("x", noop))], "environment", "os.environ"),
    (lambda s: [If(os.getenv("X") is None, "x?", Step("x", noop))], "environment",
     "os.getenv()"),
    (lambda s: [Step(f"x {toolkit_helpers.region()}", noop)], "environment", "os.getenv()"),
])
def test_each_read_is_named_with_its_call_and_statement(body, category, call) -> None:
    found = reads(body)
    assert found is not None and found.cause == "sandbox"
    first = found.violations[0]
    assert (first.category, first.call) == (category, call)
    assert first.statement in ("If 'x?'", ) or first.statement.startswith("Step 'x")
    assert first.line > 0 and first.file.endswith(".py")


def test_a_helper_in_another_module_is_reported_at_its_own_line() -> None:
    found = reads(lambda s: [If(toolkit_helpers.now_hour() > 0, "x?", Step("x", noop))])
    assert found is not None
    assert found.violations[0].where.endswith("toolkit_helpers.py:16")
    assert "int(_seconds() // 3600 % 24)" in found.violations[0].code


@pytest.mark.parametrize("body", [
    lambda s: [If(random.Random(4).random() < 2, "x?", Step("x", noop))],  # seeded from data
    lambda s: [If(time.gmtime(s.ts).tm_year > 0, "x?", Step("x", noop))],  # from the data
    lambda s: [If(time.strftime("%Y", time.gmtime(s.ts)) > "", "x?", Step("x", noop))],
    lambda s: [logging.getLogger("t").warning("walked") or Step("x", noop)],  # logging's own
    lambda s: [Step(f"x {t}", noop) for t in sorted(s.tags)],
    lambda s: [If("a" in s.tags and len(s.tags) == 3, "x?", Step("x", noop))],
    lambda s: [If(os.environ.get("X") is None, "x?", Step("x", noop))  # genflow: allow[environment]
               ],
])
def test_what_is_deterministic_is_not_reported(body) -> None:
    assert reads(body) is None


def test_allow_takes_categories_calls_and_modules() -> None:
    def body(s):
        return [If(toolkit_helpers.now_hour() > 0, "x?", Step("x", noop))]

    @attrs.define
    class Flow:
        def definition(self):
            yield from body(self)

    for allowed in (["clock"], ["time.time"], ["toolkit_helpers"]):
        assert examine(Flow(), allowed)[0] is None
    assert examine(Flow(), ["random"])[0] is not None


def test_a_pragma_for_another_category_does_not_allow() -> None:
    found = reads(lambda s: [If(time.time() > 0, "x?", Step("x", noop))  # genflow: allow[random]
                             ])
    assert found is not None and found.violations[0].category == "clock"


def test_files_and_the_network_through_the_audit_hook() -> None:
    def file_read(s):
        with open(__file__, encoding="utf-8") as f:
            yield If(f.read(1) == "", "x?", Step("x", noop))

    found = reads(file_read)
    assert found is not None and found.violations[0].category == "files"
    assert found.violations[0].call.startswith("open(")
    import socket

    found = reads(lambda s: [Step(f"on {socket.gethostname()}", noop)])
    assert found is not None and found.violations[0].category == "network"


def test_a_read_inside_a_guarded_call_is_counted_once() -> None:
    """uuid4 reads os.urandom: one read, the uuid, not two."""
    found = reads(lambda s: [Step(f"x {uuid.uuid4()}", noop)])
    assert found is not None and len(found.violations) == 1


def test_the_sandbox_is_idle_outside_its_walk_and_in_other_threads() -> None:
    seen: list[object] = []

    def elsewhere() -> None:
        seen.append(time.time())

    with Sandbox() as box:
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
    assert box.violations == [] and seen
    time.time()  # after the walk: nothing records it
    assert box.violations == []


def test_sets_of_strings_are_iterated_in_another_order() -> None:
    found = reads(lambda s: [Go(f"t {t}", [Step(f"s {t}", noop)], id=t) for t in s.tags])
    assert found is not None and found.cause == "set order"
    assert found.detail.startswith("tags (iterated at ")
    assert "test_testing_sandbox.py:" in found.detail


def test_a_report_names_the_statement_the_call_and_the_fix() -> None:
    @genflow.workflow("test-sandbox-lunch")
    @attrs.define
    class Lunch:
        served: int = 0

        def definition(self):
            yield Wait("order?", On("order", self.serve))
            yield If(dt.datetime.now().hour < 15, "lunch menu?", Step("drink", self.serve))

        def serve(self) -> None:
            self.served += 1

    report = check_determinism(Lunch())
    assert report is not None
    assert report.startswith("definition() of 'test-sandbox-lunch' reads the clock")
    assert "call: datetime.datetime.now() at tests/toolkit/test_testing_sandbox.py:" in report
    assert "while building statement If 'lunch menu?'" in report
    assert "Fix: read the time in a step and keep it in the data" in report
    result = check_replay(Lunch(), ["order"])
    assert result.kinds == ["non-deterministic"]
    assert check_determinism(Lunch(), allow=["clock"]) is None


def test_reads_in_steps_are_fine() -> None:
    @genflow.workflow("test-sandbox-stamp")
    @attrs.define
    class Stamp:
        at: float = 0.0
        id: str = ""

        def definition(self):
            yield Step("stamp", self.stamp)
            yield If(self.at > 0, "stamped?", Wait("done?", On("done", noop)))

        def stamp(self) -> None:
            self.at = time.time()
            self.id = uuid.uuid4().hex
            random.random()

    assert check_replay(Stamp(), ["done"]).ok
