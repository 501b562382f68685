"""What a check finds: `Problem`s, the `ReplayResult` that holds them, and its report.

A problem is written for the workflow's author: a stable `kind` to assert on,
a title that says what is wrong, the checkpoint where it shows, and lines
that say why and what to do. `ReplayResult.report()` puts them under the
event sequence that shows them (shrunk to the shortest one found).
"""

from __future__ import annotations

from typing import Any

import attrs

from genflow.state import State
from genflow.testing.records import Outcome
from genflow.testing.scenario import Scenario
from genflow.testing.words import outcome_words, short

__all__ = ["Problem", "ReplayError", "ReplayResult"]


@attrs.frozen
class Problem:
    """One thing wrong, in words a workflow author understands."""

    kind: str  # short and stable: "step ran twice", "diverged", "non-deterministic", ...
    title: str
    details: tuple[str, ...] = ()
    #: the event during which it shows (0: while starting; None: at the end)
    event: int | None = None
    #: the checkpoint where the runs part, in words
    checkpoint: str = ""

    def text(self) -> str:
        lines = [self.title]
        if self.checkpoint:
            lines.append(f"  where: {self.checkpoint}")
        lines.extend("  " + line for line in self.details)
        return "\n".join(lines)


class ReplayError(AssertionError):
    """A workflow is not replay-equivalent (or not deterministic); the message is the report."""

    def __init__(self, result: ReplayResult):
        super().__init__(result.report())
        self.result = result


@attrs.define
class ReplayResult:
    """What `check_replay` found. `data` and `state` are where the uninterrupted run ended.

    `checkpoints` counts the checkpoints of that run, `crash_runs` the runs
    that crashed (after a checkpoint, or inside a call of user code),
    `processes` the other interpreters the checkpoints were replayed in
    (cross-process check), `notes` what the check did that a reader may want to
    know (values a step chose differently when it ran again, taken as data)."""

    scenario: Scenario
    problems: list[Problem]
    outcomes: list[Outcome]
    data: Any
    state: State
    checkpoints: int
    crash_runs: int
    shrunk_from: int | None = None
    processes: int = 0
    notes: list[str] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def kinds(self) -> list[str]:
        return [p.kind for p in self.problems]

    def report(self) -> str:
        name = self.scenario.name
        cls = self.scenario.workflow.__qualname__
        if self.ok:
            extra = f", replayed in {self.processes} other processes" if self.processes else ""
            return (f"{cls} ({name!r}) is replay-equivalent on {len(self.scenario.events)} "
                    f"events: {self.checkpoints} checkpoints, {self.crash_runs} simulated "
                    f"crashes{extra}.")
        lines = [f"genflow.testing: workflow {name!r} ({cls}) failed its replay check."]
        count = len(self.scenario.events)
        what = "Event sequence"
        if self.shrunk_from is not None and self.shrunk_from != count:
            what += f" (shrunk from {self.shrunk_from} to {count} events)"
        lines.append("")
        lines.append(f"{what}, starting from {short(self.scenario.data(), 200)}:")
        outcomes = {o.number: o for o in self.outcomes}
        if not self.scenario.events:
            lines.append("  (none: the problem shows while the instance starts)")
        for number, send in enumerate(self.scenario.events, 1):
            outcome = outcomes.get(number)
            suffix = f" -> {outcome_words(outcome)}" if outcome is not None else " -> (not reached)"
            lines.append(f"  {number}. {send}{suffix}")
        for index, problem in enumerate(self.problems, 1):
            lines.append("")
            head = f"Problem {index}: " if len(self.problems) > 1 else "Problem: "
            lines.append(head + problem.text())
        return "\n".join(lines)

    def raise_for_problems(self) -> ReplayResult:
        if self.problems:
            raise ReplayError(self)
        return self
