"""The static check of definitions: what `definition()` reads besides the data, found in the source.

`lint(path)` parses Python files (nothing is imported or run) and, in every
workflow class (decorated with `workflow(...)`, or with a `definition`
method), looks at `definition()` and at what it reaches in the same file: the
sub-flows it yields from or hands to statements (generator methods and
functions), the methods, properties and functions it calls. Steps and
handlers it merely names (`Step("charge", self.charge)`) are not looked into:
they may read what they like. Each finding is a `LintWarning`, ``file:line:col:
code message``:

* GF101 the clock (``time.time()``, ``datetime.now()``, ``date.today()``, ``time.localtime()``...)
* GF102 randomness (``random.*``, ``numpy.random``), GF103 ``uuid.uuid1/uuid4``,
  GF104 the environment (``os.environ``, ``os.getenv``), GF105 ``secrets``
* GF106 files, the network, other processes (``open``, ``pathlib``, ``socket``,
  ``requests``, ``subprocess``...)
* GF107 a module global that this file changes (or a mutable one), GF108 a class
  attribute that is not a field
* GF109 iteration over a set or frozenset (its order follows ``PYTHONHASHSEED``)
  that no ``sorted()`` puts in order
* GF110 a Python ``if``/``while`` on a field that a step or handler changes
  (replayed after the step, the statement the thread stands at is gone:
  use genflow's `If`/`For`)

A line that ends with ``# genflow: allow`` (or ``# genflow: allow[clock, ...]``,
with the categories of `CODES`) is not reported: the same pragma the
determinism sandbox of `genflow.testing` honours. Static analysis sees only
what the file says; `genflow.testing` runs the definition and sees the rest
(any module, any import style).

    $ genflow lint app.py
    app.py:14:12: GF101 definition() of 'order' reads the clock: datetime.datetime.now()
"""

from __future__ import annotations

import ast
import re
import sys
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from genflow.errors import ArgumentError

__all__ = ["CODES", "LintWarning", "lint", "lint_source"]

#: code -> (category, what is read)
CODES = {
    "GF101": ("clock", "reads the clock"),
    "GF102": ("random", "reads randomness"),
    "GF103": ("uuid", "makes a fresh uuid"),
    "GF104": ("environment", "reads the environment"),
    "GF105": ("secrets", "uses the secrets module"),
    "GF106": ("io", "does I/O"),
    "GF107": ("global", "reads a module global"),
    "GF108": ("class attribute", "reads a class attribute"),
    "GF109": ("set order", "iterates a set"),
    "GF110": ("python if", "branches in Python on data a step changes"),
}

_CLOCK = {
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter",
    "time.perf_counter_ns", "time.process_time", "time.process_time_ns", "time.localtime",
    "time.mktime", "time.ctime", "time.thread_time", "time.clock_gettime",
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today",
    "datetime.date.today", "pendulum.now", "pendulum.today", "arrow.now", "arrow.utcnow",
}
#: clock reads only without arguments (with them they compute from what is given)
_CLOCK_WITHOUT = {"time.gmtime": 0, "time.asctime": 0, "time.strftime": 1}
#: local time unless given a time zone (the second argument, or tz=)
_LOCAL_TIME = {"datetime.datetime.fromtimestamp"}
_UUID = {"uuid.uuid1", "uuid.uuid4"}
_ENVIRONMENT = {"os.environ", "os.environb", "os.getenv", "os.getenvb"}
_IO_PREFIXES = ("socket.", "requests.", "httpx.", "urllib.request.", "subprocess.",
                "http.client.", "aiohttp.", "shutil.", "glob.", "sqlite3.connect",
                "pathlib.Path", "io.open", "os.listdir", "os.scandir", "os.walk", "os.system",
                "os.popen", "os.open")
_IO_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob"}
#: consumers for which a set's order does not matter
_ORDER_FREE = {"sorted", "set", "frozenset", "len", "sum", "min", "max", "any", "all", "bool"}
#: method calls that change the object they are called on
_MUTATORS = {"append", "extend", "insert", "remove", "pop", "clear", "update", "add",
             "discard", "setdefault", "popitem", "sort", "reverse", "__setitem__"}
_PRAGMA = re.compile(r"#\s*genflow:\s*allow(?:\[([^\]]*)\])?")


@attrs.frozen(order=True)
class LintWarning:
    """One finding, ``path:line:col: code message``."""

    path: str
    line: int
    col: int
    code: str
    message: str
    workflow: str = attrs.field(default="", order=False)  # the workflow's registered name

    @property
    def category(self) -> str:
        return CODES[self.code][0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


def lint(*targets: Any) -> list[LintWarning]:
    """Warnings for the workflow definitions in `targets`: paths of .py files or
    directories (searched recursively), modules, or classes (their module's file)."""
    found: list[LintWarning] = []
    for path in _paths(targets):
        found.extend(lint_source(path.read_text(encoding="utf-8"), str(path)))
    return sorted(found)


def lint_source(source: str, path: str = "<string>") -> list[LintWarning]:
    """`lint` of one file's source text."""
    tree = ast.parse(source, filename=path)
    module = _Module(tree, source.splitlines(), path)
    return sorted(module.check())


def _paths(targets: Iterable[Any]) -> Iterator[Path]:
    for target in targets:
        if isinstance(target, type):
            target = sys.modules[target.__module__]
        if isinstance(target, types.ModuleType):
            file = getattr(target, "__file__", None)
            if file is None:
                raise ArgumentError(f"module {target.__name__!r} has no source file to lint")
            target = file
        path = Path(target)
        if path.is_dir():
            yield from sorted(path.rglob("*.py"))
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"genflow lint: no such file or directory: {target}")


# -- one module ---------------------------------------------------------------------------


class _Module:
    def __init__(self, tree: ast.Module, lines: list[str], path: str):
        self.tree = tree
        self.lines = lines
        self.path = path
        self.imports: dict[str, str] = {}  # local name -> dotted name it stands for
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        self.variables: dict[str, ast.expr | None] = {}  # module-level names and values
        self.changed: dict[str, int] = {}  # module globals this file changes: line
        self._scan()

    def _scan(self) -> None:
        for node in self.tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        top = alias.name.partition(".")[0]
                        self.imports[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.classes[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        if target.id in self.variables or isinstance(node, ast.AugAssign):
                            self.changed.setdefault(target.id, node.lineno)
                        self.variables[target.id] = node.value
        for part in ast.walk(self.tree):
            if isinstance(part, ast.Global):
                for declared in part.names:
                    self.changed.setdefault(declared, part.lineno)
            changed, line = _changed_name(part)
            if changed is not None and changed in self.variables:
                self.changed.setdefault(changed, line)

    def check(self) -> list[LintWarning]:
        found: list[LintWarning] = []
        for cls in self.classes.values():
            if _is_workflow(cls):
                found.extend(_Workflow(self, cls).check())
        return found

    def resolve(self, node: ast.expr) -> str | None:
        """The dotted name an expression stands for (`dt.datetime.now` ->
        "datetime.datetime.now"), through this file's imports."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        base = self.imports.get(node.id)
        if base is None:
            return None
        return ".".join([base, *reversed(parts)])

    def allowed(self, line: int, category: str) -> bool:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        found = _PRAGMA.search(text)
        if found is None:
            return False
        names = found.group(1)
        if names is None:
            return True
        wanted = {n.strip() for n in names.split(",")}
        return category in wanted or (category == "io" and bool(
            wanted & {"files", "network", "processes"}))


def _changed_name(node: ast.AST) -> tuple[str | None, int]:
    """A module-level name that `node` changes in place (X[k] = v, X.a = v, X.append())."""
    line = getattr(node, "lineno", 0)
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, (ast.Subscript, ast.Attribute)):
                root = _root_name(target)
                if root is not None:
                    return root, line
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr in _MUTATORS:
        root = _root_name(node.func.value)
        if root is not None:
            return root, line
    return None, line


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_workflow(cls: ast.ClassDef) -> bool:
    for decorator in cls.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "workflow":
            return True
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "definition"
               for n in cls.body)


def _workflow_name(cls: ast.ClassDef) -> str:
    for decorator in cls.decorator_list:
        if isinstance(decorator, ast.Call) and decorator.args and isinstance(
                decorator.args[0], ast.Constant) and isinstance(decorator.args[0].value, str):
            return decorator.args[0].value
    return cls.name


_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _own_nodes(fn: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's own code: not those of the functions and lambdas
    it defines (a lambda handed to a Step is the step's code, not the definition's)."""
    todo = list(ast.iter_child_nodes(fn))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, _NESTED):
            todo.extend(ast.iter_child_nodes(node))


def _nested(fn: ast.AST) -> Iterator[ast.AST]:
    """The functions and lambdas defined in a function (steps and handlers, often)."""
    for node in _own_nodes(fn):
        if isinstance(node, _NESTED):
            yield node


def _is_generator(fn: ast.AST) -> bool:
    return any(isinstance(node, (ast.Yield, ast.YieldFrom)) for node in _own_nodes(fn))


# -- one workflow -------------------------------------------------------------------------


class _Workflow:
    def __init__(self, module: _Module, cls: ast.ClassDef):
        self.module = module
        self.cls = cls
        self.name = _workflow_name(cls)
        self.fields: dict[str, ast.expr | None] = {}
        self.class_attributes: set[str] = set()
        self.methods: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.properties: set[str] = set()
        for node in cls.body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if "ClassVar" in ast.unparse(node.annotation):
                    self.class_attributes.add(node.target.id)
                else:
                    self.fields[node.target.id] = node.annotation
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.class_attributes.add(target.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.methods[node.name] = node
                if any(ast.unparse(d).endswith(("property", "cached_property"))
                       for d in node.decorator_list):
                    self.properties.add(node.name)

    def check(self) -> list[LintWarning]:
        definition = self.methods.get("definition")
        if definition is None:
            return []
        reached = self._reached(definition)
        writes = self._writes(reached)
        found: list[LintWarning] = []
        for fn in reached:
            found.extend(_Checker(self, fn, writes).run())
        return found

    def _reached(self, start: ast.FunctionDef | ast.AsyncFunctionDef) -> list[Any]:
        """definition() and what it reaches in this file: sub-flows (generators it
        names or calls), and methods, properties and functions it calls."""
        order: list[Any] = [start]
        seen = {id(start)}
        index = 0
        while index < len(order):
            fn = order[index]
            index += 1
            called = {id(n.func) for n in _own_nodes(fn) if isinstance(n, ast.Call)}
            for node in _own_nodes(fn):
                target = None
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                        node.value.id == "self":
                    method = self.methods.get(node.attr)
                    if method is not None and (id(node) in called or _is_generator(method)
                                               or node.attr in self.properties):
                        target = method
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                    function = self.module.functions.get(node.id)
                    if function is not None and (id(node) in called or _is_generator(function)):
                        target = function
                if target is not None and id(target) not in seen:
                    seen.add(id(target))
                    order.append(target)
        return order

    def _writes(self, reached: list[Any]) -> dict[str, str]:
        """Fields the other methods (steps, handlers) and the lambdas and functions
        defined in the definition change: field -> who."""
        skip = {id(fn) for fn in reached}
        writers: list[tuple[str, ast.AST]] = [
            (name, method) for name, method in self.methods.items() if id(method) not in skip]
        for fn in reached:
            writers.extend((getattr(n, "name", "a lambda"), n) for n in _nested(fn))
        found: dict[str, str] = {}
        for name, method in writers:
            for node in ast.walk(method):
                for target in _written(node):
                    root = target
                    while isinstance(root, (ast.Attribute, ast.Subscript)) and not (
                            isinstance(root, ast.Attribute) and isinstance(root.value, ast.Name)
                            and root.value.id == "self"):
                        root = root.value
                    if isinstance(root, ast.Attribute) and isinstance(root.value, ast.Name) \
                            and root.value.id == "self":
                        found.setdefault(root.attr, name)
        return found


def _written(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return list(node.targets)
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr in _MUTATORS:
        return [node.func.value]
    return []


class _Checker:
    """The findings in one function a definition reaches."""

    def __init__(self, workflow: _Workflow, fn: Any, writes: dict[str, str]):
        self.workflow = workflow
        self.module = workflow.module
        self.fn = fn
        self.writes = writes
        self.found: list[LintWarning] = []
        self.nodes = list(_own_nodes(fn))
        self.shadowed = {a.arg for a in fn.args.args} | {
            n.id for n in self.nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self.parents: dict[int, ast.AST] = {}
        for node in [fn, *self.nodes]:
            for child in ast.iter_child_nodes(node):
                self.parents[id(child)] = node

    def run(self) -> list[LintWarning]:
        for node in self.nodes:
            if isinstance(node, ast.Call):
                self._call(node)
            elif isinstance(node, ast.Attribute):
                self._attribute(node)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self._name(node)
            if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                self._iteration(node)
            if isinstance(node, (ast.If, ast.While)):
                self._python_if(node)
        return self.found

    def warn(self, node: ast.AST, code: str, detail: str) -> None:
        category, what = CODES[code]
        line = getattr(node, "lineno", 0)
        if self.module.allowed(line, category):
            return
        where = "definition()" if self.fn.name == "definition" else f"{self.fn.name}()"
        via = "" if self.fn.name == "definition" else ", reached from definition()"
        self.found.append(LintWarning(
            self.module.path, line, getattr(node, "col_offset", 0) + 1, code,
            f"{where} of {self.workflow.name!r}{via} {what}: {detail}", self.workflow.name))

    def _call(self, node: ast.Call) -> None:
        name = self.module.resolve(node.func)
        if name is None:
            if isinstance(node.func, ast.Name) and node.func.id == "open" and \
                    "open" not in self.module.imports and "open" not in self.shadowed:
                self.warn(node, "GF106", "open(...)")
            elif isinstance(node.func, ast.Attribute) and node.func.attr in _IO_METHODS and \
                    isinstance(node.func.value, ast.Call) and (self.module.resolve(
                        node.func.value.func) or "").startswith("pathlib"):
                self.warn(node, "GF106", f"{ast.unparse(node.func)}()")
            if isinstance(node.func, ast.Name) and node.func.id in (
                    "list", "tuple", "enumerate", "iter", "zip") and node.args and \
                    self._is_set(node.args[0]):
                self.warn(node, "GF109", f"{node.func.id}({ast.unparse(node.args[0])}) (its "
                                         "order follows PYTHONHASHSEED): iterate sorted(...)")
            return
        argc = len(node.args) + len(node.keywords)
        if name in _CLOCK or (name in _CLOCK_WITHOUT and argc <= _CLOCK_WITHOUT[name]):
            self.warn(node, "GF101", f"{name}()")
        elif name in _LOCAL_TIME and len(node.args) < 2 and not any(
                k.arg == "tz" for k in node.keywords):
            self.warn(node, "GF101", f"{name}() without tz= (local time: the process's TZ)")
        elif name.startswith(("random.", "numpy.random.")) and not (
                name in ("random.Random", "random.seed") and argc):
            self.warn(node, "GF102", f"{name}()")
        elif name in _UUID:
            self.warn(node, "GF103", f"{name}()")
        elif name in ("os.getenv", "os.getenvb"):
            self.warn(node, "GF104", f"{name}()")
        elif name.startswith("secrets."):
            self.warn(node, "GF105", f"{name}()")
        elif name.startswith(_IO_PREFIXES) or name == "builtins.open":
            self.warn(node, "GF106", f"{name}()")

    def _attribute(self, node: ast.Attribute) -> None:
        name = self.module.resolve(node)
        if name in ("os.environ", "os.environb"):
            parent = self.parents.get(id(node))
            if not (isinstance(parent, ast.Attribute) and isinstance(
                    self.parents.get(id(parent)), ast.Call)):  # os.environ.get(...) counts too
                self.warn(node, "GF104", name)
            else:
                self.warn(node, "GF104", f"{name}.{parent.attr}(...)")
            return
        owner = node.value
        if not isinstance(node.ctx, ast.Load) or not isinstance(owner, ast.Name):
            return
        if owner.id == "self":
            cls: ast.ClassDef | None = self.workflow.cls
        else:
            cls = self.module.classes.get(owner.id)
        if cls is None or _is_enum(cls) or node.attr not in _class_attributes(cls):
            return
        changed = _changed_attribute(self.module.tree, cls.name, node.attr)
        if changed or _mutable(_class_attributes(cls)[node.attr]):
            how = f"changed at line {changed}" if changed else "a mutable value"
            self.warn(node, "GF108", f"{ast.unparse(node)} ({how}; a class attribute is not a "
                                     "field, and is not saved)")

    def _name(self, node: ast.Name) -> None:
        module = self.module
        if node.id in self.shadowed or node.id not in module.variables:
            return
        if node.id in module.changed:
            self.warn(node, "GF107", f"{node.id} (changed at line {module.changed[node.id]}): "
                                     "keep it in the data")
        elif _mutable(module.variables[node.id]):
            parent = self.parents.get(id(node))
            if not (isinstance(parent, (ast.For, ast.comprehension)) and parent.iter is node):
                self.warn(node, "GF107", f"{node.id} (a mutable value: if anything changes it, "
                                         "instances in flight change course)")

    def _iteration(self, node: ast.For | ast.AsyncFor | ast.comprehension) -> None:
        if not self._is_set(node.iter):
            return
        if isinstance(node, ast.comprehension):
            comp = self.parents.get(id(node))
            if isinstance(comp, ast.SetComp):
                return  # a set from a set: no order to leak
            consumer = self.parents.get(id(comp))
            if isinstance(comp, ast.GeneratorExp) and isinstance(consumer, ast.Call) and \
                    isinstance(consumer.func, ast.Name) and consumer.func.id in _ORDER_FREE:
                return
        self.warn(node.iter, "GF109", f"{ast.unparse(node.iter)} (its order follows "
                                      "PYTHONHASHSEED): iterate sorted(...) of it")

    def _is_set(self, node: ast.expr) -> bool:
        if isinstance(node, (ast.Set, ast.SetComp)):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("set", "frozenset") and node.func.id not in self.shadowed:
            return True
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id == "self":
            annotation = self.workflow.fields.get(node.attr)
            return annotation is not None and _set_annotation(annotation)
        if isinstance(node, ast.Name) and node.id not in self.shadowed:
            value = self.module.variables.get(node.id)
            return value is not None and self._is_set(value)
        return False

    def _python_if(self, node: ast.If | ast.While) -> None:
        for part in ast.walk(node.test):
            if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) and \
                    part.value.id == "self" and part.attr in self.writes:
                keyword = "if" if isinstance(node, ast.If) else "while"
                who = self.writes[part.attr]
                who = who if who == "a lambda" else f"{who}()"
                self.warn(node, "GF110", f"`{keyword}` on self.{part.attr}, which {who} "
                                         "changes (replayed after it, the statement a thread "
                                         "stands at may vanish): use If(...)/For(...)")
                return


def _is_enum(cls: ast.ClassDef) -> bool:
    return any(ast.unparse(base).rpartition(".")[2] in ("Enum", "IntEnum", "StrEnum", "Flag",
                                                        "IntFlag") for base in cls.bases)


def _class_attributes(cls: ast.ClassDef) -> dict[str, ast.expr | None]:
    """Names a class body assigns that are not attrs fields (no annotation, or ClassVar)."""
    found: dict[str, ast.expr | None] = {}
    for node in cls.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                "ClassVar" in ast.unparse(node.annotation):
            found[node.target.id] = node.value
    return found


def _changed_attribute(tree: ast.Module, cls: str, attr: str) -> int:
    """The line where the file changes class attribute `cls.attr` (0: nowhere):
    `cls.attr = ...` (or a mutating call on it) anywhere, `self.attr = ...` in
    the class's own methods."""
    own = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls),
               None)
    for scope, owner in ((tree, cls), (own, "self")):
        if scope is None:
            continue
        for node in ast.walk(scope):
            for target in _written(node):
                while isinstance(target, ast.Subscript) or (
                        isinstance(target, ast.Attribute) and target.attr != attr):
                    target = target.value
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                        and target.value.id == owner:
                    return getattr(node, "lineno", 0)
    return 0


def _mutable(value: ast.expr | None) -> bool:
    return isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp,
                              ast.SetComp)) or (
        isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
        and value.func.id in ("dict", "list", "set", "defaultdict", "Counter"))


def _set_annotation(annotation: ast.expr) -> bool:
    text = ast.unparse(annotation).replace(" ", "")
    base = text.partition("[")[0].rpartition(".")[2]
    if base not in ("set", "frozenset", "Set", "FrozenSet", "AbstractSet", "MutableSet"):
        return False
    inner = text.partition("[")[2].rstrip("]")
    return inner in ("", "str", "bytes", "Any") or inner.startswith(("str", "bytes"))
