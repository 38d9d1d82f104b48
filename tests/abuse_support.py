"""An abusive client for tests/test_abuse.py, run as its own process so that the flood never
shares an event loop (or a GIL) with the measurements of the test that starts it:

    python -m tests.abuse_support ORIGIN CAFILE EMAIL PASSWORD SECONDS

It logs in as EMAIL, makes a room, admits a client of its own and prints ``{"ready": true}``.
Then, for SECONDS, three abusers run at once against that room, each as hard as the server's
documented limits let it:

- the admitted client relays 60 KB envelopes to its counselor (who reads them all) at just under
  the per-connection rate (``RUANG_WS_RATE``, 50/s): ~3 MB/s the server must take and pass on;
- socket after socket joins (as the counselor of another room) and sends an oversized frame
  (closed with 4011);
- socket after socket joins (likewise) and sends pings as fast as it can (closed with 4009).

At the end it prints one JSON line of counts: what was relayed, and how each abuser ended.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import sys
import time
from typing import Any

import aiohttp

EPOCH = "F" * 22
BOX = "A" * 60_000  # under the 64 KiB frame cap with the envelope around it
TOO_BIG = json.dumps({"type": "relay", "to": "counselor", "epoch": EPOCH, "box": "B" * 70_000})
RATE = 45.0  # relays per second: under the default bucket's 50/s


async def _recv(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"closed while waiting for {kind}: {msg.data}")
            data: dict[str, Any] = json.loads(msg.data)
            if data["type"] == kind:
                return data


async def _close_code(ws: aiohttp.ClientWebSocketResponse) -> int:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                continue
            return int(msg.data) if msg.type is aiohttp.WSMsgType.CLOSE else -1


async def main(origin: str, cafile: str, email: str, password: str, seconds: float) -> None:
    ctx = ssl.create_default_context(cafile=cafile)
    counts: dict[str, int] = {"relayed": 0, "relayed_bytes": 0, "too_big": 0, "rate_limited": 0}
    counts["other_closes"] = 0
    async with (
        aiohttp.ClientSession(
            base_url=origin, connector=aiohttp.TCPConnector(ssl=ctx, limit=0)
        ) as http,
        aiohttp.ClientSession(
            base_url=origin, connector=aiohttp.TCPConnector(ssl=ctx, limit=0)
        ) as anon,
    ):
        async with http.get("/login") as r:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await r.text())
        assert csrf
        form = {"email": email, "password": password, "csrf": csrf.group(1), "next": "/"}
        async with http.post("/login", data=form, allow_redirects=False) as r:
            assert r.status == 303, r.status
        async with http.get("/") as r:
            token = re.search(r'data-csrf="([^"]+)"', await r.text())
        assert token
        headers = {"X-CSRF-Token": token.group(1)}
        rooms = []
        for _ in range(3):  # the flood's, and one for each abuser (who joins as its counselor)
            async with http.post("/api/rooms", json={"label": "F."}, headers=headers) as r:
                rooms.append(str((await r.json())["id"]))
        room = rooms[0]
        h = {"Origin": origin}
        c = await http.ws_connect("/ws", headers=h, max_msg_size=1 << 20)
        await c.send_json({"type": "join", "v": 1, "room": room, "role": "counselor"})
        await _recv(c, "joined")
        k = await anon.ws_connect("/ws", headers=h, max_msg_size=1 << 20)
        await k.send_json({"type": "join", "v": 1, "room": room, "role": "client"})
        kid = (await _recv(k, "joined"))["id"]
        await c.send_json({"type": "admit", "id": kid})
        await _recv(k, "admitted")
        print(json.dumps({"ready": True}), flush=True)
        end = time.monotonic() + seconds

        async def relays() -> None:
            frame = json.dumps({"type": "relay", "to": "counselor", "epoch": EPOCH, "box": BOX})
            next_at = time.monotonic()
            while time.monotonic() < end:
                await k.send_str(frame)
                next_at = max(next_at + 1 / RATE, time.monotonic() - 0.1)  # after SIGSTOP
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        async def reads() -> None:
            while True:
                msg = await c.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return
                if '"relay"' in msg.data[:40]:
                    counts["relayed"] += 1
                    counts["relayed_bytes"] += len(msg.data)

        async def abuser(own: str, frames: list[str], expected: int, name: str) -> None:
            # As the counselor of its own room: each new socket takes the place of the last
            # (a waiting client's place would be kept for resume, and the waiting room fill).
            while time.monotonic() < end:
                ws = await http.ws_connect("/ws", headers=h, max_msg_size=1 << 20)
                await ws.send_json({"type": "join", "v": 1, "room": own, "role": "counselor"})
                await _recv(ws, "joined")
                for frame in frames:
                    if ws.closed:
                        break
                    try:
                        await ws.send_str(frame)
                    except (ConnectionError, aiohttp.ClientError):
                        break
                code = await _close_code(ws)
                counts[name if code == expected else "other_closes"] += 1
                await ws.close()
                await asyncio.sleep(0.1)

        reader = asyncio.create_task(reads())
        await asyncio.gather(
            relays(),
            abuser(rooms[1], [TOO_BIG], 4011, "too_big"),
            abuser(rooms[2], ['{"type": "ping"}'] * 400, 4009, "rate_limited"),
        )
        await asyncio.sleep(0.5)  # the last relays arrive
        await c.close()
        await k.close()
        await asyncio.wait_for(reader, 10)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    origin, cafile, email, password, seconds = sys.argv[1:6]
    asyncio.run(main(origin, cafile, email, password, float(seconds)))
