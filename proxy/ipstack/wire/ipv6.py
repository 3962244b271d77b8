"""The fixed IPv6 header (RFC 8200 §3).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Traffic Class |           Flow Label                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Payload Length        |  Next Header  |   Hop Limit   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Source Address (128 bits)                     |
    |              Destination Address (128 bits)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``Ipv6Header.parse`` checks lengths once (version 6, 40 bytes, payload length
within the buffer); after it returns, every slice of the packet is safe.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from proxy.errors import DropReason, ParseError

__all__ = ["IPV6_HEADER_LEN", "NextHeader", "Ipv6Header", "IPV6_HEADER"]

IPV6_HEADER_LEN = 40

#: ``!IHBB16s16s``: version/class/flow word, payload length, next header,
#: hop limit, source, destination.
IPV6_HEADER = struct.Struct("!IHBB16s16s")


class NextHeader(enum.IntEnum):
    """IANA protocol numbers that appear as IPv6 Next Header values."""

    HOP_BY_HOP = 0
    TCP = 6
    UDP = 17
    ROUTING = 43
    FRAGMENT = 44
    ESP = 50
    AH = 51
    ICMPV6 = 58
    NO_NEXT_HEADER = 59
    DESTINATION_OPTIONS = 60
    MOBILITY = 135


@dataclass(frozen=True, slots=True)
class Ipv6Header:
    """A parsed fixed IPv6 header; addresses are 16-byte ``bytes``."""

    src: bytes
    "Source address."
    dst: bytes
    "Destination address."
    next_header: int
    "Protocol of the first extension header or of the payload."
    payload_len: int
    "Payload length: bytes after the fixed header (extensions included)."
    hop_limit: int = 64
    "Hop limit."
    traffic_class: int = 0
    "Traffic class (DSCP + ECN)."
    flow_label: int = 0
    "Flow label (20 bits)."

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> "Ipv6Header":
        """Decode the fixed header of the IPv6 packet at the start of ``buf``.

        ``buf`` may carry trailing bytes after the packet (Teredo trailers);
        they are not part of the packet.
        """
        if len(buf) < IPV6_HEADER_LEN:
            raise ParseError(DropReason.IPV6_TRUNCATED, f"{len(buf)} < 40 bytes")
        word, plen, nxt, hlim, src, dst = IPV6_HEADER.unpack_from(buf)
        if word >> 28 != 6:
            raise ParseError(DropReason.NOT_IPV6, f"version {word >> 28}")
        if IPV6_HEADER_LEN + plen > len(buf):
            raise ParseError(
                DropReason.IPV6_TRUNCATED, f"payload length {plen} > {len(buf) - 40} available"
            )
        return cls(
            src=src,
            dst=dst,
            next_header=nxt,
            payload_len=plen,
            hop_limit=hlim,
            traffic_class=(word >> 20) & 0xFF,
            flow_label=word & 0xFFFFF,
        )

    def buffer_len(self) -> int:
        """Length of the whole packet this header describes."""
        return IPV6_HEADER_LEN + self.payload_len

    def emit(self) -> bytes:
        """The 40 header bytes."""
        word = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        return IPV6_HEADER.pack(
            word, self.payload_len, self.next_header, self.hop_limit, self.src, self.dst
        )
