"""Phone verification by SMS: three tries, one deadline.

The workflow texts a code to a phone and waits for the user to type it back.
They have three tries, all within `WITHIN` (three minutes) of the text: the
deadline is computed once, by the step that sends the code, and every wait
uses it (`Timeout("expired", at=self.deadline, ...)`). A wrong code does not
buy more time.

The deadline is data because the definition cannot read the clock (a replay
must take the same branches): the step reads the engine's clock through
`current_step().now`, a `FakeClock` in tests. The timer is declared with
`raises=CodeExpired`: firing, it fails the thread at the wait, and the `Catch`
handles it, as a `try`/`except` around the tries would.

The code is derived from the step's idempotency key, so a step that runs again
after a crash (before its checkpoint was saved) texts the same code: the user
never holds a code that no longer works. `Gateway` stands in for the SMS
provider and keeps every text it sends.

Run it: ``python -m examples.sms_verification``.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import attrs

import genflow
from genflow import For, On, Step, Timeout, Try, Wait, current_step

__all__ = ["GATEWAY", "MAX_TRIES", "WITHIN", "CodeExpired", "Gateway", "SmsVerification"]

#: How long the code is good for, from the moment it is sent.
WITHIN = dt.timedelta(minutes=3)
#: Codes the user may type before the verification fails.
MAX_TRIES = 3


class Gateway:
    """An in-memory stand-in for the SMS provider: `sent` holds (phone, text)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def text(self, phone: str, message: str) -> None:
        self.sent.append((phone, message))

    def clear(self) -> None:
        self.sent.clear()


GATEWAY = Gateway()


class CodeExpired(Exception):
    """The deadline passed before a right code came back."""


@genflow.workflow("sms-verification")
@attrs.define
class SmsVerification:
    phone: str = ""
    code: str = ""
    deadline: dt.datetime | None = None
    tries: list[str] = attrs.field(factory=list)
    outcome: str = ""  # "verified", "wrong code", "expired"

    def definition(self):
        yield Step("send code", self.send_code)
        yield Try("verify",
            For("tries", self.outcome == "" and len(self.tries) < MAX_TRIES,
                Wait("code?",
                    On("code", self.check),
                    Timeout("expired", at=self.deadline, raises=CodeExpired),
                ),
            ),
        ).Catch("too late", Step("note expiry", self.note_expiry), errors=CodeExpired)
        yield Step("tell the user", self.tell)

    def send_code(self) -> None:
        step = current_step()
        digest = hashlib.sha256(step.idempotency_key.encode()).digest()
        self.code = f"{int.from_bytes(digest[:4], 'big') % 10**6:06d}"
        self.deadline = step.now + WITHIN
        GATEWAY.text(self.phone, f"Your code is {self.code}")

    def check(self, code: str) -> str:
        self.tries.append(code)
        if code == self.code:
            self.outcome = "verified"
        elif len(self.tries) == MAX_TRIES:
            self.outcome = "wrong code"
        return self.outcome or f"wrong code, {MAX_TRIES - len(self.tries)} tries left"

    def note_expiry(self) -> None:
        self.outcome = "expired"

    def tell(self) -> None:
        words = {"verified": "Your phone is verified.",
                 "wrong code": "Too many wrong codes: ask for a new one.",
                 "expired": "The code expired: ask for a new one."}
        GATEWAY.text(self.phone, words[self.outcome])


def main() -> None:
    """Verify one phone on the second try, and let another's code expire."""
    from genflow import Engine
    from genflow.clock import FakeClock
    from genflow.stores import MemoryStore

    clock = FakeClock()
    engine = Engine(MemoryStore(), [SmsVerification], clock=clock)
    ada = engine.start(SmsVerification(phone="+44 1"), id="ada")
    print(engine.send(ada, "code", "000000"))
    print(engine.send(ada, "code", engine.get(ada).data.code))
    bob = engine.start(SmsVerification(phone="+44 2"), id="bob")
    engine.send(bob, "code", "000000")
    clock.advance(WITHIN)
    engine.run_due()
    for instance_id in (ada, bob):
        instance = engine.get(instance_id)
        print(f"{instance_id}: {instance.data.outcome}, tries {instance.data.tries}")
    print(GATEWAY.sent[-1])


if __name__ == "__main__":
    main()
