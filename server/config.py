"""Configuration from ``RUANG_*`` environment variables (the README's table is the reference)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A ``RUANG_*`` variable has a value the server cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    raw = (env.get(name) or allowed[0]).lower()
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def normalise_database_url(url: str) -> str:
    """Map plain ``postgresql://`` URLs to the asyncpg driver SQLAlchemy needs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        return url
    raise ConfigError(
        "RUANG_DATABASE_URL must start with sqlite+aiosqlite://, postgresql:// "
        "or postgresql+asyncpg://"
    )


TURN_SCHEMES = ("turn:", "turns:")
ICE_SCHEMES = ("stun:", "stuns:", *TURN_SCHEMES)
MIN_TURN_SECRET = 16


def check_turn(urls: tuple[str, ...], secret: str) -> None:
    """``RUANG_TURN_URLS`` holds stun:/stuns:/turn:/turns: URLs; TURN ones need the secret."""
    for url in urls:
        if not url.startswith(ICE_SCHEMES) or any(ch.isspace() for ch in url):
            raise ConfigError(
                f"RUANG_TURN_URLS: {url!r} must start with turn:, turns:, stun: or stuns:"
            )
    if any(url.startswith(TURN_SCHEMES) for url in urls):
        if not secret:
            raise ConfigError("RUANG_TURN_URLS names a TURN server: set RUANG_TURN_SECRET too")
        if len(secret) < MIN_TURN_SECRET:
            raise ConfigError(f"RUANG_TURN_SECRET must be at least {MIN_TURN_SECRET} characters")


@dataclass(frozen=True)
class Limits:
    login_failures_per_account: int = 10
    login_failures_per_ip: int = 50
    login_window_seconds: int = 15 * 60
    ws_max_frame_bytes: int = 64 * 1024
    ws_rate_per_second: float = 50.0
    ws_burst: int = 200
    ws_connections_per_ip: int = 200
    ws_send_queue: int = 256
    room_probes_per_ip: int = 30  # joins of unknown/closed rooms per IP per window
    room_probe_window_seconds: int = 600
    rooms_per_counselor: int = 500
    waiting_held_envelopes: int = 20
    resume_seconds: int = 60
    room_capacity: int = 1
    max_waiting: int = 10
    turn_ttl_seconds: int = 600
    precheck_turn_ttl_seconds: int = 60
    precheck_turn_per_ip: int = 30
    turn_per_caller: int = 30  # call credentials per counselor or participant per window
    turn_window_seconds: int = 600
    precheck_window_seconds: int = 600
    echo_max: int = 4
    echo_seconds: int = 30
    echo_per_ip: int = 20
    echo_max_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"  # noqa: S104 - a server binds all interfaces by default
    port: int = 8443
    data_dir: Path = Path("data")
    cert_dir: Path = Path("certs")
    database_url: str = ""
    database_pool_size: int = 10
    redis_url: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    plain_http: bool = False
    public_origins: tuple[str, ...] = ()
    secret_key: str = ""
    session_minutes: float = 60.0
    session_max_hours: float = 12.0
    audit_days: int = 30
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    metrics_token: str = ""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    session_length_minutes: int = 50
    log_level: str = "INFO"
    event_loop: str = "auto"  # RUANG_EVENT_LOOP: auto (uvloop if installed), uvloop, asyncio
    limits: Limits = field(default_factory=Limits)

    @property
    def tls(self) -> bool:
        return not self.plain_http

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ruang.db').resolve()}"

    @property
    def default_origin(self) -> str:
        if self.public_origins:
            return self.public_origins[0]
        scheme = "https" if self.tls else "http"
        return f"{scheme}://localhost:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        cert = env.get("RUANG_TLS_CERT") or None
        key = env.get("RUANG_TLS_KEY") or None
        if bool(cert) != bool(key):
            raise ConfigError("set both RUANG_TLS_CERT and RUANG_TLS_KEY, or neither")
        db_url = env.get("RUANG_DATABASE_URL", "")
        proxies = []
        for item in _list(env, "RUANG_TRUSTED_PROXIES"):
            try:
                proxies.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(f"RUANG_TRUSTED_PROXIES: {item!r} is not an address") from None
        origins = tuple(o.rstrip("/") for o in _list(env, "RUANG_PUBLIC_ORIGIN"))
        for origin in origins:
            if not origin.startswith(("https://", "http://")):
                raise ConfigError(f"RUANG_PUBLIC_ORIGIN: {origin!r} must start with https://")
        level = env.get("RUANG_LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError("RUANG_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        limits = Limits(
            login_failures_per_account=_int(env, "RUANG_LOGIN_MAX_PER_ACCOUNT", 10, 1),
            login_failures_per_ip=_int(env, "RUANG_LOGIN_MAX_PER_IP", 50, 1),
            login_window_seconds=_int(env, "RUANG_LOGIN_WINDOW_SECONDS", 900, 1),
            ws_max_frame_bytes=_int(env, "RUANG_WS_MAX_FRAME", 64 * 1024, 1024),
            ws_rate_per_second=_float(env, "RUANG_WS_RATE", 50.0),
            ws_burst=_int(env, "RUANG_WS_BURST", 200, 1),
            ws_connections_per_ip=_int(env, "RUANG_WS_MAX_PER_IP", 200, 1),
            ws_send_queue=_int(env, "RUANG_WS_SEND_QUEUE", 256, 8),
            room_probes_per_ip=_int(env, "RUANG_ROOM_PROBES_PER_IP", 30, 1),
            room_probe_window_seconds=_int(env, "RUANG_ROOM_PROBE_WINDOW_SECONDS", 600, 1),
            rooms_per_counselor=_int(env, "RUANG_MAX_ROOMS_PER_COUNSELOR", 500, 1),
            waiting_held_envelopes=_int(env, "RUANG_WAITING_HELD", 20, 0),
            resume_seconds=_int(env, "RUANG_RESUME_SECONDS", 60, 1),
            room_capacity=_int(env, "RUANG_ROOM_CAPACITY", 1, 1),
            max_waiting=_int(env, "RUANG_MAX_WAITING", 10, 1),
            turn_ttl_seconds=_int(env, "RUANG_TURN_TTL_SECONDS", 600, 60),
            precheck_turn_ttl_seconds=_int(env, "RUANG_PRECHECK_TURN_TTL_SECONDS", 60, 10),
            precheck_turn_per_ip=_int(env, "RUANG_PRECHECK_TURN_PER_IP", 30, 1),
            turn_per_caller=_int(env, "RUANG_TURN_PER_CALLER", 30, 1),
            turn_window_seconds=_int(env, "RUANG_TURN_WINDOW_SECONDS", 600, 1),
            precheck_window_seconds=_int(env, "RUANG_PRECHECK_WINDOW_SECONDS", 600, 1),
            echo_max=_int(env, "RUANG_ECHO_MAX", 4, 0),
            echo_seconds=_int(env, "RUANG_ECHO_SECONDS", 30, 5),
            echo_per_ip=_int(env, "RUANG_ECHO_PER_IP", 20, 1),
            echo_max_bytes=_int(env, "RUANG_ECHO_MAX_BYTES", 32 * 1024 * 1024, 0),
        )
        turn_urls = _list(env, "RUANG_TURN_URLS")
        turn_secret = env.get("RUANG_TURN_SECRET", "")
        check_turn(turn_urls, turn_secret)
        return cls(
            host=env.get("RUANG_HOST", "0.0.0.0"),  # noqa: S104
            port=_int(env, "RUANG_PORT", 8443, 0),
            data_dir=Path(env.get("RUANG_DATA_DIR", "data")),
            cert_dir=Path(env.get("RUANG_CERT_DIR", "certs")),
            database_url=normalise_database_url(db_url) if db_url else "",
            database_pool_size=_int(env, "RUANG_DATABASE_POOL_SIZE", 10, 1),
            redis_url=env.get("RUANG_REDIS_URL", ""),
            tls_cert=Path(cert) if cert else None,
            tls_key=Path(key) if key else None,
            plain_http=_bool(env, "RUANG_PLAIN_HTTP"),
            public_origins=origins,
            secret_key=env.get("RUANG_SECRET_KEY", ""),
            session_minutes=_float(env, "RUANG_SESSION_MINUTES", 60.0),
            session_max_hours=_float(env, "RUANG_SESSION_MAX_HOURS", 12.0),
            audit_days=_int(env, "RUANG_AUDIT_DAYS", 30, 1),
            turn_urls=turn_urls,
            turn_secret=turn_secret,
            metrics_token=env.get("RUANG_METRICS_TOKEN", ""),
            trusted_proxies=tuple(proxies),
            session_length_minutes=_int(env, "RUANG_SESSION_LENGTH_MINUTES", 50, 1),
            log_level=level,
            event_loop=_choice(env, "RUANG_EVENT_LOOP", ("auto", "uvloop", "asyncio")),
            limits=limits,
        )
