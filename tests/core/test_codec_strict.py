"""The strict converter: what a payload or a workflow's data may be, what is refused,
and what the refusal says. Nothing is ever coerced: a value fits its declared type
or it is refused with a GenflowError naming the event (payloads) and the field."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import enum
import math
import uuid
from typing import Any, Literal

import attrs
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genflow
from genflow import (
    GenflowError,
    HandlerError,
    On,
    PayloadError,
    SerializationError,
    Wait,
    codec,
    dumps,
    handle_callback,
    loads,
    new_state,
    resume,
)
from genflow.codec import check_payload, structure_data, structure_payload
from genflow.engine import Engine
from genflow.errors import DataError
from genflow.stores import MemoryStore
from genflow.stores.base import pack_detail
from genflow.wire import STORED_DEPTH


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.define
class Address:
    city: str
    zip: str = ""


@attrs.define
class Customer:
    name: str
    address: Address
    tags: list[str] = attrs.field(factory=list)


@attrs.define
class Payment:
    amount: int = attrs.field(validator=attrs.validators.gt(0))
    currency: str = attrs.field(default="EUR", validator=attrs.validators.in_(["EUR", "USD"]))


# -- 1. nothing is coerced --------------------------------------------------------------------


def _refused(payload: Any, tp: Any) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        structure_payload(payload, tp, "e")
    return caught.value


@pytest.mark.parametrize(("payload", "tp"), [
    ("abc", list[str]),
    ({1: "a", 2: "b"}, list[int]),
    (b"\x01\x02", list[int]),
    ({4}, list[int]),
    (frozenset({4}), list[int]),
    ("", list[int]),
    ({"a": 1}, list[str]),
    ("ab", tuple[str, ...]),
    ("ab", tuple[str, str]),
    ([1], tuple[int, int]),
    ([1, 2, 3], tuple[int, int]),
    ("abc", set[str]),
    ({"a": 1}, set[str]),
    ([1, 1], set[int]),
    ("ab", frozenset[str]),
    ([("a", 1)], dict[str, int]),
    ("ab", dict[str, int]),
    ({1: 1}, dict[str, int]),
    ({"a": "1"}, dict[str, int]),
    (1.0, int),
    (2.5, int),
    (True, int),
    (1, bool),
    (0, bool),
    ("1", int),
    (None, int),
    (None, list[int]),
    (None, str),
    ([1.0], list[int]),
    ([True], list[int]),
    ([None], list[int]),
    (2**53 + 1, float),
    (True, float),
    (1, str),
    ("abc", bytes),
    (True, Level),
    (1.0, Level),
    ("LOW", Level),
    (Colour.RED, Level),
    ("RED", Colour),
    (1, Colour),
    (True, Literal[1]),
    ("b", Literal["a"]),
    (8.5, decimal.Decimal),
    (True, decimal.Decimal),
    ("cheap", decimal.Decimal),
    ([1, 2], dt.timedelta),
    ([1, 2, "3"], dt.timedelta),
    ([1.5, 0, 0], dt.timedelta),
    ("5", dt.timedelta),
    (True, dt.timedelta),
    (1.5, dt.timedelta),
    (5, uuid.UUID),
    ("not a uuid", uuid.UUID),
    (dt.datetime(2030, 1, 1), dt.date),
    (dt.date(2030, 1, 1), dt.datetime),
    ("yesterday", dt.datetime),
    (1_700_000_000, dt.datetime),
    ([1, 2], Address),
    ("Paris", Address),
    (None, Address | int),
    (2.5, int | str),
    ({"city": 3}, Address),
    ({"city": "P", "": 1, 0: 2}, Address),           # unknown keys of mixed types
    ({"name": "Ada", "address": "Paris"}, Customer),
])
def test_a_value_that_does_not_fit_is_refused(payload: Any, tp: Any) -> None:
    _refused(payload, tp)


@pytest.mark.parametrize(("payload", "tp", "expected"), [
    ([1, 2], list[int], [1, 2]),
    ((1, 2), list[int], [1, 2]),                      # any ordered sequence for a list
    ([1, 2], tuple[int, ...], (1, 2)),
    (["a", 1], tuple[str, int], ("a", 1)),
    ([1, 2], set[int], {1, 2}),                       # JSON and msgpack have no sets
    ({1, 2}, set[int], {1, 2}),
    (["a"], frozenset[str], frozenset({"a"})),
    ({"a": 1}, dict[str, int], {"a": 1}),
    ({1: "a"}, dict[int, str], {1: "a"}),             # msgpack keeps int keys
    ({"red": 1}, dict[Colour, int], {Colour.RED: 1}),
    (1, float, 1.0),
    (2**53, float, float(2**53)),
    (5, int | str, 5),
    ("5", int | str, "5"),
    (None, int | None, None),
    (3, int | None, 3),
    (None, Address | None, None),
    ({"city": "Paris"}, Address | None, Address("Paris")),
    (1, Level, Level.LOW),
    (Level.HIGH, Level, Level.HIGH),
    ("red", Colour, Colour.RED),
    (1, Literal[1, "a"], 1),
    ("8.50", decimal.Decimal, decimal.Decimal("8.50")),
    (8, decimal.Decimal, decimal.Decimal(8)),
    ([1, 2, 3], dt.timedelta, dt.timedelta(1, 2, 3)),
    (1_500_000, dt.timedelta, dt.timedelta(seconds=1.5)),
    ("2030-01-02T03:04:05+01:00", dt.datetime,
     dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))),
    ("2030-01-02", dt.date, dt.date(2030, 1, 2)),
    ("12:30", dt.time, dt.time(12, 30)),
    (str(uuid.UUID(int=7)), uuid.UUID, uuid.UUID(int=7)),
    ({"x": [1, {2: b"3"}]}, Any, {"x": [1, {2: b"3"}]}),
    ([{"a": None}, "b", 3.5], list[Any], [{"a": None}, "b", 3.5]),
    ({"name": "Ada", "address": {"city": "Paris"}, "tags": ["x"]}, Customer,
     Customer("Ada", Address("Paris"), ["x"])),
    (Customer("Ada", Address("Paris")), Customer, Customer("Ada", Address("Paris"))),
])
def test_a_value_that_fits_is_taken_as_it_is(payload: Any, tp: Any, expected: Any) -> None:
    got = structure_payload(payload, tp, "e")
    assert got == expected
    assert type(got) is type(expected)


def test_a_str_is_never_a_list_of_its_characters_in_data() -> None:
    @attrs.define
    class Items:
        items: list[str] = attrs.field(factory=list)

    with pytest.raises(DataError, match=r"^items: expected list\[str\], got str 'abc'$"):
        structure_data({"items": "abc"}, Items)
    assert structure_data({"items": ["abc"]}, Items) == Items(["abc"])


# -- unknown keys ------------------------------------------------------------------------------


def test_unknown_keys_of_a_payload_are_refused_by_name() -> None:
    error = _refused({"name": "Ada", "address": {"city": "Paris"}, "tagz": ["vip"]}, Customer)
    assert "tagz" in str(error)
    assert "Customer" in str(error)
    nested = _refused({"name": "Ada", "address": {"city": "Paris", "zipp": "1"}}, Customer)
    assert "address" in str(nested) and "zipp" in str(nested)


def test_unknown_keys_of_start_data_are_refused_but_old_blobs_load() -> None:
    with pytest.raises(DataError, match="tagz"):
        structure_data({"name": "Ada", "address": {"city": "P"}, "tagz": []}, Customer)
    # a stored blob may hold a field the class has since dropped: schema evolution
    assert codec.structure({"name": "Ada", "address": {"city": "P", "gone": 1}},
                           Customer) == Customer("Ada", Address("P"))


# -- readable messages ------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "tp", "message"), [
    ("abc", list[str], "expected list[str], got str 'abc'"),
    ({"name": "Ada", "address": {"city": 5}}, Customer,
     "address.city: expected str, got int 5"),
    ({"name": "Ada", "address": {"city": "P"}, "tags": ["a", "b", 3]}, Customer,
     "tags[2]: expected str, got int 3"),
    ({"a": [1, "x"]}, dict[str, list[int]], "['a'][1]: expected int, got str 'x'"),
    ({"name": "Ada"}, Customer, "address: required field missing"),
    (1.5, int, "expected int, got float 1.5"),
])
def test_refusals_name_the_field_in_plain_words(payload: Any, tp: Any, message: str) -> None:
    text = str(_refused(payload, tp))
    assert text.endswith(f": {message}")
    assert "@ $" not in text and "$." not in text


def test_a_missing_payload_says_which_type_the_event_needs() -> None:
    with pytest.raises(PayloadError) as caught:
        structure_payload(None, Payment, "paid")
    assert str(caught.value) == "event 'paid' needs a payload of type Payment"


def test_the_custom_type_hint_names_register_hooks() -> None:
    class Money:
        def __init__(self, cents: int) -> None:
            self.cents = cents

    @genflow.workflow("strict-money")
    @attrs.define
    class Wallet:
        cash: Any = None

        def definition(self):
            yield Wait("w", On("e", lambda: None))

    with pytest.raises(SerializationError) as caught:
        dumps(Wallet(Money(5)), new_state("m-1", Wallet))
    text = str(caught.value)
    assert "genflow.codec.register_hooks(Money" in text
    assert "codec.converter" not in text
    assert "cash" in text and "strict-money" in text


def test_a_payload_type_that_does_not_resolve_is_a_definition_error() -> None:
    # this module has `from __future__ import annotations`: a class local to a
    # function is a name the handler's annotations cannot resolve
    @attrs.define
    class Local:
        n: int

    @genflow.workflow("strict-local")
    @attrs.define
    class Holder:
        def definition(self):
            yield Wait("w", On("e", self.on_e))

        def on_e(self, payload: Local) -> None:
            pass

    holder = Holder()
    state = new_state("l-1", holder)
    resume(holder, state)
    with pytest.raises(genflow.DefinitionError, match=r"'Local'.*module level"):
        handle_callback(state.threads[0].events[0].req, holder, state, {"n": 1})


# -- attrs validators: their words arrive as PayloadError ---------------------------------------


@genflow.workflow("strict-pay")
@attrs.define
class Till:
    paid: int = 0
    calls: int = 0

    def definition(self):
        yield Wait("pay", On("paid", self.on_paid), On("anything", self.on_anything))

    def on_paid(self, payment: Payment) -> None:
        self.calls += 1
        self.paid = payment.amount

    def on_anything(self, payload: Any) -> None:
        self.calls += 1


def _till() -> tuple[Till, genflow.State]:
    till = Till()
    state = new_state("till-1", till)
    resume(till, state)
    return till, state


def _req(state: genflow.State, event: str) -> genflow.CallbackRequest:
    return next(e.req for e in state.threads[0].events if e.event == event)


@pytest.mark.parametrize(("payload", "words"), [
    ({"amount": -1}, "'amount' must be > 0: -1"),
    ({"amount": 5, "currency": "GBP"}, "'currency' must be in ['EUR', 'USD'] (got 'GBP')"),
])
def test_a_validators_refusal_is_a_payload_error_in_its_own_words(payload, words) -> None:
    till, state = _till()
    before = dumps(till, state)
    with pytest.raises(PayloadError) as caught:
        handle_callback(_req(state, "paid"), till, state, payload)
    assert not isinstance(caught.value, HandlerError)
    assert str(caught.value) == f"payload for event 'paid' does not fit Payment: {words}"
    assert dumps(till, state) == before

    engine = Engine(MemoryStore(), workflows=[Till])
    instance_id = engine.start(Till())
    stored = engine.store.get(instance_id)
    with pytest.raises(PayloadError) as caught:
        engine.send(instance_id, "paid", payload)
    assert str(caught.value).endswith(f": {words}")
    assert engine.store.get(instance_id) == stored


# -- 2. payloads are checked fully before user code runs -------------------------------------


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("payload", "path", "why"), [
    (2**64, "", "outside msgpack's 64-bit range"),
    (-(2**63) - 1, "", "outside msgpack's 64-bit range"),
    ({"items": [1, 2, 3, 2**70]}, "['items'][3]", "outside msgpack's 64-bit range"),
    ("caf\udce9", "", "lone surrogate"),
    ({"k\ud800": 1}, "", "lone surrogate"),
    ([1, {"a": "\udfff"}], "[1]['a']", "lone surrogate"),
    (_deep(600), "", "nested deeper than"),
    ({"x": _deep(codec.MAX_PAYLOAD_DEPTH)}, "['x']", "nested deeper than"),
])
def test_payloads_msgpack_cannot_hold_are_refused_before_the_handler(payload, path, why) -> None:
    till, state = _till()
    before = dumps(till, state)
    with pytest.raises(PayloadError) as caught:
        handle_callback(_req(state, "anything"), till, state, payload)
    text = str(caught.value)
    assert "'anything'" in text and why in text
    if path:
        assert path in text
    assert till.calls == 0 and dumps(till, state) == before
    with pytest.raises(PayloadError, match=why):
        check_payload(payload, "anything")


def test_a_payload_at_the_depth_limit_is_taken() -> None:
    deepest = _deep(codec.MAX_PAYLOAD_DEPTH)
    check_payload(deepest, "e")
    assert structure_payload(deepest, Any, "e") == deepest
    assert check_payload(2**64 - 1, "e") is None and check_payload(-(2**63), "e") is None


@attrs.define
class Node:
    children: list[Node] = attrs.field(factory=list)


def test_a_deep_payload_for_a_typed_handler_is_a_payload_error_not_recursion() -> None:
    value: Any = {}
    for _ in range(600):
        value = {"children": [value]}
    with pytest.raises(PayloadError, match="nested deeper than"):
        structure_payload(value, Node, "tree")
    with pytest.raises(PayloadError, match="takes no payload"):
        structure_payload(_deep(600), None, "tree")


def test_a_refused_payload_leaves_the_stored_instance_byte_identical(store) -> None:
    engine = Engine(store, workflows=[Till])
    instance_id = engine.start(Till())
    stored = store.get(instance_id)
    for event, payload in [("anything", 2**70), ("anything", "\ud800"), ("anything", _deep(150)),
                           ("paid", {"amount": "5"}), ("paid", {"amount": 5, "tagz": 1}),
                           ("paid", None)]:
        with pytest.raises(PayloadError):
            engine.send(instance_id, event, payload)
        assert store.get(instance_id) == stored
    # nested 600 deep: refused as a payload before anything (the journal's entry
    # included) touches it
    with pytest.raises(PayloadError, match="nested deeper than"):
        engine.send(instance_id, "anything", _deep(600))
    assert store.get(instance_id) == stored
    assert engine.get(instance_id).data.calls == 0


def test_unstructure_of_a_value_too_deep_or_cyclic_is_a_serialization_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    for value in (_deep(2000), cycle, {"a": cycle}):
        with pytest.raises(SerializationError, match="nested deeper than"):
            codec.unstructure(value)


# -- dumps names the field it cannot write -------------------------------------------------


@genflow.workflow("strict-bag")
@attrs.define
class Bag:
    items: list[int] = attrs.field(factory=list)
    by_name: dict[str, Any] = attrs.field(factory=dict)
    note: str = ""
    customer: Customer | None = None

    def definition(self):
        yield Wait("w", On("e", lambda: None))


@pytest.mark.parametrize(("bag", "message"), [
    (Bag(items=[1, 2, 3, 2**70]),
     f"items[3]: int {2**70} is outside msgpack's 64-bit range"),
    (Bag(by_name={"x": [-(2**64)]}), "by_name['x'][0]: int"),
    (Bag(note="\ud800"), "note: str with a lone surrogate"),
    (Bag(items="abc"), "items: expected list[int], got str 'abc'"),  # type: ignore[arg-type]
    (Bag(customer=Customer("Ada", Address("Paris"), tags={"a": 1})),  # type: ignore[arg-type]
     "customer.tags: expected list[str], got dict"),
    (Bag(by_name={"x": _deep(600)}), "by_name['x']"),
])
def test_dumps_names_the_workflow_and_the_field(bag: Bag, message: str) -> None:
    with pytest.raises(SerializationError) as caught:
        dumps(bag, new_state("b-1", bag))
    text = str(caught.value)
    assert "strict-bag" in text
    assert message in text


@genflow.workflow("strict-pairs")
@attrs.define
class Pairs:
    by_pair: dict[tuple[int, int], str] = attrs.field(factory=dict)

    def definition(self):
        yield Wait("w", On("e", lambda: None))


def test_a_mapping_keyed_by_tuples_is_refused_before_it_is_stored() -> None:
    """msgpack writes a tuple key as an array, which no reader can take back as a key."""
    with pytest.raises(DataError, match=r"by_pair: a dict\[tuple\[int, int\], str\] cannot"):
        dumps(Pairs({(1, 2): "a"}), new_state("p-1", Pairs))


@genflow.workflow("strict-stamps")
@attrs.define
class Stamps:
    on: dt.date = dt.date(2030, 1, 1)
    price: decimal.Decimal = decimal.Decimal("0")
    key: uuid.UUID = attrs.field(factory=uuid.uuid4)
    level: Level = Level.LOW

    def definition(self):
        yield Wait("w", On("e", lambda: None))


@pytest.mark.parametrize(("stamps", "message"), [
    (Stamps(on=dt.datetime(2030, 1, 1, 12)), "on: expected date, got datetime"),
    (Stamps(price=8.5), "price: expected Decimal, got float 8.5"),  # type: ignore[arg-type]
    (Stamps(key=str(uuid.UUID(int=1))), "key: expected UUID, got str"),  # type: ignore[arg-type]
    (Stamps(level=1), "level: expected Level, got int 1"),  # type: ignore[arg-type]
])
def test_a_value_that_would_come_back_as_another_is_refused(stamps, message) -> None:
    """A datetime in a date field would be cut to its date; 8.5 would come back a Decimal."""
    with pytest.raises(DataError, match=message):
        dumps(stamps, new_state("s-1", stamps))


def test_start_refuses_data_that_would_not_load_back(store) -> None:
    engine = Engine(store, workflows=[Bag])
    cases = [
        (Bag(note=5), "note: expected str, got int 5"),  # type: ignore[arg-type]
        (Bag(items=[1, "2"]), "items[1]: expected int, got str '2'"),  # type: ignore[list-item]
        (Bag(items="abc"), "items: expected list[int], got str 'abc'"),  # type: ignore[arg-type]
    ]
    for bag, message in cases:
        with pytest.raises(DataError) as caught:
            engine.start(bag, id="refused")
        assert message in str(caught.value) and "strict-bag" in str(caught.value)
        with pytest.raises(GenflowError):
            store.get("refused")
    assert engine.get(engine.start(Bag(items=[1]), id="fine")).data == Bag(items=[1])


def test_the_payload_benchmark_structures_what_cattrs_does() -> None:
    """benchmarks/payloads.py times genflow beside plain cattrs: the same results."""
    from benchmarks import payloads

    for case, (genflow_result, cattrs_result) in payloads.workloads().items():
        assert genflow_result == cattrs_result, case


# -- 4. siblings: nothing but GenflowErrors out of the codec ------------------------------------


def test_pack_detail_names_what_it_cannot_pack() -> None:
    with pytest.raises(SerializationError, match=r"\['payload'\]\['n'\]: str with a lone"):
        pack_detail({"event": "e", "payload": {"n": "\ud800"}})
    with pytest.raises(SerializationError, match=r"\['payload'\]\[0\].*nested deeper"):
        pack_detail({"event": "e", "payload": _deep(STORED_DEPTH + 10)})
    # the journal is for people: what msgpack does not know is written as its str
    assert msgpack.unpackb(pack_detail({"at": dt.date(2030, 1, 1), "n": 2**70})) == {
        "at": "2030-01-01", "n": str(2**70)}


_wire = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=4) | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=2) | st.integers(-3, 3), inner, max_size=3),
    max_leaves=12,
)


def _blob_parts() -> list[Any]:
    bag = Bag(items=[1], by_name={"a": 1}, customer=Customer("Ada", Address("P")))
    state = new_state("b-2", bag)
    resume(bag, state)
    return msgpack.unpackb(dumps(bag, state), raw=False, strict_map_key=False)


def _replace_at(tree: Any, route: list[int], value: Any) -> Any:
    if not route:
        return value
    if isinstance(tree, list) and tree:
        index = route[0] % len(tree)
        return [_replace_at(item, route[1:], value) if n == index else item
                for n, item in enumerate(tree)]
    if isinstance(tree, dict) and tree:
        key = sorted(tree, key=repr)[route[0] % len(tree)]
        return {k: _replace_at(v, route[1:], value) if k == key else v for k, v in tree.items()}
    return value


@settings(max_examples=400, deadline=None)
@given(route=st.lists(st.integers(0, 20), min_size=1, max_size=6), value=_wire)
def test_any_well_formed_msgpack_in_a_blob_loads_or_is_a_genflow_error(route, value) -> None:
    blob = msgpack.packb(_replace_at(_blob_parts(), route, value), use_bin_type=True)
    for load in (loads, codec.load_state):
        with contextlib.suppress(GenflowError):
            load(blob)


# -- the property: over the supported field types ---------------------------------------------


@attrs.frozen
class Point:
    x: int
    y: str = ""


_ints = st.integers(-(2**63), 2**64 - 1)
_zones = st.none() | st.just(dt.UTC) | st.integers(-1439, 1439).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m)))
#: every supported field type, with a strategy of its values
TYPES: dict[Any, st.SearchStrategy[Any]] = {
    int: _ints,
    float: st.floats(),
    str: st.text(max_size=6),
    bool: st.booleans(),
    bytes: st.binary(max_size=6),
    dt.datetime: st.datetimes(timezones=_zones),
    dt.date: st.dates(),
    dt.time: st.builds(lambda t, z: t.replace(tzinfo=z), st.times(), _zones),
    dt.timedelta: st.timedeltas(),
    decimal.Decimal: st.decimals(allow_nan=False),
    uuid.UUID: st.uuids(),
    Colour: st.sampled_from(Colour),
    Level: st.sampled_from(Level),
    Point: st.builds(Point, _ints, st.text(max_size=3)),
    list[int]: st.lists(_ints, max_size=3),
    list[str]: st.lists(st.text(max_size=3), max_size=3),
    set[int]: st.sets(_ints, max_size=3),
    frozenset[str]: st.frozensets(st.text(max_size=3), max_size=3),
    tuple[int, ...]: st.lists(_ints, max_size=3).map(tuple),
    tuple[str, int]: st.tuples(st.text(max_size=3), _ints),
    dict[str, int]: st.dictionaries(st.text(max_size=3), _ints, max_size=3),
    dict[int, str]: st.dictionaries(_ints, st.text(max_size=3), max_size=3),
    list[Point]: st.lists(st.builds(Point, _ints), max_size=2),
    int | None: st.none() | _ints,
    int | str: _ints | st.text(max_size=3),
    Point | None: st.none() | st.builds(Point, _ints),
}


def _wire_form(value: Any, tp: Any) -> Any:
    """What a value of `tp` looks like after a trip through msgpack."""
    raw = codec.unstructure(value) if tp is not Any else value
    return msgpack.unpackb(msgpack.packb(raw, use_bin_type=True), raw=False,
                           strict_map_key=False)


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same type, and equal in what `==` ignores (offsets, -0.0, exponents)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if isinstance(a, (dt.datetime, dt.time, decimal.Decimal)):
        return str(a) == str(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_value_of_a_declared_type_round_trips_exactly(data: st.DataObject) -> None:
    tp = data.draw(st.sampled_from(list(TYPES)), label="type")
    value = data.draw(TYPES[tp], label="value")
    for structure in (codec.structure, lambda v, t: structure_payload(v, t, "e")):
        assert _same(structure(_wire_form(value, tp), tp), value)


def _fits(wire: Any, tp: Any, extra_keys: bool = False) -> bool:
    """The specification: which wire values a type takes (written apart from the codec).
    `extra_keys`: a stored blob's object may hold fields its class has since dropped."""
    if tp in (int, str, bool, bytes):
        return type(wire) is tp
    if tp is float:
        return type(wire) is float or (type(wire) is int and float(wire) == wire)
    if tp in (dt.datetime, dt.date, dt.time, uuid.UUID, decimal.Decimal):
        if type(wire) is int and tp is decimal.Decimal:
            return True
        try:
            parse = tp if tp in (uuid.UUID, decimal.Decimal) else tp.fromisoformat
            return type(wire) is str and parse(wire) is not None
        except (ValueError, ArithmeticError):
            return False
    if tp is dt.timedelta:
        if type(wire) is int:
            return abs(wire) <= dt.timedelta.max // dt.timedelta.resolution
        return (type(wire) is list and len(wire) == 3 and all(type(n) is int for n in wire)
                and _constructs(dt.timedelta, *wire))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return any(type(m.value) is type(wire) and m.value == wire for m in tp)
    if tp is Point:
        return (type(wire) is dict and (extra_keys or set(wire) <= {"x", "y"}) and "x" in wire
                and _fits(wire["x"], int) and _fits(wire.get("y", ""), str))
    origin, args = getattr(tp, "__origin__", None), getattr(tp, "__args__", ())
    if origin in (list, set, frozenset) or (origin is tuple and args[-1] is Ellipsis):
        if type(wire) is not list or not all(_fits(item, args[0], extra_keys) for item in wire):
            return False
        return origin in (list, tuple) or len(wire) == len(set(wire))  # a set repeats nothing
    if origin is tuple:
        return (type(wire) is list and len(wire) == len(args)
                and all(_fits(item, arg, extra_keys) for item, arg in zip(wire, args, strict=True)))
    if origin is dict:
        return type(wire) is dict and all(_fits(k, args[0]) and _fits(v, args[1], extra_keys)
                                          for k, v in wire.items())
    if args:  # a union
        return any(wire is None if a is type(None) else _fits(wire, a, extra_keys)
                   for a in args)
    raise AssertionError(f"no specification for {tp!r}")


def _constructs(cls: Any, *args: Any) -> bool:
    try:
        cls(*args)
    except (OverflowError, ValueError):
        return False
    return True


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_a_value_of_another_type_is_refused_never_coerced(data: st.DataObject) -> None:
    declared = data.draw(st.sampled_from(list(TYPES)), label="declared")
    other = data.draw(st.sampled_from([*TYPES, Any]), label="drawn from")
    strategy = _wire if other is Any else TYPES[other]
    wire = _wire_form(data.draw(strategy, label="value"), other)
    if _fits(wire, declared):
        taken = structure_payload(wire, declared, "e")
        assert _same(taken, structure_data(wire, declared))
        assert _same(taken, codec.structure(wire, declared))
    else:
        with pytest.raises(PayloadError):
            structure_payload(wire, declared, "e")
        with pytest.raises(DataError):
            structure_data(wire, declared)
    if not _fits(wire, declared, extra_keys=True):  # what loads uses (it wraps the error)
        with pytest.raises(Exception):  # noqa: B017
            codec.structure(wire, declared)
