"""Teredo server core (RFC 4380 §5.3, RFC 5991). Performs no I/O.

Theory of operation
-------------------
A Teredo server owns two consecutive IPv4 addresses with UDP port 3544 on
each.  It does three things, all stateless per packet:

1. **Qualification** (§5.3.2): a Router Solicitation from a client gets a
   Router Advertisement carrying the /64 ``2001:0:<primary IPv4>::``, the
   link MTU, the client's public endpoint as an origin indication, and the
   RS nonce echoed in an authentication indicator.  An RS from the cone
   link-local address is answered from the *other* address, so only a
   client behind a cone NAT hears it (§5.2.1 cone test); any other RS is
   answered from the address it reached.
2. **Teredo forwarding** (§5.3.1): a bubble or small ICMPv6 packet for a
   Teredo address is sent over UDP to the mapping embedded in that
   address, with an origin indication when the address is one of ours.
   This is how indirect bubbles open a client's NAT to a peer.
3. **Native forwarding** (§5.3.1): an ICMPv6 packet for a native IPv6
   address (the clients' relay discovery echo requests, §5.2.9) goes out
   of the native interface; the reply comes back through a relay.

Every packet first passes the seven acceptance checks of §5.3.1, in the
RFC's order; a refused packet is counted under a ``DropReason`` whose name
carries the RFC case number.  A server is not a relay (§5.3): nothing comes
in from the native side, and the native output is send-only.

Driven by: :meth:`datagram_received` (UDP) and :meth:`handle_timer` (time).
Output, pulled: :meth:`datagrams_to_send` (payload, local endpoint, remote
endpoint), :meth:`ipv6_to_native`.  :meth:`poll_at` gives the next deadline
(always None: the server keeps no timers, only rate-limit buckets).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from proxy.config.server import ServerConfig
from proxy.constants import (
    ALL_ROUTERS,
    FLAG_CONE,
    LINK_LOCAL_CONE,
    LINK_LOCAL_RESTRICTED,
    SERVER_MAX_ICMP_PAYLOAD,
    SERVER_RATE_TABLE_SIZE,
)
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.icmpv6 import Echo, Icmpv6Type, icmpv6_checksum_ok
from proxy.ipstack.wire.ipv6 import IPV6_HEADER_LEN, NextHeader
from proxy.ipstack.wire.ndisc import RouterSolicitation
from proxy.teredo import auth as teredo_auth
from proxy.teredo.address import mapped_endpoint, server_link_local
from proxy.teredo.ipv4 import global_check, ipv4_to_bytes
from proxy.teredo.messages import RouterAdvertisementTemplate, is_valid_router_solicitation
from proxy.teredo.packet import Authentication, TeredoPacket, ipv6_packet, origin_indication
from proxy.teredo.ratelimit import KeyedTokenBuckets, TokenBucket

if TYPE_CHECKING:
    import random

__all__ = ["TeredoServer", "Endpoint"]

Endpoint = tuple[str, int]
log = logging.getLogger("proxy.teredo.server")

_UNSPECIFIED = bytes(16)
_LOOPBACK = bytes(15) + b"\x01"


#: The standard RS (RFC 4380 §5.2.1): IPv6 header start (payload 8, ICMPv6,
#: hop limit 255) and, per well-known source, destination + valid RS message.
_RS_IPV6_HEAD = bytes.fromhex("60000000" "0008" "3a" "ff")
_RS_TAIL = {
    src: ALL_ROUTERS + RouterSolicitation().emit(src, ALL_ROUTERS)
    for src in (LINK_LOCAL_RESTRICTED, LINK_LOCAL_CONE)
}


def _ipv6_is_global(addr: bytes) -> bool:
    """RFC 4291 §2.4: not unspecified, loopback, link-local or multicast."""
    return not (
        addr == _UNSPECIFIED
        or addr == _LOOPBACK
        or (addr[0] == 0xFE and addr[1] & 0xC0 == 0x80)
        or addr[0] == 0xFF
    )


class TeredoServer:
    """A Teredo server (RFC 4380 §5.3): qualification and forwarding."""

    def __init__(self, config: ServerConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng
        self.primary: Endpoint = (config.address, config.port)
        self.secondary: Endpoint = (config.address2, config.port)
        self.link_local = server_link_local(config.address, config.port)
        self._ra = RouterAdvertisementTemplate(
            server=config.address, server_link_local=self.link_local, mtu=config.mtu, prefix=config.prefix
        )
        self._prefix = config.prefix.to_bytes(4, "big")
        self._server_field = ipv4_to_bytes(config.address)
        self._is_global = global_check(config.allow_loopback)
        self._rs_limit: KeyedTokenBuckets[str] = KeyedTokenBuckets(
            config.rs_rate, config.rs_burst, SERVER_RATE_TABLE_SIZE
        )
        self._native_limit = TokenBucket(config.native_rate, config.native_burst)
        self._datagrams: list[tuple[bytes, Endpoint, Endpoint]] = []
        self._native: list[bytes] = []
        self.fast_rs = True
        "Recognise the standard 61-byte RS without a full parse (same outcome)."
        self.drops: Counter[DropReason] = Counter()
        "Refused packets by reason."
        self.stats: Counter[str] = Counter()
        "What was done: ``rs``, ``ra``, ``forwarded_teredo``, ``forwarded_native``, ``echo``."

    # -- the sans-I/O contract --------------------------------------------
    def datagram_received(self, data: bytes | memoryview, local: Endpoint, addr: Endpoint, now: float) -> None:
        """Handle one UDP datagram that reached ``local`` from ``addr``.

        Never raises for any ``data``: refusals are counted in :attr:`drops`.
        """
        try:
            if not (self.fast_rs and self._fast_router_solicitation(data, local, addr, now)):
                self._process(data, local == self.secondary, addr, now)
        except ParseError as e:
            self._drop(e.reason, addr, e.detail)

    def handle_timer(self, now: float) -> None:
        """Nothing is time-driven in a server; present for the common shape."""

    def poll_at(self) -> float | None:
        return None

    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint, Endpoint]]:
        """``(payload, from local endpoint, to remote endpoint)`` due now."""
        out, self._datagrams = self._datagrams, []
        return out

    def ipv6_to_native(self) -> list[bytes]:
        """IPv6 packets to send on the native interface."""
        out, self._native = self._native, []
        return out

    # -- §5.3.1 ----------------------------------------------------------------
    def _fast_router_solicitation(self, data: bytes | memoryview, local: Endpoint, addr: Endpoint, now: float) -> bool:
        """The common case, decided by value: a 61-byte RS exactly as Miredo,
        Windows and our client send it (authentication indicator with nonce
        and no id, restricted or cone source, no options).  Such a packet
        passes checks 1 and 2 and is case 4 by construction; the remaining
        checks run in the same order as in :meth:`_process`.  Returns False
        to send anything else down the general path.
        """
        if len(data) != 61 or data[:4] != b"\x00\x01\x00\x00" or data[13:21] != _RS_IPV6_HEAD:
            return False
        src = bytes(data[21:37])
        if bytes(data[37:61]) != _RS_TAIL.get(src):
            return False
        if self.config.require_auth:
            return False  # the general path explains the refusal
        if not self._is_global(addr[0]):                       # case 3
            raise ParseError(DropReason.SERVER_SOURCE_NOT_GLOBAL, addr[0])
        if addr == self.primary or addr == self.secondary:     # loop prevention
            raise ParseError(DropReason.SERVER_LOOP)
        self.stats["rs"] += 1
        if not self._rs_limit.allow(addr[0], now):
            raise ParseError(DropReason.SERVER_RATE_LIMITED, "router solicitations")
        secondary = (local == self.secondary) != bool(src[8] & (FLAG_CONE >> 8))
        ra = self._ra.build(src, bytes(data[4:12]), origin_indication(addr))
        self._datagrams.append((ra, self.secondary if secondary else self.primary, addr))
        self.stats["ra"] += 1
        return True

    def _drop(self, reason: DropReason, addr: Endpoint, detail: str = "") -> None:
        self.drops[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dropping packet from %s:%d: %s %s", addr[0], addr[1], reason.value, detail)

    def _process(self, data: bytes | memoryview, secondary: bool, addr: Endpoint, now: float) -> None:
        # Case 1: "the UDP payload is not a well-formed Teredo IPv6 packet":
        # silently discard.
        try:
            packet = TeredoPacket.parse(data)
        except ParseError as e:
            raise ParseError(DropReason.SERVER_NOT_TEREDO_IPV6, e.reason.value) from None
        ip6 = packet.ipv6
        src, dst, nxt = packet.src, packet.dst, packet.next_header
        bubble = packet.is_bubble

        # Case 2: "the IPv6 packet is neither a bubble nor an ICMPv6 message":
        # SHOULD discard.
        if not bubble and nxt != NextHeader.ICMPV6:
            raise ParseError(DropReason.SERVER_NOT_BUBBLE_OR_ICMP, f"next header {nxt}")

        # Case 3: "the IPv4 source address is not global unicast": MUST discard.
        if not self._is_global(addr[0]):
            raise ParseError(DropReason.SERVER_SOURCE_NOT_GLOBAL, addr[0])

        if not self._accepted(packet, src, dst, nxt, addr):
            # Case 7: "in all other cases": MUST discard.
            raise ParseError(DropReason.SERVER_NO_ACCEPT_CASE)

        # -- accepted ------------------------------------------------------
        # Security: never answer or forward to ourselves, which would start an
        # endless UDP loop between our two sockets (Miredo MTFL-SA 0603).
        if addr == self.primary or addr == self.secondary:
            raise ParseError(DropReason.SERVER_LOOP)

        if dst == ALL_ROUTERS or dst == self.link_local:
            self._local_destination(packet, src, dst, secondary, addr, now)
            return

        # "The server MUST NOT forward packets whose destination is not global."
        if not _ipv6_is_global(dst):
            raise ParseError(DropReason.SERVER_DEST_NOT_GLOBAL)

        # DEVIATION (shared with Miredo and Microsoft servers): a non-bubble
        # ICMPv6 packet with more than 88 bytes of payload is not forwarded,
        # so the server cannot be used as an open relay for bulk data.
        if not bubble and len(ip6) - IPV6_HEADER_LEN > SERVER_MAX_ICMP_PAYLOAD:
            raise ParseError(DropReason.SERVER_ICMP_TOO_BIG, f"{len(ip6) - IPV6_HEADER_LEN} bytes")

        if not bubble:
            # RFC 8200 §3: a node forwarding a packet decrements the hop limit
            # and discards it at zero.  (Bubbles are Teredo control messages,
            # sent with hop limit 0 by Miredo: they are exempt.)
            if packet.hop_limit <= 1:
                raise ParseError(DropReason.HOP_LIMIT)
            ip6 = bytearray(ip6)
            ip6[7] -= 1

        if dst[:4] != self._prefix:
            self._forward_native(bytes(ip6), addr, now)
        else:
            self._forward_teredo(bytes(ip6), packet.trailer, dst, addr)

    def _accepted(self, packet: TeredoPacket, src: bytes, dst: bytes, nxt: int, addr: Endpoint) -> bool:
        """Cases 4, 5 and 6 of RFC 4380 §5.3.1: reasons to accept."""
        # Case 4: link-local source, destination ff02::2 (all routers), an
        # ICMPv6 Router Solicitation: a client qualifying.  MUST accept.
        payload = packet.payload
        if (
            src[0] == 0xFE and src[1] & 0xC0 == 0x80
            and dst == ALL_ROUTERS
            and nxt == NextHeader.ICMPV6
            and len(payload) >= 8
            and payload[0] == Icmpv6Type.ROUTER_SOLICITATION
        ):
            return True
        if src[:4] == self._prefix:
            # Case 5: a Teredo source whose embedded mapping is the packet's
            # IPv4 source address and port.  SHOULD accept.
            return mapped_endpoint(src) == addr
        # Case 6: a non-Teredo source sending to a Teredo address of this
        # server (server field = our primary address).  SHOULD accept.
        return dst[:4] == self._prefix and dst[4:8] == self._server_field

    # -- what an accepted packet becomes ---------------------------------------
    def _local_destination(
        self, packet: TeredoPacket, src: bytes, dst: bytes, secondary: bool, addr: Endpoint, now: float
    ) -> None:
        payload = packet.payload
        if packet.next_header == NextHeader.ICMPV6 and len(payload) >= 8:
            if payload[0] == Icmpv6Type.ROUTER_SOLICITATION:
                self._router_solicitation(packet, src, secondary, addr, now)
                return
            if payload[0] == Icmpv6Type.ECHO_REQUEST and dst == self.link_local:
                self._echo(packet, src, secondary, addr)
                return
        raise ParseError(DropReason.SERVER_LOCAL_NOT_RS)

    def _router_solicitation(
        self, packet: TeredoPacket, src: bytes, secondary: bool, addr: Endpoint, now: float
    ) -> None:
        """RFC 4380 §5.3.2: answer a Router Solicitation."""
        self.stats["rs"] += 1
        if not is_valid_router_solicitation(src, packet.dst, packet.payload):
            raise ParseError(DropReason.SERVER_BAD_RS, "code or checksum")
        if not self._rs_limit.allow(addr[0], now):
            raise ParseError(DropReason.SERVER_RATE_LIMITED, "router solicitations")
        key = self._client_key(packet)
        # The RA goes from the address that received the RS, unless the RS
        # comes from the cone link-local address: then from the other one,
        # so that only a cone NAT lets it through (§5.2.1, §5.3.2).
        if src[8] & (FLAG_CONE >> 8):
            secondary = not secondary
        nonce = packet.auth.nonce if packet.auth is not None else None
        ra = self._ra.build(src, nonce, origin_indication(addr))
        if key is not None:
            ra = self._sign(ra, packet.auth, key)
        self._datagrams.append((ra, self.secondary if secondary else self.primary, addr))
        self.stats["ra"] += 1

    def _client_key(self, packet: TeredoPacket) -> bytes | None:
        """Secure qualification (§5.2.2): the key if the RS authenticates, else None.

        Raises ParseError when the RS claims an identity it cannot prove, or
        when the server requires authentication and the RS has none.
        """
        a = packet.auth
        if a is None or not a.client_id:
            if self.config.require_auth:
                raise ParseError(DropReason.SERVER_AUTH_FAILED, "no client identifier")
            return None
        key = self.config.auth_keys.get(a.client_id)
        if key is None or not teredo_auth.verify(a, key, packet.origin, packet.ipv6):
            raise ParseError(DropReason.SERVER_AUTH_FAILED, "unknown client or bad authentication value")
        return key

    def _sign(self, ra: bytes, rs_auth: Authentication, key: bytes) -> bytes:
        """Replace the plain indicator of ``ra`` by an authenticated one."""
        plain = TeredoPacket.parse(ra)
        signed = teredo_auth.authenticate(
            rs_auth.client_id, key, rs_auth.nonce, bytes(plain.ipv6), plain.origin
        )
        return TeredoPacket(bytes(plain.ipv6), signed, plain.origin).emit()

    def _echo(self, packet: TeredoPacket, src: bytes, secondary: bool, addr: Endpoint) -> None:
        """Answer an Echo Request to the server's link-local address (§5.3.1:
        the server "may have to process" it; Miredo does not)."""
        if not icmpv6_checksum_ok(src, packet.dst, packet.payload):
            raise ParseError(DropReason.BAD_CHECKSUM)
        req = Echo.parse(packet.payload)
        reply = Echo(False, req.ident, req.seq, req.data).emit(self.link_local, src)
        ip6 = ipv6_packet(self.link_local, src, NextHeader.ICMPV6, reply, 64)
        self._datagrams.append((origin_indication(addr) + ip6, self.secondary if secondary else self.primary, addr))
        self.stats["echo"] += 1

    def _forward_native(self, ip6: bytes, addr: Endpoint, now: float) -> None:
        """A packet for a native IPv6 host (a relay discovery echo request).

        RFC 6081 trailers are not part of the IPv6 packet and stay behind.
        """
        if not self.config.forward_native:
            raise ParseError(DropReason.SERVER_NO_NATIVE)
        if not self._native_limit.allow(now):
            raise ParseError(DropReason.SERVER_RATE_LIMITED, "native forwarding")
        self._native.append(ip6)
        self.stats["forwarded_native"] += 1

    def _forward_teredo(self, ip6: bytes, trailer: bytes, dst: bytes, addr: Endpoint) -> None:
        """A packet for a Teredo address: UDP to the mapping it embeds.

        An origin indication tells the client who sent it, but only when the
        address is one of ours: a client of another server would not trust
        it (§5.3.1).  Trailers are kept: RFC 6081 bubbles carry them.
        """
        target = mapped_endpoint(dst)
        if not self._is_global(target[0]):
            raise ParseError(DropReason.SERVER_TEREDO_DEST_NOT_GLOBAL, target[0])
        head = origin_indication(addr) if dst[4:8] == self._server_field else b""
        self._datagrams.append((head + ip6 + trailer, self.primary, target))
        self.stats["forwarded_teredo"] += 1
