"""Ids sort by code point on PostgreSQL whatever the database's collation.

A database created with a linguistic collation (ICU's en-US here; glibc's
en_US.UTF-8 is alike) sorts "Ac" between "ab" and "ad". The id-prefix reads
(the console's and the API's `q`, a schedule's instances) walk the id order
and stop at the first id outside the prefix, so under such a collation they
would miss "ad". The schema's ids are `COLLATE "C"` (migration 6): the order
is Python's, SQLite's and the memory store's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from postgres_db import POSTGRES_REQUIRED, postgres_dsn

import genflow
from genflow import Engine, On, Wait

psycopg = pytest.importorskip("psycopg", reason="pip install 'genflow[postgres]'")
pytestmark = pytest.mark.postgres


@genflow.workflow("pg-collation-idle")
@attrs.define
class Idle:
    def definition(self):  # type: ignore[no-untyped-def]
        yield Wait("forever?", On("never", self.never))

    def never(self) -> None:
        pass


@pytest.fixture(scope="module")
def icu_dsn() -> Iterator[str]:
    """A database of its own whose default collation is ICU's en-US."""
    dsn = postgres_dsn()
    name = f"genflow_icu_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' "
                         "LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
        except psycopg.errors.InsufficientPrivilege:
            if POSTGRES_REQUIRED:  # (CI's role may: .ci/postgres gives it CREATEDB)
                pytest.fail("the test role may not create databases")
            pytest.skip("the test role may not create databases")
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_the_database_itself_sorts_linguistically(icu_dsn: str) -> None:
    """(The premise: without the schema's collation, this database's order is not Python's.)"""
    with psycopg.connect(icu_dsn) as conn:
        rows = conn.execute("SELECT x FROM unnest(ARRAY['ad', 'Ac', 'ab']) x ORDER BY x")
        assert [r[0] for r in rows] == ["ab", "Ac", "ad"] != sorted(["ad", "Ac", "ab"])


ids = st.lists(st.text(alphabet="aAbB-_.@/ 1é", min_size=1, max_size=6), min_size=1,
               max_size=12, unique=True)


@settings(max_examples=15, deadline=None)
@given(ids=ids, prefix=st.text(alphabet="aAbB-_", max_size=2))
def test_listing_and_prefix_reads_follow_code_points(icu_dsn: str, ids: list[str],
                                                     prefix: str) -> None:
    from genflow.stores.postgres import PostgresStore
    from genflow.web.listing import Filters, list_rows

    schema = f"t_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(icu_dsn, schema=schema)
    try:
        engine = Engine(store, [Idle])
        for instance_id in ids:
            engine.start(Idle(), id=instance_id)
        assert [r.id for r in engine.list()] == sorted(ids)
        page, after = [], None
        while True:  # keyset pages of two
            got = engine.list(after=after, limit=2)
            if not got:
                break
            page += [r.id for r in got]
            after = got[-1].id
        assert page == sorted(ids)
        if prefix:
            rows, _ = list_rows(engine, Filters(q=prefix, limit=500))
            assert [r["id"] for r in rows] == sorted(i for i in ids if i.startswith(prefix))
    finally:
        with psycopg.connect(icu_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        store.close()
