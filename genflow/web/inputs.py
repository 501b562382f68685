"""Reading requests: bodies under a size limit, JSON genflow can store, typed fields.

Everything an outside system sends is checked here before the engine sees it,
and refused with the same typed errors as the Python API (`genflow.web.errors`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from genflow import codec
from genflow.errors import DataError
from genflow.web.errors import MalformedJSONError, PayloadTooLargeError, RequestError

__all__ = ["MAX_DEPTH", "Takes", "check_json", "parse_json", "read_body", "read_fields",
           "workflow_data"]

#: How deeply a JSON body may nest (a payload deeper than this is no workflow's).
MAX_DEPTH = 64
_INT_LIMIT = 2 ** 63  # msgpack stores 64-bit integers


async def read_body(request: Any, limit: int) -> bytes:
    """The request's body, refused past `limit` bytes (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the body has {declared} bytes; this server takes at most "
                                   f"{limit} (genflow serve --max-body)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body is over {limit} bytes, this server's limit "
                                       "(genflow serve --max-body)")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> Any:
    raise MalformedJSONError(f"the body holds {name}, which JSON does not have: send a number")


def parse_json(body: bytes, *, empty: Any = None) -> Any:
    """The body as JSON (`empty` when there is none), checked by `check_json`."""
    if not body.strip():
        return empty
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except MalformedJSONError:
        raise
    except UnicodeDecodeError:
        raise MalformedJSONError("the body is not UTF-8 text: send JSON") from None
    except RecursionError:
        raise MalformedJSONError(f"the body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise MalformedJSONError(f"the body is not valid JSON: {exc}") from None
    check_json(value)
    return value


def check_json(value: Any) -> None:
    """Refuse JSON genflow cannot keep: deeper than `MAX_DEPTH`, integers past 64 bits."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedJSONError(f"the body nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not -_INT_LIMIT <= item < _INT_LIMIT:
            raise MalformedJSONError(f"the integer {item} does not fit in 64 bits")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *,
          required: bool = False, default: Any = None) -> Any:
    """`body[name]`, which must be of `kind` (a `RequestError` says what was wrong)."""
    if name not in body or body[name] is None:
        if required:
            raise RequestError(f"the body needs {name!r}")
        return default
    value = body[name]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RequestError(f"{name!r} must be a {names}, not {type(value).__name__} {value!r}")
    return value


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def only(given: Collection[str], takes: Sequence[str], what: str) -> None:
    """Refuse a key or parameter `what` does not take: ignored, a mistyped one
    (``"dat"``, ``?stauts=``) would silently do something else than asked."""
    unknown = sorted(set(given) - set(takes))
    if unknown:
        raise RequestError(f"{what} takes {', '.join(takes) if takes else 'none'}, not "
                           f"{', '.join(map(repr, unknown))}")


@attrs.frozen
class Takes:
    """What a route takes beside its path, declared beside the route (`genflow.web.app`)
    and checked before its handler runs: anything else is refused (422), as `only` says
    why. Every route declares one, so a new route cannot forget to refuse what it
    does not read (tests/web walks them all)."""

    #: the query parameters it reads
    query: tuple[str, ...] = ()
    #: the keys of its body, a JSON object (or a form, `form`), read for the handler
    #: (`read_fields`); None: the body is a payload the handler reads and checks itself
    #: (an event's, a workflow's fields)
    body: tuple[str, ...] | None = ()
    #: the body is an HTML form (``application/x-www-form-urlencoded``), not JSON
    form: bool = False


async def read_fields(request: Any, takes: Takes, limit: int, what: str) -> dict[str, Any]:
    """The body's keys and values (an empty body: none), refused if it holds a key
    `takes.body` does not name."""
    body = await read_body(request, limit)
    fields: dict[str, Any]
    if takes.form:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        fields = {key: values[0] for key, values in form.items()}
    else:
        fields = as_object(parse_json(body, empty={}), f"the body of {what}")
    only(fields, takes.body or (), f"the body of {what}")
    return fields


def workflow_data(name: str, fields: Any) -> Any:
    """An instance of workflow `name` from its fields (a JSON object; none: the
    defaults), or `RequestError` (`UnknownWorkflowError`: 404)."""
    try:
        return codec.workflow_data(name, {} if fields is None else fields)
    except DataError as exc:
        raise RequestError(str(exc)) from None
