"""Scale curves: resume cost against definition size and nesting depth."""

from __future__ import annotations

import attrs

import genflow
from genflow import For, If, On, Step, Wait, dumps, handle_callback, loads, new_state, resume

from .common import Figure, figure, per_call_us


@genflow.workflow("bench-size")
@attrs.define
class Wide:
    """`size` steps before a waiting loop: the thread stands after all of them."""

    size: int = 10
    n: int = 0

    def definition(self):
        for index in range(self.size - 2):
            yield Step(f"s{index}", self.noop)
        yield For("loop", True, Wait("wait", On("go", self.on_go)))

    def noop(self) -> None:
        pass

    def on_go(self) -> None:
        self.n += 1


@genflow.workflow("bench-depth")
@attrs.define
class Deep:
    """A wait nested `depth` Ifs deep inside a loop."""

    depth: int = 1
    n: int = 0

    def definition(self):
        body = Wait("wait", On("go", self.on_go))
        for level in range(self.depth):
            body = If(True, f"if{level}", body)
        yield For("loop", True, body)

    def on_go(self) -> None:
        self.n += 1


def _event_cost(wf: object, number: int) -> list[float]:
    state = new_state("scale", wf)
    resume(wf, state)
    blob = dumps(wf, state)

    def one() -> None:
        w, s = loads(blob)
        handle_callback(s.threads[0].events[0].req, w, s)
        resume(w, s)

    one()
    return per_call_us(one, number=number, repeat=5)


def run(quick: bool = False) -> list[Figure]:
    figures = []
    for size in (10, 100, 1000):
        number = max(20, (200 if quick else 2000) // size)
        figures.append(figure("scale: definition size", f"{size} statements",
                              _event_cost(Wide(size=size), number), note="event + resume + loads"))
    for depth in (1, 10, 100, 500):
        number = max(20, (200 if quick else 2000) // depth)
        figures.append(figure("scale: nesting depth", f"depth {depth}",
                              _event_cost(Deep(depth=depth), number),
                              note="event + resume + loads"))
    return figures
