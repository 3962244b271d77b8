"""Teredo client core (RFC 4380 §5.2, RFC 5991, parts of RFC 6081). Performs no I/O.

Theory of operation
-------------------
The client sits between a local IPv6 stack and one UDP socket:

* :class:`~proxy.teredo.qualification.Qualifier` obtains and keeps the
  Teredo address (RS/RA with the server, NAT type, refresh, failover).
* Packets from the stack (:meth:`TeredoClient.ipv6_from_stack`) follow the
  §5.2.4 transmission rules (``client_send.py``): straight to a trusted
  peer's mapping; otherwise queued while bubbles (Teredo peers) or an
  ICMPv6 echo test through our server (native peers, relay discovery,
  §5.2.9) find the way; an ICMPv6 error when that gives up.
* Datagrams (:meth:`TeredoClient.datagram_received`) pass the §5.2.3
  reception checks (``client_receive.py``): RAs go to the qualifier;
  server-relayed bubbles get a reply bubble to their origin; anything else
  must come from a trusted peer's mapping, a Teredo address whose
  embedded mapping is the sender, the relay that answered our echo test,
  or (RFC 6081 hairpinning) a same-NAT peer's advertised local endpoint,
  or (§5.2.8, optional) a local peer found by multicast discovery.
* Discovery bubbles from the driver's multicast socket
  (:meth:`TeredoClient.discovery_datagram_received`) and the periodic
  multicast ones we send live in ``local_discovery.py``.

Output is pulled: :meth:`datagrams_to_send` (UDP), :meth:`ipv6_to_stack`
(decapsulated packets), :meth:`next_event` (``Qualified``, ``ResolveServer``
...), :meth:`poll_at`.  Malformed input never raises: every refusal is a
``DropReason`` counted in :attr:`drops`.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque
from typing import TYPE_CHECKING

from proxy.config.client import ClientConfig
from proxy.constants import (
    CLIENT_MAX_PEERS,
    CLIENT_MAX_QUEUED_PEERS,
    CLIENT_STACK_QUEUE,
    ICMP_ERROR_BURST,
    ICMP_ERROR_QUOTE,
    ICMP_ERROR_RATE,
    LINK_LOCAL_RESTRICTED,
    ND_HOP_LIMIT,
)
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.icmpv6 import Icmpv6Error, Icmpv6Type
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.teredo.peers import PeerTable
from proxy.teredo.client_events import AddressChanged, ClientEvent, NatType, QualificationLost, Qualified
from proxy.teredo.client_receive import ReceiveRules
from proxy.teredo.client_send import SendRules
from proxy.teredo.local_discovery import DiscoveryRules, LocalPeers
from proxy.teredo.ipv4 import global_check
from proxy.teredo.packet import TeredoPacket, ipv6_packet
from proxy.teredo.qualification import Qualifier
from proxy.teredo.ratelimit import TokenBucket

if TYPE_CHECKING:
    import random

__all__ = ["TeredoClient"]

Endpoint = tuple[str, int]
log = logging.getLogger("proxy.teredo.client")


class TeredoClient(SendRules, ReceiveRules, DiscoveryRules):
    """A Teredo client (RFC 4380 §5.2): qualification, maintenance, peers.

    :param config: the resolved :class:`ClientConfig`.
    :param rng: randomness for nonces, flag bits and refresh jitter
        (``random.SystemRandom()`` in production, seeded in tests).
    :param local: the local (IPv4, port) of the socket, when known: it
        tells an open NAT-less path from a cone NAT and is advertised to
        same-NAT peers (RFC 6081 hairpinning).
    """

    def __init__(self, config: ClientConfig, *, rng: random.Random, local: Endpoint | None = None) -> None:
        self.config = config
        self.rng = rng
        self.local = local
        self.qual = Qualifier(config, rng=rng, local=local)
        self.peers = PeerTable(CLIENT_MAX_PEERS, max_queued_peers=CLIENT_MAX_QUEUED_PEERS)
        self._is_global = global_check(config.allow_loopback)
        self._pings: OrderedDict[bytes, bytes] = OrderedDict()
        "Relay-discovery echo nonce -> the native address it tests (§5.2.9)."
        self._bubble_nonces: OrderedDict[bytes, bytes] = OrderedDict()
        "Link-local source of an indirect bubble -> the peer it went to."
        self._alternates: OrderedDict[Endpoint, tuple[Endpoint, ...]] = OrderedDict()
        "Same-NAT peers' public mapping -> their advertised local endpoints (RFC 6081 §5.6)."
        self._pending: dict[bytes, float] = {}
        "Peers with queued packets -> when to bubble or ping again."
        self.discovery = LocalPeers(rng, enabled=config.local_discovery)
        "RFC 4380 §5.2.8 local discovery: schedule and local peers (``local_discovery.py``)."
        self._ident = rng.getrandbits(16)
        self._datagrams: list[tuple[bytes, Endpoint]] = []
        self._stack: deque[bytes] = deque()
        self._events: deque[ClientEvent] = deque()
        self._icmp_limit = TokenBucket(ICMP_ERROR_RATE, ICMP_ERROR_BURST)
        self._started = False
        self._last_addr: bytes | None = None
        self.drops: Counter[DropReason] = Counter()
        "Refused packets by reason."
        self.stats: Counter[str] = Counter()
        "What was done: bubbles, pings, packets in and out, ICMPv6 errors..."

    # -- the sans-I/O contract ----------------------------------------------
    def start(self, now: float) -> None:
        """Begin qualifying (also done by the first :meth:`handle_timer`)."""
        if not self._started:
            self._started = True
            self.qual.start(now)
            self._pump(now)

    def datagram_received(self, data: bytes | memoryview, addr: Endpoint, now: float) -> None:
        """One UDP datagram from ``addr``; never raises for any ``data``."""
        if self._receive_fast(data, addr, now):
            return  # touched neither the qualifier nor the peers' queues: nothing to pump
        try:
            self._receive(data, addr, now)
        except ParseError as e:
            self._drop(e.reason, addr, e.detail)
        self._pump(now)

    def ipv6_from_stack(self, packet: bytes | memoryview, now: float) -> None:
        """An IPv6 packet the local stack wants sent; never raises for any input."""
        try:
            self._transmit(packet, now)
        except ParseError as e:
            self._drop(e.reason, None, e.detail)
        self._pump(now)

    def probe_datagram_received(self, data: bytes | memoryview, addr: Endpoint, now: float) -> None:
        """A datagram on the probe socket: only our server's RAs are expected there."""
        try:
            packet = TeredoPacket.parse(data)
            if not self.qual.is_server(addr):
                raise ParseError(DropReason.NOT_FROM_SERVER, "probe socket")
            self.qual.ra_received(packet, addr, now, via_probe=True)
        except ParseError as e:
            self._drop(e.reason, addr, e.detail)
        self._pump(now)

    def probe_datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        """``(payload, (ipv4, port))`` to send from the probe socket (NAT-type check)."""
        return self.qual.probe_datagrams_to_send()

    def server_resolved(self, name: str, ipv4s: list[str] | tuple[str, ...], now: float) -> None:
        """Answer to a :class:`ResolveServer` event (an empty list: it failed)."""
        self.qual.server_resolved(name, ipv4s, now)
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        """Timers: qualification, bubble and ping retries.  Harmless when early."""
        if not self._started:
            self.start(now)
        self.qual.handle_timer(now)
        self._pump(now)
        self._discovery_timer(now)
        if self._pending and self.qual.qualified:
            self._retry_pending(now)
        for key, queued in self.peers.handle_timer(now):
            # expired entries: what still waited for them never left
            self._pending.pop(key, None)
            for packet, tag in queued:
                if tag is None:
                    self._unreachable(packet, 3, now)

    def poll_at(self) -> float | None:
        if not self._started:
            return 0.0
        times = [t for t in (self.qual.poll_at(), self.peers.poll_at(), self.discovery.poll_at()) if t is not None]
        if self._pending and self.qual.qualified:
            times.append(min(self._pending.values()))
        return min(times) if times else None

    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        """``(payload, (ipv4, port))`` due now."""
        out = self.qual.datagrams_to_send()
        if self._datagrams:
            out.extend(self._datagrams)
            self._datagrams = []
        return out

    def ipv6_to_stack(self) -> list[bytes]:
        """Decapsulated IPv6 packets (and ICMPv6 errors) for the local stack."""
        out = list(self._stack)
        self._stack.clear()
        return out

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def set_local_endpoint(self, local: Endpoint) -> None:
        """The driver learnt the socket's local (IPv4, port)."""
        self.local = local
        self.qual.local = local

    # -- state, for drivers and status files ---------------------------------------
    @property
    def state(self) -> str:
        """``starting``, ``qualifying``, ``qualified`` or ``failed`` (CONTRACT.md)."""
        return self.qual.public_state

    @property
    def qualified(self) -> bool:
        return self.qual.qualified

    @property
    def address(self) -> bytes | None:
        """Our 16-byte Teredo address while qualified."""
        return self.qual.address if self.qual.qualified else None

    @property
    def nat(self) -> NatType:
        return self.qual.nat

    @property
    def mtu(self) -> int:
        return self.qual.mtu

    @property
    def server(self) -> str | None:
        return self.qual.server

    # -- internals shared by the rule mixins -------------------------------------------
    def _pump(self, now: float) -> None:
        """Move the qualifier's events to ours, reacting to address changes."""
        while (ev := self.qual.next_event()) is not None:
            # Miredo resets its peer list on every new address: peers were
            # reached with the old mapping and trust must be earned again.
            if isinstance(ev, Qualified):
                if ev.address != self._last_addr:
                    self._forget_peers()
                    self.discovery.qualified(now)  # §5.2.8: announce the new address soon
                self._last_addr = ev.address
            elif isinstance(ev, (QualificationLost, AddressChanged)):
                self._forget_peers()
                self._last_addr = None
            self._events.append(ev)

    def _forget_peers(self) -> None:
        self.peers.clear()
        self._pending.clear()
        self._pings.clear()
        self._bubble_nonces.clear()
        self._alternates.clear()
        self.discovery.reset()

    def _drop(self, reason: DropReason, addr: Endpoint | None, detail: str = "") -> None:
        self.drops[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            where = f" from {addr[0]}:{addr[1]}" if addr else ""
            log.debug("dropping packet%s: %s %s", where, reason.value, detail)

    def _to_stack(self, packet: bytes) -> None:
        if len(self._stack) >= CLIENT_STACK_QUEUE:
            self.drops[DropReason.QUEUE_FULL] += 1
            return
        self._stack.append(packet)
        self.stats["to_stack"] += 1

    def _send(self, payload: bytes, to: Endpoint) -> None:
        self._datagrams.append((payload, to))

    def _icmp_error(self, packet: bytes, typ: int, code: int, now: float) -> None:
        """An ICMPv6 error about ``packet`` for the local stack (rate-limited).

        Never about an ICMPv6 error (RFC 4443 §2.4(e)); the source is the
        Teredo interface's link-local address, as Miredo's tun has.
        """
        if len(packet) < 40:
            return
        if packet[6] == NextHeader.ICMPV6 and len(packet) > 40 and packet[40] < 128:
            return
        if not self._icmp_limit.allow(now):
            self.drops[DropReason.RATE_LIMITED] += 1
            return
        dst = bytes(packet[8:24])
        msg = Icmpv6Error(typ, code, 0, bytes(packet[: ICMP_ERROR_QUOTE])).emit(LINK_LOCAL_RESTRICTED, dst)
        self._to_stack(ipv6_packet(LINK_LOCAL_RESTRICTED, dst, NextHeader.ICMPV6, msg, ND_HOP_LIMIT))
        self.stats["icmp_errors"] += 1

    def _unreachable(self, packet: bytes, code: int, now: float) -> None:
        self._icmp_error(packet, Icmpv6Type.DEST_UNREACHABLE, code, now)
