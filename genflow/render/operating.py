"""What the console's schedules and queues pages and the static report show of a
store's schedules and queues, as plain data and as HTML tables: one view, two pages.

* `schedule_view(info, now)`: a schedule's definition and where it stands (its
  next fire times, its last tick and the instance that tick started);
* `queue_view(record, waiting, running)`: a queue's limits and its counts;
  `waiting_view(entry, position)`: one instance waiting in it;
* `schedules_table`, `queues_table`, `waiting_table`: those views as static
  HTML tables (every text escaped), drawn the same by the console (with links
  to its pages and the schedule actions' buttons) and the report (links within
  the page). The tables need no script; the console's buttons do (`gf.js`
  confirms each action, then posts it with the page's CSRF token).

The JSON API answers the same dicts (`genflow.web`), so a page, the report and
an outside system read one shape.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genflow.engine import Engine
    from genflow.schedules import ScheduleInfo
    from genflow.stores.scheduling import QueueEntry, QueueRecord, ScheduleRecord

__all__ = ["MAX_FIRE_TIMES", "queue_view", "queues_data", "queues_table", "record_view",
           "schedule_view",
           "schedules_data", "schedules_table", "waiting_table", "waiting_view"]

#: the most fire times a schedule's view lists
MAX_FIRE_TIMES = 100
#: the fire times the pages show per schedule
FIRE_TIMES = 3

Link = Callable[[str], "str | None"]
esc = html.escape


def schedule_view(info: ScheduleInfo, now: _dt.datetime, *, fire_times: int = 5
                  ) -> dict[str, Any]:
    """A schedule as the pages and the API show it."""
    s = info.schedule
    if info.paused:
        state = "paused"
    elif info.due_at is None:
        state = "ended"
    else:
        state = "active"
    return {
        "id": s.id, "workflow": s.workflow, "spec": s.spec_text, "cron": s.cron,
        "every": _seconds(s.every), "timezone": s.timezone, "paused": info.paused,
        "state": state, "catchup": s.catchup.value, "catchup_window": _seconds(s.window),
        "overlap": s.overlap.value, "jitter": _seconds(s.jitter), "queue": s.queue,
        "priority": s.priority, "factory": s.factory, "start": _iso(s.start),
        "end": _iso(s.end), "deadline": _seconds(s.deadline),
        "next_tick": _iso(info.next_tick), "due_at": _iso(info.due_at),
        "next_fire_times": [_iso(t) for t in info.next_fire_times(
            max(0, min(fire_times, MAX_FIRE_TIMES)))],
        "last_tick": _iso(info.last_tick), "last_instance": info.last_instance,
        "fired": info.fired, "skipped": info.skipped, "error": info.error,
        "version": info.version, "data": _plain(s.data), "as_of": _iso(now),
    }


def queue_view(record: QueueRecord, waiting: int, running: int) -> dict[str, Any]:
    """A queue's limits and counts, as the pages and the API show them."""
    return {"name": record.name, "concurrency": record.concurrency,
            "per_key": record.per_key, "rate": record.rate, "period": record.period,
            "limits": limits_text(record), "waiting": waiting, "running": running,
            "updated_at": _iso(record.updated_at)}


def waiting_view(entry: QueueEntry, position: int) -> dict[str, Any]:
    """One instance waiting for admission: its place."""
    return {"id": entry.instance_id, "position": position, "key": entry.key,
            "priority": entry.priority, "enqueued_at": _iso(entry.enqueued_at)}


def limits_text(record: QueueRecord) -> str:
    """`at most 5 running, 1 per key, 10 per 60 s` (or `no limit`)."""
    parts = []
    if record.concurrency is not None:
        parts.append(f"at most {record.concurrency} running")
    if record.per_key is not None:
        parts.append(f"{record.per_key} per key")
    if record.rate is not None and record.period is not None:
        parts.append(f"{record.rate} admitted per {record.period:g} s")
    return ", ".join(parts) or "no limit"


def record_view(record: ScheduleRecord, now: _dt.datetime, *, fire_times: int = 5
                ) -> dict[str, Any]:
    """A stored schedule's view; a row whose definition this genflow cannot read
    (written by another version, damaged) is shown as such, with the reason, and
    the page around it still shows."""
    from genflow.schedules import info_of

    try:
        return schedule_view(info_of(record), now, fire_times=fire_times)
    except Exception as exc:
        reason = f"unreadable schedule: {type(exc).__name__}: {exc}"
    return {
        "id": record.id, "workflow": record.workflow, "spec": "", "cron": None,
        "every": None, "timezone": "", "paused": record.paused, "state": "unreadable",
        "catchup": "", "catchup_window": None, "overlap": "", "jitter": 0.0, "queue": None,
        "priority": 0, "factory": None, "start": None, "end": None, "deadline": None,
        "next_tick": _iso(record.next_tick), "due_at": _iso(record.due_at),
        "next_fire_times": [], "last_tick": _iso(record.last_tick),
        "last_instance": record.last_instance, "fired": record.fired,
        "skipped": record.skipped, "error": reason, "version": record.version, "data": None,
        "as_of": _iso(now),
    }


def schedules_data(engine: Engine, *, fire_times: int = FIRE_TIMES) -> list[dict[str, Any]]:
    """Every schedule's view (the store lists schedules by id)."""
    now = engine.clock()
    return [record_view(record, now, fire_times=fire_times)
            for record in engine.store.list_schedules()]


def queues_data(engine: Engine, *, waiting: int = 0) -> list[dict[str, Any]]:
    """Every queue's view; with `waiting`, the first that many of its waiting
    instances too (`"first_waiting"`, and `"more_waiting"` when there are more)."""
    out = []
    for record in engine.queues.list():
        held, running = engine.queues.counts(record.name)
        view = queue_view(record, held, running)
        if waiting:
            page, after = engine.queues.waiting(record.name, limit=waiting)
            view["first_waiting"] = [waiting_view(e, p) for e, p in page]
            view["more_waiting"] = after is not None
        out.append(view)
    return out


# -- HTML -------------------------------------------------------------------------------


def _a(href: str | None, text: str, **attributes: str) -> str:
    extra = "".join(f' {k.rstrip("_")}="{esc(v)}"' for k, v in attributes.items())
    return f'<a href="{esc(href)}"{extra}>{esc(text)}</a>' if href else esc(text)


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    moment = _dt.datetime.fromisoformat(iso).astimezone(_dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def schedules_table(views: Sequence[dict[str, Any]], *, instance: Link,
                    started: Link, actions: bool = False, fire_times: int = FIRE_TIMES) -> str:
    """The schedules as a table: `instance(id)` links an instance, `started(id)` the
    list of the instances a schedule started; `actions` adds pause / resume /
    trigger buttons (the console's)."""
    if not views:
        return '<p class="gf-empty" id="gf-no-schedules">No schedules.</p>'
    head = ["schedule", "workflow", "when", "time zone", "state", "catch-up", "overlap",
            "next fire times", "last tick", "started", *(["actions"] if actions else [])]
    rows = []
    for v in views:
        policy = v["catchup"] + (f" within {v['catchup_window']:g} s"
                                 if v["catchup_window"] is not None else "")
        fires = "<br>".join(esc(_when(t)) for t in v["next_fire_times"][:fire_times])
        state = esc(v["state"]) + (f'<br><span class="gf-error">{esc(v["error"])}</span>'
                                   if v["error"] else "")
        last = v["last_instance"]
        cells = [
            f"<strong>{esc(v['id'])}</strong>", esc(v["workflow"]),
            esc(v["spec"]) + (f"<br><small>on queue {esc(v['queue'])}</small>"
                              if v["queue"] else ""),
            esc(v["timezone"]), state, esc(policy),
            esc(v["overlap"]) + (f"<br><small>deadline {v['deadline']:g} s</small>"
                                 if v["deadline"] is not None else ""), fires,
            esc(_when(v["last_tick"])) + ("<br>" + _a(instance(last), last, class_="gf-last")
                                          if last else ""),
            _a(started(v["id"]), f"{v['fired']} fired", class_="gf-started")
            + (f", {v['skipped']} skipped" if v["skipped"] else ""),
        ]
        if actions:
            cells.append(_buttons(v))
        rows.append(f'<tr data-schedule="{esc(v["id"])}" data-state="{esc(v["state"])}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ('<table class="gf-table" id="gf-schedules"><thead><tr>'
            + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _buttons(view: dict[str, Any]) -> str:
    sid = view["id"]
    toggle = ("resume", f"Resume schedule {sid}? It fires again from its next tick after "
              "now (the ticks missed while paused are not caught up).") if view["paused"] else (
        "pause", f"Pause schedule {sid}? No tick fires until it is resumed.")
    buttons = [toggle, ("trigger", f"Trigger schedule {sid} now? One tick fires now, paused "
                        f"or not, under its overlap policy ({view['overlap']}).")]
    return "".join(
        f'<button type="button" class="gf-schedule-action" data-action="{action}" '
        f'data-schedule="{esc(sid)}" data-confirm="{esc(question)}">{action}…</button>'
        for action, question in buttons)


def queues_table(views: Sequence[dict[str, Any]], *, queue: Link, members: Link) -> str:
    """The queues as a table: `queue(name)` links a queue's page (its waiting
    instances), `members(name)` the list of its instances."""
    if not views:
        return '<p class="gf-empty" id="gf-no-queues">No queues.</p>'
    head = ["queue", "concurrency", "per key", "rate", "limits", "running", "waiting"]
    rows = []
    for v in views:
        rate = f"{v['rate']} per {v['period']:g} s" if v["rate"] is not None else ""
        cells = [_a(queue(v["name"]), v["name"], class_="gf-queue"),
                 esc("" if v["concurrency"] is None else str(v["concurrency"])),
                 esc("" if v["per_key"] is None else str(v["per_key"])), esc(rate),
                 esc(v["limits"]), _a(members(v["name"]), str(v["running"])),
                 esc(str(v["waiting"]))]
        rows.append(f'<tr data-queue="{esc(v["name"])}" data-running="{v["running"]}" '
                    f'data-waiting="{v["waiting"]}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ('<table class="gf-table" id="gf-queues"><thead><tr>'
            + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def waiting_table(rows: Sequence[dict[str, Any]], *, instance: Link, name: str = "") -> str:
    """A queue's waiting instances, in admission order, with their positions."""
    if not rows:
        return '<p class="gf-empty gf-no-waiting">Nothing waits for admission.</p>'
    body = "".join(
        f'<tr data-id="{esc(r["id"])}" data-position="{r["position"]}">'
        f'<td>{r["position"]}</td><td>{_a(instance(r["id"]), r["id"], class_="gf-open")}</td>'
        f'<td>{esc(r["key"])}</td><td>{r["priority"]}</td><td>{esc(_when(r["enqueued_at"]))}'
        "</td></tr>" for r in rows)
    ident = f' data-queue="{esc(name)}"' if name else ""
    return (f'<table class="gf-table gf-waiting"{ident}><thead><tr><th>position</th>'
            "<th>instance</th><th>key</th><th>priority</th><th>queued at</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _seconds(delta: _dt.timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds()


def _plain(value: Any) -> Any:
    """`value` as JSON carries it (anything else as its text)."""
    return json.loads(json.dumps(value, default=str))


def _iso(moment: _dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
