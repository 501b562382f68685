"""Early signals: the payment arrives before the workflow waits for it.

Temporal's "signal before the wait" race, the one users meet first: a
workflow does some work, then waits for a signal, and the signal comes while
the work is still going on. Here a shipment is packed by a warehouse (a wait
for "packed" that may last hours), then waits for the payment provider's
"paid" webhook. Customers pay at once, so "paid" usually arrives *before* the
wait for it has begun. Without a mailbox that call is refused (the instance
waits for "packed", not "paid") and the provider retries it later, or gives
up; with one, genflow keeps the early "paid" in the instance's own State and
delivers it, exactly once, the moment the wait for payment begins.

Providers deliver webhooks at least once: a second notification of the same
payment is kept too, but no wait takes it, so when the shipment ends it is
set aside as undelivered, on view in `genflow show` and in the journal, never
silently dropped.

The shop may also learn of a payment before its own "start the shipment"
request got through: `send(..., start=Shipment(...))` (signal-with-start)
starts the shipment if it does not exist yet, with the payment already in its
mailbox, in one write; and a shop that retries its start request uses
`start(..., if_exists="return")`, which starts one shipment however often it
is called.

Run it: ``python -m examples.early_signals``.
"""

from __future__ import annotations

import datetime as dt

import attrs

import genflow
from genflow import If, On, Step, Timeout, Wait

__all__ = ["UNPAID_AFTER", "WAREHOUSE", "Payment", "Shipment", "Warehouse", "main"]

#: How long a packed shipment waits for its payment before the stock goes back.
UNPAID_AFTER = dt.timedelta(days=3)


class Warehouse:
    """An in-memory stand-in for the warehouse: what it reserved and shipped."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def clear(self) -> None:
        self.log.clear()


WAREHOUSE = Warehouse()


@attrs.frozen
class Payment:
    reference: str
    amount: int  # cents


@genflow.workflow("early-signals-shipment")
@attrs.define
class Shipment:
    order: str = ""
    amount: int = 0  # cents
    packed_by: str = ""
    payment: Payment | None = None
    shipped: bool = False

    def definition(self):
        yield Step("reserve stock", self.reserve)
        yield Wait("packing", On("packed", self.on_packed))
        yield Wait("payment",
            On("paid", self.on_paid),
            Timeout("unpaid", UNPAID_AFTER, Step("release stock", self.release)),
        )
        yield If(self.payment is not None, "paid", Step("ship", self.ship))

    def reserve(self) -> None:
        WAREHOUSE.log.append(f"reserve {self.order}")

    def on_packed(self, packer: str) -> None:
        self.packed_by = packer

    def on_paid(self, payment: Payment) -> str:
        if payment.amount != self.amount:
            raise ValueError(f"paid {payment.amount}, the order costs {self.amount}")
        self.payment = payment
        return f"{self.order} paid by {payment.reference}"

    def release(self) -> None:
        WAREHOUSE.log.append(f"release {self.order}")

    def ship(self) -> None:
        WAREHOUSE.log.append(f"ship {self.order}")
        self.shipped = True


def main() -> None:
    """One shipment paid before it is packed (and notified twice), one paid
    before the shop started it."""
    from genflow import Engine
    from genflow.clock import FakeClock
    from genflow.describe import describe
    from genflow.stores import MemoryStore

    engine = Engine(MemoryStore(), [Shipment], clock=FakeClock())
    engine.start(Shipment("A-1", 4200), id="A-1")
    paid = {"reference": "pay-77", "amount": 4200}
    print(engine.send("A-1", "paid", paid))  # the warehouse is still packing: kept
    print(engine.send("A-1", "paid", paid))  # the provider notifies again: kept too
    print(engine.send("A-1", "packed", "Grace"))  # the wait for payment begins: taken
    a1 = engine.get("A-1")
    print(a1.status.value, a1.data.payment, a1.data.shipped)
    print(describe(a1.state, now=engine.clock()).splitlines()[-2:])

    # the payment comes before the shop's own start request got through
    print(engine.send("B-2", "paid", {"reference": "pay-78", "amount": 990},
                      start=Shipment("B-2", 990)))
    print(engine.start(Shipment("B-2", 990), id="B-2", if_exists="return"))  # a retry
    print(engine.send("B-2", "packed", "Linus"))
    print(engine.get("B-2").status.value, WAREHOUSE.log)


if __name__ == "__main__":
    main()
