from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.tls import ensure_dev_certificate
from tests.postgres_support import DATABASES, postgres, postgres_url  # noqa: F401 - fixtures
from tests.support import ServerProcess


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_databases: run each test that uses a server (or `database_env`) on SQLite and "
        "on PostgreSQL (the PostgreSQL variant is slow)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_databases") and (
        "database" in metafunc.fixturenames
    ):
        metafunc.parametrize("database", DATABASES, indirect=True)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """``sqlite`` (the default), or the engine a ``both_databases`` test is running on."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def database_env(database: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for a ServerProcess on that database: {} for SQLite in its data dir."""
    if database == "postgresql":
        return {"RUANG_DATABASE_URL": request.getfixturevalue("postgres_url")}
    return {}


@pytest.fixture(scope="session")
def dev_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_dev_certificate(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def server(
    tmp_path: Path, dev_cert: tuple[Path, Path], database_env: dict[str, str]
) -> AsyncIterator[ServerProcess]:
    proc = ServerProcess(tmp_path, *dev_cert, extra_env=database_env)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


@pytest.fixture
def make_server(tmp_path: Path, dev_cert: tuple[Path, Path], database_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """A factory for servers with extra environment (started by the test)."""
    made: list[ServerProcess] = []

    def factory(name: str = "s", **env: str) -> ServerProcess:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        proc = ServerProcess(root, *dev_cert, extra_env={**database_env, **env})
        made.append(proc)
        return proc

    yield factory
    import asyncio

    for proc in made:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
    del asyncio
