"""Child workflows (`Child`, `Children`): started in the parent's checkpoint
transaction, exactly once, reporting back typed; failures caught with Try;
cancellation reaching the children; on every store."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest
from faults import ROUND_WRITES, dies_at_call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genflow import (
    Child,
    ChildFailed,
    Children,
    Engine,
    Failure,
    FakeClock,
    For,
    On,
    Step,
    Try,
    Wait,
    WorkflowStatus,
    workflow,
)
from genflow.errors import DefinitionError, InvalidIdError, StatementError
from genflow.stores import MemoryStore

RUNS: dict[str, int] = {}


@attrs.frozen
class Quote:
    supplier: str
    price: int


@workflow("kid-quote")
@attrs.define
class GetQuote:
    supplier: str
    price: int = 0
    fail: bool = False
    wait: bool = False
    quote: Quote | None = None

    def definition(self):  # type: ignore[no-untyped-def]
        if self.wait:
            yield Wait("hold", On("go"))
        yield Step("ask", self.ask)

    def ask(self) -> None:
        RUNS[self.supplier] = RUNS.get(self.supplier, 0) + 1
        if self.fail:
            raise ValueError(f"{self.supplier} is closed")
        self.price = len(self.supplier) * 10
        self.quote = Quote(self.supplier, self.price)


@workflow("kid-buy")
@attrs.define
class Buy:
    suppliers: list[str]
    first: int | None = None
    policy: str = "cancel"
    best: Quote | None = None
    quotes: list[Quote] = attrs.field(factory=list)
    prices: list[int] = attrs.field(factory=list)
    failure: Failure | None = None
    ids: list[str] | None = None
    waiting: list[str] = attrs.field(factory=list)

    def definition(self):  # type: ignore[no-untyped-def]
        kids = [GetQuote(s, fail=s.startswith("x"), wait=s.startswith("w"))
                for s in self.suppliers]
        yield Try("buy",
                  Children("quotes", kids, into="quotes", result="quote", first=self.first,
                           ids=self.ids, on_cancel=self.policy),
                  Step("pick", self.pick),
                  ).Catch("no quote", Step("note", lambda: None), into="failure",
                          errors=ChildFailed)

    def pick(self) -> None:
        self.best = min(self.quotes, key=lambda q: q.price)


@workflow("kid-one")
@attrs.define
class One:
    supplier: str
    price: int = 0
    child_id: str | None = None

    def definition(self):  # type: ignore[no-untyped-def]
        yield Child("quote", GetQuote(self.supplier), id=self.child_id, into="price",
                    result="price")


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()


def _engine(store, clock=None, **kw) -> Engine:  # type: ignore[no-untyped-def]
    return Engine(store, clock=clock or FakeClock(), **kw)


def test_a_child_s_result_reaches_the_parent_typed(store):
    engine = _engine(store)
    pid = engine.start(One("acme"), id="p")
    [child] = engine.list(parent=pid)
    assert child.id == "p/quote/1" and child.workflow == "kid-quote"
    assert engine.get(child.id).state.parent.instance_id == "p"
    engine.work(until_idle=True)
    parent = engine.get(pid)
    assert parent.status.value == "finished" and parent.data.price == 40
    assert RUNS == {"acme": 1}


def test_fan_out_and_fan_in_over_all_children(store):
    engine = _engine(store)
    pid = engine.start(Buy(["bb", "a", "ccc"]))
    assert [r.id for r in engine.list(parent=pid)] == [f"{pid}/quotes/1/{i}" for i in range(3)]
    engine.work(until_idle=True)
    data = engine.get(pid).data
    assert [q.supplier for q in data.quotes] == ["bb", "a", "ccc"]  # the items' order
    assert all(isinstance(q, Quote) for q in data.quotes)
    assert data.best == Quote("a", 10)
    assert store.list_outbox() == []


def test_first_k_goes_on_and_cancels_the_rest(store):
    engine = _engine(store)
    pid = engine.start(Buy(["a", "b", "wait-forever"], first=2))
    engine.work(until_idle=True)
    parent = engine.get(pid)
    assert parent.status.value == "finished"
    assert sorted(q.supplier for q in parent.data.quotes) == ["a", "b"]
    statuses = {r.id.rsplit("/", 1)[1]: r.status for r in engine.list(parent=pid)}
    assert statuses == {"0": "finished", "1": "finished", "2": "cancelled"}
    assert store.list_outbox() == []  # the cancelled child's report was stale: dropped


def test_first_k_with_abandon_lets_the_rest_run(store):
    engine = _engine(store)
    pid = engine.start(Buy(["a", "wait"], first=1, policy="abandon"))
    engine.work(until_idle=True)
    assert engine.get(pid).status.value == "finished"
    left = [r for r in engine.list(parent=pid) if r.status != "finished"]
    assert [r.status for r in left] == ["waiting"]
    engine.send(left[0].id, "go")
    engine.work(until_idle=True)
    assert engine.get(left[0].id).status.value == "finished"
    assert store.list_outbox() == []  # its report found no wait: dropped


def test_a_failed_child_is_a_childfailed_the_parent_catches(store):
    engine = _engine(store)
    pid = engine.start(Buy(["a", "xclosed", "wait"]))
    engine.work(until_idle=True)
    parent = engine.get(pid)
    assert parent.status.value == "finished" and parent.data.best is None
    failure = parent.data.failure
    assert failure.type == "ChildFailed" and failure.at == "buy"
    assert f"child '{pid}/quotes/1/1' (kid-quote) failed" in failure.message
    assert "xclosed is closed" in failure.message
    statuses = [r.status for r in engine.list(parent=pid)]
    assert statuses == ["finished", "failed", "cancelled"]  # the one still running: cancelled


def test_an_uncaught_child_failure_fails_the_parent(store):
    @workflow("kid-bare")
    @attrs.define
    class Bare:
        price: int = 0

        def definition(self):  # type: ignore[no-untyped-def]
            yield Child("quote", GetQuote("xx", fail=True), into="price", result="price")

    engine = _engine(store)
    pid = engine.start(Bare())
    engine.work(until_idle=True)
    parent = engine.get(pid)
    assert parent.status.value == "failed"
    assert "ChildFailed" in parent.error and "xx is closed" in parent.error


def test_cancelling_the_parent_cancels_its_children(store):
    engine = _engine(store)
    pid = engine.start(Buy(["wait-1", "wait-2"]))
    engine.work(until_idle=True)
    engine.cancel(pid)
    engine.work(until_idle=True)
    assert engine.get(pid).status.value == "cancelled"
    assert [r.status for r in engine.list(parent=pid)] == ["cancelled", "cancelled"]
    assert store.list_outbox() == []


def test_cancelling_with_abandon_leaves_the_children(store):
    engine = _engine(store)
    pid = engine.start(Buy(["wait-1"], policy="abandon"))
    engine.work(until_idle=True)
    engine.cancel(pid)
    engine.work(until_idle=True)
    assert [r.status for r in engine.list(parent=pid)] == ["waiting"]


def test_a_child_id_from_the_data_and_one_that_belongs_to_someone_else(store):
    engine = _engine(store)
    engine.start(GetQuote("squatter", wait=True), id="taken")
    pid = engine.start(Buy(["a", "b"], ids=["fresh", "taken"]))
    engine.work(until_idle=True)
    parent = engine.get(pid)
    assert parent.data.failure.type == "ChildFailed"
    assert "instance 'taken' exists and is not this parent's child" in parent.data.failure.message
    assert engine.get("taken").data.supplier == "squatter"  # untouched
    assert [r.id for r in engine.list(parent=pid)] == ["fresh"]


def test_a_child_in_a_loop_gets_new_children_each_time(store):
    @workflow("kid-loop")
    @attrs.define
    class Loop:
        n: int = 0
        total: int = 0
        price: int = 0

        def definition(self):  # type: ignore[no-untyped-def]
            yield For("rounds", self.n < 3,
                      Child("quote", GetQuote("ab" * (self.n + 1)), into="price",
                            result="price"),
                      Step("add", self.add))

        def add(self) -> None:
            self.total += self.price
            self.n += 1

    engine = _engine(store)
    pid = engine.start(Loop())
    engine.work(until_idle=True)
    assert engine.get(pid).data.total == 20 + 40 + 60
    assert len(engine.list(parent=pid)) == 3


# -- bad input ------------------------------------------------------------------------


def test_an_unknown_child_workflow_is_refused_when_the_parent_starts(store):
    @workflow("kid-bad-kind")
    @attrs.define
    class BadKind:
        def definition(self):  # type: ignore[no-untyped-def]
            yield Child("what", object())

    engine = _engine(store)
    with pytest.raises(DefinitionError, match=r"Child 'what': a child is no workflow: <object "
                                              r"object at 0x[0-9a-f]+> is of type object, not "
                                              r"a workflow"):
        engine.start(BadKind())
    assert store.list() == []


def test_a_child_whose_data_does_not_store_fails_the_wait_and_starts_nothing(store):
    @workflow("kid-bad-data")
    @attrs.define
    class BadData:
        failure: Failure | None = None

        def definition(self):  # type: ignore[no-untyped-def]
            yield Try("t", Children("kids", [GetQuote("ok"), GetQuote("bad", price=1 << 70)])
                      ).Catch("c", Step("n", lambda: None), into="failure")

    engine = _engine(store)
    pid = engine.start(BadData())
    parent = engine.get(pid)
    assert parent.status.value == "finished"
    assert parent.data.failure.type == "SerializationError"
    assert [r.id for r in store.list()] == [pid]  # no child half-started
    assert store.list_outbox() == []


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Children("c", [GetQuote("a")], first=2), "first=2 must be 1 to 1"),
    (lambda: Children("c", [GetQuote("a"), GetQuote("b")], ids=["x", "x"]), "distinct id"),
    (lambda: Child("c", GetQuote("a"), on_cancel="ignore"), "'cancel' or 'abandon'"),
    (lambda: Child("c", GetQuote("a"), handler=lambda: None), "one argument"),
])
def test_misuse_is_refused_with_words_that_say_what_to_do(make, words):
    with pytest.raises(StatementError, match=words):
        make()


def test_into_must_be_a_field():
    from genflow import validate

    @workflow("kid-no-field")
    @attrs.define
    class NoField:
        def definition(self):  # type: ignore[no-untyped-def]
            yield Child("c", GetQuote("a"), into="nowhere")

    with pytest.raises(DefinitionError, match="into='nowhere' is not a field of NoField"):
        validate(NoField())


# -- crashes at every write of parent and children together ---------------------------


class Crash(BaseException):
    pass


def _run_with_crash(crash_at: int | None, suppliers: list[str], first: int | None) -> tuple:
    store = MemoryStore()
    clock = FakeClock()
    with dies_at_call(store, crash_at, ROUND_WRITES, Crash) as count:
        engine = Engine(store, clock=clock, lease_seconds=10)
        try:
            engine.start(Buy(suppliers, first=first), id="p")
            engine.work(until_idle=True)
        except Crash:
            pass
    worker = Engine(store, clock=clock, lease_seconds=10)
    if not any(r.id == "p" for r in store.list()):
        worker.start(Buy(suppliers, first=first), id="p")
    for _ in range(4):
        clock.advance(seconds=100)
        worker.work(until_idle=True, idle_sleep=30)
    parent = worker.get("p")
    return (parent.status.value, parent.data.best, sorted(r.id for r in worker.list(parent="p")),
            len(store.list()), store.list_outbox()), count["n"]


def test_a_crash_at_every_write_of_parent_and_children_loses_nothing():
    """Every write of a whole fan-out run, each in turn the one where the
    process dies: the run that follows ends as an uninterrupted one, with
    every child started once (ids derived again, never a second row)."""
    expected, writes = _run_with_crash(None, ["bb", "a", "ccc"], None)
    assert expected[0] == "finished" and expected[1] == Quote("a", 10)
    for crash_at in range(1, writes + 1):
        got, _ = _run_with_crash(crash_at, ["bb", "a", "ccc"], None)
        assert got == expected, crash_at


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suppliers=st.lists(st.sampled_from(["a", "bb", "ccc", "xbad"]), min_size=1, max_size=4),
       crash_at=st.integers(1, 60), data=st.data())
def test_a_crash_anywhere_in_any_fan_out_ends_as_the_uninterrupted_run(suppliers, crash_at,
                                                                        data):
    first = data.draw(st.none() | st.integers(1, len(suppliers)))
    RUNS.clear()
    expected, _ = _run_with_crash(None, suppliers, first)
    got, _ = _run_with_crash(crash_at, suppliers, first)
    if first is not None and any(s.startswith("x") for s in suppliers):
        assert got[0] == expected[0] == "finished"  # which child ends first may differ
    else:
        assert got[:4] == expected[:4]
    assert got[4] == [] and got[3] == len(suppliers) + 1


def test_catch_childfailed_by_type(store):
    assert issubclass(ChildFailed, Exception)
    error = ChildFailed("c1", "kid-quote", "failed", "boom")
    assert (error.child_id, error.workflow, error.status, error.error) == (
        "c1", "kid-quote", "failed", "boom")
    assert str(error) == "child 'c1' (kid-quote) failed: boom"


# -- the toolkit: a parent tested with fake children ----------------------------------


@pytest.mark.parametrize("mode", ["plain", "reload", "crash"])
def test_the_toolkit_tests_a_parent_with_a_fake_child_result(mode):
    from genflow.outbox import StartIntent
    from genflow.testing import Instance

    run = Instance(One("acme"), mode, instance_id="p")
    run.resume()
    [start] = run.outbox  # asked for once, whatever the crashes
    assert isinstance(start, StartIntent) and start.id == "p/quote/1"
    assert start.workflow == "kid-quote" and start.parent.instance_id == "p"
    run.finish_child("quote", GetQuote("acme", price=99))
    assert run.finished and run.wf.price == 99


@pytest.mark.parametrize("mode", ["plain", "crash"])
def test_the_toolkit_fails_a_fake_child(mode):
    from genflow.testing import Instance

    run = Instance(Buy(["a", "b"]), mode, instance_id="p")
    run.resume()
    assert len(run.outbox) == 2
    run.finish_child("quotes", GetQuote("a", quote=Quote("a", 1)), index=0)
    assert not run.finished  # one of two
    run.fail_child("quotes", "closed", index=1, workflow="kid-quote")
    assert run.finished and run.wf.failure.type == "ChildFailed"
    assert "closed" in run.wf.failure.message


def test_the_diagram_draws_children_and_where_their_failure_goes():
    from genflow.render import build_graph, to_mermaid

    graph = build_graph(Buy(["a", "b"], first=1))
    [node] = [n for n in graph.nodes if n.kind == "child"]
    assert node.label == "Children quotes\n2 x kid-quote\nfirst 1"
    assert node.detail["on_cancel"] == "cancel" and node.detail["into"] == "quotes"
    catch = next(n for n in graph.nodes if n.kind == "catch")
    assert any(e.source == node.id and e.target == catch.id and e.kind == "fail"
               for e in graph.edges)
    assert "child ended" not in to_mermaid(graph)  # no event node: it is its own event


def test_a_fan_out_over_nothing_is_passed(store):
    @workflow("kid-empty")
    @attrs.define
    class Empty:
        names: list[str] = attrs.field(factory=list)
        quotes: list[Quote] = attrs.field(factory=list)
        after: bool = False

        def definition(self):  # type: ignore[no-untyped-def]
            yield Children("quotes", [GetQuote(n) for n in self.names], into="quotes",
                           result="quote")
            yield Step("after", self.done)

        def done(self) -> None:
            self.after = True

    engine = _engine(store)
    pid = engine.start(Empty())
    got = engine.get(pid)
    assert got.status.value == "finished" and got.data.after and got.data.quotes == []
    assert engine.list(parent=pid) == []


# -- forged or stray reports: refused, the parent byte-identical ----------------------


@pytest.mark.parametrize("payload", [
    {"index": 0, "id": "someone-else", "workflow": "kid-quote", "status": "finished"},
    {"index": 7, "id": "p/quote/1", "workflow": "kid-quote", "status": "finished"},
    {"index": "zero"},
    None,
])
def test_a_forged_report_is_refused_and_changes_nothing(store, payload):
    from genflow.errors import EventError

    engine = _engine(store)
    engine.start(One("acme"), id="p")
    before = store.get("p")
    with pytest.raises(EventError):
        engine.send("p", "child ended", payload)
    after = store.get("p")
    assert (after.blob, after.version, after.status, after.wake_at, after.waiting_for) == (
        before.blob, before.version, before.status, before.wake_at, before.waiting_for)
    engine.work(until_idle=True)  # the real child still reports
    assert engine.get("p").data.price == 40


def test_children_started_from_async_steps_and_the_async_api(store):
    import asyncio

    @workflow("kid-async")
    @attrs.define
    class AsyncParent:
        price: int = 0
        started: str = ""

        def definition(self):  # type: ignore[no-untyped-def]
            yield Step("start one", self.start_one)
            yield Child("quote", GetQuote("asyncco"), into="price", result="price")

        async def start_one(self) -> None:
            self.started = current_step().start(GetQuote("side"), id="side-quote")

    from genflow import current_step

    async def main() -> None:
        engine = _engine(store)
        await engine.start_async(AsyncParent(), id="ap")
        for _ in range(3):
            await engine.run_due_async()

    asyncio.run(main())
    engine = _engine(store)
    engine.work(until_idle=True)
    assert engine.get("ap").data.price == 70 and engine.get("side-quote").data.price == 40


def test_show_and_the_console_link_parent_and_children(store):
    from genflow.cli import _describe
    from genflow.render.views import instance_view

    engine = _engine(store)
    engine.start(Buy(["a", "wait"]), id="p")
    engine.work(until_idle=True)
    text = _describe(engine, engine.get("p"))
    assert "children: 1 of 2 ended (p/quotes/1/0, p/quotes/1/1)" in text
    assert "  child p/quotes/1/0: finished\n  child p/quotes/1/1: waiting" in text
    assert "child number 1 of instance p" in _describe(engine, engine.get("p/quotes/1/1"))
    view = instance_view(engine.get("p/quotes/1/1"), now=engine.clock())
    assert view["parent"] == {"id": "p", "index": 1}
    view = instance_view(engine.get("p"), now=engine.clock(),
                         children=[(r.id, r.status) for r in engine.list(parent="p")])
    assert view["children"] == [{"id": "p/quotes/1/0", "status": "finished"},
                                {"id": "p/quotes/1/1", "status": "waiting"}]


def test_show_lists_a_letter_given_up(store):
    from genflow.cli import _describe

    @workflow("kid-late")
    @attrs.define
    class Late:
        def definition(self):  # type: ignore[no-untyped-def]
            yield Step("tell", self.tell)

        def tell(self) -> None:
            from genflow import current_step

            current_step().send("quiet", "go")  # its definition has no "go": refused

    engine = _engine(store)
    # (a "go" for an instance that will wait for one is kept in its mailbox and
    # delivered at once: docs/mailbox.md; this one can never take it)
    engine.start(GetQuote("x"), id="quiet", run=False)
    engine.start(Late(), id="late")
    text = _describe(engine, engine.get("late"))
    # no move of "quiet" can make it deliverable: given up at once, shown with why
    assert "outbox: event 'go' to quiet" in text and "has no event 'go' at all" in text
    (letter,) = store.list_outbox(target="quiet")
    assert letter.due_at is None


def test_a_letter_to_an_instance_not_waiting_yet_is_kept_and_taken(store):
    @workflow("kid-early")
    @attrs.define
    class Early:
        def definition(self):  # type: ignore[no-untyped-def]
            yield Step("tell", self.tell)

        def tell(self) -> None:
            from genflow import current_step

            current_step().send("held", "go")  # "held" is not waiting for it yet

    engine = _engine(store)
    engine.start(GetQuote("x", wait=True), id="held", run=False)
    engine.start(Early(), id="early")
    engine.work(until_idle=True)
    assert engine.get("held").status is WorkflowStatus.FINISHED  # the kept "go" was taken
    assert engine.get("held").state.mailbox.kept == []
    assert engine.store.list_outbox(origin="early") == []  # delivered: its row is gone


def test_genflow_list_parent_and_show(tmp_path, monkeypatch, capsys):
    from genflow.cli import main
    from genflow.stores import SQLiteStore

    db = tmp_path / "kids.db"
    engine = Engine(SQLiteStore(db))
    engine.start(Buy(["a", "wait"]), id="p")
    engine.work(until_idle=True)
    engine.store.close()
    monkeypatch.delenv("GENFLOW_APP", raising=False)
    app = str(Path(__file__))
    assert main(["--app", app, "--store", f"sqlite:///{db}", "list", "--parent", "p"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:3] for line in out] == [
        ["p/quotes/1/0", "kid-quote", "finished"], ["p/quotes/1/1", "kid-quote", "waiting"]]
    assert main(["--app", app, "--store", f"sqlite:///{db}", "show", "p/quotes/1/1"]) == 0
    assert "child number 1 of instance p" in capsys.readouterr().out


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Child("c", GetQuote("a"), id=5), "Child 'c': an instance id is a str, not int 5"),
    (lambda: Children("c", [GetQuote("a"), GetQuote("b")], ids=["x", None]),
     "Children 'c': an instance id is a str, not NoneType None"),
    (lambda: Child("c", GetQuote("a"), id=""), "Child 'c': an instance id has 1 to 255"),
])
def test_an_id_that_is_not_an_instance_id_is_refused_not_converted(make, words):
    # (5 made "5" would name the child "5": refused as Engine.start refuses it)
    with pytest.raises(InvalidIdError, match=re.escape(words)):
        make()
