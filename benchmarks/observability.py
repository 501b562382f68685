"""What logs, traces and metrics cost: W3's hundred steps on the in-memory store.

Per step, in instructions (callgrind, `benchmarks.instructions`: the same count
every run, whatever the shared machine's neighbours do), for:

* logging at WARNING and OpenTelemetry off (`Engine(otel=False)`): what an
  application without the extra pays (the same as without the package: the
  engine checks once per operation whether anything watches its steps);
* the OpenTelemetry API installed but no SDK (its no-op tracer and meter);
* the API with the SDK on (a span per step, kept by the in-memory exporter, and
  the metrics recorded);
* the journal on (each step's timings written to the store's journal);
* a worker round (`run_due`) of ten instances of ten steps, side by side, with
  OpenTelemetry off and with the SDK on (the starts counted too).

Without valgrind, the same cases are timed instead (µs per step).

And what worker rounds give while OpenTelemetry records: instances per second
of `run_due` with the SDK on (spans and metrics, in-memory exporter), rounds
(the claimed instances side by side, their saves sharing commits) against one
at a time (`share_commits=False`), the two interleaved in one run, on SQLite
and (with `GENFLOW_BENCH_POSTGRES_DSN`) PostgreSQL.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from genflow.engine import Engine
from genflow.stores import MemoryStore, SQLiteStore

from .common import Figure, figure
from .instructions import instructions
from .postgres_workers import Steps, dsn
from .w3_durable_steps import STEPS, HundredSteps

_ENGINES: dict[str, Any] = {}
CASES = (("run_off", "logging at WARNING, OpenTelemetry off"),
         ("run_api", "OpenTelemetry API, no SDK"),
         ("run_sdk", "OpenTelemetry API + SDK, in-memory exporter"),
         ("run_journal", "the journal on (step timings)"),
         ("round_off", "a round of 10 x 10 steps, OpenTelemetry off"),
         ("round_sdk", "a round of 10 x 10 steps, API + SDK"))
#: the rounds' instances: ROUND_SIZE of ROUND_SIZE steps (STEPS in all)
ROUND_SIZE = 10


def _sdk_engine(store: Any, **kw: Any) -> Engine:
    """An engine that records spans (the SDK's in-memory exporter) and metrics."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    engine = Engine(store, tracer_provider=tracer_provider, meter_provider=meter_provider,
                    **kw)
    engine._bench_exporter = exporter  # type: ignore[attr-defined]
    return engine


def _engine(case: str) -> Engine:
    engine = _ENGINES.get(case)
    if engine is None:
        if case.endswith("_sdk"):
            engine = _sdk_engine(MemoryStore())
        else:
            engine = Engine(MemoryStore(), otel=case == "run_api", journal=case == "run_journal")
        _ENGINES[case] = engine
    return engine


def _run(case: str) -> None:
    engine = _engine(case)
    engine.store.delete(engine.start(HundredSteps(), id="bench"))  # (one id: a steady count)
    exporter = getattr(engine, "_bench_exporter", None)
    if exporter is not None:
        exporter.clear()


def _round(case: str) -> None:
    engine = _engine(case)
    ids = [f"round-{n}" for n in range(ROUND_SIZE)]
    for iid in ids:
        engine.start(Steps(total=ROUND_SIZE), id=iid, run=False)
    assert engine.run_due(ROUND_SIZE) == ROUND_SIZE
    for iid in ids:
        engine.store.delete(iid)
    exporter = getattr(engine, "_bench_exporter", None)
    if exporter is not None:
        exporter.clear()


def round_off() -> None:
    _round("round_off")


def round_sdk() -> None:
    _round("round_sdk")


def run_off() -> None:
    _run("run_off")


def run_api() -> None:
    _run("run_api")


def run_sdk() -> None:
    _run("run_sdk")


def run_journal() -> None:
    _run("run_journal")


def _available(case: str) -> bool:
    try:
        if case.endswith("_sdk"):
            import opentelemetry.sdk.trace
        elif case == "run_api":
            import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


#: the traced worker: instances of this many steps, claimed this many at a time
ROUND_STEPS = 5
ROUND_BATCH = 50


def traced_rate(store: Any, instances: int, *, rounds: bool) -> float:
    """Instances per second of a traced worker's `run_due(ROUND_BATCH)` until
    none is due, over `instances` instances of `ROUND_STEPS` steps left due
    (started beforehand, not timed)."""
    starter = Engine(store, otel=False)
    for n in range(instances):
        starter.start(Steps(total=ROUND_STEPS), id=f"r{n}", run=False)
    worker = _sdk_engine(store, share_commits=rounds)
    assert worker.observer.watching() is not None
    start = time.perf_counter()
    while worker.run_due(ROUND_BATCH):
        pass
    elapsed = time.perf_counter() - start
    assert store.get(f"r{instances - 1}").status == "finished"
    spans = worker._bench_exporter.get_finished_spans()  # type: ignore[attr-defined]
    assert len(spans) == instances * (ROUND_STEPS + 1)  # a run and its steps, each
    return instances / elapsed


def _round_figures(label: str, make: Any, instances: int, runs: int) -> Figure:
    together, alone = [], []
    for _ in range(runs):  # interleaved: the two settings see the same machine
        for rounds, rates in ((True, together), (False, alone)):
            store = make()
            try:
                rates.append(traced_rate(store, instances, rounds=rounds))
            finally:
                store.close()
    ratio = statistics.median(together) / statistics.median(alone)
    return figure("observability", f"traced worker, {label}: rounds", together,
                  unit="inst/s",
                  note=f"run_due({ROUND_BATCH}), {instances} instances of {ROUND_STEPS} "
                       f"steps, spans and metrics recorded; one at a time "
                       f"{statistics.median(alone):,.0f} inst/s ({ratio:.2f}x)")


def rounds_figures(quick: bool = False) -> list[Figure]:
    instances = 200 if quick else 1000
    runs = 1 if quick else 3
    tmp = Path(tempfile.mkdtemp(prefix="genflow-observe-"))
    figures = [_round_figures("SQLite", lambda: SQLiteStore(tmp / f"{uuid.uuid4().hex}.db"),
                              instances, runs)]
    url = dsn()
    if not url:
        print("traced worker on PostgreSQL: skipped (set GENFLOW_BENCH_POSTGRES_DSN)",
              file=sys.stderr)
        return figures
    from genflow.stores.postgres import PostgresStore

    figures.append(_round_figures("PostgreSQL", lambda: PostgresStore(
        url, schema=f"bench_{uuid.uuid4().hex[:10]}", drop_schema_on_close=True),
        instances, runs))
    return figures


def run(quick: bool = False) -> list[Figure]:
    figures = _step_figures(quick)
    if _available("run_sdk"):
        figures += rounds_figures(quick)
    return figures


def _step_figures(quick: bool) -> list[Figure]:
    cases = [(fn, label) for fn, label in CASES if _available(fn)]
    if shutil.which("valgrind") is not None:
        runs = 5 if quick else 20
        counts = {fn: instructions(fn, runs, __name__) / 1000 / STEPS for fn, _ in cases}
        floor = counts["run_off"]
        return [Figure("observability", label, counts[fn], counts[fn], counts[fn],
                       "k instr.", 1, note="per step, callgrind" + (
                           f"; {counts[fn] / floor:.2f}x off" if fn != "run_off" else ""))
                for fn, label in cases]
    figures = []
    for fn, label in cases:
        globals()[fn]()  # warm up
        samples = []
        for _ in range(5 if quick else 20):
            start = time.perf_counter()
            globals()[fn]()
            samples.append((time.perf_counter() - start) / STEPS * 1e6)
        figures.append(figure("observability", label, samples, note="per step, timed"))
    return figures
