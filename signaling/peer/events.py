"""The JSON-line events of ``ruang join`` on stdout: ``{"t": seconds, "event": name, ...}``.

stdout carries nothing else; logs go to stderr and never contain plaintext, SDP, names or keys.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class EventLog:
    """Writes one JSON object per line, flushed at once, with ``t`` since start."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._start = time.monotonic()
        self.names: list[str] = []  # event names so far (for decisions, never content)

    def emit(self, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {"t": round(time.monotonic() - self._start, 3), "event": event}
        record.update(fields)
        self.names.append(event)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (e.g. in a chat text): escape it
                line = json.dumps(record, separators=(",", ":"))
        self._stream.write(line + "\n")
        self._stream.flush()
