"""Per-peer records of the peer table: layout, field access, snapshots, queues.

The table (:mod:`proxy.teredo.peers`) owns the index and expiry; this
module owns what a slot holds, as a mixin of :class:`~proxy.teredo.peers.PeerTable`:
the packed 28-byte record (:data:`REC`), its flag bits, the accessors the
relay and client use on a slot, the rate-rule wrappers that record a bubble
or echo request, and the per-peer packet queues kept outside the arrays.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from socket import inet_aton, inet_ntoa
from typing import TYPE_CHECKING

from proxy.constants import PEER_TIME_UNIT, PEER_VALIDITY
from proxy.teredo.peer_rules import Probe, bubble_rule, ping_rule, ticks, ticks_up

if TYPE_CHECKING:
    import mmap

__all__ = [
    "PeerRecords", "PeerInfo", "QueueItem", "REC", "REC_SIZE", "TRUSTED", "LOCAL", "QUEUED",
    "B_FLAGS", "B_BUBBLES", "B_PINGS", "U32_IPV4", "U16_PORT", "I32_RX", "I32_TX", "I32_BUBBLE", "I32_PING",
]

#: Flag bits.  TRUSTED: RFC 4380 §5.2 "status"; LOCAL: a local peer (§5.2.8,
#: client only); QUEUED: the peer has packets in its queue.
TRUSTED = 0x01
LOCAL = 0x02
QUEUED = 0x04

#: The per-slot record: flags, bubbles, pings, pad, IPv4 (u32), port (u16),
#: pad, last_rx, last_tx, last_bubble, last_ping (i32 ticks).  Native byte
#: order, no alignment padding: 28 bytes, a multiple of 4 so the typed
#: views index it directly.
REC = struct.Struct("=BBBxIHxxiiii")
REC_SIZE = REC.size
#: Field positions: byte offsets in a record (``B_*``), and indexes in units
#: of the field size for the typed views: for slot ``i``, ``rec[i * 28 +
#: B_FLAGS]``, ``rec_u32[i * 7 + U32_IPV4]``, ``rec_u16[i * 14 + U16_PORT]``,
#: ``rec_i32[i * 7 + I32_RX]``.
B_FLAGS, B_BUBBLES, B_PINGS = 0, 1, 2
U32_IPV4 = 1
U16_PORT = 4
I32_RX, I32_TX, I32_BUBBLE, I32_PING = 3, 4, 5, 6
assert REC_SIZE == 28

_VALID_TICKS = int(PEER_VALIDITY / PEER_TIME_UNIT)

QueueItem = tuple[bytes, object]
"A queued packet and the caller's tag (e.g. the source endpoint of an incoming packet)."


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A snapshot of one entry (for tests, status dumps and slow paths)."""

    key: bytes
    "The peer's 16-byte IPv6 address."
    ipv4: str
    "Mapped IPv4 address (where packets for the peer go)."
    port: int
    "Mapped UDP port."
    trusted: bool
    "RFC 4380 §5.2 status."
    local: bool
    "A local peer (§5.2.8)."
    last_rx: float
    "Date of last reception."
    last_tx: float
    "Date of last transmission."
    bubbles: int
    "Bubbles sent since the peer last answered."
    last_bubble: float
    "When the latest bubble went."
    pings: int
    "Echo requests sent since the peer last answered."
    last_ping: float
    "When the latest echo request went."
    queued: int
    "Bytes waiting in the peer's queue."


class _Queue:
    """A FIFO of packets for one peer, with its byte count."""

    __slots__ = ("items", "nbytes")

    def __init__(self) -> None:
        self.items: deque[QueueItem] = deque()
        self.nbytes = 0


class PeerRecords:
    """Slot-level access for :class:`~proxy.teredo.peers.PeerTable` (a mixin).

    Slot numbers come from ``lookup``/``insert``/``peek`` and stay valid
    until the next insertion or removal.
    """

    __slots__ = ()
    keys: "mmap.mmap"
    rec: "mmap.mmap"
    rec_i32: memoryview
    rec_u32: memoryview
    rec_u16: memoryview
    queue_bytes: int
    max_queued_peers: int
    _queues: "dict[bytes, _Queue]"

    # -- fields -----------------------------------------------------------------
    def key_at(self, slot: int) -> bytes:
        return self.keys[slot * 16 : slot * 16 + 16]

    def flags(self, slot: int) -> int:
        return self.rec[slot * REC_SIZE + B_FLAGS]

    def is_trusted(self, slot: int) -> bool:
        return bool(self.rec[slot * REC_SIZE + B_FLAGS] & TRUSTED)

    def set_trusted(self, slot: int, trusted: bool = True) -> None:
        self._set_flag(slot, TRUSTED, trusted)

    def is_local(self, slot: int) -> bool:
        return bool(self.rec[slot * REC_SIZE + B_FLAGS] & LOCAL)

    def set_local(self, slot: int, local: bool = True) -> None:
        self._set_flag(slot, LOCAL, local)

    def _set_flag(self, slot: int, bit: int, on: bool) -> None:
        o = slot * REC_SIZE + B_FLAGS
        self.rec[o] = (self.rec[o] | bit) if on else (self.rec[o] & ~bit & 0xFF)

    def mapping(self, slot: int) -> tuple[int, int]:
        """The mapped (IPv4 as int, port)."""
        return self.rec_u32[slot * 7 + U32_IPV4], self.rec_u16[slot * 14 + U16_PORT]

    def endpoint(self, slot: int) -> tuple[str, int]:
        """The mapped ``(IPv4, port)`` as a socket address."""
        return inet_ntoa(self.rec_u32[slot * 7 + U32_IPV4].to_bytes(4, "big")), self.rec_u16[slot * 14 + U16_PORT]

    def set_mapping(self, slot: int, ipv4: int | str, port: int) -> None:
        if isinstance(ipv4, str):
            ipv4 = int.from_bytes(inet_aton(ipv4), "big")
        self.rec_u32[slot * 7 + U32_IPV4] = ipv4
        self.rec_u16[slot * 14 + U16_PORT] = port

    def touch_rx(self, slot: int, now: float) -> None:
        """Record a reception (RFC 4380 §5.2 "date of last reception")."""
        self.rec_i32[slot * 7 + I32_RX] = ticks(now)

    def touch_tx(self, slot: int, now: float) -> None:
        """Record a transmission ("date of last transmission")."""
        self.rec_i32[slot * 7 + I32_TX] = ticks_up(now)

    def last_rx(self, slot: int) -> float:
        return self.rec_i32[slot * 7 + I32_RX] * PEER_TIME_UNIT

    def last_tx(self, slot: int) -> float:
        return self.rec_i32[slot * 7 + I32_TX] * PEER_TIME_UNIT

    def is_reachable(self, slot: int, now: float) -> bool:
        """Trusted and heard from within ``PEER_VALIDITY`` (RFC 4380 §5.2)."""
        return bool(self.rec[slot * REC_SIZE] & TRUSTED) and ticks(now) - self.rec_i32[slot * 7 + I32_RX] <= _VALID_TICKS

    def bubble_decision(self, slot: int, now: float) -> Probe:
        """Apply :func:`bubble_rule`; on SEND, count the bubble as sent now."""
        o = slot * REC_SIZE + B_BUBBLES
        decision, count = bubble_rule(self.rec[o], self.rec_i32[slot * 7 + I32_BUBBLE] * PEER_TIME_UNIT, now)
        if decision is Probe.SEND:
            self.rec[o] = min(count, 255)
            self.rec_i32[slot * 7 + I32_BUBBLE] = self.rec_i32[slot * 7 + I32_TX] = ticks_up(now)
        return decision

    def ping_decision(self, slot: int, now: float) -> Probe:
        """Apply :func:`ping_rule`; on SEND, count the echo request as sent now."""
        o = slot * REC_SIZE + B_PINGS
        decision, count = ping_rule(self.rec[o], self.rec_i32[slot * 7 + I32_PING] * PEER_TIME_UNIT, now)
        if decision is Probe.SEND:
            self.rec[o] = min(count, 255)
            self.rec_i32[slot * 7 + I32_PING] = self.rec_i32[slot * 7 + I32_TX] = ticks_up(now)
        return decision

    def answered(self, slot: int, now: float) -> None:
        """The peer answered (RFC 4380 §5.2.3, §5.4.2): trusted, last reception
        now, bubble and ping counters back to zero (as Miredo's ``teredo_predecap``)."""
        o = slot * REC_SIZE
        self.rec[o + B_FLAGS] |= TRUSTED
        self.rec[o + B_BUBBLES] = 0
        self.rec[o + B_PINGS] = 0
        self.rec_i32[slot * 7 + I32_RX] = ticks(now)

    def info(self, slot: int) -> PeerInfo:
        """A snapshot of the entry in ``slot``."""
        fl, bub, png, ip, port, rx, tx, tb, tp = REC.unpack_from(self.rec, slot * REC_SIZE)
        u = PEER_TIME_UNIT
        return PeerInfo(
            key=self.key_at(slot), ipv4=inet_ntoa(ip.to_bytes(4, "big")), port=port,
            trusted=bool(fl & TRUSTED), local=bool(fl & LOCAL),
            last_rx=rx * u, last_tx=tx * u, bubbles=bub, last_bubble=tb * u, pings=png, last_ping=tp * u,
            queued=self.queued_bytes(slot),
        )

    def get(self, key: bytes) -> PeerInfo | None:
        """Snapshot of the live entry for ``key`` (does not count as a use)."""
        i = self._locate(key)
        return self.info(i) if i >= 0 and self._alive(i) else None

    # -- queues -----------------------------------------------------------------
    def queue_push(self, slot: int, packet: bytes, tag: object = None) -> bool:
        """Append a packet to the peer's FIFO; False (not queued) when over budget.

        Budgets: ``queue_bytes`` per peer (RFC 4380 §5.4.1: relays "SHOULD
        limit the size of the queue"), ``max_queued_peers`` peers.
        """
        n = len(packet)
        if n > self.queue_bytes:
            return False
        key = self.key_at(slot)
        o = slot * REC_SIZE + B_FLAGS
        q = self._queues.get(key) if self.rec[o] & QUEUED else None
        if q is None:
            if len(self._queues) >= self.max_queued_peers:
                return False
            q = self._queues[key] = _Queue()
            self.rec[o] |= QUEUED
        if q.nbytes + n > self.queue_bytes:
            return False
        q.items.append((bytes(packet), tag))
        q.nbytes += n
        return True

    def queue_pop(self, slot: int) -> list[QueueItem]:
        """Take every queued packet of the peer, oldest first."""
        o = slot * REC_SIZE + B_FLAGS
        if not self.rec[o] & QUEUED:
            return []
        self.rec[o] &= ~QUEUED & 0xFF
        q = self._queues.pop(self.key_at(slot), None)
        return list(q.items) if q else []

    def queued_bytes(self, slot: int) -> int:
        if not self.rec[slot * REC_SIZE + B_FLAGS] & QUEUED:
            return 0
        q = self._queues.get(self.key_at(slot))
        return q.nbytes if q else 0

    def queued_peers(self) -> list[bytes]:
        """Keys of the peers that have packets waiting."""
        return list(self._queues)
