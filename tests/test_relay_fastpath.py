"""The relay hot path's short cuts (docs/performance.md) change nothing a peer can see:

* ``parse`` matches a canonically spelled ``relay`` frame without a JSON parse: it must give the
  same message as the general path for every valid frame, and refuse what the general path
  refuses;
* ``SocketSink`` writes small frames straight to the transport when nothing is queued, and
  queues the rest: frames of every size, sent in one burst, still arrive whole and in order;
* end to end, the benchmark's load generator against the real server: every envelope arrives
  once, in order, at the right peer, stamped with the right sender.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType
from hypothesis import given
from hypothesis import strategies as st

from server.socket_sink import DIRECT_MAX, SocketSink
from server.websocket import WebSocket
from signaling.errors import CloseCode
from signaling.messages import ProtocolError, Relay, Relayed, dump, parse, relayed_text
from tests.test_ws_sink import serving

ROOT = Path(__file__).resolve().parent.parent
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
IDS = st.text(B64URL, min_size=1, max_size=64)
BOXES = st.text(B64URL, min_size=1, max_size=900)


@given(to=IDS, epoch=IDS, box=BOXES)
def test_the_canonical_relay_frame_parses_as_the_general_path_does(
    to: str, epoch: str, box: str
) -> None:
    canonical = json.dumps(
        {"type": "relay", "to": to, "epoch": epoch, "box": box}, separators=(",", ":")
    )
    spaced = json.dumps({"type": "relay", "to": to, "epoch": epoch, "box": box})  # general path
    assert parse(canonical) == parse(spaced) == Relay(to, epoch, box)


@given(sender=IDS, to=IDS, epoch=IDS, box=BOXES)
def test_the_relayed_frame_is_built_as_dump_escapes_it(
    sender: str, to: str, epoch: str, box: str
) -> None:
    """The hub writes ``relayed_text`` without JSON escaping, for what ``parse`` let through:
    the same text ``dump`` makes with escaping, and valid JSON."""
    msg = parse(json.dumps({"type": "relay", "to": to, "epoch": epoch, "box": box}))
    assert isinstance(msg, Relay)
    text = relayed_text(sender, msg.epoch, msg.box)
    assert text == dump(Relayed(sender, msg.epoch, msg.box))
    assert json.loads(text) == {"type": "relay", "from": sender, "epoch": epoch, "box": box}


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"relay","to":"counselor","epoch":"e1","box":"a=b"}',  # not base64url
        '{"type":"relay","to":"counselor","epoch":"e1","box":""}',  # empty box
        '{"type":"relay","to":"coun selor","epoch":"e1","box":"abc"}',  # bad id
        '{"type":"relay","to":"' + "a" * 65 + '","epoch":"e1","box":"abc"}',  # id too long
        '{"type":"relay","to":"counselor","epoch":"e1","box":"abc","x":1}',  # extra field
        '{"type":"relay","to":"counselor","epoch":"e1","box":"abc"} ',  # trailing junk is JSON ws
        '{"type":"relay","to":"counselor","epoch":"e1","box":"ab\\u0063"}',  # escaped: same box
    ],
)
def test_other_spellings_take_the_general_path(frame: str) -> None:
    try:
        general = json.loads(frame)
    except ValueError:
        general = None
    valid = (
        isinstance(general, dict)
        and set(general) == {"type", "to", "epoch", "box"}
        and all(
            isinstance(general[k], str)
            and 0 < len(general[k]) <= 64
            and all(c.isalnum() or c in "-_" for c in general[k])
            for k in ("to", "epoch")
        )
        and bool(general["box"])
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in general["box"])
    )
    if valid:
        assert isinstance(general, dict)
        assert parse(frame) == Relay(general["to"], general["epoch"], general["box"])
    else:
        with pytest.raises(ProtocolError):
            parse(frame)


async def test_small_and_large_frames_in_one_burst_arrive_in_order() -> None:
    sizes = [100, DIRECT_MAX + 1, 10, 60_000, 500, 500, DIRECT_MAX, 70, 30_000, 5] * 20

    async def burst(sink: SocketSink, _ws: WebSocket) -> None:
        for i, size in enumerate(sizes):
            head = f"{i:04d}"
            assert sink.send(head + "y" * (size - len(head)))
            if i % 7 == 0:
                await asyncio.sleep(0)  # let the writer run now and then
        sink.close(CloseCode.NORMAL, "done")

    async with serving(burst, max_bytes=64 << 20, limit=100_000) as (port, served):
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"http://127.0.0.1:{port}/ws", max_msg_size=1 << 20) as c,
        ):
            got: list[tuple[str, int]] = []
            async with asyncio.timeout(20):
                while (msg := await c.receive()).type is WSMsgType.TEXT:
                    got.append((msg.data[:4], len(msg.data)))
            assert msg.type is WSMsgType.CLOSE and msg.data == CloseCode.NORMAL
            async with asyncio.timeout(10):
                await served.done.wait()
    assert got == [(f"{i:04d}", size) for i, size in enumerate(sizes)]


@pytest.mark.parametrize("target", ["ruang", "bare"])
async def test_the_load_generator_sees_every_envelope_once(target: str, tmp_path: Path) -> None:
    """``bench.loadgen`` against the real server (and the floor): 4 room pairs, both ways,
    2 s at full speed; it exits 0 only if nothing was lost, duplicated, reordered or misrouted.
    """
    from bench import servers

    server = await asyncio.to_thread(servers.start, target, tmp_path / target, None)
    try:
        env = dict(os.environ, BENCH_PASSWORD=server.password)
        argv = [sys.executable, "-m", "bench.loadgen", "--protocol", servers.PROTOCOL[target]]
        argv += ["--url", server.url, "--pairs", "4", "--seconds", "2", "--warmup", "0.5"]
        argv += ["--server-pid", str(server.pid)]
        done = await asyncio.to_thread(
            subprocess.run, argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    finally:
        await asyncio.to_thread(server.stop)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == 0 and result["missing"] == 0
    assert result["delivered"] > 100
    assert result["delivered_total"] == result["sent_total"]
