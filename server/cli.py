"""The ``ruang`` command line: serve, counselor accounts, rooms, and the Python peer."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import resource
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from server import accounts, audit
from server.app import StartupError, create_app, prepare_data_dir
from server.config import Config, ConfigError
from server.db import connect_failure, create_schema, make_engine
from server.migrations import MigrationError
from server.rooms_store import RoomError
from server.secrets_store import SecretError
from server.tls import TlsError, ensure_dev_certificate, ssl_context

log = logging.getLogger("ruang")


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


def _read_password(args: argparse.Namespace, confirm: bool = True) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise UsageError("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for a password: use --password-stdin")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise UsageError("the passwords differ")
    return password


def raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d", soft)


def cmd_serve(config: Config, _args: argparse.Namespace) -> int:
    raise_nofile_limit()
    ssl_ctx = None
    if config.tls:
        if config.tls_cert and config.tls_key:
            cert, key = config.tls_cert, config.tls_key
        else:
            cert, key = ensure_dev_certificate(config.cert_dir)
            log.info("using the development certificate %s", cert)
        ssl_ctx = ssl_context(cert, key)
    app = create_app(config)
    scheme = "https" if ssl_ctx else "http"
    shown = "localhost" if config.host in {"0.0.0.0", "::"} else config.host  # noqa: S104
    print(
        f"Ruang is starting on {scheme}://{shown}:{config.port}\n"
        "Create the first counselor with:  .venv/bin/ruang counselor add you@example.org",
        file=sys.stderr,
        flush=True,
    )
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        ssl_context=ssl_ctx,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
        handle_signals=True,
        loop=event_loop(config.event_loop),
    )
    return 0


def event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """uvloop when installed (``RUANG_EVENT_LOOP=auto``, the default: about a fifth less CPU per
    relayed envelope at moderate rates, docs/performance.md), else asyncio's own loop."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise StartupError("RUANG_EVENT_LOOP=uvloop, but uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


async def _with_engine(
    config: Config, work: Callable[..., Awaitable[int]], migrate: bool = True
) -> int:
    prepare_data_dir(config)
    url = config.effective_database_url
    engine = make_engine(url)
    try:
        try:
            if migrate:
                await create_schema(engine)
            else:
                async with engine.connect():
                    pass
        except Exception as exc:
            reason = connect_failure(exc, url)
            if reason is None:
                raise
            raise StartupError(f"cannot open the database: {reason}") from None
        return await work(engine)
    finally:
        await engine.dispose()


def cmd_db(config: Config, args: argparse.Namespace) -> int:
    from server import migrations

    async def work(engine: AsyncEngine) -> int:
        revision = await migrations.current(engine)
        newest = migrations.head()
        if revision == newest:
            print(f"{revision} (head)")
        elif revision is None:
            print("none (empty, or made before migrations): run 'ruang db upgrade'")
        else:
            print(f"{revision} (head is {newest}): run 'ruang db upgrade'")
        return 0

    # "upgrade" migrates (as every command does) and then reports; "current" only looks.
    return asyncio.run(_with_engine(config, work, migrate=args.action == "upgrade"))


def cmd_counselor(config: Config, args: argparse.Namespace) -> int:
    async def work(engine: AsyncEngine) -> int:
        if args.action == "list":
            for c in await accounts.list_counselors(engine):
                print(f"{c.email}\t{'active' if c.active else 'disabled'}")
            return 0
        if args.action == "add":
            password = _read_password(args)
            c = await accounts.add_counselor(engine, args.email, password)
            await audit.record(engine, audit.AuditEvent.COUNSELOR_ADDED, counselor_id=c.id)
            print(f"added counselor {c.email}", file=sys.stderr)
            return 0
        if args.action == "passwd":
            password = _read_password(args)
            c = await accounts.set_password(engine, args.email, password)
            await audit.record(engine, audit.AuditEvent.PASSWORD_CHANGED, counselor_id=c.id)
            print(f"password changed for {c.email}; their sessions were ended", file=sys.stderr)
            return 0
        c = await accounts.disable_counselor(engine, args.email)
        await audit.record(engine, audit.AuditEvent.COUNSELOR_DISABLED, counselor_id=c.id)
        print(f"disabled {c.email}; their sessions were ended", file=sys.stderr)
        return 0

    return asyncio.run(_with_engine(config, work))


def cmd_room(config: Config, args: argparse.Namespace) -> int:
    from server.rooms_store import create_room
    from signaling.crypto import new_room_key

    async def work(engine: AsyncEngine) -> int:
        counselor_id = await accounts.counselor_id_for_email(engine, args.email)
        if counselor_id is None:
            raise accounts.UnknownCounselor(f"no counselor with email {args.email}")
        room = await create_room(
            engine, counselor_id, args.label or "", config.limits.rooms_per_counselor
        )
        origin = (args.origin or config.default_origin).rstrip("/")
        # The key is made here, printed once, and stored nowhere.
        print(f"{origin}/r/{room.id}#{new_room_key()}")
        return 0

    return asyncio.run(_with_engine(config, work))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ruang", description="Ruang counseling server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="start the server")

    counselor = sub.add_parser("counselor", help="manage counselor accounts")
    csub = counselor.add_subparsers(dest="action", required=True)
    for name, helptext in (
        ("add", "add a counselor"),
        ("passwd", "set a counselor's password (ends their sessions)"),
    ):
        p = csub.add_parser(name, help=helptext)
        p.add_argument("email")
        p.add_argument("--password-stdin", action="store_true", help="read one line from stdin")
    csub.add_parser("list", help="list counselors (email, active/disabled)")
    p = csub.add_parser("disable", help="disable a counselor (ends their sessions)")
    p.add_argument("email")

    room = sub.add_parser("room", help="manage rooms")
    rsub = room.add_subparsers(dest="action", required=True)
    p = rsub.add_parser("add", help="create a room and print its full link (key included)")
    p.add_argument("email")
    p.add_argument("--label", default="")
    p.add_argument("--origin", default="", help="public origin, e.g. https://ruang.example.org")

    db = sub.add_parser("db", help="database schema migrations")
    dsub = db.add_subparsers(dest="action", required=True)
    dsub.add_parser("upgrade", help="migrate the database to this version's schema")
    dsub.add_parser("current", help="print the database's schema revision")

    try:
        from signaling.peer.cli import add_join_parser
    except ImportError:  # the Python peer lands with issue 3
        pass
    else:
        add_join_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"ruang: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Libraries below WARNING could log SQL parameters (emails) or SDP: never let them.
    for noisy in ("aiosqlite", "sqlalchemy", "asyncio", "aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return cmd_serve(config, args)
        if args.command == "counselor":
            return cmd_counselor(config, args)
        if args.command == "room":
            return cmd_room(config, args)
        if args.command == "db":
            return cmd_db(config, args)
        if args.command == "join":
            run_join: Callable[[Config, argparse.Namespace], int] = args.run
            return run_join(config, args)
    except UsageError as exc:
        print(f"ruang: {exc}", file=sys.stderr)
        return 2
    except (
        StartupError,
        TlsError,
        SecretError,
        MigrationError,
        accounts.AccountError,
        RoomError,
    ) as exc:
        print(f"ruang: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
