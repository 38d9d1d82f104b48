"""Counselor sessions (aiohttp-session, encrypted cookie), CSRF protection and login checks.

The cookie is ``__Host-ruang``: Secure, HttpOnly, SameSite=Lax, path ``/``, no domain. It holds
the counselor id, their session epoch (bumped on password change and disable), a random session
id made anew at login, the CSRF token, and the login and last-seen times for the absolute and
idle timeouts.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from aiohttp_session import setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from server.accounts import Counselor, get_by_id
from server.keys import CONFIG, ENGINE, SECRET
from server.secrets_store import derive_key

COOKIE_NAME = "__Host-ruang"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SEEN_REFRESH_SECONDS = 60.0
_COUNSELOR_CACHE = "ruang.counselor"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CsrfError(web.HTTPForbidden):
    def __init__(self) -> None:
        super().__init__(
            text='{"error": "csrf", "message": "missing or wrong CSRF token"}',
            content_type="application/json",
        )


def setup_auth(app: web.Application) -> None:
    config = app[CONFIG]
    key = derive_key(app[SECRET], "ruang/session-cookie")  # raw 32 bytes: Fernet key
    storage = EncryptedCookieStorage(
        key,
        cookie_name=COOKIE_NAME,
        secure=True,
        httponly=True,
        samesite="Lax",
        path="/",
        max_age=max(1, int(config.session_max_hours * 3600)),
    )
    setup_session(app, storage)
    app.middlewares.append(csrf_middleware)


def csrf_token(session: Session) -> str:
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def allowed_origins(request: web.Request) -> set[str]:
    config = request.app[CONFIG]
    if config.public_origins:
        return set(config.public_origins)
    return {f"{request.scheme}://{request.host}", f"https://{request.host}"}


def origin_allowed(request: web.Request, origin: str) -> bool:
    if request.app[CONFIG].public_origins:
        return origin.rstrip("/") in allowed_origins(request)
    try:
        return urlsplit(origin).netloc.lower() == request.host.lower()
    except ValueError:
        return False


_CSRF_EXEMPT = "_ruang_csrf_exempt"


def csrf_exempt(handler: Handler) -> Handler:
    """Mark a handler whose POSTs carry no ambient authority (anonymous, or a bearer token)
    and therefore need no CSRF token. A handler that also accepts the session cookie must
    call ``verify_csrf`` itself on that path. A foreign Origin is still refused."""
    setattr(handler, _CSRF_EXEMPT, True)
    return handler


def check_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    # Browsers send "Origin: null" for form posts under Referrer-Policy: no-referrer; the
    # token alone decides then. Any real origin must be ours.
    if origin not in (None, "null") and not origin_allowed(request, origin):
        raise CsrfError()


@web.middleware
def csrf_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Safe methods go straight on without a coroutine of their own: a WebSocket keeps every
    middleware frame it passed through alive as long as it is open."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return handler(request)
    return _csrf_checked(request, handler)


async def _csrf_checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    if getattr(request.match_info.handler, _CSRF_EXEMPT, False):
        check_origin(request)
        return await handler(request)
    await verify_csrf(request)
    return await handler(request)


async def verify_csrf(request: web.Request) -> None:
    """The Origin check and the session's CSRF token (header, or the form field)."""
    check_origin(request)
    session = await get_session(request)
    expected = session.get(CSRF_FIELD)
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None and request.content_type in {
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }:
        form = await request.post()
        value = form.get(CSRF_FIELD)
        supplied = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not supplied:
        raise CsrfError()
    if not hmac.compare_digest(expected.encode(), supplied.encode()):
        raise CsrfError()


async def start_login_session(request: web.Request, counselor: Counselor) -> Session:
    """A brand-new session (new id, new CSRF token): nothing from before login survives."""
    session = await new_session(request)
    now = time.time()
    session["uid"] = counselor.id
    session["ep"] = counselor.session_epoch
    session["sid"] = secrets.token_urlsafe(16)
    session["iat"] = now
    session["seen"] = now
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    request[_COUNSELOR_CACHE] = counselor
    return session


async def current_counselor(request: web.Request) -> Counselor | None:
    """The logged-in, active counselor, or None (expired, revoked or anonymous)."""
    if _COUNSELOR_CACHE in request:
        cached: Counselor | None = request[_COUNSELOR_CACHE]
        return cached
    counselor = await _load_counselor(request)
    request[_COUNSELOR_CACHE] = counselor
    return counselor


async def _load_counselor(request: web.Request) -> Counselor | None:
    session = await get_session(request)
    uid = session.get("uid")
    if not isinstance(uid, int):
        return None
    config = request.app[CONFIG]
    now = time.time()
    iat = session.get("iat", 0)
    seen = session.get("seen", 0)
    if not isinstance(iat, int | float) or not isinstance(seen, int | float):
        session.invalidate()
        return None
    if now - iat > config.session_max_hours * 3600 or now - seen > config.session_minutes * 60:
        session.invalidate()
        return None
    counselor = await get_by_id(request.app[ENGINE], uid)
    if counselor is None or not counselor.active or counselor.session_epoch != session.get("ep"):
        session.invalidate()
        return None
    if now - seen >= min(SEEN_REFRESH_SECONDS, config.session_minutes * 60 / 4):
        session["seen"] = now
    return counselor


async def require_counselor(request: web.Request) -> Counselor:
    counselor = await current_counselor(request)
    if counselor is None:
        if request.path.startswith("/api/"):
            raise web.HTTPUnauthorized(
                text='{"error": "login", "message": "log in first"}',
                content_type="application/json",
            )
        location = "/login"
        if request.method == "GET" and request.path != "/":
            location = "/login?" + "next=" + request.path
        raise web.HTTPSeeOther(location)
    return counselor
