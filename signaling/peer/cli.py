"""``ruang join``: argument parsing, the JSON-line events on stdout, exit codes.

    ruang join LINK [--name N] [--text-only] [--say TEXT] [--seconds S] [--insecure]
                    [--relay-only]
    ruang join LINK --counselor --email E --password-stdin [...]

Exit codes: 0 ended normally, 2 usage, 3 declined, 4 unknown or closed room, 5 no connection
within 30 s, 1 anything else. Logs go to stderr, and name no content: no chat text, SDP, names,
keys or addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import math
import sys
from typing import TYPE_CHECKING, Any

from signaling.peer.config import PeerConfig
from signaling.peer.errors import ExitCode, UsageError
from signaling.peer.events import EventLog
from signaling.peer.inner import MAX_CHAT, MAX_NAME
from signaling.peer.link import parse_link

if TYPE_CHECKING:
    from server.config import Config

log = logging.getLogger("ruang.peer")
QUIET_LOGGERS = ("aioice", "aiortc")  # they log candidates and SDP at INFO/DEBUG


def add_join_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "join",
        help="join a room as a client (or as its counselor) with synthetic media",
        description="Join a room with synthetic audio and video; events as JSON lines on stdout.",
    )
    p.add_argument("link", help="the full room link, https://HOST/r/<room id>#<key>")
    p.add_argument("--name", default="", help="display name (sent end-to-end encrypted)")
    p.add_argument("--text-only", action="store_true", help="no media: chat over the relay")
    p.add_argument("--say", default="", help="send this chat message once connected")
    p.add_argument("--seconds", type=float, default=None, help="stay this long once connected")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument(
        "--relay-only",
        action="store_true",
        help='media only through the server\'s TURN relay (iceTransportPolicy "relay")',
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="give up (exit code 5) when no connection is made this many seconds after admission",
    )
    p.add_argument("--counselor", action="store_true", help="join as the room's counselor")
    p.add_argument("--email", default="", help="the counselor's email (with --counselor)")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from one stdin line"
    )
    p.set_defaults(run=run_join)
    return p


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("no terminal to ask for a password: use --password-stdin")
    if not password:
        raise UsageError("no password given")
    return password


def config_from_args(args: argparse.Namespace) -> PeerConfig:
    """Check the arguments; raises ``UsageError`` (exit code 2)."""
    link = parse_link(args.link)
    seconds = args.seconds
    if seconds is not None and (not math.isfinite(seconds) or seconds <= 0):
        raise UsageError("--seconds must be a positive number")
    if len(args.name) > MAX_NAME:
        raise UsageError(f"--name is longer than {MAX_NAME} characters")
    if len(args.say) > MAX_CHAT:
        raise UsageError(f"--say is longer than {MAX_CHAT} characters")
    if args.relay_only and args.text_only:
        raise UsageError("--relay-only is about media; --text-only has none")
    if args.counselor:
        if not args.email:
            raise UsageError("--counselor needs --email")
        if args.name:
            raise UsageError("--name is for clients; a counselor has none in the call")
        password = _password(args)
    else:
        if args.email or args.password_stdin:
            raise UsageError("--email and --password-stdin go with --counselor")
        password = ""
    return PeerConfig(
        link=link,
        counselor=args.counselor,
        name=args.name,
        text_only=args.text_only,
        say=args.say,
        seconds=seconds,
        insecure=args.insecure,
        email=args.email,
        password=password,
        relay_only=args.relay_only,
        connect_timeout=args.connect_timeout,
    )


def run_join(_config: Config, args: argparse.Namespace) -> int:
    """Entry point from ``server.cli``: returns the exit code."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    events = EventLog()
    try:
        config = config_from_args(args)
    except UsageError as exc:
        print(f"ruang join: {exc}", file=sys.stderr)
        events.emit("error", message=str(exc))
        return int(ExitCode.USAGE)
    from signaling.peer.session import Session  # aiortc is imported only to run

    return asyncio.run(Session(config, events).run())
