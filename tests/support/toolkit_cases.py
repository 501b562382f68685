"""The toolkit's catalog: deliberately broken workflows, and correct ones that look suspicious.

Each `Case` is a workflow, the kind of mistake it holds (or "correct"), and
how docs/testing.md tells a user to check it: `runs(...)` options (fakes to
reset, payloads) and `check_replay(...)` options. `tests/toolkit/test_toolkit_catalog.py`
runs every case the documented way and asserts that each broken one is caught
(by the check a user runs by default, by the cross-process check, or by the
static check, as `caught_by` says) and that no correct one is flagged;
`benchmarks/toolkit.py` measures the catch rate, the false-positive rate and
the time each case takes (the figures of docs/testing.md).

This module must be importable by its name: the cross-process check imports it
in fresh interpreters.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import logging
import math
import os
import random
import secrets
import socket
import time
import uuid
import weakref
from typing import Any

import attrs
import toolkit_helpers

import genflow
from genflow import EventHandler, For, Go, If, On, Step, Timeout, Wait, WaitFor, WaitGroup
from genflow.testing import FakeService, Fault

log = logging.getLogger("toolkit_cases")

bank = FakeService("bank")
mailer = FakeService("mailer", faults=[Fault("send", after_effect=True)])
crm = FakeService("crm")


@attrs.frozen
class Case:
    name: str
    workflow: type
    kind: str  # the kind of mistake, or "correct"
    runs: dict[str, Any] = attrs.field(factory=dict)  # options of runs()
    check: dict[str, Any] = attrs.field(factory=dict)  # options of check_replay()
    #: the check that catches it: "check" (what a user runs by default),
    #: "cross-process" (check_replay(cross_process=True)), "lint" (genflow lint only)
    caught_by: str = "check"
    expect: str = ""  # the problem's kind

    @property
    def broken(self) -> bool:
        return self.kind != "correct"


def noop() -> None:
    pass


# -- the determinism sandbox ------------------------------------------------------------------


@genflow.workflow("toolkit-clock")
@attrs.define
class ClockLunch:
    served: int = 0

    def definition(self):
        yield Wait("order?", On("order", self.serve))
        yield If(dt.datetime.now().hour < 15, "lunch menu?", Step("free drink", self.serve))

    def serve(self) -> None:
        self.served += 1


@genflow.workflow("toolkit-localtime")
@attrs.define
class LocalTime:
    opened: bool = False

    def definition(self):
        yield Step("open", self.open)
        yield If(time.localtime().tm_hour >= 18, "evening?", Step("dim lights", noop))

    def open(self) -> None:
        self.opened = True


@genflow.workflow("toolkit-clock-helper")
@attrs.define
class HelperClock:
    def definition(self):
        yield If(toolkit_helpers.now_hour() < 12, "morning?", Step("coffee", noop))
        yield Wait("done?", On("done", noop))


@genflow.workflow("toolkit-random")
@attrs.define
class Raffle:
    tickets: int = 0

    def definition(self):
        yield Wait("ticket?", On("ticket", self.buy))
        yield If(random.choice([True, False]), "winner?", Step("pay out", noop))

    def buy(self) -> None:
        self.tickets += 1


@genflow.workflow("toolkit-uuid")
@attrs.define
class Tracked:
    def definition(self):
        yield Step(f"track {uuid.uuid4().hex[:8]}", noop)


@genflow.workflow("toolkit-environ")
@attrs.define
class Flagged:
    def definition(self):
        yield If(os.environ.get("GENFLOW_CATALOG_FLAG") == "on", "flag?", Step("new way", noop))
        yield Wait("done?", On("done", noop))


@genflow.workflow("toolkit-env-helper")
@attrs.define
class Regional:
    def definition(self):
        yield Step(f"ship from {toolkit_helpers.region()}", noop)


@genflow.workflow("toolkit-secrets")
@attrs.define
class Token:
    def definition(self):
        yield If(secrets.randbelow(2) == 0, "lucky?", Step("bonus", noop))


@genflow.workflow("toolkit-file")
@attrs.define
class Configured:
    def definition(self):
        with open(__file__, encoding="utf-8") as config:  # a file read by definition()
            fast = "FAST" in config.read(10)
        yield If(fast, "fast?", Step("skip", noop))


@genflow.workflow("toolkit-network")
@attrs.define
class HostBound:
    def definition(self):
        yield Step(f"run on {socket.gethostname()}", noop)


@genflow.workflow("toolkit-set-field")
@attrs.define
class Tagged:
    tags: set[str] = attrs.field(factory=lambda: {"red", "green", "blue"})

    def definition(self):
        for tag in self.tags:  # a set of strings: its order follows PYTHONHASHSEED
            yield Go(f"label {tag}", [Step(f"print {tag}", noop)], id=tag)


REGIONS = frozenset({"eu", "us", "ap", "sa"})


@genflow.workflow("toolkit-set-global")
@attrs.define
class Everywhere:
    def definition(self):
        for region in REGIONS:
            yield Step(f"deploy {region}", noop)


# -- only another process shows it ---------------------------------------------------------


@genflow.workflow("toolkit-set-built")
@attrs.define
class Deduplicated:
    regions: list[str] = attrs.field(factory=lambda: ["eu", "us", "eu", "ap", "sa", "af"])

    def definition(self):
        for region in set(self.regions):  # a set built here: no check can reorder it in place
            yield Step(f"bill {region}", noop)


@genflow.workflow("toolkit-timezone")
@attrs.define
class Brunch:
    ordered_at: float = 1_700_000_000.0  # kept in the data: right; read in local time: wrong

    def definition(self):
        yield If(dt.datetime.fromtimestamp(self.ordered_at).hour < 11, "breakfast?",
                 Step("eggs", noop))


# -- what a save and reload loses ------------------------------------------------------------


@genflow.workflow("toolkit-init-false")
@attrs.define
class Charged:
    charges: int = 0
    paid: bool = attrs.field(default=False, init=False)

    def definition(self):
        yield For("until paid", not self.paid, Step("charge card", self.charge))
        yield Wait("delivered?", On("delivered", noop))

    def charge(self) -> None:
        self.charges += 1
        self.paid = True


@genflow.workflow("toolkit-attribute")
@attrs.define(slots=False)
class Remembered:
    count: int = 0

    def definition(self):
        yield Step("remember", self.remember)
        yield If(getattr(self, "remembered", False), "remembered?", Step("thank", noop))
        yield Wait("poke?", On("poke", self.remember))

    def remember(self) -> None:
        self.count += 1
        self.remembered = True


@genflow.workflow("toolkit-cached-property")
@attrs.define(slots=False)
class Basket:
    prices: list[int] = attrs.field(factory=list)

    @functools.cached_property
    def total(self) -> int:
        return sum(self.prices)

    def definition(self):
        yield For("shopping", self.total < 10, Wait("add?", On("add", self.add)))
        yield Step("checkout", noop)

    def add(self) -> None:
        self.prices.append(6)


@genflow.workflow("toolkit-tuple-in-any")
@attrs.define
class Ledger:
    history: list[Any] = attrs.field(factory=list)

    def definition(self):
        yield Wait("pay?", On("pay", self.pay))
        yield If(self.history == [("paid", 1)], "first payment?", Step("welcome", noop))

    def pay(self) -> None:
        self.history.append(("paid", 1))  # a tuple: saved as an array, loaded as a list


@genflow.workflow("toolkit-decimal-in-any")
@attrs.define
class Totals:
    totals: dict[str, Any] = attrs.field(factory=dict)

    def definition(self):
        yield Wait("sum?", On("sum", self.add_up))
        yield If(isinstance(self.totals.get("eu"), decimal.Decimal), "summed?",
                 Step("report", noop))

    def add_up(self) -> None:
        self.totals["eu"] = decimal.Decimal("10.50")  # loaded back as the string "10.50"


# -- outside the data ------------------------------------------------------------------------

FEATURES = {"express": False}


@genflow.workflow("toolkit-global")
@attrs.define
class Express:
    steps: int = 0

    def definition(self):
        yield Step("upgrade", self.upgrade)
        yield If(FEATURES["express"], "express?", Step("skip the queue", self.upgrade))
        yield Wait("done?", On("done", self.upgrade))

    def upgrade(self) -> None:
        FEATURES["express"] = True
        self.steps += 1


def reset_features() -> None:
    FEATURES["express"] = False


@genflow.workflow("toolkit-class-attribute")
@attrs.define
class Counter:
    seen: int = 0
    limit = 1  # a class attribute, shared and unsaved

    def definition(self):
        yield Step("count", self.count)
        yield If(Counter.limit > 1, "raised?", Step("celebrate", noop))
        yield Wait("done?", On("done", noop))

    def count(self) -> None:
        self.seen += 1
        Counter.limit += 1


def reset_counter() -> None:
    Counter.limit = 1


@genflow.workflow("toolkit-python-if")
@attrs.define
class Welcome:
    welcomed: bool = False

    def definition(self):
        if not self.welcomed:  # a Python `if` on data the step below changes
            yield Step("send welcome mail", self.welcome)
        yield Wait("first order?", On("order", noop))

    def welcome(self) -> None:
        self.welcomed = True


@genflow.workflow("toolkit-duplicate-name")
@attrs.define
class Packing:
    items: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("cart", len(self.items) < 3, Wait("add?", On("add", self.add)))
        for item in self.items:  # a name per item: two equal items, one name twice
            yield Step(f"pack {item}", noop)

    def add(self, item: str) -> None:
        self.items.append(item)


# -- outside effects --------------------------------------------------------------------------


@genflow.workflow("toolkit-charge-twice")
@attrs.define
class Checkout:
    receipt: str = ""

    def definition(self):
        yield Wait("pay?", On("pay", noop))
        yield Step("charge", self.charge)

    def charge(self) -> None:
        self.receipt = bank.charge(25)  # no idempotency key: a crash inside charges twice


@genflow.workflow("toolkit-handler-twice")
@attrs.define
class Refunds:
    refunded: int = 0

    def definition(self):
        yield Wait("refund?", On("refund", self.refund))

    def refund(self) -> None:
        crm.note("refund asked")  # no key: delivered again after a crash, noted twice
        self.refunded += 1


@genflow.workflow("toolkit-retry-twice")
@attrs.define
class Signup:
    mailed: bool = False

    def definition(self):
        yield Step("welcome mail", self.mail)

    def mail(self) -> None:
        mailer.send("ada@example.com")  # the mailer did it, then its answer was lost
        self.mailed = True


# -- found only by search that reaches far -------------------------------------------------


@genflow.workflow("toolkit-rare-branch")
@attrs.define(slots=False)
class Bulk:
    items: int = 0
    closed: bool = False

    def definition(self):
        yield For("cart", not self.closed,
                  Wait("cart open", On("add", self.add), On("close", self.close)))
        yield If(self.items >= 6, "bulk order?", Step("bulk discount", self.discount))
        yield Wait("paid?", On("pay", noop))

    def add(self) -> None:
        self.items += 1

    def close(self) -> None:
        self.closed = True

    def discount(self) -> None:
        self.discounted = True  # the bug, after six adds and a close: not a field


_SEEN: weakref.WeakSet[Any] = weakref.WeakSet()


@genflow.workflow("toolkit-runaway")
@attrs.define(eq=False)
class Poller:
    polls: int = 0

    def definition(self):
        yield For("polling", self not in _SEEN, Step("poll", self.poll))
        yield Wait("done?", On("done", noop))

    def poll(self) -> None:
        self.polls += 1
        _SEEN.add(self)  # outside the data: a reloaded copy is another object


# -- correct workflows that look suspicious ---------------------------------------------------


class Courier(EventHandler):
    """A handler object: its outside call is keyed by the request."""

    def handle(self, req: Any, payload: str) -> str:
        key = f"{req.instance_id}/{req.thread_id}/{req.event}/{req.pc}"
        return crm.assign(payload, key=key)


@genflow.workflow("toolkit-ok-order")
@attrs.define
class Order:
    items: list[str] = attrs.field(factory=list)
    stage: str = "cart"
    paid: decimal.Decimal = decimal.Decimal("0")
    cooked: list[str] = attrs.field(factory=list)
    wg: WaitGroup = attrs.field(factory=WaitGroup)

    @property
    def total(self) -> decimal.Decimal:
        return decimal.Decimal(8) * len(self.items)

    def definition(self):
        yield For("cart", self.stage == "cart",
            Wait("cart open",
                On("add", self.add),
                On("checkout", self.checkout),
                Timeout("idle", dt.timedelta(hours=1), Step("abandon", self.abandon)),
            ),
        )
        yield If(self.stage == "abandoned", "abandoned?", genflow.Return())
        yield self.wg.go("kitchen", self.kitchen)
        yield Wait("payment", On("pay", self.pay))
        yield self.wg.wait("cooked?")
        yield WaitFor("paid in full?", self.paid >= self.total)
        yield Wait("courier", On("picked up", Courier()))

    def kitchen(self):
        yield Step("bake", lambda: self.cooked.append("baked"))

    def add(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    def checkout(self) -> None:
        if not self.items:
            raise ValueError("the cart is empty")
        self.stage = "checkout"

    def abandon(self) -> None:
        self.stage = "abandoned"

    def pay(self, amount: decimal.Decimal) -> None:
        self.paid += amount


@genflow.workflow("toolkit-ok-stored-choice")
@attrs.define
class Lottery:
    draw: float = -1.0
    drawn_at: float = 0.0
    ticket: str = ""

    def definition(self):
        yield Step("draw", self.roll)
        yield If(self.draw < 0.5, "won?", Step("pay out", noop)).Else(
            "lost", Step("console", noop))
        yield If(self.drawn_at > 0, "stamped?", Wait("claim?", On("claim", noop)))

    def roll(self) -> None:  # a step may read the clock and roll dice: the values are data
        self.draw = random.random()
        self.drawn_at = time.time()
        self.ticket = uuid.uuid4().hex


@genflow.workflow("toolkit-ok-nan")
@attrs.define
class Ratio:
    ratio: float = math.nan
    checked: bool = False

    def definition(self):
        yield If(math.isnan(self.ratio), "unknown?", Step("measure", self.measure))
        yield Wait("done?", On("done", noop))

    def measure(self) -> None:
        self.checked = True  # the ratio stays NaN: equal to itself after a reload


@genflow.workflow("toolkit-ok-sorted-set")
@attrs.define
class Labels:
    tags: set[str] = attrs.field(factory=lambda: {"red", "green", "blue"})

    def definition(self):
        for tag in sorted(self.tags):
            yield Go(f"label {tag}", [Step(f"print {tag}", noop)], id=tag)
        yield If("red" in self.tags and len(self.tags) > 1, "red?", Step("alarm", noop))


@genflow.workflow("toolkit-ok-logging")
@attrs.define
class Logged:
    def definition(self):
        log.debug("replaying")  # logging reads the clock for its records: on its own behalf
        yield Step("work", noop)


SIZES = ("small", "large")


@genflow.workflow("toolkit-ok-constant")
@attrs.define
class Sized:
    size: str = "small"

    def definition(self):
        yield If(self.size in SIZES, "known size?", Step("bake", noop))


@genflow.workflow("toolkit-ok-keyed")
@attrs.define
class KeyedCheckout:
    receipt: str = ""
    courier: str = ""

    def definition(self):
        yield Wait("pay?", On("pay", noop))
        yield Step("charge", self.charge)
        yield Wait("courier?", On("assign", Courier()))

    def charge(self) -> None:
        self.receipt = bank.charge(25, key=genflow.current_step().idempotency_key)


@genflow.workflow("toolkit-ok-keyed-retry")
@attrs.define
class KeyedSignup:
    mailed: bool = False

    def definition(self):
        yield Step("welcome mail", self.mail)

    def mail(self) -> None:
        mailer.send("ada@example.com", key=genflow.current_step().idempotency_key)
        self.mailed = True


@genflow.workflow("toolkit-ok-allowed")
@attrs.define
class Tuned:
    def definition(self):
        debug = os.environ.get("GENFLOW_CATALOG_DEBUG")  # genflow: allow[environment]
        yield Step("work", noop)
        if debug:
            log.debug("tuned")


@genflow.workflow("toolkit-ok-exact-types")
@attrs.define
class Exact:
    pair: tuple[int, ...] = (0, 0)
    price: decimal.Decimal = decimal.Decimal("0")
    when: dt.datetime | None = None

    def definition(self):
        yield Wait("set?", On("set", self.set_all))
        yield If(self.pair == (1, 2) and self.price == decimal.Decimal("9.99"), "as set?",
                 Step("use", noop))

    def set_all(self) -> None:
        self.pair = (1, 2)
        self.price = decimal.Decimal("9.99")
        self.when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@genflow.workflow("toolkit-ok-seeded")
@attrs.define
class Seeded:
    seed: int = 7
    when: float = 1_700_000_000.0

    def definition(self):
        rng = random.Random(self.seed)  # a generator of its own, seeded from the data
        yield If(rng.random() < 0.5, "heads?", Step("heads", noop))
        yield If(time.gmtime(self.when).tm_hour < 12, "am?", Step("am", noop))


@genflow.workflow("toolkit-ok-async")
@attrs.define
class AsyncFetch:
    seen: list[str] = attrs.field(factory=list)

    def definition(self):
        yield Wait("go?", On("go", self.go))
        yield Step("fetch", self.fetch)

    async def go(self, who: str) -> str:
        self.seen.append(who)
        return who.upper()

    async def fetch(self) -> None:
        self.seen.append("fetched")


PAY_IN_FULL = {"pay": lambda order: _just(order.total - order.paid)}


def _just(value: Any) -> Any:
    from hypothesis import strategies as st

    return st.just(value)


CASES = [
    Case("clock in definition()", ClockLunch, "sandbox: the clock"),
    Case("time.localtime()", LocalTime, "sandbox: the clock"),
    Case("a now() helper in another module", HelperClock, "sandbox: the clock"),
    Case("random.choice()", Raffle, "sandbox: randomness"),
    Case("uuid4() in a name", Tracked, "sandbox: a uuid"),
    Case("os.environ", Flagged, "sandbox: the environment"),
    Case("os.getenv in another module", Regional, "sandbox: the environment"),
    Case("secrets", Token, "sandbox: secrets"),
    Case("a file read", Configured, "sandbox: files"),
    Case("the network", HostBound, "sandbox: network"),
    Case("a set[str] field iterated", Tagged, "sandbox: set order"),
    Case("a module frozenset iterated", Everywhere, "sandbox: set order"),
    Case("a set built in definition()", Deduplicated, "another process: hash seed",
         caught_by="cross-process"),
    Case("local time of a stored timestamp", Brunch, "another process: time zone",
         caught_by="cross-process"),
    Case("a field with init=False", Charged, "not saved"),
    Case("an attribute that is not a field", Remembered, "not saved"),
    Case("a cached_property", Basket, "not saved"),
    Case("a tuple in list[Any]", Ledger, "not saved: type"),
    Case("a Decimal in dict[str, Any]", Totals, "not saved: type"),
    Case("a global a step changes", Express, "outside the data",
         runs={"reset": reset_features}),
    Case("a class attribute a step changes", Counter, "outside the data",
         runs={"reset": reset_counter}),
    Case("a Python if on data a step changes", Welcome, "python if"),
    Case("a duplicate name on some data", Packing, "validation on later data",
         runs={"payloads": {"add": lambda _: _just("pizza")}}, expect="invalid definition"),
    Case("a step charges twice after a crash inside it", Checkout, "crash inside a step",
         runs={"services": [bank]}, expect="effect twice"),
    Case("a handler repeats its effect after a crash", Refunds, "crash inside a handler",
         runs={"services": [crm]}, expect="effect twice"),
    Case("a retry after a lost answer repeats the mail", Signup, "crash inside a step",
         runs={"services": [mailer]}, expect="effect twice"),
    Case("a bug after six adds and a close", Bulk, "rare branch", check={"crashes": False},
         expect="not saved"),
    Case("a loop a reload keeps going", Poller, "runaway"),
    Case("a full order", Order, "correct", runs={"payloads": PAY_IN_FULL,
                                                 "services": [crm]}),
    Case("a step stores random(), time(), uuid4()", Lottery, "correct"),
    Case("NaN in a field", Ratio, "correct"),
    Case("a set used with sorted() and in", Labels, "correct"),
    Case("logging in definition()", Logged, "correct"),
    Case("a constant tuple", Sized, "correct"),
    Case("outside calls keyed by idempotency key", KeyedCheckout, "correct",
         runs={"services": [bank, crm]}),
    Case("a keyed retry after a lost answer", KeyedSignup, "correct",
         runs={"services": [mailer]}),
    Case("an environment read allowed on purpose", Tuned, "correct"),
    Case("tuple, Decimal and datetime fields", Exact, "correct"),
    Case("a seeded Random and gmtime(ts)", Seeded, "correct"),
    Case("async steps and handlers", AsyncFetch, "correct"),
]


def check(case: Case, *, examples: int = 25, cross_process: bool = False,
          seed: int | None = None, shrink: bool = True) -> Any:
    """Check a case as docs/testing.md tells a user to: scenarios drawn by
    `runs(...)`, each checked with `assert_replay_equivalent(...)`. The failing
    (shrunk) result, or None when every scenario passed."""
    import hypothesis
    from hypothesis import HealthCheck, Phase, given, settings

    from genflow.testing import ReplayError, assert_replay_equivalent, runs

    phases = [Phase.explicit, Phase.generate, Phase.target, *([Phase.shrink] if shrink else [])]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=[HealthCheck.too_slow], phases=phases)
    @given(runs(case.workflow, **case.runs))
    def every_scenario(scenario: Any) -> None:
        assert_replay_equivalent(scenario, cross_process=cross_process, **case.check)

    if seed is not None:
        every_scenario = hypothesis.seed(seed)(every_scenario)
    try:
        every_scenario()
    except ReplayError as failed:
        return failed.result
    return None


def linted() -> dict[str, list[Any]]:
    """The static check's warnings for this module, by workflow name."""
    import sys

    from genflow.lint import lint

    found: dict[str, list[Any]] = {}
    for warning in lint(sys.modules[__name__]):
        found.setdefault(warning.workflow, []).append(warning)
    return found
