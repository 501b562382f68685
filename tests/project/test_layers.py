"""The layout keeps its promises: dependencies point one way.

The import graph of genflow/ is read from the source (`ast`, every import
statement, also those inside functions; those under `if TYPE_CHECKING:` are
for type checkers only and left out): it has no cycle, and the core imports
nothing but the core. The package `__init__` modules are facades (they gather
names for users) and are not part of the graph. The tests keep the same layers:
each test file sits in the folder of its layer, one that tests/README.md names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "genflow"
TESTS = ROOT / "tests"

#: the core: statements, replay, runtime, state, codec and what they need. It knows
#: nothing of stores, the engine, the CLI, rendering, the web or testing.
CORE = {"children", "clock", "codec", "compiled", "context", "errors", "handlers", "lowlevel",
        "mailbox", "outbox", "registry", "replay", "runtime", "saga", "sections", "state",
        "statements", "strict", "timeouts", "validation", "waitgroup", "wire"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the genflow modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        typing_only = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                typing_only.update(id(n) for b in node.body for n in ast.walk(b))
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                # `from pkg import submodule` depends on the submodule
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_import_graph_has_no_cycle():
    assert _cycles(import_graph()) == []


def test_the_core_imports_nothing_above_it():
    graph = import_graph()
    upward = {name: sorted(t for t in edges if t.removeprefix("genflow.") not in CORE)
              for name, edges in graph.items() if name.removeprefix("genflow.") in CORE}
    assert {name: found for name, found in upward.items() if found} == {}


@pytest.mark.parametrize("cycle", [{"a": {"b"}, "b": {"c"}, "c": {"a"}}, {"x": {"x", "y"},
                                                                       "y": {"x"}}])
def test_the_cycle_finder_finds_cycles(cycle):
    assert _cycles(cycle)


def test_every_test_file_is_in_a_folder_the_tests_readme_names():
    named = set(re.findall(r"^\| `(\w+)/` \|", (TESTS / "README.md").read_text(), re.M))
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders == named
    misplaced = sorted(str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py")
                       if p.parent.parent != TESTS or p.parent.name == "support")
    assert misplaced == [], "a test file belongs in its layer's folder (tests/README.md)"
