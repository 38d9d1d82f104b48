"""The Python peer (``ruang join``) against the real server: real sockets, real aiortc peers.

Media tests run only inside the test network namespace (``scripts/run-tests.sh``): aiortc
gathers candidates on every interface.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from signaling.crypto import derive_signal_key, envelope_aad, open_box, seal
from signaling.peer.link import parse_link
from tests.peer_support import (
    ProxyConn,
    RelayProxy,
    client_peer,
    counselor_peer,
    make_room,
    needs_netns,
)
from tests.support import ServerProcess

EMAIL = "counselor@example.org"
NAME = "Siti Rahmawati"
CO_TEXT = "Selamat datang, counselor speaking"
CL_TEXT = "Terima kasih, client speaking"
FP_RE = re.compile(r"a=fingerprint:(\S+) (\S+)")


def decrypt_down(proxy: RelayProxy, link: str) -> list[dict[str, Any]]:
    """What the relayed envelopes said (the test holds the key; the server does not)."""
    parsed = parse_link(link)
    key = derive_signal_key(parsed.key, parsed.room_id)
    out = []
    for direction, index, text in proxy.frames:
        msg = json.loads(text)
        if direction != "down" or msg.get("type") != "relay":
            continue
        recipient = proxy.conns[index].participant_id
        assert recipient is not None
        aad = envelope_aad(parsed.room_id, msg["from"], msg["epoch"], recipient)
        out.append(json.loads(open_box(key, aad, msg["box"])))
    return out


async def stop_all(*things: Any) -> None:
    for thing in things:
        await thing.stop()


def assert_full_call(peer: Any, other_role: str, heard: str) -> None:
    connected = peer.named("connected")
    assert [e["path"] for e in connected] == ["direct"], peer.describe()
    assert peer.frames("video") >= 30, peer.describe()
    assert peer.frames("audio") >= 30, peer.describe()
    assert {"from": other_role, "text": heard} in [
        {"from": e["from"], "text": e["text"]} for e in peer.named("chat")
    ], peer.describe()
    assert [e["level"] for e in peer.named("mode")] == ["video"]
    assert len(peer.named("ended")) == 1
    assert not peer.named("error"), peer.describe()
    times = [e["t"] for e in peer.events]
    assert times == sorted(times)


@needs_netns
async def test_two_peers_hold_a_session_and_the_server_sees_no_plaintext(
    server: ServerProcess, tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    proxy = RelayProxy(server, *dev_cert)
    await proxy.start()
    plink = proxy.link_for(link)
    co, password = counselor_peer(
        server, plink, EMAIL, tmp_path, "--say", CO_TEXT, "--seconds", "4"
    )
    cl = client_peer(server, plink, tmp_path, "--name", NAME, "--say", CL_TEXT)
    try:
        await co.start(password)
        await cl.start()
        assert await co.wait(60) == 0, co.describe()
        assert await cl.wait(20) == 0, cl.describe()
    finally:
        await stop_all(co, cl, proxy)

    # Both ends: the whole call, and the same safety code.
    assert_full_call(co, "client", CL_TEXT)
    assert_full_call(cl, "counselor", CO_TEXT)
    (co_code,) = co.named("safety_code")
    (cl_code,) = cl.named("safety_code")
    assert re.fullmatch(r"\d{6}", co_code["code"])
    assert len(co_code["words"]) == 4
    assert (co_code["code"], co_code["words"]) == (cl_code["code"], cl_code["words"])
    assert co.named("admitted")[0]["id"]
    assert cl.named("admitted") and cl.named("waiting")[-1]["reason"] == "knocked"
    assert co.named("ended")[0]["reason"] == "seconds"
    assert cl.named("ended")[0]["reason"] == "ended"

    # What went through the server: ciphertext and room control only.
    said = decrypt_down(proxy, link)
    kinds = [m["type"] for m in said]
    for kind in ("hello", "commit", "reveal", "offer", "answer", "mode", "bye"):
        assert kind in kinds, kinds
    assert "chat" not in kinds  # with media, chat went over the data channel
    sdps = [m["sdp"] for m in said if m["type"] in ("offer", "answer")]
    secrets = {NAME, CO_TEXT, CL_TEXT, "v=0", "a=fingerprint", "candidate:", "sha-256"}
    for sdp in sdps:
        sections = sdp.split("\r\nm=")[1:]
        assert sections
        for section in sections:
            found = FP_RE.findall(section)
            assert len(found) == 1 and found[0][0] == "sha-256", section
            value = found[0][1]
            secrets |= {
                value,
                value.lower(),
                value.replace(":", ""),
                value.replace(":", "").lower(),
            }
    assert any(m.get("name") == NAME for m in said if m["type"] == "hello")
    key = link.split("#", 1)[1]
    secrets.add(key)
    for _direction, _index, text in proxy.frames:
        for secret in secrets:
            assert secret not in text, "plaintext reached the server"
    # Nor do the peers' own logs hold any of it.
    for peer in (co, cl):
        log = peer.stderr()
        assert "joined the room as" in log
        for secret in secrets | {parse_link(link).room_id}:
            assert secret not in log, f"{peer.name} logged content"
    # The counselor's cookie-backed join and the client's knock both went through the proxy.
    roles = {c.join["role"] for c in proxy.conns if c.join}
    assert roles == {"counselor", "client"}


@needs_netns
async def test_a_dropped_socket_resumes_without_knocking_and_media_keeps_flowing(
    server: ServerProcess, tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    proxy = RelayProxy(server, *dev_cert)
    await proxy.start()
    co, password = counselor_peer(server, link, EMAIL, tmp_path, "--seconds", "8")
    cl = client_peer(server, proxy.link_for(link), tmp_path)
    try:
        await co.start(password)
        await co.wait_log("joined the room as counselor")
        await cl.start()
        await cl.wait_for(lambda e: e["event"] == "media" and e["frames"] >= 30, timeout=25)
        first = proxy.conns[0]
        old_relays = [t for d, i, t in proxy.frames if d == "down" and '"relay"' in t]
        audio_at_cut = cl.frames("audio")
        mark = len(cl.events)
        await proxy.cut(first)

        deadline = time.monotonic() + 15
        while (len(proxy.conns) < 2 or proxy.conns[1].joined is None) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
        second = proxy.conns[1]
        assert second.join is not None and "resume" in second.join
        assert second.joined is not None
        assert second.joined["resumed"] is True and second.joined["state"] == "admitted"
        assert second.joined["id"] == first.participant_id
        # An envelope of the earlier socket, replayed into the new one, is refused.
        await second.inject_to_peer(old_relays[-1])

        await cl.wait_for(
            lambda e: (
                e["event"] == "media" and e["kind"] == "audio" and e["frames"] >= 100 + audio_at_cut
            ),
            timeout=15,
            after=mark,
        )
        assert await co.wait(30) == 0, co.describe()
        assert await cl.wait(15) == 0, cl.describe()
    finally:
        await stop_all(co, cl, proxy)
    assert [e["reason"] for e in cl.named("waiting")] == ["knocked"]  # once, never again
    assert len(cl.named("admitted")) == 1
    assert len(cl.named("safety_code")) == 1  # the same peer connection all along
    assert len(cl.named("connected")) == 1
    assert "rejected an envelope (ReplayError)" in cl.stderr()
    assert cl.named("ended")[0]["reason"] == "ended"
    assert not cl.named("error") and not co.named("error")


def _swap_fingerprint(sdp: str) -> str:
    def other(match: re.Match[str]) -> str:
        octets = match.group(2).split(":")
        return f"a=fingerprint:{match.group(1)} {':'.join(reversed(octets))}"

    return FP_RE.sub(other, sdp)


@needs_netns
async def test_a_relay_that_swaps_fingerprints_gets_no_connection_and_a_clear_error(
    server: ServerProcess, tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    """The worst case: the relay was given the room key and re-seals the counselor's offer with
    another fingerprint (its own DTLS certificate, in a real attack)."""
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    parsed = parse_link(link)
    key = derive_signal_key(parsed.key, parsed.room_id)
    swapped: list[str] = []

    async def mitm(conn: ProxyConn, text: str) -> list[str]:
        msg = json.loads(text)
        if msg.get("type") != "relay" or conn.participant_id is None:
            return [text]
        aad = envelope_aad(parsed.room_id, msg["from"], msg["epoch"], conn.participant_id)
        body = json.loads(open_box(key, aad, msg["box"]))
        if body["type"] != "offer":
            return [text]
        body["sdp"] = _swap_fingerprint(body["sdp"])
        swapped.append(body["round"])
        msg["box"] = seal(key, aad, json.dumps(body, separators=(",", ":")).encode())
        return [json.dumps(msg)]

    proxy = RelayProxy(server, *dev_cert)
    proxy.on_down = mitm
    await proxy.start()
    co, password = counselor_peer(server, link, EMAIL, tmp_path, "--seconds", "5")
    cl = client_peer(server, proxy.link_for(link), tmp_path, "--seconds", "5")
    try:
        await co.start(password)
        await cl.start()
        assert await cl.wait(40) == 1, cl.describe()
        assert await co.wait(20) == 1, co.describe()
    finally:
        await stop_all(co, cl, proxy)
    assert swapped
    for peer in (co, cl):
        assert not peer.named("connected"), peer.describe()
        assert not peer.named("media")
    (error,) = cl.named("error")
    assert "fingerprint" in error["message"]
    assert "security" in co.named("error")[0]["message"]
    # The safety codes were computed before the offer: they match, the connection never came.
    assert cl.named("safety_code")[0]["code"] == co.named("safety_code")[0]["code"]


@needs_netns
async def test_tampered_relabelled_reflected_and_replayed_envelopes_are_rejected(
    server: ServerProcess, tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    seen: list[dict[str, Any]] = []
    injected: list[str] = []

    async def inject(conn: ProxyConn, text: str) -> list[str]:
        msg = json.loads(text)
        if msg.get("type") != "relay" or injected:
            return [text]
        seen.append(msg)
        if len(seen) < 2:
            return [text]
        me = conn.participant_id
        assert me is not None
        first, second = seen[0], seen[1]
        box = second["box"]
        middle = len(box) // 2
        flipped = box[:middle] + ("A" if box[middle] != "A" else "B") + box[middle + 1 :]
        mine = [json.loads(t) for d, i, t in proxy.frames if d == "up" and i == conn.index]
        own = next(m for m in reversed(mine) if m.get("type") == "relay")
        attacks = [
            first,  # replayed
            {**second, "box": flipped},  # tampered
            {**second, "epoch": "A" * 22},  # relabelled epoch
            {**second, "from": "AAAAAAAAAAAA"},  # relabelled sender
            {"type": "relay", "from": me, "epoch": own["epoch"], "box": own["box"]},  # reflected
            {"type": "relay", "from": "counselor", "epoch": own["epoch"], "box": own["box"]},
        ]
        injected.extend(json.dumps(a) for a in attacks)
        return [text, *injected]

    proxy = RelayProxy(server, *dev_cert)
    proxy.on_down = inject
    await proxy.start()
    co, password = counselor_peer(server, link, EMAIL, tmp_path, "--say", CO_TEXT, "--seconds", "3")
    cl = client_peer(server, proxy.link_for(link), tmp_path, "--say", CL_TEXT)
    try:
        await co.start(password)
        await cl.start()
        assert await co.wait(40) == 0, co.describe()
        assert await cl.wait(20) == 0, cl.describe()
    finally:
        await stop_all(co, cl, proxy)
    assert len(injected) == 6
    log = cl.stderr()
    assert log.count("rejected an envelope (ReplayError)") == 1, log[-3000:]
    assert log.count("rejected an envelope (EnvelopeError)") == 4, log[-3000:]
    assert log.count("rejected an envelope (ReflectionError)") == 1, log[-3000:]
    assert "rejected so far" in log
    # ... and the client went on as if nothing happened.
    assert_full_call(cl, "counselor", CO_TEXT)
    assert_full_call(co, "client", CL_TEXT)
    # Logs name no content.
    for secret in (CO_TEXT, CL_TEXT, "a=fingerprint", "v=0"):
        assert secret not in log and secret not in co.stderr()


@needs_netns
async def test_a_text_only_client_chats_over_the_encrypted_relay(
    server: ServerProcess, tmp_path: Path
) -> None:
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    co, password = counselor_peer(server, link, EMAIL, tmp_path, "--say", CO_TEXT, "--seconds", "2")
    cl = client_peer(server, link, tmp_path, "--text-only", "--say", CL_TEXT, "--name", NAME)
    try:
        await co.start(password)
        await cl.start()
        assert await co.wait(40) == 0, co.describe()
        assert await cl.wait(20) == 0, cl.describe()
    finally:
        await stop_all(co, cl)
    for peer, other, heard in ((co, "client", CL_TEXT), (cl, "counselor", CO_TEXT)):
        assert [e["path"] for e in peer.named("connected")] == ["server-relay"], peer.describe()
        assert [e["level"] for e in peer.named("mode")] == ["text"]
        assert not peer.named("media") and not peer.named("safety_code")
        assert [(e["from"], e["text"]) for e in peer.named("chat")] == [(other, heard)]
    for secret in (NAME, CO_TEXT, CL_TEXT):
        assert secret not in server.log()


@needs_netns
async def test_a_counselor_on_a_new_process_makes_a_new_connection_and_safety_code(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A new instance means a new epoch, a new peer connection and a new commit round."""
    server.add_counselor(EMAIL)
    link = make_room(server, EMAIL)
    first, password = counselor_peer(server, link, EMAIL, tmp_path)
    second, _ = counselor_peer(server, link, EMAIL, tmp_path)
    second.name, second.stderr_path = "counselor2", tmp_path / "counselor2.stderr"
    # The client stays 12 s after its first connection: enough for a second counselor process
    # to start, log in and reconnect on a loaded machine.
    cl = client_peer(server, link, tmp_path, "--seconds", "12")
    try:
        await first.start(password)
        await first.wait_log("joined the room as counselor")
        await cl.start()
        await cl.wait_for(lambda e: e["event"] == "media" and e["frames"] >= 30, timeout=25)
        assert first.proc is not None
        first.proc.kill()  # no goodbye: the client's call goes on, the counselor comes back
        await first.wait(10)
        mark = len(cl.events)
        await second.start(password)
        await cl.wait_for(lambda e: e["event"] == "connected", timeout=25, after=mark)
        await cl.wait_for(lambda e: e["event"] == "media" and e["frames"] >= 30, after=mark)
        assert await cl.wait(40) == 0, cl.describe()
        assert await second.wait(15) == 0, second.describe()
    finally:
        await stop_all(first, second, cl)
    codes = [e["code"] for e in cl.named("safety_code")]
    assert len(codes) == 2 and codes[0] != codes[1]
    assert codes[1] == second.named("safety_code")[0]["code"]
    assert len(cl.named("admitted")) == 1 and len(cl.named("waiting")) == 1
    assert second.named("admitted")[0]["id"]  # it found its client already admitted
    assert second.named("ended")[0]["reason"] == "left"
    assert "rejected an envelope" not in cl.stderr()
