"""RFC 6081 §4 trailers: layouts, round trips, refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import DropReason, ParseError
from proxy.teredo.packet import TeredoPacket, bubble
from proxy.teredo.trailers import Trailers


def test_alternate_address_layout_matches_ms_tere():
    # [MS-TERE] 2.2.2: type 0x03, length 2 + 6n, 2 reserved bytes, IPv4 + port
    raw = Trailers(alternates=(("192.168.1.5", 3545),)).emit()
    assert raw == bytes.fromhex("0308" "0000" "c0a80105" "0dd9")
    assert Trailers.parse(raw).alternates == (("192.168.1.5", 3545),)


def test_other_trailers_layout():
    raw = Trailers(nonce=b"\x01\x02\x03\x04", nd_option=1, random_port=40000).emit()
    assert raw == bytes.fromhex("010401020304" "040401000000" "05029c40")
    t = Trailers.parse(raw)
    assert (t.nonce, t.nd_option, t.random_port) == (b"\x01\x02\x03\x04", 1, 40000)


def test_unknown_trailers_are_kept_and_skipped():
    t = Trailers.parse(bytes.fromhex("7f03aabbcc" "0502ffff"))
    assert t.unknown == ((0x7F, b"\xaa\xbb\xcc"),) and t.random_port == 0xFFFF


@pytest.mark.parametrize("raw", [
    "01", "0105aabb", "0103010203", "0306000001020304", "0308000001020304" "0000",
    "031a" + "0000" + "0102030405" * 6, "0403010000", "050101",
])
def test_malformed_trailers(raw):
    with pytest.raises(ParseError) as e:
        Trailers.parse(bytes.fromhex(raw))
    assert e.value.reason is DropReason.BAD_TRAILER


def test_trailer_rides_after_the_ipv6_packet():
    a, b = bytes(15) + b"\x01", bytes(15) + b"\x02"
    data = bubble(a, b) + Trailers(alternates=(("10.0.0.2", 40001),)).emit()
    p = TeredoPacket.parse(data)
    assert p.is_bubble and Trailers.parse(p.trailer).alternates == (("10.0.0.2", 40001),)


@given(st.binary(max_size=64))
def test_parse_never_raises_anything_but_parse_error(raw):
    try:
        t = Trailers.parse(raw)
    except ParseError:
        return
    assert Trailers.parse(t.emit()) == t
