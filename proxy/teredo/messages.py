"""The Teredo control messages: qualification RS/RA (RFC 4380 §5.2.1, §5.3.2).

Builders return whole UDP payloads (indicators + IPv6 packet), ready for a
driver to send, so the client and server cores never assemble headers by
hand.  :func:`parse_router_advertisement` applies the RFC 4380 §5.2.1 RA
validity rules and reports the first one that fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.constants import (
    ALL_ROUTERS,
    LINK_LOCAL_CONE,
    LINK_LOCAL_RESTRICTED,
    ND_HOP_LIMIT,
    RA_PREFIX_LIFETIME,
    RA_RETRANS_TIMER_MS,
    RA_ROUTER_LIFETIME,
    TEREDO_MTU,
    TEREDO_PREFIX,
    TEREDO_PREFIX_OBSOLETE,
)
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.checksum import ones_sum, pseudo_header_sum
from proxy.ipstack.wire.icmpv6 import Icmpv6Type, icmpv6_checksum_ok
from proxy.ipstack.wire.ipv6 import IPV6_HEADER, NextHeader
from proxy.ipstack.wire.ndisc import PrefixInformation, RouterAdvertisement, RouterSolicitation
from proxy.teredo.ipv4 import ipv4_from_bytes, ipv4_to_bytes
from proxy.teredo.packet import Authentication, OriginIndication, TeredoPacket, ipv6_packet

__all__ = [
    "router_solicitation",
    "router_advertisement",
    "RouterAdvertisementTemplate",
    "is_valid_router_solicitation",
    "teredo_prefix",
    "QualificationAnswer",
    "parse_router_advertisement",
]


def router_solicitation(nonce: bytes, cone: bool = False, auth: Authentication | None = None) -> bytes:
    """The UDP payload of a qualification RS (RFC 4380 §5.2.1).

    The RS comes from the cone or restricted well-known link-local address,
    goes to ff02::2 with hop limit 255, and carries an authentication
    indicator with ``nonce`` (RFC 4380 §5.2.1; RFC 5991 makes the nonce
    mandatory to prevent RA spoofing).  ``auth`` overrides the indicator
    when secure qualification adds a client id and HMAC.
    """
    src = LINK_LOCAL_CONE if cone else LINK_LOCAL_RESTRICTED
    icmp = RouterSolicitation().emit(src, ALL_ROUTERS)
    ipv6 = ipv6_packet(src, ALL_ROUTERS, NextHeader.ICMPV6, icmp, ND_HOP_LIMIT)
    indicator = auth if auth is not None else Authentication(nonce=nonce)
    return indicator.emit() + ipv6


def teredo_prefix(server: str, prefix: int = TEREDO_PREFIX) -> bytes:
    """The /64 a server advertises: ``<prefix>:<server IPv4>::`` (§5.3.2)."""
    return prefix.to_bytes(4, "big") + ipv4_to_bytes(server) + b"\0" * 8


def _server_ra(server: str, prefix: int, mtu: int) -> RouterAdvertisement:
    """The RA every client of ``server`` gets (contents as Miredo sends them)."""
    return RouterAdvertisement(
        router_lifetime=RA_ROUTER_LIFETIME,
        retrans_timer=RA_RETRANS_TIMER_MS,
        prefixes=(PrefixInformation(teredo_prefix(server, prefix), 64, False, True,
                                    RA_PREFIX_LIFETIME, RA_PREFIX_LIFETIME),),
        mtu=mtu,
    )


def router_advertisement(
    *,
    server: str,
    server_link_local: bytes,
    client_link_local: bytes,
    origin: tuple[str, int],
    nonce: bytes | None,
    mtu: int = TEREDO_MTU,
    prefix: int = TEREDO_PREFIX,
    confirmation: int = 0,
) -> bytes:
    """The UDP payload of a server's RA answering an RS (RFC 4380 §5.3.2).

    Contents as Miredo sends them: router lifetime 0, retrans timer 2000 ms,
    one Prefix Information option (``<prefix>:<server>::/64``, A flag,
    infinite lifetimes) and an MTU option; an authentication indicator
    echoing the RS nonce when the RS had one, then the origin indication.
    """
    ra = _server_ra(server, prefix, mtu)
    icmp = ra.emit(server_link_local, client_link_local)
    ipv6 = ipv6_packet(server_link_local, client_link_local, NextHeader.ICMPV6, icmp, ND_HOP_LIMIT)
    head = b""
    if nonce is not None:
        head = Authentication(nonce=nonce, confirmation=confirmation).emit()
    return head + OriginIndication(*origin).emit() + ipv6


class RouterAdvertisementTemplate:
    """:func:`router_advertisement` for one server, precomputed.

    A server answers every RS with the same RA except for three fields: the
    destination (the RS source), the nonce and the origin indication.  The
    template keeps the rest as bytes and the ICMPv6 checksum as a partial
    one's-complement sum, so an answer costs a few concatenations and one
    16-byte fold instead of building and checksumming a message (measured
    here: about 10x less work per RS).  The output is byte-identical to
    :func:`router_advertisement` (a property test holds it to that).
    """

    __slots__ = ("_head", "_type_code", "_rest", "_partial")

    def __init__(self, *, server: str, server_link_local: bytes, mtu: int = TEREDO_MTU,
                 prefix: int = TEREDO_PREFIX) -> None:
        ra = _server_ra(server, prefix, mtu)
        zero = bytes(16)
        icmp = bytearray(ra.emit(server_link_local, zero))
        icmp[2:4] = b"\0\0"
        self._head = IPV6_HEADER.pack(0x60000000, len(icmp), NextHeader.ICMPV6, ND_HOP_LIMIT,
                                      server_link_local, zero)[:24]
        self._type_code = bytes(icmp[:2])
        self._rest = bytes(icmp[4:])
        self._partial = pseudo_header_sum(server_link_local, zero, len(icmp), NextHeader.ICMPV6) + ones_sum(icmp)

    def build(self, dst: bytes, nonce: bytes | None, origin: bytes) -> bytes:
        """The UDP payload for an RS from ``dst`` (16 bytes), ``origin`` being
        the 8 bytes of an emitted :class:`OriginIndication`."""
        s = self._partial + int.from_bytes(dst, "big") % 0xFFFF
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        cksum = (~s & 0xFFFF).to_bytes(2, "big")
        auth = b"\x00\x01\x00\x00" + nonce + b"\x00" if nonce is not None else b""
        return auth + origin + self._head + dst + self._type_code + cksum + self._rest


_VALID_RS = {src: RouterSolicitation().emit(src, ALL_ROUTERS) for src in (LINK_LOCAL_RESTRICTED, LINK_LOCAL_CONE)}


def is_valid_router_solicitation(src: bytes, dst: bytes, message: bytes | memoryview) -> bool:
    """RFC 4861 §6.1.1 checks a server makes on an RS: code 0, checksum.

    The two well-known Teredo RSs are recognised by value, skipping the
    checksum computation for nearly every RS a server sees.
    """
    known = _VALID_RS.get(src)
    if known is not None and dst == ALL_ROUTERS and message == known:
        return True
    return len(message) >= 8 and message[1] == 0 and icmpv6_checksum_ok(src, dst, message)


@dataclass(frozen=True, slots=True)
class QualificationAnswer:
    """What a client learns from a valid RA."""

    server: str
    "Server IPv4 embedded in the advertised prefix."
    prefix: int
    "The 32-bit Teredo service prefix."
    mapped: tuple[str, int]
    "The client's public (IPv4, port), from the origin indication."
    mtu: int
    "The advertised link MTU (1280 when absent)."
    cone: bool
    "The RA was addressed to the cone link-local address."
    nonce: bytes | None
    "The nonce echoed by the server."


def parse_router_advertisement(packet: TeredoPacket) -> QualificationAnswer:
    """Apply the RA validity rules of RFC 4380 §5.2.1 in the RFC's order.

    The caller has already matched the nonce and the source endpoint.
    Raises ParseError(BAD_RA) naming the first failing rule.
    """

    def bad(why: str) -> ParseError:
        return ParseError(DropReason.BAD_RA, why)

    # "the router advertisement MUST contain an origin indication"
    if packet.origin is None:
        raise bad("no origin indication")
    # "a valid router advertisement" (RFC 4861 §6.1.2)
    if packet.next_header != NextHeader.ICMPV6:
        raise bad("not ICMPv6 (extension headers are not expected)")
    if packet.hop_limit != ND_HOP_LIMIT:
        raise bad(f"hop limit {packet.hop_limit}, not 255")
    src, dst, msg = packet.src, packet.dst, packet.payload
    if src[:2] != b"\xfe\x80":
        raise bad("source is not link-local")
    if len(msg) < 16 or msg[0] != Icmpv6Type.ROUTER_ADVERTISEMENT:
        raise bad("not a router advertisement")
    if not icmpv6_checksum_ok(src, dst, msg):
        raise bad("ICMPv6 checksum")
    ra = RouterAdvertisement.parse(msg)
    # "the destination address ... MUST be the link-local address used in the RS"
    if dst not in (LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED):
        raise bad("destination is not a Teredo link-local address")
    # "the router advertisement MUST contain exactly one prefix advertisement"
    if len(ra.prefixes) != 1:
        raise bad(f"{len(ra.prefixes)} prefix information options")
    pio = ra.prefixes[0]
    # "the prefix MUST be a valid Teredo prefix": 64 bits long, ending in zeros.
    if pio.prefix_len != 64 or pio.prefix[8:] != b"\0" * 8:
        raise bad("prefix is not a /64")
    pfx = int.from_bytes(pio.prefix[:4], "big")
    if pfx == TEREDO_PREFIX_OBSOLETE:
        pfx = TEREDO_PREFIX  # Miredo rewrites Windows XP's 3ffe:831f as 2001:0
    if pio.prefix[0] == 0xFF:
        raise bad("multicast prefix")
    mtu = TEREDO_MTU if ra.mtu is None else ra.mtu
    if not 1280 <= mtu <= 65535:
        raise bad(f"MTU {mtu}")
    return QualificationAnswer(
        server=ipv4_from_bytes(pio.prefix[4:8]),
        prefix=pfx,
        mapped=packet.origin.endpoint,
        mtu=mtu,
        cone=dst == LINK_LOCAL_CONE,
        nonce=packet.auth.nonce if packet.auth else None,
    )
