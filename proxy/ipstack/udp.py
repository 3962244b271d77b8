"""UDP sockets of the userspace stack (RFC 768, RFC 1122 §4.1).

Theory of operation
-------------------

A :class:`UdpSocket` is a handle owned by the :class:`~proxy.ipstack.interface.Interface`:
bound to a local port (and optionally one of our addresses), optionally
"connected" to one remote endpoint, with a bounded queue of received
datagrams and of received ICMPv6 errors.  The socket itself sends nothing;
``Interface.udp_send`` builds the packet.

Demultiplexing (:class:`UdpTable`) follows the BSD rule: a socket bound to the
packet's destination address wins over one bound to the wildcard; a
connected socket only hears its peer (others are dropped, as on Linux).
Datagrams for no socket make the Interface answer ICMPv6 Port Unreachable.

RFC 1122 §4.1.3.3: "UDP MUST pass to the application layer all ICMP error
messages that it receives from the IP layer": errors are queued on the
socket that sent the invoking datagram, whatever its connection state; the
asyncio layer decides, like Linux, how to surface them.
"""

from __future__ import annotations

import errno
from collections import deque

from proxy.constants import UDP_MAX_SOCKETS, UDP_RECV_QUEUE_BYTES, UDP_RECV_QUEUE_DATAGRAMS
from proxy.ipstack.ports import Rng, pick_ephemeral_port

__all__ = ["UdpSocket", "UdpTable", "Endpoint"]

#: An IPv6 endpoint inside the stack: (16-byte address, port).
Endpoint = tuple[bytes, int]

#: Errors remembered per socket (the newest win; older ones are stale anyway).
_MAX_ERRORS = 8


class UdpSocket:
    """One UDP socket.  Create with ``Interface.udp_open``."""

    __slots__ = ("local_addr", "local_port", "remote", "closed", "_queue", "_bytes", "_errors")

    def __init__(self, local_addr: bytes | None, local_port: int) -> None:
        #: Our address it is bound to, or None for any of our addresses.
        self.local_addr = local_addr
        #: The bound port.
        self.local_port = local_port
        #: The connected peer, or None.
        self.remote: Endpoint | None = None
        #: True once ``Interface.udp_close`` ran.
        self.closed = False
        self._queue: deque[tuple[bytes, Endpoint]] = deque()
        self._bytes = 0
        self._errors: deque[tuple[str, Endpoint]] = deque(maxlen=_MAX_ERRORS)

    def __repr__(self) -> str:
        return f"<UdpSocket port={self.local_port} remote={self.remote!r} closed={self.closed}>"

    @property
    def queued(self) -> int:
        """Datagrams waiting to be read."""
        return len(self._queue)

    def accepts(self, src: bytes, sport: int) -> bool:
        """A connected socket only hears its peer."""
        return self.remote is None or self.remote == (src, sport)

    def enqueue(self, data: bytes, remote: Endpoint) -> bool:
        """Queue a received datagram; False (dropped) when the queue is full."""
        if len(self._queue) >= UDP_RECV_QUEUE_DATAGRAMS or self._bytes + len(data) > UDP_RECV_QUEUE_BYTES:
            return False
        self._queue.append((data, remote))
        self._bytes += len(data)
        return True

    def dequeue(self) -> tuple[bytes, Endpoint] | None:
        """The oldest received datagram and its sender, or None."""
        if not self._queue:
            return None
        data, remote = self._queue.popleft()
        self._bytes -= len(data)
        return data, remote

    def error_received(self, kind: str, remote: Endpoint) -> None:
        self._errors.append((kind, remote))

    def next_error(self) -> tuple[str, Endpoint] | None:
        return self._errors.popleft() if self._errors else None

    @property
    def pending(self) -> bool:
        """Something (a datagram or an error) is waiting."""
        return bool(self._queue) or bool(self._errors)


class UdpTable:
    """Bound UDP sockets, keyed by (local address or None, port)."""

    def __init__(self, max_sockets: int = UDP_MAX_SOCKETS) -> None:
        self.max_sockets = max_sockets
        self._bound: dict[tuple[bytes | None, int], UdpSocket] = {}
        self._ports: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._bound)

    def sockets(self) -> list[UdpSocket]:
        return list(self._bound.values())

    def bind(self, local_addr: bytes | None, port: int, rng: Rng) -> UdpSocket:
        """Create a socket on ``port`` (0 = an ephemeral port).

        :raises OSError: the port is in use or no port/socket is left
            (misuse by the application: it should propagate).
        """
        if len(self._bound) >= self.max_sockets:
            raise OSError(errno.ENOBUFS, "too many UDP sockets")
        if port == 0:
            chosen = pick_ephemeral_port(rng, lambda p: p in self._ports)
            if chosen is None:
                raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral UDP port")
            port = chosen
        elif not 0 < port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
        elif (local_addr, port) in self._bound or (
            port in self._ports and (local_addr is None or (None, port) in self._bound)
        ):
            raise OSError(errno.EADDRINUSE, f"UDP port {port} already in use")
        sock = UdpSocket(local_addr, port)
        self._bound[(local_addr, port)] = sock
        self._ports[port] = self._ports.get(port, 0) + 1
        return sock

    def unbind(self, sock: UdpSocket) -> None:
        if self._bound.get((sock.local_addr, sock.local_port)) is sock:
            del self._bound[(sock.local_addr, sock.local_port)]
            left = self._ports[sock.local_port] - 1
            if left:
                self._ports[sock.local_port] = left
            else:
                del self._ports[sock.local_port]

    def lookup(self, dst: bytes, port: int) -> UdpSocket | None:
        """The socket a datagram to ``(dst, port)`` belongs to."""
        sock = self._bound.get((dst, port))
        if sock is None:
            sock = self._bound.get((None, port))
        return sock
