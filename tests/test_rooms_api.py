"""Rooms through the dashboard's JSON API and the CLI, on the real server."""

from __future__ import annotations

import base64
import re

import pytest

from tests.support import ServerProcess, api_token, login

ROOM_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


def _decode(room_id: str) -> bytes:
    return base64.urlsafe_b64decode(room_id + "==")


@pytest.mark.both_databases
async def test_room_create_list_rename_close(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    async with server.client() as http:
        await login(http, "ana@example.org")
        h = {"X-CSRF-Token": await api_token(http)}
        made = []
        for label in ("A.", "B.", ""):
            async with http.post("/api/rooms", json={"label": label}, headers=h) as r:
                assert r.status == 201
                made.append(await r.json())
        ids = [m["id"] for m in made]
        assert len(set(ids)) == 3
        for room_id in ids:
            assert ROOM_ID.match(room_id)
            assert len(_decode(room_id)) == 16, "128-bit room ids"
        async with http.get("/api/rooms") as r:
            listed = (await r.json())["rooms"]
        assert sorted(x["id"] for x in listed) == sorted(ids)

        async with http.post(
            f"/api/rooms/{ids[0]}/rename", json={"label": "  R.   S. "}, headers=h
        ) as r:
            assert r.status == 200
            assert (await r.json())["label"] == "R. S."
        async with http.post(
            f"/api/rooms/{ids[0]}/rename", json={"label": "x" * 81}, headers=h
        ) as r:
            assert r.status == 400 and (await r.json())["error"] == "bad_label"
        async with http.post(f"/api/rooms/{ids[0]}/rename", data=b"{nope", headers=h) as r:
            assert r.status == 400 and (await r.json())["error"] == "bad_json"

        async with http.post(f"/api/rooms/{ids[1]}/close", headers=h) as r:
            assert r.status == 200 and (await r.json())["closed"] is True
        async with http.get("/api/rooms") as r:
            listed = (await r.json())["rooms"]
        assert sorted(x["id"] for x in listed) == sorted([ids[0], ids[2]])
        assert {x["id"]: x["label"] for x in listed}[ids[0]] == "R. S."
        # A closed room cannot be renamed, closed again or relinked: it is simply gone.
        for action in ("close", "new-link"):
            async with http.post(f"/api/rooms/{ids[1]}/{action}", headers=h) as r:
                assert r.status == 404


async def test_new_link_replaces_the_id(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    async with server.client() as http:
        await login(http, "ana@example.org")
        h = {"X-CSRF-Token": await api_token(http)}
        async with http.post("/api/rooms", json={"label": "N."}, headers=h) as r:
            old = (await r.json())["id"]
        async with http.post(f"/api/rooms/{old}/new-link", headers=h) as r:
            assert r.status == 200
            fresh = await r.json()
        assert fresh["id"] != old and ROOM_ID.match(fresh["id"])
        assert fresh["label"] == "N."
        async with http.get("/api/rooms") as r:
            assert [x["id"] for x in (await r.json())["rooms"]] == [fresh["id"]]
        async with http.post(f"/api/rooms/{old}/rename", json={"label": "z"}, headers=h) as r:
            assert r.status == 404


async def test_counselors_cannot_touch_each_others_rooms(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    server.add_counselor("budi@example.org")
    async with server.client() as ana, server.client() as budi:
        await login(ana, "ana@example.org")
        await login(budi, "budi@example.org")
        ha = {"X-CSRF-Token": await api_token(ana)}
        hb = {"X-CSRF-Token": await api_token(budi)}
        async with ana.post("/api/rooms", json={}, headers=ha) as r:
            room = (await r.json())["id"]
        for action in ("close", "new-link", "rename"):
            async with budi.post(
                f"/api/rooms/{room}/{action}", json={"label": "x"}, headers=hb
            ) as r:
                assert r.status == 404
        async with budi.get("/api/rooms") as r:
            assert (await r.json())["rooms"] == []
        async with budi.get(f"/rooms/{room}") as r:
            assert r.status == 404
        async with ana.get(f"/rooms/{room}") as r:
            assert r.status == 200


async def test_unknown_and_closed_rooms_answer_identically(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    async with server.client() as http:
        await login(http, "ana@example.org")
        h = {"X-CSRF-Token": await api_token(http)}
        async with http.post("/api/rooms", json={}, headers=h) as r:
            closed = (await r.json())["id"]
        async with http.post("/api/rooms", json={}, headers=h) as r:
            open_room = (await r.json())["id"]
        async with http.post(f"/api/rooms/{closed}/close", headers=h) as r:
            assert r.status == 200
    unknown = "A" * 21 + "g"
    answers = []
    for room_id in (closed, unknown, open_room):
        async with server.client() as anonymous, anonymous.get(f"/r/{room_id}?lang=en") as r:
            body = (await r.text()).replace(room_id, "ROOM")
            headers = {
                k: v for k, v in r.headers.items() if k.lower() not in {"date", "content-length"}
            }
            answers.append((r.status, headers, body))
            assert "__Host-ruang" not in r.cookies, "clients get no session cookie"
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 200
    async with server.client() as anonymous:
        async with anonymous.get("/r/not-a-room-id") as r:
            assert r.status == 404


async def test_too_many_rooms(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = make_server(RUANG_MAX_ROOMS_PER_COUNSELOR="2")
    await server.start()
    try:
        server.add_counselor("ana@example.org")
        async with server.client() as http:
            await login(http, "ana@example.org")
            h = {"X-CSRF-Token": await api_token(http)}
            for _ in range(2):
                async with http.post("/api/rooms", json={}, headers=h) as r:
                    assert r.status == 201
            async with http.post("/api/rooms", json={}, headers=h) as r:
                assert r.status == 409 and (await r.json())["error"] == "too_many_rooms"
    finally:
        await server.stop()


@pytest.mark.both_databases
def test_cli_room_add_prints_a_full_link(tmp_path, dev_cert, database_env, request) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(tmp_path, *dev_cert, extra_env=database_env)
    server.add_counselor("ana@example.org")
    result = server.cli(
        "room", "add", "ana@example.org", "--label", "CLI", "--origin", "https://ruang.example.org/"
    )
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    match = re.fullmatch(
        r"https://ruang\.example\.org/r/([A-Za-z0-9_-]{22})#([A-Za-z0-9_-]{43})", link
    )
    assert match, link
    assert len(base64.urlsafe_b64decode(match.group(2) + "=")) == 32
    # The key is printed once and stored nowhere (the database's files, its log included).
    stored = tmp_path / "data"
    if database_env:  # PostgreSQL: its cluster's files, once everything is written out
        postgres = request.getfixturevalue("postgres")
        postgres.sql("CHECKPOINT")
        stored = postgres.data_dir
    data = b"".join(p.read_bytes() for p in stored.rglob("*") if p.is_file())
    assert match.group(2).encode() not in data
    assert match.group(1).encode() in data
    unknown = server.cli("room", "add", "nobody@example.org")
    assert unknown.returncode == 1 and "no counselor" in unknown.stderr
