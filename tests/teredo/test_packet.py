"""Teredo encapsulation (RFC 4380 §5.1.1): golden bytes, malformed table, dpkt cross-check."""

from __future__ import annotations

import dpkt
import pytest
from hypothesis import given, strategies as st

from proxy.errors import DropReason, ParseError
from proxy.teredo.packet import Authentication, OriginIndication, TeredoPacket, bubble, ipv6_packet

SRC = bytes.fromhex("20010000c6336401000af5c7c633ff11")
DST = bytes.fromhex("20010db8000100000000000000000100")


def test_origin_indication_rfc_example():
    # RFC 4380 §5.1.1: port 337 and 1.2.3.4 obfuscate to 0xfeae and fe.fd.fc.fb
    assert OriginIndication("1.2.3.4", 337).emit() == bytes.fromhex("0000feaefefdfcfb")
    assert OriginIndication.parse(bytes.fromhex("0000feaefefdfcfb")) == OriginIndication("1.2.3.4", 337)


def test_minimal_authentication_indicator():
    a = Authentication(nonce=bytes(range(8)))
    assert a.emit() == bytes.fromhex("00010000" "0001020304050607" "00")
    assert a.buffer_len() == 13


def test_authentication_with_id_and_value():
    a = Authentication(nonce=b"N" * 8, confirmation=1, client_id=b"id", auth_value=b"\xaa" * 20)
    raw = a.emit()
    assert raw[:4] == bytes((0, 1, 2, 20))
    assert Authentication.parse(raw) == (a, len(raw))


def test_bubble_bytes():
    b = bubble(SRC, DST)
    assert b[:8] == bytes.fromhex("60000000" "0000" "3b" "00")
    p = TeredoPacket.parse(b)
    assert p.is_bubble and p.auth is None and p.origin is None and p.trailer == b""


def test_full_encapsulation_order_and_trailer():
    ip = ipv6_packet(SRC, DST, 59, b"", 64)
    p = TeredoPacket(ip, Authentication(b"12345678"), OriginIndication("198.51.100.20", 3545), b"\x01\x04abcd")
    raw = p.emit()
    assert raw[:2] == b"\x00\x01" and raw[13:15] == b"\x00\x00" and raw[21] >> 4 == 6
    back = TeredoPacket.parse(raw)
    assert back.auth == p.auth and back.origin == p.origin
    assert bytes(back.ipv6) == ip and back.trailer == b"\x01\x04abcd"
    assert back.src == SRC and back.dst == DST


MALFORMED = [
    ("empty", b"", DropReason.TRUNCATED),
    ("one byte", b"\x60", DropReason.TRUNCATED),
    ("auth header cut", b"\x00\x01\x00", DropReason.BAD_AUTH_HEADER),
    ("auth lengths past end", b"\x00\x01\x05\x05" + b"\0" * 9, DropReason.BAD_AUTH_HEADER),
    ("origin cut", b"\x00\x00\xfe\xae", DropReason.BAD_ORIGIN_INDICATION),
    ("short IPv6", b"\x60" + b"\0" * 38, DropReason.IPV6_TRUNCATED),
    ("IPv4 inside", b"\x45" + b"\0" * 39, DropReason.NOT_IPV6),
    ("payload length past end", bytes.fromhex("6000000000103b00") + b"\0" * 32, DropReason.IPV6_TRUNCATED),
    ("unknown indicator", b"\x00\x02" + b"\0" * 40, DropReason.NOT_IPV6),
    ("auth after origin", OriginIndication("1.2.3.4", 1).emit() + Authentication(b"x" * 8).emit() + bubble(SRC, DST),
     DropReason.NOT_IPV6),
]


@pytest.mark.parametrize("name,data,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(name, data, reason):
    with pytest.raises(ParseError) as e:
        TeredoPacket.parse(data)
    assert e.value.reason is reason


@given(st.binary(max_size=200))
def test_parse_never_raises_anything_but_parse_error(data):
    try:
        p = TeredoPacket.parse(data)
    except ParseError:
        return
    assert len(p.ipv6) >= 40


packets = st.builds(
    TeredoPacket,
    st.builds(lambda hl, nh, pl: ipv6_packet(SRC, DST, nh, pl, hl),
              st.integers(0, 255), st.integers(0, 255), st.binary(max_size=64)),
    st.none() | st.builds(Authentication, st.binary(min_size=8, max_size=8), st.integers(0, 255),
                          st.binary(max_size=20), st.binary(max_size=20)),
    st.none() | st.builds(OriginIndication, st.sampled_from(["1.2.3.4", "198.51.100.20"]), st.integers(0, 65535)),
    st.binary(max_size=16),
)


@given(packets)
def test_round_trip(p):
    back = TeredoPacket.parse(p.emit())
    assert (bytes(back.ipv6), back.auth, back.origin, back.trailer) == (bytes(p.ipv6), p.auth, p.origin, p.trailer)
    assert back.buffer_len() == len(p.emit())


def test_our_ipv6_decodes_in_dpkt():
    ip = dpkt.ip6.IP6(bytes(TeredoPacket.parse(bubble(SRC, DST)).ipv6))
    assert ip.nxt == 59 and ip.plen == 0 and ip.src == SRC and ip.dst == DST
