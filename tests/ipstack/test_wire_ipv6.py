"""Extension-header walk (RFC 8200 §4): option action bits, routing, HbH position."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.ipv6 import (
    HeaderChain,
    NextHeader,
    ParamProblem,
    ParamProblemCode,
    find_upper_layer,
    walk_extension_headers,
)
from proxy.testing.packets import addr, fragment_header, ipv6, options_header

A = addr("2001:db8::1")
B = addr("2001:db8::2")
UDP8 = b"\x00\x01\x00\x02\x00\x08\x00\x00"


def walk(packet: bytes, multicast: bool = False) -> HeaderChain:
    return walk_extension_headers(packet, len(packet), multicast)


def test_no_extension_headers():
    p = ipv6(A, B, NextHeader.UDP, UDP8)
    assert walk(p) == HeaderChain(NextHeader.UDP, 40, 6)


def test_hbh_then_dest_then_upper():
    body = options_header(NextHeader.DESTINATION_OPTIONS, b"") + options_header(NextHeader.UDP, b"") + UDP8
    p = ipv6(A, B, NextHeader.HOP_BY_HOP, body)
    assert walk(p) == HeaderChain(NextHeader.UDP, 56, 48)


def test_stops_at_fragment_header():
    body = options_header(NextHeader.FRAGMENT, b"") + fragment_header(NextHeader.UDP, 0, True, 7) + UDP8
    p = ipv6(A, B, NextHeader.HOP_BY_HOP, body)
    assert walk(p) == HeaderChain(NextHeader.FRAGMENT, 48, 40)


@pytest.mark.parametrize("nh", [NextHeader.HOP_BY_HOP, NextHeader.DESTINATION_OPTIONS])
@pytest.mark.parametrize(
    "action,multicast,expect",
    [
        (0b00, False, "pass"),
        (0b01, False, "silent"),
        (0b10, False, "icmp"),
        (0b10, True, "icmp"),
        (0b11, False, "icmp"),
        (0b11, True, "silent"),
        (0b00, True, "pass"),
        (0b01, True, "silent"),
    ],
)
def test_unknown_option_action_bits(nh, action, multicast, expect):
    # packetimpact ipv6_unknown_options_action: option type = action << 6 | 0x1e
    opt = bytes((action << 6 | 0x1E, 4, 0, 0, 0, 0))
    p = ipv6(A, B, nh, options_header(NextHeader.UDP, opt) + UDP8)
    if expect == "pass":
        assert walk(p, multicast).protocol == NextHeader.UDP
        return
    with pytest.raises(ParseError) as info:
        walk(p, multicast)
    assert info.value.reason == DropReason.UNKNOWN_OPTION
    if expect == "icmp":
        assert isinstance(info.value, ParamProblem)
        assert info.value.code == ParamProblemCode.UNRECOGNIZED_OPTION
        assert info.value.pointer == 42  # the option type: 40 + 2
        assert info.value.to_multicast
    else:
        assert not isinstance(info.value, ParamProblem)


def test_pointer_names_the_second_option():
    opts = b"\x01\x00" + bytes((0x80 | 0x1E, 2, 0, 0))  # PadN(0), then unknown
    p = ipv6(A, B, NextHeader.DESTINATION_OPTIONS, options_header(NextHeader.UDP, opts) + UDP8)
    with pytest.raises(ParamProblem) as info:
        walk(p)
    assert info.value.pointer == 44


def test_known_options_are_skipped():
    opts = b"\x00" + b"\x05\x02\x00\x00" + b"\x04\x01\x07"  # Pad1, Router Alert, Tunnel Limit
    p = ipv6(A, B, NextHeader.HOP_BY_HOP, options_header(NextHeader.UDP, opts) + UDP8)
    assert walk(p).protocol == NextHeader.UDP


def test_option_running_past_header_is_dropped_silently():
    hdr = bytes((NextHeader.UDP, 0, 0x1E, 10, 0, 0, 0, 0))
    p = ipv6(A, B, NextHeader.DESTINATION_OPTIONS, hdr + UDP8)
    with pytest.raises(ParseError) as info:
        walk(p)
    assert not isinstance(info.value, ParamProblem)
    assert info.value.reason == DropReason.BAD_HEADER


def test_hop_by_hop_not_first_is_unrecognised_next_header():
    body = options_header(NextHeader.HOP_BY_HOP, b"") + options_header(NextHeader.UDP, b"") + UDP8
    p = ipv6(A, B, NextHeader.DESTINATION_OPTIONS, body)
    with pytest.raises(ParamProblem) as info:
        walk(p)
    assert info.value.code == ParamProblemCode.UNRECOGNIZED_NEXT_HEADER
    assert info.value.pointer == 40  # the Destination Options' Next Header field


def test_routing_header_segments_left_zero_is_ignored():
    rh = bytes((NextHeader.UDP, 2, 0, 0)) + bytes(4) + A + B
    p = ipv6(A, B, NextHeader.ROUTING, rh + UDP8)
    assert walk(p).protocol == NextHeader.UDP


@pytest.mark.parametrize("rtype", [0, 2, 3, 4, 253])
def test_routing_header_with_segments_left_is_param_problem(rtype):
    rh = bytes((NextHeader.UDP, 2, rtype, 1)) + bytes(4) + A + B
    p = ipv6(A, B, NextHeader.ROUTING, rh + UDP8)
    with pytest.raises(ParamProblem) as info:
        walk(p)
    assert info.value.code == ParamProblemCode.ERRONEOUS_HEADER
    assert info.value.pointer == 42  # Routing Type field
    assert not info.value.to_multicast


def test_truncated_header_is_dropped():
    p = ipv6(A, B, NextHeader.DESTINATION_OPTIONS, bytes((NextHeader.UDP, 3)) + bytes(6))
    with pytest.raises(ParseError) as info:
        walk(p)
    assert info.value.reason == DropReason.IPV6_TRUNCATED


def test_header_chain_limit():
    body = b""
    for _ in range(20):
        body = options_header(NextHeader.DESTINATION_OPTIONS, b"") + body
    p = ipv6(A, B, NextHeader.DESTINATION_OPTIONS, body + options_header(NextHeader.UDP, b"") + UDP8)
    with pytest.raises(ParseError) as info:
        walk(p)
    assert info.value.reason == DropReason.EXTENSION_HEADER_LIMIT


def test_find_upper_layer_skips_everything():
    body = (options_header(NextHeader.ROUTING, b"") + bytes((NextHeader.FRAGMENT, 0, 0, 0)) + bytes(4)
            + fragment_header(NextHeader.TCP, 0, True, 1) + bytes(20))
    p = ipv6(A, B, NextHeader.HOP_BY_HOP, body)
    assert find_upper_layer(p) == (NextHeader.TCP, 64)


def test_find_upper_layer_non_first_fragment_is_unknown():
    p = ipv6(A, B, NextHeader.FRAGMENT, fragment_header(NextHeader.UDP, 8, False, 1) + UDP8)
    assert find_upper_layer(p) is None


@given(st.binary(max_size=200), st.integers(0, 255), st.booleans())
def test_walk_never_raises_anything_but_parse_error(payload, nh, multicast):
    p = ipv6(A, B, nh, payload)
    try:
        chain = walk(p, multicast)
    except ParseError:
        return
    assert 40 <= chain.offset <= len(p)
    find_upper_layer(p)
