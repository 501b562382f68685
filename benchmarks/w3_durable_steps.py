"""W3 "durable steps": 100 steps, each checkpointed to the SQLite store (WAL).

Reported per durable step, with synchronous=NORMAL and FULL, beside the floor
measured in the same process and rounds: a bare `BEGIN; UPDATE; COMMIT` of a
blob of the same size, on a file of its own with the same settings (what one
durable write costs SQLite here, with no Python around it). The ratio is the
figure to follow: this VM's speed varies too much between runs for the
microseconds alone to say whether the save path got faster.

Beside it, in the same rounds, two figures that say where the distance to the
bare commit is: the marginal step (a 200-step instance less a 100-step one: the
instance's start and end taken out) and `LeastSave` (the core's moves with only
a dump and an UPDATE per step: a bound on what any save path can reach).
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

import genflow
from genflow import For, Step, dumps, new_state, resume
from genflow.engine import Engine
from genflow.stores import SQLiteStore
from genflow.stores.sqlite import _save_sql

from .common import Figure, figure

STEPS = 100
#: interleaved rounds of (100 bare commits, one 100-step instance): enough that the
#: middle half of the per-round ratios is narrow on this VM (a round's pair can
#: meet a WAL checkpoint, or the VM's neighbours, on one side only)
ROUNDS = 100


@genflow.workflow("bench-w3")
@attrs.define
class HundredSteps:
    i: int = 0

    def definition(self):
        yield For("steps", self.i < STEPS, Step("step", self.step))

    def step(self) -> None:
        self.i += 1


@genflow.workflow("bench-w3-twice")
@attrs.define
class TwiceTheSteps(HundredSteps):
    """W3 with 200 steps: beside a 100-step instance in the same round, what the
    last 100 steps cost says what a step costs without its instance's start and
    end (an insert, and a last save that ends it, each touching the indexes)."""

    def definition(self):
        yield For("steps", self.i < 2 * STEPS, Step("step", self.step))


def durable_step_us(engine: Engine, instances: int) -> tuple[list[float], str]:
    """Microseconds per durable step for `instances` 100-step runs; and the last id."""
    engine.start(HundredSteps())  # warm up
    samples = []
    iid = ""
    for _ in range(instances):
        start = time.perf_counter()
        iid = engine.start(HundredSteps())
        samples.append((time.perf_counter() - start) / STEPS * 1e6)
        assert engine.get(iid).data.i == STEPS
    return samples, iid


class BareCommit:
    """The floor: `BEGIN; UPDATE t SET blob = ?, version = ? WHERE id = ?; COMMIT`
    on a one-row table in a WAL file of its own (a primary key, no other index)."""

    def __init__(self, path: Path, synchronous: str, blob_size: int) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, blob BLOB, version INTEGER)")
        self.db.execute("INSERT INTO t VALUES ('x', ?, 0)", (b"\0" * blob_size,))
        self.blobs = [bytes([n]) * blob_size for n in range(2)]
        self.version = 0

    def commits_us(self, count: int) -> float:
        """Microseconds per commit over `count` commits."""
        db = self.db
        blobs = self.blobs
        start = time.perf_counter()
        for n in range(count):
            db.execute("BEGIN")
            db.execute("UPDATE t SET blob = ?, version = ? WHERE id = 'x'", (blobs[n & 1], n))
            db.execute("COMMIT")
        return (time.perf_counter() - start) / count * 1e6

    def close(self) -> None:
        self.db.close()


class LeastSave:
    """What a step costs with the least save there can be: the core's moves
    (`resume`) with a checkpoint that only dumps the blob and rewrites its row
    in the store's own table (`UPDATE ... WHERE id = ? AND version = ?`, in a
    commit of its own), with no record, lease, clock or group commit around it.

    Not a way to run workflows (nothing here is leased or recorded): a bound on
    what any save path can reach, to set beside the engine's. If this is near
    2x the bare commit, the distance left is the core's, not the save path's."""

    SQL = "UPDATE instances SET blob = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?"

    def __init__(self, path: Path, synchronous: str, instance_id: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.id = instance_id
        self.version = self.db.execute("SELECT version FROM instances WHERE id = ?",
                                       (instance_id,)).fetchone()[0]

    def steps_us(self) -> float:
        """Microseconds per step of one 100-step run."""
        data = HundredSteps()
        state = new_state(self.id, data)
        db, sql, instance_id = self.db, self.SQL, self.id

        def checkpoint(kind: Any) -> None:
            if kind.durable:
                version = self.version
                if db.execute(sql, (dumps(data, state), version + 1, 0, instance_id,
                                    version)).rowcount != 1:
                    raise RuntimeError("the least save wrote nothing: the row is not as expected")
                self.version = version + 1

        start = time.perf_counter()
        resume(data, state, checkpoint)
        elapsed = time.perf_counter() - start
        assert data.i == STEPS
        return elapsed / STEPS * 1e6

    def close(self) -> None:
        self.db.close()


@attrs.frozen
class Rounds:
    """Per-round microseconds per step (per commit for `floor`), measured in turn
    in each round."""

    steps: list[float]  # a step through the Engine, per step
    floor: list[float]  # a bare commit
    least: list[float]  # a step with `LeastSave`'s checkpoint
    marginal: list[float]  # a step through the Engine, its instance's start and end taken out


def compare(tmp: Path, synchronous: str, rounds: int) -> tuple[Rounds, str, SQLiteStore]:
    """Interleaved rounds of (100 bare commits, one W3 instance, one run with the
    least save, one 200-step instance); the store is left open for the caller
    to read."""
    store = SQLiteStore(tmp / "w3.db", synchronous=synchronous)
    engine = Engine(store)
    engine.start(HundredSteps())  # warm up; and the blob's size
    iid = engine.start(HundredSteps())
    bare = BareCommit(tmp / "bare.db", synchronous, len(store.get(iid).blob))
    bare.commits_us(STEPS)
    least = LeastSave(tmp / "w3.db", synchronous, engine.start(HundredSteps(), run=False))
    least.steps_us()
    engine.start(TwiceTheSteps())
    measured = Rounds([], [], [], [])
    for _ in range(rounds):
        measured.floor.append(bare.commits_us(STEPS))
        more, iid = durable_step_us(engine, 1)
        measured.steps.extend(more)
        measured.least.append(least.steps_us())
        start = time.perf_counter()
        engine.start(TwiceTheSteps())
        twice = (time.perf_counter() - start) / STEPS * 1e6
        measured.marginal.append(twice - more[0])  # (T200 - T100) / 100: the last 100 steps
    bare.close()
    least.close()
    return measured, iid, store


def run(quick: bool = False) -> list[Figure]:
    figures = []
    for sync in ("NORMAL", "FULL"):
        with tempfile.TemporaryDirectory() as tmp:
            measured, iid, store = compare(Path(tmp), sync, 10 if quick else ROUNDS)
            saves = store.get(iid).version
            size = len(store.get(iid).blob)
            store.close()
        steps, floor = measured.steps, measured.floor
        figures.append(figure("W3 durable steps", f"SQLite WAL synchronous={sync}", steps,
                              note=f"per step; {saves} saves per 100-step instance"))
        figures.append(figure("W3 durable steps", f"bare commit, synchronous={sync}", floor,
                              note=f"BEGIN; UPDATE of a {size}-byte blob; COMMIT"))
        figures.append(_ratio(f"step / bare commit, synchronous={sync}", steps, floor))
        figures.append(_ratio(f"marginal step / bare commit, synchronous={sync}",
                              measured.marginal, floor,
                              "a step of a 200-step instance less one of a 100-step one: "))
        figures.append(_ratio(f"least save / bare commit, synchronous={sync}", measured.least,
                              floor, "the core's moves with only dumps + UPDATE per step: "))
    return figures


def _ratio(case: str, samples: list[float], floor: list[float], what: str = "") -> Figure:
    """The per-round ratios of `samples` to `floor`, measured in the same rounds."""
    ratios = [s / f for s, f in zip(samples, floor, strict=True)]
    low, _, high = statistics.quantiles(ratios)
    return figure("W3 durable steps", case, ratios, unit="x",
                  note=f"{what}per round, same process (middle half of the rounds: "
                       f"{low:.2f}-{high:.2f}x; median of the medians: "
                       f"{statistics.median(samples) / statistics.median(floor):.2f}x)")


_SHARED: list[Engine] = []


def run_instance() -> None:
    """One W3 instance (100 durable steps) on a store in a temporary file kept
    for the process: what `benchmarks.instructions` counts per run."""
    if not _SHARED:
        folder = Path(tempfile.mkdtemp(prefix="genflow-w3-"))
        _SHARED.append(Engine(SQLiteStore(folder / "w3.db")))
    _SHARED[0].start(HundredSteps())


def run_statement() -> None:
    """100 executions of the UPDATE a step's save issues, with its parameters, on
    the W3 store's own file (the SQL part of a durable step, in instructions)."""
    if not _SHARED:
        run_instance()
    engine = _SHARED[0]
    store = engine.store
    assert isinstance(store, SQLiteStore)
    if len(_STATEMENT) == 0:  # one instance whose row the statement rewrites
        iid = engine.start(HundredSteps())
        _STATEMENT.append((iid, store.get(iid)))
    iid, record = _STATEMENT[0]
    sql = _save_sql((), True, False)  # a step's: blob, version and updated_at
    saves = store._saves  # (the cursor the store saves with)
    version = record.version
    for _ in range(STEPS):
        written = saves.execute(sql, (record.blob, version + 1, 0, iid, version, None, None))
        if written.rowcount != 1:  # (a statement that matched no row costs less)
            raise RuntimeError("the step's UPDATE wrote nothing: the row is not as expected")
        version += 1
    _STATEMENT[0] = (iid, record.replace(version=version))


def run_memory() -> HundredSteps:
    """The same 100 steps in memory: no checkpoint, no blob (the core's part)."""
    data = HundredSteps()
    resume(data, new_state("bench-w3", data))
    return data


def run_dumps() -> list[bytes]:
    """100 `dumps` of a W3 instance (the blob each save writes)."""
    data = HundredSteps()
    state = new_state("bench-w3", data)
    return [dumps(data, state) for _ in range(STEPS)]


_STATEMENT: list[tuple[str, Any]] = []


def run_bare() -> None:
    """100 bare commits of a W3-sized blob (the floor, in instructions)."""
    if not _SHARED:
        run_instance()
    if len(_SHARED) == 1:
        folder = Path(tempfile.mkdtemp(prefix="genflow-bare-"))
        _SHARED.append(BareCommit(folder / "bare.db", "NORMAL", 79))  # type: ignore[arg-type]
    _SHARED[1].commits_us(STEPS)  # type: ignore[attr-defined]
