"""The test database: its DSN from the environment, and a schema of one's own in it.

PostgreSQL cases run when `GENFLOW_TEST_POSTGRES_DSN` names a database (CI always
sets it); without it they are skipped with a visible reason. CI also sets
`GENFLOW_REQUIRE_POSTGRES=1`, which turns those skips into failures: there, no
PostgreSQL test may be skipped silently. The fixtures over every store kind are
in tests/conftest.py; this module is what tests import (`from postgres_db import
postgres_dsn`), as a conftest is not meant to be imported.
"""

from __future__ import annotations

import os
import uuid

import pytest

POSTGRES_DSN = os.environ.get("GENFLOW_TEST_POSTGRES_DSN")
POSTGRES_REQUIRED = os.environ.get("GENFLOW_REQUIRE_POSTGRES", "") not in ("", "0")
NO_POSTGRES = "no PostgreSQL: set GENFLOW_TEST_POSTGRES_DSN to run these cases"


def postgres_dsn() -> str:
    """The test database's DSN; skip (or, where it is required, fail) without one."""
    if POSTGRES_DSN:
        return POSTGRES_DSN
    if POSTGRES_REQUIRED:
        pytest.fail("GENFLOW_REQUIRE_POSTGRES is set but GENFLOW_TEST_POSTGRES_DSN is not")
    pytest.skip(NO_POSTGRES)


def fresh_schema() -> str:
    """A schema name no other test uses (each test drops its own)."""
    return f"t_{uuid.uuid4().hex[:12]}"
