"""Child workflows: a statement that starts other instances and waits for them.

`Child(name, data, into=...)` starts one instance of `data`'s workflow and
waits until it ends; `Children(name, items, into=..., first=k)` starts one
per item (fan-out) and waits for all of them, or for the first `k` to finish
(fan-in). Both are `Wait`s on one event, `CHILD_EVENT`, whose handler is
genflow's own:

* **start**: its setup asks the outbox (`genflow.outbox`) to start each child,
  so the child rows are created in the same store transaction as the
  parent's checkpoint that made the wait set up: never by a step that may
  run again, and never twice. A child's id is given (`id=` / `ids=`, from the
  parent's data) or derived from the parent: `<parent id>/<statement>/<counter>`
  (and `/<index>` for `Children`), the counter being the parent's when the
  wait began, so a re-run after a crash derives the same ids, and a Child in a
  loop gets new children at every iteration;
* **end**: a child knows its parent (`State.parent`); the save that ends it
  (finished, failed or cancelled) writes, in its own transaction, a report to
  the parent's wait through the outbox. The core counts the reports on the
  wait (`_arrive`, called by `Operation.callback`): the wait goes on once
  every child (or `first` of them) has finished, the results put in `into`
  (a field of the parent's data, structured into its declared type) or given
  to `handler` (typed by its annotation), in the children's order (`first`:
  in the order they finished); a child that failed or was cancelled fails the
  parent's thread there with `ChildFailed`, which a `Try` catches;
* **leftovers**: when the wait ends with children still running (first k, a
  failure, the parent cancelled or moved), its teardown cancels them
  (`on_cancel="cancel"`, the default) or lets them run (`"abandon"`).

What a child reports is its data at its end (`result=` picks one field of
it). Children are ordinary instances: any worker runs them; `Engine.list(
parent=...)`, `genflow show` and the report link them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

import attrs
import msgpack

from genflow.clock import Deadline, aware_deadline, checked_deadline, deadline_span
from genflow.codec import unstructure
from genflow.context import current_step
from genflow.errors import ArgumentError, InvalidIdError, StatementError
from genflow.handlers import EventHandler, takes_argument
from genflow.outbox import CancelIntent, SendIntent, StartIntent
from genflow.state import CallbackRequest, Parent, State, WorkflowStatus, checked_id
from genflow.statements import On, Retry, Wait

__all__ = ["CHILD_EVENT", "Child", "ChildReport", "Children", "child_effects", "child_ids"]

#: the event a child's report arrives as (a space in it: no sender types it by chance)
CHILD_EVENT = "child ended"
_ENDED = {WorkflowStatus.FINISHED: "finished", WorkflowStatus.FAILED: "failed",
          WorkflowStatus.CANCELLED: "cancelled"}
_POLICIES = ("cancel", "abandon")


@attrs.frozen
class ChildReport:
    """What a child tells its parent's wait when it ends (the payload of
    `CHILD_EVENT`): its index in the statement, id, workflow, how it ended,
    its data (finished) or its error (failed, cancelled)."""

    index: int
    id: str
    workflow: str
    status: str
    data: Any = None
    error: str = ""


class Children(Wait):
    """Start one child instance per item of `items` (workflow instances: each
    item's class is the child's workflow) and wait for them. Over no items,
    the statement is passed at once (nothing started; `into` keeps its value).

    `ids`: the children's ids (from the parent's data), one per item; default
    derived from the parent. `into`: the parent's field that receives the
    results, a list in the items' order (with `first=k`: the first k to
    finish, in the order they finished). `result`: the field of each child's
    data that is its result (default: the child's whole data). `handler`: a
    function called with the results instead (or as well), typed by its
    annotation. `on_cancel`: what happens to children still running when
    the wait ends early or the parent is cancelled ("cancel" or "abandon").
    `deadline` (as `Engine.start` takes it: a duration from the children's
    start, or an aware datetime): each child not finished by then is
    cancelled, which fails the parent's thread here with `ChildFailed`
    (Temporal's child workflow execution timeout).
    """

    __slots__ = ("deadline", "first", "handler", "ids", "into", "items", "on_cancel", "result",
                 "single")

    def __init__(self, name: str, items: Iterable[Any], *, ids: Iterable[str] | None = None,
                 into: str | None = None, result: str | None = None, handler: Any = None,
                 first: int | None = None, on_cancel: str = "cancel", deadline: Deadline = None,
                 _single: bool = False):
        what = f"{type(self).__name__} {name!r}"
        if deadline is not None:  # checked here as far as it can be without a clock
            try:
                if isinstance(deadline, _dt.datetime):
                    aware_deadline(deadline)  # (later than now: at the start, `setup`)
                else:
                    deadline_span(deadline)
            except ArgumentError as error:
                raise StatementError(f"{what}: {error}") from None
        self.deadline = deadline
        if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
            raise StatementError(f"{what}: items is a list of the children's data (one "
                                 f"workflow instance each; Child for one), not {items!r}")
        self.items = list(items)
        self.single = _single
        # (an id is an instance id: a str as `Engine.start` takes it, refused as it is,
        # not made one: 5 and "5" would name the same child)
        try:
            self.ids = None if ids is None else [checked_id(i) for i in ids]
        except InvalidIdError as error:
            raise InvalidIdError(f"{what}: {error}") from None
        if self.ids is not None and (len(self.ids) != len(self.items)
                                     or len(set(self.ids)) != len(self.ids)):
            raise StatementError(f"{what}: give one distinct id per child "
                                 f"({len(self.items)} children, ids {self.ids!r})")
        if first is not None and (type(first) is not int
                                  or not 1 <= first <= max(1, len(self.items))):
            raise StatementError(f"{what}: first={first!r} must be 1 to "
                                 f"{max(1, len(self.items))}")
        if on_cancel not in _POLICIES:
            raise StatementError(f"{what}: on_cancel is 'cancel' or 'abandon', not "
                                 f"{on_cancel!r}")
        if handler is not None and not (callable(handler) and takes_argument(handler)):
            raise StatementError(f"{what}: handler must take one argument (the results)")
        self.into = into
        self.result = result
        self.handler = handler
        self.first = first
        self.on_cancel = on_cancel
        # (the handler holds what its setup needs, not the statement: no cycle)
        super().__init__(name, On(CHILD_EVENT, _ChildrenHandler(
            name, self.items, self.ids, _single, on_cancel, deadline)))

    @property
    def needed(self) -> int:
        return self.first or len(self.items)


class Child(Children):
    """Start one child instance of `data`'s workflow and wait until it ends;
    `into` receives its result (a field of the parent's data), or `handler`.
    A child that fails or is cancelled fails the parent's thread here with
    `ChildFailed` (a `Try` catches it)."""

    __slots__ = ()

    def __init__(self, name: str, data: Any, *, id: str | None = None, into: str | None = None,
                 result: str | None = None, handler: Any = None, on_cancel: str = "cancel",
                 deadline: Deadline = None):
        super().__init__(name, [data], ids=None if id is None else [id], into=into,
                         result=result, handler=handler, on_cancel=on_cancel,
                         deadline=deadline, _single=True)


class _ChildrenHandler(EventHandler):
    """The handler of every `Children` wait: its setup starts the children
    (through the outbox), its teardown cancels those still running. The core
    counts their reports (`Operation.callback`). Its setup is tried once: a
    child that cannot be started (its data does not store) fails the thread
    at the wait, as a step would."""

    __slots__ = ("deadline", "ids", "items", "name", "on_cancel", "single")
    input_type = ChildReport
    #: its own retry policy (the core's `_setup` reads it): one attempt
    retry = Retry(attempts=1)

    def __init__(self, name: str, items: list[Any], ids: list[str] | None, single: bool,
                 on_cancel: str, deadline: Deadline = None) -> None:
        self.name, self.items, self.ids = name, items, ids
        self.single, self.on_cancel, self.deadline = single, on_cancel, deadline

    def kept(self, instance_id: str, pc: int) -> dict[str, Any]:
        """What the wait keeps on its event (`setup_data`, saved with the State):
        its children's ids (derived ones as their common stem: a fan-out's blob
        does not grow by an id per child), the policy, the reports so far."""
        kept: dict[str, Any] = {"policy": self.on_cancel, "arrived": b""}
        if self.ids is not None:
            kept["ids"] = self.ids
        else:
            kept["stem"] = f"{instance_id}/{self.name}/{pc}"
            kept["n"] = None if self.single else len(self.items)
        return kept

    def setup(self, req: CallbackRequest) -> Any:
        ctx = current_step()
        kept = self.kept(req.instance_id, req.pc)
        ids = child_ids(kept)
        outbox = ctx._outbox()
        # (a duration counts from now, the children's start: one moment for them all)
        deadline = None if self.deadline is None else checked_deadline(self.deadline, ctx.now)
        for index, (item, child_id) in enumerate(zip(self.items, ids, strict=True)):
            outbox.start("", item, child_id, None,
                         Parent(req.instance_id, CHILD_EVENT, index, req.thread_id, req.pc),
                         deadline=deadline)
        return kept

    def teardown(self, req: CallbackRequest, handled: bool) -> None:
        kept = req.setup_data or {}
        if kept.get("policy") != "cancel":
            return
        arrived = {index for index, _ in arrived_of(kept)}
        outbox = current_step()._outbox()
        for index, child_id in enumerate(child_ids(kept)):
            if index not in arrived:
                outbox.intents.append(CancelIntent(child_id))

    def __repr__(self) -> str:
        return "child workflows"


def child_ids(kept: Any) -> list[str]:
    """The ids of the children a wait started, from what it keeps."""
    if not isinstance(kept, dict):
        return []
    if "ids" in kept:
        return list(kept["ids"])
    stem, count = kept.get("stem", ""), kept.get("n")
    return [stem] if count is None else [f"{stem}/{i}" for i in range(count)]


def arrived_of(kept: Any) -> list[list[Any]]:
    """The reports a wait has counted, as [index, result] pairs in arrival order.
    They are kept packed (msgpack bytes) on the wait's event: a fan-out's State
    is saved at every report, and bytes cost nothing to write again."""
    raw = kept.get("arrived", b"") if isinstance(kept, dict) else b""
    if isinstance(raw, (bytes, bytearray)):
        return msgpack.unpackb(raw, raw=False, strict_map_key=False) if raw else []
    return [list(pair) for pair in raw]


def keep_arrived(kept: dict[str, Any], arrived: list[list[Any]]) -> dict[str, Any]:
    return {**kept, "arrived": msgpack.packb(arrived, use_bin_type=True)}


def child_effects(wf: Any, state: State, error: str | None = None) -> list[SendIntent]:
    """The report a child's ending save writes to its parent (empty while it runs)."""
    parent = state.parent
    status = _ENDED.get(state.status)
    if parent is None or status is None:
        return []
    if status == "finished":
        report = ChildReport(parent.index, state.id, state.workflow, status, unstructure(wf))
    else:
        report = ChildReport(parent.index, state.id, state.workflow, status,
                             error=error or _why(state))
    return [SendIntent(parent.instance_id, parent.event, unstructure(report),
                       thread=parent.thread, pc=parent.pc)]


def conflict_report(intent: StartIntent, workflow: str) -> SendIntent:
    """A child whose id belongs to an instance that is not this wait's child:
    the wait is told at once that it could not be started."""
    parent = intent.parent
    assert parent is not None
    report = ChildReport(parent.index, intent.id, workflow, "not started",
                         error=f"instance {intent.id!r} exists and is not this parent's "
                               "child: give the children distinct ids")
    return SendIntent(parent.instance_id, parent.event, unstructure(report),
                      thread=parent.thread, pc=parent.pc)


def _why(state: State) -> str:
    if state.status is WorkflowStatus.CANCELLED:  # (by hand, or at its deadline: said then)
        return "it was cancelled" + ("" if state.deadline is None
                                     else f" (its deadline: {state.deadline.isoformat()})")
    for thread in state.threads:
        if thread.error:
            return f"step {thread.stmt!r} failed: {thread.error}"
        if thread.failures:
            last = thread.failures[-1]
            return f"step {last.step!r} failed: {last.type}: {last.message}"
    return "it failed"

