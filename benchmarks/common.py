"""Timing helpers shared by the workloads: several runs, median and spread."""

from __future__ import annotations

import gc
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen
class Figure:
    """One measured quantity: median and min-max over `runs` runs."""

    workload: str
    case: str
    median: float
    low: float
    high: float
    unit: str
    runs: int
    note: str = ""

    def row(self) -> str:
        spread = f"{_fmt(self.low)}-{_fmt(self.high)}"
        median = f"{_fmt(self.median)} {self.unit}"
        return f"| {self.workload} | {self.case} | {median} | {spread} | {self.note} |"


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def per_call_us(fn: Callable[[], Any], *, number: int, repeat: int = 7) -> list[float]:
    """Microseconds per call of `fn`, for each of `repeat` batches of `number` calls."""
    results = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for _ in range(number):
                fn()
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        results.append(elapsed / number * 1e6)
    return results


def figure(workload: str, case: str, samples: list[float], unit: str = "µs",
           note: str = "") -> Figure:
    return Figure(workload, case, statistics.median(samples), min(samples), max(samples), unit,
                  len(samples), note)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
