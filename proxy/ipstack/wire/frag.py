"""The IPv6 Fragment header (RFC 8200 §4.5) and source fragmentation.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Identification                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The offset field counts 8-octet units; :class:`FragmentHeader` stores it in
bytes so that callers never multiply.  Only a source fragments in IPv6:
:func:`fragment` splits one of our own packets (fixed header only, no other
extension headers: we originate none) so that each piece fits the path MTU.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.ipv6 import IPV6_HEADER, IPV6_HEADER_LEN, NextHeader

__all__ = ["FRAGMENT_HEADER_LEN", "FragmentHeader", "fragment"]

FRAGMENT_HEADER_LEN = 8

_FRAG = struct.Struct("!BBHI")


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """A parsed Fragment header."""

    next_header: int
    "Protocol of the fragmentable part (only the first fragment's counts)."
    offset: int
    "Offset of this fragment's data in the original payload, in bytes."
    more: bool
    "The M flag: more fragments follow."
    ident: int
    "Identification shared by every fragment of the datagram."

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, at: int = 0) -> "FragmentHeader":
        """Decode the 8-byte header at ``buf[at:]``."""
        if len(buf) < at + FRAGMENT_HEADER_LEN:
            raise ParseError(DropReason.IPV6_TRUNCATED, "fragment header truncated")
        nxt, _res, word, ident = _FRAG.unpack_from(buf, at)
        return cls(nxt, word & 0xFFF8, bool(word & 1), ident)

    def buffer_len(self) -> int:
        return FRAGMENT_HEADER_LEN

    def emit(self) -> bytes:
        if self.offset & 7 or not 0 <= self.offset <= 0xFFF8:
            raise ValueError(f"fragment offset {self.offset} is not a multiple of 8 below 65536")
        return _FRAG.pack(self.next_header, 0, self.offset | int(self.more), self.ident)


def fragment(
    header_word: int,
    hop_limit: int,
    src: bytes,
    dst: bytes,
    next_header: int,
    payload: bytes | bytearray | memoryview,
    mtu: int,
    ident: int,
) -> list[bytes]:
    """Split an upper-layer payload into IPv6 fragments of at most ``mtu`` bytes.

    :param header_word: the first 32 bits of the fixed header (version,
        traffic class, flow label), identical in every fragment.
    :param next_header: the payload's protocol (goes into the Fragment header).
    :param ident: the Identification; RFC 7739 wants it unpredictable, so
        the caller draws it from its RNG.

    Every fragment but the last carries a multiple of 8 bytes (RFC 8200 §4.5).
    """
    chunk = (mtu - IPV6_HEADER_LEN - FRAGMENT_HEADER_LEN) & ~7
    if chunk <= 0:
        raise ValueError(f"MTU {mtu} too small to fragment")
    out: list[bytes] = []
    total = len(payload)
    view = memoryview(payload)
    for off in range(0, total, chunk):
        data = view[off : off + chunk]
        more = off + chunk < total
        hdr = IPV6_HEADER.pack(
            header_word, FRAGMENT_HEADER_LEN + len(data), NextHeader.FRAGMENT, hop_limit, src, dst
        )
        out.append(hdr + _FRAG.pack(next_header, 0, off | int(more), ident) + data)
    return out
