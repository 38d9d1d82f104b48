"""Several server processes: two real Ruang processes sharing ``RUANG_SECRET_KEY``, one real
redis-server and one real PostgreSQL, behind a real nginx (deploy/nginx/ruang.conf), with two
Python peers (``ruang join``) in a call through the proxy.

Placement: the proxy decides (``least_conn``, as deployed). The counselor connects first; the
client's socket then goes to the process with fewer open connections, the other one. The test
checks where each landed on each process's own /metrics rather than pinning ports, so it runs
the deployment's configuration unchanged.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.peer_support import PeerProcess, client_peer, counselor_peer, needs_netns
from tests.proxy_support import needs_nginx
from tests.scaleout_support import Cluster, RedisServer, needs_redis
from tests.support import ServerProcess

pytestmark = [needs_netns, needs_nginx, needs_redis, pytest.mark.slow]
EMAIL = "counselor@example.org"
NAME = "Ana Wijaya"


@pytest.fixture
async def cluster(
    tmp_path: Path, dev_cert: tuple[Path, Path], postgres_url: str
) -> AsyncIterator[Cluster]:
    redis = RedisServer(tmp_path)
    await redis.start()
    made = Cluster(tmp_path, *dev_cert, redis, postgres_url)
    try:
        await made.start()
        made.servers[0].add_counselor(EMAIL)
        yield made
    finally:
        await made.stop()
        await redis.stop()


def room_link(cluster: Cluster) -> str:
    result = cluster.servers[0].cli("room", "add", EMAIL, "--origin", cluster.proxy.origin)
    assert result.returncode == 0, result.stderr
    cluster.links.append(result.stdout.strip())
    return cluster.links[-1]


def link_key(cluster: Cluster) -> str:
    return cluster.links[-1].split("#", 1)[1]


async def placed(cluster: Cluster, expect: list[int], timeout: float = 10.0) -> None:
    """Until each process holds ``expect[i]`` signaling sockets."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [await cluster.sockets(s) for s in cluster.servers]
        if counts == expect:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"sockets per process {counts}, expected {expect}")
        await asyncio.sleep(0.1)


async def start_call(
    cluster: Cluster, tmp: Path, seconds: int
) -> tuple[PeerProcess, PeerProcess, ServerProcess, ServerProcess]:
    """The counselor, then the client, through the proxy, each on its own process; returns
    the peers, the counselor's process and the client's."""
    link = room_link(cluster)
    server = cluster.servers[0]
    counselor, password = counselor_peer(
        server, link, EMAIL, tmp, "--seconds", str(seconds), "--say", "from the counselor"
    )
    client = client_peer(server, link, tmp, "--name", NAME, "--say", "from the client")
    await counselor.start(password)
    await counselor.wait_log("joined the room as counselor")
    counts = [await cluster.sockets(s) for s in cluster.servers]
    assert sorted(counts) == [0, 1], counts
    home = cluster.servers[counts.index(1)]
    other = cluster.servers[1 - counts.index(1)]
    await client.start()
    await placed(cluster, [1, 1])
    return counselor, client, home, other


def chats(peer: PeerProcess) -> list[str]:
    return [e["text"] for e in peer.named("chat")]


async def test_process_killed_then_redis_restarted_the_session_goes_on(
    cluster: Cluster, tmp_path: Path
) -> None:
    # 0. Counselor on one process, client on the other: knock, admit, the call, chat.
    counselor, client, home, other = await start_call(cluster, tmp_path, seconds=16)
    try:
        c = await counselor.wait_for(lambda e: e["event"] == "safety_code", timeout=40)
        k = await client.wait_for(lambda e: e["event"] == "safety_code", timeout=40)
        assert c["code"] == k["code"]
        await counselor.wait_for(lambda e: e["event"] == "connected", timeout=40)
        await client.wait_for(lambda e: e["event"] == "connected", timeout=40)
        await more_video(client)
        mark = len(client.events)
        # 1. The counselor's process dies at once (its chat may be on its way): no goodbye.
        assert home.proc is not None
        home.proc.send_signal(signal.SIGKILL)
        await counselor.wait_log("resumed the signaling connection", timeout=20)
        await placed_on(cluster, other, 2)
        await more_video(client)
        # 2. Redis restarts empty: the survivor says so on /healthz, closes its sockets with
        # GOING_AWAY, reconnects, and the peers' tokens rebuild the room.
        resumed = counselor.stderr().count("resumed the signaling connection")
        await cluster.redis.stop()
        await health_is(cluster, other, 503)
        assert (await cluster.health(other))[1]["redis"] == "error"
        await cluster.redis.start()
        await health_is(cluster, other, 200)
        deadline = time.monotonic() + 20
        while counselor.stderr().count("resumed the signaling connection") <= resumed:
            assert time.monotonic() < deadline, counselor.describe() + cluster.logs()
            await asyncio.sleep(0.1)
        await placed_on(cluster, other, 2)
        await more_video(client)
        assert await cluster.metric(other, "ruang_redis_up") == 1
        assert await cluster.metric(other, "ruang_redis_outages_total") == 1
        # 3. The counselor's --seconds run out: it ends the session; both exit normally.
        assert await counselor.wait(40) == 0, counselor.describe() + cluster.logs()
        assert await client.wait(20) == 0, client.describe()
    finally:
        await counselor.stop()
        await client.stop()
    assert client.named("ended")[-1]["reason"] == "ended"
    # Nothing lost, nothing twice: chat is acknowledged end to end and de-duplicated by id.
    assert chats(client) == ["from the counselor"], client.describe()
    assert chats(counselor) == ["from the client"], counselor.describe()
    # What the client saw meanwhile: the call going on, no error, no second admission.
    after = {e["event"] for e in client.events[mark:]}
    # (no new safety code, no reconnection: the peer connection was never rebuilt)
    assert after <= {"media", "mode", "chat", "ended"}, client.describe()
    assert not client.named("error") and len(client.named("admitted")) == 1
    for server in cluster.servers:  # the processes logged counts and kinds, never content
        for secret in (NAME, "from the client", "from the counselor", link_key(cluster)):
            assert secret not in server.log()


async def more_video(peer: PeerProcess) -> None:
    frames = peer.frames("video")
    await peer.wait_for(
        lambda e: e["event"] == "media" and e["kind"] == "video" and e["frames"] > frames,
        timeout=20,
    )


async def health_is(cluster: Cluster, server: ServerProcess, status: int) -> None:
    deadline = time.monotonic() + 15
    while (await cluster.health(server))[0] != status:
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.1)


async def placed_on(cluster: Cluster, server: ServerProcess, count: int) -> None:
    deadline = time.monotonic() + 15
    while await cluster.sockets(server) != count:
        if time.monotonic() > deadline:
            raise AssertionError(f"not {count} sockets on {server.tmp.name}:\n{cluster.logs()}")
        await asyncio.sleep(0.1)
