"""The `genflow` command line: start, send, show, list, worker, run, cancel, retry.

Workflows are found by importing the modules named with `--app` (or the
`GENFLOW_APP` environment variable, comma-separated; a `.py` path works too).
The store is `--store URL` (or `GENFLOW_STORE`), an SQLite file by default.
User mistakes print one line and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from genflow.codec import structure, unstructure
from genflow.describe import describe
from genflow.engine import Engine
from genflow.errors import GenflowError
from genflow.registry import registered, workflow_class

__all__ = ["main"]

DEFAULT_STORE = "sqlite:///genflow.db"


class UsageError(GenflowError):
    """A command-line mistake (bad JSON, a file that does not exist...)."""


# -- commands -----------------------------------------------------------------------------


def cmd_start(engine: Engine, args: argparse.Namespace) -> None:
    cls = workflow_class(args.workflow)
    fields = _json(args.data, "--data") if args.data else {}
    try:
        data = structure(fields, cls)
    except Exception as exc:
        raise UsageError(f"--data does not fit workflow {args.workflow!r}: {exc}") from None
    instance_id = engine.start(data, id=args.id, run=not args.no_run)
    instance = engine.get(instance_id)
    print(f"{instance_id} {instance.status.value}")


def cmd_send(engine: Engine, args: argparse.Namespace) -> None:
    payload = _json(args.payload, "--payload") if args.payload is not None else None
    output = engine.send(args.id, args.event, payload, thread=args.thread)
    instance = engine.get(args.id)
    print(f"{args.id} {instance.status.value}")
    if output is not None:
        print(json.dumps(output, default=str))


def cmd_show(engine: Engine, args: argparse.Namespace) -> None:
    instance = engine.get(args.id)
    if args.json:
        print(json.dumps({"id": instance.id, "workflow": instance.workflow,
                          "status": instance.status.value, "version": instance.version,
                          "attempts": instance.attempts, "error": instance.error,
                          "data": unstructure(instance.data),
                          "state": unstructure(instance.state)}, indent=2, default=str))
        return
    print(describe(instance.state, instance.data, now=engine.clock(), attempts=instance.attempts,
                   error=instance.error, wake_at=instance.wake_at))


def cmd_list(engine: Engine, args: argparse.Namespace) -> None:
    records = engine.list(workflow=args.workflow, status=args.status, limit=args.limit)
    for r in records:
        waits = f" waits for {','.join(r.waiting_for)}" if r.waiting_for else ""
        error = f" error: {r.error}" if r.error else ""
        print(f"{r.id}\t{r.workflow}\t{r.status}{waits}{error}")
    if not records:
        print("no instances", file=sys.stderr)


def cmd_worker(engine: Engine, args: argparse.Namespace) -> None:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    try:
        done = engine.work(stop=lambda: bool(stopping), idle_sleep=args.idle_sleep,
                           until_idle=args.once, batch=args.batch)
    except KeyboardInterrupt:
        done = 0
    print(f"worker {engine.owner} processed {done} instance moves", file=sys.stderr)


def cmd_cancel(engine: Engine, args: argparse.Namespace) -> None:
    engine.cancel(args.id)
    print(f"{args.id} cancelled")


def cmd_retry(engine: Engine, args: argparse.Namespace) -> None:
    engine.retry(args.id)
    print(f"{args.id} due again")


def cmd_run(engine: Engine, args: argparse.Namespace) -> None:
    """Drive a JSON-lines script: one action per line.

    {"start": "pizza", "id": "o1", "data": {...}}   start an instance
    {"send": "o1", "event": "add", "payload": {...}} deliver an event
    {"work": true}                                   run due work until idle
    {"cancel": "o1"} / {"show": "o1"}
    """
    path = Path(args.file)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        action = _json(line, f"{path}:{number}")
        if not isinstance(action, dict):
            raise UsageError(f"{path}:{number}: each line must be a JSON object")
        try:
            _run_action(engine, action)
        except GenflowError as exc:
            if isinstance(exc, UsageError):
                raise UsageError(f"{path}:{number}: {exc}") from None
            raise


def _run_action(engine: Engine, action: dict[str, Any]) -> None:
    if "start" in action:
        cls = workflow_class(action["start"])
        instance_id = engine.start(structure(action.get("data", {}), cls), id=action.get("id"))
        print(f"started {instance_id}: {engine.get(instance_id).status.value}")
    elif "send" in action:
        engine.send(action["send"], action["event"], action.get("payload"),
                    thread=action.get("thread"))
        status = engine.get(action["send"]).status.value
        print(f"sent {action['event']} to {action['send']}: {status}")
    elif "work" in action:
        print(f"worked: {engine.work(until_idle=True)} moves")
    elif "cancel" in action:
        engine.cancel(action["cancel"])
        print(f"cancelled {action['cancel']}")
    elif "show" in action:
        instance = engine.get(action["show"])
        print(describe(instance.state, instance.data, now=engine.clock()))
    else:
        raise UsageError(f"unknown action {sorted(action)}: use start/send/work/cancel/show")


COMMANDS: dict[str, Callable[[Engine, argparse.Namespace], None]] = {
    "start": cmd_start,
    "send": cmd_send,
    "show": cmd_show,
    "list": cmd_list,
    "worker": cmd_worker,
    "run": cmd_run,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
}


# -- plumbing -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genflow", description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=os.environ.get("GENFLOW_STORE", DEFAULT_STORE),
                        help=f"store URL (default: $GENFLOW_STORE or {DEFAULT_STORE})")
    parser.add_argument("--app", action="append", default=None,
                        help="module or .py file defining workflows (repeatable; $GENFLOW_APP)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("start", help="start an instance")
    p.add_argument("workflow")
    p.add_argument("--id")
    p.add_argument("--data", help="the workflow's fields as a JSON object")
    p.add_argument("--no-run", action="store_true", help="leave it for a worker")

    p = sub.add_parser("send", help="deliver an event")
    p.add_argument("id")
    p.add_argument("event")
    p.add_argument("--payload", help="JSON payload")
    p.add_argument("--thread", help="the waiting thread, when several wait for the event")

    p = sub.add_parser("show", help="explain an instance: status, threads, waits, data")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("list", help="list instances")
    p.add_argument("--workflow")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=100)

    p = sub.add_parser("worker", help="run due work (resumes, retries, timers) until stopped")
    p.add_argument("--once", action="store_true", help="stop when nothing is due")
    p.add_argument("--idle-sleep", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=100)

    p = sub.add_parser("run", help="drive a JSON-lines file of actions")
    p.add_argument("file")

    p = sub.add_parser("cancel", help="cancel an instance (tears down its handlers)")
    p.add_argument("id")

    p = sub.add_parser("retry", help="make a failed instance due again")
    p.add_argument("id")
    return parser


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def import_apps(apps: Sequence[str]) -> None:
    """Import the modules (or .py files) that define workflows."""
    sys.path.insert(0, os.getcwd())
    for app in apps:
        if app.endswith(".py"):
            path = Path(app)
            if not path.exists():
                raise UsageError(f"--app {app}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise UsageError(f"--app {app}: cannot import")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
        else:
            try:
                importlib.import_module(app)
            except ImportError as exc:
                raise UsageError(f"--app {app}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apps = args.app or [a for a in os.environ.get("GENFLOW_APP", "").split(",") if a]
        import_apps(apps)
        if not registered():
            raise UsageError("no workflows are registered: name the module with --app MODULE")
        from genflow.stores import open_store

        with open_store(args.store) as store:
            engine = Engine(store)
            COMMANDS[args.command](engine, args)
    except GenflowError as exc:
        print(f"genflow: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
