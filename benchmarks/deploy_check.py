"""Deploy check: 100,000 in-flight SQLite instances checked against the installed code.

Each instance is a pizza order with two threads (the kitchen waiting for the
payment thread, the payment thread waiting for the provider). Target: under
10 seconds on this machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from examples.pizza import PizzaOrder
from genflow import dumps, handle_callback, new_state, resume
from genflow.clock import FakeClock
from genflow.deploy import check_store
from genflow.stores import InstanceRecord, SQLiteStore

from .common import Figure, figure


def _waiting_order() -> tuple[PizzaOrder, object]:
    """A pizza order paid for by nobody yet: two threads waiting."""
    clock = FakeClock()
    wf = PizzaOrder()
    state = new_state("template", wf)

    def send(event: str, payload: object, thread: str = "_main_") -> None:
        req = next(e.req for t in state.threads for e in t.events
                   if t.id == thread and e.event == event)
        handle_callback(req, wf, state, payload)
        resume(wf, state, clock=clock)

    resume(wf, state, clock=clock)
    send("add", {"pizza": "margherita", "size": "large", "quantity": 2})
    send("checkout", {"customer": "Ada", "address": "1 Analytical Way"})
    send("confirm", {"manager": "Grace"})
    assert {t.stmt for t in state.threads} == {"payment settled", "await payment"}
    return wf, state


def fill(store: SQLiteStore, count: int) -> None:
    wf, state = _waiting_order()
    with store.transaction():
        for k in range(count):
            state.id = f"order-{k:06}"
            store.create(InstanceRecord(id=state.id, workflow="pizza-order", status="waiting",
                                        blob=dumps(wf, state),
                                        waiting_for=("payment",)))


def run(quick: bool = False) -> list[Figure]:
    count = 10_000 if quick else 100_000
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "check.db")
        fill(store, count)
        for processes in (1, 2):
            samples = []
            for _ in range(1 if quick else 3):
                report = check_store(store, [PizzaOrder], processes=processes)
                assert report.ok and report.checked == count, report.format()
                samples.append(report.seconds)
            figures.append(figure("deploy check",
                                  f"{count:,} SQLite instances, {processes} process(es)",
                                  samples, unit="s", note="target < 10 s for 100,000"))
        store.close()
    return figures
