"""Serialise (data, State) to msgpack bytes through cattrs, and back. Never pickle.

A blob is a msgpack array, the *envelope*: ``["genflow", FORMAT, workflow name,
data, state]``. The data goes through cattrs; the `State`, genflow's own and the
same for every workflow, is written by hand as nested arrays (format 2 and 3): four
times smaller and several times faster than cattrs' dicts, on the path of every
checkpoint. Format 1 blobs (the State as a dict) still load.

The converters are strict (genflow/strict.py says what each type takes):
nothing is coerced, on the way in or out. Payloads and start data come from
outside, so a key that names no field is refused; a stored blob may hold a
field its class has since dropped, so `loads` ignores it (adding a field with a
default keeps old blobs loadable; removing one ignores the old value).

Every failure is a `GenflowError` naming the field: `PayloadError` for a
payload, `DataError` for data that does not fit its types, `SerializationError`
for data msgpack cannot hold, `CorruptStateError` for a blob that does not load.
Finding the field costs a second walk, made only once something has failed:
a well-formed blob costs what it did.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import sys
import threading
import typing
from typing import Any

import attrs
import msgpack

from genflow.errors import (
    CorruptStateError,
    DataError,
    DefinitionError,
    GenflowError,
    PayloadError,
    SerializationError,
)
from genflow.registry import workflow_class, workflow_name
from genflow.state import (
    CallbackRequest,
    Failure,
    Mailbox,
    Message,
    Origin,
    Parent,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
)
from genflow.strict import Converters, explain, misfit_error
from genflow.wire import (
    MAX_PAYLOAD_DEPTH,
    STORED_DEPTH,
    Key,
    children,
    describe,
    misfit,
    path_text,
    type_name,
)

__all__ = [
    "FORMAT",
    "MAX_BLOB_SIZE",
    "MAX_PAYLOAD_DEPTH",
    "check_payload",
    "converter",
    "dumps",
    "explain",
    "load_state",
    "loads",
    "register_hooks",
    "structure",
    "structure_data",
    "structure_payload",
    "unstructure",
]

MAGIC = "genflow"
FORMAT = 3
_READS = (1, 2, 3)
#: blobs larger than this are refused on load (and on dump): a guard against
#: reading a corrupt length prefix as a request for gigabytes.
MAX_BLOB_SIZE = 64 * 1024 * 1024

#: for what genflow stored itself: unknown keys are fields since removed
_stored = Converters.build(forbid_extra_keys=False)
#: for what comes from outside (payloads, start data): an unknown key is a mistake
_incoming = Converters.build(forbid_extra_keys=True)

#: The converter genflow uses for stored data and State. To teach genflow a
#: type of your own, call `register_hooks` (it teaches every converter).
converter = _stored.fast
#: `converter.get_unstructure_hook`, without its wrapper: the converter's own
#: cached dispatch (emptied when a hook is registered); `unstructure_hook(type(x))(x)`
#: is `converter.unstructure(x)` (the save path makes one per checkpoint)
unstructure_hook: Any = getattr(getattr(converter, "_unstructure_func", None), "dispatch",
                                None) or converter.get_unstructure_hook


def register_hooks(cls: type, unstructure_hook: Any, structure_hook: Any) -> None:
    """Teach genflow a type of your own, both ways: `unstructure_hook(value)`
    returns plain values msgpack holds, `structure_hook(plain, cls)` the value.
    Call it before the first dump or load of a class that uses the type."""
    for converters in (_stored, _incoming):
        converters.register(cls, unstructure_hook, structure_hook)


def unstructure(obj: Any) -> Any:
    """`obj` as plain values, by its own type (for a reply, a journal entry, a
    display). A value nested too deep, or one that contains itself, is a
    `SerializationError` saying where, never a `RecursionError`."""
    try:
        return converter.unstructure(obj)
    except RecursionError:
        raise SerializationError(
            f"cannot write {type(obj).__name__}: {_too_deep(obj, Any)}") from None


def _too_deep(value: Any, tp: Any) -> str:
    """Where a value the converter recursed too deep into goes too deep. cattrs
    takes a few Python frames a level, so the depth that fits is a fraction of
    the recursion limit (a value that contains itself goes deeper than any)."""
    found = misfit(value, tp, depth=min(STORED_DEPTH, sys.getrecursionlimit() // 4))
    return f"{found[0]}: {found[1]}" if found else "it is nested too deep"


def structure(value: Any, cls: Any) -> Any:
    """Structure stored `value` into `cls`; on failure raise the explaining
    converter's error, field by field (`explain` words it)."""
    return _stored.structure(value, cls)


def structure_data(value: Any, cls: Any) -> Any:
    """Data from outside (start data as JSON, fields typed by hand) as a `cls`,
    or `DataError` naming the field. Unknown keys are refused."""
    try:
        return _incoming.structure(value, cls)
    except Exception as exc:
        raise DataError(explain(exc)) from exc


def workflow_data(name: Any, fields: Any) -> Any:
    """An instance of registered workflow `name` from its fields, as they come
    from outside (a JSON object: the CLI's `--data`, the HTTP API's `data`),
    those not given taking their defaults; `DataError` saying what is wrong
    (not an object, a field the workflow lacks, a value of the wrong type),
    `UnknownWorkflowError` for a name nobody registered."""
    cls = workflow_class(name)
    if not isinstance(fields, dict):
        raise DataError(f"the data of workflow {name!r} must be a JSON object of its fields, "
                        f"not {fields!r}")
    known = [field.name for field in attrs.fields(cls)] if attrs.has(cls) else []
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise DataError(f"workflow {name!r} has no field(s) {unknown}; its fields are {known}")
    try:
        return structure_data(fields, cls)
    except DataError as exc:
        raise DataError(f"the data does not fit workflow {name!r}: {exc}") from None


# -- payloads ---------------------------------------------------------------------------------


def check_payload(payload: Any, event: Any, input_type: Any = Any) -> None:
    """Refuse a payload msgpack cannot hold, before any user code sees it: an int
    beyond 64 bits, a str with a lone surrogate, nesting deeper than
    `MAX_PAYLOAD_DEPTH`. `PayloadError` names the event and the field."""
    if payload is None:
        return
    found = misfit(payload, input_type, depth=MAX_PAYLOAD_DEPTH)
    if found is not None:
        where, why = found
        raise PayloadError(f"payload for event {event!r} is refused: "
                           f"{f'{where}: ' if where else ''}{why}")


def structure_payload(payload: Any, input_type: Any, event: str, handler: Any = None) -> Any:
    """The payload as the handler's declared type, checked in full (`check_payload`),
    or `PayloadError` naming the event and the field. A payload annotated `None`
    (`def handle(self, req, payload: None)`) is no payload, as no annotation is."""
    if input_type is None or input_type is type(None):
        if payload is not None:
            raise PayloadError(f"event {event!r} takes no payload, got {describe(payload)}"
                               f"{_defaulted(handler)}")
        return None
    if isinstance(input_type, (str, typing.ForwardRef)):
        raise DefinitionError(
            f"the payload type of event {event!r} is the name {type_name(input_type)!r}, "
            "which does not resolve: with `from __future__ import annotations`, define "
            "the class at module level (not inside a function)")
    check_payload(payload, event, input_type)
    if input_type is Any:
        return payload
    try:
        return _incoming.structure(payload, input_type)
    except Exception as exc:
        if payload is None:
            raise PayloadError(
                f"event {event!r} needs a payload of type {type_name(input_type)}") from None
        raise PayloadError(f"payload for event {event!r} does not fit "
                           f"{type_name(input_type)}: {explain(exc)}") from exc


def _defaulted(handler: Any) -> str:
    """Why a function handler with a parameter takes no payload: the parameter has
    a default (`def reject(self, reason: str = "")`), and only a required one is
    the payload's."""
    fn = getattr(handler, "fn", None)
    try:
        params = inspect.signature(fn).parameters.values() if fn is not None else ()
    except (TypeError, ValueError):
        return ""
    for param in params:
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD) \
                and param.default is not param.empty:
            hint = param.annotation
            hint = ("T" if hint is param.empty else hint if isinstance(hint, str)
                    else getattr(hint, "__name__", "T"))
            return (f": its handler's parameter {param.name!r} has a default, so it is given "
                    f"none; for an optional payload declare it without a default, as "
                    f"`{param.name}: {hint} | None`")
    return ""


# -- blobs -----------------------------------------------------------------------------------


# One msgpack Packer per thread, reused: `msgpack.packb` builds a Packer (and
# its buffer) at every call, 40% of its cost for a State-sized blob. A Packer
# is not shared between threads: its buffer is its state (and a failed `pack`
# empties it).
_packers = threading.local()


def _new_packer() -> msgpack.Packer:
    _packers.packer = msgpack.Packer(use_bin_type=True)
    return _packers.packer


def dumps(wf: Any, state: State, check: bool = False) -> bytes:
    """Serialise an instance (its data and State) to msgpack bytes.

    With `check` (the engine's `start`), the blob is also loaded back, so data
    whose fields hold the wrong types (attrs does not check them) is refused
    with `DataError` before it is ever stored: every other save trusts that
    the code keeps the types it declared, and a blob that does not load is
    refused by `loads`, naming the field.
    """
    name = workflow_name(wf)
    if name != state.workflow:
        raise SerializationError(
            f"data is a {name!r} workflow but the state belongs to {state.workflow!r}"
        )
    try:  # (the Packer fetched here, not by a call: dumps runs at every checkpoint)
        packer = _packers.packer
    except AttributeError:
        packer = _new_packer()
    try:
        blob = packer.pack(
            [MAGIC, FORMAT, name, unstructure_hook(type(wf))(wf), _unstructure_state(state)]
        )
    except Exception as exc:  # RecursionError too: a cycle, or data nested too deep
        raise _not_stored(wf, state, name, exc) from exc
    if len(blob) > MAX_BLOB_SIZE:
        raise SerializationError(f"blob of {len(blob)} bytes exceeds MAX_BLOB_SIZE")
    if check:
        _loads_back(blob, type(wf), name)
    return blob


def _loads_back(blob: bytes, cls: type, name: str) -> None:
    try:
        _stored.structure(_open_envelope(blob)[1], cls)
    except Exception as exc:
        raise DataError(f"{_MISFIT.format(name=name)}: {explain(exc)}") from exc


_MISFIT = "the data of workflow {name!r} does not fit its types"


def _not_stored(wf: Any, state: State, name: str, exc: BaseException) -> GenflowError:
    """The error `dumps` raises: where in the data (or the State) the failure is."""
    prefix = f"cannot store workflow {name!r}"
    if isinstance(exc, RecursionError):
        return SerializationError(f"{prefix}: {_too_deep(wf, type(wf))}")
    else:
        failed = _failing_field(wf)
        if failed is not None:
            where, error = failed
            if isinstance(error, DataError):
                return DataError(f"{_MISFIT.format(name=name)}: {where}: {error}")
            return SerializationError(f"{prefix}: {where}: {error}")
        try:
            raw = converter.unstructure(wf)
        except Exception:
            raw = None
        found = misfit(raw, type(wf), depth=STORED_DEPTH, stored=True)
        if found is not None:
            return SerializationError(f"{prefix}: {found[0]}: {found[1]}")
    for thread in state.threads:
        for event in thread.events:
            found = misfit(converter.unstructure(event.req.setup_data), depth=STORED_DEPTH,
                           stored=True)
            if found is not None:
                where = f" {found[0]}" if found[0] else ""
                return SerializationError(
                    f"{prefix}: the setup data of event {event.event!r} in thread "
                    f"{thread.id!r}{where}: {found[1]}")
    if isinstance(exc, NameError):  # a field's type annotation that does not resolve
        return SerializationError(
            f"{prefix}: its field types name a class that does not resolve ({exc}): with "
            "`from __future__ import annotations`, define the classes the fields name at "
            "module level (not inside a function)")
    return SerializationError(f"{prefix}: {type(exc).__name__}: {exc}")


def _failing_field(wf: Any) -> tuple[str, BaseException] | None:
    """The deepest part (`customer.tags`, `items[2].when`) the converter cannot write."""
    path: list[Any] = []
    obj, tp = wf, type(wf)
    found: tuple[str, BaseException] | None = None
    for _ in range(STORED_DEPTH):
        for step, part, part_tp in children(obj, tp) or ():
            if isinstance(step, Key):
                continue
            try:
                converter.unstructure(part, part_tp)
            except RecursionError:  # a cycle: `_not_stored` finds where it goes too deep
                return found
            except Exception as exc:
                path.append(step)
                found = (path_text(path), _as_misfit(part_tp, part, exc))
                obj, tp = part, part_tp
                break
        else:
            break
    return found


def _as_misfit(tp: Any, value: Any, exc: BaseException) -> BaseException:
    """A field's value of the wrong class says so, whatever the converter tripped on."""
    if isinstance(exc, DataError):
        return exc
    origin = typing.get_origin(tp) or tp
    if isinstance(origin, type) and value is not None and not isinstance(value, origin):
        return misfit_error(tp, value)
    return exc


def loads(data: Any, workflows: dict[str, type] | None = None) -> tuple[Any, State]:
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


def load_state(data: Any) -> State:
    """Only the State of a blob (the workflow class need not be importable)."""
    return load_state_value(_open_envelope(data)[2])


def _open_envelope(data: Any) -> tuple[str, Any, Any]:
    # (`data` and the public functions' arguments from outside are typed `Any`: compiled, a
    # typed parameter is checked at the call with a TypeError, before the clear error here)
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
# State:  [id, workflow, status, pc, [thread...],
#          (format 3, a child's:) [parent, event, index, thread, pc] or None,
#          (format 3, when traced:) traceparent or None,
#          (format 3, once it kept a message:) [sent, [message...], [message...]],
#          (format 3, with a deadline:) the deadline's ISO text]
# Message: [seq, event, payload, thread, sent_at, reason] (the kept ones, then the undelivered)
# (each optional element is written only when it or one after it is set: nil pads)
# Thread: [id, stmt, status, pc, path, [event...], won, [[go, thread_id, path]...], since,
#          (format 3, only when the step has failed, or what follows is set:)
#          attempts, error, retry_at,
#          (format 3, only inside a Try's handling or for a daemon thread:)
#          enter, unwind, [failure...], daemon]
# Failure: [type, message, step, attempt, [type name...], path, at]
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
    raw = [state.id, state.workflow, state.status, state.pc,
           [_unstructure_thread(t) for t in state.threads]]
    if state.parent is not None:  # (format 3: a child's parent, appended only when set)
        parent = state.parent
        raw.append([parent.instance_id, parent.event, parent.index, parent.thread, parent.pc])
    deadline = state.deadline
    if state.trace is not None or state.mailbox is not None or deadline is not None:
        if state.parent is None:
            raw.append(None)
        raw.append(state.trace)  # (format 3: the caller's trace, or nil before a mailbox)
    if state.mailbox is not None:  # (format 3: appended only once a message was kept)
        box = state.mailbox
        raw.append([box.sent, [_unstructure_message(m) for m in box.kept],
                    [_unstructure_message(m) for m in box.undelivered]])
    elif deadline is not None:
        raw.append(None)
    if deadline is not None:  # (format 3: appended only when the start set one)
        raw.append(deadline.isoformat())
    return raw


def _unstructure_message(m: Message) -> list[Any]:
    return [m.seq, m.event, m.payload, m.thread,
            None if m.sent_at is None else m.sent_at.isoformat(), m.reason]


def _unstructure_thread(t: Thread) -> list[Any]:
    raw = [
        t.id, t.stmt, t.status, t.pc, t.path,
        [_unstructure_event(e) for e in t.events] if t.events else [],
        t.won, [[o.go, o.thread_id, o.path] for o in t.origin] if t.origin else [],
        None if t.since is None else t.since.isoformat(),
    ]
    flow = t.enter or t.unwind or t.failures or t.daemon
    if flow or t.attempts or t.error or t.retry_at is not None:
        raw += [t.attempts, t.error, None if t.retry_at is None else t.retry_at.isoformat()]
        if flow:
            raw += [t.enter, t.unwind,
                    [[f.type, f.message, f.step, f.attempt, list(f.types), list(f.path), f.at]
                     for f in t.failures], t.daemon]
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
    _fields(raw, (5, 6, 7, 8, 9), "the state")
    sid, workflow, status, pc, threads = raw[:5]
    state = State(
        id=_want(sid, str, "the instance id"), workflow=_want(workflow, str, "the workflow"),
        status=_enum(WorkflowStatus, status, "the status"), pc=_want(pc, int, "the counter"),
    )
    if len(raw) >= 7 and raw[6] is not None:
        state.trace = _want(raw[6], str, "the trace context")
    if len(raw) == 9:
        state.deadline = _when(raw[8], "the deadline")
    if len(raw) >= 8 and raw[7] is not None:
        sent, kept, undelivered = _fields(raw[7], (3,), "a mailbox")
        state.mailbox = Mailbox(
            _want(sent, int, "a mailbox's count"),
            [_structure_message(m) for m in _want(kept, list, "kept messages")],
            [_structure_message(m) for m in _want(undelivered, list, "undelivered messages")])
    if len(raw) >= 6 and raw[5] is not None:
        fields = _fields(raw[5], (3, 5), "a parent")
        parent_id, event, index = fields[:3]
        state.parent = Parent(_want(parent_id, str, "a parent's id"),
                              _want(event, str, "a parent's event"),
                              _want(index, int, "a child's index"))
        if len(fields) == 5:
            state.parent = attrs.evolve(state.parent,
                                        thread=_want(fields[3], str, "a parent's thread"),
                                        pc=_want(fields[4], int, "a parent's counter"))
    state.threads = [_structure_thread(state.id, t) for t in _want(threads, list, "threads")]
    return state


def _structure_thread(sid: str, raw: Any) -> Thread:
    _fields(raw, (9, 12, 16), "a thread")
    tid, stmt, status, pc, path, events, won, origin, since = raw[:9]
    _want(tid, str, "a thread id")
    thread = Thread(
        id=tid, stmt=_want(stmt, str, "a statement name"),
        status=_enum(ThreadStatus, status, "a thread status"), pc=_want(pc, int, "a counter"),
        path=_ints(path, "a path"), won=_want(won, str, "the event that won"),
        since=_when(since, "a thread's since"),
    )
    if len(raw) >= 12:
        thread.attempts = _want(raw[9], int, "a step's attempts")
        thread.error = _want(raw[10], str, "a step's error")
        thread.retry_at = _when(raw[11], "a step's retry time")
    if len(raw) == 16:
        thread.enter = _want(raw[12], str, "the branch a thread enters")
        thread.unwind = _want(raw[13], str, "what a thread unwinds with")
        thread.failures = [_structure_failure(f) for f in _want(raw[14], list, "failures")]
        thread.daemon = _want(raw[15], bool, "a thread's daemon flag")
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


def _structure_message(raw: Any) -> Message:
    seq, event, payload, thread, sent_at, reason = _fields(raw, (6,), "a message")
    return Message(_want(seq, int, "a message's number"), _want(event, str, "a message's event"),
                   payload, _want(thread, str, "a message's thread"),
                   _when(sent_at, "a message's time"), _want(reason, str, "a message's reason"))


def _structure_failure(raw: Any) -> Failure:
    kind, message, step, attempt, types, path, at = _fields(raw, (7,), "a failure")
    for name in _want(types, list, "a failure's types"):
        _want(name, str, "a failure's type")
    return Failure(
        type=_want(kind, str, "a failure's type"), message=_want(message, str, "a message"),
        step=_want(step, str, "a failure's step"), attempt=_want(attempt, int, "an attempt"),
        types=tuple(types), path=tuple(_ints(path, "a failure's path")),
        at=_want(at, str, "the Try that caught a failure"),
    )


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
