"""Exact comparisons of workflow data: the same types, the same values, NaN equal to itself.

Python's `==` is too lenient for a replay check: ``1 == 1.0 == True``,
``Decimal(1) == 1``, and a tuple that comes back from a save as a list looks
the same to a loop but not to ``+ (x,)``. And it is too strict in one place:
``nan != nan``, although a NaN saved and loaded is the same NaN. So the checker
compares values here, type by type, and says *where* they differ: a path from
the workflow's field down (``history[0]``, ``prices['eu']``) with the type and
value on each side.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import functools
import math
import types
from collections.abc import Iterable
from typing import Any

import attrs
import msgpack

from genflow.codec import unstructure
from genflow.testing.determinism import _slots

__all__ = ["MISSING", "Difference", "data_key", "differences", "extra_attributes", "same"]


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


#: what a side has where the other has a field, an item or an attribute
MISSING: Any = _Missing()

#: differences reported at most per comparison (a list of 10,000 items that all differ)
_LIMIT = 20


@attrs.frozen
class Difference:
    """Where two values differ: `path` from the top (``amount``, ``items[2].size``),
    what each side holds there, and a note (an attribute that is not a field...)."""

    path: str
    before: Any
    after: Any
    note: str = ""

    @property
    def field(self) -> str:
        """The top-level field (or attribute) the difference is under."""
        for index, char in enumerate(self.path):
            if char in ".[":
                return self.path[:index]
        return self.path

    @property
    def type_changed(self) -> bool:
        return type(self.before) is not type(self.after) and MISSING not in (
            self.before, self.after)

    def words(self, labels: tuple[str, str] = ("before", "after"), *, quote: bool = False
              ) -> str:
        """``history[0]: tuple -> list ((1, 2) before, [1, 2] after)`` (the path in
        quotes with `quote`)."""
        first, second = labels
        path = repr(self.path) if quote else self.path
        values = f"{_short(self.before)} {first}, {_short(self.after)} {second}"
        note = f"; {self.note}" if self.note else ""
        if self.type_changed:
            return (f"{path}: {type_name(self.before)} -> {type_name(self.after)} "
                    f"({values}{note})")
        return f"{path}: {values}{note}"


def differences(
    a: Any, b: Any, *, ignore: Iterable[str] = (), limit: int = _LIMIT
) -> list[Difference]:
    """Every place where workflow data `a` and `b` differ, fields first, then
    attributes that are not fields (`ignore`d fields skipped)."""
    found: list[Difference] = []
    skip = frozenset(ignore)
    if not attrs.has(type(a)) or type(a) is not type(b):
        _walk(a, b, "", found, limit)
        return found
    for field in attrs.fields(type(a)):
        if field.name not in skip:
            _walk(getattr(a, field.name, MISSING), getattr(b, field.name, MISSING), field.name,
                  found, limit)
    for name in sorted(set(extra_attributes(a)) | set(extra_attributes(b))):
        if name in skip:
            continue
        mine, theirs = _own(a).get(name, MISSING), _own(b).get(name, MISSING)
        before = len(found)
        _walk(mine, theirs, name, found, limit)
        note = _attribute_note(type(a), name)
        found[before:] = [attrs.evolve(d, note=note) for d in found[before:]]
    return found[:limit]


def same(a: Any, b: Any, *, ignore: Iterable[str] = ()) -> bool:
    """Whether `differences` finds nothing."""
    return not differences(a, b, ignore=ignore, limit=1)


def extra_attributes(wf: Any) -> list[str]:
    """Names set on a workflow object that are not attrs fields (never saved)."""
    own = _own(wf)
    if not own:
        return []
    names = {f.name for f in attrs.fields(type(wf))} if attrs.has(type(wf)) else set()
    return [name for name in own if name not in names]


def _own(wf: Any) -> dict[str, Any]:
    """What is set on a workflow object: its `__dict__` and, for a slotted class
    (attrs' default, where a `cached_property` becomes a slot), the slots that
    hold a value. Read past `__getattr__`, which would compute a cached value."""
    own = dict(getattr(wf, "__dict__", None) or {})
    for name in _slots(type(wf)):
        if name not in own and not name.startswith("__"):
            with contextlib.suppress(AttributeError):  # an empty slot
                own[name] = object.__getattribute__(wf, name)
    return own


def data_key(wf: Any) -> bytes:
    """The data as bytes, to tell distinct data apart (attributes that are not fields too)."""
    extra = {name: getattr(wf, name) for name in extra_attributes(wf)}
    try:
        key = bytes(msgpack.packb(unstructure(wf), use_bin_type=True))
    except Exception:
        key = repr(unstructure(wf)).encode()
    return key + repr(extra).encode() if extra else key


def type_name(value: Any) -> str:
    if value is MISSING:
        return "(missing)"
    return type(value).__qualname__


def _attribute_note(cls: type, name: str) -> str:
    declared = getattr(cls, name, None)
    # (attrs makes a slotted class's cached_property a slot that its generated
    # `__getattr__` fills: the function is among that hook's defaults)
    hook = getattr(cls, "__getattr__", None)
    slotted = any(isinstance(default, dict) and isinstance(default.get(name), types.FunctionType)
                  for default in getattr(hook, "__defaults__", None) or ())
    if slotted or isinstance(declared, functools.cached_property):
        return "a cached_property: its value is kept on the object, not in the saved data"
    return "an attribute that is not an attrs field: it is not saved"


def _walk(a: Any, b: Any, path: str, found: list[Difference], limit: int) -> None:
    if a is b or len(found) >= limit:
        return
    kind = type(a)
    if kind is not type(b):
        found.append(Difference(path, a, b))
        return
    if kind in _SCALARS:
        if not _SCALARS[kind](a, b):
            found.append(Difference(path, a, b))
        return
    if kind is list or kind is tuple:
        if len(a) != len(b):
            found.append(Difference(path, a, b, f"{len(a)} items against {len(b)}"))
            return
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(x, y, f"{path}[{index}]", found, limit)
        return
    if kind is dict:
        for key in a:
            if key not in b or type(_key(b, key)) is not type(key):
                found.append(Difference(f"{path}[{key!r}]", a[key], b.get(key, MISSING)))
            else:
                _walk(a[key], b[key], f"{path}[{key!r}]", found, limit)
        for key in b:
            if key not in a:
                found.append(Difference(f"{path}[{key!r}]", MISSING, b[key]))
        return
    if kind is set or kind is frozenset:
        if a != b or _typed(a) != _typed(b):
            found.append(Difference(path, a, b))
        return
    if attrs.has(kind):
        for field in attrs.fields(kind):
            _walk(getattr(a, field.name, MISSING), getattr(b, field.name, MISSING),
                  f"{path}.{field.name}" if path else field.name, found, limit)
        return
    try:
        equal = bool(a == b)
    except Exception:
        equal = False
    if not equal and hasattr(a, "__dict__") and hasattr(b, "__dict__"):
        equal = vars(a) == vars(b)  # a plain object without __eq__ of its own
    if not equal:
        found.append(Difference(path, a, b))


def _key(mapping: dict[Any, Any], key: Any) -> Any:
    """The key of `mapping` that equals `key`, as stored (1 and 1.0 and True are one key)."""
    for stored in mapping:
        if stored == key:
            return stored
    return MISSING


def _typed(items: Any) -> set[tuple[type, Any]]:
    return {(type(item), item) for item in items}


def _float(a: float, b: float) -> bool:
    if math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def _decimal(a: decimal.Decimal, b: decimal.Decimal) -> bool:
    if a.is_nan() or b.is_nan():
        return a.is_nan() and b.is_nan()
    return a == b and str(a) == str(b)  # Decimal("1.0") and Decimal("1") print apart


def _datetime(a: _dt.datetime, b: _dt.datetime) -> bool:
    return a == b and a.utcoffset() == b.utcoffset()


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


_SCALARS: dict[type, Any] = {
    str: _eq, int: _eq, bool: _eq, bytes: _eq, type(None): _eq,
    float: _float, decimal.Decimal: _decimal, _dt.datetime: _datetime,
    _dt.date: _eq, _dt.time: _eq, _dt.timedelta: _eq,
}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
