"""An in-memory "native IPv6 Internet" for the demo and the test fixtures.

A router with a table of prefixes: each entry delivers packets to one
attached party (the relay's :class:`~proxy.native.memory.MemoryLink`, a
userspace host's stack, ...).  Packets are routed by longest prefix match on
the destination, with the hop limit decremented and Time Exceeded or
Destination Unreachable sent back as a real router would (RFC 4443), so the
client's ICMPv6 error handling can be exercised in-process too.

Delivery is synchronous except for the relay's socket-pair link, which is
read with ``add_reader`` like every other socket of the project.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Callable

from proxy.ipstack.wire.icmpv6 import Icmpv6Error, Icmpv6Type
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.teredo.packet import ipv6_packet

__all__ = ["Ipv6Network"]

log = logging.getLogger("proxy.testing.ipv6net")

Deliver = Callable[[bytes], None]


class Ipv6Network:
    """Longest-prefix-match router between in-process IPv6 parties.

    :param router_address: source of the ICMPv6 errors the router sends.
    """

    def __init__(self, router_address: str = "2001:db8:1::1") -> None:
        self.router_address = ipaddress.IPv6Address(router_address).packed
        self._routes: list[tuple[int, int, str, Deliver]] = []  # (plen, network int, name, deliver)
        self.counters: Counter[str] = Counter()
        "Packets routed per destination name, and drops by reason."
        self._readers: list[tuple[asyncio.AbstractEventLoop, int]] = []

    def add_route(self, prefix: str, name: str, deliver: Deliver) -> None:
        """Send packets for ``prefix`` (e.g. ``2001::/32``) to ``deliver``."""
        net = ipaddress.IPv6Network(prefix)
        self._routes.append((net.prefixlen, int(net.network_address), name, deliver))
        self._routes.sort(key=lambda r: -r[0])

    def attach_link(self, link, prefix: str, name: str, loop: asyncio.AbstractEventLoop) -> None:
        """Route ``prefix`` into a :class:`MemoryLink`'s peer socket, and route
        whatever the link's owner sends out of it."""
        peer = link.peer
        self.add_route(prefix, name, lambda pkt: self._send_peer(peer, pkt, name))

        def readable() -> None:
            for _ in range(256):
                try:
                    pkt = peer.recv(65535)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                self.send(pkt)

        loop.add_reader(peer.fileno(), readable)
        self._readers.append((loop, peer.fileno()))

    def _send_peer(self, peer, pkt: bytes, name: str) -> None:
        try:
            peer.send(pkt)
        except (BlockingIOError, InterruptedError):
            self.counters[f"{name}:queue-full"] += 1

    def send(self, packet: bytes) -> None:
        """Route one IPv6 packet (from any party)."""
        if len(packet) < 40 or packet[0] >> 4 != 6:
            self.counters["drop:malformed"] += 1
            return
        dst = int.from_bytes(packet[24:40], "big")
        for plen, net, name, deliver in self._routes:
            shift = 128 - plen
            if dst >> shift == net >> shift:
                if packet[7] <= 1:
                    self.counters["drop:hop-limit"] += 1
                    self._error(packet, Icmpv6Type.TIME_EXCEEDED, 0)
                    return
                pkt = bytearray(packet)
                pkt[7] -= 1
                self.counters[name] += 1
                deliver(bytes(pkt))
                return
        self.counters["drop:no-route"] += 1
        self._error(packet, Icmpv6Type.DEST_UNREACHABLE, 0)

    def _error(self, packet: bytes, typ: int, code: int) -> None:
        """RFC 4443 §2.4: never about an error message, nor a multicast source."""
        if packet[6] == NextHeader.ICMPV6 and len(packet) > 40 and packet[40] < 128:
            return
        src = packet[8:24]
        if src[0] == 0xFF or src == bytes(16):
            return
        msg = Icmpv6Error(typ, code, 0, packet).emit(self.router_address, src)
        self.send(ipv6_packet(self.router_address, src, NextHeader.ICMPV6, msg, 64))

    def close(self) -> None:
        for loop, fd in self._readers:
            try:
                loop.remove_reader(fd)
            except (ValueError, OSError):
                pass
        self._readers.clear()
