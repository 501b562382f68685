"""Workflows of tests/engine/test_observe.py, importable by name (the CLI's --app, subprocesses)."""

from __future__ import annotations

import attrs

import genflow
from genflow import Child, On, Step, Wait, current_step
from genflow.statements import Retry


@genflow.workflow("obs-flaky")
@attrs.define
class Flaky:
    """A step that fails `fails` times, then a wait, then a last step."""

    fails: int = 1
    done: int = 0

    def definition(self):
        yield Step("charge", self.charge, retry=Retry(attempts=3, backoff=5))
        yield Wait("confirm", On("confirmed", self.confirmed))
        yield Step("ship", self.ship)

    def charge(self) -> None:
        if current_step().attempt <= self.fails:
            raise ConnectionError("the bank is down")

    def confirmed(self, payload: str) -> str:
        return f"ok {payload}"

    def ship(self) -> None:
        self.done += 1


@genflow.workflow("obs-broken")
@attrs.define
class Broken:
    def definition(self):
        yield Step("explode", self.explode)

    def explode(self) -> None:
        raise ValueError("no")


@genflow.workflow("obs-kid")
@attrs.define
class Kid:
    """A child that doubles `n` (the parents of test_observe and test_outbox_traces)."""

    n: int = 0
    doubled: int = 0

    def definition(self):
        yield Step("double", self.double)

    def double(self) -> None:
        self.doubled = 2 * self.n


@genflow.workflow("obs-parent-and-step")
@attrs.define
class Parent:
    """A child (its start written with a save, its report through the outbox and
    the relay), then a step: the parent of test_outbox_traces and test_traced_rounds."""

    result: int = 0
    done: bool = False

    def definition(self):  # type: ignore[no-untyped-def]
        yield Child("kid", Kid(n=21), into="result", result="doubled")
        yield Step("finish", self.finish)

    def finish(self) -> None:
        self.done = True
