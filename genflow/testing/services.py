"""`FakeService`: an outside system for tests, that does each request once per idempotency key.

A step that charges a card, sends a mail or books a slot talks to a system the
instance's data does not hold. After a crash the step runs again, so the
system sees the request twice; a real payment API keeps it to one charge when
both requests carry the same idempotency key (`genflow.current_step().idempotency_key`
is the same for every run of one execution of a step, and differs for the next
execution). A `FakeService` behaves like such a system:

    bank = FakeService("bank")

    def charge(self) -> None:                   # a step
        self.receipt = bank.charge(self.total, key=genflow.current_step().idempotency_key)

Any attribute is an operation: `bank.charge(...)` records an `Effect` and
returns a result (``"bank-1"``, the same for a repeated key, which has no
effect of its own). Without a key every call is an effect. `faults` script
failures: `Fault("send")` makes the next `send` raise before it does anything;
`Fault("send", after_effect=True)` makes it raise *after* the effect happened,
as a system that did the work but whose answer was lost.

Give services to the checker (`check_replay(..., services=[bank])`, or
`runs(..., services=[bank])`): they are reset before each run, restored to the
moment of each simulated crash, and every run must end with the same effects
as the run that never stopped. The checker also crashes inside each call of
user code right after each of its effects (see `genflow.testing.driver`), so a
step that repeats an effect after a crash is reported, naming the effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from genflow.testing.driver import current_call, effect_happened

__all__ = ["Effect", "FakeService", "Fault", "ServiceState"]


@attrs.frozen
class Effect:
    """One thing an outside system did."""

    service: str
    operation: str
    args: str  # the arguments, as the call gave them (repr)
    key: str | None = None
    #: who made it, in a checker's run: (the execution's key, the attempt's number)
    by: Any = attrs.field(default=None, eq=False)

    def words(self) -> str:
        key = f", key={self.key!r}" if self.key is not None else ""
        return f"{self.service}.{self.operation}({self.args}{key})"


@attrs.frozen
class Fault:
    """A scripted failure of the next call of `operation` (None: any operation)."""

    operation: str | None = None
    after_effect: bool = False
    error: BaseException = attrs.field(factory=lambda: ConnectionError("the service is down"))


@attrs.frozen
class ServiceState:
    """What a service has done and has left to do, at one moment."""

    effects: tuple[Effect, ...]
    done: tuple[tuple[tuple[str, str], str], ...]
    faults: tuple[Fault, ...]


class FakeService:
    """See the module docstring."""

    def __init__(self, name: str = "service", *, faults: Iterable[Fault] = ()):
        self.name = name
        self._script = tuple(faults)
        self._faults = list(self._script)
        self._effects: list[Effect] = []
        self._done: dict[tuple[str, str], str] = {}

    def __getattr__(self, operation: str) -> Any:
        if operation.startswith("_"):
            raise AttributeError(operation)

        def call(*args: Any, key: str | None = None, **kwargs: Any) -> str:
            return self.call(operation, *args, key=key, **kwargs)

        call.__name__ = operation
        return call

    def call(self, operation: str, *args: Any, key: str | None = None, **kwargs: Any) -> str:
        """Do `operation` once per `key` (every time without one); returns its result."""
        if key is not None and (operation, key) in self._done:
            return self._done[(operation, key)]  # seen: the first answer, no new effect
        fault = self._fault(operation)
        if fault is not None and not fault.after_effect:
            raise fault.error
        shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        self._effects.append(Effect(self.name, operation, shown, key, current_call()))
        result = f"{self.name}-{len(self._effects)}"
        if key is not None:
            self._done[(operation, key)] = result
        effect_happened()  # a test may crash the calling step right here
        if fault is not None:
            raise fault.error  # the work is done, the answer is lost
        return result

    def _fault(self, operation: str) -> Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.operation in (None, operation):
                return self._faults.pop(index)
        return None

    @property
    def effects(self) -> list[Effect]:
        return list(self._effects)

    def count(self, operation: str | None = None) -> int:
        return sum(1 for e in self._effects if operation in (None, e.operation))

    def reset(self) -> None:
        """Forget every effect; the scripted faults are due again."""
        self._effects.clear()
        self._done.clear()
        self._faults = list(self._script)

    def snapshot(self) -> ServiceState:
        return ServiceState(tuple(self._effects), tuple(self._done.items()), tuple(self._faults))

    def restore(self, state: ServiceState) -> None:
        self._effects = list(state.effects)
        self._done = dict(state.done)
        self._faults = list(state.faults)

    def __repr__(self) -> str:
        return f"FakeService({self.name!r}, {len(self._effects)} effects)"
