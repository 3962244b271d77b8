"""The relay core, RFC 4380 §5.4 case by case, with a fake clock."""

from __future__ import annotations

import pytest

from proxy.constants import BUBBLE_MAX, ICMP_ERROR_BURST, TEREDO_PORT
from proxy.errors import DropReason
from proxy.ipstack.wire.icmpv6 import Icmpv6Error, Icmpv6Type, icmpv6_checksum_ok
from proxy.ipstack.wire.ipv6 import Ipv6Header, NextHeader
from proxy.teredo.packet import Authentication, OriginIndication, TeredoPacket
from proxy.teredo.peers import PeerTable
from proxy.testing.relay_fixtures import (
    CLIENT, CLIENT_EP, CLIENT_IP, CLIENT_PORT, HOST, RELAY6, SERVER,
    a6, bubble, ipv6_packet, make_relay, open_peer, teredo, udp_like,
)


def icmp_of(packet: bytes) -> Icmpv6Error:
    h = Ipv6Header.parse(packet)
    assert h.next_header == NextHeader.ICMPV6 and h.src == RELAY6
    assert icmpv6_checksum_ok(h.src, h.dst, packet[40:])
    return Icmpv6Error.parse(packet[40:])


# -- §5.4.1: transmission (native -> Teredo) ------------------------------------------


def test_unknown_peer_is_created_queued_and_bubbled_through_its_server():
    r = make_relay()
    pkt = udp_like(HOST, CLIENT)
    r.ipv6_from_native(pkt, 100.0)
    out = r.datagrams_to_send()
    assert len(out) == 1
    b, ep = out[0]
    assert ep == (SERVER, TEREDO_PORT)  # indirect bubble, via the client's server
    p = TeredoPacket.parse(b)
    assert p.is_bubble and p.dst == CLIENT and p.src[:2] == b"\xfe\x80" and p.hop_limit == 0
    info = r.peers.get(CLIENT)
    assert info is not None and not info.trusted and info.queued == len(pkt) and info.bubbles == 1
    assert (info.ipv4, info.port) == CLIENT_EP
    assert r.ipv6_to_native() == []


def test_restricted_relay_also_bubbles_directly():
    r = make_relay(direct_bubbles=True)
    r.ipv6_from_native(udp_like(HOST, CLIENT), 100.0)
    assert [ep for _b, ep in r.datagrams_to_send()] == [(SERVER, TEREDO_PORT), CLIENT_EP]


def test_bubble_source_is_stable_per_peer_and_keyed():
    r1, r2 = make_relay(), make_relay(secret=b"another secret, 32 bytes long!!!")
    r1.ipv6_from_native(udp_like(HOST, CLIENT), 0.0)
    r2.ipv6_from_native(udp_like(HOST, CLIENT), 0.0)
    s1 = r1.datagrams_to_send()[0][0][8:24]
    s2 = r2.datagrams_to_send()[0][0][8:24]
    assert s1 != s2 and s1[8] & 0x03 == 0


def test_answer_flushes_the_queue_in_order_to_the_mapping():
    r = make_relay()
    p1, p2 = udp_like(HOST, CLIENT, 200), udp_like(HOST, CLIENT, 300)
    r.ipv6_from_native(p1, 100.0)
    r.ipv6_from_native(p2, 100.5)
    relay_ll = r.datagrams_to_send()[0][0][8:24]
    r.datagram_received(bubble(CLIENT, relay_ll), CLIENT_EP, 100.6)  # §5.4.2: the reply bubble
    assert r.datagrams_to_send() == [(p1, CLIENT_EP), (p2, CLIENT_EP)]  # FIFO
    assert r.ipv6_to_native() == []  # the bubble is consumed
    info = r.peers.get(CLIENT)
    assert info.trusted and info.bubbles == 0 and info.queued == 0
    assert r.to_teredo == 2


def test_case_1_trusted_valid_peer_gets_packets_directly():
    r = make_relay()
    open_peer(r, now=100.0)
    pkt = udp_like(HOST, CLIENT, 1280)
    r.ipv6_from_native(pkt, 101.0)
    assert r.datagrams_to_send() == [(pkt, CLIENT_EP)]
    assert r.peers.get(CLIENT).last_tx >= 101.0


def test_trusted_peer_silent_for_30_s_is_bubbled_again():
    r = make_relay()
    open_peer(r, now=100.0)
    pkt = udp_like(HOST, CLIENT)
    r.ipv6_from_native(pkt, 131.0)  # last reception 100: no longer valid (§5.2)
    out = r.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == (SERVER, TEREDO_PORT) and TeredoPacket.parse(out[0][0]).is_bubble
    r.datagram_received(bubble(CLIENT, out[0][0][8:24]), CLIENT_EP, 131.2)
    assert r.datagrams_to_send() == [(pkt, CLIENT_EP)]


def test_bubbles_paced_2_s_then_4_per_300_s_then_unreachable():
    r = make_relay()
    pkt = udp_like(HOST, CLIENT)
    r.ipv6_from_native(pkt, 0.0)
    bubbles = [0.0]
    r.datagrams_to_send()
    now = 0.0
    while now < 20.0:
        at = r.poll_at()
        assert at is not None
        now = at
        r.handle_timer(now)
        for b, ep in r.datagrams_to_send():
            assert ep == (SERVER, TEREDO_PORT)
            bubbles.append(now)
        if r.drops[DropReason.BUBBLE_GIVE_UP]:
            break
    assert len(bubbles) == BUBBLE_MAX
    assert all(b - a >= 2.0 for a, b in zip(bubbles, bubbles[1:]))
    errors = r.ipv6_to_native()
    assert len(errors) == 1  # the queued packet earns its sender an unreachable
    e = icmp_of(errors[0])
    assert (e.type, e.code) == (Icmpv6Type.DEST_UNREACHABLE, 3) and e.invoking == pkt
    assert Ipv6Header.parse(errors[0]).dst == HOST
    # within 300 s a new packet is refused at once
    r.ipv6_from_native(udp_like(HOST, CLIENT), now + 5)
    assert r.datagrams_to_send() == [] and len(r.ipv6_to_native()) == 1


def test_packets_between_bubbles_are_only_queued():
    r = make_relay()
    r.ipv6_from_native(udp_like(HOST, CLIENT, 100), 0.0)
    r.ipv6_from_native(udp_like(HOST, CLIENT, 100), 1.0)
    assert len(r.datagrams_to_send()) == 1
    assert r.peers.get(CLIENT).queued == 200


def test_queue_overflow_answers_unreachable():
    r = make_relay()
    r.ipv6_from_native(udp_like(HOST, CLIENT, 1000), 0.0)
    big = udp_like(HOST, CLIENT, 400)
    r.ipv6_from_native(big, 0.1)
    assert r.drops[DropReason.QUEUE_FULL] == 1
    [err] = r.ipv6_to_native()
    assert icmp_of(err).invoking == big


@pytest.mark.parametrize("dst,reason,icmp", [
    (a6("2001:db8:2::1"), DropReason.NOT_OUR_PREFIX, True),  # misrouted: not a Teredo address
    (a6("ff02::1"), DropReason.MULTICAST_DESTINATION, False),
    (teredo(server="10.0.0.1"), DropReason.DESTINATION_NOT_GLOBAL, False),
    (teredo(ip="192.168.1.5"), DropReason.DESTINATION_NOT_GLOBAL, False),
    (teredo(server="0.0.0.0"), DropReason.DESTINATION_NOT_GLOBAL, False),
])
def test_destination_checks(dst, reason, icmp):
    r = make_relay()
    r.ipv6_from_native(udp_like(HOST, dst), 0.0)
    assert r.drops[reason] == 1 and r.datagrams_to_send() == [] and len(r.peers) == 0
    assert len(r.ipv6_to_native()) == (1 if icmp else 0)


@pytest.mark.parametrize("src,reason", [
    (teredo(ip="203.0.113.7"), DropReason.TEREDO_TRANSIT),
    (a6("fe80::1"), DropReason.SOURCE_NOT_GLOBAL_IPV6),
    (a6("::"), DropReason.SOURCE_NOT_GLOBAL_IPV6),
    (a6("ff05::2"), DropReason.SOURCE_NOT_GLOBAL_IPV6),
])
def test_source_checks(src, reason):
    r = make_relay()
    r.ipv6_from_native(udp_like(src, CLIENT), 0.0)
    assert r.drops[reason] == 1 and r.datagrams_to_send() == [] and r.ipv6_to_native() == []


@pytest.mark.parametrize("packet,reason", [
    (b"", DropReason.IPV6_TRUNCATED),
    (b"\x60" + bytes(38), DropReason.IPV6_TRUNCATED),
    (b"\x40" + bytes(59), DropReason.NOT_IPV6),
    (ipv6_packet(HOST, CLIENT, 17, b"abc")[:-1], DropReason.IPV6_TRUNCATED),
])
def test_malformed_native_packets(packet, reason):
    r = make_relay()
    r.ipv6_from_native(packet, 0.0)
    assert r.drops[reason] == 1 and r.datagrams_to_send() == [] and r.ipv6_to_native() == []


def test_native_trailing_bytes_are_cut():
    r = make_relay()
    open_peer(r)
    pkt = udp_like(HOST, CLIENT)
    r.ipv6_from_native(pkt + b"junk", 101.0)
    assert r.datagrams_to_send() == [(pkt, CLIENT_EP)]


def test_full_table_refuses_new_peers_with_unreachable():
    r = make_relay(peers=PeerTable(1))
    r.ipv6_from_native(udp_like(HOST, CLIENT), 0.0)
    other = teredo(ip="203.0.113.9", port=5555)
    r.ipv6_from_native(udp_like(HOST, other), 0.0)
    assert r.drops[DropReason.PEER_TABLE_FULL] == 1 and r.peers.get(other) is None
    assert len(r.ipv6_to_native()) == 1


def test_cone_bit_is_ignored_deviation():
    """DEVIATION (as Miredo): a cone-flagged destination is bubbled, not trusted blindly."""
    r = make_relay()
    cone = teredo(flags=0x8000)
    r.ipv6_from_native(udp_like(HOST, cone), 0.0)
    out = r.datagrams_to_send()
    assert len(out) == 1 and TeredoPacket.parse(out[0][0]).is_bubble


def test_router_mode_hop_limit_and_mtu():
    r = make_relay(router=True, mtu=1280)
    open_peer(r)
    r.ipv6_from_native(udp_like(HOST, CLIENT, hop=1), 101.0)
    [err] = r.ipv6_to_native()
    assert icmp_of(err).type == Icmpv6Type.TIME_EXCEEDED
    big = udp_like(HOST, CLIENT, 1300)
    r.ipv6_from_native(big, 101.0)
    [err] = r.ipv6_to_native()
    e = icmp_of(err)
    assert (e.type, e.param) == (Icmpv6Type.PACKET_TOO_BIG, 1280)
    r.ipv6_from_native(udp_like(HOST, CLIENT, hop=64), 101.0)
    [(sent, ep)] = r.datagrams_to_send()
    assert sent[7] == 63 and ep == CLIENT_EP


def test_icmp_errors_are_rate_limited():
    r = make_relay()
    for n in range(50):
        r.ipv6_from_native(udp_like(HOST, a6("2001:db8:2::1")), 10.0 + n * 0.001)
    assert len(r.ipv6_to_native()) == ICMP_ERROR_BURST
    assert r.drops[DropReason.ICMP_RATE_LIMITED] == 50 - ICMP_ERROR_BURST
    r.ipv6_from_native(udp_like(HOST, a6("2001:db8:2::1")), 10.5)  # 5 tokens back
    assert len(r.ipv6_to_native()) == 1


def test_no_icmp_about_icmp_errors_or_without_a_source():
    r = make_relay()
    err = ipv6_packet(HOST, a6("2001:db8:2::1"), NextHeader.ICMPV6, bytes((1, 0, 0, 0, 0, 0, 0, 0)))
    r.ipv6_from_native(err, 0.0)
    assert r.ipv6_to_native() == []
    r.ipv6_from_native(udp_like(a6("fe80::5"), a6("2001:db8:2::1")), 0.0)  # link-local source
    assert r.ipv6_to_native() == [] and r.drops[DropReason.NOT_OUR_PREFIX] == 2
    r2 = make_relay(icmp_source=None)
    r2.ipv6_from_native(udp_like(HOST, a6("2001:db8:2::1")), 0.0)
    assert r2.ipv6_to_native() == [] and r2.counters["icmp_no_source"] == 1


def test_peers_expire_30_to_60_s_after_last_use():
    r = make_relay()
    open_peer(r, now=0.0)
    now = 0.0
    while now < 61.0:
        at = r.poll_at()
        now = at if at is not None and at > now else now + 1.0
        r.handle_timer(now)
        if now <= 30.0:
            assert r.peers.get(CLIENT) is not None
    assert r.peers.get(CLIENT) is None and len(r.peers) == 0


# -- §5.4.2: reception (Teredo -> native) --------------------------------------------


def test_trusted_peer_packets_go_to_native_without_trailers():
    r = make_relay()
    open_peer(r)
    pkt = udp_like(CLIENT, HOST, 500)
    r.datagram_received(pkt + b"\x01\x04abcd", CLIENT_EP, 101.0)  # an RFC 6081 trailer
    assert r.ipv6_to_native() == [pkt] and r.to_native == 1
    assert r.peers.get(CLIENT).last_rx == 101.0


def test_unknown_peer_is_discarded():
    r = make_relay()
    r.datagram_received(udp_like(CLIENT, HOST), CLIENT_EP, 0.0)
    assert r.drops[DropReason.UNKNOWN_PEER] == 1 and r.ipv6_to_native() == [] and len(r.peers) == 0


def test_non_teredo_source_is_discarded():
    r = make_relay()
    open_peer(r)
    r.datagram_received(udp_like(a6("2001:db8:9::1"), HOST), CLIENT_EP, 101.0)
    assert r.drops[DropReason.NOT_TEREDO_SOURCE] == 1 and r.ipv6_to_native() == []


@pytest.mark.parametrize("ep", [(CLIENT_IP, CLIENT_PORT + 1), ("198.51.100.99", CLIENT_PORT), ("bogus", 1)])
def test_mapping_mismatch_is_discarded(ep):
    r = make_relay()
    open_peer(r)
    r.datagram_received(udp_like(CLIENT, HOST), ep, 101.0)
    assert r.drops[DropReason.MAPPING_MISMATCH] == 1 and r.ipv6_to_native() == []


@pytest.mark.parametrize("dst,reason", [
    (a6("ff02::1"), DropReason.MULTICAST_DESTINATION),
    (teredo(ip="203.0.113.7"), DropReason.TEREDO_TRANSIT),
    (a6("fe80::1"), DropReason.DESTINATION_NOT_GLOBAL),
    (a6("::1"), DropReason.DESTINATION_NOT_GLOBAL),
    (a6("::"), DropReason.DESTINATION_NOT_GLOBAL),
])
def test_forwarding_destination_checks(dst, reason):
    r = make_relay()
    open_peer(r)
    r.datagram_received(udp_like(CLIENT, dst), CLIENT_EP, 105.0)
    assert r.drops[reason] == 1 and r.ipv6_to_native() == []
    assert r.peers.get(CLIENT).last_rx == 105.0  # the peer was still heard from


def test_bubbles_are_consumed():
    r = make_relay()
    open_peer(r)
    r.datagram_received(bubble(CLIENT, HOST), CLIENT_EP, 101.0)
    assert r.ipv6_to_native() == [] and r.counters["bubbles_in"] >= 2


def test_indicators_are_stripped():
    r = make_relay()
    open_peer(r)
    pkt = udp_like(CLIENT, HOST)
    wrapped = Authentication(nonce=b"n" * 8).emit() + OriginIndication("192.0.2.9", 9).emit() + pkt
    r.datagram_received(wrapped, CLIENT_EP, 101.0)
    assert r.ipv6_to_native() == [pkt]


@pytest.mark.parametrize("data,reason", [
    (b"", DropReason.TRUNCATED),
    (b"\x00\x01\x00", DropReason.BAD_AUTH_HEADER),
    (b"\x00\x00\x01\x02", DropReason.BAD_ORIGIN_INDICATION),
    (b"\x45" + bytes(59), DropReason.NOT_IPV6),
    (b"\x60" + bytes(20), DropReason.IPV6_TRUNCATED),
    (ipv6_packet(CLIENT, HOST, 17, b"abcd")[:-2], DropReason.IPV6_TRUNCATED),
])
def test_malformed_datagrams(data, reason):
    r = make_relay()
    r.datagram_received(data, CLIENT_EP, 0.0)
    assert r.drops[reason] == 1 and r.ipv6_to_native() == [] and r.datagrams_to_send() == []


def test_router_mode_decrements_and_answers_time_exceeded_to_the_client():
    r = make_relay(router=True)
    open_peer(r)
    r.datagram_received(udp_like(CLIENT, HOST, hop=9), CLIENT_EP, 101.0)
    [fwd] = r.ipv6_to_native()
    assert fwd[7] == 8
    r.datagram_received(udp_like(CLIENT, HOST, hop=1), CLIENT_EP, 101.0)
    [(err, ep)] = r.datagrams_to_send()
    assert ep == CLIENT_EP and icmp_of(err).type == Icmpv6Type.TIME_EXCEEDED


def test_spoofed_source_flood_forwards_nothing(rng):
    """Every spoofed datagram has a Teredo source whose mapping matches its
    (forged) IPv4 source: without a peer entry, nothing is forwarded and no
    state is created."""
    r = make_relay()
    for _ in range(5000):
        ip = f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        port = rng.randrange(1024, 65536)
        src = teredo(server=SERVER, ip=ip, port=port, flags=rng.randrange(0x10000) & 0x3CFF)
        r.datagram_received(udp_like(src, HOST), (ip, port), 1.0)
        r.datagram_received(bubble(src, HOST), (ip, port), 1.0)
    assert r.ipv6_to_native() == [] and r.datagrams_to_send() == []
    assert len(r.peers) == 0 and r.drops[DropReason.UNKNOWN_PEER] == 10000 and r.to_native == 0
