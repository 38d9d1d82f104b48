"""Protocol v1 cryptography: the pinned vectors (tests/vectors/v1.json), SecureChannel, CommitRound.

The JSON file is the source of truth. Where cheap, expected values are also recomputed here by an
independent route (stdlib HKDF, struct-packed AAD, hashlib) rather than the module under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling import crypto
from signaling.crypto import (
    EncodingError,
    EnvelopeError,
    FingerprintError,
    b64u_decode,
    b64u_encode,
)
from signaling.e2e import (
    BindError,
    CommitmentError,
    CommitRound,
    ReflectionError,
    ReplayError,
    SecureChannel,
    StaleEpochError,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "v1.json").read_text(encoding="utf-8")
)
ROOM_ID = VECTORS["rooms"]["ids_valid"][0]
ROOM_KEY = bytes.fromhex(VECTORS["rooms"]["keys_valid"][0]["hex"])
FP_A = VECTORS["fingerprints"]["valid"][0]["fingerprint"]
FP_B = VECTORS["commitments"]["ok"][1]["fingerprint"]
SECRET = "very-private-words"


def _ids(cases: list[dict[str, Any]], key: str) -> list[str]:
    return [str(c[key]) for c in cases]


# --- independent reference implementations (RFC 5869, the documented AAD layout) ---------------


def _hkdf_ref(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out, i = out + block, i + 1
    return out[:length]


def _aad_ref(c: dict[str, str]) -> bytes:
    out = b"ruang/v1/env\x00"
    for name in ("room_id", "sender_id", "sender_epoch", "recipient_id"):
        raw = c[name].encode("utf-8")
        out += len(raw).to_bytes(2, "big") + raw
    return out


def _aad(c: dict[str, str]) -> bytes:
    return crypto.envelope_aad(c["room_id"], c["sender_id"], c["sender_epoch"], c["recipient_id"])


# --- vectors -------------------------------------------------------------------------------------


def test_constants() -> None:
    k = VECTORS["constants"]
    assert VECTORS["version"] == 1
    assert k["signal_info"].encode() == crypto.SIGNAL_INFO == b"ruang/v1/signal"
    assert k["sas_info"].encode() == crypto.SAS_INFO == b"ruang/v1/sas"
    assert bytes.fromhex(k["aad_prefix_hex"]) == crypto.AAD_PREFIX == b"ruang/v1/env\x00"
    assert (k["iv_bytes"], k["tag_bytes"], k["nonce_bytes"]) == (12, 16, 32)


@pytest.mark.parametrize(
    "case", VECTORS["b64u"]["valid"], ids=_ids(VECTORS["b64u"]["valid"], "b64u")
)
def test_b64u_valid(case: dict[str, str]) -> None:
    raw = bytes.fromhex(case["hex"])
    assert b64u_encode(raw) == case["b64u"]
    assert b64u_decode(case["b64u"]) == raw


@pytest.mark.parametrize(
    "case", VECTORS["b64u"]["invalid"], ids=_ids(VECTORS["b64u"]["invalid"], "why")
)
def test_b64u_invalid(case: dict[str, str]) -> None:
    with pytest.raises(EncodingError):
        b64u_decode(case["b64u"])


def test_room_ids_and_keys() -> None:
    rooms = VECTORS["rooms"]
    assert all(crypto.is_room_id(r) for r in rooms["ids_valid"])
    assert not any(crypto.is_room_id(r) for r in rooms["ids_invalid"])
    for key in rooms["keys_valid"]:
        assert crypto.parse_room_key(key["b64u"]) == bytes.fromhex(key["hex"])
    for bad in rooms["keys_invalid"]:
        with pytest.raises(EncodingError):
            crypto.parse_room_key(bad)
    room_id, room_key = crypto.new_room_id(), crypto.new_room_key()
    assert len(room_id) == 22 and crypto.is_room_id(room_id)
    assert len(crypto.parse_room_key(room_key)) == 32 and len(room_key) == 43
    assert crypto.new_room_id() != room_id and crypto.new_room_key() != room_key


@pytest.mark.parametrize("case", VECTORS["rooms"]["signal_keys"], ids=["room-a", "room-b"])
def test_signal_keys(case: dict[str, str]) -> None:
    key = crypto.parse_room_key(case["room_key"])
    expected = bytes.fromhex(case["signal_key_hex"])
    assert crypto.derive_signal_key(key, case["room_id"]) == expected
    assert _hkdf_ref(key, case["room_id"].encode(), b"ruang/v1/signal", 32) == expected


@pytest.mark.parametrize("case", VECTORS["aad"]["valid"])
def test_aad_valid(case: dict[str, str]) -> None:
    assert _aad(case) == bytes.fromhex(case["aad_hex"]) == _aad_ref(case)


@pytest.mark.parametrize(
    "case", VECTORS["aad"]["invalid"], ids=_ids(VECTORS["aad"]["invalid"], "why")
)
def test_aad_invalid(case: dict[str, str]) -> None:
    with pytest.raises(EncodingError):
        _aad(case)


def _signal_key(case: dict[str, str]) -> bytes:
    return crypto.derive_signal_key(crypto.parse_room_key(case["room_key"]), case["room_id"])


@pytest.mark.parametrize("case", VECTORS["seal"]["ok"], ids=_ids(VECTORS["seal"]["ok"], "name"))
def test_seal_vectors(case: dict[str, str]) -> None:
    key, aad, plaintext = _signal_key(case), _aad(case), bytes.fromhex(case["plaintext_hex"])
    assert crypto.seal(key, aad, plaintext, iv=bytes.fromhex(case["iv_hex"])) == case["box"]
    assert crypto.open_box(key, aad, case["box"]) == plaintext
    assert b64u_decode(case["box"])[:12].hex() == case["iv_hex"]
    assert len(b64u_decode(case["box"])) == 12 + len(plaintext) + 16


@pytest.mark.parametrize("case", VECTORS["seal"]["fail"], ids=_ids(VECTORS["seal"]["fail"], "name"))
def test_open_fail_vectors(case: dict[str, str]) -> None:
    with pytest.raises(EnvelopeError):
        crypto.open_box(_signal_key(case), _aad(case), case["box"])


def test_fingerprint_vectors() -> None:
    for case in VECTORS["fingerprints"]["valid"]:
        digest = bytes.fromhex(case["digest_hex"])
        assert crypto.canonical_fingerprint(digest) == case["fingerprint"]
        assert crypto.parse_fingerprint(case["fingerprint"]) == digest
        assert re.fullmatch(r"sha-256 [0-9A-F]{2}(:[0-9A-F]{2}){31}", case["fingerprint"])
    for bad in VECTORS["fingerprints"]["invalid"]:
        with pytest.raises(FingerprintError):
            crypto.parse_fingerprint(bad)
    with pytest.raises(FingerprintError):
        crypto.canonical_fingerprint(bytes(31))


def test_commitment_vectors() -> None:
    for case in VECTORS["commitments"]["ok"]:
        nonce, commit = bytes.fromhex(case["nonce_hex"]), bytes.fromhex(case["commit_hex"])
        assert crypto.commitment(case["fingerprint"], nonce) == commit
        assert hashlib.sha256(case["fingerprint"].encode() + nonce).digest() == commit
        assert crypto.verify_reveal(commit, case["fingerprint"], nonce)
    for case in VECTORS["commitments"]["mismatch"]:
        commit, nonce = bytes.fromhex(case["commit_hex"]), bytes.fromhex(case["nonce_hex"])
        assert not crypto.verify_reveal(commit, case["fingerprint"], nonce), case["why"]


@pytest.mark.parametrize("case", VECTORS["safety_codes"], ids=_ids(VECTORS["safety_codes"], "name"))
def test_safety_code_vectors(case: dict[str, Any]) -> None:
    key = crypto.parse_room_key(case["room_key"])
    nc, nk = bytes.fromhex(case["nonce_counselor_hex"]), bytes.fromhex(case["nonce_client_hex"])
    code = crypto.safety_code(key, case["fp_counselor"], case["fp_client"], nc, nk)
    assert (code.digits, list(code.words)) == (case["digits"], case["words"])
    # Independently: okm from RFC 5869, then digits and words from the pinned word list.
    salt = case["fp_counselor"].encode() + case["fp_client"].encode() + nc + nk
    okm = _hkdf_ref(key, salt, b"ruang/v1/sas", 8)
    assert okm.hex() == case["okm_hex"]
    assert case["digits"] == str(int.from_bytes(okm[:4], "big") % 1_000_000).zfill(6)
    assert case["words"] == [VECTORS["sas_words"][b] for b in okm[4:]]


def test_safety_code_depends_on_role_order() -> None:
    by_name = {c["name"]: c for c in VECTORS["safety_codes"]}
    basic, swapped = by_name["basic"], by_name["roles swapped (must differ from basic)"]
    assert (basic["fp_counselor"], basic["fp_client"]) == (
        swapped["fp_client"],
        swapped["fp_counselor"],
    )
    assert (basic["digits"], basic["words"]) != (swapped["digits"], swapped["words"])
    assert any(c["digits"].startswith("0") for c in VECTORS["safety_codes"])


def test_sas_words() -> None:
    words = VECTORS["sas_words"]
    assert tuple(words) == crypto.SAS_WORDS
    assert hashlib.sha256("\n".join(words).encode()).hexdigest() == VECTORS["sas_words_sha256"]
    assert len(words) == 256 == len(set(words))
    assert all(re.fullmatch(r"[a-z]{3,7}", w) for w in words)
    assert words == sorted(words)


def test_channel_script() -> None:
    script = VECTORS["channel"]
    key = crypto.parse_room_key(script["room_key"])
    peers = script["peers"]
    chans = {
        s: SecureChannel(script["room_id"], key, p["id"], p["epoch"]) for s, p in peers.items()
    }
    for step in script["steps"]:
        if step["op"] == "hello":
            chans[step["side"]].new_hello(["ice-restart"], nonce=b64u_decode(step["nonce"]))
            continue
        receiver = chans[step["to"]]
        if step["expect"] == "ok":
            got = receiver.open(peers[step["from"]]["id"], step["epoch"], step["box"])
            assert got == json.loads(step["plaintext"])
        else:
            with pytest.raises(crypto.CryptoError) as info:
                receiver.open(peers[step["from"]]["id"], step["epoch"], step["box"])
            assert type(info.value).__name__ == step["expect"]
    assert {s: c.gap_count for s, c in chans.items()} == script["final_gap_count"]


# --- SecureChannel -------------------------------------------------------------------------------


def _pair(room_id: str = ROOM_ID) -> tuple[SecureChannel, SecureChannel]:
    """A counselor ("c") and a client ("k") channel that have exchanged hellos."""
    c, k = SecureChannel(room_id, ROOM_KEY, "c"), SecureChannel(room_id, ROOM_KEY, "k")
    k.open("c", *c.seal("k", c.new_hello(["ice-restart"])))
    c.open("k", *k.seal("c", k.new_hello(["rollback"])))
    return c, k


def _chat(text: str = SECRET) -> dict[str, Any]:
    return {"type": "chat", "id": "m1", "text": text}


def test_round_trip_schema() -> None:
    c, k = _pair()
    epoch, box = c.seal("k", _chat())
    assert epoch == c.epoch and len(b64u_decode(epoch)) == 16
    got = k.open("c", epoch, box)
    assert got == {**_chat(), "seq": 2, "bind": [c.hello_nonce, k.hello_nonce]}
    assert list(got)[:2] == ["seq", "type"]
    hello = k.peer_hello("c")
    assert hello is not None and hello.epoch == c.epoch and hello.caps == ("ice-restart",)
    assert k.gap_count == 0


def test_hello_answers_and_extra_fields() -> None:
    c, k = SecureChannel(ROOM_ID, ROOM_KEY, "counselor"), SecureChannel(ROOM_ID, ROOM_KEY, "k")
    hello = {**k.new_hello(["ice-restart"]), "name": "Ayu"}  # e.g. held for an absent counselor
    assert c.open("k", *k.seal("counselor", hello))["name"] == "Ayu"
    c_hello = c.new_hello([])
    k.open("counselor", *c.seal("k", c_hello))
    again = c.seal("k", c_hello)  # answering a hello again keeps the current nonce
    assert k.open("counselor", *again)["nonce"] == c.hello_nonce
    assert k.open("counselor", *c.seal("k", _chat()))["bind"] == [c.hello_nonce, k.hello_nonce]
    with pytest.raises(EncodingError):
        c.seal("k", {**c_hello, "nonce": k.hello_nonce})  # a hello not made by new_hello()


def test_tampered_box() -> None:
    c, k = _pair()
    epoch, box = c.seal("k", _chat())
    raw = bytearray(b64u_decode(box))
    raw[20] ^= 0x01
    with pytest.raises(EnvelopeError) as info:
        k.open("c", epoch, b64u_encode(bytes(raw)))
    assert SECRET not in repr(info.value)
    assert k.open("c", epoch, box)["text"] == SECRET  # the tampered copy changed nothing


def test_relabelled_sender() -> None:
    c, k = _pair()
    third = SecureChannel(ROOM_ID, ROOM_KEY, "x")
    epoch, box = c.seal("k", _chat())
    with pytest.raises(EnvelopeError):
        k.open("x", epoch, box)  # server claims someone else sent it
    with pytest.raises(EnvelopeError):
        k.open("c", third.epoch, box)  # or that it came from another epoch
    with pytest.raises(EnvelopeError):
        third.open("c", epoch, box)  # or delivers it to another recipient


def test_reflected_message() -> None:
    c, _k = _pair()
    epoch, box = c.seal("k", _chat())
    with pytest.raises(ReflectionError):
        c.open("c", epoch, box)
    with pytest.raises(EnvelopeError):
        c.open("k", epoch, box)  # reflected and relabelled as the peer's
    with pytest.raises(ReflectionError):
        c.seal("c", _chat())


def test_replayed_envelope() -> None:
    c, k = _pair()
    first = c.seal("k", _chat())
    second = c.seal("k", _chat("two"))
    k.open("c", *first)
    k.open("c", *second)
    with pytest.raises(ReplayError):
        k.open("c", *first)
    with pytest.raises(ReplayError):
        k.open("c", *second)


def test_reordered_envelope_is_dropped_and_gap_counted() -> None:
    c, k = _pair()
    one, two, three = (c.seal("k", _chat(t)) for t in ("1", "2", "3"))
    assert k.open("c", *one)["text"] == "1"
    assert k.open("c", *three)["text"] == "3"
    assert k.gap_count == 1
    with pytest.raises(ReplayError):
        k.open("c", *two)
    for _ in range(3):
        c.seal("k", _chat("lost"))
    k.open("c", *c.seal("k", _chat("4")))
    assert k.gap_count == 4


def test_envelope_moved_to_another_room() -> None:
    c, _k = _pair()
    _, k2 = _pair(VECTORS["rooms"]["ids_valid"][1])  # same key, other room id
    epoch, box = c.seal("k", _chat())
    with pytest.raises(EnvelopeError):
        k2.open("c", epoch, box)


def test_earlier_connection_replayed_after_new_hello() -> None:
    c, k = SecureChannel(ROOM_ID, ROOM_KEY, "c"), SecureChannel(ROOM_ID, ROOM_KEY, "k")
    c_hello = c.seal("k", c.new_hello([]))
    k.open("c", *c_hello)
    c.open("k", *k.seal("c", k.new_hello([])))
    delivered = c.seal("k", _chat("seen"))
    k.open("c", *delivered)
    held_back = c.seal("k", _chat("held back by the server"))
    # The client says hello again (a new connection): the held-back envelope is now refused.
    c.open("k", *k.seal("c", k.new_hello([])))
    with pytest.raises(BindError):
        k.open("c", *held_back)
    with pytest.raises(ReplayError):
        k.open("c", *delivered)
    # A new page (new epoch, same participant id) refuses the old connection's envelopes too.
    k_new = SecureChannel(ROOM_ID, ROOM_KEY, "k")
    hello = k_new.new_hello([])
    k_new.open("c", *c_hello)  # the old hello itself is harmless...
    for envelope in (delivered, held_back):
        with pytest.raises(BindError):  # ...nothing sealed for the old connection opens
            k_new.open("c", *envelope)
    c.open("k", *k_new.seal("c", hello))
    assert k_new.open("c", *c.seal("k", _chat("fresh")))["text"] == "fresh"
    with pytest.raises(StaleEpochError):  # and the old page's envelopes are stale for c
        c.open("k", k.epoch, k.seal("c", _chat())[1])


def test_bind_required_before_hello_and_stale_epoch() -> None:
    c, k = SecureChannel(ROOM_ID, ROOM_KEY, "c"), SecureChannel(ROOM_ID, ROOM_KEY, "k")
    with pytest.raises(BindError):
        c.seal("k", _chat())
    c, k = _pair()
    old = c.seal("k", _chat("from the old page"))
    c_reloaded = SecureChannel(ROOM_ID, ROOM_KEY, "c")
    k.open("c", *c_reloaded.seal("k", c_reloaded.new_hello([])))
    with pytest.raises(StaleEpochError):
        k.open("c", *old)
    with pytest.raises(BindError):  # reloaded page has not seen the client's hello yet
        c_reloaded.seal("k", _chat())


def test_forged_bodies_are_refused() -> None:
    c, k = _pair()
    key = crypto.derive_signal_key(ROOM_KEY, ROOM_ID)

    def raw(body: bytes) -> tuple[str, str]:
        aad = crypto.envelope_aad(ROOM_ID, "c", c.epoch, "k")
        return c.epoch, crypto.seal(key, aad, body)

    for body in (
        b"not json",
        b"[1]",
        b'{"seq":true,"type":"x"}',
        b'{"seq":9,"type":"x","n":NaN}',
        b'{"seq":9}',
        b'{"seq":0,"type":"x"}',
        b'{"seq":9007199254740992,"type":"x"}',
        b"\xff\xfe",
    ):
        with pytest.raises(EnvelopeError):
            k.open("c", *raw(body))
    other = SecureChannel(ROOM_ID, ROOM_KEY, "c").epoch
    bad_hello = json.dumps(
        {"seq": 9, "type": "hello", "epoch": other, "nonce": b64u_encode(bytes(32)), "caps": []}
    ).encode()
    with pytest.raises(EnvelopeError):
        k.open("c", *raw(bad_hello))
    with pytest.raises(EnvelopeError):
        k.open("c", "not-an-epoch", c.seal("k", _chat())[1])
    # Correctly bound, but from an epoch that never said hello (e.g. a second page of "c").
    bind = [c.hello_nonce, k.hello_nonce]
    body = json.dumps({"seq": 1, "type": "chat", "bind": bind}).encode()
    aad = crypto.envelope_aad(ROOM_ID, "c", other, "k")
    with pytest.raises(BindError):
        k.open("c", other, crypto.seal(key, aad, body))
    with pytest.raises(EncodingError):
        c.seal("k", {"type": "chat", "seq": 99})
    with pytest.raises(EncodingError):
        c.seal("k", {"type": "chat", "x": object()})


# --- CommitRound ---------------------------------------------------------------------------------


def _run_round(fp_counselor: str, fp_client: str) -> tuple[CommitRound, CommitRound]:
    c, k = _pair()
    rc, rk = CommitRound("counselor", fp_counselor), CommitRound("client", fp_client)
    k_commit = k.open("c", *c.seal("k", rc.commit_msg()))
    c_commit = c.open("k", *k.seal("c", rk.commit_msg()))
    rk.on_commit(k_commit)
    rc.on_commit(c_commit)
    rk.on_reveal(k.open("c", *c.seal("k", rc.reveal_msg())))
    rc.on_reveal(c.open("k", *k.seal("c", rk.reveal_msg())))
    return rc, rk


def test_commit_round_gives_equal_codes() -> None:
    rc, rk = _run_round(FP_A, FP_B)
    assert rc.verified and rk.verified
    assert (rc.peer_fingerprint, rk.peer_fingerprint) == (FP_B, FP_A)
    code = rc.safety_code(ROOM_KEY)
    assert code == rk.safety_code(ROOM_KEY)
    assert re.fullmatch(r"\d{6}", code.digits) and all(w in crypto.SAS_WORDS for w in code.words)
    again, _ = _run_round(FP_A, FP_B)  # fresh nonces per round: a new code
    assert again.safety_code(ROOM_KEY) != code


def test_swapped_fingerprint_at_reveal() -> None:
    rc, rk = CommitRound("counselor", FP_A), CommitRound("client", FP_B)
    rc.on_commit(rk.commit_msg())
    rk.on_commit(rc.commit_msg())
    attacker_fp = crypto.canonical_fingerprint(hashlib.sha256(b"attacker").digest())
    reveal = {**rc.reveal_msg(), "fingerprint": attacker_fp}
    with pytest.raises(CommitmentError):
        rk.on_reveal(reveal)
    assert not rk.verified and rk.peer_fingerprint is None
    with pytest.raises(CommitmentError):
        rk.safety_code(ROOM_KEY)
    with pytest.raises(CommitmentError):
        rk.on_reveal({**rc.reveal_msg(), "nonce": b64u_encode(bytes(32))})


def test_commit_round_order_and_roles() -> None:
    rc, rk = CommitRound("counselor", FP_A), CommitRound("client", FP_B)
    with pytest.raises(CommitmentError):
        rc.reveal_msg()  # not before holding the other's commit
    with pytest.raises(CommitmentError):
        rc.on_reveal({"type": "reveal", "fingerprint": FP_B, "nonce": b64u_encode(bytes(32))})
    with pytest.raises(CommitmentError):
        rc.on_commit(CommitRound("counselor", FP_B).commit_msg())  # both claim counselor
    with pytest.raises(CommitmentError):
        rc.on_commit({"type": "commit", "role": "client", "commit": "short"})
    with pytest.raises(FingerprintError):
        CommitRound("client", FP_A.lower())
    rc.on_commit(rk.commit_msg())
    with pytest.raises(CommitmentError):
        rc.reveal_msg()  # nor before sending my own commit
    rc.commit_msg()
    with pytest.raises(CommitmentError):
        rc.on_commit(CommitRound("client", FP_B).commit_msg())  # a second, different commit


def test_commit_round_refuses_my_own_fingerprint() -> None:
    rc, mirror = CommitRound("counselor", FP_A), CommitRound("client", FP_A)
    rc.on_commit(mirror.commit_msg())
    mirror.on_commit(rc.commit_msg())
    with pytest.raises(CommitmentError):
        rc.on_reveal(mirror.reveal_msg())


# --- properties ----------------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = st.dictionaries(
    st.text(st.characters(codec="utf-8"), max_size=8).filter(
        lambda s: s not in ("seq", "type", "bind")
    ),
    _json_values,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(body=_bodies, kind=st.text(st.characters(codec="utf-8"), min_size=1, max_size=10))
def test_property_round_trip(body: dict[str, Any], kind: str) -> None:
    if kind == "hello":
        kind = "chat"
    c, k = _pair()
    msg = {"type": kind, **body}
    got = k.open("c", *c.seal("k", msg))
    assert got == {**msg, "seq": 2, "bind": [c.hello_nonce, k.hello_nonce]}


@settings(max_examples=150, deadline=None)
@given(body=_bodies, bit=st.integers(min_value=0))
def test_property_any_bit_flip_is_rejected(body: dict[str, Any], bit: int) -> None:
    c, k = _pair()
    epoch, box = c.seal("k", {"type": "chat", **body})
    raw = bytearray(b64u_decode(box))
    bit %= len(raw) * 8
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(EnvelopeError):
        k.open("c", epoch, b64u_encode(bytes(raw)))
    assert k.open("c", epoch, box)["type"] == "chat"


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=300), aad=st.binary(max_size=64), bit=st.integers(min_value=0))
def test_property_primitive_seal_open(plaintext: bytes, aad: bytes, bit: int) -> None:
    key = crypto.derive_signal_key(ROOM_KEY, ROOM_ID)
    box = crypto.seal(key, aad, plaintext)
    assert crypto.open_box(key, aad, box) == plaintext
    raw = bytearray(b64u_decode(box))
    bit %= len(raw) * 8
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(EnvelopeError):
        crypto.open_box(key, aad, b64u_encode(bytes(raw)))


@given(data=st.binary(max_size=64))
def test_property_b64u_round_trip(data: bytes) -> None:
    text = b64u_encode(data)
    assert "=" not in text and b64u_decode(text) == data
