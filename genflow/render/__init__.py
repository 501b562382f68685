"""Diagrams of workflows: a definition, and an instance drawn on top of it.

    >>> from genflow.render import to_mermaid, to_dot, to_json
    >>> print(to_mermaid(PizzaOrder()))                 # the definition
    >>> print(to_mermaid(order, state))                 # an instance: where each thread is

Every function takes a workflow instance (its definition is walked **on its
current data**, every branch whatever its condition; a workflow class is drawn
on its defaults) and optionally the instance's `State`, whose threads are then
marked on the graph. Formats:

* `to_mermaid`: a Mermaid flowchart (paste into Markdown, GitHub renders it);
* `to_dot`: Graphviz DOT; `to_svg` runs Graphviz's `dot` program on it;
* `to_json` / `to_dict`: nodes, edges and clusters as data, for other tools;
* `to_text`: an indented outline, for a terminal.

`graph_of`, `build_graph` and `instance_graph` give the `Graph` itself; `render(wf, state,
format)` picks a format by name (``mmd``, ``dot``, ``svg``, ``json``, ``text``);
`genflow.render.report` writes a static HTML report of a store's instances.
"""

from __future__ import annotations

from typing import Any

from genflow.errors import ArgumentError
from genflow.render import formats as _formats
from genflow.render.formats import MEANING, STYLES, outline_html
from genflow.render.graph import Cluster, Edge, EdgeKind, Graph, Node, NodeKind, build_graph
from genflow.render.overlay import CLASSES, instance_graph, mark_instance
from genflow.render.svg import DotError, DotNotFoundError, dot_program, dot_svg
from genflow.state import State

__all__ = [
    "CLASSES",
    "FORMATS",
    "MEANING",
    "STYLES",
    "Cluster",
    "DotError",
    "DotNotFoundError",
    "Edge",
    "EdgeKind",
    "Graph",
    "Node",
    "NodeKind",
    "build_graph",
    "dot_program",
    "dot_svg",
    "graph_of",
    "instance_graph",
    "mark_instance",
    "outline_html",
    "render",
    "to_dict",
    "to_dot",
    "to_json",
    "to_mermaid",
    "to_svg",
    "to_text",
]

#: Format names `render` takes (``mmd`` is Mermaid), and their file suffixes.
FORMATS = {"mmd": ".mmd", "dot": ".dot", "svg": ".svg", "json": ".json", "text": ".txt"}


def graph_of(wf: Any, state: State | None = None) -> Graph:
    """The graph of `wf`'s definition, with `state`'s threads marked if given.

    `wf` may also be a `Graph` already built (returned as it is).
    """
    if isinstance(wf, Graph):
        return wf
    if state is None:
        return build_graph(wf)
    return instance_graph(wf, state)


def to_mermaid(wf: Any, state: State | None = None, *, direction: str = "TD") -> str:
    """A Mermaid flowchart of the definition (and the instance, with `state`)."""
    return _formats.to_mermaid(graph_of(wf, state), direction=direction)


def to_dot(wf: Any, state: State | None = None, *, rankdir: str = "TB") -> str:
    """Graphviz DOT of the definition (and the instance, with `state`)."""
    return _formats.to_dot(graph_of(wf, state), rankdir=rankdir)


def to_svg(wf: Any, state: State | None = None) -> str:
    """SVG drawn by Graphviz's `dot` (raises `DotNotFoundError` without it)."""
    return dot_svg(to_dot(wf, state))


def to_dict(wf: Any, state: State | None = None) -> dict[str, Any]:
    """The graph as plain data: nodes, edges, clusters and the instance's threads."""
    return _formats.to_dict(graph_of(wf, state))


def to_json(wf: Any, state: State | None = None, *, indent: int | None = 2) -> str:
    return _formats.to_json(graph_of(wf, state), indent=indent)


def to_text(wf: Any, state: State | None = None) -> str:
    """An indented outline of the statements with the instance's marks."""
    return _formats.to_text(graph_of(wf, state))


def render(wf: Any, state: State | None = None, format: str = "mmd") -> str:
    """The diagram in `format`: one of `FORMATS` (``mermaid`` is ``mmd`` too)."""
    fmt = {"mermaid": "mmd", "gv": "dot", "txt": "text"}.get(format, format)
    writers = {"mmd": to_mermaid, "dot": to_dot, "svg": to_svg, "json": to_json,
               "text": to_text}
    if fmt not in writers:
        raise ArgumentError(f"unknown diagram format {format!r}: use one of "
                                 f"{', '.join(FORMATS)}")
    return writers[fmt](graph_of(wf, state))
