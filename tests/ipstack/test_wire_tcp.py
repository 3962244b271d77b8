"""TCP segment codec (RFC 9293 §3.1, options from RFC 7323 / RFC 2018).

Golden bytes, the smoltcp four-pack (parse/emit of a known segment), a
malformed table, hypothesis round trips and random-bytes robustness, and a
cross-check against dpkt in both directions.
"""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, strategies as st

from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.checksum import upper_layer_checksum
from proxy.ipstack.wire.tcp import (
    ACK, FIN, PSH, RST, SYN, TcpFlags, TcpSegment, seq_add, seq_diff, seq_ge, seq_gt, seq_le,
    seq_lt, seq_unwrap, ts_lt,
)

SRC = bytes.fromhex("20010000" "4136e378" "800063bf" "3ffffdd2")
DST = bytes.fromhex("2001db80" "00000000" "00000000" "00000002")

# A SYN as Linux sends it: MSS 1220, SACK-permitted + timestamps, NOP, WS 7.
SYN_HEX = (
    "9c40" "0050"            # ports 40000 -> 80
    "00000064"               # seq 100
    "00000000"               # ack 0
    "a0" "02"                # data offset 10 (40 bytes), SYN
    "ffff"                   # window 65535
    "0000"                   # checksum (patched below)
    "0000"                   # urgent
    "020404c4"               # MSS 1220
    "0402080a" "00001388" "00000000"  # SACK-permitted, TS 5000/0
    "01030307"               # NOP, WS 7
)


def with_checksum(hexstr: str, src: bytes = SRC, dst: bytes = DST) -> bytes:
    b = bytearray.fromhex(hexstr)
    b[16:18] = b"\0\0"
    c = upper_layer_checksum(src, dst, 6, b)
    b[16:18] = c.to_bytes(2, "big")
    return bytes(b)


SYN_BYTES = with_checksum(SYN_HEX)
SYN_REPR = TcpSegment(
    40000, 80, 100, 0, SYN, 65535, mss=1220, wscale=7, sack_permitted=True, timestamps=(5000, 0))


def test_flags_values() -> None:
    assert [int(f) for f in TcpFlags] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert (FIN, SYN, RST, PSH, ACK) == (1, 2, 4, 8, 16)


def test_parse_golden_syn() -> None:
    assert TcpSegment.parse(SYN_BYTES, SRC, DST) == SYN_REPR


def test_emit_golden_syn() -> None:
    assert SYN_REPR.emit(SRC, DST) == SYN_BYTES
    assert SYN_REPR.buffer_len() == len(SYN_BYTES) == 40


def test_data_segment_with_timestamps_fast_path() -> None:
    seg = TcpSegment(80, 40000, 0xFFFFFFFF, 7, ACK | PSH, 1000, timestamps=(1, 2), payload=b"abc")
    wire = seg.emit(SRC, DST)
    assert wire[20:24] == b"\x01\x01\x08\x0a"
    assert len(wire) == 32 + 3
    assert TcpSegment.parse(wire, SRC, DST) == seg


def test_emit_parts_join_equals_emit() -> None:
    seg = TcpSegment(1, 2, 3, 4, ACK, 5, sack_blocks=((10, 20), (30, 40)), timestamps=(7, 8),
                     payload=b"xyz")
    h, p = seg.emit_parts(SRC, DST)
    assert h + p == seg.emit(SRC, DST)
    assert p == b"xyz"


def test_checksum_zero_over_intact_segment() -> None:
    wire = SYN_REPR.emit(SRC, DST)
    assert upper_layer_checksum(SRC, DST, 6, wire) == 0


def test_bad_checksum_rejected_and_skippable() -> None:
    bad = bytearray(SYN_BYTES)
    bad[17] ^= 1
    with pytest.raises(ParseError) as e:
        TcpSegment.parse(bytes(bad), SRC, DST)
    assert e.value.reason is DropReason.BAD_CHECKSUM
    assert TcpSegment.parse(bytes(bad), SRC, DST, verify_checksum=False) == SYN_REPR


def test_checksum_covers_the_pseudo_header() -> None:
    with pytest.raises(ParseError):
        TcpSegment.parse(SYN_BYTES, SRC, bytes(16))


def test_unknown_options_skipped_eol_stops() -> None:
    # kind 30 (MPTCP) length 4, then EOL and garbage after it.
    hdr = "0001000200000001000000025010ffff00000000"
    opts = "1e040000" "00ffffff"
    wire = with_checksum(hdr[:24] + "70" + hdr[26:] + opts)
    seg = TcpSegment.parse(wire, SRC, DST)
    assert seg.mss is None and seg.timestamps is None and seg.payload == b""


def test_sack_blocks_parse() -> None:
    seg = TcpSegment(1, 2, 3, 4, ACK, 5, sack_blocks=((1, 2), (3, 4), (5, 6), (7, 8)))
    wire = seg.emit(SRC, DST)
    assert len(wire) == 20 + 36
    assert TcpSegment.parse(wire, SRC, DST).sack_blocks == ((1, 2), (3, 4), (5, 6), (7, 8))


def test_options_too_long_is_a_programming_error() -> None:
    seg = TcpSegment(1, 2, 3, 4, ACK, 5, sack_blocks=((1, 2),) * 4, timestamps=(1, 2))
    with pytest.raises(ValueError):
        seg.emit(SRC, DST)


def _hdr(offset_words: int, opts: str = "", payload: str = "") -> bytes:
    base = bytearray.fromhex("0001000200000001000000025010ffff00000000")
    base[12] = offset_words << 4
    return with_checksum(base.hex() + opts + payload)


MALFORMED = [
    ("shorter than 20 bytes", bytes(19), DropReason.TRUNCATED),
    ("data offset 4", _hdr(4), DropReason.BAD_HEADER),
    ("data offset past the end", _hdr(6), DropReason.TRUNCATED),
    ("zero-length option (dpkt #139)", _hdr(6, "1e000000"), DropReason.TCP_BAD_OPTION),
    ("length-1 option", _hdr(6, "1e010000"), DropReason.TCP_BAD_OPTION),
    ("option runs past header", _hdr(6, "010101" "1e"), DropReason.TCP_BAD_OPTION),
    ("option length past header", _hdr(6, "1e080000"), DropReason.TCP_BAD_OPTION),
    ("MSS length 3", _hdr(6, "02030501"), DropReason.TCP_BAD_OPTION),
    ("WS length 4", _hdr(6, "03040700"), DropReason.TCP_BAD_OPTION),
    ("SACK-permitted length 3", _hdr(6, "04030000"), DropReason.TCP_BAD_OPTION),
    ("SACK length 2", _hdr(6, "05020000"), DropReason.TCP_BAD_OPTION),
    ("SACK length 9", _hdr(8, "0509" + "00" * 7 + "0000" + "00"), DropReason.TCP_BAD_OPTION),
    ("TS length 8", _hdr(8, "0808" + "00" * 6 + "00000000"), DropReason.TCP_BAD_OPTION),
]


@pytest.mark.parametrize("desc,wire,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(desc: str, wire: bytes, reason: DropReason) -> None:
    with pytest.raises(ParseError) as e:
        TcpSegment.parse(wire, SRC, DST)
    assert e.value.reason is reason, desc


def test_window_scale_above_14_kept_raw() -> None:
    seg = TcpSegment(1, 2, 3, 0, SYN, 5, wscale=200)
    assert TcpSegment.parse(seg.emit(SRC, DST), SRC, DST).wscale == 200


u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def segments(draw: st.DrawFn) -> TcpSegment:
    ts = draw(st.none() | st.tuples(u32, u32))
    max_blocks = 3 if ts is not None else 4
    syn = draw(st.booleans())
    return TcpSegment(
        draw(u16), draw(u16), draw(u32), draw(u32), draw(st.integers(0, 255)), draw(u16),
        draw(u16),
        draw(st.none() | u16) if syn else None,
        draw(st.none() | st.integers(0, 255)) if syn else None,
        draw(st.booleans()) if syn else False,
        () if syn else tuple(draw(st.lists(st.tuples(u32, u32), max_size=max_blocks))),
        ts, draw(st.binary(max_size=64)),
    )


@given(segments())
def test_round_trip(seg: TcpSegment) -> None:
    wire = seg.emit(SRC, DST)
    assert len(wire) == seg.buffer_len()
    assert TcpSegment.parse(wire, SRC, DST) == seg
    assert TcpSegment.parse(memoryview(bytearray(wire)), SRC, DST) == seg


@given(st.binary(max_size=120), st.booleans())
def test_random_bytes_raise_only_parse_error(data: bytes, verify: bool) -> None:
    try:
        seg = TcpSegment.parse(data, SRC, DST, verify_checksum=verify)
    except ParseError:
        return
    assert isinstance(seg, TcpSegment)
    assert len(seg.payload) <= len(data) - 20


@given(st.binary(min_size=20, max_size=80))
def test_random_headers_with_valid_checksum(data: bytes) -> None:
    """Random bytes made checksum-valid reach the option parser."""
    b = bytearray(data)
    b[12] = (b[12] & 0xF0) | 0  # reserved bits zero
    wire = with_checksum(b.hex())
    try:
        seg = TcpSegment.parse(wire, SRC, DST)
    except ParseError:
        return
    assert len(seg.payload) <= len(wire) - 20


# -- dpkt cross-check ----------------------------------------------------------


def _dpkt_ip6(tcp: dpkt.tcp.TCP) -> bytes:
    ip = dpkt.ip6.IP6(src=SRC, dst=DST, nxt=6, hlim=64, data=tcp, plen=len(bytes(tcp)))
    ip.extension_hdrs = {}
    return bytes(ip)


@given(segments())
def test_our_bytes_parse_in_dpkt(seg: TcpSegment) -> None:
    wire = seg.emit(SRC, DST)
    t = dpkt.tcp.TCP(wire)
    assert (t.sport, t.dport, t.seq, t.ack, t.flags, t.win) == (
        seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window)
    assert t.data == seg.payload
    opts = dict((k, v) for k, v in dpkt.tcp.parse_opts(t.opts) if k != 1)
    if seg.mss is not None:
        assert struct.unpack("!H", opts[2])[0] == seg.mss
    if seg.timestamps is not None:
        assert struct.unpack("!II", opts[8]) == seg.timestamps
    if seg.wscale is not None:
        assert opts[3][0] == seg.wscale
    # dpkt computes the same checksum when asked to.
    t2 = dpkt.tcp.TCP(wire)
    t2.sum = 0
    ip = dpkt.ip6.IP6(src=SRC, dst=DST, nxt=6, hlim=64, data=t2, plen=len(wire))
    bytes(ip)  # dpkt fills in the TCP checksum for IPv6 on pack
    assert t2.sum == t.sum


def test_dpkt_built_segments_parse_in_ours() -> None:
    opts = (
        b"\x02\x04\x04\xc4" + b"\x04\x02" + b"\x08\x0a" + struct.pack("!II", 9, 0)
        + b"\x01\x03\x03\x07")
    for payload in (b"", b"hello", bytes(range(200))):
        t = dpkt.tcp.TCP(sport=1234, dport=80, seq=42, ack=0, flags=dpkt.tcp.TH_SYN, win=512,
                         opts=opts, data=payload)
        t.off = (20 + len(opts)) // 4
        wire = _dpkt_ip6(t)[40:]
        seg = TcpSegment.parse(wire, SRC, DST)
        assert seg == TcpSegment(1234, 80, 42, 0, SYN, 512, mss=1220, wscale=7,
                                 sack_permitted=True, timestamps=(9, 0), payload=payload)


# -- sequence arithmetic ---------------------------------------------------------


def test_seq_arithmetic_wraps() -> None:
    assert seq_add(0xFFFFFFFF, 2) == 1
    assert seq_diff(1, 0xFFFFFFFF) == 2
    assert seq_diff(0xFFFFFFFF, 1) == -2
    assert seq_lt(0xFFFFFFF0, 5) and seq_gt(5, 0xFFFFFFF0)
    assert seq_le(7, 7) and seq_ge(7, 7) and not seq_lt(7, 7)
    assert seq_unwrap(5, 0xFFFFFFF0) == 0x100000005
    assert seq_unwrap(0xFFFFFFF0, 0x100000005) == 0xFFFFFFF0
    assert ts_lt(0xFFFFFFFF, 0) and not ts_lt(0, 0)


@given(st.integers(0, 1 << 40), st.integers(-(1 << 31) + 1, (1 << 31) - 1))
def test_unwrap_recovers_nearby_values(ref: int, delta: int) -> None:
    value = ref + delta
    if value < 0:
        return
    assert seq_unwrap(value & 0xFFFFFFFF, ref) == value
    assert seq_lt(value & 0xFFFFFFFF, ref & 0xFFFFFFFF) == (delta < 0)
