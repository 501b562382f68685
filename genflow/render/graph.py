"""The graph of a definition: nodes, edges and clusters, format-neutral.

`build_graph(wf)` walks the definition of `wf` **on its current data** over
every branch (`genflow.replay.iter_tree`: conditions are ignored) and turns the
statement tree into a control-flow graph:

* a node per statement a thread can stand at (`Step`, `Wait`, `WaitFor`), per
  compound statement (`If`/`Switch` as a decision, `For` as a loop head, `Go`)
  and per event of a `Wait` (`On` / `Timeout`, with the handler's payload and
  result types); a start and an end node per thread;
* edges for the flow: branches carry their names, a loop's body ends in an
  edge back to its head (a cycle) and the head has a ``done`` exit; `Break`,
  `Continue` and `Return` are not nodes but edges (to after the loop, to its
  head, to the thread's end), so nothing after them is reached;
* clusters: each `Go` body is a lane of its own (the thread it starts), and
  statements that come from a `yield from self.sub_flow()` are grouped under
  the sub-flow's name;
* failure: a `Try` is a cluster holding its head and its body; each `Catch`
  (its error types, the field it puts the failure `into`) and the `Finally`
  are branch nodes after it. Failure edges leave the body's cluster for each
  Catch (and for the Finally, which failures no Catch takes and cancellation
  also reach); the body's and each catch's ends join at the Finally, a
  Break/Continue/Return inside goes through it first. A `Raise` (and a timer
  declared with `raises=`) has a failure edge to each enclosing Catch it can
  reach, and to its thread's ``fails`` end when none is sure to catch it.

The walk keeps an explicit stack of contexts beside the replay's frames (no
recursion), so a deeply nested definition draws as well as it resumes.
`genflow.render.overlay` marks an instance on a graph; `genflow.render.formats`
writes Mermaid, DOT, JSON and a plain outline.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import typing
from collections.abc import Callable
from types import GeneratorType
from typing import Any

import attrs

from genflow.children import Children
from genflow.errors import Cancelled, ChildFailed, DefinitionError, GenflowError
from genflow.handlers import EventHandler, FunctionHandler, TimerHandler, as_handler
from genflow.registry import on_defaults, workflow_name
from genflow.replay import Frame, as_body, iter_tree, path_of
from genflow.statements import (
    Break,
    Continue,
    For,
    Go,
    If,
    On,
    Raise,
    Retry,
    Return,
    Sleep,
    Step,
    Stmt,
    Switch,
    Timeout,
    Try,
    Wait,
    WaitFor,
)

__all__ = [
    "Cluster",
    "Edge",
    "EdgeKind",
    "Graph",
    "Node",
    "NodeKind",
    "build_graph",
    "type_name",
]


class NodeKind:
    """The kinds of node (`Node.kind`)."""

    START = "start"  #: where a thread begins
    END = "end"  #: where a thread ends
    STEP = "step"
    DECISION = "decision"  #: an If / Switch
    LOOP = "loop"  #: a For loop's head
    WAIT = "wait"
    EVENT = "event"  #: an `On` of a Wait
    TIMER = "timer"  #: a `Timeout` of a Wait
    WAITFOR = "waitfor"
    GO = "go"  #: starts a thread (its lane is a cluster)
    SLEEP = "sleep"  #: a `Sleep`: a wait for its timer alone
    CHILD = "child"  #: a `Child` / `Children`: starts child workflows, waits for them
    TRY = "try"  #: a `Try`'s head (its body is a cluster with it)
    CATCH = "catch"  #: a `Catch` of a Try: where the failures it matches go
    FINALLY = "finally"  #: the `Finally` of a Try
    RAISE = "raise"  #: a `Raise`
    FAILS = "fails"  #: where a thread ends when a failure leaves it uncaught
    OTHER = "statement"  #: a statement kind genflow does not know (drawn as a box)


class EdgeKind:
    """The kinds of edge (`Edge.kind`)."""

    NEXT = "next"  #: on to the next statement
    BRANCH = "branch"  #: from a decision into a branch (labelled with its name)
    ELSE = "else"  #: past a decision none of whose branches was taken
    LOOP = "loop"  #: from a loop head into its body
    REPEAT = "repeat"  #: from the end of a loop's body back to its head (a cycle)
    EXIT = "exit"  #: from a loop head on, once the loop is done
    BREAK = "break"
    CONTINUE = "continue"
    RETURN = "return"
    EVENT = "event"  #: from a Wait to one of its events
    SPAWN = "spawn"  #: from a Go to the start of the thread it starts
    #: a failure's way: out of a Try's body (`Edge.tail`) into a Catch or the
    #: Finally, or from a Raise or a raising timer to where it is caught
    FAIL = "fail"


@attrs.define(eq=False)
class Node:
    """One node. `label` may hold line breaks (each format draws them its own way)."""

    id: str
    kind: str
    label: str
    #: the statement's (or event's) name; None for start and end nodes.
    name: str | None = None
    #: the id of the enclosing compound node (decision, loop, wait, go), or None.
    parent: str | None = None
    #: the id of the innermost cluster (lane or sub-flow) holding the node.
    cluster: str | None = None
    #: nesting depth in the statement tree (0 at the top of the definition).
    depth: int = 0
    #: the statement's path in the walk (indices through nested bodies), [] if none.
    path: list[int] = attrs.field(factory=list)
    #: kind-specific facts: payload/result types, retry policy, timer delay, ...
    detail: dict[str, Any] = attrs.field(factory=dict)
    #: marks an instance puts on the node (see `genflow.render.overlay`).
    classes: list[str] = attrs.field(factory=list)
    #: ids of the threads that stand at this node.
    threads: list[str] = attrs.field(factory=list)


@attrs.define(eq=False)
class Edge:
    source: str
    target: str
    kind: str = EdgeKind.NEXT
    label: str = ""
    #: for edges into a branch (of a decision, a Wait's event, a Try), the branch's index.
    branch: int | None = None
    classes: list[str] = attrs.field(factory=list)
    #: the cluster the edge leaves from its border (a Try's body: every statement
    #: in it can fail); `source` is a node inside it (the Try's head).
    tail: str | None = None


@attrs.define(eq=False)
class Cluster:
    """A group of nodes: a thread's lane (`kind` "thread"), a sub-flow ("subflow")
    or a Try and its body ("try")."""

    id: str
    kind: str
    label: str
    parent: str | None = None
    #: the Go statement's name (lanes) or the generator function's name (sub-flows).
    name: str = ""
    #: ids of live threads in this lane (an instance's overlay fills it).
    threads: list[str] = attrs.field(factory=list)


@attrs.define(eq=False)
class Graph:
    """A definition's graph, and optionally an instance marked on it."""

    workflow: str
    nodes: list[Node] = attrs.field(factory=list)
    edges: list[Edge] = attrs.field(factory=list)
    clusters: list[Cluster] = attrs.field(factory=list)
    #: the instance drawn on the graph (id, status, threads), or None.
    instance: dict[str, Any] | None = None

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def named(self, name: str, kind: str | None = None) -> Node | None:
        """The node of the statement (or first event) called `name`."""
        for node in self.nodes:
            if node.name == name and (kind is None or node.kind == kind):
                return node
        return None

    def event(self, wait: str, event: str) -> Node | None:
        """The node of event `event` of the Wait called `wait` (or of the timeout
        of the WaitFor called `wait`)."""
        parent = self.named(wait, NodeKind.WAIT) or self.named(wait, NodeKind.WAITFOR)
        if parent is None:
            return None
        for node in self.nodes:
            if node.parent == parent.id and node.name == event:
                return node
        return None

    def cluster(self, cluster_id: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.id == cluster_id:
                return cluster
        raise KeyError(cluster_id)

    def edges_from(self, node_id: str) -> list[Edge]:
        return [edge for edge in self.edges if edge.source == node_id]

    def edges_to(self, node_id: str) -> list[Edge]:
        return [edge for edge in self.edges if edge.target == node_id]


# -- building ----------------------------------------------------------------------------------


def build_graph(wf: Any, *, workflow: str | None = None) -> Graph:
    """The graph of `wf`'s definition on its current data (every branch).

    `wf` is a workflow instance (or a statement, a body, a generator function).
    `workflow` names the graph (default: the registered name, or the class's).
    A workflow class is drawn on an instance of its defaults (`genflow graph
    WORKFLOW` does the same); one without defaults for every field is an
    `ArgumentError` asking for an instance. Raises `DefinitionError` when
    building the definition raises.
    """
    if isinstance(wf, type) and callable(getattr(wf, "definition", None)):
        wf = on_defaults(wf, "pass an instance, {name}(...), with the data to draw it on")
    builder = _Builder(workflow or _workflow_name(wf))
    try:
        for stmt, stack in iter_tree(as_body(wf)):
            builder.visit(stmt, stack)
        builder.sync([])
    except GenflowError:
        raise
    except Exception as exc:
        raise DefinitionError(
            f"definition() of workflow {builder.graph.workflow!r} raised while drawing it: "
            f"{exc!r}"
        ) from exc
    return builder.graph


def _workflow_name(wf: Any) -> str:
    from genflow.registry import workflow_name

    try:
        return workflow_name(wf)
    except GenflowError:
        cls = wf if isinstance(wf, type) else type(wf)
        return getattr(cls, "__qualname__", "definition")


class _Exit:
    """A dangling edge: the next node reached gets an edge from `source`."""

    __slots__ = ("branch", "kind", "label", "source")

    def __init__(self, source: str, kind: str = EdgeKind.NEXT, label: str = "",
                 branch: int | None = None):
        self.source = source
        self.kind = kind
        self.label = label
        self.branch = branch


class _Open:
    """A compound statement whose bodies the walk is inside (or just passed)."""

    __slots__ = ("branches", "breaks", "events", "exits", "group", "held", "held_exits",
                 "joined", "lane", "node", "stmt")

    def __init__(self, stmt: Stmt, node: Node):
        self.stmt = stmt
        self.node = node
        #: exits of each branch body seen so far, by branch index.
        self.exits: dict[int, list[_Exit]] = {}
        self.breaks: list[_Exit] = []  # For: Break edges, leaving the loop
        self.events: list[Node] = []  # Wait: its event nodes, in order
        self.lane: tuple[Cluster, Node, Node] | None = None  # Go: cluster, start, end
        # Try: its cluster and the one around it; its Catch/Finally nodes by branch;
        # the jumps (Break, Continue, Return) that go through its Finally, and
        # their edges into it; whether the Finally has been joined yet
        self.group: tuple[str, str | None] | None = None
        self.branches: dict[int, Node] = {}
        self.held: list[Stmt] = []
        self.held_exits: list[_Exit] = []
        self.joined = False

    def entry(self, branch: int) -> list[_Exit]:
        """The dangling edges a branch body starts with (a Try's Finally: its node,
        once `_Builder.join_finally` has joined what runs before it)."""
        stmt = self.stmt
        if isinstance(stmt, Switch):
            return [_Exit(self.node.id, EdgeKind.BRANCH, stmt.cases[branch].name or "", branch)]
        if isinstance(stmt, For):
            return [_Exit(self.node.id, EdgeKind.LOOP)]
        if isinstance(stmt, (Sleep, Children)):  # no event node: it is its own event
            return [_Exit(self.node.id)]
        if isinstance(stmt, Wait):
            on = stmt.events[branch]
            if isinstance(on, Timeout) and on.raises is not None:
                return []  # the timer fails the thread: nothing after it runs
            return [_Exit(self.events[branch].id, EdgeKind.NEXT, "", branch)]
        if isinstance(stmt, WaitFor):  # its one body: its timeout's
            assert stmt.timeout is not None
            if stmt.timeout.raises is not None:
                return []
            return [_Exit(self.events[0].id, EdgeKind.NEXT, "", 0)]
        if isinstance(stmt, Try) and branch:
            return [_Exit(self.branches[branch].id)]
        if isinstance(stmt, Go) and self.lane is not None:
            return [_Exit(self.lane[1].id)]
        return [_Exit(self.node.id)]

    def branch_exits(self) -> list[_Exit]:
        """Every branch's exits (a branch never walked had an empty body)."""
        out: list[_Exit] = []
        for branch in range(len(self.stmt.bodies)):
            out.extend(self.exits.get(branch, self.entry(branch)))
        return out


class _Context:
    """One body the walk is inside, beside the replay's frame for it."""

    __slots__ = ("branch", "cluster", "depth", "end", "frame", "open", "owner", "pending")

    def __init__(self, frame: Frame, owner: _Open | None, pending: list[_Exit],
                 cluster: str | None, depth: int, end: Node | None):
        self.frame = frame
        self.owner = owner
        self.branch = frame.branch
        self.pending = pending
        self.cluster = cluster
        self.depth = depth
        self.end = end  # the end node of the thread this body belongs to
        self.open: _Open | None = None


class _Builder:
    def __init__(self, workflow: str):
        self.graph = Graph(workflow)
        self.contexts: list[_Context] = []
        self.ids: set[str] = set()
        self.subflows: dict[tuple[str | None, int], str] = {}
        self.keep: list[Any] = []  # generators keyed by id(): keep them alive

    # -- nodes, edges, clusters --

    def new_id(self, prefix: str, text: str) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()[:40] or prefix
        base = f"{prefix}_{slug}"
        candidate, n = base, 1
        while candidate in self.ids:
            n += 1
            candidate = f"{base}_{n}"
        self.ids.add(candidate)
        return candidate

    def add_node(self, kind: str, label: str, *, name: str | None = None,
                 parent: str | None = None, cluster: str | None = None, depth: int = 0,
                 path: list[int] | None = None, id_text: str | None = None,
                 detail: dict[str, Any] | None = None) -> Node:
        node = Node(self.new_id("n", id_text or name or kind), kind, label, name=name,
                    parent=parent, cluster=cluster, depth=depth, path=list(path or []),
                    detail=detail or {})
        self.graph.nodes.append(node)
        return node

    def add_cluster(self, kind: str, label: str, parent: str | None, name: str) -> Cluster:
        cluster = Cluster(self.new_id("c", f"{kind} {name}"), kind, label, parent, name)
        self.graph.clusters.append(cluster)
        return cluster

    def connect(self, exits: list[_Exit], target: str, *, kind: str | None = None,
                label: str = "") -> None:
        for out in exits:
            text = " · ".join(part for part in (out.label, label) if part)
            self.graph.edges.append(Edge(out.source, target, kind or out.kind, text, out.branch))

    # -- following the replay's frames --

    def sync(self, stack: list[Frame]) -> None:
        """Make the contexts mirror `stack`: close bodies the walk left, open new ones."""
        contexts = self.contexts
        common = 0
        while (common < len(contexts) and common < len(stack)
               and contexts[common].frame is stack[common]):
            common += 1
        while len(contexts) > common:
            self.pop()
        for frame in stack[common:]:
            self.push(frame)

    def push(self, frame: Frame) -> None:
        if not self.contexts:
            start = self.add_node(NodeKind.START, "start", id_text="start")
            main_end = self.add_node(NodeKind.END, "end", id_text="end")
            self.contexts.append(_Context(frame, None, [_Exit(start.id)], None, 0, main_end))
            return
        parent = self.contexts[-1]
        owner = parent.open
        if owner is None or owner.stmt is not frame.owner:  # pragma: no cover - iter_tree's order
            raise DefinitionError(f"cannot draw the body of {frame.owner!r}")
        end: Node | None = parent.end
        cluster = owner.node.cluster
        if owner.lane is not None:
            cluster, end = owner.lane[0].id, owner.lane[2]
        if owner.group is not None:  # a Try's body is in its cluster, its branches not
            cluster = owner.group[0] if frame.branch == 0 else owner.group[1]
            fin = getattr(owner.stmt, "finally_", None)
            if fin is not None and frame.branch == fin.index:
                self.join_finally(owner)
        # a Wait's bodies hang under its events, one level deeper
        depth = parent.depth + (2 if isinstance(owner.stmt, (Wait, WaitFor)) else 1)
        self.contexts.append(_Context(frame, owner, owner.entry(frame.branch), cluster,
                                      depth, end))

    def pop(self) -> None:
        context = self.contexts.pop()
        self.close(context)
        if context.owner is None:
            assert context.end is not None
            self.connect(context.pending, context.end.id)
        else:
            context.owner.exits[context.branch] = context.pending

    def close(self, context: _Context) -> None:
        """The walk is past `context.open`'s bodies: its exits become the pending edges."""
        op = context.open
        if op is None:
            return
        context.open = None
        stmt = op.stmt
        exits = op.branch_exits()
        if isinstance(stmt, Switch):
            if not (stmt.cases and stmt.cases[-1].otherwise):
                exits.append(_Exit(op.node.id, EdgeKind.ELSE, "else"))
            context.pending = exits
        elif isinstance(stmt, For):
            self.connect(exits, op.node.id, kind=EdgeKind.REPEAT)
            context.pending = [_Exit(op.node.id, EdgeKind.EXIT, "done"), *op.breaks]
        elif isinstance(stmt, Go):
            assert op.lane is not None
            self.connect(exits, op.lane[2].id)
            context.pending = [_Exit(op.node.id)]
        elif isinstance(stmt, WaitFor):  # the condition held, or its timeout's body ran
            context.pending = [_Exit(op.node.id), *exits]
        elif isinstance(stmt, Try) and stmt.finally_ is not None:
            self.join_finally(op)  # (an empty Finally body is never walked)
            exits = op.exits.get(stmt.finally_.index, op.entry(stmt.finally_.index))
            context.pending = list(exits)
            chain = self.outward(context)
            for jump in op.held:  # each jump held back by the Finally goes on after it
                self.jump_edges(jump, list(exits), chain)
        else:
            context.pending = exits

    def join_finally(self, op: _Open) -> None:
        """Edges into a Try's Finally: from the ends of its body and of each catch,
        and from the jumps that leave them (once, before the Finally's body)."""
        if op.joined:
            return
        op.joined = True
        fin = op.stmt.finally_  # type: ignore[attr-defined]
        exits = []
        for branch in range(fin.index):
            exits.extend(op.exits.get(branch, op.entry(branch)))
        self.connect([*exits, *op.held_exits], op.branches[fin.index].id)

    def outward(self, context: _Context) -> list[_Context]:
        """The contexts from `context` (on the stack, or just popped) outward."""
        for index in range(len(self.contexts) - 1, -1, -1):
            if self.contexts[index] is context:
                return self.contexts[index::-1]
        return [context, *reversed(self.contexts)]

    # -- statements --

    def visit(self, stmt: Stmt, stack: list[Frame]) -> None:
        self.sync(stack)
        context = self.contexts[-1]
        op = context.open
        if isinstance(stmt, On) and op is not None and isinstance(op.stmt, (Wait, WaitFor)):
            if not isinstance(op.stmt, (Sleep, Children)):  # (a Sleep is its own timer)
                self.event(op, stmt, context)
            return
        self.close(context)
        path = path_of(stack)
        cluster = self.subflow_cluster(context.cluster, stack[-1])
        kind = type(stmt)
        if kind is Break or kind is Continue or kind is Return:
            self.jump(stmt, context)
            return
        node = self.statement_node(stmt, context, cluster, path)
        self.connect(context.pending, node.id)
        context.pending = [_Exit(node.id)]
        if isinstance(stmt, Raise):  # nothing after it runs: its failure goes where caught
            context.pending = []
            self.fail_edges(node, _raised(stmt, self.contexts), self.outward(context))
        if isinstance(stmt, Children):  # a child that does not finish fails the thread here
            self.fail_edges(node, _Raised((ChildFailed,), exact=True), self.outward(context),
                            only_caught=True)
        if stmt.bodies or isinstance(stmt, (Switch, For, Wait, Go)):
            context.open = _Open(stmt, node)
            if isinstance(stmt, Go):
                self.lane(context.open, stmt, node, cluster)
            elif isinstance(stmt, Try):
                self.try_group(context.open, stmt, node, cluster)

    def statement_node(self, stmt: Stmt, context: _Context, cluster: str | None,
                       path: list[int]) -> Node:
        parent = context.owner.node.id if context.owner is not None else None
        depth = context.depth
        name = stmt.name

        def node(kind: str, label: str, **kw: Any) -> Node:
            return self.add_node(kind, label, name=name, parent=parent, cluster=cluster,
                                 depth=depth, path=path, **kw)

        if isinstance(stmt, Step):
            detail: dict[str, Any] = {"action": _callable_name(stmt.action)}
            label = name or "step"
            if stmt.retry is not None:
                detail["retry"] = _retry_detail(stmt.retry)
                label += f"\nretry: {_attempts(stmt.retry)}"
                if stmt.retry.never:
                    label += f"\nnever retried: {_names(stmt.retry.never)}"
            if stmt.timeout is not None:
                detail["timeout"] = stmt.timeout
                label += f"\ntimeout {_duration(stmt.timeout)}"
            return node(NodeKind.STEP, label, detail=detail)
        if isinstance(stmt, Sleep):
            timer = stmt.events[0]
            assert isinstance(timer, Timeout)
            when = f"for {_duration(timer.after)}" if timer.after is not None else \
                "until a set time"
            return node(NodeKind.SLEEP, f"Sleep {name}\n{when}",
                        detail={"after": timer.after, "timer": timer.name})
        if isinstance(stmt, Try):
            return node(NodeKind.TRY, f"Try {name}", id_text=f"try {name}")
        if isinstance(stmt, Raise):
            if stmt.error is None:
                return self.add_node(NodeKind.RAISE, "Raise\n(again)", parent=parent,
                                     cluster=cluster, depth=depth, path=path, id_text="raise",
                                     detail={"error": None})
            label = f"Raise {stmt.error.__name__}" + (
                f"\n{_cut(stmt.message)}" if stmt.message else "")
            return self.add_node(NodeKind.RAISE, label, parent=parent, cluster=cluster,
                                 depth=depth, path=path, id_text=f"raise {stmt.error.__name__}",
                                 detail={"error": stmt.error.__qualname__,
                                         "message": stmt.message})
        if isinstance(stmt, Switch):
            cases = [{"name": case.name, "cond": case.cond, "otherwise": case.otherwise}
                     for case in stmt.cases]
            word = "If" if isinstance(stmt, If) else "Switch"
            first = stmt.cases[0].name if stmt.cases else word
            return self.add_node(NodeKind.DECISION, word, name=None, parent=parent,
                                 cluster=cluster, depth=depth, path=path,
                                 id_text=f"{word} {first}", detail={"cases": cases})
        if isinstance(stmt, For):
            return node(NodeKind.LOOP, f"For {name}", detail={"cond": stmt.cond})
        if isinstance(stmt, Children):
            kinds = sorted({workflow_name(item) for item in stmt.items})
            count = len(stmt.items)
            label = f"{type(stmt).__name__} {name}\n" + (
                kinds[0] if stmt.single else f"{count} x {' / '.join(kinds)}")
            if stmt.first is not None:
                label += f"\nfirst {stmt.first}"
            return node(NodeKind.CHILD, label, detail={
                "workflows": kinds, "children": count, "first": stmt.first, "into": stmt.into,
                "on_cancel": stmt.on_cancel})
        if isinstance(stmt, Wait):
            return node(NodeKind.WAIT, f"Wait {name}",
                        detail={"events": [on.name for on in stmt.events]})
        if isinstance(stmt, WaitFor):
            detail = {"cond": stmt.cond}
            label = f"WaitFor {name}"
            if stmt.handler is not None:
                detail["handler"] = _callable_name(stmt.handler)
                label += f"\nthen {detail['handler']}"
            if stmt.timeout is not None:  # (its timer node hangs under it: `event`)
                detail["timeout"] = stmt.timeout.name
            return node(NodeKind.WAITFOR, label, detail=detail)
        if isinstance(stmt, Go):
            in_loop = self.in_loop()
            label = f"Go {name}" + (f"\nthread {stmt.id}" if stmt.id != name and not in_loop
                                    else "")
            if stmt.daemon:
                label += "\ndaemon"
            return node(NodeKind.GO, label, detail={"thread": stmt.id, "in_loop": in_loop,
                                                    "daemon": stmt.daemon})
        return node(NodeKind.OTHER, f"{type(stmt).__name__} {name or ''}".strip(),
                    detail={"statement": type(stmt).__name__})

    def in_loop(self) -> bool:
        """Whether the walk is inside a For loop of the current thread."""
        for context in reversed(self.contexts):
            if context.owner is None or isinstance(context.owner.stmt, Go):
                return False
            if isinstance(context.owner.stmt, For):
                return True
        return False

    def lane(self, op: _Open, go: Go, node: Node, cluster: str | None) -> None:
        if node.detail["in_loop"]:
            label = f"thread {go.name} (one per id)"
        else:
            label = f"thread {go.name}" + (f" (id {go.id})" if go.id != go.name else "")
        if go.daemon:  # (cancelled when the main thread ends)
            label += " (daemon)"
        lane = self.add_cluster("thread", label, cluster, go.name or "")
        node.detail["lane"] = lane.id
        depth = node.depth + 1
        start = self.add_node(NodeKind.START, "start", parent=node.id, cluster=lane.id,
                              depth=depth, id_text=f"{go.name} start")
        end = self.add_node(NodeKind.END, "end", parent=node.id, cluster=lane.id,
                            depth=depth, id_text=f"{go.name} end")
        op.lane = (lane, start, end)
        self.graph.edges.append(Edge(node.id, start.id, EdgeKind.SPAWN))

    def event(self, op: _Open, on: On, context: _Context) -> None:
        wait = op.node
        detail = {"index": len(op.events), **_handler_detail(on)}
        if isinstance(on, Timeout):
            when = f"after {_duration(on.after)}" if on.after is not None else "at a set time"
            kind, label = NodeKind.TIMER, f"timeout {on.name}\n{when}"
            if on.raises is not None:
                label += f"\nraises {on.raises.__name__}"
                detail["raises"] = on.raises.__qualname__
        else:
            kind, label = NodeKind.EVENT, _event_label(on.name or "", detail)
        node = self.add_node(kind, label, name=on.name, parent=wait.id, cluster=wait.cluster,
                             depth=context.depth + 1, path=wait.path,
                             id_text=f"{wait.name} {on.name}", detail=detail)
        self.graph.edges.append(Edge(wait.id, node.id, EdgeKind.EVENT, "",
                                     len(op.events)))
        op.events.append(node)
        if isinstance(on, Timeout) and on.raises is not None:
            self.fail_edges(node, _Raised((on.raises,), exact=True), self.outward(context))

    def jump(self, stmt: Stmt, context: _Context) -> None:
        """Break, Continue, Return: edges from where the body stands; nothing after runs."""
        pending, context.pending = context.pending, []
        self.jump_edges(stmt, pending, self.outward(context))

    def jump_edges(self, stmt: Stmt, pending: list[_Exit], chain: list[_Context]) -> None:
        """The edges of a jump from `pending`, walking the contexts of `chain`
        outward: to a loop's head or past it, to the thread's end, or into the
        Finally of a Try on the way (which takes the jump on after its body)."""
        word = type(stmt).__name__.lower()
        kind = {"break": EdgeKind.BREAK, "continue": EdgeKind.CONTINUE}.get(word,
                                                                          EdgeKind.RETURN)
        labelled = [_Exit(p.source, kind, " · ".join(x for x in (p.label, word) if x), p.branch)
                    for p in pending]
        for outer in chain:
            owner = outer.owner
            if owner is None or isinstance(owner.stmt, Go):
                break
            if isinstance(owner.stmt, Try):
                fin = owner.stmt.finally_
                if fin is not None and outer.branch != fin.index:
                    owner.held_exits.extend(labelled)
                    if not any(type(held) is type(stmt) for held in owner.held):
                        owner.held.append(stmt)
                    return
            elif isinstance(owner.stmt, For) and not isinstance(stmt, Return):
                if isinstance(stmt, Break):
                    owner.breaks.extend(labelled)
                else:
                    self.connect(labelled, owner.node.id)
                return
        if isinstance(stmt, Return):
            end = chain[0].end
            assert end is not None
            self.connect(labelled, end.id)
            return
        # outside a loop (validate() reports it): draw it as a statement that ends here
        context = chain[0]
        node = self.add_node(NodeKind.OTHER, f"{type(stmt).__name__}() outside a loop",
                             cluster=context.cluster, depth=context.depth,
                             id_text=type(stmt).__name__)
        self.connect(pending, node.id)

    def try_group(self, op: _Open, stmt: Try, node: Node, cluster: str | None) -> None:
        """A Try's cluster (its head and body), its Catch and Finally nodes after
        it, and the failure edges from the body to them."""
        # (no title: its head node, the first thing in it, says "Try <name>")
        group = self.add_cluster("try", "", cluster, stmt.name or "")
        node.cluster = group.id
        node.detail["group"] = group.id
        op.group = (group.id, cluster)
        for catch in stmt.catches:
            words = _names(catch.errors)
            label = f"Catch {catch.name}\n{words}" + (f"\ninto {catch.into}" if catch.into
                                                      else "")
            branch = self.add_node(
                NodeKind.CATCH, label, name=catch.name, parent=node.id, cluster=cluster,
                depth=node.depth, path=[*node.path, catch.index], id_text=f"catch {catch.name}",
                detail={"branch": catch.index, "errors": [e.__qualname__ for e in catch.errors],
                        "into": catch.into})
            op.branches[catch.index] = branch
            self.graph.edges.append(Edge(node.id, branch.id, EdgeKind.FAIL, words,
                                         catch.index, tail=group.id))
        fin = stmt.finally_
        if fin is not None:
            branch = self.add_node(NodeKind.FINALLY, f"Finally {fin.name}", name=fin.name,
                                   parent=node.id, cluster=cluster, depth=node.depth,
                                   path=[*node.path, fin.index], id_text=f"finally {fin.name}",
                                   detail={"branch": fin.index})
            op.branches[fin.index] = branch
            words = _uncaught(stmt)
            if words:
                self.graph.edges.append(Edge(node.id, branch.id, EdgeKind.FAIL, words,
                                             fin.index, tail=group.id))

    def fail_edges(self, source: Node, raised: _Raised, chain: list[_Context], *,
                   only_caught: bool = False) -> None:
        """Failure edges from `source` to each Catch of an enclosing Try's body
        that can catch what it raises, up to the first sure to; to the thread's
        ``fails`` end if none is (unless `only_caught`: a statement that may
        fail, like a step, whose uncaught failure is not drawn)."""
        for outer in chain:
            owner = outer.owner
            if owner is None or isinstance(owner.stmt, Go):
                break
            if not isinstance(owner.stmt, Try) or outer.branch != 0:
                continue
            for catch in owner.stmt.catches:
                sure, can = raised.caught_by(catch.errors)
                if can:
                    self.graph.edges.append(Edge(source.id, owner.branches[catch.index].id,
                                                 EdgeKind.FAIL, "", catch.index))
                if sure:
                    return
        if only_caught:
            return
        end = chain[0].end
        assert end is not None
        self.graph.edges.append(Edge(source.id, self.fails(end).id, EdgeKind.FAIL))

    def fails(self, end: Node) -> Node:
        """The ``fails`` end beside a thread's `end` (made when first needed)."""
        for node in self.graph.nodes:
            if node.kind == NodeKind.FAILS and node.detail.get("end") == end.id:
                return node
        lane = end.id.removeprefix("n_").removesuffix("end")  # "" for the main thread
        return self.add_node(NodeKind.FAILS, "fails", parent=end.parent, cluster=end.cluster,
                             depth=end.depth, id_text=f"{lane}fails",
                             detail={"end": end.id})

    def subflow_cluster(self, base: str | None, frame: Frame) -> str | None:
        """The innermost sub-flow cluster of the statement `frame` just produced.

        A generator that delegates with ``yield from self.sub_flow()`` has the
        sub-flow's generator as its `gi_yieldfrom`; each one on the way is a
        (nested) cluster.
        """
        cluster = base
        for it in frame.its or (frame.top,):
            inner = getattr(it, "gi_yieldfrom", None)
            while isinstance(inner, GeneratorType):
                key = (cluster, id(inner))
                found = self.subflows.get(key)
                if found is None:
                    self.keep.append(inner)
                    name = inner.__name__
                    found = self.add_cluster("subflow", f"sub-flow {name}", cluster, name).id
                    self.subflows[key] = found
                cluster = found
                inner = inner.gi_yieldfrom
        return cluster


# -- what a failure can reach ---------------------------------------------------------------------


class _Raised:
    """What a Raise (or a raising timer) sends outward: exactly `types[0]`
    (`exact`), or some subclass of one of `types` (a Raise() re-raising what a
    Catch of `types` caught; empty: it cannot be told)."""

    __slots__ = ("exact", "types")

    def __init__(self, types: tuple[type[BaseException], ...], *, exact: bool):
        self.types = types
        self.exact = exact

    def caught_by(self, errors: tuple[type[BaseException], ...]) -> tuple[bool, bool]:
        """(sure to be caught, can be caught) by a Catch of `errors`."""
        if not self.types:
            return False, False
        sure = all(issubclass(t, errors) for t in self.types)
        if self.exact:
            return sure, sure
        can = sure or any(issubclass(e, t) for t in self.types for e in errors)
        return sure, can


def _raised(stmt: Raise, contexts: list[_Context]) -> _Raised:
    if stmt.error is not None:
        return _Raised((stmt.error,), exact=True)
    for context in reversed(contexts):  # Raise(): what the innermost Catch caught
        owner = context.owner
        if owner is not None and isinstance(owner.stmt, Try) and context.branch:
            catch = next((c for c in owner.stmt.catches if c.index == context.branch), None)
            if catch is not None:
                return _Raised(catch.errors, exact=False)
    return _Raised((), exact=False)


def _uncaught(stmt: Try) -> str:
    """What reaches a Try's Finally without a Catch taking it, in words ("" if nothing)."""
    errors = tuple(e for catch in stmt.catches for e in catch.errors)
    words = []
    if not issubclass(Exception, errors):
        words.append("other failures" if stmt.catches else "failure")
    if not issubclass(Cancelled, errors):
        words.append("cancel")
    return " / ".join(words)


def _names(types: tuple[type, ...]) -> str:
    return ", ".join(t.__name__ for t in types)


def _attempts(retry: Retry) -> str:
    return "forever" if retry.attempts is None else f"{retry.attempts} attempts"


def _retry_detail(retry: Retry) -> dict[str, Any]:
    return {"attempts": retry.attempts, "backoff": retry.backoff, "factor": retry.factor,
            "max_backoff": retry.max_backoff, "never": [e.__qualname__ for e in retry.never]}


def _cut(text: str, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- handler types and labels -------------------------------------------------------------------


def _handler_detail(on: On) -> dict[str, Any]:
    if isinstance(on, Timeout):
        return {"timer": True, "after": on.after, "input": None, "output": None}
    try:
        handler = as_handler(on.handler)
    except TypeError:
        return {"handler": repr(on.handler), "input": None, "output": None}
    if isinstance(handler, FunctionHandler):
        fn: Any = handler.fn
        takes, name = handler.takes_payload, _callable_name(fn)
        input_type = handler.input_type if takes else None
    elif type(handler).handle is EventHandler.handle:  # `On(event, *body)`: no handler
        return {"handler": None, "payload": False, "input": None, "output": None,
                "timer": False}
    else:
        fn = getattr(type(handler), "handle", None)
        name = type(handler).__name__
        input_type = getattr(handler, "input_type", None)
        takes = input_type is not None
    output = _return_type(fn)
    return {
        "handler": name,
        "payload": takes,
        "input": type_name(input_type) if takes else None,
        "output": output,
        "timer": isinstance(handler, TimerHandler),
    }


def _event_label(name: str, detail: dict[str, Any]) -> str:
    label = f"on {name}"
    if detail.get("input"):
        label += f": {detail['input']}"
    if detail.get("output"):
        label += f" → {detail['output']}"
    return label


def _return_type(fn: Any) -> str | None:
    if fn is None:
        return None
    try:
        return _return_type_of(getattr(fn, "__func__", fn))
    except TypeError:  # not hashable: look it up each time
        return _return_type_of.__wrapped__(getattr(fn, "__func__", fn))


@functools.lru_cache(maxsize=4096)
def _return_type_of(target: Any) -> str | None:
    """The return annotation's name. Cached by function: every drawing of a
    definition rebuilds its bound methods, and `get_type_hints` was half the
    cost of building a graph (a report draws one per instance)."""
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = dict(getattr(target, "__annotations__", {}) or {})
    if "return" not in hints:
        return None
    result = hints["return"]
    if result is None or result is type(None) or result == "None":
        return None
    return type_name(result)


_MODULE_PREFIX = re.compile(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*)")


def type_name(tp: Any) -> str:
    """A short, readable name for a type annotation (`AddItem`, `list[Line]`, `Any`)."""
    if tp is None or tp is type(None):
        return "None"
    if tp is typing.Any:
        return "Any"
    if isinstance(tp, str):
        return tp
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return _MODULE_PREFIX.sub("", repr(tp)).replace("NoneType", "None")


def _callable_name(fn: Callable[..., Any] | Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not name:
        return type(fn).__name__
    return str(name).rsplit(".", 1)[-1] if "<lambda>" not in str(name) else "lambda"


def _duration(seconds: float | _dt.timedelta) -> str:
    """`30m`, `2d`, `1h30m`, `90s`, `0.5s`."""
    total = seconds.total_seconds() if isinstance(seconds, _dt.timedelta) else float(seconds)
    if total < 60 and total != int(total):
        return f"{total:g}s"
    rest = round(total)
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
