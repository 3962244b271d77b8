"""The client core's data path (RFC 4380 §5.2.3, §5.2.4, §5.2.9) and its robustness."""

from __future__ import annotations

import random
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.client import ClientConfig
from proxy.constants import LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED
from proxy.errors import DropReason
from proxy.ipstack.wire.icmpv6 import Echo, Icmpv6Type
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.teredo.address import TeredoAddress, server_link_local
from proxy.teredo.client import TeredoClient
from proxy.teredo.client_events import NatType
from proxy.teredo.messages import router_advertisement
from proxy.teredo.packet import OriginIndication, TeredoPacket, bubble, ipv6_packet
from proxy.teredo.trailers import Trailers

SRV1, SRV2 = "198.51.100.1", "198.51.100.2"
P1, P2 = (SRV1, 3544), (SRV2, 3544)
MAPPED = ("203.0.113.5", 40001)
LOCAL = ("10.0.0.2", 40001)
HOST6 = IPv6Address("2001:db8::100").packed
RELAY = ("192.0.2.10", 3544)
PEER = TeredoAddress(SRV1, 0x0100, 50000, "203.0.113.77").emit()
PEER_MAPPED = ("203.0.113.77", 50000)


def make(seed: int = 3, **kw) -> TeredoClient:
    cfg = ClientConfig(servers=(SRV1,), **kw).validate()
    return TeredoClient(cfg, rng=random.Random(seed), local=LOCAL)


def qualify(c: TeredoClient, nat: str = "restricted", now: float = 0.0) -> TeredoClient:
    """Drive qualification with hand-made RAs (restricted: cone probe unanswered)."""
    c.handle_timer(now)
    rs = [TeredoPacket.parse(d) for d, _ in c.datagrams_to_send()]
    cone_rs = next(p for p in rs if p.src == LINK_LOCAL_CONE)
    restricted_rs = next(p for p in rs if p.src == LINK_LOCAL_RESTRICTED)

    def ra(p, cone):
        return router_advertisement(server=SRV1, server_link_local=server_link_local(SRV1),
                                    client_link_local=p.src, origin=MAPPED, nonce=p.auth.nonce)
    if nat == "cone":
        c.datagram_received(ra(cone_rs, True), P2, now + 0.01)
    else:
        c.datagram_received(ra(restricted_rs, False), P1, now + 0.01)
        c.handle_timer(c.poll_at())
        assert c.datagrams_to_send() == []
        for data, to in c.probe_datagrams_to_send():  # the mapping comparison
            c.probe_datagram_received(ra(TeredoPacket.parse(data), False), to, now + 0.3)
    assert c.qualified
    while c.next_event():
        pass
    return c


def echo_request(src: bytes, dst: bytes, seq: int = 1) -> bytes:
    msg = Echo(True, 0x1234, seq, b"hello").emit(src, dst)
    return ipv6_packet(src, dst, NextHeader.ICMPV6, msg)


def sent(c):
    return [(TeredoPacket.parse(d), to) for d, to in c.datagrams_to_send()]


def test_not_qualified_gives_icmpv6_unreachable():
    c = make()
    c.ipv6_from_stack(echo_request(PEER, HOST6), 0.0)
    (err,) = c.ipv6_to_stack()
    assert err[40] == Icmpv6Type.DEST_UNREACHABLE and err[41] == 3
    assert err[24:40] == PEER  # back to the sender
    assert c.drops[DropReason.NOT_QUALIFIED] == 1


def test_probe_socket_takes_only_router_advertisements_from_the_server():
    c = make()
    c.handle_timer(0.0)
    c.probe_datagram_received(b"junk", P1, 0.1)
    c.probe_datagram_received(bubble(PEER, PEER), ("192.0.2.99", 3544), 0.1)
    assert c.drops[DropReason.IPV6_TRUNCATED] == 1 and c.drops[DropReason.NOT_FROM_SERVER] == 1


def test_only_our_source_address_is_sent():
    c = qualify(make())
    c.ipv6_from_stack(echo_request(HOST6, PEER), 1.0)
    assert c.drops[DropReason.SOURCE_NOT_OURS] == 1 and sent(c) == []


def test_teredo_peer_gets_direct_and_indirect_bubbles_then_unreachable():
    c = qualify(make())
    me = c.address
    c.ipv6_from_stack(echo_request(me, PEER), 1.0)
    out = sent(c)
    assert [to for _, to in out] == [PEER_MAPPED, P1]  # direct, then via the peer's server
    direct, indirect = out[0][0], out[1][0]
    assert direct.is_bubble and direct.src == me and direct.dst == PEER
    assert indirect.is_bubble and indirect.src[:2] == b"\xfe\x80" and indirect.dst == PEER
    # RFC 6081 hairpinning trailer: our local endpoint
    assert Trailers.parse(direct.trailer).alternates == (LOCAL,)
    t = 1.0
    for _ in range(3):  # every 2 s, 4 in all (§5.2.6)
        t = c.poll_at()
        assert t == pytest.approx(t)
        c.handle_timer(t)
        assert len(sent(c)) == 2
    c.handle_timer(c.poll_at())
    assert sent(c) == []
    (err,) = c.ipv6_to_stack()
    assert err[40] == Icmpv6Type.DEST_UNREACHABLE and err[24:40] == me
    assert c.drops[DropReason.BUBBLE_LIMIT] == 1


def test_cone_client_sends_no_direct_bubble():
    c = qualify(make(), nat="cone")
    assert c.nat is NatType.CONE
    c.ipv6_from_stack(echo_request(c.address, PEER), 1.0)
    assert [to for _, to in sent(c)] == [P1]


def test_peer_answer_flushes_the_queue_in_order():
    c = qualify(make())
    me = c.address
    for seq in (1, 2, 3):
        c.ipv6_from_stack(echo_request(me, PEER, seq), 1.0)
    sent(c)
    # the peer's bubble from the mapping its address names: case 3
    c.datagram_received(bubble(PEER, me), PEER_MAPPED, 1.1)
    out = sent(c)
    assert [to for _, to in out] == [PEER_MAPPED] * 3
    assert [Echo.parse(p.payload).seq for p, _ in out] == [1, 2, 3]
    # trusted now: data goes straight out, and data in is delivered
    c.ipv6_from_stack(echo_request(me, PEER, 4), 1.2)
    assert [to for _, to in sent(c)] == [PEER_MAPPED]
    c.datagram_received(echo_request(PEER, me, 9), PEER_MAPPED, 1.3)
    (pkt,) = c.ipv6_to_stack()
    assert Echo.parse(pkt[40:]).seq == 9


def test_answer_to_our_link_local_nonce_is_trusted_from_a_moved_mapping():
    c = qualify(make())
    me = c.address
    c.ipv6_from_stack(echo_request(me, PEER), 1.0)
    indirect = sent(c)[1][0]
    moved = (PEER_MAPPED[0], 61234)
    c.datagram_received(bubble(PEER, indirect.src), moved, 1.1)  # Miredo-style reply
    assert [to for _, to in sent(c)] == [moved]
    # a made-up link-local nonce is not enough
    c2 = qualify(make())
    c2.ipv6_from_stack(echo_request(c2.address, PEER), 1.0)
    sent(c2)
    c2.datagram_received(bubble(PEER, b"\xfe\x80" + bytes(13) + b"\x01"), moved, 1.1)
    assert sent(c2) == [] and c2.drops[DropReason.NOT_FOR_US] == 1


def test_relay_discovery_by_echo_through_the_server():
    c = qualify(make())
    me = c.address
    c.ipv6_from_stack(echo_request(me, HOST6), 1.0)
    ((ping, to),) = sent(c)
    assert to == P1 and ping.dst == HOST6 and ping.hop_limit == 128
    req = Echo.parse(ping.payload)
    assert req.request and len(req.data) == 8
    # a reply with another nonce proves nothing: it is held like any packet
    # from an unverified relay (case 6), and our test is already running
    wrong = ipv6_packet(HOST6, me, NextHeader.ICMPV6, Echo(False, req.ident, req.seq, b"\0" * 8).emit(HOST6, me))
    c.datagram_received(wrong, RELAY, 1.1)
    assert sent(c) == [] and c.ipv6_to_stack() == []
    # the right one makes the relay the way to HOST6
    reply = Echo(False, req.ident, req.seq, req.data).emit(HOST6, me)
    c.datagram_received(ipv6_packet(HOST6, me, NextHeader.ICMPV6, reply), RELAY, 1.2)
    out = sent(c)
    assert [(p.dst, to) for p, to in out] == [(HOST6, RELAY)]
    assert c.ipv6_to_stack() == [wrong]  # ours is consumed; the held one came from the proven relay
    assert c.stats["relays_trusted"] == 1


def test_native_source_is_held_until_its_relay_proves_itself():
    c = qualify(make())
    me = c.address
    data = echo_request(HOST6, me, 5)
    c.datagram_received(data, RELAY, 1.0)
    assert c.ipv6_to_stack() == []
    ((ping, to),) = sent(c)
    assert to == P1 and ping.dst == HOST6
    req = Echo.parse(ping.payload)
    reply = Echo(False, req.ident, req.seq, req.data).emit(HOST6, me)
    c.datagram_received(ipv6_packet(HOST6, me, NextHeader.ICMPV6, reply), RELAY, 1.1)
    assert c.ipv6_to_stack() == [data]


def test_native_source_held_is_dropped_when_another_relay_answers():
    c = qualify(make())
    me = c.address
    c.datagram_received(echo_request(HOST6, me, 5), RELAY, 1.0)
    ((ping, _),) = sent(c)
    req = Echo.parse(ping.payload)
    reply = Echo(False, req.ident, req.seq, req.data).emit(HOST6, me)
    c.datagram_received(ipv6_packet(HOST6, me, NextHeader.ICMPV6, reply), ("192.0.2.11", 3544), 1.1)
    assert c.ipv6_to_stack() == [] and c.drops[DropReason.NOT_FROM_PEER] == 1


def test_indirect_bubble_from_server_gets_a_swapped_reply_to_its_origin():
    c = qualify(make())
    me = c.address
    ll = b"\xfe\x80" + bytes(6) + bytes.fromhex("0123456789abcdef")
    origin = ("192.0.2.10", 3544)
    c.datagram_received(OriginIndication(*origin).emit() + bubble(ll, me), P1, 1.0)
    ((reply, to),) = sent(c)
    assert to == origin and reply.src == me and reply.dst == ll and reply.is_bubble


@pytest.mark.parametrize("case,reason", [
    ("mismatch", DropReason.MAPPING_MISMATCH),
    ("link-local", DropReason.LINK_LOCAL_SOURCE),
    ("multicast", DropReason.MULTICAST_DESTINATION),
    ("not-for-us", DropReason.NOT_FOR_US),
    ("ra-not-from-server", DropReason.NOT_FROM_SERVER),
    ("garbage", DropReason.TRUNCATED),
])
def test_reception_refusals(case, reason):
    c = qualify(make())
    me = c.address
    frm, data = PEER_MAPPED, echo_request(PEER, me)
    if case == "mismatch":
        frm = ("203.0.113.77", 50001)
    elif case == "link-local":
        data = echo_request(LINK_LOCAL_RESTRICTED, me)
    elif case == "multicast":
        data = echo_request(PEER, bytes.fromhex("ff020000000000000000000000000001"))
    elif case == "not-for-us":
        data = echo_request(PEER, PEER)
    elif case == "ra-not-from-server":
        data = router_advertisement(server=SRV1, server_link_local=server_link_local(SRV1),
                                    client_link_local=LINK_LOCAL_RESTRICTED, origin=MAPPED, nonce=b"\0" * 8)
    elif case == "garbage":
        data = b"\x00"
    c.datagram_received(data, frm, 1.0)
    assert c.drops[reason] == 1 and c.ipv6_to_stack() == [] and sent(c) == []


# -- robustness: nothing raises, in any state ----------------------------------

ENDPOINTS = st.sampled_from([P1, P2, PEER_MAPPED, RELAY, ("10.0.0.1", 1), ("0.0.0.0", 0), ("255.255.255.255", 65535)])
ADDRS = st.sampled_from([PEER, HOST6, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED, bytes(16), b"\xff" * 16,
                         TeredoAddress(SRV1, 0, 1, "10.0.0.1").emit()])


@st.composite
def teredo_datagrams(draw, me: bytes):
    src = draw(ADDRS)
    dst = draw(st.one_of(ADDRS, st.just(me)))
    kind = draw(st.sampled_from(["bubble", "icmp", "raw", "other"]))
    if kind == "bubble":
        ip6 = bubble(src, dst)
    elif kind == "icmp":
        body = bytes([draw(st.sampled_from([1, 2, 128, 129, 133, 134]))]) + draw(st.binary(max_size=80))
        ip6 = ipv6_packet(src, dst, NextHeader.ICMPV6, body, draw(st.integers(0, 255)))
    elif kind == "other":
        ip6 = ipv6_packet(src, dst, draw(st.integers(0, 255)), draw(st.binary(max_size=60)))
    else:
        return draw(st.binary(max_size=200))
    head = b""
    if draw(st.booleans()):
        head += bytes((0, 1, 0, 0)) + draw(st.binary(min_size=9, max_size=9))
    if draw(st.booleans()):
        head += OriginIndication(*draw(ENDPOINTS)).emit()
    return head + ip6 + draw(st.binary(max_size=30))


def client_in_state(state: str) -> TeredoClient:
    c = make()
    if state == "qualifying":
        c.handle_timer(0.0)
    elif state == "qualified":
        qualify(c)
        c.ipv6_from_stack(echo_request(c.address, PEER), 1.0)
        c.ipv6_from_stack(echo_request(c.address, HOST6), 1.0)
    return c


@pytest.mark.parametrize("state", ["starting", "qualifying", "qualified"])
@settings(max_examples=150)
@given(data=st.data())
def test_datagram_received_never_raises(state, data):
    c = client_in_state(state)
    me = c.address or PEER
    for _ in range(data.draw(st.integers(1, 4))):
        dgram = data.draw(teredo_datagrams(me))
        c.datagram_received(dgram, data.draw(ENDPOINTS), data.draw(st.floats(0, 100)))
        c.handle_timer(data.draw(st.floats(0, 200)))
    c.datagrams_to_send()
    c.ipv6_to_stack()


@pytest.mark.parametrize("state", ["starting", "qualifying", "qualified"])
@settings(max_examples=150)
@given(data=st.data())
def test_ipv6_from_stack_never_raises(state, data):
    c = client_in_state(state)
    me = c.address or PEER
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):
            pkt = data.draw(st.binary(max_size=120))
        else:
            src = data.draw(st.one_of(ADDRS, st.just(me)))
            pkt = ipv6_packet(src, data.draw(ADDRS), data.draw(st.integers(0, 255)),
                              data.draw(st.binary(max_size=1400)))
        c.ipv6_from_stack(pkt, data.draw(st.floats(0, 100)))
        c.handle_timer(data.draw(st.floats(0, 400)))
    c.datagrams_to_send()
    c.ipv6_to_stack()


# -- the receive fast path: the same decisions as the full rules -------------------


def with_relay_and_peer(c: TeredoClient) -> TeredoClient:
    """Qualified, RELAY proven for HOST6 (echo test), PEER trusted at its mapping."""
    qualify(c)
    me = c.address
    c.ipv6_from_stack(echo_request(me, HOST6), 1.0)
    ((ping, _),) = sent(c)
    req = Echo.parse(ping.payload)
    c.datagram_received(ipv6_packet(HOST6, me, NextHeader.ICMPV6, Echo(False, req.ident, req.seq, req.data)
                                    .emit(HOST6, me)), RELAY, 1.1)
    c.datagram_received(bubble(PEER, me), PEER_MAPPED, 1.2)
    sent(c), c.ipv6_to_stack()
    return c


def test_fast_path_delivers_trusted_tcp_as_is():
    c = with_relay_and_peer(make())
    me = c.address
    segment = ipv6_packet(HOST6, me, NextHeader.TCP, bytes(range(200)) * 6)
    assert c._receive_fast(segment, RELAY, 2.0) is True
    assert c.ipv6_to_stack() == [segment]
    # Everything the fast path must leave to the full rules:
    assert not c._receive_fast(segment, ("192.0.2.11", 3544), 2.0)           # another relay
    assert not c._receive_fast(segment + b"\x00\x03", RELAY, 2.0)            # a trailer
    assert not c._receive_fast(echo_request(HOST6, me), RELAY, 2.0)          # ICMPv6 (RAs live there)
    assert not c._receive_fast(ipv6_packet(HOST6, PEER, 6, b"x" * 20), RELAY, 2.0)  # not for us
    assert not c._receive_fast(segment, P1, 2.0)                             # from our server
    assert not c._receive_fast(OriginIndication(*RELAY).emit() + segment, P1, 2.0)


def test_fast_path_follows_a_mapping_that_moves():
    """The fast path's cached text of the last mapped IPv4 never outlives the mapping."""
    c = with_relay_and_peer(make())
    me = c.address
    segment = ipv6_packet(HOST6, me, NextHeader.TCP, b"y" * 40)
    assert c._receive_fast(segment, RELAY, 2.0)
    slot = c.peers.peek(HOST6)
    moved = ("192.0.2.99", RELAY[1])  # same port, another address
    c.peers.set_mapping(slot, *moved)
    assert not c._receive_fast(segment, RELAY, 2.1)
    assert c._receive_fast(segment, moved, 2.2)
    assert not c._receive_fast(segment, (moved[0], RELAY[1] + 1), 2.3)
    assert not c._receive_fast(segment, (*moved, 0, 0), 2.4)  # not a 2-tuple: the full rules decide
    c.peers.set_mapping(slot, *RELAY)
    assert c._receive_fast(segment, RELAY, 2.5) and not c._receive_fast(segment, moved, 2.6)


@settings(max_examples=300)
@given(data=st.data())
def test_fast_path_decides_as_the_full_rules(data):
    fast, full = with_relay_and_peer(make()), with_relay_and_peer(make())
    full._receive_fast = lambda *args: False  # type: ignore[method-assign]
    me = fast.address
    assert full.address == me
    for _ in range(data.draw(st.integers(1, 6))):
        if data.draw(st.booleans()):
            src = data.draw(st.one_of(st.sampled_from([HOST6, PEER, me]), ADDRS))
            dst = data.draw(st.one_of(st.just(me), ADDRS))
            nh = data.draw(st.sampled_from([NextHeader.TCP, NextHeader.UDP, NextHeader.ICMPV6, 59, 44]))
            dgram = ipv6_packet(src, dst, nh, data.draw(st.binary(max_size=64)))
            if data.draw(st.booleans()):
                dgram += data.draw(st.binary(min_size=1, max_size=8))
        else:
            dgram = data.draw(teredo_datagrams(me))
        frm = data.draw(st.one_of(st.sampled_from([RELAY, PEER_MAPPED]), ENDPOINTS))
        now = data.draw(st.floats(2, 50))
        for c in (fast, full):
            c.datagram_received(dgram, frm, now)
        assert fast.ipv6_to_stack() == full.ipv6_to_stack()
        assert fast.datagrams_to_send() == full.datagrams_to_send()
        assert fast.drops == full.drops and fast.stats == full.stats
        assert {k: fast.peers.get(k) for k in fast.peers} == {k: full.peers.get(k) for k in full.peers}
