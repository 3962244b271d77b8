"""IPv6 packet builders and readers for tests (packetimpact style).

Tests of the userspace stack talk to it in raw packets, as gVisor's
packetimpact testbench talks to a device under test: these helpers build
exactly the bytes a test wants (extension headers, fragments, bad options)
and pick apart what the stack sends back.  They use the project's own
codecs where those exist, so a codec bug cannot hide behind a second one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from proxy.ipstack.wire.checksum import checksum, pseudo_header_sum
from proxy.ipstack.wire.icmpv6 import Echo
from proxy.ipstack.wire.ipv6 import IPV6_HEADER, NextHeader, find_upper_layer
from proxy.ipstack.wire.udp import UdpDatagram

__all__ = [
    "addr",
    "ipv6",
    "options_header",
    "fragment_header",
    "fragments",
    "udp_packet",
    "echo_request",
    "icmp_message",
    "icmp_error",
    "Parsed",
    "parse",
]


def addr(text: str) -> bytes:
    """16 bytes from an IPv6 literal (inet_pton without importing socket)."""
    import ipaddress

    return ipaddress.IPv6Address(text).packed


def ipv6(
    src: bytes,
    dst: bytes,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    payload_len: int | None = None,
) -> bytes:
    """A fixed header (payload length computed unless given) and payload."""
    plen = len(payload) if payload_len is None else payload_len
    return IPV6_HEADER.pack(6 << 28, plen, next_header, hop_limit, src, dst) + payload


def options_header(next_header: int, options: bytes) -> bytes:
    """A Hop-by-Hop or Destination Options header around ``options``.

    ``options`` is padded with PadN/Pad1 to a multiple of 8 with the 2-byte
    header.
    """
    body = bytes(options)
    pad = (-(len(body) + 2)) % 8
    if pad == 1:
        body += b"\x00"
    elif pad:
        body += bytes((1, pad - 2)) + bytes(pad - 2)
    return bytes((next_header, (len(body) + 2) // 8 - 1)) + body


def fragment_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset | int(more), ident)


def fragments(
    src: bytes,
    dst: bytes,
    next_header: int,
    payload: bytes,
    pieces: list[tuple[int, int, bool]],
    ident: int,
) -> list[bytes]:
    """Fragments of ``payload``: one per ``(offset, size, more)``."""
    return [
        ipv6(
            src, dst, NextHeader.FRAGMENT,
            fragment_header(next_header, off, more, ident) + payload[off : off + size],
        )
        for off, size, more in pieces
    ]


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, data: bytes) -> bytes:
    return ipv6(src, dst, NextHeader.UDP, UdpDatagram(sport, dport, data).emit(src, dst))


def echo_request(src: bytes, dst: bytes, ident: int, seq: int, data: bytes = b"") -> bytes:
    return ipv6(src, dst, NextHeader.ICMPV6, Echo(True, ident, seq, data).emit(src, dst))


def icmp_message(src: bytes, dst: bytes, typ: int, code: int, word: int, body: bytes) -> bytes:
    """An ICMPv6 message (any type) with a correct checksum, in IPv6."""
    msg = bytearray(struct.pack("!BBHI", typ, code, 0, word) + body)
    c = checksum(msg, pseudo_header_sum(src, dst, len(msg), NextHeader.ICMPV6))
    msg[2:4] = c.to_bytes(2, "big")
    return ipv6(src, dst, NextHeader.ICMPV6, bytes(msg))


def icmp_error(src: bytes, typ: int, code: int, word: int, invoking: bytes) -> bytes:
    """An error from ``src`` about ``invoking`` (sent back to its source)."""
    return icmp_message(src, invoking[8:24], typ, code, word, invoking[:1232])


@dataclass(frozen=True)
class Parsed:
    """A packet the stack sent, picked apart."""

    src: bytes
    dst: bytes
    hop_limit: int
    next_header: int
    protocol: int | None
    "Upper-layer protocol (None for a non-first fragment)."
    upper: bytes
    "Upper-layer bytes (from the upper header to the end)."
    raw: bytes

    @property
    def icmp_type(self) -> int:
        return self.upper[0]

    @property
    def icmp_code(self) -> int:
        return self.upper[1]

    @property
    def icmp_word(self) -> int:
        return int.from_bytes(self.upper[4:8], "big")

    @property
    def icmp_body(self) -> bytes:
        return self.upper[8:]

    def checksum_ok(self) -> bool:
        if self.protocol is None:
            return True
        return checksum(
            self.upper, pseudo_header_sum(self.src, self.dst, len(self.upper), self.protocol)
        ) == 0


def parse(packet: bytes) -> Parsed:
    """Pick apart a packet: fixed header, then the upper layer if reachable."""
    plen = int.from_bytes(packet[4:6], "big")
    assert len(packet) == 40 + plen, "packet length matches its payload length"
    found = find_upper_layer(packet)
    proto, off = (found if found is not None else (None, len(packet)))
    return Parsed(
        src=packet[8:24], dst=packet[24:40], hop_limit=packet[7], next_header=packet[6],
        protocol=proto, upper=packet[off:], raw=packet,
    )
