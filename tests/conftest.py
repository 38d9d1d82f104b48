from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.tls import ensure_dev_certificate
from tests.support import ServerProcess


@pytest.fixture(scope="session")
def dev_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_dev_certificate(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def server(tmp_path: Path, dev_cert: tuple[Path, Path]) -> AsyncIterator[ServerProcess]:
    proc = ServerProcess(tmp_path, *dev_cert)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


@pytest.fixture
def make_server(tmp_path: Path, dev_cert: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """A factory for servers with extra environment (started by the test)."""
    made: list[ServerProcess] = []

    def factory(name: str = "s", **env: str) -> ServerProcess:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        proc = ServerProcess(root, *dev_cert, extra_env=env)
        made.append(proc)
        return proc

    yield factory
    import asyncio

    for proc in made:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
    del asyncio
