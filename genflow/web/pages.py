"""The console's HTML pages: the shared layout of `genflow.render.views.page_html`
with the console's navigation, one page per resource.

The pages are thin: each holds its data as JSON and the shared script draws it
(the same script draws the static report). Later resources (schedules,
queues...) add a page function here and an entry in `NAV`.
"""

from __future__ import annotations

import html
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from genflow.render import operating
from genflow.render.graph import build_graph
from genflow.render.views import Diagram, diagrams_html, legend, page_html
from genflow.state import WorkflowStatus
from genflow.web.schema import SchemaBuilder

if TYPE_CHECKING:
    from starlette.requests import Request

    from genflow.web.app import WebConfig
    from genflow.web.catalog import WorkflowInfo
    from genflow.web.listing import Filters

__all__ = ["NAV", "error_page", "instance_page", "list_page", "login_page", "queue_page",
           "queues_page", "schedules_page", "workflows_page"]

#: The console's resources: (title, path), in the title bar of every page.
NAV = [("Instances", "/instances"), ("Workflows", "/workflows"),
       ("Schedules", "/schedules"), ("Queues", "/queues"),
       ("API", "/api/v1/openapi.json")]
esc = html.escape


def _page(request: Request, title: str, body: str, data: Any, user: str = "",
          templates: str = "") -> str:
    base = str(request.scope.get("root_path", "")).rstrip("/")
    nav = [(text, base + path) for text, path in NAV]
    head = f'<meta name="genflow-user" content="{esc(user)}">' if user else ""
    logout = (f'<form method="post" action="{esc(base)}/logout" class="gf-logout">'
              f'<button type="submit">log out {esc(user)}</button></form>') if user else ""
    return page_html(title=title, body=body, data=data, nav=nav, base=base, head=head, tools=logout,
                     templates=templates,
                     styles=f'<link rel="stylesheet" href="{esc(base)}/static/gf.css">',
                     scripts=f'<script src="{esc(base)}/static/gf.js"></script>')


def list_page(request: Request, config: WebConfig, user: str, filters: Filters,
              rows: list[dict[str, Any]], after: str | None, total: int | None) -> str:
    base = str(request.scope.get("root_path", "")).rstrip("/")
    workflows = sorted(info.name for info in config.catalog())
    events = sorted({e.name for info in config.catalog() for e in info.events})

    def select(name: str, label: str, values: list[str], current: str | None) -> str:
        options = "".join(f'<option value="{esc(v)}"{" selected" if v == current else ""}>'
                          f"{esc(v)}</option>" for v in values)
        return (f'<label>{esc(label)}<select name="{name}"><option value="">any</option>'
                f"{options}</select></label>")

    form = (
        f'<form class="gf-filters" id="gf-filters" method="get" action="{esc(base)}/instances">'
        f'<label>id starts with<input type="search" name="q" value="{esc(filters.q)}"></label>'
        + select("workflow", "workflow", workflows, filters.workflow)
        + select("status", "status", [s.value for s in WorkflowStatus], filters.status)
        + select("waiting", "waiting for", events, filters.waiting)
        + f'<label>failed<input type="checkbox" name="failed" value="true"'
          f'{" checked" if filters.failed else ""}></label>'
        + _operating_filters(config, filters, select)
        + '<button type="submit" id="gf-filter">filter</button></form>')
    shown = f"{len(rows)} shown"
    summary = (f"{total} instance(s) match; {shown}" if total is not None else shown)
    data = {"mode": "list", "rows": rows, "summary": summary,
            "next": f"{base}/instances?{urllib.parse.urlencode(filters.query(after=after))}"
            if after else None,
            "first": f"{base}/instances?{urllib.parse.urlencode(filters.query(after=None))}"
            if filters.after else None}
    return _page(request, f"{config.title}: instances", f"<h1>Instances</h1>{form}", data, user)


def instance_page(request: Request, config: WebConfig, user: str, view: dict[str, Any],
                  diagram: Diagram | None, csrf: str) -> str:
    data = {"mode": "instance", "view": view, "legend": legend(), "csrf": csrf,
            "poll_ms": config.poll_ms}
    templates = diagrams_html([diagram] if diagram is not None else [])
    return _page(request, f"{config.title}: {view['id']}", "", data, user, templates)


def workflows_page(request: Request, config: WebConfig, user: str,
                   infos: list[WorkflowInfo]) -> str:
    builder = SchemaBuilder()
    parts = ["<h1>Workflows</h1>"]
    for info in infos:
        parts.append(f'<section class="gf-workflow" id="wf-{esc(info.name)}">'
                     f"<h2>{esc(info.name)} <small>{esc(info.cls.__qualname__)}</small></h2>")
        if info.problem:
            parts.append(f'<p class="problem">{esc(info.problem)}</p>')
        rows = "".join(
            f"<tr><td>{esc(e.name)}</td><td>{esc(e.handler)}</td><td><pre>"
            f"{esc(_schema_text(builder, e.payload_type)) if e.takes_payload else 'none'}"
            "</pre></td></tr>" for e in info.events)
        if rows:
            parts.append('<table class="gf-table"><thead><tr><th>event</th><th>handler</th>'
                         f"<th>payload schema</th></tr></thead><tbody>{rows}</tbody></table>")
        try:
            from genflow.codec import structure

            diagram = config.diagrams.add(build_graph(structure({}, info.cls),
                                                      workflow=info.name))
        except Exception as exc:  # a definition that cannot be drawn empty: say so
            parts.append(f'<p class="problem">cannot draw it: {esc(str(exc))}</p>')
        else:
            parts.append(f'<div class="gf-diagram">{diagram.html}</div>')
        parts.append("</section>")
    schemas = {name: s for name, s in builder.components.items()}
    if schemas:
        parts.append("<h2>Payload types</h2><pre>"
                     f"{esc(json.dumps(schemas, indent=1))}</pre>")
    return _page(request, f"{config.title}: workflows", "".join(parts), {"mode": "static"},
                 user)


def _schema_text(builder: SchemaBuilder, tp: Any) -> str:
    return json.dumps(builder.schema(tp), indent=1)


def login_page(request: Request, title: str, target: str, problem: str) -> str:
    base = str(request.scope.get("root_path", "")).rstrip("/")
    body = (f'<form class="gf-login" method="post" action="{esc(base)}/login">'
            f"<h1>{esc(title)}</h1>"
            + (f'<p class="problem">{esc(problem)}</p>' if problem else "")
            + '<label>access token <input type="password" name="token" id="gf-token" '
              'autocomplete="current-password" required></label>'
            f'<input type="hidden" name="next" value="{esc(target)}">'
            '<button type="submit" id="gf-login">log in</button></form>')
    return _page(request, f"{title}: log in", body, {"mode": "static"})


def error_page(request: Request, status: int, kind: str, message: str) -> str:
    body = (f"<h1>{status}: {esc(kind)}</h1><p class=\"problem\">{esc(message)}</p>")
    return _page(request, f"{status} {kind}", body, {"mode": "static"})


# -- schedules and queues (genflow.render.operating draws their tables) ----------------------


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _links(base: str) -> dict[str, Any]:
    quote = urllib.parse.quote

    def query(name: str, value: str) -> str:
        return f"{base}/instances?{urllib.parse.urlencode({name: value})}"

    return {"instance": lambda i: f"{base}/instances/{quote(i, safe='')}",
            "started": lambda sid: query("schedule", sid),
            "queue": lambda name: f"{base}/queues/{quote(name, safe='')}",
            "members": lambda name: query("queue", name)}


def _operating_filters(config: WebConfig, filters: Filters, select: Any) -> str:
    """The instance list's schedule and queue filters (their names from the store)."""
    store = config.engine.store
    schedules = [r.id for r in store.list_schedules()]
    queues = [q.name for q in store.list_queues()]
    for current, known in ((filters.schedule, schedules), (filters.queue, queues)):
        if current is not None and current not in known:
            known.append(current)  # a deleted schedule's instances stay: keep it selectable
    return (select("schedule", "started by schedule", schedules, filters.schedule)
            + select("queue", "in queue", queues, filters.queue))


def schedules_page(request: Request, config: WebConfig, user: str,
                   views: list[dict[str, Any]], csrf: str) -> str:
    links = _links(_base(request))
    body = ('<h1>Schedules</h1><div id="gf-message"></div>'
            + operating.schedules_table(views, instance=links["instance"],
                                        started=links["started"], actions=True))
    return _page(request, f"{config.title}: schedules", body,
                 {"mode": "schedules", "csrf": csrf}, user)


def queues_page(request: Request, config: WebConfig, user: str,
                views: list[dict[str, Any]]) -> str:
    links = _links(_base(request))
    parts = ["<h1>Queues</h1>", operating.queues_table(views, queue=links["queue"],
                                                      members=links["members"])]
    for view in views:
        parts.append(f'<section class="gf-queue-waiting" id="q-{esc(view["name"])}">'
                     f'<h2>{esc(view["name"])}: waiting for admission</h2>'
                     + operating.waiting_table(view.get("first_waiting", []),
                                               instance=links["instance"], name=view["name"]))
        if view.get("more_waiting"):
            parts.append(f'<p><a href="{esc(links["queue"](view["name"]))}">all '
                         f'{view["waiting"]} waiting →</a></p>')
        parts.append("</section>")
    return _page(request, f"{config.title}: queues", "".join(parts), {"mode": "static"}, user)


def queue_page(request: Request, config: WebConfig, user: str, view: dict[str, Any],
               waiting: list[dict[str, Any]], after: str | None, first: bool) -> str:
    base = _base(request)
    links = _links(base)
    here = links["queue"](view["name"])
    pager = "".join([
        f'<a href="{esc(here)}">← first page</a> ' if not first else "",
        f'<a id="gf-next" href="{esc(here)}?{esc(urllib.parse.urlencode({"after": after}))}">'
        "next page →</a>" if after else ""])
    body = (f"<h1>Queue {esc(view['name'])}</h1>"
            + operating.queues_table([view], queue=links["queue"], members=links["members"])
            + "<h2>Waiting for admission, in admission order</h2>"
            + operating.waiting_table(waiting, instance=links["instance"], name=view["name"])
            + f'<div class="gf-pager">{pager}</div>')
    return _page(request, f"{config.title}: queue {view['name']}", body, {"mode": "static"},
                 user)
