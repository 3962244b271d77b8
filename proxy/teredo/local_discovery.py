"""Optional local client discovery (RFC 4380 §5.2.8) for the Teredo client.

Theory of operation
-------------------
Two Teredo clients behind one NAT that does not hairpin cannot reach each
other at their public mappings.  §5.2.8 lets them find each other on the
LAN: every 200-300 s (uniformly random) a qualified client multicasts a
*discovery bubble* -- IPv6 source = its Teredo address, destination
ff02::1, no payload -- from its service socket to 224.0.0.253:3544 with
IPv4 TTL 1.  A client listening on that group (its driver joins it on a
second socket and hands what arrives to
:meth:`DiscoveryRules.discovery_datagram_received`) that accepts the bubble
records the sender as a *local peer*: its Teredo address, reached at the
IPv4 source address and port the bubble came from (the sender's service
socket on the LAN), for 600 s.  It answers with a unicast bubble there.

Acceptance (every refusal is a ``DropReason``):

* a well-formed discovery bubble: a bare bubble (no indicator, no
  trailer) to ff02::1;
* its source a Teredo address under our prefix, with a mapped port, that is
  not ours;
* from a private or link-local IPv4 address (RFC 1918, 169.254/16): the
  RFC's "on the local subnet", as Miredo master checks it;
* whose embedded mapped IPv4 equals ours: the sender sits behind our NAT
  (the RFC says MAY; Miredo master does, and it keeps a stray bubble from
  another network from diverting traffic).

What a local peer changes (``client_send.py``, ``client_receive.py``):

* §5.2.4 case 3: a packet for a local peer that is not trusted and valid is
  queued, and unicast bubbles (same pacing as case 5: 2 s apart, 4 per
  300 s) go to its local endpoint instead of the public mapping and the
  server;
* §5.2.3 case 5: a packet from a local peer's local endpoint makes the
  peer trusted at that endpoint (and flushes the queue); a bubble that
  makes it trusted is answered with a bubble, so the other side, which may
  have bubbled first, learns that the path works too.

The local-peer list (:class:`LocalPeers`) is kept apart from the peer
table: table entries live only 30-60 s after their last use, a local peer
600 s after its last discovery bubble.  The table still holds the peer's
trust, mapping (the local endpoint) and ``LOCAL`` flag while in use.  It
plays the part the RFC 6081 Alternate Address list plays for hairpinning
(``ReceiveRules._local_endpoint_of``), learnt from multicast instead of
from trailers.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING

from proxy.config.client import ClientConfig
from proxy.constants import (
    ALL_NODES,
    BUBBLE_INTERVAL,
    DISCOVERY_FIRST_DELAY,
    DISCOVERY_HOP_LIMIT,
    DISCOVERY_INTERVAL_MAX,
    DISCOVERY_INTERVAL_MIN,
    DISCOVERY_REPLY_BURST,
    DISCOVERY_REPLY_RATE,
    LOCAL_PEER_VALIDITY,
    MAX_LOCAL_PEERS,
    TEREDO_DISCOVERY_IPV4,
    TEREDO_PORT,
)
from proxy.errors import DropReason, ParseError
from proxy.teredo.address import is_teredo, mapped_endpoint
from proxy.teredo.ipv4 import is_local_scope
from proxy.teredo.packet import TeredoPacket, bubble
from proxy.teredo.peers import PeerTable, Probe
from proxy.teredo.qualification import Qualifier
from proxy.teredo.ratelimit import TokenBucket

if TYPE_CHECKING:
    import random

__all__ = ["LocalPeers", "DiscoveryRules", "discovery_bubble", "DISCOVERY_GROUP"]

Endpoint = tuple[str, int]
log = logging.getLogger("proxy.teredo.client")

#: Where discovery bubbles go (RFC 4380 §5.2.8).
DISCOVERY_GROUP: Endpoint = (TEREDO_DISCOVERY_IPV4, TEREDO_PORT)


def discovery_bubble(src: bytes) -> bytes:
    """The §5.2.8 discovery bubble from Teredo address ``src`` to ff02::1."""
    return bubble(src, ALL_NODES, DISCOVERY_HOP_LIMIT)


class LocalPeers:
    """The §5.2.8 state: when to multicast next, and the local peers heard.

    ``peers`` maps a peer's Teredo address to its local endpoint and the
    time its latest discovery bubble arrived, oldest first; at most
    ``capacity`` entries (the oldest goes first), each valid ``validity``
    seconds.
    """

    def __init__(self, rng: random.Random, *, enabled: bool, capacity: int = MAX_LOCAL_PEERS,
                 validity: float = LOCAL_PEER_VALIDITY) -> None:
        self.rng = rng
        self.enabled = enabled
        "Off: no bubbles, nothing accepted (the option, or a driver that could not join the group)."
        self.capacity = capacity
        self.validity = validity
        self.next_bubble: float | None = None
        "When the next discovery bubble is due (None: not qualified, or disabled)."
        self.peers: OrderedDict[bytes, tuple[Endpoint, float]] = OrderedDict()
        self.replies = TokenBucket(DISCOVERY_REPLY_RATE, DISCOVERY_REPLY_BURST)
        "Unicast bubbles answering local peers' bubbles: bounded, whoever is on the LAN."

    def disable(self) -> None:
        self.enabled = False
        self.reset()

    def reset(self) -> None:
        """Forget the schedule and the peers (address lost or changed)."""
        self.next_bubble = None
        self.peers.clear()

    def qualified(self, now: float) -> None:
        """A (new) address: the first bubble soon, within ``DISCOVERY_FIRST_DELAY``."""
        if self.enabled:
            self.next_bubble = now + self.rng.uniform(0.0, DISCOVERY_FIRST_DELAY)

    def bubble_due(self, now: float) -> bool:
        """True when a bubble should go now; schedules the next one (200-300 s)."""
        if not self.enabled or self.next_bubble is None or now < self.next_bubble:
            return False
        self.next_bubble = now + self.rng.uniform(DISCOVERY_INTERVAL_MIN, DISCOVERY_INTERVAL_MAX)
        return True

    def poll_at(self) -> float | None:
        return self.next_bubble if self.enabled else None

    def heard(self, peer: bytes, endpoint: Endpoint, now: float) -> None:
        """``peer`` announced itself from ``endpoint``: valid for ``validity`` from now."""
        if peer in self.peers:
            self.peers.move_to_end(peer)
        elif len(self.peers) >= self.capacity:
            self.peers.popitem(last=False)
        self.peers[peer] = (endpoint, now)

    def may_reply(self, now: float) -> bool:
        """May we answer a local peer's bubble now?  (``DISCOVERY_REPLY_RATE``)"""
        return self.replies.allow(now)

    def endpoint_of(self, peer: bytes, now: float) -> Endpoint | None:
        """The local endpoint of ``peer`` while it is a valid local peer, else None."""
        entry = self.peers.get(peer)
        if entry is None:
            return None
        if now - entry[1] > self.validity:
            del self.peers[peer]
            return None
        return entry[0]

    def expire(self, now: float) -> None:
        """Drop the entries older than ``validity`` (they are kept oldest first)."""
        while self.peers:
            peer, (_, heard) = next(iter(self.peers.items()))
            if now - heard <= self.validity:
                break
            del self.peers[peer]


class DiscoveryRules:
    """§5.2.8 for :class:`~proxy.teredo.client.TeredoClient` (a mixin; see the module docstring)."""

    config: ClientConfig
    qual: Qualifier
    peers: PeerTable
    discovery: LocalPeers
    stats: Counter[str]
    drops: Counter[DropReason]
    _pending: dict[bytes, float]

    # provided by TeredoClient and the other rule mixins
    def _send(self, payload: bytes, to: Endpoint) -> None: ...
    def _drop(self, reason: DropReason, addr: Endpoint | None, detail: str = "") -> None: ...
    def _pump(self, now: float) -> None: ...
    def _prefix(self) -> bytes: ...
    def _same_nat(self, mapped: Endpoint) -> bool: ...
    def _bubble_to(self, dst: bytes, to: Endpoint, trailer: bytes = b"") -> None: ...
    def _paced(self, decision: Probe, slot: int, dst: bytes, now: float, limit: DropReason) -> bool: ...

    # -- the driver's side -------------------------------------------------------------
    def discovery_datagram_received(self, data: bytes | memoryview, addr: Endpoint, now: float) -> None:
        """A datagram on the discovery (multicast) socket; never raises for any ``data``."""
        try:
            self._discovery_receive(data, addr, now)
        except ParseError as e:
            self._drop(e.reason, addr, e.detail)
        self._pump(now)

    def disable_local_discovery(self) -> None:
        """The driver could not open or join the multicast socket: stop discovering."""
        self.discovery.disable()

    @property
    def local_discovery(self) -> bool:
        """Whether discovery runs (configured, and the driver could join the group)."""
        return self.discovery.enabled

    # -- reception (§5.2.8 and §5.2.3 case 4) ------------------------------------------------
    def _discovery_receive(self, data: bytes | memoryview, addr: Endpoint, now: float) -> None:
        if not self.discovery.enabled:
            raise ParseError(DropReason.DISCOVERY_DISABLED)
        q = self.qual
        if not q.qualified or q.address is None:
            raise ParseError(DropReason.NOT_QUALIFIED, "discovery bubble")
        packet = TeredoPacket.parse(data)
        if (not packet.is_bubble or packet.dst != ALL_NODES or packet.auth is not None
                or packet.origin is not None or packet.trailer):
            raise ParseError(DropReason.NOT_DISCOVERY_BUBBLE)
        src = packet.src
        if not is_teredo(src, self._prefix()) or mapped_endpoint(src)[1] == 0:
            raise ParseError(DropReason.NOT_TEREDO_SOURCE, "discovery bubble")
        if src == q.address:
            raise ParseError(DropReason.DISCOVERY_OWN)
        if not is_local_scope(addr[0]) or addr[1] == 0:
            raise ParseError(DropReason.DISCOVERY_NOT_LOCAL, addr[0])
        if not self._same_nat(mapped_endpoint(src)):
            raise ParseError(DropReason.DISCOVERY_OTHER_NAT, mapped_endpoint(src)[0])
        self.stats["discovery_bubbles_in"] += 1
        self._local_peer_heard(src, addr, now)
        # §5.2.8: answer with a unicast bubble to where the peer spoke from
        # (within a rate: the peer is learnt either way).
        if self.discovery.may_reply(now):
            self._bubble_to(src, addr)
            self.stats["discovery_replies"] += 1
        else:
            self.stats["discovery_replies_limited"] += 1

    def _local_peer_heard(self, src: bytes, addr: Endpoint, now: float) -> None:
        """Create or refresh the local entry (§5.2.8: untrusted, mapping = ``addr``)."""
        self.discovery.heard(src, addr, now)
        peers = self.peers
        slot = peers.lookup(src)
        if slot >= 0 and peers.is_reachable(slot, now):
            # Already talking (over the LAN or a hairpinning NAT): keep that path.
            if peers.endpoint(slot) == addr:
                peers.set_local(slot)
            return
        if slot < 0:
            slot = peers.insert(src, now, *addr)
            if slot < 0:
                raise ParseError(DropReason.PEER_TABLE_FULL)
        else:
            peers.set_mapping(slot, *addr)
            peers.set_trusted(slot, False)
        peers.set_local(slot)
        self.stats["local_peers"] += 1

    def _local_peer_at(self, src: bytes, addr: Endpoint, bubble_: bool, now: float) -> bool:
        """§5.2.3 case 5: does a packet from Teredo ``src`` at ``addr`` come from a local peer?

        Yes when ``src`` is a valid local peer whose local endpoint is
        ``addr``.  DEVIATION (Miredo master's extension; the RFC needs the
        discovery bubble first): also a *bubble* from an unknown peer behind
        our NAT speaking from a private address -- it answers our discovery
        bubble, which reached it while its own had gone out before we
        listened.  It becomes a local peer at once.
        """
        d = self.discovery
        if not d.enabled:
            return False
        ep = d.endpoint_of(src, now)
        if ep is not None:
            return ep == addr
        if bubble_ and is_local_scope(addr[0]) and addr[1] != 0 and self._same_nat(mapped_endpoint(src)):
            d.heard(src, addr, now)
            return True
        return False

    # -- transmission (§5.2.4 case 3) ----------------------------------------------------------
    def _local_endpoint(self, dst: bytes, now: float) -> Endpoint | None:
        """The local endpoint of ``dst`` when it is a valid local peer (§5.2.4 case 3)."""
        if not self.discovery.enabled or not self.discovery.peers:
            return None
        return self.discovery.endpoint_of(dst, now)

    def _probe_local(self, slot: int, dst: bytes, local: Endpoint, now: float) -> None:
        """§5.2.4 case 3: unicast bubbles to the local peer's local endpoint.

        Paced as case 5 (§5.2.6: 2 s apart, 4 per 300 s).  The RFC adds a
        multicast bubble; DEVIATION: we send none here -- the peer's own
        discovery bubble is how we know it, and our scheduled ones go on.
        """
        peers = self.peers
        if peers.endpoint(slot) != local:
            peers.set_mapping(slot, *local)
            peers.set_trusted(slot, False)
        peers.set_local(slot)
        if self._paced(peers.bubble_decision(slot, now), slot, dst, now, DropReason.BUBBLE_LIMIT):
            self._bubble_to(dst, local)
            self.stats["local_bubbles"] += 1
            self._pending[dst] = now + BUBBLE_INTERVAL

    # -- timer ----------------------------------------------------------------------------
    def _discovery_timer(self, now: float) -> None:
        d = self.discovery
        if not d.enabled:
            return
        d.expire(now)
        if self.qual.qualified and self.qual.address is not None and d.bubble_due(now):
            self._send(discovery_bubble(self.qual.address), DISCOVERY_GROUP)
            self.stats["discovery_bubbles"] += 1
