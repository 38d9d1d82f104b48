"""Write tests/vectors/v1.json: the pinned protocol v1 test vectors (Python and JS must pass them).

Every input is deterministic: ``_det(label, n)`` = the first n bytes of
SHA-256(b"ruang/v1/vectors/" + label), and IVs are fixed, so running this again gives the same
file. Run ``python tests/vectors/make_vectors.py`` to rewrite it, ``--check`` to compare only.
The file is the source of truth: once published, a change to it is a protocol change.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from signaling import crypto
from signaling.e2e import SecureChannel

OUT = Path(__file__).with_name("v1.json")


def _det(label: str, n: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"ruang/v1/vectors/{label}/{counter}".encode()).digest()
        counter += 1
    return out[:n]


def _room(label: str) -> tuple[str, str]:
    return crypto.b64u_encode(_det(f"{label}/id", 16)), crypto.b64u_encode(_det(f"{label}/key", 32))


def _fp(label: str) -> str:
    return crypto.canonical_fingerprint(hashlib.sha256(f"cert {label}".encode()).digest())


def _b64u() -> dict[str, Any]:
    valid = [_det("b64u", n) for n in range(7)] + [b"\xfb\xff\xbf", b"\x00\x10\x83\xff"]
    return {
        "valid": [{"hex": raw.hex(), "b64u": crypto.b64u_encode(raw)} for raw in valid],
        "invalid": [
            {"b64u": "AA==", "why": "padding"},
            {"b64u": "AAA=", "why": "padding"},
            {"b64u": "A", "why": "length mod 4 == 1"},
            {"b64u": "AAAAA", "why": "length mod 4 == 1"},
            {"b64u": "AB", "why": "non-zero trailing bits"},
            {"b64u": "AAB", "why": "non-zero trailing bits"},
            {"b64u": "ab+/", "why": "standard alphabet, not url-safe"},
            {"b64u": "ab c", "why": "space"},
            {"b64u": "abc\n", "why": "newline"},
            {"b64u": "ab.d", "why": "not in alphabet"},
            {"b64u": "\u0661\u0662\u0663\u0664", "why": "non-ASCII digits"},
        ],
    }


def _rooms() -> dict[str, Any]:
    rooms = [_room("room-a"), _room("room-b")]
    return {
        "ids_valid": [rid for rid, _ in rooms],
        "ids_invalid": [
            rooms[0][0][:-1],
            rooms[0][0] + "A",
            rooms[0][0][:-1] + "B",  # 16 bytes end in 4 unused bits: 'B' sets one
            rooms[0][0][:-1] + "=",
            rooms[0][0][:-2] + "+Q",
            crypto.b64u_encode(_det("room-c/id", 18)),
            "",
        ],
        "keys_valid": [{"b64u": key, "hex": crypto.b64u_decode(key).hex()} for _, key in rooms],
        "keys_invalid": [rooms[0][1][:-1], rooms[0][1] + "A", rooms[0][1][:-1] + "B", ""],
        "signal_keys": [
            {
                "room_id": rid,
                "room_key": key,
                "signal_key_hex": crypto.derive_signal_key(crypto.b64u_decode(key), rid).hex(),
            }
            for rid, key in rooms
        ],
    }


def _aad_fields(room_id: str, sender: str, epoch: str, recipient: str) -> dict[str, str]:
    return {
        "room_id": room_id,
        "sender_id": sender,
        "sender_epoch": epoch,
        "recipient_id": recipient,
    }


def _aad(f: dict[str, str]) -> bytes:
    return crypto.envelope_aad(f["room_id"], f["sender_id"], f["sender_epoch"], f["recipient_id"])


def _aads() -> dict[str, Any]:
    rid = _room("room-a")[0]
    ep = crypto.b64u_encode(_det("epoch-a", 16))
    cases = [
        _aad_fields(rid, "p1", ep, "p2"),
        _aad_fields(rid, "p2", ep, "p1"),
        _aad_fields(rid, "p1p", ep, "2"),
        _aad_fields(rid, "Łukasz-ü", ep, "訪問者"),
        _aad_fields("r", "s", "e", "x" * 300),
    ]
    valid = [{**f, "aad_hex": _aad(f).hex()} for f in cases]
    invalid = [
        {**_aad_fields(rid, "", ep, "p2"), "why": "empty field"},
        {**_aad_fields(rid, "p1", ep, "\ud800"), "why": "lone surrogate"},
        {**_aad_fields(rid, "p1", ep, "y" * 65536), "why": "longer than 65535 bytes"},
    ]
    return {"valid": valid, "invalid": invalid}


_PLAINTEXTS = [
    ("empty", b""),
    ("ascii json", b'{"seq":1,"type":"chat","id":"m1","text":"hello"}'),
    ("non-ascii json", '{"seq":2,"type":"chat","text":"Halo, apa kabar? 👋 ü 訪"}'.encode()),
    ("binary", bytes(range(256))),
]


def _seal() -> dict[str, Any]:
    rooms = [_room("room-a"), _room("room-b")]
    ok: list[dict[str, Any]] = []
    for i, (name, plaintext) in enumerate(_PLAINTEXTS):
        rid, key = rooms[i % 2]
        fields = _aad_fields(rid, f"sender-{i}", crypto.b64u_encode(_det(f"ep{i}", 16)), "peer")
        iv = _det(f"iv/{name}", 12)
        signal_key = crypto.derive_signal_key(crypto.b64u_decode(key), rid)
        box = crypto.seal(signal_key, _aad(fields), plaintext, iv=iv)
        ok.append(
            {
                "name": name,
                "room_key": key,
                **fields,
                "iv_hex": iv.hex(),
                "plaintext_hex": plaintext.hex(),
                "box": box,
            }
        )
    base = ok[1]
    raw = crypto.b64u_decode(base["box"])

    def flip(bit: int) -> str:
        data = bytearray(raw)
        data[bit // 8] ^= 1 << (7 - bit % 8)
        return crypto.b64u_encode(bytes(data))

    other_room, other_key = next(r for r in rooms if r[0] != base["room_id"])
    fail = [
        ("flipped bit in iv", {"box": flip(0)}),
        ("flipped bit in ciphertext", {"box": flip(12 * 8 + 3)}),
        ("flipped bit in tag", {"box": flip(len(raw) * 8 - 1)}),
        ("tag truncated by one byte", {"box": crypto.b64u_encode(raw[:-1])}),
        ("shorter than iv + tag", {"box": crypto.b64u_encode(raw[:27])}),
        ("empty box", {"box": ""}),
        ("padded base64", {"box": base["box"] + "="}),
        ("character outside the url-safe alphabet", {"box": "+" + base["box"][1:]}),
        ("wrong sender id (relabelled)", {"sender_id": "sender-x"}),
        ("wrong sender epoch", {"sender_epoch": crypto.b64u_encode(_det("ep-x", 16))}),
        ("wrong recipient (reflected)", {"recipient_id": base["sender_id"]}),
        ("moved to another room", {"room_id": other_room}),
        ("wrong room key", {"room_key": other_key}),
    ]
    negatives = []
    for name, change in fail:
        case = {k: base[k] for k in ("room_key", "room_id", "sender_id", "sender_epoch")}
        case.update({"recipient_id": base["recipient_id"], "box": base["box"]})
        case.update(change)
        negatives.append({"name": name, **case})
    return {"ok": ok, "fail": negatives}


def _fingerprints() -> dict[str, Any]:
    digests = [hashlib.sha256(b"cert A").digest(), bytes(32), b"\xab" * 32]
    good = crypto.canonical_fingerprint(digests[0])
    return {
        "valid": [
            {"digest_hex": d.hex(), "fingerprint": crypto.canonical_fingerprint(d)} for d in digests
        ],
        "invalid": [
            good.lower(),
            good.replace("sha-256", "SHA-256"),
            good.replace("sha-256", "sha-1"),
            good.replace(" ", "  ", 1),
            good + " ",
            " " + good,
            good + ":00",
            good[:-3],
            good.replace(":", "", 1),
            good.replace(":", "-"),
            "sha-256 " + digests[0].hex().upper(),
            good + "\n",
        ],
    }


def _commitments() -> dict[str, Any]:
    rows = []
    for label in ("A", "B"):
        fp, nonce = _fp(label), _det(f"commit-nonce/{label}", 32)
        digest = crypto.commitment(fp, nonce)
        rows.append({"fingerprint": fp, "nonce_hex": nonce.hex(), "commit_hex": digest.hex()})
    a, b = rows
    mismatches = [
        {
            "commit_hex": a["commit_hex"],
            "fingerprint": b["fingerprint"],
            "nonce_hex": a["nonce_hex"],
            "why": "swapped fingerprint",
        },
        {
            "commit_hex": a["commit_hex"],
            "fingerprint": a["fingerprint"],
            "nonce_hex": b["nonce_hex"],
            "why": "other nonce",
        },
        {
            "commit_hex": a["commit_hex"],
            "fingerprint": a["fingerprint"].lower(),
            "nonce_hex": a["nonce_hex"],
            "why": "non-canonical fingerprint",
        },
        {
            "commit_hex": a["commit_hex"][:-2],
            "fingerprint": a["fingerprint"],
            "nonce_hex": a["nonce_hex"],
            "why": "truncated commit",
        },
    ]
    return {"ok": rows, "mismatch": mismatches}


def _sas_row(
    name: str, key: bytes, fps: tuple[str, str], nonces: tuple[bytes, bytes]
) -> dict[str, Any]:
    code = crypto.safety_code(key, fps[0], fps[1], nonces[0], nonces[1])
    salt = fps[0].encode() + fps[1].encode() + nonces[0] + nonces[1]
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    okm = HKDF(algorithm=hashes.SHA256(), length=8, salt=salt, info=crypto.SAS_INFO).derive(key)
    return {
        "name": name,
        "room_key": crypto.b64u_encode(key),
        "fp_counselor": fps[0],
        "fp_client": fps[1],
        "nonce_counselor_hex": nonces[0].hex(),
        "nonce_client_hex": nonces[1].hex(),
        "okm_hex": okm.hex(),
        "digits": code.digits,
        "words": list(code.words),
    }


def _safety_codes() -> list[dict[str, Any]]:
    key = crypto.b64u_decode(_room("room-a")[1])
    fa, fb = _fp("counselor"), _fp("client")
    na, nb = _det("sas-nonce/counselor", 32), _det("sas-nonce/client", 32)
    rows = [
        _sas_row("basic", key, (fa, fb), (na, nb)),
        _sas_row("roles swapped (must differ from basic)", key, (fb, fa), (nb, na)),
        _sas_row("other room key", crypto.b64u_decode(_room("room-b")[1]), (fa, fb), (na, nb)),
        _sas_row("other client nonce", key, (fa, fb), (na, _det("sas-nonce/client2", 32))),
    ]
    for i in range(1000):  # one whose digits start with a zero, to pin the padding
        row = _sas_row("leading zero digits", key, (fa, fb), (na, _det(f"sas-zero/{i}", 32)))
        if row["digits"].startswith("0"):
            rows.append(row)
            break
    return rows


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _channel() -> dict[str, Any]:
    """A scripted exchange built from raw seals, so SecureChannel is checked, not trusted.

    The commit value is arbitrary bytes: the channel does not interpret bodies.
    """
    rid, key_text = _room("room-a")
    key = crypto.b64u_decode(key_text)
    signal = crypto.derive_signal_key(key, rid)
    peers = {
        "counselor": {"id": "c-1", "epoch": crypto.b64u_encode(_det("chan/epoch/c", 16))},
        "client": {"id": "k-1", "epoch": crypto.b64u_encode(_det("chan/epoch/k", 16))},
    }
    c1, k1, k2 = (crypto.b64u_encode(_det(f"chan/nonce/{n}", 32)) for n in ("c1", "k1", "k2"))
    steps: list[dict[str, Any]] = []

    def env(frm: str, to: str, body: dict[str, Any], expect: str) -> dict[str, Any]:
        fields = _aad_fields(rid, peers[frm]["id"], peers[frm]["epoch"], peers[to]["id"])
        text = _json(body)
        iv = _det(f"chan/iv/{len(steps)}", 12)
        box = crypto.seal(signal, _aad(fields), text.encode(), iv=iv)
        step = {
            "op": "deliver",
            "from": frm,
            "to": to,
            "epoch": peers[frm]["epoch"],
            "plaintext": text,
            "box": box,
            "expect": expect,
        }
        steps.append(step)
        return step

    def hello(side: str, nonce: str) -> dict[str, Any]:
        ep = peers[side]["epoch"]
        return {"seq": 1, "type": "hello", "epoch": ep, "nonce": nonce, "caps": ["ice-restart"]}

    def chat(seq: int, text: str, bind: list[str]) -> dict[str, Any]:
        return {"seq": seq, "type": "chat", "id": f"m{seq}", "text": text, "bind": bind}

    commit = crypto.b64u_encode(_det("chan/commit/c", 32))
    steps.append({"op": "hello", "side": "client", "nonce": k1})
    steps.append({"op": "hello", "side": "counselor", "nonce": c1})
    env("counselor", "client", hello("counselor", c1), "ok")
    env("client", "counselor", hello("client", k1), "ok")
    c_commit = env(
        "counselor",
        "client",
        {"seq": 2, "type": "commit", "role": "counselor", "commit": commit, "bind": [c1, k1]},
        "ok",
    )
    env("client", "counselor", chat(2, "Halo 👋 ü", [k1, c1]), "ok")
    steps.append({**c_commit, "expect": "ReplayError"})
    env("client", "counselor", chat(3, "bind swapped", [c1, k1]), "BindError")
    steps.append({"op": "hello", "side": "client", "nonce": k2})
    env("counselor", "client", chat(3, "bound to the old hello", [c1, k1]), "BindError")
    env("counselor", "client", chat(4, "bound to the new hello", [c1, k2]), "ok")
    env("counselor", "client", chat(6, "after a gap", [c1, k2]), "ok")
    env("counselor", "client", {"seq": 7, "type": "chat", "text": "no bind"}, "BindError")
    env("counselor", "counselor", chat(8, "reflected", [c1, k2]), "ReflectionError")
    gaps = {"client": 2, "counselor": 0}
    _prove_script(steps, peers, rid, key, gaps)
    return {
        "room_id": rid,
        "room_key": key_text,
        "peers": peers,
        "steps": steps,
        "final_gap_count": gaps,
    }


def _prove_script(
    steps: list[dict[str, Any]],
    peers: dict[str, dict[str, str]],
    rid: str,
    key: bytes,
    gaps: dict[str, int],
) -> None:
    """Run the script against SecureChannel before pinning it (a mismatch is a bug somewhere)."""
    chans = {side: SecureChannel(rid, key, p["id"], p["epoch"]) for side, p in peers.items()}
    for step in steps:
        if step["op"] == "hello":
            chans[step["side"]].new_hello(["ice-restart"], nonce=crypto.b64u_decode(step["nonce"]))
            continue
        try:
            chans[step["to"]].open(peers[step["from"]]["id"], step["epoch"], step["box"])
            got = "ok"
        except crypto.CryptoError as exc:
            got = type(exc).__name__
        if got != step["expect"]:
            raise SystemExit(f"channel script: expected {step['expect']}, got {got}")
    if {side: chan.gap_count for side, chan in chans.items()} != gaps:
        raise SystemExit("channel script: unexpected gap counts")


def _fails(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except crypto.CryptoError:
        return True
    return False


def _self_check(v: dict[str, Any]) -> None:
    """Every negative case must really be refused by the implementation we pin."""
    bad = [c["b64u"] for c in v["b64u"]["invalid"] if not _fails(crypto.b64u_decode, c["b64u"])]
    bad += [r for r in v["rooms"]["ids_invalid"] if crypto.is_room_id(r)]
    bad += [k for k in v["rooms"]["keys_invalid"] if not _fails(crypto.parse_room_key, k)]
    bad += [c["why"] for c in v["aad"]["invalid"] if not _fails(_aad, c)]
    bad += [f for f in v["fingerprints"]["invalid"] if not _fails(crypto.parse_fingerprint, f)]
    for c in v["seal"]["fail"]:
        sig = crypto.derive_signal_key(crypto.b64u_decode(c["room_key"]), c["room_id"])
        if not _fails(crypto.open_box, sig, _aad(c), c["box"]):
            bad.append(c["name"])
    for c in v["commitments"]["mismatch"]:
        args = (bytes.fromhex(c["commit_hex"]), c["fingerprint"], bytes.fromhex(c["nonce_hex"]))
        if crypto.verify_reveal(*args):
            bad.append(c["why"])
    codes = {(c["digits"], tuple(c["words"])) for c in v["safety_codes"]}
    if bad or len(codes) != len(v["safety_codes"]):
        raise SystemExit(f"negative vectors accepted: {bad!r}")


def build() -> dict[str, Any]:
    words = list(crypto.SAS_WORDS)
    vectors = {
        "version": 1,
        "generated_by": "tests/vectors/make_vectors.py",
        "constants": {
            "signal_info": crypto.SIGNAL_INFO.decode(),
            "sas_info": crypto.SAS_INFO.decode(),
            "aad_prefix_hex": crypto.AAD_PREFIX.hex(),
            "iv_bytes": crypto.IV_BYTES,
            "tag_bytes": crypto.TAG_BYTES,
            "nonce_bytes": crypto.NONCE_BYTES,
        },
        "b64u": _b64u(),
        "rooms": _rooms(),
        "aad": _aads(),
        "seal": _seal(),
        "fingerprints": _fingerprints(),
        "commitments": _commitments(),
        "safety_codes": _safety_codes(),
        "sas_words": words,
        "sas_words_sha256": hashlib.sha256("\n".join(words).encode()).hexdigest(),
        "channel": _channel(),
    }
    _self_check(vectors)
    return vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare with v1.json, write nothing")
    args = parser.parse_args()
    text = json.dumps(build(), indent=1, ensure_ascii=True) + "\n"
    if args.check:
        same = OUT.exists() and OUT.read_text(encoding="utf-8") == text
        print("v1.json is up to date" if same else "v1.json differs from the generator")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
