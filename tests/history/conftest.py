"""The history's databases: an SQLite file of the test's own, and a schema of its own on the
PostgreSQL server on loopback (dropped afterwards).

A PostgreSQL test skips when no server answers, except under CI=true, where it fails: CI runs
one, so a missing server is a broken build, not a skip (as tests/topics/conftest.py does for
brokers). ``ECS_DETACH_TEST_POSTGRES`` names another server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

POSTGRES = os.environ.get("ECS_DETACH_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
_reachable: list[bool] = []


def require_postgres() -> None:
    """Skip (or under CI=true, fail) the test unless the PostgreSQL server answers."""
    if not _reachable:
        try:
            psycopg.connect(POSTGRES, connect_timeout=3).close()
            _reachable.append(True)
        except psycopg.OperationalError:
            _reachable.append(False)
    if not _reachable[0]:
        message = f"no PostgreSQL server at {POSTGRES}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true: CI should have started it")
        pytest.skip(message)


def in_schema(schema: str) -> str:
    separator = "&" if "?" in POSTGRES else "?"
    return f"{POSTGRES}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose tables land in a schema of this test alone."""
    require_postgres()
    schema = f"history_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield in_schema(schema)
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each contract test runs on both kinds of history."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/history.db"
    url: str = request.getfixturevalue("postgres_url")
    return url
