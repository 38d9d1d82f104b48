"""The room state machine, relay rules, hold queues and resume, through the in-process hub.

The sinks are recording doubles of the transport; everything else is the real core.
"""

from __future__ import annotations

import pytest

from signaling.errors import (
    BadState,
    CloseCode,
    Departed,
    Forbidden,
    HoldFull,
    HubClosed,
    RoomFull,
    UnknownPeer,
    WaitingRoomFull,
)
from signaling.hub import Connection, InProcessHub
from signaling.limits import RoomLimits
from signaling.messages import (
    Admitted,
    GoneReason,
    Joined,
    Peer,
    PeerInfo,
    PeerState,
    Relay,
    Relayed,
    Role,
    Token,
)
from signaling.tokens import decode
from tests.signaling_support import KEY, Clock, Generations, RecordingSink, make_hub, request

ROOM = "IZ9nS_zuLSo8SfMya5LuBg"
OTHER = "Ot8erRoomIdxxxxxxxxxxx"
E = "E" * 22


def box(n: int) -> str:
    return f"Qk9Y{n:04d}".replace("-", "_")


async def join(
    hub: InProcessHub, role: Role, room: str = ROOM, resume: str | None = None, gen: int = 0
) -> tuple[Connection, RecordingSink, Joined]:
    sink = RecordingSink()
    pk = 1 if room == ROOM else 2
    conn = await hub.join(request(room, role, resume, pk=pk, gen=gen), sink)
    first = sink.take()
    assert isinstance(first[0], Joined)
    return conn, sink, first[0]


async def join_all(
    hub: InProcessHub, role: Role, room: str = ROOM, resume: str | None = None, gen: int = 0
) -> tuple[Connection, RecordingSink, list[object]]:
    """Like join, but returns every message sent during the join (joined + held)."""
    sink = RecordingSink()
    pk = 1 if room == ROOM else 2
    conn = await hub.join(request(room, role, resume, pk=pk, gen=gen), sink)
    return conn, sink, list(sink.take())


async def test_client_knocks_in_a_closed_room_then_the_counselor_arrives() -> None:
    hub = make_hub()
    _kc, ks, kj = await join(hub, Role.CLIENT)
    assert kj.state is PeerState.WAITING and kj.role is Role.CLIENT and kj.peers == ()
    assert kj.resumed is False and kj.resume_error is None and len(kj.id) == 12
    _cc, cs, cj = await join(hub, Role.COUNSELOR)
    assert cj.id == "counselor"
    assert cj.peers == (PeerInfo(kj.id, Role.CLIENT, PeerState.WAITING, True),)
    assert ks.take() == [Peer("counselor", Role.COUNSELOR, PeerState.ADMITTED, True)]
    assert cs.take() == []


async def test_waiting_client_writes_to_an_absent_counselor() -> None:
    hub = make_hub(limits=RoomLimits(waiting_held=3))
    kc, ks, kj = await join(hub, Role.CLIENT)
    for n in range(3):
        await hub.relay(kc, Relay("counselor", E, box(n)))
    with pytest.raises(HoldFull):
        await hub.relay(kc, Relay("counselor", E, box(3)))
    assert hub.stats.envelopes_dropped == 1
    cc, cs, msgs = await join_all(hub, Role.COUNSELOR)
    assert isinstance(msgs[0], Joined)
    assert msgs[1:] == [Relayed(kj.id, E, box(n)) for n in range(3)]
    # Now the counselor is here: delivered at once, and it can answer the waiting client.
    await hub.relay(kc, Relay("counselor", E, box(9)))
    assert cs.take() == [Relayed(kj.id, E, box(9))]
    await hub.relay(cc, Relay(kj.id, E, box(10)))
    assert ks.take()[-1] == Relayed("counselor", E, box(10))


async def test_held_for_the_counselor_only_while_the_client_is_connected() -> None:
    hub = make_hub()
    kc, _ks, _kj = await join(hub, Role.CLIENT)
    await hub.relay(kc, Relay("counselor", E, box(1)))
    await hub.disconnect(kc)
    _cc, _cs, msgs = await join_all(hub, Role.COUNSELOR)
    assert [m for m in msgs if isinstance(m, Relayed)] == []


async def test_admit_decline_remove_end() -> None:
    gens = Generations()
    hub = make_hub(gens)
    cc, cs, _ = await join(hub, Role.COUNSELOR)
    a, a_sink, aj = await join(hub, Role.CLIENT)
    b, b_sink, bj = await join(hub, Role.CLIENT)
    assert cs.take() == [
        Peer(aj.id, Role.CLIENT, PeerState.WAITING, True),
        Peer(bj.id, Role.CLIENT, PeerState.WAITING, True),
    ]
    # Waiting clients do not learn about each other.
    assert a_sink.take() == []

    await hub.admit(cc, aj.id)
    got = a_sink.take()
    assert got[0] == Admitted((PeerInfo("counselor", Role.COUNSELOR, PeerState.ADMITTED, True),))
    assert isinstance(got[1], Token) and decode(KEY, got[1].resume, now=1.7e9).admitted
    assert cs.take() == [Peer(aj.id, Role.CLIENT, PeerState.ADMITTED, True)]
    assert b_sink.take() == []

    with pytest.raises(BadState):
        await hub.admit(cc, aj.id)
    with pytest.raises(RoomFull):
        await hub.admit(cc, bj.id)
    with pytest.raises(BadState):
        await hub.decline(cc, aj.id)
    with pytest.raises(BadState):
        await hub.remove(cc, bj.id)
    with pytest.raises(UnknownPeer):
        await hub.admit(cc, "nobody")
    with pytest.raises(UnknownPeer):
        await hub.admit(cc, "counselor")
    with pytest.raises(Forbidden):
        await hub.admit(a, bj.id)
    with pytest.raises(Forbidden):
        await hub.end_session(b)

    await hub.decline(cc, bj.id)
    assert b_sink.code == CloseCode.DECLINED
    assert gens.bumps == 1
    msgs = cs.take()
    assert msgs[0] == Peer(bj.id, Role.CLIENT, PeerState.GONE, False, GoneReason.DECLINED)
    assert isinstance(msgs[1], Token)  # the generation moved: a fresh token for who stays
    assert decode(KEY, msgs[1].resume, now=1.7e9).generation == 1

    await hub.remove(cc, aj.id)
    assert a_sink.code == CloseCode.REMOVED
    assert cs.take()[0] == Peer(aj.id, Role.CLIENT, PeerState.GONE, False, GoneReason.REMOVED)
    assert gens.bumps == 2


async def test_end_session_keeps_waiting_clients() -> None:
    gens = Generations()
    hub = make_hub(gens)
    cc, cs, _ = await join(hub, Role.COUNSELOR)
    _a, a_sink, aj = await join(hub, Role.CLIENT)
    _w, w_sink, wj = await join(hub, Role.CLIENT)
    await hub.admit(cc, aj.id)
    cs.take()
    w_sink.take()
    await hub.end_session(cc)
    assert a_sink.code == CloseCode.SESSION_ENDED
    assert w_sink.code is None
    assert cs.take()[0] == Peer(aj.id, Role.CLIENT, PeerState.GONE, False, GoneReason.ENDED)
    assert isinstance(w_sink.take()[-1], Token)
    await hub.admit(cc, wj.id)  # the next client can come in
    assert isinstance(w_sink.take()[0], Admitted)


async def test_relay_rules() -> None:
    hub = make_hub(limits=RoomLimits(capacity=2))
    cc, cs, _ = await join(hub, Role.COUNSELOR)
    a, a_sink, aj = await join(hub, Role.CLIENT)
    _b, b_sink, bj = await join(hub, Role.CLIENT)
    w, w_sink, wj = await join(hub, Role.CLIENT)
    x, x_sink, xj = await join(hub, Role.CLIENT, room=OTHER)
    await hub.admit(cc, aj.id)
    await hub.admit(cc, bj.id)
    for s in (cs, a_sink, b_sink, w_sink, x_sink):
        s.take()

    # Admitted clients talk to each other.
    await hub.relay(a, Relay(bj.id, E, box(1)))
    assert b_sink.take() == [Relayed(aj.id, E, box(1))]
    # A waiting client reaches only the counselor.
    for target in (aj.id, bj.id, wj.id, xj.id, "nobody"):
        with pytest.raises(UnknownPeer):
            await hub.relay(w, Relay(target, E, box(2)))
    # Nobody reaches a waiting client but the counselor, or another room, or themselves.
    for sender, target in ((a, wj.id), (a, xj.id), (a, aj.id), (cc, xj.id), (x, "k")):
        with pytest.raises(UnknownPeer):
            await hub.relay(sender, Relay(target, E, box(3)))
    await hub.relay(cc, Relay(wj.id, E, box(4)))
    assert w_sink.take() == [Relayed("counselor", E, box(4))]
    # The other room's lone client cannot write to this room's counselor: it holds for its own.
    await hub.relay(x, Relay("counselor", E, box(5)))
    assert cs.take() == []
    assert a_sink.take() == [] and x_sink.take() == []


async def test_drop_hold_and_resume() -> None:
    clock = Clock()
    hub = make_hub(clock=clock, limits=RoomLimits(resume_held=2))
    cc, cs, _ = await join(hub, Role.COUNSELOR)
    k, ks, kj = await join(hub, Role.CLIENT)
    await hub.admit(cc, kj.id)
    token = [m for m in ks.take() if isinstance(m, Token)][-1].resume
    cs.take()

    await hub.disconnect(k)
    assert cs.take() == [Peer(kj.id, Role.CLIENT, PeerState.ADMITTED, False)]
    await hub.relay(cc, Relay(kj.id, E, box(1)))
    await hub.relay(cc, Relay(kj.id, E, box(2)))
    with pytest.raises(HoldFull):
        await hub.relay(cc, Relay(kj.id, E, box(3)))

    clock.now += 59
    hub.expire_due()
    _k2, _ks2, msgs = await join_all(hub, Role.CLIENT, resume=token)
    joined = msgs[0]
    assert isinstance(joined, Joined)
    assert joined.resumed and joined.id == kj.id and joined.state is PeerState.ADMITTED
    assert msgs[1:] == [Relayed("counselor", E, box(1)), Relayed("counselor", E, box(2))]
    assert cs.take() == [Peer(kj.id, Role.CLIENT, PeerState.ADMITTED, True)]
    # The first socket's late disconnect changes nothing.
    await hub.disconnect(k)
    assert cs.take() == []


async def test_slot_expires_after_the_window() -> None:
    clock = Clock()
    hub = make_hub(clock=clock)
    _cc, cs, _ = await join(hub, Role.COUNSELOR)
    k, _ks, kj = await join(hub, Role.CLIENT)
    await hub.disconnect(k)
    cs.take()
    clock.now += 60
    hub.expire_due()
    assert cs.take() == [Peer(kj.id, Role.CLIENT, PeerState.GONE, False, GoneReason.EXPIRED)]
    _k2, _, j2 = await join(hub, Role.CLIENT, resume=kj.resume)
    assert not j2.resumed and j2.resume_error == "revoked" and j2.id != kj.id
    assert j2.state is PeerState.WAITING


async def test_admitted_client_resumes_while_the_counselor_is_away() -> None:
    clock = Clock()
    hub = make_hub(clock=clock)
    cc, cs, _ = await join(hub, Role.COUNSELOR)
    k, ks, kj = await join(hub, Role.CLIENT)
    await hub.admit(cc, kj.id)
    token = [m for m in ks.take() if isinstance(m, Token)][-1].resume
    await hub.leave(cc)
    assert cs.code == CloseCode.NORMAL
    assert ks.take() == [Peer("counselor", Role.COUNSELOR, PeerState.GONE, False, GoneReason.LEFT)]
    await hub.disconnect(k)
    _k2, _ks2, j2 = await join(hub, Role.CLIENT, resume=token)
    assert j2.resumed and j2.state is PeerState.ADMITTED and j2.peers == ()
    # The counselor comes back: the client is still in, not in the waiting room.
    _cc2, _cs2, cj2 = await join(hub, Role.COUNSELOR)
    assert cj2.peers == (PeerInfo(kj.id, Role.CLIENT, PeerState.ADMITTED, True),)


async def test_newer_counselor_socket_takes_over() -> None:
    hub = make_hub()
    c1, s1, _ = await join(hub, Role.COUNSELOR)
    k, ks, kj = await join(hub, Role.CLIENT)
    s1.take()
    c2, s2, j2 = await join(hub, Role.COUNSELOR)
    assert s1.code == CloseCode.REPLACED
    assert j2.id == "counselor" and not j2.resumed
    assert j2.peers == (PeerInfo(kj.id, Role.CLIENT, PeerState.WAITING, True),)
    assert ks.take() == [Peer("counselor", Role.COUNSELOR, PeerState.ADMITTED, True)]
    await hub.disconnect(c1)  # the old socket's handler ends: nothing changes
    await hub.relay(k, Relay("counselor", E, box(1)))
    assert s2.take() == [Relayed(kj.id, E, box(1))]
    with pytest.raises(Departed):  # the replaced connection has no say any more
        await hub.admit(c1, kj.id)
    assert ks.take() == []
    await hub.admit(c2, kj.id)
    assert isinstance(ks.take()[0], Admitted)


async def test_resume_while_the_old_socket_is_still_open_replaces_it() -> None:
    hub = make_hub()
    k, ks, kj = await join(hub, Role.CLIENT)
    _k2, _ks2, j2 = await join(hub, Role.CLIENT, resume=kj.resume)
    assert ks.code == CloseCode.REPLACED and j2.resumed and j2.id == kj.id
    await hub.disconnect(k)
    assert hub.participant_count() == 1


async def test_declined_removed_and_left_tokens_are_dead() -> None:
    gens = Generations()
    hub = make_hub(gens)
    cc, _cs, _ = await join(hub, Role.COUNSELOR)
    _k, _ks, kj = await join(hub, Role.CLIENT)
    await hub.decline(cc, kj.id)
    _, _, j = await join(hub, Role.CLIENT, resume=kj.resume, gen=gens.values[1])
    assert not j.resumed and j.resume_error == "revoked" and j.state is PeerState.WAITING
    # The same token on a fresh hub (a restart): the generation says no.
    fresh = make_hub(gens)
    _, _, j = await join(fresh, Role.CLIENT, resume=kj.resume, gen=gens.values[1])
    assert not j.resumed and j.resume_error == "revoked"

    k3, ks3, j3 = await join(hub, Role.CLIENT)
    await hub.leave(k3)
    assert ks3.code == CloseCode.NORMAL
    with pytest.raises(Departed):
        await hub.relay(k3, Relay("counselor", E, box(1)))
    _, _, j = await join(hub, Role.CLIENT, resume=j3.resume, gen=gens.values[1])
    assert j.resume_error == "revoked"


async def test_other_participants_keep_their_slot_when_the_generation_moves() -> None:
    gens = Generations()
    hub = make_hub(gens, limits=RoomLimits(capacity=1))
    cc, _cs, _ = await join(hub, Role.COUNSELOR)
    a, a_sink, aj = await join(hub, Role.CLIENT)
    await hub.admit(cc, aj.id)
    token = [m for m in a_sink.take() if isinstance(m, Token)][-1].resume
    await hub.disconnect(a)  # the admitted client's network drops ...
    _b, _b_sink, bj = await join(hub, Role.CLIENT)
    await hub.decline(cc, bj.id)  # ... and meanwhile someone else is declined
    _, _, j = await join(hub, Role.CLIENT, resume=token, gen=gens.values[1])
    assert j.resumed and j.state is PeerState.ADMITTED


async def test_restart_rebuilds_slots_from_tokens() -> None:
    gens = Generations()
    hub = make_hub(gens)
    cc, cs, cj = await join(hub, Role.COUNSELOR)
    _k, ks, kj = await join(hub, Role.CLIENT)
    await hub.admit(cc, kj.id)
    token = [m for m in ks.take() if isinstance(m, Token)][-1].resume
    await hub.close()
    assert cs.code == ks.code == CloseCode.GOING_AWAY
    with pytest.raises(HubClosed):
        await join(hub, Role.CLIENT)

    again = make_hub(gens)  # another process sharing the secret, or after a restart
    _k2, ks2, j2 = await join(again, Role.CLIENT, resume=token)
    assert j2.resumed and j2.id == kj.id and j2.state is PeerState.ADMITTED
    c2, _cs2, cj2 = await join(again, Role.COUNSELOR, resume=cj.resume)
    assert cj2.resumed
    await again.relay(c2, Relay(kj.id, E, box(1)))
    assert ks2.take()[-1] == Relayed("counselor", E, box(1))


async def test_bad_tokens_fall_back_to_a_fresh_join() -> None:
    hub = make_hub()
    _k, _ks, kj = await join(hub, Role.CLIENT)
    _, _, j = await join(hub, Role.CLIENT, resume="garbage.token")
    assert j.resume_error == "invalid" and not j.resumed
    _, _, j = await join(hub, Role.CLIENT, room=OTHER, resume=kj.resume)
    assert j.resume_error == "invalid"
    _, _, j = await join(hub, Role.COUNSELOR, resume=kj.resume)
    assert j.resume_error == "invalid" and j.id == "counselor"
    expired = make_hub(wall=Clock(1_700_000_000.0 + 1000))
    _, _, j = await join(expired, Role.CLIENT, resume=kj.resume)
    assert j.resume_error == "expired"


async def test_waiting_room_cap() -> None:
    hub = make_hub(limits=RoomLimits(max_waiting=2))
    await join(hub, Role.CLIENT)
    await join(hub, Role.CLIENT)
    with pytest.raises(WaitingRoomFull):
        await join(hub, Role.CLIENT)
    await join(hub, Role.CLIENT, room=OTHER)  # other rooms are not affected


async def test_a_sink_that_does_not_read_is_closed_as_too_slow() -> None:
    hub = make_hub()
    cc, _cs, _ = await join(hub, Role.COUNSELOR)
    slow = RecordingSink(limit=3)
    k = await hub.join(request(ROOM, Role.CLIENT), slow)
    kid = k.participant_id
    for n in range(5):
        await hub.relay(cc, Relay(kid, E, box(n)))
    assert slow.code == CloseCode.TOO_SLOW
    assert hub.stats.sends_dropped >= 1


async def test_close_room_closes_every_socket_with_unknown_room() -> None:
    hub = make_hub()
    _cc, cs, _ = await join(hub, Role.COUNSELOR)
    _k, ks, _kj = await join(hub, Role.CLIENT)
    _x, xs, _ = await join(hub, Role.CLIENT, room=OTHER)
    await hub.close_room(ROOM)
    assert cs.code == ks.code == CloseCode.UNKNOWN_ROOM
    assert xs.code is None
    assert hub.room_count() == 1


async def test_tokens_are_refreshed_and_rooms_forgotten_when_empty() -> None:
    clock = Clock()
    hub = make_hub(clock=clock)
    k, ks, _kj = await join(hub, Role.CLIENT)
    hub.refresh_tokens()
    assert isinstance(ks.take()[-1], Token)
    assert hub.room_count() == 1
    await hub.disconnect(k)
    clock.now += 61
    hub.expire_due()
    assert hub.room_count() == 0 and hub.participant_count() == 0


async def test_start_and_close_run_the_maintenance_task() -> None:
    hub = make_hub(limits=RoomLimits(resume_seconds=0.2))
    await hub.start()
    try:
        _k, ks, _kj = await join(hub, Role.CLIENT)
    finally:
        await hub.close()
    assert ks.code == CloseCode.GOING_AWAY
