"""The compiled build (GENFLOW_COMPILE=1, docs/compiled.md): chosen by a switch, off by
default, and when on, really compiled.

The whole suite runs both ways in CI (.ci/run); the compiled run sets
GENFLOW_EXPECT_COMPILED=1, under which the modules must have been loaded from
extension modules (a build that silently came out pure fails here).
"""

from __future__ import annotations

import ast
import datetime as _dt
import importlib
import importlib.machinery
import os
import sys
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest

from genflow import cli, state

ROOT = Path(__file__).resolve().parents[2]
EXPECT_COMPILED = os.environ.get("GENFLOW_EXPECT_COMPILED") == "1"


def _setup_compiled() -> list[str]:
    """setup.py's COMPILED list, read from its source (running it would build)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no COMPILED list")


def _backend():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "_build"))
    try:
        return importlib.import_module("genflow_build")
    finally:
        sys.path.remove(str(ROOT / "_build"))


def test_version_names_the_modules_setup_compiles() -> None:
    assert [m.replace(".", "/") + ".py" for m in cli.COMPILED_CANDIDATES] == _setup_compiled()


@pytest.mark.parametrize(("value", "compiling"), [(None, False), ("", False), ("0", False),
                                                   ("1", True)])
def test_the_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, compiling: bool) -> None:
    """Only GENFLOW_COMPILE=1 asks for mypy; without it the build asks for nothing
    more than setuptools does (the default install downloads no compiler)."""
    backend = _backend()
    if value is None:
        monkeypatch.delenv("GENFLOW_COMPILE", raising=False)
    else:
        monkeypatch.setenv("GENFLOW_COMPILE", value)
    assert backend.compiling() is compiling
    if compiling:
        for hook in (backend.get_requires_for_build_wheel,
                     backend.get_requires_for_build_editable):
            assert any(r.startswith("mypy") for r in hook())


@pytest.mark.parametrize("value", ["yes", "true", "2", " 1"])
def test_a_switch_value_that_is_neither_on_nor_off_is_refused(
        monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("GENFLOW_COMPILE", value)
    with pytest.raises(ValueError, match="GENFLOW_COMPILE"):
        _backend().compiling()


@pytest.mark.skipif(not EXPECT_COMPILED, reason="the compiled run only (GENFLOW_EXPECT_COMPILED=1)")
def test_the_hot_modules_are_loaded_compiled() -> None:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name in cli.COMPILED_CANDIDATES:
        module = importlib.import_module(name)
        assert (module.__file__ or "").endswith(suffixes), module.__file__
        # a mypyc module's functions are built-ins, not Python functions with bytecode
        assert not [f for f in vars(module).values()
                    if getattr(f, "__module__", None) == name and hasattr(f, "__code__")]
    assert cli.build() == "compiled: " + ", ".join(
        m.rpartition(".")[2] for m in cli.COMPILED_CANDIDATES)


def test_the_state_classes_keep_their_fields_types() -> None:
    """Compiled, mypyc hands attrs a field's class alone (`list` for `list[Thread]`,
    `type` for `Any`); genflow.state puts its source's types back, which cattrs
    (a format 1 blob's State) and `typing.get_type_hints` go by."""
    hints = {cls: typing.get_type_hints(cls) for cls in vars(state).values()
             if isinstance(cls, type) and attrs.has(cls) and cls.__module__ == state.__name__}
    assert hints[state.State]["threads"] == list[state.Thread]
    assert hints[state.State]["mailbox"] == state.Mailbox | None
    assert hints[state.Thread]["events"] == list[state.WaitEvent]
    assert hints[state.Thread]["since"] == _dt.datetime | None
    assert hints[state.CallbackRequest]["setup_data"] is Any
    assert hints[state.Failure]["types"] == tuple[str, ...]
    assert hints[state.Message]["payload"] is Any
    for cls, its in hints.items():
        assert [f.name for f in attrs.fields(cls)] == list(its)
        for field in attrs.fields(cls):  # (pure Python: the annotation's text, unresolved)
            assert field.type in (its[field.name], cls.__annotations__[field.name])


def _suspended_in_handlers(source: str) -> list[str]:
    """Each `yield`, `yield from` and `await` (an `async for` or `async with` too) that
    suspends its function inside an `except` or `finally` block, as "line: function"."""
    found: list[str] = []

    def walk(node: ast.AST, function: str, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                walk(child, getattr(child, "name", "<lambda>"), False)
                continue
            here = inside or isinstance(child, ast.ExceptHandler) or (
                isinstance(node, (ast.Try, ast.TryStar)) and child in node.finalbody)
            if here and isinstance(child, (ast.Yield, ast.YieldFrom, ast.Await,
                                           ast.AsyncFor, ast.AsyncWith)):
                found.append(f"{child.lineno}: {function}")
            walk(child, function, here)

    walk(ast.parse(source), "<module>", False)
    return found


def test_the_rule_finds_what_it_forbids() -> None:
    assert _suspended_in_handlers(
        "def g():\n"
        "    try:\n"
        "        yield 1\n"              # (a try's body may suspend)
        "    except E:\n"
        "        x = [(yield 2)]\n"
        "    finally:\n"
        "        async def f():\n"       # (a function defined there is its own)
        "            await a\n"
        "        yield from h()\n"
        "async def c():\n"
        "    try:\n"
        "        pass\n"
        "    except E:\n"
        "        if x:\n"
        "            async with m:\n"
        "                pass\n") == ["5: g", "9: g", "15: c"]


@pytest.mark.parametrize("module", _setup_compiled())
def test_no_compiled_module_suspends_inside_except_or_finally(module: str) -> None:
    """Compiled, a generator or coroutine suspended inside an `except` or `finally` block
    leaves the exception it handles as the interpreter's while other code runs, and
    the tasks that ran meanwhile crashed the interpreter (docs/compiled.md): each such
    place catches into a local and leaves the block first."""
    assert _suspended_in_handlers((ROOT / module).read_text()) == []


@pytest.mark.skipif(EXPECT_COMPILED, reason="the pure run only")
def test_the_default_build_is_pure() -> None:
    assert cli.build() == "pure Python"


def test_ci_runs_the_whole_suite_compiled_too() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    compiled = ci[ci.index("GENFLOW_COMPILE=1 pip install"):]
    # the build is checked before the suite runs, and the suite is the README's command
    assert compiled.index('grep -qF "(compiled: "') < compiled.index(
        "GENFLOW_EXPECT_COMPILED=1 python -m pytest\n")
