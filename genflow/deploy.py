"""The deploy check: will the code now installed still run every in-flight instance?

Run it against the store before new code serves traffic. Each in-flight
instance is loaded and its definition replayed on its own data with the
installed classes (nothing runs, nothing is written); every thread whose saved
statement, starting `Go` or awaited event is gone is reported, grouped by
workflow and statement.

In flight means the installed code may still have to move it: waiting and
resuming instances; failed ones, because `genflow retry` runs them again with
whatever code is deployed (cancel one to give it up for good, and it stops
counting); cancelled ones only while they still owe a handler's teardown.
Finished instances, and cancelled ones with nothing left to tear down, are not
looked at.

A statement the new code lacks cannot be repaired with the new code: `move`,
`send` and `retry` all replay the definition to find where the thread stands,
and fail as the check says. So the advice is to keep the old name until the
check is clean: with the old code still deployed, let the instances move past
it or `genflow move` them off it, then deploy.
"""

from __future__ import annotations

import multiprocessing
import textwrap
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs
import msgpack

from genflow.codec import loads
from genflow.errors import ArgumentError, GenflowError, NonDeterminismError
from genflow.registry import not_installed, registered, workflow_name
from genflow.runtime import diagnose
from genflow.state import WorkflowStatus
from genflow.stores.base import InstanceRecord, Store

__all__ = ["CheckReport", "Problem", "check_store"]

#: statuses of instances that may still move: failed ones by `genflow retry`, cancelling
#: ones (their cleanup runs), cancelled ones while they owe teardowns (an older genflow
#: wrote those; see the module's docstring)
IN_FLIGHT = (WorkflowStatus.RESUMING, WorkflowStatus.WAITING, WorkflowStatus.FAILED,
             WorkflowStatus.CANCELLING, WorkflowStatus.CANCELLED)

#: Problem.statement for problems that are not about one statement
NOT_INSTALLED, BAD_BLOB, BAD_DEFINITION = "(workflow)", "(blob)", "(definition)"


@attrs.frozen
class Problem:
    """One thread of one instance that the installed code cannot move on."""

    instance_id: str
    workflow: str
    statement: str  # the missing statement, or NOT_INSTALLED / BAD_BLOB / BAD_DEFINITION
    thread: str
    message: str
    status: str = WorkflowStatus.WAITING.value  # the instance's stored status


@attrs.frozen
class CheckReport:
    checked: int  #: in-flight instances looked at
    problems: tuple[Problem, ...]
    seconds: float
    #: things the caller should know that are not problems (a --workflow that names nothing)
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def grouped(self) -> dict[tuple[str, str], list[Problem]]:
        """Problems by (workflow, statement), most instances first."""
        groups: dict[tuple[str, str], list[Problem]] = {}
        for problem in self.problems:
            groups.setdefault((problem.workflow, problem.statement), []).append(problem)
        return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def format(self, examples: int = 3) -> str:
        """The report in words, for the command line."""
        if self.ok:
            return (f"ok: the installed code can move on all {self.checked:,} in-flight "
                    f"instance(s) (checked in {self.seconds:.2f}s)")
        instances = len({p.instance_id for p in self.problems})
        lines = [f"{instances:,} of {self.checked:,} in-flight instance(s) would break "
                 "with the installed code:"]
        kinds: set[str] = set()
        for (workflow, statement), problems in self.grouped().items():
            ids = sorted({p.instance_id for p in problems})
            shown = ", ".join(ids[:examples]) + (", ..." if len(ids) > examples else "")
            failed = len({p.instance_id for p in problems
                          if p.status == WorkflowStatus.FAILED.value})
            also = f"; {failed:,} of them failed (`genflow retry` would break)" if failed else ""
            lines.append(f"  workflow {workflow!r}, statement {statement!r}: "
                         f"{len(ids):,} instance(s) ({shown}){also}")
            lines.append(f"    {problems[0].message}")
            kinds.add(statement if statement in _ADVICE else "")
        lines.extend(textwrap.fill(_ADVICE[kind], width=88, subsequent_indent="     ")
                     for kind in sorted(kinds))
        return "\n".join(lines)


#: What to do, by kind of problem ("": a statement, Go or event the new code lacks).
_ADVICE = {
    "": "fix: keep the old name in the code until this check is clean. The new code cannot "
        "move these instances (`move`, `send` and `retry` fail as the check did): with the "
        "old code still deployed, let them move past it or `genflow move` them off it, then "
        "check again.",
    NOT_INSTALLED: "fix: import the module that defines the workflow (`genflow --app MODULE "
                   "check`; in Python, import it before the check), or keep it installed "
                   "until its instances finish or are cancelled.",
    BAD_BLOB: "fix: the stored state does not load with the installed classes: make the "
              "classes read it (field defaults, the same field types), then check again.",
    BAD_DEFINITION: "fix: the definition raised when replayed on the instance's data: make it "
                    "handle that data, then check again.",
}


def check_store(store: Store, workflows: Mapping[str, type] | Iterable[type] | None = None, *,
                workflow: str | None = None, processes: int = 1) -> CheckReport:
    """Check every in-flight instance (of `workflow`) against the installed code.

    `workflows` are the classes to check with, or a name -> class mapping
    (default: every registered workflow); an instance whose workflow is not
    among them is a problem too. With `processes` > 1, forked processes share
    the replays (each reopens the store and scans its own shard of the ids);
    the store must support `reopen`.
    """
    if processes < 1:
        raise ArgumentError("processes must be at least 1")
    began = time.perf_counter()
    if workflows is None:
        classes = registered()
    elif isinstance(workflows, Mapping):
        classes = dict(workflows)
    else:
        classes = {workflow_name(cls): cls for cls in workflows}
    warnings: tuple[str, ...] = ()
    if workflow is not None and workflow not in classes:
        warnings = (f"{not_installed(workflow, classes)}: its instances, if any, are "
                    "reported as not installed",)
    if processes == 1:
        checked, problems = _check_share(store, workflow, classes, 0, 1)
    else:
        checked, problems = _check_in_processes(store, workflow, classes, processes)
    problems.sort(key=lambda p: (p.workflow, p.statement, p.instance_id, p.thread))
    return CheckReport(checked, tuple(problems), time.perf_counter() - began, warnings)


def _check_share(store: Store, workflow: str | None, classes: dict[str, type], index: int,
                 count: int) -> tuple[int, list[Problem]]:
    """Check the in-flight instances of shard `index` of `count`."""
    checked = 0
    problems: list[Problem] = []
    for record in _in_flight(store, workflow, None if count == 1 else (index, count)):
        found = _check_record(record, classes)
        if found is not None:
            checked += 1
            problems.extend(found)
    return checked, problems


def _check_in_processes(store: Store, workflow: str | None, classes: dict[str, type],
                        processes: int) -> tuple[int, list[Problem]]:
    """Fork `processes` checkers; each reports (count, problems) as msgpack on a pipe."""
    store.reopen().close()  # refuse a store that cannot be reopened, before forking
    ctx = multiprocessing.get_context("fork")
    pipes, workers = [], []
    for index in range(processes):
        receive, send = ctx.Pipe(duplex=False)
        worker = ctx.Process(target=_check_child,
                             args=(store, workflow, classes, index, processes, send))
        worker.start()
        send.close()
        pipes.append(receive)
        workers.append(worker)
    checked, problems = 0, list[Problem]()
    for receive, worker in zip(pipes, workers, strict=True):
        try:
            count, found = msgpack.unpackb(receive.recv_bytes())
        except EOFError:
            raise GenflowError("a deploy check process died before reporting") from None
        finally:
            worker.join()
        checked += count
        problems.extend(Problem(*fields) for fields in found)
    return checked, problems


def _check_child(store: Store, workflow: str | None, classes: dict[str, type], index: int,
                 count: int, send: Any) -> None:
    own = store.reopen()  # the parent's connection must not be used after a fork
    try:
        checked, problems = _check_share(own, workflow, classes, index, count)
        send.send_bytes(msgpack.packb([checked, [attrs.astuple(p) for p in problems]]))
    finally:
        own.close()
        send.close()


def _in_flight(store: Store, workflow: str | None, shard: tuple[int, int] | None,
               page: int = 2000) -> Iterator[InstanceRecord]:
    for status in IN_FLIGHT:
        after = None
        while True:
            rows = store.list(workflow=workflow, status=status.value, limit=page, after=after,
                              shard=shard)
            yield from rows
            if len(rows) < page:
                break
            after = rows[-1].id


def _check_record(record: InstanceRecord, classes: dict[str, type]) -> list[Problem] | None:
    """The record's problems, or None when it is not in flight after all (a
    cancelled instance that owes no teardown)."""
    def problem(statement: str, thread: str, message: str) -> Problem:
        return Problem(record.id, record.workflow, statement, thread, message, record.status)

    cancelled = record.status == WorkflowStatus.CANCELLED.value
    if cancelled and record.wake_at is None:
        return None  # nothing left for the engine to do: no event reaches it, no teardown owed
    if record.workflow not in classes:
        return [problem(NOT_INSTALLED, "", f"workflow {record.workflow!r} is not installed")]
    try:
        wf, state = loads(record.blob, classes)
    except GenflowError as exc:
        return [problem(BAD_BLOB, "", str(exc))]
    if cancelled:  # only teardowns are still owed
        state.threads = [t for t in state.threads if t.events]
        if not state.threads:
            return None
    found: list[Any] = diagnose(wf, state)
    return [
        problem(exc.statement, exc.thread, str(exc)) if isinstance(exc, NonDeterminismError)
        else problem(BAD_DEFINITION, "", str(exc))
        for exc in found
    ]
