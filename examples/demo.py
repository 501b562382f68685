"""The README's demo: a pizza order on an embedded SQLite file, moved on by two processes.

``python -m examples.demo`` (from the repository root) runs in a few seconds:

1. this process starts order-1 (`examples.pizza.PizzaOrder`) in a fresh SQLite
   file, adds a pizza, and closes the store: nothing of the order stays in memory;
2. a *separate process*, the ``genflow`` command line, adds another pizza,
   has a bad payload refused, and checks out;
3. this process opens the file again with a new engine, finds the order exactly
   where the other process left it, and the manager confirms it: the kitchen
   cooks while a payment thread asks for the charge;
4. the ``genflow`` command line again delivers the payment provider's webhook;
   this process delivers "delivered" and the order finishes;
5. order-2 is checked out but no manager answers: the clock (a `FakeClock`,
   so nobody waits 30 minutes) moves on and `Engine.run_due` fires the timer
   that cancels it.

It prints what happens as it goes and checks the final state (exit status 0
when everything happened as told). ``--db PATH`` keeps the SQLite file at PATH
(removed first if it exists) instead of a temporary directory, for a look with
``genflow --app examples.pizza --store sqlite:///PATH show order-1``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from examples.pizza import CONFIRM_WITHIN, PaymentStatus, PizzaOrder, Stage
from genflow import Engine, EventError, GenflowError, WorkflowStatus, open_store
from genflow.clock import FakeClock, system_clock

ROOT = Path(__file__).resolve().parent.parent
ME = f"process {os.getpid()}"


class DemoFailed(Exception):
    """Something did not happen as the demo says it does."""


def say(text: str = "") -> None:
    print(text, flush=True)


def check(ok: bool, what: str) -> None:
    if not ok:
        raise DemoFailed(what)


@contextmanager
def engine_on(url: str, clock: FakeClock) -> Iterator[Engine]:
    """A fresh engine over a freshly opened store: nothing carried over in memory."""
    store = open_store(url)
    try:
        yield Engine(store, [PizzaOrder], clock=clock)
    finally:
        store.close()


def genflow_cli(url: str, *args: str, expect_ok: bool = True) -> str:
    """Run the `genflow` command line in a new Python process; echo and return its output."""
    shown = ["genflow", *args]
    say(f"  $ {shlex.join(shown)}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "genflow.cli", "--app", "examples.pizza", "--store", url, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    output = (done.stdout + done.stderr).strip()
    for line in output.splitlines():
        say(f"    {line}")
    if (done.returncode == 0) != expect_ok:
        raise DemoFailed(f"genflow {' '.join(args)} exited {done.returncode}: {output}")
    return done.stdout


def show_history(order: PizzaOrder, since: int) -> int:
    for line in order.history[since:]:
        say(f"    | {line}")
    return len(order.history)


def run(url: str) -> None:
    clock = FakeClock(system_clock())  # starts at the real time; only moves when told to
    seen = 0

    say(f"== 1. {ME} starts order-1 in {url}")
    with engine_on(url, clock) as engine:
        engine.start(PizzaOrder(), id="order-1")
        out = engine.send("order-1", "add", {"pizza": "margherita", "size": "large", "quantity": 2})
        instance = engine.get("order-1")
        say(f"  add -> {out}")
        seen = show_history(instance.data, seen)
        events = [e.event for t in instance.state.threads for e in t.events]
        say(f"  order-1 is {instance.status.value} for one of: {', '.join(events)}")
    say(f"  ({ME} closed the store: order-1 lives only in the file now)")

    say()
    say("== 2. another process, the genflow command line, moves order-1 on")
    genflow_cli(url, "send", "order-1", "add", "--payload", json.dumps({"pizza": "diavola"}))
    genflow_cli(url, "send", "order-1", "add", "--payload", json.dumps({"pizza": "pineapple"}),
                expect_ok=False)
    say("    (refused before any workflow code ran: the order is unchanged)")
    genflow_cli(url, "send", "order-1", "checkout", "--payload",
                json.dumps({"customer": "Ada", "address": "1 Analytical Way"}))

    say()
    say(f"== 3. {ME} opens the file again with a new engine")
    with engine_on(url, clock) as engine:
        order = engine.get("order-1").data
        say(f"  order-1 is '{order.stage.value}': {', '.join(map(str, order.lines))}, "
            f"total {order.total}")
        seen = show_history(order, seen)
        check(order.stage is Stage.AWAITING_CONFIRMATION, "order-1 should await confirmation")
        check([line.pizza for line in order.lines] == ["margherita", "diavola"],
              "the refused pineapple must not be in the cart")
        try:
            engine.send("order-1", "delivered", {"driver": "Linus"})
        except EventError as exc:
            say(f"  a driver too early is refused: {type(exc).__name__}")
        say("  the manager confirms; the kitchen cooks while a payment thread asks for the charge")
        engine.send("order-1", "confirm", {"manager": "Grace"})
        instance = engine.get("order-1")
        seen = show_history(instance.data, seen)
        threads = ", ".join(f"{t.id} at {t.stmt!r}" for t in instance.state.threads)
        say(f"  threads: {threads}")
        reference = instance.data.payment_ref

    say()
    say("== 4. the payment provider's webhook arrives through another process")
    genflow_cli(url, "send", "order-1", "payment", "--payload",
                json.dumps({"reference": reference, "ok": True}))
    with engine_on(url, clock) as engine:
        say(f"  {ME}: the driver reports the delivery")
        engine.send("order-1", "delivered", {"driver": "Linus"})
        instance = engine.get("order-1")
        seen = show_history(instance.data, seen)
        order = instance.data
        check(instance.status is WorkflowStatus.FINISHED, "order-1 should have finished")
        check(order.stage is Stage.DELIVERED and order.payment is PaymentStatus.PAID,
              "order-1 should be paid and delivered")

    say()
    say("== 5. order-2: checked out, but no manager answers (the clock is a FakeClock)")
    with engine_on(url, clock) as engine:
        engine.start(PizzaOrder(), id="order-2")
        engine.send("order-2", "add", {"pizza": "funghi", "size": "small"})
        engine.send("order-2", "checkout", {"customer": "Alan", "address": "2 Bletchley Park"})
        [timer] = [e for t in engine.get("order-2").state.threads for e in t.events if e.due]
        say(f"  order-2 waits for a manager; timer {timer.event!r} is due at "
            f"{timer.due:%H:%M:%S} UTC")
        clock.advance(CONFIRM_WITHIN - dt.timedelta(minutes=1))
        say(f"  {clock():%H:%M:%S}: run_due moved {engine.run_due()} instance(s): not yet")
        clock.advance(dt.timedelta(minutes=1))
        moved = engine.run_due()
        say(f"  {clock():%H:%M:%S}: run_due moved {moved} instance(s): the timer fired")
        instance = engine.get("order-2")
        show_history(instance.data, 0)
        check(moved == 1 and instance.data.stage is Stage.CANCELLED, "order-2 should be cancelled")

    say()
    say("== final state, listed by the genflow command line")
    genflow_cli(url, "list")
    with engine_on(url, clock) as engine:
        for order_id in ("order-1", "order-2"):
            instance = engine.get(order_id)
            order = instance.data
            say(f"  {order_id}: instance {instance.status.value}, stage '{order.stage.value}', "
                f"total {order.total}, charged {order.charged}"
                + (f", delivered by {order.driver}" if order.driver else "")
                + (f", {order.cancel_reason}" if order.cancel_reason else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--db", help="keep the SQLite file here (removed first if it exists)")
    args = parser.parse_args(argv)
    try:
        if args.db:
            path = Path(args.db).resolve()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            run(f"sqlite:///{path}")
        else:
            with tempfile.TemporaryDirectory(prefix="genflow-demo-") as tmp:
                run(f"sqlite:///{Path(tmp) / 'pizza.db'}")
    except (DemoFailed, GenflowError) as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    say()
    say("done: two processes shared one SQLite file, and a timer fired.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
