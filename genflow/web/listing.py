"""The instance list: filters read from a query string, keyset paging by id.

Paging is by id (`Store.list(after=...)`), never by offset: page 1,000 of
100,000 instances costs what page 1 costs, one indexed range read
(`benchmarks/console_paging.py` measures it). `q` finds ids that start with
it: the same range read, from `q` on, stopped at the first id that does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from genflow.engine import Engine
from genflow.errors import InstanceNotFoundError
from genflow.queues import cursor_after
from genflow.render.views import row_view
from genflow.schedules import schedule_of
from genflow.state import WorkflowStatus
from genflow.web.errors import RequestError
from genflow.wire import storable_key

__all__ = ["MAX_LIMIT", "Filters", "list_rows"]

MAX_LIMIT = 500
_STATUSES = [s.value for s in WorkflowStatus]


@attrs.frozen
class Filters:
    workflow: str | None = None
    status: str | None = None
    waiting: str | None = None
    failed: bool = False
    q: str = ""
    after: str | None = None
    limit: int = 50
    schedule: str | None = None  #: only the instances this schedule started
    queue: str | None = None  #: only the instances this queue holds (running or waiting)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        """The filters of a query string; a value that does not fit is a `RequestError`."""
        def text(name: str) -> str | None:
            value = query.get(name)
            return value if value else None

        status = text("status")
        if status is not None and status not in _STATUSES:
            raise RequestError(f"status must be one of {', '.join(_STATUSES)}, not {status!r}")
        failed = (query.get("failed") or "false").lower()
        if failed not in ("true", "false", "1", "0", "on", "off"):
            raise RequestError(f"failed must be true or false, not {failed!r}")
        raw_limit = query.get("limit") or "50"
        try:
            limit = int(raw_limit)
        except ValueError:
            raise RequestError(f"limit must be a whole number, not {raw_limit!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise RequestError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        return cls(workflow=text("workflow"), status=status, waiting=text("waiting"),
                   failed=failed in ("true", "1", "on"), q=query.get("q") or "",
                   after=text("after"), limit=limit, schedule=text("schedule"),
                   queue=text("queue"))

    def store_status(self) -> str | None:
        return "failed" if self.failed else self.status

    def empty(self) -> bool:
        """Do the filters contradict each other (failed, and another status; an id
        prefix no instance of the schedule has)?"""
        return (self.failed and self.status not in (None, "failed")) or self.prefix() is None \
            or self.names_nothing()

    def names_nothing(self) -> bool:
        """Is a filter a text no store could keep (a NUL, a lone surrogate), which no
        instance has (and which PostgreSQL would refuse to be asked for)?"""
        return any(text and not storable_key(text)
                   for text in (self.workflow, self.waiting, self.q, self.schedule))

    def prefix(self) -> str | None:
        """The ids' prefix the filters read (`q`, and the schedule's ``ID@``): the
        longer of the two when one extends the other, None when they part ways."""
        if self.schedule is None:
            return self.q
        own = f"{self.schedule}@"
        if self.q.startswith(own) or not self.q:
            return self.q or own
        return own if own.startswith(self.q) else None

    def counted(self) -> bool:
        """Can the store count what the filters select (no prefix, schedule or queue)?"""
        return not self.q and self.schedule is None and self.queue is None

    def query(self, **changes: Any) -> dict[str, str]:
        """The query string that gives these filters (with `changes`)."""
        values = {**attrs.asdict(self), **changes}
        out = {}
        for key, value in values.items():
            if key == "limit" and value == 50:
                continue
            if value in (None, "", False):
                continue
            out[key] = "true" if value is True else str(value)
        return out


def list_rows(engine: Engine, filters: Filters) -> tuple[list[dict[str, Any]], str | None]:
    """One page of rows, and the `after` of the next page (None: this is the last)."""
    if filters.empty():
        return [], None
    if filters.queue is not None:
        return _queue_rows(engine, filters)
    limit, q = filters.limit, filters.prefix() or ""
    status = filters.store_status()
    rows: list[dict[str, Any]] = []
    cursor = filters.after
    if q and (cursor is None or cursor < q):
        try:  # the id itself (`after` is exclusive)
            record = engine.store.get(q)
        except InstanceNotFoundError:
            pass
        else:
            if _fits(record, filters.workflow, status, filters.waiting):
                rows.append(row_view(record))
        cursor = q
    if filters.schedule is not None:  # its ids: one range read (`Schedules.instances`)
        if rows and not _started_by(rows[0]["id"], filters.schedule):
            rows = []
        page = engine.schedules.instances(filters.schedule, workflow=filters.workflow,
                                          status=status, waiting=filters.waiting,
                                          after=cursor, limit=limit + 1 - len(rows))
    else:
        page = engine.list(workflow=filters.workflow, status=status, waiting=filters.waiting,
                           after=cursor, limit=limit + 1 - len(rows))
    for record in page:
        if q and not record.id.startswith(q):
            break  # ids are in order: none after this one starts with `q`
        rows.append(row_view(record))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1]["id"] if more and rows else None


def _fits(record: Any, workflow: str | None, status: str | None, waiting: str | None) -> bool:
    return ((workflow is None or record.workflow == workflow)
            and (status is None or record.status == status)
            and (waiting is None or waiting in record.waiting_for))


#: queue entries read for one page of the instance list at most (the filters
#: beside `queue` are applied to them): a page may come back short, with a `next`
_QUEUE_SCAN = 2000


def _queue_rows(engine: Engine, filters: Filters) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the instances a queue holds (`Queues.entries`: running, then
    waiting in admission order), the other filters applied to each; `after` is
    the queue's own cursor. At most `_QUEUE_SCAN` entries are read for a page."""
    assert filters.queue is not None
    status, prefix = filters.store_status(), filters.prefix() or ""
    rows: list[dict[str, Any]] = []
    cursor = filters.after
    scanned = 0
    while scanned < _QUEUE_SCAN:
        want = min(filters.limit, _QUEUE_SCAN - scanned)
        entries, cursor = engine.queues.entries(filters.queue, after=cursor, limit=want)
        scanned += len(entries)
        for n, entry in enumerate(entries):
            if prefix and not entry.instance_id.startswith(prefix):
                continue
            if filters.schedule is not None and not _started_by(entry.instance_id,
                                                                filters.schedule):
                continue
            try:
                record = engine.store.get(entry.instance_id)
            except InstanceNotFoundError:
                continue  # deleted meanwhile: its entry goes at the next admission round
            if _fits(record, filters.workflow, status, filters.waiting):
                rows.append(row_view(record))
            if len(rows) == filters.limit:
                # a full page: the next one resumes after this entry (or the batch's end)
                return rows, cursor_after(entry) if n + 1 < len(entries) else cursor
        if cursor is None:
            return rows, None
    return rows, cursor


def _started_by(instance_id: str, schedule_id: str) -> bool:
    started = schedule_of(instance_id)
    return started is not None and started[0] == schedule_id
