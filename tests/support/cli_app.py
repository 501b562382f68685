"""Workflows for the command-line tests (`genflow --app tests/support/cli_app.py ...`).

* `cli-order`: fill a cart (`add` with an `Item`, `checkout` without payload),
  then wait for `confirm` or give up after `patience` seconds (a `Timeout`),
  then bake.
* `cli-charge`: a step that fails while the file `blocker` exists (with no
  retries, so the instance is FAILED until an operator removes the file and
  runs `genflow retry`).
* `cli-webhook`: a handler whose setup fails while the file `blocker` exists
  (the failure is recorded on the event and retried).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs

import genflow
from genflow import EventHandler, For, On, Step, Timeout, Wait
from genflow.state import CallbackRequest


@attrs.frozen
class Item:
    name: str
    qty: int = 1


@genflow.workflow("cli-order")
@attrs.define
class Order:
    customer: str = ""
    items: list[Item] = attrs.Factory(list)
    #: seconds the shop waits for a confirmation before the order expires
    patience: float = 3600.0
    stage: str = "cart"

    def definition(self):
        yield For("shopping", self.stage == "cart",
            Wait("cart?", On("add", self.add), On("checkout", self.checkout)),
        )
        yield Wait("confirmed?",
            On("confirm", self.confirm, Step("bake", self.bake)),
            Timeout("too slow", self.patience, Step("expire", self.expire)),
        )

    def add(self, item: Item) -> int:
        self.items.append(item)
        return len(self.items)

    def checkout(self) -> None:
        self.stage = "checked out"

    def confirm(self) -> None:
        self.stage = "confirmed"

    def bake(self) -> None:
        self.stage = "baked"

    def expire(self) -> None:
        self.stage = "expired"


@genflow.workflow("cli-charge")
@attrs.define
class Charge:
    blocker: str = ""
    charged: bool = False

    def definition(self):
        yield Step("charge", self.charge)

    def charge(self) -> None:
        if self.blocker and Path(self.blocker).exists():
            raise ConnectionError("card processor is down")
        self.charged = True


class Webhook(EventHandler):
    def __init__(self, blocker: str) -> None:
        self.blocker = blocker

    def setup(self, req: CallbackRequest) -> str:
        if self.blocker and Path(self.blocker).exists():
            raise ConnectionError("cannot register the webhook")
        return f"https://example.invalid/hooks/{req.instance_id}"

    def handle(self, req: CallbackRequest, payload: str) -> None:
        pass


@genflow.workflow("cli-webhook")
@attrs.define
class Hooked:
    blocker: str = ""

    def definition(self):
        yield Wait("hooked?", On("hook", Webhook(self.blocker)))


@genflow.workflow("cli-async")
@attrs.define
class Awaited:
    """An async step: `genflow worker --async` runs it (the sync loop cannot)."""

    done: bool = False

    def definition(self):  # type: ignore[no-untyped-def]
        yield Step("await", self.run)

    async def run(self) -> None:
        await asyncio.sleep(0)
        self.done = True
