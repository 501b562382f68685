"""What msgpack can hold, and how to name a place in a value for a person.

A payload arrives as plain values (what JSON or msgpack gave the sender) and
is stored, with the workflow's data, as msgpack. msgpack refuses some plain
values: ints beyond 64 bits, strings with lone surrogates (they are not
UTF-8), nesting deeper than its recursion limit. `misfit` finds the first such
value and names where it is (`items[3]`, `address.city`), so that a refusal
can say what to fix. It walks with a stack of its own, never recursing, so
that a value nested a thousand deep is reported, not a `RecursionError`.

Nothing here knows about workflows: the stores use it too.
"""

from __future__ import annotations

import reprlib
import sys
import types
import typing
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import attrs
from msgpack import fallback as _msgpack_fallback

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_PAYLOAD_DEPTH",
    "STORED_DEPTH",
    "Field",
    "Key",
    "children",
    "describe",
    "field_types",
    "misfit",
    "path_text",
    "short_repr",
    "storable_key",
    "type_name",
]

#: the ints msgpack holds: signed and unsigned 64-bit
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
#: a payload may nest containers (lists, dicts) this deep, and no deeper: far
#: more than any message needs, far less than Python's recursion limit
MAX_PAYLOAD_DEPTH = 100
#: msgpack's packer refuses nesting beyond its recursion limit (511 before
#: msgpack 1.1, 1024 since); a blob's envelope takes two of those levels
STORED_DEPTH = getattr(_msgpack_fallback, "DEFAULT_RECURSE_LIMIT", 511) - 2

_SCALARS = frozenset({float, bool, type(None), bytes, bytearray, memoryview})
_KEYS = (str, int, float, bool, type(None), bytes)
_UNION = (typing.Union, types.UnionType)

_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlong = 2, 40, 40, 40
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = _short.maxfrozenset = 4


def short_repr(value: Any) -> str:
    """A repr cut short: a few items, a few levels, forty characters of a string."""
    return _short.repr(value)


def describe(value: Any) -> str:
    """`str 'abc'`: a value's type and a short repr (bounded, whatever its depth)."""
    if value is None:
        return "None"
    return f"{type(value).__name__} {_short.repr(value)}"


def type_name(tp: Any) -> str:
    """A type as a person writes it: `list[str]`, `int | None`, `Payment`."""
    if tp is type(None) or tp is None:
        return "None"
    if tp is Any:
        return "Any"
    if tp is Ellipsis:
        return "..."
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in _UNION:
        return " | ".join(type_name(arg) for arg in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None:
        base = getattr(origin, "__name__", None) or str(origin)
        return f"{base}[{', '.join(type_name(arg) for arg in args)}]" if args else base
    if isinstance(tp, type):
        return tp.__qualname__
    return str(tp).replace("typing.", "")


# -- paths -----------------------------------------------------------------------------------


class Field(str):
    """A field of an object: `.name`."""


class Key:
    """A mapping's key itself (not its value): ` key 'k'`."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key


def path_text(path: typing.Sequence[Any]) -> str:
    """`address.city`, `items[2]`, `by_name['x']`: a place in a value; "" for the value itself.
    Paths longer than a dozen steps are cut short (a deep payload's would fill a screen)."""
    parts: list[str] = []
    for step in path[:12]:
        if isinstance(step, Field):
            parts.append(f".{step}" if parts else str(step))
        elif isinstance(step, Key):
            parts.append(f"{' ' if parts else ''}key {_short.repr(step.key)}")
        else:
            parts.append(f"[{_short.repr(step)}]")
    if len(path) > 12:
        parts.append("...")
    return "".join(parts)


# -- the walk ------------------------------------------------------------------------------


def misfit(value: Any, tp: Any = Any, *, depth: int = MAX_PAYLOAD_DEPTH,
           stored: bool = False) -> tuple[str, str] | None:
    """The first value msgpack cannot hold, as `(path, why)`, or None if all fit.

    `tp` (the declared type, when known) only names the steps of the path:
    fields of an attrs class are `.name`, items of a mapping `['key']`.
    With `stored`, `value` is meant to be written as it is (unstructured), so a
    value of any type msgpack does not know is the misfit; otherwise such
    values are left to the converter, which knows the declared types.
    """
    if _plain(value, depth):  # the common case, walked without building paths
        return None
    stack: list[tuple[Any, Any, tuple[Any, ...]]] = [(value, tp, ())]
    while stack:
        item, item_tp, path = stack.pop()
        kind = type(item)
        if kind is int:
            if not INT_MIN <= item <= INT_MAX:
                return path_text(path), (f"int {_short.repr(item)} is outside msgpack's "
                                         "64-bit range (-2**63 to 2**64-1)")
            continue
        if kind is str:
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as exc:
                    return path_text(path), (f"str with a lone surrogate {item[exc.start]!r} "
                                             f"at index {exc.start} is not UTF-8")
            continue
        if kind in _SCALARS:
            continue
        parts = children(item, item_tp)
        if parts is None:
            if stored:
                name = kind.__name__
                return path_text(path), (
                    f"a {name} cannot be stored: teach genflow the type with "
                    f"genflow.codec.register_hooks({name}, unstructure, structure)")
            continue
        if len(path) >= depth:
            return path_text(path), f"nested deeper than {depth} containers"
        found = []
        for step, child, child_tp in parts:
            if isinstance(step, Key) and not isinstance(child, _KEYS):
                return path_text((*path, step)), (
                    f"a mapping's key must be a str, int, float, bool, bytes or None, "
                    f"not {describe(child)}")
            found.append((child, child_tp, (*path, step)))
        stack.extend(reversed(found))
    return None


def _plain(value: Any, depth: int) -> bool:
    """Whether `value` is plain JSON-like data msgpack holds, nested at most `depth`
    deep. False for anything else (an object, a set, a misfit): `misfit` then
    walks again, slowly, to say where and why."""
    if type(value) not in _CONTAINERS:
        return _plain_scalar(value)
    stack = [(value, 1)]
    while stack:
        container, level = stack.pop()
        if level > depth:
            return False
        if type(container) is dict:
            for key in container:
                if type(key) not in _PLAIN_KEYS or not _plain_scalar(key):
                    return False
            items: Any = container.values()
        else:
            items = container
        for item in items:
            kind = type(item)
            if kind in _CONTAINERS:
                stack.append((item, level + 1))
            elif kind is str:
                if not item.isascii() and not _utf8(item):
                    return False
            elif kind is int:
                if not INT_MIN <= item <= INT_MAX:
                    return False
            elif kind not in _SCALARS:
                return False
    return True


def _plain_scalar(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return value.isascii() or _utf8(value)
    if kind is int:
        return INT_MIN <= value <= INT_MAX
    return kind in _SCALARS


def storable_key(value: Any, longest: int = sys.maxsize) -> bool:
    """Can every store keep `value` as a key (a schedule's id, a queue's name):
    a str of 1 to `longest` characters, valid UTF-8 (no lone surrogate), no NUL?
    Without `longest`, of any length: a text a store can be asked for (a list's
    filter, a cursor), where one it could not keep names nothing."""
    return (isinstance(value, str) and 0 < len(value) <= longest and "\x00" not in value
            and (value.isascii() or _utf8(value)))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CONTAINERS = frozenset({dict, list, tuple})
_PLAIN_KEYS = frozenset({str, int, float, bool, type(None), bytes})


def children(value: Any, tp: Any) -> Iterator[tuple[Any, Any, Any]] | None:
    """(step, child, child's declared type) for each part of a container, or None."""
    if isinstance(value, Mapping):
        return _mapping_children(value, _pick(tp, mapping=True))
    if isinstance(value, (list, tuple, set, frozenset)):
        return _sequence_children(value, _pick(tp, mapping=False))
    if attrs.has(type(value)):
        return ((Field(name), getattr(value, name, None), field_tp)
                for name, field_tp in field_types(type(value)).items())
    return None


def _mapping_children(value: Mapping[Any, Any], tp: Any) -> Iterator[tuple[Any, Any, Any]]:
    fields = _field_types(tp)
    args = typing.get_args(tp)
    value_tp = args[1] if len(args) == 2 else Any
    for key, item in value.items():
        yield Key(key), key, Any
        if fields is not None and type(key) is str:
            yield Field(key), item, fields.get(key, Any)
        else:
            yield key, item, value_tp


def _sequence_children(value: Any, tp: Any) -> Iterator[tuple[Any, Any, Any]]:
    args = typing.get_args(tp)
    fixed = typing.get_origin(tp) is tuple and args and args[-1] is not Ellipsis
    for index, item in enumerate(value):
        if fixed:
            yield index, item, args[index] if index < len(args) else Any
        else:
            yield index, item, args[0] if args else Any


def _field_types(tp: Any) -> dict[str, Any] | None:
    if isinstance(tp, type) and attrs.has(tp):
        return field_types(tp)
    return None


def field_types(cls: Any) -> dict[str, Any]:
    """An attrs class's fields and their types, resolved (under `from __future__
    import annotations` attrs keeps them as strings)."""
    found = _FIELD_TYPES.get(cls)
    if found is None:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # a name that does not resolve: keep what attrs has
            hints = {}
        found = _FIELD_TYPES[cls] = {
            f.name: hints.get(f.name, f.type if f.type is not None else Any)
            for f in attrs.fields(cls)}
    return found


_FIELD_TYPES: dict[Any, dict[str, Any]] = {}


def _pick(tp: Any, *, mapping: bool) -> Any:
    """The member of a union that a mapping (or else a sequence) would be structured into."""
    if typing.get_origin(tp) not in _UNION:
        return tp
    for arg in typing.get_args(tp):
        origin = typing.get_origin(arg) or arg
        if not isinstance(origin, type):
            continue
        if mapping and (attrs.has(origin) or issubclass(origin, Mapping)):
            return arg
        if not mapping and issubclass(origin, Collection) and not issubclass(
                origin, (str, bytes, Mapping)):
            return arg
    return Any
