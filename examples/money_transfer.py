"""Temporal's money-transfer sample, in genflow.

Money moves from one account to another in two steps: a withdrawal, then a
deposit. If the deposit fails for good, the withdrawal is refunded and the
failure goes on (the instance fails, with the deposit's error on record): an
operator sees a transfer that did not happen, and no money has vanished.

Both steps are retried forever, backing off to two seconds, except for the
errors no retry can mend: an account that does not exist (`InvalidAccount`)
and a balance too low (`InsufficientFunds`). Each attempt is bounded by a
five-second timeout. This is the sample of Temporal's tutorial "Build a money
transfer app" (temporalio/money-transfer-project-template-python), step for
step; docs/statements.md compares the two.

The bank is `Bank`, an in-memory stand-in for the banking service: every call
carries a reference, and a call made again with the same reference (a step run
again after a crash, before its checkpoint was saved) returns the first
answer without moving money twice.

Run it: ``python -m examples.money_transfer``.
"""

from __future__ import annotations

import attrs

import genflow
from genflow import Raise, Retry, Step, Try

__all__ = ["BANK", "RETRY", "Bank", "InsufficientFunds", "InvalidAccount", "MoneyTransfer"]


# -- the outside system -------------------------------------------------------------------


class InvalidAccount(Exception):
    """The account does not exist: retrying cannot help."""


class InsufficientFunds(Exception):
    """The balance is too low: retrying cannot help."""


class Bank:
    """Accounts and their balances; each call is kept in `calls`, as the bank's
    log would keep it. `outage` makes the next calls fail with ConnectionError."""

    def __init__(self, balances: dict[str, int] | None = None) -> None:
        self.balances = dict(balances or {})
        self.done: dict[str, str] = {}  # reference -> confirmation
        self.calls: list[tuple[str, str, int, str]] = []
        self.outage = 0

    def withdraw(self, account: str, amount: int, reference: str) -> str:
        return self._move("withdraw", account, -amount, reference)

    def deposit(self, account: str, amount: int, reference: str) -> str:
        return self._move("deposit", account, amount, reference)

    def _move(self, what: str, account: str, amount: int, reference: str) -> str:
        self.calls.append((what, account, abs(amount), reference))
        if self.outage:
            self.outage -= 1
            raise ConnectionError("the bank is unreachable")
        if reference in self.done:  # the same call again: the same answer, no money moved
            return self.done[reference]
        if account not in self.balances:
            raise InvalidAccount(f"account {account!r} does not exist")
        if self.balances[account] + amount < 0:
            raise InsufficientFunds(f"account {account!r} holds {self.balances[account]}")
        self.balances[account] += amount
        self.done[reference] = f"{what}-{len(self.done) + 1:04d}"
        return self.done[reference]

    def reset(self, balances: dict[str, int]) -> None:
        self.__init__(balances)  # type: ignore[misc]


#: The bank the example's steps call (one per process, like a client to a real service).
BANK = Bank({"alice": 100, "bob": 0})


# -- the workflow -------------------------------------------------------------------------

RETRY = Retry(attempts=None, max_backoff=2, never=(InvalidAccount, InsufficientFunds))


@genflow.workflow("money-transfer")
@attrs.define
class MoneyTransfer:
    source: str = ""
    target: str = ""
    amount: int = 0
    reference: str = ""
    withdrawn: str = ""
    deposited: str = ""
    refunded: str = ""

    def definition(self):
        yield Step("withdraw", self.withdraw, retry=RETRY, timeout=5)
        yield Try("deposit or refund",
            Step("deposit", self.deposit, retry=RETRY, timeout=5),
        ).Catch("deposit failed", Step("refund", self.refund, retry=RETRY, timeout=5), Raise())

    def withdraw(self) -> None:
        self.withdrawn = BANK.withdraw(self.source, self.amount, f"{self.reference}-withdrawal")

    def deposit(self) -> None:
        self.deposited = BANK.deposit(self.target, self.amount, f"{self.reference}-deposit")

    def refund(self) -> None:
        self.refunded = BANK.deposit(self.source, self.amount, f"{self.reference}-refund")


def main() -> None:
    """Two transfers on SQLite in a scratch directory: one that goes through, one
    to an account that does not exist (refunded, then failed)."""
    import tempfile
    from pathlib import Path

    from genflow import Engine, open_store
    from genflow.clock import FakeClock

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'bank.db'}")
        engine = Engine(store, [MoneyTransfer], clock=FakeClock())
        for target, reference in (("bob", "T-1"), ("nobody", "T-2")):
            engine.start(MoneyTransfer("alice", target, 40, reference), id=reference)
            instance = engine.get(reference)
            print(f"{reference}: {instance.status.value}; {instance.data}")
            if instance.error:
                print(f"  error: {instance.error}")
        print(f"balances: {BANK.balances}")
        store.close()


if __name__ == "__main__":
    main()
