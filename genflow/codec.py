"""Serialise (data, State) to msgpack bytes through cattrs, and back. Never pickle.

A blob is a msgpack array, the *envelope*: ``["genflow", FORMAT, workflow name,
data, state]``. The data goes through cattrs; the `State`, genflow's own and the
same for every workflow, is written by hand as nested arrays (format 2 and 3): four
times smaller and several times faster than cattrs' dicts, on the path of every
checkpoint. Format 1 blobs (the State as a dict) still load.

The converter is built once; its hooks make datetimes, dates, times,
timedeltas, decimals and UUIDs round-trip exactly (datetimes as ISO 8601
strings, so naive and fixed-offset values come back as they went in;
timedeltas as ``[days, seconds, microseconds]``).

Adding a field with a default to a workflow class keeps old blobs loadable;
removing one ignores the old value.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import threading
import types
import typing
import uuid
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import attrs
import cattrs
import msgpack
from cattrs.gen import make_dict_structure_fn
from cattrs.v import format_exception

from genflow.errors import CorruptStateError, PayloadError, SerializationError
from genflow.registry import workflow_class, workflow_name
from genflow.state import (
    CallbackRequest,
    Origin,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
)

__all__ = [
    "FORMAT",
    "MAX_BLOB_SIZE",
    "converter",
    "dumps",
    "loads",
    "structure_payload",
    "unstructure",
]

MAGIC = "genflow"
FORMAT = 3
_READS = (1, 2, 3)
#: blobs larger than this are refused on load (and on dump): a guard against
#: reading a corrupt length prefix as a request for gigabytes.
MAX_BLOB_SIZE = 64 * 1024 * 1024


def _configure(conv: cattrs.Converter) -> cattrs.Converter:
    def _iso(cls: type) -> Any:
        def structure(value: Any, _: Any) -> Any:
            if isinstance(value, cls):
                return value
            if not isinstance(value, str):
                raise TypeError(f"expected an ISO 8601 string for {cls.__name__}, got {value!r}")
            return cls.fromisoformat(value)  # type: ignore[attr-defined]

        return structure

    for cls in (_dt.datetime, _dt.date, _dt.time):
        conv.register_unstructure_hook(cls, lambda v: v.isoformat())
        conv.register_structure_hook(cls, _iso(cls))
    # [days, seconds, microseconds], timedelta's own exact form: a count of
    # microseconds overflows msgpack's 64 bits beyond 292 years.
    conv.register_unstructure_hook(_dt.timedelta, lambda v: [v.days, v.seconds, v.microseconds])
    conv.register_structure_hook(_dt.timedelta, _structure_timedelta)

    def _attrs(cls: type) -> Any:
        # cattrs reads fields with `in`, so a list or a string would silently
        # become an instance full of defaults: refuse anything but a mapping.
        fields_from: Any = make_dict_structure_fn(cls, conv)

        def structure(value: Any, _: Any) -> Any:
            if not isinstance(value, Mapping):
                raise TypeError(f"expected a mapping for {cls.__qualname__}, got {value!r}")
            return fields_from(value, cls)

        return structure

    conv.register_structure_hook_factory(attrs.has, _attrs)
    # cattrs would call str(), int()... on anything: a dict would become a str
    # and 2.9 an int. Payloads come from outside, so primitives must match.
    for primitive, accepts in _PRIMITIVES.items():
        conv.register_structure_hook(primitive, _strict(primitive, accepts))
    conv.register_unstructure_hook(decimal.Decimal, str)
    conv.register_structure_hook(decimal.Decimal, lambda v, _: decimal.Decimal(str(v)))
    conv.register_unstructure_hook(uuid.UUID, str)
    conv.register_structure_hook(
        uuid.UUID, lambda v, _: v if isinstance(v, uuid.UUID) else uuid.UUID(v)
    )
    # `int | str` and other unions of primitives: the value's own type picks the
    # member (unions with classes in them still need a hook of their own)
    conv.register_structure_hook_factory(_is_primitive_union, _primitive_union)
    return conv


_PRIMITIVES: dict[type, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (float, int),
    bool: (bool,),
    bytes: (bytes, bytearray),
}


def _is_primitive_union(tp: Any) -> bool:
    return (typing.get_origin(tp) in (typing.Union, types.UnionType)
            and all(arg in _PRIMITIVES or arg is type(None) for arg in typing.get_args(tp)))


def _primitive_union(tp: Any) -> Any:
    members = typing.get_args(tp)

    def structure(value: Any, _: Any) -> Any:
        for member in members:  # the exact type first: True is no int, 1 no float
            if type(value) is member:
                return value
        if float in members and type(value) is int:
            return _strict(float, _PRIMITIVES[float])(value, float)
        raise TypeError(f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")

    return structure


def _strict(cls: type, accepts: tuple[type, ...]) -> Any:
    def structure(value: Any, tp: Any) -> Any:
        if tp is not cls:  # a subclass, such as a str-based enum: its own constructor checks
            return tp(value)
        if type(value) is cls:
            return value
        # bool is an int to Python, but not a number to a workflow author
        if isinstance(value, accepts) and (cls is bool or not isinstance(value, bool)):
            converted = cls(value)
            if converted != value:  # an int too large for a float's 53 bits
                raise TypeError(f"{value!r} cannot be a {cls.__name__} exactly")
            return converted
        raise TypeError(f"expected {cls.__name__}, got {type(value).__name__} {value!r}")

    return structure


def _structure_timedelta(value: Any, _: Any) -> _dt.timedelta:
    if isinstance(value, _dt.timedelta):
        return value
    if isinstance(value, (list, tuple)):
        days, seconds, microseconds = map(int, value)
        return _dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)
    return _dt.timedelta(microseconds=int(value))  # a count of microseconds (older blobs)


#: msgpack has no sets: write them as lists (the field's type brings them back).
_SETS: dict[type, Any] = {AbstractSet: list}

#: The converter genflow uses for data, State and payloads. Register hooks for
#: your own types on it (before the first dump or load of a class that uses them).
converter = _configure(
    cattrs.Converter(detailed_validation=False, unstruct_collection_overrides=_SETS)
)
# Same hooks, but errors that name the offending field: used to explain a
# failure, never on the fast path.
_explaining = _configure(
    cattrs.Converter(detailed_validation=True, unstruct_collection_overrides=_SETS)
)


def register_hooks(cls: type, unstructure_hook: Any, structure_hook: Any) -> None:
    """Teach genflow's converter a type of your own (both directions)."""
    for conv in (converter, _explaining):
        conv.register_unstructure_hook(cls, unstructure_hook)
        conv.register_structure_hook(cls, structure_hook)


def unstructure(obj: Any) -> Any:
    return converter.unstructure(obj)


def structure(value: Any, cls: Any) -> Any:
    """Structure `value` into `cls`; on failure raise the explaining converter's error."""
    try:
        return converter.structure(value, cls)
    except Exception:
        return _explaining.structure(value, cls)  # raises with field paths (or succeeds)


def explain(exc: BaseException) -> str:
    """A one-line account of a (possibly nested) cattrs validation error."""
    if isinstance(exc, cattrs.BaseValidationError):
        parts = []
        for message in cattrs.transform_error(exc, format_exception=_format_leaf):
            parts.append(message)
        return "; ".join(parts) or str(exc)
    return f"{type(exc).__name__}: {exc}"


def _format_leaf(exc: BaseException, tp: Any) -> str:
    """cattrs' wording, plus the exception's own words when cattrs has no type to
    name: an attrs validator's ValueError ("'pizza' must be in ...") is the only
    place the offending field is named."""
    message = format_exception(exc, tp)
    if tp is None and isinstance(exc, (ValueError, TypeError)):
        # attrs validators raise ValueError(text, attribute, ...): keep the text.
        words = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        if words and words not in message:
            message = f"{message}: {words}"
    return message


def structure_payload(payload: Any, input_type: Any, event: str) -> Any:
    """The payload as the handler's declared type, or `PayloadError` naming the field."""
    if input_type is None:
        if payload is not None:
            raise PayloadError(f"event {event!r} takes no payload, got {payload!r}")
        return None
    if input_type is Any:
        return payload
    try:
        return structure(payload, input_type)
    except Exception as exc:
        raise PayloadError(f"payload for event {event!r} does not fit {_type_name(input_type)}: "
                           f"{explain(exc)}") from exc


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


# One msgpack Packer per thread, reused: `msgpack.packb` builds a Packer (and
# its buffer) at every call, 40% of its cost for a State-sized blob (1.04 ->
# 0.62 us). A Packer is not shared between threads: its buffer is its state.
_packers = threading.local()


def _packer() -> msgpack.Packer:
    try:
        return _packers.packer
    except AttributeError:
        _packers.packer = msgpack.Packer(use_bin_type=True)
        return _packers.packer


def dumps(wf: Any, state: State) -> bytes:
    """Serialise an instance (its data and State) to msgpack bytes."""
    name = workflow_name(wf)
    if name != state.workflow:
        raise SerializationError(
            f"data is a {name!r} workflow but the state belongs to {state.workflow!r}"
        )
    try:
        blob = _packer().pack(
            [MAGIC, FORMAT, name, converter.unstructure(wf), _unstructure_state(state)]
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"cannot serialise workflow {name!r}: {exc} (register a hook on "
            "genflow.codec.converter for custom types)"
        ) from exc
    if len(blob) > MAX_BLOB_SIZE:
        raise SerializationError(f"blob of {len(blob)} bytes exceeds MAX_BLOB_SIZE")
    return blob


def loads(data: bytes, workflows: dict[str, type] | None = None) -> tuple[Any, State]:
    """Load an instance from `dumps` bytes: `(data, state)`.

    `workflows` maps names to the only classes the blob may be an instance of
    (default: every registered workflow).
    Anything that is not a well-formed genflow blob raises `CorruptStateError`.
    """
    name, raw_data, raw_state = _open_envelope(data)
    if workflows is None:
        cls = workflow_class(name)
    else:  # only these: a blob of another workflow must not run that workflow's code
        found = workflows.get(name)
        if found is None:
            raise CorruptStateError(
                f"the blob holds an instance of workflow {name!r}, not of "
                f"{' or '.join(repr(w) for w in sorted(workflows))}")
        cls = found
    try:
        wf = structure(raw_data, cls)
    except Exception as exc:
        raise CorruptStateError(f"data of workflow {name!r} does not load: {explain(exc)}") from exc
    state = load_state_value(raw_state)
    if state.workflow != name:
        raise CorruptStateError(f"envelope names {name!r} but its state names {state.workflow!r}")
    return wf, state


def load_state(data: bytes) -> State:
    """Only the State of a blob (the workflow class need not be importable)."""
    return load_state_value(_open_envelope(data)[2])


def _open_envelope(data: bytes) -> tuple[str, Any, Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptStateError(f"a blob must be bytes, not {type(data).__name__}")
    if len(data) > MAX_BLOB_SIZE:
        raise CorruptStateError(f"blob of {len(data)} bytes exceeds MAX_BLOB_SIZE")
    try:
        # unpackb bounds every length by len(data), so a corrupt length cannot
        # make it allocate more than the blob's size.
        envelope = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types for truncated/garbage input
        raise CorruptStateError(f"not a genflow blob (msgpack: {exc})") from exc
    if not (isinstance(envelope, list) and len(envelope) == 5 and envelope[0] == MAGIC):
        raise CorruptStateError("not a genflow blob (bad envelope)")
    _, fmt, name, raw_data, raw_state = envelope
    if fmt not in _READS:
        raise CorruptStateError(
            f"blob format {fmt!r} is not supported (this genflow reads {_READS})"
        )
    if not isinstance(name, str):
        raise CorruptStateError("not a genflow blob (workflow name is not a string)")
    return name, raw_data, raw_state


# -- the State as nested arrays (formats 2 and 3) ---------------------------------------------
#
# State:  [id, workflow, status, pc, [thread...]]
# Thread: [id, stmt, status, pc, path, [event...], won, [[go, thread_id, path]...], since,
#          (format 3, only when the step has failed:) attempts, error, retry_at]
# Event:  [event, status, won, error, due, req.pc, req.setup_data,
#          (format 3, only when the handler has failed:) attempts, retry_at]
# A request's instance, thread and event are those of its State, Thread and event.
# The failure fields are left off while they hold their defaults, so a blob
# costs nothing for them until something fails; a format 2 blob is thus a valid
# format 3 one, and format 3 exists so that an older genflow refuses the longer
# arrays by the envelope's format rather than misreading them.


# Written at every checkpoint, so written plainly: the statuses are `str`
# enums and go to msgpack as the strings they are (no `.value`), and empty
# lists skip their comprehension.


def _unstructure_state(state: State) -> Any:
    return [state.id, state.workflow, state.status, state.pc,
            [_unstructure_thread(t) for t in state.threads]]


def _unstructure_thread(t: Thread) -> list[Any]:
    raw = [
        t.id, t.stmt, t.status, t.pc, t.path,
        [_unstructure_event(e) for e in t.events] if t.events else [],
        t.won, [[o.go, o.thread_id, o.path] for o in t.origin] if t.origin else [],
        None if t.since is None else t.since.isoformat(),
    ]
    if t.attempts or t.error or t.retry_at is not None:
        raw += [t.attempts, t.error, None if t.retry_at is None else t.retry_at.isoformat()]
    return raw


def _unstructure_event(e: WaitEvent) -> list[Any]:
    raw = [e.event, e.status, e.won, e.error, None if e.due is None else e.due.isoformat(),
           e.req.pc,
           None if e.req.setup_data is None else converter.unstructure(e.req.setup_data)]
    if e.attempts or e.retry_at is not None:
        raw += [e.attempts, None if e.retry_at is None else e.retry_at.isoformat()]
    return raw


def _want(value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:
        raise CorruptStateError(f"state does not load: {what} is {type(value).__name__}, "
                                f"not {kind.__name__}")
    return value


def _ints(value: Any, what: str) -> list[int]:
    for item in _want(value, list, what):
        _want(item, int, what)
    return value


def _when(value: Any, what: str) -> _dt.datetime | None:
    if value is None:
        return None
    try:
        moment = _dt.datetime.fromisoformat(_want(value, str, what))
    except ValueError:
        raise CorruptStateError(f"state does not load: {what} is not a date") from None
    if moment.tzinfo is None:  # genflow writes UTC; a naive time cannot be compared with it
        raise CorruptStateError(f"state does not load: {what} {value!r} has no time zone")
    return moment


def _fields(value: Any, counts: tuple[int, ...], what: str) -> list[Any]:
    if type(value) is not list or len(value) not in counts:
        raise CorruptStateError(
            f"state does not load: {what} is not a list of "
            f"{' or '.join(str(c) for c in counts)}")
    return value


def _structure_state(raw: list[Any]) -> State:
    sid, workflow, status, pc, threads = _fields(raw, (5,), "the state")
    state = State(
        id=_want(sid, str, "the instance id"), workflow=_want(workflow, str, "the workflow"),
        status=_enum(WorkflowStatus, status, "the status"), pc=_want(pc, int, "the counter"),
    )
    state.threads = [_structure_thread(state.id, t) for t in _want(threads, list, "threads")]
    return state


def _structure_thread(sid: str, raw: Any) -> Thread:
    _fields(raw, (9, 12), "a thread")
    tid, stmt, status, pc, path, events, won, origin, since = raw[:9]
    _want(tid, str, "a thread id")
    thread = Thread(
        id=tid, stmt=_want(stmt, str, "a statement name"),
        status=_enum(ThreadStatus, status, "a thread status"), pc=_want(pc, int, "a counter"),
        path=_ints(path, "a path"), won=_want(won, str, "the event that won"),
        since=_when(since, "a thread's since"),
    )
    if len(raw) == 12:
        thread.attempts = _want(raw[9], int, "a step's attempts")
        thread.error = _want(raw[10], str, "a step's error")
        thread.retry_at = _when(raw[11], "a step's retry time")
    for raw_event in _want(events, list, "events"):
        _fields(raw_event, (7, 9), "an event")
        name, e_status, e_won, error, due, req_pc, setup = raw_event[:7]
        _want(name, str, "an event name")
        event = WaitEvent(
            event=name,
            req=CallbackRequest(sid, tid, name, _want(req_pc, int, "a counter"), setup),
            status=_enum(WaitEventStatus, e_status, "an event status"),
            won=_want(e_won, bool, "an event's won"),
            error=_want(error, str, "an event error"), due=_when(due, "a timer's due time"),
        )
        if len(raw_event) == 9:
            event.attempts = _want(raw_event[7], int, "a handler's attempts")
            event.retry_at = _when(raw_event[8], "a handler's retry time")
        thread.events.append(event)
    for raw_origin in _want(origin, list, "a thread's origin"):
        go, thread_id, go_path = _fields(raw_origin, (3,), "an origin")
        thread.origin.append(Origin(_want(go, str, "a Go name"),
                                    _want(thread_id, str, "a thread id"),
                                    _ints(go_path, "a path")))
    return thread


# value -> member, for the State's enums: a dict lookup, far cheaper than `cls(value)`
_MEMBERS: dict[Any, dict[Any, Any]] = {
    cls: {member.value: member for member in cls}
    for cls in (WorkflowStatus, ThreadStatus, WaitEventStatus)
}


def _enum(cls: Any, value: Any, what: str) -> Any:
    member = _MEMBERS[cls].get(value) if type(value) is str else None
    if member is None:
        raise CorruptStateError(f"state does not load: {what} {value!r} is unknown")
    return member


def load_state_value(raw: Any) -> State:
    if type(raw) is list:  # format 2
        state = _structure_state(raw)
        if not state.id:
            raise CorruptStateError("state does not load: no instance id")
        return state
    try:  # format 1: the State as cattrs' dicts
        state = structure(raw, State)
    except Exception as exc:
        raise CorruptStateError(f"state does not load: {explain(exc)}") from exc
    if not isinstance(state, State) or not state.id:
        raise CorruptStateError("state does not load: no instance id")
    return state
