"""Operating in-flight instances: the deploy check, retiring a statement, repair
moves, and the journal."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genflow
import genflow.registry
from genflow import EventHandler, Go, If, On, Step, ThreadStatus, Wait, WorkflowStatus
from genflow.clock import FakeClock
from genflow.deploy import check_store
from genflow.engine import Engine
from genflow.errors import (
    GenflowError,
    MoveError,
    NonDeterminismError,
    UnknownThreadError,
    WorkflowFinishedError,
)
from genflow.stores import MemoryStore, SQLiteStore

#: which edition of the code is "installed": the definition reads it, as a
#: redeploy would change the code under the stored instances
EDITION = {"v": 1}
INBOX: set[str] = set()


class Inbox(EventHandler):
    """An outside system: a request is open while the wait is set up."""

    def setup(self, req):
        INBOX.add(req.event)
        return req.event

    def handle(self, req, payload: str) -> str:
        return payload

    def teardown(self, req, handled):
        INBOX.discard(req.setup_data)


@genflow.workflow("ops-order")
@attrs.define
class Order:
    log: list[str] = attrs.field(factory=list)

    def definition(self):
        v = EDITION["v"]
        yield Step("receive", self.note("receive"))
        if v >= 2:  # a safe edit: a new step before anything in flight
            yield Step("audit", self.note("audit"))
        if v < 4:  # v3 retires "legacy check"; v4 deletes it
            yield If(v < 3, "legacy enabled", Wait("legacy check", On("legacy ok", Inbox())))
        yield Go("courier", self.courier) if v != 5 else None  # v5 drops the thread
        yield Wait("approval", On("approve", Inbox()),
                   *([On("reject", Inbox())] if v != 6 else []))  # v6 drops an event
        yield Step("ship", self.note("ship"))

    def courier(self):
        yield Wait("pickup", On("picked", Inbox()))
        yield Step("hand over", self.note("hand over"))

    def note(self, what: str):
        def step() -> None:
            self.log.append(what)
        return step


@pytest.fixture
def engine(tmp_path):
    EDITION["v"] = 1
    INBOX.clear()
    store = SQLiteStore(tmp_path / "ops.db")
    yield Engine(store, clock=FakeClock())
    store.close()
    EDITION["v"] = 1


def _at(engine: Engine, iid: str) -> dict[str, str]:
    return {t.id: t.stmt for t in engine.get(iid).state.threads}


def test_safe_edits_pass_the_check_and_instances_finish(engine):
    legacy = engine.start(Order(), id="legacy")  # waits at "legacy check"
    approving = engine.start(Order(), id="approving")
    engine.send(approving, "legacy ok", "yes")  # now at "approval" (+ courier thread)
    assert _at(engine, approving) == {"_main_": "approval", "courier": "pickup"}
    assert check_store(engine.store).ok
    EDITION["v"] = 2  # a step added before every saved position: safe
    report = check_store(engine.store)
    assert report.ok and report.checked == 2
    assert "ok" in report.format()
    engine.send(approving, "approve", "boss")
    engine.send(approving, "picked", "van", thread="courier")
    done = engine.get(approving)
    assert done.status is WorkflowStatus.FINISHED
    assert done.data.log == ["receive", "ship", "hand over"]  # "audit" came after it passed
    assert _at(engine, legacy) == {"_main_": "legacy check"}


@pytest.mark.parametrize(("edition", "statement", "words"), [
    (4, "legacy check", "not in the replayed definition"),
    (5, "courier", "the Go statement that started the thread"),
    (6, "approval", "its event 'reject' is gone"),
])
def test_unsafe_edits_are_reported_by_name(engine, edition, statement, words):
    engine.start(Order(), id="a")  # at "legacy check"
    for iid in ("b", "c"):
        engine.start(Order(), id=iid)
        engine.send(iid, "legacy ok", "yes")  # at "approval", courier at "pickup"
    versions = {r.id: r.version for r in engine.store.list()}
    EDITION["v"] = edition
    report = check_store(engine.store)
    assert not report.ok and report.checked == 3
    groups = report.grouped()
    assert ("ops-order", statement) in groups
    problems = groups[("ops-order", statement)]
    assert words in problems[0].message
    text = report.format()
    assert f"statement {statement!r}" in text and "would break" in text
    # the check changed nothing
    assert {r.id: r.version for r in engine.store.list()} == versions


def test_the_check_reports_workflows_that_are_not_installed(engine):
    engine.start(Order(), id="a")
    report = check_store(engine.store, workflows={})
    assert [(p.workflow, p.statement) for p in report.problems] == [("ops-order", "(workflow)")]
    assert "not installed" in report.problems[0].message


def test_retiring_a_statement_safely(engine):
    """Skip it with a false condition, deploy, check nothing sits on it, delete it."""
    sitting = engine.start(Order(), id="sitting")
    assert _at(engine, sitting) == {"_main_": "legacy check"}
    EDITION["v"] = 3  # step 1: the branch is skipped for everyone new
    fresh = engine.start(Order(), id="fresh")
    assert _at(engine, fresh)["_main_"] == "approval"  # new instances never enter it
    assert check_store(engine.store).ok  # the statement still exists: nothing breaks
    # step 2: deleting it now would strand the instance still sitting on it
    EDITION["v"] = 4
    assert [p.instance_id for p in check_store(engine.store).problems] == ["sitting"]
    EDITION["v"] = 3
    engine.send(sitting, "legacy ok", "done at last")  # it leaves under the retiring code
    EDITION["v"] = 4  # step 3: nothing sits on it any more: delete
    assert check_store(engine.store).ok
    engine.send(sitting, "approve", "boss")
    engine.send(sitting, "picked", "van", thread="courier")
    assert engine.get(sitting).status is WorkflowStatus.FINISHED


def test_move_is_a_validated_goto(engine):
    iid = engine.start(Order(), id="m")
    assert {"legacy ok"} == INBOX
    before = engine.store.get(iid)
    for thread, statement, error, words in [
        ("_main_", "no such step", MoveError, "no statement 'no such step'"),
        ("_main_", "courier", MoveError, "is a Go"),
        ("_main_", "pickup", MoveError, "no statement 'pickup'"),  # the courier's, not main's
        ("ghost", "ship", UnknownThreadError, "ghost"),
    ]:
        with pytest.raises(error, match=words):
            engine.move(iid, thread, statement)
    after = engine.store.get(iid)
    assert (after.version, after.blob) == (before.version, before.blob)
    assert {"legacy ok"} == INBOX  # nothing was torn down by a refused move

    engine.move(iid, "_main_", "approval")  # skip the legacy check
    assert {"approve", "reject"} == INBOX  # legacy torn down, approval set up
    assert _at(engine, iid) == {"_main_": "approval"}  # the Go before it was jumped over
    engine.send(iid, "approve", "ops")
    done = engine.get(iid)
    assert done.status is WorkflowStatus.FINISHED and done.data.log == ["receive", "ship"]
    with pytest.raises(WorkflowFinishedError):
        engine.move(iid, "_main_", "ship")
    moves = [e.detail for e in engine.store.journal(iid) if e.kind == "move"]
    assert moves == [{"thread": "_main_", "from": "legacy check", "to": "approval",
                      "by": engine.owner}]


def test_move_to_a_step_runs_it(engine):
    iid = engine.start(Order(), id="s")
    engine.move(iid, "_main_", "ship")
    done = engine.get(iid)
    assert done.status is WorkflowStatus.FINISHED and done.data.log == ["receive", "ship"]
    assert set() == INBOX


def test_a_moved_instance_passes_the_check(engine):
    engine.start(Order(), id="stuck")  # at "legacy check"
    EDITION["v"] = 4
    assert not check_store(engine.store).ok
    with pytest.raises(NonDeterminismError, match="legacy check"):  # the new code cannot...
        engine.send("stuck", "legacy ok", "yes")
    EDITION["v"] = 1
    engine.move("stuck", "_main_", "approval")  # ...so move it off under the old code
    EDITION["v"] = 4
    assert check_store(engine.store).ok


def test_journal_matches_what_happened(tmp_path):
    INBOX.clear()
    EDITION["v"] = 1
    store = SQLiteStore(tmp_path / "j.db")
    engine = Engine(store, clock=FakeClock(), journal=True)
    iid = engine.start(Order(), id="j")
    engine.send(iid, "legacy ok", "yes")
    engine.send(iid, "approve", "boss")
    engine.cancel(iid)
    kinds = [e.kind for e in store.journal(iid)]
    assert kinds[0] == "start" and kinds[-1] == "cancel"
    assert [e.detail["event"] for e in store.journal(iid) if e.kind == "event"] == [
        "legacy ok", "approve"]
    assert kinds.count("after_step") == 2  # receive, ship
    assert "after_setup" in kinds and "after_teardown" in kinds
    assert [e.seq for e in store.journal(iid)] == list(range(1, len(kinds) + 1))
    store.close()


NAMES = ["receive", "legacy check", "legacy enabled", "courier", "approval", "ship",
         "pickup", "hand over", "nowhere", "approve"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.tuples(st.sampled_from(["_main_", "courier"]), st.sampled_from(NAMES)),
                      min_size=1, max_size=4))
def test_any_move_is_refused_unchanged_or_leaves_a_finishable_instance(tmp_path_factory, moves):
    INBOX.clear()
    EDITION["v"] = 1
    store = SQLiteStore(tmp_path_factory.mktemp("moves") / "m.db")
    engine = Engine(store, clock=FakeClock())
    iid = engine.start(Order())
    engine.send(iid, "legacy ok", "yes")  # main at approval, courier at pickup
    for thread, statement in moves:
        before = store.get(iid)
        try:
            engine.move(iid, thread, statement)
        except (MoveError, UnknownThreadError, WorkflowFinishedError):
            after = store.get(iid)
            assert (after.version, after.blob) == (before.version, before.blob)
    # whatever happened, answering what it waits for finishes it, or (a move back
    # over a Go, whose thread still lives) fails it with a clear error
    for _ in range(12):
        instance = engine.get(iid)
        if instance.status in (WorkflowStatus.FINISHED, WorkflowStatus.FAILED):
            break
        thread, event = next((t.id, e.event) for t in instance.state.threads for e in t.events
                             if t.status is ThreadStatus.WAITING_EVENT)
        engine.send(iid, event, "x", thread=thread)
    instance = engine.get(iid)
    if instance.status is WorkflowStatus.FAILED:
        assert "DuplicateThreadError" in instance.error and "courier" in instance.error
        assert any(statement in ("receive", "legacy check") for _, statement in moves)
    else:
        assert instance.status is WorkflowStatus.FINISHED
        assert set() == INBOX  # every request opened was withdrawn or answered
    store.close()


def test_the_check_in_several_processes_finds_the_same(engine):
    for n in range(12):
        engine.start(Order(), id=f"p{n:02}")
        if n % 3:
            engine.send(f"p{n:02}", "legacy ok", "yes")
    EDITION["v"] = 4  # the eight that moved on are fine, the four at "legacy check" are not
    alone = check_store(engine.store)
    shared = check_store(engine.store, processes=2)
    assert (shared.checked, shared.problems) == (alone.checked, alone.problems)
    assert [p.instance_id for p in alone.problems] == ["p00", "p03", "p06", "p09"]
    with pytest.raises(GenflowError, match="cannot be opened"):
        check_store(MemoryStore(), processes=2)


# -- what the check counts as in flight, and what it advises -------------------------------

#: switches the tests flip: a renamed wait (a deploy), a teardown or a step that fails
TICKET = {"renamed": False, "step renamed": False, "teardown fails": False,
          "step fails": False}


class Webhook(EventHandler):
    def handle(self, req, payload: str) -> None:
        pass

    def teardown(self, req, handled):
        if TICKET["teardown fails"]:
            raise ConnectionError("the webhook service is down")


@genflow.workflow("ops-ticket")
@attrs.define
class Ticket:
    def definition(self):
        yield Wait("sorting?" if TICKET["renamed"] else "triage?", On("triaged", Webhook()))
        yield Step("archive" if TICKET["step renamed"] else "file", self.file)

    def file(self) -> None:
        if TICKET["step fails"]:
            raise ConnectionError("the archive is down")


@pytest.fixture
def tickets(store):
    """An engine on every store kind, with instances in every status."""
    TICKET.update(dict.fromkeys(TICKET, False))
    engine = Engine(store, clock=FakeClock())
    engine.start(Ticket(), id="waiting")
    engine.send(engine.start(Ticket(), id="finished"), "triaged", "ok")
    engine.cancel(engine.start(Ticket(), id="cancelled"))
    TICKET["step fails"] = True
    engine.send(engine.start(Ticket(), id="failed"), "triaged", "ok")  # "file" fails: FAILED
    TICKET["teardown fails"] = True
    owing = engine.start(Ticket(), id="owes a teardown")
    engine.cancel(owing)  # cancelling until its teardown, retried later, is done
    TICKET.update({"teardown fails": False, "step fails": False})
    statuses = {r.id: r.status for r in store.list()}
    assert statuses == {"waiting": "waiting", "finished": "finished", "cancelled": "cancelled",
                        "failed": "failed", "owes a teardown": "cancelling"}
    yield engine
    TICKET.update(dict.fromkeys(TICKET, False))


def test_the_check_counts_what_the_code_may_still_move(tickets):
    """Waiting, failed (a retry runs it again) and cancelling (owing a teardown) count;
    finished and cleanly cancelled instances do not, not even as 'not installed'."""
    assert check_store(tickets.store).checked == 3
    report = check_store(tickets.store, workflows={})
    assert sorted(p.instance_id for p in report.problems) == [
        "failed", "owes a teardown", "waiting"]
    assert "fix: import the module that defines the workflow (`genflow --app MODULE check`" \
        in " ".join(report.format().split())


def test_a_rename_is_reported_for_every_instance_that_stands_on_it(tickets):
    TICKET["renamed"] = True
    report = check_store(tickets.store)
    assert report.checked == 3
    assert sorted(p.instance_id for p in report.problems) == ["owes a teardown", "waiting"]
    assert report.format(examples=5).splitlines() == [
        "2 of 3 in-flight instance(s) would break with the installed code:",
        "  workflow 'ops-ticket', statement 'triage?': 2 instance(s) (owes a teardown, waiting)",
        "    workflow 'ops-ticket', thread '_main_': saved statement 'triage?' is not in the "
        "replayed definition (unwinding)",
        "fix: keep the old name in the code until this check is clean. The new code cannot move",
        "     these instances (`move`, `send` and `retry` fail as the check did): with the old",
        "     code still deployed, let them move past it or `genflow move` them off it, then",
        "     check again.",
    ]


def test_the_advice_after_a_rename_is_true(tickets):
    """Under the new code, move and send fail as the check says; under the old code a
    move clears the check, and the new code then runs the instance."""
    TICKET["renamed"] = True
    before = tickets.store.get("waiting")
    for attempt in (lambda: tickets.move("waiting", "_main_", "file"),
                    lambda: tickets.send("waiting", "triaged", "ok")):
        with pytest.raises(NonDeterminismError, match="triage"):
            attempt()
    after = tickets.store.get("waiting")
    assert (after.blob, after.version) == (before.blob, before.version)
    TICKET["renamed"] = False  # the old code, still deployed
    tickets.move("waiting", "_main_", "file")
    tickets.retry("failed")  # its step works now: it finishes
    TICKET["renamed"] = True
    assert [p.instance_id for p in check_store(tickets.store).problems] == ["owes a teardown"]
    assert tickets.get("waiting").status is WorkflowStatus.FINISHED


def test_a_failed_instance_counts_until_it_is_cancelled(tickets):
    """A failed instance is in flight: `retry` runs it with the installed code. Giving
    it up for good is cancelling it, and then it stops counting."""
    TICKET["step renamed"] = True  # "file", where the failed instance stands, is gone
    report = check_store(tickets.store)
    assert [(p.instance_id, p.statement) for p in report.problems] == [("failed", "file")]
    assert "1 instance(s) (failed); 1 of them failed (`genflow retry` would break)" \
        in report.format()
    tickets.cancel("failed")
    assert check_store(tickets.store).ok


def test_the_check_warns_of_a_workflow_name_nothing_installs(tickets):
    report = check_store(tickets.store, workflow="ops-tickets")
    assert report.ok and report.checked == 0
    installed = genflow.registry.name_list(genflow.registry.registered())
    assert report.warnings == (f"no workflow 'ops-tickets' is installed (did you mean "
                               f"'ops-ticket'? installed: {installed})"
                               ": its instances, if any, are reported as not installed",)
    assert check_store(tickets.store, workflow="ops-ticket").warnings == ()
