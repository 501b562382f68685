"""What logs, traces and metrics cost: W3's hundred steps on the in-memory store.

Per step, in instructions (callgrind, `benchmarks.instructions`: the same count
every run, whatever the shared machine's neighbours do), for:

* logging at WARNING and OpenTelemetry off (`Engine(otel=False)`): what an
  application without the extra pays (the same as without the package: the
  engine checks once per operation whether anything watches its steps);
* the OpenTelemetry API installed but no SDK (its no-op tracer and meter);
* the API with the SDK on (a span per step, kept by the in-memory exporter, and
  the metrics recorded);
* the journal on (each step's timings written to the store's journal).

Without valgrind, the same cases are timed instead (µs per step).
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from genflow.engine import Engine
from genflow.stores import MemoryStore

from .common import Figure, figure
from .instructions import instructions
from .w3_durable_steps import STEPS, HundredSteps

_ENGINES: dict[str, Any] = {}
CASES = (("run_off", "logging at WARNING, OpenTelemetry off"),
         ("run_api", "OpenTelemetry API, no SDK"),
         ("run_sdk", "OpenTelemetry API + SDK, in-memory exporter"),
         ("run_journal", "the journal on (step timings)"))


def _engine(case: str) -> Engine:
    engine = _ENGINES.get(case)
    if engine is None:
        if case == "run_sdk":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )

            exporter = InMemorySpanExporter()
            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
            meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
            engine = Engine(MemoryStore(), tracer_provider=tracer_provider,
                            meter_provider=meter_provider)
            engine._bench_exporter = exporter  # type: ignore[attr-defined]
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
        if case == "run_sdk":
            import opentelemetry.sdk.trace
        elif case == "run_api":
            import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def run(quick: bool = False) -> list[Figure]:
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
