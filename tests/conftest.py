"""Shared fixtures: a session-wide Prefect test API, a fresh database per test (SQLite, and
PostgreSQL where a test asks for it), and the simulator on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# The shipped contract suite's assertions get pytest's detailed messages (it is imported
# by tests/contract after this file, so the rewrite applies).
pytest.register_assert_rewrite("crowdloop.connectors.testing")

# No phoning home from the test API server: this machine has no network beyond registries.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LLMFAO = SHARED / "data" / "llmfao"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_ADMIN_URL = os.environ.get(
    "CROWDLOOP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'crowdloop.db'}"
    monkeypatch.setenv("CROWDLOOP_DATABASE_URL", url)
    return url


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def postgres_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway database on the local PostgreSQL server."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL on 127.0.0.1:5432 is not reachable (CI must start it)")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")
    with throwaway_pg_database() as name:
        url = pg_url(name)
        monkeypatch.setenv("CROWDLOOP_DATABASE_URL", url)
        yield url
        from crowdloop.db import dispose_engine

        dispose_engine(url)


def pg_url(name: str, driver: str = "psycopg") -> str:
    return f"postgresql+{driver}://postgres@127.0.0.1:5432/{name}"


@contextmanager
def throwaway_pg_database(prefix: str = "crowdloop_t") -> Iterator[str]:
    """A new, uniquely named database on the local PostgreSQL server, dropped afterwards
    (with any connection still open to it); yields its name."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run a persistence test on both backends."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))
