"""The fixed IPv6 header (RFC 8200 §3) and the extension-header walk (§4).

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

Extension headers (RFC 8200 §4) are walked by :func:`walk_extension_headers`,
the receiver's strict walk: it processes Hop-by-Hop and Destination Options
(option action bits, §4.2) and Routing headers (§4.4), and stops at the first
Fragment header or upper-layer header.  Errors the RFC answers with an ICMPv6
Parameter Problem raise :class:`ParamProblem` (code and pointer included);
errors it answers with silence raise a plain :class:`ParseError`.
:func:`find_upper_layer` is the lenient walk used on packets we only look
into (quotes inside ICMPv6 errors, invoking packets of our own errors).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from proxy.constants import IPV6_MAX_EXTENSION_HEADERS
from proxy.errors import DropReason, ParseError

__all__ = [
    "IPV6_HEADER_LEN",
    "NextHeader",
    "Ipv6Header",
    "IPV6_HEADER",
    "ParamProblemCode",
    "ParamProblem",
    "HeaderChain",
    "walk_extension_headers",
    "find_upper_layer",
    "is_multicast",
    "UNSPECIFIED",
]

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


#: The unspecified address ``::`` (RFC 4291 §2.5.2).
UNSPECIFIED = bytes(16)

#: Extension headers that share the (next header, length in 8-octet units
#: beyond the first 8) layout and that this stack walks (RFC 8200 §4).
_OPTIONS_HEADERS = (NextHeader.HOP_BY_HOP, NextHeader.DESTINATION_OPTIONS)

#: Option types that need no action beyond skipping (RFC 8200 §4.2):
#: Pad1 (0) and PadN (1) everywhere; Router Alert (5, RFC 2711) is a router's
#: business; Tunnel Encapsulation Limit (4, RFC 2473) a tunnel entry's.
_KNOWN_OPTIONS = frozenset({0, 1, 4, 5})


def is_multicast(addr: bytes) -> bool:
    """True for ff00::/8 (RFC 4291 §2.7)."""
    return addr[0] == 0xFF


class ParamProblemCode(enum.IntEnum):
    """ICMPv6 Parameter Problem codes (RFC 4443 §3.4, RFC 7112 §6)."""

    ERRONEOUS_HEADER = 0
    UNRECOGNIZED_NEXT_HEADER = 1
    UNRECOGNIZED_OPTION = 2
    INCOMPLETE_CHAIN = 3


class ParamProblem(ParseError):
    """A drop that RFC 8200 answers with an ICMPv6 Parameter Problem.

    ``pointer`` is the byte offset of the offending field from the start of
    the invoking packet.  ``to_multicast`` says whether the error is sent even
    when the packet was addressed to a multicast group: RFC 8200 §4.2 action
    ``10`` does, everything else does not (RFC 4443 §2.4(e.3)).
    """

    def __init__(
        self,
        reason: DropReason,
        code: ParamProblemCode,
        pointer: int,
        *,
        to_multicast: bool = False,
        detail: str = "",
    ) -> None:
        super().__init__(reason, detail)
        self.code = code
        self.pointer = pointer
        self.to_multicast = to_multicast


@dataclass(frozen=True, slots=True)
class HeaderChain:
    """Where the walk stopped: an upper-layer header or a Fragment header."""

    protocol: int
    "Next Header value found (an upper layer, 44 for Fragment, 59, or unknown)."
    offset: int
    "Offset of that header from the start of the packet."
    nh_offset: int
    "Offset of the Next Header field that named it (Parameter Problem pointer)."


def _walk_options(
    packet: bytes | bytearray | memoryview, start: int, end: int, multicast_dst: bool
) -> None:
    """Process the TLV options between ``start`` and ``end`` (RFC 8200 §4.2).

    Unrecognised options are handled by the two high-order bits of their
    type: ``00`` skip, ``01`` discard silently, ``10`` discard and send a
    Parameter Problem code 2 even to a multicast destination, ``11`` discard
    and send it only if the destination was not multicast.
    """
    i = start
    while i < end:
        opt = packet[i]
        if opt == 0:  # Pad1
            i += 1
            continue
        if i + 2 > end or i + 2 + packet[i + 1] > end:
            raise ParseError(DropReason.BAD_HEADER, f"option {opt} runs past its header")
        if opt not in _KNOWN_OPTIONS:
            action = opt >> 6
            if action == 1:
                raise ParseError(DropReason.UNKNOWN_OPTION, f"option {opt:#x}, action 01")
            if action == 2 or (action == 3 and not multicast_dst):
                raise ParamProblem(
                    DropReason.UNKNOWN_OPTION,
                    ParamProblemCode.UNRECOGNIZED_OPTION,
                    i,
                    to_multicast=True,
                    detail=f"option {opt:#x}",
                )
            if action == 3:
                raise ParseError(DropReason.UNKNOWN_OPTION, f"option {opt:#x} to multicast")
        i += 2 + packet[i + 1]


def walk_extension_headers(
    packet: bytes | bytearray | memoryview,
    end: int,
    multicast_dst: bool,
    *,
    start: int = IPV6_HEADER_LEN,
    next_header: int | None = None,
    nh_offset: int = 6,
) -> HeaderChain:
    """Walk the extension headers of ``packet[:end]`` as a receiving host.

    :param packet: a whole IPv6 packet whose fixed header was already checked.
    :param end: ``40 + payload length``: bytes past it are not the packet's.
    :param multicast_dst: the destination was a multicast group (RFC 8200 §4.2).
    :param start: where the first header after ``next_header`` starts.
    :param next_header: the Next Header value naming it (default: byte 6).
    :param nh_offset: where that Next Header value lives (pointer for errors).
    :raises ParamProblem: the RFC wants an ICMPv6 Parameter Problem.
    :raises ParseError: the packet is dropped silently.

    Hop-by-Hop is legal only right after the fixed header (RFC 8200 §4.3);
    elsewhere it is an unrecognised Next Header (code 1), as Linux treats it.
    """
    nxt = packet[6] if next_header is None else next_header
    i = start
    for count in range(IPV6_MAX_EXTENSION_HEADERS + 1):
        if nxt in _OPTIONS_HEADERS:
            if nxt == NextHeader.HOP_BY_HOP and i != IPV6_HEADER_LEN:
                raise ParamProblem(
                    DropReason.HOP_BY_HOP_POSITION,
                    ParamProblemCode.UNRECOGNIZED_NEXT_HEADER,
                    nh_offset,
                    detail=f"hop-by-hop header at offset {i}",
                )
            if i + 8 > end or i + (packet[i + 1] + 1) * 8 > end:
                raise ParseError(DropReason.IPV6_TRUNCATED, f"header {nxt} runs past the packet")
            hend = i + (packet[i + 1] + 1) * 8
            _walk_options(packet, i + 2, hend, multicast_dst)
        elif nxt == NextHeader.ROUTING:
            if i + 8 > end or i + (packet[i + 1] + 1) * 8 > end:
                raise ParseError(DropReason.IPV6_TRUNCATED, "routing header runs past the packet")
            hend = i + (packet[i + 1] + 1) * 8
            # RFC 8200 §4.4: with Segments Left zero the header is ignored;
            # otherwise every routing type is unrecognised here (we forward
            # nothing; type 0 is deprecated by RFC 5095 and treated alike).
            if packet[i + 3] != 0:
                raise ParamProblem(
                    DropReason.ROUTING_HEADER,
                    ParamProblemCode.ERRONEOUS_HEADER,
                    i + 2,
                    detail=f"routing type {packet[i + 2]}, segments left {packet[i + 3]}",
                )
        else:
            return HeaderChain(nxt, i, nh_offset)
        if count == IPV6_MAX_EXTENSION_HEADERS:
            break
        nh_offset = i
        nxt = packet[i]
        i = hend
    raise ParseError(DropReason.EXTENSION_HEADER_LIMIT, "too many extension headers")


def find_upper_layer(
    packet: bytes | bytearray | memoryview, end: int | None = None
) -> tuple[int, int] | None:
    """Skip extension headers without judging them: ``(protocol, offset)``.

    Used on packets we only inspect (the quote inside an ICMPv6 error, the
    invoking packet of an error we might send).  Returns None when the chain
    is truncated, too long, or reaches a non-first fragment (whose upper
    layer cannot be known).  The offset may equal ``end`` (empty payload).
    """
    n = len(packet) if end is None else min(end, len(packet))
    if n < IPV6_HEADER_LEN:
        return None
    nxt = packet[6]
    i = IPV6_HEADER_LEN
    for _ in range(IPV6_MAX_EXTENSION_HEADERS):
        if nxt in (NextHeader.HOP_BY_HOP, NextHeader.DESTINATION_OPTIONS, NextHeader.ROUTING):
            if i + 2 > n:
                return None
            nxt, i = packet[i], i + (packet[i + 1] + 1) * 8
        elif nxt == NextHeader.FRAGMENT:
            if i + 8 > n:
                return None
            if (packet[i + 2] << 8 | packet[i + 3]) & 0xFFF8:
                return None
            nxt, i = packet[i], i + 8
        elif nxt == NextHeader.AH:
            if i + 2 > n:
                return None
            nxt, i = packet[i], i + (packet[i + 1] + 2) * 4
        else:
            return (nxt, i) if i <= n else None
        if i > n:
            return None
    return None
