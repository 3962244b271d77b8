"""The big-int checksum against a word-by-word reference fold (RFC 1071)."""

from __future__ import annotations

import struct

from hypothesis import given, strategies as st

from proxy.ipstack.wire.checksum import (
    bare_payload_checksum_ok, checksum, fold16, ones_sum, pseudo_header_sum, sum16,
    upper_layer_checksum,
)


def reference(data: bytes, initial: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    s = initial
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_rfc1071_example():
    # RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2, checksum 220d.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_all_zero_and_all_ones():
    assert checksum(b"\0" * 10) == 0xFFFF
    assert checksum(b"\xff" * 10) == 0


@given(st.binary(max_size=300))
def test_matches_reference(data):
    assert checksum(data) == reference(data)


@given(st.binary(max_size=4000), st.integers(0, 3))
def test_sum16_matches_reference_fold(data, offset):
    """Both sides of the split (256 bytes), odd lengths, memoryview slices."""
    view = memoryview(b"\xa5" * offset + data)[offset:]
    folded = 0xFFFF & ~reference(data)  # the one's-complement sum, 0..0xffff
    assert sum16(data) == sum16(view) == folded % 0xFFFF
    assert ones_sum(data) == (folded if any(data) else 0)
    assert checksum(view) == reference(data)


@given(st.lists(st.integers(0, 0xFFFF), max_size=2000))
def test_fold16_is_end_around_carry(words):
    s = sum(words)
    ref = 0
    for w in words:
        ref += w
        ref = (ref & 0xFFFF) + (ref >> 16)
    assert fold16(s) == ref


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.binary(max_size=200), st.sampled_from([6, 17, 58]))
def test_pseudo_header_matches_reference(src, dst, payload, nh):
    pseudo = src + dst + struct.pack("!I3xB", len(payload), nh)
    assert upper_layer_checksum(src, dst, nh, payload) == reference(pseudo + payload)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=100))
def test_verifying_with_checksum_in_place_gives_zero(src, dst, body):
    body = bytearray(body)
    body[2:4] = b"\0\0"
    c = upper_layer_checksum(src, dst, 58, body)
    body[2:4] = c.to_bytes(2, "big")
    assert upper_layer_checksum(src, dst, 58, body) == 0
    assert 0 <= pseudo_header_sum(src, dst, len(body), 58) <= 0xFFFF


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16),
       st.binary(min_size=20, max_size=1500), st.sampled_from([6, 17, 58]),
       st.integers(0, 1499), st.integers(1, 255))
def test_bare_payload_checksum_matches_the_pseudo_header_check(src, dst, body, nh, pos, flip):
    """One sum over addresses and payload equals the RFC 8200 §8.1 check."""
    body = bytearray(body)
    body[16:18] = b"\0\0"
    c = upper_layer_checksum(src, dst, nh, body)
    body[16:18] = c.to_bytes(2, "big")
    packet = bytes(8) + src + dst + bytes(body)
    assert bare_payload_checksum_ok(packet, nh)
    assert bare_payload_checksum_ok(memoryview(packet), nh)
    damaged = bytearray(packet)
    damaged[40 + pos % len(body)] ^= flip
    assert bare_payload_checksum_ok(damaged, nh) == (
        upper_layer_checksum(src, dst, nh, damaged[40:]) == 0)
