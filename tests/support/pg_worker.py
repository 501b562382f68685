"""Processes for the PostgreSQL tests.

    python pg_worker.py work DSN SCHEMA COUNT LEASE [RETRY]
        run due work until COUNT instances finished (RETRY: the store's retry_seconds;
        the worker's warnings go to stderr)
    python pg_worker.py send DSN SCHEMA ID TAG N      send N `add` events to instance ID

Both print `ready OWNER` once their store is open, so a test knows the process
is up (and which lease owner it is) before it kills it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pg_app  # noqa: F401  (registers the workflows)

from genflow.engine import Engine
from genflow.errors import StoreError
from genflow.stores.postgres import PostgresStore


def main() -> None:
    command, dsn, schema = sys.argv[1:4]
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(name)s %(levelname)s %(message)s")
    if command == "work":
        count, lease = int(sys.argv[4]), float(sys.argv[5])
        retry = float(sys.argv[6]) if len(sys.argv) > 6 else 10.0
        store = PostgresStore(dsn, schema=schema, retry_seconds=retry)
        engine = Engine(store, lease_seconds=lease)
        print("ready", engine.owner, flush=True)

        def finished() -> bool:
            try:
                return store.count(status="finished") >= count
            except StoreError:  # the server is away: not finished, the loop waits it out
                return False

        done = engine.work(stop=finished, idle_sleep=0.05, batch=1)
        print("processed", done, flush=True)
        store.close()
        return
    store = PostgresStore(dsn, schema=schema)
    if command == "send":
        instance_id, tag, n = sys.argv[4], sys.argv[5], int(sys.argv[6])
        engine = Engine(store)
        print("ready", engine.owner, flush=True)
        sys.stdin.readline()  # go: every sender starts at once
        for k in range(n):
            engine.send(instance_id, "add", f"{tag}-{k}", timeout=60)
        print("sent", n, flush=True)
    else:
        raise SystemExit(f"unknown command {command!r}")
    store.close()


if __name__ == "__main__":
    main()
