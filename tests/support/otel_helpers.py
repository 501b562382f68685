"""OpenTelemetry for the tests: the SDK's tracer and meter providers with in-memory
exporters, handed to each engine (no global state shared between tests)."""

from __future__ import annotations

from typing import Any

import pytest

from genflow.engine import Engine
from genflow.stores import MemoryStore
from genflow.testing import FakeClock


def in_memory_otel() -> Any:
    """An object with `tracer` (the caller's own), `engine(store=None, **kw)` (an
    Engine traced and metered into the exporters, on a FakeClock), `spans()` and
    `metrics()`; skips the test without the otel-test extra."""
    pytest.importorskip("opentelemetry.sdk.trace", reason="the otel-test extra is not "
                        "installed (pip install -e '.[otel-test]')")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    class Otel:
        tracer = tracer_provider.get_tracer("the-caller")

        @staticmethod
        def engine(store: Any = None, **kw: Any) -> tuple[Engine, FakeClock]:
            clock = kw.pop("clock", None) or FakeClock()
            return Engine(store or MemoryStore(), clock=clock, tracer_provider=tracer_provider,
                          meter_provider=meter_provider, **kw), clock

        @staticmethod
        def spans() -> list[Any]:
            return list(exporter.get_finished_spans())

        @staticmethod
        def metrics() -> dict[str, list[Any]]:
            found: dict[str, list[Any]] = {}
            data = reader.get_metrics_data()
            for resource in data.resource_metrics if data else ():
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        found.setdefault(metric.name, []).extend(metric.data.data_points)
            return found

    return Otel


def named(spans: list[Any], name: str) -> list[Any]:
    return [s for s in spans if s.name == name]
