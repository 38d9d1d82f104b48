"""Fuzzing the signaling parser and the envelope layer (hypothesis, deterministic).

Every input is either accepted (a typed result that survives a round trip) or refused with one of
the documented error classes, and a refused frame's ``code`` is one docs/protocol.md lists (the
table is read from the document, so an undocumented code fails). The same checks drive the atheris
targets in ``fuzz/`` (``make fuzz``). ``RUANG_FUZZ_EXAMPLES`` raises the number of examples.
"""

from __future__ import annotations

import json
import os
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fuzz.common import UndocumentedError, check_code, close_codes, error_codes, resume_errors
from fuzz.protocol_inputs import (
    TOKEN_KEY,
    channels,
    check_b64u,
    check_body,
    check_crypto_text,
    check_datachannel,
    check_envelope,
    check_frame,
    check_signed_payload,
    check_token,
    seal_plaintext,
)
from signaling import errors, tokens
from signaling.messages import (
    Admit,
    Admitted,
    Decline,
    End,
    Error,
    GoneReason,
    Join,
    Joined,
    Leave,
    Message,
    Peer,
    PeerInfo,
    PeerState,
    Ping,
    Pong,
    ProtocolError,
    Relay,
    Relayed,
    Remove,
    Role,
    Token,
    dump,
    parse,
)

EXAMPLES = int(os.environ.get("RUANG_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies ---------------------------------------------------------------------------------

B64 = string.ascii_letters + string.digits + "-_"
ids = st.text(B64, min_size=1, max_size=64)
boxes = st.text(B64, min_size=1, max_size=300)
tokens_text = st.text(B64 + ".", min_size=1, max_size=512)
# Any code point, lone surrogates included (JSON can carry them as \ud800 escapes).
any_char = st.characters(codec=None, categories=None)
any_text = st.text(any_char, max_size=200)
huge_ints = st.sampled_from([2**53, 2**63, -(2**63), 10**40, -1, 0, 1, 2, 1 << 30, (1 << 30) + 1])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()  # NaN and Infinity too: json.dumps writes them as NaN / Infinity
    | any_text
    | st.text(B64, max_size=70)
    | st.sampled_from(["", "counselor", "client", "waiting", "admitted", "gone", "left", "relay"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=10,
)
roles = st.sampled_from(list(Role))
states = st.sampled_from([PeerState.WAITING, PeerState.ADMITTED])
infos = st.builds(PeerInfo, ids, roles, st.sampled_from(list(PeerState)), st.booleans())
codes = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=40)

valid_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Join, st.integers(0, 1_000_000), ids, roles, st.none() | tokens_text),
    st.builds(Relay, ids, ids, boxes),
    st.builds(Admit, ids),
    st.builds(Decline, ids),
    st.builds(Remove, ids),
    st.just(End()),
    st.just(Leave()),
    st.just(Ping()),
    st.builds(
        Joined,
        st.integers(0, 1_000_000),
        ids,
        roles,
        states,
        st.booleans(),
        tokens_text,
        st.integers(1, 86_400),
        st.integers(1, 1 << 30),
        st.lists(infos, max_size=4).map(tuple),
        st.none() | codes,
    ),
    st.builds(Admitted, st.lists(infos, max_size=4).map(tuple)),
    st.builds(
        Peer,
        ids,
        roles,
        st.sampled_from(list(PeerState)),
        st.booleans(),
        st.none() | st.sampled_from(list(GoneReason)),
    ),
    st.builds(Relayed, ids, ids, boxes),
    st.builds(Token, tokens_text),
    st.builds(
        Error,
        codes,
        st.text(any_char, max_size=200),
        st.none() | st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20),
    ),
    st.just(Pong()),
)


def _fields(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(dump(msg))
    return out


@st.composite
def mutated_frames(draw: st.DrawFn) -> str:
    """A valid message with one or more fields broken, then serialised in an odd way."""
    obj = _fields(draw(valid_messages))
    for _ in range(draw(st.integers(1, 3))):
        keys = sorted(obj)
        how = draw(
            st.sampled_from(["replace", "delete", "add", "retype", "long", "unicode", "nest"])
        )
        key = draw(st.sampled_from(keys)) if keys else "type"
        if how == "replace":
            obj[key] = draw(json_values)
        elif how == "delete":
            obj.pop(key, None)
        elif how == "add":
            obj[draw(st.sampled_from(["to", "from", "z", "resume", "reason", "type", "v", ""]))] = (
                draw(json_values)
            )
        elif how == "retype":
            obj["type"] = draw(
                st.sampled_from(["relay", "join", "joined", "peer", "error", "RELAY", "hello"])
                | any_text
            )
        elif how == "long":
            obj[key] = "A" * draw(st.sampled_from([63, 64, 65, 200, 201, 512, 513, 70_000]))
        elif how == "unicode":
            obj[key] = draw(st.text(any_char, min_size=1, max_size=8)) + str(obj.get(key, ""))
        else:
            obj[key] = [obj.get(key)] if draw(st.booleans()) else {"x": obj.get(key)}
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    style = draw(st.sampled_from(["plain", "bom", "dup", "dup-first", "cut", "ws", "nest"]))
    if style == "bom":
        text = "\ufeff" + text
    elif style in ("dup", "dup-first") and text.startswith("{") and len(text) > 2:
        dup = '"type": ' + json.dumps(draw(st.sampled_from(["relay", "admit", "end", "x"])))
        text = "{" + dup + "," + text[1:] if style == "dup-first" else text[:-1] + "," + dup + "}"
    elif style == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif style == "ws":
        text = " \n\t" + text + "\r\n"
    elif style == "nest":
        depth = draw(st.sampled_from([1, 10, 1000, 100_000]))
        text = "[" * depth + text + "]" * depth
    return text


def _doc_error_codes_raised() -> set[str]:
    return {cls.code for cls in ProtocolError.__subclasses__()}


# --- (a) frames into messages.parse -------------------------------------------------------------


def test_every_error_code_the_core_can_send_is_documented() -> None:
    emitted = _doc_error_codes_raised() | {
        cls.code
        for cls in errors.Refused.__subclasses__()  # answered with ``error`` messages
    }
    assert emitted <= error_codes(), emitted - error_codes()
    # The close codes the core and the handler use, and the resume_error reasons.
    assert {int(c) for c in errors.CloseCode} <= close_codes()
    assert {int(c) for c in errors.RESUMABLE} <= close_codes()
    reasons = {
        cls.reason
        for cls in (
            tokens.MalformedToken,
            tokens.TamperedToken,
            tokens.WrongRoom,
            tokens.ExpiredToken,
            tokens.StaleGeneration,
            tokens.RevokedToken,
        )
    }
    assert reasons == resume_errors()


def test_an_undocumented_code_fails() -> None:
    try:
        check_code("made_up_code")
    except UndocumentedError:
        return
    raise AssertionError("an undocumented error code passed the check")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"type":"admit","id":NaN}', "bad_json"),
        ('{"type":"join","v":Infinity,"room":"r","role":"client"}', "bad_json"),
        ('{"type":"join","v":-Infinity,"room":"r","role":"client"}', "bad_json"),
        ('\ufeff{"type":"ping"}', "bad_json"),
        ('{"type":"join","v":' + "9" * 5000 + ',"room":"r","role":"client"}', "bad_json"),
        ('{"type":"join","v":1e400,"room":"r","role":"client"}', "wrong_type"),
        ('{"type":"admit","id":"\\ud800"}', "bad_value"),
        ('{"type":"admit","id":"k","id":"a b"}', "bad_value"),
    ],
)
def test_documented_answers_to_odd_json(text: str, code: str) -> None:
    """docs/protocol.md section 3: what is not JSON, and repeated keys."""
    with pytest.raises(ProtocolError) as info:
        parse(text)
    assert info.value.code == code
    check_frame(text)


def test_a_repeated_key_counts_once_with_its_last_value() -> None:
    assert parse('{"type":"admit","id":"a b","id":"k"}') == Admit("k")
    assert parse('{"type":"x","type":"relay","to":"k","epoch":"e","box":"A"}') == Relay(
        "k", "e", "A"
    )


@FUZZ
@given(st.binary(max_size=300))
@example(b"\xef\xbb\xbf{}")
@example(b'{"type":"relay","to":"\xed\xa0\x80","epoch":"e","box":"A"}')
def test_raw_bytes(data: bytes) -> None:
    check_frame(data.decode("utf-8", errors="surrogateescape"))


@FUZZ
@given(st.text(any_char, max_size=300))
@example("NaN")
@example('{"type":"join","v":NaN,"room":"r","role":"client"}')
@example('{"type":"join","v":Infinity,"room":"r","role":"client"}')
@example('{"type":"join","v":' + "9" * 5000 + ',"room":"r","role":"client"}')
@example('{"type":"join","v":1e400,"room":"r","role":"client"}')
@example('{"type":"admit","id":"\\ud800"}')
@example('{"type":"error","code":"x","message":"\\udfff\\ud800"}')
@example('{"type":"relay","to":"k","to":"k","epoch":"e","box":"A"}')
@example('{"type":"relay","to":"k","from":"k","epoch":"e"}')
@example("[" * 50_000)
def test_any_text(text: str) -> None:
    check_frame(text)


@FUZZ
@given(json_values)
def test_json_of_any_shape(value: Any) -> None:
    check_frame(json.dumps(value))
    if isinstance(value, dict):
        for kind in ("relay", "join", "admit", "joined", "peer", "admitted", "error", "token"):
            check_frame(json.dumps({**value, "type": kind}))


@FUZZ
@given(mutated_frames())
def test_valid_messages_with_mutated_fields(text: str) -> None:
    check_frame(text)


@FUZZ
@given(valid_messages)
def test_parse_dump_round_trip(msg: Message) -> None:
    text = dump(msg)
    assert parse(text) == msg
    assert dump(parse(text)) == text
    # Key order and whitespace do not matter, and duplicate keys take the last value (as
    # JSON.parse does in browsers).
    obj = json.loads(text)
    shuffled = json.dumps(dict(reversed(list(obj.items()))), indent=1)
    assert parse(shuffled) == msg
    if "type" in obj and len(obj) > 1:
        assert parse('{"type":"x",' + text[1:]) == msg


# --- (b) tokens, envelopes and inner messages on the peer side ----------------------------------


@FUZZ
@given(st.text(any_char, max_size=600) | tokens_text)
def test_resume_tokens_from_the_wire(text: str) -> None:
    check_token(text)


@FUZZ
@given(
    st.builds(
        tokens.ResumeClaims,
        ids,
        ids,
        roles,
        st.booleans(),
        st.integers(0, 2**40),
        st.integers(1_700_000_001, 2**40),
    ),
    st.integers(0, 511),
    st.sampled_from(B64 + "."),
)
def test_issued_tokens_round_trip_and_every_change_is_refused(
    claims: tokens.ResumeClaims, at: int, char: str
) -> None:
    token = tokens.issue(TOKEN_KEY, claims)
    assert tokens.decode(TOKEN_KEY, token, now=1_700_000_000.0) == claims
    at %= len(token)
    changed = token[:at] + char + token[at + 1 :]
    if changed != token:
        try:
            tokens.decode(TOKEN_KEY, changed, now=1_700_000_000.0)
        except tokens.TokenError as exc:
            assert exc.reason == "invalid"
        else:
            # Only a change in the unused low bits of a part's last character survives: the
            # same bytes, so the same token.
            assert [tokens._unb64(p) for p in changed.split(".")] == [
                tokens._unb64(p) for p in token.split(".")
            ], "an altered token was accepted"


@FUZZ
@given(
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.tuples(
        st.sampled_from([1, 2, "1", None]),
        scalars,
        scalars,
        st.sampled_from(["c", "k", "x", 1, None]),
        scalars,
        scalars | st.floats(),
        scalars | st.floats(),
    ).map(lambda t: json.dumps(list(t)).encode())
)
@example(b'[1,"r","p","c",1,Infinity,1]')
@example(b'[1,"r","p","c",1,1,-Infinity]')
@example(b'[1,"\\ud800","p","c",1,0,99999999999]')
@example(b'[1,"r",["p"],"c",1,0,99999999999]')
@example(b"[" * 300)
def test_authentic_tokens_with_any_payload(payload: bytes) -> None:
    check_signed_payload(payload)


@FUZZ
@given(ids | any_text, st.text(B64, max_size=30) | any_text, st.text(B64, max_size=120) | any_text)
def test_envelopes_of_any_content(sender: str, epoch: str, box: str) -> None:
    _, client = channels()
    check_envelope(client, sender, epoch, box)


inner_bodies = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            "chat ack mode bye offer answer candidate rebuild commit reveal hello unknown".split()
        )
    },
    optional={
        "id": ids | json_values,
        "text": any_text | json_values,
        "round": ids | json_values,
        "sdp": any_text | json_values,
        "candidate": any_text | json_values,
        "sdpMid": st.none() | any_text | json_values,
        "sdpMLineIndex": st.integers(-2, 70) | json_values,
        "level": st.sampled_from(["video", "low-video", "audio", "text"]) | json_values,
        "reason": st.sampled_from(["left", "ended", "security", "network", "manual"]) | json_values,
        "role": roles.map(str) | json_values,
        "commit": st.text(B64, min_size=43, max_size=43) | json_values,
        "fingerprint": json_values,
        "nonce": st.text(B64, min_size=43, max_size=43) | json_values,
        "name": any_text | json_values,
        "caps": st.lists(any_text, max_size=3) | json_values,
        "epoch": json_values,
    },
)


@FUZZ
@given(
    inner_bodies,
    st.integers(-1, 2**60) | json_values,
    st.sampled_from(["bound", "unbound", "wrong-bind", "raw"]),
    st.booleans(),
)
@example({"type": "mode", "level": "video", "reason": []}, 1, "bound", True)
@example({"type": "bye", "reason": {}}, 1, "bound", False)
@example({"type": "chat", "id": "a", "text": "\ud800"}, 1, "bound", True)
def test_sealed_bodies_of_any_shape(
    body: dict[str, Any], seq: Any, bind: str, ascii_only: bool
) -> None:
    """A peer holding the room key sends anything at all inside a valid envelope."""
    counselor, client = channels()
    plaintext: dict[str, Any] = {"seq": seq, **body}
    if bind == "bound":
        plaintext["bind"] = [counselor.hello_nonce, client.hello_nonce]
    elif bind == "wrong-bind":
        plaintext["bind"] = [client.hello_nonce, counselor.hello_nonce]
    text = json.dumps(plaintext, ensure_ascii=ascii_only)
    if bind == "raw":
        text = text[:-1]
    raw = text.encode("utf-8", errors="surrogatepass")  # not UTF-8 if it holds a lone surrogate
    box = seal_plaintext(client, "counselor", counselor.epoch, raw)
    check_envelope(client, "counselor", counselor.epoch, box)
    check_body(body)


@FUZZ
@given(st.binary(max_size=300))
def test_sealed_bytes(plaintext: bytes) -> None:
    counselor, client = channels()
    box = seal_plaintext(client, "counselor", counselor.epoch, plaintext)
    check_envelope(client, "counselor", counselor.epoch, box)


@FUZZ
@given(json_values | inner_bodies, st.booleans())
def test_data_channel_messages(value: Any, ascii_only: bool) -> None:
    check_datachannel(json.dumps(value, ensure_ascii=ascii_only))


@FUZZ
@given(st.text(B64 + "=+/ .:", max_size=120) | any_text)
@example("sha-256 " + ":".join(["ab"] * 32))
@example("A" * 43)
@example("AB")
@example("A")
def test_crypto_parsers(text: str) -> None:
    check_crypto_text(text)
    check_b64u(text)
