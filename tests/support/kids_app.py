"""Workflows for the multi-process child-workflow tests and benchmarks/children_workers.py
(imported by `kids_worker.py` in each worker process)."""

from __future__ import annotations

import attrs

from genflow import Children, Step, workflow


@workflow("kids-square")
@attrs.define
class Square:
    n: int
    out: int = 0

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("square", self.square)

    def square(self) -> None:
        self.out = self.n * self.n


@workflow("kids-sum")
@attrs.define
class SumOfSquares:
    base: int
    width: int = 10
    first: int | None = None
    squares: list[int] = attrs.field(factory=list)
    total: int = -1

    def definition(self):  # type: ignore[no-untyped-def]
        yield Children("squares", [Square(self.base + i) for i in range(self.width)],
                       into="squares", result="out", first=self.first)
        yield Step("add", self.add)

    def add(self) -> None:
        self.total = sum(self.squares)


def expected(base: int, width: int = 10) -> int:
    return sum((base + i) ** 2 for i in range(width))
