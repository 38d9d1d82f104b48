"""HTML pages: login, logout, the dashboard, the counselor's room page and the client page."""

from __future__ import annotations

import logging

from aiohttp import web

from server.accounts import authenticate, normalise_email
from server.audit import AuditEvent, record
from server.auth import COOKIE_NAME, current_counselor, require_counselor, start_login_session
from server.keys import CONFIG, ENGINE, LOGIN_THROTTLE, METRICS
from server.netutil import client_ip
from server.render import render
from server.rooms_store import get_open_room
from server.throttle import Throttled
from signaling.crypto import is_room_id

log = logging.getLogger("ruang.pages")
routes = web.RouteTableDef()


def _safe_next(value: str) -> str:
    # Only local paths: never "//host" or a scheme.
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


@routes.get("/login", name="login")
async def login_form(request: web.Request) -> web.Response:
    if await current_counselor(request) is not None:
        raise web.HTTPSeeOther("/")
    return await render(request, "login.html", next=_safe_next(request.query.get("next", "/")))


@routes.post("/login")
async def login_submit(request: web.Request) -> web.Response:
    form = await request.post()
    email = str(form.get("email", ""))[:320]
    password = str(form.get("password", ""))
    next_path = _safe_next(str(form.get("next", "/")))
    ip = client_ip(request)
    try:
        account_key = normalise_email(email)
    except ValueError:
        account_key = "(invalid)"
    throttle = request.app[LOGIN_THROTTLE]
    metrics = request.app[METRICS]
    engine = request.app[ENGINE]
    try:
        throttle.check(account_key, ip)
    except Throttled as exc:
        metrics.inc("ruang_logins_total", result="throttled")
        await record(engine, AuditEvent.LOGIN_THROTTLED, ip=ip)
        response = await render(
            request, "login.html", status=429, next=next_path, error="login.throttled", email=email
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    counselor = await authenticate(engine, email, password)
    if counselor is None:
        throttle.failure(account_key, ip)
        metrics.inc("ruang_logins_total", result="failed")
        await record(engine, AuditEvent.LOGIN_FAILED, ip=ip)
        return await render(
            request, "login.html", status=401, next=next_path, error="login.failed", email=email
        )
    throttle.success(account_key)
    await start_login_session(request, counselor)
    metrics.inc("ruang_logins_total", result="ok")
    await record(engine, AuditEvent.LOGIN, counselor_id=counselor.id, ip=ip)
    raise web.HTTPSeeOther(next_path)


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.Response:
    from aiohttp_session import get_session

    counselor = await current_counselor(request)
    session = await get_session(request)
    session.invalidate()
    if counselor is not None:
        await record(
            request.app[ENGINE], AuditEvent.LOGOUT, counselor_id=counselor.id, ip=client_ip(request)
        )
    raise web.HTTPSeeOther("/login")


@routes.get("/", name="dashboard")
async def dashboard(request: web.Request) -> web.Response:
    counselor = await require_counselor(request)
    return await render(
        request,
        "dashboard.html",
        counselor=counselor,
        session_length=request.app[CONFIG].session_length_minutes,
    )


@routes.get("/rooms/{room_id}", name="room")
async def counselor_room(request: web.Request) -> web.Response:
    counselor = await require_counselor(request)
    room_id = request.match_info["room_id"]
    room = await get_open_room(request.app[ENGINE], room_id) if is_room_id(room_id) else None
    if room is None or room.counselor_id != counselor.id:
        return await render(request, "not_found.html", status=404)
    return await render(
        request,
        "room.html",
        counselor=counselor,
        room=room,
        session_length=request.app[CONFIG].session_length_minutes,
    )


@routes.get("/r/{room_id}", name="client")
async def client_page(request: web.Request) -> web.Response:
    """The client's page. Unknown, closed and open rooms get byte-for-byte the same page
    (whether a room exists is learnt only by knocking), with one exception that tells nobody
    anything: the logged-in counselor who owns this open room gets a page whose script moves
    the key from the fragment into this browser's storage and goes on to the room page (so
    links made by ``ruang room add`` work here). Only then is the database consulted; an
    anonymous request touches neither the database nor a session cookie."""
    room_id = request.match_info["room_id"]
    if not is_room_id(room_id):
        return await render(request, "not_found.html", status=404, with_session=False)
    if await _owns(request, room_id):
        return await render(request, "owner_redirect.html", room_id=room_id, with_session=False)
    return await render(request, "client.html", room_id=room_id, with_session=False)


async def _owns(request: web.Request, room_id: str) -> bool:
    if COOKIE_NAME not in request.cookies:
        return False
    counselor = await current_counselor(request)
    if counselor is None:
        return False
    room = await get_open_room(request.app[ENGINE], room_id)
    return room is not None and room.counselor_id == counselor.id


@routes.get("/bye", name="neutral")
async def neutral_page(request: web.Request) -> web.Response:
    """Where "Quick exit" lands: a page that says nothing about counseling."""
    return await render(request, "neutral.html", with_session=False)
