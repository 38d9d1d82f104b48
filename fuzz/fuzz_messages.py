"""Fuzz target: frames into ``signaling.messages.parse`` (and resume tokens, and the text
parsers of ``signaling.crypto``). Every input is a message that round-trips or a documented
``ProtocolError`` / ``TokenError`` / ``CryptoError``; anything else is a finding.

    .venv/bin/python fuzz/fuzz_messages.py -max_total_time=60 fuzz/corpus/messages
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.common import Reader, atheris_main
from fuzz.protocol_inputs import check_crypto_text, check_frame, check_token


def TestOneInput(data: bytes) -> None:  # atheris calls it by this name
    r = Reader(data)
    mode = r.pick(4)
    text = r.rest().decode("utf-8", errors="surrogateescape")  # lone surrogates too
    if mode in (0, 1):
        check_frame(text)
    elif mode == 2:
        check_token(text)
    else:
        check_crypto_text(text)


if __name__ == "__main__":
    atheris_main(TestOneInput)
