"""The Teredo relay core (RFC 4380 §5.4), sans I/O.

Theory of operation
-------------------
A relay is an IPv6 router between the Teredo service (UDP/IPv4 on one
port) and native IPv6.  Two ingress points, two pulled outputs:

* :meth:`TeredoRelay.datagram_received` (§5.4.2, reception from Teredo
  clients): the IPv6 source must be a Teredo address whose embedded mapping
  equals the UDP source, and the peer must already be in the table (a relay
  "may silently discard" others; Miredo does, and so a flood of spoofed
  sources forwards nothing).  The peer becomes trusted, its queue is
  flushed; bubbles are consumed; other packets go to native IPv6 unless
  their destination is multicast, non-global or another Teredo address.
* :meth:`TeredoRelay.ipv6_from_native` (§5.4.1, transmission to Teredo
  clients): a trusted peer heard from in the last 30 s gets the packet at
  once (case 1).  Otherwise (case 3; the cone bit of case 2 is ignored, see
  DEVIATION below) the packet waits in the peer's 1280-byte FIFO while the
  relay bubbles the client through its server (and directly when the relay
  itself sits behind a restricted NAT), at most one bubble per 2 s and 4 per
  300 s (§5.2.6).  A peer that never answers, or a queue that overflows,
  earns the sender an ICMPv6 Destination Unreachable.
* Outputs: :meth:`datagrams_to_send` (UDP payloads with their IPv4
  endpoint) and :meth:`ipv6_to_native` (IPv6 packets); :meth:`handle_timer`
  retries bubbles and expires peers; :meth:`poll_at` says when.

ICMPv6 errors (RFC 4443) are built with :mod:`proxy.ipstack.wire.icmpv6`,
limited to 10 per second (Miredo's rate), never sent about an ICMPv6
error or to a non-unicast source, and need a source address
(``icmp_source``, the relay's native address): without one they are
counted but not sent.

Router duty: with a TUN device the kernel forwards between the tunnel and
the native interface, so it already decrements hop limits and enforces the
MTU; with raw sockets or the in-memory link nobody else does, and
``router=True`` makes the core do it (Time Exceeded, Packet Too Big).

Speed: the two ingress methods are written as flat fast paths (precompiled
``struct`` codecs, slices of ``bytes``, the peer table's arrays indexed
directly); anything unusual leaves through a counted drop or a slow path.
Per-packet work allocates only the slices it forwards.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import struct
from collections import Counter
from socket import inet_aton, inet_ntoa

from proxy.constants import (
    BUBBLE_INTERVAL,
    ICMP_ERROR_BURST,
    ICMP_ERROR_QUOTE,
    ICMP_ERROR_RATE,
    PEER_TIME_UNIT,
    PEER_VALIDITY,
    RELAY_MAX_PEERS,
    RELAY_MTU,
    TEREDO_PORT,
    TEREDO_PREFIX,
)
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.icmpv6 import Icmpv6Error, Icmpv6Type, UnreachableCode
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.teredo.ipv4 import is_global_unicast
from proxy.teredo.packet import TeredoPacket, bubble, ipv6_packet
from proxy.teredo.peers import B_FLAGS, I32_RX, I32_TX, REC_SIZE, TRUSTED, PeerTable, Probe

__all__ = ["TeredoRelay", "Datagram"]

log = logging.getLogger("proxy.teredo.relay")

Datagram = tuple[bytes, tuple[str, int]]
"A UDP payload and its IPv4 destination endpoint."

#: The IPv6 header fields the reception fast path needs, in one call:
#: version byte, payload length, next header, source prefix, the source's
#: obfuscated port and IPv4 (RFC 4380 §4), destination prefix.
_HDR = struct.Struct("!B3xHBx4s6xHI4s")
_TICKS = 1.0 / PEER_TIME_UNIT
_VALID_TICKS = int(PEER_VALIDITY * _TICKS)
_NO_NEXT = NextHeader.NO_NEXT_HEADER
_ICMPV6 = NextHeader.ICMPV6
_ZERO15 = bytes(15)
_CACHE_MAX = 65536  # endpoint and address caches are cleared past this size


class TeredoRelay:
    """RFC 4380 §5.4 relay state machine; see the module notes."""

    def __init__(
        self,
        *,
        secret: bytes,
        prefix: int = TEREDO_PREFIX,
        mtu: int = RELAY_MTU,
        direct_bubbles: bool = False,
        router: bool = False,
        icmp_source: bytes | None = None,
        peers: PeerTable | None = None,
        max_peers: int = RELAY_MAX_PEERS,
        server_port: int = TEREDO_PORT,
        require_global: bool = True,
    ) -> None:
        """
        :param secret: at least 16 random bytes; keys the bubbles' source addresses.
        :param prefix: the 32-bit Teredo prefix served (Miredo ``Prefix``).
        :param mtu: tunnel MTU; native packets above it get Packet Too Big in router mode.
        :param direct_bubbles: also bubble the client's mapping directly
            (``RelayType restricted``: the relay is behind a restricted NAT).
        :param router: decrement hop limits and enforce the MTU here (raw and
            memory links; the kernel does it for a TUN device).
        :param icmp_source: 16-byte source of ICMPv6 errors (a native address of the relay).
        :param server_port: where indirect bubbles go on the client's server
            (3544 everywhere but in single-host tests and the demo).
        :param require_global: refuse peers whose embedded IPv4 addresses are
            not global unicast (§5.4.1); only loopback tests and the demo turn it off.
        """
        if len(secret) < 16:
            raise ValueError("the relay secret needs at least 16 bytes")
        if icmp_source is not None and len(icmp_source) != 16:
            raise ValueError("icmp_source is a 16-byte IPv6 address")
        self.prefix = prefix
        self._pfx = prefix.to_bytes(4, "big")
        self.mtu = mtu
        self.direct_bubbles = direct_bubbles
        self.router = router
        self.icmp_source = icmp_source
        self.server_port = server_port
        self.require_global = require_global
        self._secret = bytes(secret)
        self.peers = peers if peers is not None else PeerTable(max_peers)
        self._lookup = self.peers.lookup
        self._rec = self.peers.rec
        self._rec_i32 = self.peers.rec_i32
        self.drops: Counter[DropReason] = Counter()
        "Why packets were not used, by reason."
        self.counters: Counter[str] = Counter()
        "Slow-path events: bubbles sent and received, ICMPv6 errors, queue flushes."
        self.to_native = 0
        "IPv6 packets forwarded from Teredo clients to native IPv6."
        self.to_teredo = 0
        "IPv6 packets forwarded from native IPv6 to Teredo clients."
        self._out: list[Datagram] = []
        self._native: list[bytes] = []
        self._ipint: dict[str, int] = {}
        self._endpoints: dict[bytes, tuple[str, int]] = {}
        self._retry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._tokens = float(ICMP_ERROR_BURST)
        self._tokens_at = 0.0

    # -- outputs ------------------------------------------------------------------
    def datagrams_to_send(self) -> list[Datagram]:
        """UDP payloads for the IPv4 side, oldest first (the list is handed over)."""
        out, self._out = self._out, []
        return out

    def ipv6_to_native(self) -> list[bytes]:
        """IPv6 packets for the native side, oldest first (the list is handed over)."""
        out, self._native = self._native, []
        return out

    def poll_at(self) -> float | None:
        """When :meth:`handle_timer` should run next (None: nothing scheduled)."""
        t = self.peers.poll_at()
        if self._heap:
            h = self._heap[0][0]
            t = h if t is None or h < t else t
        return t

    # -- RFC 4380 §5.4.2: reception from the Teredo side ---------------------------
    def datagram_received(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """One UDP payload from ``addr``.  Never raises on bad input."""
        if len(data) >= 40 and data[0] & 0xF0 == 0x60:
            b0, plen, nh, spfx, oport, oip, dpfx = _HDR.unpack_from(data)
        else:
            data = self._decapsulate(data)  # indicators first (§5.1.1), or junk
            if data is None:
                return
            b0, plen, nh, spfx, oport, oip, dpfx = _HDR.unpack_from(data)
        n = len(data)
        end = 40 + plen
        if end > n:
            self._drop(DropReason.IPV6_TRUNCATED)
            return
        # "the relay ... checks that the IPv6 source address is a Teredo
        # address" whose "mapped address and port ... match the IPv4 source
        # address and port of the packet"; otherwise MUST discard.
        pfx = self._pfx
        if spfx != pfx:
            self._drop(DropReason.NOT_TEREDO_SOURCE)
            return
        ip, port = addr
        ipn = self._ipint.get(ip)
        if ipn is None:
            ipn = self._ip_to_int(ip)
        if oport ^ 0xFFFF != port or oip ^ 0xFFFFFFFF != ipn:
            self._drop(DropReason.MAPPING_MISMATCH)
            return
        i = self._lookup(data[8:24])
        if i < 0:
            # "the relay MAY decide to discard" packets from unknown peers;
            # entries are only created by native traffic (§5.4.1).
            self._drop(DropReason.UNKNOWN_PEER)
            return
        if self._rec[i * REC_SIZE] == TRUSTED:  # trusted, nothing queued
            self._rec_i32[i * 7 + I32_RX] = int(now * _TICKS)  # "date of last reception"
        else:
            self._answered(i, now)  # "set the status ... to trusted", flush the queue
        if not plen and nh == _NO_NEXT:
            self.counters["bubbles_in"] += 1  # a bubble has done its job
            return
        # DEVIATION: beyond these scope checks, egress filtering ("destinations
        # served by this relay") is left to the host firewall, as in Miredo.
        d0 = dpfx[0]
        if d0 == 0xFF:
            self._drop(DropReason.MULTICAST_DESTINATION)
            return
        if dpfx == pfx:
            self._drop(DropReason.TEREDO_TRANSIT)  # Teredo to Teredo goes direct, not via relays
            return
        if (d0 == 0xFE and dpfx[1] & 0xC0 == 0x80) or (d0 == 0 and data[24:39] == _ZERO15):
            self._drop(DropReason.DESTINATION_NOT_GLOBAL)  # link-local, ::, ::1
            return
        if self.router:
            data = self._route(data[:end], addr, now)
            if data is None:
                return
        elif end != n:
            data = data[:end]  # trailers stay in the tunnel
        self._native.append(data)
        self.to_native += 1

    def _decapsulate(self, data: bytes) -> bytes | None:
        """Strip Teredo indicators (§5.1.1); None (counted) if unusable."""
        try:
            packet = TeredoPacket.parse(data)
        except ParseError as e:
            self._drop(e.reason)
            return None
        return bytes(packet.ipv6)

    def _ip_to_int(self, ip: str) -> int:
        try:
            v = int.from_bytes(inet_aton(ip), "big")
        except (OSError, TypeError, ValueError):
            return -1
        if len(self._ipint) >= _CACHE_MAX:
            self._ipint.clear()
        self._ipint[ip] = v
        return v

    def _answered(self, i: int, now: float) -> None:
        """The peer answered: trusted, counters reset, queued packets go out."""
        peers = self.peers
        peers.answered(i, now)
        key = peers.key_at(i)
        self._retry.pop(key, None)
        queued = peers.queue_pop(i)
        if queued:
            ep = peers.endpoint(i)
            for packet, _tag in queued:
                self._out.append((packet, ep))
            self.to_teredo += len(queued)
            peers.touch_tx(i, now)
            self.counters["queue_flushes"] += 1

    def _route(self, packet: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        """Router duty towards native IPv6 (router mode): the hop limit."""
        hlim = packet[7]
        if hlim <= 1:
            self._drop(DropReason.HOP_LIMIT)
            self._icmp_error(now, Icmpv6Type.TIME_EXCEEDED, 0, 0, packet, teredo=addr)
            return None
        return packet[:7] + bytes((hlim - 1,)) + packet[8:]

    # -- RFC 4380 §5.4.1: transmission to the Teredo side ---------------------------
    def ipv6_from_native(self, packet: bytes, now: float) -> None:
        """One IPv6 packet from the native side.  Never raises on bad input."""
        n = len(packet)
        if n < 40:
            self._drop(DropReason.IPV6_TRUNCATED)
            return
        if packet[0] & 0xF0 != 0x60:
            self._drop(DropReason.NOT_IPV6)
            return
        end = 40 + ((packet[4] << 8) | packet[5])
        if end > n:
            self._drop(DropReason.IPV6_TRUNCATED)
            return
        if end != n:
            packet = packet[:end]
        dst = packet[24:40]
        if self.router:
            packet = self._forward_checks(packet, now)
            if packet is None:
                return
        peers = self.peers
        i = peers.lookup(dst)
        # Case 1: "an entry for the destination ... status trusted": send.
        if i >= 0 and peers.rec[i * REC_SIZE + B_FLAGS] & TRUSTED:
            t = int(now * _TICKS)
            k = i * 7
            ri = peers.rec_i32
            if t - ri[k + I32_RX] <= _VALID_TICKS:
                ri[k + I32_TX] = t + 1  # rounded up: never early for the bubble rule
                ep = self._endpoints.get(dst)
                if ep is None:
                    ep = self._endpoint_of(i, dst)
                self._out.append((packet, ep))
                self.to_teredo += 1
                return
        self._connect(packet, dst, i, now)

    def _forward_checks(self, packet: bytes, now: float) -> bytes | None:
        """Router duty towards the tunnel (router mode): hop limit, then MTU."""
        hlim = packet[7]
        if hlim <= 1:
            self._drop(DropReason.HOP_LIMIT)
            self._icmp_error(now, Icmpv6Type.TIME_EXCEEDED, 0, 0, packet)
            return None
        if len(packet) > self.mtu:
            self._drop(DropReason.TOO_BIG)
            self._icmp_error(now, Icmpv6Type.PACKET_TOO_BIG, 0, self.mtu, packet)
            return None
        return packet[:7] + bytes((hlim - 1,)) + packet[8:]

    def _endpoint_of(self, i: int, dst: bytes) -> tuple[str, int]:
        ep = self.peers.endpoint(i)
        if len(self._endpoints) >= _CACHE_MAX:
            self._endpoints.clear()
        self._endpoints[dst] = ep
        return ep

    def _connect(self, packet: bytes, dst: bytes, i: int, now: float) -> None:
        """§5.4.1 case 3 (and the checks before any new peer), the slow path."""
        if dst[0] == 0xFF:
            self._drop(DropReason.MULTICAST_DESTINATION)
            return
        if dst[:4] != self._pfx:
            # A relay only routes towards Teredo clients: the routing table
            # sending us this packet is wrong (Miredo answers the same way).
            self._drop(DropReason.NOT_OUR_PREFIX)
            self._icmp_error(now, Icmpv6Type.DEST_UNREACHABLE, UnreachableCode.ADDRESS, 0, packet)
            return
        src = packet[8:24]
        if src[:4] == self._pfx:
            self._drop(DropReason.TEREDO_TRANSIT)
            return
        if src[0] == 0xFF or src == bytes(16) or (src[0] == 0xFE and src[1] & 0xC0 == 0x80):
            self._drop(DropReason.SOURCE_NOT_GLOBAL_IPV6)
            return
        peers = self.peers
        if i < 0:
            # §5.4.1: the server and the mapped address embedded in the
            # destination must be global unicast IPv4 addresses.
            server, oport, oip = struct.unpack_from("!4s2xHI", dst, 4)
            mapped = oip ^ 0xFFFFFFFF
            if self.require_global and not (is_global_unicast(server) and is_global_unicast(mapped)):
                self._drop(DropReason.DESTINATION_NOT_GLOBAL)
                return
            i = peers.insert(dst, now, mapped, oport ^ 0xFFFF)
            if i < 0:
                self._drop(DropReason.PEER_TABLE_FULL)
                self._icmp_error(now, Icmpv6Type.DEST_UNREACHABLE, UnreachableCode.ADDRESS, 0, packet)
                return
            self.counters["peers_created"] += 1
        # DEVIATION: case 2 (cone bit set: send directly, trust) is not
        # applied: every untrusted peer goes through case 3, as in Miredo;
        # see docs/deviations.md.
        # Case 3: queue, and bubble the client if the rate rule allows.
        if not peers.queue_push(i, packet):
            self._drop(DropReason.QUEUE_FULL)
            self._icmp_error(now, Icmpv6Type.DEST_UNREACHABLE, UnreachableCode.ADDRESS, 0, packet)
        decision = peers.bubble_decision(i, now)
        if decision is Probe.SEND:
            self._bubble(i, dst, now)
        elif decision is Probe.GIVE_UP:
            self._give_up(i, dst, now)
        elif dst not in self._retry and peers.queued_bytes(i):
            self._schedule(dst, peers.last_tx(i) + BUBBLE_INTERVAL)

    def _bubble(self, i: int, dst: bytes, now: float) -> None:
        """Send the bubbles of §5.4.1 case 3 and arm the 2-second retry."""
        src = self._bubble_source(dst)
        b = bubble(src, dst)
        server = inet_ntoa(dst[4:8])
        self._out.append((b, (server, self.server_port)))  # indirect, via the client's server
        self.counters["bubbles_out"] += 1
        if self.direct_bubbles:
            self._out.append((b, self.peers.endpoint(i)))  # opens our own restricted NAT
            self.counters["bubbles_out"] += 1
        if self.peers.queued_bytes(i):
            self._schedule(dst, self.peers.last_tx(i) + BUBBLE_INTERVAL)

    def _bubble_source(self, dst: bytes) -> bytes:
        """A link-local bubble source keyed by the peer: fe80::/64 plus 64 bits of
        keyed hash (U/L and G bits clear), like Miredo's, so a reply bubble
        carries back a value only we could predict."""
        iid = bytearray(hashlib.blake2s(dst, key=self._secret[:32], digest_size=8).digest())
        iid[0] &= 0xFC
        return b"\xfe\x80" + bytes(6) + bytes(iid)

    def _give_up(self, i: int, dst: bytes, now: float) -> None:
        """§5.4.1: no answer to 4 bubbles: drop the queue with ICMPv6 unreachable."""
        self._retry.pop(dst, None)
        self._drop(DropReason.BUBBLE_GIVE_UP)
        for packet, _tag in self.peers.queue_pop(i):
            self._icmp_error(now, Icmpv6Type.DEST_UNREACHABLE, UnreachableCode.ADDRESS, 0, packet)

    def _schedule(self, key: bytes, at: float) -> None:
        self._retry[key] = at
        heapq.heappush(self._heap, (at, key))

    # -- timers ---------------------------------------------------------------------
    def handle_timer(self, now: float) -> None:
        """Retry bubbles for peers with queued packets; expire peers.  Harmless if early."""
        peers = self.peers
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, key = heapq.heappop(heap)
            if self._retry.get(key) != at:
                continue  # superseded or cancelled
            del self._retry[key]
            i = peers.peek(key)
            if i < 0 or not peers.queued_bytes(i):
                continue
            decision = peers.bubble_decision(i, now)
            if decision is Probe.SEND:
                self._bubble(i, key, now)
            elif decision is Probe.GIVE_UP:
                self._give_up(i, key, now)
            else:
                self._schedule(key, max(now, peers.last_tx(i)) + BUBBLE_INTERVAL)
        for key, queued in peers.handle_timer(now):
            self._retry.pop(key, None)
            self._endpoints.pop(key, None)
            for packet, _tag in queued:
                self._icmp_error(now, Icmpv6Type.DEST_UNREACHABLE, UnreachableCode.ADDRESS, 0, packet)

    # -- ICMPv6 errors (RFC 4443) ------------------------------------------------------
    def _icmp_error(
        self, now: float, typ: int, code: int, param: int, invoking: bytes, teredo: tuple[str, int] | None = None
    ) -> None:
        """Answer ``invoking`` with an ICMPv6 error, if RFC 4443 §2.4 and the rate allow.

        The error goes back where the packet came from: to native IPv6, or
        (``teredo``) to the client's endpoint.  Not answered (§2.4(e)):
        ICMPv6 errors, and packets whose source is not a unicast address
        (nor link-local ones, which an error could not reach across the relay).
        """
        src = invoking[8:24]
        if src[0] == 0xFF or src == bytes(16) or (src[0] == 0xFE and src[1] & 0xC0 == 0x80):
            return  # multicast, unspecified: §2.4(e); link-local: not reachable across the relay
        if invoking[6] == _ICMPV6 and len(invoking) > 40 and invoking[40] < 128:
            return
        if self.icmp_source is None:
            self.counters["icmp_no_source"] += 1
            return
        if not self._icmp_allowed(now):
            self._drop(DropReason.ICMP_RATE_LIMITED)
            return
        msg = Icmpv6Error(typ, code, param, bytes(invoking[:ICMP_ERROR_QUOTE])).emit(self.icmp_source, src)
        packet = ipv6_packet(self.icmp_source, src, _ICMPV6, msg, 64)
        self.counters["icmp_errors"] += 1
        if teredo is not None:
            self._out.append((packet, teredo))
        else:
            self._native.append(packet)

    def _icmp_allowed(self, now: float) -> bool:
        """Token bucket: ``ICMP_ERROR_RATE`` per second, bursts of ``ICMP_ERROR_BURST``."""
        if now > self._tokens_at:
            self._tokens = min(float(ICMP_ERROR_BURST), self._tokens + (now - self._tokens_at) * ICMP_ERROR_RATE)
            self._tokens_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    # -- drops -----------------------------------------------------------------------
    def _drop(self, reason: DropReason) -> None:
        self.drops[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("drop: %s", reason.value)
