"""Counting a store's commits of instance saves (the worker rounds' tests)."""

from __future__ import annotations

import contextlib
from typing import Any

from genflow.stores.base import Store


class Commits:
    """The commits of a store's instance saves, each as the ids it saved: a
    `saves_together` block is one commit, a save outside one is its own."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.commits: list[list[str]] = []
        self._block: list[str] | None = None
        save, together = store.save, store.saves_together

        def counted_save(record: Any, **kw: Any) -> Any:
            saved = save(record, **kw)
            if self._block is None:
                self.commits.append([record.id])
            else:
                self._block.append(record.id)
            return saved

        @contextlib.contextmanager
        def counted_together() -> Any:
            self._block = []
            try:
                with together() as refused:
                    yield refused
                self.commits.append(self._block)
            finally:
                self._block = None

        store.save = counted_save  # type: ignore[method-assign]
        store.saves_together = counted_together  # type: ignore[method-assign]

    def stop(self) -> None:
        del self.store.save, self.store.saves_together  # (the class's again)
