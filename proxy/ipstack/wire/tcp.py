"""TCP segments (RFC 9293 §3.1) with the options this stack speaks.

::

     0                   1                   2                   3
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Sequence Number                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Acknowledgment Number                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data |       |C|E|U|A|P|R|S|F|                               |
    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
    |       |       |R|E|G|K|H|T|N|N|                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |         Urgent Pointer        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options (0-40 bytes)                       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                             data                              |

Options understood (everything else is skipped by its length):
kind 0 EOL, 1 NOP, 2 MSS (len 4, RFC 9293 §3.2), 3 Window Scale (len 3,
RFC 7323 §2), 4 SACK-Permitted (len 2, RFC 2018 §2), 5 SACK (len 2+8n,
RFC 2018 §3), 8 Timestamps (len 10, RFC 7323 §3).

Malformed (``ParseError``): a data offset below 5 or past the buffer; an
option whose length byte is missing, below 2 (the zero-length infinite-loop
bug of picoTCP #506 and dpkt #139) or runs past the header; a known option
with the wrong length.  Values are kept raw (a window shift above 14 is the
machine's business, RFC 7323 §2.3).

The receive path is hot (tens of thousands of segments per second), so
``parse`` reads the fixed header with one precompiled ``struct`` and has a
fast path for the one option layout that data segments carry in practice
(NOP NOP Timestamps); ``emit_parts`` returns header and payload separately
so the IPv6 layer can join everything in one copy.

Sequence numbers are 32-bit and compared modulo 2**32 (RFC 9293 §3.4);
the helpers at the bottom do that arithmetic.  The connection machine
unwraps them into unbounded integers at ingress (``seq_unwrap``) so its own
arithmetic is plain integer arithmetic.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from proxy.constants import TCP_HEADER_LEN, TCP_MAX_OPTIONS_LEN
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.checksum import fold16, sum16

__all__ = [
    "TcpFlags",
    "TcpSegment",
    "FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR",
    "OPT_EOL", "OPT_NOP", "OPT_MSS", "OPT_WSCALE", "OPT_SACK_PERMITTED", "OPT_SACK",
    "OPT_TIMESTAMPS",
    "SEQ_MASK",
    "seq_add", "seq_diff", "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_unwrap",
    "ts_lt",
]


class TcpFlags(enum.IntFlag):
    """The eight control bits (RFC 9293 §3.1; ECE/CWR from RFC 3168)."""

    FIN = 1
    SYN = 2
    RST = 4
    PSH = 8
    ACK = 16
    URG = 32
    ECE = 64
    CWR = 128


# Plain ints for the hot path: IntFlag arithmetic is ~20x slower than int's.
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8

SEQ_MASK = 0xFFFFFFFF
_HALF = 0x80000000

#: Source port, destination port, seq, ack, data offset byte, flags byte,
#: window, checksum, urgent pointer.
_HEADER = struct.Struct("!HHIIBBHHH")
_CHECKSUM = struct.Struct("!H")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TWO_U32 = struct.Struct("!II")
#: NOP NOP TS(8) len(10) tsval tsecr: the layout Linux puts on every data segment.
_NOP_NOP_TS = struct.Struct("!III")
_NOP_NOP_TS_PREFIX = 0x0101080A
_NOP_NOP_TS_BYTES = b"\x01\x01\x08\x0a"
_SACKOK_TS = 0x0402080A

_from_bytes = int.from_bytes
_new = tuple.__new__  # builds a TcpSegment from a complete tuple of fields


def _pseudo_sum(src: bytes, dst: bytes, length: int) -> int:
    """IPv6 pseudo-header sum (RFC 8200 §8.1) for next header 6."""
    return _from_bytes(src + dst, "big") % 0xFFFF + (length >> 16) + (length & 0xFFFF) + 6


def _bad(detail: str) -> ParseError:
    return ParseError(DropReason.TCP_BAD_OPTION, detail)


class TcpSegment(NamedTuple):
    """One TCP segment: header fields, decoded options and payload.

    ``window`` is the raw 16-bit field (the receiver of the segment scales
    it).  Absent options are ``None`` / ``False`` / ``()``.

    Immutable and without a per-instance ``__dict__``, like the frozen
    slotted dataclasses elsewhere, but a ``NamedTuple``: every received
    and every sent segment builds one, and a frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` per field) measured 1.25 µs
    against 0.28 µs here, 0.12 µs through ``_new`` in :meth:`parse`.
    """

    src_port: int
    "Source port."
    dst_port: int
    "Destination port."
    seq: int
    "Sequence number (32-bit)."
    ack: int
    "Acknowledgment number (32-bit; meaningful only with ACK)."
    flags: int
    "Control bits, an int of :class:`TcpFlags` values."
    window: int
    "Raw window field (unscaled)."
    urgent: int = 0
    "Urgent pointer (meaningful only with URG)."
    mss: int | None = None
    "Maximum Segment Size option (RFC 9293 §3.7.1), SYN segments only."
    wscale: int | None = None
    "Window Scale shift (RFC 7323 §2), SYN segments only; raw value."
    sack_permitted: bool = False
    "SACK-Permitted option (RFC 2018 §2), SYN segments only."
    sack_blocks: tuple[tuple[int, int], ...] = ()
    "SACK blocks ``(left, right)`` (RFC 2018 §3), 32-bit edges."
    timestamps: tuple[int, int] | None = None
    "``(TSval, TSecr)`` (RFC 7323 §3)."
    payload: bytes = b""
    "Segment data."

    # -- decoding ---------------------------------------------------------

    @classmethod
    def parse(
        cls,
        buf: bytes | bytearray | memoryview,
        src: bytes,
        dst: bytes,
        *,
        verify_checksum: bool = True,
    ) -> "TcpSegment":
        """Decode the TCP segment that is all of ``buf`` (the IPv6 payload).

        ``src``/``dst`` are the 16-byte IPv6 addresses of the packet, needed
        for the pseudo-header checksum (RFC 9293 §3.1, RFC 8200 §8.1).
        Raises :class:`ParseError` for anything malformed.
        """
        n = len(buf)
        if n < TCP_HEADER_LEN:
            raise ParseError(DropReason.TRUNCATED, f"TCP segment of {n} bytes")
        sport, dport, seq, ack, off, flags, window, _csum, urgent = _HEADER.unpack_from(buf)
        hlen = (off >> 4) << 2
        if hlen < TCP_HEADER_LEN:
            raise ParseError(DropReason.BAD_HEADER, f"data offset {hlen >> 2} < 5")
        if hlen > n:
            raise ParseError(DropReason.TRUNCATED, f"data offset {hlen} past {n} bytes")
        if verify_checksum:
            # An intact segment sums to the one's-complement zero 0xffff,
            # which is 0 modulo 0xffff.
            if (_pseudo_sum(src, dst, n) + sum16(buf)) % 0xFFFF:
                raise ParseError(DropReason.BAD_CHECKSUM, "TCP checksum")
        if hlen == TCP_HEADER_LEN:
            return _new(cls, (sport, dport, seq, ack, flags, window, urgent, None, None, False,
                              (), None, bytes(buf[hlen:])))
        if hlen == 32 and buf[20:24] == _NOP_NOP_TS_BYTES:
            return _new(cls, (sport, dport, seq, ack, flags, window, urgent, None, None, False,
                              (), _TWO_U32.unpack_from(buf, 24), bytes(buf[hlen:])))
        mss, wscale, sack_ok, blocks, ts = _parse_options(buf, hlen)
        return _new(cls, (sport, dport, seq, ack, flags, window, urgent, mss, wscale, sack_ok,
                          blocks, ts, bytes(buf[hlen:])))

    # -- encoding ---------------------------------------------------------

    def options_bytes(self) -> bytes:
        """The encoded options, padded with NOPs/EOL to a multiple of 4.

        Layout (Linux's): MSS; SACK-Permitted folded into the two NOPs in
        front of Timestamps; NOP + Window Scale; NOP NOP + SACK blocks.
        """
        ts = self.timestamps
        if (
            self.mss is None and self.wscale is None and not self.sack_permitted
            and not self.sack_blocks
        ):
            if ts is None:
                return b""
            return _NOP_NOP_TS.pack(_NOP_NOP_TS_PREFIX, ts[0], ts[1])
        out = bytearray()
        if self.mss is not None:
            out += b"\x02\x04" + _U16.pack(self.mss)
        if ts is not None:
            prefix = _SACKOK_TS if self.sack_permitted else _NOP_NOP_TS_PREFIX
            out += _NOP_NOP_TS.pack(prefix, ts[0], ts[1])
        elif self.sack_permitted:
            out += b"\x01\x01\x04\x02"
        if self.wscale is not None:
            out += b"\x01\x03\x03" + bytes((self.wscale,))
        if self.sack_blocks:
            out += b"\x01\x01\x05" + bytes((2 + 8 * len(self.sack_blocks),))
            for left, right in self.sack_blocks:
                out += _TWO_U32.pack(left, right)
        if len(out) > TCP_MAX_OPTIONS_LEN:
            raise ValueError(f"TCP options need {len(out)} > 40 bytes")
        return bytes(out)

    def buffer_len(self) -> int:
        """Length of the emitted segment (header, options, payload)."""
        return TCP_HEADER_LEN + len(self.options_bytes()) + len(self.payload)

    def emit_parts(self, src: bytes, dst: bytes) -> tuple[bytes, bytes]:
        """``(header with options and checksum, payload)`` for src -> dst.

        Lets the IPv6 layer build the packet with a single join instead of
        copying the payload twice.
        """
        opts = self.options_bytes()
        hlen = TCP_HEADER_LEN + len(opts)
        payload = self.payload
        header = _HEADER.pack(
            self.src_port, self.dst_port, self.seq, self.ack, hlen << 2, self.flags,
            self.window, 0, self.urgent,
        ) + opts
        s = _pseudo_sum(src, dst, hlen + len(payload)) + sum16(header)
        if payload:
            s += sum16(payload)
        csum = ~fold16(s) & 0xFFFF
        return header[:16] + _CHECKSUM.pack(csum) + header[18:], payload

    def emit(self, src: bytes, dst: bytes) -> bytes:
        """The whole segment with its checksum (RFC 9293 §3.1) for src -> dst."""
        header, payload = self.emit_parts(src, dst)
        return header + payload

    # -- conveniences -----------------------------------------------------

    @property
    def seg_len(self) -> int:
        """SEG.LEN (RFC 9293 §3.3.1): payload plus one for each of SYN and FIN."""
        return len(self.payload) + (self.flags & SYN) // SYN + (self.flags & FIN)

    def __repr__(self) -> str:
        f = "|".join(n for n, v in TcpFlags.__members__.items() if self.flags & v) or "-"
        extra = ""
        if self.mss is not None:
            extra += f" mss={self.mss}"
        if self.wscale is not None:
            extra += f" ws={self.wscale}"
        if self.sack_permitted:
            extra += " sackok"
        if self.sack_blocks:
            extra += f" sack={list(self.sack_blocks)}"
        if self.timestamps is not None:
            extra += f" ts={self.timestamps[0]},{self.timestamps[1]}"
        return (
            f"<TcpSegment {self.src_port}->{self.dst_port} {f} seq={self.seq} ack={self.ack}"
            f" win={self.window}{extra} len={len(self.payload)}>"
        )


def _parse_options(
    buf: bytes | bytearray | memoryview, hlen: int
) -> tuple[int | None, int | None, bool, tuple[tuple[int, int], ...], tuple[int, int] | None]:
    """Walk the options area ``buf[20:hlen]`` (RFC 9293 §3.2)."""
    mss: int | None = None
    wscale: int | None = None
    sack_ok = False
    blocks: tuple[tuple[int, int], ...] = ()
    ts: tuple[int, int] | None = None
    i = TCP_HEADER_LEN
    while i < hlen:
        kind = buf[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= hlen:
            raise _bad(f"option {kind} without a length byte")
        length = buf[i + 1]
        if length < 2:
            raise _bad(f"option {kind} with length {length}")
        end = i + length
        if end > hlen:
            raise _bad(f"option {kind} runs past the header")
        if kind == OPT_MSS:
            if length != 4:
                raise _bad(f"MSS option length {length}")
            mss = _U16.unpack_from(buf, i + 2)[0]
        elif kind == OPT_WSCALE:
            if length != 3:
                raise _bad(f"window scale option length {length}")
            wscale = buf[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise _bad(f"SACK-permitted option length {length}")
            sack_ok = True
        elif kind == OPT_SACK:
            if length < 10 or (length - 2) % 8:
                raise _bad(f"SACK option length {length}")
            blocks = tuple(_TWO_U32.unpack_from(buf, j) for j in range(i + 2, end, 8))
        elif kind == OPT_TIMESTAMPS:
            if length != 10:
                raise _bad(f"timestamps option length {length}")
            ts = _TWO_U32.unpack_from(buf, i + 2)
        i = end
    return mss, wscale, sack_ok, blocks, ts


# ---------------------------------------------------------------------------
# Sequence-number arithmetic (RFC 9293 §3.4): modulo 2**32.
# ---------------------------------------------------------------------------


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2**32."""
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` in -2**31 .. 2**31-1."""
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """``a < b`` in sequence space."""
    return ((a - b) & SEQ_MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    """``a <= b`` in sequence space."""
    return a == b or ((a - b) & SEQ_MASK) >= _HALF


def seq_gt(a: int, b: int) -> bool:
    """``a > b`` in sequence space."""
    return ((b - a) & SEQ_MASK) >= _HALF


def seq_ge(a: int, b: int) -> bool:
    """``a >= b`` in sequence space."""
    return a == b or ((b - a) & SEQ_MASK) >= _HALF


def seq_unwrap(value: int, reference: int) -> int:
    """The unbounded integer congruent to ``value`` mod 2**32 nearest ``reference``.

    The machine keeps sequence numbers as unbounded integers (ISS + bytes
    sent, never wrapped) so comparisons are plain ``<``; a 32-bit value from
    the wire is mapped to the candidate within 2**31 of a known point.
    """
    return reference + (((value - reference + _HALF) & SEQ_MASK) - _HALF)


def ts_lt(a: int, b: int) -> bool:
    """Timestamp comparison modulo 2**32 (RFC 7323 §5.2): ``a < b``."""
    return a != b and ((a - b) & SEQ_MASK) >= _HALF
