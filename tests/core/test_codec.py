"""dumps/loads: exact round trips of rich data, old blobs after a schema change, and
bad blobs of every kind refused with a GenflowError."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genflow
from genflow import (
    CorruptStateError,
    GenflowError,
    On,
    SerializationError,
    Step,
    Timeout,
    UnknownWorkflowError,
    Wait,
    codec,
    dumps,
    loads,
    new_state,
)
from genflow.codec import structure_payload
from genflow.errors import PayloadError
from genflow.state import Origin
from genflow.testing import Instance


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.define
class Point:
    x: int
    y: float
    label: str = ""


@attrs.define
class Stamp:
    at: dt.datetime
    on: dt.date
    time: dt.time
    took: dt.timedelta
    amount: decimal.Decimal
    key: uuid.UUID
    colour: Colour
    level: Level
    where: Point | None = None


@genflow.workflow("codec-bag")
@attrs.define
class Bag:
    stamps: list[Stamp] = attrs.field(factory=list)
    by_name: dict[str, Stamp] = attrs.field(factory=dict)
    by_number: dict[int, str] = attrs.field(factory=dict)
    points: list[list[Point]] = attrs.field(factory=list)
    blob: bytes = b""
    maybe: int | None = None
    tags: set[str] = attrs.field(factory=set)
    levels: frozenset[Level] = frozenset()

    def definition(self):
        yield Wait("hold", On("poke", lambda: None), Timeout("later", 60))


@genflow.workflow("codec-other")
@attrs.define
class Other:
    def definition(self):
        yield Step("s", lambda: None)


# -- strategies --------------------------------------------------------------------------------

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
zones = st.one_of(st.none(), st.just(dt.UTC), offsets)
datetimes = st.datetimes(timezones=zones)
times = st.builds(
    lambda t, tz: t.replace(tzinfo=tz), st.times(), zones
)
decimals = st.decimals(allow_nan=False, allow_infinity=True, places=None)
points = st.builds(Point, st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text())
stamps = st.builds(
    Stamp,
    at=datetimes,
    on=st.dates(),
    time=times,
    took=st.timedeltas(),
    amount=decimals,
    key=st.uuids(),
    colour=st.sampled_from(Colour),
    level=st.sampled_from(Level),
    where=st.none() | points,
)
bags = st.builds(
    Bag,
    stamps=st.lists(stamps, max_size=3),
    by_name=st.dictionaries(st.text(max_size=5), stamps, max_size=2),
    by_number=st.dictionaries(st.integers(-(2**63), 2**63 - 1), st.text(), max_size=3),
    points=st.lists(st.lists(points, max_size=2), max_size=2),
    blob=st.binary(max_size=20),
    maybe=st.none() | st.integers(-(2**63), 2**64 - 1),
    tags=st.sets(st.text(max_size=4), max_size=4),
    levels=st.frozensets(st.sampled_from(Level)),
)


def _same_time(a: Any, b: Any) -> bool:
    """Equal, and equal in the ways `==` ignores: offset, naive vs aware, type."""
    return (type(a), a, a.isoformat()) == (type(b), b, b.isoformat())


@settings(max_examples=60, deadline=None)
@given(bags)
def test_rich_data_round_trips_exactly(bag: Bag) -> None:
    state = new_state("codec-1", bag)
    again, state_again = loads(dumps(bag, state))
    assert again == bag
    assert state_again == state
    for before, after in zip(bag.stamps, again.stamps, strict=True):
        assert _same_time(before.at, after.at)
        assert _same_time(before.time, after.time)
        assert _same_time(before.on, after.on)
        assert str(before.amount) == str(after.amount)  # same digits and exponent
        assert type(after.colour) is Colour and type(after.level) is Level


@settings(max_examples=30, deadline=None)
@given(bags, st.data())
def test_state_with_timers_and_events_round_trips(bag: Bag, data: st.DataObject) -> None:
    run = Instance(bag)
    run.clock.advance(seconds=data.draw(st.integers(0, 10**6)))
    run.resume()
    again, state = loads(run.blob())
    assert (again, state) == (run.wf, run.state)
    timer = next(e for e in state.threads[0].events if e.event == "later")
    assert timer.due == run.clock() + dt.timedelta(seconds=60)
    assert timer.due.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2030, 1, 2, 3, 4, 5, 6),
        dt.datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
        dt.datetime.min,
        dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59))),
        dt.date(1, 1, 1),
        dt.time(23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45))),
        dt.timedelta.max,
        dt.timedelta.min,
        dt.timedelta(microseconds=-1),
        decimal.Decimal("-0.000"),
        decimal.Decimal("1E+30"),
        decimal.Decimal("-Infinity"),
        uuid.UUID(int=0),
    ],
    ids=repr,
)
def test_edge_values_round_trip(value: Any) -> None:
    cls = type(value)
    again = codec.converter.structure(
        msgpack.unpackb(msgpack.packb(codec.unstructure(value))), cls
    )
    assert (type(again), again, str(again)) == (cls, value, str(value))


# -- schema changes ----------------------------------------------------------------------------


def _version(fields: dict[str, Any]) -> type:
    """A version of workflow 'codec-evolving' (same module and name: a redeploy)."""
    cls = attrs.make_class("Evolving", fields)
    cls.definition = lambda self: (yield Step("s", lambda: None))
    cls.__module__ = __name__
    cls.__qualname__ = "Evolving"
    return genflow.workflow("codec-evolving")(cls)


def test_adding_a_field_with_a_default_still_loads_old_blobs() -> None:
    v1 = _version({"name": attrs.field(type=str), "n": attrs.field(type=int, default=0)})
    old = dumps(v1(name="x", n=3), new_state("e-1", "codec-evolving"))
    v2 = _version({
        "name": attrs.field(type=str),
        "n": attrs.field(type=int, default=0),
        "tags": attrs.field(type=list[str], factory=lambda: ["new"]),
        "when": attrs.field(type=dt.datetime | None, default=None),
    })
    wf, state = loads(old)
    assert type(wf) is v2
    assert (wf.name, wf.n, wf.tags, wf.when) == ("x", 3, ["new"], None)
    assert state.id == "e-1"
    # and removing a field ignores the old value
    v3 = _version({"name": attrs.field(type=str)})
    wf, _ = loads(old)
    assert type(wf) is v3 and wf.name == "x"
    # a new field without a default cannot be filled in: a clear refusal
    _version({"name": attrs.field(type=str), "required": attrs.field(type=int)})
    with pytest.raises(CorruptStateError, match="required"):
        loads(old)


def test_timedelta_written_as_microseconds_still_loads() -> None:
    assert codec.converter.structure(1_500_000, dt.timedelta) == dt.timedelta(seconds=1.5)
    assert codec.converter.structure(-1, dt.timedelta) == dt.timedelta(microseconds=-1)


@pytest.mark.parametrize("not_a_mapping", [[1, 2], "abc", 7, None])
def test_attrs_objects_load_only_from_mappings(not_a_mapping: Any) -> None:
    """A list where an object belongs must not become an object full of defaults."""
    with pytest.raises(CorruptStateError, match="codec-bag"):
        loads(_envelope("genflow", codec.FORMAT, "codec-bag", not_a_mapping, _state()))
    nested = {"points": [[{"x": 1, "y": 2.0}, not_a_mapping]]}
    with pytest.raises(CorruptStateError, match=r"points\[0\]\[1\]"):
        loads(_envelope("genflow", codec.FORMAT, "codec-bag", nested, _state()))


def _state() -> Any:
    return codec.unstructure(new_state("m-1", Bag))


def test_loads_takes_an_explicit_name_to_class_mapping() -> None:
    blob = dumps(Bag(maybe=5), new_state("m-1", Bag))

    @attrs.define
    class Lean:
        maybe: int | None = None

    wf, _ = loads(blob, workflows={"codec-bag": Lean})
    assert wf == Lean(maybe=5)


# -- bad blobs ---------------------------------------------------------------------------------


def _good() -> bytes:
    run = Instance(Bag(maybe=1, points=[[Point(1, 2.5, "p")]]))
    run.resume()
    return run.blob()


def _with(items: list[Any], index: int, value: Any) -> list[Any]:
    return [value if n == index else item for n, item in enumerate(items)]


def _envelope(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


def test_every_truncation_is_refused_as_corrupt() -> None:
    blob = _good()
    for size in range(len(blob)):
        with pytest.raises(CorruptStateError):
            loads(blob[:size])


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_blobs_load_or_raise_a_genflow_error(data: st.DataObject) -> None:
    blob = bytearray(_good())
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:
        wf, state = loads(bytes(blob))
    except GenflowError:
        return
    assert isinstance(wf, Bag) and isinstance(state, genflow.State)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(GenflowError):
        loads(garbage)


def test_bad_blobs_are_refused_with_specific_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    good = _good()
    name, fmt = "codec-bag", codec.FORMAT
    _, _, _, data, state = msgpack.unpackb(good, raw=False, strict_map_key=False)
    old = codec.converter.unstructure(loads(good)[1])
    assert loads(_envelope("genflow", 1, name, data, old)) == loads(good)
    cases: list[tuple[Any, type[Exception], str]] = [
        ("not bytes", CorruptStateError, "bytes"),
        (b"", CorruptStateError, "not a genflow blob"),
        (good + b"\x00", CorruptStateError, "not a genflow blob"),
        (b"\xc1" + good[1:], CorruptStateError, "not a genflow blob"),
        (_envelope(1, 2, 3), CorruptStateError, "envelope"),
        (_envelope("other", fmt, name, data, state), CorruptStateError, "envelope"),
        (_envelope("genflow", 99, name, data, state), CorruptStateError, "format"),
        (_envelope("genflow", fmt, 5, data, state), CorruptStateError, "name"),
        (_envelope("genflow", fmt, "nobody-registered-this", data, state),
         UnknownWorkflowError, "nobody-registered-this"),
        (_envelope("genflow", fmt, name, {"maybe": "lots"}, state), CorruptStateError, "maybe"),
        (_envelope("genflow", fmt, name, [1, 2], state), CorruptStateError, "codec-bag"),
        (_envelope("genflow", fmt, name, data, _with(state, 2, "dancing")),
         CorruptStateError, "status 'dancing'"),
        (_envelope("genflow", fmt, name, data, _with(state, 0, "")), CorruptStateError, "id"),
        (_envelope("genflow", fmt, name, data, _with(state, 3, "7")),
         CorruptStateError, "counter is str"),
        (_envelope("genflow", fmt, name, data, _with(state, 4, [["t"]])),
         CorruptStateError, "a thread is not a list of 9"),
        (_envelope("genflow", fmt, name, data, state[:4]), CorruptStateError, "state"),
        (_envelope("genflow", fmt, name, data, "state"), CorruptStateError, "state"),
        (_envelope("genflow", fmt, name, data, _with(state, 1, "codec-other")),
         CorruptStateError, "codec-other"),
        # format 1 wrote the State as cattrs' dicts: still read, still checked
        (_envelope("genflow", 1, name, data, {**old, "status": "dancing"}),
         CorruptStateError, "state"),
        (_envelope("genflow", 1, name, data, {**old, "id": ""}), CorruptStateError, "id"),
    ]
    for blob, error, word in cases:
        with pytest.raises(error, match=word):
            loads(blob)
    wf, state = loads(good)
    monkeypatch.setattr(codec, "MAX_BLOB_SIZE", len(good) - 1)
    with pytest.raises(CorruptStateError, match="MAX_BLOB_SIZE"):
        loads(good)
    with pytest.raises(SerializationError, match="MAX_BLOB_SIZE"):
        dumps(wf, state)


def test_dumps_refuses_what_it_cannot_write() -> None:
    bag = Bag()
    with pytest.raises(SerializationError, match="codec-other"):
        dumps(bag, new_state("x", "codec-other"))
    with pytest.raises(SerializationError, match="codec-bag"):
        dumps(Bag(by_number={2**70: "big"}), new_state("x", Bag))

    @attrs.define
    class Stranger:
        pass

    with pytest.raises(UnknownWorkflowError):
        dumps(Stranger(), new_state("x", Bag))
    with pytest.raises(UnknownWorkflowError):
        new_state("x", "never-registered")


@settings(max_examples=200, deadline=None)
@given(value=st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
       | st.floats(allow_nan=False)
       | st.text(max_size=5) | st.binary(max_size=5) | st.lists(st.integers(0, 9), max_size=2)
       | st.dictionaries(st.text(max_size=2), st.integers(0, 9), max_size=2),
       target=st.sampled_from([str, int, float, bool, bytes]))
def test_primitive_payloads_are_never_coerced(value, target) -> None:
    """A payload of the wrong primitive type is refused, never passed through str(), int()..."""
    fits = type(value) is target or (
        target is float and type(value) is int and float(value) == value)  # exactly
    if fits:
        assert structure_payload(value, target, "e") == value
        assert type(structure_payload(value, target, "e")) is target
    else:
        words = "needs a payload of type" if value is None else "does not fit"
        with pytest.raises(PayloadError, match=f"{words} {target.__name__}"):
            structure_payload(value, target, "e")


_names = st.text(min_size=1, max_size=6)
_when_st = st.none() | st.datetimes(timezones=st.just(dt.UTC))
_paths = st.lists(st.integers(0, 2**40), max_size=6)


@st.composite
def _states(draw: st.DrawFn) -> genflow.State:
    sid = draw(_names)
    state = genflow.State(id=sid, workflow="codec-bag",
                          status=draw(st.sampled_from(genflow.WorkflowStatus)),
                          pc=draw(st.integers(0, 2**62)))
    for tid in draw(st.lists(_names, max_size=3, unique=True)):
        thread = genflow.Thread(
            id=tid, stmt=draw(st.text(max_size=6)),
            status=draw(st.sampled_from(genflow.ThreadStatus)), pc=draw(st.integers(0, 2**62)),
            path=draw(_paths), won=draw(st.text(max_size=4)), since=draw(_when_st),
            origin=[Origin(go, t, p) for go, t, p in
                    draw(st.lists(st.tuples(_names, _names, _paths), max_size=2))],
        )
        for event in draw(st.lists(_names, max_size=3, unique=True)):
            ints = st.integers(-(2**63), 2**63 - 1)  # what msgpack can hold
            setup = draw(st.none() | ints | st.text(max_size=5) | st.lists(ints, max_size=3)
                         | st.dictionaries(st.text(max_size=3), ints, max_size=2))
            thread.events.append(genflow.WaitEvent(
                event, genflow.CallbackRequest(sid, tid, event, draw(st.integers(0, 2**62)),
                                               setup),
                status=draw(st.sampled_from(genflow.WaitEventStatus)),
                won=draw(st.booleans()), error=draw(st.text(max_size=5)), due=draw(_when_st),
            ))
        state.threads.append(thread)
    return state


@settings(max_examples=150, deadline=None)
@given(_states())
def test_any_state_round_trips_exactly(state: genflow.State) -> None:
    blob = dumps(Bag(), state)
    assert loads(blob) == (Bag(), state)
    # and a blob cut anywhere is refused, never half-loaded
    for size in (len(blob) // 3, len(blob) - 1):
        with pytest.raises(CorruptStateError):
            loads(blob[:size])


@pytest.mark.parametrize(("value", "fits"), [
    (5, True), ("five", True), (None, False), (2.5, False), (True, False), ([5], False),
])
def test_unions_of_primitives_take_the_values_own_type(value: Any, fits: bool) -> None:
    if fits:
        assert structure_payload(value, int | str, "e") == value
    else:
        words = "needs a payload of type" if value is None else "does not fit"
        with pytest.raises(PayloadError, match=rf"{words} int \| str"):
            structure_payload(value, int | str, "e")
    assert structure_payload(None, int | None, "e") is None
