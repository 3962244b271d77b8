"""UDP over IPv6 (RFC 768, RFC 8200 §8.1).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            Length             |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Over IPv6 the checksum is mandatory (RFC 8200 §8.1): a received checksum of
zero is dropped, and a computed checksum of zero is sent as 0xffff (the
other one's-complement zero), which dpkt forgets for IPv6.  The Length field
may be shorter than the IP payload (trailing bytes are ignored, as Linux
does) but never longer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.checksum import checksum, pseudo_header_sum
from proxy.ipstack.wire.ipv6 import NextHeader

__all__ = ["UDP_HEADER_LEN", "UdpDatagram"]

UDP_HEADER_LEN = 8

_UDP = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A UDP datagram: ports and payload (length and checksum are derived)."""

    src_port: int
    "Source port (0 = none, allowed by RFC 768)."
    dst_port: int
    "Destination port."
    payload: bytes = b""
    "Application data."

    @classmethod
    def parse(
        cls,
        buf: bytes | bytearray | memoryview,
        src: bytes,
        dst: bytes,
        *,
        verify_checksum: bool = True,
    ) -> "UdpDatagram":
        """Decode the UDP datagram in ``buf`` (the IPv6 upper-layer payload).

        :param src: IPv6 source, for the pseudo-header.
        :param dst: IPv6 destination, for the pseudo-header.
        """
        if len(buf) < UDP_HEADER_LEN:
            raise ParseError(DropReason.TRUNCATED, f"UDP datagram of {len(buf)} bytes")
        sport, dport, length, cksum = _UDP.unpack_from(buf)
        if length < UDP_HEADER_LEN or length > len(buf):
            raise ParseError(DropReason.UDP_BAD_LENGTH, f"length {length}, {len(buf)} available")
        if verify_checksum:
            if cksum == 0:
                raise ParseError(DropReason.UDP_ZERO_CHECKSUM, "zero checksum over IPv6")
            view = buf[:length]
            if checksum(view, pseudo_header_sum(src, dst, length, NextHeader.UDP)) != 0:
                raise ParseError(DropReason.BAD_CHECKSUM, "UDP checksum")
        return cls(sport, dport, bytes(buf[UDP_HEADER_LEN:length]))

    def buffer_len(self) -> int:
        return UDP_HEADER_LEN + len(self.payload)

    def emit(self, src: bytes, dst: bytes) -> bytes:
        """Header and payload with the checksum for ``src`` -> ``dst``."""
        length = UDP_HEADER_LEN + len(self.payload)
        if length > 0xFFFF:
            raise ValueError(f"UDP payload of {len(self.payload)} bytes needs a jumbogram")
        head = _UDP.pack(self.src_port, self.dst_port, length, 0)
        c = checksum(head + self.payload, pseudo_header_sum(src, dst, length, NextHeader.UDP))
        return _UDP.pack(self.src_port, self.dst_port, length, c or 0xFFFF) + self.payload
