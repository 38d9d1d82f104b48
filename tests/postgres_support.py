"""A real PostgreSQL 15 for tests, from Debian's binaries, on a free loopback port.

Fixtures (imported by tests/conftest.py, so every test module can ask for them):

- ``postgres`` (session): one server for the whole run, started on first use, stopped at the
  end whatever happens. Its data directory is a fresh tmp dir; when the tests run as root the
  server runs as the ``postgres`` system user (postgres refuses to run as root). Password
  authentication (scram-sha-256) is on, for user ``ruang``.
- ``DATABASES``: ``["sqlite", <postgresql, marked slow>]`` for ``params=``; the
  ``both_databases`` marker (tests/conftest.py) runs a ServerProcess test on both.
- ``postgres_url`` (function): ``postgresql+asyncpg://ruang:PASSWORD@127.0.0.1:PORT/<db>`` of a
  database made empty for this test and dropped after it. Hand it to a server as
  ``RUANG_DATABASE_URL`` (several ``ServerProcess``es may share it), or to ``make_engine``.

Without the binaries the fixtures skip the test. Tuned for speed, not durability (fsync off).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

PG_BIN = Path(os.environ.get("RUANG_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "ruang"
PG_PASSWORD = "ruang-test-password"
START_TIMEOUT = 30.0
# For ``pytest.mark.parametrize`` / fixture params: both engines, PostgreSQL marked slow.
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


class PostgresError(RuntimeError):
    """The test PostgreSQL could not be started or did not do what was asked."""


class PostgresServer:
    """One throwaway PostgreSQL cluster: ``start()``, ``create_database()``, ``stop()``."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ruang-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None

    # --- lifecycle -------------------------------------------------------------------------

    def _user_kwargs(self) -> dict[str, object]:
        if self._run_as is None:
            return {}
        return {"user": self._run_as, "group": self._run_as, "extra_groups": []}

    def start(self) -> None:
        if not (PG_BIN / "postgres").exists():
            raise PostgresError(f"no PostgreSQL binaries in {PG_BIN}")
        pwfile = self.root / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            for path in (self.root, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        init = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                PG_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            **self._user_kwargs(),  # type: ignore[call-overload]
        )
        if init.returncode != 0:
            raise PostgresError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    "-c",
                    f"listen_addresses={self.host}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=32MB",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._user_kwargs(),  # type: ignore[call-overload]
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostgresError(f"postgres exited early:\n{self.log()}")
            if self._psql("SELECT 1", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise PostgresError(f"postgres did not accept connections:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # --- databases -------------------------------------------------------------------------

    def _psql(
        self, sql: str, database: str = "postgres", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                PG_USER,
                "-d",
                database,
                "-c",
                sql,
            ],
            env={**os.environ, "PGPASSWORD": PG_PASSWORD, "PGCONNECT_TIMEOUT": "5"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise PostgresError(f"psql failed: {sql}\n{result.stderr}")
        return result

    def sql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql as the superuser ``ruang``; its unaligned output."""
        return self._psql(sql, database).stdout

    def url(self, database: str, password: str = PG_PASSWORD) -> str:
        return f"postgresql+asyncpg://{PG_USER}:{password}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"ruang_test_{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if not (PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN}")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    name = postgres.create_database()
    try:
        yield postgres.url(name)
    finally:
        with contextlib.suppress(PostgresError, subprocess.TimeoutExpired):
            postgres.drop_database(name)
