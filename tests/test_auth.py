"""Accounts and sessions against the real server on a real socket."""

from __future__ import annotations

import re

import aiohttp
import pytest
from yarl import URL

from tests.support import PASSWORD, ServerProcess, api_token, csrf_from, login

COOKIE = "__Host-ruang"


def _set_cookie_headers(response: aiohttp.ClientResponse) -> list[str]:
    return list(response.headers.getall("Set-Cookie", []))


async def test_login_logout_and_cookie_attributes(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    async with server.client() as http:
        async with http.get("/", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith("/login")
        response = await login(http, "ana@example.org")
        assert response.status == 303
        assert response.headers["Location"] == "/"
        cookies = [c for c in _set_cookie_headers(response) if c.startswith(COOKIE + "=")]
        assert cookies, "login sets the session cookie"
        attrs = [a.strip().lower() for a in cookies[-1].split(";")]
        assert "secure" in attrs and "httponly" in attrs and "samesite=lax" in attrs
        assert "path=/" in attrs
        assert not any(a.startswith("domain=") for a in attrs)
        async with http.get("/") as r:
            assert r.status == 200
            assert "ana@example.org" in await r.text()
        token = await api_token(http)
        async with http.post("/logout", data={"csrf": token}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        async with http.get("/", allow_redirects=False) as r:
            assert r.status == 303
        async with http.get("/api/rooms") as r:
            assert r.status == 401
            assert (await r.json())["error"] == "login"


async def test_wrong_password_and_unknown_email_get_the_same_generic_answer(
    server: ServerProcess,
) -> None:
    server.add_counselor("budi@example.org")
    async with server.client(headers={"Accept-Language": "en"}) as http:
        wrong = await login(http, "budi@example.org", "not the password")
        wrong_text = await wrong.text()
        unknown = await login(http, "nobody@example.org", "not the password")
        unknown_text = await unknown.text()
    assert wrong.status == unknown.status == 401
    assert "Email or password is incorrect." in wrong_text
    assert "Email or password is incorrect." in unknown_text
    # Nothing in the answer says which of the two was wrong.
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", wrong_text) == strip.sub("", unknown_text).replace(
        "nobody@example.org", "budi@example.org"
    )


async def test_session_id_changes_at_login(server: ServerProcess) -> None:
    server.add_counselor("citra@example.org")
    async with server.client() as http:
        before_token = await csrf_from(http, "/login")
        before = http.cookie_jar.filter_cookies(URL(server.origin))[COOKIE].value
        response = await login(http, "citra@example.org")
        assert response.status == 303
        after = http.cookie_jar.filter_cookies(URL(server.origin))[COOKIE].value
        after_token = await api_token(http)
    assert before != after
    assert before_token != after_token


async def test_throttling_per_account_leaves_other_accounts_alone(server: ServerProcess) -> None:
    server.add_counselor("dewi@example.org")
    server.add_counselor("eko@example.org")
    async with server.client() as http:
        for _ in range(10):
            r = await login(http, "dewi@example.org", "wrong password!")
            assert r.status == 401
        r = await login(http, "dewi@example.org", PASSWORD)
        assert r.status == 429, "the right password is refused too once throttled"
        assert int(r.headers["Retry-After"]) > 0
    async with server.client() as other:
        r = await login(other, "eko@example.org", PASSWORD)
        assert r.status == 303, "another account from the same IP is unaffected"


async def test_throttling_per_ip(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = make_server(RUANG_LOGIN_MAX_PER_IP="5")
    await server.start()
    server.add_counselor("fajar@example.org")
    try:
        async with server.client() as http:
            for i in range(5):
                r = await login(http, f"guess{i}@example.org", "wrong password!")
                assert r.status == 401
            r = await login(http, "fajar@example.org", PASSWORD)
            assert r.status == 429
            assert int(r.headers["Retry-After"]) > 0
    finally:
        await server.stop()


async def test_csrf_is_required_on_every_state_changing_request(server: ServerProcess) -> None:
    server.add_counselor("gita@example.org")
    async with server.client() as http:
        # Login itself needs the token (no login CSRF).
        await csrf_from(http, "/login")
        async with http.post(
            "/login",
            data={"email": "gita@example.org", "password": PASSWORD},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
        assert (await login(http, "gita@example.org")).status == 303
        token = await api_token(http)
        async with http.post("/api/rooms", json={"label": "x"}) as r:
            assert r.status == 403
            assert (await r.json())["error"] == "csrf"
        async with http.post(
            "/api/rooms", json={"label": "x"}, headers={"X-CSRF-Token": "forged"}
        ) as r:
            assert r.status == 403
        async with http.post(
            "/api/rooms",
            json={"label": "x"},
            headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
        ) as r:
            assert r.status == 403, "a cross-site Origin is refused even with a token"
        async with http.post("/logout", allow_redirects=False) as r:
            assert r.status == 403
        async with http.post(
            "/api/rooms", json={"label": "x"}, headers={"X-CSRF-Token": token}
        ) as r:
            assert r.status == 201
        async with http.get("/api/rooms") as r:
            assert len((await r.json())["rooms"]) == 1


@pytest.mark.both_databases
async def test_restart_keeps_sessions_and_data(server: ServerProcess) -> None:
    server.add_counselor("hana@example.org")
    async with server.client() as http:
        assert (await login(http, "hana@example.org")).status == 303
        token = await api_token(http)
        async with http.post(
            "/api/rooms", json={"label": "H.A."}, headers={"X-CSRF-Token": token}
        ) as r:
            room = await r.json()
        await server.stop()
        await server.start()
        async with http.get("/api/rooms") as r:
            assert r.status == 200, "the session survived the restart"
            rooms = (await r.json())["rooms"]
    assert [x["id"] for x in rooms] == [room["id"]]
    assert rooms[0]["label"] == "H.A."


async def test_password_change_and_disable_end_sessions(server: ServerProcess) -> None:
    server.add_counselor("indah@example.org")
    async with server.client() as http:
        assert (await login(http, "indah@example.org")).status == 303
        result = server.cli(
            "counselor",
            "passwd",
            "indah@example.org",
            "--password-stdin",
            stdin="a brand new password\n",
        )
        assert result.returncode == 0, result.stderr
        async with http.get("/api/rooms") as r:
            assert r.status == 401
        assert (await login(http, "indah@example.org")).status == 401
        assert (await login(http, "indah@example.org", "a brand new password")).status == 303
        result = server.cli("counselor", "disable", "indah@example.org")
        assert result.returncode == 0, result.stderr
        async with http.get("/api/rooms") as r:
            assert r.status == 401
        assert (await login(http, "indah@example.org", "a brand new password")).status == 401


def test_cli_counselor_commands(tmp_path, dev_cert) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(tmp_path, *dev_cert)
    server.add_counselor("joko@example.org")
    server.add_counselor("kartika@example.org")
    listed = server.cli("counselor", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        "joko@example.org\tactive",
        "kartika@example.org\tactive",
    ]
    dup = server.cli(
        "counselor", "add", "JOKO@example.org", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert dup.returncode == 1 and "already exists" in dup.stderr
    weak = server.cli("counselor", "add", "lia@example.org", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1 and "at least" in weak.stderr
    assert "Traceback" not in weak.stderr
    assert server.cli("counselor", "disable", "kartika@example.org").returncode == 0
    assert server.cli("counselor", "list").stdout.splitlines()[1] == "kartika@example.org\tdisabled"
    unknown = server.cli("counselor", "disable", "nobody@example.org")
    assert unknown.returncode == 1 and "no counselor" in unknown.stderr
    usage = server.cli("counselor", "frobnicate")
    assert usage.returncode == 2
    # No --password-stdin and no terminal to ask on: a clear usage error.
    asked = server.cli("counselor", "add", "mira@example.org", stdin="")
    assert asked.returncode == 2 and "--password-stdin" in asked.stderr


async def test_idle_and_absolute_session_timeouts(make_server) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    # 0.04 minutes = 2.4 s idle; 0.002 hours = 7.2 s absolute. Both sessions at once.
    server: ServerProcess = make_server(
        RUANG_SESSION_MINUTES="0.04", RUANG_SESSION_MAX_HOURS="0.002"
    )
    await server.start()
    try:
        server.add_counselor("nina@example.org")

        async def idle_session() -> None:
            async with server.client() as idle:
                assert (await login(idle, "nina@example.org")).status == 303
                async with idle.get("/api/rooms") as r:
                    assert r.status == 200
                await asyncio.sleep(3.0)
                async with idle.get("/api/rooms") as r:
                    assert r.status == 401, "an idle session expires"

        async def busy_session() -> None:
            async with server.client() as busy:
                assert (await login(busy, "nina@example.org")).status == 303
                statuses = []
                for _ in range(20):  # active twice a second: never idle, the absolute limit ends it
                    async with busy.get("/api/rooms") as r:
                        statuses.append(r.status)
                    if r.status == 401:
                        break
                    await asyncio.sleep(0.5)
                assert statuses[:10] == [200] * 10, statuses  # 5 s: past the idle limit, twice
                assert statuses[-1] == 401, statuses

        await asyncio.gather(idle_session(), busy_session())
    finally:
        await server.stop()


async def test_plain_http_behind_a_proxy(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = make_server(
        RUANG_PLAIN_HTTP="true",
        RUANG_TLS_CERT="",
        RUANG_TLS_KEY="",
        RUANG_TRUSTED_PROXIES="127.0.0.1",
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.origin}/healthz") as r:
                assert r.status == 200
                assert "Strict-Transport-Security" not in r.headers
            async with http.get(
                f"{server.origin}/login", headers={"X-Forwarded-Proto": "https"}
            ) as r:
                assert r.status == 200
                assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        assert not (server.tmp / "certs").exists(), "no certificate is made for plain HTTP"
    finally:
        await server.stop()
