"""The floor: the least an aiohttp relay can do, speaking PeerJS's wire protocol.

``GET /peerjs?key=&id=&token=`` upgrades, answers ``{"type":"OPEN"}``, and every later frame is
parsed, stamped with ``src`` and forwarded to ``dst`` (``HEARTBEAT`` is swallowed). No rooms, no
checks, no limits, no queue: what Ruang does on top of this is the price of its rules.

    python -m bench.bare_relay --port 9100
"""

from __future__ import annotations

import argparse
import json

from aiohttp import WSMsgType, web

PEERS: web.AppKey[dict[str, web.WebSocketResponse]] = web.AppKey("peers", dict)
_OPEN = json.dumps({"type": "OPEN"})


async def peerjs(request: web.Request) -> web.StreamResponse:
    peer_id = request.query.get("id", "")
    if not peer_id or request.query.get("key") != "peerjs" or not request.query.get("token"):
        raise web.HTTPBadRequest()
    peers = request.app[PEERS]
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    peers[peer_id] = ws
    await ws.send_str(_OPEN)
    try:
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                break
            msg = json.loads(frame.data)
            if msg.get("type") == "HEARTBEAT":
                continue
            msg["src"] = peer_id
            target = peers.get(msg.get("dst", ""))
            if target is not None:
                await target.send_str(json.dumps(msg))
    finally:
        if peers.get(peer_id) is ws:
            del peers[peer_id]
    return ws


def make_app() -> web.Application:
    app = web.Application()
    app[PEERS] = {}
    app.router.add_get("/peerjs", peerjs)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bare_relay")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
