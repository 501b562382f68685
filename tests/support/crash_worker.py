"""A worker process for crash tests: `python crash_worker.py DB COUNT [BATCH]` runs
due work until COUNT instances have finished (or it is killed), claiming BATCH
instances a round (default 1; more: a round's saves share commits)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import crash_app  # noqa: F401  (registers the workflow)

from genflow.engine import Engine
from genflow.stores import SQLiteStore


def main() -> None:
    db, count = sys.argv[1], int(sys.argv[2])
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    store = SQLiteStore(db)
    engine = Engine(store, lease_seconds=0.3, share_commits=batch > 1)
    print("ready", flush=True)
    engine.work(stop=lambda: store.count(status="finished") >= count, idle_sleep=0.02, batch=batch)
    print("all finished", flush=True)


if __name__ == "__main__":
    main()
