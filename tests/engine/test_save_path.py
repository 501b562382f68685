"""The save path made lighter, proved against the path it replaced.

Two rules of the single-operation save path (docs/stores.md, "Speed of the store"):

* records are built by `genflow.stores.base.new_record` (plain slot writes, then
  the object is an `InstanceRecord`): the same record as `InstanceRecord(...)`,
  equal, hashed alike and as frozen;
* an engine that neither journals nor logs each move is not called at the
  move loop's navigations (`Operation.durable_only`): the operation notes them
  (`unseen`) and its last save is made as when each navigation marked the
  saver dirty. The property runs random definitions (tests/test_replay_reads.py's
  trees: branches, loops, waits, conditions, threads) through an engine with
  the rule and one whose operations call the checkpoint at every move, and
  requires the same stored rows (blob, version, status, due time, waits) after
  every operation.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genflow.clock import FakeClock
from genflow.engine import Engine
from genflow.errors import GenflowError
from genflow.runtime import Operation
from genflow.stores import MemoryStore, SQLiteStore
from genflow.stores.base import InstanceRecord, new_record

# the random definitions of the core's replay property (tests/core/test_replay_reads.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from test_replay_reads import MOVES, Reads, trees

times = st.none() | st.datetimes(timezones=st.just(dt.UTC))
texts = st.text(max_size=8)
records = st.tuples(
    texts, texts, texts, st.binary(max_size=8), st.integers(0, 10**6), times,
    st.lists(texts, max_size=3).map(tuple), st.integers(0, 99), texts, st.none() | texts,
    times, times, times, st.none() | texts)


@settings(max_examples=200, deadline=None)
@given(records)
def test_a_record_built_by_new_record_is_the_instance_record(fields: tuple[Any, ...]) -> None:
    made, reference = new_record(*fields), InstanceRecord(*fields)
    assert type(made) is InstanceRecord
    assert made == reference and hash(made) == hash(reference)
    assert attrs.astuple(made, recurse=False) == attrs.astuple(reference, recurse=False)
    assert attrs.evolve(made, version=fields[4] + 1) == attrs.evolve(reference,
                                                                       version=fields[4] + 1)
    names = [f.name for f in attrs.fields(InstanceRecord)]
    assert new_record(**dict(zip(names, fields, strict=True))) == reference
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.version = 0  # type: ignore[misc]


class _EveryMove(Engine):
    """The reference: its operations call the checkpoint at every move."""

    def _operation(self, wf: Any, state: Any, checkpoint: Any) -> Operation:
        op = super()._operation(wf, state, checkpoint)
        op.durable_only = False
        return op


def _row(engine: Engine, iid: str) -> tuple[Any, ...]:
    r = engine.store.get(iid)
    return (r.blob, r.version, r.status, r.wake_at, r.waiting_for, r.attempts, r.error,
            r.lease_owner)


def _run(engine: Engine, iid: str, tree: list[Any], picks: list[int]) -> list[Any]:
    """Start the instance, then send it the picked ready events: the row after each."""
    seen: list[Any] = []
    try:
        engine.start(Reads(tree=json.dumps(tree)), id=iid)
        seen.append("ok")
    except GenflowError as exc:
        seen.append(type(exc).__name__)
    seen.append(_row(engine, iid))
    for pick in picks:
        state = engine.get(iid).state
        ready = sorted({e.event for t in state.threads for e in t.events
                        if e.due is None and e.status.value == "setup"})
        if not ready:
            break
        event = ready[pick % len(ready)]
        threads = [t.id for t in state.threads for e in t.events if e.event == event]
        try:
            engine.send(iid, event, thread=threads[0] if len(threads) > 1 else None)
            seen.append(("ok", event))
        except GenflowError as exc:
            seen.append((type(exc).__name__, event))
        seen.append(_row(engine, iid))
    return seen


@pytest.mark.parametrize("store", ["memory", "sqlite"])
@settings(max_examples=60, deadline=None)
@given(tree=trees, picks=st.lists(st.integers(0, 3), max_size=8))
def test_navigations_left_unseen_save_what_every_checkpoint_saved(
        store: str, tree: list[Any], picks: list[int], tmp_path_factory: Any) -> None:
    rows = []
    for kind in (Engine, _EveryMove):
        made = MemoryStore() if store == "memory" else SQLiteStore(
            tmp_path_factory.mktemp("save") / "s.db")
        engine = kind(made, owner="w", max_moves=MOVES, clock=FakeClock())
        rows.append(_run(engine, "i", tree, picks))
        made.close()
    assert rows[0] == rows[1]


def test_an_engine_that_journals_sees_every_move(tmp_path: Any) -> None:
    """The journal records each move, navigations too: that engine is called at them."""
    tree = [["step", ["a"]], ["step", []]]
    engine = Engine(SQLiteStore(tmp_path / "j.db"), journal=True)
    iid = engine.start(Reads(tree=json.dumps(tree)))
    kinds = [e.kind for e in engine.store.journal(iid)]
    assert kinds.count("after_step") == 2 and kinds.count("after_resume") == 3, kinds
