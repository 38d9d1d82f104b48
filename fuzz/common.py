"""What the fuzz targets and the fuzz tests share: the error codes docs/protocol.md documents
(read from the document itself, so an undocumented code fails), a recording sink, and a way to
run the hub's coroutines without an event loop (none of them awaits anything real)."""

from __future__ import annotations

import functools
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
T = TypeVar("T")


class UndocumentedError(AssertionError):
    """An input was refused with a code docs/protocol.md does not list."""


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


@functools.cache
def error_codes() -> frozenset[str]:
    """The ``code`` values of ``error`` messages: the table of section 7."""
    section = _section(PROTOCOL_DOC.read_text(encoding="utf-8"), "## 7. Errors")
    codes = frozenset(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))
    assert len(codes) >= 10, "the error table of docs/protocol.md section 7 was not found"
    return codes


@functools.cache
def resume_errors() -> frozenset[str]:
    """The values of ``joined.resume_error``: the row of the table in section 2."""
    section = _section(PROTOCOL_DOC.read_text(encoding="utf-8"), "## 2. Handshake")
    row = next(line for line in section.splitlines() if line.startswith("| `resume_error`"))
    codes = frozenset(re.findall(r"`([a-z_]+)`", row.split("|")[3].split(":")[-1]))
    assert codes, "the resume_error row of docs/protocol.md section 2 was not found"
    return codes


@functools.cache
def close_codes() -> frozenset[int]:
    """The WebSocket close codes of section 8."""
    section = _section(PROTOCOL_DOC.read_text(encoding="utf-8"), "## 8. Close codes")
    codes = frozenset(int(c) for c in re.findall(r"^\| (\d{4}) \|", section, flags=re.MULTILINE))
    assert len(codes) >= 10, "the close code table of docs/protocol.md section 8 was not found"
    return codes


def check_code(code: str) -> None:
    if code not in error_codes():
        raise UndocumentedError(f"error code {code!r} is not in docs/protocol.md section 7")


class Sink:
    """Records every frame and the first close (the transport side of a hub connection)."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closed: int | None = None

    def send(self, text: str) -> bool:
        if self.closed is not None:
            return False
        self.frames.append(text)
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = code


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the in-process hub with an in-memory generation
    counter) to its end, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the coroutine suspended: it needs an event loop")


class Reader:
    """Turns a fuzzer's bytes into small decisions (atheris' FuzzedDataProvider, without
    atheris, so the targets also run from plain Python over the seed corpus)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def __bool__(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def pick(self, n: int) -> int:
        """0 <= result < n."""
        return self.byte() % n

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


def atheris_main(test_one_input: Any) -> None:
    """``python fuzz/fuzz_x.py [libFuzzer flags] [corpus dir]``: run a target under atheris."""
    import sys

    import atheris  # type: ignore[import-untyped]  # the ``fuzz`` extra, for long runs only

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
