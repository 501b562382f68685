"""PostgreSQL at scale, in behaviour (the figures are in benchmarks/): a batch
reads its generators at most one group ahead, and timers all due at once are
claimed in pages of the worker's batch, never all at once, each fired once."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from postgres_db import fresh_schema, postgres_dsn

import genflow
from genflow import On, Sleep, Step, Wait
from genflow.batch import run_batch
from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.stores import open_store

pytestmark = pytest.mark.postgres

FIRED: list[str] = []


@genflow.workflow("pgscale-small")
@attrs.define
class Small:
    n: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("one", self.bump)
        yield Wait("go?", On("go", self.on_go))
        yield Step("two", self.bump)

    def bump(self) -> None:
        self.n += 1

    def on_go(self) -> None:
        self.n += 10


@genflow.workflow("pgscale-nap")
@attrs.define
class Nap:
    name: str
    woke: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Sleep("nap", 60)
        yield Step("wake", self.wake)

    def wake(self) -> None:
        self.woke += 1
        FIRED.append(self.name)


def _url() -> str:
    dsn = postgres_dsn()
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={fresh_schema()}"


def _drop(url: str) -> None:
    with open_store(url) as store:
        store.drop_schema_on_close = True  # type: ignore[attr-defined]


def test_a_batch_on_postgres_reads_its_generators_one_group_ahead():
    url = _url()
    started = [0]
    ahead: list[int] = []

    class Counting(Engine):
        def start(self, *args: Any, **kwargs: Any) -> Any:
            started[0] += 1
            return super().start(*args, **kwargs)

    def starts() -> Any:
        for k in range(250):
            ahead.append(k + 1 - started[0])  # read, not yet started
            yield f"s{k:04}", Small()

    try:
        result = run_batch(url, starts=starts(),
                           events=((f"s{k:04}", "go", None) for k in range(250)),
                           engine=Counting, progress=False, commit_every=40)
        assert (result.started, result.delivered, result.failed) == (250, 250, 0)
        assert max(ahead) <= 40
        with open_store(url) as store:
            assert store.count(status="finished") == 250
            assert {Engine(store).get(f"s{k:04}").data.n for k in (0, 249)} == {12}
    finally:
        _drop(url)


def test_timers_all_due_at_once_are_claimed_a_page_at_a_time_and_fire_once():
    url = _url()
    clock = FakeClock()
    FIRED.clear()
    try:
        run_batch(url, starts=((f"t{k:04}", Nap(f"t{k:04}")) for k in range(300)),
                  engine=lambda store: Engine(store, clock=clock), progress=False,
                  commit_every=100)
        with open_store(url) as store:
            assert store.count(status="waiting") == 300
            claimed: list[int] = []
            real = store.claim_due

            def claim_due(*args: Any, **kwargs: Any) -> Any:
                got = real(*args, **kwargs)
                claimed.append(len(got))
                return got

            store.claim_due = claim_due  # type: ignore[method-assign]
            clock.advance(seconds=61)
            Engine(store, clock=clock).work(until_idle=True, batch=40, idle_sleep=0)
            assert store.count(status="finished") == 300
            assert max(claimed) <= 40 and sum(claimed) == 300
            assert sorted(FIRED) == [f"t{k:04}" for k in range(300)]  # each once
    finally:
        _drop(url)
