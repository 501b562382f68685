"""Azure Durable Functions' fan-out/fan-in sample (E2_BackupSiteContent), in genflow.

A site's files are backed up to blob storage: one step lists the files, one
thread per file copies it (the fan-out), and once every copy is done the sizes
are added up (the fan-in). Azure's orchestrator schedules one activity per
file and awaits `context.task_all(tasks)`; here each file gets a thread
(`Go`) whose one step copies it, and a `WaitFor` waits for all of them.

The copies are `async def` steps: under the async API (`Engine.start_async`,
`run_due_async`...), the steps of all the threads run at once, each
checkpointed as it ends, so 25 copies take about as long as one
(benchmarks/fan_out.py measures it). Each copy writes its own index of
`sizes`: steps running at once each work on their own copy of the data, and
what each wrote is merged in when it ends (docs/statements.md, "Steps at
once").

`FileShare` and `BlobStorage` stand in for the site's file share and the blob
service: an upload takes `latency` seconds (the I/O), and an upload made again
with the same key (a copy run again after a crash, before its checkpoint was
saved) stores nothing twice.

Run it: ``python -m examples.fan_out``.
"""

from __future__ import annotations

import asyncio
import functools

import attrs

import genflow
from genflow import Go, Step, WaitFor, current_step

__all__ = ["SHARE", "STORAGE", "Backup", "BlobStorage", "FileShare"]


# -- the outside systems ------------------------------------------------------------------


class FileShare:
    """The site's files: `files[root]` lists them, with their sizes."""

    def __init__(self, files: dict[str, dict[str, int]] | None = None) -> None:
        self.files = files if files is not None else {
            "site": {f"page-{n:02}.html": 1000 + n for n in range(25)}}

    async def list(self, root: str) -> list[str]:
        await asyncio.sleep(0)  # (a call to the share)
        return sorted(self.files[root])

    def size(self, root: str, name: str) -> int:
        return self.files[root][name]


class BlobStorage:
    """Blob storage: `upload` takes `latency` seconds; `stored` keeps one blob
    per key; `running` and `peak` count the uploads under way."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.reset()

    def reset(self) -> None:
        self.stored: dict[str, tuple[str, int]] = {}
        self.calls: list[str] = []
        self.running = self.peak = 0

    async def upload(self, name: str, size: int, key: str) -> int:
        self.calls.append(name)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.running -= 1
        self.stored.setdefault(key, (name, size))
        return size


SHARE = FileShare()
STORAGE = BlobStorage()


# -- the workflow ---------------------------------------------------------------------------


@genflow.workflow("azure-fan-out")
@attrs.define
class Backup:
    root: str = "site"
    files: list[str] = attrs.field(factory=list)
    #: bytes copied, per file (-1: not yet)
    sizes: list[int] = attrs.field(factory=list)
    total: int | None = None

    def definition(self):
        yield Step("list files", self.list_files)
        for i in range(len(self.files)):  # the fan-out: one thread per file
            yield Go(f"copy {i}", Step(f"copy file {i}", functools.partial(self.copy, i)),
                     id=f"copy-{i}")
        yield WaitFor("all copied", -1 not in self.sizes)  # the fan-in
        yield Step("add up", self.add_up)

    async def list_files(self) -> None:
        self.files = await SHARE.list(self.root)
        self.sizes = [-1] * len(self.files)

    async def copy(self, i: int) -> None:
        name = self.files[i]
        self.sizes[i] = await STORAGE.upload(name, SHARE.size(self.root, name),
                                             key=current_step().idempotency_key)

    def add_up(self) -> None:
        self.total = sum(self.sizes)


def main() -> None:
    from genflow import Engine
    from genflow.stores import MemoryStore

    engine = Engine(MemoryStore())
    iid = asyncio.run(engine.start_async(Backup()))
    backup = engine.get(iid)
    print(f"{backup.status.value}: {len(backup.data.files)} files, {backup.data.total} bytes, "
          f"{STORAGE.peak} uploads at once")


if __name__ == "__main__":
    main()
