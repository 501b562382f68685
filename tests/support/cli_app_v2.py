"""`cli_app.py` after an unsafe edit: "confirmed?" was renamed, so instances that
wait there cannot move on with this code (the deploy check must say so)."""

from __future__ import annotations

import attrs

import genflow
from genflow import For, On, Step, Wait


@attrs.define
class Item:
    name: str
    qty: int = 1


@genflow.workflow("cli-order")
@attrs.define
class Order:
    customer: str = ""
    items: list[Item] = attrs.Factory(list)
    patience: float = 3600.0
    stage: str = "cart"

    def definition(self):
        yield Step("greet", self.greet)  # a safe edit: new instances pass it first
        yield For("shopping", self.stage == "cart",
            Wait("cart?", On("add", self.add), On("checkout", self.checkout)),
        )
        yield Wait("approved?", On("confirm", self.confirm))  # was "confirmed?": unsafe

    def greet(self) -> None:
        self.stage = self.stage or "cart"

    def add(self, item: Item) -> int:
        self.items.append(item)
        return len(self.items)

    def checkout(self) -> None:
        self.stage = "checked out"

    def confirm(self) -> None:
        self.stage = "confirmed"
