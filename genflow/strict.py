"""The strict converter: a value fits its declared type exactly, or it is refused.

cattrs, left to itself, makes the best of what it is given: `list(value)` turns
the str "abc" into `["a", "b", "c"]` and a dict into its keys, `int(2.9)` is 2,
`Level(True)` is `Level.LOW`. A payload comes from outside and the data must come
back from its blob as it went in, so genflow's converters coerce nothing. What
each declared type takes (the rule the docs state, in docs/events.md):

* `int` an int (never a bool, never a float); `float` a float, or an int it
  holds exactly; `str`, `bytes`, `bool` themselves;
* `list[T]`, `Sequence[T]` a list or a tuple; `tuple[...]` the same, of the
  declared length; `set[T]`, `frozenset[T]` a set or a list (JSON and msgpack
  have no sets) that repeats no element; never a str, bytes or a mapping;
* `dict[K, V]` a mapping, its keys and values each fitting;
* an attrs class: a mapping of its fields (or an instance, checked field by
  field); a missing required field, or (for payloads and start data) a key
  that is no field, is refused;
* enums and `Literal`: one of their values, of the value's own type;
  datetime, date, time: an ISO 8601 string; timedelta `[days, seconds,
  microseconds]` (or an int of microseconds, as older blobs hold); Decimal a
  decimal string or an int; UUID its string;
* `X | None` None or an `X`; `int | str` and other unions of primitives the
  member of the value's own type; `Any` anything.

On the way out (`unstructure`, at every save) containers, and the types
written as strings (datetimes, Decimal, UUID), are checked as well: a str in a
`list[str]` field is a `DataError`, not a list of characters. Ints, floats and
strs are not (that would cost every save): `Engine.start` loads its first blob
back, and `loads` refuses, naming the field, what a step put there wrongly.
Errors are `DataError` (a `GenflowError`), so a direct use of a converter never
raises anything a caller cannot catch as genflow's.

Two converters share these hooks: one without detailed validation (fast, for
the happy path) and one with it, used only to explain a failure field by field
(`explain`).
"""

from __future__ import annotations

import collections
import collections.abc as abc
import datetime as _dt
import decimal
import enum
import typing
import uuid
from typing import Any

import attrs
import cattrs
from cattrs.cols import iterable_unstructure_factory, mapping_unstructure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from genflow.errors import DataError
from genflow.wire import Field, Key, describe, path_text, short_repr, type_name

__all__ = ["Converters", "explain", "misfit_error"]

_UNION = (typing.Union, typing.get_origin(int | str))


def misfit_error(tp: Any, value: Any, detail: str = "") -> DataError:
    """`expected list[str], got str 'abc'`: the one wording of every refusal."""
    return DataError(f"expected {type_name(tp)}{detail}, got {describe(value)}")


@attrs.define
class Converters:
    """A fast converter and its explaining twin, with the same strict hooks."""

    fast: cattrs.Converter
    explaining: cattrs.Converter

    @classmethod
    def build(cls, *, forbid_extra_keys: bool) -> Converters:
        return cls(*(_configure(cattrs.Converter(detailed_validation=detailed),
                                forbid_extra_keys)
                     for detailed in (False, True)))

    def register(self, tp: type, unstructure_hook: Any, structure_hook: Any) -> None:
        for conv in (self.fast, self.explaining):
            conv.register_unstructure_hook(tp, unstructure_hook)
            conv.register_structure_hook(tp, structure_hook)

    def structure(self, value: Any, tp: Any) -> Any:
        """`value` as a `tp`; on failure, the explaining converter's error (field by field)."""
        try:
            return self.fast.structure(value, tp)
        except Exception:
            return self.explaining.structure(value, tp)  # raises, naming the fields


# -- the hooks -------------------------------------------------------------------------------


def _configure(conv: cattrs.Converter, forbid_extra_keys: bool) -> cattrs.Converter:
    for primitive in _PRIMITIVES:
        conv.register_structure_hook(primitive, _primitive(primitive))
    for cls in (_dt.datetime, _dt.date, _dt.time):
        conv.register_unstructure_hook(cls, _exactly(cls, cls.isoformat))
        conv.register_structure_hook(cls, _parsed(cls, cls.fromisoformat, " (an ISO 8601 string)"))
    # [days, seconds, microseconds], timedelta's own exact form: a count of
    # microseconds overflows msgpack's 64 bits beyond 292 years.
    conv.register_unstructure_hook(_dt.timedelta, lambda v: [v.days, v.seconds, v.microseconds])
    conv.register_structure_hook(_dt.timedelta, _structure_timedelta)
    conv.register_unstructure_hook(decimal.Decimal, _exactly(decimal.Decimal, str))
    # a float is refused: 8.5 is not "8.50", and 0.1 is not 0.1
    conv.register_structure_hook(decimal.Decimal, _parsed(
        decimal.Decimal, decimal.Decimal, " (a decimal string)", from_int=True))
    conv.register_unstructure_hook(uuid.UUID, _exactly(uuid.UUID, str))
    conv.register_structure_hook(uuid.UUID, _parsed(uuid.UUID, uuid.UUID, " (a UUID string)"))
    # Predicates registered later are tried first: the most specific go last.
    conv.register_structure_hook_factory(_is_enum, lambda tp: _structure_enum)
    conv.register_structure_hook_factory(_is_literal, _literal)
    conv.register_structure_hook_factory(_is_primitive_union, _primitive_union)
    for is_kind, structure_factory, unstructure_factory in _COLLECTIONS:
        conv.register_structure_hook_factory(
            is_kind, lambda tp, f=structure_factory: f(tp, conv))
        conv.register_unstructure_hook_factory(
            is_kind, lambda tp, f=unstructure_factory: f(tp, conv))
    conv.register_structure_hook_factory(
        attrs.has, lambda cls: _attrs_structure(cls, conv, forbid_extra_keys))
    return conv


_PRIMITIVES: dict[type, tuple[type, ...]] = {
    str: (str,), int: (int,), float: (float, int), bool: (bool,), bytes: (bytes, bytearray),
}


def _primitive(cls: type) -> Any:
    accepts = _PRIMITIVES[cls]

    def structure(value: Any, tp: Any) -> Any:
        if tp is not cls:  # a subclass: an enum on a str or int, or a class of your own
            if _is_enum(tp):
                return _structure_enum(value, tp)
            if type(value) is tp or type(value) is cls:
                return tp(value)
            raise misfit_error(tp, value)
        if type(value) is cls:
            return value
        # bool is an int to Python, but not a number to a workflow author
        if isinstance(value, accepts) and not isinstance(value, bool):
            converted = cls(value)
            if converted != value:  # an int too large for a float's 53 bits
                raise misfit_error(tp, value, " (it cannot hold this value exactly)")
            return converted
        raise misfit_error(tp, value)

    return structure


def _exactly(cls: type, write: Any) -> Any:
    """On the way out, only a `cls`: a datetime in a `date` field would be cut to
    its date, a float in a `Decimal` field or a str in a `UUID` field would come
    back as something else."""

    def unstructure(value: Any) -> Any:
        if type(value) is not cls:
            raise misfit_error(cls, value)
        return write(value)

    return unstructure


def _parsed(cls: Any, parse: Any, detail: str, *, from_int: bool = False) -> Any:
    """A `cls` itself, or parsed from its string (or an int, `from_int`); else refused."""

    def structure(value: Any, tp: Any) -> Any:
        if type(value) is cls:  # exactly: a datetime is a date to Python, not to a field
            return value
        if type(value) is str or (from_int and type(value) is int):
            try:
                return parse(value)
            except (ValueError, ArithmeticError):  # Decimal's InvalidOperation is the latter
                pass
        raise misfit_error(tp, value, detail)

    return structure


def _structure_timedelta(value: Any, tp: Any) -> _dt.timedelta:
    if type(value) is _dt.timedelta:
        return value
    try:
        if type(value) in (list, tuple) and len(value) == 3 and all(
                type(part) is int for part in value):
            days, seconds, microseconds = value
            return _dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)
        if type(value) is int:  # a count of microseconds (older blobs)
            return _dt.timedelta(microseconds=value)
    except OverflowError:
        pass
    raise misfit_error(tp, value, " ([days, seconds, microseconds])")


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _structure_enum(value: Any, tp: Any) -> Any:
    if type(value) is tp:
        return value
    for member in tp:  # by value, of the value's own type: True is no 1, 1.0 no 1
        if type(member.value) is type(value) and member.value == value:
            return member
    if issubclass(tp, enum.Flag) and type(value) is int:
        try:
            return tp(value)  # a combination of flags
        except ValueError:
            pass
    values = ", ".join(repr(member.value) for member in tp)
    raise misfit_error(tp, value, f" (one of {values})")


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Literal


def _literal(tp: Any) -> Any:
    options = typing.get_args(tp)

    def structure(value: Any, _: Any) -> Any:
        for option in options:
            if type(option) is type(value) and option == value:
                return option
            if isinstance(option, enum.Enum) and type(option.value) is type(value) \
                    and option.value == value:
                return option
        raise misfit_error(tp, value)

    return structure


def _is_primitive_union(tp: Any) -> bool:
    return (typing.get_origin(tp) in _UNION
            and all(arg in _PRIMITIVES or arg is type(None) for arg in typing.get_args(tp)))


def _primitive_union(tp: Any) -> Any:
    members = typing.get_args(tp)
    to_float = _primitive(float)

    def structure(value: Any, _: Any) -> Any:
        for member in members:  # the exact type first: True is no int, 1 no float
            if type(value) is member:
                return value
        if float in members and type(value) is int:
            return to_float(value, float)
        raise misfit_error(tp, value)

    return structure


def _attrs_structure(cls: type, conv: cattrs.Converter, forbid_extra_keys: bool) -> Any:
    # cattrs reads fields with `in`, so a list or a str would silently become an
    # instance full of defaults: anything but a mapping is refused. An instance
    # (a payload given as the declared class) is checked field by field.
    fields_from: Any = make_dict_structure_fn(
        cls, conv, _cattrs_forbid_extra_keys=forbid_extra_keys)

    def structure(value: Any, tp: Any) -> Any:
        if type(value) is cls:
            value = conv.unstructure(value, cls)
        elif not isinstance(value, abc.Mapping):
            raise misfit_error(cls, value, " (a mapping of its fields)")
        return fields_from(value, tp)

    return structure


# -- collections: the container is checked, then each item --------------------------------------


def _item_type(tp: Any) -> Any:
    args = typing.get_args(tp)
    return args[0] if args else Any


def _each(conv: cattrs.Converter, tp: Any, item_tp: Any) -> Any:
    """A function that structures every item of a container into `item_tp`. The
    item's hook is looked up at the first call, once (a recursive class's own hook
    is still being built when this is made)."""
    if conv.detailed_validation:
        return lambda value: _items(conv, tp, ((item, item_tp, IterableValidationNote, index)
                                               for index, item in enumerate(value)))
    hook = None

    def each(value: Any) -> list[Any]:
        nonlocal hook
        if hook is None:
            hook = conv.get_structure_hook(item_tp)
        return [hook(item, item_tp) for item in value]

    return each


def _items(conv: cattrs.Converter, tp: Any, parts: Any) -> list[Any]:
    """Each `(value, type, note, where)` of `parts` structured. Under detailed
    validation every failure is collected, noted with `note(..., where, type)`
    as cattrs notes its own (an index, or a mapping's key)."""
    if not conv.detailed_validation:
        return [conv.structure(value, part_tp) for value, part_tp, _, _ in parts]
    out, errors = [], []
    for value, part_tp, note, where in parts:
        try:
            out.append(conv.structure(value, part_tp))
        except Exception as exc:
            exc.__notes__ = [*getattr(exc, "__notes__", []), note(
                f"Structuring {type_name(tp)} @ {where!r}", where, part_tp)]
            errors.append(exc)
    if errors:
        raise cattrs.IterableValidationError(f"While structuring {type_name(tp)}", errors, tp)
    return out


_ORDERED = (list, tuple)


def _structure_sequence(tp: Any, conv: cattrs.Converter) -> Any:
    origin = typing.get_origin(tp) or tp
    item_tp = _item_type(tp)
    build: Any = tuple if origin is tuple else (
        collections.deque if origin is collections.deque else None)
    each = _each(conv, tp, item_tp)

    def structure(value: Any, _: Any) -> Any:
        if type(value) not in _ORDERED:
            raise misfit_error(tp, value)
        return each(value) if build is None else build(each(value))

    return structure


def _structure_fixed_tuple(tp: Any, conv: cattrs.Converter) -> Any:
    types = typing.get_args(tp)
    if types == ((),):  # `Tuple[()]` as older typing spells the empty tuple
        types = ()

    def structure(value: Any, _: Any) -> Any:
        if type(value) not in _ORDERED:
            raise misfit_error(tp, value)
        if len(value) != len(types):
            raise misfit_error(tp, value, f" ({len(types)} items, not {len(value)})")
        return tuple(_items(conv, tp, (
            (item, item_tp, IterableValidationNote, index)
            for index, (item, item_tp) in enumerate(zip(value, types, strict=True)))))

    return structure


def _structure_set(tp: Any, conv: cattrs.Converter) -> Any:
    origin = typing.get_origin(tp) or tp
    item_tp = _item_type(tp)
    build = set if origin in (set, abc.MutableSet) else frozenset
    each = _each(conv, tp, item_tp)

    def structure(value: Any, _: Any) -> Any:
        if type(value) not in (list, tuple, set, frozenset):
            raise misfit_error(tp, value)
        items = each(value)
        result = build(items)
        if len(result) != len(items):
            raise misfit_error(tp, value, " (a list for a set must not repeat an item)")
        return result

    return structure


class _KeyNote(IterableValidationNote):
    """Under detailed validation: the failure is the key at `index`, not its value."""


def _structure_mapping(tp: Any, conv: cattrs.Converter) -> Any:
    args = typing.get_args(tp)
    key_tp, value_tp = args if len(args) == 2 else (Any, Any)
    build: Any = collections.OrderedDict if (typing.get_origin(tp) or tp) is \
        collections.OrderedDict else dict

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, abc.Mapping):
            raise misfit_error(tp, value)
        out = _items(conv, tp, (part for k, v in value.items() for part in (
            (k, key_tp, _KeyNote, k), (v, value_tp, IterableValidationNote, k))))
        return build(zip(out[::2], out[1::2], strict=True))

    return structure


# On the way out: the container must be what the field declares, or the blob
# would hold something else (a str in a `list[str]` field becomes its letters).


def _unstructure_checked(accepts: tuple[type, ...], make: Any) -> Any:
    def factory(tp: Any, conv: cattrs.Converter) -> Any:
        inner = make(tp, conv)

        def unstructure(value: Any) -> Any:
            if not isinstance(value, accepts):
                raise misfit_error(tp, value)
            return inner(value)

        return unstructure

    return factory


def _unstructure_items(tp: Any, conv: cattrs.Converter) -> Any:
    # (not `conv.gen_unstructure_iterable`: it registers its result for `tp`,
    # over this checked hook)
    return iterable_unstructure_factory(tp, conv, unstructure_to=list)


def _unstructure_fixed_tuple(tp: Any, conv: cattrs.Converter) -> Any:
    types = [t for t in typing.get_args(tp) if t != ()]
    hooks = [conv.get_unstructure_hook(t) for t in types]

    def unstructure(value: Any) -> Any:
        if type(value) is not tuple or len(value) != len(types):
            raise misfit_error(tp, value)
        return [hook(item) for hook, item in zip(hooks, value, strict=True)]

    return unstructure


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp) or tp


def _is_sequence(tp: Any) -> bool:
    origin = _origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        return tp is tuple or (len(args) == 2 and args[1] is Ellipsis)
    return origin in (list, abc.Sequence, abc.MutableSequence, collections.deque)


def _is_fixed_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple and not _is_sequence(tp)


def _is_set(tp: Any) -> bool:
    return _origin(tp) in (set, frozenset, abc.Set, abc.MutableSet)


def _is_mapping(tp: Any) -> bool:
    return _origin(tp) in (dict, abc.Mapping, abc.MutableMapping, collections.OrderedDict)


def _list_like(tp: Any) -> tuple[type, ...]:
    origin = _origin(tp)
    if origin in (abc.Sequence, abc.MutableSequence):
        return (list, tuple) if origin is abc.Sequence else (list,)
    return (origin,)


_COLLECTIONS: list[tuple[Any, Any, Any]] = [
    (_is_sequence, _structure_sequence,
     lambda tp, conv: _unstructure_checked(_list_like(tp), _unstructure_items)(tp, conv)),
    (_is_fixed_tuple, _structure_fixed_tuple, _unstructure_fixed_tuple),
    (_is_set, _structure_set, _unstructure_checked((set, frozenset), _unstructure_items)),
    (_is_mapping, _structure_mapping,
     lambda tp, conv: _unstructure_checked((abc.Mapping,), _unstructure_mapping)(tp, conv)),
]


def _unstructure_mapping(tp: Any, conv: cattrs.Converter) -> Any:
    key_tp = _item_type(tp)
    key_origin = _origin(key_tp)
    if key_origin in (tuple, list, set, frozenset, dict) or attrs.has(key_origin):
        # msgpack would write the key as an array, which cannot be read back as a key
        raise DataError(f"a {type_name(tp)} cannot be stored: a msgpack map's keys are "
                        f"plain values (str, int...), not {type_name(key_tp)}; keep a "
                        "list of pairs instead")
    return mapping_unstructure_factory(tp, conv, unstructure_to=dict)


# -- explaining a failure ------------------------------------------------------------------------


def explain(exc: BaseException) -> str:
    """A one-line account of a (possibly nested) structuring error, field by field:
    `address.city: expected str, got int 5; tags[2]: expected str, got int 3`."""
    parts = []
    stack: list[tuple[BaseException, tuple[Any, ...]]] = [(exc, ())]
    while stack:
        error, path = stack.pop()
        if isinstance(error, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
            found = []
            for sub in error.exceptions:
                notes = [note for note in getattr(sub, "__notes__", ())
                         if isinstance(note, (AttributeValidationNote, IterableValidationNote))]
                found.append((sub, (*path, _step(notes[-1])) if notes else path))
            stack.extend(reversed(found))
            continue
        where = path_text(path)
        words = _words(error, path)
        parts.append(f"{where}: {words}" if where else words)
    return "; ".join(parts) or f"{type(exc).__name__}: {exc}"


def _step(note: Any) -> Any:
    if isinstance(note, _KeyNote):
        return Key(note.index)
    if isinstance(note, IterableValidationNote):
        return note.index
    return Field(getattr(note, "name", note))


def _words(error: BaseException, path: tuple[Any, ...]) -> str:
    if isinstance(error, DataError):
        return str(error)
    if isinstance(error, ForbiddenExtraKeysError):
        known = ", ".join(f.name for f in attrs.fields(error.cl))
        unknown = ", ".join(sorted(short_repr(key) for key in error.extra_fields))
        return f"unknown field {unknown} ({error.cl.__qualname__}'s fields are {known})"
    if isinstance(error, KeyError) and path and error.args and error.args[0] == path[-1]:
        return "required field missing"
    if isinstance(error, cattrs.StructureHandlerNotFoundError):
        name = type_name(error.type_)
        return (f"genflow does not know the type {name}: teach it with "
                f"genflow.codec.register_hooks({name}, unstructure, structure)")
    # attrs validators raise ValueError(words, attribute, ...): their words say it all
    if isinstance(error, (ValueError, TypeError)) and error.args and \
            isinstance(error.args[0], str) and error.args[0]:
        return error.args[0]
    return f"{type(error).__name__}: {error}"
