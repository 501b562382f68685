"""Explain an instance in words: where each thread is, what it waits for, since when.

Operators should never need a raw dump to learn why an instance is stuck:
`describe` says what the instance is doing, what its last error was and what
to do about it, where each thread stands, which events it listens for (and
whether their handlers are set up), when its timers fire, and its data, one
field per line.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from genflow.children import arrived_of, child_ids
from genflow.clock import system_clock
from genflow.codec import unstructure
from genflow.state import (
    MAIN_THREAD,
    Failure,
    Mailbox,
    Message,
    State,
    Thread,
    ThreadStatus,
    WaitEvent,
    WaitEventStatus,
    WorkflowStatus,
    unretryable,
)

__all__ = ["carries", "describe", "thread_name", "when"]

#: Longer data values are cut (`genflow show --json` prints them whole).
MAX_VALUE = 300


def describe(
    state: State,
    data: Any = None,
    *,
    now: _dt.datetime | None = None,
    attempts: int = 0,
    error: str = "",
    wake_at: _dt.datetime | None = None,
    updated_at: _dt.datetime | None = None,
    queue: str | None = None,
    children: list[tuple[str, str]] | None = None,
    outbox: list[Any] | None = None,
) -> str:
    """A few lines of plain text about an instance.

    `attempts`, `error`, `wake_at` and `updated_at` are the store's bookkeeping
    (see `genflow.engine.Instance`); `now` is the clock to say "in 5m" against.
    `queue` says where it stands in its queue (`genflow.queues.QueuePlace.text`).
    `children` are its children's (id, status) (`Engine.list(parent=...)`);
    `outbox` the entries it wrote that are not delivered yet (`OutboxEntry`).
    """
    now = now or system_clock()
    status = _status(state, attempts, error, wake_at)
    if queue is not None and queue.startswith("waits in queue") \
            and state.status is WorkflowStatus.RESUMING and not error:
        status = "queued (no worker runs it until its queue admits it)"
    lines = [f"instance {state.id} of workflow {state.workflow!r}: {status}"]
    if updated_at is not None:
        lines.append(f"  last changed {when(updated_at, now)}")
    if queue is not None:
        lines.append(f"  {queue}")
    if state.parent is not None:
        lines.append(f"  child number {state.parent.index} of instance {state.parent.instance_id}")
    if state.deadline is not None:
        lines.append(f"  {deadline_words(state, now)}")
    lines.extend("  " + line for line in _trouble(state, attempts, error, wake_at, now))
    for thread in state.threads:
        lines.extend("  " + line for line in _thread(thread, now))
    if state.mailbox is not None:
        lines.extend("  " + line for line in _mailbox(state.mailbox, now))
    for child_id, status in children or ():
        lines.append(f"  child {child_id}: {status}")
    for entry in outbox or ():
        what = "cancel" if entry.kind == "cancel" else f"event {entry.event!r}"
        how = f"given up: {entry.error}" if entry.due_at is None else (
            f"due {when(entry.due_at, now)}"
            + (f" ({_attempts(entry.attempts)} not delivered: {entry.error})"
               if entry.attempts else ""))
        lines.append(f"  outbox: {what} to {entry.target}, {how}")
    if data is not None:
        lines.extend("  " + line for line in _data(data))
    return "\n".join(lines)


def thread_name(thread_id: str) -> str:
    return "main thread" if thread_id == MAIN_THREAD else f"thread {thread_id!r}"


def when(moment: _dt.datetime, now: _dt.datetime) -> str:
    """`2030-01-01 10:00:00 UTC (in 5.0m)` / `(3s ago)` / `(now)`."""
    delta = (moment - now).total_seconds()
    stamp = moment.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if abs(delta) < 1:
        return f"{stamp} (now)"
    span = _span(abs(delta))
    return f"{stamp} ({'in ' + span if delta > 0 else span + ' ago'})"


def deadline_words(state: State, now: _dt.datetime) -> str:
    """When the instance's deadline (`Engine.start(deadline=...)`) cancels it."""
    assert state.deadline is not None
    stamp = when(state.deadline, now)
    if state.status is WorkflowStatus.RESUMING or state.status is WorkflowStatus.WAITING:
        if state.deadline <= now:
            return f"deadline {stamp}: passed, the next worker round cancels it"
        return f"deadline {stamp}: cancelled then unless it has finished"
    return f"deadline {stamp}"


# -- parts ------------------------------------------------------------------------------------


def _status(state: State, attempts: int, error: str, wake_at: _dt.datetime | None) -> str:
    if state.status is WorkflowStatus.FAILED:
        # (no attempts on record: a failure that left its cleanup ended its thread)
        return f"FAILED after {_attempts(attempts)}" if attempts else "FAILED"
    if error and wake_at is None and state.status is not WorkflowStatus.FINISHED:
        return "STUCK (the last try failed and nothing will retry it)"
    if error and (state.status is WorkflowStatus.RESUMING or _retrying(state)):
        return "retrying (the last try failed)"
    return {
        WorkflowStatus.RESUMING: "running (a thread can move on: a worker will move it)",
        WorkflowStatus.WAITING: "waiting",
        WorkflowStatus.FINISHED: "finished",
        WorkflowStatus.CANCELLING: "cancelling (its threads run their cleanup, then end)",
        WorkflowStatus.CANCELLED: "cancelled",
    }[state.status]


def _trouble(state: State, attempts: int, error: str, wake_at: _dt.datetime | None,
             now: _dt.datetime) -> list[str]:
    """The last error and what happens next (or what the operator should do)."""
    lines = []
    if state.status is WorkflowStatus.FAILED:
        if error:
            lines.append(f"error: {error}")
        if unretryable(state):
            lines.append(f"to go on: `genflow cancel {state.id}`, or `genflow move` the failed "
                         "thread to a statement (a failure nothing caught ended it after its "
                         "Catch and Finally bodies ran: no step is left to retry)")
        else:
            lines.append(f"to go on: fix the cause, then `genflow retry {state.id}`")
        return lines
    if error:
        retry = f"; next try {when(wake_at, now)}" if wake_at is not None else ""
        lines.append(f"last error ({_attempts(attempts)} failed{retry}): {error}")
        if wake_at is None:
            lines.append(f"nothing will retry it: fix the cause, then `genflow retry {state.id}`")
    elif wake_at is not None and state.status is not WorkflowStatus.WAITING:
        lines.append(f"due for a worker {when(wake_at, now)}")
    return lines


def _thread(thread: Thread, now: _dt.datetime) -> list[str]:
    who = thread_name(thread.id)
    since = f" since {when(thread.since, now)}" if thread.since else ""
    status = thread.status
    if status is ThreadStatus.EXECUTING and thread.retry_at is not None:
        head = (f"{who}: step {thread.stmt!r} failed {_attempts(thread.attempts)}, next "
                f"attempt {when(thread.retry_at, now)}: {thread.error}")
    elif status is ThreadStatus.EXECUTING:
        head = f"{who}: about to run step {thread.stmt!r}"
    elif status is ThreadStatus.UNWINDING:
        head = f"{who}: leaving {thread.stmt!r} outward"
    elif status is ThreadStatus.RESUMING:
        if thread.enter:
            head = f"{who}: entering {thread.enter!r} of Try {thread.stmt!r}"
        elif thread.won:
            head = f"{who}: got event {thread.won!r} at {thread.stmt!r}, moving on"
        elif thread.stmt:
            head = f"{who}: moving on after {thread.stmt!r}"
        else:
            head = f"{who}: not started yet"
    elif status is ThreadStatus.WAITING_EVENT:
        head = f"{who}: waiting at {thread.stmt!r}{since} for one of:"
    elif thread.events:  # (a WaitFor's timeout: its timer)
        head = f"{who}: waiting at {thread.stmt!r}{since} until its condition holds, or:"
    else:
        head = f"{who}: waiting at {thread.stmt!r}{since} until its condition holds"
    lines = [head]
    note = carries(thread)
    if note:
        lines.append(f"  {note}")
    for event in thread.events:
        lines.append("  - " + _event(event, now))
    return lines


def carries(thread: Thread) -> str:
    """What `thread` carries, in words ("" if nothing): the failure or the
    cancellation it unwinds with, the failure a Catch it is in (or enters)
    handles, or what a Finally it runs goes on with when it ends."""
    failure = thread.failures[-1] if thread.failures else None
    if thread.status is ThreadStatus.UNWINDING:
        return f"unwinding: {_completion(thread.unwind, failure)}"
    if thread.enter:
        return f"caught {_failure_words(failure)}" if failure is not None else ""
    caught = [f for f in thread.failures if f.at]
    handling = f"handling {_failure_words(caught[-1])}" if caught else ""
    if thread.unwind:  # (a catch of cancellation: the thread ends after it)
        then = _completion(thread.unwind, failure)
        return f"{handling}; then {then}" if handling else f"after the Finally: {then}"
    return handling


def _completion(how: str, failure: Failure | None) -> str:
    if how == "cancel":
        return "cancelled"
    if how == "fail":
        return f"fails with {_failure_words(failure)}" if failure is not None else "fails"
    return how  # break, continue, return


def _failure_words(failure: Failure) -> str:
    text = f"{failure.type}: {failure.message}" if failure.message else failure.type
    if failure.step:
        text += f" (step {failure.step!r}" + (
            f", {_attempts(failure.attempt)})" if failure.attempt > 1 else ")")
    return text


def _event(event: WaitEvent, now: _dt.datetime) -> str:
    if event.event == "child ended" and isinstance(event.req.setup_data, dict):  # (children)
        kept = event.req.setup_data
        ids, arrived = child_ids(kept), arrived_of(kept)
        shown = ", ".join(ids[:3]) + (f", ... {ids[-1]}" if len(ids) > 3 else "")
        return f"children: {len(arrived)} of {len(ids)} ended ({shown})"
    kind = "timer" if event.due is not None else "event"
    text = f"{kind} {event.event!r}: " + {
        WaitEventStatus.PENDING_SETUP: "not set up yet",
        WaitEventStatus.SETUP: "listening",
        WaitEventStatus.SETUP_ERROR: "handler SETUP FAILED (retried by a worker)",
        WaitEventStatus.PENDING_TEARDOWN: "being torn down",
        WaitEventStatus.TEARDOWN_ERROR: "handler TEARDOWN FAILED (retried by a worker)",
    }[event.status]
    if event.won:
        text += ", handled"
    if event.due is not None and event.status is WaitEventStatus.SETUP:
        verb = "fires" if event.due > now else "due"
        text += f", {verb} {when(event.due, now)}"
        if (now - event.due).total_seconds() >= 60:  # a stuck instance's likeliest cause
            text += " (overdue: a worker fires it; is `genflow worker` running on this store?)"
    if event.error:
        text += f": {event.error}"
    if event.retry_at is not None:
        text += f" ({_attempts(event.attempts)} failed; next try {when(event.retry_at, now)})"
    return text


def _mailbox(box: Mailbox, now: _dt.datetime) -> list[str]:
    """The messages kept for the instance (oldest first: delivered in this
    order) and those set aside undelivered, with why."""
    lines = []
    if box.kept:
        lines.append(f"mailbox: {_count(len(box.kept), 'message')} kept until a thread waits "
                     "for its event (oldest first):")
        lines.extend(f"  - {_message(m, now)}" for m in box.kept)
    if box.undelivered:
        lines.append(f"undelivered: {_count(len(box.undelivered), 'message')} set aside:")
        lines.extend(f"  - {_message(m, now)}: {m.reason}" for m in box.undelivered)
    return lines


def _message(message: Message, now: _dt.datetime) -> str:
    text = f"#{message.seq} {message.event!r}"
    if message.thread:
        text += f" for {thread_name(message.thread)}"
    if message.sent_at is not None:
        text += f", sent {when(message.sent_at, now)}"
    if message.payload is not None:
        text += f", payload {_value(message.payload)}"
    return text


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _retrying(state: State) -> bool:
    """Does a step or handler of `state` wait for its next attempt?"""
    return any(t.retry_at is not None or any(e.retry_at is not None for e in t.events)
               for t in state.threads)


def _data(data: Any) -> list[str]:
    raw = unstructure(data)
    if not isinstance(raw, dict):
        return [f"data: {_value(raw)}"]
    if not raw:
        return ["data: (no fields)"]
    return ["data:"] + [f"  {name} = {_value(value)}" for name, value in raw.items()]


def _value(value: Any) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_VALUE:
        text = f"{text[:MAX_VALUE]}... ({len(text)} characters; `genflow show --json` has all)"
    return text


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
