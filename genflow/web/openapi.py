"""The HTTP API's OpenAPI 3.1 description, generated from the installed workflows.

The generic routes take any JSON. Beside them, each workflow known to the
server gets typed operations whose schemas come from its code
(`genflow.web.catalog`, `genflow.web.schema`): starting it takes its data's
fields, and each of its events has an operation whose request body is the
schema of the handler's payload annotation. A client generated from this
description (openapi-generator, oapi-codegen...) gets one typed method per
event.
"""

from __future__ import annotations

import re
from typing import Any

from genflow.state import WorkflowStatus
from genflow.web.catalog import WorkflowInfo
from genflow.web.schema import SchemaBuilder

__all__ = ["ROUTES", "openapi"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_INSTANCE = {"$ref": "#/components/schemas/Instance"}
#: a start's deadline (`Engine.start(deadline=...)`)
_DEADLINE: dict[str, Any] = {
    "type": ["number", "string"],
    "description": "cancel the instance if it has not finished by then: seconds from the "
                   "start (above 0), or an ISO 8601 time with its zone; refused (422) when "
                   "not later than now. An instance that exists keeps its own"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string",
       "minLength": 1}, "description": "the instance's id"}

#: (method, path, operation id, summary): the routes every server has, in the
#: order the docs list them (docs/console.md's reference is checked against it).
ROUTES: list[tuple[str, str, str, str]] = [
    ("get", "/api/v1/instances", "list_instances",
     "List instances: filters and keyset paging"),
    ("post", "/api/v1/instances", "start_instance", "Start an instance of any workflow"),
    ("get", "/api/v1/instances/{id}", "get_instance", "One instance: data, threads, waits"),
    ("get", "/api/v1/instances/{id}/journal", "get_journal", "An instance's journal"),
    ("post", "/api/v1/instances/{id}/events/{event}", "send_event",
     "Deliver an event (any JSON payload)"),
    ("post", "/api/v1/instances/{id}/cancel", "cancel_instance", "Cancel an instance"),
    ("post", "/api/v1/instances/{id}/retry", "retry_instance", "Make a failed instance due again"),
    ("post", "/api/v1/instances/{id}/move", "move_thread",
     "Repair: make a statement a thread's next stop"),
    ("post", "/api/v1/callbacks/{token}", "deliver_callback",
     "Answer one wait through a signed callback URL"),
    ("get", "/api/v1/workflows", "list_workflows", "The workflows this server runs, with events"),
    ("get", "/api/v1/openapi.json", "openapi", "This description"),
    ("get", "/api/v1/schedules", "list_schedules",
     "Every schedule: its definition, next fire times and last tick"),
    ("post", "/api/v1/schedules", "add_schedule",
     "Create a schedule that starts a workflow at every tick"),
    ("get", "/api/v1/schedules/{id}", "get_schedule", "One schedule"),
    ("delete", "/api/v1/schedules/{id}", "delete_schedule",
     "Delete a schedule: the instances it started stay"),
    ("patch", "/api/v1/schedules/{id}", "update_schedule",
     "Change a schedule in place: what is not given stays, so do its counts"),
    ("post", "/api/v1/schedules/{id}/pause", "pause_schedule",
     "Pause a schedule: no tick fires until it is resumed"),
    ("post", "/api/v1/schedules/{id}/resume", "resume_schedule",
     "Resume a schedule from its next tick after now"),
    ("post", "/api/v1/schedules/{id}/trigger", "trigger_schedule",
     "Fire one tick now, under the overlap policy"),
    ("get", "/api/v1/queues", "list_queues", "Every queue: its limits, running and waiting"),
    ("get", "/api/v1/queues/{name}", "get_queue",
     "One queue and its waiting instances in admission order, paged"),
]


def _responses(ok: dict[str, Any] | None, *codes: int, created: bool = False
               ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    content = {"application/json": {"schema": ok or {"type": "object"}}}
    if created:  # a start: 201 when it created the instance, 200 when it was there
        out["201"] = {"description": "created", "content": content,
                      "headers": {"Location": {
                          "description": "the instance's URL (GET it for its status)",
                          "schema": {"type": "string"}}}}
        out["200"] = {"description": "an instance with this id existed (if_exists: "
                                     "return): it, untouched; nothing created",
                      "content": content}
    else:
        out["200"] = {"description": "done", "content": content}
    words = {400: "the body is not JSON", 401: "no valid token",
             403: "a forged or altered callback token",
             404: "no such instance, workflow, schedule or queue",
             409: "refused in the present state of the instance or schedule (nothing "
                  "changed)",
             410: "the wait this callback answered is over",
             413: "the body is over the server's size limit",
             422: "the input does not fit (nothing changed)"}
    for code in codes:
        out[str(code)] = {"description": words[code],
                          "content": {"application/json": {"schema": _ERROR}}}
    return out


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def openapi(workflows: list[WorkflowInfo], *, title: str = "genflow",
            server_url: str = "/") -> dict[str, Any]:
    """The OpenAPI document for a server running `workflows`."""
    builder = SchemaBuilder()
    statuses = [s.value for s in WorkflowStatus]
    paths: dict[str, Any] = {}

    def op(method: str, path: str, **spec: Any) -> None:
        # every route refuses a query parameter (or body key) it does not take
        # (`genflow.web.inputs.Takes`)
        spec["responses"].setdefault("422", _responses(None, 422)["422"])
        paths.setdefault(path, {})[method] = spec

    listing = {"type": "object", "required": ["items", "next"], "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
        "next": {"type": ["string", "null"], "description": "`after` for the next page"}}}
    op("get", "/api/v1/instances", operationId="list_instances",
       summary=ROUTES[0][3], parameters=[
           {"name": "workflow", "in": "query", "schema": {"type": "string"}},
           {"name": "status", "in": "query", "schema": {"type": "string", "enum": statuses}},
           {"name": "waiting", "in": "query", "schema": {"type": "string"},
            "description": "only instances waiting for this event"},
           {"name": "failed", "in": "query", "schema": {"type": "boolean"},
            "description": "only failed instances"},
           {"name": "q", "in": "query", "schema": {"type": "string"},
            "description": "only ids that start with this"},
           {"name": "schedule", "in": "query", "schema": {"type": "string"},
            "description": "only the instances this schedule started (ids `ID@tick`)"},
           {"name": "queue", "in": "query", "schema": {"type": "string"},
            "description": "only the instances this queue holds: running, then waiting in "
                           "admission order (its own `next`)"},
           {"name": "after", "in": "query", "schema": {"type": "string"},
            "description": "the `next` of the previous page"},
           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                       "maximum": 500}}],
       responses=_responses(listing, 401, 404, 422))
    start = {"type": "object", "required": ["workflow"], "additionalProperties": False,
             "properties": {
        "workflow": {"type": "string"}, "data": {"type": "object"},
        "id": {"type": "string", "minLength": 1}, "run": {"type": "boolean"},
        "if_exists": {"type": "string", "enum": ["raise", "return"],
                      "description": "an instance with this id exists: 409 (raise), or "
                                     "answer 200 with it, untouched (return); 201 when "
                                     "the start created it"},
        "deadline": _DEADLINE,
        "queue": {"type": "string", "description": "wait for this queue's admission "
                  "(genflow.queues; 404 when no queue of that name is defined)"},
        "priority": {"type": "integer", "minimum": -2**63, "maximum": 2**63 - 1,
                     "description": "its place in the queue's admission: lower first "
                                    "(needs `queue`)"},
        "send": {"type": "object", "required": ["event"], "additionalProperties": False,
                 "description": "signal-with-start: deliver this event to instance `id`, "
                                "starting it from `data` if it does not exist (in one write); "
                                "answered as a send",
                 "properties": {"event": {"type": "string"}, "payload": {},
                                "thread": {"type": "string"}, "keep": {"type": "boolean"}}}}}
    op("post", "/api/v1/instances", operationId="start_instance", summary=ROUTES[1][3],
       requestBody=_body(start), responses=_responses(_INSTANCE, 400, 401, 404, 409, 413, 422,
                                                       created=True))
    op("get", "/api/v1/instances/{id}", operationId="get_instance", summary=ROUTES[2][3],
       parameters=[_ID], responses=_responses(_INSTANCE, 401, 404))
    op("get", "/api/v1/instances/{id}/journal", operationId="get_journal",
       summary=ROUTES[3][3], parameters=[_ID],
       responses=_responses({"type": "object", "properties": {"entries": {"type": "array"}}},
                            401, 404))
    event_param = {"name": "event", "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1}}
    thread_param = {"name": "thread", "in": "query", "schema": {"type": "string"},
                    "description": "the waiting thread, when several wait for the event"}
    keep_param = {"name": "keep", "in": "query", "schema": {"type": "boolean"},
                  "description": "when no thread waits for the event now: keep it until one "
                                 "does (true), or refuse it (false); default: as the event "
                                 "declares (kept)"}
    sent = {"type": "object", "required": ["output", "instance"],
            "properties": {"output": {}, "instance": _INSTANCE, "kept": {
                "type": ["object", "null"],
                "description": "set when the event was kept in the instance's mailbox "
                               "rather than delivered (`output` is then null)",
                "properties": {"event": {"type": "string"}, "seq": {"type": "integer"},
                               "kept": {"type": "integer"}}}}}
    op("post", "/api/v1/instances/{id}/events/{event}", operationId="send_event",
       summary=ROUTES[4][3], parameters=[_ID, event_param, thread_param, keep_param],
       requestBody=_body({}, required=False),
       responses=_responses(sent, 400, 401, 404, 409, 413, 422))
    for name, what in (("cancel", 5), ("retry", 6)):
        op("post", f"/api/v1/instances/{{id}}/{name}", operationId=ROUTES[what][2],
           summary=ROUTES[what][3], parameters=[_ID],
           responses=_responses(_INSTANCE, 401, 404, 409))
    move = {"type": "object", "required": ["statement"], "additionalProperties": False,
            "properties": {
        "thread": {"type": "string"}, "statement": {"type": "string"}}}
    op("post", "/api/v1/instances/{id}/move", operationId="move_thread", summary=ROUTES[7][3],
       parameters=[_ID], requestBody=_body(move),
       responses=_responses(_INSTANCE, 400, 401, 404, 409, 413, 422))
    op("post", "/api/v1/callbacks/{token}", operationId="deliver_callback",
       summary=ROUTES[8][3], security=[],
       parameters=[{"name": "token", "in": "path", "required": True,
                    "schema": {"type": "string"}}],
       requestBody=_body({}, required=False),
       responses=_responses(sent, 400, 403, 404, 409, 410, 413, 422))
    op("get", "/api/v1/workflows", operationId="list_workflows", summary=ROUTES[9][3],
       responses=_responses({"type": "object"}, 401))
    op("get", "/api/v1/openapi.json", operationId="openapi", summary=ROUTES[10][3],
       responses=_responses({"type": "object"}, 401))

    _operating(op)

    for info in workflows:
        slug = _slug(info.name)
        data = builder.schema(info.cls)
        op("post", f"/api/v1/workflows/{info.name}/instances",
           operationId=f"start_{slug}", summary=f"Start a {info.name}",
           tags=[info.name], parameters=[
               {"name": "id", "in": "query", "schema": {"type": "string", "minLength": 1}},
               {"name": "run", "in": "query", "schema": {"type": "boolean"}},
               {"name": "if_exists", "in": "query",
                "schema": {"type": "string", "enum": ["raise", "return"]},
                "description": "an instance with this id exists: 409 (raise), or answer "
                               "200 with it, untouched (return); 201 when the start "
                               "created it"},
               {"name": "deadline", "in": "query", "schema": {"type": "string"},
                "description": _DEADLINE["description"]}],
           requestBody=_body(data, required=False),
           responses=_responses(_INSTANCE, 400, 401, 409, 413, 422, created=True))
        for event in info.events:
            body = builder.schema(event.payload_type) if event.takes_payload \
                else {"type": "null"}
            op("post", f"/api/v1/workflows/{info.name}/instances/{{id}}/events/{event.name}",
               operationId=f"send_{slug}_{_slug(event.name)}",
               summary=f"{info.name}: deliver {event.name!r}", tags=[info.name],
               description=f"Handled by `{event.handler}`.",
               parameters=[_ID, thread_param, keep_param],
               requestBody=_body(body, required=event.takes_payload),
               responses=_responses(sent, 400, 401, 404, 409, 413, 422))

    components = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}},
        "Row": {"type": "object", "required": ["id", "workflow", "status"], "properties": {
            "id": {"type": "string"}, "workflow": {"type": "string"},
            "status": {"type": "string", "enum": statuses},
            "waiting_for": {"type": "array", "items": {"type": "string"}},
            "wake_at": {"type": ["string", "null"]}, "updated_at": {"type": ["string", "null"]},
            "error": {"type": "string"}, "attempts": {"type": "integer"},
            "version": {"type": "integer"}}},
        "Instance": {"type": "object", "required": ["id", "workflow", "status", "version"],
                     "properties": {
            "id": {"type": "string"}, "workflow": {"type": "string"},
            "status": {"type": "string", "enum": statuses}, "version": {"type": "integer"},
            "attempts": {"type": "integer"}, "error": {"type": "string"},
            "wake_at": {"type": ["string", "null"]}, "updated_at": {"type": ["string", "null"]},
            "deadline": {"type": ["string", "null"], "description": "when a worker cancels "
                         "it unless it has finished (`deadline` of its start)"},
            "waiting_for": {"type": "array", "items": {"type": "string"}},
            "data": {}, "threads": {"type": "array", "items": {"type": "object"}},
            "mailbox": {"type": "object", "description": "events kept until a thread waits "
                        "for them (oldest first), and those set aside undelivered",
                        "properties": {"kept": {"type": "array"},
                                       "undelivered": {"type": "array"}}},
            "queue": {"type": ["object", "null"], "description": "(a get and a start) where "
                      "it stands in its queue: `name`, `key`, `priority`, `position` (1: "
                      "admitted next; 0: admitted), `admitted`, `text`; null: on none",
                      "properties": {"name": {"type": "string"}, "key": {"type": "string"},
                                     "priority": {"type": "integer"},
                                     "position": {"type": "integer"},
                                     "admitted": {"type": "boolean"},
                                     "text": {"type": "string"}}}}},
        **_OPERATING_SCHEMAS,
        **builder.components,
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{title} HTTP API", "version": "1",
                 "description": "Start instances, deliver events, read and repair them; "
                                "read, change, pause, resume and trigger schedules; read queues. "
                                "Every refusal is a 4xx with the error's type and message; "
                                "a refused request changes nothing."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"token": []}],
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


# -- schedules and queues ---------------------------------------------------------------------

_SCHEDULE = {"$ref": "#/components/schemas/Schedule"}
_QUEUE = {"$ref": "#/components/schemas/Queue"}
_TIME = {"type": ["string", "null"], "description": "ISO 8601"}
_NUMBER = {"type": ["number", "null"]}
_OPERATING_SCHEMAS: dict[str, Any] = {
    "Schedule": {"type": "object", "required": ["id", "workflow", "spec", "paused", "state",
                                                "next_fire_times"], "properties": {
        "id": {"type": "string"}, "workflow": {"type": "string"},
        "spec": {"type": "string", "description": "`cron '0 2 * * *' (UTC)` / `every 0:15:00`"},
        "cron": {"type": ["string", "null"]},
        "every": {**_NUMBER, "description": "the interval in seconds"},
        "timezone": {"type": "string"}, "paused": {"type": "boolean"},
        "state": {"type": "string", "enum": ["active", "paused", "ended"]},
        "catchup": {"type": "string", "enum": ["skip", "all", "latest"]},
        "catchup_window": {**_NUMBER, "description": "seconds (null: no window)"},
        "overlap": {"type": "string", "enum": ["skip", "allow", "cancel"]},
        "jitter": {"type": "number"}, "queue": {"type": ["string", "null"]},
        "priority": {"type": "integer"}, "factory": {"type": ["string", "null"]},
        "start": _TIME, "end": _TIME,
        "deadline": {**_NUMBER, "description": "each started instance's deadline, in seconds "
                     "from its start (null: none)"},
        "next_tick": _TIME, "due_at": _TIME,
        "next_fire_times": {"type": "array", "items": {"type": "string"}},
        "last_tick": _TIME, "last_instance": {"type": ["string", "null"]},
        "fired": {"type": "integer"}, "skipped": {"type": "integer"},
        "error": {"type": "string"}, "version": {"type": "integer"}, "data": {},
        "as_of": _TIME}},
    "Queue": {"type": "object", "required": ["name", "waiting", "running"], "properties": {
        "name": {"type": "string"}, "concurrency": {"type": ["integer", "null"]},
        "per_key": {"type": ["integer", "null"]}, "rate": {"type": ["integer", "null"]},
        "period": {**_NUMBER, "description": "the rate's period in seconds"},
        "limits": {"type": "string"}, "waiting": {"type": "integer"},
        "running": {"type": "integer"}, "updated_at": _TIME}},
    "Waiting": {"type": "object", "required": ["id", "position"], "properties": {
        "id": {"type": "string"}, "position": {"type": "integer", "minimum": 1},
        "key": {"type": "string"}, "priority": {"type": "integer"},
        "enqueued_at": _TIME}},
}


def _operating(op: Any) -> None:
    """The schedules' and queues' operations (`ROUTES` from list_schedules on)."""
    summary = {operation: text for _, _, operation, text in ROUTES}
    sid = {"name": "id", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1}, "description": "the schedule's id"}
    fire_times = {"name": "next", "in": "query", "description": "how many next fire times",
                  "schema": {"type": "integer", "minimum": 0, "maximum": 100}}
    items = {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": _SCHEDULE}}}
    op("get", "/api/v1/schedules", operationId="list_schedules", tags=["schedules"],
       summary=summary["list_schedules"], parameters=[fire_times],
       responses=_responses(items, 401, 422))
    op("get", "/api/v1/schedules/{id}", operationId="get_schedule", tags=["schedules"],
       summary=summary["get_schedule"], parameters=[sid, fire_times],
       responses=_responses(_SCHEDULE, 401, 404, 422))
    seconds, maybe = {"type": "number", "minimum": 0}, {"type": ["number", "null"],
                                                       "minimum": 0}
    changes: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": {
        "data": {"type": "object", "description": "the workflow's fields (all of them: "
                 "those not given take their defaults); another workflow is refused"},
        "cron": {"type": "string", "description": "replaces `every`"},
        "every": {**seconds, "description": "seconds; replaces `cron`"},
        "timezone": {"type": "string"}, "factory": {"type": ["string", "null"]},
        "jitter": {**seconds, "description": "seconds"},
        "catchup": {"type": "string", "enum": ["skip", "all", "latest"]},
        "catchup_window": {**maybe, "description": "seconds (null: the policy's default)"},
        "overlap": {"type": "string", "enum": ["skip", "allow", "cancel"]},
        "queue": {"type": ["string", "null"]}, "priority": {"type": "integer"},
        "start": _TIME, "end": _TIME, "paused": {"type": "boolean"},
        "deadline": {"type": ["number", "null"], "exclusiveMinimum": 0,
                     "description": "seconds from each started instance's start, after "
                     "which it is cancelled (null: none)"}}}
    added = {**changes, "required": ["id", "workflow"], "properties": {
        "id": {"type": "string", "minLength": 1, "description": "the schedule's id"},
        "workflow": {"type": "string", "description": "the registered workflow it starts"},
        **changes["properties"],
        "data": {"type": "object", "description": "the workflow's fields (those not given "
                 "take their defaults)"}}}
    created = _responses(_SCHEDULE, 400, 401, 404, 409, 413, 422)
    created["201"] = {**created.pop("200"), "description": "created", "headers": {
        "Location": {"description": "the schedule's URL", "schema": {"type": "string"}}}}
    op("post", "/api/v1/schedules", operationId="add_schedule", tags=["schedules"],
       summary=summary["add_schedule"],
       description="`Schedules.add`: `cron` or `every`, one of them; the other keys as "
                   "`PATCH` takes them. Refused as `Schedules.add` refuses, nothing written; "
                   "an id in use is a 409, the schedule there untouched.",
       requestBody=_body(added), responses=created)
    op("delete", "/api/v1/schedules/{id}", operationId="delete_schedule", tags=["schedules"],
       summary=summary["delete_schedule"], parameters=[sid],
       responses=_responses({"type": "object", "required": ["deleted"], "properties": {
           "deleted": {"type": "string", "description": "the id of the schedule deleted"}}},
           401, 404))
    op("patch", "/api/v1/schedules/{id}", operationId="update_schedule", tags=["schedules"],
       summary=summary["update_schedule"], parameters=[sid],
       description="`Schedules.update`: the keys given change, the others stay; the id, "
                   "`fired`, `skipped` and the last run stay, the next tick is computed "
                   "again from now. Refused as `Schedules.add` refuses, nothing written.",
       requestBody=_body(changes), responses=_responses(_SCHEDULE, 400, 401, 404, 413, 422))
    for action in ("pause", "resume"):
        op("post", f"/api/v1/schedules/{{id}}/{action}", operationId=f"{action}_schedule",
           tags=["schedules"], summary=summary[f"{action}_schedule"], parameters=[sid],
           responses=_responses(_SCHEDULE, 401, 404, 409))
    triggered = {"type": "object", "required": ["schedule", "started"], "properties": {
        "schedule": _SCHEDULE, "started": {
            "type": ["string", "null"],
            "description": "the instance the tick started (null: the overlap policy skipped it)"}}}
    op("post", "/api/v1/schedules/{id}/trigger", operationId="trigger_schedule",
       tags=["schedules"], summary=summary["trigger_schedule"], parameters=[sid],
       responses=_responses(triggered, 401, 404, 409, 422))
    queues = {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": _QUEUE}}}
    op("get", "/api/v1/queues", operationId="list_queues", tags=["queues"],
       summary=summary["list_queues"], responses=_responses(queues, 401))
    one = {"allOf": [_QUEUE, {"type": "object", "required": ["waiting_instances", "next"],
                              "properties": {
        "waiting_instances": {"type": "array", "items": {"$ref": "#/components/schemas/Waiting"}},
        "next": {"type": ["string", "null"], "description": "`after` for the next page"}}}]}
    op("get", "/api/v1/queues/{name}", operationId="get_queue", tags=["queues"],
       summary=summary["get_queue"], parameters=[
           {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1}, "description": "the queue's name"},
           {"name": "after", "in": "query", "schema": {"type": "string"},
            "description": "the `next` of the previous page"},
           {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                       "maximum": 500}}],
       responses=_responses(one, 401, 404, 422))
