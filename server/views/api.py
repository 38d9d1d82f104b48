"""The dashboard's JSON API (session cookie + X-CSRF-Token on every POST)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from server.auth import require_counselor
from server.keys import CONFIG, ENGINE, METRICS
from server.netutil import client_ip
from server.rooms_store import (
    BadLabel,
    RoomNotFound,
    TooManyRooms,
    close_room,
    create_room,
    list_rooms,
    new_link,
    rename_room,
)
from server.ws import close_room_sockets
from signaling.crypto import is_room_id

routes = web.RouteTableDef()
MAX_BODY = 4096


def _error(status: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    return status(
        text=json.dumps({"error": code, "message": message}), content_type="application/json"
    )


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _error(web.HTTPRequestEntityTooLarge, "too_large", "request body too large")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise _error(web.HTTPRequestEntityTooLarge, "too_large", "request body too large")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise _error(web.HTTPBadRequest, "bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _error(web.HTTPBadRequest, "bad_json", "the body must be a JSON object")
    return data


def _label(data: dict[str, Any]) -> str:
    label = data.get("label", "")
    if not isinstance(label, str):
        raise _error(web.HTTPBadRequest, "bad_label", "label must be a string")
    return label


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not is_room_id(room_id):
        raise _error(web.HTTPNotFound, "not_found", "no such room")
    return room_id


@routes.get("/api/rooms")
async def api_list(request: web.Request) -> web.Response:
    counselor = await require_counselor(request)
    rooms = await list_rooms(request.app[ENGINE], counselor.id)
    return web.json_response({"rooms": [r.as_json() for r in rooms]})


@routes.post("/api/rooms")
async def api_create(request: web.Request) -> web.Response:
    counselor = await require_counselor(request)
    data = await _body(request)
    try:
        room = await create_room(
            request.app[ENGINE],
            counselor.id,
            _label(data),
            request.app[CONFIG].limits.rooms_per_counselor,
            ip=client_ip(request),
        )
    except BadLabel as exc:
        raise _error(web.HTTPBadRequest, "bad_label", str(exc)) from None
    except TooManyRooms as exc:
        raise _error(web.HTTPConflict, "too_many_rooms", str(exc)) from None
    request.app[METRICS].inc("ruang_rooms_created_total")
    return web.json_response(room.as_json(), status=201)


@routes.post("/api/rooms/{room_id}/rename")
async def api_rename(request: web.Request) -> web.Response:
    counselor = await require_counselor(request)
    data = await _body(request)
    try:
        room = await rename_room(
            request.app[ENGINE], counselor.id, _room_id(request), _label(data), client_ip(request)
        )
    except BadLabel as exc:
        raise _error(web.HTTPBadRequest, "bad_label", str(exc)) from None
    except RoomNotFound:
        raise _error(web.HTTPNotFound, "not_found", "no such room") from None
    return web.json_response(room.as_json())


@routes.post("/api/rooms/{room_id}/close")
async def api_close(request: web.Request) -> web.Response:
    counselor = await require_counselor(request)
    try:
        room = await close_room(
            request.app[ENGINE], counselor.id, _room_id(request), client_ip(request)
        )
    except RoomNotFound:
        raise _error(web.HTTPNotFound, "not_found", "no such room") from None
    await close_room_sockets(request.app, room.id)
    return web.json_response(room.as_json())


@routes.post("/api/rooms/{room_id}/new-link")
async def api_new_link(request: web.Request) -> web.Response:
    counselor = await require_counselor(request)
    try:
        room = await new_link(
            request.app[ENGINE], counselor.id, _room_id(request), client_ip(request)
        )
    except RoomNotFound:
        raise _error(web.HTTPNotFound, "not_found", "no such room") from None
    old_id = request.match_info["room_id"]
    await close_room_sockets(request.app, old_id)
    return web.json_response({**room.as_json(), "previous_id": old_id})
