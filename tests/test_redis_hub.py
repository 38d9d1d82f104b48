"""The Redis hub: two ``RedisHub`` instances (as two server processes would hold) on one real
redis-server. What one process does is seen, delivered and enforced on the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from signaling.errors import (
    CloseCode,
    Departed,
    HoldFull,
    HubClosed,
    RoomFull,
    UnknownPeer,
    WaitingRoomFull,
)
from signaling.hub import Connection
from signaling.limits import RoomLimits
from signaling.messages import (
    Admitted,
    GoneReason,
    Joined,
    Message,
    Peer,
    PeerState,
    Relay,
    Relayed,
    Role,
    Token,
)
from signaling.redis import RedisHub
from tests.scaleout_support import RedisServer, needs_redis, running_redis
from tests.signaling_support import KEY, Generations, RecordingSink, request
from tests.support import ServerProcess, free_port

pytestmark = needs_redis
ROOM = "r" * 22


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    async with running_redis(tmp_path) as server:
        yield server


class Pair:
    """Two hubs on one Redis, as two processes; ``gens`` is the database's counter."""

    def __init__(self, redis: RedisServer, limits: RoomLimits) -> None:
        self.redis = redis
        self.limits = limits
        self.gens = Generations()
        self.hubs: list[RedisHub] = []

    async def hub(self, node_ttl: float = 5.0) -> RedisHub:
        client = aioredis.Redis.from_url(self.redis.url, socket_timeout=2, socket_connect_timeout=2)
        hub = RedisHub(
            client=client,
            token_key=KEY,
            bump_generation=self.gens.bump,
            limits=self.limits,
            heartbeat=0.2,
            node_ttl=node_ttl,
        )
        await hub.start()
        self.hubs.append(hub)
        return hub

    async def close(self) -> None:
        for hub in self.hubs:
            await hub.close()


@pytest.fixture
async def make_pair(redis_server: RedisServer) -> AsyncIterator[Callable[..., Pair]]:
    pairs: list[Pair] = []

    def factory(**limits: float) -> Pair:
        pair = Pair(redis_server, RoomLimits(**limits))  # type: ignore[arg-type]
        pairs.append(pair)
        return pair

    yield factory
    for pair in pairs:
        await pair.close()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


def of(sink: RecordingSink, kind: type[Message]) -> list[Message]:
    return [m for m in sink.messages() if isinstance(m, kind)]


async def got(sink: RecordingSink, kind: type[Message], count: int = 1) -> list[Message]:
    await until(lambda: len(of(sink, kind)) >= count)
    return of(sink, kind)


def joined(sink: RecordingSink) -> Joined:
    msg = sink.messages()[0]
    assert isinstance(msg, Joined)
    return msg


def env(to: str, n: int) -> Relay:
    return Relay(to=to, epoch="e" * 8, box="b" * 8 + f"{n:06d}")


async def admitted_call(
    pair: Pair,
) -> tuple[RedisHub, RedisHub, RecordingSink, RecordingSink, Connection, Connection]:
    """Counselor on hub A, client on hub B, admitted."""
    a, b = await pair.hub(), await pair.hub()
    cs, ks = RecordingSink(), RecordingSink()
    counselor = await a.join(request(ROOM, Role.COUNSELOR), cs)
    client = await b.join(request(ROOM, Role.CLIENT), ks)
    await got(cs, Peer)
    await a.admit(counselor, client.participant_id)
    await got(ks, Admitted)
    return a, b, cs, ks, counselor, client


async def test_knock_admit_and_relay_across_processes(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair()
    a, b = await pair.hub(), await pair.hub()
    seen_a: list[tuple[str, int]] = []
    seen_b: list[tuple[str, int]] = []
    a.add_waiting_observer(lambda rid, n: seen_a.append((rid, n)))
    b.add_waiting_observer(lambda rid, n: seen_b.append((rid, n)))
    cs, ks = RecordingSink(), RecordingSink()
    counselor = await a.join(request(ROOM, Role.COUNSELOR), cs)
    client = await b.join(request(ROOM, Role.CLIENT), ks)
    assert joined(ks).state is PeerState.WAITING
    [knock] = await got(cs, Peer)
    assert isinstance(knock, Peer) and knock.id == client.participant_id
    assert knock.state is PeerState.WAITING and knock.connected
    assert await a.waiting_counts([ROOM, "x" * 22]) == {ROOM: 1, "x" * 22: 0}
    await until(lambda: seen_a == [(ROOM, 1)] and seen_b == [(ROOM, 1)])

    await a.admit(counselor, client.participant_id)
    await got(ks, Admitted)
    [token] = await got(ks, Token)
    assert isinstance(token, Token)
    await until(lambda: seen_a[-1] == (ROOM, 0) and seen_b[-1] == (ROOM, 0))
    assert await b.waiting_counts([ROOM]) == {ROOM: 0}

    await b.relay(client, env("counselor", 1))
    await a.relay(counselor, env(client.participant_id, 2))
    [up] = await got(cs, Relayed)
    [down] = await got(ks, Relayed)
    assert isinstance(up, Relayed) and up.sender == client.participant_id
    assert isinstance(down, Relayed) and down.sender == "counselor"
    assert a.participant_count() == 1 and b.participant_count() == 1


async def test_envelopes_from_one_sender_arrive_in_order(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    _, b, cs, _, _, client = await admitted_call(pair)
    n = 300
    for i in range(n):
        await b.relay(client, env("counselor", i))
    relayed = await got(cs, Relayed, n)
    order = [int(m.box[-6:]) for m in relayed if isinstance(m, Relayed)]
    assert order == list(range(n))


async def test_resume_on_the_other_process_gets_held_envelopes_in_order(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    a, b, cs, ks, counselor, client = await admitted_call(pair)
    token = of(ks, Token)[-1]
    assert isinstance(token, Token)
    await b.disconnect(client)
    await until(lambda: any(isinstance(m, Peer) and not m.connected for m in cs.messages()))
    for i in range(5):
        await a.relay(counselor, env(client.participant_id, i))
    ks2 = RecordingSink()
    conn = await a.join(request(ROOM, Role.CLIENT, resume=token.resume), ks2)  # now on A
    j = joined(ks2)
    assert j.resumed and j.id == client.participant_id and j.state is PeerState.ADMITTED
    held = [int(m.box[-6:]) for m in ks2.messages() if isinstance(m, Relayed)]
    assert held == [0, 1, 2, 3, 4]
    await a.relay(counselor, env(client.participant_id, 9))
    await until(lambda: len(of(ks2, Relayed)) == 6)
    with pytest.raises(Departed):  # the old connection lost its place
        await b.relay(client, env("counselor", 0))
    await a.relay(conn, env("counselor", 7))
    await until(
        lambda: any(isinstance(m, Relayed) and m.box.endswith("000007") for m in cs.messages())
    )


async def test_presence_expiry_and_hold_bound(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(resume_seconds=1.0, resume_held=3)
    a, b, cs, _, counselor, client = await admitted_call(pair)
    await b.disconnect(client)
    for i in range(3):
        await a.relay(counselor, env(client.participant_id, i))
    with pytest.raises(HoldFull):
        await a.relay(counselor, env(client.participant_id, 3))

    def gone() -> bool:
        return any(
            isinstance(m, Peer) and m.state is PeerState.GONE and m.reason is GoneReason.EXPIRED
            for m in cs.messages()
        )

    await until(gone, timeout=6)
    with pytest.raises(UnknownPeer):
        await a.relay(counselor, env(client.participant_id, 4))
    raw = aioredis.Redis.from_url(pair.redis.url)
    try:  # nothing held is left behind in Redis
        assert await raw.keys("ruang:held*") == []
    finally:
        await raw.aclose()


async def test_a_dead_process_participants_go_away_then_expire(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair(resume_seconds=1.0)
    a = await pair.hub(node_ttl=0.6)
    b = await pair.hub(node_ttl=0.6)
    cs, ks = RecordingSink(), RecordingSink()
    await a.join(request(ROOM, Role.COUNSELOR), cs)
    client = await b.join(request(ROOM, Role.CLIENT), ks)
    await got(cs, Peer)
    b.node.halt()  # B dies without a word: its heartbeat ages, nobody closes anything

    def saw(pred: Callable[[Peer], bool]) -> bool:
        return any(isinstance(m, Peer) and pred(m) for m in cs.messages())

    await until(lambda: saw(lambda m: m.id == client.participant_id and not m.connected), 5)
    await until(lambda: saw(lambda m: m.state is PeerState.GONE), 5)
    assert await a.waiting_counts([ROOM]) == {ROOM: 0}


async def test_room_limits_are_shared(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(max_waiting=1, capacity=1)
    a, b = await pair.hub(), await pair.hub()
    cs = RecordingSink()
    counselor = await a.join(request(ROOM, Role.COUNSELOR), cs)
    first = await a.join(request(ROOM, Role.CLIENT), RecordingSink())
    with pytest.raises(WaitingRoomFull):
        await b.join(request(ROOM, Role.CLIENT), RecordingSink())
    await a.admit(counselor, first.participant_id)
    second = await b.join(request(ROOM, Role.CLIENT), RecordingSink())
    with pytest.raises(RoomFull):
        await a.admit(counselor, second.participant_id)


async def test_close_room_and_takeover_reach_every_process(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    a, b, cs, ks, _, client = await admitted_call(pair)
    cs2 = RecordingSink()
    await b.join(request(ROOM, Role.COUNSELOR), cs2)  # the counselor opens the room on B
    await until(lambda: cs.code == CloseCode.REPLACED)
    await a.close_room(ROOM)  # e.g. "Close room" or "New link" handled by process A
    await until(lambda: ks.code == CloseCode.UNKNOWN_ROOM and cs2.code == CloseCode.UNKNOWN_ROOM)
    with pytest.raises(Departed):
        await b.relay(client, env("counselor", 0))
    assert await a.waiting_counts([ROOM]) == {ROOM: 0}


async def test_removed_client_token_is_dead_on_every_process(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    a, b, _, ks, counselor, client = await admitted_call(pair)
    token = of(ks, Token)[-1]
    assert isinstance(token, Token)
    await a.remove(counselor, client.participant_id)
    await until(lambda: ks.code == CloseCode.REMOVED)
    again = RecordingSink()
    await b.join(request(ROOM, Role.CLIENT, resume=token.resume, gen=1), again)
    j = joined(again)
    assert not j.resumed and j.resume_error == "revoked" and j.state is PeerState.WAITING


async def test_redis_restart_closes_going_away_and_tokens_rebuild_the_room(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    a, b, cs, ks, _, client = await admitted_call(pair)
    ctoken = [joined(cs).resume] + [m.resume for m in of(cs, Token) if isinstance(m, Token)]
    ktoken = [m.resume for m in of(ks, Token) if isinstance(m, Token)]
    await pair.redis.stop()
    await until(lambda: cs.code == CloseCode.GOING_AWAY and ks.code == CloseCode.GOING_AWAY, 10)
    with pytest.raises(HubClosed):
        await a.join(request(ROOM, Role.CLIENT), RecordingSink())
    await pair.redis.start()
    await until(lambda: a.available and b.available, 10)
    cs2, ks2 = RecordingSink(), RecordingSink()
    c2 = await b.join(request(ROOM, Role.COUNSELOR, resume=ctoken[-1]), cs2)
    k2 = await a.join(request(ROOM, Role.CLIENT, resume=ktoken[-1]), ks2)
    assert joined(cs2).resumed and joined(ks2).resumed
    assert joined(ks2).state is PeerState.ADMITTED and k2.participant_id == client.participant_id
    await a.relay(k2, env("counselor", 1))
    await b.relay(c2, env(client.participant_id, 2))
    await got(cs2, Relayed)
    await got(ks2, Relayed)
    assert a.outages == 1 and b.outages == 1


async def test_end_session_on_one_process_ends_the_client_on_the_other(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    a, b, cs, ks, counselor, client = await admitted_call(pair)
    await a.end_session(counselor)
    await until(lambda: ks.code == CloseCode.SESSION_ENDED)
    assert pair.gens.bumps == 1
    [fresh] = [m for m in cs.messages() if isinstance(m, Token)][-1:]
    assert isinstance(fresh, Token)  # the counselor's token names the new generation
    with pytest.raises(Departed):
        await b.relay(client, env("counselor", 0))


async def test_redis_unavailable_at_start_is_a_clear_error(
    tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    server = ServerProcess(tmp_path, *dev_cert, extra_env={"RUANG_REDIS_URL": closed})
    with pytest.raises(RuntimeError, match="exited early"):
        await server.start()
    assert "ruang: RUANG_REDIS_URL: cannot reach Redis (ConnectionError)" in server.log()
    assert "Traceback" not in server.log()


async def test_per_ip_connection_cap_counts_every_process(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    a, b = await pair.hub(node_ttl=0.6), await pair.hub(node_ttl=0.6)
    ip = "192.0.2.7"
    assert await a.acquire_ip(ip, 3) and await b.acquire_ip(ip, 3)
    assert await b.acquire_ip(ip, 3)
    assert not await a.acquire_ip(ip, 3)
    assert await a.acquire_ip("192.0.2.8", 3)  # another address has its own count
    await b.release_ip(ip)
    assert await a.acquire_ip(ip, 3)
    assert not await b.acquire_ip(ip, 3)
    # B dies: once its heartbeat is stale and A reaps it, B's sockets no longer count.
    b.node.halt()
    deadline = time.monotonic() + 5
    while not await a.acquire_ip(ip, 3):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_tokens_refresh_and_a_process_that_stops_lets_its_participants_go_away(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair(resume_seconds=1.5)
    a, b, cs, ks, _, client = await admitted_call(pair)
    before = len(of(ks, Token))
    await until(lambda: len(of(ks, Token)) >= before + 2, timeout=5)  # every 0.5 s
    await b.close()  # a graceful stop: the client's socket gets 1001 and its slot is kept
    assert ks.code == CloseCode.GOING_AWAY

    def away() -> bool:
        return any(
            isinstance(m, Peer) and m.id == client.participant_id and not m.connected
            for m in cs.messages()
        )

    await until(away, timeout=2)  # at once, not after the heartbeat expires
    token = of(ks, Token)[-1]
    assert isinstance(token, Token)
    again = RecordingSink()
    await a.join(request(ROOM, Role.CLIENT, resume=token.resume), again)
    assert joined(again).resumed and joined(again).state is PeerState.ADMITTED
