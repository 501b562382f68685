"""JSON Schema for the types genflow structures payloads and data into.

`SchemaBuilder.schema(tp)` follows what genflow's cattrs converter accepts
(`genflow.codec`): attrs classes are objects of their fields (required when they
have no default), enums their values, `Decimal` a decimal string or a number,
datetimes ISO 8601 strings, `timedelta` ``[days, seconds, microseconds]``,
unions ``anyOf``. A pydantic model brings its own schema
(``model_json_schema``); register its hooks on genflow's converter
(`genflow.codec.register_hooks`) so payloads are structured into it. Named
classes become ``components.schemas`` entries referenced by ``$ref``, so
recursive classes work.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import enum
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import attrs

__all__ = ["SchemaBuilder"]

_REF = "#/components/schemas/"


class SchemaBuilder:
    """Builds schemas, collecting the named ones in `components`."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}
        self._names: dict[Any, str] = {}

    def schema(self, tp: Any) -> dict[str, Any]:
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp is Any or tp is object:
            return {}
        if isinstance(tp, str):  # an unresolved forward reference: anything
            return {"description": f"a {tp}"}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self.schema(args[0])
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [self.schema(arg) for arg in args]}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin is not None:
            return self._generic(origin, args)
        return self._plain(tp)

    def _plain(self, tp: Any) -> dict[str, Any]:
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if tp in (bytes, bytearray):
            return {"type": "string", "description": "bytes"}
        if tp is decimal.Decimal:
            return {"anyOf": [{"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"},
                              {"type": "number"}]}
        if tp is _dt.datetime:
            return {"type": "string", "format": "date-time"}
        if tp is _dt.date:
            return {"type": "string", "format": "date"}
        if tp is _dt.time:
            return {"type": "string", "format": "time"}
        if tp is _dt.timedelta:
            return {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 3,
                    "description": "[days, seconds, microseconds]"}
        if tp is uuid.UUID:
            return {"type": "string", "format": "uuid"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._named(tp, lambda: {"enum": [m.value for m in tp],
                                            "title": tp.__name__})
        if isinstance(tp, type) and attrs.has(tp):
            return self._named(tp, lambda: self._attrs(tp))
        if isinstance(tp, type) and hasattr(tp, "model_json_schema"):  # pydantic
            return self._named(tp, lambda: self._pydantic(tp))
        if tp in (list, tuple, set, frozenset):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        return {"description": f"a {getattr(tp, '__qualname__', tp)!s}"}

    def _generic(self, origin: Any, args: tuple[Any, ...]) -> dict[str, Any]:
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0])}
            return {"type": "array", "prefixItems": [self.schema(a) for a in args],
                    "minItems": len(args), "maxItems": len(args)}
        if isinstance(origin, type) and issubclass(origin, Mapping):
            value = self.schema(args[1]) if len(args) == 2 else {}
            return {"type": "object", "additionalProperties": value}
        if isinstance(origin, type) and issubclass(origin, (Sequence, AbstractSet)):
            out: dict[str, Any] = {"type": "array"}
            if args:
                out["items"] = self.schema(args[0])
            if issubclass(origin, AbstractSet):
                out["uniqueItems"] = True
            return out
        return self.schema(origin)

    def _named(self, tp: type, build: Any) -> dict[str, Any]:
        name = self._names.get(tp)
        if name is None:
            name = self._names[tp] = self._free_name(tp)
            self.components[name] = {}  # taken first: a recursive class refers to itself
            self.components[name] = build()
        return {"$ref": _REF + name}

    def _free_name(self, tp: type) -> str:
        name = tp.__name__
        if name not in self.components:
            return name
        name = f"{tp.__module__}.{tp.__qualname__}".replace(".", "_")
        n = 2
        while name in self.components:
            name = f"{tp.__qualname__}_{n}"
            n += 1
        return name

    def _attrs(self, cls: type) -> dict[str, Any]:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:
            hints = {}
        properties, required = {}, []
        for field in attrs.fields(cls):
            if not field.init:
                continue
            key = field.alias if getattr(field, "alias", None) else field.name
            properties[key] = self.schema(hints.get(field.name, field.type or Any))
            if field.default is attrs.NOTHING:
                required.append(key)
        out: dict[str, Any] = {"type": "object", "title": cls.__name__,
                               "properties": properties}
        if required:
            out["required"] = required
        if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
            out["description"] = " ".join(cls.__doc__.split())
        return out

    def _pydantic(self, model: Any) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_REF + "{model}")
        for name, definition in schema.pop("$defs", {}).items():
            self.components.setdefault(name, definition)
        return dict(schema)
