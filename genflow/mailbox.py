"""Mailboxes: events kept for an instance until one of its threads waits for them.

An event sent while no thread waits for it is, by default, kept in the
instance's `State` (`State.mailbox`, saved in the same compare-and-swap as
everything else) and delivered, oldest first, by the move that finds a thread
waiting for it (`genflow.runtime.Operation`): the message leaves the mailbox in
the same save that applies its handler, so it is delivered exactly once by
construction. This module holds what the send path needs to decide: the
events a definition can ever wait for, and whether an event is kept.
"""

from __future__ import annotations

from typing import Any

import attrs

from genflow.children import CHILD_EVENT
from genflow.errors import DefinitionError, GenflowError
from genflow.replay import as_body, iter_tree
from genflow.state import KEPT_UNDELIVERED, MAIN_THREAD
from genflow.statements import Go, On, Timeout

__all__ = ["DEFAULT_SIZE", "KEPT_UNDELIVERED", "Kept", "keeps", "sendable"]

#: how many messages an instance keeps at most, unless the engine says otherwise
#: (`Engine(mailbox_size=...)`): a send beyond it is refused (`MailboxFullError`)
DEFAULT_SIZE = 100


@attrs.frozen
class Kept:
    """What `send` returns when it kept the event rather than delivering it:
    which message it is (`seq`, as `genflow show` lists it) and how many the
    instance keeps now, this one included."""

    instance_id: str
    event: str
    seq: int
    kept: int


def sendable(wf: Any) -> tuple[dict[str, list[On]], set[str], set[str]]:
    """What a sender may send to an instance with data `wf`: each event's `On`
    statements anywhere in the definition (every branch, every thread, replayed
    on this data: a definition depends on its data); the names that are only
    ever timers; and the ids of the threads its `Go` statements start (a
    message may be addressed to one before it runs)."""
    events: dict[str, list[On]] = {}
    timers: set[str] = set()
    threads = {MAIN_THREAD}
    try:
        for stmt, _ in iter_tree(as_body(wf)):
            if isinstance(stmt, Timeout):
                timers.add(stmt.name or "")
            elif isinstance(stmt, On):
                if stmt.name != CHILD_EVENT:  # (a child's report: the engine's alone)
                    events.setdefault(stmt.name or "", []).append(stmt)
            elif type(stmt) is Go:
                threads.add(stmt.id)
    except GenflowError:
        raise
    except Exception as exc:
        raise DefinitionError(f"definition() raised while listing its events: {exc!r}") from exc
    return events, timers - set(events), threads


def keeps(wf: Any, ons: list[On], keep: bool | None) -> bool:
    """Is an event with these `On`s kept when no thread waits for it? The
    send's `keep` if given, else the `On`s' (validation makes them agree),
    else the workflow's (`@workflow(keep=...)`), else yes."""
    if keep is not None:
        return bool(keep)
    for on in ons:
        if on.keep is not None:
            return bool(on.keep)
    default = getattr(type(wf), "__genflow_keep__", None)
    return True if default is None else bool(default)
