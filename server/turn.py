"""TURN credentials (coturn's ``use-auth-secret`` REST scheme) and their HTTP endpoints.

A credential is ``username = "<expiry, Unix seconds>:<random id>"`` and
``credential = base64(HMAC-SHA1(RUANG_TURN_SECRET, username))``: coturn, holding the same
``static-auth-secret``, recomputes the password and refuses a username whose expiry has passed.
coturn checks the expiry when an allocation is made, so an allocation made in time lives on for
the whole call; a new peer connection (a rebuild) needs a fresh credential.

Endpoints (docs/protocol.md, section 13):

- ``POST /api/turn``: call credentials (``RUANG_TURN_TTL_SECONDS``, default 600 s), only for a
  logged-in counselor (session cookie + ``X-CSRF-Token``) or an admitted participant proven by
  its current resume token (``Authorization: Bearer <token>``). A waiting client gets 403.
- ``POST /api/precheck/turn``: the pre-call check's credential (``RUANG_PRECHECK_TURN_TTL_SECONDS``,
  default 60 s), anonymous, rate-limited per IP.

Nothing here logs a credential, a token, a room id or a participant id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from server.auth import csrf_exempt, require_counselor, verify_csrf
from server.config import TURN_SCHEMES, Config
from server.keys import CONFIG, ENGINE, METRICS, SECRET
from server.metrics import Metrics
from server.netutil import client_ip
from server.ratelimit import RateLimit
from server.rooms_store import get_open_room
from server.secrets_store import derive_key
from signaling import tokens
from signaling.hub import CallServersFor
from signaling.messages import CallServers, IceServerInfo, dump

log = logging.getLogger("ruang.turn")
routes = web.RouteTableDef()

ID_BYTES = 9  # 72 random bits, 12 base64url characters (never a ":")


@dataclass(frozen=True, slots=True)
class TurnCredential:
    username: str
    credential: str
    expires: int  # Unix seconds


def make_credential(
    secret: str, ttl: int, *, now: float | None = None, separator: str = ":"
) -> TurnCredential:
    """A coturn REST credential valid for ``ttl`` seconds from ``now``."""
    expires = int(time.time() if now is None else now) + ttl
    username = f"{expires}{separator}{secrets.token_urlsafe(ID_BYTES)}"
    return TurnCredential(username, password_for(secret, username), expires)


def password_for(secret: str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)), as coturn computes it for ``use-auth-secret``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def ice_servers(
    urls: tuple[str, ...], credential: TurnCredential | None
) -> list[dict[str, object]]:
    """The ``RTCIceServer`` list for ``RUANG_TURN_URLS``: one entry with every turn:/turns: URL
    and the credential, one without credentials for any stun:/stuns: URLs. Empty when no URL
    is configured (or no credential could be made for the TURN ones)."""
    turn = [u for u in urls if u.startswith(TURN_SCHEMES)]
    stun = [u for u in urls if not u.startswith(TURN_SCHEMES)]
    servers: list[dict[str, object]] = []
    if turn and credential is not None:
        servers.append(
            {"urls": turn, "username": credential.username, "credential": credential.credential}
        )
    if stun:
        servers.append({"urls": stun})
    return servers


def turn_configured(config: Config) -> bool:
    return bool(config.turn_urls)


def answer(config: Config, ttl: int) -> dict[str, object]:
    """The endpoints' JSON: ``{"iceServers": []}`` when nothing is configured, else the list
    with ``ttl`` (seconds) and ``expires`` (Unix seconds) of its credential."""
    if not turn_configured(config):
        return {"iceServers": []}
    has_turn = any(u.startswith(TURN_SCHEMES) for u in config.turn_urls)
    credential = make_credential(config.turn_secret, ttl) if has_turn else None
    body: dict[str, object] = {"iceServers": ice_servers(config.turn_urls, credential)}
    if credential is not None:
        body["ttl"] = ttl
        body["expires"] = credential.expires
    return body


def call_servers_message(config: Config, metrics: Metrics) -> CallServersFor:
    """What the hub pushes over /ws when a call may begin (``call_servers``, docs/protocol.md
    section 13): the body ``POST /api/turn`` would answer, with a fresh credential each time."""
    ttl = config.limits.turn_ttl_seconds

    def make() -> str:
        body = answer(config, ttl)
        entries = cast(list[dict[str, Any]], body["iceServers"])
        if entries:
            metrics.inc("ruang_turn_credentials_total", kind="pushed")
        servers = tuple(
            IceServerInfo(
                urls=tuple(e["urls"]), username=e.get("username"), credential=e.get("credential")
            )
            for e in entries
        )
        return dump(
            CallServers(
                servers,
                ttl=cast(int | None, body.get("ttl")),
                expires=cast(int | None, body.get("expires")),
            )
        )

    return make


def _error(
    status: type[web.HTTPException],
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> web.HTTPException:
    return status(
        text=json.dumps({"error": code, "message": message}),
        content_type="application/json",
        headers=headers,
    )


# --- the state --------------------------------------------------------------------------------


class TurnState:
    """The key resume tokens are checked with, and the pre-call credential's rate limit."""

    def __init__(self, config: Config, secret: bytes) -> None:
        self.token_key = derive_key(secret, "ruang/resume")  # the hub's key (server.ws)
        self.precheck_limit = RateLimit(
            config.limits.precheck_turn_per_ip, config.limits.precheck_window_seconds
        )
        # Per counselor or participant: each credential has a fresh username, so without this
        # one caller could mint enough of them to get around coturn's per-user quotas.
        limits = config.limits
        self.call_limit = RateLimit(limits.turn_per_caller, limits.turn_window_seconds)


TURN_STATE: web.AppKey[TurnState] = web.AppKey("ruang_turn_state", TurnState)


# --- call credentials -------------------------------------------------------------------------


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _error(
            web.HTTPUnauthorized,
            "token",
            "use Authorization: Bearer <resume token>",
            {"WWW-Authenticate": "Bearer"},
        )
    return value.strip()


async def _check_participant(request: web.Request, token: str) -> str:
    """An admitted participant of an open room, with a token of the room's current generation;
    returns the rate-limit key of that participant."""
    state = request.app[TURN_STATE]
    try:
        claims = tokens.decode(state.token_key, token, now=time.time())
    except tokens.TokenError:
        request.app[METRICS].inc("ruang_turn_refused_total", reason="token")
        raise _error(
            web.HTTPUnauthorized,
            "token",
            "the resume token is missing, invalid or expired",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    if not claims.admitted:
        request.app[METRICS].inc("ruang_turn_refused_total", reason="not_admitted")
        raise _error(
            web.HTTPForbidden,
            "not_admitted",
            "call credentials are for admitted participants only; the connection check "
            "uses POST /api/precheck/turn",
        )
    room = await get_open_room(request.app[ENGINE], claims.room)
    if room is None or room.generation != claims.generation:
        request.app[METRICS].inc("ruang_turn_refused_total", reason="revoked")
        raise _error(
            web.HTTPForbidden,
            "revoked",
            "this resume token is no longer current (the room was closed, or its session "
            "ended or changed); use the newest token the server sent",
        )
    return f"p:{claims.room}:{claims.participant}"


@routes.post("/api/turn")
@csrf_exempt  # the cookie path checks the CSRF token itself; a bearer token is no ambient authority
async def call_credentials(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    token = _bearer(request)
    if token is not None:
        caller = await _check_participant(request, token)
        kind = "participant"
    else:
        counselor = await require_counselor(request)  # 401 {"error": "login"} otherwise
        await verify_csrf(request)  # 403 {"error": "csrf"} otherwise
        caller, kind = f"c:{counselor.id}", "counselor"
    if turn_configured(config):
        wait = request.app[TURN_STATE].call_limit.take(caller)
        if wait:
            request.app[METRICS].inc("ruang_turn_refused_total", reason="rate_limited")
            raise _error(
                web.HTTPTooManyRequests,
                "rate_limited",
                f"too many call credentials; try again in {wait} s",
                {"Retry-After": str(wait)},
            )
    body = answer(config, config.limits.turn_ttl_seconds)
    if body["iceServers"]:
        request.app[METRICS].inc("ruang_turn_credentials_total", kind=kind)
    return web.json_response(body)


# --- the pre-call check's credential ----------------------------------------------------------


@routes.post("/api/precheck/turn")
@csrf_exempt  # anonymous: nothing to forge
async def precheck_credentials(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if not turn_configured(config):
        return web.json_response({"iceServers": []})
    wait = request.app[TURN_STATE].precheck_limit.take(client_ip(request))
    if wait:
        request.app[METRICS].inc("ruang_turn_refused_total", reason="rate_limited")
        raise _error(
            web.HTTPTooManyRequests,
            "rate_limited",
            f"too many connection checks from this address; try again in {wait} s",
            {"Retry-After": str(wait)},
        )
    request.app[METRICS].inc("ruang_turn_credentials_total", kind="precheck")
    return web.json_response(answer(config, config.limits.precheck_turn_ttl_seconds))


def setup_turn(app: web.Application) -> None:
    """Register the TURN credential endpoints (``app[SECRET]`` and ``app[CONFIG]`` first)."""
    app[TURN_STATE] = TurnState(app[CONFIG], app[SECRET])
    metrics = app[METRICS]
    metrics.describe("ruang_turn_credentials_total", "counter", "TURN credentials issued by kind")
    metrics.describe("ruang_turn_refused_total", "counter", "TURN credential requests refused")
    app.add_routes(routes)
