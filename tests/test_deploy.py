"""deploy/ is valid and consistent: the nginx template runs and proxies HTTP and WebSockets to a
real server, the compose file parses and sets only real RUANG_* variables, coturn accepts its
configuration, and the systemd unit passes ``systemd-analyze verify``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aioice import stun
from aioice.turn import TurnClientUdpProtocol

from server.config import Config
from server.turn import make_credential, password_for
from signaling.errors import CloseCode
from tests.proxy_support import BEHIND_PROXY_ENV, NginxProxy, needs_nginx, render_site
from tests.support import ROOT, ServerProcess, api_token, free_port, login
from tests.turn_support import (
    TURNSERVER,
    free_udp_tcp_port,
    namespace_address,
    needs_coturn,
    readme_peer_rules,
    stun_answers,
)

DEPLOY = ROOT / "deploy"
EPOCH = "E" * 22
Json = dict[str, Any]


async def _recv(ws: aiohttp.ClientWebSocketResponse, want: str) -> Json:
    """The next message of type ``want`` (token refreshes and the like are skipped)."""
    for _ in range(20):
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.TEXT, (msg.type, msg.data)
        data: Json = json.loads(msg.data)
        if data["type"] == want:
            return data
    raise AssertionError(f"no {want!r} message")


# --- nginx ---------------------------------------------------------------------------------


@needs_nginx
async def test_nginx_template_passes_nginx_t(tmp_path: Path, dev_cert: tuple[Path, Path]) -> None:
    proxy = NginxProxy(tmp_path, [free_port(), ("127.0.0.1", free_port())], *dev_cert)
    result = proxy.check()
    assert result.returncode == 0, result.stderr
    site = proxy.site_path.read_text()
    assert site.count("max_fails=1 fail_timeout=10s;") == 2
    # The template itself (before rendering) keeps the shapes the harness substitutes.
    template = (DEPLOY / "nginx" / "ruang.conf").read_text()
    assert "access_log off;" in template
    assert "client_max_body_size 64k;" in template
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in template
    # A configuration that nginx refuses is noticed (the check can fail).
    broken = render_site(
        [1], https_port=free_port(), http_port=free_port(), cert=dev_cert[0], key=dev_cert[1]
    ).replace("least_conn;", "least_conn bogus;")
    proxy.site_path.write_text(broken)
    assert proxy.check().returncode != 0


def _ws_read_timeout(template: str) -> int:
    block = template.split("location = /ws {", 1)[1].split("}", 1)[0]
    match = re.search(r"proxy_read_timeout (\d+)s;", block)
    assert match, "the /ws location sets no proxy_read_timeout"
    return int(match.group(1))


def test_websocket_timeout_is_above_the_heartbeat() -> None:
    from server.ws import HEARTBEAT

    assert _ws_read_timeout((DEPLOY / "nginx" / "ruang.conf").read_text()) > 2 * HEARTBEAT


@needs_nginx
async def test_proxy_carries_http_and_websocket(
    tmp_path: Path, dev_cert: tuple[Path, Path], make_server: Callable[..., ServerProcess]
) -> None:
    server = make_server("s1", RUANG_WS_MAX_PER_IP="2", **BEHIND_PROXY_ENV)
    await server.start()
    # The first backend is a port nobody listens on: the dead process is skipped.
    proxy = NginxProxy(tmp_path, [free_port(), server.port], *dev_cert)
    await proxy.start()
    try:
        server.add_counselor("ana@example.org")
        async with proxy.client() as http, proxy.client() as anon:
            for _ in range(6):
                async with http.get("/healthz") as r:
                    assert r.status == 200, proxy.error_log()
                    assert await r.json() == {"status": "ok", "database": "ok"}
                    # Ruang believed X-Forwarded-Proto from its trusted proxy.
                    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
                    assert "Server" not in r.headers or "nginx/" not in r.headers["Server"]
            # Metrics: never to a request that came through the proxy (without the token).
            async with http.get("/metrics") as r:
                assert r.status == 403
            response = await login(http, "ana@example.org")
            assert response.status in (302, 303), response.status
            cookies = response.headers.getall("Set-Cookie", [])
            assert cookies and all("Secure" in c for c in cookies), cookies
            h = {"X-CSRF-Token": await api_token(http)}
            async with http.post("/api/rooms", json={"label": "R."}, headers=h) as r:
                assert r.status == 201
                room = (await r.json())["id"]
            # The dashboard's live count streams through unbuffered: the first event arrives
            # at once, not when a proxy buffer fills.
            async with http.get("/api/events", timeout=aiohttp.ClientTimeout(total=5)) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")
                first = b""
                for _ in range(3):  # "retry: ..." may come first
                    first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
                    if first.startswith(b"data: "):
                        break
                assert first.startswith(b"data: "), first
                assert room in json.loads(first[6:])["rooms"]
            # Larger than Ruang accepts: nginx refuses it first.
            async with http.post("/api/rooms", data=b"x" * 100_000, headers=h) as r:
                assert r.status == 413

            origin = {"Origin": proxy.origin}
            c = await http.ws_connect("/ws", headers=origin)
            await c.send_json({"type": "join", "v": 1, "room": room, "role": "counselor"})
            assert (await _recv(c, "joined"))["role"] == "counselor"
            k = await anon.ws_connect("/ws", headers=origin)
            await k.send_json({"type": "join", "v": 1, "room": room, "role": "client"})
            kj = await _recv(k, "joined")
            assert kj["state"] == "waiting"
            assert (await _recv(c, "peer"))["id"] == kj["id"]
            await c.send_json({"type": "admit", "id": kj["id"]})
            await _recv(k, "admitted")
            for i in range(3):
                box = f"K{i}" * 300
                await k.send_json({"type": "relay", "to": "counselor", "epoch": EPOCH, "box": box})
                got = await _recv(c, "relay")
                assert got == {"type": "relay", "from": kj["id"], "epoch": EPOCH, "box": box}
            # Two sockets from 127.0.0.1 are the cap. A forged X-Forwarded-For does not make a
            # third one another client: nginx replaces the header with the address it saw.
            forged = {**origin, "X-Forwarded-For": "198.51.100.7"}
            extra = await anon.ws_connect("/ws", headers=forged)
            closing = await extra.receive(timeout=5)
            assert closing.type is WSMsgType.CLOSE, closing
            assert closing.data == CloseCode.TOO_MANY_CONNECTIONS
            # ... whereas the backend itself believes it from 127.0.0.1 (its trusted proxy):
            # the check above would fail if nginx passed the client's header on.
            direct_url = f"http://127.0.0.1:{server.port}"
            async with aiohttp.ClientSession() as direct:
                ws = await direct.ws_connect(
                    direct_url + "/ws",
                    headers={"Origin": direct_url, "X-Forwarded-For": "198.51.100.7"},
                )
                await ws.send_json({"type": "join", "v": 1, "room": room, "role": "client"})
                assert (await _recv(ws, "joined"))["state"] == "waiting"
                await ws.close()
            await k.close()
            await c.close()

        # Plain HTTP on the proxy only redirects to HTTPS.
        async with (
            aiohttp.ClientSession() as plain,
            plain.get(f"http://127.0.0.1:{proxy.http_port}/healthz", allow_redirects=False) as r,
        ):
            assert r.status == 308
            assert r.headers["Location"] == "https://127.0.0.1/healthz"

        # Straight to the backend (no proxy headers): no HSTS, and no access log anywhere.
        async with (
            aiohttp.ClientSession() as direct,
            direct.get(f"http://127.0.0.1:{server.port}/healthz") as r,
        ):
            assert r.status == 200
            assert "Strict-Transport-Security" not in r.headers
        async with (
            aiohttp.ClientSession() as direct,
            direct.get(f"http://127.0.0.1:{server.port}/metrics") as r,
        ):
            assert r.status == 200  # ... but to loopback on the process's own port
        assert not list(proxy.prefix.glob("*access*"))
        assert room not in proxy.error_log()
    finally:
        await proxy.stop()
        await server.stop()


# --- coturn ----------------------------------------------------------------------------------


def _conf_lines(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_coturn_conf_is_the_hardened_one() -> None:
    """The deploy file keeps every peer rule of the README's configuration, and nothing that
    would open the relay (loopback peers, a CLI, a static user)."""
    lines = _conf_lines(DEPLOY / "coturn" / "turnserver.conf")
    readme = {rule.removeprefix("--") for rule in readme_peer_rules()}
    assert readme <= set(lines), readme - set(lines)
    assert "use-auth-secret" in lines
    assert "no-cli" in lines
    for forbidden in ("allow-loopback-peers", "static-auth-secret", "user=", "lt-cred-mech"):
        assert not any(line.startswith(forbidden) for line in lines), forbidden


def _render_coturn(tmp: Path, port: int, tls_port: int, cert: Path, key: Path) -> Path:
    """deploy/coturn/turnserver.conf with test ports, certificate paths and log file."""
    text = (DEPLOY / "coturn" / "turnserver.conf").read_text()
    base = random.randrange(40000, 59000, 2)
    for old, new in (
        ("listening-port=3478", f"listening-port={port}"),
        ("tls-listening-port=5349", f"tls-listening-port={tls_port}"),
        ("cert=/etc/coturn/certs/fullchain.pem", f"cert={cert}"),
        ("pkey=/etc/coturn/certs/privkey.pem", f"pkey={key}"),
        ("min-port=49160", f"min-port={base}"),
        ("max-port=65535", f"max-port={base + 99}"),
        ("log-file=stdout", f"log-file={tmp / 'turnserver.log'}\nno-stdout-log"),
    ):
        assert text.count(f"\n{old}\n") == 1, old
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    path = tmp / "turnserver.in.conf"
    path.write_text(text)
    return path


@needs_coturn
async def test_coturn_accepts_the_deploy_conf(tmp_path: Path, dev_cert: tuple[Path, Path]) -> None:
    """A real turnserver started from deploy/coturn/turnserver.conf: it answers, takes a
    credential signed with the shared secret, refuses a forged one, and refuses to relay to
    loopback or a private network."""
    assert TURNSERVER is not None
    host = namespace_address()
    port = free_udp_tcp_port(host)
    tls_port = free_udp_tcp_port(host)
    secret = "s" * 32
    conf = _render_coturn(tmp_path, port, tls_port, *dev_cert)
    # Started the way docker-compose starts it: deploy/coturn/start.sh adds the secret, the
    # realm and the addresses from the environment.
    run = tmp_path / "run"
    run.mkdir()
    env = {
        "PATH": f"{Path(TURNSERVER).parent}:/usr/bin:/bin",
        "TURN_CONF": str(conf),
        "TURN_RUN": str(run),
        "TURN_SECRET": secret,
        "TURN_REALM": "ruang.test",
        "TURN_LISTEN_IP": host,
    }
    refused = subprocess.run(
        ["sh", str(DEPLOY / "coturn" / "start.sh")],
        env={k: v for k, v in env.items() if k != "TURN_SECRET"},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert refused.returncode != 0 and "RUANG_TURN_SECRET" in refused.stderr
    proc = subprocess.Popen(
        ["sh", str(DEPLOY / "coturn" / "start.sh")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    log = tmp_path / "turnserver.log"
    try:
        for _ in range(50):
            assert proc.poll() is None, log.read_text(errors="replace")
            if await stun_answers((host, port), 0.2):
                break
        else:
            raise AssertionError("turnserver did not answer STUN")
        cred = make_credential(secret, 60)
        forged = password_for("another secret entirely", cred.username)
        loop = asyncio.get_running_loop()
        bad_transport, bad = await loop.create_datagram_endpoint(
            lambda: TurnClientUdpProtocol(
                (host, port),
                username=cred.username,
                password=forged,
                lifetime=60,
                channel_refresh_time=300,
            ),
            remote_addr=(host, port),
        )
        try:
            with pytest.raises(stun.TransactionFailed) as failed:
                await asyncio.wait_for(bad.connect(), 10)
            assert failed.value.response.attributes["ERROR-CODE"][0] == 401
        finally:
            bad_transport.close()
        transport, client = await loop.create_datagram_endpoint(
            lambda: TurnClientUdpProtocol(
                (host, port),
                username=cred.username,
                password=cred.credential,
                lifetime=60,
                channel_refresh_time=300,
            ),
            remote_addr=(host, port),
        )
        try:
            relayed = await asyncio.wait_for(client.connect(), 10)
            assert relayed[0] == host
            for channel, peer in enumerate(("127.0.0.1", "10.1.2.3", "172.20.0.1"), 0x4000):
                with pytest.raises(stun.TransactionFailed) as failed:
                    await asyncio.wait_for(client.channel_bind(channel, (peer, 9)), 10)
                assert failed.value.response.attributes["ERROR-CODE"][0] == 403, peer
        finally:
            if client.refresh_task is not None:
                client.refresh_task.cancel()
            transport.close()
        # TLS listener up with the configured certificate, no configuration complaints.
        text = log.read_text(errors="replace")
        assert "Bad configuration format" not in text, text
        assert "CONFIG ERROR" not in text.upper(), text
        ctx = ssl.create_default_context(cafile=str(dev_cert[0]))
        ctx.check_hostname = False
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, tls_port, ssl=ctx), 5)
        writer.close()
        await writer.wait_closed()
    finally:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- docker-compose --------------------------------------------------------------------------


def _scalar(text: str) -> Any:
    if text.startswith(('"', "[")):
        return json.loads(text)  # double-quoted strings and flow lists of them, as JSON
    if text.startswith("'"):
        assert text.endswith("'"), text
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text or None


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    """The block starting at ``lines[i]`` (indented ``indent``): a mapping or a list."""
    if lines[i][1].startswith("- "):
        items: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            rest = lines[i][1][2:]
            if re.match(r"[\w.-]+:( |$)", rest):  # "- key: value": a mapping in the list
                lines[i] = (indent + 2, rest)
                value, i = _block(lines, i, indent + 2)
            else:
                value, i = _scalar(rest), i + 1
            items.append(value)
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
        match = re.fullmatch(r"([\w.-]+):(?: (.*))?", lines[i][1])
        assert match, f"not in the YAML subset the compose file keeps to: {lines[i][1]!r}"
        key, rest = match.group(1), match.group(2)
        assert key not in mapping, f"duplicate key {key}"
        i += 1
        if rest:
            mapping[key] = _scalar(rest)
        elif i < len(lines) and lines[i][0] > indent:
            mapping[key], i = _block(lines, i, lines[i][0])
        elif i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            mapping[key], i = _block(lines, i, indent)  # a list at the key's own indent
        else:
            mapping[key] = None
    return mapping, i


def read_compose(text: str) -> dict[str, Any]:
    """A reader for the YAML subset deploy/docker-compose.yml keeps to (block mappings and
    lists, scalars, JSON-style flow lists; no anchors, no multi-line scalars); anything else
    fails the test."""
    lines = []
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        assert "\t" not in raw, "tabs in YAML"
        lines.append((len(raw) - len(raw.lstrip(" ")), raw.strip()))
    doc, end = _block(lines, 0, 0)
    assert end == len(lines), f"unparsed from line {lines[end]}"
    assert isinstance(doc, dict)
    return doc


COMPOSE_TEXT = (DEPLOY / "docker-compose.yml").read_text()


def _env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), line
            out[key] = value
    return out


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name, "")
        if op == ":?" and not got:
            raise AssertionError(f"{name}: {arg}")
        return got or (arg if op == ":-" else "")

    return re.sub(r"\$\$|\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, value)


def _config_variables() -> set[str]:
    return set(re.findall(r'"(RUANG_[A-Z0-9_]+)"', (ROOT / "server" / "config.py").read_text()))


def test_compose_reader_agrees_with_pyyaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: the subset reader stands")
    assert read_compose(COMPOSE_TEXT) == yaml.safe_load(COMPOSE_TEXT)


def test_compose_file_is_complete_and_consistent() -> None:
    compose = read_compose(COMPOSE_TEXT)
    services = compose["services"]
    assert set(services) == {"ruang1", "ruang2", "redis", "postgres", "coturn", "nginx"}
    example = _env_file(DEPLOY / ".env.example")
    # Every ${VAR} the file uses is in .env.example, so an operator sees it.
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_TEXT))
    assert used <= set(example), used - set(example)
    known = _config_variables()
    filled = {k: v or "x" * 40 for k, v in example.items()}  # the secrets are left empty there

    ruang = [services["ruang1"], services["ruang2"]]
    # The two processes differ only in their data volume.
    assert ruang[0]["environment"] == ruang[1]["environment"]
    assert {k: v for k, v in ruang[0].items() if k != "volumes"} == {
        k: v for k, v in ruang[1].items() if k != "volumes"
    }
    env = ruang[0]["environment"]
    assert set(env) <= known, set(env) - known
    for name in ("RUANG_SECRET_KEY", "RUANG_DATABASE_URL", "RUANG_REDIS_URL"):
        assert "${" in env[name], f"{name} must come from deploy/.env, not be written here"
    with pytest.raises(AssertionError, match="RUANG_SECRET_KEY"):
        _interpolate(env["RUANG_SECRET_KEY"], {})  # compose refuses to start without it
    config = Config.from_env({k: _interpolate(str(v), filled) for k, v in env.items()})
    assert config.plain_http and config.port == 8080
    assert config.database_url.startswith("postgresql+asyncpg://ruang:")
    assert config.database_url.endswith("@postgres:5432/ruang")
    assert config.redis_url.startswith("redis://:") and config.redis_url.endswith("@redis:6379/0")
    assert config.secret_key == filled["RUANG_SECRET_KEY"]
    for dep in ("postgres", "redis"):
        assert ruang[0]["depends_on"][dep]["condition"] == "service_healthy"

    # nginx: the only published ports, at the one address Ruang trusts, with the template.
    nginx = services["nginx"]
    proxy_ip = _interpolate(nginx["networks"]["front"]["ipv4_address"], filled)
    assert [str(n) for n in config.trusted_proxies] == [f"{proxy_ip}/32"]
    subnet = _interpolate(compose["networks"]["front"]["ipam"]["config"][0]["subnet"], filled)
    assert ipaddress.ip_address(proxy_ip) in ipaddress.ip_network(subnet)
    assert "./nginx/ruang.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    assert sorted(nginx["ports"]) == ["443:443", "80:80"]
    assert all("ports" not in s for n, s in services.items() if n != "nginx")
    template = (DEPLOY / "nginx" / "ruang.conf").read_text()
    upstreams = re.findall(r"^\s*server (\S+) max_fails", template, re.M)
    assert upstreams == [f"ruang1:{config.port}", f"ruang2:{config.port}"]
    # Redis and PostgreSQL are reachable only from the internal network.
    assert compose["networks"]["back"]["internal"] is True
    for name in ("redis", "postgres"):
        assert services[name]["networks"] == ["back"]
        assert "healthcheck" in services[name]
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert "pgdata" in compose["volumes"]
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--save ''" in redis_cmd and "--appendonly no" in redis_cmd

    # coturn: the host's network, the repository's conf and start script, the shared secret.
    coturn = services["coturn"]
    assert coturn["network_mode"] == "host"
    assert "./coturn/turnserver.conf:/etc/coturn/turnserver.conf:ro" in coturn["volumes"]
    assert coturn["entrypoint"] == ["sh", "/etc/coturn/start.sh"]
    assert coturn["environment"]["TURN_SECRET"].startswith("${RUANG_TURN_SECRET")
    assert env["RUANG_TURN_SECRET"].startswith("${RUANG_TURN_SECRET")
    # Every file the compose file mounts from the repository exists.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./") and "${" not in source:
                assert (DEPLOY / source).exists(), source


def test_every_ruang_variable_in_deploy_exists() -> None:
    """Every RUANG_* name deploy/ sets is one server/config.py reads (a typo would be ignored
    silently by the server)."""
    known = _config_variables()
    assert {"RUANG_SECRET_KEY", "RUANG_REDIS_URL", "RUANG_DATABASE_URL"} <= known
    found: set[str] = set()
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text()
            found |= set(re.findall(r"\b(RUANG_[A-Z0-9_]+)\s*[=:]", text))
    assert "RUANG_PLAIN_HTTP" in found and "RUANG_TRUSTED_PROXIES" in found
    assert found <= known, found - known
    # The systemd example, as the unit sets it, is a configuration the server accepts.
    env = _env_file(DEPLOY / "systemd" / "ruang.env.example")
    unit = (DEPLOY / "systemd" / "ruang@.service").read_text()
    line = re.search(r"^Environment=(.*)$", unit, re.M)
    assert line
    env.update(dict(item.split("=", 1) for item in line.group(1).replace("%i", "8001").split()))
    config = Config.from_env(env)
    assert config.plain_http and config.port == 8001 and config.host == "127.0.0.1"
    assert config.redis_url and config.database_url.startswith("postgresql+asyncpg://")


# --- systemd ---------------------------------------------------------------------------------

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
UNIT = DEPLOY / "systemd" / "ruang@.service"


def _unit_keys(text: str) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        keys.setdefault(f"{section}.{key}", []).append(value)
    return keys


def test_systemd_unit_is_hardened() -> None:
    keys = _unit_keys(UNIT.read_text())
    want = {
        "Service.User": ["ruang"],
        "Service.NoNewPrivileges": ["yes"],
        "Service.ProtectSystem": ["strict"],
        "Service.ReadWritePaths": ["/var/lib/ruang"],
        "Service.StateDirectory": ["ruang"],
        "Service.ProtectHome": ["yes"],
        "Service.PrivateTmp": ["yes"],
        "Service.PrivateDevices": ["yes"],
        "Service.CapabilityBoundingSet": [""],
        "Service.RestrictNamespaces": ["yes"],
        "Service.EnvironmentFile": ["/etc/ruang/ruang.env"],
        "Install.WantedBy": ["multi-user.target"],
    }
    for key, value in want.items():
        assert keys.get(key) == value, key
    assert keys["Service.ExecStart"][0].endswith("/bin/ruang serve")
    assert "RUANG_PORT=%i" in keys["Service.Environment"][0]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="no systemd-analyze on this machine")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit as installed for port 8001, with this checkout's paths in place of /opt/ruang:
    systemd accepts every line (an unknown or misspelt key is a complaint, so it fails)."""
    assert SYSTEMD_ANALYZE is not None
    ruang = Path(sys.executable).parent / "ruang"
    if not ruang.exists():
        pytest.skip(f"no {ruang} (pip install -e .)")
    text = UNIT.read_text()
    for old, new in (
        ("ExecStart=/opt/ruang/.venv/bin/ruang serve", f"ExecStart={ruang} serve"),
        ("WorkingDirectory=/opt/ruang", f"WorkingDirectory={ROOT}"),
        (
            "EnvironmentFile=/etc/ruang/ruang.env",
            f"EnvironmentFile={DEPLOY}/systemd/ruang.env.example",
        ),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    unit = tmp_path / "ruang@8001.service"
    unit.write_text(text)

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SYSTEMD_ANALYZE, "verify", "--man=no", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=tmp_path,
        )

    result = verify(unit)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # systemd's own exposure rating (0 to 10) stays at 2.0 or below ("OK"; 1.4 when written).
    rated = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert rated.returncode == 0, rated.stdout[-3000:]
    # The check can fail: a misspelt hardening key is reported.
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    assert "ProtectSytem" in verify(unit).stderr
