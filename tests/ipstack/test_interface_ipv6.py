"""Interface scenarios at packet level with a fake clock: IPv6, ICMPv6, fragments.

Named after gVisor's packetimpact tests where one exists.
"""

from __future__ import annotations

import random
import struct

import pytest

from proxy.errors import DropReason
from proxy.ipstack.events import EchoErrorReceived, EchoReplyReceived
from proxy.ipstack.interface import Interface
from proxy.ipstack.wire.frag import FragmentHeader
from proxy.ipstack.wire.icmpv6 import Echo
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.testing.packets import (
    Parsed,
    addr,
    echo_request,
    fragment_header,
    fragments,
    icmp_error,
    icmp_message,
    ipv6,
    options_header,
    parse,
)

US = addr("2001:0:4136:e378:8000:63bf:3fff:fdd2")
PEER = addr("2001:db8::2")
ALL_NODES = addr("ff02::1")


@pytest.fixture
def iface() -> Interface:
    return Interface(rng=random.Random(1), addresses=[US])


def deliver(iface: Interface, packets: list[bytes] | bytes, now: float = 0.0) -> list[Parsed]:
    if isinstance(packets, bytes):
        packets = [packets]
    for p in packets:
        iface.ipv6_received(p, now)
    return [parse(p) for p in iface.ipv6_to_send(now)]


def reassemble(out: list[Parsed]) -> bytes:
    """The payload of one (possibly fragmented) datagram we sent."""
    if len(out) == 1 and out[0].next_header != NextHeader.FRAGMENT:
        return out[0].raw[40:]
    data = {}
    for p in out:
        assert len(p.raw) <= 1280
        fh = FragmentHeader.parse(p.raw, 40)
        data[fh.offset] = p.raw[48:]
    return b"".join(data[k] for k in sorted(data))


# --- echo -----------------------------------------------------------------


def test_echo_request_is_answered(iface):
    (reply,) = deliver(iface, echo_request(PEER, US, 0x1234, 7, b"ping data"))
    assert (reply.src, reply.dst, reply.protocol, reply.hop_limit) == (US, PEER, 58, 64)
    assert reply.checksum_ok()
    assert Echo.parse(reply.upper) == Echo(False, 0x1234, 7, b"ping data")


def test_echo_to_all_nodes_is_answered_from_our_address(iface):
    (reply,) = deliver(iface, echo_request(PEER, ALL_NODES, 1, 1))
    assert reply.src == US and reply.checksum_ok()


def test_echo_with_bad_checksum_is_dropped(iface):
    p = bytearray(echo_request(PEER, US, 1, 1, b"x"))
    p[-1] ^= 1
    assert deliver(iface, bytes(p)) == []
    assert iface.drops[DropReason.BAD_CHECKSUM] == 1


def test_packet_for_another_address_is_dropped(iface):
    assert deliver(iface, echo_request(PEER, addr("2001:db8::99"), 1, 1)) == []
    assert iface.drops[DropReason.NOT_FOR_US] == 1


@pytest.mark.parametrize("src", [bytes(16), ALL_NODES])
def test_bad_sources_are_dropped(iface, src):
    assert deliver(iface, echo_request(src, US, 1, 1)) == []
    assert iface.drops[DropReason.BAD_SOURCE] == 1


def test_send_echo_request_and_reply_event(iface):
    iface.send_echo_request(PEER, 77, 3, 0.0, data=b"abc")
    (req,) = [parse(p) for p in iface.ipv6_to_send(0.0)]
    assert req.dst == PEER and req.checksum_ok()
    assert Echo.parse(req.upper) == Echo(True, 77, 3, b"abc")
    reply = ipv6(PEER, US, 58, Echo(False, 77, 3, b"abc").emit(PEER, US), hop_limit=50)
    deliver(iface, reply, 0.1)
    assert iface.next_event() == EchoReplyReceived(PEER, 77, 3, b"abc", 50)
    deliver(iface, reply, 0.2)  # a second reply matches nothing
    assert iface.next_event() is None
    assert iface.drops[DropReason.NO_SOCKET] == 1


def test_echo_request_answered_by_an_error(iface):
    iface.send_echo_request(PEER, 5, 1, 0.0)
    (req,) = iface.ipv6_to_send(0.0)
    router = addr("2001:db8:ffff::1")
    deliver(iface, icmp_error(router, 3, 0, 0, req))
    assert iface.next_event() == EchoErrorReceived(PEER, router, 5, 1, "time-exceeded")


def test_large_echo_reply_is_fragmented(iface):
    data = bytes(range(256)) * 8  # 2048 + 8 bytes: more than 1280
    frags = fragments(PEER, US, 58, Echo(True, 1, 2, data).emit(PEER, US),
                      [(0, 1024, True), (1024, 1032, False)], 99)
    out = deliver(iface, frags)
    assert len(out) == 2 and all(len(p.raw) <= 1280 for p in out)
    assert Echo.parse(reassemble(out)) == Echo(False, 1, 2, data)


# --- ipv6_fragment_reassembly and ipv6_reassembly_* -----------------------

CASES = {
    "basic": ([(0, 1000, True), (1000, 1000, True), (2000, 1000, False)], True),
    "out_of_order": ([(2000, 1000, False), (0, 1000, True), (1000, 1000, True)], True),
    "duplicate": ([(0, 1000, True), (1000, 1000, True), (1000, 1000, True), (2000, 1000, False)], True),
    "subset": ([(0, 1000, True), (1000, 1000, True), (512, 256, True), (2000, 1000, False)], True),
    "overlap": ([(0, 1000, True), (1512, 1000, True), (1000, 1000, True), (2000, 1000, False)], False),
    "two_fragments_1500": ([(0, 760, True), (760, 740, False)], True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_ipv6_reassembly(iface, name):
    pieces, expect_reply = CASES[name]
    size = sum(s for o, s, m in pieces if not m) + max(o for o, s, m in pieces)
    data = bytes(random.Random(name).randbytes(size - 8))
    msg = Echo(True, 9, 9, data).emit(PEER, US)
    out = deliver(iface, fragments(PEER, US, 58, msg, pieces, 42))
    if not expect_reply:
        assert out == []
        assert iface.drops[DropReason.FRAGMENT_OVERLAP] >= 1
        return
    assert Echo.parse(reassemble(out)) == Echo(False, 9, 9, data)


# --- ipv6_fragment_icmp_error ---------------------------------------------


def fragmented_echo(first_payload: int, payload: bytes, second_offset: int) -> list[bytes]:
    msg = Echo(True, 0, 0, payload).emit(PEER, US)
    cut = 8 + first_payload
    return [
        ipv6(PEER, US, 44, fragment_header(58, 0, True, 1) + msg[:cut]),
        ipv6(PEER, US, 44, fragment_header(58, second_offset * 8, False, 1) + msg[cut:]),
    ]


DATA = b"IPV6_PROTOCOL_TESTER_FOR_FRAGMENT"


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_reassemble_two_small_fragments(iface, order):
    frags = fragmented_echo(8, DATA[:20], 2)
    out = deliver(iface, [frags[i] for i in order])
    assert Echo.parse(out[0].upper).data == DATA[:20]


@pytest.mark.parametrize(
    "send,second_offset,quote",
    [([0], 2, 0), ([1], 2, None), ([0, 1], 3, 0)],
    ids=["first-only", "second-only", "gap"],
)
def test_reassembly_timeout(iface, send, second_offset, quote):
    frags = fragmented_echo(8, DATA[:20], second_offset)
    assert deliver(iface, [frags[i] for i in send], 0.0) == []
    assert iface.poll_at() == 60.0
    iface.handle_timer(59.0)
    assert iface.ipv6_to_send(59.0) == []
    iface.handle_timer(60.0)
    out = [parse(p) for p in iface.ipv6_to_send(60.0)]
    if quote is None:
        assert out == []
        return
    (err,) = out
    assert (err.icmp_type, err.icmp_code) == (3, 1)
    assert err.icmp_body == frags[quote]
    assert iface.poll_at() is None


@pytest.mark.parametrize(
    "first_payload,payload,second_offset,send,pointer,quote",
    [(9, DATA[:20], 2, [0], 4, 0), (16, DATA[:33], 65520 // 8, [0, 1], 42, 1)],
    ids=["not-multiple-of-8", "too-long"],
)
def test_fragment_param_problem(iface, first_payload, payload, second_offset, send, pointer, quote):
    frags = fragmented_echo(first_payload, payload, second_offset)
    out = deliver(iface, [frags[i] for i in send])
    (err,) = out
    assert (err.icmp_type, err.icmp_code, err.icmp_word) == (4, 0, pointer)
    assert err.icmp_body == frags[quote]


def test_nested_fragment_is_dropped(iface):
    inner = ipv6(PEER, US, 44, fragment_header(58, 0, False, 2) + echo_request(PEER, US, 1, 1)[40:])
    frag_payload = inner[40:]
    out = deliver(iface, ipv6(PEER, US, 44, fragment_header(44, 0, False, 3) + frag_payload))
    assert out == [] and iface.drops[DropReason.FRAGMENT_NESTED] == 1


# --- ipv6_unknown_options_action and icmpv6_param_problem -----------------


@pytest.mark.parametrize("header", [NextHeader.HOP_BY_HOP, NextHeader.DESTINATION_OPTIONS])
@pytest.mark.parametrize(
    "action,multicast,want",
    [(0, False, False), (1, False, False), (2, False, True), (2, True, True),
     (3, False, True), (3, True, False)],
)
def test_ipv6_unknown_options_action(iface, header, action, multicast, want):
    dst = ALL_NODES if multicast else US
    opts = bytes((action << 6, 4, 0, 0, 0, 0))
    msg = Echo(True, 1, 1, b"").emit(PEER, dst)
    p = ipv6(PEER, dst, header, options_header(58, opts) + msg)
    out = deliver(iface, p)
    errors = [o for o in out if o.icmp_type == 4]
    if not want:
        assert errors == []
        # action 00 skips the option: the echo itself is answered
        assert len(out) == (1 if action == 0 else 0)
        return
    (err,) = out
    assert (err.icmp_code, err.icmp_word) == (2, 42)
    assert err.icmp_body == p
    assert err.src == US and err.dst == PEER and err.checksum_ok()


def test_icmpv6_param_problem_unknown_next_header(iface):
    p = ipv6(PEER, US, 254, b"\x80\x00\x00\x00" + b"hello world")
    (err,) = deliver(iface, p)
    assert (err.icmp_type, err.icmp_code, err.icmp_word) == (4, 1, 6)
    assert err.icmp_body == p


def test_unknown_next_header_after_extension_points_at_its_field(iface):
    p = ipv6(PEER, US, NextHeader.DESTINATION_OPTIONS, options_header(253, b"") + b"junk")
    (err,) = deliver(iface, p)
    assert (err.icmp_type, err.icmp_code, err.icmp_word) == (4, 1, 40)


def test_no_next_header_is_silent(iface):
    assert deliver(iface, ipv6(PEER, US, 59, b"")) == []
    assert iface.drops[DropReason.NO_NEXT_HEADER] == 1


def test_routing_header_param_problem(iface):
    rh = bytes((58, 4, 0, 1)) + bytes(4) + US + PEER
    (err,) = deliver(iface, ipv6(PEER, US, NextHeader.ROUTING, rh + echo_request(PEER, US, 1, 1)[40:]))
    assert (err.icmp_type, err.icmp_code, err.icmp_word) == (4, 0, 42)


def test_no_error_about_an_icmp_error(iface):
    bogus = icmp_message(PEER, US, 1, 4, 0, ipv6(US, PEER, 254, b""))
    p = ipv6(PEER, US, NextHeader.DESTINATION_OPTIONS,
             options_header(58, bytes((0x80, 0))) + bogus[40:])
    assert deliver(iface, p) == []
    assert iface.drops[DropReason.ICMP_ERROR_SUPPRESSED] == 1


def test_error_rate_limit():
    iface = Interface(rng=random.Random(1), addresses=[US], icmp_error_rate=10, icmp_error_burst=5)
    p = ipv6(PEER, US, 254, b"")
    assert len(deliver(iface, [p] * 20, 0.0)) == 5
    assert iface.drops[DropReason.RATE_LIMITED] == 15
    assert len(deliver(iface, [p] * 20, 0.3)) == 3


# --- truncation and trailing bytes ----------------------------------------


def test_trailing_bytes_after_payload_are_ignored(iface):
    (reply,) = deliver(iface, echo_request(PEER, US, 1, 1, b"x") + b"teredo-trailer")
    assert Echo.parse(reply.upper).data == b"x"


@pytest.mark.parametrize("cut", [0, 1, 39, 41])
def test_truncated_packets(iface, cut):
    assert deliver(iface, echo_request(PEER, US, 1, 1, b"xx")[:cut]) == []
    assert sum(iface.drops.values()) == 1


def test_not_ipv6(iface):
    p = bytearray(echo_request(PEER, US, 1, 1))
    p[0] = 0x45
    assert deliver(iface, bytes(p)) == [] and iface.drops[DropReason.NOT_IPV6] == 1


# --- addresses and PMTU ---------------------------------------------------


def test_address_change(iface):
    new = addr("2001:0:4136:e378:8000:63bf:3fff:0001")
    iface.set_addresses([new], 0.0)
    assert iface.addresses == (new,)
    assert deliver(iface, echo_request(PEER, US, 1, 1)) == []
    assert len(deliver(iface, echo_request(PEER, new, 1, 1))) == 1


def test_packet_too_big_lowers_pmtu_not_below_1280():
    iface = Interface(rng=random.Random(1), addresses=[US], mtu=1500)
    sock = iface.udp_open()
    iface.udp_send(sock, bytes(1400), (PEER, 53), 0.0)
    (big,) = iface.ipv6_to_send(0.0)
    assert len(big) == 1448
    deliver(iface, icmp_error(addr("2001:db8::fe"), 2, 0, 1300, big))
    assert iface.path_mtu(PEER) == 1300
    deliver(iface, icmp_error(addr("2001:db8::fe"), 2, 0, 500, big))
    assert iface.path_mtu(PEER) == 1280
    iface.udp_send(sock, bytes(1400), (PEER, 53), 1.0)
    out = [parse(p) for p in iface.ipv6_to_send(1.0)]
    assert len(out) == 2 and all(len(p.raw) <= 1280 for p in out)
    assert iface.path_mtu(addr("2001:db8::3")) == 1500


def test_error_not_quoting_our_packet_is_ignored(iface):
    other = ipv6(addr("2001:db8::7"), PEER, 17, struct.pack("!HHHH", 1, 2, 8, 0))
    assert deliver(iface, icmp_message(PEER, US, 1, 4, 0, other)) == []
    assert iface.drops[DropReason.ICMP_NOT_OURS] == 1
