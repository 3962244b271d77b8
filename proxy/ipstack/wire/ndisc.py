"""Router Solicitation and Router Advertisement (RFC 4861 §4.1, §4.2, §4.6).

Teredo qualification (RFC 4380 §5.2.1, §5.3.2) borrows these two messages:
the client solicits, the server advertises its /64 prefix and the link MTU.

Router Advertisement::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    | Cur Hop Limit |M|O|  Reserved |       Router Lifetime         |
    |                         Reachable Time                        |
    |                          Retrans Timer                        |
    |   Options ...

Prefix Information option (type 3, length 4 = 32 bytes)::

    | Type=3 | Length=4 | Prefix Length |L|A| Rsvd1 |
    |                  Valid Lifetime               |
    |                Preferred Lifetime             |
    |                   Reserved2                   |
    |                 Prefix (16 bytes)             |

MTU option (type 5, length 1)::

    | Type=5 | Length=1 |   Reserved   |   MTU (4)   |
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.icmpv6 import ICMPV6_HEADER, Icmpv6Type, with_checksum

__all__ = [
    "OPT_PREFIX_INFORMATION",
    "OPT_MTU",
    "PrefixInformation",
    "RouterSolicitation",
    "RouterAdvertisement",
]

OPT_SOURCE_LLADDR = 1
OPT_PREFIX_INFORMATION = 3
OPT_MTU = 5

_RA_BODY = struct.Struct("!BBHII")
_PIO = struct.Struct("!BBBBIII16s")
_MTU = struct.Struct("!BBHI")


def _split_options(buf: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
    """Split ND options into ``(type, whole option bytes)``.

    RFC 4861 §4.6: every option has a non-zero length in units of 8 bytes;
    a zero length or an option running past the message is fatal.
    """
    out: list[tuple[int, bytes]] = []
    i, n = 0, len(buf)
    while i < n:
        if n - i < 2:
            raise ParseError(DropReason.TRUNCATED, "ND option header truncated")
        typ, units = buf[i], buf[i + 1]
        if units == 0:
            raise ParseError(DropReason.BAD_HEADER, "ND option with length 0")
        end = i + units * 8
        if end > n:
            raise ParseError(DropReason.TRUNCATED, f"ND option type {typ} runs past the message")
        out.append((typ, bytes(buf[i:end])))
        i = end
    return out


@dataclass(frozen=True, slots=True)
class PrefixInformation:
    """Prefix Information option (RFC 4861 §4.6.2)."""

    prefix: bytes
    "16-byte prefix (bits past ``prefix_len`` are zero on emit)."
    prefix_len: int = 64
    "Prefix length in bits."
    on_link: bool = False
    "L flag."
    autonomous: bool = True
    "A flag."
    valid_lifetime: int = 0xFFFFFFFF
    "Valid lifetime, seconds (0xffffffff = infinity)."
    preferred_lifetime: int = 0xFFFFFFFF
    "Preferred lifetime, seconds."

    @classmethod
    def parse(cls, opt: bytes) -> "PrefixInformation":
        if len(opt) < 32:
            raise ParseError(DropReason.BAD_HEADER, "prefix information shorter than 32 bytes")
        _t, _l, plen, flags, valid, pref, _r, prefix = _PIO.unpack_from(opt)
        if plen > 128:
            raise ParseError(DropReason.BAD_HEADER, f"prefix length {plen}")
        return cls(prefix, plen, bool(flags & 0x80), bool(flags & 0x40), valid, pref)

    def emit(self) -> bytes:
        flags = (0x80 if self.on_link else 0) | (0x40 if self.autonomous else 0)
        return _PIO.pack(
            OPT_PREFIX_INFORMATION, 4, self.prefix_len, flags,
            self.valid_lifetime, self.preferred_lifetime, 0, self.prefix,
        )


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    """Router Solicitation (RFC 4861 §4.1)."""

    options: bytes = b""
    "Raw options (Teredo sends none)."

    @classmethod
    def parse(cls, message: bytes | bytearray | memoryview) -> "RouterSolicitation":
        if len(message) < 8:
            raise ParseError(DropReason.TRUNCATED, "RS shorter than 8 bytes")
        if message[0] != Icmpv6Type.ROUTER_SOLICITATION or message[1] != 0:
            raise ParseError(DropReason.BAD_HEADER, "not a router solicitation")
        _split_options(message[8:])
        return cls(bytes(message[8:]))

    def buffer_len(self) -> int:
        return 8 + len(self.options)

    def emit(self, src: bytes, dst: bytes) -> bytes:
        msg = bytearray(ICMPV6_HEADER.pack(Icmpv6Type.ROUTER_SOLICITATION, 0, 0, 0))
        msg += self.options
        return with_checksum(src, dst, msg)


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    """Router Advertisement (RFC 4861 §4.2) with the options Teredo uses."""

    cur_hop_limit: int = 0
    "Default hop limit suggested to hosts (0 = unspecified)."
    managed: bool = False
    "M flag."
    other: bool = False
    "O flag."
    router_lifetime: int = 0
    "Seconds; 0 = not a default router."
    reachable_time: int = 0
    "Milliseconds."
    retrans_timer: int = 0
    "Milliseconds."
    prefixes: tuple[PrefixInformation, ...] = ()
    "Every Prefix Information option, in order."
    mtu: int | None = None
    "The MTU option's value, if present (the last one wins)."
    other_options: tuple[bytes, ...] = field(default=())
    "Any other options, raw."

    @classmethod
    def parse(cls, message: bytes | bytearray | memoryview) -> "RouterAdvertisement":
        if len(message) < 16:
            raise ParseError(DropReason.TRUNCATED, "RA shorter than 16 bytes")
        if message[0] != Icmpv6Type.ROUTER_ADVERTISEMENT or message[1] != 0:
            raise ParseError(DropReason.BAD_HEADER, "not a router advertisement")
        hop, flags, lifetime, reach, retrans = _RA_BODY.unpack_from(message, 4)
        prefixes: list[PrefixInformation] = []
        mtu: int | None = None
        others: list[bytes] = []
        for typ, opt in _split_options(message[16:]):
            if typ == OPT_PREFIX_INFORMATION:
                prefixes.append(PrefixInformation.parse(opt))
            elif typ == OPT_MTU:
                if len(opt) != 8:
                    raise ParseError(DropReason.BAD_HEADER, "MTU option length")
                mtu = _MTU.unpack(opt)[3]
            else:
                others.append(opt)
        return cls(
            hop, bool(flags & 0x80), bool(flags & 0x40), lifetime, reach, retrans,
            tuple(prefixes), mtu, tuple(others),
        )

    def options_bytes(self) -> bytes:
        out = b"".join(p.emit() for p in self.prefixes)
        if self.mtu is not None:
            out += _MTU.pack(OPT_MTU, 1, 0, self.mtu)
        return out + b"".join(self.other_options)

    def buffer_len(self) -> int:
        return 16 + len(self.options_bytes())

    def emit(self, src: bytes, dst: bytes) -> bytes:
        flags = (0x80 if self.managed else 0) | (0x40 if self.other else 0)
        msg = bytearray(ICMPV6_HEADER.pack(Icmpv6Type.ROUTER_ADVERTISEMENT, 0, 0, 0))
        msg[4:8] = bytes((self.cur_hop_limit, flags)) + self.router_lifetime.to_bytes(2, "big")
        msg += struct.pack("!II", self.reachable_time, self.retrans_timer)
        msg += self.options_bytes()
        return with_checksum(src, dst, msg)
