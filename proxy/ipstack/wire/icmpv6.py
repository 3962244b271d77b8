"""ICMPv6 messages (RFC 4443): echo and the four error messages.

::

     0                   1                   2                   3
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            type-specific word (id/seq, MTU, pointer)          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     body ...                                  |

Reprs do not compute checksums implicitly: ``emit(src, dst)`` takes the
pseudo-header addresses because the checksum covers them.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.checksum import pseudo_header_sum, checksum
from proxy.ipstack.wire.ipv6 import IPV6_HEADER_LEN, NextHeader, find_upper_layer

__all__ = [
    "Icmpv6Type",
    "ICMPV6_HEADER",
    "Echo",
    "Icmpv6Error",
    "icmpv6_checksum",
    "icmpv6_checksum_ok",
    "with_checksum",
    "UnreachableCode",
    "TimeExceededCode",
    "QuotedPacket",
    "is_error_type",
]

ICMPV6_HEADER = struct.Struct("!BBHI")


class Icmpv6Type(enum.IntEnum):
    """ICMPv6 message types used here (RFC 4443 §2.1, RFC 4861 §4)."""

    DEST_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAMETER_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129
    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136


class UnreachableCode(enum.IntEnum):
    """Destination Unreachable codes (RFC 4443 §3.1)."""

    NO_ROUTE = 0
    ADMIN_PROHIBITED = 1
    BEYOND_SCOPE = 2
    ADDRESS = 3
    PORT = 4
    SOURCE_POLICY = 5
    REJECT_ROUTE = 6


class TimeExceededCode(enum.IntEnum):
    """Time Exceeded codes (RFC 4443 §3.3)."""

    HOP_LIMIT = 0
    REASSEMBLY = 1


def is_error_type(typ: int) -> bool:
    """RFC 4443 §2.1: types 0-127 are errors, 128-255 informational."""
    return typ < 128


def icmpv6_checksum(src: bytes, dst: bytes, message: bytes | bytearray | memoryview) -> int:
    """Checksum of ``message`` (its checksum field zeroed) sent from src to dst."""
    return checksum(message, pseudo_header_sum(src, dst, len(message), NextHeader.ICMPV6))


def icmpv6_checksum_ok(src: bytes, dst: bytes, message: bytes | bytearray | memoryview) -> bool:
    """True when ``message`` (checksum in place) is intact."""
    return icmpv6_checksum(src, dst, message) == 0


def with_checksum(src: bytes, dst: bytes, message: bytearray) -> bytes:
    message[2:4] = b"\0\0"
    c = icmpv6_checksum(src, dst, message)
    message[2] = c >> 8
    message[3] = c & 0xFF
    return bytes(message)


@dataclass(frozen=True, slots=True)
class Echo:
    """Echo Request or Reply (RFC 4443 §4)."""

    request: bool
    "True for Echo Request (128), False for Echo Reply (129)."
    ident: int
    "Identifier."
    seq: int
    "Sequence number."
    data: bytes = b""
    "Data echoed back by the peer."

    @classmethod
    def parse(cls, message: bytes | bytearray | memoryview) -> "Echo":
        """Decode an echo message (the ICMPv6 part only, checksum not verified)."""
        if len(message) < 8:
            raise ParseError(DropReason.TRUNCATED, "echo shorter than 8 bytes")
        typ, code, _cksum, word = ICMPV6_HEADER.unpack_from(message)
        if typ not in (Icmpv6Type.ECHO_REQUEST, Icmpv6Type.ECHO_REPLY) or code != 0:
            raise ParseError(DropReason.BAD_HEADER, f"not an echo: type {typ} code {code}")
        return cls(typ == Icmpv6Type.ECHO_REQUEST, word >> 16, word & 0xFFFF, bytes(message[8:]))

    def buffer_len(self) -> int:
        return 8 + len(self.data)

    def emit(self, src: bytes, dst: bytes) -> bytes:
        """The ICMPv6 message with its checksum for the given addresses."""
        typ = Icmpv6Type.ECHO_REQUEST if self.request else Icmpv6Type.ECHO_REPLY
        msg = bytearray(ICMPV6_HEADER.pack(typ, 0, 0, (self.ident << 16) | self.seq))
        msg += self.data
        return with_checksum(src, dst, msg)


@dataclass(frozen=True, slots=True)
class Icmpv6Error:
    """One of the four RFC 4443 error messages, quoting the offending packet.

    ``param`` is the type-specific word: unused (0) for Destination
    Unreachable and Time Exceeded, the MTU for Packet Too Big, the pointer
    for Parameter Problem.
    """

    type: int
    "One of 1, 2, 3, 4."
    code: int
    "Type-specific code."
    param: int
    "MTU (type 2), pointer (type 4), else 0."
    invoking: bytes
    "As much of the invoking packet as fits (RFC 4443 §2.4(c))."

    @classmethod
    def parse(cls, message: bytes | bytearray | memoryview) -> "Icmpv6Error":
        if len(message) < 8:
            raise ParseError(DropReason.TRUNCATED, "ICMPv6 error shorter than 8 bytes")
        typ, code, _cksum, word = ICMPV6_HEADER.unpack_from(message)
        if not 1 <= typ <= 4:
            raise ParseError(DropReason.BAD_HEADER, f"type {typ} is not an error")
        return cls(typ, code, word, bytes(message[8:]))

    def buffer_len(self) -> int:
        return 8 + len(self.invoking)

    def emit(self, src: bytes, dst: bytes, max_len: int = 1240) -> bytes:
        """The message, its quote cut so the whole IPv6 packet fits 1280 bytes."""
        msg = bytearray(ICMPV6_HEADER.pack(self.type, self.code, 0, self.param))
        msg += self.invoking[: max_len - 8]
        return with_checksum(src, dst, msg)


@dataclass(frozen=True, slots=True)
class QuotedPacket:
    """What an ICMPv6 error says about the packet that caused it.

    RFC 4443 §2.4(d): the error is handed to the upper-layer process that
    sent the invoking packet, found from the quoted addresses, protocol and
    the first 8 bytes of the upper-layer header (ports, TCP sequence number,
    echo identifier).  Quotes may be truncated anywhere past those bytes.
    """

    src: bytes
    "Source of the invoking packet (one of our addresses, if it was ours)."
    dst: bytes
    "Destination of the invoking packet (the peer)."
    protocol: int
    "Upper-layer protocol of the invoking packet."
    header: bytes
    "The first 8 bytes of its upper-layer header."

    @classmethod
    def parse(cls, invoking: bytes | bytearray | memoryview) -> "QuotedPacket":
        """Decode the quote inside an error message (its body after 8 bytes)."""
        if len(invoking) < IPV6_HEADER_LEN or invoking[0] >> 4 != 6:
            raise ParseError(DropReason.TRUNCATED, "quote without an IPv6 header")
        found = find_upper_layer(invoking)
        if found is None:
            raise ParseError(DropReason.TRUNCATED, "quote without its upper-layer header")
        proto, off = found
        if off + 8 > len(invoking):
            raise ParseError(DropReason.TRUNCATED, "quote shorter than 8 upper-layer bytes")
        return cls(
            bytes(invoking[8:24]), bytes(invoking[24:40]), proto, bytes(invoking[off : off + 8])
        )

    @property
    def ports(self) -> tuple[int, int]:
        """(source port, destination port) for TCP and UDP."""
        h = self.header
        return (h[0] << 8 | h[1], h[2] << 8 | h[3])

    @property
    def tcp_seq(self) -> int:
        """The quoted TCP sequence number (RFC 5927 §4.1 checks it)."""
        return int.from_bytes(self.header[4:8], "big")
