"""RFC 4380 §5.2.8 local client discovery in the client core, on a fake clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.constants import (
    ALL_NODES,
    DISCOVERY_FIRST_DELAY,
    DISCOVERY_HOP_LIMIT,
    DISCOVERY_INTERVAL_MAX,
    DISCOVERY_INTERVAL_MIN,
    DISCOVERY_REPLY_BURST,
    DISCOVERY_REPLY_RATE,
    LINK_LOCAL_RESTRICTED,
    LOCAL_PEER_VALIDITY,
)
from proxy.errors import DropReason
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.teredo.address import TeredoAddress, server_link_local
from proxy.teredo.local_discovery import DISCOVERY_GROUP, LocalPeers, discovery_bubble
from proxy.teredo.messages import router_advertisement
from proxy.teredo.packet import OriginIndication, TeredoPacket, bubble
from proxy.teredo.trailers import Trailers

from tests.teredo.test_client import HOST6, MAPPED, P1, SRV1, echo_request, make, qualify

#: A client behind our NAT (same public IPv4, another port), on the LAN at LPEER_LOCAL.
LPEER = TeredoAddress(SRV1, 0x0100, 40002, MAPPED[0]).emit()
LPEER_MAPPED = (MAPPED[0], 40002)
LPEER_LOCAL = ("10.0.0.3", 40002)
#: A client behind another NAT.
FAR = TeredoAddress(SRV1, 0x0100, 50000, "203.0.113.77").emit()


def on(seed: int = 3, **kw):
    return qualify(make(seed, local_discovery=True, **kw))


def sent(c):
    return [(TeredoPacket.parse(d), to) for d, to in c.datagrams_to_send()]


def answer_refreshes(c, out, now):
    """Play our server: answer the refresh RSs among ``out`` (so the address stays)."""
    for p, to in out:
        if to == P1 and p.auth is not None and p.src == LINK_LOCAL_RESTRICTED:
            ra = router_advertisement(server=SRV1, server_link_local=server_link_local(SRV1),
                                      client_link_local=p.src, origin=MAPPED, nonce=p.auth.nonce)
            c.datagram_received(ra, P1, now)


# -- sending discovery bubbles ----------------------------------------------------------------

def test_discovery_bubble_format():
    raw = discovery_bubble(LPEER)
    p = TeredoPacket.parse(raw)
    assert p.is_bubble and p.src == LPEER and p.dst == ALL_NODES
    assert p.next_header == NextHeader.NO_NEXT_HEADER and len(p.payload) == 0
    assert p.hop_limit == DISCOVERY_HOP_LIMIT == 1
    assert p.auth is None and p.origin is None and p.trailer == b""
    assert DISCOVERY_GROUP == ("224.0.0.253", 3544)


def test_bubbles_every_200_to_300_s_after_a_first_one_soon_after_qualification():
    c = on()
    qualified_at = 0.3  # qualify() ends with the probe RA at 0.3
    times = []
    now = qualified_at
    while now < 3000.0:
        now = c.poll_at()
        c.handle_timer(now)
        out = sent(c)
        answer_refreshes(c, out, now + 0.01)
        for p, to in out:
            if to == DISCOVERY_GROUP:
                assert p.src == c.address and p.dst == ALL_NODES and p.is_bubble
                times.append(now)
        assert c.qualified
    assert times[0] - qualified_at <= DISCOVERY_FIRST_DELAY
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 9
    assert all(DISCOVERY_INTERVAL_MIN <= g <= DISCOVERY_INTERVAL_MAX for g in gaps), gaps
    assert max(gaps) - min(gaps) > 20  # random, not a fixed period
    assert c.stats["discovery_bubbles"] == len(times)


def test_schedule_is_uniform_over_the_window():
    d = LocalPeers(random.Random(7), enabled=True)
    d.qualified(0.0)
    now, gaps = d.next_bubble, []
    for _ in range(2000):
        assert d.bubble_due(now)
        assert not d.bubble_due(now)  # one per due time
        gaps.append(d.next_bubble - now)
        now = d.next_bubble
    assert min(gaps) >= 200 and max(gaps) <= 300
    assert sum(g < 225 for g in gaps) > 400 and sum(g > 275 for g in gaps) > 400  # both ends reached


def test_disabled_by_default_sends_and_accepts_nothing():
    c = qualify(make())
    assert not c.local_discovery and c.discovery.poll_at() is None
    for _ in range(50):
        now = c.poll_at()
        c.handle_timer(now)
        out = sent(c)
        answer_refreshes(c, out, now)
        assert all(to != DISCOVERY_GROUP for _, to in out)
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, 1.0)
    assert c.drops[DropReason.DISCOVERY_DISABLED] == 1 and LPEER not in c.peers


def test_driver_can_disable_it():
    c = on()
    c.disable_local_discovery()
    assert not c.local_discovery and c.discovery.poll_at() is None
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, 1.0)
    assert c.drops[DropReason.DISCOVERY_DISABLED] == 1


def test_no_bubble_before_qualification():
    c = make(local_discovery=True)
    c.handle_timer(0.0)
    assert all(to != DISCOVERY_GROUP for _, to in c.datagrams_to_send())
    assert c.discovery.next_bubble is None
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, 0.1)
    assert c.drops[DropReason.NOT_QUALIFIED] == 1


# -- receiving discovery bubbles ----------------------------------------------------------------

def _cases(me: bytes):
    return [
        ("junk", b"\x60", LPEER_LOCAL, DropReason.TRUNCATED),
        ("unicast destination", bubble(LPEER, me), LPEER_LOCAL, DropReason.NOT_DISCOVERY_BUBBLE),
        ("not a bubble", echo_request(LPEER, ALL_NODES), LPEER_LOCAL, DropReason.NOT_DISCOVERY_BUBBLE),
        ("origin indication", OriginIndication(*LPEER_LOCAL).emit() + discovery_bubble(LPEER), LPEER_LOCAL,
         DropReason.NOT_DISCOVERY_BUBBLE),
        ("trailer", discovery_bubble(LPEER) + Trailers(alternates=(LPEER_LOCAL,)).emit(), LPEER_LOCAL,
         DropReason.NOT_DISCOVERY_BUBBLE),
        ("native source", discovery_bubble(HOST6), LPEER_LOCAL, DropReason.NOT_TEREDO_SOURCE),
        ("our own", discovery_bubble(me), ("10.0.0.2", 40001), DropReason.DISCOVERY_OWN),
        ("public source", discovery_bubble(LPEER), ("198.51.100.77", 40002), DropReason.DISCOVERY_NOT_LOCAL),
        ("documentation range", discovery_bubble(LPEER), ("192.0.2.5", 40002), DropReason.DISCOVERY_NOT_LOCAL),
        ("port zero", discovery_bubble(LPEER), ("10.0.0.3", 0), DropReason.DISCOVERY_NOT_LOCAL),
        ("another NAT", discovery_bubble(FAR), LPEER_LOCAL, DropReason.DISCOVERY_OTHER_NAT),
    ]


@pytest.mark.parametrize("index", range(11), ids=[c[0] for c in _cases(bytes(16))])
def test_refused_discovery_bubbles_each_have_their_reason(index):
    c = on()
    _, data, addr, reason = _cases(c.address)[index]
    c.discovery_datagram_received(data, addr, 1.0)
    assert c.drops == {reason: 1}
    assert sent(c) == [] and list(c.peers) == [] and not c.discovery.peers


def test_accepted_discovery_bubble_makes_an_untrusted_local_peer_and_gets_a_unicast_bubble():
    c = on()
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, 1.0)
    assert not c.drops
    ((p, to),) = sent(c)
    assert to == LPEER_LOCAL and p.is_bubble and p.src == c.address and p.dst == LPEER
    info = c.peers.get(LPEER)
    assert info.local and not info.trusted and (info.ipv4, info.port) == LPEER_LOCAL
    assert c.discovery.endpoint_of(LPEER, 1.0) == LPEER_LOCAL
    assert c.stats["discovery_bubbles_in"] == 1 and c.stats["discovery_replies"] == 1


def test_local_peer_lifecycle_untrusted_trusted_expired():
    c = on()
    me = c.address
    t0 = 10.0
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, t0)
    sent(c)
    # §5.2.4 case 3: queued; a unicast bubble to the local endpoint, nothing to the NAT or the server.
    c.ipv6_from_stack(echo_request(me, LPEER, 1), t0 + 1)
    ((p, to),) = sent(c)
    assert to == LPEER_LOCAL and p.is_bubble and p.dst == LPEER
    assert c.peers.get(LPEER).queued > 0
    # Its bubble from the local endpoint: trusted there, the queue flushed, and answered once.
    c.datagram_received(bubble(LPEER, me), LPEER_LOCAL, t0 + 1.5)
    out = sent(c)
    assert [to for _, to in out] == [LPEER_LOCAL, LPEER_LOCAL]
    assert not out[0][0].is_bubble and out[0][0].dst == LPEER  # the queued echo request
    assert out[1][0].is_bubble
    info = c.peers.get(LPEER)
    assert info.trusted and info.local and info.queued == 0
    # Another bubble while trusted there: no answer (no ping-pong).
    c.datagram_received(bubble(LPEER, me), LPEER_LOCAL, t0 + 1.6)
    assert sent(c) == []
    # Data both ways over the LAN (§5.2.4 case 1, §5.2.3 case 1).
    c.ipv6_from_stack(echo_request(me, LPEER, 2), t0 + 2)
    assert [to for _, to in sent(c)] == [LPEER_LOCAL]
    c.datagram_received(echo_request(LPEER, me, 3), LPEER_LOCAL, t0 + 2.1)
    assert len(c.ipv6_to_stack()) == 1
    # Trust lapses after 30 s; the peer stays local until 600 s after its discovery bubble.
    c.ipv6_from_stack(echo_request(me, LPEER, 4), t0 + LOCAL_PEER_VALIDITY - 2)
    ((p, to),) = sent(c)
    assert to == LPEER_LOCAL and p.is_bubble
    # Then it is an ordinary Teredo peer again (§5.2.4 case 5): bubbles to its mapping and server.
    c.ipv6_from_stack(echo_request(me, LPEER, 5), t0 + LOCAL_PEER_VALIDITY + 2)
    assert [to for _, to in sent(c)] == [LPEER_MAPPED, P1]
    assert c.discovery.endpoint_of(LPEER, t0 + LOCAL_PEER_VALIDITY + 2) is None
    # ...and its local endpoint means nothing any more.
    c.datagram_received(echo_request(LPEER, me, 6), LPEER_LOCAL, t0 + LOCAL_PEER_VALIDITY + 3)
    assert c.drops[DropReason.MAPPING_MISMATCH] == 1


def test_a_new_discovery_bubble_extends_the_600_s():
    c = on()
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, 10.0)
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, 260.0)
    assert c.discovery.endpoint_of(LPEER, 10.0 + LOCAL_PEER_VALIDITY + 100) == LPEER_LOCAL
    assert c.discovery.endpoint_of(LPEER, 260.0 + LOCAL_PEER_VALIDITY + 1) is None


def test_local_peer_packet_from_another_endpoint_is_refused():
    c = on()
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, 1.0)
    sent(c)
    c.datagram_received(echo_request(LPEER, c.address), ("10.0.0.9", 40002), 2.0)
    assert c.drops[DropReason.MAPPING_MISMATCH] == 1 and c.ipv6_to_stack() == []


def test_bubble_from_an_unknown_same_nat_peer_on_the_lan_makes_it_local():
    # Miredo master's extension: the answer to our discovery bubble, whose
    # sender's own discovery bubble we missed.
    c = on()
    c.datagram_received(bubble(LPEER, c.address), LPEER_LOCAL, 1.0)
    info = c.peers.get(LPEER)
    assert info.trusted and info.local and (info.ipv4, info.port) == LPEER_LOCAL
    assert [to for _, to in sent(c)] == [LPEER_LOCAL]  # answered once
    # Not data, not from a public address, not another NAT's client, not when off.
    c2 = on()
    c2.datagram_received(echo_request(LPEER, c2.address), LPEER_LOCAL, 1.0)
    c2.datagram_received(bubble(LPEER, c2.address), ("192.0.2.5", 40002), 1.0)
    c2.datagram_received(bubble(FAR, c2.address), LPEER_LOCAL, 1.0)
    assert c2.drops[DropReason.MAPPING_MISMATCH] == 3 and LPEER not in c2.peers.queued_peers()
    c3 = qualify(make())
    c3.datagram_received(bubble(LPEER, c3.address), LPEER_LOCAL, 1.0)
    assert c3.drops[DropReason.MAPPING_MISMATCH] == 1


def test_address_change_forgets_local_peers():
    c = on()
    c.discovery_datagram_received(discovery_bubble(LPEER), LPEER_LOCAL, 1.0)
    c._forget_peers()
    assert not c.discovery.peers and c.discovery.next_bubble is None


def test_local_peer_list_is_bounded():
    d = LocalPeers(random.Random(1), enabled=True, capacity=4)
    for i in range(10):
        d.heard(bytes([i]) * 16, ("10.0.0.3", 1000 + i), float(i))
    assert len(d.peers) == 4 and d.endpoint_of(bytes([9]) * 16, 9.0) == ("10.0.0.3", 1009)
    assert d.endpoint_of(bytes([0]) * 16, 9.0) is None


def test_replies_to_a_flood_of_discovery_bubbles_are_rate_limited():
    """Anyone on the LAN can send discovery bubbles from made-up same-NAT
    addresses: each is learnt, but the unicast answers stay within the rate."""
    c = on()
    flood = [TeredoAddress(SRV1, 0x0100, 20000 + i, MAPPED[0]).emit() for i in range(100)]
    for i, src in enumerate(flood):
        c.discovery_datagram_received(discovery_bubble(src), ("10.0.0.9", 20000 + i), 1.0)
    assert not c.drops and len(c.discovery.peers) == 100
    assert len(sent(c)) == DISCOVERY_REPLY_BURST
    assert c.stats["discovery_replies_limited"] == 100 - DISCOVERY_REPLY_BURST
    # The bucket refills at the configured rate.
    c.discovery_datagram_received(discovery_bubble(flood[0]), ("10.0.0.9", 20000), 1.0 + 2 / DISCOVERY_REPLY_RATE)
    assert len(sent(c)) == 1


# -- robustness ----------------------------------------------------------------------------------

_addrs = st.tuples(
    st.sampled_from(["10.0.0.3", "192.168.1.1", "169.254.0.9", "198.51.100.7", "0.0.0.0", "255.255.255.255"]),
    st.integers(0, 65535),
)


@settings(max_examples=200)
@given(data=st.binary(max_size=120), addr=_addrs)
def test_discovery_ingress_never_raises_on_bytes(data, addr):
    c = on()
    c.discovery_datagram_received(data, addr, 1.0)
    c.handle_timer(2.0)
    c.datagrams_to_send()


@settings(max_examples=200)
@given(src=st.one_of(st.just(LPEER), st.binary(min_size=16, max_size=16),
                     st.builds(lambda port, ip: TeredoAddress(SRV1, 0, port, ip).emit(),
                               st.integers(0, 65535), st.sampled_from([MAPPED[0], "203.0.113.77", "10.0.0.1"]))),
       dst=st.one_of(st.just(ALL_NODES), st.binary(min_size=16, max_size=16)),
       hop=st.integers(0, 255), trailer=st.binary(max_size=12), addr=_addrs,
       then=st.sampled_from(["nothing", "bubble", "echo", "send"]))
def test_discovery_ingress_never_raises_on_bubbles(src, dst, hop, trailer, addr, then):
    c = on()
    c.discovery_datagram_received(bubble(src, dst, hop) + trailer, addr, 1.0)
    if then == "bubble":
        c.datagram_received(bubble(src, c.address), addr, 1.5)
    elif then == "echo":
        c.datagram_received(echo_request(src, c.address), addr, 1.5)
    elif then == "send":
        c.ipv6_from_stack(echo_request(c.address, src), 1.5)
    c.handle_timer(4.0)
    c.datagrams_to_send()
    c.ipv6_to_stack()
