"""The `@workflow(name)` decorator and the name -> class registry `loads` uses."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

from genflow.errors import DefinitionError, NoDefaultsError, UnknownWorkflowError

__all__ = ["name_list", "registered", "workflow", "workflow_class", "workflow_name"]

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}
_NAME_ATTR = "__genflow_workflow__"


def workflow(name: str, *, keep: bool | None = None) -> Callable[[T], T]:
    """Register an attrs class as the workflow called `name`.

    The name is stored in every blob, so it must stay stable for as long as
    instances of the workflow exist. `keep` is the default of its events sent
    while no thread waits for them (`On(keep=...)`; None: kept, see
    docs/mailbox.md).
    """
    if isinstance(name, type):  # `@genflow.workflow` without its name
        raise DefinitionError(f"@genflow.workflow needs the workflow's name, stored in every "
                              f"blob: write @genflow.workflow({name.__name__.lower()!r}) above "
                              f"class {name.__qualname__}")
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"a workflow needs a non-empty string name, not {name!r}")

    def register(cls: T) -> T:
        if not attrs.has(cls):
            raise DefinitionError(f"workflow {name!r}: {cls.__qualname__} must be an attrs class")
        definition = getattr(cls, "definition", None)
        if definition is None or not inspect.isgeneratorfunction(definition):
            raise DefinitionError(
                f"workflow {name!r}: {cls.__qualname__}.definition must be a generator "
                "function (a method that yields statements)"
            )
        existing = _REGISTRY.get(name)
        if existing is not None and _key(existing) != _key(cls):
            raise DefinitionError(
                f"workflow name {name!r} is already registered by {existing.__module__}."
                f"{existing.__qualname__}"
            )
        setattr(cls, _NAME_ATTR, name)
        if keep is not None:
            cls.__genflow_keep__ = bool(keep)  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls  # type: ignore[return-value]  # attrs.has() narrowed T away

    return register


def _key(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


def workflow_name(obj: Any) -> str:
    """The registered name of a workflow class, instance, or the name itself."""
    name = type(obj).__dict__.get(_NAME_ATTR)  # an instance: the common case, first
    if name is not None:
        return str(name)
    if isinstance(obj, str):
        if obj not in _REGISTRY:
            raise _not_registered(obj)
        return obj
    cls = obj if isinstance(obj, type) else type(obj)
    name = cls.__dict__.get(_NAME_ATTR)
    if name is None:
        if cls.__module__ == "builtins" and obj is cls:  # Engine(workflows=[dict]), say
            raise UnknownWorkflowError(
                f"{cls.__qualname__} is a built-in type, not a workflow: give a workflow class "
                "(decorated with @genflow.workflow(name)), such as Order")
        if cls.__module__ == "builtins":  # data given as a dict, a list...: not a class of its own
            raise UnknownWorkflowError(
                f"{obj!r:.80} is of type {cls.__qualname__}, not a workflow: give an instance of "
                "a workflow class (decorated with @genflow.workflow(name)), such as Order(...)")
        raise UnknownWorkflowError(
            f"{cls.__qualname__} is not a workflow: decorate it with @genflow.workflow(name)"
        )
    return str(name)


def workflow_class(name: str) -> type:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _not_registered(name) from None


def _not_registered(name: str) -> UnknownWorkflowError:
    """The error for a name nothing registered: what to import, and how the CLI does it.

    A workflow is registered when the module that defines it is imported, so
    the usual cause is a process (a worker, a script, the command line) that
    never imported it.
    """
    return UnknownWorkflowError(
        f"no workflow is registered as {name!r} (registered: {name_list(_REGISTRY)}): this "
        "process must import the module that defines it (its "
        f"@genflow.workflow({name!r}) class registers it on import); the genflow command "
        "imports it with --app MODULE or --app FILE.py (or GENFLOW_APP)"
    )


def registered() -> dict[str, type]:
    """A copy of the registry: name -> class."""
    return dict(_REGISTRY)


def not_installed(name: str, names: Iterable[str]) -> str:
    """`no workflow 'X' is installed (did you mean ...? installed: ...)`: the words
    for a name none of `names` is, the close ones suggested (a typo)."""
    names = list(names)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.8)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"no workflow {name!r} is installed ({hint}installed: {name_list(names)})"


def name_list(names: Iterable[str], shown: int = 10) -> str:
    """Workflow names for a message: `a, b, c`, the first `shown` of many and how
    many more, or `none`."""
    ordered = sorted(names)
    text = ", ".join(ordered[:shown]) or "none"
    return text + (f" and {len(ordered) - shown} more" if len(ordered) > shown else "")


def on_defaults(cls: type, instead: str) -> Any:
    """`cls()`: a workflow class given where an instance is expected (`validate(Order)`,
    `check_replay(Order)`, `to_mermaid(Order)`) stands for an instance of its defaults.
    `NoDefaultsError` when a field has none (or the class refuses them), saying what
    to give `instead`: one wording for every such place, not `cls()`'s bare error."""
    try:
        return cls()
    except Exception as exc:
        name = cls.__qualname__
        raise NoDefaultsError(
            f"{name} is a workflow class whose fields have no defaults ({exc}): "
            f"{instead.format(name=name)}") from None
