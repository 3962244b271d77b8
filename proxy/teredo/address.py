"""Teredo IPv6 addresses (RFC 4380 §4, flags updated by RFC 5991 §4).

::

    +-------------+-------------+-------+------+-------------+
    | Prefix      | Server IPv4 | Flags | Port | Client IPv4 |
    +-------------+-------------+-------+------+-------------+
      32 bits       32 bits      16      16     32 bits
                                 CRAAAAUG AAAAAAAA

Port and client IPv4 are obfuscated (XOR with all ones) "so that NATs that
rewrite IPv4 addresses found in payloads do not touch them" (§4).  C is the
cone flag, the twelve A bits are random (RFC 5991), R/U/G are zero.

Besides the :class:`TeredoAddress` repr, the module offers allocation-light
helpers for hot paths that only need one field of a 16-byte address.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from proxy.constants import FLAG_CONE, FLAG_RANDOM_MASK, TEREDO_PORT, TEREDO_PREFIX
from proxy.errors import DropReason, ParseError
from proxy.teredo.ipv4 import ipv4_from_bytes, ipv4_to_bytes

__all__ = [
    "TeredoAddress",
    "is_teredo",
    "mapped_endpoint",
    "server_ipv4",
    "server_link_local",
    "obfuscate_port",
    "obfuscate_ipv4",
]

_ADDR = struct.Struct("!I4sHH4s")
_PREFIX_BYTES = TEREDO_PREFIX.to_bytes(4, "big")


def obfuscate_port(port: int) -> int:
    """RFC 4380 §4: the port is carried XORed with 0xffff (self-inverse)."""
    return port ^ 0xFFFF


def obfuscate_ipv4(raw: bytes) -> bytes:
    """RFC 4380 §4: the IPv4 address is carried XORed with all ones."""
    return (int.from_bytes(raw, "big") ^ 0xFFFFFFFF).to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class TeredoAddress:
    """A decoded Teredo address; IPv4 addresses as dotted quads."""

    server: str
    "IPv4 address of the Teredo server that qualified the client."
    flags: int
    "The 16-bit flags field (cone bit, random bits)."
    port: int
    "The client's mapped UDP port (de-obfuscated)."
    client: str
    "The client's mapped IPv4 address (de-obfuscated)."
    prefix: int = TEREDO_PREFIX
    "The 32-bit service prefix."

    @classmethod
    def parse(cls, addr: bytes | bytearray | memoryview | str, prefix: int | None = TEREDO_PREFIX) -> "TeredoAddress":
        """Decode a 16-byte (or textual) IPv6 address.

        ``prefix=None`` accepts any prefix (a relay configured for another
        /32); otherwise an address outside ``prefix`` is a ParseError.
        """
        if isinstance(addr, str):
            try:
                raw = IPv6Address(addr).packed
            except ValueError:
                raise ParseError(DropReason.NOT_TEREDO_SOURCE, f"not an IPv6 address: {addr!r}") from None
        else:
            raw = bytes(addr)
            if len(raw) != 16:
                raise ParseError(DropReason.TRUNCATED, "an IPv6 address has 16 bytes")
        pfx, server, flags, oport, oclient = _ADDR.unpack(raw)
        if prefix is not None and pfx != prefix:
            raise ParseError(DropReason.NOT_TEREDO_SOURCE, f"prefix {pfx:08x} is not {prefix:08x}")
        return cls(
            server=ipv4_from_bytes(server),
            flags=flags,
            port=oport ^ 0xFFFF,
            client=ipv4_from_bytes(obfuscate_ipv4(oclient)),
            prefix=pfx,
        )

    def emit(self) -> bytes:
        """The 16-byte address."""
        return _ADDR.pack(
            self.prefix,
            ipv4_to_bytes(self.server),
            self.flags,
            self.port ^ 0xFFFF,
            obfuscate_ipv4(ipv4_to_bytes(self.client)),
        )

    @property
    def cone(self) -> bool:
        """RFC 4380 §4: the client believed it was behind a cone NAT."""
        return bool(self.flags & FLAG_CONE)

    @property
    def random_bits(self) -> int:
        """RFC 5991 §4: the 12 random bits of the flags field."""
        return self.flags & FLAG_RANDOM_MASK

    @property
    def mapped(self) -> tuple[str, int]:
        """The client's public endpoint as seen by its server."""
        return (self.client, self.port)

    def __str__(self) -> str:
        return str(IPv6Address(self.emit()))


def is_teredo(addr: bytes | memoryview, prefix: bytes = _PREFIX_BYTES) -> bool:
    """Whether the 16-byte address lies in the Teredo ``prefix`` (4 bytes)."""
    return addr[:4] == prefix


def mapped_endpoint(addr: bytes | memoryview) -> tuple[str, int]:
    """The de-obfuscated (IPv4, port) embedded in a Teredo address."""
    oport = (addr[10] << 8) | addr[11]
    return ipv4_from_bytes(obfuscate_ipv4(bytes(addr[12:16]))), oport ^ 0xFFFF


def server_ipv4(addr: bytes | memoryview) -> str:
    """The server IPv4 embedded in a Teredo address (bits 32-63)."""
    return ipv4_from_bytes(addr[4:8])


def server_link_local(server: str, port: int = TEREDO_PORT) -> bytes:
    """The link-local address a server uses as RA source (RFC 4380 §5.3.2).

    Miredo forms it like a Teredo interface identifier with the cone bit
    set: ``fe80::8000:<~port>:<~server IPv4>``, for example
    ``fe80::8000:f227:3fff:fdfe`` for 192.0.2.1.
    """
    return (
        b"\xfe\x80" + b"\0" * 6 + FLAG_CONE.to_bytes(2, "big")
        + (port ^ 0xFFFF).to_bytes(2, "big") + obfuscate_ipv4(ipv4_to_bytes(server))
    )
