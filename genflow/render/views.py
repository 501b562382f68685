"""What the console and the static report show, as plain data: one view, two pages.

Both the live console (`genflow.web`) and the static report
(`genflow.render.report`) show an instance the same way, so the view is built
here once, as JSON-able dicts, and drawn in the browser by one script
(``assets/gf.js``) with one stylesheet (``assets/gf.css``):

* `row_view(record)`: a line of the instance list (no blob decoded);
* `instance_view(instance, ...)`: one instance: its data, `describe`'s words,
  each thread and what it waits for, the timeline of its steps and the events it
  received (both read from the journal), and the marks its threads put on its
  definition's diagram;
* `Diagrams`: each distinct definition drawn **once** (Graphviz's `dot` when it
  is installed, the outline otherwise). An instance's marks are node and edge
  classes laid on that drawing by the script (`gf-n-<node>` / `gf-e-<edge>`
  elements get ``m-<mark>``), so a page of 10,000 instances holds one diagram
  per definition, not one per instance.

The journal is optional (`Engine(journal=True)`); without it the timeline holds
only what is always recorded (operator repairs). `timeline` reads the entries
the engine writes today (positions at checkpoints, failures, events) and, when
an entry carries `start`/`end`/`attempt` fields, takes them as they are.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from genflow.codec import unstructure
from genflow.describe import describe, thread_name
from genflow.errors import GenflowError
from genflow.render.formats import (
    MEANING,
    STYLES,
    TAKEN,
    TAKEN_MEANING,
    outline_html,
    to_dot,
    to_mermaid,
)
from genflow.render.graph import Cluster, Edge, Graph, Node, build_graph
from genflow.render.overlay import CLASSES, instance_graph, mark_instance, thread_label
from genflow.render.svg import dot_svg
from genflow.replay import as_body, iter_tree
from genflow.statements import Raise, Try

if TYPE_CHECKING:
    from genflow.engine import Instance
    from genflow.stores.base import InstanceRecord, JournalEntry

__all__ = ["Diagram", "Diagrams", "asset", "instance_view", "json_for_script", "legend",
           "marks_css", "page_html", "row_view", "structure_key", "timeline"]

#: Journal entries kept per instance in a view (the newest); `genflow history` has all.
MAX_ENTRIES = 200


# -- rows and instances ---------------------------------------------------------------------------


def row_view(record: InstanceRecord) -> dict[str, Any]:
    """One line of the instance list: the stored row's columns, no blob decoded."""
    return {
        "id": record.id, "workflow": record.workflow, "status": record.status,
        "waiting_for": list(record.waiting_for), "wake_at": _iso(record.wake_at),
        "updated_at": _iso(record.updated_at), "created_at": _iso(record.created_at),
        "error": record.error, "attempts": record.attempts, "version": record.version,
        "failed": record.status == "failed",
    }


def instance_view(instance: Instance, *, now: _dt.datetime,
                  journal: Sequence[JournalEntry] = (), diagrams: Diagrams | None = None,
                  data: bool = True, children: Sequence[tuple[str, str]] = (),
                  outbox: Sequence[Any] = ()) -> dict[str, Any]:
    """Everything the instance page shows (see the module's docstring).

    `diagrams` draws (and caches) the definition; the view names it by `diagram`
    (its key) and carries the marks to lay on it. `data=False` leaves the raw data
    out (the report: `describe`'s words already show it, cut to length).
    `children` are the instance's children's (id, status) and `outbox` its
    entries not delivered yet (the links between parent and children: docs/together.md).
    """
    state = instance.state
    view: dict[str, Any] = {
        "id": instance.id, "workflow": instance.workflow, "status": instance.status.value,
        "version": instance.version, "attempts": instance.attempts, "error": instance.error,
        "wake_at": _iso(instance.wake_at), "updated_at": _iso(instance.updated_at),
        "deadline": _iso(state.deadline),
        "text": describe(state, instance.data, now=now, attempts=instance.attempts,
                         error=instance.error, wake_at=instance.wake_at,
                         updated_at=instance.updated_at, children=list(children),
                         outbox=list(outbox)),
        "parent": None if state.parent is None else {
            "id": state.parent.instance_id, "index": state.parent.index},
        "children": [{"id": child, "status": status} for child, status in children],
        "mailbox": mailbox_view(state),
        "threads": [_thread_view(thread) for thread in state.threads],
        "diagram": None, "marks": {}, "taken": [], "at": {}, "notes": {}, "problems": [],
    }
    if data:
        view["data"] = _plain(unstructure(instance.data))
    entries = list(journal)[-MAX_ENTRIES:]
    view["timeline"] = timeline(entries)
    view["events"] = [{"seq": e.seq, "at": _iso(e.at), "kind": e.kind,
                       "event": e.detail.get("event"), "thread": e.detail.get("thread"),
                       "payload": _plain(e.detail.get("payload"))}
                      for e in entries if e.kind in ("event", "timer")]
    view["journal_entries"] = len(entries)
    try:
        if diagrams is not None:
            graph = diagrams.marked(instance.data, state, error=instance.error,
                                    attempts=instance.attempts)
        else:
            graph = instance_graph(instance.data, state, error=instance.error,
                                   attempts=instance.attempts)
    except GenflowError as exc:
        view["problems"].append(f"cannot draw the instance: {exc}")
        return view
    view.update(marks_of(graph))
    if diagrams is not None:
        view["diagram"] = diagrams.add(graph).key
    return view


def marks_of(graph: Graph) -> dict[str, Any]:
    """An instance's marks on `graph`, apart from the drawing: node id -> classes,
    the indices of the edges taken, node id -> the threads standing there, node
    id -> a note (a timer's due time, an event's error), and what cannot be drawn."""
    marks, at, notes = {}, {}, {}
    for node in graph.nodes:
        if node.classes:
            marks[node.id] = [cls for cls in CLASSES if cls in node.classes]
        if node.threads:
            at[node.id] = [thread_label(t) for t in node.threads]
        note = []
        if node.detail.get("due") and node.classes:
            note.append(f"due {node.detail['due'][:19].replace('T', ' ')} UTC")
        if node.detail.get("error"):
            note.append(f"error: {node.detail['error']}")
        note.extend(node.detail.get("carries", ()))
        if note:
            notes[node.id] = "; ".join(note)
    taken = [index for index, edge in enumerate(graph.edges) if "taken" in edge.classes]
    threads = graph.instance.get("threads", []) if graph.instance else []
    return {"marks": marks, "taken": taken, "at": at, "notes": notes,
            "problems": [t["problem"] for t in threads if t.get("problem")]}


def mailbox_view(state: Any) -> dict[str, list[dict[str, Any]]]:
    """The messages kept for the instance (oldest first: the order they are
    delivered in) and those set aside undelivered, with why (the page and the API)."""
    box = state.mailbox
    if box is None:
        return {"kept": [], "undelivered": []}

    def message(m: Any) -> dict[str, Any]:
        return {"seq": m.seq, "event": m.event, "thread": m.thread or None,
                "sent_at": _iso(m.sent_at), "payload": _plain(m.payload),
                **({"reason": m.reason} if m.reason else {})}

    return {"kept": [message(m) for m in box.kept],
            "undelivered": [message(m) for m in box.undelivered]}


def _thread_view(thread: Any) -> dict[str, Any]:
    return {
        "id": thread.id, "name": thread_name(thread.id), "stmt": thread.stmt,
        "status": thread.status.value, "pc": thread.pc, "since": _iso(thread.since),
        "won": thread.won, "attempts": thread.attempts, "error": thread.error,
        "retry_at": _iso(thread.retry_at),
        "events": [{"event": e.event, "status": e.status.value, "won": e.won,
                    "error": e.error, "due": _iso(e.due), "pc": e.req.pc,
                    "attempts": e.attempts, "retry_at": _iso(e.retry_at)}
                   for e in thread.events],
    }


# -- the timeline, read from the journal -----------------------------------------------------------


def timeline(entries: Iterable[JournalEntry]) -> list[dict[str, Any]]:
    """The instance's life as rows: steps (thread, start, end, attempt, outcome,
    error), events received, and operator actions, oldest first.

    The engine's journal records each step run and handler call with its own
    ``start``, ``end``, ``attempt`` (``step`` and ``handler`` entries, see
    `genflow.observe`): those are taken as they are, one row each. A journal
    written before them (positions only) is read from the positions: a thread
    seen ``executing`` a step starts it (at that entry's time), the next
    ``after_step`` ends it, a ``failure`` ends it in error (its ``attempt``
    counts the tries).
    """
    rows: list[dict[str, Any]] = []
    running: dict[str, dict[str, Any]] = {}  # thread -> its step's open row
    tries: dict[tuple[str, str], int] = {}  # (thread, step) -> failed tries so far
    timed = False  # from the first timed entry on, positions tell no runs
    for entry in entries:
        detail = entry.detail if isinstance(entry.detail, dict) else {}
        at = _iso(entry.at)
        if "start" in detail:  # an entry with its own timings
            if not timed:  # the runs positions opened are told again by these entries
                timed = True
                rows = [r for r in rows if r not in running.values()]
                running.clear()
            rows.append(_timed(entry, detail))
            continue
        if timed and entry.kind == "failure":
            error = str(detail.get("error", ""))
            if not error.startswith(("StepError", "HandlerError")):  # (a run's: its row says)
                rows.append({"kind": "failure", "label": "failure", "start": at, "end": at,
                             "outcome": "failed", "error": error,
                             "attempt": detail.get("attempt")})
            continue
        if timed and isinstance(detail.get("threads"), list):
            continue
        if entry.kind == "failure":
            open_rows = list(running.values())
            error = str(detail.get("error", ""))
            if not open_rows:  # a failure no step run was seen for
                rows.append({"kind": "failure", "label": "failure", "start": at, "end": at,
                             "outcome": "failed", "error": error,
                             "attempt": detail.get("attempt")})
            for row in open_rows:
                if len(open_rows) > 1 and f"step {row['label']!r}" not in error:
                    continue
                row.update(end=at, outcome="failed", error=error,
                           attempt=detail.get("attempt", row["attempt"]))
                tries[(row["thread"], row["label"])] = row["attempt"] or 0
                running.pop(row["thread"], None)
            continue
        positions = detail.get("threads")
        if isinstance(positions, list):
            seen = set()
            for position in positions:
                if not (isinstance(position, list) and len(position) >= 3):
                    continue
                thread, stmt, status = str(position[0]), str(position[1]), str(position[2])
                seen.add(thread)
                current = running.get(thread)
                if current is not None and (current["label"] != stmt or status != "executing"):
                    current.update(end=at, outcome="done")
                    tries.pop((thread, current["label"]), None)
                    running.pop(thread)
                if status == "executing" and thread not in running:
                    started = {"kind": "step", "label": stmt, "thread": thread, "start": at,
                               "end": None, "outcome": "running", "error": "",
                               "attempt": tries.get((thread, stmt), 0) + 1}
                    running[thread] = started
                    rows.append(started)
            for thread in [t for t in running if t not in seen]:  # the thread ended
                running.pop(thread).update(end=at, outcome="done")
            continue
        if entry.kind in ("event", "timer"):
            rows.append({"kind": entry.kind, "label": str(detail.get("event", "")),
                         "thread": detail.get("thread"), "start": at, "end": at,
                         "payload": _plain(detail.get("payload")), "outcome": "received"})
        elif entry.kind in ("start", "cancel", "retry", "move", "operator"):
            rows.append({"kind": entry.kind, "label": _action_label(entry.kind, detail),
                         "start": at, "end": at, "outcome": "recorded",
                         "by": detail.get("by", "")})
    for row in rows:
        row["duration"] = _seconds(row.get("start"), row.get("end"))
    return rows


def _timed(entry: JournalEntry, detail: dict[str, Any]) -> dict[str, Any]:
    error = str(detail.get("error") or "")
    label = str(detail.get("step") or detail.get("statement") or entry.kind)
    if entry.kind == "handler":  # a handler's setup, handle or teardown, at its Wait
        label = f"{detail.get('phase', 'handle')} {detail.get('event', '')} ({label})"
    return {"kind": "handler" if entry.kind == "handler" else "step", "label": label,
            "thread": detail.get("thread"), "start": _iso_any(detail.get("start")),
            "end": _iso_any(detail.get("end")), "attempt": detail.get("attempt"),
            "outcome": "failed" if error else ("done" if detail.get("end") else "running"),
            "error": error}


def timeline_text(rows: Sequence[dict[str, Any]], *, last: int = 10) -> list[str]:
    """The last `last` step runs and handler calls of a `timeline`, a line each
    (`genflow show`): when, what, thread, attempt, duration, outcome and error."""
    runs = [r for r in rows if r["kind"] in ("step", "handler", "failure")][-last:]
    lines = []
    for row in runs:
        start = (row.get("start") or "")[:19].replace("T", " ")
        took = "" if row.get("duration") is None else f"{row['duration']:.3f}s"
        thread = thread_name(row["thread"]) if row.get("thread") else ""
        attempt = f"attempt {row['attempt']}" if row.get("attempt") else ""
        outcome = row["outcome"] + (f": {row['error']}" if row.get("error") else "")
        lines.append("  ".join(part for part in (
            start, f"{row['label']:<14}", thread, attempt, took, outcome) if part))
    return lines


def _action_label(kind: str, detail: dict[str, Any]) -> str:
    if kind == "move":
        return f"move {detail.get('thread', '')}: {detail.get('from', '')} → {detail.get('to', '')}"
    if kind == "operator":
        return f"operator: {detail.get('action', '')} {detail.get('what', '')}".strip()
    return kind


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        return (_dt.datetime.fromisoformat(end) - _dt.datetime.fromisoformat(start)
                ).total_seconds()
    except ValueError:
        return None


# -- diagrams, each distinct definition drawn once ------------------------------------------------


class Diagram:
    """One definition's drawing: `html` is the SVG (or the outline), `key` its name."""

    __slots__ = ("dot", "html", "key", "mermaid", "problem", "workflow")

    def __init__(self, key: str, workflow: str, html_: str, dot: str, mermaid: str,
                 problem: str = ""):
        self.key = key
        self.workflow = workflow
        self.html = html_
        self.dot = dot
        self.mermaid = mermaid
        self.problem = problem


class Diagrams:
    """The drawings of the definitions met so far, by `structure_key`.

    `svg`: draw with Graphviz's `dot` (one run per distinct definition); without
    it, the outline. Not locked: two threads that draw the same definition at once
    both draw it, and one keeps it.
    """

    def __init__(self, *, svg: bool, limit: int = 256):
        self.svg = svg
        self.limit = limit
        self.by_key: dict[str, Diagram] = {}
        self.graphs: dict[str, Graph] = {}  # walk_key -> the definition's graph

    def marked(self, wf: Any, state: Any, **info: Any) -> Graph:
        """`instance_graph(wf, state)`, built once per distinct definition: the
        definition is walked (`walk_key`, a third of what building its graph
        costs) and a graph built for the same walk is copied and marked."""
        key = walk_key(wf, state.workflow)
        base = self.graphs.get(key)
        if base is None:
            base = build_graph(wf, workflow=state.workflow)
            if len(self.graphs) >= self.limit:
                self.graphs.pop(next(iter(self.graphs)))
            self.graphs[key] = base
        graph = _unmarked_copy(base)
        mark_instance(graph, wf, state, **info)
        return graph

    def add(self, graph: Graph) -> Diagram:
        key = structure_key(graph)
        found = self.by_key.get(key)
        if found is not None:
            return found
        prefix = f"gf{key}"
        dot = to_dot(graph, id_prefix=prefix, plain=True)
        drawing, problem = "", ""
        if self.svg:
            try:
                drawing = dot_svg(dot)
            except GenflowError as exc:
                problem = f"dot could not draw the diagram ({exc}); the outline shows instead"
        if not drawing:
            drawing = outline_html(graph, plain=True)
        diagram = Diagram(key, graph.workflow, drawing, dot, to_mermaid(graph, plain=True), problem)
        if len(self.by_key) >= self.limit:  # a long-running console: forget the oldest
            self.by_key.pop(next(iter(self.by_key)))
        self.by_key[key] = diagram
        return diagram

    def get(self, key: str) -> Diagram | None:
        return self.by_key.get(key)

    def __iter__(self) -> Iterator[Diagram]:
        return iter(self.by_key.values())


def walk_key(wf: Any, workflow: str) -> str:
    """A name for what drawing `wf`'s definition gives, from a walk of it alone
    (no graph built): each statement's kind, name, depth and what its label
    shows (a step's retries, a timer's delay, a handler's function). Two
    instances whose definitions walk alike draw alike."""
    digest = hashlib.sha1(workflow.encode())
    try:
        for stmt, stack in iter_tree(as_body(wf)):
            retry = getattr(stmt, "retry", None)
            extra = (getattr(retry, "attempts", "") if retry is not None else
                     getattr(stmt, "after", "") or _qualname(getattr(stmt, "handler", None)))
            extra = f"{extra}\1{_failure_key(stmt)}"
            digest.update(f"\0{type(stmt).__qualname__}\1{stmt.name}\1{len(stack)}"
                          f"\1{extra}".encode())
    except Exception as exc:  # build_graph will say what is wrong with the definition
        digest.update(f"\0error {exc!r}".encode())
    return digest.hexdigest()


def _failure_key(stmt: Any) -> str:
    """What the failure statements' labels show beyond a statement's kind and name."""
    if isinstance(stmt, Try):
        return repr([(c.name, c.names, c.into) for c in stmt.catches]) + repr(
            stmt.finally_.name if stmt.finally_ is not None else None)
    if isinstance(stmt, Raise):
        return f"{stmt.error!r} {stmt.message}"
    return (f"{getattr(stmt, 'timeout', '')} {getattr(stmt, 'raises', '')} "
            f"{getattr(stmt, 'daemon', '')} {getattr(getattr(stmt, 'retry', None), 'never', '')}")


def _qualname(obj: Any) -> str:
    if obj is None:
        return ""
    func = getattr(obj, "__func__", obj)
    return str(getattr(func, "__qualname__", type(obj).__qualname__))


def _unmarked_copy(graph: Graph) -> Graph:
    """A copy of an unmarked graph whose marks can be set without touching it."""
    return Graph(
        graph.workflow,
        nodes=[Node(n.id, n.kind, n.label, n.name, n.parent, n.cluster, n.depth, n.path,
                    dict(n.detail)) for n in graph.nodes],
        edges=[Edge(e.source, e.target, e.kind, e.label, e.branch, tail=e.tail)
               for e in graph.edges],
        clusters=[Cluster(c.id, c.kind, c.label, c.parent, c.name) for c in graph.clusters],
    )


def structure_key(graph: Graph) -> str:
    """A short name for the shape of `graph` (nodes, edges, clusters; not the marks):
    instances whose definitions draw the same share one drawing."""
    digest = hashlib.sha1(graph.workflow.encode())
    for node in graph.nodes:
        digest.update(f"\0n{node.id}\1{node.kind}\1{node.label}\1{node.cluster}".encode())
    for edge in graph.edges:
        digest.update(f"\0e{edge.source}\1{edge.target}\1{edge.kind}\1{edge.label}"
                      f"\1{edge.tail}".encode())
    for cluster in graph.clusters:
        digest.update(f"\0c{cluster.id}\1{cluster.label}\1{cluster.parent}".encode())
    return digest.hexdigest()[:12]


# -- the page ------------------------------------------------------------------------------------


def asset(name: str) -> str:
    """The text of ``genflow/render/assets/<name>`` (the shared script and stylesheet)."""
    return resources.files("genflow.render").joinpath("assets", name).read_text("utf-8")


def marks_css() -> str:
    """The marks' colours as CSS, from `STYLES` (one source for every format): a
    later rule wins, so the most telling mark (first in `CLASSES`) comes last."""
    rules = []
    for cls in reversed([c for c in CLASSES if c in STYLES]):
        fill, stroke, width = STYLES[cls]
        dash = "stroke-dasharray:5 3;" if cls == "active" else ""
        rules.append(
            f".gf-diagram .m-{cls} polygon, .gf-diagram .m-{cls} ellipse, "
            f".gf-diagram .m-{cls} path {{fill:{fill};stroke:{stroke};"
            f"stroke-width:{width}px;{dash}}}\n"
            f".gf-diagram div.m-{cls} {{background:{fill};border-color:{stroke}}}\n"
            f".gf-swatch.m-{cls} {{background:{fill};border-color:{stroke}}}"
        )
    color, width = TAKEN
    rules.append(f".gf-diagram .m-taken path {{stroke:{color};stroke-width:{width}px}}\n"
                 f".gf-diagram .m-taken polygon {{fill:{color};stroke:{color}}}\n"
                 f".gf-swatch.m-taken {{background:{color};border-color:{color}}}")
    return "\n".join(rules)


def legend() -> list[dict[str, str]]:
    """The legend's entries: each mark, its colours and what it means."""
    out = [{"mark": cls, "fill": STYLES[cls][0], "stroke": STYLES[cls][1], "meaning": text}
           for cls, text in MEANING.items()]
    out.append({"mark": "taken", "fill": TAKEN[0], "stroke": TAKEN[0],
                "meaning": TAKEN_MEANING})
    return out


def json_for_script(value: Any) -> str:
    """`value` as JSON safe inside ``<script type="application/json">`` (no ``</``)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_html(*, title: str, body: str, data: Any, nav: Sequence[tuple[str, str]] = (),
              head: str = "", scripts: str | None = None, styles: str | None = None,
              base: str = "", tools: str = "", templates: str = "") -> str:
    """One page of the console or the report: the shared layout (a title bar with
    `nav` links, one per resource), `body`, `templates` (the diagrams, outside the
    part the script redraws), `data` for the script as JSON, and the
    shared script and stylesheet, inline unless `scripts`/`styles` give their tags."""
    esc = html.escape
    links = "".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in nav)
    style_tag = styles if styles is not None else (
        f"<style>{asset('gf.css')}\n{marks_css()}</style>")
    script_tag = scripts if scripts is not None else f"<script>{asset('gf.js')}</script>"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>{style_tag}{head}</head>\n"
        f'<body data-base="{esc(base)}"><header class="gf-bar"><strong>genflow</strong>'
        f'<nav>{links}</nav>{tools}</header>\n<main id="gf-main">{body}</main>\n{templates}'
        f'<script type="application/json" id="gf-data">{json_for_script(data)}</script>\n'
        f"{script_tag}\n</body></html>\n"
    )


def diagrams_html(diagrams: Iterable[Diagram]) -> str:
    """The drawings a page holds (hidden: the script shows the one an instance needs)."""
    return "".join(
        f'<template class="gf-diagram-src" data-key="{d.key}" data-workflow="'
        f'{html.escape(d.workflow)}">{d.html}</template>' for d in diagrams)


# -- small helpers ---------------------------------------------------------------------------


def _iso(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _iso_any(value: Any) -> str | None:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(value, _dt.UTC).isoformat()
    return None if value is None else str(value)


def _plain(value: Any) -> Any:
    """`value` as JSON would carry it (anything else as its text)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)
