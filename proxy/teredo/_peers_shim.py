"""TEMPORARY stand-in for ``proxy.teredo.peers`` (being built on branch ``relay``).

Same API subset as that module's ``PeerTable``, dict-backed; replaced by
the real table when the branch is merged.
"""

from __future__ import annotations

import enum
from collections import deque
from socket import inet_aton, inet_ntoa

from proxy.constants import (
    BUBBLE_INTERVAL, BUBBLE_MAX, BUBBLE_WINDOW, PEER_QUEUE_BYTES, PEER_VALIDITY, PING_INTERVAL, PING_MAX,
)

__all__ = ["PeerTable", "Probe", "bubble_rule", "ping_rule"]


class Probe(enum.Enum):
    SEND = "send"
    WAIT = "wait"
    GIVE_UP = "give-up"


def _rule(sent: int, last: float, now: float, interval: float, limit: int) -> tuple[Probe, int]:
    if sent <= 0:
        return Probe.SEND, 1
    if now - last < interval:
        return Probe.WAIT, sent
    if sent >= limit:
        if now - last >= BUBBLE_WINDOW:
            return Probe.SEND, 1
        return Probe.GIVE_UP, sent
    return Probe.SEND, sent + 1


def bubble_rule(sent: int, last: float, now: float) -> tuple[Probe, int]:
    return _rule(sent, last, now, BUBBLE_INTERVAL, BUBBLE_MAX)


def ping_rule(sent: int, last: float, now: float) -> tuple[Probe, int]:
    return _rule(sent, last, now, PING_INTERVAL, PING_MAX)


class _E:
    __slots__ = ("key", "ipv4", "port", "trusted", "local", "last_rx", "last_tx", "bubbles", "last_bubble",
                 "pings", "last_ping", "queue", "qbytes", "used")


class PeerTable:
    def __init__(self, capacity: int, *, expiry: float = 30.0, queue_bytes: int = PEER_QUEUE_BYTES,
                 max_queued_peers: int = 1024) -> None:
        self.capacity = capacity
        self.expiry = expiry
        self.queue_bytes = queue_bytes
        self._slots: list[_E | None] = []
        self._index: dict[bytes, int] = {}
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, key: bytes) -> int:
        return self._index.get(bytes(key), -1)

    def insert(self, key: bytes, now: float, ipv4: int | str = 0, port: int = 0, *, trusted: bool = False) -> int:
        key = bytes(key)
        i = self._index.get(key, -1)
        if i >= 0:
            return i
        if len(self._index) >= self.capacity:
            return -1
        e = _E()
        e.key, e.trusted, e.local = key, trusted, False
        e.ipv4 = ipv4 if isinstance(ipv4, str) else inet_ntoa(ipv4.to_bytes(4, "big"))
        e.port = port
        e.last_rx = e.last_tx = e.last_bubble = e.last_ping = now - PEER_VALIDITY
        e.bubbles = e.pings = 0
        e.queue, e.qbytes = deque(), 0
        if self._free:
            i = self._free.pop()
            self._slots[i] = e
        else:
            i = len(self._slots)
            self._slots.append(e)
        self._index[key] = i
        return i

    def remove(self, key: bytes) -> bool:
        i = self._index.pop(bytes(key), -1)
        if i < 0:
            return False
        self._slots[i] = None
        self._free.append(i)
        return True

    def clear(self) -> None:
        self._slots.clear()
        self._index.clear()
        self._free.clear()

    def poll_at(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> list:
        return []

    def _e(self, slot: int) -> _E:
        e = self._slots[slot]
        assert e is not None
        return e

    def key_at(self, slot: int) -> bytes:
        return self._e(slot).key

    def is_trusted(self, slot: int) -> bool:
        return self._e(slot).trusted

    def set_trusted(self, slot: int, trusted: bool = True) -> None:
        self._e(slot).trusted = trusted

    def endpoint(self, slot: int) -> tuple[str, int]:
        e = self._e(slot)
        return e.ipv4, e.port

    def set_mapping(self, slot: int, ipv4: int | str, port: int) -> None:
        e = self._e(slot)
        e.ipv4 = ipv4 if isinstance(ipv4, str) else inet_ntoa(ipv4.to_bytes(4, "big"))
        e.port = port

    def touch_rx(self, slot: int, now: float) -> None:
        self._e(slot).last_rx = now

    def touch_tx(self, slot: int, now: float) -> None:
        self._e(slot).last_tx = now

    def is_reachable(self, slot: int, now: float) -> bool:
        e = self._e(slot)
        return e.trusted and now - e.last_rx <= PEER_VALIDITY

    def bubble_decision(self, slot: int, now: float) -> Probe:
        e = self._e(slot)
        d, c = bubble_rule(e.bubbles, e.last_bubble, now)
        if d is Probe.SEND:
            e.bubbles, e.last_bubble, e.last_tx = c, now, now
        return d

    def ping_decision(self, slot: int, now: float) -> Probe:
        e = self._e(slot)
        d, c = ping_rule(e.pings, e.last_ping, now)
        if d is Probe.SEND:
            e.pings, e.last_ping, e.last_tx = c, now, now
        return d

    def answered(self, slot: int, now: float) -> None:
        e = self._e(slot)
        e.trusted, e.last_rx, e.bubbles, e.pings = True, now, 0, 0

    def queue_push(self, slot: int, packet: bytes, tag: object = None) -> bool:
        e = self._e(slot)
        if e.qbytes + len(packet) > self.queue_bytes:
            return False
        e.queue.append((bytes(packet), tag))
        e.qbytes += len(packet)
        return True

    def queue_pop(self, slot: int) -> list:
        e = self._e(slot)
        out = list(e.queue)
        e.queue.clear()
        e.qbytes = 0
        return out

    def queued_bytes(self, slot: int) -> int:
        return self._e(slot).qbytes
