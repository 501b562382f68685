"""The JSON the API answers with for one instance, and the console's view of it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from genflow.codec import unstructure
from genflow.describe import describe
from genflow.render.views import instance_view, mailbox_view
from genflow.state import ThreadStatus

if TYPE_CHECKING:
    from genflow.engine import Engine, Instance
    from genflow.web.app import WebConfig

__all__ = ["instance_json", "plain", "queue_json", "view_of"]


def instance_json(instance: Instance) -> dict[str, Any]:
    """An instance as the API gives it: bookkeeping, data, threads and their waits."""
    state = instance.state
    return {
        "id": instance.id, "workflow": instance.workflow, "status": instance.status.value,
        "version": instance.version, "attempts": instance.attempts, "error": instance.error,
        "wake_at": _iso(instance.wake_at), "updated_at": _iso(instance.updated_at),
        "deadline": _iso(state.deadline),
        "waiting_for": sorted({e.event for t in state.threads for e in t.events
                               if t.status is ThreadStatus.WAITING_EVENT}),
        "data": plain(unstructure(instance.data)),
        "threads": [{"id": t.id, "stmt": t.stmt, "status": t.status.value, "pc": t.pc,
                     "since": _iso(t.since),
                     "events": [{"event": e.event, "status": e.status.value, "pc": e.req.pc,
                                 "due": _iso(e.due), "error": e.error} for e in t.events]}
                    for t in state.threads],
        "mailbox": mailbox_view(state),
    }


def queue_json(engine: Engine, instance_id: str) -> dict[str, Any] | None:
    """Where an instance stands in its queue (`Queues.place`), as the API gives it
    beside the instance: None when it is on none (any more)."""
    place = engine.queues.place(instance_id)
    if place is None:
        return None
    return {"name": place.queue, "key": place.key, "priority": place.priority,
            "position": place.position, "admitted": place.admitted_at is not None,
            "text": place.text()}


def view_of(config: WebConfig, instance_id: str) -> dict[str, Any]:
    """The console's view of one instance (`genflow.render.views.instance_view`)."""
    engine = config.engine
    instance = engine.get(instance_id)
    now = engine.clock()
    children = [(r.id, r.status) for r in engine.list(parent=instance_id)]
    outbox = engine.store.list_outbox(origin=instance_id)
    view = instance_view(instance, now=now, journal=engine.store.journal(instance_id),
                         diagrams=config.diagrams, children=children, outbox=outbox)
    place = engine.queues.place(instance_id)
    if place is not None:  # where it stands in its queue, in `genflow show`'s words
        view["queue"] = place.text()
        view["text"] = describe(instance.state, instance.data, now=now,
                                attempts=instance.attempts, error=instance.error,
                                wake_at=instance.wake_at, updated_at=instance.updated_at,
                                queue=place.text(), children=children, outbox=outbox)
    return view


def plain(value: Any) -> Any:
    """`value` as JSON carries it (anything else as its text)."""
    return json.loads(json.dumps(value, default=str))


def _iso(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat()
