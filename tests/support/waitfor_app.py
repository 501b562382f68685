"""Workflows of the WaitFor-with-a-timeout tests (tests/core, tests/engine, tests/toolkit):
a human approval with a deadline, written with `WaitFor(..., timeout=Timeout(...))`
and, for comparison, with the `Wait` + `Timeout` it stands for."""

from __future__ import annotations

import datetime as dt

import attrs

import genflow
from genflow import For, Go, On, Step, Timeout, Try, Wait, WaitFor, current_step

#: how long an approver has
DEADLINE = dt.timedelta(days=2)


class Expired(Exception):
    """Nobody approved in time (a timeout's `raises=`)."""


@genflow.workflow("wft-approval")
@attrs.define
class Approval:
    """The approval arrives in another thread (an inbox); the main thread waits
    for the flag it sets, escalating when the deadline passes first."""

    approved: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("inbox", self.inbox, daemon=True)
        yield WaitFor("approved?", self.approved, self.on_approved,
                      timeout=Timeout("expired", DEADLINE, Step("escalate", self.escalate)))
        yield Step("close", self.close)

    def inbox(self):
        yield Wait("decision", On("approve", self.approve))

    def approve(self, by: str) -> None:
        self.approved = True
        self.log.append(f"approve {by}")

    def on_approved(self) -> None:
        self.log.append("approved")

    def escalate(self) -> None:
        self.log.append("escalate")

    def close(self) -> None:
        self.log.append("close")


@genflow.workflow("wft-approval-as-wait")
@attrs.define
class ApprovalAsWait:
    """`Approval` as users wrote it before WaitFor took a timeout: a Wait with a Timeout."""

    approved: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Wait("approved?", On("approve", self.approve),
                   Timeout("expired", DEADLINE, Step("escalate", self.escalate)))
        yield Step("close", self.close)

    def approve(self, by: str) -> None:
        self.approved = True
        self.log.append(f"approve {by}")
        self.log.append("approved")

    def escalate(self) -> None:
        self.log.append("escalate")

    def close(self) -> None:
        self.log.append("close")


@genflow.workflow("wft-strict")
@attrs.define
class Strict:
    """A deadline that raises: caught by a Try when `caught`, else it fails the instance."""

    caught: bool = True
    approved: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("inbox", self.inbox, daemon=True)
        wait = WaitFor("approved?", self.approved,
                       timeout=Timeout("expired", DEADLINE, raises=Expired))
        if self.caught:
            yield Try("in time", wait).Catch("too late", Step("refuse", self.refuse),
                                             errors=Expired)
        else:
            yield wait
        yield Step("close", self.close)

    def inbox(self):
        yield Wait("decision", On("approve", self.approve))

    def approve(self) -> None:
        self.approved = True

    def refuse(self) -> None:
        self.log.append(f"refuse: {current_step().failure.type}")

    def close(self) -> None:
        self.log.append("close")


@genflow.workflow("wft-deadline")
@attrs.define
class Deadline:
    """A deadline a step computes (`at=`): the timer fires at that time."""

    deadline: dt.datetime | None = None
    approved: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Step("set the deadline", self.set_deadline)
        yield Go("inbox", self.inbox, daemon=True)
        yield WaitFor("approved?", self.approved,
                      timeout=Timeout("expired", at=self.deadline))
        yield Step("close", self.close)

    def set_deadline(self) -> None:
        self.deadline = current_step().now + dt.timedelta(hours=3)

    def inbox(self):
        yield Wait("decision", On("approve", self.approve))

    def approve(self) -> None:
        self.approved = True

    def close(self) -> None:
        self.log.append("approved" if self.approved else "expired")


@genflow.workflow("wft-strict-as-wait")
@attrs.define
class StrictAsWait:
    """`Strict` (caught) as a Wait with a Timeout that raises."""

    approved: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Try("in time", Wait("approved?", On("approve", self.approve),
                                  Timeout("expired", DEADLINE, raises=Expired))).Catch(
            "too late", Step("refuse", self.refuse), errors=Expired)
        yield Step("close", self.close)

    def approve(self) -> None:
        self.approved = True

    def refuse(self) -> None:
        self.log.append(f"refuse: {current_step().failure.type}")

    def close(self) -> None:
        self.log.append("close")


@genflow.workflow("wft-reminders")
@attrs.define
class Reminders:
    """A reminder a day, three at most, until someone approves: a WaitFor with
    a timeout in a loop, each round's timer due a day after that round began."""

    approved: bool = False
    reminders: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("inbox", self.inbox, daemon=True)
        yield For("rounds", not self.approved and self.reminders < 3,
                  WaitFor("approved?", self.approved,
                          timeout=Timeout("a day", dt.timedelta(days=1),
                                          Step("remind", self.remind))))
        yield Step("close", self.close)

    def inbox(self):
        yield Wait("decision", On("approve", self.approve))

    def approve(self) -> None:
        self.approved = True
        self.log.append("approve")

    def remind(self) -> None:
        self.reminders += 1
        self.log.append(f"remind {self.reminders}")

    def close(self) -> None:
        self.log.append("close")


#: the blob genflow wrote (commit 978b823, before WaitFor took a timeout) for
#: `OldBlob` with no timeout, at 2030-01-01 on a FakeClock: the main thread at
#: the WaitFor with no events, the inbox at its Wait
BEFORE_TIMEOUTS = bytes.fromhex(
    "95a767656e666c6f7703ac7766742d6f6c642d626c6f6282a8617070726f766564c2a36c6f67909"
    "5a3692d31ac7766742d6f6c642d626c6f62a777616974696e67029299a65f6d61696e5fa961707072"
    "6f7665643fb177616974696e675f636f6e646974696f6e01910190a090b9323033302d30312d3031"
    "5430303a30303a30302b30303a3030dc0010a5696e626f78a86465636973696f6ead77616974696e"
    "675f6576656e740291009197a7617070726f7665a57365747570c2a0c002c0a09193a5696e626f78"
    "a5696e626f789100b9323033302d30312d30315430303a30303a30302b30303a303000a0c0a0a090c3")


@genflow.workflow("wft-old-blob")
@attrs.define
class OldBlob:
    """What the blob above was saved from, now with a timeout on its WaitFor."""

    approved: bool = False
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("inbox", lambda: Wait("decision", On("approve")), daemon=True)
        yield WaitFor("approved?", self.approved,
                      timeout=Timeout("expired", DEADLINE, Step("escalate", self.escalate)))

    def escalate(self) -> None:
        self.log.append("escalate")
