"""Call setup order in the Python peer, by causality rather than by the clock.

Two real ``Call`` objects (``signaling.peer.call``: hellos, commit rounds, real aiortc peer
connections) talk through an in-memory relay that keeps each direction in order, as the server
does, and lets a schedule pick which delivery happens next. Admission is a marker the "server"
puts into both directions at once, so what the client sends after seeing it reaches the
counselor after the counselor saw it too (``signaling/rooms.py`` sends both in one step). No
timer ever fires here (``tick`` is never called): the counselor's round must start with its
hello of the call (when it holds the client's) or when the hello pair settles, and the client
must accept it, whatever the order of the admission burst.
"""

from __future__ import annotations

import io
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import pytest

from signaling.crypto import new_room_id, new_room_key
from signaling.messages import COUNSELOR_ID
from signaling.peer.call import Call
from signaling.peer.config import PeerConfig
from signaling.peer.events import EventLog
from signaling.peer.link import parse_link
from signaling.peer.rtc import CallRound, RtcError
from signaling.peer.sdp import check_fingerprints
from tests.peer_support import needs_netns

CLIENT_ID = "client1AAAAAAAAAAAAAAA"
ADMITTED = "admitted"
MAX_STEPS = 200

Item = tuple[str, str] | Literal["admitted"]  # (epoch, box) or the admission marker


@dataclass
class Side:
    call: Call
    my_id: str
    log: io.StringIO
    inbox: deque[Item] = field(default_factory=deque)  # from the server
    up: deque[Item] = field(default_factory=deque)  # to the server, not relayed yet
    began: bool = False
    sent: int = 0  # envelopes this side has sent
    round_with_hello: bool | None = None  # counselor: its call's first hello carried the round

    def events(self) -> list[str]:
        return [line.split('"event":"')[1].split('"')[0] for line in self.log.getvalue().split()]


def make_side(role: Literal["counselor", "client"], link: str) -> Side:
    out = io.StringIO()
    config = PeerConfig(link=parse_link(link), counselor=role == "counselor", fetch_turn=False)

    async def send(to: str, epoch: str, box: str) -> bool:
        side.up.append((epoch, box))
        side.sent += 1
        return True

    call = Call(config, role, EventLog(out), send, lambda ev: None)
    side = Side(call, COUNSELOR_ID if role == "counselor" else CLIENT_ID, out)
    return side


async def knock_and_admit(schedule: random.Random | list[str]) -> tuple[Side, Side, str | None]:
    """A client knocks (its hello goes out), the counselor admits it; then deliveries and
    hello flushes in the order ``schedule`` picks, until both sides have a safety code (the
    offer is left undelivered: no ICE runs) or nothing is left to do. Returns both sides and
    the nonce of the client's knock hello."""
    link = f"https://ruang.test/r/{new_room_id()}#{new_room_key()}"
    co = make_side("counselor", link)
    cl = make_side("client", link)
    room = parse_link(link).room_id
    await cl.call.new_identity(room, CLIENT_ID)
    cl.call.set_peer(COUNSELOR_ID)
    cl.call.peer_present()  # the knock: our hello, with the name, waits for the counselor
    await cl.call.flush_hello()
    assert cl.call._hellos is not None
    knock = cl.call._hellos.channel.hello_nonce
    await co.call.new_identity(room, COUNSELOR_ID)
    co.call.set_peer(CLIENT_ID)  # the counselor admits the one who knocked
    admitted = False
    for _ in range(MAX_STEPS):
        if "safety_code" in co.events() and "safety_code" in cl.events():
            break
        actions: list[str] = []
        if not admitted:
            actions.append("admit")
        for name, side in (("co", co), ("cl", cl)):
            if side.inbox:
                actions.append(f"deliver-{name}")
            if side.up:
                actions.append(f"relay-{name}")
            if side.call._hellos is not None and side.call._hellos.due:
                actions.append(f"flush-{name}")
        if not actions:
            break
        if isinstance(schedule, list):
            wanted = schedule.pop(0) if schedule else None
            action = wanted if wanted in actions else actions[0]
        else:
            action = schedule.choice(actions)
        if action == "admit":  # the server: "admitted" to the client, "peer admitted" to us
            admitted = True
            cl.inbox.append(ADMITTED)
            co.inbox.append(ADMITTED)
            continue
        if action.startswith("relay"):  # the server relays, in order, what one side sent
            sender, receiver = (co, cl) if action.endswith("-co") else (cl, co)
            receiver.inbox.append(sender.up.popleft())
            continue
        side, other = (co, cl) if action.endswith("-co") else (cl, co)
        assert co.call._hellos is not None
        nonce, sent = co.call._hellos.channel.hello_nonce, co.sent
        held = co.call._hellos.channel.peer_hello(CLIENT_ID) is not None
        if action.startswith("flush"):
            await side.call.flush_hello()
        else:
            item = side.inbox.popleft()
            if item == ADMITTED:
                side.began = True
                side.call.begin()
            else:
                epoch, box = item
                await side.call.on_envelope(other.my_id, epoch, box)
        if (
            co.began
            and co.round_with_hello is None
            and co.call._hellos.channel.hello_nonce != nonce
        ):
            # The counselor's first fresh hello of the call: holding the client's hello, it
            # sends its commit right behind it, in the same step (no answer awaited).
            co.round_with_hello = held
            assert not held or (co.sent - sent >= 2 and co.call.round is not None), action
        if not side.inbox and not (side.call._hellos and side.call._hellos.due):
            side.call.prepare()  # as the session does when idle: a peer connection ahead
    else:
        raise AssertionError("the exchange did not settle within the step bound")
    return co, cl, knock


async def check_one_round(co: Side, cl: Side, knock_nonce: str | None) -> None:
    try:
        assert co.began and cl.began
        # The counselor started its round with its hello or when the pair settled (no tick
        # ran), the client joined that very round: nothing was rejected, one round, one safety
        # code each.
        assert co.call.round is not None and cl.call.round is not None
        assert co.call.round.id == cl.call.round.id
        assert co.call.round.commit.verified and cl.call.round.commit.verified
        assert not co.call.rejected and not cl.call.rejected, (co.call.rejected, cl.call.rejected)
        assert co.events() == ["safety_code"] and cl.events() == ["safety_code"]
        # The client kept the hello it knocked with: the pair's new half is the counselor's.
        assert cl.call._hellos is not None
        assert cl.call._hellos.channel.hello_nonce == knock_nonce
    finally:
        await co.call.close()
        await cl.call.close()


@needs_netns  # the counselor's offer gathers candidates on every interface (no ICE runs)
async def test_the_first_round_starts_without_a_timer_and_is_never_stale() -> None:
    # The orders that made a round bound to a stale pair when an admitted client said a fresh
    # hello: the counselor settles on the client's knock hello (or its repeat) after its own
    # admission hello, while the client's post-admission hello is still to come.
    adversarial = [
        # the knock hello reaches the counselor after its admission, its answer crosses
        ["admit", "deliver-co", "flush-co", "relay-cl", "relay-co", "deliver-co", "deliver-cl"],
        # the knock hello answered before the admission, the answer's repeat after it
        ["relay-cl", "deliver-co", "relay-co", "deliver-cl", "admit", "deliver-co", "flush-co"],
        ["admit", "deliver-cl", "relay-cl", "deliver-co", "flush-co", "deliver-co", "relay-co"],
    ]
    schedules: list[random.Random | list[str]] = [*adversarial]
    schedules += [random.Random(seed) for seed in range(24)]
    with_hello = []
    for schedule in schedules:
        co, cl, knock = await knock_and_admit(schedule)
        with_hello.append(co.round_with_hello)
        await check_one_round(co, cl, knock)
    # Both ways were taken: the round behind the counselor's hello (it held the client's), and
    # the round when the pair settled (the client's hello came after the admission).
    assert True in with_hello and False in with_hello, with_hello


async def test_a_client_admitted_on_joining_says_a_fresh_hello() -> None:
    """With no hello yet (a new page of an admitted client), admission makes one."""
    link = f"https://ruang.test/r/{new_room_id()}#{new_room_key()}"
    co = make_side("counselor", link)
    cl = make_side("client", link)
    room = parse_link(link).room_id
    try:
        await cl.call.new_identity(room, CLIENT_ID)
        cl.call.set_peer(COUNSELOR_ID)
        cl.call.begin()
        await cl.call.flush_hello()
        assert len(cl.up) == 1  # the hello
    finally:
        await co.call.close()
        await cl.call.close()


@needs_netns  # setting the local offer gathers candidates on every interface (no ICE runs)
async def test_an_offer_made_ahead_is_handed_out_only_once_both_reveals_are_verified() -> None:
    def notify(ev: object) -> None:
        pass

    counselor = CallRound(
        "r1", "counselor", peer_epoch="e", started_by_me=True, ice_servers=(), notify=notify
    )
    client = CallRound(
        "r1", "client", peer_epoch="e", started_by_me=False, ice_servers=(), notify=notify
    )
    try:
        await counselor.prepare_offer()  # while the commit round is in flight
        assert counselor.offered and counselor.pc.localDescription is not None
        with pytest.raises(RtcError):
            await counselor.make_offer()  # nothing verified yet
        client.commit.on_commit(counselor.commit.commit_msg())
        counselor.commit.on_commit(client.commit.commit_msg())
        with pytest.raises(RtcError):
            await counselor.make_offer()  # commits exchanged, reveals not
        counselor.commit.on_reveal(client.commit.reveal_msg())
        sdp = await counselor.make_offer()
        check_fingerprints(sdp, counselor.fingerprint)  # the committed one, and only it
    finally:
        await counselor.close()
        await client.close()
