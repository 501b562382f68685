"""The `genflow` command line: start, send, show, result, list, worker, run, cancel,
retry, move, check, history, graph, report, schedule, purge.

Workflows are found by importing the modules named with `--app` (repeatable,
or the `GENFLOW_APP` environment variable, comma-separated; a path to a `.py`
file works too). The store is `--store URL` (or `GENFLOW_STORE`): `memory:`,
`sqlite:///path.db` or `postgresql://...`, the SQLite file `genflow.db` in the
current directory by default. `--store` and `--app` may come before or after
the command.

User mistakes (an unknown workflow, instance or event, bad JSON, a payload that
does not fit, a finished instance, a wrong store URL, a missing module, a
malformed command line) print one line, `genflow: error: ...`, on stderr and
exit with status 2, never a traceback; status 1 is a finding (`check` found
instances the installed code would strand, the instance `result` waited for
failed, was cancelled or did not finish in time).

The commands that only read (list, show, result, report, check, history) open the
store read-only: they write nothing, and a missing SQLite file or a mistyped
path is an error, never a new empty store.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import genflow
from genflow.clock import system_clock
from genflow.codec import unstructure, workflow_data
from genflow.describe import describe, when
from genflow.engine import Engine, Instance
from genflow.errors import (
    CorruptStateError,
    DataError,
    DuplicateInstanceError,
    GenflowError,
    InstanceFailedError,
    InstanceNotFoundError,
    ResultTimeoutError,
    UnknownWorkflowError,
    WorkflowFinishedError,
)
from genflow.mailbox import Kept
from genflow.registry import not_installed, registered
from genflow.state import ThreadStatus, WorkflowStatus

__all__ = ["main"]

DEFAULT_STORE = "sqlite:///genflow.db"
STATUSES = [s.value for s in WorkflowStatus]


class UsageError(GenflowError):
    """A command-line mistake (bad JSON, a file that does not exist...)."""


class _Interrupted(Exception):
    """A second SIGINT/SIGTERM: stop now, without finishing the current move."""


# -- commands -----------------------------------------------------------------------------


def cmd_start(engine: Engine, args: argparse.Namespace) -> None:
    _priority_needs_queue(args)
    fields = _json(args.data, "--data") if args.data is not None else {}
    try:
        instance_id = _start(engine, args.workflow, fields, args.id, run=not args.no_run,
                             queue=args.queue, priority=args.priority,
                             if_exists=args.if_exists, deadline=args.deadline)
    except DuplicateInstanceError:
        if args.if_exists != "raise":
            raise  # (another workflow's instance under that id: the Engine's words)
        # the Engine's hint names its keyword (if_exists='return'); here it is an option
        raise DuplicateInstanceError(
            f"instance {args.id!r} already exists (to have its id back instead, start with "
            "--if-exists return)") from None
    place = engine.queues.place(instance_id) if args.queue is not None else None
    if place is not None and place.admitted_at is None:  # (as `show` heads it: queued)
        print(f"{instance_id} queued: {place.text()}")
    else:
        print(_summary(engine.get(instance_id)))


def cmd_send(engine: Engine, args: argparse.Namespace) -> None:
    if args.payload is not None and args.payload_json is not None:
        raise UsageError("give the payload once: as PAYLOAD after the event, or as --payload")
    if args.payload_json is not None:
        payload = _json(args.payload_json, "PAYLOAD")
    else:
        payload = _json(args.payload, "--payload") if args.payload is not None else None
    if args.data is not None and args.start is None:
        raise UsageError("--data is the data of --start WORKFLOW: give both (the event's "
                         "payload is PAYLOAD or --payload JSON)")
    if args.deadline is not None and args.start is None:
        raise UsageError("--deadline is the deadline of --start WORKFLOW: give both")
    start = None if args.start is None else _data(
        args.start, _json(args.data, "--data") if args.data is not None else {})
    try:
        output = engine.send(args.id, args.event, payload, thread=args.thread,
                             keep=False if args.no_keep else None, start=start,
                             deadline=args.deadline)
    except InstanceNotFoundError:
        if start is not None:
            raise
        # the Engine's hint names its keyword (start=...); here it is an option
        raise InstanceNotFoundError(
            f"no instance {args.id!r} (to start it with this event, give the workflow and "
            f"its data: --start WORKFLOW --data JSON)") from None
    print(_summary(engine.get(args.id)))
    if output is not None:
        print(_reply(output))


def _reply(output: Any) -> str:
    """A send's answer: the handler's output as JSON, or where the event was kept."""
    if isinstance(output, Kept):
        return (f"kept as message {output.seq} ({output.kept} kept): delivered when a thread "
                f"waits for {output.event!r}")
    return json.dumps(unstructure(output), default=str, ensure_ascii=False)


def cmd_result(engine: Engine, args: argparse.Namespace) -> None:
    """`Engine.result`: wait until the instance has finished (workers move it,
    this command only reads) and print its data as JSON. That it failed, was
    cancelled or did not finish within --timeout is a finding (exit status 1),
    not a mistake: a script waiting on an instance tells the three from the line."""
    try:
        data = engine.result(args.id, timeout=args.timeout)
    except (InstanceFailedError, WorkflowFinishedError, ResultTimeoutError) as exc:
        raise CheckFailed(str(exc)) from None
    print(json.dumps(unstructure(data), indent=2, default=str, ensure_ascii=False))


def cmd_show(engine: Engine, args: argparse.Namespace) -> None:
    try:
        instance = engine.get(args.id)
    except (CorruptStateError, UnknownWorkflowError) as exc:
        # an instance a worker set aside (or one this process cannot load): what
        # the row says, and why it cannot be shown whole
        record = engine.store.get(args.id)
        print(f"instance {record.id} of workflow {record.workflow!r}: {record.status.upper()}, "
              "cannot be loaded")
        print(f"  why: {exc}")
        if record.error:
            print(f"  recorded: {record.error}")
        print(f"  last changed {when(record.updated_at, system_clock())}"
              if record.updated_at else "  never changed")
        print("  to go on: repair the row's blob (or install the code that wrote it), then "
              f"`genflow retry {record.id}`")
        raise CheckFailed(f"instance {record.id!r} cannot be loaded") from exc
    if args.diagram or args.format or args.output:
        if args.json:
            raise UsageError("show takes --json or --diagram, not both")
        from genflow.render import instance_graph

        _write_diagram(instance_graph(instance.data, instance.state, error=instance.error,
                                      attempts=instance.attempts), args)
        return
    if args.json:
        print(json.dumps({"id": instance.id, "workflow": instance.workflow,
                          "status": instance.status.value, "version": instance.version,
                          "attempts": instance.attempts, "error": instance.error,
                          "wake_at": instance.wake_at, "updated_at": instance.updated_at,
                          "deadline": instance.state.deadline,
                          "data": unstructure(instance.data),
                          "state": unstructure(instance.state)},
                         indent=2, default=str, ensure_ascii=False))
        return
    print(_describe(engine, instance))
    from genflow.render.views import timeline, timeline_text

    lines = timeline_text(timeline(engine.store.journal(instance.id)))
    if lines:  # (the journal on: each step run, with its duration)
        print("  last steps (from the journal):")
        for line in lines:
            print(f"    {line}")


def cmd_list(engine: Engine, args: argparse.Namespace) -> None:
    limit = args.limit if args.limit > 0 else None
    records = _listed(engine, args, limit)
    now = engine.clock()
    schedules = {r.id for r in engine.store.list_schedules()}
    for r in records:
        details = _operating_details(engine, r, schedules)
        if r.waiting_for:
            details.append(f"waits for {', '.join(r.waiting_for)}")
        if r.wake_at is not None:
            details.append(f"wakes {when(r.wake_at, now)}")
        if r.error:
            details.append(f"error: {r.error}")
        print("\t".join([r.id, r.workflow, r.status, "; ".join(details)]).rstrip("\t"))
    if not records:
        print("no instances", file=sys.stderr)
    elif limit is not None and len(records) == limit:
        print(f"(only the first {limit}: use --limit)", file=sys.stderr)


def _listed(engine: Engine, args: argparse.Namespace, limit: int | None) -> list[Any]:
    """The records `list` prints: of a schedule (`--schedule`, its ids' range), of a
    queue (`--queue`: running, then waiting in admission order), or any."""
    def fits(r: Any) -> bool:
        return ((args.workflow is None or r.workflow == args.workflow)
                and (args.status is None or r.status == args.status)
                and (args.waiting is None or args.waiting in r.waiting_for)
                and (args.schedule is None or _started_by(r.id) == args.schedule)
                and (args.parent is None or r.id in children))

    children = {child for child, _ in engine.store.children(args.parent)} \
        if args.parent is not None else set()

    if args.queue is not None:
        found: list[Any] = []
        after = None
        while limit is None or len(found) < limit:
            entries, after = engine.queues.entries(args.queue, after=after, limit=500)
            for entry in entries:
                try:
                    record = engine.store.get(entry.instance_id)
                except GenflowError:
                    continue  # deleted meanwhile
                if fits(record):
                    found.append(record)
            if after is None:
                break
        return found[:limit] if limit is not None else found
    if args.schedule is not None:
        found, after = [], None
        while limit is None or len(found) < limit:
            page = engine.schedules.instances(args.schedule, workflow=args.workflow,
                                              status=args.status, waiting=args.waiting,
                                              after=after, limit=1000)
            found += [r for r in page if args.parent is None or r.id in children]
            if len(page) < 1000:
                break
            after = page[-1].id
        return found[:limit] if limit is not None else found
    return list(engine.list(workflow=args.workflow, status=args.status, waiting=args.waiting,
                            limit=limit, parent=args.parent))


def _started_by(instance_id: str) -> str | None:
    from genflow.schedules import schedule_of

    started = schedule_of(instance_id)
    return None if started is None else started[0]


def _operating_details(engine: Engine, record: Any, schedules: set[str]) -> list[str]:
    """`list`'s marks of an instance a schedule started, and of one waiting in a queue
    (its queue and position: asked of the store only for a row that can be waiting,
    never due and not ended)."""
    details = []
    started = _started_by(record.id)
    if started is not None and started in schedules:
        details.append(f"started by schedule {started}")
    if record.wake_at is None and record.status == WorkflowStatus.RESUMING.value:
        place = engine.queues.place(record.id)
        if place is not None and place.admitted_at is None:
            details.append(place.text())
    return details


def cmd_worker(engine: Engine, args: argparse.Namespace) -> None:
    _need_workflows()
    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping:
            raise _Interrupted
        stopping.append(signum)
        print(f"genflow: {signal.Signals(signum).name}: stopping after the current move "
              "(again to stop at once)", file=sys.stderr, flush=True)
        engine.store.notify_wake()  # cut short the idle sleep

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    until = "nothing is due" if args.until_idle else "stopped (Ctrl-C or SIGTERM)"
    print(f"genflow: worker {engine.owner} on {args.store}: running due work until {until}",
          file=sys.stderr, flush=True)
    if args.retain is not None:  # (a program's own worker adds its policies itself)
        from genflow.retention import Retention

        keep = _dt.timedelta(seconds=args.retain)
        engine.retention.add(Retention(finished=keep, cancelled=keep, failed=keep))
    try:
        options = {"stop": lambda: bool(stopping), "idle_sleep": args.idle_sleep,
                   "until_idle": args.until_idle, "batch": args.batch}
        done = asyncio.run(engine.work_async(**options)) if args.use_async else \
            engine.work(**options)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"worker processed {done} due instance(s)")


def cmd_cancel(engine: Engine, args: argparse.Namespace) -> None:
    engine.cancel(args.id)
    print(_summary(engine.get(args.id)))


def cmd_retry(engine: Engine, args: argparse.Namespace) -> None:
    engine.retry(args.id)
    print(f"{args.id} is due again: a worker (`genflow worker`) will run it")


def cmd_move(engine: Engine, args: argparse.Namespace) -> None:
    engine.move(args.id, args.thread, args.statement)
    print(f"moved thread {args.thread!r} of {args.id} to {args.statement!r}: "
          f"{_summary(engine.get(args.id))}")


def cmd_check(engine: Engine, args: argparse.Namespace) -> None:
    """The deploy check: exit non-zero if the installed code would break an instance."""
    from genflow.deploy import check_store

    processes = args.processes or min(os.cpu_count() or 1, 4)
    try:
        report = check_store(engine.store, workflow=args.workflow, processes=processes)
    except GenflowError:
        if processes == 1:
            raise
        report = check_store(engine.store, workflow=args.workflow)  # a store in one process
    for warning in report.warnings:
        _warn(warning)
    print(report.format(examples=args.examples))
    if not report.ok:
        raise CheckFailed(f"the deploy check failed: {len(report.grouped())} statement(s) "
                          "would strand in-flight instances")


def cmd_history(engine: Engine, args: argparse.Namespace) -> None:
    engine.store.get(args.id)  # InstanceNotFoundError for an unknown id
    entries = engine.store.journal(args.id)
    if not entries:
        print(f"{args.id}: no journal entries (the journal is off unless "
              "GENFLOW_JOURNAL=1 or Engine(journal=True); repairs are always recorded)")
        return
    for entry in entries:
        detail = json.dumps(entry.detail, default=str, sort_keys=True)
        print(f"{entry.seq:>5}  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.kind:<15} {detail}")


class CheckFailed(GenflowError):
    """A finding, not a mistake (exit status 1): the deploy check found instances
    the installed code cannot move on, an instance cannot be loaded, one waited
    for did not finish well."""


def cmd_lint(engine: Engine | None, args: argparse.Namespace) -> None:
    """The static check of definitions (genflow.lint): exit non-zero on a warning."""
    from genflow.lint import lint

    try:
        warnings = lint(*args.paths)
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(str(exc).removeprefix("genflow lint: ")) from None
    for warning in warnings:
        print(warning)
    files = len({w.path for w in warnings})
    if warnings:
        raise CheckFailed(f"{len(warnings)} lint warning(s) in {files} file(s)")
    print(f"no lint warnings in {', '.join(args.paths)}")


def cmd_graph(engine: Engine | None, args: argparse.Namespace) -> None:
    """Draw a workflow's definition (on a default instance, or on --data)."""
    from genflow.render import build_graph

    fields = _json(args.data, "--data") if args.data is not None else {}
    data = _data(args.workflow, fields)
    _write_diagram(build_graph(data, workflow=args.workflow), args)


def cmd_serve(engine: Engine, args: argparse.Namespace) -> None:
    """The web console and HTTP API (genflow.web), until interrupted."""
    from genflow.web.serve import serve

    def ready(server: Any) -> None:  # (after the access checks: a refusal is the only line)
        print(f"genflow: console on http://{args.host}:{args.port}{args.root_path} over "
              f"{args.store}", file=sys.stderr, flush=True)

    serve(engine, host=args.host, port=args.port, token_file=args.token_file,
          secret_file=args.secret_file, insecure_local=args.insecure_local,
          max_body=args.max_body, root_path=args.root_path,
          forwarded_allow_ips=args.forwarded_allow_ips, public_url=args.public_url,
          ready=ready)


def cmd_report(engine: Engine, args: argparse.Namespace) -> None:
    from genflow.render.report import write_report
    from genflow.render.svg import dot_program

    limit = args.limit if args.limit > 0 else None
    try:
        index = write_report(engine, args.output, workflow=args.workflow, status=args.status,
                             limit=limit)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {args.output}: {exc}") from None
    count = len(engine.list(workflow=args.workflow, status=args.status, limit=limit))
    how = ("diagrams drawn by Graphviz dot" if dot_program() else
           "diagrams as outlines: Graphviz's dot is not installed")
    print(f"wrote {index} ({count} instance(s); {how})")


#: Diagram formats of `show --diagram` and `graph`, and the file suffixes that imply them.
DIAGRAM_FORMATS = ["mmd", "dot", "svg", "json", "text"]
DIAGRAM_SUFFIXES = {".mmd": "mmd", ".mermaid": "mmd", ".dot": "dot", ".gv": "dot",
                    ".svg": "svg", ".json": "json", ".txt": "text"}


def _write_diagram(graph: Any, args: argparse.Namespace) -> None:
    """Write a diagram to -o FILE (format from --format or the suffix) or stdout."""
    from genflow.render import render

    fmt = args.format
    if fmt is None and args.output:
        fmt = DIAGRAM_SUFFIXES.get(Path(args.output).suffix.lower())
        if fmt is None:
            raise UsageError(f"cannot tell a diagram format from {args.output!r}: name a "
                             f"{', '.join(DIAGRAM_SUFFIXES)} file or give --format "
                             f"({', '.join(DIAGRAM_FORMATS)})")
    text = render(graph, format=fmt or "mmd")
    if not args.output:
        sys.stdout.write(text)
        return
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc}") from None
    print(f"wrote {args.output} ({fmt or 'mmd'})")


def cmd_run(engine: Engine, args: argparse.Namespace) -> None:
    """Drive a JSON-lines file: one action (a JSON object) per line.

    Blank lines and lines starting with # are skipped. The first failing action
    stops the run (with --keep-going, every failure is reported and the run goes on).
    """
    errors = 0
    for where, action in _actions(args.file):
        try:
            if isinstance(action, UsageError):
                raise action
            _run_action(engine, action)
        except GenflowError as exc:
            errors += 1
            if not args.keep_going:
                raise UsageError(f"{where}: {exc}") from None
            _error(f"{where}: {exc}")
    if errors:
        label = "<stdin>" if args.file == "-" else args.file
        raise UsageError(f"{errors} action(s) of {label} failed")


#: Action -> (its keys besides the action's own, the required ones).
ACTIONS: dict[str, tuple[set[str], set[str]]] = {
    "start": ({"id", "data", "run", "if_exists", "deadline"}, set()),
    "send": ({"event", "payload", "thread", "keep", "start", "data"}, {"event"}),
    "work": (set(), set()),
    "sleep": (set(), set()),
    "show": (set(), set()),
    "cancel": (set(), set()),
    "retry": (set(), set()),
}


def _actions(name: str) -> Iterator[tuple[str, dict[str, Any] | UsageError]]:
    """(where, action) for each action line; a line that is no action gives its error."""
    if name == "-":
        lines, label = sys.stdin.read().splitlines(), "<stdin>"
    else:
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"{'not a file' if path.exists() else 'no such file'}: {path}")
        try:
            lines, label = path.read_text(encoding="utf-8").splitlines(), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{label}:{number}"
        try:
            action = _json(line, "the line")
        except UsageError as exc:
            yield where, exc
            continue
        if not isinstance(action, dict):
            yield where, UsageError('each line must be a JSON object like '
                                    '{"send": "ID", "event": "NAME", "payload": ...}')
            continue
        yield where, action


def _run_action(engine: Engine, action: dict[str, Any]) -> None:
    kinds = [key for key in action if key in ACTIONS]
    if len(kinds) != 1:
        raise UsageError(f"an action names exactly one of {', '.join(ACTIONS)}; "
                         f"this one has keys {sorted(action)}")
    kind = kinds[0]
    allowed, required = ACTIONS[kind]
    unknown = set(action) - allowed - {kind}
    if unknown:
        raise UsageError(f"{kind!r} action: unknown key(s) {sorted(unknown)}; "
                         f"it takes {sorted(allowed) or 'no others'}")
    missing = required - set(action)
    if missing:
        raise UsageError(f"{kind!r} action needs {sorted(missing)}")
    target = action[kind]
    if kind in ("send", "show", "cancel", "retry", "start") and not isinstance(target, str):
        raise UsageError(f"{kind!r} action: {kind!r} must be a string, not {target!r}")

    if kind == "start":
        instance_id = _start(engine, target, action.get("data", {}), action.get("id"),
                             run=bool(action.get("run", True)),
                             if_exists=action.get("if_exists", "raise"),
                             deadline=_action_deadline(action.get("deadline")))
        print(f"start {target}: {_summary(engine.get(instance_id))}")
    elif kind == "send":
        keep = action.get("keep")
        if keep is not None and not isinstance(keep, bool):
            raise UsageError(f"'send' action: 'keep' is true, false or null, not {keep!r}")
        start = action.get("start")
        if "data" in action and start is None:
            raise UsageError("'send' action: 'data' is the data of 'start' (a workflow): "
                             "give both")
        if start is not None and not isinstance(start, str):
            raise UsageError(f"'send' action: 'start' names a workflow, not {start!r}")
        try:
            output = engine.send(target, str(action["event"]), action.get("payload"),
                                 thread=action.get("thread"), keep=keep,
                                 start=None if start is None else _data(start,
                                                                         action.get("data", {})))
        except InstanceNotFoundError:
            if start is not None:
                raise
            # the Engine's hint names its keyword (start=...); here it is the action's keys
            raise InstanceNotFoundError(
                f"no instance {target!r} (to start it with this event, give the workflow and "
                f'its data: "start": "WORKFLOW", "data": {{...}})') from None
        reply = f" -> {_reply(output)}" if output is not None else ""
        print(f"send {action['event']}: {_summary(engine.get(target))}{reply}")
    elif kind == "work":
        print(f"work: processed {engine.work(until_idle=True)} due instance(s)")
    elif kind == "sleep":
        if not isinstance(target, (int, float)) or not 0 <= target <= 3600:
            raise UsageError(f"'sleep' takes seconds between 0 and 3600, not {target!r}")
        time.sleep(target)
        print(f"sleep: {target}s")
    elif kind == "show":
        print(_describe(engine, engine.get(target)))
    elif kind == "cancel":
        engine.cancel(target)
        print(f"cancel: {_summary(engine.get(target))}")
    else:
        engine.retry(target)
        print(f"retry: {target} is due again")


# -- schedules and retention (genflow.schedules, genflow.retention) ------------------------


def cmd_schedule(engine: Engine, args: argparse.Namespace) -> None:
    """`genflow schedule add|update|list|show|pause|resume|trigger|delete`."""
    schedules = engine.schedules
    action = args.schedule_action
    if action == "add":
        _priority_needs_queue(args)
        fields = _json(args.data, "--data") if args.data is not None else {}
        info = schedules.add(
            args.id, _data(args.workflow, fields), cron=args.cron,
            every=None if args.every is None else _dt.timedelta(seconds=args.every),
            timezone=args.tz, factory=args.factory, jitter=args.jitter,
            catchup=args.catchup, catchup_window=args.window, overlap=args.overlap,
            queue=args.queue, priority=args.priority, deadline=args.deadline,
            paused=args.paused)
        print(_schedule_line(info, engine))
    elif action == "update":
        given = {"cron": args.cron, "timezone": args.tz, "jitter": args.jitter,
                 "catchup": args.catchup, "catchup_window": args.window,
                 "overlap": args.overlap, "paused": args.paused, "factory": args.factory,
                 "queue": args.queue, "priority": args.priority, "deadline": args.deadline,
                 "every": None if args.every is None else _dt.timedelta(seconds=args.every)}
        changes = {k: v for k, v in given.items() if v is not None}
        if args.data is not None:
            changes["data"] = _data(schedules.get(args.id).schedule.workflow,
                                    _json(args.data, "--data"))
        print(_schedule_line(schedules.update(args.id, **changes), engine))
    elif action == "list":
        infos = schedules.list()
        for info in infos:
            print(_schedule_line(info, engine))
        if not infos:
            print("no schedules", file=sys.stderr)
    elif action == "show":
        print(_schedule_text(schedules.get(args.id), engine, args.next))
    elif action in ("pause", "resume"):
        info = getattr(schedules, action)(args.id)
        print(_schedule_line(info, engine))
    elif action == "trigger":
        started = schedules.trigger(args.id)
        print(f"started {started}" if started else
              f"{args.id}: skipped (its previous run is still going: overlap policy 'skip')")
    elif action == "delete":
        schedules.delete(args.id)
        print(f"deleted schedule {args.id} (the instances it started stay)")


def _schedule_line(info: Any, engine: Engine) -> str:
    schedule = info.schedule
    if info.paused:
        state = "paused"
    elif info.due_at is None:
        state = "ended (no tick left)"
    else:
        state = f"next {when(info.due_at, engine.clock())}"
    return "\t".join([schedule.id, schedule.workflow, schedule.spec_text, state])


def _schedule_text(info: Any, engine: Engine, count: int) -> str:
    schedule = info.schedule
    now = engine.clock()
    lines = [f"schedule {schedule.id}: starts workflow {schedule.workflow!r} "
             f"{schedule.spec_text}" + (" (PAUSED)" if info.paused else ""),
             f"  catch-up: {schedule.catchup.value}"
             + (f" within {schedule.window}" if schedule.window is not None else "")
             + f"; overlap: {schedule.overlap.value}"
             + (f"; jitter up to {schedule.jitter}" if schedule.jitter else "")
             + (f"; each run's deadline {schedule.deadline} after its start"
                if schedule.deadline is not None else "")
             + (f"; on queue {schedule.queue!r}" if schedule.queue else "")
             + (f"; data from factory {schedule.factory!r}" if schedule.factory else ""),
             f"  fired {info.fired} tick(s), skipped {info.skipped}"
             + (f"; last: {info.last_instance}" if info.last_instance else "")]
    if info.error:
        lines.append(f"  ERROR: the next tick could not start its instance: {info.error}")
    fires = info.next_fire_times(count)
    if fires:
        lines.append("  next fire times:")
        lines += [f"    {when(moment, now)}" for moment in fires]
    elif info.paused:
        lines.append("  paused: no tick fires until `genflow schedule resume`")
    else:
        lines.append("  no tick left (past its end)")
    lines.append(f"  data: {json.dumps(schedule.data, default=str, ensure_ascii=False)}")
    return "\n".join(lines)


def cmd_purge(engine: Engine, args: argparse.Namespace) -> None:
    """Delete ended instances older than --older-than, in batches."""
    statuses = args.status or ["finished", "cancelled", "failed"]
    if args.workflow is not None and args.workflow not in registered() \
            and not engine.list(workflow=args.workflow, limit=1):
        # (one no longer installed is purged by the name its instances have: only a
        # name neither installed nor in the store is refused, a typo's likely mark)
        raise UnknownWorkflowError(f"{not_installed(args.workflow, registered())}, and the "
                                   "store holds no instance of it: nothing deleted")
    report = engine.retention.purge(
        _dt.timedelta(seconds=args.older_than), statuses=statuses, workflow=args.workflow,
        dry_run=args.dry_run, max_batches=1 << 30)
    what = ", ".join(statuses)
    if args.dry_run:
        print(f"would delete {report.instances} instance(s) ({what}) last changed over "
              f"{_dt.timedelta(seconds=args.older_than)} ago (dry run: nothing deleted)")
    else:
        print(f"deleted {report.instances} instance(s) ({what}) last changed over "
              f"{_dt.timedelta(seconds=args.older_than)} ago, with their journals")


def _duration(text: str) -> float:
    """An argparse type: `90`, `90s`, `30m`, `12h`, `7d` or `2w`, in seconds (0 or more),
    at most 100 years."""
    value = _seconds_of(text)
    if value > 36525 * 86400:  # (past it a timedelta overflows, long before a year 9999)
        raise argparse.ArgumentTypeError(f"a duration of at most 100 years (36525d), not {text}")
    return value


def _seconds_of(text: str) -> float:
    """`_duration` with no upper bound (a deadline's is the engine's to check)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        value = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (say 90s, 30m, 12h or "
                                         "7d)") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"a duration of 0 or more, not {text}")
    return value



COMMANDS: dict[str, Callable[[Engine, argparse.Namespace], None]] = {
    "schedule": cmd_schedule,
    "purge": cmd_purge,
    "start": cmd_start,
    "send": cmd_send,
    "show": cmd_show,
    "result": cmd_result,
    "list": cmd_list,
    "worker": cmd_worker,
    "run": cmd_run,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "graph": cmd_graph,
    "report": cmd_report,
    "move": cmd_move,
    "check": cmd_check,
    "history": cmd_history,
    "serve": cmd_serve,
    "lint": cmd_lint,
}
#: Commands that need no store.
STORELESS = {"graph", "lint"}
#: Commands that only read the store: it is opened read-only (nothing written or created).
READONLY = {"list", "show", "result", "report", "check", "history"}


# -- shared helpers -----------------------------------------------------------------------


def _start(engine: Engine, name: str, fields: Any, instance_id: Any, *, run: bool,
           queue: str | None = None, priority: int = 0, if_exists: Any = "raise",
           deadline: Any = None) -> str:
    if instance_id is not None and (not isinstance(instance_id, str) or not instance_id):
        raise UsageError(f"an instance id must be a non-empty string, not {instance_id!r}")
    if if_exists not in ("raise", "return"):
        raise UsageError(f"if_exists is 'raise' or 'return', not {if_exists!r}")
    return engine.start(_data(name, fields), id=instance_id, run=run, queue=queue,
                        priority=priority, if_exists=if_exists, deadline=deadline)


def _priority_needs_queue(args: argparse.Namespace) -> None:
    """`--priority` orders a queue's admission: without `--queue` it would mean
    nothing (`Engine.start` and `Schedules.add` refuse it, naming their keyword)."""
    if args.priority and args.queue is None:
        raise UsageError(f"--priority {args.priority} orders a queue's admission: give the "
                         "queue too (--queue NAME), or no --priority")


def _data(name: str, fields: Any) -> Any:
    """An instance of workflow `name` from its fields (a JSON object)."""
    try:
        return workflow_data(name, fields)
    except DataError as exc:
        raise UsageError(str(exc)) from None


def _summary(instance: Instance) -> str:
    """`ID STATUS` and a few words: what it waits for, or its error."""
    text = f"{instance.id} {instance.status.value}"
    if instance.status is WorkflowStatus.WAITING:
        events = [e.event for t in instance.state.threads for e in t.events
                  if t.status is ThreadStatus.WAITING_EVENT]
        conditions = [  # (a WaitFor's deadline is its thread's one timer: `until` it)
            t.stmt + "".join(f" (until {e.due.astimezone(_dt.UTC):%Y-%m-%d %H:%M:%S} UTC)"
                             for e in t.events if e.due is not None)
            for t in instance.state.threads if t.status is ThreadStatus.WAITING_CONDITION]
        parts = []
        if events:
            parts.append(f"for {', '.join(dict.fromkeys(events))}")
        if conditions:
            parts.append(f"on condition(s) {', '.join(conditions)}")
        text += " " + " and ".join(parts) if parts else ""
    elif instance.status is WorkflowStatus.RESUMING:
        text += " (a worker will move it on)"
    if instance.error:
        text += f": {instance.error}"
    return text


def _describe(engine: Engine, instance: Instance) -> str:
    place = engine.queues.place(instance.id)
    return describe(instance.state, instance.data, now=engine.clock(),
                    attempts=instance.attempts, error=instance.error,
                    wake_at=instance.wake_at, updated_at=instance.updated_at,
                    queue=None if place is None else place.text(),
                    children=[(r.id, r.status) for r in engine.list(parent=instance.id)],
                    outbox=engine.store.list_outbox(origin=instance.id))


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        word = text.strip()  # a bare word (--payload tea) is a string without its quotes
        hint = (f" (a string is quoted in JSON: {what} '{json.dumps(word)}')"
                if (what.startswith("--") or what == "PAYLOAD") and word and word[0] not in '{["'
                and word.isprintable() else "")
        raise UsageError(f"{what} is not valid JSON: {exc}{hint}") from None


def _need_workflows() -> None:
    if not registered():
        raise UsageError("no workflows are known: name the module that defines them with "
                         "--app MODULE (or set GENFLOW_APP)")


def import_apps(apps: Sequence[str]) -> None:
    """Import the modules (or .py files) that define workflows."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for app in apps:
        try:
            if app.endswith(".py"):
                _import_path(app)
            else:
                importlib.import_module(app)
        except UsageError:
            raise
        except ImportError as exc:
            if getattr(exc, "name", None) and app.startswith(str(exc.name)):
                raise UsageError(f"--app {app}: no such module ({exc})") from None
            raise UsageError(f"--app {app}: cannot import it: {exc}") from None
        except SyntaxError as exc:
            raise UsageError(f"--app {app}: syntax error in {exc.filename}, line {exc.lineno}: "
                             f"{exc.msg}") from None
        except Exception as exc:
            raise UsageError(f"--app {app}: importing it raised {type(exc).__name__}: {exc}"
                             ) from None


def _import_path(app: str) -> None:
    path = Path(app).resolve()
    if not path.is_file():
        raise UsageError(f"--app {app}: no such file")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if getattr(loaded, "__file__", None) == str(path):
            return  # imported already (main() called twice in one process)
        name = f"genflow_app_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--app {app}: cannot import it")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


# -- the parser ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr (and the usual exit status 2)."""

    #: the commands' own parsers, so that a mistake after a command points at its --help
    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"genflow: error: {message} (see `{self.prog} --help`)\n")


def _global_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    """--store and --app, accepted before and after the command, and after a
    `schedule` action (dest prefixed: `_innermost` reads them)."""
    suppress = argparse.SUPPRESS if prefix else None
    parser.add_argument("--store", dest=f"{prefix}store", metavar="URL", default=suppress,
                        help=f"store URL (default: $GENFLOW_STORE or {DEFAULT_STORE})")
    parser.add_argument("--app", dest=f"{prefix}app", metavar="MODULE", action="append",
                        default=suppress,
                        help="module or .py file that defines workflows (repeatable; "
                             "default: $GENFLOW_APP, comma-separated)")
    parser.add_argument("--log-level", dest=f"{prefix}log_level", metavar="LEVEL",
                        default=suppress, type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="genflow's log records at this level and above go to stderr "
                             "(default: $GENFLOW_LOG_LEVEL or WARNING)")
    parser.add_argument("--log-format", dest=f"{prefix}log_format", default=suppress,
                        choices=["text", "json"],
                        help="log lines as text or one JSON object each, with the instance, "
                             "workflow, thread, statement and attempt (default: "
                             "$GENFLOW_LOG_FORMAT or text)")


#: The modules the compiled build (GENFLOW_COMPILE=1, docs/compiled.md) ships as extension
#: modules, the hot path: setup.py's COMPILED, the same list.
COMPILED_CANDIDATES = ("genflow.codec", "genflow.replay", "genflow.runtime", "genflow.state",
                       "genflow.statements", "genflow.stores.group")


def build() -> str:
    """Which build of genflow is running: "pure Python", or "compiled" and which modules.

    Told from the modules as loaded, not from how the package was installed, so
    that a stray `.py` tree shadowing a compiled wheel shows up here.
    """
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = [name for name in COMPILED_CANDIDATES
                if (importlib.import_module(name).__file__ or "").endswith(suffixes)]
    if not compiled:
        return "pure Python"
    return "compiled: " + ", ".join(name.rpartition(".")[2] for name in compiled)


def version_text() -> str:
    """`genflow --version`: genflow's version, its build, the Python and where it lives."""
    return (f"genflow {genflow.__version__} ({build()}) on "
            f"{platform.python_implementation()} {platform.python_version()}, "
            f"from {Path(genflow.__file__).parent}")


class _VersionAction(argparse.Action):
    """--version, computed only when asked for (it imports the core modules)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit(0)


def build_parser() -> _Parser:
    parser = _Parser(prog="genflow", description=__doc__.split("\n\n")[0],
                     epilog=__doc__.split("\n\n", 1)[1],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction,
                        help="print genflow's version and build (pure Python or compiled)")
    _global_options(parser, "")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    parser.commands = {}

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _global_options(p, "sub_")
        parser.commands[name] = p
        return p

    p = command("start", "start an instance of a workflow (runs it until it waits)")
    p.add_argument("workflow", help="the workflow's registered name")
    p.add_argument("--id", help="the instance id (default: a random one)")
    p.add_argument("--data", metavar="JSON", help="the workflow's fields as a JSON object")
    p.add_argument("--no-run", action="store_true", help="leave it for a worker to run")
    p.add_argument("--queue", help="wait for this queue to admit it (genflow.queues)")
    p.add_argument("--priority", type=int, default=0, help="its priority on the queue "
                   "(lower first)")
    p.add_argument("--if-exists", choices=("raise", "return"), default="raise",
                   help="when an instance with --id exists: fail (raise), or show it (return)")
    p.add_argument("--deadline", type=_deadline, metavar="WHEN",
                   help="cancel it if it has not finished by then: a duration from now (30m, "
                   "2h, 7d) or a time with its zone (2030-01-01T09:00+00:00)")

    p = command("send", "deliver an event to an instance (kept until it waits for it)")
    p.add_argument("id")
    p.add_argument("event")
    p.add_argument("payload_json", nargs="?", metavar="PAYLOAD",
                   help="the event's payload as JSON (or --payload JSON)")
    p.add_argument("--payload", metavar="JSON", help="the event's payload as JSON")
    p.add_argument("--thread", help="the waiting thread, when several wait for the event")
    p.add_argument("--no-keep", action="store_true",
                   help="refuse the event unless a thread waits for it now (default: kept)")
    p.add_argument("--start", metavar="WORKFLOW",
                   help="signal-with-start: start the instance (of this workflow, from --data) "
                   "if it does not exist")
    p.add_argument("--data", metavar="JSON", help="with --start: the workflow's fields")
    p.add_argument("--deadline", type=_deadline, metavar="WHEN",
                   help="with --start: the new instance's deadline (as start takes it)")

    p = command("show", "explain an instance: status, threads, waits, timers, errors, data")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="everything, as JSON")
    p.add_argument("--diagram", action="store_true",
                   help="draw the instance on its workflow's diagram: where each thread is")
    _diagram_options(p)

    p = command("result", "wait until an instance has finished; print its data as JSON")
    p.add_argument("id")
    p.add_argument("--timeout", type=_duration, metavar="DURATION",
                   help="give up after this long (90s, 30m, 2h; default: wait as long as it "
                   "takes): exit status 1, the instance as it was")

    p = command("list", "list instances")
    p.add_argument("--workflow", help="only this workflow")
    p.add_argument("--status", choices=STATUSES, help="only this status")
    p.add_argument("--waiting", metavar="EVENT", help="only instances waiting for this event")
    p.add_argument("--schedule", metavar="ID", help="only the instances this schedule started")
    p.add_argument("--queue", metavar="NAME",
                   help="only the instances this queue holds (running, then waiting)")
    p.add_argument("--parent", metavar="ID", help="only the children of this instance")
    p.add_argument("--limit", type=_count(0), default=100, help="at most this many (0: all)")

    p = command("worker", "run due work (resumes, retries, timers) until stopped")
    p.add_argument("--until-idle", "--once", dest="until_idle", action="store_true",
                   help="return when nothing is due")
    p.add_argument("--idle-sleep", type=_seconds, default=1.0, metavar="SECONDS",
                   help="longest sleep between looks for due work (default 1)")
    p.add_argument("--batch", type=_count(1), default=100, help="instances claimed at a time")
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="run the async loop (Engine.work_async): needed when steps or handlers "
                        "are async def")
    p.add_argument("--retain", type=_duration, metavar="DURATION",
                   help="apply a retention policy as it goes: delete the instances that "
                        "ended (finished, cancelled or failed) over DURATION ago (7d, 12h), "
                        "at most every 10 minutes (genflow.retention)")

    p = command("run", "drive a JSON-lines file of actions (- reads stdin)")
    p.add_argument("file")
    p.add_argument("--keep-going", action="store_true",
                   help="report a failing action and go on with the next")
    p.epilog = RUN_HELP
    p.formatter_class = argparse.RawDescriptionHelpFormatter

    p = command("cancel", "cancel an instance (tears down its handlers)")
    p.add_argument("id")

    p = command("retry", "make a failed instance due again (its failed step runs again)")
    p.add_argument("id")

    p = command("move", "repair: make STATEMENT (a Step, Wait or WaitFor) a thread's next stop")
    p.add_argument("id")
    p.add_argument("statement", help="the statement's name in the thread's definition")
    p.add_argument("--thread", default="_main_", help="the thread to move (default: main)")

    p = command("check", "deploy check: would the installed code strand in-flight instances?")
    p.add_argument("--workflow", help="only this workflow")
    p.add_argument("--processes", type=_count(0), default=0,
                   help="checker processes (default 0: the CPUs, at most 4)")
    p.add_argument("--examples", type=_count(0), default=3,
                   help="instance ids shown per statement")

    p = command("lint", "static check: what definitions read besides their data (nothing runs)")
    p.add_argument("paths", nargs="+", metavar="PATH", help=".py files or directories")

    p = command("history", "print an instance's journal (every move, when the journal is on)")
    p.add_argument("id")

    p = command("graph", "draw a workflow's definition (every branch, loop, wait and thread)")
    p.add_argument("workflow", help="the workflow's registered name")
    p.add_argument("--data", metavar="JSON",
                   help="the fields to draw it on, as a JSON object (default: the defaults)")
    _diagram_options(p)

    p = command("report", "write a static HTML report: instances, statuses, diagrams")
    p.add_argument("-o", "--output", metavar="DIR", required=True,
                   help="the directory to write index.html (and the diagrams' files) in")
    p.add_argument("--workflow", help="only this workflow")
    p.add_argument("--status", choices=STATUSES, help="only this status")
    p.add_argument("--limit", type=_count(0), default=100, help="at most this many (0: all)")

    p = command("serve", "the web console and JSON HTTP API (needs genflow[web])")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token-file", metavar="FILE",
                   help="the access token (default: $GENFLOW_WEB_TOKEN)")
    p.add_argument("--secret-file", metavar="FILE",
                   help="the secret that signs sessions and callback URLs "
                        "(default: $GENFLOW_WEB_SECRET, else random per process)")
    p.add_argument("--insecure-local", action="store_true",
                   help="serve without a token, on loopback only")
    p.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES",
                   help="largest request body (default 1 MiB)")
    p.add_argument("--root-path", default="", metavar="PREFIX",
                   help="the path prefix a reverse proxy serves the console under")
    p.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="trust X-Forwarded-* headers from these proxies (comma-separated)")
    p.add_argument("--public-url", metavar="URL",
                   help="the URL outside systems reach the server by, for callback URLs "
                        "(default: $GENFLOW_WEB_URL)")
    _schedule_commands(command)
    return parser


def _schedule_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """`genflow schedule ...` and `genflow purge` (genflow.schedules, genflow.retention)."""
    p = command("schedule", "schedules: start a workflow on a cron expression or an interval")
    actions = p.add_subparsers(dest="schedule_action", required=True, metavar="ACTION",
                               parser_class=_Parser)

    def action(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        """`genflow schedule NAME`, which takes --store/--app after its own arguments too
        (`genflow schedule add nightly report --cron '0 2 * * *' --store URL`)."""
        parser = actions.add_parser(name, help=help, description=description or help)
        _global_options(parser, "act_")
        return parser

    add = action("add", "add a schedule")
    add.add_argument("id", help="the schedule's id (its instances are ID@TICK)")
    add.add_argument("workflow", help="the workflow's registered name")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="a cron expression, as '0 2 * * *'")
    when.add_argument("--every", type=_interval, metavar="DURATION",
                      help="an interval: 90s, 15m, 12h, 1d (a bare number is seconds)")
    add.add_argument("--tz", default="UTC", help="the cron's time zone (default UTC)")
    add.add_argument("--data", metavar="JSON", help="the workflow's fields as a JSON object")
    add.add_argument("--factory", help="a registered factory that makes each tick's data")
    add.add_argument("--jitter", type=_duration, default=0, metavar="DURATION",
                     help="fire each tick up to this much later (the same on every worker)")
    add.add_argument("--catchup", choices=["skip", "all", "latest"], default="skip",
                     help="ticks missed while no worker ran (default skip)")
    add.add_argument("--window", type=_duration, metavar="DURATION",
                     help="the catch-up window (default: 1m for skip, unbounded otherwise)")
    add.add_argument("--overlap", choices=["skip", "allow", "cancel"], default="skip",
                     help="while the previous tick's instance runs (default skip)")
    add.add_argument("--queue", help="start the ticks' instances on this queue")
    add.add_argument("--priority", type=int, default=0, help="their priority on the queue")
    add.add_argument("--deadline", type=_interval, metavar="DURATION",
                     help="cancel each tick's instance if it has not finished this long after "
                     "its start (30m, 2h)")
    add.add_argument("--paused", action="store_true", help="add it paused")
    update = action(
        "update", "change a schedule in place (its counts and last run stay)",
        "change a schedule in place: what is not given stays; its counts "
        "and last run stay, its next tick is computed again")
    update.add_argument("id")
    when = update.add_mutually_exclusive_group()
    when.add_argument("--cron", metavar="EXPR", help="a cron expression, as '0 2 * * *'")
    when.add_argument("--every", type=_interval, metavar="DURATION",
                      help="an interval: 90s, 15m, 12h, 1d (a bare number is seconds)")
    update.add_argument("--tz", help="the cron's time zone")
    update.add_argument("--data", metavar="JSON", help="the workflow's fields as a JSON object")
    update.add_argument("--jitter", type=_duration, metavar="DURATION")
    update.add_argument("--catchup", choices=["skip", "all", "latest"])
    update.add_argument("--window", type=_duration, metavar="DURATION")
    update.add_argument("--overlap", choices=["skip", "allow", "cancel"])
    update.add_argument("--factory", help="a registered factory that makes each tick's data")
    update.add_argument("--queue", help="start the ticks' instances on this queue")
    update.add_argument("--priority", type=int, help="their priority on the queue")
    update.add_argument("--deadline", type=_interval, metavar="DURATION")
    update.add_argument("--paused", action=argparse.BooleanOptionalAction,
                        help="pause it (--no-paused: resume it)")
    action("list", "list schedules").set_defaults(readonly=True)
    show = action("show", "a schedule, its state and its next fire times")
    show.add_argument("id")
    show.add_argument("--next", type=_count(1), default=5, help="fire times shown (default 5)")
    show.set_defaults(readonly=True)
    for name, text in (("pause", "stop firing until resumed"),
                       ("resume", "fire again from the next tick"),
                       ("trigger", "fire one tick now (under the overlap policy)"),
                       ("delete", "remove the schedule (its instances stay)")):
        action(name, text).add_argument("id")

    p = command("purge", "delete ended instances (and their journals) older than a duration")
    p.add_argument("--older-than", type=_duration, required=True, metavar="DURATION",
                   help="last changed longer ago than this: 90s, 30m, 12h, 7d")
    p.add_argument("--status", action="append", choices=["finished", "cancelled", "failed"],
                   help="only this status (repeatable; default: all three)")
    p.add_argument("--workflow", help="only this workflow")
    p.add_argument("--dry-run", action="store_true", help="count, delete nothing")


def _diagram_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=DIAGRAM_FORMATS,
                   help="mmd (Mermaid), dot (Graphviz), svg (needs Graphviz's dot), json or "
                        "text (default: from -o's suffix, else mmd)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the diagram to FILE (default: standard output)")


RUN_HELP = """\
one JSON object per line:
  {"start": "WORKFLOW", "id": "o1", "data": {...}}        start an instance
  {"send": "o1", "event": "add", "payload": {...}}         deliver an event
  {"work": true}                                           run due work until idle
  {"sleep": 1.5}                                           wait (for a timer)
  {"show": "o1"}  {"cancel": "o1"}  {"retry": "o1"}
blank lines and lines starting with # are skipped"""


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: `genflow ...` (returns the exit status). genflow's logging
    is configured for the command and put back as it was after it (a program or a
    test that calls this keeps its own)."""
    top = logging.getLogger("genflow")
    level, handlers = top.level, list(top.handlers)
    try:
        return _main(argv)
    finally:
        for handler in [h for h in top.handlers if h not in handlers]:
            top.removeHandler(handler)
        top.setLevel(level)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    for arg in argv:
        if not _is_text(arg):
            parser.error(f"argument {arg!r} is not UTF-8 text (ids, names and URLs are stored "
                         "as text): check the shell's encoding")
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    store = _innermost(args, "store")
    if store == "":
        parser.error("--store is empty (an unset shell variable?): give a store URL")
    args.store = store or os.environ.get("GENFLOW_STORE") or DEFAULT_STORE
    _logging(parser, args)
    apps = [app for prefix in ("", "sub_", "act_")
            for app in getattr(args, f"{prefix}app", None) or []]
    if not apps:
        apps = [os.environ.get("GENFLOW_APP", "")]
    try:
        import_apps([a.strip() for app in apps for a in app.split(",") if a.strip()])
        if args.command not in ("list", "worker", "report", "history", "serve", "schedule",
                                "purge", "lint"):
            _need_workflows()
        if args.command in STORELESS:
            COMMANDS[args.command](None, args)  # type: ignore[arg-type]
            return 0
        from genflow.stores import open_store

        readonly = args.command in READONLY or getattr(args, "readonly", False)
        with open_store(args.store, readonly=readonly) as store:
            journal = os.environ.get("GENFLOW_JOURNAL", "") not in ("", "0")
            COMMANDS[args.command](Engine(store, journal=journal), args)
    except CheckFailed as exc:  # a finding, not a mistake
        _error(str(exc))
        return 1
    except GenflowError as exc:
        _error(str(exc))
        return 2
    except (KeyboardInterrupt, _Interrupted):
        _error("interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (`genflow list | head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def _innermost(args: argparse.Namespace, name: str) -> Any:
    """A global option (`_global_options`) as given last: after a `schedule` action
    (`act_`), after the command (`sub_`), else before it (None: not given)."""
    for prefix in ("act_", "sub_"):
        value = getattr(args, f"{prefix}{name}", None)
        if value is not None:
            return value
    return getattr(args, name)


def _logging(parser: _Parser, args: argparse.Namespace) -> None:
    """The CLI prints genflow's log records (the library only logs): to stderr,
    at --log-level, as text or JSON."""
    from genflow.observe import configure_logging

    level = _innermost(args, "log_level") \
        or os.environ.get("GENFLOW_LOG_LEVEL") or "WARNING"
    form = _innermost(args, "log_format") \
        or os.environ.get("GENFLOW_LOG_FORMAT") or "text"
    try:
        configure_logging(level, form)
    except ValueError as exc:
        parser.error(f"{exc} ($GENFLOW_LOG_LEVEL, $GENFLOW_LOG_FORMAT)")


def _is_text(value: str) -> bool:
    """Whether `value` can be stored as text: a command-line argument that was not
    UTF-8 arrives with lone surrogates (Python's surrogateescape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value
    return parse


def _deadline(text: str) -> float | _dt.datetime:
    """An argparse type: a deadline, as a duration above 0 from the start (`2h`, as
    `_duration` reads it) or an ISO datetime with its zone (`2030-01-01T09:00+01:00`);
    the engine checks the rest (`Engine.start`)."""
    try:
        seconds = _seconds_of(text)
    except argparse.ArgumentTypeError:
        pass
    else:
        if not seconds > 0:
            raise argparse.ArgumentTypeError(f"a deadline above 0 from the start, not {text}")
        return seconds
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a deadline: {text!r} (say 90s, 30m, 2h or 7d from the start, or a time "
            "with its zone, 2030-01-01T09:00+00:00)") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"deadline {text!r} has no time zone: add one "
                                         "(+00:00 for UTC), or give a duration (2h)")
    return moment


def _action_deadline(value: Any) -> Any:
    """A `start` action's deadline: seconds as a number, or text as `--deadline` reads it."""
    if isinstance(value, str):
        try:
            return _deadline(value)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"'start' action: {exc}") from None
    return value


def _interval(text: str) -> float:
    """An argparse type: a duration above 0, as `_duration` reads it (`--jitter 5m`
    and `--every 5m` read alike)."""
    value = _duration(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"an interval above 0, not {text}")
    return value


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0 (0 would make a worker spin)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def _error(message: str) -> None:
    line = " ".join(message.split())  # one line, whatever the message holds
    print(f"genflow: error: {line}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"genflow: warning: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
