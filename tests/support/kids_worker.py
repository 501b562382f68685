"""A worker process for the child-workflow tests on PostgreSQL:

    python kids_worker.py DSN SCHEMA PARENTS LEASE

runs due work until PARENTS `kids-sum` instances finished; prints `ready`
once its store is open (the test kills it with SIGKILL at any moment).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import kids_app  # noqa: F401  (registers the workflows)

from genflow.engine import Engine
from genflow.errors import StoreError
from genflow.stores.postgres import PostgresStore


def main() -> None:
    dsn, schema, parents, lease = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    store = PostgresStore(dsn, schema=schema, migrate=False)
    engine = Engine(store, lease_seconds=lease)
    print("ready", engine.owner, flush=True)

    def finished() -> bool:
        try:
            return store.count(workflow="kids-sum", status="finished") >= parents
        except StoreError:
            return False

    engine.work(stop=finished, idle_sleep=0.1, batch=20)
    store.close()


if __name__ == "__main__":
    main()
