"""The browser's v1 cryptography (web/static/js/crypto.js, e2e.js) against tests/vectors/v1.json.

Two routes: ``node --test tests/js/`` (every vector category, plus SDP and behaviour tests), and
Debian's headless Chromium loading the same modules from a local static server, where the
vectors are checked again and a JS ``SecureChannel`` runs a hello + commit round + chat with a
Python ``SecureChannel`` (``signaling.e2e``), so both ends must produce and accept the same bytes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from signaling import crypto
from signaling.e2e import CommitRound, ReplayError, SecureChannel
from tests.browser import chromium, needs_chromium

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
VECTORS: dict[str, Any] = json.loads(
    (ROOT / "tests" / "vectors" / "v1.json").read_text(encoding="utf-8")
)


def _node_version(node: str) -> tuple[int, int]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@pytest.mark.skipif(NODE is None, reason="`node` is not installed: tests/js/ needs Node >= 20.10")
def test_node_suite() -> None:
    """``node --test tests/js/``: every vector category and the JS behaviour tests."""
    assert NODE is not None
    version = _node_version(NODE)
    if version < (20, 10):
        pytest.skip(f"Node {version[0]}.{version[1]} is too old: tests/js/ needs Node >= 20.10")
    # web/static/js/*.js are ES modules without a package.json: Node >= 20.19 detects that by
    # itself, 20.10 to 20.18 need the flag (passed on to each test file's process).
    flags = ["--experimental-detect-module"] if version < (20, 19) else []
    proc = subprocess.run(
        [NODE, *flags, "--test", "--test-reporter=tap", "tests/js/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = f"{proc.stdout}\n{proc.stderr}"
    if proc.returncode != 0:
        pytest.fail(f"node --test failed (exit {proc.returncode}):\n{output}", pytrace=False)
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", proc.stdout, re.MULTILINE))
    assert counts.get("fail") == "0", output
    assert int(counts.get("pass", "0")) >= 40, f"too few JS tests ran:\n{output}"


# --- Chromium --------------------------------------------------------------------------------

INDEX = b'<!doctype html><meta charset=utf-8><link rel=icon href="data:,"><title>crypto</title>'


@asynccontextmanager
async def _static_server() -> AsyncIterator[str]:
    """web/static at /static/ and tests/vectors at /vectors/ over http on 127.0.0.1 (a secure
    context, so WebCrypto works), plus an empty page at /."""

    async def index(_request: web.Request) -> web.Response:
        return web.Response(body=INDEX, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/static/", ROOT / "web" / "static")
    app.router.add_static("/vectors/", ROOT / "tests" / "vectors")
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# Runs in the page: the vectors again (a representative subset of every category, most of them
# in full), and a real Chromium SDP through fingerprintFromSdp. Returns the failures and a count.
VECTOR_CHECKS = r"""
async () => {
  const c = await import("/static/js/crypto.js");
  const e = await import("/static/js/e2e.js");
  const V = await (await fetch("/vectors/v1.json", { cache: "no-store" })).json();
  const failures = [];
  let checks = 0;
  const check = (ok, what) => {
    checks += 1;
    if (!ok) failures.push(what);
  };
  const fromHex = (h) => Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
  const toHex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join("");
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  const throws = async (fn, E) => {
    try {
      await fn();
      return false;
    } catch (err) {
      return err instanceof E;
    }
  };
  const aadOf = (k) => c.envelopeAad(k.room_id, k.sender_id, k.sender_epoch, k.recipient_id);
  const keyOf = (k) => c.deriveSignalKey(c.parseRoomKey(k.room_key), k.room_id);
  const K = V.constants;

  check(c.SIGNAL_INFO === K.signal_info && c.SAS_INFO === K.sas_info, "info strings");
  check(toHex(new TextEncoder().encode(c.AAD_PREFIX)) === K.aad_prefix_hex, "aad prefix");
  for (const k of V.b64u.valid) {
    check(c.b64uEncode(fromHex(k.hex)) === k.b64u, `encode ${k.hex}`);
    check(toHex(c.b64uDecode(k.b64u)) === k.hex, `decode ${k.b64u}`);
  }
  for (const k of V.b64u.invalid) {
    check(await throws(() => c.b64uDecode(k.b64u), c.EncodingError), `b64u ${k.why}`);
  }
  for (const id of V.rooms.ids_valid) check(c.isRoomId(id), `room id ${id}`);
  for (const id of V.rooms.ids_invalid) check(!c.isRoomId(id), `bad room id ${id}`);
  for (const k of V.rooms.keys_valid) check(toHex(c.parseRoomKey(k.b64u)) === k.hex, "key");
  for (const k of V.rooms.keys_invalid) {
    check(await throws(() => c.parseRoomKey(k), c.EncodingError), `bad key ${k}`);
  }
  for (const k of V.rooms.signal_keys) {
    const raw = await c.deriveSignalKeyBytes(c.parseRoomKey(k.room_key), k.room_id);
    check(toHex(raw) === k.signal_key_hex, `signal key ${k.room_id}`);
    const key = await keyOf(k);
    check(!key.extractable && key.algorithm.name === "AES-GCM", "non-extractable AES-GCM");
    check(key.algorithm.length === 256, "AES-256");
  }
  for (const k of V.aad.valid) check(toHex(aadOf(k)) === k.aad_hex, `aad ${k.sender_id}`);
  for (const k of V.aad.invalid) {
    check(await throws(() => aadOf(k), c.EncodingError), `aad ${k.why}`);
  }
  for (const k of V.seal.ok) {
    const key = await keyOf(k);
    const aad = aadOf(k);
    const box = await c.seal(key, aad, fromHex(k.plaintext_hex), fromHex(k.iv_hex));
    check(box === k.box, `seal ${k.name}`);
    check(toHex(await c.openBox(key, aad, k.box)) === k.plaintext_hex, `open ${k.name}`);
  }
  for (const k of V.seal.fail) {
    const key = await keyOf(k);
    const refused = await throws(() => c.openBox(key, aadOf(k), k.box), c.EnvelopeError);
    check(refused, `must fail: ${k.name}`);
  }
  for (const k of V.fingerprints.valid) {
    check(c.canonicalFingerprint(fromHex(k.digest_hex)) === k.fingerprint, "fingerprint");
    check(toHex(c.parseFingerprint(k.fingerprint)) === k.digest_hex, "parse fingerprint");
  }
  for (const bad of V.fingerprints.invalid) {
    const refused = await throws(() => c.parseFingerprint(bad), c.FingerprintError);
    check(refused, `fingerprint ${JSON.stringify(bad)}`);
  }
  for (const k of V.commitments.ok) {
    const nonce = fromHex(k.nonce_hex);
    check(toHex(await c.commitment(k.fingerprint, nonce)) === k.commit_hex, "commitment");
    check(await c.verifyReveal(fromHex(k.commit_hex), k.fingerprint, nonce), "reveal");
  }
  for (const k of V.commitments.mismatch) {
    const ok = await c.verifyReveal(fromHex(k.commit_hex), k.fingerprint, fromHex(k.nonce_hex));
    check(ok === false, `mismatch ${k.why}`);
  }
  for (const k of V.safety_codes) {
    const nonces = [fromHex(k.nonce_counselor_hex), fromHex(k.nonce_client_hex)];
    const key = c.parseRoomKey(k.room_key);
    const code = await c.safetyCode(key, k.fp_counselor, k.fp_client, ...nonces);
    check(code.digits === k.digits && same(code.words, k.words), `code ${k.name}`);
  }
  const words = new TextEncoder().encode(c.SAS_WORDS.join("\n"));
  const wordsHash = new Uint8Array(await crypto.subtle.digest("SHA-256", words));
  check(toHex(wordsHash) === V.sas_words_sha256, "SAS words hash");
  check(same(c.SAS_WORDS, V.sas_words), "SAS words");

  const script = V.channel;
  const roomKey = c.parseRoomKey(script.room_key);
  const chans = {};
  for (const [side, p] of Object.entries(script.peers)) {
    chans[side] = await e.SecureChannel.create(script.room_id, roomKey, p.id, p.epoch);
  }
  for (const [i, step] of script.steps.entries()) {
    if (step.op === "hello") {
      chans[step.side].newHello(["ice-restart"], { nonce: c.b64uDecode(step.nonce) });
      continue;
    }
    let got;
    try {
      const from = script.peers[step.from].id;
      const msg = await chans[step.to].open(from, step.epoch, step.box);
      got = same(msg, JSON.parse(step.plaintext)) ? "ok" : "wrong plaintext";
    } catch (err) {
      got = err instanceof e.CryptoError ? err.name : `unexpected ${err}`;
    }
    check(got === step.expect, `channel step ${i}: ${got} != ${step.expect}`);
  }
  check(chans.client.gapCount === script.final_gap_count.client, "client gaps");
  check(chans.counselor.gapCount === script.final_gap_count.counselor, "counselor gaps");

  // This browser's own DTLS certificate and offer (two m-sections).
  const cert = await RTCPeerConnection.generateCertificate({ name: "ECDSA", namedCurve: "P-256" });
  const pc = new RTCPeerConnection({ certificates: [cert] });
  try {
    pc.addTransceiver("audio");
    pc.addTransceiver("video");
    const offer = await pc.createOffer();
    const mine = c.fingerprintFromRtc(cert.getFingerprints());
    check(c.fingerprintFromSdp(offer.sdp) === mine, "fingerprintFromSdp(Chromium offer)");
    check((offer.sdp.match(/^m=/gm) || []).length === 2, "two m-sections");
  } finally {
    pc.close();
  }
  return { failures, checks };
}
"""

# The page's half of the live exchange with Python; state lives in window.__ruang.
SETUP_PEER = r"""
async ([roomId, roomKey, fingerprint]) => {
  const c = await import("/static/js/crypto.js");
  const e = await import("/static/js/e2e.js");
  const chan = await e.SecureChannel.create(roomId, c.parseRoomKey(roomKey), "k");
  const round = new e.CommitRound("client", fingerprint);
  window.__ruang = { c, e, chan, round, roomKey: c.parseRoomKey(roomKey) };
  return chan.epoch;
}
"""
PEER_OPEN = r"""
async ([from, epoch, box]) => {
  try {
    return { msg: await window.__ruang.chan.open(from, epoch, box) };
  } catch (err) {
    return { error: err.name };
  }
}
"""
PEER_HELLO = """async () => {
  const chan = window.__ruang.chan;
  return chan.seal("c", chan.newHello(["ice-restart"]));
}"""
PEER_SEAL = "async ([to, msg]) => window.__ruang.chan.seal(to, msg)"
PEER_ON_COMMIT = """async (msg) => {
  window.__ruang.round.onCommit(msg);
  return window.__ruang.chan.seal('c', await window.__ruang.round.commitMsg());
}"""
PEER_ON_REVEAL = """async (msg) => {
  await window.__ruang.round.onReveal(msg);
  return window.__ruang.chan.seal('c', window.__ruang.round.revealMsg());
}"""
PEER_CODE = """async () => {
  const r = window.__ruang.round;
  const code = await r.safetyCode(window.__ruang.roomKey);
  return { digits: code.digits, words: [...code.words], peer: r.peerFingerprint };
}"""


@needs_chromium
@pytest.mark.browser
async def test_modules_in_chromium() -> None:
    """The same modules in Debian's headless Chromium: vectors, and a live exchange with Python."""
    room_id = VECTORS["rooms"]["ids_valid"][0]
    room_key_text = VECTORS["rooms"]["keys_valid"][0]["b64u"]
    room_key = crypto.parse_room_key(room_key_text)
    fp_counselor = VECTORS["safety_codes"][0]["fp_counselor"]
    fp_client = VECTORS["safety_codes"][0]["fp_client"]
    console: list[str] = []
    async with _static_server() as origin, chromium() as browser:
        page = await browser.new_page()  # type: ignore[attr-defined]
        page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
        page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
        await page.goto(f"{origin}/")
        assert await page.evaluate("window.isSecureContext")

        result = await page.evaluate(VECTOR_CHECKS)
        assert result["failures"] == [], result["failures"]
        assert result["checks"] >= 100, result

        # Live: Python is the counselor "c", the page is the client "k".
        chan = SecureChannel(room_id, room_key, "c")
        k_epoch = await page.evaluate(SETUP_PEER, [room_id, room_key_text, fp_client])
        got = await page.evaluate(PEER_OPEN, ["c", *chan.seal("k", chan.new_hello(["rollback"]))])
        assert got["msg"]["type"] == "hello" and got["msg"]["caps"] == ["rollback"], got
        k_hello = await page.evaluate(PEER_HELLO)
        assert k_hello[0] == k_epoch
        assert chan.open("k", *k_hello)["caps"] == ["ice-restart"]

        round_c = CommitRound("counselor", fp_counselor)
        k_commit = await page.evaluate(
            PEER_ON_COMMIT, await _relay(page, chan, round_c.commit_msg())
        )
        round_c.on_commit(chan.open("k", *k_commit))
        k_reveal = await page.evaluate(
            PEER_ON_REVEAL, await _relay(page, chan, round_c.reveal_msg())
        )
        round_c.on_reveal(chan.open("k", *k_reveal))
        code = round_c.safety_code(room_key)
        page_code = await page.evaluate(PEER_CODE)
        assert page_code == {
            "digits": code.digits,
            "words": list(code.words),
            "peer": fp_counselor,
        }
        assert round_c.peer_fingerprint == fp_client

        # Chat both ways (non-ASCII), and each side refuses the other's replay.
        k_seen = chan.peer_hello("k")
        assert k_seen is not None
        text = "Halo 👋 ü 訪問者"
        envelope = chan.seal("k", {"type": "chat", "id": "m1", "text": text})
        got = await page.evaluate(PEER_OPEN, ["c", *envelope])
        assert got["msg"]["text"] == text
        assert got["msg"]["bind"] == [chan.hello_nonce, k_seen.nonce]
        assert await page.evaluate(PEER_OPEN, ["c", *envelope]) == {"error": "ReplayError"}
        back = await page.evaluate(PEER_SEAL, ["c", {"type": "chat", "id": "m2", "text": text}])
        msg = chan.open("k", *back)
        assert msg["text"] == text and msg["bind"] == [k_seen.nonce, chan.hello_nonce]
        with pytest.raises(ReplayError):
            chan.open("k", *back)
        assert chan.gap_count == 0
        # The page's plaintext is byte for byte what Python's json.dumps writes for it.
        signal_key = crypto.derive_signal_key(room_key, room_id)
        aad = crypto.envelope_aad(room_id, "k", back[0], "c")
        compact = json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode()
        assert crypto.open_box(signal_key, aad, back[1]) == compact
    assert console == []


async def _relay(page: Any, chan: SecureChannel, msg: dict[str, Any]) -> Any:
    """Seal msg from Python to the page and return what the page opened (or fail)."""
    got = await page.evaluate(PEER_OPEN, ["c", *chan.seal("k", msg)])
    assert "msg" in got, got
    return got["msg"]
