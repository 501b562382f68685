"""`WorkflowMachine`: a hypothesis `RuleBasedStateMachine` for one workflow.

Subclass it, set `workflow` (and optionally `start`, `payloads`, `types`,
`unexpected`, `ignore`, `full_check`), and use its `TestCase`:

    class PizzaMachine(WorkflowMachine):
        workflow = PizzaOrder

    TestPizza = PizzaMachine.TestCase

The machine drives two copies of one instance in lockstep: one never stopped,
one saved and reloaded at every checkpoint. Its rule `send_event` delivers an
event drawn by `genflow.testing.events` (sometimes one nobody waits for), and
its invariant checks that both copies are the same and that refusals changed
nothing. Add your own rules and invariants: `self.data` and `self.state` are
the uninterrupted instance, `self.send(event, payload)` delivers to both.
With `full_check = True`, teardown also runs `assert_replay_equivalent` on the
events sent (a crash at each checkpoint in turn: thorough, slower).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from genflow.codec import converter
from genflow.state import State
from genflow.testing.checker import assert_replay_equivalent
from genflow.testing.problems import same_instance
from genflow.testing.records import Outcome
from genflow.testing.run import Run
from genflow.testing.scenario import Scenario, Send, as_send
from genflow.testing.strategies import _start_strategy, can_send, events

__all__ = ["WorkflowMachine"]


class WorkflowMachine(RuleBasedStateMachine):
    """Configure by class attributes; see the module docstring."""

    #: the workflow class (required)
    workflow: ClassVar[type]
    #: start data: an instance, a callable making one, a strategy, or None (defaults)
    start: ClassVar[Any] = None
    #: strategies for payloads, by event name, and by type
    payloads: ClassVar[Mapping[str, Any]] = {}
    types: ClassVar[Mapping[Any, Any]] = {}
    #: chance of an event nobody waits for
    unexpected: ClassVar[float] = 0.1
    #: data fields that may differ between the copies
    ignore: ClassVar[Iterable[str]] = ()
    #: at teardown, also crash at each checkpoint in turn (`assert_replay_equivalent`)
    full_check: ClassVar[bool] = False
    instance_id: ClassVar[str] = "test-1"

    def __init__(self) -> None:
        super().__init__()
        self._scenario: Scenario | None = None
        self._plain: Run | None = None
        self._reloaded: Run | None = None

    # -- the instance ------------------------------------------------------------------

    @initialize(data=st.data())
    def start_instance(self, data: Any) -> None:
        cls = type(self).workflow
        start = data.draw(_start_strategy(cls, type(self).start), label="start")
        self._scenario = Scenario(cls, converter.unstructure(start), [], self.instance_id)
        self._plain = Run(self._scenario, policy="plain").run()
        self._reloaded = Run(self._scenario, policy="reload").run()
        self._compare()

    @property
    def data(self) -> Any:
        """The uninterrupted instance's data."""
        assert self._plain is not None, "the machine has not started yet"
        return self._plain.wf

    @property
    def state(self) -> State:
        assert self._plain is not None, "the machine has not started yet"
        return self._plain.state

    @property
    def sent(self) -> list[Send]:
        return list(self._plain.events) if self._plain is not None else []

    def send(self, event: Any, payload: Any = None, thread: str | None = None) -> Outcome | None:
        """Deliver one event to both copies; returns the uninterrupted copy's outcome."""
        assert self._plain is not None and self._reloaded is not None
        send = as_send(event) if payload is None and thread is None else Send(event, payload,
                                                                              thread)
        outcome = self._plain.send(send)
        self._reloaded.send(send)
        self._compare()
        return outcome

    # -- rules and invariants ---------------------------------------------------------------

    @rule(data=st.data())
    def send_event(self, data: Any) -> None:
        assert self._plain is not None
        if not can_send(self._plain.wf, self._plain.state, self.unexpected):
            return
        strategy = events(self._plain.wf, self._plain.state, payloads=dict(self.payloads),
                          types=dict(self.types), unexpected=self.unexpected)
        self.send(data.draw(strategy, label="event"))

    @invariant()
    def replay_equivalent(self) -> None:
        if self._plain is not None:
            self._compare()

    def _compare(self) -> None:
        plain, other = self._plain, self._reloaded
        assert plain is not None and other is not None
        if plain.failure is not None:
            raise AssertionError(f"the workflow failed: {plain.failure.message}")
        if plain.misdeliveries:
            outcome, why = plain.misdeliveries[0]
            raise AssertionError(f"event {outcome.send} was "
                                 f"{'accepted' if outcome.accepted else 'refused'}, but {why}")
        if other.lost:
            lost = other.lost[0].difference
            raise AssertionError(f"{lost.path!r} is {lost.before!r} in memory but "
                                 f"{lost.after!r} after dumps/loads: it is not saved")
        if other.failure is not None:
            raise AssertionError(f"reloaded at every checkpoint, the workflow failed: "
                                 f"{other.failure.message}")
        if not same_instance(plain.blob(), other.blob(), frozenset(self.ignore)):
            raise AssertionError(
                "the instance saved and reloaded at every checkpoint differs from the one that "
                f"never stopped:\n  never stopped: {plain.state}\n  reloaded:      {other.state}"
            )
        mine = [(o.accepted, o.error_type, o.output) for o in plain.outcomes]
        theirs = [(o.accepted, o.error_type, o.output) for o in other.outcomes]
        if mine != theirs:
            raise AssertionError(f"events got other outcomes after reloads: {mine} != {theirs}")

    def teardown(self) -> None:
        if self.full_check and self._scenario is not None and self._plain is not None:
            assert_replay_equivalent(self._scenario.with_events(self._plain.events),
                                     ignore=self.ignore, shrink=False)
