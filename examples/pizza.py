"""A pizza order, from the first click to the door.

The order is one long-running instance. It spends most of its life waiting: for
the customer to fill the cart, for a manager to confirm, for the payment
provider's webhook, for the driver. genflow keeps only its data (the fields
below) and where each thread stands, so the instance survives restarts and
deploys between any two of those events.

The story, as the definition tells it:

1. **Cart.** The customer adds and removes pizzas and checks out. Each event
   carries a typed payload (`AddItem`, `RemoveItem`, `Checkout`): a payload that
   does not fit — an unknown pizza, a quantity of 0, a missing address — is
   refused with `PayloadError` before any code here runs, and nothing changes.
2. **Confirmation.** A manager confirms or rejects the order. If nobody answers
   within `CONFIRM_WITHIN` the order is cancelled: a shop that cannot confirm in
   half an hour cannot deliver a hot pizza either, so it is kinder to tell the
   customer now. Payment only starts after confirmation, so a cancelled order
   never needs a refund.
3. **Cooking and payment, in parallel.** Payment runs in its own thread (a
   `WaitGroup` tracks it) while the main thread cooks: most payments succeed,
   and a pizza that waits for the bank goes cold. The payment thread asks the
   provider for a charge and waits for its webhook (or gives up after
   `PAYMENT_WITHIN`).
4. **Delivery.** The driver leaves only when the money is in: the main thread
   waits for the payment thread to finish, then either dispatches the order and
   waits for "delivered", or cancels it.

Events, their payloads and who sends them:

=============  ====================  ========================================
event          payload               sender
=============  ====================  ========================================
``add``        `AddItem`             the customer's app
``remove``     `RemoveItem`          the customer's app
``checkout``   `Checkout`            the customer's app
``confirm``    `Confirmation`        the shop manager's tablet
``reject``     `Rejection`           the shop manager's tablet
``payment``    `PaymentResult`       the payment provider's webhook
``delivered``  `Delivery`            the driver's phone
=============  ====================  ========================================

Run it in memory: ``python -m examples.pizza``; on SQLite with two processes and
a timer: ``python -m examples.demo``.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from decimal import Decimal

import attrs

import genflow
from genflow import For, If, On, Return, Step, Timeout, Wait, WaitGroup

__all__ = [
    "CONFIRM_WITHIN",
    "MENU",
    "PAYMENT_WITHIN",
    "AddItem",
    "Checkout",
    "Confirmation",
    "Delivery",
    "Line",
    "PaymentResult",
    "PaymentStatus",
    "PizzaOrder",
    "Rejection",
    "RemoveItem",
    "Size",
    "Stage",
]

#: How long a manager has to confirm a checked-out order before it is cancelled.
CONFIRM_WITHIN = dt.timedelta(minutes=30)
#: How long the payment provider has to report on a charge before we give up.
PAYMENT_WITHIN = dt.timedelta(minutes=15)

#: Medium-size prices. Prices are read when a pizza is added and kept on the
#: line, so a menu change never reprices a cart that is already open.
MENU: dict[str, Decimal] = {
    "margherita": Decimal("8.50"),
    "funghi": Decimal("9.50"),
    "diavola": Decimal("10.50"),
    "hawaiian": Decimal("9.00"),
}


class Size(enum.Enum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


SIZE_SURCHARGE: dict[Size, Decimal] = {
    Size.SMALL: Decimal("-1.50"),
    Size.MEDIUM: Decimal("0.00"),
    Size.LARGE: Decimal("3.00"),
}


class Stage(enum.Enum):
    """Where the order is, in the customer's words (the app shows this)."""

    CART = "cart"
    AWAITING_CONFIRMATION = "awaiting confirmation"
    IN_KITCHEN = "in the kitchen"
    OUT_FOR_DELIVERY = "out for delivery"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class PaymentStatus(enum.Enum):
    NOT_REQUESTED = "not requested"
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


# -- payloads: what each event carries ------------------------------------------------------
#
# Validators run while genflow structures the payload, so a bad one is a
# PayloadError that names the field, raised before any handler runs.


@attrs.frozen
class AddItem:
    """The customer picked a pizza."""

    pizza: str = attrs.field(validator=attrs.validators.in_(sorted(MENU)))
    size: Size = Size.MEDIUM
    quantity: int = attrs.field(
        default=1, validator=[attrs.validators.ge(1), attrs.validators.le(20)]
    )


@attrs.frozen
class RemoveItem:
    """Take a pizza out of the cart: every size of it, or only `size`."""

    pizza: str
    size: Size | None = None


@attrs.frozen
class Checkout:
    """The customer is done choosing: who they are and where the pizza goes."""

    customer: str = attrs.field(validator=attrs.validators.min_len(1))
    address: str = attrs.field(validator=attrs.validators.min_len(1))


@attrs.frozen
class Confirmation:
    manager: str


@attrs.frozen
class Rejection:
    manager: str
    reason: str


@attrs.frozen
class PaymentResult:
    """The payment provider's webhook: `reference` is the charge we asked for."""

    reference: str
    ok: bool
    message: str = ""


@attrs.frozen
class Delivery:
    driver: str


# -- the workflow ---------------------------------------------------------------------------


@attrs.define
class Line:
    """One line of the cart, priced when it was added."""

    pizza: str
    size: Size
    quantity: int
    unit_price: Decimal

    @property
    def total(self) -> Decimal:
        return self.unit_price * self.quantity

    def __str__(self) -> str:
        return f"{self.quantity}x {self.size.value} {self.pizza}"


@genflow.workflow("pizza-order")
@attrs.define
class PizzaOrder:
    """One pizza order. Every field is persisted; nothing else is."""

    lines: list[Line] = attrs.field(factory=list)
    customer: str = ""
    address: str = ""
    stage: Stage = Stage.CART
    confirmed_by: str = ""
    payment: PaymentStatus = PaymentStatus.NOT_REQUESTED
    payment_ref: str = ""
    charged: Decimal = Decimal("0.00")
    kitchen: list[str] = attrs.field(factory=list)
    driver: str = ""
    cancel_reason: str = ""
    #: what happened, in order, in words: the demo prints it.
    history: list[str] = attrs.field(factory=list)
    #: tracks the payment thread, so delivery can wait for it.
    wg: WaitGroup = attrs.field(factory=WaitGroup)

    @property
    def total(self) -> Decimal:
        return sum((line.total for line in self.lines), Decimal("0.00"))

    # The definition reads like the story in the module docstring. It is
    # replayed on every move, so every condition is a plain value of the data.

    def definition(self):
        yield from self.shopping()
        yield from self.confirmation()
        yield If(self.stage is Stage.CANCELLED, "cancelled before cooking", Return())
        yield self.wg.go("take payment", self.take_payment)
        yield from self.cooking()
        yield self.wg.wait("payment settled")
        yield If(self.payment is PaymentStatus.PAID, "paid",
            Step("dispatch driver", self.dispatch),
            # a report before the driver left is a mistake: refused, not kept
            Wait("at the door", On("delivered", self.on_delivered, keep=False)),
        ).Else("unpaid",
            Step("cancel unpaid order", self.cancel_unpaid),
        )

    def shopping(self):
        """The cart stays open until checkout: every event is one loop iteration."""
        yield For("cart", self.stage is Stage.CART,
            Wait("cart open",
                On("add", self.on_add),
                On("remove", self.on_remove),
                On("checkout", self.on_checkout),
            ),
        )

    def confirmation(self):
        """A manager has `CONFIRM_WITHIN` to confirm or reject; silence cancels."""
        yield Wait("manager decision",
            On("confirm", self.on_confirm),
            On("reject", self.on_reject),
            Timeout("manager silent", CONFIRM_WITHIN,
                Step("cancel unconfirmed", self.cancel_unconfirmed),
            ),
        )

    def cooking(self):
        """The kitchen's steps. Each is checkpointed, so a crash mid-way never
        bakes the same pizza twice."""
        yield Step("make dough", lambda: self.cook("dough made"))
        yield Step("add toppings", lambda: self.cook("toppings on"))
        yield Step("bake", lambda: self.cook("baked"))
        yield Step("box", lambda: self.cook("boxed"))

    def take_payment(self):
        """The payment thread: ask for the charge, then wait for the provider."""
        yield Step("request charge", self.request_charge)
        yield Wait("await payment",
            On("payment", self.on_payment),
            Timeout("payment deadline", PAYMENT_WITHIN,
                Step("give up on payment", self.payment_timed_out),
            ),
        )

    # -- cart handlers: each returns the cart's summary to the customer's app --

    def on_add(self, item: AddItem) -> dict[str, object]:
        price = MENU[item.pizza] + SIZE_SURCHARGE[item.size]
        for line in self.lines:  # the same pizza again: one line, more of it
            if (line.pizza, line.size) == (item.pizza, item.size):
                line.quantity += item.quantity
                break
        else:
            self.lines.append(Line(item.pizza, item.size, item.quantity, price))
        self.note(f"added {item.quantity}x {item.size.value} {item.pizza} at {price} each")
        return self.summary()

    def on_remove(self, item: RemoveItem) -> dict[str, object]:
        keep = [line for line in self.lines
                if not (line.pizza == item.pizza and item.size in (None, line.size))]
        if len(keep) == len(self.lines):
            # Raising refuses the event: the data is rolled back, the cart stays open.
            raise LookupError(f"there is no {item.pizza} in the cart")
        self.note(f"removed {', '.join(str(line) for line in self.lines if line not in keep)}")
        self.lines = keep
        return self.summary()

    def on_checkout(self, checkout: Checkout) -> dict[str, object]:
        if not self.lines:
            raise ValueError("the cart is empty")
        self.customer, self.address = checkout.customer, checkout.address
        self.stage = Stage.AWAITING_CONFIRMATION
        self.note(f"{self.customer} checked out {self.summary()['total']} for {self.address}")
        return self.summary()

    def summary(self) -> dict[str, object]:
        return {"lines": [str(line) for line in self.lines], "total": str(self.total)}

    # -- the manager --

    def on_confirm(self, confirmation: Confirmation) -> None:
        self.confirmed_by = confirmation.manager
        self.stage = Stage.IN_KITCHEN
        self.note(f"confirmed by {confirmation.manager}")

    def on_reject(self, rejection: Rejection) -> None:
        self.cancel(f"rejected by {rejection.manager}: {rejection.reason}")

    def cancel_unconfirmed(self) -> None:
        minutes = int(CONFIRM_WITHIN.total_seconds() // 60)
        self.cancel(f"no manager confirmed within {minutes} minutes")

    # -- the kitchen --

    def cook(self, what: str) -> None:
        self.kitchen.append(what)
        self.note(f"kitchen: {what}")

    # -- payment --

    def request_charge(self) -> None:
        """Ask the provider to charge the order.

        A real shop calls its provider's API here, passing the step's
        idempotency key: if the process dies after the call but before the
        checkpoint, the step runs again with the same key and the provider does
        not charge twice. The reference is derived from that key, so a re-run
        also asks about the same charge.
        """
        key = genflow.current_step().idempotency_key
        self.payment_ref = "ch_" + hashlib.sha256(key.encode()).hexdigest()[:12]
        self.payment = PaymentStatus.PENDING
        self.note(f"requested a charge of {self.total} ({self.payment_ref})")

    def on_payment(self, result: PaymentResult) -> str:
        if result.reference != self.payment_ref:
            # A webhook for some other charge: refuse it (HandlerError), change nothing.
            raise ValueError(f"unknown charge {result.reference!r}")
        if result.ok:
            self.payment, self.charged = PaymentStatus.PAID, self.total
            self.note(f"payment of {self.charged} received")
        else:
            self.payment = PaymentStatus.FAILED
            self.note(f"payment failed: {result.message or 'no reason given'}")
        return "thanks"

    def payment_timed_out(self) -> None:
        self.payment = PaymentStatus.FAILED
        self.note("the payment provider never answered")

    # -- delivery --

    def dispatch(self) -> None:
        self.stage = Stage.OUT_FOR_DELIVERY
        self.note(f"out for delivery to {self.address}")

    def on_delivered(self, delivery: Delivery) -> None:
        self.driver = delivery.driver
        self.stage = Stage.DELIVERED
        self.note(f"delivered by {delivery.driver}")

    def cancel_unpaid(self) -> None:
        self.cancel("payment failed; the pizza goes to the staff room")

    # -- helpers --

    def cancel(self, reason: str) -> None:
        self.stage = Stage.CANCELLED
        self.cancel_reason = reason
        self.note(f"cancelled: {reason}")

    def note(self, text: str) -> None:
        self.history.append(text)


def main() -> None:
    """Drive one order through the pure core, in memory (no store, no engine)."""
    from genflow import handle_callback, new_state, resume

    order = PizzaOrder()
    state = new_state("order-1", order)

    def send(event: str, payload: object = None) -> object:
        req = next(e.req for t in state.threads for e in t.events if e.event == event)
        out = handle_callback(req, order, state, payload)
        resume(order, state)
        return out

    resume(order, state)
    send("add", {"pizza": "margherita", "size": "large", "quantity": 2})
    send("add", {"pizza": "diavola"})
    send("checkout", {"customer": "Ada", "address": "1 Analytical Way"})
    send("confirm", {"manager": "Grace"})
    send("payment", {"reference": order.payment_ref, "ok": True})
    send("delivered", {"driver": "Linus"})
    for line in order.history:
        print(" -", line)
    print(f"stage: {order.stage.value}; instance {state.status.value}")


if __name__ == "__main__":
    main()
