"""Workflows for the web console's tests (imported by the server process with --app)."""

from __future__ import annotations

import enum

import attrs

import genflow
from genflow import EventHandler, For, Go, If, On, Retry, Step, Timeout, Wait
from genflow.web import callback_url


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


@attrs.define
class Item:
    name: str
    quantity: int = 1
    size: Size = Size.SMALL


@attrs.define
class Approval:
    by: str
    note: str = ""


class PaymentHook(EventHandler):
    """Hands the payment provider a signed URL that answers this one wait."""

    def setup(self, req):
        return {"url": callback_url(req)}

    def handle(self, req, payload: int) -> str:
        return f"paid {payload}"


@genflow.workflow("web-order")
@attrs.define
class Order:
    items: list[Item] = attrs.field(factory=list)
    approved_by: str = ""
    paid: int = 0
    closed: bool = False

    def definition(self):
        yield For("shopping", not self.closed,
            Wait("cart",
                On("add", self.on_add),
                On("close", self.on_close),
            ),
        )
        yield If(len(self.items) > 2, "big order",
            Wait("approval", On("approve", self.on_approve), Timeout("too slow", 3600)),
        )
        yield Wait("payment", On("paid", PaymentHook()))
        yield Step("ship", self.ship)

    def on_add(self, item: Item) -> int:
        self.items.append(item)
        return len(self.items)

    def on_close(self) -> None:
        self.closed = True

    def on_approve(self, approval: Approval) -> None:
        self.approved_by = approval.by

    def ship(self) -> None:
        pass


@genflow.workflow("web-fails")
@attrs.define
class Fails:
    tries: int = 0

    def definition(self):
        yield Step("prepare", self.noop)
        yield Step("explode", self.explode, retry=Retry(attempts=1))
        yield Wait("after", On("done", self.noop))

    def noop(self) -> None:
        pass

    def explode(self) -> None:
        self.tries += 1
        raise RuntimeError("boom")


@genflow.workflow("web-pair")
@attrs.define
class Pair:
    got: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("left", self.side("left"))
        yield Wait("main waits", On("ping", self.on_ping))

    def side(self, name):
        def body():
            yield Wait(f"{name} waits", On(f"{name} ping", self.on_ping))
        return body

    def on_ping(self, text: str) -> None:
        self.got.append(text)


class TickHook(EventHandler):
    """A hook whose every wait hands out its own callback URL."""

    def __init__(self, wf: Hooks):
        self.wf = wf

    def setup(self, req):
        return {"url": callback_url(req)}

    def handle(self, req, payload: str) -> str:
        self.wf.ticks.append(payload)
        return payload.upper()


@genflow.workflow("web-hooks")
@attrs.define
class Hooks:
    ticks: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("rounds", len(self.ticks) < 3,
            Wait("hook", On("tick", TickHook(self))),
            Step("count", self.count),
        )

    def count(self) -> None:
        pass
