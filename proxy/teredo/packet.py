"""Teredo encapsulation: the UDP payload of every Teredo datagram (RFC 4380 §5.1.1).

A UDP payload is, in this order (authentication MUST come first)::

    [ Authentication indicator ] [ Origin indication ] IPv6 packet [ trailers ]

Authentication indicator (variable, at least 13 bytes)::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Indicator type = 0x0001      |  ID-len       |  AU-len       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Client identifier (ID-len octets) | Authentication (AU-len)  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Nonce (8 octets)                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | Confirmation  |
    +-+-+-+-+-+-+-+-+

Origin indication (8 bytes)::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Indicator type = 0x0000      |  Obfuscated origin port       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Obfuscated origin IPv4 address               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Bytes after the IPv6 packet (40 + payload length) are kept as ``trailer``:
RFC 6081 §4 trailers live there, and Miredo tolerates them too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proxy.constants import AUTH_INDICATOR, NONCE_LEN, ORIGIN_INDICATOR
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.ipv6 import IPV6_HEADER, IPV6_HEADER_LEN, NextHeader
from socket import inet_aton  # pure conversion

from proxy.teredo.ipv4 import ipv4_from_bytes, ipv4_to_bytes

__all__ = ["Authentication", "OriginIndication", "TeredoPacket", "bubble", "ipv6_packet", "origin_indication"]

_ORIGIN = struct.Struct("!HH4s")
_PAYLOAD_LEN = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class Authentication:
    """The authentication indicator (RFC 4380 §5.1.1, §5.2.2)."""

    nonce: bytes
    "8 bytes chosen by the client, echoed by the server."
    confirmation: int = 0
    "0 when the client's key is still valid (§5.2.2)."
    client_id: bytes = b""
    "Client identifier (empty unless secure qualification is configured)."
    auth_value: bytes = b""
    "Authentication value (HMAC over the packet), empty without a key."

    @classmethod
    def parse(cls, buf: bytes | memoryview) -> tuple["Authentication", int]:
        """Decode the indicator at the start of ``buf``; return it and its length."""
        if len(buf) < 4:
            raise ParseError(DropReason.BAD_AUTH_HEADER, "truncated authentication indicator")
        id_len, au_len = buf[2], buf[3]
        end = 4 + id_len + au_len + NONCE_LEN + 1
        if len(buf) < end:
            raise ParseError(DropReason.BAD_AUTH_HEADER, f"authentication indicator needs {end} bytes")
        p = 4 + id_len + au_len
        return (
            cls(
                nonce=bytes(buf[p : p + NONCE_LEN]),
                confirmation=buf[end - 1],
                client_id=bytes(buf[4 : 4 + id_len]),
                auth_value=bytes(buf[4 + id_len : p]),
            ),
            end,
        )

    def buffer_len(self) -> int:
        return 4 + len(self.client_id) + len(self.auth_value) + NONCE_LEN + 1

    def emit(self) -> bytes:
        if len(self.nonce) != NONCE_LEN:
            raise ValueError("the nonce has 8 bytes")
        if len(self.client_id) > 255 or len(self.auth_value) > 255:
            raise ValueError("client id and authentication value are at most 255 bytes")
        return (
            bytes((0, AUTH_INDICATOR, len(self.client_id), len(self.auth_value)))
            + self.client_id + self.auth_value + self.nonce + bytes((self.confirmation,))
        )


@dataclass(frozen=True, slots=True)
class OriginIndication:
    """Where a packet relayed by a server came from (RFC 4380 §5.1.1)."""

    ipv4: str
    "Origin IPv4 address (de-obfuscated)."
    port: int
    "Origin UDP port (de-obfuscated)."

    @classmethod
    def parse(cls, buf: bytes | memoryview) -> "OriginIndication":
        if len(buf) < 8:
            raise ParseError(DropReason.BAD_ORIGIN_INDICATION, "truncated origin indication")
        _t, oport, oaddr = _ORIGIN.unpack_from(buf)
        raw = (int.from_bytes(oaddr, "big") ^ 0xFFFFFFFF).to_bytes(4, "big")
        return cls(ipv4_from_bytes(raw), oport ^ 0xFFFF)

    def buffer_len(self) -> int:
        return 8

    def emit(self) -> bytes:
        raw = int.from_bytes(ipv4_to_bytes(self.ipv4), "big") ^ 0xFFFFFFFF
        return _ORIGIN.pack(ORIGIN_INDICATOR, self.port ^ 0xFFFF, raw.to_bytes(4, "big"))

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.ipv4, self.port)


def origin_indication(endpoint: tuple[str, int]) -> bytes:
    """``OriginIndication(*endpoint).emit()`` without the object: hot-path form."""
    ip, port = endpoint
    return _ORIGIN.pack(ORIGIN_INDICATOR, port ^ 0xFFFF,
                        (int.from_bytes(inet_aton(ip), "big") ^ 0xFFFFFFFF).to_bytes(4, "big"))


@dataclass(frozen=True, slots=True)
class TeredoPacket:
    """A decoded Teredo UDP payload.

    ``ipv6`` is exactly the IPv6 packet (40 + payload length bytes).  When
    parsed from a memoryview it is a view into the datagram: convert to
    ``bytes`` before keeping it beyond the current call.
    """

    ipv6: bytes | memoryview
    "The IPv6 packet, header included."
    auth: Authentication | None = None
    "Authentication indicator, if present."
    origin: OriginIndication | None = None
    "Origin indication, if present."
    trailer: bytes = b""
    "Bytes after the IPv6 packet (RFC 6081 trailers)."

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> "TeredoPacket":
        """Decode a UDP payload; ParseError says why it is unusable."""
        buf = memoryview(data)
        n = len(buf)
        if n < 2:
            raise ParseError(DropReason.TRUNCATED, f"{n}-byte datagram")
        auth = origin = None
        off = 0
        # RFC 4380 §5.1.1: the authentication indicator, if any, comes first.
        if buf[0] == 0 and buf[1] == AUTH_INDICATOR:
            auth, off = Authentication.parse(buf)
        if n - off >= 2 and buf[off] == 0 and buf[off + 1] == ORIGIN_INDICATOR:
            origin = OriginIndication.parse(buf[off:])
            off += 8
        if n - off < IPV6_HEADER_LEN:
            raise ParseError(DropReason.IPV6_TRUNCATED, f"{n - off} bytes left for IPv6")
        if buf[off] >> 4 != 6:
            raise ParseError(DropReason.NOT_IPV6, f"version nibble {buf[off] >> 4}")
        end = off + IPV6_HEADER_LEN + _PAYLOAD_LEN.unpack_from(buf, off + 4)[0]
        if end > n:
            raise ParseError(DropReason.IPV6_TRUNCATED, f"IPv6 packet needs {end - off} bytes, {n - off} left")
        return cls(buf[off:end], auth, origin, bytes(buf[end:]))

    def emit(self) -> bytes:
        """The UDP payload."""
        head = b""
        if self.auth is not None:
            head += self.auth.emit()
        if self.origin is not None:
            head += self.origin.emit()
        return head + bytes(self.ipv6) + self.trailer

    def buffer_len(self) -> int:
        return (
            (self.auth.buffer_len() if self.auth else 0)
            + (8 if self.origin else 0)
            + len(self.ipv6)
            + len(self.trailer)
        )

    # Field accessors on the IPv6 header (safe: parse checked the length).
    @property
    def src(self) -> bytes:
        return bytes(self.ipv6[8:24])

    @property
    def dst(self) -> bytes:
        return bytes(self.ipv6[24:40])

    @property
    def next_header(self) -> int:
        return self.ipv6[6]

    @property
    def hop_limit(self) -> int:
        return self.ipv6[7]

    @property
    def payload(self) -> bytes | memoryview:
        return self.ipv6[IPV6_HEADER_LEN:]

    @property
    def is_bubble(self) -> bool:
        """RFC 4380 §2.8: an IPv6 header with no payload, next header 59."""
        return len(self.ipv6) == IPV6_HEADER_LEN and self.ipv6[6] == NextHeader.NO_NEXT_HEADER


def ipv6_packet(src: bytes, dst: bytes, next_header: int, payload: bytes, hop_limit: int = 64) -> bytes:
    """An IPv6 packet with a plain fixed header (no extension headers)."""
    return IPV6_HEADER.pack(0x60000000, len(payload), next_header, hop_limit, src, dst) + payload


def bubble(src: bytes, dst: bytes, hop_limit: int = 0) -> bytes:
    """A Teredo bubble (RFC 4380 §2.8); Miredo uses hop limit 0."""
    return IPV6_HEADER.pack(0x60000000, 0, NextHeader.NO_NEXT_HEADER, hop_limit, src, dst)
