"""`WorkflowMachine`: a hypothesis `RuleBasedStateMachine` for one workflow.

Subclass it, set `workflow` (and optionally `start`, `payloads`, `types`,
`unexpected`, `ignore`, `allow`, `services`), and use its `TestCase`:

    class PizzaMachine(WorkflowMachine):
        workflow = PizzaOrder

    TestPizza = PizzaMachine.TestCase

The machine drives one instance that never stops. Its rule `send_event`
delivers an event drawn by `genflow.testing.events` (sometimes one nobody
waits for); after each step it checks what `check_replay` checks on the
uninterrupted run: every distinct data the instance reaches is validated and
its definition walked in the determinism sandbox, events nobody waits for are
refused cleanly, nothing fails. At teardown the events sent are checked in
full (`check_replay`: saved and reloaded at every checkpoint, crashed after
each checkpoint and, with services, inside each call), with `reset()` called
before each of those runs so that they meet fresh fakes, as the machine's own
run did. Add your own rules and invariants: `self.data` and `self.state` are
the instance, `self.send(event, payload)` delivers to it.

`cheap = True` trades all that for speed: no sandbox or validation per data
and no crash runs, but a second copy of the instance, saved and reloaded at
every checkpoint, driven in lockstep and compared after every step (the two
copies share whatever outside fakes the steps use: use it for workflows whose
steps have no outside effects, or whose effects are keyed by idempotency key).
A copy that keeps moving where the other stopped is stopped after a few dozen
moves, with a message that says so.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from genflow.codec import converter, loads
from genflow.state import State
from genflow.testing.checker import DataWatch, check_replay
from genflow.testing.compare import differences
from genflow.testing.problems import failure_problem, misdelivery_problems, same_instance
from genflow.testing.records import Outcome, positions
from genflow.testing.run import FAILED, Run
from genflow.testing.scenario import Scenario, Send, as_send
from genflow.testing.strategies import _start_strategy, can_send, events
from genflow.testing.words import outcome_words, positions_words

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
    #: data fields that may differ between runs
    ignore: ClassVar[Iterable[str]] = ()
    #: reads the determinism sandbox lets definition() make (see genflow.testing.sandbox)
    allow: ClassVar[Iterable[str]] = ()
    #: FakeServices whose effects must happen once (reset before each run)
    services: ClassVar[Sequence[Any]] = ()
    #: replay every checkpoint in other interpreters at teardown (see check_replay)
    cross_process: ClassVar[bool | int] = False
    #: the lockstep copy instead of the full check (see the module docstring)
    cheap: ClassVar[bool] = False
    instance_id: ClassVar[str] = "test-1"
    max_moves: ClassVar[int] = 1_000

    def __init__(self) -> None:
        super().__init__()
        self._scenario: Scenario | None = None
        self._plain: Run | None = None
        self._reloaded: Run | None = None
        self._watch: DataWatch | None = None

    def reset(self) -> None:
        """Put your fakes of outside systems back as they start (override it).
        Called before the machine's instance starts and before each run of the
        teardown check."""

    def _reset_all(self) -> None:
        self.reset()
        for service in self.services:
            service.reset()

    # -- the instance ------------------------------------------------------------------

    @initialize(data=st.data())
    def start_instance(self, data: Any) -> None:
        cls = type(self).workflow
        self._reset_all()
        start = data.draw(_start_strategy(cls, type(self).start), label="start")
        self._scenario = Scenario(cls, converter.unstructure(start), [], self.instance_id,
                                  self.reset, tuple(self.services))
        if not self.cheap:
            self._watch = DataWatch(self._scenario, allow=self.allow)
        self._plain = Run(self._scenario, policy="plain", max_moves=self.max_moves,
                          on_mark=self._watch, services=self.services).run()
        if self.cheap:
            self._reloaded = Run(self._scenario, policy="reload", max_moves=self.max_moves,
                                 twin=self._plain).run()
        self._compare()

    @property
    def data(self) -> Any:
        """The instance's data."""
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
        """Deliver one event (to both copies, when cheap); returns the instance's outcome."""
        assert self._plain is not None
        send = as_send(event) if payload is None and thread is None else Send(event, payload,
                                                                              thread)
        outcome = self._plain.send(send)
        if self._reloaded is not None:
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
        plain, scenario = self._plain, self._scenario
        assert plain is not None and scenario is not None
        if self._watch is not None and self._watch.problem is not None:
            raise AssertionError(self._watch.problem.text())
        if plain.failure is not None and plain.failure.kind != FAILED:
            problem = failure_problem(plain, plain.failure, scenario.with_events(plain.events))
            raise AssertionError(problem.text())
        for problem in misdelivery_problems(plain):
            raise AssertionError(problem.text())
        if self._reloaded is not None:
            self._compare_copies(plain, self._reloaded)

    def _compare_copies(self, plain: Run, other: Run) -> None:
        what = "the copy saved and reloaded at every checkpoint"
        if other.lost:
            lost = other.lost[0].difference
            raise AssertionError(f"{what} loses data: "
                                 + lost.words(("in memory", "after dumps/loads")))
        if other.failure is not None and not (
                other.failure.kind == FAILED and plain.failure is not None
                and plain.failure.kind == FAILED):
            raise AssertionError(f"{what} failed: {other.failure.message}")
        if not same_instance(plain.blob(), other.blob(), self.ignore):
            mine, _ = loads(plain.blob())
            theirs, _ = loads(other.blob())
            lines = [f"{what} differs from the one that never stopped:",
                     f"  never stopped: {positions_words(positions(plain.state))}",
                     f"  reloaded:      {positions_words(positions(other.state))}"]
            lines.extend("  field " + d.words(("never stopped", "reloaded"), quote=True)
                         for d in differences(mine, theirs, ignore=self.ignore))
            raise AssertionError("\n".join(lines))
        for a, b in zip(plain.outcomes, other.outcomes, strict=False):
            if not a.same_as(b):
                raise AssertionError(f"event #{a.number} {a.send.event!r}: never stopped, "
                                     f"{outcome_words(a)}; reloaded, {outcome_words(b)}")

    def teardown(self) -> None:
        if sys.exc_info()[0] is not None:
            return  # a rule or invariant failed (hypothesis calls teardown in a `finally`)
        if self.cheap or self._scenario is None or self._plain is None:
            return
        later = self._watch.later() if self._watch is not None else None
        if later is not None:  # a data saved on the way now gives another shape
            raise AssertionError(later.text())
        result = check_replay(self._scenario.with_events(self._plain.events),
                              determinism=False, ignore=self.ignore, allow=self.allow,
                              reset=self.reset, services=self.services,
                              cross_process=self.cross_process, shrink=False,
                              max_moves=self.max_moves)
        result.raise_for_problems()
