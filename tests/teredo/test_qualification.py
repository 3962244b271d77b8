"""The qualification machine with a fake clock: every transition, timer and refusal."""

from __future__ import annotations

import random

import pytest

from proxy.config.client import ClientConfig
from proxy.config.server import ServerConfig
from proxy.constants import FLAG_RANDOM_MASK, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.ndisc import PrefixInformation, RouterAdvertisement
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.teredo import auth as teredo_auth
from proxy.teredo.address import TeredoAddress, server_link_local
from proxy.teredo.client_events import (
    AddressChanged,
    NatType,
    QualificationLost,
    Qualified,
    ResolveServer,
    ServerFailed,
    StateChanged,
)
from proxy.teredo.messages import router_advertisement, teredo_prefix
from proxy.teredo.packet import Authentication, OriginIndication, TeredoPacket, ipv6_packet
from proxy.teredo.qualification import PUBLIC_STATE, TRANSITIONS, QState, Qualifier
from proxy.teredo.server import TeredoServer

SRV1, SRV2 = "198.51.100.1", "198.51.100.2"
P1, P2 = (SRV1, 3544), (SRV2, 3544)
MAPPED = ("203.0.113.5", 40001)
LOCAL = ("10.0.0.2", 40001)


def make(servers=(SRV1,), local=LOCAL, seed=1, **kw) -> Qualifier:
    return Qualifier(ClientConfig(servers=tuple(servers), **kw).validate(), rng=random.Random(seed), local=local)


def sent(q, probe=False):
    """The RSs the machine sent (from the main or the probe socket): [(nonce, cone, to)]."""
    out = []
    for data, to in (q.probe_datagrams_to_send() if probe else q.datagrams_to_send()):
        p = TeredoPacket.parse(data)
        out.append((p.auth.nonce, p.src == LINK_LOCAL_CONE, to))
    return out


def events(q):
    out = []
    while (e := q.next_event()) is not None:
        out.append(e)
    return out


def ra(nonce, cone, mapped=MAPPED, server=SRV1, **kw):
    return TeredoPacket.parse(router_advertisement(
        server=server, server_link_local=server_link_local(server),
        client_link_local=LINK_LOCAL_CONE if cone else LINK_LOCAL_RESTRICTED,
        origin=mapped, nonce=nonce, **kw))


def answer(q, rs, now, mapped=MAPPED, frm=None, probe=False):
    nonce, cone, to = rs
    if frm is None:
        frm = (P2 if to == P1 else P1) if cone else to
    q.ra_received(ra(nonce, cone, mapped), frm, now, via_probe=probe)


PROBE_MAPPED = ("203.0.113.5", 40777)  # the probe socket's own mapping


def to_cone_wait(q, now=0.0):
    q.start(now)
    cone_rs, restricted_rs = sent(q)
    answer(q, restricted_rs, now + 0.01)
    return cone_rs


def to_secondary(q):
    """Up to the mapping comparison; returns the probe socket's two RSs (primary, secondary)."""
    to_cone_wait(q)
    q.handle_timer(q.poll_at())
    assert sent(q) == []  # the main socket never talks to the secondary address
    rs = sent(q, probe=True)
    assert [(c, to) for _, c, to in rs] == [(False, P1), (False, P2)]
    return rs


def compare(q, rs, second=PROBE_MAPPED, now=0.3):
    answer(q, rs[0], now, mapped=PROBE_MAPPED, probe=True)
    answer(q, rs[1], now, mapped=second, probe=True)


def test_transition_table_covers_every_state_and_refuses_others():
    assert set(TRANSITIONS) == set(QState) == set(PUBLIC_STATE)
    q = make()
    with pytest.raises(RuntimeError):
        q._set_state(QState.QUALIFIED)  # IDLE -> QUALIFIED is not in the table


def test_start_sends_cone_and_restricted_rs_with_fresh_nonces():
    q = make()
    assert q.poll_at() is None and q.public_state == "starting"
    q.start(0.0)
    rs = sent(q)
    assert [(c, to) for _, c, to in rs] == [(True, P1), (False, P1)]
    assert len({n for n, _, _ in rs}) == 2 and all(len(n) == 8 for n, _, _ in rs)
    assert q.state is QState.PROBING and q.poll_at() == 4.0
    assert events(q) == [StateChanged("starting", "qualifying")]


def test_cone_ra_from_secondary_means_cone():
    q = make()
    q.start(0.0)
    cone_rs, _ = sent(q)
    answer(q, cone_rs, 0.02)
    assert q.state is QState.QUALIFIED and q.nat is NatType.CONE
    ev = events(q)
    assert isinstance(ev[-1], Qualified) and ev[-1].nat is NatType.CONE
    a = TeredoAddress.parse(q.address)
    assert a.mapped == MAPPED and a.server == SRV1 and not a.cone  # RFC 5991: cone bit clear
    assert a.flags & ~FLAG_RANDOM_MASK == 0


def test_cone_ra_when_mapping_is_local_means_open():
    q = make(local=MAPPED)
    q.start(0.0)
    cone_rs, _ = sent(q)
    answer(q, cone_rs, 0.02)
    assert q.nat is NatType.OPEN


def test_restricted_then_grace_then_secondary_same_mapping_is_restricted():
    q = make()
    to_cone_wait(q)
    assert q.state is QState.CONE_WAIT
    assert q.poll_at() == pytest.approx(0.01 + 0.04)  # max(0.02, 4 x RTT)
    q.handle_timer(0.03)  # early: harmless
    assert q.state is QState.CONE_WAIT and sent(q) == []
    q.handle_timer(q.poll_at())
    rs = sent(q, probe=True)
    assert [(c, to) for _, c, to in rs] == [(False, P1), (False, P2)]
    assert q.state is QState.SECONDARY
    answer(q, rs[0], 0.3, mapped=PROBE_MAPPED, probe=True)
    assert q.state is QState.SECONDARY  # needs both answers
    answer(q, rs[1], 0.3, mapped=PROBE_MAPPED, probe=True)
    assert q.state is QState.QUALIFIED and q.nat is NatType.RESTRICTED
    assert TeredoAddress.parse(q.address).mapped == MAPPED  # the main socket's mapping


def test_late_cone_ra_during_grace_wins():
    q = make()
    cone_rs = to_cone_wait(q)
    answer(q, cone_rs, 0.05)
    assert q.nat is NatType.CONE


def test_probe_answers_must_come_back_to_the_probe_socket():
    q = make()
    rs = to_secondary(q)
    with pytest.raises(ParseError) as e:
        answer(q, rs[1], 0.3, mapped=PROBE_MAPPED, probe=False)
    assert e.value.reason is DropReason.NOT_FROM_SERVER


def test_secondary_other_mapping_is_symmetric_and_kept_rfc6081():
    q = make(local=("10.0.0.2", 5555))
    rs = to_secondary(q)
    compare(q, rs, second=(MAPPED[0], 50000))
    assert q.state is QState.QUALIFIED and q.nat is NatType.SYMMETRIC
    assert TeredoAddress.parse(q.address).mapped == MAPPED  # the primary's mapping


def test_symmetric_refused_when_configured():
    q = make(local=("10.0.0.2", 5555), accept_symmetric=False)
    rs = to_secondary(q)
    compare(q, rs, second=(MAPPED[0], 50000))
    assert q.state is QState.BACKOFF and q.public_state == "failed" and q.address is None
    assert any(isinstance(e, ServerFailed) and "symmetric" in e.reason for e in events(q))


def test_single_socket_mode_and_the_conntrack_collision_rule():
    # RFC order from the main socket: local port preserved towards the primary,
    # only the port moved towards the secondary after a filtered cone RA: a
    # Linux-style restricted NAT
    q = make(local=("10.0.0.2", MAPPED[1]), separate_probe=False)
    to_cone_wait(q)
    q.handle_timer(q.poll_at())
    (rs,) = sent(q)
    assert rs[2] == P2 and sent(q, probe=True) == []
    answer(q, rs, 0.3, mapped=(MAPPED[0], 61000))
    assert q.nat is NatType.RESTRICTED
    # without the cone probe there is nothing to collide with
    q = make(local=("10.0.0.2", MAPPED[1]), cone_probe=False, separate_probe=False)
    q.start(0.0)
    (rs,) = sent(q)
    answer(q, rs, 0.01)
    (rs2,) = sent(q)
    assert q.state is QState.SECONDARY and rs2[2] == P2
    answer(q, rs2, 0.02, mapped=(MAPPED[0], 61000))
    assert q.nat is NatType.SYMMETRIC


def test_silent_secondary_gives_unknown_after_three_tries():
    q = make()
    rs = to_secondary(q)
    answer(q, rs[0], 0.3, mapped=PROBE_MAPPED, probe=True)
    for _ in range(2):
        q.handle_timer(q.poll_at())
        assert [to for _, _, to in sent(q, probe=True)] == [P2]  # only what is missing
    q.handle_timer(q.poll_at())
    assert q.state is QState.QUALIFIED and q.nat is NatType.UNKNOWN


def test_no_answer_three_times_then_backoff_then_retry():
    q = make()
    q.start(0.0)
    for t in (4.0, 8.0):
        sent(q)
        q.handle_timer(t)
        assert len(sent(q)) == 2 and q.state is QState.PROBING
    q.handle_timer(12.0)
    assert q.state is QState.BACKOFF and q.public_state == "failed"
    ev = events(q)
    assert isinstance(ev[-1], ServerFailed) and 12.0 + 3.0 <= ev[-1].retry_at <= 16.0
    q.handle_timer(q.poll_at())
    assert q.state is QState.PROBING and len(sent(q)) == 2
    # second full failure: the backoff doubles
    start = q.poll_at() - 4.0
    for k in range(3):
        q.handle_timer(q.poll_at())
    assert q.state is QState.BACKOFF
    assert 6.0 <= q.poll_at() - (start + 12.0) <= 8.0


def test_failover_across_servers_and_resolution():
    q = make(servers=("teredo.example", "192.0.2.50"))
    q.start(0.0)
    assert events(q)[-1] == ResolveServer("teredo.example")
    assert q.state is QState.RESOLVING
    q.server_resolved("other.example", ["192.0.2.9"], 0.1)  # not ours: ignored
    assert q.state is QState.RESOLVING
    q.server_resolved("teredo.example", ["10.0.0.1"], 0.2)  # not global: fails over
    assert q.primary == ("192.0.2.50", 3544) and q.secondary == ("192.0.2.51", 3544)
    assert [type(e) for e in events(q)] == [ServerFailed]
    assert q.state is QState.PROBING


def test_resolution_timeout():
    q = make(servers=("teredo.example", SRV1))
    q.start(0.0)
    q.handle_timer(10.0)
    assert q.primary == P1 and q.state is QState.PROBING


def test_server2_overrides_the_secondary_of_the_first_server():
    q = make(server2="198.51.100.9")
    q.start(0.0)
    assert q.secondary == ("198.51.100.9", 3544)


@pytest.mark.parametrize("case", [
    "no-auth", "unknown-nonce", "restricted-from-secondary", "cone-from-primary", "other-server-prefix",
    "two-prefixes", "no-origin", "confirmation", "cone-dst-for-restricted", "mapped-not-global", "hop-limit",
])
def test_bad_router_advertisements_are_refused(case):
    q = make()
    q.start(0.0)
    (cn, _, _), (rn, _, _) = sent(q)
    frm, packet = P1, ra(rn, False)
    expected = DropReason.BAD_RA
    if case == "no-auth":
        packet = TeredoPacket(packet.ipv6, None, packet.origin)
        expected = DropReason.BAD_NONCE
    elif case == "unknown-nonce":
        packet = ra(b"\x01" * 8, False)
        expected = DropReason.BAD_NONCE
    elif case == "restricted-from-secondary":
        frm, expected = P2, DropReason.NOT_FROM_SERVER
    elif case == "cone-from-primary":
        packet, expected = ra(cn, True), DropReason.NOT_FROM_SERVER
    elif case == "other-server-prefix":
        packet = ra(rn, False, server="192.0.2.1")
    elif case == "two-prefixes":
        pio = PrefixInformation(teredo_prefix(SRV1), 64)
        msg = RouterAdvertisement(prefixes=(pio, pio), mtu=1280).emit(server_link_local(SRV1), LINK_LOCAL_RESTRICTED)
        ip6 = ipv6_packet(server_link_local(SRV1), LINK_LOCAL_RESTRICTED, NextHeader.ICMPV6, msg, 255)
        packet = TeredoPacket(ip6, Authentication(rn), OriginIndication(*MAPPED))
    elif case == "no-origin":
        packet = TeredoPacket(packet.ipv6, packet.auth, None)
    elif case == "confirmation":
        packet = TeredoPacket(packet.ipv6, Authentication(rn, confirmation=1), packet.origin)
        expected = DropReason.AUTH_FAILED
    elif case == "cone-dst-for-restricted":
        packet = ra(rn, True)
    elif case == "mapped-not-global":
        packet = ra(rn, False, mapped=("10.1.2.3", 5))
    elif case == "hop-limit":
        ip6 = bytearray(packet.ipv6)
        ip6[7] = 64
        packet = TeredoPacket(bytes(ip6), packet.auth, packet.origin)
    with pytest.raises(ParseError) as e:
        q.ra_received(packet, frm, 0.01)
    assert e.value.reason is expected
    assert q.state is QState.PROBING


def qualified(q, now=0.0, mapped=MAPPED):
    q.start(now)
    cone_rs, _ = sent(q)
    answer(q, cone_rs, now + 0.01, mapped=mapped)
    events(q)
    assert q.state is QState.QUALIFIED


def test_refresh_is_randomised_and_postponed_by_server_traffic():
    deadlines = set()
    for seed in range(20):
        q = make(seed=seed)
        qualified(q)
        d = q.poll_at() - 0.01
        assert 22.5 <= d <= 30.0
        deadlines.add(round(d, 3))
    assert len(deadlines) > 10
    q = make()
    qualified(q)
    d = q.poll_at()
    q.server_seen(d - 1)
    q.handle_timer(d)
    assert q.state is QState.QUALIFIED and sent(q) == [] and q.poll_at() > d


def test_refresh_same_mapping_stays_qualified_quietly():
    q = make()
    qualified(q)
    addr = q.address
    q.handle_timer(q.poll_at())
    (rs,) = sent(q)
    assert rs[1] is True and rs[2] == P1  # same cone bit as at qualification
    assert q.state is QState.REFRESHING and q.public_state == "qualified"
    answer(q, rs, q.poll_at() - 3.9)
    assert q.state is QState.QUALIFIED and q.address == addr and events(q) == []


def test_refresh_new_mapping_requalifies_with_new_random_bits():
    q = make()
    qualified(q)
    old = q.address
    t = q.poll_at()
    q.handle_timer(t)
    (rs,) = sent(q)
    answer(q, rs, t + 0.01, mapped=("203.0.113.5", 41000))
    assert q.state is QState.PROBING
    cone_rs, _ = sent(q)
    answer(q, cone_rs, t + 0.02, mapped=("203.0.113.5", 41000))
    ev = events(q)
    changed = [e for e in ev if isinstance(e, AddressChanged)]
    assert changed == [AddressChanged(old, q.address)]
    assert isinstance(ev[-1], Qualified)
    assert TeredoAddress.parse(q.address).mapped == ("203.0.113.5", 41000)


def test_random_bits_kept_for_the_same_mapping():
    q = make()
    qualified(q)
    bits = TeredoAddress.parse(q.address).random_bits
    q._begin_probing(SRV1, 50.0)
    cone_rs, _ = sent(q)
    answer(q, cone_rs, 50.01)
    assert TeredoAddress.parse(q.address).random_bits == bits


def test_refresh_silence_loses_the_address_and_fails_over():
    q = make(servers=(SRV1, "192.0.2.50"))
    qualified(q)
    addr = q.address
    for _ in range(4):
        q.handle_timer(q.poll_at())
    ev = events(q)
    assert QualificationLost(addr, "no reply to refresh solicitations") in ev
    assert q.primary == ("192.0.2.50", 3544) and q.state is QState.PROBING
    assert StateChanged("qualified", "qualifying") in ev


def test_clock_jump_refreshes_at_once_and_backwards_clock_rearms():
    q = make()
    qualified(q)
    q.handle_timer(1000.0)
    assert q.state is QState.REFRESHING and len(sent(q)) == 1
    q = make()
    q.start(100.0)
    sent(q)
    q.handle_timer(50.0)  # clock went backwards
    assert q.poll_at() <= 54.0


def test_secure_qualification_against_our_server():
    key = bytes(range(16))
    srv = TeredoServer(ServerConfig(address=SRV1, address2=SRV2, auth_keys={b"alice": key},
                                    require_auth=True).validate())
    q = make(auth_id=b"alice", auth_key=key)
    q.start(0.0)
    for data, to in q.datagrams_to_send():
        p = TeredoPacket.parse(data)
        assert p.auth.client_id == b"alice" and teredo_auth.verify(p.auth, key, None, p.ipv6)
        srv.datagram_received(data, to, MAPPED, 0.0)
    for data, local, _ in srv.datagrams_to_send():
        q.ra_received(TeredoPacket.parse(data), local, 0.01)
        break  # the cone RA comes first
    assert q.state is QState.QUALIFIED and q.nat is NatType.CONE


def test_secure_qualification_refuses_an_unsigned_ra():
    q = make(auth_id=b"alice", auth_key=b"k" * 16)
    q.start(0.0)
    cone_rs, _ = sent(q)
    with pytest.raises(ParseError) as e:
        answer(q, cone_rs, 0.01)
    assert e.value.reason is DropReason.AUTH_FAILED


def test_same_mapping_after_a_loss_gives_the_same_address():
    # The server went silent, the address was lost; it answers again and the
    # NAT kept our mapping: same address, so open connections carry on.
    q = make()
    qualified(q)
    addr = q.address
    for _ in range(4):
        q.handle_timer(q.poll_at())
    assert q.address is None and q.state is QState.BACKOFF
    events(q), sent(q)
    q.handle_timer(q.poll_at())
    cone_rs, _ = sent(q)
    answer(q, cone_rs, q.poll_at() - 3.9)
    assert q.address == addr
    assert not [e for e in events(q) if isinstance(e, AddressChanged)]
    # Another mapping after a loss: new random bits (RFC 5991 §4).
    for _ in range(4):
        q.handle_timer(q.poll_at())
    sent(q)
    q.handle_timer(q.poll_at())
    cone_rs, _ = sent(q)
    answer(q, cone_rs, q.poll_at() - 3.9, mapped=("203.0.113.5", 41000))
    assert q.address != addr
    assert TeredoAddress.parse(q.address).random_bits != TeredoAddress.parse(addr).random_bits
