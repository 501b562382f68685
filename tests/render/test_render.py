"""Diagrams (`genflow.render`), `genflow show --diagram` / `graph` / `report`.

Structure is asserted on every output format: the graph itself, the Mermaid
and DOT texts parsed back (nodes, edges, cycles, lanes and sub-flows as
clusters), JSON. External programs are used when they are installed and the
tests that need them are skipped with a reason otherwise:

* Graphviz's ``dot`` validates the DOT and draws the SVG;
* Chromium opens the HTML report headless (its DOM and a screenshot);
* Mermaid's own script (``$GENFLOW_MERMAID_JS``, the file ``mermaid.min.js``
  from npm; `.ci/run` installs it) renders every Mermaid text in Chromium.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import html as htmllib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genflow
from genflow import (
    Break,
    Case,
    Continue,
    Default,
    EventHandler,
    For,
    Go,
    If,
    On,
    Retry,
    Return,
    Step,
    Switch,
    Timeout,
    Wait,
    WaitFor,
    handle_callback,
    new_state,
    resume,
)
from genflow.cli import main
from genflow.engine import Engine
from genflow.errors import Cancelled
from genflow.render import (
    DotNotFoundError,
    EdgeKind,
    Graph,
    Node,
    NodeKind,
    build_graph,
    dot_program,
    graph_of,
    instance_graph,
    render,
    to_dict,
    to_dot,
    to_json,
    to_mermaid,
    to_svg,
    to_text,
)
from genflow.render import formats as _formats
from genflow.render.formats import STYLES
from genflow.render.report import write_report
from genflow.state import Failure
from genflow.statements import Raise, Sleep, Try
from genflow.stores import MemoryStore, SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is not installed: it lives beside `tests`
    sys.path.insert(0, str(ROOT))

from examples.approval import Purchase  # noqa: E402
from examples.pizza import PizzaOrder  # noqa: E402
from examples.seed_readme import SeedReadme  # noqa: E402

GENFLOW = Path(sys.executable).parent / "genflow"
CLI_APP = Path(__file__).resolve().parents[1] / "support" / "cli_app.py"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MERMAID_JS = os.environ.get("GENFLOW_MERMAID_JS", "")

needs_dot = pytest.mark.skipif(dot_program() is None,
                               reason="Graphviz's dot is not installed (apt-get install graphviz)")
needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="chromium is not installed (apt-get install chromium)")


# -- workflows with every statement ---------------------------------------------------------------


@genflow.workflow("render-everything")
@attrs.define
class Everything:
    n: int = 0
    mode: str = "a"
    helped: bool = False

    def definition(self):
        yield Step("begin", self.noop)
        yield Switch(
            Case(self.mode == "a", "mode a", Step("do a", self.noop)),
            Case(self.mode == "b", "mode b", Step("do b", self.noop)),
            Default("other mode", Step("do other", self.noop)),
        )
        yield Switch(Case(self.mode == "x", "only x", Step("do x", self.noop)))
        yield For("loop", self.n < 10,
            Step("tick", self.tick),
            If(self.n % 2 == 0, "even", Continue()),
            If(self.n > 5, "big", Break()),
            Wait("input",
                On("go", self.on_go),
                Timeout("quiet", 90, Step("after quiet", self.noop)),
            ),
        )
        yield from self.finish()
        yield Go("helper", self.helper)
        yield WaitFor("helped?", self.helped, self.noop)
        yield If(self.n > 100, "too many", Return())
        yield Step("last", self.noop, retry=Retry(attempts=5))

    def finish(self):
        yield Step("finish", self.noop)
        yield from self.inner()

    def inner(self):
        yield Step("inner step", self.noop)

    def helper(self):
        yield Wait("helper waits", On("help", self.on_help))
        yield Return()
        yield Step("unreachable", self.noop)

    def noop(self) -> None:
        pass

    def tick(self) -> None:
        self.n += 1

    def on_go(self, amount: int) -> list[str]:
        self.n += amount
        return []

    def on_help(self) -> None:
        self.helped = True


@genflow.workflow("render-workers")
@attrs.define
class Workers:
    started: int = 0
    jobs: list[str] = attrs.field(factory=list)

    def definition(self):
        yield For("spawn", self.started < 2,
            Go("worker", self.work, id=f"w-{self.started}"),
            Step("count", self.count),
        )
        yield Step("all started", self.count)

    def work(self, thread_id: str):
        yield Wait("job?", On("job", self.on_job))
        yield Step("do job", self.count)

    def count(self) -> None:
        self.started += 1

    def on_job(self, job: str) -> None:
        self.jobs.append(job)


class FlakySetup(EventHandler):
    def setup(self, req):
        raise ConnectionError("webhook registry is down")

    def handle(self, req, payload: int) -> str:
        return "ok"


@genflow.workflow("render-flaky")
@attrs.define
class Flaky:
    def definition(self):
        yield Step("prepare", self.noop)
        yield Wait("hook", On("ping", FlakySetup()), Timeout("give up", 60))

    def noop(self) -> None:
        pass


@genflow.workflow("render-fails")
@attrs.define
class Fails:
    def definition(self):
        yield Step("prepare", self.noop)
        yield Step("explode", self.explode, retry=Retry(attempts=1))

    def noop(self) -> None:
        pass

    def explode(self) -> None:
        raise RuntimeError("boom")


@genflow.workflow("render-cancellable")
@attrs.define
class Cancellable:
    def definition(self):
        yield Go("helper", self.helper)
        yield Try("main work",
            Wait("approval?", On("approve")),
        ).Catch("on cancel", Step("release hold", self.noop), errors=Cancelled
        ).Finally("always", Step("audit", self.noop))
        yield Step("ship", self.noop)

    def helper(self):
        yield Wait("ping?", On("ping"))

    def noop(self) -> None:
        pass


class Declined(Exception):
    pass


class Expired(Exception):
    pass


@genflow.workflow("render-failure")
@attrs.define
class Failing:
    deadline: dt.datetime | None = None
    n: int = 0
    failure: Failure | None = None

    def definition(self):
        yield Go("reminder", self.reminder, daemon=True)
        yield Step("charge", self.noop, timeout=5,
                   retry=Retry(attempts=None, max_backoff=2, never=(Declined,)))
        yield For("tries", self.n < 3,
            Try("attempt",
                Step("send code", self.noop),
                Wait("code?", On("code", self.noop),
                     Timeout("expired", at=self.deadline, raises=Expired)),
                If(self.n > 1, "too many", Raise(Declined, "too many tries")),
                If(self.n > 5, "way too many", Break()),
            ).Catch("declined", Step("notify", self.noop), Raise(), errors=Declined,
                    into="failure"
            ).Catch("expired", Step("log expiry", self.noop), errors=Expired
            ).Finally("count", Step("count", self.count)),
        )
        yield Try("outer", Step("risky", self.noop)).Catch("anything", Step("recover", self.noop))

    def reminder(self):
        yield For("forever", True, Sleep("a while", 3600), Step("remind", self.noop))

    def noop(self) -> None:
        pass

    def count(self) -> None:
        self.n += 1


@genflow.workflow("render-transfer")
@attrs.define
class Transfer:
    failure: Failure | None = None
    fail: str = "deposit"

    def definition(self):
        yield Try("move money",
            Step("deposit", self.deposit, retry=Retry(attempts=2, backoff=0)),
        ).Catch("refund", Step("give back", self.noop), errors=Declined, into="failure"
        ).Finally("close", Step("close books", self.noop))
        yield Step("done", self.noop)

    def deposit(self) -> None:
        if self.fail == "deposit":
            raise Declined("card declined")
        if self.fail == "other":
            raise KeyError("no account")

    def noop(self) -> None:
        pass


# -- parsing the formats back ---------------------------------------------------------------------

#: the shape (opener, closer) of each node kind as genflow writes it (a fails end
#: is drawn as an end, a Sleep as a wait: they differ by their labels)
_MERMAID_SHAPES = {("(((", ")))"): NodeKind.END, ("((", "))"): NodeKind.START,
                   ("[[", "]]"): NodeKind.GO, ("[/", "\\]"): NodeKind.WAITFOR,
                   ("([", "])"): NodeKind.WAIT, ("{{", "}}"): NodeKind.LOOP,
                   ("{", "}"): NodeKind.DECISION, (">", "]"): "event", ("[", "]"): NodeKind.STEP,
                   ("(", ")"): NodeKind.TRY, ("[\\", "/]"): NodeKind.CATCH,
                   ("[\\", "\\]"): NodeKind.FINALLY, ("[/", "/]"): NodeKind.RAISE}


def _unmermaid(text: str) -> str:
    return (text.replace("<br>", "\n").replace("#quot;", '"').replace("#lt;", "<")
            .replace("#gt;", ">").replace("#35;", "#"))


@attrs.define
class Parsed:
    """A diagram read back from its text: enough to assert its structure."""

    nodes: dict[str, tuple[str, str]] = attrs.field(factory=dict)  # id -> (shape, label)
    edges: list[tuple[str, str, str, str]] = attrs.field(factory=list)  # src, style, label, dst
    clusters: dict[str, str] = attrs.field(factory=dict)  # id -> label
    parent: dict[str, str | None] = attrs.field(factory=dict)  # cluster -> enclosing cluster
    member: dict[str, str | None] = attrs.field(factory=dict)  # node -> innermost cluster
    classes: dict[str, set[str]] = attrs.field(factory=dict)  # class -> node ids

    def by_label(self, label: str) -> str:
        found = [nid for nid, (_, text) in self.nodes.items() if text.split("\n")[0] == label]
        assert len(found) == 1, (label, found)
        return found[0]

    def edge(self, src: str, dst: str) -> tuple[str, str, str, str]:
        found = [e for e in self.edges if e[0] == src and e[3] == dst]
        assert len(found) == 1, (src, dst, found)
        return found[0]

    def successors(self, node: str) -> set[str]:
        return {e[3] for e in self.edges if e[0] == node}

    def in_cycle(self, node: str) -> bool:
        seen, todo = set(), list(self.successors(node))
        while todo:
            current = todo.pop()
            if current == node:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(self.successors(current))
        return False

    def clusters_of(self, node: str) -> list[str]:
        """Labels of the clusters holding `node`, innermost first."""
        out, cluster = [], self.member.get(node)
        while cluster is not None:
            out.append(self.clusters[cluster])
            cluster = self.parent[cluster]
        return out


def parse_mermaid(text: str) -> Parsed:
    lines = text.splitlines()
    assert lines[0].startswith("%% genflow: ") and lines[1].startswith("flowchart "), lines[:2]
    out = Parsed()
    open_clusters: list[str] = []
    for line in lines[2:]:
        line = line.strip()
        if m := re.fullmatch(r'subgraph (\w+)\["(.*)"\]', line):
            out.clusters[m[1]] = _unmermaid(m[2])
            out.parent[m[1]] = open_clusters[-1] if open_clusters else None
            open_clusters.append(m[1])
        elif line == "end":
            open_clusters.pop()
        elif line.startswith("direction "):
            continue
        elif m := re.fullmatch(r'(\w+) (-->|-\.->)(?:\|"(.*?)"\|)? (\w+)', line):
            out.edges.append((m[1], m[2], _unmermaid(m[3] or ""), m[4]))
        elif m := re.fullmatch(r"classDef (\w+) (.*)", line):
            out.classes.setdefault(m[1], set())
        elif m := re.fullmatch(r"class ([\w,]+) (\w+)", line):
            out.classes.setdefault(m[2], set()).update(m[1].split(","))
        elif line.startswith("linkStyle "):
            continue
        else:
            m = re.fullmatch(r'(\w+)(\W+?)"(.*)"(\W+)', line)
            assert m, f"not a Mermaid line genflow writes: {line!r}"
            shape = _MERMAID_SHAPES[(m[2], m[4])]
            assert m[1] not in out.nodes, f"node {m[1]} declared twice"
            out.nodes[m[1]] = (shape, _unmermaid(m[3]))
            out.member[m[1]] = open_clusters[-1] if open_clusters else None
    assert not open_clusters, "a subgraph is not closed"
    for src, _, _, dst in out.edges:  # (an edge may leave a cluster: a Try's body)
        assert (src in out.nodes or src in out.clusters) and dst in out.nodes, \
            f"edge {src} -> {dst}: undeclared node"
    for ids in out.classes.values():
        assert ids <= set(out.nodes)
    return out


def _dot_attrs(text: str) -> dict[str, str]:
    def unescape(value: str) -> str:
        return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)

    return {k: unescape(v) for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', text)}


def parse_dot(text: str) -> Parsed:
    lines = text.splitlines()
    assert lines[0].startswith("digraph ") and lines[-1] == "}", (lines[0], lines[-1])
    out = Parsed()
    open_clusters: list[str] = []
    for line in lines[1:-1]:
        line = line.strip()
        if m := re.fullmatch(r'subgraph "cluster_(\w+)" \{', line):
            out.parent[m[1]] = open_clusters[-1] if open_clusters else None
            open_clusters.append(m[1])
        elif line == "}":
            open_clusters.pop()
        elif m := re.fullmatch(r"graph \[(.*)\];", line):
            if open_clusters:
                out.clusters[open_clusters[-1]] = _dot_attrs(m[1])["label"]
        elif line.startswith(("node [", "edge [")):
            continue
        elif m := re.fullmatch(r'"([^"]+)" -> "([^"]+)" \[(.*)\];', line):
            attrs_ = _dot_attrs(m[3])
            out.edges.append((m[1], attrs_.get("style", "solid"), attrs_.get("label", ""), m[2]))
            for cls in attrs_.get("class", "").split():
                out.classes.setdefault(cls, set()).add(f"{m[1]}->{m[2]}")
        elif m := re.fullmatch(r'"([^"]+)" \[(.*)\];', line):
            attrs_ = _dot_attrs(m[2])
            out.nodes[m[1]] = (attrs_["shape"], attrs_["label"])
            out.member[m[1]] = open_clusters[-1] if open_clusters else None
            for cls in attrs_.get("class", "").split():
                out.classes.setdefault(cls, set()).add(m[1])
        else:
            raise AssertionError(f"not a DOT line genflow writes: {line!r}")
    assert not open_clusters
    for src, _, _, dst in out.edges:
        assert src in out.nodes and dst in out.nodes, f"edge {src} -> {dst}: undeclared node"
    return out


def check_dot(source: str) -> str:
    """Run Graphviz on `source`: it must draw it without a warning. Returns the SVG."""
    program = dot_program()
    assert program is not None
    done = subprocess.run([program, "-Tsvg"], input=source, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    return done.stdout


# -- the graph of a definition ---------------------------------------------------------------------


def _edges(graph: Graph, src: str, dst: str) -> list[Any]:
    return [e for e in graph.edges if e.source == src and e.target == dst]


def _one_edge(graph: Graph, src: str, dst: str) -> Any:
    found = _edges(graph, src, dst)
    assert len(found) == 1, (src, dst, found)
    return found[0]


def _id(graph: Graph, name: str, kind: str | None = None) -> str:
    node = graph.named(name, kind)
    assert node is not None, name
    return node.id


def _decision(graph: Graph, first_case: str) -> str:
    for node in graph.nodes:
        if node.kind == NodeKind.DECISION and node.detail["cases"][0]["name"] == first_case:
            return node.id
    raise AssertionError(first_case)


def _main_end(graph: Graph) -> str:
    return next(n.id for n in graph.nodes if n.kind == NodeKind.END and n.parent is None)


def test_every_statement_kind_has_its_node() -> None:
    graph = build_graph(Everything())
    kinds = {node.name: node.kind for node in graph.nodes if node.name}
    assert kinds["begin"] == NodeKind.STEP
    assert kinds["loop"] == NodeKind.LOOP
    assert kinds["input"] == NodeKind.WAIT
    assert kinds["go"] == NodeKind.EVENT and kinds["quiet"] == NodeKind.TIMER
    assert kinds["helped?"] == NodeKind.WAITFOR
    assert kinds["helper"] == NodeKind.GO
    assert [n.label for n in graph.nodes if n.kind == NodeKind.DECISION] == [
        "Switch", "Switch", "If", "If", "If"]
    # Break, Continue and Return are edges, not nodes
    assert not any(n.label.startswith(("Break", "Continue", "Return")) for n in graph.nodes)
    # names are unique, so every statement node is found by its name
    assert len({n.name for n in graph.nodes if n.name and n.kind != NodeKind.EVENT}) == len(
        [n for n in graph.nodes if n.name and n.kind != NodeKind.EVENT])
    assert graph.named("last").label == "last\nretry: 5 attempts"  # type: ignore[union-attr]


def test_branches_carry_their_names_and_else_only_without_a_default() -> None:
    graph = build_graph(Everything())
    mode = _decision(graph, "mode a")
    out = {e.label: (e.kind, e.target, e.branch) for e in graph.edges_from(mode)}
    assert out == {
        "mode a": (EdgeKind.BRANCH, _id(graph, "do a"), 0),
        "mode b": (EdgeKind.BRANCH, _id(graph, "do b"), 1),
        "other mode": (EdgeKind.BRANCH, _id(graph, "do other"), 2),
    }
    only_x = _decision(graph, "only x")
    assert _one_edge(graph, _id(graph, "do a"), only_x).kind == EdgeKind.NEXT
    out = {e.label: (e.kind, e.target) for e in graph.edges_from(only_x)}
    assert out == {"only x": (EdgeKind.BRANCH, _id(graph, "do x")),
                   "else": (EdgeKind.ELSE, _id(graph, "loop"))}


def test_loops_are_cycles_with_break_continue_and_return_as_edges() -> None:
    graph = build_graph(Everything())
    loop, tick = _id(graph, "loop"), _id(graph, "tick")
    even, big = _decision(graph, "even"), _decision(graph, "big")
    assert _one_edge(graph, loop, tick).kind == EdgeKind.LOOP
    # both events end the body: back to the loop's head
    assert _one_edge(graph, _id(graph, "go"), loop).kind == EdgeKind.REPEAT
    assert _one_edge(graph, _id(graph, "after quiet"), loop).kind == EdgeKind.REPEAT
    assert _one_edge(graph, _id(graph, "quiet"), _id(graph, "after quiet")).kind == EdgeKind.NEXT
    cont = _one_edge(graph, even, loop)
    assert (cont.kind, cont.label) == (EdgeKind.CONTINUE, "even · continue")
    assert _one_edge(graph, even, big).kind == EdgeKind.ELSE
    # Break leaves the loop: to the first statement after it (inside a sub-flow)
    brk = _one_edge(graph, big, _id(graph, "finish"))
    assert (brk.kind, brk.label) == (EdgeKind.BREAK, "big · break")
    done = _one_edge(graph, loop, _id(graph, "finish"))
    assert (done.kind, done.label) == (EdgeKind.EXIT, "done")
    # Return: straight to the thread's end; the If's else goes on
    too_many = _decision(graph, "too many")
    ret = _one_edge(graph, too_many, _main_end(graph))
    assert (ret.kind, ret.label) == (EdgeKind.RETURN, "too many · return")
    assert _one_edge(graph, too_many, _id(graph, "last")).kind == EdgeKind.ELSE
    assert _one_edge(graph, _id(graph, "last"), _main_end(graph)).kind == EdgeKind.NEXT


def test_go_is_a_lane_with_its_own_start_and_end() -> None:
    graph = build_graph(Everything())
    go = graph.named("helper", NodeKind.GO)
    assert go is not None
    lane = graph.cluster(go.detail["lane"])
    assert (lane.kind, lane.label) == ("thread", "thread helper")
    members = {n.name or n.kind for n in graph.nodes if n.cluster == lane.id}
    assert members == {"start", "end", "helper waits", "help", "unreachable"}
    start = next(n for n in graph.nodes if n.cluster == lane.id and n.kind == NodeKind.START)
    end = next(n for n in graph.nodes if n.cluster == lane.id and n.kind == NodeKind.END)
    assert _one_edge(graph, go.id, start.id).kind == EdgeKind.SPAWN
    assert _one_edge(graph, start.id, _id(graph, "helper waits")).kind == EdgeKind.NEXT
    # the main thread carries on at once after the Go
    assert _one_edge(graph, go.id, _id(graph, "helped?")).kind == EdgeKind.NEXT
    ret = _one_edge(graph, _id(graph, "help"), end.id)
    assert ret.kind == EdgeKind.RETURN
    assert graph.edges_to(_id(graph, "unreachable")) == []  # after Return: never reached


def test_sub_flows_are_nested_clusters() -> None:
    graph = build_graph(Everything())
    finish = graph.named("finish")
    inner = graph.named("inner step")
    assert finish is not None and inner is not None
    outer = graph.cluster(finish.cluster)  # type: ignore[arg-type]
    nested = graph.cluster(inner.cluster)  # type: ignore[arg-type]
    assert (outer.kind, outer.label, outer.parent) == ("subflow", "sub-flow finish", None)
    assert (nested.label, nested.parent) == ("sub-flow inner", outer.id)
    assert graph.named("begin").cluster is None  # type: ignore[union-attr]
    # a Go's body is its lane, not a sub-flow
    assert [c.kind for c in graph.clusters].count("subflow") == 2


def test_handler_types_are_on_the_events() -> None:
    everything = build_graph(Everything())
    assert everything.named("go").label == "on go: int → list[str]"  # type: ignore[union-attr]
    assert everything.named("go").detail["input"] == "int"  # type: ignore[union-attr]
    assert everything.named("help").label == "on help"  # type: ignore[union-attr]
    assert everything.named("quiet").label == "timeout quiet\nafter 1m30s"  # type: ignore
    pizza = build_graph(PizzaOrder())
    labels = {n.name: n.label for n in pizza.nodes if n.kind in (NodeKind.EVENT,
                                                                    NodeKind.TIMER)}
    assert labels == {
        "add": "on add: AddItem → dict[str, object]",
        "remove": "on remove: RemoveItem → dict[str, object]",
        "checkout": "on checkout: Checkout → dict[str, object]",
        "confirm": "on confirm: Confirmation",
        "reject": "on reject: Rejection",
        "manager silent": "timeout manager silent\nafter 30m",
        "payment": "on payment: PaymentResult → str",
        "payment deadline": "timeout payment deadline\nafter 15m",
        "delivered": "on delivered: Delivery",
    }
    # a handler object: the payload type from its handle(), and its class
    decision = build_graph(Purchase()).named("decision")
    assert decision is not None
    assert decision.label == "on decision: Decision → str"
    assert decision.detail["handler"] == "ApprovalHandler"


def test_the_definition_is_walked_on_the_current_data() -> None:
    """Every branch is drawn whatever its condition; the data shapes what depends on it."""
    for n in (0, 50):
        graph = build_graph(Everything(n=n, mode="b"))
        assert {"do a", "do b", "do other", "do x", "last"} <= {x.name for x in graph.nodes}
    first = build_graph(Workers(started=0))
    later = build_graph(Workers(started=7))
    assert first.named("worker").detail["thread"] == "w-0"  # type: ignore[union-attr]
    assert later.named("worker").detail["thread"] == "w-7"  # type: ignore[union-attr]
    assert first.cluster(first.named("worker").detail["lane"]).label == (  # type: ignore
        "thread worker (one per id)")


def test_a_definition_that_raises_while_drawn_is_a_definition_error() -> None:
    @attrs.define
    class Broken:
        def definition(self):
            yield Step("one", self.noop)
            raise KeyError("oops")

        def noop(self) -> None:
            pass

    with pytest.raises(genflow.DefinitionError, match="oops"):
        build_graph(Broken())


# -- the examples, in every format -----------------------------------------------------------------


def test_pizza_in_mermaid() -> None:
    m = parse_mermaid(to_mermaid(PizzaOrder()))
    cart = m.by_label("For cart")
    assert m.nodes[cart][0] == NodeKind.LOOP
    assert m.in_cycle(cart)
    wait = m.by_label("Wait cart open")
    assert m.nodes[wait][0] == NodeKind.WAIT
    events = {m.nodes[e][1] for e in m.successors(wait)}
    assert events == {"on add: AddItem → dict[str, object]",
                      "on remove: RemoveItem → dict[str, object]",
                      "on checkout: Checkout → dict[str, object]"}
    assert m.edge(cart, m.by_label("Wait manager decision"))[2] == "done"
    # the payment thread is a lane; its nodes are inside, the main thread's are not
    lane_of = m.clusters_of
    assert lane_of(m.by_label("request charge")) == ["thread take payment"]
    assert lane_of(m.by_label("Wait await payment")) == ["thread take payment"]
    assert lane_of(m.by_label("make dough")) == ["sub-flow cooking"]
    assert lane_of(m.by_label("For cart")) == ["sub-flow shopping"]
    assert lane_of(m.by_label("cancel unconfirmed")) == ["sub-flow confirmation"]
    assert lane_of(m.by_label("WaitFor payment settled")) == []
    go = m.by_label("Go take payment")
    spawned = [e for e in m.edges if e[0] == go and e[1] == "-.->"]
    assert len(spawned) == 1 and m.nodes[spawned[0][3]][0] == NodeKind.START
    # named branches of the final If, and the early Return
    paid = [e for e in m.edges if e[2] in ("paid", "unpaid")]
    assert {(e[2], m.nodes[e[3]][1]) for e in paid} == {("paid", "dispatch driver"),
                                                       ("unpaid", "cancel unpaid order")}
    ret = [e for e in m.edges if e[2] == "cancelled before cooking · return"]
    assert len(ret) == 1 and m.nodes[ret[0][3]][0] == NodeKind.END
    assert not m.classes  # a definition has no marks


def test_pizza_in_dot() -> None:
    source = to_dot(PizzaOrder())
    d = parse_dot(source)
    cart = d.by_label("For cart")
    assert d.nodes[cart][0] == "hexagon"
    assert d.in_cycle(cart)
    assert d.clusters_of(d.by_label("request charge")) == ["thread take payment"]
    assert d.clusters_of(d.by_label("bake")) == ["sub-flow cooking"]
    shapes = {d.nodes[n][0] for n in d.nodes}
    assert {"circle", "doublecircle", "box", "diamond", "hexagon", "cds", "trapezium",
            "component"} <= shapes
    # the same graph as the Mermaid: same node ids, same edges
    m = parse_mermaid(to_mermaid(PizzaOrder()))
    assert set(d.nodes) == set(m.nodes)
    assert sorted((e[0], e[3]) for e in d.edges) == sorted((e[0], e[3]) for e in m.edges)


def test_seed_readme_two_loops() -> None:
    graph = build_graph(SeedReadme())
    m = parse_mermaid(to_mermaid(graph))
    loop, loop2 = m.by_label("For loop"), m.by_label("For loop2")
    assert m.in_cycle(loop) and m.in_cycle(loop2)
    assert m.successors(loop) == {m.by_label("loop body"), m.by_label("reset i")}
    assert m.edge(m.by_label("on event"), m.by_label("step2"))[1] == "-->"
    assert m.edge(m.by_label("step2"), loop2)[1] == "-->"
    end = next(n for n, (shape, _) in m.nodes.items() if shape == NodeKind.END)
    assert m.edge(loop2, end)[2] == "done"


def test_approval_else_has_no_fall_through() -> None:
    graph = build_graph(Purchase())
    decision = _decision(graph, "approved")
    labels = sorted(e.label for e in graph.edges_from(decision))
    assert labels == ["approved", "not approved"]
    # the timer's body ends the iteration: a cycle through the reminder
    m = parse_mermaid(to_mermaid(graph))
    assert m.in_cycle(m.by_label("remind"))


def test_json_is_the_graph_as_data() -> None:
    data = json.loads(to_json(PizzaOrder()))
    assert data["workflow"] == "pizza-order" and data["instance"] is None
    ids = {n["id"] for n in data["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in data["edges"])
    clusters = {c["label"]: c for c in data["clusters"]}
    assert set(clusters) == {"sub-flow shopping", "sub-flow confirmation", "sub-flow cooking",
                             "thread take payment"}
    payment = next(n for n in data["nodes"] if n["name"] == "payment")
    assert (payment["detail"]["input"], payment["detail"]["output"]) == ("PaymentResult", "str")
    assert to_dict(PizzaOrder()) == data


@needs_dot
@pytest.mark.parametrize("wf", [PizzaOrder(), Purchase(), SeedReadme(), Everything(),
                                Workers(), Failing(), Cancellable()],
                         ids=lambda wf: type(wf).__name__)
def test_dot_draws_every_example(wf: Any) -> None:
    svg = check_dot(to_dot(wf))
    assert "<svg" in svg
    drawn = to_svg(wf)
    assert drawn.startswith("<svg") and drawn.rstrip().endswith("</svg>")


def test_svg_without_dot_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENFLOW_DOT", "no-such-dot-program")
    with pytest.raises(DotNotFoundError, match="apt-get install graphviz"):
        to_svg(PizzaOrder())
    with pytest.raises(ValueError, match="unknown diagram format"):
        render(PizzaOrder(), format="png")


def test_text_outline() -> None:
    text = to_text(Everything())
    assert text.splitlines()[0] == "workflow render-everything"
    assert "\n        after quiet\n" in text  # under its timer, under its Wait, in the loop
    assert "    mode a:\n      do a\n" in text
    assert "  If even\n      → even · continue\n" in text


def test_labels_are_escaped() -> None:
    @genflow.workflow("render-quotes")
    @attrs.define
    class Quotes:
        def definition(self):
            yield Step('say "hi" <b> & #1', self.noop)
            yield If(True, 'a "quoted" branch\\', Step("x\\n", self.noop))

        def noop(self) -> None:
            pass

    m = parse_mermaid(to_mermaid(Quotes()))
    assert 'say "hi" <b> & #1' in {label for _, label in m.nodes.values()}
    assert 'a "quoted" branch\\' in {e[2] for e in m.edges}
    d = parse_dot(to_dot(Quotes()))
    assert 'say "hi" <b> & #1' in {label for _, label in d.nodes.values()}
    assert "x\\n" in {label for _, label in d.nodes.values()}
    if dot_program():
        check_dot(to_dot(Quotes()))


# -- instances drawn on their definitions ----------------------------------------------------------


def _send(wf: Any, state: Any, event: str, payload: Any = None, *, run: bool = True) -> None:
    req = next(e.req for t in state.threads for e in t.events if e.event == event)
    handle_callback(req, wf, state, payload)
    if run:
        resume(wf, state)


def _marks(graph: Graph, cls: str) -> set[str]:
    return {n.name or n.id for n in graph.nodes if cls in n.classes}


def test_pizza_instance_threads_waits_and_done_steps() -> None:
    order = PizzaOrder()
    state = new_state("order-1", order)
    resume(order, state)
    graph = instance_graph(order, state)
    assert _marks(graph, "waiting") == {"cart open"}
    assert _marks(graph, "listening") == {"add", "remove", "checkout"}
    assert _marks(graph, "active") == {"cart"}
    assert _marks(graph, "done") == set()
    _send(order, state, "add", {"pizza": "margherita"})
    _send(order, state, "checkout", {"customer": "Ada", "address": "1 Way"})
    _send(order, state, "confirm", {"manager": "Grace"})
    graph = instance_graph(order, state)
    wait = graph.named("await payment")
    cond = graph.named("payment settled")
    assert wait is not None and cond is not None
    assert wait.threads == ["take payment"] and "waiting" in wait.classes
    assert cond.threads == ["_main_"] and "waiting" in cond.classes
    assert _marks(graph, "listening") == {"payment", "payment deadline"}
    deadline = graph.named("payment deadline")
    assert deadline is not None and deadline.detail["due"]
    lane = graph.cluster(graph.named("take payment", NodeKind.GO).detail["lane"])  # type: ignore
    assert lane.threads == ["take payment"]
    done = _marks(graph, "done")
    assert {"make dough", "add toppings", "bake", "box", "cart", "manager decision",
            "take payment", "request charge"} <= done
    assert not done & {"dispatch driver", "take payment: done", "give up on payment"}
    assert graph.instance is not None and graph.instance["status"] == "waiting"
    assert {t["id"]: t["node"] for t in graph.instance["threads"]} == {
        "_main_": cond.id, "take payment": wait.id}
    # the same marks in Mermaid and DOT
    m = parse_mermaid(to_mermaid(graph))
    assert m.classes["waiting"] == {wait.id, cond.id}
    assert m.nodes[wait.id][1] == "Wait await payment\n▶ take payment"
    assert m.nodes[cond.id][1] == "WaitFor payment settled\n▶ main"
    assert m.clusters_of(wait.id) == ["thread take payment: take payment"]
    d = parse_dot(to_dot(graph))
    assert {wait.id, cond.id} <= d.classes["waiting"]
    assert "instance order-1 (waiting)" in to_dot(graph).splitlines()[1]
    if dot_program():
        check_dot(to_dot(graph))
    # paid: the main thread goes on into the "paid" branch and waits at the door
    _send(order, state, "payment", {"reference": order.payment_ref, "ok": True})
    graph = instance_graph(order, state)
    door = graph.named("at the door")
    assert door is not None and door.threads == ["_main_"]
    assert "done" in graph.named("dispatch driver").classes  # type: ignore[union-attr]
    paid = _decision(graph, "paid")
    assert "active" in graph.node(paid).classes
    taken = [e for e in graph.edges if "taken" in e.classes]
    assert [(e.source, e.label) for e in taken] == [(paid, "paid")]
    assert "linkStyle" in to_mermaid(graph)
    _send(order, state, "delivered", {"driver": "Linus"})
    graph = instance_graph(order, state)
    assert state.status.value == "finished"
    assert _marks(graph, "finished") == {_main_end(graph)}


def test_only_the_current_iteration_is_done() -> None:
    wf = SeedReadme()
    state = new_state("seed-1", wf)
    resume(wf, state)
    _send(wf, state, "event")  # loop2's first iteration: handler, step2
    graph = instance_graph(wf, state)
    assert state.threads[0].stmt == "wait for event"
    assert _marks(graph, "done") == {"loop", "reset i"}  # step2 ran, but in the last iteration
    assert _marks(graph, "active") == {"loop2"}
    # an event handled, its body not yet run: the wait is left, the event marked
    _send(wf, state, "event", run=False)
    graph = instance_graph(wf, state)
    assert _marks(graph, "moving") == {"wait for event"}
    assert _marks(graph, "handled") == {"event"}


def test_not_started_executing_and_failed_setups() -> None:
    wf = Fails()
    state = new_state("f-1", wf)
    graph = instance_graph(wf, state)
    start = next(n for n in graph.nodes if n.kind == NodeKind.START)
    assert {"current", "start"} <= set(start.classes) and start.threads == ["_main_"]
    with pytest.raises(genflow.StepError):
        resume(wf, state)
    graph = instance_graph(wf, state, error="boom")
    assert _marks(graph, "executing") == {"explode"}
    assert _marks(graph, "done") == {"prepare"}
    assert graph.instance is not None and graph.instance["error"] == "boom"

    flaky = Flaky()
    state = new_state("fl-1", flaky)
    with pytest.raises(genflow.HandlerError):
        resume(flaky, state)
    graph = instance_graph(flaky, state)
    ping = graph.named("ping")
    assert ping is not None and "error" in ping.classes
    assert "webhook registry is down" in ping.detail["error"]
    assert "error: ConnectionError: webhook registry is down" in to_mermaid(graph).replace(
        "#quot;", '"').replace("<br>", "\n")
    # the timer is armed when the wait begins, whatever became of the other setup
    assert _marks(graph, "pending") == set()
    assert _marks(graph, "listening") == {"give up"}


def test_threads_started_in_a_loop_share_their_lane() -> None:
    wf = Workers()
    state = new_state("w-1", wf)
    resume(wf, state)
    graph = instance_graph(wf, state)
    job = graph.named("job?")
    assert job is not None and sorted(job.threads) == ["w-0", "w-1"]
    lane = graph.cluster(job.cluster)  # type: ignore[arg-type]
    assert sorted(lane.threads) == ["w-0", "w-1"]
    assert _marks(graph, "listening") == {"job"}
    m = parse_mermaid(to_mermaid(graph))
    assert m.nodes[job.id][1] == "Wait job?\n▶ w-0, w-1"
    _send(wf, state, "job", "x", run=False)  # w-0 (first) got it; w-1 still waits
    graph = instance_graph(wf, state)
    assert _marks(graph, "handled") == {"job"}


def test_a_stale_path_hint_falls_back_to_the_name() -> None:
    wf = SeedReadme()
    state = new_state("seed-2", wf)
    resume(wf, state)
    state.threads[0].path = [0]  # points at "loop" now
    graph = instance_graph(wf, state)
    assert _marks(graph, "waiting") == {"wait for event"}


def test_a_thread_at_a_statement_that_is_gone_is_said_so() -> None:
    wf = SeedReadme()
    state = new_state("seed-3", wf)
    resume(wf, state)
    state.threads[0].stmt, state.threads[0].path = "renamed wait", [9]
    graph = instance_graph(wf, state)
    assert not any(n.threads for n in graph.nodes)
    problem = ("main thread stands at 'renamed wait', which the definition drawn does not "
               "contain (see `genflow check`)")
    assert graph.instance is not None and graph.instance["threads"][0]["problem"] == problem
    assert graph.instance["threads"][0]["node"] is None
    assert to_text(graph).splitlines()[1] == f"! {problem}"
    assert to_mermaid(graph).splitlines()[1] == f"%% warning: {problem}"
    parse_mermaid(to_mermaid(graph).replace(f"%% warning: {problem}\n", ""))
    assert f"warning: {problem}" in parse_dot_title(to_dot(graph))
    if dot_program():
        check_dot(to_dot(graph))


def parse_dot_title(source: str) -> str:
    return _dot_attrs(source.splitlines()[1])["label"]


def test_graph_of_takes_a_graph() -> None:
    graph = build_graph(SeedReadme())
    assert graph_of(graph) is graph
    assert render(graph, format="mermaid") == to_mermaid(graph)


# -- Mermaid's own parser ------------------------------------------------------------------------


def _chromium(args: Iterable[str], tmp: Path, timeout: float = 120) -> str:
    assert CHROMIUM is not None
    profile = tmp / "chromium-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _mermaid_cases() -> dict[str, str]:
    cases = {type(wf).__name__: to_mermaid(wf) for wf in (
        PizzaOrder(), Purchase(), SeedReadme(), Everything(), Workers(), Flaky())}
    order = PizzaOrder()
    state = new_state("o", order)
    resume(order, state)
    _send(order, state, "add", {"pizza": "funghi"})
    _send(order, state, "checkout", {"customer": "A", "address": "B"})
    _send(order, state, "confirm", {"manager": "C"})
    _send(order, state, "payment", {"reference": order.payment_ref, "ok": True})
    cases["pizza-instance"] = to_mermaid(order, state)
    flaky = Flaky()
    flaky_state = new_state("f", flaky)
    with pytest.raises(genflow.HandlerError):
        resume(flaky, flaky_state)
    cases["flaky-instance"] = to_mermaid(flaky, flaky_state)
    seed = SeedReadme()
    seed_state = new_state("s", seed)
    resume(seed, seed_state)
    seed_state.threads[0].stmt = "gone"
    cases["misplaced-thread"] = to_mermaid(seed, seed_state)
    cases["Failing"] = to_mermaid(Failing())
    transfer = Transfer()
    for kind, graph in _graphs_at_checkpoints(transfer, new_state("t", transfer))[2:5]:
        cases[f"transfer-{kind}-{len(cases)}"] = _formats.to_mermaid(graph)
    cancellable = Cancellable()
    state = new_state("c", cancellable)
    resume(cancellable, state)
    cases["cancelling"] = _formats.to_mermaid(
        _graphs_at_checkpoints(cancellable, state, "cancel")[0][1])
    return cases


@needs_chromium
@pytest.mark.skipif(not Path(MERMAID_JS).is_file(),
                    reason="Mermaid's script is not here: set GENFLOW_MERMAID_JS to "
                           "mermaid.min.js (npm install mermaid; .ci/run does)")
def test_mermaid_renders_every_diagram(tmp_path: Path) -> None:
    cases = _mermaid_cases()
    page = tmp_path / "mermaid.html"
    page.write_text(f"""<!doctype html><html><body><pre id="out">pending</pre>
<script src="{Path(MERMAID_JS).resolve().as_uri()}"></script>
<script>
const cases = {json.dumps(cases)};
mermaid.initialize({{startOnLoad: false}});
(async () => {{
  const results = {{}};
  let n = 0;
  for (const [name, source] of Object.entries(cases)) {{
    try {{
      const drawn = await mermaid.render("d" + (n++), source);
      results[name] = drawn.svg.includes("<svg") ? "ok" : "no svg";
    }} catch (e) {{ results[name] = "error: " + (e.message || e); }}
  }}
  document.getElementById("out").textContent = JSON.stringify(results);
}})();
</script></body></html>""")
    dom = _chromium(["--virtual-time-budget=30000", "--dump-dom", page.as_uri()], tmp_path)
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    results = json.loads(htmllib.unescape(found[1]))
    assert results == dict.fromkeys(cases, "ok")


# -- the docs' diagrams ---------------------------------------------------------------------------


def test_docs_hook_renders_every_marker() -> None:
    spec = importlib.util.spec_from_file_location("genflow_docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    for name in ("statements", "diagrams", "failure"):
        source = (ROOT / "docs" / f"{name}.md").read_text()
        markers = hooks.MARKER.findall(source)
        assert markers, name
        page = SimpleNamespace(file=SimpleNamespace(name=name, src_path=f"{name}.md"))
        out = hooks.on_page_markdown(source, page)
        assert not hooks.MARKER.search(out)
        # inline SVG with dot (an outline without it), the Mermaid source folded below it
        kind = "svg" if dot_program() is not None else "outline"
        assert out.count(f'<div class="genflow-diagram genflow-diagram-{kind}"') == len(markers)
        assert out.count("<svg") == (len(markers) if kind == "svg" else 0)
        blocks = re.findall(r'<pre class="mermaid-source">\n(.*?)\n</pre>', out, re.S)
        assert len(blocks) == len(markers)
        for block in blocks:
            parse_mermaid(htmllib.unescape(block).strip() + "\n")


# -- the command line -----------------------------------------------------------------------------


def _genflow(cwd: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GENFLOW_")}
    done = subprocess.run([str(GENFLOW), "--app", str(CLI_APP), *args], cwd=cwd,
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_cli_graph_and_show_diagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    app = ["--app", str(CLI_APP)]
    assert main([*app, "graph", "cli-order"]) == 0
    m = parse_mermaid(capsys.readouterr().out)
    assert m.in_cycle(m.by_label("For shopping"))
    assert not (tmp_path / "genflow.db").exists()  # graph needs no store
    assert main([*app, "graph", "cli-order", "--data", '{"patience": 60}', "-o", "o.json"]) == 0
    assert capsys.readouterr().out == "wrote o.json (json)\n"
    timer = next(n for n in json.loads((tmp_path / "o.json").read_text())["nodes"]
                 if n["name"] == "too slow")
    assert timer["label"] == "timeout too slow\nafter 1m"
    assert main([*app, "graph", "cli-order", "--format", "dot", "-o", "o.txt"]) == 0
    parse_dot((tmp_path / "o.txt").read_text())
    assert main([*app, "graph", "cli-order", "--format", "text"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "wrote o.txt (dot)", "workflow cli-order"]

    assert main([*app, "start", "cli-order", "--id", "o1"]) == 0
    assert main([*app, "send", "o1", "add", "--payload", '{"name": "funghi"}']) == 0
    capsys.readouterr()
    assert main([*app, "show", "o1", "--diagram"]) == 0
    m = parse_mermaid(capsys.readouterr().out)
    assert m.classes["waiting"] == {m.by_label("Wait cart?")}
    assert main([*app, "show", "o1", "-o", "o1.dot"]) == 0  # -o implies --diagram
    assert capsys.readouterr().out == "wrote o1.dot (dot)\n"
    d = parse_dot((tmp_path / "o1.dot").read_text())
    assert d.classes["listening"] == {d.by_label("on add: Item → int"),
                                      d.by_label("on checkout")}
    assert main([*app, "show", "o1", "--diagram", "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["instance"]["id"] == "o1" and shown["instance"]["status"] == "waiting"


@pytest.mark.parametrize("args, message", [
    (["graph", "cli-order", "-o", "x.png"], "cannot tell a diagram format from 'x.png'"),
    (["graph", "nope"], "no workflow is registered as 'nope'"),
    (["graph", "cli-order", "--data", '{"size": 1}'], "has no field(s) ['size']"),
    (["show", "missing", "--diagram"], "missing"),
    (["show", "o1", "--diagram", "--json"], "--json or --diagram, not both"),
])
def test_cli_diagram_mistakes_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], args: list[str],
                                           message: str) -> None:
    monkeypatch.chdir(tmp_path)
    app = ["--app", str(CLI_APP)]
    assert main([*app, "start", "cli-order", "--id", "o1"]) == 0
    capsys.readouterr()
    assert main([*app, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genflow: error: ") and message in err, err


def test_cli_svg(tmp_path: Path) -> None:
    """Through the console script: SVG with dot, one clear line without it."""
    missing = _genflow(tmp_path, "graph", "cli-order", "-o", "o.svg",
                       env={"GENFLOW_DOT": "no-such-dot"})
    assert missing.returncode == 2
    assert missing.stderr.startswith("genflow: error: SVG needs Graphviz's `no-such-dot` "
                                     "program, which is not installed (apt-get install graphviz)")
    assert missing.stderr.count("\n") == 1 and not (tmp_path / "o.svg").exists()
    if dot_program() is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    done = _genflow(tmp_path, "graph", "cli-order", "-o", "o.svg")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o.svg").read_text().startswith("<svg")
    assert _genflow(tmp_path, "start", "cli-order", "--id", "o1").returncode == 0
    done = _genflow(tmp_path, "show", "o1", "--diagram", "--format", "svg")
    assert done.returncode == 0 and "Wait cart?" in done.stdout and "<svg" in done.stdout


# -- the HTML report ------------------------------------------------------------------------------


def _report_engine(path: Path) -> Engine:
    engine = Engine(SQLiteStore(path), [PizzaOrder, SeedReadme, Workers, Fails, Everything])
    order = engine.start(PizzaOrder(), id="order-1")
    engine.send(order, "add", {"pizza": "funghi"})
    engine.send(order, "checkout", {"customer": "Ada", "address": "1 Way"})
    engine.send(order, "confirm", {"manager": "Grace"})
    seed = engine.start(SeedReadme(), id="seed <1> & \"2\"")
    for _ in range(2):
        engine.send(seed, "event")
    engine.start(Workers(), id="workers-1")
    engine.start(Fails(), id="fails-1")
    return engine


STATUSES = {"order-1": "waiting", 'seed <1> & "2"': "finished", "workers-1": "waiting",
            "fails-1": "failed"}


def _report_data(index: Path) -> dict[str, Any]:
    text = index.read_text()
    raw = text.split('<script type="application/json" id="gf-data">', 1)[1].split("</script>")[0]
    return json.loads(raw)


def test_report_files(tmp_path: Path) -> None:
    engine = _report_engine(tmp_path / "store.db")
    index = write_report(engine, tmp_path / "report", svg=False)
    data = _report_data(index)
    assert {r["id"]: r["status"] for r in data["rows"]} == STATUSES
    assert set(data["views"]) == set(STATUSES)
    # one drawing per definition (four workflows), every instance's marks laid on it
    text = index.read_text()
    assert text.count('<template class="gf-diagram-src"') == 4
    assert {v["diagram"] for v in data["views"].values()} == set(
        re.findall(r'data-key="([0-9a-f]+)"', text))
    failed = data["views"]["fails-1"]
    explode = [n for n, marks in failed["marks"].items() if "failed" in marks]
    assert len(explode) == 1 and f"gf-n-{explode[0]}" in text
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", text)  # nothing fetched
    assert "seed \\u003c1\\u003e" in text  # no raw < in the page's data
    ids = re.findall(r' id="([^"]+)"', text)
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    files = sorted(p.suffix for p in (tmp_path / "report" / "diagrams").iterdir())
    assert files == [".dot"] * 4 + [".mmd"] * 4
    # only some: a status
    data = _report_data(write_report(engine, tmp_path / "failed", status="failed", svg=False))
    assert [r["id"] for r in data["rows"]] == ["fails-1"]
    # a workflow whose code is not loaded: listed, with the reason it is not drawn
    partial = Engine(engine.store, [PizzaOrder])
    data = _report_data(write_report(partial, tmp_path / "partial", svg=False))
    assert {r["id"] for r in data["rows"]} == set(STATUSES)
    assert "does not run workflow 'render-workers'" in data["views"]["workers-1"]["problems"][0]
    engine.store.close()


def test_legend_colours_are_distinct() -> None:
    from genflow.render.views import legend

    def rgb(color: str) -> tuple[int, ...]:
        return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))

    def far(a: tuple[int, ...], b: tuple[int, ...]) -> float:
        return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5)

    entries = legend()
    assert len({e["mark"] for e in entries}) == len(entries)
    for i, one in enumerate(entries):
        for other in entries[i + 1:]:
            apart = far(rgb(one["fill"]), rgb(other["fill"])) + far(rgb(one["stroke"]),
                                                                   rgb(other["stroke"]))
            assert apart > 60, (one["mark"], other["mark"], apart)


def test_a_failed_step_is_marked_failed_not_executing() -> None:
    engine = Engine(MemoryStore(), [Fails])
    engine.start(Fails(), id="f")
    instance = engine.get("f")
    graph = instance_graph(instance.data, instance.state, error=instance.error)
    node = graph.named("explode")
    assert node is not None and {"current", "executing", "failed"} <= set(node.classes)
    from genflow.render.formats import display_class

    assert display_class(node) == "failed"
    assert display_class(graph.named("prepare")) == "done"


def _png_pixels(path: Path) -> dict[bytes, int]:
    """How many pixels of each colour a PNG (8-bit RGB/RGBA, as Chromium writes) has."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    header = b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and interlace == 0 and color in (2, 6), (depth, color, interlace)
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    counts: dict[bytes, int] = {}
    for y in range(height):
        start = y * (stride + 1)
        kind_ = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        if kind_ == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind_ == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev, strict=True))
        elif kind_ == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind_ == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for i in range(0, stride, bpp):
            pixel = bytes(line[i:i + 3])
            counts[pixel] = counts.get(pixel, 0) + 1
        prev = line
    return counts


@needs_chromium
@pytest.mark.parametrize("svg", [
    pytest.param(True, marks=needs_dot, id="svg-from-dot"),
    pytest.param(False, id="outline-without-dot"),
])
def test_report_in_a_headless_browser(tmp_path: Path, svg: bool) -> None:
    engine = _report_engine(tmp_path / "store.db")
    index = write_report(engine, tmp_path / "report", svg=svg)
    engine.store.close()
    # (on a loaded machine the page may be dumped before its script has drawn the
    # picked instance: dumped again, a few times at most, before judging it)
    for _ in range(6):
        dom = _chromium(["--virtual-time-budget=5000", "--dump-dom",
                         index.as_uri() + "#i=fails-1"], tmp_path)
        if re.search(r'class="[^"]*gf-n-n_explode[^"]*m-failed', dom):
            break
    rows = dict(re.findall(r'<tr data-id="([^"]+)" data-status="([a-z]+)"', dom))
    assert {htmllib.unescape(k): v for k, v in rows.items()} == STATUSES
    assert 'id="gf-instance" data-id="fails-1"' in dom  # the one picked is shown
    assert re.search(r'class="[^"]*gf-n-n_explode[^"]*m-failed', dom), "explode is not failed"
    shot = tmp_path / "shot.png"
    _chromium(["--force-color-profile=srgb", "--hide-scrollbars", "--window-size=1200,1600",
               "--virtual-time-budget=2000", f"--screenshot={shot}",
               index.as_uri() + "#i=fails-1"], tmp_path)
    pixels = _png_pixels(shot)
    failed = pixels.get(bytes.fromhex(STYLES["failed"][0][1:]), 0)
    assert failed > 1500, failed  # the failed step's fill (the legend's swatch is tiny)


def test_a_deeply_nested_definition_draws_without_recursion() -> None:
    @genflow.workflow("render-deep")
    @attrs.define
    class Deep:
        def definition(self):
            body: Any = Wait("bottom", On("e", self.noop))
            for i in range(600):
                body = If(True, f"level {i}", body) if i % 2 else For(f"loop {i}", True, body)
            yield body

        def noop(self) -> None:
            pass

    wf = Deep()
    state = new_state("deep-1", wf)
    resume(wf, state)
    graph = instance_graph(wf, state)
    assert _marks(graph, "waiting") == {"bottom"}
    assert len(_marks(graph, "active")) == 600
    for text in (to_mermaid(graph), to_dot(graph), to_json(graph), to_text(graph)):
        assert "bottom" in text


def test_a_thread_inside_an_events_body() -> None:
    @genflow.workflow("render-nested-wait")
    @attrs.define
    class Nested:
        def definition(self):
            yield Wait("outer",
                On("a", self.noop, Step("after a", self.noop), Wait("inner", On("b", self.noop))),
                On("c", self.noop),
            )

        def noop(self) -> None:
            pass

    wf = Nested()
    state = new_state("n-1", wf)
    resume(wf, state)
    _send(wf, state, "a")
    graph = instance_graph(wf, state)
    assert _marks(graph, "waiting") == {"inner"}
    assert _marks(graph, "active") == {"outer"}
    assert _marks(graph, "done") == {"after a"}
    assert _marks(graph, "listening") == {"b"}
    a = graph.event("outer", "a")
    assert a is not None and "handled" in a.classes
    taken = [e for e in graph.edges if "taken" in e.classes]
    # the branch taken: into the event, and on from it into its body
    assert [(graph.node(e.source).name, graph.node(e.target).name) for e in taken] == [
        ("outer", "a"), ("a", "after a")]
    assert "c" not in _marks(graph, "handled")


# -- failure: Try/Catch/Finally, Raise, raising timers, Sleep, daemons ----------------------------


def _kinds_of(graph: Graph, node: str) -> list[tuple[str, str, str, str | None]]:
    """(kind, target name or kind, label, tail) of each edge leaving `node`."""
    out = []
    for edge in graph.edges_from(node):
        target = graph.node(edge.target)
        out.append((edge.kind, target.name or target.kind, edge.label, edge.tail))
    return sorted(out, key=str)


def test_a_try_is_a_cluster_with_its_catches_and_finally_after_it() -> None:
    graph = build_graph(Failing())
    head = graph.named("attempt", NodeKind.TRY)
    assert head is not None and head.label == "Try attempt"
    group = graph.cluster(head.cluster)  # type: ignore[arg-type]
    assert group.kind == "try" and group.parent is None
    inside = {n.name for n in graph.nodes if n.cluster == group.id and n.name}
    assert inside == {"attempt", "send code", "code?", "code", "expired"}
    catches = {n.name: n.label for n in graph.nodes if n.kind == NodeKind.CATCH}
    assert catches == {"declined": "Catch declined\nDeclined\ninto failure",
                       "expired": "Catch expired\nExpired",
                       "anything": "Catch anything\nException"}
    fin = graph.named("count", NodeKind.FINALLY)
    assert fin is not None and fin.label == "Finally count" and fin.cluster is None
    # failure edges leave the body's cluster for each Catch, and for the Finally
    # (failures no Catch takes, and cancellation, reach it too)
    fails = [(k, t, label, tail) for k, t, label, tail in _kinds_of(graph, head.id)
             if k == EdgeKind.FAIL]
    assert fails == [(EdgeKind.FAIL, "count", "other failures / cancel", group.id),
                     (EdgeKind.FAIL, "declined", "Declined", group.id),
                     (EdgeKind.FAIL, "expired", "Expired", group.id)]
    assert _one_edge(graph, head.id, _id(graph, "send code")).kind == EdgeKind.NEXT
    # the body's end and each catch's end join at the Finally; the Finally goes on
    into_finally = {(graph.node(e.source).name or graph.node(e.source).kind, e.kind)
                    for e in graph.edges_to(fin.id) if e.kind != EdgeKind.FAIL}
    assert into_finally == {(NodeKind.DECISION, EdgeKind.ELSE),  # past "way too many"
                            (NodeKind.DECISION, EdgeKind.BREAK),  # its Break: the Finally first
                            ("log expiry", EdgeKind.NEXT)}
    count = _id(graph, "count", NodeKind.STEP)
    assert _one_edge(graph, fin.id, count).kind == EdgeKind.NEXT
    assert _one_edge(graph, count, _id(graph, "tries")).kind == EdgeKind.REPEAT
    brk = _one_edge(graph, count, _id(graph, "outer"))  # then the Break leaves the loop
    assert (brk.kind, brk.label) == (EdgeKind.BREAK, "break")
    # a Try that catches every Exception: only cancellation is left for a Finally
    # (it has none), and it goes on after its catch
    outer = graph.named("outer", NodeKind.TRY)
    assert outer is not None
    assert [t for k, t, _, _ in _kinds_of(graph, outer.id) if k == EdgeKind.FAIL] == ["anything"]
    assert _one_edge(graph, _id(graph, "recover"), _main_end(graph)).kind == EdgeKind.NEXT
    assert _one_edge(graph, _id(graph, "risky"), _main_end(graph)).kind == EdgeKind.NEXT


def test_raise_and_a_raising_timer_go_where_they_are_caught() -> None:
    graph = build_graph(Failing())
    raises = {n.label: n for n in graph.nodes if n.kind == NodeKind.RAISE}
    assert set(raises) == {"Raise Declined\ntoo many tries", "Raise\n(again)"}
    new = raises["Raise Declined\ntoo many tries"]
    assert _kinds_of(graph, new.id) == [(EdgeKind.FAIL, "declined", "", None)]
    assert graph.edges_to(new.id)[0].label == "too many"  # the If's branch into it
    # Raise() in the Catch: no enclosing Try catches it, so it fails the thread
    again = raises["Raise\n(again)"]
    assert _kinds_of(graph, again.id) == [(EdgeKind.FAIL, NodeKind.FAILS, "", None)]
    fails = graph.node(graph.edges_from(again.id)[0].target)
    assert (fails.label, fails.parent, fails.cluster) == ("fails", None, None)
    assert _one_edge(graph, _id(graph, "notify"), again.id).kind == EdgeKind.NEXT
    # the timer that raises: a failure edge to its Catch, nothing after it
    timer = graph.event("code?", "expired")
    assert timer is not None and timer.label == "timeout expired\nat a set time\nraises Expired"
    assert _kinds_of(graph, timer.id) == [(EdgeKind.FAIL, "expired", "", None)]


def test_step_labels_sleep_and_daemon_threads() -> None:
    graph = build_graph(Failing())
    charge = graph.named("charge")
    assert charge is not None
    assert charge.label == "charge\nretry: forever\nnever retried: Declined\ntimeout 5s"
    assert charge.detail["retry"]["never"] == ["Declined"] and charge.detail["timeout"] == 5
    nap = graph.named("a while")
    assert nap is not None and (nap.kind, nap.label) == (NodeKind.SLEEP, "Sleep a while\nfor 1h")
    assert graph.event("a while", "wake") is None  # a Sleep is its own timer
    assert _one_edge(graph, nap.id, _id(graph, "remind")).kind == EdgeKind.NEXT
    go = graph.named("reminder", NodeKind.GO)
    assert go is not None and go.label == "Go reminder\ndaemon" and go.detail["daemon"]
    assert graph.cluster(go.detail["lane"]).label == (
        "thread reminder (daemon)")
    # a bare trigger has no handler, so no payload or result types
    bare = build_graph(Cancellable()).named("ping")
    assert bare is not None and bare.label == "on ping" and bare.detail["handler"] is None


def test_failure_statements_in_every_format() -> None:
    graph = build_graph(Failing())
    m = parse_mermaid(to_mermaid(graph))
    head = m.by_label("Try attempt")
    assert m.nodes[head][0] == NodeKind.TRY
    group = m.member[head]
    assert group is not None and m.clusters[group] == " "
    # a failure edge starts at the Try's cluster (its whole body can fail)
    out = {(m.nodes[dst][1].split("\n")[0], label) for src, style, label, dst in m.edges
           if src == group and style == "-.->"}
    assert out == {("Catch declined", "Declined"), ("Catch expired", "Expired"),
                   ("Finally count", "other failures / cancel")}
    assert m.nodes[m.by_label("Catch declined")][0] == NodeKind.CATCH
    assert m.nodes[m.by_label("Finally count")][0] == NodeKind.FINALLY
    assert m.nodes[m.by_label("Raise Declined")][0] == NodeKind.RAISE
    assert m.nodes[m.by_label("fails")][0] == NodeKind.END
    assert m.clusters_of(m.by_label("send code")) == [" "]
    assert "linkStyle" in to_mermaid(graph)  # failure edges are red, marks or not
    d = parse_dot(to_dot(graph))
    assert d.nodes[d.by_label("Catch declined")][0] == "invhouse"
    assert d.nodes[d.by_label("Finally count")][0] == "house"
    assert {e[0] for e in d.edges if e[2] == "Declined"} == {head}
    assert 'ltail="cluster_' in to_dot(graph)
    text = to_text(graph)
    assert ("    Try attempt\n      send code\n" in text
            and "\n    Catch declined; Declined; into failure\n      notify\n      Raise; (again)\n"
            in text and "\n    Finally count\n      count\n" in text), text
    assert "fails" not in text  # an end shows only when an instance marks it
    if dot_program():
        check_dot(to_dot(graph))


# -- failure on an instance ---------------------------------------------------------------------


def _graphs_at_checkpoints(wf: Any, state: Any, op: str = "resume") -> list[tuple[str, Graph]]:
    """The instance drawn at every checkpoint of one operation: (checkpoint, graph)."""
    seen: list[tuple[str, Graph]] = []

    def checkpoint(kind: Any) -> None:
        seen.append((kind.value, instance_graph(wf, state)))

    run = {"resume": resume, "cancel": genflow.cancel}[op]
    with contextlib.suppress(genflow.StepError):  # (an uncaught failure: still drawn)
        run(wf, state, checkpoint)
    return seen


def _at(graph: Graph, thread: str = "_main_") -> Node:
    found = [n for n in graph.nodes if thread in n.threads]
    assert len(found) == 1, found
    return found[0]


def test_an_instance_unwinding_entering_and_inside_a_catch() -> None:
    wf = Transfer()
    state = new_state("t-1", wf)
    graphs = _graphs_at_checkpoints(wf, state)[1:]  # (the first: about to run deposit)
    kinds = [kind for kind, _ in graphs]
    assert kinds[:5] == ["after_failure", "after_failure", "after_resume", "after_resume",
                         "after_step"]
    # the step failed for good: the thread leaves it outward, carrying the failure
    unwinding = graphs[1][1]
    node = _at(unwinding)
    assert node.name == "deposit" and {"current", "unwinding"} <= set(node.classes)
    assert node.detail["carries"] == [
        "unwinding: fails with Declined: card declined (step 'deposit', 2 attempts)"]
    assert "unwinding" not in {c for n in graphs[0][1].nodes for c in n.classes}  # 1st try
    # at the Try, about to enter the Catch: drawn at the Catch, the failure edge taken
    entering = graphs[2][1]
    node = _at(entering)
    assert (node.kind, node.name) == (NodeKind.CATCH, "refund")
    assert {"current", "caught"} <= set(node.classes)
    assert node.detail["carries"] == ["caught Declined: card declined (step 'deposit', "
                                      "2 attempts)"]
    taken = [(entering.node(e.source).name, entering.node(e.target).name)
             for e in entering.edges if "taken" in e.classes]
    assert taken == [("move money", "refund")]
    assert "active" in entering.named("move money", NodeKind.TRY).classes  # type: ignore
    from genflow.render.formats import display_class

    assert display_class(node) == "caught"
    # inside the catch body: the Catch stays caught, the step is about to run
    inside = graphs[3][1]
    node = _at(inside)
    assert node.name == "give back" and "executing" in node.classes
    assert node.detail["carries"] == ["handling Declined: card declined (step 'deposit', "
                                      "2 attempts)"]
    assert "caught" in inside.named("refund", NodeKind.CATCH).classes  # type: ignore
    assert [inside.node(e.target).name for e in inside.edges if "taken" in e.classes] == [
        "refund"]
    m = parse_mermaid(to_mermaid(inside))
    assert m.nodes[node.id][1] == ("give back\n▶ main\nhandling Declined: card declined "
                                   "(step 'deposit', 2 attempt…")
    assert node.id in m.classes["executing"]
    if dot_program():
        check_dot(to_dot(inside))
    assert state.status.value == "finished" and wf.failure is not None


def test_a_finally_that_holds_an_uncaught_failure_back() -> None:
    wf = Transfer(fail="other")
    state = new_state("t-2", wf)
    graphs = _graphs_at_checkpoints(wf, state)
    in_finally = next(g for kind, g in graphs if _at(g).name == "close books")
    node = _at(in_finally)
    assert node.detail["carries"] == [
        "after the Finally: fails with KeyError: 'no account' (step 'deposit', 2 attempts)"]
    fin = in_finally.named("close", NodeKind.FINALLY)
    assert fin is not None and "active" in fin.classes
    taken = [(e.kind, in_finally.node(e.target).name) for e in in_finally.edges
             if "taken" in e.classes]
    assert taken == [(EdgeKind.FAIL, "close")]
    assert state.status.value == "failed"  # the thread carries the failure that ended it
    assert [t.unwind for t in state.threads] == ["fail"]


def test_a_cancelling_instance_and_a_cancelled_one() -> None:
    wf = Cancellable()
    state = new_state("c-1", wf)
    resume(wf, state)
    graphs = _graphs_at_checkpoints(wf, state, "cancel")
    first = graphs[0][1]
    assert graphs[0][0] == "after_cancel" and first.instance["status"] == "cancelling"
    for thread, stmt in (("_main_", "approval?"), ("helper", "ping?")):
        node = _at(first, thread)
        assert node.name == stmt and "unwinding" in node.classes
        assert node.detail["carries"] == ["unwinding: cancelled"]
    assert "instance c-1 (cancelling)" in to_mermaid(first).splitlines()[0]
    cleanup = next(g for _, g in graphs if _at(g).name == "release hold")
    assert _at(cleanup).detail["carries"] == [
        "handling Cancelled: the instance was cancelled (step 'approval?'); then cancelled"]
    assert "caught" in cleanup.named("on cancel", NodeKind.CATCH).classes  # type: ignore
    audit = next(g for _, g in graphs if _at(g).name == "audit")
    assert _at(audit).detail["carries"] == ["after the Finally: cancelled"]
    done = instance_graph(wf, state)
    assert state.status.value == "cancelled"
    assert _marks(done, "cancelled") == {_main_end(done)}


def test_describe_words_a_cancelling_instance_and_its_unwinding_threads() -> None:
    from genflow.describe import describe

    wf = Cancellable()
    state = new_state("c-2", wf)
    resume(wf, state)

    def stop(kind: Any) -> None:  # the process stops right after cancellation reached it
        raise KeyError(kind)

    with pytest.raises(KeyError):
        genflow.cancel(wf, state, stop)
    text = describe(state, wf)
    assert "instance c-2 of workflow 'render-cancellable': cancelling (its threads run " \
           "their cleanup, then end)" in text
    assert "main thread: leaving 'approval?' outward\n    unwinding: cancelled" in text


def test_a_sleeping_thread_shows_its_due_time_and_a_failed_end() -> None:
    wf = Failing(deadline=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    state = new_state("s-1", wf)
    resume(wf, state)
    graph = instance_graph(wf, state)
    timer = graph.event("code?", "expired")
    assert timer is not None and timer.detail["due"] == "2030-01-01T00:00:00+00:00"
    nap = graph.named("a while")
    assert nap is not None and "waiting" in nap.classes and nap.detail["due"]
    assert "\ndue " in to_mermaid(graph).replace("<br>", "\n")

    @genflow.workflow("render-reraise")
    @attrs.define
    class Reraise:
        def definition(self):
            yield Try("t", Raise(Declined, "no")).Catch("c", Raise())

    wf2 = Reraise()
    state2 = new_state("r-1", wf2)
    with pytest.raises(genflow.StepError):
        resume(wf2, state2)
    graph = instance_graph(wf2, state2)
    assert state2.status.value == "failed" and [t.unwind for t in state2.threads] == ["fail"]
    assert [n.kind for n in graph.nodes if "failed" in n.classes] == [NodeKind.FAILS]
    assert "✘ fails" in to_text(graph)


@genflow.workflow("render-slow-cleanup")
@attrs.define
class SlowCleanup:
    def definition(self):
        yield Try("work", Wait("go?", On("go"))).Finally(
            "cleanup", Wait("confirm?", On("confirmed")), Step("tidy", self.noop))

    def noop(self) -> None:
        pass


def test_the_console_view_and_report_of_a_cancelling_instance(tmp_path: Path) -> None:
    from genflow.render.views import Diagrams, instance_view

    engine = Engine(SQLiteStore(tmp_path / "s.db"), [SlowCleanup])
    engine.start(SlowCleanup(), id="slow")
    engine.cancel("slow")  # its cleanup waits for a confirmation: it stays CANCELLING
    instance = engine.get("slow")
    assert instance.status.value == "cancelling"
    view = instance_view(instance, now=engine.clock(), diagrams=Diagrams(svg=False))
    assert view["status"] == "cancelling" and not view["problems"]
    assert "cancelling (its threads run their cleanup, then end)" in view["text"]
    confirm = next(node for node, names in view["at"].items() if names == ["main"])
    assert "waiting" in view["marks"][confirm]
    assert view["notes"][confirm] == "after the Finally: cancelled"
    data = _report_data(write_report(engine, tmp_path / "report", svg=False))
    assert {r["id"]: r["status"] for r in data["rows"]} == {"slow": "cancelling"}
    engine.send("slow", "confirmed")
    assert engine.get("slow").status.value == "cancelled"
    engine.store.close()


@genflow.workflow("render-maze")
@attrs.define
class Maze:
    """Try/Catch/Finally nested in loops and threads; `fails` says which step
    fails (each once), so every placement of failures can be drawn."""

    fails: list[str] = attrs.field(factory=list)
    rounds: int = 0

    def definition(self):
        yield Go("side", self.side, daemon=True)
        yield For("rounds", self.rounds < 2,
            Try("round",
                Step("a", lambda: self.maybe("a")),
                Try("inner", Step("b", lambda: self.maybe("b"))).Catch(
                    "inner catch", Step("b2", lambda: self.maybe("b2")), errors=Declined),
            ).Catch("round catch", Step("c", lambda: self.maybe("c")), Raise(), errors=Expired
            ).Catch("any", Step("e", lambda: self.maybe("e"))
            ).Finally("round end", Step("d", self.next_round)),
        )

    def side(self):
        yield Try("side try", For("ticks", True, Sleep("tick", 60), Step("s", self.noop))
                  ).Finally("side end", Step("t", self.noop))

    def maybe(self, name: str) -> None:
        key = f"{name}{self.rounds}"
        if key in self.fails:
            self.fails.remove(key)
            raise (Declined if name == "b" else Expired if name == "a" else KeyError)(key)

    def next_round(self) -> None:
        self.rounds += 1

    def noop(self) -> None:
        pass


@settings(max_examples=30, deadline=None)
@given(fails=st.lists(st.sampled_from(["a0", "b0", "b1", "c0", "b20", "e0", "a1", "e1"]),
                      unique=True, max_size=4),
       cancel=st.booleans())
def test_every_thread_is_drawn_where_it_stands_at_every_checkpoint(fails, cancel) -> None:
    wf = Maze(fails=list(fails))
    state = new_state("maze", wf)
    drawn: list[tuple[Graph, Any]] = []

    def checkpoint(kind: Any) -> None:
        drawn.append((instance_graph(wf, state), copy.deepcopy(state)))

    with contextlib.suppress(genflow.StepError):
        resume(wf, state, checkpoint)
    if cancel and state.status.value not in ("finished", "failed"):
        genflow.cancel(wf, state, checkpoint)
    assert drawn
    for graph, seen in drawn:
        placed = {t["id"]: t for t in graph.instance["threads"]}  # type: ignore[index]
        for thread in seen.threads:
            where = placed[thread.id]
            assert where["problem"] == "" and where["node"] is not None, where
            node = graph.node(where["node"])
            assert thread.id in node.threads
            if thread.enter:  # drawn at the Catch it enters
                assert (node.kind, node.name) == (NodeKind.CATCH, thread.enter)
                assert "caught" in node.classes
            elif thread.stmt:
                assert node.name == thread.stmt
            assert ("unwinding" in node.classes) == any(
                t.status.value == "unwinding" for t in seen.threads if t.id in node.threads)
        ids = [cls for node in graph.nodes for cls in node.classes]
        assert ids.count("caught") <= len(seen.threads) * 2
    parse_mermaid(to_mermaid(drawn[-1][0]))
    parse_dot(to_dot(drawn[-1][0]))


def test_a_waitfors_timeout_hangs_under_it_and_the_condition_goes_past_it() -> None:
    from waitfor_app import Approval, Strict

    from genflow.testing import Instance

    graph = build_graph(Approval())
    wait_for = graph.named("approved?", NodeKind.WAITFOR)
    assert wait_for is not None and wait_for.detail["timeout"] == "expired"
    timer = graph.event("approved?", "expired")
    assert timer is not None and timer.label == "timeout expired\nafter 2d"
    assert _kinds_of(graph, wait_for.id) == [(EdgeKind.EVENT, "expired", "", None),
                                             (EdgeKind.NEXT, "close", "", None)]
    assert _kinds_of(graph, timer.id) == [(EdgeKind.NEXT, "escalate", "", None)]
    assert _one_edge(graph, _id(graph, "escalate"), _id(graph, "close")).kind == EdgeKind.NEXT
    assert to_text(Approval()).splitlines()[4:8] == [
        "  WaitFor approved?; then on_approved", "    timeout expired; after 2d",
        "      escalate", "  close"]
    # a timeout that raises: a failure edge to the Catch, nothing after its timer
    strict = build_graph(Strict())
    raising = strict.event("approved?", "expired")
    assert raising is not None and raising.label == "timeout expired\nafter 2d\nraises Expired"
    assert _kinds_of(strict, raising.id) == [(EdgeKind.FAIL, "too late", "", None)]
    # the instance's timer on the diagram: listening, with its due time
    run = Instance(Approval())
    run.resume()
    drawn = instance_graph(run.wf, run.state)
    on_diagram = drawn.event("approved?", "expired")
    assert on_diagram is not None and on_diagram.detail["due"] == "2030-01-03T00:00:00+00:00"
    assert "listening" in on_diagram.classes
