"""TURN credentials (coturn's REST scheme): who gets which credential from the real server, the
pre-call credential's rate limit under a burst, a real coturn refusing expired and forged
credentials, and a relay-only call between two Python peers through it.

The coturn tests run only inside the test network namespace (``scripts/run-tests.sh``) with
Debian's ``turnserver`` installed; they start coturn themselves on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol, create_turn_endpoint

from server.config import Config, ConfigError
from server.ratelimit import RateLimit
from server.turn import answer, ice_servers, make_credential, password_for
from signaling import tokens
from signaling.messages import Role
from signaling.peer.turn import parse_ice_servers, token_admitted
from tests.peer_support import client_peer, counselor_peer, make_room
from tests.support import ServerProcess, api_token, login
from tests.turn_support import Coturn, namespace_address, needs_coturn, readme_peer_rules

EMAIL = "konselor@example.org"
TURN_SECRET = "s3cret-for-tests-only-0123456789"
TURN_URLS = (
    "turn:turn.example.test:3478?transport=udp,"
    "turns:turn.example.test:5349?transport=tcp,"
    "stun:stun.example.test:3478"
)
USERNAME_RE = re.compile(r"(\d{10}):([A-Za-z0-9_-]{12})")
Json = dict[str, Any]


# --- the scheme, without a server ---------------------------------------------------------------


def test_credentials_follow_coturns_rest_scheme() -> None:
    cred = make_credential("abc", 600, now=1_700_000_000)
    match = USERNAME_RE.fullmatch(cred.username)
    assert match and int(match.group(1)) == 1_700_000_600 == cred.expires
    digest = hmac.new(b"abc", cred.username.encode(), hashlib.sha1).digest()
    assert cred.credential == base64.b64encode(digest).decode()
    # A pinned value, computed independently (coturn's README: base64(hmac-sha1(secret, user))).
    assert (
        password_for("north", "1433895918:alice")
        == base64.b64encode(hmac.new(b"north", b"1433895918:alice", hashlib.sha1).digest()).decode()
    )
    assert make_credential("abc", 60).username != make_credential("abc", 60).username

    urls = tuple(TURN_URLS.split(","))
    servers = ice_servers(urls, cred)
    assert servers == [
        {"urls": list(urls[:2]), "username": cred.username, "credential": cred.credential},
        {"urls": [urls[2]]},
    ]
    assert answer(Config(), 600) == {"iceServers": []}
    stun_only = answer(Config(turn_urls=("stun:stun.example.test",)), 600)
    assert stun_only == {"iceServers": [{"urls": ["stun:stun.example.test"]}]}
    full = answer(Config(turn_urls=urls, turn_secret=TURN_SECRET), 60)
    assert full["ttl"] == 60 and abs(int(full["expires"]) - time.time() - 60) < 5  # type: ignore[call-overload]
    # What the Python peer makes of it.
    fetched = parse_ice_servers(json.loads(json.dumps(full)))
    assert fetched.ttl == 60 and [s.urls for s in fetched.servers] == [urls[:2], urls[2:]]


def test_turn_settings_are_checked() -> None:
    ok = Config.from_env({"RUANG_TURN_URLS": TURN_URLS, "RUANG_TURN_SECRET": TURN_SECRET})
    assert ok.turn_urls == tuple(TURN_URLS.split(",")) and ok.limits.turn_ttl_seconds == 600
    for env, words in (
        ({"RUANG_TURN_URLS": "turn:x.test"}, "RUANG_TURN_SECRET"),
        ({"RUANG_TURN_URLS": "turn:x.test", "RUANG_TURN_SECRET": "short"}, "at least"),
        ({"RUANG_TURN_URLS": "http://x.test", "RUANG_TURN_SECRET": TURN_SECRET}, "must start"),
        ({"RUANG_ECHO_SECONDS": "1"}, "RUANG_ECHO_SECONDS"),
        ({"RUANG_TURN_TTL_SECONDS": "ten"}, "RUANG_TURN_TTL_SECONDS"),
    ):
        with pytest.raises(ConfigError, match=words):
            Config.from_env(env)
    assert Config.from_env({"RUANG_TURN_URLS": "stun:s.test"}).turn_urls == ("stun:s.test",)
    limits = Config.from_env(
        {"RUANG_ECHO_MAX": "2", "RUANG_PRECHECK_TURN_PER_IP": "7", "RUANG_ECHO_PER_IP": "3"}
    ).limits
    assert (limits.echo_max, limits.precheck_turn_per_ip, limits.echo_per_ip) == (2, 7, 3)


def test_rate_limit_is_a_sliding_window() -> None:
    now = [0.0]
    limit = RateLimit(3, 60, clock=lambda: now[0], max_keys=2)
    assert [limit.take("a") for _ in range(4)] == [0, 0, 0, 60]
    now[0] = 30
    assert limit.take("a") == 30 and limit.take("b") == 0
    now[0] = 60.5
    assert limit.take("a") == 0  # the first three have left the window
    limit.take("c")  # a third key: the oldest is forgotten (bounded memory)
    assert len(limit._events) == 2


def test_the_peer_reads_the_admitted_flag_of_its_token() -> None:
    key = b"k" * 32
    claims = tokens.ResumeClaims("r" * 22, "p", Role.CLIENT, False, 0, 2_000_000_000)
    assert not token_admitted(tokens.issue(key, claims))
    admitted = tokens.ResumeClaims("r" * 22, "p", Role.CLIENT, True, 3, 2_000_000_000)
    assert token_admitted(tokens.issue(key, admitted))
    assert not token_admitted("garbage") and not token_admitted(None)


# --- the endpoints on the real server -----------------------------------------------------------


async def _room(http: aiohttp.ClientSession) -> tuple[str, str]:
    """A new room of the logged-in counselor, and the session's CSRF token."""
    csrf = await api_token(http)
    async with http.post("/api/rooms", json={"label": "T."}, headers={"X-CSRF-Token": csrf}) as r:
        assert r.status == 201
        return str((await r.json())["id"]), csrf


async def _recv(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> Json:
    """The next message of type ``kind`` (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
        data: Json = json.loads(msg.data)
        if data["type"] == kind:
            return data


async def _join(
    http: aiohttp.ClientSession, server: ServerProcess, room: str, role: str
) -> tuple[aiohttp.ClientWebSocketResponse, Json]:
    ws = await http.ws_connect("/ws", headers={"Origin": server.origin})
    await ws.send_json({"type": "join", "v": 1, "room": room, "role": role})
    return ws, await _recv(ws, "joined")


async def _turn(
    http: aiohttp.ClientSession, *, bearer: str | None = None, csrf: str | None = None
) -> tuple[int, Json]:
    headers = {}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    async with http.post("/api/turn", headers=headers) as r:
        return r.status, await r.json()


def _check_credential(body: Json, ttl: int, secret: str) -> str:
    assert body["ttl"] == ttl and abs(body["expires"] - time.time() - ttl) < 10, body
    turn = body["iceServers"][0]
    match = USERNAME_RE.fullmatch(turn["username"])
    assert match and int(match.group(1)) == body["expires"], turn
    assert turn["credential"] == password_for(secret, turn["username"])
    return str(turn["username"])


async def test_without_turn_the_endpoints_answer_an_empty_list(server: ServerProcess) -> None:
    server.add_counselor(EMAIL)
    async with server.client() as http, server.client() as anon:
        status, body = await _turn(anon)
        assert (status, body["error"]) == (401, "login")
        await login(http, EMAIL)
        _, csrf = await _room(http)
        assert await _turn(http, csrf=csrf) == (200, {"iceServers": []})
        async with anon.post("/api/precheck/turn") as r:
            assert (r.status, await r.json()) == (200, {"iceServers": []})


async def test_call_credentials_go_only_to_the_counselor_and_admitted_clients(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(RUANG_TURN_URLS=TURN_URLS, RUANG_TURN_SECRET=TURN_SECRET)
    server.add_counselor(EMAIL)
    await server.start()
    issued: list[str] = []
    try:
        async with server.client() as http, server.client() as anon:
            status, body = await _turn(anon)
            assert (status, body["error"]) == (401, "login")
            await login(http, EMAIL)
            room, csrf = await _room(http)

            # The counselor: session cookie and the CSRF token, from our own origin only.
            status, body = await _turn(http)
            assert (status, body["error"]) == (403, "csrf")
            status, body = await _turn(http, csrf=csrf)
            assert status == 200
            issued.append(_check_credential(body, 600, TURN_SECRET))
            assert body["iceServers"][0]["urls"] == TURN_URLS.split(",")[:2]
            assert body["iceServers"][1] == {"urls": [TURN_URLS.split(",")[2]]}
            headers = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
            async with http.post("/api/turn", headers=headers) as r:
                assert r.status == 403

            # A waiting client: no call credential, but the pre-call one.
            k, joined = await _join(anon, server, room, "client")
            assert joined["state"] == "waiting"
            waiting_token = joined["resume"]
            status, body = await _turn(anon, bearer=waiting_token)
            assert (status, body["error"]) == (403, "not_admitted"), body
            assert "/api/precheck/turn" in body["message"]
            async with anon.post("/api/precheck/turn") as r:
                assert r.status == 200
                issued.append(_check_credential(await r.json(), 60, TURN_SECRET))
            for bad in (
                "garbage",
                waiting_token[:-2] + ("AA" if waiting_token[-2:] != "AA" else "BB"),
            ):
                status, body = await _turn(anon, bearer=bad)
                assert (status, body["error"]) == (401, "token"), body
            async with anon.post("/api/turn", headers={"Authorization": "Basic eDp5"}) as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"

            # Admitted: its newest token (the one that says so) gets a call credential.
            c, _ = await _join(http, server, room, "counselor")
            await c.send_json({"type": "admit", "id": joined["id"]})
            await _recv(k, "admitted")
            token = (await _recv(k, "token"))["resume"]
            status, body = await _turn(anon, bearer=token)
            assert status == 200, body
            issued.append(_check_credential(body, 600, TURN_SECRET))
            status, body = await _turn(anon, bearer=waiting_token)
            assert (status, body["error"]) == (403, "not_admitted")

            # Removed: the room's generation moves on and the token is dead at once.
            await c.send_json({"type": "remove", "id": joined["id"]})
            await _recv(c, "token")  # sent after the generation moved on
            status, body = await _turn(anon, bearer=token)
            assert (status, body["error"]) == (403, "revoked"), body
            await c.close()
            await k.close()
        assert len(set(issued)) == 3
    finally:
        await server.stop()
    log = server.log()
    for secret in (*issued, *(password_for(TURN_SECRET, u) for u in issued), TURN_SECRET):
        assert secret not in log
    assert token not in log and waiting_token not in log


async def _next(ws: aiohttp.ClientWebSocketResponse) -> Json:
    msg = await ws.receive(timeout=5)
    assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
    data: Json = json.loads(msg.data)
    return data


def _pushed(msg: Json) -> str:
    """A ``call_servers`` message: the /api/turn body, with a valid credential; its username."""
    assert msg["type"] == "call_servers", msg
    body = {k: v for k, v in msg.items() if k != "type"}
    assert body["iceServers"][0]["urls"] == TURN_URLS.split(",")[:2]
    assert body["iceServers"][1] == {"urls": [TURN_URLS.split(",")[2]]}
    return _check_credential(body, 600, TURN_SECRET)


async def test_call_credentials_are_pushed_when_a_call_may_begin(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Nobody fetches credentials on the call-setup path: the counselor gets them when it joins
    and when it admits, a client when it is admitted and when it comes back admitted; a
    waiting client never."""
    server = make_server(RUANG_TURN_URLS=TURN_URLS, RUANG_TURN_SECRET=TURN_SECRET)
    server.add_counselor(EMAIL)
    await server.start()
    issued: list[str] = []
    try:
        async with server.client() as http, server.client() as anon:
            await login(http, EMAIL)
            room, _ = await _room(http)
            c, _ = await _join(http, server, room, "counselor")
            issued.append(_pushed(await _next(c)))
            k, joined = await _join(anon, server, room, "client")
            await k.send_json({"type": "ping"})
            assert await _next(k) == {"type": "pong"}, "a waiting client gets no credential"
            assert (await _next(c))["state"] == "waiting"
            await c.send_json({"type": "admit", "id": joined["id"]})
            assert (await _next(k))["type"] == "admitted"
            issued.append(_pushed(await _next(k)))
            token = (await _next(k))["resume"]
            assert token_admitted(token)
            assert (await _next(c))["state"] == "admitted"
            issued.append(_pushed(await _next(c)))
            # The client's connection drops; it comes back admitted: credentials again.
            await k.close()
            assert (await _next(c))["connected"] is False
            k = await anon.ws_connect("/ws", headers={"Origin": server.origin})
            await k.send_json(
                {"type": "join", "v": 1, "room": room, "role": "client", "resume": token}
            )
            back = await _next(k)
            assert back["type"] == "joined" and back["resumed"] and back["state"] == "admitted"
            issued.append(_pushed(await _next(k)))
            await k.close()
            await c.close()
        assert len(set(issued)) == len(issued) == 4, "a fresh credential each time"
        async with server.client() as http, http.get("/metrics") as r:
            text = await r.text()
        assert 'ruang_turn_credentials_total{kind="pushed"} 4' in text
    finally:
        await server.stop()
    log = server.log()
    for username in issued:
        assert username not in log and password_for(TURN_SECRET, username) not in log


async def test_precheck_credential_limit_holds_under_a_burst(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(
        RUANG_TURN_URLS=TURN_URLS, RUANG_TURN_SECRET=TURN_SECRET, RUANG_PRECHECK_TURN_PER_IP="5"
    )
    await server.start()
    try:
        async with server.client() as anon:

            async def one() -> tuple[int, Json, str | None]:
                async with anon.post("/api/precheck/turn") as r:
                    return r.status, await r.json(), r.headers.get("Retry-After")

            results = await asyncio.gather(*(one() for _ in range(30)))
            ok = [b for s, b, _ in results if s == 200]
            limited = [(b, ra) for s, b, ra in results if s == 429]
            assert len(ok) == 5 and len(limited) == 25, [s for s, _, _ in results]
            for body, retry_after in limited:
                assert body["error"] == "rate_limited" and "try again" in body["message"]
                assert retry_after is not None and 0 < int(retry_after) <= 600
            for body in ok:
                _check_credential(body, 60, TURN_SECRET)
            async with anon.get("/healthz") as r:
                assert r.status == 200
            async with anon.get("/metrics") as r:
                text = await r.text()
            assert 'ruang_turn_credentials_total{kind="precheck"} 5' in text
            assert 'ruang_turn_refused_total{reason="rate_limited"} 25' in text
    finally:
        await server.stop()


# --- a real coturn ------------------------------------------------------------------------------


async def _allocate(coturn: Coturn, username: str, password: str) -> tuple[str, int]:
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=(coturn.host, coturn.port),
            username=username,
            password=password,
            lifetime=60,
        ),
        10,
    )
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


async def _refused(coturn: Coturn, username: str, password: str) -> int:
    with pytest.raises(stun.TransactionFailed) as failed:
        await _allocate(coturn, username, password)
    code: int = failed.value.response.attributes["ERROR-CODE"][0]
    return code


@needs_coturn
async def test_coturn_takes_issued_credentials_and_refuses_expired_and_forged_ones(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    coturn = Coturn(tmp_path)
    await coturn.start()
    server = make_server(RUANG_TURN_URLS=coturn.url, RUANG_TURN_SECRET=coturn.secret)
    try:
        await server.start()
        async with server.client() as anon, anon.post("/api/precheck/turn") as r:
            body = await r.json()
        entry = body["iceServers"][0]
        assert entry["urls"] == [coturn.url]
        relayed = await _allocate(coturn, entry["username"], entry["credential"])
        assert relayed[0] == coturn.host

        # Expired a minute ago, correctly signed.
        expired = make_credential(coturn.secret, -60)
        assert await _refused(coturn, expired.username, expired.credential) == 401
        # Signed with another secret.
        fresh = make_credential(coturn.secret, 600)
        assert (
            await _refused(coturn, fresh.username, password_for("not-the-secret", fresh.username))
            == 401
        )
        # A good credential with its expiry pushed back (the signature no longer matches).
        expiry, ident = entry["username"].split(":")
        stretched = f"{int(expiry) + 86400}:{ident}"
        assert await _refused(coturn, stretched, entry["credential"]) == 401
    finally:
        await server.stop()
        coturn.stop()
    assert coturn.proc is not None and coturn.proc.returncode is not None


def _relayed(turn_log: str) -> dict[str, int]:
    """Per username, the most packets one of its allocations got from its peers (coturn's
    "peer usage" line when it deletes an allocation); only users with 100 or more."""
    relayed: dict[str, int] = {}
    pattern = r"peer usage: realm=<[^>]*>, username=<([^>]+)>, rp=(\d+)"
    for user, rp in re.findall(pattern, turn_log):
        relayed[user] = max(relayed.get(user, 0), int(rp))
    return {user: rp for user, rp in relayed.items() if rp >= 100}


@needs_coturn
async def test_relay_only_call_between_two_python_peers(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    coturn = Coturn(tmp_path)
    await coturn.start()
    server = make_server(RUANG_TURN_URLS=coturn.url, RUANG_TURN_SECRET=coturn.secret)
    co = cl = None
    try:
        await server.start()
        server.add_counselor(EMAIL)
        link = make_room(server, EMAIL)
        co, password = counselor_peer(
            server, link, EMAIL, tmp_path, "--relay-only", "--seconds", "4", "--say", "halo"
        )
        cl = client_peer(server, link, tmp_path, "--relay-only", "--say", "terima kasih")
        await co.start(password)
        await cl.start()
        assert await co.wait(60) == 0, co.describe()
        assert await cl.wait(20) == 0, cl.describe()
        # coturn writes an allocation's usage when it deletes it, a moment after the peers left.
        turn_log = await coturn.wait_log(lambda text: len(_relayed(text)) >= 2)
    finally:
        for peer in (co, cl):
            if peer is not None:
                await peer.stop()
        await server.stop()
        coturn.stop()
    for peer, heard in ((co, "terima kasih"), (cl, "halo")):
        assert [e["path"] for e in peer.named("connected")] == ["relayed"], peer.describe()
        assert peer.frames("video") >= 30 and peer.frames("audio") >= 30, peer.describe()
        assert heard in [e["text"] for e in peer.named("chat")], peer.describe()
        assert not peer.named("error"), peer.describe()
    # coturn saw both peers allocate with credentials the server issued, and relayed the call:
    # per username, packets from the relay's peers (the other side's media).
    users = set(re.findall(r"username=<(\d+:[A-Za-z0-9_-]{12})>", turn_log))
    assert len(users) == 2, turn_log[-3000:]
    relayed = _relayed(turn_log)
    assert set(relayed) == users and min(relayed.values()) >= 100, turn_log[-3000:]
    # Neither the peers nor the server log a credential.
    logs = server.log() + co.stderr() + cl.stderr()
    for user in users:
        assert user not in logs and password_for(coturn.secret, user) not in logs


@needs_coturn
async def test_the_readme_coturn_config_refuses_private_and_loopback_peers(tmp_path: Path) -> None:
    """The README's peer rules, in a real coturn without allow-loopback-peers: a relay user
    cannot open a permission towards this machine or a private network."""
    coturn = Coturn(
        tmp_path, host=namespace_address(), allow_loopback=False, extra=readme_peer_rules()
    )
    await coturn.start()
    loop = asyncio.get_running_loop()
    cred = make_credential(coturn.secret, 60)
    transport, client = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            (coturn.host, coturn.port),
            username=cred.username,
            password=cred.credential,
            lifetime=60,
            channel_refresh_time=300,
        ),
        remote_addr=(coturn.host, coturn.port),
    )
    try:
        await asyncio.wait_for(client.connect(), 10)
        channel = 0x4000
        for peer in (
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.1",
            "198.18.0.2",
            "224.0.0.1",
        ):
            with pytest.raises(stun.TransactionFailed) as failed:
                await asyncio.wait_for(client.channel_bind(channel, (peer, 9)), 10)
            assert failed.value.response.attributes["ERROR-CODE"][0] == 403, peer
            channel += 1
        # A public (here: documentation) address is allowed; binding a channel sends it nothing.
        await asyncio.wait_for(client.channel_bind(channel, ("192.0.2.1", 9)), 10)
    finally:
        if client.refresh_task is not None:
            client.refresh_task.cancel()
        transport.close()
        coturn.stop()


# --- the Python peer's side ---------------------------------------------------------------------


def test_relay_only_is_a_join_option() -> None:
    from server.cli import build_parser
    from signaling.peer.cli import config_from_args
    from signaling.peer.errors import UsageError

    link = "https://ruang.example/r/" + "A" * 22 + "#" + "A" * 43
    args = build_parser().parse_args(["join", link, "--relay-only"])
    assert config_from_args(args).relay_only
    assert not config_from_args(build_parser().parse_args(["join", link])).relay_only
    with pytest.raises(UsageError, match="text-only"):
        config_from_args(build_parser().parse_args(["join", link, "--relay-only", "--text-only"]))


async def test_the_peer_fetches_ahead_waits_for_a_fetch_and_refreshes() -> None:
    from signaling.peer.config import IceServer
    from signaling.peer.turn import Fetched, IceCredentials, TurnFetchError

    static = (IceServer(("stun:static.test",)),)
    calls: list[int] = []
    gate = asyncio.Event()
    answers: list[Fetched | Exception | None] = [
        None,  # not yet possible (a client not admitted yet)
        Fetched((IceServer(("turn:a.test",), "u1", "p1"),), ttl=600),
        TurnFetchError("the server refused call credentials (403 revoked)"),
        Fetched((IceServer(("turn:a.test",), "u2", "p2"),), ttl=600),
    ]

    async def fetch() -> Fetched | None:
        calls.append(1)
        await gate.wait()
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    ice = IceCredentials(static, fetch)
    gate.set()
    assert await ice.servers() == static  # the fetch said "not yet"
    ice.prefetch()
    ice.prefetch()  # one fetch in flight, not two
    assert await ice.servers() == (IceServer(("turn:a.test",), "u1", "p1"), *static)
    assert len(calls) == 2
    assert (await ice.servers())[0].username == "u1"  # fresh: no new fetch
    assert len(calls) == 2
    ice._fresh_until = 0  # three quarters of its life gone: fetch again; that one fails
    assert (await ice.servers())[0].username == "u1"  # still valid, kept
    ice._fresh_until = ice._expires = 0  # and now it has expired
    assert (await ice.servers())[0].username == "u2"
    await ice.close()
    assert await IceCredentials(static, None).servers() == static
