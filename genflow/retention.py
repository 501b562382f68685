"""Retention: ended instances and old journal entries deleted in small batches.

A `Retention` policy says, for one workflow (or as the default for every
workflow without a policy of its own), how long finished, cancelled and
failed instances are kept after their last change, and how much of the
journal is kept (by age, or the last N entries of each instance). The
worker runs the policies itself (`Engine.work`, at most every
`engine.retention.every`), or an operator runs `genflow purge`.

Each batch is one short transaction (at most `batch` instances, each removed
through `Store.delete`, so its journal, its queue entry and every other row
that belongs to it go with it), and a round stops after `max_batches`: a purge
of millions never holds the store for long, and workers' writes go on
between batches. Age is the time since the instance ended, on the store's
own clock (the system's), not the engine's: the SQL stores' `ended_at`.
Leased instances are left for a later round; a failed instance deleted while
an operator retries it is a race the lease closes.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import logging
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import attrs

from genflow.errors import ScheduleError
from genflow.observe import fields
from genflow.stores.base import utcnow
from genflow.stores.scheduling import ENDED

if TYPE_CHECKING:
    from genflow.engine import Engine

__all__ = ["PurgeReport", "Retention", "RetentionRunner"]

log = logging.getLogger("genflow.retention")


@attrs.frozen
class Retention:
    """How long one workflow's ended instances (and its journal) are kept.

    `workflow=None` is the default for every workflow without a policy of
    its own. A status left None is kept for ever."""

    workflow: str | None = None
    finished: _dt.timedelta | None = None
    cancelled: _dt.timedelta | None = None
    failed: _dt.timedelta | None = None
    journal_age: _dt.timedelta | None = None
    journal_length: int | None = None

    def __attrs_post_init__(self) -> None:
        for what in ("finished", "cancelled", "failed", "journal_age"):
            value = getattr(self, what)
            if value is not None and (not isinstance(value, _dt.timedelta)
                                      or value < _dt.timedelta(0)):
                raise ScheduleError(f"Retention.{what} is a timedelta of 0 or more, "
                                    f"not {value!r}")
        if self.journal_length is not None and (not isinstance(self.journal_length, int)
                                                or isinstance(self.journal_length, bool)
                                                or not 0 <= self.journal_length < 2**63):
            raise ScheduleError(f"Retention.journal_length is a count of 0 or more, not "
                                f"{self.journal_length!r}")


@attrs.frozen
class PurgeReport:
    """What a purge deleted (or, dry, would delete)."""

    instances: int = 0
    journal_entries: int = 0
    ids: tuple[str, ...] = ()  #: with `keep_ids`: the instances' ids
    dry_run: bool = False
    seconds: float = 0.0


class RetentionRunner:
    """`engine.retention`: its policies, and the purge that applies them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.policies: builtins.list[Retention] = []
        #: how often the worker loop applies the policies (at most)
        self.every = _dt.timedelta(minutes=10)
        self.batch = 500
        self.max_batches = 20
        self._last: float | None = None

    def add(self, policy: Retention) -> Retention:
        if not isinstance(policy, Retention):
            raise ScheduleError(f"retention.add takes a genflow.retention.Retention, not "
                                f"{policy!r}")
        if any(p.workflow == policy.workflow for p in self.policies):
            raise ScheduleError(f"a retention policy for "
                                f"{policy.workflow or 'every workflow'!r} exists already")
        self.policies.append(policy)
        return policy

    def purge(self, older_than: _dt.timedelta, *, statuses: Collection[str] = ENDED,
              workflow: str | None = None, exclude: Collection[str] = (),
              dry_run: bool = False, now: _dt.datetime | None = None,
              max_batches: int | None = None, keep_ids: bool = False) -> PurgeReport:
        """Delete the ended instances (of `statuses`) last changed more than
        `older_than` ago, in batches; `dry_run` counts them instead (up to
        `batch * max_batches`)."""
        if not isinstance(older_than, _dt.timedelta) or older_than < _dt.timedelta(0):
            raise ScheduleError(f"a purge's older_than is a timedelta of 0 or more, not "
                                f"{older_than!r}")
        if now is not None and (not isinstance(now, _dt.datetime) or now.tzinfo is None):
            raise ScheduleError(f"a purge's now is an aware datetime, not {now!r}")
        if isinstance(statuses, str):
            statuses = (statuses,)
        unknown = sorted(set(statuses) - set(ENDED))
        if unknown:
            raise ScheduleError(f"only ended instances are purged ({', '.join(ENDED)}), "
                                f"not {', '.join(unknown)}")
        started = time.perf_counter()
        try:
            before = (now or utcnow()) - older_than
        except OverflowError:
            before = _dt.datetime.min.replace(tzinfo=_dt.UTC)  # older than anything stored
        store = self.engine.store
        total = 0
        ids: builtins.list[str] = []
        batches = self.max_batches if max_batches is None else max_batches
        seen: set[str] = set()
        for _ in range(batches):
            got = store.purge(before, statuses=statuses, workflow=workflow, exclude=exclude,
                              limit=self.batch, dry_run=dry_run)
            if dry_run:  # nothing went: count the whole set once, then stop
                got = [i for i in got if i not in seen]
                seen.update(got)
                total += len(got)
                if keep_ids:
                    ids += got
                break
            total += len(got)
            if keep_ids:
                ids += got
            if len(got) < self.batch:
                break
        if total and not dry_run:
            log.info("purged %d instance(s) last changed before %s", total, before,
                     extra=fields(workflow=workflow, count=total))
        return PurgeReport(total, 0, tuple(ids), dry_run, time.perf_counter() - started)

    def run(self, *, now: _dt.datetime | None = None, dry_run: bool = False) -> PurgeReport:
        """Apply every policy once (a bounded number of batches each)."""
        if now is not None and (not isinstance(now, _dt.datetime) or now.tzinfo is None):
            raise ScheduleError(f"a retention run's now is an aware datetime, not {now!r}")
        now = now or utcnow()
        started = time.perf_counter()
        own = [p.workflow for p in self.policies if p.workflow is not None]
        instances = journal = 0
        for policy in self.policies:
            exclude: Sequence[str] = own if policy.workflow is None else ()
            for status in ENDED:
                keep = getattr(policy, status)
                if keep is not None:
                    instances += self.purge(keep, statuses=(status,), workflow=policy.workflow,
                                            exclude=exclude, dry_run=dry_run,
                                            now=now).instances
            if not dry_run and (policy.journal_age is not None
                                or policy.journal_length is not None):
                journal += self.engine.store.trim_journal(
                    before=None if policy.journal_age is None else now - policy.journal_age,
                    keep=policy.journal_length, workflow=policy.workflow,
                    limit=self.batch * self.max_batches)
        return PurgeReport(instances, journal, (), dry_run, time.perf_counter() - started)

    def run_if_due(self) -> int:
        """The worker loop's call: apply the policies if `every` has passed
        since this process last did (each worker keeps its own pace: two that
        purge at once delete disjoint rows or nothing); how many rows went."""
        if not self.policies:
            return 0
        moment = time.monotonic()
        if self._last is not None and moment - self._last < self.every.total_seconds():
            return 0
        self._last = moment
        report = self.run()
        return report.instances + report.journal_entries
