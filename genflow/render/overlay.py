"""An instance drawn on its definition's graph: where each thread is.

`instance_graph(wf, state)` builds the graph of the definition on the
instance's *current data* and marks it with the instance's `State`:

* the node each thread stands at gets the thread's id (`Node.threads`) and
  ``current`` plus why it stands there: ``executing`` (about to run the step),
  ``waiting`` (at a Wait or a WaitFor), ``moving`` (done with it, moving on), or
  ``start`` on a lane's start node for a thread that has not started;
* a waiting thread's events: ``listening`` (set up), ``pending`` (set-up or
  teardown still to do), ``error`` (a failed set-up or teardown, retried),
  ``handled`` (the event arrived; its body runs next); timers get their due time;
* what the thread passed in the current iteration: the statements before its
  position in each body it is inside are ``done``; the loops, decisions, waits
  and lanes it is inside are ``active`` and the edges into the branches it took
  are ``taken``;
* a finished instance's end node is ``finished``, a cancelled one's
  ``cancelled``;
* the step a failed instance stopped at (or whose last try failed, while it
  waits to be retried) is ``failed``, drawn red, before ``executing``;
* failure and cancellation: a thread that leaves its statement outward
  (UNWINDING, its handlers torn down first) marks it ``unwinding``; a thread
  standing at a `Try` about to enter a Catch (`Thread.enter`) is drawn at that
  Catch, ``caught``, with the failure edge into it ``taken``, and so is the
  Catch whose body a thread is in. What a thread carries (the failure it
  unwinds with or handles, the cancellation or jump a Finally holds back until
  it ends) is its node's note (`Node.detail["carries"]`), so a CANCELLING
  instance shows each thread's cleanup as cancellation's.

There is no event history, so "done" is read from the thread's position, not
from a log: a loop's earlier iterations leave no mark, and inside a decision
that was passed only the decision itself is marked.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from genflow.describe import carries, thread_name
from genflow.render.graph import EdgeKind, Graph, Node, NodeKind, build_graph
from genflow.replay import Definition, find, path_of
from genflow.state import (
    MAIN_THREAD,
    State,
    Thread,
    ThreadStatus,
    WaitEventStatus,
    WorkflowStatus,
)
from genflow.statements import Go

__all__ = ["CLASSES", "instance_graph", "mark_instance"]

#: Every class an overlay puts on nodes and edges, most telling first (a format
#: that draws one style per node picks the first that applies).
CLASSES = ("failed", "error", "unwinding", "executing", "waiting", "moving", "caught", "start",
           "handled", "listening", "pending", "finished", "cancelled", "active", "done",
           "taken", "current")

#: the nodes of a Try's branches (a thread is drawn at one only while it enters it)
_BRANCHES = (NodeKind.CATCH, NodeKind.FINALLY)
#: how an instance with no main thread left ended: the node marked, and its mark
_ENDINGS = {
    WorkflowStatus.FINISHED: (NodeKind.END, "finished"),
    WorkflowStatus.CANCELLED: (NodeKind.END, "cancelled"),
    WorkflowStatus.FAILED: (NodeKind.FAILS, "failed"),  # (a failure left its cleanup)
}

_EVENT_CLASS = {
    WaitEventStatus.PENDING_SETUP: "pending",
    WaitEventStatus.SETUP: "listening",
    WaitEventStatus.SETUP_ERROR: "error",
    WaitEventStatus.PENDING_TEARDOWN: "pending",
    WaitEventStatus.TEARDOWN_ERROR: "error",
}


def instance_graph(wf: Any, state: State, **info: Any) -> Graph:
    """The graph of `wf`'s definition on its current data, marked with `state`.

    Extra keyword arguments (`error=...`, `attempts=...`) are kept in
    `Graph.instance` for the formats to show.
    """
    graph = build_graph(wf, workflow=state.workflow)
    mark_instance(graph, wf, state, **info)
    return graph


def mark_instance(graph: Graph, wf: Any, state: State, **info: Any) -> Graph:
    """Put `state`'s marks on `graph` (built from `wf` on the same data)."""
    by_path = {tuple(node.path): node for node in graph.nodes
               if node.path and node.kind not in (NodeKind.EVENT, NodeKind.TIMER)}
    threads = []
    error = str(info.get("error") or "")
    for thread in state.threads:
        where = _mark_thread(graph, by_path, wf, thread)
        if where is not None and _failed_here(state, thread, error):
            _add(where, "failed")
        problem = "" if where is not None else (
            f"{thread_name(thread.id)} stands at {thread.stmt!r}, which the definition "
            "drawn does not contain (see `genflow check`)" if thread.stmt else
            f"{thread_name(thread.id)} cannot be placed: the Go that started it is gone")
        threads.append({
            "id": thread.id,
            "status": thread.status.value,
            "stmt": thread.stmt,
            "won": thread.won,
            "node": where.id if where is not None else None,
            "events": [{"event": e.event, "status": e.status.value, "won": e.won,
                        "error": e.error, "due": _iso(e.due)} for e in thread.events],
            "since": _iso(thread.since),
            "enter": thread.enter,
            "unwind": thread.unwind,
            "carries": carries(thread),
            "problem": problem,
        })
    ending = _ENDINGS.get(state.status)
    main = state.thread(MAIN_THREAD)
    uncaught = main is not None and main.status is ThreadStatus.UNWINDING \
        and main.unwind == "fail" and state.status is WorkflowStatus.FAILED
    if ending is not None and (main is None or uncaught):  # (a failure left its cleanup)
        kind, cls = ending
        for node in graph.nodes:
            if node.kind == kind and node.parent is None:
                _add(node, cls)
    graph.instance = {"id": state.id, "status": state.status.value, "pc": state.pc,
                      "threads": threads, **{k: _plain(v) for k, v in info.items()}}
    return graph


def _mark_thread(graph: Graph, by_path: dict[tuple[int, ...], Node], wf: Any,
                 thread: Thread) -> Node | None:
    """Mark one thread; return the node it stands at (None if it cannot be placed)."""
    located = _locate(wf, thread)
    if located is None:
        return None
    offset, path, go_path = located
    lane = None
    if go_path is not None:
        go = by_path.get(tuple(go_path))
        lane = go.detail.get("lane") if go is not None else None
        if lane is None:
            return None
        graph.cluster(lane).threads.append(thread.id)
    if path is None:  # not started: the thread stands at its start node
        start = _start_node(graph, lane)
        if start is not None:  # (cancelled before it started: it ends from there)
            unwinding = thread.status is ThreadStatus.UNWINDING
            _add(start, "current", "unwinding" if unwinding else "start")
            start.threads.append(thread.id)
            if unwinding:
                start.detail.setdefault("carries", []).append(carries(thread))
        return start
    node = by_path.get(tuple(offset + path))
    if node is None or node.name != thread.stmt or node.kind in _BRANCHES:
        node = _named(graph, thread.stmt)  # the path hint is stale: the name decides
        if node is None:
            return None
    if thread.enter:  # at a Try, about to enter its Catch: drawn at the Catch
        branch = _branch_node(graph, node, thread.enter)
        if branch is None:
            return None
        _add(node, "active")
        for edge in graph.edges_from(node.id):
            if edge.target == branch.id and edge.kind == EdgeKind.FAIL:
                _add_edge(edge, "taken")
        _mark_passed(graph, by_path, len(offset), node.path, thread)
        node = branch
    node.threads.append(thread.id)
    note = carries(thread)
    if note:
        node.detail.setdefault("carries", []).append(note)
    status = thread.status
    if thread.enter:
        _add(node, "current", "caught")
    elif status is ThreadStatus.EXECUTING:
        _add(node, "current", "executing")
    elif status is ThreadStatus.RESUMING:
        _add(node, "current", "moving")
    elif status is ThreadStatus.UNWINDING:
        _add(node, "current", "unwinding")
    else:
        _add(node, "current", "waiting")
    for event in thread.events:
        target = _event_node(graph, node, event.event)
        if target is None:
            continue
        _add(target, _EVENT_CLASS[event.status])
        if event.won:
            _add(target, "handled")
        if event.error:
            target.detail["error"] = event.error
        if event.due is not None:
            target.detail["due"] = _iso(event.due)
    if node.kind == NodeKind.SLEEP:  # a Sleep is its own timer
        for event in thread.events:
            if event.due is not None:
                node.detail["due"] = _iso(event.due)
    if thread.won:
        target = _event_node(graph, node, thread.won)
        if target is not None:
            _add(target, "handled")
    if not thread.enter:
        _mark_passed(graph, by_path, len(offset), node.path, thread)
    return node


def _named(graph: Graph, name: str) -> Node | None:
    """The node a thread at statement `name` stands at (not a Catch or Finally
    of the same name: a branch is never a thread's statement)."""
    for node in graph.nodes:
        if node.name == name and node.kind not in _BRANCHES and node.kind not in (
                NodeKind.EVENT, NodeKind.TIMER):
            return node
    return None


def _branch_node(graph: Graph, try_node: Node, name: str) -> Node | None:
    for node in graph.nodes:
        if node.parent == try_node.id and node.name == name and node.kind in _BRANCHES:
            return node
    return None


def _failed_here(state: State, thread: Thread, error: str) -> bool:
    """Did the step `thread` is about to run fail? Yes when the instance failed
    there, or when the last error (a `StepError`, whose message names the step and
    the thread) is that step's and a retry is due."""
    if thread.status is not ThreadStatus.EXECUTING:
        return False
    if state.status is WorkflowStatus.FAILED:
        return True
    return bool(error) and f"step {thread.stmt!r} in thread {thread.id!r}" in error


def _locate(wf: Any, thread: Thread
            ) -> tuple[list[int], list[int] | None, list[int] | None] | None:
    """Where the runtime would find the thread: (the path of its body in the whole
    walk, its path within that body or None if it has not started, the path of
    the Go that started it or None for the main thread)."""
    body: Any = Definition(wf.definition)
    offset: list[int] = []
    go_path: list[int] | None = None
    try:
        for origin in thread.origin:
            found = find(body, origin.go, origin.path)
            if found is None or type(found[1]) is not Go:
                return None
            go_path = offset + path_of(found[0])
            offset = [*go_path, 0]
            body = found[1].body_for(origin.thread_id)
        if not thread.stmt:
            return offset, None, go_path
        found = find(body, thread.stmt, thread.path)
    except Exception:
        return None
    if found is None:
        return None
    return offset, path_of(found[0]), go_path


def _start_node(graph: Graph, lane: str | None) -> Node | None:
    for node in graph.nodes:
        if node.kind == NodeKind.START and node.cluster == lane and (
                lane is not None or node.parent is None):
            return node
    return None


def _event_node(graph: Graph, wait: Node, event: str) -> Node | None:
    for node in graph.nodes:
        if node.parent == wait.id and node.name == event and node.kind in (
                NodeKind.EVENT, NodeKind.TIMER):
            return node
    return None


def _mark_passed(graph: Graph, by_path: dict[tuple[int, ...], Node], first: int,
                 path: list[int], thread: Thread) -> None:
    """Mark what the thread passed in the current iteration of each body it is in.

    `path` alternates statement indices and branch indices: [i0, b1, i1, b2, i2...].
    """
    for level in range(first, len(path), 2):
        prefix = path[:level]
        for index in range(path[level]):
            passed = by_path.get((*prefix, index))
            if passed is not None:
                _add(passed, "done")
        if level + 1 < len(path):  # the statement at path[level] holds the thread
            owner = by_path.get((*prefix, path[level]))
            if owner is None:
                continue
            _add(owner, "active")
            branch = path[level + 1]
            if owner.kind == NodeKind.TRY:
                _mark_branch(graph, owner, branch, thread)
                continue
            for edge in graph.edges_from(owner.id):
                if edge.kind == EdgeKind.LOOP or (
                        edge.branch == branch and edge.kind in (EdgeKind.BRANCH, EdgeKind.EVENT)):
                    _add_edge(edge, "taken")
                    if edge.kind == EdgeKind.EVENT:  # and on from the event into its body
                        event = graph.node(edge.target)
                        _add(event, "handled")
                        for inner in graph.edges_from(event.id):
                            if inner.branch == branch:
                                _add_edge(inner, "taken")


def _mark_branch(graph: Graph, owner: Node, branch: int, thread: Thread) -> None:
    """A thread inside branch `branch` of the Try `owner`: a Catch it is in is
    ``caught`` (the failure edge into it taken); the Finally is ``active``, its
    failure edge taken only when a failure or cancellation brought it there."""
    if branch == 0:
        return
    for edge in graph.edges_from(owner.id):
        if edge.branch != branch:
            continue
        target = graph.node(edge.target)
        if target.kind == NodeKind.CATCH:
            _add(target, "caught")
            _add_edge(edge, "taken")
        elif target.kind == NodeKind.FINALLY and edge.kind == EdgeKind.FAIL \
                and thread.unwind in ("fail", "cancel"):
            _add_edge(edge, "taken")
    for node in graph.nodes:
        if node.parent == owner.id and node.detail.get("branch") == branch \
                and node.kind == NodeKind.FINALLY:
            _add(node, "active")


def _add(node: Node, *classes: str) -> None:
    for cls in classes:
        if cls not in node.classes:
            node.classes.append(cls)


def _add_edge(edge: Any, cls: str) -> None:
    if cls not in edge.classes:
        edge.classes.append(cls)


def _iso(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _plain(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def thread_label(thread_id: str) -> str:
    return "main" if thread_id == MAIN_THREAD else thread_id
