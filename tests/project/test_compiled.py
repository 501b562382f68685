"""The compiled build (GENFLOW_COMPILE=1, docs/compiled.md): chosen by a switch, off by
default, and when on, really compiled.

The whole suite runs both ways in CI (.ci/run); the compiled run sets
GENFLOW_EXPECT_COMPILED=1, under which the modules must have been loaded from
extension modules (a build that silently came out pure fails here).
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import sys
from pathlib import Path

import pytest

from genflow import cli

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
    assert [f"genflow/{m.rpartition('.')[2]}.py" for m in cli.COMPILED_CANDIDATES] \
        == _setup_compiled()


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


@pytest.mark.skipif(EXPECT_COMPILED, reason="the pure run only")
def test_the_default_build_is_pure() -> None:
    assert cli.build() == "pure Python"


def test_ci_runs_the_whole_suite_compiled_too() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    compiled = ci[ci.index("GENFLOW_COMPILE=1 pip install"):]
    # the build is checked before the suite runs, and the suite is the README's command
    assert compiled.index('grep -qF "(compiled: "') < compiled.index(
        "GENFLOW_EXPECT_COMPILED=1 python -m pytest\n")
