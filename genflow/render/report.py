"""A static HTML report of a store's instances: one self-contained page.

`write_report(engine, directory)` writes ``index.html``: the instance list with
search and filters (workflow, status, waiting for, failed, and the schedule and
queue when the store has some), the schedules and queues tables of the console
(`genflow.render.operating`), and each instance
as the console shows it (`genflow.render.views`: its diagram with the marks of
its threads, `describe`'s words, the timeline of its steps and the events it
received when the journal is on). Everything is inline (the stylesheet, the
script, the data): nothing is fetched, so the file can be mailed or archived.

It scales by drawing each distinct definition **once** (one run of Graphviz's
`dot` per definition, not per instance) and laying each instance's marks on
that drawing in the browser; 10,000 instances make one page a browser opens
(`benchmarks/report_scale.py` measures the time and the size). Beside the page,
``diagrams/`` holds each definition's DOT and Mermaid text (and SVG).
"""

from __future__ import annotations

import datetime as _dt
import html
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genflow.errors import GenflowError, UnknownWorkflowError
from genflow.render.svg import dot_program
from genflow.render.views import (
    Diagrams,
    diagrams_html,
    instance_view,
    legend,
    page_html,
    row_view,
)
from genflow.state import WorkflowStatus

if TYPE_CHECKING:
    from genflow.engine import Engine

__all__ = ["report_data", "write_report"]


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
    root.mkdir(parents=True, exist_ok=True)
    use_svg = dot_program() is not None if svg is None else svg
    diagrams = Diagrams(svg=use_svg, limit=1 << 20)
    data = report_data(engine, diagrams, workflow=workflow, status=status, limit=limit)
    files = root / "diagrams"
    files.mkdir(exist_ok=True)
    for diagram in diagrams:
        (files / f"{diagram.key}.dot").write_text(diagram.dot, encoding="utf-8")
        (files / f"{diagram.key}.mmd").write_text(diagram.mermaid, encoding="utf-8")
        if diagram.html.startswith("<svg"):
            (files / f"{diagram.key}.svg").write_text(diagram.html, encoding="utf-8")
    esc = html.escape
    selection = ", ".join(part for part in (
        f"workflow {workflow}" if workflow else "", f"status {status}" if status else "",
        f"the first {limit}" if limit is not None and len(data["rows"]) == limit else "")
        if part)
    now = engine.clock()
    drawn = ("Diagrams drawn by Graphviz dot." if use_svg else
             "Graphviz's dot is not installed: diagrams show as outlines.")
    body = (
        f"<h1>{esc(title)}</h1>"
        f'<p class="meta">{len(data["rows"])} instance(s)'
        f"{esc(f' ({selection})' if selection else '')}, as of "
        f"{esc(now.astimezone(_dt.UTC).strftime('%Y-%m-%d %H:%M:%S UTC'))}. {esc(drawn)}</p>"
        "<noscript><p class=\"problem\">This report draws its list and diagrams with a "
        "script: allow scripts for this file.</p></noscript>"
        + operating_html(engine, {r["id"] for r in data["rows"]})
    )
    index = root / "index.html"
    index.write_text(page_html(title=title, body=body, data=data,
                               templates=diagrams_html(diagrams)), encoding="utf-8")
    return index


def report_data(engine: Engine, diagrams: Diagrams, *, workflow: str | None = None,
                status: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """The report's data: every selected instance's row and view (see `views`)."""
    now = engine.clock()
    rows, views = [], {}
    events: set[str] = set()
    for record in engine.list(workflow=workflow, status=status, limit=limit):
        row = row_view(record)
        events.update(record.waiting_for)
        rows.append(row)
        try:
            instance = engine.get(record.id)
        except UnknownWorkflowError as exc:
            row["problem"] = (f"cannot load the instance: {exc} (import the module that "
                              "defines it: genflow --app MODULE report ...)")
            views[record.id] = _unloaded(row)
            continue
        except GenflowError as exc:
            row["problem"] = f"cannot load the instance: {exc}"
            views[record.id] = _unloaded(row)
            continue
        views[record.id] = instance_view(
            instance, now=now, diagrams=diagrams, data=False,
            journal=engine.store.journal(record.id),
            children=[(r.id, r.status) for r in engine.list(parent=record.id)],
            outbox=engine.store.list_outbox(origin=record.id))
    schedules, queues = _operating_marks(engine, rows)
    return {"mode": "report", "rows": rows, "views": views, "legend": legend(),
            "workflows": sorted({r["workflow"] for r in rows}),
            "statuses": [s.value for s in WorkflowStatus], "events": sorted(events),
            "schedules": schedules, "queues": queues}


def _operating_marks(engine: Engine, rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Mark each row with the schedule that started it and the queue that holds it
    (the report's filters, as the console's); the names to filter by."""
    from genflow.schedules import schedule_of

    known = {r.id for r in engine.store.list_schedules()}
    by_id = {row["id"]: row for row in rows}
    for row in rows:
        started = schedule_of(row["id"])
        row["schedule"] = started[0] if started is not None and started[0] in known else None
        row["queue"] = None
    queues = [q.name for q in engine.queues.list()]
    for name in queues:  # what each queue holds, read once by pages
        after = None
        while True:
            entries, after = engine.queues.entries(name, after=after, limit=500)
            for entry in entries:
                if entry.instance_id in by_id:
                    by_id[entry.instance_id]["queue"] = name
            if after is None:
                break
    return sorted({r["schedule"] for r in rows if r["schedule"]}), queues


def _unloaded(row: dict[str, Any]) -> dict[str, Any]:
    """The view of an instance that cannot be loaded: its row, and why."""
    return {**row, "text": "", "threads": [], "diagram": None, "marks": {}, "taken": [],
            "at": {}, "notes": {}, "timeline": [], "events": [], "problems": [row["problem"]]}


#: the waiting instances the report lists per queue
REPORT_WAITING = 50


def operating_html(engine: Engine, shown: set[str]) -> str:
    """The report's schedules and queues sections: the console's tables
    (`genflow.render.operating`), static; an instance in the report is linked."""
    from genflow.render import operating

    def instance(instance_id: str) -> str | None:
        return f"#i={urllib.parse.quote(instance_id, safe='')}" if instance_id in shown else None

    schedules = operating.schedules_data(engine)
    queues = operating.queues_data(engine, waiting=REPORT_WAITING)
    if not schedules and not queues:
        return ""
    parts = ['<section id="gf-report-schedules"><h2>Schedules</h2>',
             operating.schedules_table(schedules, instance=instance, started=lambda _: None),
             '</section><section id="gf-report-queues"><h2>Queues</h2>',
             operating.queues_table(queues, queue=lambda name: f"#q-{name}",
                                    members=lambda _: None)]
    for view in queues:
        name = html.escape(view["name"])
        more = (f" (the first {REPORT_WAITING} of {view['waiting']})"
                if view.get("more_waiting") else "")
        parts.append(f'<h3 id="q-{name}">{name}: waiting for admission{html.escape(more)}</h3>'
                     + operating.waiting_table(view["first_waiting"], instance=instance,
                                               name=view["name"]))
    parts.append("</section>")
    return "".join(parts)
