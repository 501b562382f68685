"""The web application: the console's pages and the JSON HTTP API, one Starlette app.

`create_app(engine, access=..., secret=...)` builds it over an `Engine`, using
only the engine's public API (start, send, get, list, cancel, retry, move and
the store's list, count and journal). Engine calls run in Starlette's thread
pool: they block on the store, never on the event loop.

Pages (HTML, drawn by the shared script of `genflow.render.views`): the
instance list with filters and keyset paging, one instance (live: it polls its
view), the workflows. API: see `genflow.web.openapi.ROUTES`. Every refusal is
a `GenflowError` answered 4xx with its type and message (`genflow.web.errors`);
anything else is a bug, logged on the ``genflow.web`` logger and answered 500
without a traceback.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from genflow.codec import unstructure
from genflow.engine import Engine
from genflow.errors import (
    DuplicateInstanceError,
    GenflowError,
    InstanceNotFoundError,
    NotWaitingError,
    ScheduleError,
    StaleCallbackError,
    UnknownEventError,
    UnknownThreadError,
    WorkflowFinishedError,
)
from genflow.mailbox import Kept
from genflow.observe import fields, traced
from genflow.registry import registered
from genflow.render import operating
from genflow.render.svg import dot_program
from genflow.render.views import Diagrams, asset, marks_css
from genflow.state import checked_id
from genflow.web import pages
from genflow.web.access import Access, Sessions, TokenAccess
from genflow.web.catalog import WorkflowInfo, catalog
from genflow.web.errors import (
    AccessDeniedError,
    CallbackGoneError,
    NotFoundError,
    RequestError,
    status_for,
)
from genflow.web.inputs import (
    Takes,
    field,
    only,
    parse_json,
    read_body,
    read_fields,
    workflow_data,
)
from genflow.web.listing import MAX_LIMIT, Filters, list_rows
from genflow.web.openapi import openapi
from genflow.web.signing import CallbackSigner
from genflow.web.views import instance_json, queue_json, view_of
from genflow.web.views import plain as _plain

__all__ = ["WebConfig", "create_app", "takes_of"]

log = logging.getLogger("genflow.web")

#: The default limit of a request body (`genflow serve --max-body`).
MAX_BODY = 1 << 20
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
#: the limit of the login form's body (a token and a path)
_FORM_LIMIT = 16 * 1024
#: What a callback's delivery meets when its wait is over: answered 410 Gone.
_WAIT_OVER = (InstanceNotFoundError, StaleCallbackError, UnknownEventError, UnknownThreadError,
              NotWaitingError, WorkflowFinishedError)
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class WebConfig:
    """What the endpoints share: the engine, the access check and the server's keys."""

    def __init__(self, engine: Engine, access: Access, secret: bytes, *, max_body: int,
                 title: str, poll_ms: int, svg: bool, send_timeout: float,
                 callback_url: str):
        self.engine = engine
        self.access = access
        self.sessions = Sessions(secret)
        self.signer = CallbackSigner(secret, callback_url)
        self.max_body = max_body
        self.title = title
        self.poll_ms = poll_ms
        self.diagrams = Diagrams(svg=svg)
        self.send_timeout = send_timeout
        self._catalog: list[WorkflowInfo] | None = None

    def catalog(self) -> list[WorkflowInfo]:
        if self._catalog is None:
            known = self.engine.workflows if self.engine.workflows is not None else registered()
            self._catalog = catalog(known)
        return self._catalog

    def user(self, request: Request) -> str:
        """Who sent `request` (or `AccessDeniedError`); a change made with the session
        cookie must carry its CSRF header."""
        user = self.access(request)
        if user is not None:
            return user
        cookie = request.cookies.get(Sessions.cookie)
        user = self.sessions.user(cookie)
        if user is None or cookie is None:
            raise AccessDeniedError(
                "this route needs a token: send `Authorization: Bearer <token>`, or log in "
                "to the console at /login")
        if request.method not in _SAFE and not secrets.compare_digest(
                request.headers.get("x-genflow-csrf", ""), self.sessions.csrf(cookie)):
            raise AccessDeniedError("a change made with the console's session needs its "
                                    "X-Genflow-CSRF header: reload the page")
        return user


#: an endpoint's work, once its user is known ("" on a route without the access check)
Handler = Callable[[Request, "WebConfig", str], Awaitable[Response]]


def takes_of(route: Any) -> Takes | None:
    """What a route of `create_app`'s app takes (None: it was not declared with one)."""
    return getattr(getattr(route, "endpoint", None), "takes", None)


def create_app(engine: Engine, *, access: Access | None = None, token: str | None = None,
               secret: bytes | None = None, max_body: int = MAX_BODY,
               title: str = "genflow", poll_ms: int = 2000, svg: bool | None = None,
               send_timeout: float = 10.0, callback_url: str = "") -> Starlette:
    """The console and the API over `engine`.

    `access` is the check every route runs (`genflow.web.access`); `token` is
    the shorthand for `TokenAccess(token)`. One of them is required: the app
    never serves without a check (`LocalAccess` is the explicit opt-out).
    `secret` signs session cookies and callback URLs (default: random, so both
    die with the process). `callback_url` is the public URL callback URLs start
    with (`GENFLOW_WEB_URL`).
    """
    if access is None:
        if token is None:
            raise GenflowError("the console needs an access check: a token (GENFLOW_WEB_TOKEN, "
                               "--token-file) or an Access of your own; --insecure-local "
                               "serves without one, on loopback only")
        access = TokenAccess(token)
    config = WebConfig(engine, access, secret or secrets.token_bytes(32), max_body=max_body,
                       title=title, poll_ms=poll_ms,
                       svg=dot_program() is not None if svg is None else svg,
                       send_timeout=send_timeout, callback_url=callback_url)

    def route(path: str, fn: Handler, takes: Takes, *, methods: tuple[str, ...] = ("GET",),
              guard: bool = True, html: bool = False) -> Route:
        """The route `path` → `fn`: unless not `guard`ed, for a user the access check
        lets in (a page, `html`, sends the others to the login form); what it `takes`
        checked first (`Takes`: a mistyped parameter or key is refused, not ignored)."""
        what = f"{'/'.join(methods)} {path}"

        async def endpoint(request: Request) -> Response:
            # (an id's own "/" and "%" arrive still encoded: see _EncodedSlashes)
            request.scope["path_params"] = {
                name: urllib.parse.unquote(value) if isinstance(value, str) else value
                for name, value in request.path_params.items()}
            user = ""
            if guard:
                try:
                    user = config.user(request)
                except AccessDeniedError as exc:
                    if html and getattr(config.access, "login", False):
                        target = urllib.parse.quote(request.url.path)
                        return RedirectResponse(f"{_base(request)}/login?next={target}", 303)
                    return await _error_response(request, exc)
            only(request.query_params, takes.query, f"the query of {what}")
            if takes.body is not None and request.method not in _SAFE:
                limit = _FORM_LIMIT if takes.form else config.max_body
                request.state.fields = await read_fields(request, takes, limit, what)
            return await fn(request, config, user)

        endpoint.takes = takes  # type: ignore[attr-defined]  # (read by takes_of)
        return Route(path, endpoint, methods=list(methods))

    none = Takes()
    sends = Takes(query=("thread", "keep"), body=None)
    routes = [
        route("/", home, none, guard=False),
        route("/login", login_form, Takes(query=("next",)), guard=False),
        route("/login", login, Takes(body=("token", "next"), form=True), methods=("POST",),
              guard=False),
        route("/logout", logout, Takes(form=True), methods=("POST",), guard=False),
        route("/static/gf.js", static_js, none, guard=False),
        route("/static/gf.css", static_css, none, guard=False),
        route("/instances", page_instances, Takes(query=_LIST_PARAMETERS), html=True),
        route("/instances/{id}", page_instance, none, html=True),
        route("/workflows", page_workflows, none, html=True),
        route("/console/instances/{id}/view", console_view, none),
        route("/console/instances/{id}/send", console_send,
              Takes(body=("event", "payload", "thread")), methods=("POST",)),
        route("/console/instances/{id}/retry", console_retry, none, methods=("POST",)),
        route("/console/instances/{id}/cancel", console_cancel, none, methods=("POST",)),
        route("/console/instances/{id}/move", console_move,
              Takes(body=("thread", "statement")), methods=("POST",)),
        route("/api/v1/openapi.json", api_openapi, none),
        route("/api/v1/workflows", api_workflows, none),
        route("/api/v1/instances", api_list, Takes(query=_LIST_PARAMETERS)),
        route("/api/v1/instances", api_start,
              Takes(body=("workflow", "data", "id", "run", "if_exists", "send", "deadline",
                          "queue", "priority")),
              methods=("POST",)),
        route("/api/v1/instances/{id}", api_get, none),
        route("/api/v1/instances/{id}/journal", api_journal, none),
        route("/api/v1/instances/{id}/events/{event}", api_send, sends, methods=("POST",)),
        route("/api/v1/instances/{id}/cancel", api_cancel, none, methods=("POST",)),
        route("/api/v1/instances/{id}/retry", api_retry, none, methods=("POST",)),
        route("/api/v1/instances/{id}/move", api_move, Takes(body=("thread", "statement")),
              methods=("POST",)),
        route("/api/v1/workflows/{workflow}/instances", api_start_typed,
              Takes(query=("id", "run", "if_exists", "deadline"), body=None),
              methods=("POST",)),
        route("/api/v1/workflows/{workflow}/instances/{id}/events/{event}", api_send_typed,
              sends, methods=("POST",)),
        route("/api/v1/callbacks/{token}", api_callback, Takes(body=None), methods=("POST",),
              guard=False),
        *_operating_routes(route),
    ]
    app = Starlette(routes=routes, exception_handlers={
        GenflowError: _error_response, HTTPException: _http_error, Exception: _bug},
        middleware=[Middleware(_EncodedSlashes), Middleware(_SecurityHeaders)])
    app.state.config = config
    return app


class _EncodedSlashes:
    """Ids may hold "/" (a child's id is ``parent/name/index``): a client sends it as
    ``%2F`` inside one path segment, but the server hands the router a path already
    decoded, where that slash would split the segment. So the path is decoded again
    from the raw bytes, leaving ``%2F`` and ``%25`` encoded; the endpoints (`guarded`)
    decode each path parameter once, which gives back the id as it was sent."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw and b"%2" in raw.upper():
            text = raw.decode("latin-1").split("?", 1)[0]
            if urllib.parse.unquote(text) == scope["path"]:  # (not rewritten by a proxy)
                kept = re.sub("%(2[fF5])", "%25\\1", text)
                scope = {**scope, "path": urllib.parse.unquote(kept)}
        await self.app(scope, receive, send)


class _SecurityHeaders:
    """Headers on every response: no inline script, no framing, no sniffing, no caching
    (unless the response says otherwise)."""

    _ADD = [(b"content-security-policy", _CSP.encode()), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"), (b"cache-control", b"no-store")]

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in self._ADD if k not in present)]
            await send(message)

        await self.app(scope, receive, sending)


# -- errors ---------------------------------------------------------------------------------------


def _wants_html(request: Request) -> bool:
    path = request.url.path
    return "/api/" not in path and "/console/" not in path and \
        "text/html" in request.headers.get("accept", "")


async def _error_response(request: Request, exc: Exception) -> Response:
    status = status_for(exc)
    if status >= 500:
        return await _bug(request, exc)
    body = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    if _wants_html(request):
        return HTMLResponse(pages.error_page(request, status, type(exc).__name__, str(exc)),
                            status)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "NotFoundError", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    message = {404: f"no route {request.url.path!r}: see /api/v1/openapi.json",
               405: f"{request.method} is not allowed on {request.url.path!r}"}.get(
        exc.status_code, str(exc.detail))
    return JSONResponse({"error": {"type": kind, "message": message}}, exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _bug(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc,
              extra=fields(path=request.url.path))
    return JSONResponse({"error": {"type": "InternalError", "message":
                                   "the server failed unexpectedly (logged on genflow.web): "
                                   "this is a bug, please report it"}}, 500)


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _json(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status)


# -- static, login ------------------------------------------------------------------------------

_ASSETS: dict[str, str] = {}


def _asset(name: str) -> str:
    if name not in _ASSETS:
        _ASSETS[name] = asset(name) + ("\n" + marks_css() if name.endswith(".css") else "")
    return _ASSETS[name]


async def home(request: Request, config: WebConfig, user: str) -> Response:
    return RedirectResponse(f"{_base(request)}/instances", 303)


async def static_js(request: Request, config: WebConfig, user: str) -> Response:
    return Response(_asset("gf.js"), media_type="text/javascript",
                    headers={"Cache-Control": "max-age=300"})


async def static_css(request: Request, config: WebConfig, user: str) -> Response:
    return Response(_asset("gf.css"), media_type="text/css",
                    headers={"Cache-Control": "max-age=300"})


async def login_form(request: Request, config: WebConfig, user: str) -> Response:
    return HTMLResponse(pages.login_page(request, config.title,
                                         request.query_params.get("next", ""), ""))


async def login(request: Request, config: WebConfig, user: str) -> Response:
    form = _fields(request)
    token, target = form.get("token", ""), form.get("next", "")
    check = getattr(config.access, "user_of", None)
    found = check(token) if check is not None and token else None
    if found is None:
        return HTMLResponse(pages.login_page(request, config.title, target,
                                             "That token is not valid."), 401)
    if not target.startswith("/") or target.startswith("//"):
        target = f"{_base(request)}/instances"
    response = RedirectResponse(target, 303)
    response.set_cookie(Sessions.cookie, config.sessions.issue(found), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https",
                        path=f"{_base(request)}/", max_age=int(config.sessions.seconds))
    return response


async def logout(request: Request, config: WebConfig, user: str) -> Response:
    response = RedirectResponse(f"{_base(request)}/login", 303)
    response.delete_cookie(Sessions.cookie, path=f"{_base(request)}/")
    return response


# -- pages --------------------------------------------------------------------------------------


def _fields(request: Request) -> dict[str, Any]:
    """The body's fields, read and checked against the route's `Takes` by its endpoint."""
    fields: dict[str, Any] = request.state.fields
    return fields


def _csrf(request: Request, config: WebConfig) -> str:
    cookie = request.cookies.get(Sessions.cookie)
    return config.sessions.csrf(cookie) if cookie else ""


async def page_instances(request: Request, config: WebConfig, user: str) -> Response:
    filters = Filters.from_query(request.query_params)
    rows, after = await run_in_threadpool(list_rows, config.engine, filters)
    total = None
    if filters.counted():
        total = 0 if filters.names_nothing() else await run_in_threadpool(
            config.engine.store.count, workflow=filters.workflow,
            status=filters.store_status(), waiting=filters.waiting)
    return HTMLResponse(await run_in_threadpool(pages.list_page, request, config, user, filters,
                                                rows, after, total))


async def page_instance(request: Request, config: WebConfig, user: str) -> Response:
    view = await run_in_threadpool(view_of, config, request.path_params["id"])
    diagram = config.diagrams.get(view["diagram"]) if view.get("diagram") else None
    return HTMLResponse(pages.instance_page(request, config, user, view, diagram,
                                            _csrf(request, config)))


async def page_workflows(request: Request, config: WebConfig, user: str) -> Response:
    infos = await run_in_threadpool(config.catalog)
    return HTMLResponse(await run_in_threadpool(pages.workflows_page, request, config, user,
                                                infos))


async def console_view(request: Request, config: WebConfig, user: str) -> Response:
    return _json(await run_in_threadpool(view_of, config, request.path_params["id"]))


async def console_send(request: Request, config: WebConfig, user: str) -> Response:
    """An operator's delivery of an event from the console."""
    body = _fields(request)

    def run() -> tuple[dict[str, Any], str]:
        event = field(body, "event", str, required=True)
        payload, thread = body.get("payload"), field(body, "thread", str)
        config.engine.send(request.path_params["id"], event, payload, thread=thread,
                           timeout=config.send_timeout)
        return {"event": event, "thread": thread, "payload": payload}, f"sent {event!r}"

    return await _console_action(request, config, user, "send", run)


async def console_retry(request: Request, config: WebConfig, user: str) -> Response:
    def run() -> tuple[dict[str, Any], str]:
        config.engine.retry(request.path_params["id"], timeout=config.send_timeout)
        return {}, "due again: a worker runs its failed step"

    return await _console_action(request, config, user, "retry", run)


async def console_cancel(request: Request, config: WebConfig, user: str) -> Response:
    def run() -> tuple[dict[str, Any], str]:
        config.engine.cancel(request.path_params["id"], timeout=config.send_timeout)
        return {}, "cancelled"

    return await _console_action(request, config, user, "cancel", run)


async def console_move(request: Request, config: WebConfig, user: str) -> Response:
    body = _fields(request)

    def run() -> tuple[dict[str, Any], str]:
        thread = field(body, "thread", str, default="_main_")
        statement = field(body, "statement", str, required=True)
        config.engine.move(request.path_params["id"], thread, statement,
                           timeout=config.send_timeout)
        return {"thread": thread, "to": statement}, f"moved {thread} to {statement!r}"

    return await _console_action(request, config, user, "move", run)


async def _console_action(request: Request, config: WebConfig, user: str, action: str,
                          act: Callable[[], tuple[dict[str, Any], str]]) -> Response:
    """An operator's action from the console (confirmed in the page): done through
    the engine (`act`: what it did, and says), then recorded in the journal with who
    asked."""
    instance_id = request.path_params["id"]
    engine = config.engine

    def run() -> tuple[str, dict[str, Any]]:
        detail, message = act()
        engine.store.append_journal(instance_id, [("operator", {
            "action": action, "by": user, "via": "console", **detail,
            "what": detail.get("event") or detail.get("to") or ""})], engine.clock())
        return message, view_of(config, instance_id)

    message, view = await run_in_threadpool(run)
    return _json({"message": f"{instance_id}: {message}", "view": view})


# -- the JSON API -------------------------------------------------------------------------------


async def api_openapi(request: Request, config: WebConfig, user: str) -> Response:
    base = _base(request) or "/"
    return _json(openapi(await run_in_threadpool(config.catalog), title=config.title,
                         server_url=base))


async def api_workflows(request: Request, config: WebConfig, user: str) -> Response:
    infos = await run_in_threadpool(config.catalog)
    return _json({"workflows": [{"name": i.name, "problem": i.problem, "events": [
        {"name": e.name, "payload": e.takes_payload, "handler": e.handler} for e in i.events]}
        for i in infos]})


#: the list's query parameters (a mistyped one is refused, not ignored: `?stauts=failed`
#: would otherwise answer every instance)
_LIST_PARAMETERS = ("workflow", "status", "waiting", "failed", "q", "schedule", "queue",
                    "after", "limit")


async def api_list(request: Request, config: WebConfig, user: str) -> Response:
    filters = Filters.from_query(request.query_params)
    rows, after = await run_in_threadpool(list_rows, config.engine, filters)
    return _json({"items": rows, "next": after})


async def api_start(request: Request, config: WebConfig, user: str) -> Response:
    body = _fields(request)
    name = field(body, "workflow", str, required=True)
    instance_id = field(body, "id", str)
    send = field(body, "send", dict)
    deadline = _deadline(field(body, "deadline", (int, float, str)))
    queue = field(body, "queue", str)
    priority = field(body, "priority", int, default=0)
    if send is not None and (queue is not None or priority):
        raise RequestError("signal-with-start ('send') starts at once: it takes no 'queue' "
                           "or 'priority' (start on the queue, then send)")
    if send is not None:  # signal-with-start: deliver this event, starting the instance
        only(send, ("event", "payload", "thread", "keep"), "'send'")
        if instance_id is None:
            raise RequestError("signal-with-start ('send') needs the instance's 'id'")
        return await _send_starting(config, name, body.get("data"), instance_id,
                                    field(send, "event", str, required=True), send.get("payload"),
                                    field(send, "thread", str), field(send, "keep", bool),
                                    _traceparent(request), deadline)
    return await _start(config, name, body.get("data"), instance_id,
                        field(body, "run", bool, default=True),
                        _if_exists(field(body, "if_exists", str, default="raise")),
                        _traceparent(request), _base(request), deadline, queue, priority)


async def api_start_typed(request: Request, config: WebConfig, user: str) -> Response:
    data = parse_json(await read_body(request, config.max_body), empty={})
    query = request.query_params
    return await _start(config, request.path_params["workflow"], data, query.get("id"),
                        _flag(query, "run", True) is True,
                        _if_exists(query.get("if_exists", "raise")), _traceparent(request),
                        _base(request), _deadline(query.get("deadline")))


def _traceparent(request: Request) -> str | None:
    """The caller's W3C trace context (a ``traceparent`` header): the spans of the
    operation it asks for, and of the steps a worker runs later, are in its trace."""
    return request.headers.get("traceparent")


def _deadline(value: Any) -> Any:
    """A start's `deadline`: seconds from the start (a number, or its text in a
    query), or an ISO 8601 time with its zone; `Engine.start` checks the rest."""
    if value is None or not isinstance(value, str):
        return value
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise RequestError(f"deadline is seconds from the start or an ISO 8601 time with its "
                           f"zone (2030-01-01T09:00:00+00:00), not {value!r}") from None
    if moment.tzinfo is None:
        raise RequestError(f"deadline {value!r} has no time zone: add one (+00:00 for UTC)")
    return moment


def _if_exists(value: str) -> str:
    if value not in ("raise", "return"):
        raise RequestError(f"if_exists is 'raise' or 'return', not {value!r}")
    return value


def _flag(query: Any, name: str, default: bool | None) -> bool | None:
    """A true/false query parameter (absent: `default`)."""
    value = query.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false", "1", "0"):
        raise RequestError(f"{name} must be true or false, not {value!r}")
    return value.lower() in ("true", "1")


async def _start(config: WebConfig, name: str, fields: Any, instance_id: str | None,
                 run: bool, if_exists: str = "raise", traceparent: str | None = None,
                 base: str = "", deadline: Any = None, queue: str | None = None,
                 priority: int = 0) -> Response:
    """A start's answer: the instance, and (201, created) its URL in `Location`,
    the one to poll for its status (Azure's statusQueryGetUri). With `queue`, it
    waits for that queue's admission (`Engine.start(queue=, priority=)`)."""
    if instance_id is not None and not instance_id:
        raise RequestError("an instance id must not be empty")

    def start() -> tuple[dict[str, Any], int]:
        data = workflow_data(name, fields)
        with traced(traceparent):
            try:
                started = config.engine.start(data, id=instance_id, run=run, deadline=deadline,
                                              queue=queue, priority=priority)
                code = 201
            except DuplicateInstanceError:
                if if_exists == "raise":
                    raise
                # (it existed: 200, nothing created; this start still refuses an
                # instance of another workflow under the id, as Engine.start does)
                started = config.engine.start(data, id=instance_id, run=run,
                                              if_exists="return", deadline=deadline,
                                              queue=queue, priority=priority)
                code = 200
        return {**instance_json(config.engine.get(started)),
                "queue": queue_json(config.engine, started)}, code

    answer, code = await run_in_threadpool(start)
    response = _json(answer, code)
    if code == 201:
        response.headers["Location"] = \
            f"{base}/api/v1/instances/{urllib.parse.quote(answer['id'], safe='')}"
    return response


async def _send_starting(config: WebConfig, name: str, fields: Any, instance_id: str,
                         event: str, payload: Any, thread: str | None,
                         keep: bool | None, traceparent: str | None = None,
                         deadline: Any = None) -> Response:
    if not instance_id:
        raise RequestError("an instance id must not be empty")
    engine = config.engine

    def send() -> dict[str, Any]:
        data = workflow_data(name, fields)
        with traced(traceparent):
            output = engine.send(instance_id, event, payload, thread=thread, keep=keep,
                                 start=data, timeout=config.send_timeout, deadline=deadline)
        return _sent(output, engine.get(instance_id))

    return _json(await run_in_threadpool(send))


def _sent(output: Any, instance: Any) -> dict[str, Any]:
    """A send's answer: the handler's output, or (`kept`) where the event waits."""
    if isinstance(output, Kept):
        return {"output": None, "kept": {"event": output.event, "seq": output.seq,
                                         "kept": output.kept},
                "instance": instance_json(instance)}
    return {"output": unstructure(output), "kept": None, "instance": instance_json(instance)}


async def api_get(request: Request, config: WebConfig, user: str) -> Response:
    def read() -> dict[str, Any]:
        instance = config.engine.get(request.path_params["id"])
        return {**instance_json(instance), "queue": queue_json(config.engine, instance.id)}

    return _json(await run_in_threadpool(read))


async def api_journal(request: Request, config: WebConfig, user: str) -> Response:
    instance_id = request.path_params["id"]

    def read() -> list[dict[str, Any]]:
        config.engine.store.get(checked_id(instance_id))  # InvalidIdError, InstanceNotFoundError
        return [{"seq": e.seq, "at": e.at.isoformat(), "kind": e.kind, "detail": e.detail}
                for e in config.engine.store.journal(instance_id)]

    return _json({"entries": _plain(await run_in_threadpool(read))})


async def api_send(request: Request, config: WebConfig, user: str) -> Response:
    return await _send(request, config, None)


async def api_send_typed(request: Request, config: WebConfig, user: str) -> Response:
    return await _send(request, config, request.path_params["workflow"])


async def _send(request: Request, config: WebConfig, workflow: str | None) -> Response:
    instance_id, event = request.path_params["id"], request.path_params["event"]
    payload = parse_json(await read_body(request, config.max_body))
    thread = request.query_params.get("thread")
    keep = _flag(request.query_params, "keep", None)
    engine = config.engine

    def send() -> dict[str, Any]:
        if workflow is not None:
            record = engine.store.get(checked_id(instance_id))
            if record.workflow != workflow:
                raise InstanceNotFoundError(f"instance {instance_id!r} is a {record.workflow!r}, "
                                            f"not a {workflow!r}")
        with traced(_traceparent(request)):
            output = engine.send(instance_id, event, payload, thread=thread, keep=keep,
                                 timeout=config.send_timeout)
        return _sent(output, engine.get(instance_id))

    return _json(await run_in_threadpool(send))


async def api_cancel(request: Request, config: WebConfig, user: str) -> Response:
    return await _operate(config, request.path_params["id"], config.engine.cancel)


async def api_retry(request: Request, config: WebConfig, user: str) -> Response:
    return await _operate(config, request.path_params["id"], config.engine.retry)


async def api_move(request: Request, config: WebConfig, user: str) -> Response:
    body = _fields(request)
    thread = field(body, "thread", str, default="_main_")
    statement = field(body, "statement", str, required=True)
    return await _operate(config, request.path_params["id"],
                          lambda i, timeout: config.engine.move(i, thread, statement,
                                                                timeout=timeout))


async def _operate(config: WebConfig, instance_id: str, operation: Any) -> Response:
    def run() -> dict[str, Any]:
        operation(instance_id, timeout=config.send_timeout)
        return instance_json(config.engine.get(instance_id))

    return _json(await run_in_threadpool(run))


async def api_callback(request: Request, config: WebConfig, user: str) -> Response:
    """A signed callback URL: its token names one wait (instance, thread, event,
    counter); a wait that is over answers 410 and changes nothing. The signature
    is the credential: an outside system holds the URL, not a token."""
    try:
        req = config.signer.verify(request.path_params["token"])
        payload = parse_json(await read_body(request, config.max_body))
        engine = config.engine

        def deliver() -> dict[str, Any]:
            try:
                output = engine.deliver(req, payload, timeout=config.send_timeout)
            except _WAIT_OVER as exc:
                raise CallbackGoneError(f"this callback's wait is over: {exc}") from None
            return {"output": unstructure(output),
                    "instance": instance_json(engine.get(req.instance_id))}

        return _json(await run_in_threadpool(deliver))
    except GenflowError as exc:
        return await _error_response(request, exc)



# -- schedules and queues: the console's pages and the API --------------------------------------


def _operating_routes(route: Any) -> list[Route]:
    none, paged = Takes(), Takes(query=("after", "limit"))
    fire_times = Takes(query=("next",))
    return [
        route("/schedules", page_schedules, none, html=True),
        route("/queues", page_queues, none, html=True),
        route("/queues/{name}", page_queue, paged, html=True),
        route("/console/schedules/{id}/{action}", console_schedule_action, none,
              methods=("POST",)),
        route("/api/v1/schedules", api_schedules, fire_times),
        route("/api/v1/schedules", api_add_schedule, Takes(body=_ADD_FIELDS), methods=("POST",)),
        route("/api/v1/schedules/{id}", api_schedule, fire_times),
        route("/api/v1/schedules/{id}", api_delete_schedule, none, methods=("DELETE",)),
        route("/api/v1/schedules/{id}", api_update_schedule, Takes(body=_UPDATE_FIELDS),
              methods=("PATCH",)),
        route("/api/v1/schedules/{id}/{action}", api_schedule_action, none,
              methods=("POST",)),
        route("/api/v1/queues", api_queues, none),
        route("/api/v1/queues/{name}", api_queue, paged),
    ]


#: what an operator may do to a schedule (`Schedules.pause`, `.resume`, `.trigger`)
_SCHEDULE_ACTIONS = ("pause", "resume", "trigger")
#: what `PATCH /api/v1/schedules/{id}` takes (`Schedules.update`'s keywords and its
#: start `data`): the JSON types each may have, in words; null clears what may be unset
_SECONDS, _MAYBE_SECONDS = ((int, float), "a number of seconds"), \
    ((int, float, type(None)), "a number of seconds or null")
_TEXT, _MAYBE_TEXT = ((str,), "a text"), ((str, type(None)), "a text or null")
_UPDATE_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "data": ((dict,), "an object (the workflow's fields)"), "cron": _TEXT,
    "every": _SECONDS, "timezone": _TEXT, "factory": _MAYBE_TEXT, "jitter": _SECONDS,
    "catchup": _TEXT, "catchup_window": _MAYBE_SECONDS, "overlap": _TEXT,
    "queue": _MAYBE_TEXT, "priority": ((int,), "a whole number"),
    "start": ((str, type(None)), "an ISO 8601 time or null"),
    "end": ((str, type(None)), "an ISO 8601 time or null"),
    "deadline": _MAYBE_SECONDS,
    "paused": ((bool,), "true or false")}
_UPDATE_FIELDS = tuple(_UPDATE_TYPES)
#: what `POST /api/v1/schedules` takes: the new schedule's id and workflow, then the same
#: keys as an update (`data` optional: the fields not given take their defaults)
_ADD_FIELDS = ("id", "workflow", *_UPDATE_FIELDS)
#: the waiting instances the queues page shows per queue (its own page has them all, paged)
_FIRST_WAITING = 10


def _whole(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _schedule_action(config: WebConfig, schedule_id: str, action: str
                     ) -> tuple[str, dict[str, Any], str | None]:
    """Do `action` to the schedule: (what was done, the schedule's view, the instance
    a trigger started)."""
    if action not in _SCHEDULE_ACTIONS:
        raise NotFoundError(f"no schedule action {action!r}: use one of "
                            f"{', '.join(_SCHEDULE_ACTIONS)}")
    schedules = config.engine.schedules
    started = None
    _readable(config, schedule_id, action)
    if action == "trigger":
        try:
            started = schedules.trigger(schedule_id)
        except GenflowError:
            raise
        except Exception as exc:  # its factory failed: the tick's transaction wrote nothing
            raise ScheduleError(f"schedule {schedule_id!r}: the tick could not start its "
                                f"instance: {type(exc).__name__}: {exc}") from None
        message = (f"triggered: started {started}" if started else
                   "triggered, but skipped: its previous run is still going (overlap 'skip')")
    else:
        getattr(schedules, action)(schedule_id)
        message = "paused: no tick fires until it is resumed" if action == "pause" else \
            "resumed: it fires from its next tick"
    view = operating.record_view(config.engine.schedules.record(schedule_id),
                                 config.engine.clock())
    return message, view, started


def _readable(config: WebConfig, schedule_id: str, action: str) -> dict[str, Any]:
    """The schedule's view, refused (`ScheduleError`) when this genflow cannot read
    its definition: `action` is not done to a row it would misread."""
    view = operating.record_view(config.engine.schedules.record(schedule_id),
                                 config.engine.clock())
    if view["state"] == "unreadable":  # ScheduleNotFoundError above; this: refused, as it is
        raise ScheduleError(f"schedule {schedule_id!r} is not read, so no {action}: "
                            f"{view['error']} (delete it, or run the genflow that wrote it)")
    return view


def _schedule_changes(body: dict[str, Any], workflow: str) -> dict[str, Any]:
    """`Schedules.update`'s arguments from a JSON body: `data` the fields of the
    schedule's `workflow`, `start`/`end` ISO 8601 texts, durations in seconds.
    A value of the wrong JSON type is refused here (`RequestError`); the values
    themselves are `Schedules.update`'s to check, so the API refuses what the
    Python API and the CLI refuse, in the same words."""
    changes: dict[str, Any] = {}
    for name, value in body.items():
        kinds, words = _UPDATE_TYPES[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise RequestError(f"{name!r} is {words}, not {json.dumps(value)}")
        if name == "data":
            value = workflow_data(workflow, value)
        elif name in ("start", "end") and isinstance(value, str):
            try:
                value = _dt.datetime.fromisoformat(value)
            except ValueError:
                raise RequestError(f"{name!r} is an ISO 8601 time with its offset "
                                   f"(2030-01-01T00:00:00+00:00), not {value!r}") from None
        changes[name] = value
    return changes


async def page_schedules(request: Request, config: WebConfig, user: str) -> Response:
    views = await run_in_threadpool(operating.schedules_data, config.engine)
    return HTMLResponse(pages.schedules_page(request, config, user, views,
                                             _csrf(request, config)))


async def page_queues(request: Request, config: WebConfig, user: str) -> Response:
    views = await run_in_threadpool(operating.queues_data, config.engine,
                                    waiting=_FIRST_WAITING)
    return HTMLResponse(pages.queues_page(request, config, user, views))


async def page_queue(request: Request, config: WebConfig, user: str) -> Response:
    view, waiting, after = await run_in_threadpool(_queue, config, request)
    return HTMLResponse(pages.queue_page(request, config, user, view, waiting, after,
                                         first=not request.query_params.get("after")))


def _queue(config: WebConfig, request: Request
           ) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
    name = request.path_params["name"]
    limit = _whole(request.query_params, "limit", 50, 1, MAX_LIMIT)
    queues = config.engine.queues
    record = queues.get(name)  # QueueNotFoundError: 404
    page, after = queues.waiting(name, after=request.query_params.get("after") or None,
                                 limit=limit)
    view = operating.queue_view(record, *queues.counts(name))
    return view, [operating.waiting_view(e, p) for e, p in page], after


async def console_schedule_action(request: Request, config: WebConfig, user: str) -> Response:
    """An operator's pause / resume / trigger from the schedules page (confirmed in
    the page; the session's CSRF header checked by `WebConfig.user`). A trigger's
    instance gets an `operator` journal entry saying who asked."""
    schedule_id, action = request.path_params["id"], request.path_params["action"]
    engine = config.engine

    def run() -> dict[str, Any]:
        message, view, started = _schedule_action(config, schedule_id, action)
        log.info("schedule %s: %s by %s (console)", schedule_id, action, user,
                 extra=fields(schedule=schedule_id, user=user))
        if started is not None:
            engine.store.append_journal(started, [("operator", {
                "action": "trigger", "by": user, "via": "console", "schedule": schedule_id,
                "what": schedule_id})], engine.clock())
        return {"message": f"{schedule_id}: {message}", "schedule": view, "started": started}

    return _json(await run_in_threadpool(run))


async def api_schedules(request: Request, config: WebConfig, user: str) -> Response:
    fire_times = _whole(request.query_params, "next", 5, 0, operating.MAX_FIRE_TIMES)
    views = await run_in_threadpool(operating.schedules_data, config.engine,
                                    fire_times=fire_times)
    return _json({"items": views})


async def api_schedule(request: Request, config: WebConfig, user: str) -> Response:
    fire_times = _whole(request.query_params, "next", 5, 0, operating.MAX_FIRE_TIMES)
    engine = config.engine

    def read() -> dict[str, Any]:
        record = engine.schedules.record(request.path_params["id"])
        return operating.record_view(record, engine.clock(), fire_times=fire_times)

    return _json(await run_in_threadpool(read))


async def api_update_schedule(request: Request, config: WebConfig, user: str) -> Response:
    """`Schedules.update` over HTTP: the body's keys are changed, the rest stays;
    answers the schedule. Refused as `update` refuses, nothing written."""
    schedule_id = request.path_params["id"]
    body = request.state.fields

    def run() -> dict[str, Any]:
        view = _readable(config, schedule_id, "update")
        config.engine.schedules.update(schedule_id, **_schedule_changes(body, view["workflow"]))
        return operating.record_view(config.engine.schedules.record(schedule_id),
                                     config.engine.clock())

    return _json(await run_in_threadpool(run))


async def api_add_schedule(request: Request, config: WebConfig, user: str) -> Response:
    """`Schedules.add` over HTTP: the body is `id`, `workflow` and, in the JSON types
    an update takes, `data` and `add`'s keywords; answers 201 and the schedule,
    its URL in `Location`.
    Refused as `add` refuses, nothing written; an id in use is a 409
    (`DuplicateScheduleError`) that leaves the schedule there as it is."""
    body = request.state.fields
    schedule_id = field(body, "id", str, required=True)
    workflow = field(body, "workflow", str, required=True)

    def run() -> dict[str, Any]:
        given = {name: value for name, value in body.items() if name not in ("id", "workflow")}
        spec = _schedule_changes(given, workflow)
        data = spec.pop("data") if "data" in spec else workflow_data(workflow, None)
        config.engine.schedules.add(schedule_id, data, **spec)
        return operating.record_view(config.engine.schedules.record(schedule_id),
                                     config.engine.clock())

    response = _json(await run_in_threadpool(run), 201)
    response.headers["Location"] = \
        f"{_base(request)}/api/v1/schedules/{urllib.parse.quote(schedule_id, safe='')}"
    return response


async def api_delete_schedule(request: Request, config: WebConfig, user: str) -> Response:
    """`Schedules.delete` over HTTP: the schedule goes, the instances it started
    stay. A schedule this genflow cannot read may be deleted too (that is what its
    refusals of the other operations advise)."""
    schedule_id = request.path_params["id"]

    def run() -> dict[str, Any]:
        config.engine.schedules.delete(schedule_id)  # ScheduleNotFoundError: 404
        return {"deleted": schedule_id}

    return _json(await run_in_threadpool(run))


async def api_schedule_action(request: Request, config: WebConfig, user: str) -> Response:
    schedule_id, action = request.path_params["id"], request.path_params["action"]

    def run() -> dict[str, Any]:
        _, view, started = _schedule_action(config, schedule_id, action)
        return {"schedule": view, "started": started} if action == "trigger" else view

    return _json(await run_in_threadpool(run))


async def api_queues(request: Request, config: WebConfig, user: str) -> Response:
    return _json({"items": await run_in_threadpool(operating.queues_data, config.engine)})


async def api_queue(request: Request, config: WebConfig, user: str) -> Response:
    view, waiting, after = await run_in_threadpool(_queue, config, request)
    return _json({**view, "waiting_instances": waiting, "next": after})
