"""Pages, languages, security headers, health and metrics on the real server."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from server.db import make_engine
from server.i18n import Catalogs
from server.render import WEB_DIR
from tests.support import ServerProcess, api_token, login

ROOM = "AAAAAAAAAAAAAAAAAAAAAA"


def check_security_headers(headers: aiohttp.typedefs.LooseHeaders, secure: bool = True) -> None:
    h = {k.lower(): v for k, v in dict(headers).items()}  # type: ignore[arg-type]
    csp = h["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert h["referrer-policy"] == "no-referrer"
    assert h["x-content-type-options"] == "nosniff"
    assert "camera=(self)" in h["permissions-policy"]
    assert "microphone=(self)" in h["permissions-policy"]
    if secure:
        assert h["strict-transport-security"].startswith("max-age=")
    assert "server" not in h


async def test_security_headers_on_every_route(server: ServerProcess) -> None:
    server.add_counselor("ana@example.org")
    async with server.client() as http:
        await login(http, "ana@example.org")
        token = await api_token(http)
        async with http.post("/api/rooms", json={}, headers={"X-CSRF-Token": token}) as r:
            room = (await r.json())["id"]
        requests = [
            ("GET", "/login"),
            ("GET", "/"),
            ("GET", f"/rooms/{room}"),
            ("GET", f"/r/{ROOM}"),
            ("GET", "/r/bad"),
            ("GET", "/bye"),
            ("GET", "/nothing-here"),
            ("GET", "/healthz"),
            ("GET", "/metrics"),
            ("GET", "/api/rooms"),
            ("GET", "/static/css/app.css"),
            ("GET", "/static/js/dashboard.js"),
            ("GET", "/static/missing.js"),
            ("POST", "/api/rooms"),
            ("POST", f"/api/rooms/{room}/rename"),
            ("GET", "/ws"),
        ]
        for method, path in requests:
            async with http.request(method, path, allow_redirects=False) as r:
                check_security_headers(r.headers)
    async with server.client() as anonymous:
        async with anonymous.get("/", allow_redirects=False) as r:
            check_security_headers(r.headers)
        async with anonymous.post("/login", data={}) as r:
            assert r.status == 403
            check_security_headers(r.headers)


def test_catalogs_have_the_same_keys() -> None:
    catalogs = Catalogs(WEB_DIR / "i18n")
    assert set(catalogs.messages["id"]) == set(catalogs.messages["en"])
    for lang in ("id", "en"):
        for key, text in catalogs.messages[lang].items():
            assert text.strip(), f"{lang}:{key} is empty"


@pytest.mark.parametrize(
    ("lang", "login_button", "join_button", "new_room"),
    [("en", "Log in", "Join", "New room"), ("id", "Masuk", "Gabung", "Ruangan baru")],
)
async def test_both_languages_render_every_page(
    server: ServerProcess, lang: str, login_button: str, join_button: str, new_room: str
) -> None:
    server.add_counselor("ana@example.org")
    other = "id" if lang == "en" else "en"
    async with server.client() as http:
        async with http.get(f"/login?lang={lang}") as r:
            text = await r.text()
            assert f'<html lang="{lang}">' in text and login_button in text
        async with http.get(f"/r/{ROOM}?lang={lang}") as r:
            assert join_button in await r.text()
        await login(http, "ana@example.org")
        async with http.get("/") as r:  # the ?lang= choice was remembered
            text = await r.text()
            assert f'<html lang="{lang}">' in text and new_room in text
        token = await api_token(http)
        async with http.post("/api/rooms", json={}, headers={"X-CSRF-Token": token}) as r:
            room = (await r.json())["id"]
        for path in (f"/rooms/{room}", "/bye", "/r/x"):
            async with http.get(path) as r:
                assert f'<html lang="{lang}">' in await r.text()
    # Accept-Language decides when nothing else does; Indonesian is the default.
    async with server.client(headers={"Accept-Language": f"{lang};q=0.9, {other};q=0.1"}) as http:
        async with http.get("/login") as r:
            assert login_button in await r.text()
    async with server.client(headers={"Accept-Language": "fr"}) as http:
        async with http.get("/login") as r:
            assert "Masuk" in await r.text()


async def test_healthz_and_metrics(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = make_server(RUANG_METRICS_TOKEN="metrics-token-123")
    await server.start()
    try:
        server.add_counselor("ana@example.org")
        async with server.client() as http:
            async with http.get("/healthz") as r:
                assert r.status == 200
                assert await r.json() == {"status": "ok", "database": "ok"}
            await login(http, "ana@example.org")
            await login(http, "ana@example.org", "wrong password!")
            async with http.get("/metrics") as r:
                assert r.status == 200
                text = await r.text()
            assert 'ruang_logins_total{result="ok"} 1' in text
            assert 'ruang_logins_total{result="failed"} 1' in text
            assert "# TYPE ruang_logins_total counter" in text
            assert "ana@example.org" not in text and "127.0.0.1" not in text
            async with http.get("/metrics", headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 403
            async with http.get(
                "/metrics", headers={"Authorization": "Bearer metrics-token-123"}
            ) as r:
                assert r.status == 200
            async with http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}) as r:
                assert r.status == 403, "a proxied request is not 'local'"
    finally:
        await server.stop()


async def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(statement))
            return [tuple(r) for r in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


@pytest.mark.both_databases
async def test_audit_trail_is_metadata_only_and_purged(make_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = make_server(RUANG_AUDIT_DAYS="7")
    server.add_counselor("ana@example.org")
    db = server.env.get("RUANG_DATABASE_URL") or f"sqlite+aiosqlite:///{server.data_dir}/ruang.db"
    await _sql(
        db, "INSERT INTO audit (at, event, counselor_id) VALUES ('2020-01-01 00:00:00', 'login', 1)"
    )
    await server.start()
    try:
        async with server.client() as http:
            await login(http, "ana@example.org")
            token = await api_token(http)
            async with http.post(
                "/api/rooms", json={"label": "Secret Label"}, headers={"X-CSRF-Token": token}
            ) as r:
                room = await r.json()
        rows = await _sql(db, "SELECT at, event, counselor_id, room_pk, ip FROM audit")
        events = [r[1] for r in rows]
        assert "counselor_added" in events and "login" in events and "room_created" in events
        assert not any(str(r[0]).startswith("2020") for r in rows), "old entries were purged"
        flat = json.dumps(rows, default=str)
        assert "Secret Label" not in flat and room["id"] not in flat
    finally:
        await server.stop()


async def test_dev_certificate_is_made_on_first_start(make_server) -> None:  # type: ignore[no-untyped-def]
    from cryptography import x509

    server: ServerProcess = make_server(RUANG_TLS_CERT="", RUANG_TLS_KEY="")
    cert_dir = Path(server.env["RUANG_CERT_DIR"])
    made = cert_dir / "dev-cert.pem"
    server.cafile = made
    assert not made.exists()
    await server.start()  # healthy only over TLS verified with the certificate it made
    try:
        cert = x509.load_pem_x509_certificate(made.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in sans.get_values_for_type(x509.DNSName)
        ips = {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
        assert "127.0.0.1" in ips
        assert ((cert_dir / "dev-key.pem").stat().st_mode & 0o777) == 0o600
    finally:
        await server.stop()


def test_read_only_data_dir_is_a_clear_error(tmp_path: Path, dev_cert) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    data = tmp_path / "ro"
    data.mkdir()
    (data / "x").write_text("")
    data.chmod(0o500)
    env = {
        **os.environ,
        "RUANG_DATA_DIR": str(data),
        "RUANG_TLS_CERT": str(dev_cert[0]),
        "RUANG_TLS_KEY": str(dev_cert[1]),
        "RUANG_PORT": "0",
        "RUANG_HOST": "127.0.0.1",
    }
    try:
        if os.geteuid() == 0:
            # root ignores permissions: use a path below a regular file instead.
            env["RUANG_DATA_DIR"] = str(data / "x" / "data")
        result = subprocess.run(
            [sys.executable, "-m", "server", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        data.chmod(0o700)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "data directory" in result.stderr


def test_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "RUANG_PORT": "eighty", "RUANG_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "RUANG_PORT must be an integer" in result.stderr
    assert "Traceback" not in result.stderr
