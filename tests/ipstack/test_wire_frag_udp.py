"""Fragment header, source fragmentation, UDP over IPv6 and quoted packets."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, strategies as st

from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.checksum import checksum, pseudo_header_sum
from proxy.ipstack.wire.frag import FragmentHeader, fragment
from proxy.ipstack.wire.icmpv6 import QuotedPacket
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.ipstack.wire.udp import UdpDatagram
from proxy.testing.packets import addr, fragment_header, ipv6, options_header

A = addr("2001:db8::1")
B = addr("2001:db8::2")


def test_fragment_header_golden():
    raw = bytes.fromhex("11 00 05 d9 deadbeef".replace(" ", ""))
    fh = FragmentHeader.parse(raw)
    assert fh == FragmentHeader(next_header=17, offset=0x5D8, more=True, ident=0xDEADBEEF)
    assert fh.emit() == raw


def test_fragment_header_rejects_bad_offset():
    with pytest.raises(ValueError):
        FragmentHeader(17, 3, False, 1).emit()


def test_fragment_header_truncated():
    with pytest.raises(ParseError):
        FragmentHeader.parse(b"\x11\x00\x00")


@given(st.binary(min_size=1, max_size=5000), st.sampled_from([1280, 1300, 1500]))
def test_fragment_splits_and_fits(payload, mtu):
    frags = fragment(6 << 28, 64, A, B, 17, payload, mtu, 0x1234)
    assert all(len(f) <= mtu for f in frags)
    joined = b""
    for i, f in enumerate(frags):
        assert f[6] == NextHeader.FRAGMENT
        fh = FragmentHeader.parse(f, 40)
        assert fh.next_header == 17 and fh.ident == 0x1234
        assert fh.offset == len(joined)
        assert fh.more == (i < len(frags) - 1)
        data = f[48:]
        if fh.more:
            assert len(data) % 8 == 0
        joined += data
    assert joined == payload


def test_fragment_chunk_for_1280():
    frags = fragment(6 << 28, 64, A, B, 17, bytes(3000), 1280, 1)
    assert [len(f) - 48 for f in frags] == [1232, 1232, 536]


def test_udp_golden_against_dpkt():
    d = UdpDatagram(5353, 53, b"hello")
    raw = d.emit(A, B)
    u = dpkt.udp.UDP(raw)
    assert (u.sport, u.dport, u.ulen) == (5353, 53, 13)
    assert checksum(raw, pseudo_header_sum(A, B, len(raw), 17)) == 0
    assert UdpDatagram.parse(raw, A, B) == d


def test_udp_never_sends_zero_checksum():
    # Find a payload whose checksum computes to 0 (one in 65536): sent as 0xffff.
    for i in range(200000):
        payload = struct.pack("!I", i)
        raw = UdpDatagram(1, 2, payload).emit(A, B)
        if raw[6:8] == b"\xff\xff":
            assert UdpDatagram.parse(raw, A, B).payload == payload
            break
    else:
        pytest.fail("no zero-checksum payload found")


def test_udp_zero_checksum_dropped():
    raw = struct.pack("!HHHH", 1, 2, 9, 0) + b"x"
    with pytest.raises(ParseError) as info:
        UdpDatagram.parse(raw, A, B)
    assert info.value.reason == DropReason.UDP_ZERO_CHECKSUM


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"\x00\x01\x00\x02\x00", DropReason.TRUNCATED),
        (struct.pack("!HHHH", 1, 2, 7, 1), DropReason.UDP_BAD_LENGTH),
        (struct.pack("!HHHH", 1, 2, 20, 1) + b"abc", DropReason.UDP_BAD_LENGTH),
        (struct.pack("!HHHH", 1, 2, 8, 1), DropReason.BAD_CHECKSUM),
    ],
)
def test_udp_malformed(raw, reason):
    with pytest.raises(ParseError) as info:
        UdpDatagram.parse(raw, A, B)
    assert info.value.reason == reason


def test_udp_length_shorter_than_payload_trims():
    raw = UdpDatagram(1, 2, b"abc").emit(A, B) + b"trailing"
    assert UdpDatagram.parse(raw, A, B).payload == b"abc"


@given(st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=300))
def test_udp_roundtrip(sport, dport, data):
    d = UdpDatagram(sport, dport, data)
    assert UdpDatagram.parse(d.emit(A, B), A, B) == d


def test_quoted_packet_through_extension_headers():
    inner = ipv6(A, B, NextHeader.DESTINATION_OPTIONS,
                 options_header(NextHeader.TCP, b"") + struct.pack("!HHI", 40000, 80, 12345) + bytes(12))
    q = QuotedPacket.parse(inner)
    assert (q.src, q.dst, q.protocol, q.ports, q.tcp_seq) == (A, B, 6, (40000, 80), 12345)


@pytest.mark.parametrize("cut", [0, 39, 47])
def test_quoted_packet_truncated(cut):
    inner = ipv6(A, B, 17, UdpDatagram(1, 2, b"").emit(A, B))
    with pytest.raises(ParseError):
        QuotedPacket.parse(inner[:cut])


def test_quoted_non_first_fragment_is_unusable():
    inner = ipv6(A, B, NextHeader.FRAGMENT, fragment_header(17, 16, False, 1) + bytes(16))
    with pytest.raises(ParseError):
        QuotedPacket.parse(inner)
