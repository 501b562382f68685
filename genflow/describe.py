"""Explain an instance in words: where each thread is, what it waits for, since when.

Operators should never need a raw dump to learn why an instance is stuck.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from genflow.codec import unstructure
from genflow.state import State, ThreadStatus, WaitEventStatus, WorkflowStatus

__all__ = ["describe"]


def describe(
    state: State,
    data: Any = None,
    *,
    now: _dt.datetime | None = None,
    attempts: int = 0,
    error: str = "",
    wake_at: _dt.datetime | None = None,
) -> str:
    """A few lines of plain text about an instance."""
    now = now or _dt.datetime.now(_dt.UTC)
    lines = [f"instance {state.id} ({state.workflow}): {_status(state)}"]
    if error:
        lines.append(f"  last error (attempt {attempts}): {error}")
    if wake_at is not None:
        lines.append(f"  next wake-up: {_when(wake_at, now)}")
    for thread in state.threads:
        lines.extend("  " + line for line in _thread(thread, now))
    if data is not None:
        lines.append(f"  data: {unstructure(data)!r}")
    return "\n".join(lines)


def _status(state: State) -> str:
    return {
        WorkflowStatus.RESUMING: "running (some thread can move on)",
        WorkflowStatus.WAITING: "waiting",
        WorkflowStatus.FINISHED: "finished",
        WorkflowStatus.FAILED: "FAILED (a step exhausted its retries; fix and `genflow retry`)",
        WorkflowStatus.CANCELLED: "cancelled",
    }[state.status]


def _thread(thread: Any, now: _dt.datetime) -> list[str]:
    since = f" since {_when(thread.since, now)}" if thread.since else ""
    status = thread.status
    if status is ThreadStatus.EXECUTING:
        head = f"thread {thread.id}: about to run step {thread.stmt!r}"
    elif status is ThreadStatus.RESUMING:
        where = f"after {thread.stmt!r}" if thread.stmt else "at its start"
        if thread.handled:
            where = f"after event {thread.handled!r} of wait {thread.stmt!r}"
        head = f"thread {thread.id}: moving on {where}"
    elif status is ThreadStatus.WAITING_EVENT:
        head = f"thread {thread.id}: waiting at {thread.stmt!r}{since} for one of:"
    else:
        head = f"thread {thread.id}: waiting at {thread.stmt!r}{since} for its condition to hold"
    lines = [head]
    for event in thread.events:
        lines.append("  - " + _event(event, now))
    return lines


def _event(event: Any, now: _dt.datetime) -> str:
    text = f"event {event.event!r}"
    if event.due is not None:
        text += f" (timer, fires {_when(event.due, now)})"
    state = {
        WaitEventStatus.PENDING_SETUP: "not set up yet",
        WaitEventStatus.SETUP: "listening",
        WaitEventStatus.SETUP_ERROR: "SETUP FAILED, will retry",
        WaitEventStatus.PENDING_TEARDOWN: "being torn down",
        WaitEventStatus.TEARDOWN_ERROR: "TEARDOWN FAILED, will retry",
    }[event.status]
    text += f": {state}"
    if event.error:
        text += f" ({event.error})"
    if event.handled:
        text += " [handled]"
    text += f" [callback counter {event.req.pc}]"
    return text


def _when(moment: _dt.datetime, now: _dt.datetime) -> str:
    delta = (moment - now).total_seconds()
    stamp = moment.isoformat(timespec="seconds")
    if abs(delta) < 1:
        return f"{stamp} (now)"
    span = _span(abs(delta))
    return f"{stamp} ({'in ' + span if delta > 0 else span + ' ago'})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
