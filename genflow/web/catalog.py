"""What the HTTP API can do with each workflow: its data's type and its events'.

`catalog(workflows)` walks each workflow's definition on a default instance
(every branch, as `genflow graph` does) and collects its events: the `On`
statements, each with the type its handler declares for the payload (the
handler's annotation). Timers are left out: they fire by themselves.
A workflow without defaults for all its fields cannot be built empty; its
events are then unknown and only the untyped routes reach them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from genflow.codec import structure
from genflow.handlers import FunctionHandler, as_handler
from genflow.replay import as_body, iter_tree
from genflow.statements import On, Timeout

__all__ = ["EventInfo", "WorkflowInfo", "catalog"]


@attrs.frozen
class EventInfo:
    name: str
    takes_payload: bool
    payload_type: Any
    handler: str


@attrs.frozen
class WorkflowInfo:
    name: str
    cls: type
    events: tuple[EventInfo, ...]
    problem: str = ""  #: why the events are unknown


def catalog(workflows: Mapping[str, type]) -> list[WorkflowInfo]:
    return [_info(name, cls) for name, cls in sorted(workflows.items())]


def _info(name: str, cls: type) -> WorkflowInfo:
    try:
        data = structure({}, cls)
    except Exception as exc:
        return WorkflowInfo(name, cls, (), f"cannot build {cls.__qualname__} from no fields "
                                           f"to read its events: {exc}")
    events: dict[str, EventInfo] = {}
    try:
        for stmt, _ in iter_tree(as_body(data)):
            if isinstance(stmt, On) and not isinstance(stmt, Timeout):
                events.setdefault(stmt.event, _event(stmt))
    except Exception as exc:
        return WorkflowInfo(name, cls, tuple(events.values()),
                            f"definition() raised while reading its events: {exc!r}")
    return WorkflowInfo(name, cls, tuple(events.values()))


def _event(on: On) -> EventInfo:
    try:
        handler = as_handler(on.handler)
    except TypeError:
        return EventInfo(on.event, True, Any, repr(on.handler))
    if isinstance(handler, FunctionHandler):
        fn = handler.fn
        label = getattr(fn, "__qualname__", repr(fn))
        return EventInfo(on.event, handler.takes_payload,
                         handler.input_type if handler.takes_payload else None, label)
    input_type = getattr(handler, "input_type", None)
    return EventInfo(on.event, input_type is not None, input_type, type(handler).__qualname__)
