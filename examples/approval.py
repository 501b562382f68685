"""A purchase approval whose handler object works with an outside inbox.

Someone asks to buy something. Their team lead approves it; purchases of
`FINANCE_LIMIT` or more need finance too. Approvers answer from an inbox that
lives *outside* the workflow (a ticket queue, a chat bot, an email with a
link): the workflow does not poll it, it hands it a request and waits.

That is what a handler object is for. `ApprovalHandler`:

* `setup(req)` runs when the workflow starts waiting: it opens a request in the
  `Inbox` and returns the inbox's token, which genflow keeps on the request as
  `req.setup_data` (it survives restarts with the rest of the instance);
* `handle(req, payload)` runs when the approver answers; the payload is
  structured into `Decision` first, so a malformed answer is a `PayloadError`
  and changes nothing;
* `teardown(req, handled)` runs when the wait ends, whichever event won: it
  withdraws the request, so an approver never sees a stale one.

If an approver stays silent for `REMIND_AFTER`, the timer wins the wait: the
open request is withdrawn (teardown with ``handled=False``) and the next loop
iteration opens a fresh one, a reminder. After `MAX_REMINDERS` the purchase
expires. A decision on a withdrawn request is refused with
`StaleCallbackError`: its counter belongs to an earlier wait.

Run it: ``python -m examples.approval``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs

import genflow
from genflow import CallbackRequest, EventHandler, For, If, On, Step, Timeout, Wait

__all__ = [
    "FINANCE_LIMIT",
    "INBOX",
    "MAX_REMINDERS",
    "REMIND_AFTER",
    "ApprovalHandler",
    "Decision",
    "Inbox",
    "InboxItem",
    "Purchase",
]

#: Purchases of this amount or more need finance's approval after the lead's.
FINANCE_LIMIT = Decimal("1000")
#: An approver who has not answered after this long gets a fresh request.
REMIND_AFTER = dt.timedelta(days=2)
#: Reminders sent before the purchase expires.
MAX_REMINDERS = 2


# -- the outside system -------------------------------------------------------------------


@attrs.define
class InboxItem:
    """An open approval request, as the approver sees it."""

    token: str
    approver: str
    subject: str
    #: what the inbox hands back to genflow when the approver answers.
    req: CallbackRequest


class Inbox:
    """An in-memory stand-in for the approvers' inbox (a ticket system, a chat bot...).

    `open` is idempotent: a setup that runs again after a crash (before its
    checkpoint was saved) finds its request already open instead of opening a
    second one. The token is derived from the request for the same reason.
    """

    def __init__(self) -> None:
        self.items: dict[str, InboxItem] = {}
        self.opened = 0
        self.withdrawn = 0

    def open(self, approver: str, subject: str, req: CallbackRequest) -> str:
        token = f"{req.instance_id}:{req.thread_id}:{req.pc}"
        if token not in self.items:
            self.items[token] = InboxItem(token, approver, subject, req)
            self.opened += 1
        return token

    def withdraw(self, token: str) -> None:
        if self.items.pop(token, None) is not None:
            self.withdrawn += 1

    def for_approver(self, approver: str) -> list[InboxItem]:
        return [item for item in self.items.values() if item.approver == approver]

    def clear(self) -> None:
        self.items.clear()
        self.opened = self.withdrawn = 0


#: The inbox the example's handlers use (one per process, like a client to a real service).
INBOX = Inbox()


# -- the handler object ---------------------------------------------------------------------


@attrs.frozen
class Decision:
    """An approver's answer (the payload of the "decision" event)."""

    approver: str
    approve: bool
    comment: str = ""


class ApprovalHandler(EventHandler):
    """Asks `approver` through the inbox; `record` gets their `Decision`.

    The handler is built afresh on every replay of the definition, so it holds
    only what the definition gives it; anything it must remember between setup
    and teardown (the inbox token) lives on the request as `setup_data`.
    """

    def __init__(self, approver: str, subject: str, record: Callable[[Decision], Any],
                 inbox: Inbox | None = None) -> None:
        self.approver = approver
        self.subject = subject
        self.record = record
        self.inbox = inbox if inbox is not None else INBOX

    def setup(self, req: CallbackRequest) -> str:
        return self.inbox.open(self.approver, self.subject, req)

    def handle(self, req: CallbackRequest, payload: Decision) -> str:
        if payload.approver != self.approver:
            # Refused: HandlerError, the data is rolled back, the request stays open.
            raise PermissionError(f"{payload.approver} may not answer for {self.approver}")
        self.record(payload)
        return f"{'approved' if payload.approve else 'rejected'} ({req.setup_data})"

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        self.inbox.withdraw(req.setup_data)


# -- the workflow ---------------------------------------------------------------------------


@genflow.workflow("purchase-approval")
@attrs.define
class Purchase:
    """A purchase request and its approvals."""

    requester: str = ""
    item: str = ""
    amount: Decimal = Decimal("0")
    decisions: list[Decision] = attrs.field(factory=list)
    reminders: int = 0
    #: "" while undecided, then "approved", "rejected" or "expired".
    outcome: str = ""
    ordered: bool = False
    history: list[str] = attrs.field(factory=list)

    @property
    def approvers(self) -> list[str]:
        return ["lead", "finance"] if self.amount >= FINANCE_LIMIT else ["lead"]

    @property
    def next_approver(self) -> str:
        """Who must answer next ("" once everyone has). The definition builds its
        statements even for a loop that will not run, so this must never fail."""
        todo = self.approvers[len(self.decisions):]
        return todo[0] if todo else ""

    def definition(self):
        # One iteration per request sent: an answer or a reminder. The handler is
        # built from the data, so after the lead approves, the same Wait asks finance.
        yield For("collect approvals", self.outcome == "",
            Wait("awaiting approver",
                On("decision", ApprovalHandler(
                    self.next_approver,
                    f"{self.requester} wants to buy {self.item} for {self.amount}",
                    self.record,
                )),
                Timeout("approver silent", REMIND_AFTER, Step("remind", self.remind)),
            ),
        )
        yield If(self.outcome == "approved", "approved",
            Step("place order", self.place_order),
        ).Else("not approved",
            Step("tell requester", self.tell_requester),
        )

    def record(self, decision: Decision) -> None:
        self.decisions.append(decision)
        self.reminders = 0
        verb = "approved" if decision.approve else "rejected"
        self.history.append(f"{decision.approver} {verb}" + (f": {decision.comment}"
                                                             if decision.comment else ""))
        if not decision.approve:
            self.outcome = "rejected"
        elif len(self.decisions) == len(self.approvers):
            self.outcome = "approved"

    def remind(self) -> None:
        if self.reminders >= MAX_REMINDERS:
            self.outcome = "expired"
            self.history.append(f"{self.next_approver} never answered: expired")
        else:
            self.reminders += 1
            self.history.append(f"reminded {self.next_approver}")

    def place_order(self) -> None:
        self.ordered = True
        self.history.append(f"ordered {self.item}")

    def tell_requester(self) -> None:
        self.history.append(f"told {self.requester}: {self.outcome}")


def main() -> None:
    """Approve an expensive purchase through the pure core, answering from the inbox."""
    from genflow import handle_callback, new_state, resume

    purchase = Purchase(requester="ada", item="a 3D printer", amount=Decimal("1800"))
    state = new_state("purchase-1", purchase)
    resume(purchase, state)
    for approver in ("lead", "finance"):
        [item] = INBOX.for_approver(approver)
        print(f"inbox of {approver}: {item.subject!r} (token {item.token})")
        out = handle_callback(item.req, purchase, state, {"approver": approver, "approve": True})
        resume(purchase, state)
        print(f"  -> {out}")
    print("history:", "; ".join(purchase.history))
    print(f"inbox now holds {len(INBOX.items)} requests; instance {state.status.value}")


if __name__ == "__main__":
    main()
