"""A workflow for crash tests: each step records its execution in a log file
outside the store, so a test can tell which steps ran more than once."""

from __future__ import annotations

import time

import attrs

import genflow
from genflow import For, Step, Timeout, Wait

STEPS = 24


@genflow.workflow("crash-steps")
@attrs.define
class CrashSteps:
    log_path: str = ""
    pause: float = 0.004
    n: int = 0
    done: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("first half", self.n < STEPS // 2, Step("work", self.work))
        yield Wait("breather", Timeout("no rush", 0, Step("after breather", self.work)))
        yield For("second half", self.n < STEPS + 1, Step("more work", self.work))

    def work(self) -> None:
        key = genflow.current_step().idempotency_key
        if self.log_path:
            with open(self.log_path, "a") as log:  # the outside world: not rolled back
                log.write(key + "\n")
        time.sleep(self.pause)
        self.done.append(key)
        self.n += 1
