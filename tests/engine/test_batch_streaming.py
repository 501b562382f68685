"""`run_batch` reads its work lists as it goes: a generator of any length is
never made a list (memory bounded by `commit_every`), with one process or
several (each forked worker reads its own copy and takes its share)."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genflow
from genflow import On, Step, Wait
from genflow.batch import run_batch
from genflow.engine import Engine
from genflow.stores import open_store


@genflow.workflow("stream-small")
@attrs.define
class Small:
    n: int = 0

    def definition(self):
        yield Step("one", self.bump)
        yield Wait("go?", On("go", self.on_go))
        yield Step("two", self.bump)

    def bump(self) -> None:
        self.n += 1

    def on_go(self) -> None:
        self.n += 10


class _Counting(Engine):
    started = 0

    def start(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _Counting.started += 1
        return super().start(*args, **kwargs)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 120), commit_every=st.integers(1, 40))
def test_a_generator_is_read_at_most_one_group_ahead(tmp_path, n, commit_every):
    url = f"sqlite:///{tmp_path / f'stream-{n}-{commit_every}.db'}"
    _Counting.started = 0
    ahead = []

    def starts():
        for k in range(n):
            ahead.append(k + 1 - _Counting.started)  # read, not yet started
            yield f"s{k}", Small()

    result = run_batch(url, starts=starts(), events=((f"s{k}", "go", None) for k in range(n)),
                       engine=_Counting, progress=False, commit_every=commit_every)
    assert (result.started, result.delivered, result.failed) == (n, n, 0)
    assert max(ahead, default=0) <= commit_every
    with open_store(url) as store:
        assert store.count(status="finished") == n
        if n:
            assert Engine(store).get(f"s{n - 1}").data.n == 12


@pytest.mark.parametrize("processes", [2, 3])
def test_forked_workers_each_take_their_share_of_a_generator(tmp_path: Path, processes):
    url = f"sqlite:///{tmp_path / 'forked.db'}"
    n = 47
    result = run_batch(url, starts=((f"f{k}", Small()) for k in range(n)),
                       events=((f"f{k}", "go", None) for k in range(n)),
                       processes=processes, progress=False, commit_every=5)
    assert (result.started, result.delivered, result.failed) == (n, n, 0)
    with open_store(url) as store:
        assert store.count(status="finished") == n
        assert sorted(r.id for r in store.list()) == sorted(f"f{k}" for k in range(n))


def test_failures_in_a_streamed_batch_are_counted_and_the_rest_done(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'dups.db'}"
    starts = ((f"d{k % 5}", Small()) for k in range(8))  # three duplicates
    result = run_batch(url, starts=starts, progress=False, commit_every=3)
    assert (result.started, result.failed) == (8, 3)
    with open_store(url) as store:
        assert store.count() == 5
