"""A static HTML report of a store's instances: a table, and each instance's diagram.

`write_report(engine, directory)` writes ``index.html`` (self-contained: inline
CSS, no script, nothing fetched from the network) and, per instance, its
diagram as ``instances/<id>.mmd``, ``.dot``, ``.json`` and, when Graphviz's
`dot` is installed, ``.svg``.

In the page each instance's diagram is the SVG drawn by `dot`, inline; without
`dot` it is the plain outline (`genflow.render.formats.outline_html`), which
needs no program to draw and no script to show. The Mermaid source is embedded
under each diagram (and saved beside it) for pasting into Markdown; it is not
drawn in the page, because drawing it needs Mermaid's script from a network.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from genflow.describe import describe, when
from genflow.errors import GenflowError, UnknownWorkflowError
from genflow.render.formats import MEANING, STYLES, outline_html, to_dot, to_json, to_mermaid
from genflow.render.overlay import instance_graph
from genflow.render.svg import dot_program, dot_svg

if TYPE_CHECKING:
    from genflow.engine import Engine, Instance
    from genflow.stores.base import InstanceRecord

__all__ = ["ReportItem", "report_html", "write_report"]


@attrs.define
class ReportItem:
    """One instance in the report: its record, and its diagram (or why there is none)."""

    record: InstanceRecord
    slug: str
    instance: Instance | None = None
    text: str = ""  #: `describe`'s words
    mermaid: str = ""
    svg: str = ""
    outline: str = ""
    problem: str = ""  #: why the instance or its diagram could not be drawn
    sources: dict[str, str] = attrs.field(factory=dict)  #: suffix -> the diagram's text
    files: dict[str, str] = attrs.field(factory=dict)  #: suffix -> file name


def write_report(
    engine: Engine,
    directory: str | Path,
    *,
    workflow: str | None = None,
    status: str | None = None,
    limit: int | None = 100,
    svg: bool | None = None,
    title: str = "genflow instances",
) -> Path:
    """Write the report of `engine`'s instances into `directory`; return index.html's path.

    `workflow`, `status` and `limit` select instances as `Engine.list` does.
    `svg`: draw diagrams with Graphviz's `dot` (default: when it is installed).
    """
    root = Path(directory)
    files = root / "instances"
    files.mkdir(parents=True, exist_ok=True)
    use_svg = dot_program() is not None if svg is None else svg
    now = engine.clock()
    records = engine.list(workflow=workflow, status=status, limit=limit)
    items = []
    for record in records:
        item = _item(engine, record, now, use_svg)
        for suffix, content in item.sources.items():
            name = f"{item.slug}{suffix}"
            (files / name).write_text(content, encoding="utf-8")
            item.files[suffix] = f"instances/{name}"
        items.append(item)
    selection = ", ".join(part for part in (
        f"workflow {workflow}" if workflow else "", f"status {status}" if status else "",
        f"the first {limit}" if limit is not None and len(records) == limit else "") if part)
    index = root / "index.html"
    index.write_text(report_html(items, title=title, now=now, selection=selection,
                                 drawn_by="Graphviz dot" if use_svg else None),
                     encoding="utf-8")
    return index


def _item(engine: Engine, record: InstanceRecord, now: _dt.datetime, use_svg: bool
          ) -> ReportItem:
    item = ReportItem(record, _slug(record.id))
    try:
        instance = engine.get(record.id)
    except UnknownWorkflowError as exc:
        item.problem = (f"cannot load the instance: {exc} (import the module that defines "
                        "it: genflow --app MODULE report ...)")
        return item
    except GenflowError as exc:
        item.problem = f"cannot load the instance: {exc}"
        return item
    item.instance = instance
    item.text = describe(instance.state, instance.data, now=now, attempts=instance.attempts,
                         error=instance.error, wake_at=instance.wake_at,
                         updated_at=instance.updated_at)
    try:
        graph = instance_graph(instance.data, instance.state, error=instance.error,
                               attempts=instance.attempts)
    except GenflowError as exc:
        item.problem = f"cannot draw the instance: {exc}"
        return item
    item.mermaid = to_mermaid(graph)
    item.outline = outline_html(graph)
    item.sources = {".mmd": item.mermaid, ".dot": to_dot(graph), ".json": to_json(graph)}
    if use_svg:
        try:
            item.svg = dot_svg(item.sources[".dot"])
        except GenflowError as exc:
            item.problem = f"dot could not draw the diagram ({exc}); the outline shows instead"
        else:
            item.sources[".svg"] = item.svg
    return item


def _slug(instance_id: str) -> str:
    """A file and anchor name for an instance id (distinct ids give distinct slugs)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", instance_id).strip("._")[:60] or "instance"
    return f"{readable}-{hashlib.sha1(instance_id.encode()).hexdigest()[:8]}"


# -- the page ------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2em; color: #212529; }
h1 { margin-bottom: 0.2em; }
p.meta { color: #495057; margin-top: 0; }
table.instances { border-collapse: collapse; margin: 1em 0 2em; }
table.instances th, table.instances td { border: 1px solid #dee2e6; padding: 0.35em 0.7em;
       text-align: left; vertical-align: top; }
table.instances th { background: #f1f3f5; }
.status { display: inline-block; padding: 0.05em 0.5em; border-radius: 0.8em;
          font-size: 0.9em; background: #e9ecef; }
.status-waiting { background: #ffd8a8; } .status-resuming { background: #d0ebff; }
.status-finished { background: #b2f2bb; } .status-failed { background: #ffc9c9; }
.status-cancelled { background: #dee2e6; color: #495057; }
section.instance { border-top: 2px solid #dee2e6; padding-top: 1em; margin-top: 2em; }
pre { background: #f8f9fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.diagram { overflow-x: auto; margin: 1em 0; }
.diagram svg { max-width: 100%; height: auto; }
.problem { color: #c92a2a; }
.gf-outline { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }
.gf-row { border-left: 4px solid transparent; padding: 0.1em 0.5em; margin: 1px 0; }
.gf-mark { display: inline-block; width: 1.2em; }
.gf-branch { color: #495057; font-style: italic; }
ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; }
.swatch { display: inline-block; width: 1em; height: 1em; border: 2px solid;
          vertical-align: middle; margin-right: 0.3em; }
"""


def report_html(items: Sequence[ReportItem], *, title: str = "genflow instances",
                now: _dt.datetime | None = None, selection: str = "",
                drawn_by: str | None = None) -> str:
    """The report page for `items` (see `write_report`)."""
    now = now or _dt.datetime.now(_dt.UTC)
    esc = html.escape
    among = f" ({selection})" if selection else ""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{len(items)} instance(s){esc(among)}'
        f", as of {esc(now.astimezone(_dt.UTC).strftime('%Y-%m-%d %H:%M:%S UTC'))}. "
        + (f"Diagrams drawn by {esc(drawn_by)}." if drawn_by else
           "Graphviz's <code>dot</code> is not installed: diagrams show as outlines.")
        + "</p>",
    ]
    if not items:
        parts.append('<p class="empty">No instances.</p>')
    else:
        parts.append(_table(items, now))
        parts.append(_legend())
        parts.extend(_section(item) for item in items)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(items: Sequence[ReportItem], now: _dt.datetime) -> str:
    esc = html.escape
    rows = []
    for item in items:
        r = item.record
        waits = ", ".join(r.waiting_for)
        wake = when(r.wake_at, now) if r.wake_at is not None else ""
        updated = when(r.updated_at, now) if r.updated_at is not None else ""
        rows.append(
            f'<tr data-id="{esc(r.id)}" data-status="{esc(r.status)}">'
            f'<td><a href="#i-{item.slug}">{esc(r.id)}</a></td>'
            f"<td>{esc(r.workflow)}</td>"
            f'<td><span class="status status-{esc(r.status)}">{esc(r.status)}</span></td>'
            f"<td>{esc(waits)}</td><td>{esc(wake)}</td><td>{esc(updated)}</td>"
            f"<td>{esc(r.error)}</td></tr>"
        )
    return (
        '<table class="instances" id="instances"><thead><tr><th>instance</th><th>workflow</th>'
        "<th>status</th><th>waiting for</th><th>wakes</th><th>last changed</th><th>error</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _legend() -> str:
    entries = []
    for cls, meaning in MEANING.items():
        fill, stroke, _ = STYLES[cls]
        entries.append(f'<li><span class="swatch" style="background:{fill};border-color:{stroke}">'
                       f"</span>{html.escape(cls)}: {html.escape(meaning)}</li>")
    return f'<h2>Legend</h2><ul class="legend">{"".join(entries)}</ul>'


def _section(item: ReportItem) -> str:
    esc = html.escape
    r = item.record
    out = [
        f'<section class="instance" id="i-{item.slug}" data-id="{esc(r.id)}">',
        f'<h2>{esc(r.id)} <span class="status status-{esc(r.status)}">{esc(r.status)}</span>'
        f" <small>{esc(r.workflow)}</small></h2>",
    ]
    if item.text:
        out.append(f'<pre class="describe">{esc(item.text)}</pre>')
    if item.problem:
        out.append(f'<p class="problem">{esc(item.problem)}</p>')
    if item.svg:
        out.append(f'<div class="diagram diagram-svg">{item.svg}</div>')
    elif item.outline:
        out.append(f'<div class="diagram diagram-outline">{item.outline}</div>')
    if item.mermaid:
        out.append("<details><summary>Mermaid source</summary>"
                   f'<pre class="mermaid-source">{esc(item.mermaid)}</pre></details>')
    if item.files:
        links = " ".join(f'<a href="{esc(path)}">{esc(suffix)}</a>'
                         for suffix, path in sorted(item.files.items()))
        out.append(f'<p class="files">files: {links}</p>')
    out.append("</section>")
    return "\n".join(out)
