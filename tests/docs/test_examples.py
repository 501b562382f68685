"""The examples run to completion, in every mode, and refuse bad input without changing.

Each scenario runs through the pure core (`resume` / `handle_callback`) in the
modes of `genflow.testing.Instance`: in memory, with `dumps`/`loads` between every
operation, and "crashing" after every checkpoint. All modes must end with the
same data and the same blob. The README's demo runs in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

import genflow
from genflow import (
    Engine,
    FakeClock,
    HandlerError,
    PayloadError,
    StaleCallbackError,
    UnknownEventError,
    WorkflowStatus,
    dumps,
    handle_callback,
    loads,
    new_state,
    resume,
)
from genflow.codec import unstructure
from genflow.mailbox import Kept
from genflow.stores import SQLiteStore
from genflow.testing import MODES, Instance
from genflow.testing.instance import request

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is not installed: it lives beside `tests`
    sys.path.insert(0, str(ROOT))

from examples import (  # noqa: E402
    approval,
    early_signals,
    fan_out,
    money_transfer,
    pizza,
    seat_hold,
    seed_readme,
    sms_verification,
)
from examples.approval import INBOX, Purchase  # noqa: E402
from examples.early_signals import WAREHOUSE, Payment, Shipment  # noqa: E402
from examples.fan_out import STORAGE, Backup  # noqa: E402
from examples.money_transfer import BANK, MoneyTransfer  # noqa: E402
from examples.pizza import PaymentStatus, PizzaOrder, Size, Stage  # noqa: E402
from examples.seat_hold import MAILER, VENUE, SeatHold  # noqa: E402
from examples.sms_verification import GATEWAY, SmsVerification  # noqa: E402

modes = pytest.mark.parametrize("mode", MODES)


def same_in_every_mode(scenario, *args):
    """Instance `scenario(mode, *args)` in every mode; the final blobs must be identical."""
    blobs = {mode: scenario(mode, *args).blob() for mode in MODES}
    assert len(set(blobs.values())) == 1, "modes ended differently"


def unchanged(run: Instance):
    """A context manager asserting the instance's blob is the same after the block."""

    class _Same:
        def __enter__(self):
            self.before = run.blob()

        def __exit__(self, *exc):
            assert run.blob() == self.before, "a refused operation changed the instance"

    return _Same()


# -- the seed's README workflow ------------------------------------------------------------


def seed_run(mode: str) -> Instance:
    run = Instance(seed_readme.SeedReadme(), mode=mode)
    run.resume()
    assert run.wf.log == "lllll" and run.wf.i == 0
    run.send("event")
    assert run.wf.log == "lllllha"
    run.send("event")
    return run


@modes
def test_seed_readme_logs_lllllhaha(mode):
    run = seed_run(mode)
    assert run.wf.log == "lllllhaha"
    assert run.wf.i == 2
    assert run.state.status is WorkflowStatus.FINISHED


def test_seed_readme_same_in_every_mode():
    same_in_every_mode(seed_run)


def test_seed_readme_drive_and_main(capsys):
    wf = seed_readme.SeedReadme()
    state = new_state("s", wf)
    seed_readme.drive(wf, state)
    assert (wf.log, state.status) == ("lllllhaha", WorkflowStatus.FINISHED)
    seed_readme.main()
    assert "lllllhaha" in capsys.readouterr().out


def test_seed_readme_with_dumps_loads_between_every_call():
    wf = seed_readme.SeedReadme()
    state = new_state("s", wf)
    blob = dumps(wf, state)
    for op in ["resume", "event", "resume", "event", "resume"]:
        wf, state = loads(blob)
        if op == "resume":
            resume(wf, state)
        else:
            handle_callback(state.threads[0].events[0].req, wf, state)
        blob = dumps(wf, state)
    wf, state = loads(blob)
    assert wf.log == "lllllhaha" and state.status is WorkflowStatus.FINISHED


# -- pizza -----------------------------------------------------------------------------------

ADA = {"customer": "Ada", "address": "1 Analytical Way"}


def pizza_checked_out(mode: str) -> Instance:
    """An order with two lines, checked out: waiting for the manager."""
    run = Instance(PizzaOrder(), mode=mode, instance_id="order-1")
    run.resume()
    assert run.send("add", {"pizza": "margherita", "size": "large", "quantity": 2}) == {
        "lines": ["2x large margherita"], "total": "23.00"}
    run.send("add", {"pizza": "hawaiian", "size": "small"})
    run.send("add", {"pizza": "diavola"})
    run.send("add", {"pizza": "margherita", "size": "large"})  # same line, one more
    out = run.send("remove", {"pizza": "hawaiian"})
    assert out == {"lines": ["3x large margherita", "1x medium diavola"], "total": "45.00"}
    run.send("checkout", ADA)
    assert run.wf.stage is Stage.AWAITING_CONFIRMATION
    return run


def pizza_delivered(mode: str) -> Instance:
    run = pizza_checked_out(mode)
    run.send("confirm", {"manager": "Grace"})
    # The kitchen cooked while the payment thread asked for the charge.
    assert run.wf.kitchen == ["dough made", "toppings on", "baked", "boxed"]
    assert run.wf.payment is PaymentStatus.PENDING
    waits = {t.id: t.stmt for t in run.state.threads}
    assert waits == {"_main_": "payment settled", "take payment": "await payment"}
    ref = run.wf.payment_ref
    assert run.send("payment", {"reference": ref, "ok": True}, thread="take payment") == "thanks"
    assert run.wf.stage is Stage.OUT_FOR_DELIVERY
    run.send("delivered", {"driver": "Linus"})
    return run


@modes
def test_pizza_delivered(mode):
    run = pizza_delivered(mode)
    order = run.wf
    assert run.state.status is WorkflowStatus.FINISHED
    assert order.stage is Stage.DELIVERED
    assert [(line.pizza, line.size, line.quantity, line.unit_price) for line in order.lines] == [
        ("margherita", Size.LARGE, 3, Decimal("11.50")),
        ("diavola", Size.MEDIUM, 1, Decimal("10.50")),
    ]
    assert order.total == order.charged == Decimal("45.00")
    assert (order.customer, order.address, order.confirmed_by, order.driver) == (
        "Ada", "1 Analytical Way", "Grace", "Linus")
    assert order.payment is PaymentStatus.PAID
    assert order.payment_ref.startswith("ch_")
    assert order.wg.pending == []
    assert order.history == [
        "added 2x large margherita at 11.50 each",
        "added 1x small hawaiian at 7.50 each",
        "added 1x medium diavola at 10.50 each",
        "added 1x large margherita at 11.50 each",
        "removed 1x small hawaiian",
        "Ada checked out 45.00 for 1 Analytical Way",
        "confirmed by Grace",
        "kitchen: dough made",
        "kitchen: toppings on",
        "kitchen: baked",
        "kitchen: boxed",
        f"requested a charge of 45.00 ({order.payment_ref})",
        "payment of 45.00 received",
        "out for delivery to 1 Analytical Way",
        "delivered by Linus",
    ]


def test_pizza_delivered_same_in_every_mode():
    same_in_every_mode(pizza_delivered)


def pizza_unconfirmed(mode: str) -> Instance:
    run = pizza_checked_out(mode)
    [timer] = [e for e in run.state.threads[0].events if e.event == "manager silent"]
    assert timer.due == run.clock() + pizza.CONFIRM_WITHIN
    run.send("manager silent")  # what the engine does when the timer is due
    return run


@modes
def test_pizza_manager_silent_cancels(mode):
    run = pizza_unconfirmed(mode)
    assert run.state.status is WorkflowStatus.FINISHED
    assert run.wf.stage is Stage.CANCELLED
    assert run.wf.cancel_reason == "no manager confirmed within 30 minutes"
    # Payment never started, so nothing needs refunding; nothing was cooked.
    assert run.wf.payment is PaymentStatus.NOT_REQUESTED and run.wf.kitchen == []
    assert [t.id for t in run.state.threads] == []


def test_pizza_manager_silent_same_in_every_mode():
    same_in_every_mode(pizza_unconfirmed)


@modes
def test_pizza_rejected(mode):
    run = pizza_checked_out(mode)
    run.send("reject", {"manager": "Grace", "reason": "oven broken"})
    assert run.state.status is WorkflowStatus.FINISHED
    assert (run.wf.stage, run.wf.cancel_reason) == (
        Stage.CANCELLED, "rejected by Grace: oven broken")
    assert run.wf.payment is PaymentStatus.NOT_REQUESTED


def pizza_payment_failed(mode: str, how: str) -> Instance:
    run = pizza_checked_out(mode)
    run.send("confirm", {"manager": "Grace"})
    if how == "declined":
        run.send("payment", {"reference": run.wf.payment_ref, "ok": False,
                             "message": "card declined"}, thread="take payment")
    else:
        run.send("payment deadline", thread="take payment")
    return run


@modes
@pytest.mark.parametrize("how", ["declined", "timeout"])
def test_pizza_payment_failed_cancels_after_cooking(mode, how):
    run = pizza_payment_failed(mode, how)
    order = run.wf
    assert run.state.status is WorkflowStatus.FINISHED
    assert order.payment is PaymentStatus.FAILED and order.charged == 0
    assert order.stage is Stage.CANCELLED
    assert order.cancel_reason == "payment failed; the pizza goes to the staff room"
    assert order.kitchen == ["dough made", "toppings on", "baked", "boxed"]
    expected = ("payment failed: card declined" if how == "declined"
                else "the payment provider never answered")
    assert expected in order.history


def test_pizza_main_prints_a_delivered_order(capsys):
    pizza.main()
    out = capsys.readouterr().out
    assert "delivered by Linus" in out and "stage: delivered; instance finished" in out


def test_pizza_validates():
    genflow.validate(PizzaOrder())


# -- pizza: bad input changes nothing ------------------------------------------------------


@pytest.mark.parametrize(("payload", "field"), [
    ({"pizza": "pineapple"}, "pizza"),
    ({"pizza": "margherita", "size": "huge"}, "size"),
    ({"pizza": "margherita", "quantity": 0}, "quantity"),
    ({"pizza": "margherita", "quantity": "lots"}, "quantity"),
    ({"size": "large"}, "pizza"),
    (["margherita"], "mapping"),
    ("margherita", "mapping"),
    (None, "AddItem"),
])
def test_pizza_add_refuses_bad_payload(payload, field):
    run = Instance(PizzaOrder(), instance_id="order-1")
    run.resume()
    run.send("add", {"pizza": "diavola"})
    with unchanged(run), pytest.raises(PayloadError, match=field):
        run.handle_callback("add", payload)
    assert run.send("add", {"pizza": "funghi"})["total"] == "20.00"  # the cart still works


@pytest.mark.parametrize(("event", "payload", "field"), [
    ("remove", {}, "pizza"),
    ("remove", {"pizza": "diavola", "size": "xl"}, "size"),
    ("checkout", {"customer": "Ada"}, "address"),
    ("checkout", {"customer": "", "address": "here"}, "customer"),
])
def test_pizza_cart_events_refuse_bad_payload(event, payload, field):
    run = Instance(PizzaOrder())
    run.resume()
    run.send("add", {"pizza": "diavola"})
    with unchanged(run), pytest.raises(PayloadError, match=field):
        run.handle_callback(event, payload)


def test_pizza_handlers_refuse_without_changing_anything():
    run = Instance(PizzaOrder())
    run.resume()
    with unchanged(run), pytest.raises(HandlerError, match="cart is empty"):
        run.handle_callback("checkout", ADA)
    run.send("add", {"pizza": "diavola"})
    with unchanged(run), pytest.raises(HandlerError, match="no funghi"):
        run.handle_callback("remove", {"pizza": "funghi"})
    with unchanged(run), pytest.raises(HandlerError, match="no diavola"):
        run.handle_callback("remove", {"pizza": "diavola", "size": "large"})


def test_pizza_refuses_unknown_and_early_events():
    run = Instance(PizzaOrder())
    run.resume()
    add = request(run.state, "add")
    for event in ["confirm", "delivered", "refund", "payment"]:
        with unchanged(run), pytest.raises(UnknownEventError):
            handle_callback(attrs.evolve(add, event=event), run.wf, run.state, {"manager": "x"})


def test_pizza_refuses_stale_requests_and_foreign_webhooks():
    run = Instance(PizzaOrder())
    run.resume()
    old_add = request(run.state, "add")
    run.send("add", {"pizza": "diavola"})
    with unchanged(run), pytest.raises(StaleCallbackError):
        handle_callback(old_add, run.wf, run.state, {"pizza": "funghi"})
    run.send("checkout", ADA)
    run.send("confirm", {"manager": "Grace"})
    with unchanged(run), pytest.raises(HandlerError, match="unknown charge"):
        run.handle_callback("payment", {"reference": "ch_someone_else", "ok": True},
                            thread="take payment")
    with unchanged(run), pytest.raises(PayloadError, match="ok"):
        run.handle_callback("payment", {"reference": run.wf.payment_ref}, thread="take payment")


# -- approval --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def empty_inbox():
    INBOX.clear()
    yield
    INBOX.clear()


def answer(run: Instance, approver: str, approve: bool, comment: str = "") -> str:
    """Answer the one open request of `approver` through the inbox, as they would."""
    [item] = INBOX.for_approver(approver)
    assert item.req == request(run.state, "decision")  # the inbox holds the live request
    assert item.req.setup_data == item.token
    out = run.send("decision", {"approver": approver, "approve": approve, "comment": comment})
    assert item.token not in INBOX.items  # teardown withdrew it
    return out


def approval_two_levels(mode: str, finance_approves: bool = True) -> Instance:
    run = Instance(Purchase(requester="ada", item="a 3D printer", amount=Decimal("1800")),
                   mode=mode)
    run.resume()
    assert [i.approver for i in INBOX.items.values()] == ["lead"]
    assert answer(run, "lead", True).startswith("approved")
    assert [i.approver for i in INBOX.items.values()] == ["finance"]
    answer(run, "finance", finance_approves, "" if finance_approves else "not this quarter")
    return run


@modes
def test_approval_two_levels_approved(mode):
    run = approval_two_levels(mode)
    assert run.state.status is WorkflowStatus.FINISHED
    assert (run.wf.outcome, run.wf.ordered) == ("approved", True)
    assert [d.approver for d in run.wf.decisions] == ["lead", "finance"]
    assert run.wf.history == ["lead approved", "finance approved", "ordered a 3D printer"]
    assert INBOX.items == {} and INBOX.opened == INBOX.withdrawn == 2


@modes
def test_approval_rejected_by_finance(mode):
    run = approval_two_levels(mode, finance_approves=False)
    assert run.state.status is WorkflowStatus.FINISHED
    assert (run.wf.outcome, run.wf.ordered) == ("rejected", False)
    assert run.wf.history == ["lead approved", "finance rejected: not this quarter",
                              "told ada: rejected"]
    assert INBOX.items == {}


def test_approval_same_in_every_mode():
    blobs = set()
    for mode in MODES:
        INBOX.clear()
        blobs.add(approval_two_levels(mode).blob())
    assert len(blobs) == 1


@modes
def test_approval_cheap_purchase_needs_only_the_lead(mode):
    run = Instance(Purchase(requester="bob", item="a keyboard", amount=Decimal("80")), mode=mode)
    run.resume()
    answer(run, "lead", True)
    assert run.wf.ordered and run.wf.approvers == ["lead"]
    assert run.state.status is WorkflowStatus.FINISHED and INBOX.items == {}


def approval_expired(mode: str) -> Instance:
    run = Instance(Purchase(requester="ada", item="a chair", amount=Decimal("200")), mode=mode)
    run.resume()
    stale = []
    for _ in range(approval.MAX_REMINDERS + 1):
        [item] = INBOX.items.values()
        stale.append(item.req)
        run.send("approver silent")  # the timer wins; the request is withdrawn
        assert item.token not in INBOX.items
    for req in stale:  # answers to withdrawn requests are refused
        with unchanged(run), pytest.raises(genflow.EventError):
            handle_callback(req, run.wf, run.state, {"approver": "lead", "approve": True})
    return run


@modes
def test_approval_expires_after_reminders(mode):
    run = approval_expired(mode)
    assert run.state.status is WorkflowStatus.FINISHED
    assert (run.wf.outcome, run.wf.ordered) == ("expired", False)
    assert run.wf.history == ["reminded lead", "reminded lead",
                              "lead never answered: expired", "told ada: expired"]
    assert INBOX.items == {} and INBOX.opened == INBOX.withdrawn == 3


def test_approval_reminder_makes_the_old_request_stale():
    run = Instance(Purchase(requester="ada", item="a chair", amount=Decimal("200")))
    run.resume()
    [first] = INBOX.items.values()
    run.send("approver silent")
    [second] = INBOX.items.values()
    assert second.req.pc > first.req.pc
    with unchanged(run), pytest.raises(StaleCallbackError):
        handle_callback(first.req, run.wf, run.state, {"approver": "lead", "approve": True})
    handle_callback(second.req, run.wf, run.state, {"approver": "lead", "approve": True})
    resume(run.wf, run.state)
    assert run.wf.ordered and run.wf.reminders == 0


@pytest.mark.parametrize(("payload", "field"), [
    ({"approver": "lead"}, "approve"),
    ({"approve": True}, "approver"),
    ({"approver": "lead", "approve": "false"}, "approve"),  # never read as True
    ({"approver": "lead", "approve": "yes"}, "approve"),
    ({"approver": "lead", "approve": 1}, "approve"),
    ("approve", "mapping"),
])
def test_approval_refuses_bad_payload(payload, field):
    run = Instance(Purchase(requester="ada", item="a chair", amount=Decimal("200")))
    run.resume()
    with unchanged(run), pytest.raises(PayloadError, match=field):
        run.handle_callback("decision", payload)
    assert len(INBOX.items) == 1  # the request is still open


def test_approval_refuses_the_wrong_approver_and_unknown_events():
    run = Instance(Purchase(requester="ada", item="a chair", amount=Decimal("200")))
    run.resume()
    with unchanged(run), pytest.raises(HandlerError, match="mallory may not answer for lead"):
        run.handle_callback("decision", {"approver": "mallory", "approve": True})
    req = request(run.state, "decision")
    with unchanged(run), pytest.raises(UnknownEventError):
        handle_callback(attrs.evolve(req, event="approve"), run.wf, run.state, None)
    assert len(INBOX.items) == 1 and not run.wf.decisions


def test_approval_main_prints(capsys):
    approval.main()
    out = capsys.readouterr().out
    assert "history: lead approved; finance approved; ordered a 3D printer" in out
    assert "inbox now holds 0 requests; instance finished" in out


def test_approval_validates():
    genflow.validate(Purchase())
    genflow.validate(Purchase(amount=Decimal("5000")))


# -- the README's demo -----------------------------------------------------------------------


def test_demo_runs_in_a_subprocess(tmp_path):
    db = tmp_path / "demo.db"
    db.write_bytes(b"an old file the demo must remove first")
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--db", str(db)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # Two processes moved order-1: this one and the genflow command line.
    assert "$ genflow send order-1 add" in out and "$ genflow send order-1 payment" in out
    assert "genflow: error: payload for event 'add' does not fit AddItem" in out
    assert "the timer fired" in out
    assert ("order-1: instance finished, stage 'delivered', total 33.50, charged 33.50, "
            "delivered by Linus") in out
    assert "order-2: instance finished, stage 'cancelled'" in out
    assert out.rstrip().endswith("and a timer fired.")
    # The file stays for a look, and holds both orders.
    from genflow.engine import Engine
    from genflow.stores import open_store

    with open_store(f"sqlite:///{db}") as store:
        engine = Engine(store, [PizzaOrder])
        delivered = engine.get("order-1").data
        cancelled = engine.get("order-2").data
    assert delivered.stage is Stage.DELIVERED and delivered.charged == Decimal("33.50")
    assert cancelled.cancel_reason == "no manager confirmed within 30 minutes"


def test_demo_fails_loudly_on_an_unusable_store(tmp_path, capsys):
    from examples import demo

    (tmp_path / "a-directory.db").mkdir()
    assert demo.main(["--db", str(tmp_path / "a-directory.db" / "x" / "demo.db")]) == 1
    assert "demo failed" in capsys.readouterr().err


# -- failure, time and cancellation: the three samples of docs/failure.md ---------------------


@pytest.fixture(autouse=True)
def fresh_services():
    """The outside systems the samples call start empty for every test."""
    BANK.reset({"alice": 100, "bob": 0})
    GATEWAY.clear()
    VENUE.clear()
    MAILER.clear()
    yield


def through_retries(run: Instance) -> None:
    """Resume, moving the clock to each retry that falls due, until nothing retries."""
    while True:
        run.resume()
        due = [t.retry_at for t in run.state.threads if t.retry_at is not None]
        if not due:
            return
        run.clock.now = min(due)


def transfer(mode: str, target: str = "bob", *, balance: int = 100, outage: int = 0) -> Instance:
    BANK.reset({"alice": balance, "bob": 0})
    BANK.outage = outage
    run = Instance(MoneyTransfer("alice", target, 40, "T-1"), mode=mode)
    try:
        through_retries(run)
    except genflow.GenflowError:
        assert run.state.status is WorkflowStatus.FAILED
    return run


@modes
def test_transfer_goes_through(mode):
    run = transfer(mode)
    assert run.state.status is WorkflowStatus.FINISHED
    assert (run.wf.withdrawn, run.wf.deposited, run.wf.refunded) == (
        "withdraw-0001", "deposit-0002", "")
    assert BANK.balances == {"alice": 60, "bob": 40}
    assert BANK.calls == [("withdraw", "alice", 40, "T-1-withdrawal"),
                          ("deposit", "bob", 40, "T-1-deposit")]


@modes
def test_a_deposit_to_an_invalid_account_is_refunded_then_fails(mode):
    run = transfer(mode, "nobody")
    assert run.state.status is WorkflowStatus.FAILED
    assert [t.status for t in run.state.threads] == [genflow.ThreadStatus.UNWINDING]
    assert (run.wf.withdrawn, run.wf.deposited, run.wf.refunded) == (
        "withdraw-0001", "", "deposit-0002")
    assert BANK.balances == {"alice": 100, "bob": 0}  # no money vanished
    # InvalidAccount is never retried: one deposit attempt, then the refund
    assert BANK.calls == [("withdraw", "alice", 40, "T-1-withdrawal"),
                          ("deposit", "nobody", 40, "T-1-deposit"),
                          ("deposit", "alice", 40, "T-1-refund")]


@modes
def test_insufficient_funds_fail_the_withdrawal_and_nothing_is_refunded(mode):
    run = transfer(mode, balance=10)
    assert run.state.status is WorkflowStatus.FAILED
    [thread] = run.state.threads  # it stands at the withdrawal, for an operator's retry
    assert (thread.stmt, thread.attempts) == ("withdraw", 1)
    assert "InsufficientFunds" in thread.error
    assert BANK.calls == [("withdraw", "alice", 40, "T-1-withdrawal")]


@modes
def test_a_bank_outage_is_retried_backing_off_to_two_seconds(mode):
    BANK.reset({"alice": 100, "bob": 0})
    BANK.outage = 4
    run = Instance(MoneyTransfer("alice", "bob", 40, "T-1"), mode=mode)
    start, waits = run.clock(), []
    while True:
        run.resume()
        due = [t.retry_at for t in run.state.threads if t.retry_at is not None]
        if not due:
            break
        waits.append((due[0] - run.clock()).total_seconds())
        run.clock.now = due[0]
    assert waits == [1.0, 2.0, 2.0, 2.0]  # attempts=None: forever, capped at max_backoff
    assert run.state.status is WorkflowStatus.FINISHED
    assert [c[0] for c in BANK.calls] == ["withdraw"] * 5 + ["deposit"]
    assert (run.clock() - start).total_seconds() == 7


def test_retrying_a_transfer_that_failed_after_its_refund_does_not_finish_it():
    run = transfer("plain", "nobody")
    assert run.state.status is WorkflowStatus.FAILED
    (thread,) = run.state.threads  # it stays, carrying the failure that ended it
    assert thread.status is genflow.ThreadStatus.UNWINDING and thread.unwind == "fail"
    assert thread.failures[-1].type == "InvalidAccount"
    with contextlib.suppress(genflow.GenflowError):  # refused, or the deposit fails again
        resume(run.wf, run.state)
    assert run.state.status is not WorkflowStatus.FINISHED


def test_transfers_end_the_same_in_every_mode():
    for target in ("bob", "nobody"):
        blobs = {transfer(mode, target).blob() for mode in MODES}
        assert len(blobs) == 1, target


def sms(mode: str, *codes: str, expire: bool = False) -> Instance:
    run = Instance(SmsVerification(phone="+44 1"), mode=mode)
    run.resume()
    for code in codes:
        run.send("code", run.wf.code if code == "right" else code)
    if expire:
        run.clock.advance(sms_verification.WITHIN)
        run.send("expired")  # what the engine does when the timer is due
    return run


@modes
def test_sms_verified_on_the_second_try(mode):
    run = sms(mode, "000000", "right")
    assert (run.wf.outcome, run.wf.tries) == ("verified", ["000000", run.wf.code])
    assert run.state.status is WorkflowStatus.FINISHED
    assert GATEWAY.sent == [("+44 1", f"Your code is {run.wf.code}"),
                            ("+44 1", "Your phone is verified.")]


@modes
def test_sms_three_tries_share_one_deadline(mode):
    run = Instance(SmsVerification(phone="+44 1"), mode=mode)
    run.resume()
    start = run.clock()
    for _ in range(2):
        run.clock.advance(seconds=60)
        run.send("code", "000000")
        [_, timer] = run.state.threads[0].events
        assert timer.due == start + sms_verification.WITHIN  # a wrong code buys no time
    run.send("code", "111111")
    assert run.wf.outcome == "wrong code" and run.state.status is WorkflowStatus.FINISHED
    assert GATEWAY.sent[-1] == ("+44 1", "Too many wrong codes: ask for a new one.")


@modes
def test_sms_the_deadline_fires_into_the_catch(mode):
    run = sms(mode, "000000", expire=True)
    assert (run.wf.outcome, run.wf.tries) == ("expired", ["000000"])
    assert run.state.status is WorkflowStatus.FINISHED
    assert GATEWAY.sent[-1] == ("+44 1", "The code expired: ask for a new one.")


def test_sms_ends_the_same_in_every_mode():
    for codes, expire in ((("000000", "right"), False), (("0",), True)):
        blobs = {sms(mode, *codes, expire=expire).blob() for mode in MODES}
        assert len(blobs) == 1


def seat(mode: str, ending: str) -> Instance:
    run = Instance(SeatHold(seat="A1", customer="ada@example.com"), mode=mode)
    run.resume()
    run.send("wake", thread="reminders")  # five minutes: a reminder
    if ending == "paid":
        run.send("paid")
    elif ending == "expired":
        run.send("hold over")
    else:
        run.cancel()
    return run


@modes
@pytest.mark.parametrize("ending", ["paid", "expired", "cancelled"])
def test_seat_hold_endings_each_run_the_finally_and_stop_the_reminders(mode, ending):
    run = seat(mode, ending)
    status = WorkflowStatus.CANCELLED if ending == "cancelled" else WorkflowStatus.FINISHED
    assert run.state.status is status
    assert run.state.threads == []  # the daemon reminder thread ended with the main thread
    outcome = {"paid": "ticketed"}.get(ending, ending)
    assert (run.wf.outcome, run.wf.reminders, run.wf.log) == (
        outcome, 1, [f"{outcome} after 1 reminders"])
    assert VENUE.held == {}
    assert VENUE.sold == ({"A1": "ada@example.com"} if ending == "paid" else {})
    texts = [text for _, text in MAILER.sent.values()]
    assert texts[0] == "seat A1 is still held for you"
    assert texts[1:] == {"paid": ["your ticket: A1"], "expired": [],
                         "cancelled": ["your order of seat A1 was cancelled"]}[ending]
    assert VENUE.calls == [("hold", "A1"), ("sell" if ending == "paid" else "release", "A1")]


def test_seat_hold_ends_the_same_in_every_mode():
    for ending in ("paid", "expired", "cancelled"):
        blobs = set()
        for mode in MODES:
            VENUE.clear()
            MAILER.clear()
            blobs.add(seat(mode, ending).blob())
        assert len(blobs) == 1, ending


def test_the_failure_samples_validate_and_main_prints(capsys):
    for wf in (MoneyTransfer(), SmsVerification(), SeatHold()):
        genflow.validate(wf)
    seat_hold.main()
    assert "first: cancelled; ['cancelled after 1 reminders']" in capsys.readouterr().out
    sms_verification.main()
    assert "bob: expired, tries ['000000']" in capsys.readouterr().out
    money_transfer.main()
    out = capsys.readouterr().out
    assert "T-2: failed" in out and "InvalidAccount: account 'nobody' does not exist" in out


# -- early signals: the payment before the wait for it (docs/mailbox.md) ---------------------


def shipment(mode: str) -> Instance:
    run = Instance(Shipment("A-1", 4200), mode=mode)
    run.resume()
    payment = Payment("pay-77", 4200)
    assert run.send("paid", payment) == Kept("i-1", "paid", 0, 1)  # it is still being packed
    assert run.send("paid", payment) == Kept("i-1", "paid", 1, 2)  # notified twice
    run.send("packed", "Grace")
    return run


@modes
def test_early_signals_the_payment_before_its_wait_is_taken_once(mode):
    WAREHOUSE.clear()
    run = shipment(mode)
    assert run.finished and run.wf.payment == Payment("pay-77", 4200) and run.wf.shipped
    assert WAREHOUSE.log == ["reserve A-1", "ship A-1"]
    [again] = run.state.mailbox.undelivered  # the second notification, on view
    assert (again.seq, again.reason) == (1, "the instance finished before a thread waited "
                                            "for it")


def test_early_signals_same_in_every_mode():
    same_in_every_mode(shipment)


def test_early_signals_a_wrong_amount_is_refused_when_it_is_taken():
    run = Instance(Shipment("A-1", 4200))
    run.resume()
    run.send("paid", Payment("pay-1", 100))  # kept: the handler's own check runs later
    run.send("paid", Payment("pay-2", 4200))
    run.send("packed", "Grace")
    assert run.wf.payment == Payment("pay-2", 4200) and run.finished
    [refused] = run.state.mailbox.undelivered
    assert refused.payload["reference"] == "pay-1"
    assert "paid 100, the order costs 4200" in refused.reason


def test_early_signals_refuses_what_no_wait_takes_and_main_prints(capsys):
    run = Instance(Shipment("A-1", 4200))
    run.resume()
    with unchanged(run), pytest.raises(UnknownEventError, match="its events are 'packed', "
                                                                  "'paid'"):
        run.send("refund")
    with unchanged(run), pytest.raises(genflow.PayloadError, match="amount"):
        run.send("paid", {"reference": "pay-1"})
    genflow.validate(Shipment())
    WAREHOUSE.clear()
    early_signals.main()
    out = capsys.readouterr().out
    assert "Kept(instance_id='A-1', event='paid', seq=1, kept=2)" in out
    assert "finished ['reserve A-1', 'ship A-1', 'reserve B-2', 'ship B-2']" in out


# -- the samples through the Engine, on every store; crashes anywhere ------------------------


class Died(BaseException):
    """The process died (a BaseException, as a kill is: nothing in genflow catches it)."""


class DyingStore:
    """A store whose process dies at its `n`-th save: right after it (`lose=False`:
    the save stands) or instead of it (`lose=True`: the save is lost). From then on
    every call raises `Died`: nothing a dead process does reaches the database,
    its leases included (they expire)."""

    def __init__(self, store, n: int, *, lose: bool = False):
        self._store, self._n, self._lose = store, n, lose
        self.saves = 0
        self.dead = False

    def save(self, *args, **kwargs):
        self._alive()
        self.saves += 1
        if self._lose and self.saves == self._n:
            self._die()
        saved = self._store.save(*args, **kwargs)
        if self.saves == self._n:
            self._die()
        return saved

    def _alive(self):
        if self.dead:
            raise Died("the process is dead")

    def _die(self):
        self.dead = True
        raise Died(f"died at save {self._n}")

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self._alive()
            return attr(*args, **kwargs)

        return call


def outside_calls():
    """Every call the samples made to the outside systems, in order."""
    return {"bank": list(BANK.calls), "sms": list(GATEWAY.sent), "venue": list(VENUE.calls),
            "mail": list(MAILER.calls), "warehouse": list(WAREHOUSE.log)}


def reset_services():
    WAREHOUSE.clear()
    BANK.reset({"alice": 100, "bob": 0})
    GATEWAY.clear()
    VENUE.clear()
    MAILER.clear()


def outcome(engine, instance_id):
    instance = engine.get(instance_id)
    return instance.status, unstructure(instance.data), {
        "balances": dict(BANK.balances), "held": dict(VENUE.held), "sold": dict(VENUE.sold),
        "mails": dict(MAILER.sent)}


# Each scenario: `setup(engine, id)` runs on a healthy process, then `operation(engine,
# id)` is the one a crash interrupts; a fresh engine must finish what it began.

def _transfer_setup(engine, instance_id):
    pass


def _transfer_operation(engine, instance_id):  # the catch body (refund) runs inside start
    engine.start(MoneyTransfer("alice", "nobody", 40, "T-1"), id=instance_id)


def _seat_setup(engine, instance_id):
    engine.start(SeatHold(seat="A1", customer="ada@example.com"), id=instance_id)
    engine.clock.advance(seat_hold.REMIND_EVERY)
    engine.run_due()  # a reminder


def _seat_expires(engine, instance_id):  # the hold runs out: its Finally runs in run_due
    engine.clock.advance(seat_hold.HOLD_FOR)
    engine.run_due()


def _seat_cancel(engine, instance_id):  # cancellation's cleanup: a Catch, then the Finally
    engine.cancel(instance_id)


def _sms_setup(engine, instance_id):
    engine.start(SmsVerification(phone="+44 1"), id=instance_id)
    engine.send(instance_id, "code", "000000")


def _sms_expires(engine, instance_id):  # the deadline's timer fails the wait into the Catch
    engine.clock.advance(sms_verification.WITHIN)
    engine.run_due()


def _shipment_setup(engine, instance_id):
    engine.start(Shipment("A-1", 4200), id=instance_id)
    engine.send(instance_id, "paid", {"reference": "pay-77", "amount": 4200})  # kept


def _shipment_packed(engine, instance_id):  # the wait for payment begins: the kept one taken
    engine.send(instance_id, "packed", "Grace")


SCENARIOS = {
    "catch body (transfer refund)": (_transfer_setup, _transfer_operation, [MoneyTransfer]),
    "catch body (sms expiry)": (_sms_setup, _sms_expires, [SmsVerification]),
    "finally (seat hold expiry)": (_seat_setup, _seat_expires, [SeatHold]),
    "cancellation cleanup": (_seat_setup, _seat_cancel, [SeatHold]),
    "a kept event taken when its wait begins (early signals)": (
        _shipment_setup, _shipment_packed, [Shipment]),
}


def _run(make_store, scenario, instance_id, n=None, lose=False):
    """Run a scenario, the operation dying at save `n` (None: never); then a
    fresh engine on the same database finishes. Returns (outcome, calls, died)."""
    setup, operation, workflows = SCENARIOS[scenario]
    reset_services()
    clock = FakeClock()
    healthy = Engine(make_store(), workflows, clock=clock)
    setup(healthy, instance_id)
    store = make_store() if n is None else DyingStore(make_store(), n, lose=lose)
    engine = Engine(store, workflows, clock=clock, lease_seconds=5)
    died = False
    try:
        operation(engine, instance_id)
    except Died:
        died = True
    fresh = Engine(make_store(), workflows, clock=clock)
    if died and operation is _seat_cancel and lose \
            and fresh.get(instance_id).status is WorkflowStatus.WAITING:
        # the cancel itself was lost: its caller cancels again, once the dead
        # process's lease has run out
        clock.advance(seconds=engine.lease.total_seconds())
        fresh.cancel(instance_id)
    if died and operation is _shipment_packed and lose \
            and not fresh.get(instance_id).data.packed_by:
        # the send was lost with its save: its sender (told of the failure) sends again
        clock.advance(seconds=engine.lease.total_seconds())
        fresh.send(instance_id, "packed", "Grace")
    fresh.work(until_done=True)
    box = fresh.get(instance_id).state.mailbox
    assert box is None or box.kept == [], box  # nothing left behind, whatever the crash
    result, calls = outcome(fresh, instance_id), outside_calls()
    # what comes from the instance's id (idempotency keys, the SMS code made from one)
    # is the same in every run but for the id
    code = result[1].get("code")
    for text, by in ((code, "<code>"), (instance_id, "<id>")):
        if text:
            result, calls = _without(result, text, by), _without(calls, text, by)
    return result, calls, died


def _without(value, text, by):
    """`value` with `text` in its strings (keys too) replaced by `by`."""
    if isinstance(value, str):
        return value.replace(text, by)
    if isinstance(value, dict):
        return {_without(k, text, by): _without(v, text, by) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_without(v, text, by) for v in value)
    return value


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_samples_through_the_engine(make_store, scenario):
    (status, data, _), calls, _ = _run(make_store, scenario, "plain")
    expected = {
        "catch body (transfer refund)": (WorkflowStatus.FAILED, "refunded", "deposit-0002"),
        "catch body (sms expiry)": (WorkflowStatus.FINISHED, "outcome", "expired"),
        "finally (seat hold expiry)": (WorkflowStatus.FINISHED, "log",
                                       ["expired after 1 reminders"]),
        "cancellation cleanup": (WorkflowStatus.CANCELLED, "log",
                                 ["cancelled after 1 reminders"]),
        "a kept event taken when its wait begins (early signals)": (
            WorkflowStatus.FINISHED, "payment", {"reference": "pay-77", "amount": 4200}),
    }[scenario]
    assert (status, data[expected[1]]) == (expected[0], expected[2])
    for kind, made in calls.items():
        assert len(made) == len(set(map(repr, made))), (kind, made)  # each call once
    if status is WorkflowStatus.FAILED:  # the row says why: the State keeps the failure
        error = Engine(make_store(), [MoneyTransfer]).get("plain").error
        assert "InvalidAccount: account 'nobody' does not exist" in error


def test_a_crash_between_a_failure_that_ended_its_thread_and_its_words(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    saves = 0
    for n in range(1, 20):  # the save that records FAILED, with no thread left to say why
        _run(lambda: store, "catch body (transfer refund)", f"c-{n}", n)
        record = store.get(f"c-{n}")
        saves = n
        if record.status == "failed" and record.version == n + 1:
            break
    assert saves < 19
    assert "InvalidAccount" in store.get(f"c-{saves}").error


@pytest.mark.parametrize("lose", [False, True], ids=["after-a-save", "instead-of-a-save"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_crash_at_any_save_ends_as_an_uninterrupted_run(make_store, scenario, lose):
    expected, plain_calls, _ = _run(make_store, scenario, "plain")
    for n in range(1, 100):
        result, calls, died = _run(make_store, scenario, f"crash-{n}", n, lose)
        assert result == expected, (n, result)
        if lose:  # the step whose checkpoint was lost ran again: one call made twice
            for kind, made in calls.items():
                once = list(dict.fromkeys(map(repr, made)))
                assert once == list(map(repr, plain_calls[kind])), (n, kind, made)
                assert len(made) <= len(once) + 1, (n, kind, made)
        else:  # a crash right after a save loses nothing: each call made exactly once
            assert calls == plain_calls, n
        if not died:
            assert n > 2, f"the operation made only {n - 1} saves"
            break
    else:
        raise AssertionError("the operation never ended without a crash")


#: Temporal's money-transfer workflow (temporalio/money-transfer-project-template-python,
#: workflows.py), in lines of code: what docs/statements.md compares genflow's with
TEMPORAL_WORKFLOW_LINES = 46


def _code_lines(source: str) -> int:
    """Lines of code: neither blank nor a comment nor part of a docstring."""
    import ast

    strings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            strings.update(range(node.lineno, node.end_lineno + 1))
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if line.strip() and not line.strip().startswith("#") and number not in strings)


def test_the_money_transfer_is_no_longer_than_temporals():
    import re

    page = (ROOT / "docs" / "statements.md").read_text()
    [block] = [b for b in re.findall(r"^```python\n(.*?)^```", page, re.S | re.M)
               if '@genflow.workflow("doc-transfer")' in b]
    quoted = re.search(r"genflow's workflow above, with its steps: \*\*(\d+) lines\*\*", page)
    assert quoted is not None and int(quoted[1]) == _code_lines(block)
    assert f"**{TEMPORAL_WORKFLOW_LINES} lines** for the workflow" in page
    assert _code_lines(block) <= TEMPORAL_WORKFLOW_LINES
    # the page shows the example's own workflow
    example = (ROOT / "examples" / "money_transfer.py").read_text()
    start = example.index("RETRY = ")
    end = example.index("\n\n\ndef main")
    assert block[block.index("RETRY = "):].strip() == \
        example[start:end].strip().replace('"money-transfer"', '"doc-transfer"')


# -- workflows that work together: children and the outbox (docs/together.md) --------

from faults import dies_at_call  # noqa: E402

from examples import child_workflow, device_provisioning, widget_store  # noqa: E402
from examples.child_workflow import Greeting  # noqa: E402
from examples.device_provisioning import DEVICES, ProvisionNewDevices  # noqa: E402
from examples.widget_store import SHOP, Checkout  # noqa: E402

#: the peers' samples in lines of code (what docs/together.md quotes): Temporal's
#: hello_child_workflow.py, whole; Azure's two orchestrators (sub-orchestrations page,
#: Python) and its three activities at their shortest (decorator and def: 2 lines
#: each); DBOS's two workflows and the five transactions they call (widget_store/main.py)
PEER_LINES = {"child_workflow": 43, "device_provisioning": 17 + 3 * 2, "widget_store": 66}


class _Crash(BaseException):
    """The process dies at this store call (nothing after it runs)."""


_WRITES = ("create", "save", "create_if_absent", "put_outbox", "done_outbox", "retry_outbox",
           "release", "acquire", "claim_due", "claim_outbox")


def _dies_at(store, at):  # type: ignore[no-untyped-def]
    """Every store write counted; the `at`-th raises `_Crash` (None: none does)."""
    return dies_at_call(store, at, _WRITES, _Crash)


def _greeting(engine, key):  # type: ignore[no-untyped-def]
    if not any(r.id == key for r in engine.list(workflow="greeting")):
        engine.start(Greeting("World"), id=key)
    engine.work(until_idle=True, idle_sleep=30)
    return engine.get(key).data.greeting, None


def _devices(engine, key):  # type: ignore[no-untyped-def]
    if not any(r.id == key for r in engine.list(workflow="provision-new-devices")):
        engine.start(ProvisionNewDevices(), id=key)
    engine.work(until_idle=True, idle_sleep=30)
    for child in engine.list(parent=key):
        if "download completed ack" in child.waiting_for:
            engine.send(child.id, "download completed ack")
    engine.work(until_idle=True, idle_sleep=30)
    return engine.get(key).status.value, [(r.id.replace(key, "P"), r.status)
                                          for r in engine.list(parent=key)]


def _widgets(engine, key):  # type: ignore[no-untyped-def]
    if not any(r.id == key for r in engine.list(workflow="widget-checkout")):
        engine.start(Checkout(), id=key)
    engine.work(until_idle=True, idle_sleep=30)
    if "payment status" in engine.store.get(key).waiting_for:
        engine.send(key, "payment status", "paid")
    engine.work(until_idle=True, idle_sleep=30)
    dispatch = engine.get(f"dispatch-{key}")
    return SHOP.orders.get(key), (dispatch.status.value, SHOP.progress.get(key))


TOGETHER = {"greeting": _greeting, "devices": _devices, "widget store": _widgets}


def _together(store, scenario, key, crash_at=None):  # type: ignore[no-untyped-def]
    """Run `scenario` under instance id `key`, the process dying at write `crash_at`;
    then a fresh worker finishes it. The result, and how many writes there were."""
    from genflow.clock import FakeClock

    SHOP.inventory = 10 ** 6
    clock = FakeClock()
    with _dies_at(store, crash_at) as count, contextlib.suppress(_Crash):
        TOGETHER[scenario](Engine(store, clock=clock, lease_seconds=10), key)
    clock.advance(seconds=60)  # the dead process's leases run out
    result = TOGETHER[scenario](Engine(store, clock=clock, lease_seconds=10), key)
    assert store.list_outbox(limit=5) == []
    return result, count["n"]


@pytest.mark.parametrize("scenario", list(TOGETHER))
def test_a_crash_at_any_write_of_parent_and_children_ends_as_an_uninterrupted_run(
        make_store, store_kind, scenario):
    store = make_store()
    expected, writes = _together(store, scenario, "plain")
    assert writes > 3
    stride = 3 if store_kind == "postgres" else 1  # (every write on the others: time)
    for n in range(1, writes + 1, stride):
        assert _together(store, scenario, f"k{n}", n)[0] == expected, n


def test_the_samples_that_work_together_print_what_docs_say(capsys):
    assert child_workflow.main() == "Hello, World!"
    device_provisioning.main()
    DEVICES.sent.clear()
    SHOP.inventory, SHOP.orders = 1, {}
    widget_store.main()
    out = capsys.readouterr().out
    assert "Result: Hello, World!" in out
    assert "finished: ['dev-1', 'dev-2', 'dev-3']" in out
    assert "{'order-1': 'dispatched', 'order-2': 'cancelled'} inventory 0" in out
    for data in (Greeting("x"), ProvisionNewDevices(), Checkout()):
        genflow.validate(data)


@pytest.mark.parametrize(("name", "start", "end"), [
    ("child_workflow", None, None),
    ("device_provisioning", '@genflow.workflow("device-provisioning")', "\n\n\ndef main"),
    ("widget_store", "class Shop", "\n\n\ndef main"),
])
def test_the_samples_that_work_together_are_no_longer_than_the_peers(name, start, end):
    source = (ROOT / "examples" / f"{name}.py").read_text()
    if start is not None:
        source = source[source.index(start):source.index(end)]
    lines = _code_lines(source)
    assert lines <= PEER_LINES[name], (name, lines)
    page = (ROOT / "docs" / "together.md").read_text()
    assert f"**{lines} lines**" in page and f"**{PEER_LINES[name]} lines**" in page


def test_the_toolkit_checks_a_workflow_with_children():
    from genflow.testing.suite import check_workflow

    check_workflow(ProvisionNewDevices, examples=10)  # replays, reloads, crashes agree
# -- Azure's fan-out/fan-in: 25 copies at once ------------------------------------------------

BACKED_UP = sum(1000 + n for n in range(25))


def test_fan_out_runs_its_25_copies_at_once_through_the_engine(make_store, capsys):
    STORAGE.reset()
    engine = Engine(make_store(), [Backup], clock=FakeClock())
    iid = asyncio.run(engine.start_async(Backup()))
    backup = engine.get(iid)
    assert backup.status is WorkflowStatus.FINISHED and backup.data.total == BACKED_UP
    assert STORAGE.peak == 25 and len(STORAGE.calls) == 25 and len(STORAGE.stored) == 25
    assert backup.version >= 27  # a save per step applied: the list, 25 copies, the sum
    STORAGE.reset()
    fan_out.main()
    assert capsys.readouterr().out == "finished: 25 files, 25300 bytes, 25 uploads at once\n"


def test_fan_out_one_step_at_a_time_ends_the_same(make_store):
    STORAGE.reset()
    engine = Engine(make_store(), [Backup], clock=FakeClock(), parallel_steps=1)
    iid = asyncio.run(engine.start_async(Backup()))
    assert STORAGE.peak == 1
    assert engine.get(iid).data == Backup(files=[f"page-{n:02}.html" for n in range(25)],
                                          sizes=[1000 + n for n in range(25)],
                                          total=BACKED_UP)


def test_fan_out_ends_the_same_in_every_mode():
    """Crash mode crashes at every durable checkpoint: each crash drops the
    copies still running, which run again (same key: stored once)."""
    blobs = set()
    for mode in MODES:
        STORAGE.reset()
        run = Instance(Backup(), mode, asynchronous=True)
        run.resume()
        assert run.wf.total == BACKED_UP and len(STORAGE.stored) == 25, mode
        blobs.add(run.blob())
    assert len(blobs) == 1


@pytest.mark.parametrize("lose", [False, True], ids=["after-a-save", "instead-of-a-save"])
def test_fan_out_a_crash_at_any_save_loses_no_copy(make_store, lose):
    store = make_store()
    expected = None
    for n in range(1, 60):
        STORAGE.reset()
        clock = FakeClock()
        iid = f"backup-{n}"
        died = False
        try:
            asyncio.run(Engine(DyingStore(store, n, lose=lose), [Backup],
                               clock=clock).start_async(Backup(), id=iid))
        except Died:
            died = True
        clock.advance(seconds=120)  # the dead process's lease runs out
        survivor = Engine(store, [Backup], clock=clock)
        for _ in range(5):
            if survivor.get(iid).status is WorkflowStatus.FINISHED:
                break
            asyncio.run(survivor.run_due_async())
        backup = survivor.get(iid)
        assert backup.status is WorkflowStatus.FINISHED and backup.data.total == BACKED_UP, n
        assert len(STORAGE.stored) == 25, n  # each copy stored once, whatever ran again
        expected = expected or backup.data
        assert backup.data == expected, n
        if not died:
            assert n > 27, f"the start made only {n - 1} saves"
            break
    else:
        raise AssertionError("the start never ended without a crash")
