"""HTTP and WebSocket plumbing: TLS, the counselor's login, opening ``/ws`` and joining."""

from __future__ import annotations

import logging
import re
import ssl
from typing import Final

import aiohttp
from yarl import URL

from signaling.messages import Join, dump
from signaling.peer.errors import LoginError, SignalingError
from signaling.peer.link import Link

log = logging.getLogger("ruang.peer.transport")

COOKIE_NAME: Final = "__Host-ruang"
_CSRF_RE: Final = re.compile(r'name="csrf" value="([^"]+)"')
HTTP_TIMEOUT: Final = 15.0
WS_HEARTBEAT: Final = 15.0  # our own pings: a half-dead link is noticed within ~2 of these
WS_MAX_MESSAGE: Final = 1 << 20


def tls_context(insecure: bool) -> ssl.SSLContext | bool:
    """False (no verification) with ``--insecure``; else the system's trust store, which
    honours ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` (how tests pass a development CA)."""
    if insecure:
        return False
    return ssl.create_default_context()


def make_http(insecure: bool) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=tls_context(insecure))
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.CookieJar(),
        timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
    )


async def login(http: aiohttp.ClientSession, link: Link, email: str, password: str) -> None:
    """Log in like the login page does: GET the form's CSRF token, POST the form, keep the
    session cookie. Raises ``LoginError``."""
    url = link.origin + "/login"
    try:
        async with http.get(url, allow_redirects=False) as response:
            page = await response.text()
            status = response.status
        match = _CSRF_RE.search(page)
        if status != 200 or match is None:
            raise LoginError(f"the login page answered {status} without a form")
        form = {"email": email, "password": password, "csrf": match.group(1), "next": "/"}
        async with http.post(url, data=form, allow_redirects=False) as response:
            await response.read()
            status = response.status
            retry_after = response.headers.get("Retry-After", "")
    except aiohttp.ClientError as exc:
        raise LoginError(f"cannot reach the server to log in ({type(exc).__name__})") from None
    if status == 429:
        raise LoginError(f"too many failed logins; try again in {retry_after or 'a while'} s")
    if status == 401:
        raise LoginError("wrong email or password")
    if status not in (302, 303):
        raise LoginError(f"the login answered {status}")
    if COOKIE_NAME not in http.cookie_jar.filter_cookies(URL(link.origin)):
        raise LoginError("the login set no session cookie")
    log.info("logged in as counselor")


async def open_socket(
    http: aiohttp.ClientSession, link: Link, join: Join
) -> aiohttp.ClientWebSocketResponse:
    """Connect to ``/ws`` with the link's origin and send ``join``. Raises ``SignalingError``."""
    try:
        ws = await http.ws_connect(
            link.ws_url,
            origin=link.origin,
            heartbeat=WS_HEARTBEAT,
            max_msg_size=WS_MAX_MESSAGE,
            compress=0,
            autoping=True,
            autoclose=False,
        )
    except aiohttp.WSServerHandshakeError as exc:
        raise SignalingError(f"the server refused the WebSocket ({exc.status})") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise SignalingError(f"cannot connect to the server ({type(exc).__name__})") from None
    try:
        await ws.send_str(dump(join))
    except (aiohttp.ClientError, OSError) as exc:
        await ws.close()
        raise SignalingError(f"the connection dropped at once ({type(exc).__name__})") from None
    return ws
