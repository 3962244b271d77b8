"""RFC 6081 §4 trailers: type-length-value options after the IPv6 packet.

A Teredo UDP payload may carry bytes after the IPv6 packet (40 + payload
length); RFC 6081 makes them a list of trailers::

    +--------+--------+------------------ ... 
    |  Type  | Length |  Value (Length bytes)
    +--------+--------+------------------ ...

Codes (verify before extending; see docs/client.md for provenance):

======  ==========================  ====================================
 Type    Trailer                     Used by
======  ==========================  ====================================
 0x01    Nonce (4-byte nonce)        Symmetric NAT support (§3.1, §5.2)
 0x03    Alternate Address           Hairpinning (§3.5, §5.6)
 0x04    Neighbor Discovery Option   Server load reduction (§3.6, §5.7)
 0x05    Random Port (2-byte port)   Port-preserving NAT (§3.3, §5.4)
======  ==========================  ====================================

The Alternate Address layout (2 reserved bytes, then 1-4 entries of IPv4
address + port, lengths 8, 14, 20, 26) was checked against [MS-TERE]
§2.2.2; the other three codes come from our reading of RFC 6081 §4 and are
marked as such in docs/client.md.  Unknown trailer types are skipped
(RFC 6081 §4: receivers ignore trailers they do not understand); a
trailer running past the datagram is a ParseError(BAD_TRAILER).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from proxy.errors import DropReason, ParseError
from proxy.teredo.ipv4 import ipv4_from_bytes, ipv4_to_bytes

__all__ = [
    "TRAILER_NONCE",
    "TRAILER_ALTERNATE_ADDRESS",
    "TRAILER_ND_OPTION",
    "TRAILER_RANDOM_PORT",
    "Trailers",
    "MAX_ALTERNATES",
]

TRAILER_NONCE = 0x01
TRAILER_ALTERNATE_ADDRESS = 0x03
TRAILER_ND_OPTION = 0x04
TRAILER_RANDOM_PORT = 0x05
#: [MS-TERE] §2.2.2: at most four address/port entries.
MAX_ALTERNATES = 4

_ENTRY = struct.Struct("!4sH")


@dataclass(frozen=True, slots=True)
class Trailers:
    """The trailers of one datagram, decoded; unknown ones are kept raw."""

    nonce: bytes | None = None
    "Nonce trailer value (4 bytes)."
    alternates: tuple[tuple[str, int], ...] = ()
    "Alternate Address trailer entries (IPv4, port)."
    nd_option: int | None = None
    "Neighbor Discovery Option trailer: 0 solicitation, 1 advertisement."
    random_port: int | None = None
    "Random Port trailer value."
    unknown: tuple[tuple[int, bytes], ...] = field(default=())
    "Other (type, value) pairs, in order."

    @classmethod
    def parse(cls, buf: bytes | memoryview) -> "Trailers":
        nonce = nd = port = None
        alternates: tuple[tuple[str, int], ...] = ()
        unknown: list[tuple[int, bytes]] = []
        i, n = 0, len(buf)
        while i < n:
            if n - i < 2:
                raise ParseError(DropReason.BAD_TRAILER, "trailer header truncated")
            typ, length = buf[i], buf[i + 1]
            value = bytes(buf[i + 2 : i + 2 + length])
            if len(value) != length:
                raise ParseError(DropReason.BAD_TRAILER, f"trailer type {typ} runs past the datagram")
            i += 2 + length
            if typ == TRAILER_NONCE:
                if length != 4:
                    raise ParseError(DropReason.BAD_TRAILER, f"nonce trailer length {length}")
                nonce = value
            elif typ == TRAILER_ALTERNATE_ADDRESS:
                if length < 8 or (length - 2) % 6 or (length - 2) // 6 > MAX_ALTERNATES:
                    raise ParseError(DropReason.BAD_TRAILER, f"alternate address trailer length {length}")
                entries = []
                for off in range(2, length, 6):
                    raw, p = _ENTRY.unpack_from(value, off)
                    if p == 0:
                        raise ParseError(DropReason.BAD_TRAILER, "alternate address with port 0")
                    entries.append((ipv4_from_bytes(raw), p))
                alternates = tuple(entries)
            elif typ == TRAILER_ND_OPTION:
                if length != 4:
                    raise ParseError(DropReason.BAD_TRAILER, f"ND option trailer length {length}")
                nd = value[0]
            elif typ == TRAILER_RANDOM_PORT:
                if length != 2:
                    raise ParseError(DropReason.BAD_TRAILER, f"random port trailer length {length}")
                port = int.from_bytes(value, "big")
            else:
                unknown.append((typ, value))
        return cls(nonce, alternates, nd, port, tuple(unknown))

    def emit(self) -> bytes:
        out = b""
        if self.nonce is not None:
            if len(self.nonce) != 4:
                raise ValueError("the nonce trailer carries 4 bytes")
            out += bytes((TRAILER_NONCE, 4)) + self.nonce
        if self.alternates:
            if len(self.alternates) > MAX_ALTERNATES:
                raise ValueError("at most four alternate addresses")
            body = b"\0\0" + b"".join(_ENTRY.pack(ipv4_to_bytes(a), p) for a, p in self.alternates)
            out += bytes((TRAILER_ALTERNATE_ADDRESS, len(body))) + body
        if self.nd_option is not None:
            out += bytes((TRAILER_ND_OPTION, 4, self.nd_option & 0xFF, 0, 0, 0))
        if self.random_port is not None:
            out += bytes((TRAILER_RANDOM_PORT, 2)) + self.random_port.to_bytes(2, "big")
        for typ, value in self.unknown:
            out += bytes((typ, len(value))) + value
        return out

    def buffer_len(self) -> int:
        return len(self.emit())
