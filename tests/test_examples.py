"""The examples run to completion, in every mode, and refuse bad input without changing.

Each scenario runs through the pure core (`resume` / `handle_callback`) in the
modes of `genflow.testing.Instance`: in memory, with `dumps`/`loads` between every
operation, and "crashing" after every checkpoint. All modes must end with the
same data and the same blob. The README's demo runs in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

import genflow
from genflow import (
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
from genflow.testing import MODES, Instance
from genflow.testing.instance import request

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `examples` is not installed: it lives beside `tests`
    sys.path.insert(0, str(ROOT))

from examples import approval, pizza, seed_readme  # noqa: E402
from examples.approval import INBOX, Purchase  # noqa: E402
from examples.pizza import PaymentStatus, PizzaOrder, Size, Stage  # noqa: E402

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
