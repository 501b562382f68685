"""A seat held for a customer while they pay, and cancellation with cleanup.

A ticket shop holds a seat the moment a customer picks it, then waits for the
payment. Three endings:

* paid: the ticket is issued;
* the hold runs out (`HOLD_FOR`): the seat goes back on sale;
* the order is cancelled (`Engine.cancel`, the customer closed the page, an
  operator...): the seat goes back on sale and the customer is told.

Cancellation reaches the thread as `genflow.Cancelled`, at the wait where it
stands: its handlers are torn down, then `Catch(errors=Cancelled)` runs its
steps (durably: a crash in the middle resumes them, each done once) and the
`Finally` runs, as it does on every ending. The instance is CANCELLED when
that cleanup is over.

A helper thread reminds the customer every `REMIND_EVERY` while the hold lasts.
It is a daemon (`Go(..., daemon=True)`): when the main thread ends, however it
ends, the reminders stop, and the instance does not wait for them.

`Venue` and `Mailer` stand in for the box office's seat map and the mail
service: both keep every call, and both are idempotent (a hold or a mail with
the same key is done once), so a step run again after a crash changes nothing.

Run it: ``python -m examples.seat_hold``.
"""

from __future__ import annotations

import datetime as dt

import attrs

import genflow
from genflow import Cancelled, For, Go, On, Sleep, Step, Timeout, Try, Wait, current_step

__all__ = ["HOLD_FOR", "MAILER", "REMIND_EVERY", "VENUE", "Mailer", "SeatHold", "Venue"]

#: How long a seat is held for a customer who has not paid.
HOLD_FOR = dt.timedelta(minutes=15)
#: How often the customer is reminded while the seat is held.
REMIND_EVERY = dt.timedelta(minutes=5)


class Venue:
    """The seat map: `held` maps a seat to its holder; `calls` logs every call."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}
        self.sold: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    def hold(self, seat: str, holder: str) -> None:
        self.calls.append(("hold", seat))
        self.held[seat] = holder

    def release(self, seat: str) -> None:
        self.calls.append(("release", seat))
        self.held.pop(seat, None)

    def sell(self, seat: str, holder: str) -> None:
        self.calls.append(("sell", seat))
        self.held.pop(seat, None)
        self.sold[seat] = holder

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


class Mailer:
    """The mail service: each mail is sent once per key (`sent` keeps them)."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[str, str]] = {}
        self.calls: list[str] = []

    def send(self, key: str, to: str, text: str) -> None:
        self.calls.append(key)
        self.sent.setdefault(key, (to, text))

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


VENUE = Venue()
MAILER = Mailer()


@genflow.workflow("seat-hold")
@attrs.define
class SeatHold:
    seat: str = ""
    customer: str = ""
    outcome: str = ""  # "ticketed", "expired", "cancelled"
    reminders: int = 0
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Go("reminders", self.remind_loop, daemon=True)
        yield Step("hold seat", self.hold)
        yield Try("sell",
            Wait("payment?",
                On("paid", self.on_paid, Step("issue ticket", self.issue)),
                Timeout("hold over", HOLD_FOR, Step("put back on sale", self.expire)),
            ),
        ).Catch("cancelled", Step("release seat", self.release),
                Step("tell customer", self.tell_cancelled), errors=Cancelled
        ).Finally("close", Step("log outcome", self.close))

    def remind_loop(self):
        yield For("while held", True,
            Sleep("a while", REMIND_EVERY),
            Step("remind", self.remind),
        )

    # -- steps: each calls the outside once, with a key a retry reuses --

    def hold(self) -> None:
        VENUE.hold(self.seat, self.customer)

    def on_paid(self) -> None:
        self.outcome = "ticketed"

    def issue(self) -> None:
        VENUE.sell(self.seat, self.customer)
        MAILER.send(current_step().idempotency_key, self.customer, f"your ticket: {self.seat}")

    def expire(self) -> None:
        self.outcome = "expired"
        VENUE.release(self.seat)

    def release(self) -> None:
        self.outcome = "cancelled"
        VENUE.release(self.seat)

    def tell_cancelled(self) -> None:
        MAILER.send(current_step().idempotency_key, self.customer,
                    f"your order of seat {self.seat} was cancelled")

    def remind(self) -> None:
        self.reminders += 1
        MAILER.send(current_step().idempotency_key, self.customer,
                    f"seat {self.seat} is still held for you")

    def close(self) -> None:
        self.log.append(f"{self.outcome} after {self.reminders} reminders")


def main() -> None:
    """Cancel one order while its seat is held; pay for another."""
    from genflow import Engine
    from genflow.clock import FakeClock
    from genflow.stores import MemoryStore

    clock = FakeClock()
    engine = Engine(MemoryStore(), [SeatHold], clock=clock)
    first = engine.start(SeatHold(seat="A1", customer="ada@example.com"), id="first")
    second = engine.start(SeatHold(seat="B2", customer="bob@example.com"), id="second")
    clock.advance(REMIND_EVERY)
    engine.run_due()  # a reminder each
    engine.cancel(first)
    engine.send(second, "paid")
    for instance_id in (first, second):
        instance = engine.get(instance_id)
        print(f"{instance_id}: {instance.status.value}; {instance.data.log}")
    print(f"held {VENUE.held}, sold {VENUE.sold}")


if __name__ == "__main__":
    main()
