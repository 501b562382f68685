"""Writing a `Graph`: Mermaid flowchart, Graphviz DOT, JSON, a plain outline.

Every format draws the same graph: node kinds as shapes, edge kinds as line
styles and labels, lanes and sub-flows as (nested) clusters, and an instance's
marks (`genflow.render.overlay`) as styles: a node takes the style of the first
of `CLASSES` it has.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from typing import Any

import attrs

from genflow.render.graph import Cluster, Edge, EdgeKind, Graph, Node, NodeKind
from genflow.render.overlay import CLASSES, thread_label

__all__ = ["STYLES", "outline_html", "to_dict", "to_dot", "to_json", "to_mermaid", "to_text"]

#: Fill, border and border width of each mark (the same in every format). Every
#: pair differs from every other at a glance (tests/render/test_render.py measures it):
#: the legend means nothing if two marks look alike.
STYLES: dict[str, tuple[str, str, int]] = {
    "failed": ("#ff8787", "#c92a2a", 4),
    "error": ("#fcc2d7", "#a61e4d", 3),
    "unwinding": ("#eebefa", "#862e9c", 3),
    "executing": ("#fff3bf", "#e67700", 3),
    "waiting": ("#ffd8a8", "#d9480f", 3),
    "moving": ("#d0ebff", "#1864ab", 3),
    "caught": ("#ffec99", "#5c940d", 3),
    "start": ("#e5dbff", "#5f3dc4", 3),
    "handled": ("#b2f2bb", "#2b8a3e", 2),
    "listening": ("#99e9f2", "#0b7285", 2),
    "pending": ("#dee2e6", "#868e96", 2),
    "finished": ("#96f2d7", "#087f5b", 3),
    "cancelled": ("#ced4da", "#343a40", 3),
    "active": ("#ffffff", "#495057", 2),
    "done": ("#ebfbee", "#74b816", 1),
}
#: What each mark means, for legends.
MEANING: dict[str, str] = {
    "failed": "the step that failed (the instance failed, or waits to retry it)",
    "unwinding": "a thread leaves this statement with a failure or a cancellation",
    "executing": "a thread is about to run this step",
    "waiting": "a thread waits here",
    "moving": "a thread is done here and moves on",
    "caught": "the Catch that caught what a thread carries (its body runs)",
    "start": "a thread that has not started yet",
    "listening": "an event the thread listens for",
    "pending": "an event whose handler is being set up or torn down",
    "handled": "the event that arrived",
    "error": "a handler's set-up or teardown failed (retried)",
    "done": "passed in the current iteration",
    "active": "a loop, branch or wait the thread is inside",
    "finished": "the instance has finished",
    "cancelled": "the instance was cancelled (its cleanup ran)",
}
#: The colour and width of the edge into the branch a thread took (no mark shares it).
TAKEN = ("#ae3ec9", 4)
#: What the taken edge means, for legends.
TAKEN_MEANING = "the branch taken"


def display_class(node: Node) -> str | None:
    """The mark that decides how `node` looks (None: not marked)."""
    for cls in CLASSES:
        if cls in node.classes and cls in STYLES:
            return cls
    return None


def node_text(node: Node) -> str:
    """The node's label, with the threads standing at it."""
    text = node.label
    if node.threads:
        text += "\n▶ " + ", ".join(thread_label(t) for t in node.threads)
    if node.kind in (NodeKind.TIMER, NodeKind.SLEEP) and node.detail.get("due"):
        text += f"\ndue {node.detail['due'][:19].replace('T', ' ')}"
    if node.detail.get("error"):
        text += f"\nerror: {_cut(node.detail['error'], 60)}"
    for note in node.detail.get("carries", ()):
        text += f"\n{_cut(note, 60)}"
    return text


def cluster_text(cluster: Cluster) -> str:
    if cluster.threads:
        return f"{cluster.label}: " + ", ".join(thread_label(t) for t in cluster.threads)
    return cluster.label


def title(graph: Graph) -> str:
    text = f"workflow {graph.workflow}"
    if graph.instance is not None:
        text += f", instance {graph.instance['id']} ({graph.instance['status']})"
    return text


def problems(graph: Graph) -> list[str]:
    """What an instance's marks could not show (threads that cannot be placed)."""
    if graph.instance is None:
        return []
    return [t["problem"] for t in graph.instance.get("threads", []) if t.get("problem")]


def _cut(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- clusters, walked without recursion -------------------------------------------------------


def _layout(graph: Graph) -> Iterator[tuple[str, Any, int]]:
    """("open", cluster, depth) / ("node", node, depth) / ("close", cluster, depth),
    in the order a nested format writes them."""
    children: dict[str | None, list[Cluster]] = {}
    for each in graph.clusters:
        children.setdefault(each.parent, []).append(each)
    members: dict[str | None, list[Node]] = {}
    for node in graph.nodes:
        members.setdefault(node.cluster, []).append(node)
    stack: list[tuple[Cluster | None, int, bool]] = [(None, 0, False)]
    while stack:
        cluster, depth, opened = stack.pop()
        key = cluster.id if cluster is not None else None
        if opened:
            if cluster is not None:
                yield "close", cluster, depth
            continue
        if cluster is not None:
            yield "open", cluster, depth
        inner = depth + (1 if cluster is not None else 0)
        for node in members.get(key, []):
            yield "node", node, inner
        stack.append((cluster, depth, True))
        for child in reversed(children.get(key, [])):
            stack.append((child, inner, False))


# -- Mermaid -----------------------------------------------------------------------------------

_MERMAID_SHAPES = {
    NodeKind.START: ('(("', '"))'),
    NodeKind.END: ('((("', '")))'),
    NodeKind.STEP: ('["', '"]'),
    NodeKind.DECISION: ('{"', '"}'),
    NodeKind.LOOP: ('{{"', '"}}'),
    NodeKind.WAIT: ('(["', '"])'),
    NodeKind.EVENT: ('>"', '"]'),
    NodeKind.TIMER: ('>"', '"]'),
    NodeKind.WAITFOR: ('[/"', '"\\]'),
    NodeKind.GO: ('[["', '"]]'),
    NodeKind.SLEEP: ('(["', '"])'),
    NodeKind.CHILD: ('[["', '"]]'),
    NodeKind.TRY: ('("', '")'),
    NodeKind.CATCH: ('[\\"', '"/]'),
    NodeKind.FINALLY: ('[\\"', '"\\]'),
    NodeKind.RAISE: ('[/"', '"/]'),
    NodeKind.FAILS: ('((("', '")))'),
    NodeKind.OTHER: ('["', '"]'),
}
_MERMAID_ARROWS = {
    EdgeKind.SPAWN: "-.->",
    EdgeKind.BREAK: "-.->",
    EdgeKind.CONTINUE: "-.->",
    EdgeKind.RETURN: "-.->",
    EdgeKind.FAIL: "-.->",
    EdgeKind.ELSE: "-->",
}
#: How failure edges look in every format (a definition's own style, not a mark).
FAIL_COLOR = "#c92a2a"


def _mermaid_text(text: str) -> str:
    """Text for inside a quoted Mermaid label: entity codes, <br> for line breaks."""
    out = (text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;")
           .replace(">", "#gt;"))
    return out.replace("\n", "<br>")


def to_mermaid(graph: Graph, *, direction: str = "TD", plain: bool = False) -> str:
    """The graph as a Mermaid flowchart (`flowchart TD`); `plain`: the definition
    alone, whatever marks the graph carries."""
    lines = [f"%% genflow: {f'workflow {graph.workflow}' if plain else title(graph)}"]
    if not plain:
        lines.extend(f"%% warning: {' '.join(p.split())}" for p in problems(graph))
    lines.append(f"flowchart {direction}")
    for what, item, depth in _layout(graph):
        pad = "    " * (depth + 1)
        if what == "open":
            text = _mermaid_text(cluster_text(item)) or " "  # (Mermaid needs a title)
            lines.append(f'{pad}subgraph {item.id}["{text}"]')
            lines.append(f"{pad}    direction TB")
        elif what == "close":
            lines.append(f"{pad}end")
        else:
            left, right = _MERMAID_SHAPES.get(item.kind, ('["', '"]'))
            text = item.label if plain else node_text(item)
            lines.append(f"{pad}{item.id}{left}{_mermaid_text(text)}{right}")
    taken, failing = [], []
    for index, edge in enumerate(graph.edges):
        arrow = _MERMAID_ARROWS.get(edge.kind, "-->")
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        # an edge that leaves a cluster's border starts at the cluster (a Try's body)
        lines.append(f"    {edge.tail or edge.source} {arrow}{label} {edge.target}")
        if "taken" in edge.classes and not plain:
            taken.append(index)
        elif edge.kind == EdgeKind.FAIL:
            failing.append(index)
    used: dict[str, list[str]] = {}
    for node in [] if plain else graph.nodes:
        cls = display_class(node)
        if cls is not None:
            used.setdefault(cls, []).append(node.id)
    for cls, ids in used.items():
        fill, stroke, width = STYLES[cls]
        dash = ",stroke-dasharray:5 3" if cls == "active" else ""
        lines.append(f"    classDef {cls} fill:{fill},stroke:{stroke},stroke-width:{width}px{dash}")
        lines.append(f"    class {','.join(ids)} {cls}")
    if failing:
        lines.append(f"    linkStyle {','.join(map(str, failing))} stroke:{FAIL_COLOR}")
    if taken:
        color, width = TAKEN
        lines.append(f"    linkStyle {','.join(map(str, taken))} "
                     f"stroke:{color},stroke-width:{width}px")
    return "\n".join(lines) + "\n"


# -- Graphviz DOT ------------------------------------------------------------------------------

_DOT_SHAPES: dict[str, dict[str, str]] = {
    NodeKind.START: {"shape": "circle", "width": "0.5", "fixedsize": "true", "fontsize": "9"},
    NodeKind.END: {"shape": "doublecircle", "width": "0.4", "fixedsize": "true",
                   "fontsize": "9"},
    NodeKind.STEP: {"shape": "box", "style": "rounded"},
    NodeKind.DECISION: {"shape": "diamond"},
    NodeKind.LOOP: {"shape": "hexagon"},
    NodeKind.WAIT: {"shape": "box", "style": "rounded,bold"},
    NodeKind.EVENT: {"shape": "cds"},
    # a box, not the events' `cds`: a timer's two-line label spilled out of the arrow
    NodeKind.TIMER: {"shape": "box", "style": "rounded,dashed", "margin": "0.15,0.06"},
    NodeKind.WAITFOR: {"shape": "trapezium"},
    NodeKind.GO: {"shape": "component"},
    NodeKind.SLEEP: {"shape": "box", "style": "rounded,bold,dashed", "margin": "0.15,0.06"},
    NodeKind.CHILD: {"shape": "box3d"},
    NodeKind.TRY: {"shape": "tab"},
    NodeKind.CATCH: {"shape": "invhouse"},
    NodeKind.FINALLY: {"shape": "house"},
    NodeKind.RAISE: {"shape": "octagon", "color": FAIL_COLOR},
    NodeKind.FAILS: {"shape": "doublecircle", "width": "0.4", "fixedsize": "true",
                     "fontsize": "9", "color": FAIL_COLOR},
    NodeKind.OTHER: {"shape": "box"},
}
_DOT_EDGES: dict[str, dict[str, str]] = {
    EdgeKind.SPAWN: {"style": "dashed", "arrowhead": "onormal"},
    EdgeKind.BREAK: {"style": "dashed"},
    EdgeKind.CONTINUE: {"style": "dashed"},
    EdgeKind.RETURN: {"style": "dashed"},
    EdgeKind.REPEAT: {"color": "#495057"},
    EdgeKind.ELSE: {"style": "dotted"},
    EdgeKind.FAIL: {"style": "dashed", "color": FAIL_COLOR, "fontcolor": FAIL_COLOR},
}


def _dot_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_attrs(attrs_: dict[str, str]) -> str:
    return ", ".join(f"{key}={_dot_string(value)}" for key, value in attrs_.items())


def to_dot(graph: Graph, *, rankdir: str = "TB", id_prefix: str = "gf",
           plain: bool = False) -> str:
    """The graph in Graphviz's DOT language (`dot -Tsvg` draws it).

    Every element of the SVG `dot` draws gets an id starting with `id_prefix`
    (give each diagram of one page its own), and each node and edge a class
    naming it (``gf-n-<node id>``, ``gf-e-<edge index>``), so a page can lay an
    instance's marks on a diagram drawn once (`genflow.render.views`).
    `plain` draws the definition alone, whatever marks the graph carries.
    """
    heading = "\n".join([title(graph), *(f"warning: {p}" for p in problems(graph))])
    if plain:
        heading = f"workflow {graph.workflow}"
    top = {"rankdir": rankdir, "label": heading, "labelloc": "t", "id": id_prefix,
           "fontname": "Helvetica", "compound": "true", "newrank": "true"}
    lines = [
        f"digraph {_dot_string(graph.workflow)} {{",
        f"    graph [{_dot_attrs(top)}];",
        '    node [fontname="Helvetica", fontsize="11", style="filled", fillcolor="white"];',
        '    edge [fontname="Helvetica", fontsize="9"];',
    ]
    for what, item, depth in _layout(graph):
        pad = "    " * (depth + 1)
        if what == "open":
            style = "rounded,dashed" if item.kind == "subflow" else "rounded,filled"
            fill = "#f8f9fa" if item.kind == "thread" else "white"
            box = {"label": item.label if plain else cluster_text(item), "style": style,
                   "fillcolor": fill,
                   "color": "#868e96", "id": f"{id_prefix}-{item.id}"}
            lines.append(f"{pad}subgraph {_dot_string('cluster_' + item.id)} {{")
            lines.append(f"{pad}    graph [{_dot_attrs(box)}];")
        elif what == "close":
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{_dot_string(item.id)} "
                         f"[{_dot_attrs(_dot_node(item, id_prefix, plain))}];")
    for index, edge in enumerate(graph.edges):
        lines.append(f"    {_dot_string(edge.source)} -> {_dot_string(edge.target)}"
                     f" [{_dot_attrs(_dot_edge(edge, index, id_prefix, plain))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(node: Node, id_prefix: str = "gf", plain: bool = False) -> dict[str, str]:
    out = dict(_DOT_SHAPES.get(node.kind, {"shape": "box"}))
    out["label"] = node.label if plain else node_text(node)
    styles = [s for s in out.get("style", "").split(",") if s]
    cls = None if plain else display_class(node)
    if cls is not None:
        fill, stroke, width = STYLES[cls]
        out["fillcolor"], out["color"], out["penwidth"] = fill, stroke, str(width)
        if cls == "active":
            styles.append("dashed")
    out["style"] = ",".join(dict.fromkeys([*styles, "filled"]))
    out["tooltip"] = f"{node.kind} {node.name or node.label}".strip()
    out["id"] = f"{id_prefix}-{node.id}"
    out["class"] = " ".join([f"gf-n-{node.id}", f"gf-{node.kind}",
                             *([] if plain else node.classes)])
    return out


def _dot_edge(edge: Edge, index: int = 0, id_prefix: str = "gf",
              plain: bool = False) -> dict[str, str]:
    out = dict(_DOT_EDGES.get(edge.kind, {}))
    if edge.label:
        out["label"] = edge.label
    if edge.kind == EdgeKind.REPEAT:
        out["constraint"] = "false"
    if edge.tail is not None:  # drawn from the cluster's border (`compound`)
        out["ltail"] = f"cluster_{edge.tail}"
    if "taken" in edge.classes and not plain:
        color, width = TAKEN
        out["color"], out["penwidth"] = color, str(width)
    out["id"] = f"{id_prefix}-e{index}"
    out["class"] = " ".join([f"gf-e-{index}", edge.kind, *([] if plain else edge.classes)])
    return out


# -- JSON --------------------------------------------------------------------------------------


def to_dict(graph: Graph) -> dict[str, Any]:
    """The graph as plain data (what `to_json` writes)."""
    return {
        "workflow": graph.workflow,
        "nodes": [attrs.asdict(node) for node in graph.nodes],
        "edges": [attrs.asdict(edge) for edge in graph.edges],
        "clusters": [attrs.asdict(cluster) for cluster in graph.clusters],
        "instance": graph.instance,
    }


def to_json(graph: Graph, *, indent: int | None = 2) -> str:
    return json.dumps(to_dict(graph), indent=indent, ensure_ascii=False, default=str) + "\n"


# -- a plain outline ---------------------------------------------------------------------------

#: nodes the outline shows only when an instance marks them
_ENDS = (NodeKind.START, NodeKind.END, NodeKind.FAILS)

_MARKS = {"failed": "✘", "executing": "▶", "waiting": "⏸", "moving": "↷", "start": "▷",
          "handled": "✔", "listening": "◉", "pending": "…", "error": "✖", "done": "✓",
          "active": "·", "unwinding": "↑", "caught": "⤵", "cancelled": "□",
          "finished": "■"}


def _outline_rows(graph: Graph, plain: bool = False
                  ) -> Iterator[tuple[str, int, str, Node | None]]:
    """(text, indent, mark, node) per row, in definition order: a row per node (start
    and end nodes only when marked), a row naming each branch of a decision and a
    row per Break, Continue and Return."""
    decisions = {tuple(node.path): node for node in graph.nodes if node.kind == NodeKind.DECISION}
    by_id = {node.id: node for node in graph.nodes}
    shown: set[tuple[str, int]] = set()
    jumps: dict[str, list[Edge]] = {}
    for edge in graph.edges:
        if edge.kind in (EdgeKind.BREAK, EdgeKind.CONTINUE, EdgeKind.RETURN):
            jumps.setdefault(edge.source, []).append(edge)

    def indent(node: Node) -> int:  # a decision's branches sit under a row of their own
        extra, parent = 0, node.parent
        while parent is not None:
            owner = by_id[parent]
            extra += owner.kind == NodeKind.DECISION
            parent = owner.parent
        return node.depth + extra

    for node in sorted(graph.nodes, key=lambda n: _outline_key(n, by_id)):
        if node.kind in _ENDS and (plain or not node.classes):
            continue
        if len(node.path) >= 3:
            decision = decisions.get(tuple(node.path[:-2]))
            branch = node.path[-2]
            if decision is not None and (decision.id, branch) not in shown:
                shown.add((decision.id, branch))
                case = decision.detail["cases"][branch]
                yield f"{case['name']}:", indent(decision) + 1, " ", None
        cls = None if plain else display_class(node)
        text = node.label if plain else node_text(node)
        if node.kind == NodeKind.DECISION:
            text += " " + " / ".join(str(case["name"]) for case in node.detail["cases"])
        yield text, indent(node), _MARKS.get(cls or "", " "), node
        for edge in jumps.get(node.id, []):
            yield f"→ {edge.label}", indent(node) + 1, " ", None


def _outline_key(node: Node, by_id: dict[str, Node]) -> list[int]:
    """Definition order, with each event of a Wait just before its own body."""
    if node.kind in (NodeKind.EVENT, NodeKind.TIMER) and node.parent is not None:
        return [*by_id[node.parent].path, node.detail.get("index", 0), -1]
    if node.kind in _ENDS:
        edge = -1 if node.kind == NodeKind.START else 1 << 30
        if node.parent is None:
            return [edge]
        return [*by_id[node.parent].path, 0, edge]
    return node.path


def to_text(graph: Graph) -> str:
    """An indented outline of the statements, with the instance's marks."""
    lines = [title(graph), *(f"! {problem}" for problem in problems(graph))]
    for text, depth, mark, _ in _outline_rows(graph):
        lines.append(f"{mark} {'  ' * depth}{text.replace(chr(10), '; ')}")
    return "\n".join(lines) + "\n"


def outline_html(graph: Graph, *, plain: bool = False) -> str:
    """The outline as HTML (a diagram that shows without any program or script).

    Each node's row has the class ``gf-n-<node id>``, as in `to_dot`'s SVG, so a
    page can lay marks on it; `plain` leaves the graph's own marks out.
    """
    rows = [] if plain else [f'<div class="gf-problem">{html.escape(problem)}</div>'
                             for problem in problems(graph)]
    for text, depth, mark, node in _outline_rows(graph, plain):
        cls = display_class(node) if node is not None and not plain else None
        fill, stroke, _ = STYLES.get(cls or "", ("transparent", "transparent", 0))
        kind = node.kind if node is not None else "branch"
        ident = (f' data-node="{html.escape(node.id)}"' if node is not None else "")
        names = f"gf-row gf-{kind} {cls or ''}" + (f" gf-n-{node.id}" if node is not None else "")
        rows.append(
            f'<div class="{names.strip()}"{ident} '
            f'style="margin-left:{depth * 1.5:g}em;background:{fill};border-color:{stroke}">'
            f'<span class="gf-mark">{mark}</span> '
            f"{html.escape(text).replace(chr(10), '<br>')}</div>"
        )
    return f'<div class="gf-outline">{"".join(rows)}</div>'
