"""Teredo client transmission rules (RFC 4380 §5.2.4, §5.2.6, §5.2.9; RFC 6081 §5.6).

A mixin of :class:`~proxy.teredo.client.TeredoClient`: the methods here see
the client's peer table, qualifier and output queues.  Cases are numbered
as in §5.2.4:

1. a trusted, valid entry: send to its mapping;
2. a native (non-Teredo) destination: queue, and run the direct IPv6
   connectivity test (§5.2.9): an ICMPv6 echo request with a random 64-bit
   nonce, sent through our server; whichever relay brings the reply back
   becomes the peer's mapping (``client_receive.py``);
3. a local peer (§5.2.8, when local discovery is on): queue, and unicast
   bubbles to its local endpoint (``local_discovery.py``);
4. the cone bit: ignored, as Miredo does and §5.2.4 allows (case 5 works
   for cone peers too);
5. otherwise: queue, send a direct bubble to the peer's mapping (it opens
   our NAT for the answer) and an indirect bubble through the peer's
   server (it makes the peer open its own NAT to us), every 2 s, at most 4
   in 300 s (§5.2.6); then give up with ICMPv6 Destination Unreachable.

Bubbles carry the RFC 6081 Alternate Address trailer with our local
endpoint when we sit behind a NAT, so a peer behind the *same* NAT can
reach us without hairpinning (§5.6).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING

from proxy.config.client import ClientConfig
from proxy.constants import (
    CLIENT_MAX_PEERS,
    PEER_QUEUE_BYTES,
    PING_HOP_LIMIT,
    PING_INTERVAL,
    PING_NONCE_LEN,
    PROBE_RECHECK,
    TEREDO_PREFIX,
)
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.icmpv6 import Echo, UnreachableCode
from proxy.ipstack.wire.ipv6 import Ipv6Header, NextHeader
from proxy.teredo.peers import PeerTable, Probe
from proxy.teredo.address import is_teredo, mapped_endpoint, server_ipv4
from proxy.teredo.client_events import NatType
from proxy.teredo.packet import bubble, ipv6_packet
from proxy.teredo.qualification import Qualifier
from proxy.teredo.trailers import Trailers

if TYPE_CHECKING:
    import random

__all__ = ["SendRules"]

Endpoint = tuple[str, int]
log = logging.getLogger("proxy.teredo.client")
_UNSPECIFIED = bytes(16)


class SendRules:
    """§5.2.4 for :class:`TeredoClient` (see the module docstring)."""

    config: ClientConfig
    rng: random.Random
    local: Endpoint | None
    qual: Qualifier
    peers: PeerTable
    stats: Counter[str]
    drops: Counter[DropReason]
    _pings: OrderedDict[bytes, bytes]
    _bubble_nonces: OrderedDict[bytes, bytes]
    _pending: dict[bytes, float]
    _ident: int

    # provided by TeredoClient
    def _send(self, payload: bytes, to: Endpoint) -> None: ...
    def _to_stack(self, packet: bytes) -> None: ...
    def _unreachable(self, packet: bytes, code: int, now: float) -> None: ...
    def _is_global(self, addr: str) -> bool: ...

    if TYPE_CHECKING:  # DiscoveryRules, later in the MRO: no stubs that would shadow it
        def _local_endpoint(self, dst: bytes, now: float) -> Endpoint | None: ...
        def _probe_local(self, slot: int, dst: bytes, local: Endpoint, now: float) -> None: ...

    def _transmit(self, data: bytes | memoryview, now: float) -> None:
        hdr = Ipv6Header.parse(data)
        packet = bytes(data[: hdr.buffer_len()])
        dst = hdr.dst
        if not self.qual.qualified:
            self._unreachable(packet, UnreachableCode.ADDRESS, now)
            raise ParseError(DropReason.NOT_QUALIFIED, "no Teredo address yet")
        if dst[0] == 0xFF:
            raise ParseError(DropReason.MULTICAST_DESTINATION)
        if dst == _UNSPECIFIED or dst[:2] == b"\xfe\x80":
            raise ParseError(DropReason.DESTINATION_NOT_GLOBAL, "unspecified or link-local destination")
        if hdr.src != self.qual.address:
            # Miredo: relaying for other sources would make us an open relay.
            self._unreachable(packet, UnreachableCode.SOURCE_POLICY, now)
            raise ParseError(DropReason.SOURCE_NOT_OURS)
        if len(packet) > self.qual.mtu:
            raise ParseError(DropReason.TOO_BIG, f"{len(packet)} > MTU {self.qual.mtu}")
        if is_teredo(dst, self._prefix()):
            mapped = mapped_endpoint(dst)
            # §5.2.4: the embedded server and mapped addresses must be global.
            if not self._is_global(server_ipv4(dst)) or not self._is_global(mapped[0]) or mapped[1] == 0:
                self._unreachable(packet, UnreachableCode.ADDRESS, now)
                raise ParseError(DropReason.DESTINATION_NOT_GLOBAL)
        else:
            mapped = None
        slot = self.peers.lookup(dst)
        # Case 1: a trusted and valid entry.
        if slot >= 0 and self.peers.is_reachable(slot, now):
            self.peers.touch_tx(slot, now)
            self._send(packet, self.peers.endpoint(slot))
            self.stats["sent"] += 1
            return
        local = self._local_endpoint(dst, now) if mapped is not None else None
        if slot < 0:
            slot = self.peers.insert(dst, now, *(local or mapped or ("0.0.0.0", 0)))
            if slot < 0:
                self._unreachable(packet, UnreachableCode.ADDRESS, now)
                raise ParseError(DropReason.PEER_TABLE_FULL)
        if not self.peers.queue_push(slot, packet, None):
            # DEVIATION (Miredo drops silently, its TODO asks for this): the
            # stack learns at once that the packet went nowhere.
            self._unreachable(packet, UnreachableCode.ADDRESS, now)
            raise ParseError(DropReason.QUEUE_FULL, f"{PEER_QUEUE_BYTES}-byte queue")
        if mapped is None:
            self._probe_native(slot, dst, now)  # case 2
        elif local is not None:
            self._probe_local(slot, dst, local, now)  # case 3
        else:
            self._probe_teredo(slot, dst, now)  # case 5

    # -- case 5: bubbles ---------------------------------------------------------
    def _our_trailer(self) -> bytes:
        """RFC 6081 §5.6: advertise the local endpoint when it differs from the mapping."""
        if not self.config.hairpinning or self.local is None or self.qual.answer is None:
            return b""
        if self.local[0] == "0.0.0.0" or self.local == self.qual.answer.mapped:
            return b""
        return Trailers(alternates=(self.local,)).emit()

    def _bubble_nonce(self, peer: bytes) -> bytes:
        """A fresh fe80::/64 address with 62 random bits (U/L and G bits clear), remembered."""
        iid = bytearray(self.rng.getrandbits(64).to_bytes(8, "big"))
        iid[0] &= 0xFC
        ll = b"\xfe\x80" + bytes(6) + bytes(iid)
        if len(self._bubble_nonces) >= CLIENT_MAX_PEERS:
            self._bubble_nonces.popitem(last=False)
        self._bubble_nonces[ll] = peer
        return ll

    def _bubble_to(self, dst: bytes, to: Endpoint, trailer: bytes = b"") -> None:
        self._send(bubble(self.qual.address, dst) + trailer, to)
        self.stats["bubbles"] += 1

    def _probe_teredo(self, slot: int, dst: bytes, now: float) -> None:
        if self.peers.is_local(slot):
            # §5.2.8: no longer a local peer (600 s without its discovery
            # bubble): its LAN endpoint earns no trust any more.
            self.peers.set_local(slot, False)
            self.peers.set_trusted(slot, False)
            self.peers.set_mapping(slot, *mapped_endpoint(dst))
        if self._paced(self.peers.bubble_decision(slot, now), slot, dst, now, DropReason.BUBBLE_LIMIT):
            trailer = self._our_trailer()
            # Direct bubble: opens our NAT for the peer's answer.  A cone or
            # open client needs none (§5.2.4 case 5).
            if self.qual.nat not in (NatType.CONE, NatType.OPEN):
                self._bubble_to(dst, mapped_endpoint(dst), trailer)
            # Indirect bubble through the peer's server: it opens the peer's NAT.
            # Its source is a random link-local address that the peer's reply
            # bubble carries back as destination (Miredo's scheme): that reply
            # proves the peer saw our bubble even when it comes from another
            # mapping than its address says (NATs that move ports).
            self._send(bubble(self._bubble_nonce(dst), dst) + trailer, (server_ipv4(dst), self.config.server_port))
            self.stats["bubbles"] += 1
            self._pending[dst] = now + PING_INTERVAL

    # -- case 2: the direct IPv6 connectivity test (§5.2.9) -------------------------
    def _probe_native(self, slot: int, dst: bytes, now: float) -> None:
        if self._paced(self.peers.ping_decision(slot, now), slot, dst, now, DropReason.PING_LIMIT):
            self._send_ping(dst)
            self._pending[dst] = now + PING_INTERVAL

    def _send_ping(self, dst: bytes) -> None:
        nonce = self.rng.getrandbits(8 * PING_NONCE_LEN).to_bytes(PING_NONCE_LEN, "big")
        if len(self._pings) >= CLIENT_MAX_PEERS:
            self._pings.popitem(last=False)
        self._pings[nonce] = dst
        src = self.qual.address
        echo = Echo(True, self._ident, self.rng.getrandbits(16), nonce).emit(src, dst)
        self._send(ipv6_packet(src, dst, NextHeader.ICMPV6, echo, PING_HOP_LIMIT), self.qual.primary)
        self.stats["pings"] += 1

    def _paced(self, decision: Probe, slot: int, dst: bytes, now: float, limit: DropReason) -> bool:
        """Act on a §5.2.6 pacing decision: True when the probe may go now
        (the caller sends it); otherwise re-check later, or give up on the
        peer with ``limit`` once its probes are spent."""
        if decision is Probe.SEND:
            return True
        if decision is Probe.WAIT:
            self._wait(dst, now)
        else:
            self._give_up(slot, dst, now, limit)
        return False

    def _wait(self, dst: bytes, now: float) -> None:
        due = self._pending.get(dst)
        if due is None or due <= now:
            self._pending[dst] = now + PROBE_RECHECK

    def _prefix(self) -> bytes:
        answer = self.qual.answer
        return (answer.prefix if answer is not None else TEREDO_PREFIX).to_bytes(4, "big")

    # -- queues ------------------------------------------------------------------------
    def _give_up(self, slot: int, dst: bytes, now: float, reason: DropReason) -> None:
        """The peer did not answer: drop its queue with ICMPv6 unreachable errors."""
        self._pending.pop(dst, None)
        for packet, tag in self.peers.queue_pop(slot):
            self.drops[reason] += 1
            if tag is None:
                self._unreachable(packet, UnreachableCode.ADDRESS, now)

    def _flush(self, slot: int, now: float) -> None:
        """The peer is trusted: send what waited for it, deliver what it sent us.

        Incoming packets held during an echo test are delivered only when
        they came from the endpoint that proved itself (Miredo's rule).
        """
        self._pending.pop(self.peers.key_at(slot), None)
        to = self.peers.endpoint(slot)
        for packet, tag in self.peers.queue_pop(slot):
            if tag is None:
                self._send(packet, to)
                self.peers.touch_tx(slot, now)
                self.stats["sent"] += 1
            elif tag == to:
                self._to_stack(packet)
            else:
                self.drops[DropReason.NOT_FROM_PEER] += 1

    def _retry_pending(self, now: float) -> None:
        """Bubble or ping again for peers whose packets still wait (2 s timer)."""
        for key, due in list(self._pending.items()):
            if due > now:
                continue
            slot = self.peers.lookup(key)
            if slot < 0 or not self.peers.queued_bytes(slot):
                self._pending.pop(key, None)
            elif self.peers.is_reachable(slot, now):
                self._flush(slot, now)
            elif is_teredo(key, self._prefix()):
                local = self._local_endpoint(key, now)
                if local is not None:
                    self._probe_local(slot, key, local, now)
                else:
                    self._probe_teredo(slot, key, now)
            else:
                self._probe_native(slot, key, now)
