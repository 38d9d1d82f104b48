"""``ruang join`` exit codes and the waiting room, driven from the test by a raw WebSocket
counselor (a real client of the protocol). No peer connection is made here: no namespace needed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest

from server.cli import main as cli_main
from signaling.crypto import new_room_id, new_room_key
from tests.peer_support import PeerProcess, client_peer, counselor_peer, make_room, peer_env
from tests.support import ServerProcess, login

EMAIL = "counselor@example.org"
GOOD = f"https://localhost/r/{new_room_id()}#{new_room_key()}"


async def _run(peer: PeerProcess, stdin: str | None = None, timeout: float = 30) -> int:
    try:
        await peer.start(stdin)
        return await peer.wait(timeout)
    finally:
        await peer.stop()


@pytest.mark.parametrize(
    "args",
    [
        ["not a link"],
        [f"https://localhost/r/{new_room_id()}"],  # no key
        [f"https://localhost/r/{new_room_id()}#short"],
        [f"https://localhost/rooms/{new_room_id()}#{new_room_key()}"],
        [GOOD, "--seconds", "-1"],
        [GOOD, "--seconds", "nan"],
        [GOOD, "--counselor"],  # no email
        [GOOD, "--email", EMAIL],  # without --counselor
        [GOOD, "--name", "x" * 65],
        [GOOD, "--bogus-flag"],
        [],
    ],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["join", *args]) == 2
    for line in capsys.readouterr().out.splitlines():
        assert json.loads(line)["event"] == "error"


async def test_a_usage_error_exits_2_from_the_command(
    server: ServerProcess, tmp_path: Path
) -> None:
    peer = PeerProcess("usage", [GOOD, "--seconds", "0"], peer_env(server), tmp_path)
    assert await _run(peer) == 2, peer.describe()
    assert [e["event"] for e in peer.events] == ["error"]


async def test_an_unknown_room_exits_4(server: ServerProcess, tmp_path: Path) -> None:
    link = f"{server.origin}/r/{new_room_id()}#{new_room_key()}"
    peer = client_peer(server, link, tmp_path, "--insecure")
    assert await _run(peer) == 4, peer.describe()
    (error,) = peer.named("error")
    assert "unknown or closed room" in error["message"]


async def test_a_wrong_counselor_password_exits_1(server: ServerProcess, tmp_path: Path) -> None:
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    peer, _ = counselor_peer(server, link, EMAIL, tmp_path)
    assert await _run(peer, "not the password\n") == 1, peer.describe()
    assert "wrong email or password" in peer.named("error")[0]["message"]


async def test_a_declined_client_waits_then_exits_3(server: ServerProcess, tmp_path: Path) -> None:
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    room_id = link.split("/r/")[1].split("#")[0]
    name = "Budi Santoso"
    client = client_peer(server, link, tmp_path, "--name", name)
    try:
        await client.start()
        # The room is closed until its counselor comes: the client says so and keeps waiting.
        await client.wait_for(lambda e: e["event"] == "waiting", timeout=20)
        assert client.named("waiting")[0]["reason"] == "counselor-away"
        async with server.client() as http:
            assert (await login(http, EMAIL)).status == 303
            ws = await http.ws_connect("/ws", origin=server.origin)
            await ws.send_str(
                json.dumps({"type": "join", "v": 1, "room": room_id, "role": "counselor"})
            )
            joined = json.loads((await ws.receive(timeout=10)).data)
            assert joined["type"] == "joined"
            (knock,) = [p for p in joined["peers"] if p["role"] == "client"]
            assert knock["state"] == "waiting"
            # The client's hello (with its name) waited for the counselor: ciphertext only.
            relayed = []
            deadline = time.monotonic() + 10
            while not relayed and time.monotonic() < deadline:
                msg = await ws.receive(timeout=10)
                assert msg.type is aiohttp.WSMsgType.TEXT
                frame = json.loads(msg.data)
                if frame["type"] == "relay":
                    relayed.append(msg.data)
            assert relayed and json.loads(relayed[0])["from"] == knock["id"]
            assert name not in relayed[0]
            await client.wait_for(
                lambda e: e["event"] == "waiting" and e["reason"] == "knocked", timeout=10
            )
            await ws.send_str(json.dumps({"type": "decline", "id": knock["id"]}))
            assert await client.wait(20) == 3, client.describe()
            await ws.close()
    finally:
        await client.stop()
    assert [e["event"] for e in client.events] == ["waiting", "waiting", "declined"]
    assert name not in client.stderr()


async def test_the_counselor_stops_cleanly_on_a_signal(
    server: ServerProcess, tmp_path: Path
) -> None:
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    peer, password = counselor_peer(server, link, EMAIL, tmp_path)
    try:
        await peer.start(password)
        await peer.wait_log("joined the room as counselor")
        assert peer.proc is not None
        peer.proc.terminate()
        assert await peer.wait(15) == 1, peer.describe()
    finally:
        await peer.stop()
    assert peer.named("ended")[0]["reason"] == "interrupted"


@pytest.mark.slow
def test_the_connect_timeout_defaults_to_30_seconds() -> None:
    from server.cli import build_parser

    args = build_parser().parse_args(["join", "https://h/r/x#k"])
    assert args.connect_timeout == 30.0


async def test_no_connection_within_the_timeout_exits_5(
    server: ServerProcess, tmp_path: Path
) -> None:
    """Admitted, but the other side never answers: after --connect-timeout (30 s unless set;
    4 s here) the client gives up."""
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    room_id = link.split("/r/")[1].split("#")[0]
    client = client_peer(server, link, tmp_path, "--connect-timeout", "4")
    try:
        async with server.client() as http:
            assert (await login(http, EMAIL)).status == 303
            ws = await http.ws_connect("/ws", origin=server.origin)
            await ws.send_str(
                json.dumps({"type": "join", "v": 1, "room": room_id, "role": "counselor"})
            )
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "joined"
            await client.start()
            knock = None
            deadline = time.monotonic() + 20
            while knock is None and time.monotonic() < deadline:
                frame = json.loads((await ws.receive(timeout=20)).data)
                if frame["type"] == "peer" and frame["state"] == "waiting":
                    knock = frame["id"]
            assert knock is not None
            await ws.send_str(json.dumps({"type": "admit", "id": knock}))
            await client.wait_for(lambda e: e["event"] == "admitted", timeout=10)
            started = time.monotonic()
            assert await client.wait(30) == 5, client.describe()
            assert 3 <= time.monotonic() - started <= 15
            await ws.close()
    finally:
        await client.stop()
    assert [e["event"] for e in client.events][-1] == "error"
    assert "no connection within 4 s" in client.named("error")[0]["message"]
