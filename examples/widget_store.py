"""DBOS's widget store (dbos-demo-apps, python/widget-store), in genflow.

A customer buys a widget: the checkout creates an order, reserves one widget
(no stock left: the order is cancelled), then waits for the payment service's
word. Paid: the order is marked paid and its dispatch starts, a workflow of
its own that moves the order's progress on every second and marks it
dispatched at the end. Not paid: the reservation is undone and the order
cancelled.

The dispatch is started through the transactional outbox
(`current_step().start(...)`): the start is written in the same store
transaction as the checkpoint of the step that marked the order paid, so a
crash after the payment never loses the dispatch, and the step running again
after a crash before its checkpoint never starts two. Its id is the order's
(`dispatch-<order>`). docs/together.md compares the two samples' lines.

`SHOP` stands in for the store's database (orders and inventory); its calls
are idempotent per order, as DBOS's transactions are exactly once.

Run it: ``python -m examples.widget_store``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

import genflow
from genflow import For, If, On, Sleep, Step, Wait, current_step

__all__ = ["SHOP", "Checkout", "DispatchOrder", "Shop"]


class Shop:
    """Orders and the widget's inventory. A change made again by a step run again
    after a crash (same `idempotency_key`) gives the first answer: DBOS's
    transactions are exactly once."""

    def __init__(self, inventory: int) -> None:
        self.inventory, self.orders, self.progress, self.done = inventory, {}, {}, {}

    def once(self, change: Callable[[], Any]) -> Any:
        key = current_step().idempotency_key
        if key not in self.done:
            self.done[key] = change()
        return self.done[key]

    def reserve(self, order: str) -> bool:
        self.orders[order] = "pending"
        if self.inventory <= 0:
            return False
        self.inventory -= 1
        return True

    def release(self) -> None:
        self.inventory += 1

    def update_progress(self, order: str) -> int:
        left = self.progress[order] = self.progress.get(order, 10) - 1
        if left == 0:
            self.orders[order] = "dispatched"
        return left


SHOP = Shop(inventory=1)


@genflow.workflow("widget-checkout")
@attrs.define
class Checkout:
    order: str = ""
    reserved: bool = False
    payment: str = ""

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("create order and reserve", self.reserve)
        yield If(not self.reserved, "out of stock", Step("cancel", self.cancel)).Else(
            "in stock",
            Wait("payment", On("payment status", self.paid)),
            If(self.payment == "paid", "paid", Step("mark paid", self.mark_paid)).Else(
                "not paid", Step("undo reservation", self.undo), Step("cancel order",
                                                                       self.cancel)))

    def reserve(self) -> None:
        self.order = current_step().instance_id
        self.reserved = SHOP.once(lambda: SHOP.reserve(self.order))

    def paid(self, status: str) -> None:
        self.payment = status

    def mark_paid(self) -> None:
        SHOP.orders[self.order] = "paid"
        current_step().start(DispatchOrder(self.order), id=f"dispatch-{self.order}")

    def undo(self) -> None:
        SHOP.once(SHOP.release)

    def cancel(self) -> None:
        SHOP.orders[self.order] = "cancelled"


@genflow.workflow("dispatch-order")
@attrs.define
class DispatchOrder:
    order: str
    left: int = 10

    def definition(self):  # type: ignore[no-untyped-def]
        yield For("progress", self.left > 0, Sleep("a second", 1),
                  Step("update progress", self.update_progress))

    def update_progress(self) -> None:
        self.left = SHOP.once(lambda: SHOP.update_progress(self.order))


def main() -> None:
    from genflow import Engine, FakeClock, open_store

    clock = FakeClock()
    engine = Engine(open_store("sqlite:///:memory:"), clock=clock)
    engine.start(Checkout(), id="order-1")
    engine.start(Checkout(), id="order-2")  # the last widget is gone
    engine.send("order-1", "payment status", "paid")
    engine.work(until_done=True)  # the dispatch's ten seconds pass on the fake clock
    print(SHOP.orders, f"inventory {SHOP.inventory}")


if __name__ == "__main__":
    main()
