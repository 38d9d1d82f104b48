"""TURN credentials for the call: pushed by the server over /ws (``call_servers``) when a call
may begin, and fetched from its ``POST /api/turn`` (docs/protocol.md, 13) when those run low.

To fetch, the counselor asks with its session cookie and CSRF token (after login); the client
with its resume token as ``Authorization: Bearer`` (once that token says "admitted"). A new peer
connection (each commit round) takes the current credentials, fetching first only when none are
fresh (an older server that pushes nothing, or a call longer than their lifetime). Nothing here
logs a credential or a token.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from signaling.messages import CallServers
from signaling.peer.config import IceServer
from signaling.peer.link import Link

log = logging.getLogger("ruang.peer.turn")

WAIT: Final = 5.0  # how long a new round waits for a fetch in flight
MARGIN: Final = 0.25  # refetch when less than this share of the lifetime is left
_CSRF_RE: Final = re.compile(r'data-csrf="([^"]+)"')


class TurnFetchError(Exception):
    """The server gave no credentials (the message names the status or error code only)."""


@dataclass(frozen=True, slots=True)
class Fetched:
    servers: tuple[IceServer, ...]
    ttl: float  # seconds the credential is valid from when it was fetched (0: no credential)


def parse_ice_servers(body: Any) -> Fetched:
    """``{"iceServers": [{"urls": [...], "username": .., "credential": ..}], "ttl": 600}``."""
    if not isinstance(body, dict) or not isinstance(body.get("iceServers"), list):
        raise TurnFetchError("the answer has no iceServers list")
    servers = []
    for entry in body["iceServers"]:
        if not isinstance(entry, dict):
            raise TurnFetchError("an iceServers entry is not an object")
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise TurnFetchError("an iceServers entry has no urls")
        username, credential = entry.get("username"), entry.get("credential")
        if not isinstance(username, str | None) or not isinstance(credential, str | None):
            raise TurnFetchError("an iceServers entry has a malformed credential")
        servers.append(IceServer(tuple(urls), username, credential))
    ttl = body.get("ttl", 0)
    if not isinstance(ttl, int | float) or ttl < 0:
        raise TurnFetchError("the answer's ttl is malformed")
    return Fetched(tuple(servers), float(ttl))


def from_message(msg: CallServers) -> Fetched:
    """A ``call_servers`` message as credentials (the fields were checked by ``parse``)."""
    servers = tuple(IceServer(e.urls, e.username, e.credential) for e in msg.ice_servers)
    return Fetched(servers, float(msg.ttl or 0))


def token_admitted(token: str | None) -> bool:
    """Whether a resume token says "admitted" (its payload is readable; only the server can
    check its MAC): ``base64url([1, room, participant, role, admitted, generation, expires])``."""
    if not token or token.count(".") != 1:
        return False
    body = token.split(".")[0]
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(payload, list) and len(payload) >= 5 and payload[4] == 1


async def csrf_token(http: aiohttp.ClientSession, link: Link) -> str:
    """The logged-in session's CSRF token, as the dashboard page carries it."""
    try:
        async with http.get(link.origin + "/", allow_redirects=False) as response:
            page = await response.text()
            status = response.status
    except aiohttp.ClientError as exc:
        raise TurnFetchError(f"cannot reach the server ({type(exc).__name__})") from None
    match = _CSRF_RE.search(page)
    if status != 200 or match is None:
        raise TurnFetchError(f"the dashboard answered {status} without a CSRF token")
    return match.group(1)


async def fetch_call_servers(
    http: aiohttp.ClientSession, link: Link, *, bearer: str | None = None, csrf: str | None = None
) -> Fetched:
    """``POST /api/turn`` with a resume token (``bearer``) or the session cookie (``csrf``)."""
    headers = {"Accept": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    try:
        async with http.post(
            link.origin + "/api/turn", headers=headers, allow_redirects=False
        ) as response:
            status = response.status
            text = await response.text()
    except aiohttp.ClientError as exc:
        raise TurnFetchError(f"cannot reach the server ({type(exc).__name__})") from None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if status != 200:
        code = body.get("error") if isinstance(body, dict) else None
        raise TurnFetchError(f"the server refused call credentials ({status} {code or ''})")
    return parse_ice_servers(body)


Fetch = Callable[[], Awaitable[Fetched | None]]  # None: not yet possible (e.g. not admitted)


class IceCredentials:
    """The ICE servers each new peer connection gets: fetched ones (while valid) + static ones."""

    def __init__(self, static: tuple[IceServer, ...], fetch: Fetch | None) -> None:
        self.static = static
        self._fetch = fetch
        self._servers: tuple[IceServer, ...] = ()
        self._fresh_until = 0.0  # monotonic
        self._expires = 0.0
        self._task: asyncio.Task[None] | None = None

    def _fresh(self) -> bool:
        return time.monotonic() < self._fresh_until

    def prefetch(self) -> None:
        """Start fetching unless the current credentials are fresh or a fetch is running."""
        if self._fetch is None or self._fresh() or (self._task and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert self._fetch is not None
        try:
            fetched = await self._fetch()
        except TurnFetchError as exc:
            log.warning("no TURN credentials: %s", exc)
            return
        except (TimeoutError, OSError) as exc:
            log.warning("no TURN credentials (%s)", type(exc).__name__)
            return
        if fetched is None:
            return
        self._keep(fetched, "fetched")

    def offer(self, fetched: Fetched) -> None:
        """Credentials the server pushed (``call_servers``): kept like fetched ones, so the
        next peer connection needs no fetch. A fetch in flight is left to finish. Ignored by a
        peer that takes no credentials from the server (no ``fetch``)."""
        if self._fetch is not None:
            self._keep(fetched, "pushed")

    def _keep(self, fetched: Fetched, how: str) -> None:
        now = time.monotonic()
        self._servers = fetched.servers
        if fetched.ttl > 0:
            self._expires = now + fetched.ttl
            self._fresh_until = now + fetched.ttl * (1 - MARGIN)
        else:  # nothing that expires (no TURN configured, or STUN only): keep for a while
            self._expires = now + 3600
            self._fresh_until = now + 300
        relays = sum(
            1 for s in fetched.servers for u in s.urls if u.startswith(("turn:", "turns:"))
        )
        log.info("call ICE servers %s (%d TURN URLs)", how, relays)

    async def servers(self) -> tuple[IceServer, ...]:
        """For a new peer connection: waits (at most ``WAIT`` s) for a fetch in flight."""
        self.prefetch()
        task = self._task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), WAIT)
        return self.current()

    @property
    def fresh(self) -> bool:
        """Credentials are in (pushed or fetched) and not running low, or none are wanted."""
        return self._fetch is None or self._fresh()

    @property
    def ready(self) -> bool:
        """No fetch in flight: ``current()`` is what a new peer connection would get now."""
        return self._task is None or self._task.done()

    def current(self) -> tuple[IceServer, ...]:
        """The servers as they stand (valid fetched ones + static ones), without fetching."""
        fetched = self._servers if time.monotonic() < self._expires else ()
        return fetched + self.static

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
