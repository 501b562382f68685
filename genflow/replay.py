"""The trampoline: replay a definition to a saved statement, then run forward.

A definition is a tree of bodies that is built lazily: generator functions are
only called when the replay reaches them. The replay never recurses; it keeps an
explicit stack of `Frame`s, one per body it is inside, so a definition nested
500 levels deep costs 500 frames, not 500 Python calls.

Two modes share the frames:

* **find** (`find`) reaches a thread's saved statement without executing
  anything: first by following the saved *path* (an index per nesting level,
  checked against the statement's unique name), and if an edit of the definition
  made the path wrong, by a depth-first search by name over every branch.
* **advance** (`advance`) runs forward from where the frames stand, taking
  branches by their conditions, until the thread stops: a step to run, events to
  wait for, a condition to wait for, or its end.

Nothing here changes data or `State`; `genflow.runtime` commits what a move decided.

**Reads.** A replay's frames stay valid after user code ran if the code changed
no field the replay read: the definition is a function of the data, so on the
same values of what it read it builds the same statements. `reading(wf)` swaps
`wf`'s class for a subclass whose fields record their reads (`Frame.reads` of a
stack's root keeps them); `genflow.runtime` compares those fields' saved values
before and after the code ran, and replays only if one changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import GeneratorType, MemberDescriptorType
from typing import Any, Final

import attrs

from genflow.children import Children
from genflow.errors import DefinitionError, EmptyLoopError
from genflow.registry import on_defaults
from genflow.statements import (
    Break,
    Continue,
    For,
    Go,
    On,
    Raise,
    Return,
    Sleep,
    Step,
    Stmt,
    Switch,
    Try,
    Wait,
    WaitFor,
)

__all__ = [
    "END",
    "ENTER",
    "FAIL",
    "RESTART",
    "Definition",
    "Flow",
    "Frame",
    "advance",
    "as_body",
    "done_reading",
    "find",
    "follow",
    "iter_tree",
    "path_of",
    "reading",
    "search",
    "tracer",
    "unwind",
    "walk",
]

#: `advance` results besides a statement: the thread ended / a loop whose body
#: was a one-shot generator must be rebuilt by a fresh replay before it repeats /
#: a failure reached the thread's top with no `Try` to catch it / the thread must
#: enter a `Catch` (a move of its own: what it caught goes into the data first).
END: Final = "end"
RESTART: Final = "restart"
FAIL: Final = "fail"
ENTER: Final = "enter"
_EXHAUSTED: Final = object()


class Flow:
    """What one run forward of a thread carries and produces besides its place:
    the completion (`unwind`: break, continue, return, fail, cancel) that a
    `Finally` it runs must go on with when it ends, the failures its `Try`s
    handle (objects with `types` and `at`, innermost last), and the `Go`
    statements it passed (`spawned`, with their paths). `advance` changes it;
    the runtime commits it to the thread when the move commits."""

    # No __slots__ and no __init__: a move builds one for every run forward, and
    # `Flow()` that only the class's defaults fill is the cheapest object to make.
    unwind: str = ""
    failures: list[Any] = []  # (never changed in place: replaced)
    spawned: list[tuple[Go, list[int]]] | None = None


class Frame:
    """One body being replayed: which statement owns it (None for a thread's
    root), which of the owner's bodies it is, and how far it has got.

    `its` is a stack of iterators that flattens nested lists, generators and
    generator functions into one sequence of statements (built only when a
    nested body is entered; `top` is its innermost iterator); `index` counts the
    statements taken so far (the path hint's unit). `fresh` marks a loop
    iteration begun during this replay: ending it without stopping means the
    loop would spin forever. `one_shot` notes that a generator object was
    consumed, so this body cannot simply be iterated again.
    """

    __slots__ = ("branch", "fresh", "index", "its", "one_shot", "owner", "reads", "top")

    def __init__(self, owner: Stmt | None, branch: int, body: Any, fresh: bool = False):
        #: on a stack's root frame: (the recording's key, the fields of the data its
        #: replays read), set by `genflow.runtime` (None: not recorded, so the
        #: stack is dropped whenever user code runs)
        self.reads: tuple[Any, set[str]] | None = None
        self.owner = owner
        self.branch = branch
        self.top = iter(body)  # its[-1], kept apart for `next`'s fast path
        self.its: list[Iterator[Any]] | None = None  # built when a nested body is entered
        self.index = -1
        self.fresh = fresh
        self.one_shot = False

    def next(self) -> Any:
        """The next statement of this body, or None at its end."""
        # Every replay takes each statement through here: the common case (the
        # innermost iterator yields a statement) costs four lines.
        item = next(self.top, _EXHAUSTED)  # a default, not StopIteration: far cheaper
        if isinstance(item, Stmt):
            self.index += 1
            return item
        return self._flatten(item)

    def _flatten(self, item: Any) -> Any:
        """`next` for anything but a statement: enter nested bodies, leave ended ones."""
        its = self.its
        if item is _EXHAUSTED and (its is None or len(its) == 1):
            return None  # the body's end (kept: asked again, it ends again)
        if its is None:
            its = self.its = [self.top]
        while True:
            if isinstance(item, Stmt):
                self.index += 1
                return item
            if item is _EXHAUSTED:
                if len(its) == 1:  # the body's end (kept: asked again, it ends again)
                    return None
                its.pop()
            elif callable(item):  # a generator function (or any callable returning a body)
                produced = item()
                if isinstance(produced, Stmt):
                    produced = (produced,)
                if produced is not None:
                    its.append(iter(produced))
            elif isinstance(item, (list, tuple)):
                its.append(iter(item))
            elif isinstance(item, GeneratorType):
                its.append(item)
                self.one_shot = True
            elif item is not None:
                raise DefinitionError(f"{item!r} is not a statement (in a body of {self.owner!r})")
            self.top = its[-1]
            item = next(self.top, _EXHAUSTED)


class Definition:
    """A workflow's `definition` as a body: iterating it calls the method afresh.

    A replay's root: its frame iterates the statements `definition()` yields
    directly, without first entering a body that holds the method.
    """

    __slots__ = ("method",)

    def __init__(self, method: Callable[[], Any]):
        self.method = method

    def __iter__(self) -> Iterator[Any]:
        produced = self.method()
        if isinstance(produced, Stmt):
            return iter((produced,))
        return iter(() if produced is None else produced)


def path_of(stack: list[Frame]) -> list[int]:
    """The path hint of the statement the top frame last produced."""
    if len(stack) == 2:  # the commonest depth, written out (every stop writes its path)
        inner = stack[1]
        return [stack[0].index, inner.branch, inner.index]
    path = [stack[0].index]
    for frame in stack[1:]:
        path.append(frame.branch)
        path.append(frame.index)
    return path


def find(body: Any, name: Any, path: list[int] | None) -> tuple[list[Frame], Stmt] | None:
    """Frames standing just after the statement called `name`, and the statement.

    (`name` Any: an operator's, unchecked; see `genflow.runtime.Name`.)

    Bodies of `Go` statements belong to other threads and are not searched.
    """
    if path:
        found = follow(body, name, path)
        if found is not None:
            return found
    return search(body, name)


def follow(body: Any, name: Any, path: list[int]) -> tuple[list[Frame], Stmt] | None:
    """`find` by the path hint alone (None if it does not lead to `name`)."""
    frame = Frame(None, 0, body)
    stack = [frame]
    last = len(path) - 1
    i = 0
    while True:
        target = path[i]
        stmt: Any = None
        while frame.index < target:
            stmt = next(frame.top, _EXHAUSTED)  # `frame.next()`, inlined (here and below)
            if isinstance(stmt, Stmt):
                frame.index += 1
            else:
                stmt = frame._flatten(stmt)
                if stmt is None:
                    return None
        if i == last:
            return (stack, stmt) if stmt is not None and stmt.name == name else None
        if stmt is None or type(stmt) is Go:  # a negative index: not a path genflow wrote
            return None
        branch = path[i + 1]
        bodies = stmt.bodies
        if not 0 <= branch < len(bodies) or i + 2 > last:
            return None
        frame = Frame(stmt, branch, bodies[branch])
        stack.append(frame)
        i += 2


def search(body: Any, name: Any) -> tuple[list[Frame], Stmt] | None:
    """`find` by name alone: depth first over every branch."""
    stack = [Frame(None, 0, body)]
    while stack:
        frame = stack[-1]
        stmt = frame.next()
        if stmt is None:
            stack.pop()
            owner = frame.owner
            if owner is not None and frame.branch + 1 < len(owner.bodies):
                stack.append(Frame(owner, frame.branch + 1, owner.bodies[frame.branch + 1]))
            continue
        if stmt.name == name and type(stmt) is not On:
            return stack, stmt
        if stmt.bodies and type(stmt) is not Go:
            stack.append(Frame(stmt, 0, stmt.bodies[0]))
    return None


def advance(stack: list[Frame], flow: Flow) -> Any:
    """Run forward until the thread stops.

    Returns the `Step`, `Wait` or `WaitFor` it stopped at (with the frames
    standing just after it), `END`, `FAIL`, `(RESTART, loop, loop_path)` or
    `(ENTER, try, catch, how)` (the frames standing just after the Try). `Go`
    statements passed on the way are added to `flow.spawned` with their paths;
    the caller starts them. `flow` is the thread's `Flow` (changed in place).
    """
    while True:
        frame = stack[-1]
        stmt: Any = next(frame.top, _EXHAUSTED)
        if isinstance(stmt, Stmt):
            frame.index += 1
        else:
            stmt = frame._flatten(stmt)
        if stmt is None:
            stack.pop()  # `_pop`, inlined
            if frame.one_shot and stack:
                stack[-1].one_shot = True
            owner = frame.owner
            if type(owner) is Try:  # a branch of a Try ended (its own frame is below)
                result = _leave(stack, frame, owner, flow)
                if result is not None:
                    return result
                continue
            if not stack:
                return END
            if type(owner) is For and owner.cond:
                restart = _repeat(stack, frame, owner)
                if restart is not None:
                    return restart
            continue
        kind = type(stmt)
        if kind is Step or kind is Wait or kind is Sleep:
            return stmt
        if kind is For:
            if stmt.cond:
                stack.append(Frame(stmt, 0, stmt.bodies[0], True))  # (fresh)
        elif kind is WaitFor:
            if not stmt.cond or stmt.handler is not None:
                return stmt
        elif isinstance(stmt, Switch):
            for index, case in enumerate(stmt.cases):
                if case.cond:
                    stack.append(Frame(stmt, index, stmt.bodies[index]))
                    break
        elif kind is Try:
            stack.append(Frame(stmt, 0, stmt.bodies[0]))
        elif kind is Go:
            if flow.spawned is None:
                flow.spawned = []
            flow.spawned.append((stmt, path_of(stack)))
        elif kind is Raise:
            flow.failures = [*flow.failures, stmt.failure(flow.failures)]  # (a new list)
            result = unwind(stack, "fail", flow)
            if result is not None:
                return result
        elif kind is Return:
            result = unwind(stack, "return", flow)
            if result is not None:
                return result
        elif kind is Break or kind is Continue:
            result = unwind(stack, "break" if kind is Break else "continue", flow)
            if result is not None:
                return result
        elif isinstance(stmt, Wait):  # a Wait of another kind (Child, Children)
            if type(stmt) is Children and not stmt.items:
                continue  # a fan-out over nothing: nothing to start, nothing to wait for
            return stmt
        else:
            raise DefinitionError(f"{stmt!r} cannot stand here (On/Timeout belong inside a Wait; "
                                  "a durable sleep is Sleep(name, seconds))")


def _leave(stack: list[Frame], frame: Frame, owner: Try, flow: Flow) -> Any:
    """A branch of `owner` ran to its end: the Finally next, or on after the Try
    (with the completion the Finally held back, if any)."""
    branch = frame.branch
    fin = owner.finally_
    if branch != 0 and (fin is None or branch != fin.index):  # a catch is done with
        _drop_failures(flow, owner.name or "")
    if fin is not None and branch != fin.index:
        stack.append(Frame(owner, fin.index, owner.bodies[fin.index]))
        return None
    if flow.unwind:  # a Finally that held a completion back: it goes on outward now
        how, flow.unwind = flow.unwind, ""
        return unwind(stack, how, flow)
    _drop_failures(flow, owner.name or "")
    return None


def unwind(stack: list[Frame], how: str, flow: Flow) -> Any:
    """Leave the frames outward with a completion: `break` and `continue` stop at
    the innermost loop, `return` and `cancel` at the thread's top; `fail` at the
    first Try whose Catch matches `flow.failures[-1]`, and `cancel` at a Catch of
    `Cancelled`. A Try with a Finally on the way takes the thread into its Finally,
    holding the completion back in `flow.unwind` until the Finally ends.

    Returns None (go on advancing), `END`, `FAIL`, a RESTART tuple (a loop must
    be rebuilt) or `(ENTER, try, catch, how)`.
    """
    loop = how == "break" or how == "continue"
    while len(stack) > 1:
        frame = stack[-1]
        owner = frame.owner
        if loop and type(owner) is For:
            _pop(stack)
            if how == "continue" and owner.cond:
                return _repeat(stack, frame, owner)
            return None
        if type(owner) is Try:
            fin = owner.finally_
            if frame.branch == 0 and (how == "fail" or how == "cancel") and flow.failures:
                catch = owner.catching(flow.failures[-1].types)
                if catch is not None:
                    _pop(stack)
                    return ENTER, owner, catch, how
            elif frame.branch != 0 and (fin is None or frame.branch != fin.index):
                _drop_failures(flow, owner.name or "")  # leaving a catch: its failure is done
            if fin is not None and frame.branch != fin.index:
                _pop(stack)
                flow.unwind = how
                stack.append(Frame(owner, fin.index, owner.bodies[fin.index]))
                return None
        _pop(stack)
    if loop:
        raise DefinitionError(f"{how.capitalize()}() outside a For loop (in this thread)")
    return FAIL if how == "fail" else END


def _drop_failures(flow: Flow, at: str) -> None:
    if flow.failures:
        flow.failures = [f for f in flow.failures if f.at != at]


def _pop(stack: list[Frame]) -> Frame:
    """Pop the top frame. A generator it consumed may sit inside a statement
    that an enclosing body repeats, so the enclosing frame becomes one-shot too."""
    frame = stack.pop()
    if frame.one_shot and stack:
        stack[-1].one_shot = True
    return frame


def _repeat(stack: list[Frame], frame: Frame, loop: For) -> Any:
    """Start `loop`'s next iteration (its condition holds), or ask for a restart."""
    if frame.fresh:
        raise EmptyLoopError(
            f"loop {loop.name!r}: an iteration ran no step and waited for nothing, "
            "so it would repeat forever (does a step change what its condition reads?)"
        )
    if frame.one_shot:
        return RESTART, loop, path_of(stack)
    # the ended iteration's frame, begun again: no other stack holds it
    frame.top, frame.its, frame.index, frame.fresh = iter(loop.bodies[0]), None, -1, True
    stack.append(frame)
    return None


def iter_tree(body: Any, *, into_threads: bool = True) -> Iterator[tuple[Stmt, list[Frame]]]:
    """Every statement of a body, depth first over every branch (conditions are
    ignored), with the frames it stands in. `On` events are yielded too."""
    stack = [Frame(None, 0, body)]
    while stack:
        frame = stack[-1]
        stmt = frame.next()
        if stmt is None:
            stack.pop()
            owner = frame.owner
            if owner is not None and frame.branch + 1 < len(owner.bodies):
                stack.append(Frame(owner, frame.branch + 1, _child_body(owner, frame.branch + 1)))
            continue
        yield stmt, stack
        if isinstance(stmt, Wait):
            for on in stmt.events:
                yield on, stack
        elif type(stmt) is WaitFor and stmt.timeout is not None:
            yield stmt.timeout, stack
        if stmt.bodies and (into_threads or type(stmt) is not Go):
            stack.append(Frame(stmt, 0, _child_body(stmt, 0)))


def _child_body(stmt: Stmt, branch: int) -> Any:
    if type(stmt) is Go:
        return stmt.body_for(stmt.id)
    return stmt.bodies[branch]


def as_body(obj: Any) -> Any:
    """A workflow instance (or class, with its defaults), a statement or a body, as
    something a `Frame` iterates."""
    if isinstance(obj, Stmt):
        return (obj,)
    if isinstance(obj, type) and callable(getattr(obj, "definition", None)):
        # `validate(Order)`, as `runs(Order)` and `check_replay(Order)` take it: the
        # class's defaults (its definition() is a method, which needs an instance)
        obj = on_defaults(obj, "give an instance, e.g. {name}(...)")
    definition = getattr(obj, "definition", None)
    if definition is not None and callable(definition):
        return Definition(definition)
    if callable(obj) or isinstance(obj, GeneratorType):
        return (obj,)
    return obj


def walk(stmt: Any, fn: Callable[[Stmt], Any]) -> bool:
    """Call `fn` on every statement under `stmt` (a statement, a body, or a
    workflow instance or class), depth first over every branch; stop as soon as `fn`
    returns True. Returns whether it stopped early."""
    return any(fn(node) for node, _ in iter_tree(as_body(stmt)))


# -- reads ------------------------------------------------------------------------------

#: a workflow class -> the subclass that records field reads (None: it cannot)
_TRACERS: Final[dict[type, type | None]] = {}
#: one recording at a time in the process: a replay in another thread meanwhile
#: records nothing (its frames are then not kept across user code)
_RECORDING: Final = threading.Lock()
#: the fields read since `reading` began (the recording properties add to it)
_reads: set[str] = set()


def tracer(cls: type) -> type | None:
    """The subclass of `cls` that records field reads (None: `cls` cannot have one)."""
    try:
        return _TRACERS[cls]
    except KeyError:
        made = _TRACERS[cls] = _tracer(cls)
        return made


def reading(wf: Any, as_: type | None) -> set[str] | None:
    """Record the fields of `wf` read from now until `done_reading(wf, ...)`,
    with `as_` (its class's `tracer`): the set they go into, or None if they are
    not recorded (no tracer, or a recording is under way: an outer `reading` of
    this thread records them, or another thread's, and then nothing is)."""
    if as_ is None or not _RECORDING.acquire(False):
        return None
    global _reads
    reads = _reads = set()
    wf.__class__ = as_
    return reads


def done_reading(wf: Any, reads: set[str] | None) -> None:
    """End what `reading(wf)` began (which returned `reads`)."""
    if reads is not None:
        wf.__class__ = type(wf).__base__
        _RECORDING.release()


def _tracer(cls: type) -> type | None:
    """A subclass of `cls` adding nothing but a property per field that records
    its reads; None when `cls` does not lend itself (no slots, a custom
    `__getattribute__`, `__setattr__` or metaclass, a field that is not a plain slot)."""
    if (not attrs.has(cls) or type(cls) is not type or cls.__dictoffset__
            or cls.__getattribute__ is not object.__getattribute__
            or cls.__setattr__ is not object.__setattr__):
        return None
    namespace: dict[str, Any] = {"__slots__": (), "__module__": cls.__module__,
                                 "__qualname__": cls.__qualname__}
    for field in attrs.fields(cls):
        member = next((k.__dict__[field.name] for k in cls.__mro__ if field.name in k.__dict__),
                      None)
        if type(member) is not MemberDescriptorType:
            return None
        namespace[field.name] = _recording(field.name, member)
    for key in ("__genflow_workflow__",):  # what the registry reads off a class
        if key in cls.__dict__:
            namespace[key] = cls.__dict__[key]
    try:
        made = type(cls.__name__, (cls,), namespace)
    except Exception:  # an __init_subclass__ that refuses, for instance: no recording
        return None
    _TRACERS[made] = None  # (a recording's class records nothing more)
    return made


def _recording(name: str, member: Any) -> property:
    get = member.__get__

    def read(obj: Any) -> Any:
        _reads.add(name)
        return get(obj)

    return property(read, member.__set__, member.__delete__)
