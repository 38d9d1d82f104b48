"""Protocol v1 messages: one parse, one dump, strict fields, named errors with stable codes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signaling.messages import (
    MAX_BOX,
    MAX_TOKEN,
    Admit,
    Admitted,
    BadValue,
    Decline,
    End,
    Error,
    ExtraField,
    GoneReason,
    Join,
    Joined,
    Leave,
    MalformedJson,
    Message,
    MissingField,
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
    TooLong,
    UnknownType,
    WrongType,
    dump,
    parse,
    relayed_text,
)

EPOCH = "A" * 22
BOX = "QUJD" * 10
INFO = PeerInfo("counselor", Role.COUNSELOR, PeerState.ADMITTED, True)

EVERY_MESSAGE: list[Message] = [
    Join(1, "r" * 22, Role.CLIENT),
    Join(1, "r" * 22, Role.COUNSELOR, resume="a.b"),
    Relay("counselor", EPOCH, BOX),
    Admit("k3PqX0aZ9cQe"),
    Decline("k3PqX0aZ9cQe"),
    Remove("k3PqX0aZ9cQe"),
    End(),
    Leave(),
    Ping(),
    Joined(1, "k3PqX0aZ9cQe", Role.CLIENT, PeerState.WAITING, False, "a.b", 60, 65536, (INFO,)),
    Joined(1, "counselor", Role.COUNSELOR, PeerState.ADMITTED, True, "a.b", 60, 1, (), "expired"),
    Admitted((INFO,)),
    Peer("k3PqX0aZ9cQe", Role.CLIENT, PeerState.WAITING, True),
    Peer("k3PqX0aZ9cQe", Role.CLIENT, PeerState.GONE, False, GoneReason.DECLINED),
    Relayed("k3PqX0aZ9cQe", EPOCH, BOX),
    Token("a.b"),
    Error("unknown_peer", "no such participant", "relay"),
    Error("bad_json", "not valid JSON"),
    Pong(),
]


@pytest.mark.parametrize("msg", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    text = dump(msg)
    assert parse(text) == msg
    assert dump(parse(text)) == text
    assert " " not in text.replace("no such participant", "").replace("not valid JSON", "")
    assert json.loads(text)["type"] == msg.type


def test_relay_wire_format() -> None:
    assert dump(Relay("counselor", "e", "AAAA")) == (
        '{"type":"relay","to":"counselor","epoch":"e","box":"AAAA"}'
    )
    assert relayed_text("k", "e", "AAAA") == '{"type":"relay","from":"k","epoch":"e","box":"AAAA"}'
    assert dump(Relayed("k", "e", "AAAA")) == relayed_text("k", "e", "AAAA")


def test_optional_fields_are_omitted_not_null() -> None:
    assert "resume" not in json.loads(dump(Join(1, "r", Role.CLIENT)))
    assert "reason" not in json.loads(dump(Peer("p", Role.CLIENT, PeerState.WAITING, True)))
    with pytest.raises(WrongType):
        parse('{"type":"join","v":1,"room":"r","role":"client","resume":null}')


def test_fast_path_and_general_path_agree() -> None:
    # Key order and whitespace differ: the fast path must not care.
    a = parse('{"type":"relay","to":"k","epoch":"e","box":"AAAA"}')
    b = parse('{ "box" : "AAAA", "epoch": "e", "type": "relay", "to": "k" }')
    assert a == b == Relay("k", "e", "AAAA")
    assert parse('{"box":"AAAA","from":"k","epoch":"e","type":"relay"}') == Relayed(
        "k", "e", "AAAA"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", MalformedJson),
        ("{nope", MalformedJson),
        ("[]", MalformedJson),
        ('"relay"', MalformedJson),
        ("null", MalformedJson),
        ("[" * 100_000, MalformedJson),
        ("{}", MissingField),
        ('{"type": 7}', WrongType),
        ('{"type": "hello"}', UnknownType),
        ('{"type": "Relay"}', UnknownType),
        ('{"type": "admit"}', MissingField),
        ('{"type": "admit", "id": "a", "x": 1}', ExtraField),
        ('{"type": "end", "id": "a"}', ExtraField),
        ('{"type": "admit", "id": 5}', WrongType),
        ('{"type": "admit", "id": ""}', BadValue),
        ('{"type": "admit", "id": "a b"}', BadValue),
        ('{"type": "admit", "id": "é"}', BadValue),
        ('{"type": "admit", "id": "' + "a" * 65 + '"}', TooLong),
        ('{"type": "join", "v": true, "room": "r", "role": "client"}', WrongType),
        ('{"type": "join", "v": 1.0, "room": "r", "role": "client"}', WrongType),
        ('{"type": "join", "v": -1, "room": "r", "role": "client"}', BadValue),
        ('{"type": "join", "v": 1, "room": "r", "role": "admin"}', BadValue),
        ('{"type": "join", "v": 1, "room": "r", "role": "client", "resume": 1}', WrongType),
        ('{"type": "join", "v": 1, "room": "r", "role": "client", "resume": "a b"}', BadValue),
        ('{"type": "relay", "to": "k", "epoch": "e"}', MissingField),
        ('{"type": "relay", "to": "k", "epoch": "e", "box": "a+b/"}', BadValue),
        ('{"type": "relay", "to": "k", "epoch": "e", "box": "AA=="}', BadValue),
        ('{"type": "relay", "to": "k", "epoch": "e", "box": ""}', BadValue),
        ('{"type": "relay", "to": "k", "epoch": "e", "box": ["A"]}', WrongType),
        ('{"type": "relay", "to": "k", "from": "k", "epoch": "e", "box": "A"}', ExtraField),
        ('{"type": "relay", "to": "k", "epoch": "e", "box": "A", "seq": 1}', ExtraField),
        ('{"type": "admitted", "peers": {}}', WrongType),
        ('{"type": "admitted", "peers": [1]}', WrongType),
        ('{"type": "admitted", "peers": [{"id": "a"}]}', MissingField),
        (
            '{"type": "peer", "id": "a", "role": "client", "state": "gone", "connected": false, '
            '"reason": "bored"}',
            BadValue,
        ),
    ],
)
def test_malformed_frames_raise_named_errors(text: str, error: type[ProtocolError]) -> None:
    with pytest.raises(error) as info:
        parse(text)
    assert type(info.value) is error
    assert info.value.code == error.code


def test_error_codes_are_stable() -> None:
    codes = {
        MalformedJson: "bad_json",
        UnknownType: "unknown_type",
        MissingField: "missing_field",
        ExtraField: "extra_field",
        WrongType: "wrong_type",
        BadValue: "bad_value",
        TooLong: "too_long",
    }
    for cls, code in codes.items():
        assert cls.code == code
        assert issubclass(cls, ProtocolError)


def test_over_long_strings() -> None:
    with pytest.raises(TooLong):
        parse(json.dumps({"type": "token", "resume": "a" * (MAX_TOKEN + 1)}))
    with pytest.raises(TooLong):
        parse(json.dumps({"type": "relay", "to": "k", "epoch": "e", "box": "A" * (MAX_BOX + 1)}))
    with pytest.raises(TooLong):
        parse(json.dumps({"type": "error", "code": "x", "message": "m" * 201}))


def test_errors_never_echo_the_payload() -> None:
    secret = "SECRET-NAME-Budi"
    for text in (
        json.dumps({"type": "admit", "id": secret + " x"}),
        json.dumps({"type": secret}),
        json.dumps({"type": "relay", "to": "k", "epoch": "e", "box": secret + "!"}),
        json.dumps({"type": "end", secret: 1}),
        "{" + secret,
    ):
        with pytest.raises(ProtocolError) as info:
            parse(text)
        assert secret not in str(info.value)
        assert info.value.field is None or secret not in info.value.field


def test_dump_escapes_whatever_it_is_given() -> None:
    # Objects built in code (not parsed) still dump to valid JSON.
    odd = Relayed('a"b\\c', "e\n", "x")
    assert json.loads(dump(odd)) == {"type": "relay", "from": 'a"b\\c', "epoch": "e\n", "box": "x"}


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_protocol_error(text: str) -> None:
    try:
        parse(text)
    except ProtocolError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.sampled_from(["join", "relay", "admit", "joined", "peer", "admitted", "error", "x"]),
    st.dictionaries(
        st.sampled_from(["v", "room", "role", "to", "from", "epoch", "box", "id", "peers", "z"]),
        json_values,
        max_size=6,
    ),
)
def test_any_object_parses_or_raises_protocol_error(kind: str, fields: dict[str, object]) -> None:
    text = json.dumps({"type": kind, **fields})
    try:
        msg = parse(text)
    except ProtocolError:
        return
    assert parse(dump(msg)) == msg
