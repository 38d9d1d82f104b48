"""Fuzz target: what the Python peer does with untrusted envelope bytes: ``SecureChannel.open``
on any (sender, epoch, box), any plaintext sealed under the right key (so the JSON, seq, bind,
hello, commit/reveal and inner-message checks are reached), data channel messages, and
authentic resume tokens with any payload. Every input is handled or refused with a
``CryptoError``, ``InnerMessageError`` or ``TokenError``; anything else is a finding.

    .venv/bin/python fuzz/fuzz_envelope.py -max_total_time=60 fuzz/corpus/envelope
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.common import Reader, atheris_main
from fuzz.protocol_inputs import (
    channels,
    check_body,
    check_datachannel,
    check_envelope,
    check_signed_payload,
    seal_plaintext,
)


def TestOneInput(data: bytes) -> None:  # atheris calls it by this name
    r = Reader(data)
    mode = r.pick(6)
    counselor, client = channels()
    if mode == 0:  # anything from the server: sender, epoch and box split at NUL bytes
        parts = r.rest().decode("utf-8", errors="surrogateescape").split("\x00")
        sender, epoch, box = [*parts, "", "", ""][:3]
        check_envelope(client, sender or "counselor", epoch or counselor.epoch, box)
    elif mode == 1:  # any plaintext bytes under the right key
        box = seal_plaintext(client, "counselor", counselor.epoch, r.rest())
        check_envelope(client, "counselor", counselor.epoch, box)
    elif mode == 2:  # a JSON body, bound to the current hellos
        raw = r.rest()
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return
        if not isinstance(body, dict):
            return
        plaintext = {"seq": 1, **body, "bind": [counselor.hello_nonce, client.hello_nonce]}
        try:
            sealed = json.dumps(plaintext).encode()
        except (ValueError, RecursionError):
            return
        box = seal_plaintext(client, "counselor", counselor.epoch, sealed)
        check_envelope(client, "counselor", counselor.epoch, box)
        check_body(body)
    elif mode == 3:
        check_datachannel(r.rest().decode("utf-8", errors="surrogateescape"))
    elif mode == 4:
        check_signed_payload(r.rest())
    else:
        try:
            body = json.loads(r.rest())
        except (ValueError, RecursionError):
            return
        if isinstance(body, dict):
            check_body(body)


if __name__ == "__main__":
    atheris_main(TestOneInput)
