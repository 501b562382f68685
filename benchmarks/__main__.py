"""Run the benchmarks and print a Markdown table: `python -m benchmarks [--quick] [names]`."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

import attrs

from .common import cpu_model, machine

WORKLOADS = {
    "w1": "w1_seed_loop",
    "w2": "w2_long_running",
    "scale": "scale",
}
OPTIONAL = {"w3": "w3_durable_steps", "w3try": "w3_try", "w4": "w4_batch", "w5": "w5_scale",
            "postgres": "postgres_workers", "check": "deploy_check", "journal": "journal_cost",
            "icount": "instructions",
            "report": "report_scale", "paging": "console_paging", "payloads": "payloads",
            "sched": "schedules_queues", "trace": "trace_send", "toolkit": "toolkit",
            "children": "children", "oppages": "operating_pages", "fanout": "fan_out",
            "observe": "observability", "mailbox": "mailbox",
            "group": "group_commit", "scale1m": "batch_scale", "timers": "timers_scale",
            "compiled": "compiled", "result": "result_wait",
            "work_async": "work_async", "deadline": "deadline", "waitfor": "waitfor_timeout"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    known = {**WORKLOADS, **OPTIONAL}
    parser.add_argument("names", nargs="*", help=f"workloads (default: all): {', '.join(known)}")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    names = args.names or list(known)
    figures = []
    print(f"machine: {cpu_model()} ({machine()})\n")
    print("| workload | case | median | min-max | note |")
    print("| --- | --- | --- | --- | --- |")
    for name in names:
        if name not in known:
            parser.error(f"unknown workload {name!r}")
        try:
            module = importlib.import_module(f"benchmarks.{known[name]}")
        except ModuleNotFoundError as exc:
            if name in OPTIONAL and exc.name == f"benchmarks.{known[name]}":
                continue
            raise
        for fig in module.run(quick=args.quick):
            print(fig.row())
            sys.stdout.flush()
            figures.append(fig)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([attrs.asdict(fig) for fig in figures], f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
