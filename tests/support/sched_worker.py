"""A worker process for the schedule and queue tests:

    python sched_worker.py URL COUNT [LEASE]

runs `Engine.work` on the store at URL (`?schema=` for PostgreSQL) until COUNT
instances have finished, or it is killed. Prints `ready OWNER` once its store
is open and, at the end, `processed N`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import sched_app  # noqa: F401  (registers the workflows and factories)

from genflow.engine import Engine
from genflow.errors import StoreError
from genflow.stores import open_store


def main() -> None:
    url, count = sys.argv[1], int(sys.argv[2])
    lease = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(name)s %(levelname)s %(message)s")
    store = open_store(url)
    engine = Engine(store, lease_seconds=lease)
    print("ready", engine.owner, flush=True)

    def finished() -> bool:
        try:
            return store.count(status="finished") >= count
        except StoreError:
            return False

    done = engine.work(stop=finished, idle_sleep=0.02, batch=20)
    print("processed", done, flush=True)
    store.close()


if __name__ == "__main__":
    main()
