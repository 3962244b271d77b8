"""A virtual-time IPv4/UDP network with NAT models, driving sans-I/O cores.

Theory of operation
-------------------
Everything runs in one thread on a virtual clock.  The loop
(:meth:`Network.run`) delivers the earliest scheduled datagram, or, when
none is due before the earliest deadline any node asks for
(``poll_at()``), jumps the clock there and calls ``handle_timer`` (trio's
autojump clock, smoltcp's netsim).  After every step it pulls each node's
output and schedules it, with seeded loss and delay (jitter reorders).  A
whole qualification or peer-to-peer exchange costs milliseconds of real
time, and a seed reproduces it exactly.

Addresses: public hosts and NATs' outside addresses live in one flat IPv4
"internet".  A host behind a :class:`Nat` has a private address; its
datagrams to the internet are translated by the NAT's model:

=================  ======================  ========================
model              mapping                 filtering
=================  ======================  ========================
``full-cone``      endpoint-independent    endpoint-independent
``restricted``     endpoint-independent    address-dependent
``port-restricted`` endpoint-independent   address-and-port-dependent
``symmetric``      address-and-port-dep.   address-and-port-dependent
``linux``          per destination, port   address-and-port-dependent
                   preserving (conntrack)
=================  ======================  ========================

``linux`` is MASQUERADE as Linux conntrack does it: a mapping per remote
endpoint that keeps the local port when it can (and a new destination
reuses the source's most recent mapping, ``find_appropriate_src``); an
unsolicited packet that the filter drops still takes its tuple, so a later
mapping towards that remote endpoint gets another port -- which then
becomes the "most recent" one for every new destination (what the lab
shows).

(terms of RFC 4787).  ``hairpin=True`` lets a host reach another host
behind the same NAT through the NAT's public address; hosts of one NAT
share a LAN (private addresses reach each other directly).  ``open`` means
no NAT at all.  A datagram to an IPv4 multicast group (TTL 1: RFC 4380
§5.2.8 local discovery) reaches every *other* node on the sender's LAN,
through :meth:`Node.deliver` with the group as destination; nodes that are
not behind a NAT share no LAN and get none.

IPv6 side: packets a server or relay core emits towards native IPv6
(``ipv6_to_native``) go to the :class:`NativeHost` owning the destination,
or to the relay for the Teredo prefix; native hosts answer ICMPv6 echo
requests.

Nodes are small adapters (:class:`ClientNode`, :class:`ServerNode`,
:class:`RelayNode`) around the cores; any object with the same few
methods can join.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from proxy.ipstack.wire.icmpv6 import Echo, Icmpv6Type
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.teredo.packet import ipv6_packet

__all__ = [
    "Network",
    "Nat",
    "NAT_MODELS",
    "ClientNode",
    "ServerNode",
    "RelayNode",
    "NativeHost",
]

Endpoint = tuple[str, int]
TEREDO_PREFIX = b"\x20\x01\x00\x00"

#: Model name -> (mapping, filtering); None = no NAT.
NAT_MODELS: dict[str, tuple[str, str] | None] = {
    "open": None,
    "full-cone": ("endpoint", "endpoint"),
    "restricted": ("endpoint", "address"),
    "port-restricted": ("endpoint", "port"),
    "symmetric": ("port", "port"),
    "linux": ("port", "port"),
}


@dataclass
class Nat:
    """A NAT box with one public address (RFC 4787 behaviours)."""

    public_ip: str
    model: str
    hairpin: bool = False
    port_preserving: bool = False
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    mappings: dict[tuple, int] = field(default_factory=dict)
    inside: dict[int, Endpoint] = field(default_factory=dict)
    allowed: dict[int, set] = field(default_factory=dict)
    blocked: set = field(default_factory=set)
    recent: dict = field(default_factory=dict)
    dropped: int = 0

    def __post_init__(self) -> None:
        spec = NAT_MODELS[self.model]
        if spec is None:
            raise ValueError("'open' is no NAT: attach the host directly")
        self.mapping, self.filtering = spec
        self.conntrack = self.model == "linux"
        if self.conntrack:
            self.port_preserving = True

    def _key(self, src: Endpoint, dst: Endpoint) -> tuple:
        if self.mapping == "endpoint":
            return (src,)
        if self.mapping == "address":
            return (src, dst[0])
        return (src, dst)

    def outbound(self, src: Endpoint, dst: Endpoint) -> Endpoint:
        """Translate a datagram leaving ``src`` (private) for ``dst``."""
        key = self._key(src, dst)
        port = self.mappings.get(key)
        if port is None:
            port = 0
            recent = self.recent.get(src) if self.conntrack else None
            if recent and (dst, recent[0]) not in self.blocked:
                # Linux find_appropriate_src(): a new destination reuses the
                # source's most recent mapping when that tuple is free
                port = recent[0]
            if not port and self.port_preserving:
                owner = self.inside.get(src[1])
                if (owner is None or owner == src) and (dst, src[1]) not in self.blocked:
                    port = src[1]
            while not port or (port in self.inside and self.inside[port] != src):
                port = self.rng.randrange(1024, 65536)
            self.mappings[key] = port
            self.inside[port] = src
            self.allowed.setdefault(port, set())
            if self.conntrack:
                self.recent.setdefault(src, []).insert(0, port)
        self.allowed[port].add(dst[0] if self.filtering == "address" else dst)
        return (self.public_ip, port)

    def inbound(self, src: Endpoint, port: int) -> Endpoint | None:
        """The private endpoint a datagram from ``src`` to our ``port`` goes to, or None."""
        inner = self.inside.get(port)
        if inner is not None:
            if self.filtering == "endpoint":
                return inner
            if (src[0] if self.filtering == "address" else src) in self.allowed[port]:
                return inner
        self.dropped += 1
        if self.conntrack:
            self.blocked.add((src, port))  # the dropped packet's conntrack entry holds the tuple
        return None


def _is_multicast(ipv4: str) -> bool:
    """224.0.0.0/4 (RFC 5771)."""
    first = ipv4.split(".", 1)[0]
    return first.isdigit() and 224 <= int(first) <= 239


class Node:
    """Base adapter: a core reachable at some UDP endpoints."""

    net: "Network"
    endpoints: tuple[Endpoint, ...] = ()

    def deliver(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        raise NotImplementedError

    def outputs(self) -> list[tuple[bytes, Endpoint, Endpoint]]:
        return []

    def ipv6_out(self) -> list[bytes]:
        return []

    def ipv6_in(self, packet: bytes, now: float) -> None:
        pass

    def poll_at(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


class ClientNode(Node):
    """A :class:`~proxy.teredo.client.TeredoClient` with a tiny IPv6 "stack".

    The stack answers echo requests to the client's address and records
    every packet delivered; :meth:`ping` sends an echo request.
    """

    def __init__(self, core: Any, local: Endpoint, resolver: dict[str, list[str]] | None = None) -> None:
        self.core = core
        self.local = local
        self.probe = (local[0], local[1] + 10000)
        "The second socket, for the NAT-type comparison."
        self.endpoints = (local, self.probe)
        self.resolver = resolver or {}
        self.events: list[Any] = []
        self.received: list[bytes] = []
        self.replies: dict[int, float] = {}
        "Echo reply sequence numbers -> virtual arrival time."
        self.sent_at: dict[int, float] = {}

    def deliver(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        if dst == self.probe:
            self.core.probe_datagram_received(data, src, now)
        elif _is_multicast(dst[0]):
            if dst[1] == 3544 and getattr(self.core, "local_discovery", False):
                self.core.discovery_datagram_received(data, src, now)  # the driver's group socket
        else:
            self.core.datagram_received(data, src, now)

    def outputs(self) -> list[tuple[bytes, Endpoint, Endpoint]]:
        core = self.core
        while (ev := core.next_event()) is not None:
            self.events.append(ev)
            if type(ev).__name__ == "ResolveServer":
                core.server_resolved(ev.name, self.resolver.get(ev.name, []), self.net.now)
        for pkt in core.ipv6_to_stack():
            self._stack(pkt)
        out = [(d, self.local, to) for d, to in core.datagrams_to_send()]
        out.extend((d, self.probe, to) for d, to in core.probe_datagrams_to_send())
        return out

    def _stack(self, pkt: bytes) -> None:
        self.received.append(pkt)
        if len(pkt) < 48 or pkt[6] != NextHeader.ICMPV6:
            return
        src, dst, msg = pkt[8:24], pkt[24:40], pkt[40:]
        if msg[0] == Icmpv6Type.ECHO_REQUEST and dst == self.core.address:
            req = Echo.parse(msg)
            reply = Echo(False, req.ident, req.seq, req.data).emit(dst, src)
            self.core.ipv6_from_stack(ipv6_packet(dst, src, NextHeader.ICMPV6, reply), self.net.now)
        elif msg[0] == Icmpv6Type.ECHO_REPLY:
            self.replies.setdefault(Echo.parse(msg).seq, self.net.now)

    def ping(self, dst: bytes, seq: int = 1, ident: int = 0x7E5D) -> None:
        src = self.core.address
        msg = Echo(True, ident, seq, b"netsim-ping").emit(src, dst)
        self.sent_at[seq] = self.net.now
        self.core.ipv6_from_stack(ipv6_packet(src, dst, NextHeader.ICMPV6, msg), self.net.now)

    def poll_at(self) -> float | None:
        return self.core.poll_at()

    def handle_timer(self, now: float) -> None:
        self.core.handle_timer(now)


class ServerNode(Node):
    """A :class:`~proxy.teredo.server.TeredoServer` on its two addresses."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.endpoints = (core.primary, core.secondary)

    def deliver(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        self.core.datagram_received(data, dst, src, now)

    def outputs(self) -> list[tuple[bytes, Endpoint, Endpoint]]:
        return self.core.datagrams_to_send()

    def ipv6_out(self) -> list[bytes]:
        return self.core.ipv6_to_native()


class RelayNode(Node):
    """A relay core (``datagram_received``/``ipv6_from_native``/...) at one endpoint.

    Serves the Teredo prefix on the IPv6 side.
    """

    def __init__(self, core: Any, local: Endpoint) -> None:
        self.core = core
        self.local = local
        self.endpoints = (local,)

    def deliver(self, data: bytes, src: Endpoint, dst: Endpoint, now: float) -> None:
        self.core.datagram_received(data, src, now)

    def outputs(self) -> list[tuple[bytes, Endpoint, Endpoint]]:
        return [(d, self.local, to) for d, to in self.core.datagrams_to_send()]

    def ipv6_out(self) -> list[bytes]:
        return self.core.ipv6_to_native()

    def ipv6_in(self, packet: bytes, now: float) -> None:
        self.core.ipv6_from_native(packet, now)

    def poll_at(self) -> float | None:
        return self.core.poll_at()

    def handle_timer(self, now: float) -> None:
        self.core.handle_timer(now)


class NativeHost(Node):
    """A native IPv6 host: answers ICMPv6 echo requests, records the rest."""

    def __init__(self, address: bytes) -> None:
        self.address = address
        self.received: list[bytes] = []
        self._out: list[bytes] = []

    def ipv6_in(self, packet: bytes, now: float) -> None:
        self.received.append(packet)
        if len(packet) >= 48 and packet[6] == NextHeader.ICMPV6 and packet[40] == Icmpv6Type.ECHO_REQUEST:
            req = Echo.parse(packet[40:])
            src = packet[8:24]
            reply = Echo(False, req.ident, req.seq, req.data).emit(self.address, src)
            self._out.append(ipv6_packet(self.address, src, NextHeader.ICMPV6, reply))

    def ipv6_out(self) -> list[bytes]:
        out, self._out = self._out, []
        return out


class Network:
    """The simulated internet: nodes, NATs, a virtual clock and a seeded RNG.

    :param loss: probability that any datagram (or IPv6 packet) is lost.
    :param delay: one-way latency in seconds, plus ``jitter`` (uniform),
        which reorders datagrams when it exceeds their spacing.
    """

    def __init__(self, seed: int = 0, *, loss: float = 0.0, delay: float = 0.005, jitter: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.delay = delay
        self.jitter = jitter
        self.now = 0.0
        self.nodes: list[Node] = []
        self._by_endpoint: dict[Endpoint, Node] = {}
        self._nat_of: dict[str, Nat] = {}
        "Private IPv4 -> the NAT in front of it."
        self._nat_public: dict[str, Nat] = {}
        self._native: dict[bytes, Node] = {}
        self._relay: Node | None = None
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.delivered = 0
        self.lost = 0
        self.trace: list[tuple[float, Endpoint, Endpoint, int]] | None = None

    # -- building -------------------------------------------------------------
    def add_nat(self, public_ip: str, model: str, *, hairpin: bool = False, port_preserving: bool = False) -> Nat:
        nat = Nat(public_ip, model, hairpin, port_preserving, random.Random(self.rng.getrandbits(32)))
        self._nat_public[public_ip] = nat
        return nat

    def add(self, node: Node, nat: Nat | None = None) -> Node:
        node.net = self
        self.nodes.append(node)
        for ep in node.endpoints:
            self._by_endpoint[ep] = node
            if nat is not None:
                self._nat_of[ep[0]] = nat
        if isinstance(node, NativeHost):
            self._native[node.address] = node
        if isinstance(node, RelayNode):
            self._relay = node
        return node

    # -- scheduling -------------------------------------------------------------
    def _later(self, action: Callable[[], None]) -> None:
        if self.loss and self.rng.random() < self.loss:
            self.lost += 1
            return
        t = self.now + self.delay + (self.rng.uniform(0, self.jitter) if self.jitter else 0.0)
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, action))

    def send(self, data: bytes, src: Endpoint, dst: Endpoint) -> None:
        """Route one datagram through the NATs; schedules its delivery or drops it."""
        nat = self._nat_of.get(src[0])
        if _is_multicast(dst[0]):
            self._multicast(data, src, dst, nat)
            return
        if nat is not None:
            if self._nat_of.get(dst[0]) is nat:  # same LAN
                self._schedule(data, src, dst)
                return
            src = nat.outbound(src, dst)
            if dst[0] == nat.public_ip and not nat.hairpin:
                nat.dropped += 1
                return
        self._schedule(data, src, dst)

    def _multicast(self, data: bytes, src: Endpoint, dst: Endpoint, nat: Nat | None) -> None:
        """TTL 1: a copy to every other node on the sender's LAN (none without a NAT)."""
        if nat is None:
            return
        sender = self._by_endpoint.get(src)
        for node in self.nodes:
            if node is sender or not node.endpoints or self._nat_of.get(node.endpoints[0][0]) is not nat:
                continue
            self._later(lambda node=node: self._arrive_multicast(node, data, src, dst))

    def _arrive_multicast(self, node: Node, data: bytes, src: Endpoint, dst: Endpoint) -> None:
        self.delivered += 1
        if self.trace is not None:
            self.trace.append((self.now, src, dst, len(data)))
        node.deliver(data, src, dst, self.now)

    def _schedule(self, data: bytes, src: Endpoint, dst: Endpoint) -> None:
        self._later(lambda: self._arrive(data, src, dst))

    def _arrive(self, data: bytes, src: Endpoint, dst: Endpoint) -> None:
        nat = self._nat_public.get(dst[0])
        if nat is not None:
            inner = nat.inbound(src, dst[1])
            if inner is None:
                return
            dst = inner
        node = self._by_endpoint.get(dst)
        if node is None:
            return
        self.delivered += 1
        if self.trace is not None:
            self.trace.append((self.now, src, dst, len(data)))
        node.deliver(data, src, dst, self.now)

    def send_ipv6(self, packet: bytes) -> None:
        if len(packet) < 40:
            return
        dst = packet[24:40]
        node = self._relay if dst[:4] == TEREDO_PREFIX else self._native.get(dst)
        if node is not None:
            self._later(lambda: node.ipv6_in(packet, self.now))

    # -- running ------------------------------------------------------------------
    def _flush(self) -> None:
        for node in self.nodes:
            for data, src, dst in node.outputs():
                self.send(data, src, dst)
            for pkt in node.ipv6_out():
                self.send_ipv6(pkt)

    def run(self, until: float, stop: Callable[[], object] | None = None, max_steps: int = 1_000_000) -> bool:
        """Run until ``stop()`` is true (returns True) or virtual time ``until`` (False)."""
        for _ in range(max_steps):
            self._flush()
            if stop is not None and stop():
                return True
            t_event = self._heap[0][0] if self._heap else float("inf")
            due = [(t, n) for n in self.nodes if (t := n.poll_at()) is not None]
            t_timer = min((t for t, _ in due), default=float("inf"))
            t = min(t_event, max(t_timer, self.now))
            if t > until:
                self.now = max(self.now, until)
                return False
            self.now = max(self.now, t)
            if t_event <= t:
                heapq.heappop(self._heap)[2]()
            else:
                for when, n in due:
                    if when <= self.now:
                        n.handle_timer(self.now)
        raise RuntimeError("netsim: too many steps (a core keeps asking for a past deadline?)")
