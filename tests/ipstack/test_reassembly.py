"""Fragment reassembly (RFC 8200 §4.5, RFC 5722, RFC 6946, RFC 7112), fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from proxy.errors import DropReason, ParseError
from proxy.ipstack.reassembly import Reassembler
from proxy.ipstack.wire.ipv6 import NextHeader, ParamProblem, ParamProblemCode
from proxy.ipstack.wire.udp import UdpDatagram
from proxy.testing.packets import addr, fragment_header, fragments, ipv6, options_header

A = addr("2001:db8::1")
B = addr("2001:db8::2")
PAYLOAD = UdpDatagram(7, 9, bytes(range(256)) * 11 + b"tail").emit(A, B)  # 2828 bytes


def feed(r: Reassembler, packets: list[bytes], now: float = 0.0) -> list[bytes | Exception | None]:
    out: list[bytes | Exception | None] = []
    for p in packets:
        try:
            out.append(r.fragment_received(p, len(p), 40, 6, now))
        except ParseError as exc:
            out.append(exc)
    return out


def whole() -> bytes:
    return ipv6(A, B, NextHeader.UDP, PAYLOAD)


def test_basic_three_fragments():
    r = Reassembler()
    frags = fragments(A, B, 17, PAYLOAD, [(0, 1000, True), (1000, 1000, True), (2000, 828, False)], 5)
    out = feed(r, frags)
    assert out[:2] == [None, None]
    assert out[2] == whole()
    assert len(r) == 0 and r.buffered_bytes == 0


def test_out_of_order():
    r = Reassembler()
    frags = fragments(A, B, 17, PAYLOAD, [(2000, 828, False), (0, 1000, True), (1000, 1000, True)], 6)
    assert feed(r, frags)[-1] == whole()


def test_duplicate_is_ignored():
    r = Reassembler()
    frags = fragments(
        A, B, 17, PAYLOAD,
        [(0, 1000, True), (1000, 1000, True), (1000, 1000, True), (2000, 828, False)], 7,
    )
    out = feed(r, frags)
    assert isinstance(out[2], ParseError) and out[2].reason == DropReason.FRAGMENT_DUPLICATE
    assert out[3] == whole()


def test_subset_is_ignored():
    # packetimpact ipv6_reassembly_subset: [512, 768) inside [0, 1000).
    r = Reassembler()
    frags = fragments(
        A, B, 17, PAYLOAD,
        [(0, 1000, True), (1000, 1000, True), (512, 256, True), (2000, 828, False)], 8,
    )
    out = feed(r, frags)
    assert isinstance(out[2], ParseError) and out[2].reason == DropReason.FRAGMENT_DUPLICATE
    assert out[3] == whole()


def test_subset_spanning_two_adjacent_runs_is_ignored():
    r = Reassembler()
    frags = fragments(
        A, B, 17, PAYLOAD,
        [(0, 1000, True), (1000, 1000, True), (800, 400, True), (2000, 828, False)], 8,
    )
    assert feed(r, frags)[3] == whole()


def test_overlap_discards_datagram_and_later_fragments():
    # packetimpact ipv6_reassembly_overlap: [1512, 2512) then [1000, 2000).
    r = Reassembler()
    frags = fragments(
        A, B, 17, PAYLOAD,
        [(0, 1000, True), (1512, 1000, True), (1000, 1000, True), (2000, 828, False)], 9,
    )
    out = feed(r, frags)
    assert isinstance(out[2], ParseError) and out[2].reason == DropReason.FRAGMENT_OVERLAP
    assert isinstance(out[3], ParseError) and out[3].reason == DropReason.FRAGMENT_OVERLAP
    assert r.buffered_bytes == 0
    # Even a complete, correct set with the same identification is refused
    # until the tombstone expires (RFC 5722: "including those not yet received").
    again = fragments(A, B, 17, PAYLOAD, [(0, 1000, True), (1000, 1000, True), (2000, 828, False)], 9)
    assert all(isinstance(x, ParseError) for x in feed(r, again))
    assert r.handle_timer(61.0) == []  # tombstones expire silently
    assert feed(r, again, 61.0)[-1] == whole()


def test_atomic_fragment_is_processed_alone():
    r = Reassembler()
    p = ipv6(A, B, NextHeader.FRAGMENT, fragment_header(17, 0, False, 1) + PAYLOAD[:100])
    out = r.fragment_received(p, len(p), 40, 6, 0.0)
    assert out == ipv6(A, B, 17, PAYLOAD[:100])
    assert len(r) == 0


def test_unfragmentable_part_kept_and_next_header_patched():
    hbh = options_header(NextHeader.FRAGMENT, b"")
    f1 = ipv6(A, B, NextHeader.HOP_BY_HOP, hbh + fragment_header(17, 0, True, 3) + PAYLOAD[:1000])
    f2 = ipv6(A, B, NextHeader.HOP_BY_HOP, hbh + fragment_header(17, 1000, False, 3) + PAYLOAD[1000:])
    r = Reassembler()
    assert r.fragment_received(f2, len(f2), 48, 40, 0.0) is None
    got = r.fragment_received(f1, len(f1), 48, 40, 0.0)
    assert got == ipv6(A, B, NextHeader.HOP_BY_HOP, options_header(17, b"") + PAYLOAD)


def test_length_not_multiple_of_8_is_param_problem():
    r = Reassembler()
    (p,) = fragments(A, B, 17, PAYLOAD, [(0, 1001, True)], 1)
    with pytest.raises(ParamProblem) as info:
        r.fragment_received(p, len(p), 40, 6, 0.0)
    assert info.value.code == ParamProblemCode.ERRONEOUS_HEADER and info.value.pointer == 4


def test_reassembled_too_big_is_param_problem():
    # packetimpact ipv6_fragment_icmp_error "payload length error": pointer 42.
    r = Reassembler()
    p = ipv6(A, B, NextHeader.FRAGMENT, fragment_header(58, 65520, False, 1) + bytes(25))
    with pytest.raises(ParamProblem) as info:
        r.fragment_received(p, len(p), 40, 6, 0.0)
    assert info.value.code == ParamProblemCode.ERRONEOUS_HEADER and info.value.pointer == 42


def test_first_fragment_without_whole_chain_is_param_problem_code_3():
    r = Reassembler()
    body = fragment_header(NextHeader.DESTINATION_OPTIONS, 0, True, 1) + bytes((17, 2)) + bytes(6)
    p = ipv6(A, B, NextHeader.FRAGMENT, body)
    with pytest.raises(ParamProblem) as info:
        r.fragment_received(p, len(p), 40, 6, 0.0)
    assert info.value.code == ParamProblemCode.INCOMPLETE_CHAIN and info.value.pointer == 0


def test_inconsistent_last_fragment_discards():
    r = Reassembler()
    frags = fragments(A, B, 17, PAYLOAD, [(2000, 828, False), (0, 1000, True)], 4)
    feed(r, frags)
    bad = ipv6(A, B, NextHeader.FRAGMENT, fragment_header(17, 2008, False, 4) + bytes(8))
    with pytest.raises(ParseError) as info:
        r.fragment_received(bad, len(bad), 40, 6, 0.0)
    assert info.value.reason == DropReason.FRAGMENT_INCONSISTENT
    assert len(r) == 0 and r.buffered_bytes == 0


def test_timeout_returns_first_fragment_only_when_received():
    r = Reassembler()
    first = fragments(A, B, 17, PAYLOAD, [(0, 1000, True)], 1)[0]
    second = fragments(A, B, 17, PAYLOAD, [(1000, 1000, True)], 2)[0]
    feed(r, [first], 0.0)
    feed(r, [second], 10.0)
    assert r.poll_at() == 60.0
    assert r.handle_timer(59.9) == []
    assert r.handle_timer(60.0) == [first]
    assert r.poll_at() == 70.0
    assert r.handle_timer(70.0) == []
    assert r.poll_at() is None and r.buffered_bytes == 0


def test_datagram_limit_evicts_oldest():
    r = Reassembler(max_datagrams=3)
    for ident in range(10):
        feed(r, fragments(A, B, 17, PAYLOAD, [(0, 1000, True)], ident))
    assert len(r) == 3


def test_byte_limit_evicts_oldest():
    r = Reassembler(max_bytes=5000)
    for ident in range(10):
        feed(r, fragments(A, B, 17, PAYLOAD, [(0, 1000, True)], ident))
    assert r.buffered_bytes <= 5000
    # the newest can still complete
    out = feed(r, fragments(A, B, 17, PAYLOAD, [(1000, 1000, True), (2000, 828, False)], 9))
    assert out[-1] == whole()


def test_fragment_count_limit():
    r = Reassembler(max_fragments=4)
    pieces = [(i * 8, 8, True) for i in range(6)]
    out = feed(r, fragments(A, B, 17, PAYLOAD, pieces, 1))
    assert isinstance(out[4], ParseError) and out[4].reason == DropReason.REASSEMBLY_LIMIT
    assert r.buffered_bytes == 0


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 64), st.booleans(), st.integers(0, 3)),
        max_size=40,
    ),
    st.lists(st.floats(0, 200), max_size=5),
)
def test_random_fragments_stay_bounded(pieces, times):
    r = Reassembler(max_datagrams=3, max_bytes=4000, max_fragments=8)
    now = 0.0
    for off, size, more, ident in pieces:
        p = ipv6(A, B, NextHeader.FRAGMENT, fragment_header(17, off * 8, more, ident) + bytes(size))
        try:
            r.fragment_received(p, len(p), 40, 6, now)
        except ParseError:
            pass
        assert len(r) <= 3 and r.buffered_bytes <= 4000
        now += 1.0
    for t in sorted(times):
        r.handle_timer(now + t)
    r.handle_timer(now + 1000)
    assert len(r) == 0 and r.buffered_bytes == 0
