"""TCP demultiplexing for the Interface: connections, listeners, RSTs, timers.

Theory of operation
-------------------

:class:`TcpTable` owns every :class:`~proxy.ipstack.tcp.TcpConnection` of an
Interface and never looks inside one (the TCP contract): it routes segments
by 4-tuple ``(local address, local port, remote address, remote port)``,
creates connections for SYNs that reach a :class:`TcpListener`, answers what
belongs to no connection with an RST (RFC 9293 §3.10.7.1 for CLOSED,
§3.10.7.2 for LISTEN), and forgets connections that say they are ``closed``.

Work is proportional to what changed, not to the number of connections:

* a connection that received input, had a timer fire or was used by the
  application is *dirty*; :meth:`TcpTable.segments_to_send` asks only dirty
  connections for segments, then files their new ``poll_at()`` in one heap;
* the same connections are *evented*; :meth:`TcpTable.next_event` drains
  only those;
* :meth:`TcpTable.poll_at` is the heap's top (stale entries are skipped
  lazily), so the Interface and its driver keep a single timer.

Listeners bound a backlog: connections still in the handshake plus
established ones whose acceptance the driver has not yet pulled (as
:class:`~proxy.ipstack.events.ConnectionAccepted`).  A SYN beyond the backlog
is dropped, as Linux does with a full accept queue, so the peer retries; a
SYN beyond the global ``TCP_MAX_CONNECTIONS`` gets an RST so it fails fast.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import logging
from collections import Counter

from proxy.constants import TCP_MAX_BACKLOG, TCP_MAX_CONNECTIONS
from proxy.errors import DropReason
from proxy.ipstack.events import ConnectionAccepted, ConnectionEvent, InterfaceEvent
from proxy.ipstack.ports import Rng, pick_ephemeral_port
from proxy.ipstack.tcp import (
    Connected,
    ConnectionClosed,
    TcpConfig,
    TcpConnection,
    reset_for,
)
from proxy.ipstack.wire.tcp import TcpFlags, TcpSegment

__all__ = ["TcpListener", "TcpTable", "ConnKey"]

log = logging.getLogger(__name__)

#: (local address, local port, remote address, remote port)
ConnKey = tuple[bytes, int, bytes, int]

_RST = int(TcpFlags.RST)
_SYN = int(TcpFlags.SYN)
_ACK = int(TcpFlags.ACK)


class TcpListener:
    """A listening port.  Create with ``Interface.tcp_listen``."""

    __slots__ = ("local_addr", "port", "backlog", "closed", "_pending", "config")

    def __init__(self, local_addr: bytes | None, port: int, backlog: int, config: TcpConfig) -> None:
        #: Our address it listens on, or None for all of them.
        self.local_addr = local_addr
        #: The port.
        self.port = port
        #: Connections allowed between SYN and acceptance.
        self.backlog = backlog
        #: The TCP configuration of accepted connections.
        self.config = config
        #: True once closed.
        self.closed = False
        self._pending: dict[int, TcpConnection] = {}

    def __repr__(self) -> str:
        return f"<TcpListener port={self.port} pending={len(self._pending)}>"

    @property
    def pending(self) -> int:
        """Connections counted against the backlog."""
        return len(self._pending)


class TcpTable:
    """The TCP sockets of one Interface.  Performs no I/O."""

    def __init__(
        self,
        config: TcpConfig,
        rng: Rng,
        drops: Counter[DropReason],
        *,
        max_connections: int = TCP_MAX_CONNECTIONS,
    ) -> None:
        self.config = config
        self.rng = rng
        self.drops = drops
        self.max_connections = max_connections
        self._conns: dict[ConnKey, TcpConnection] = {}
        self._keys: dict[int, ConnKey] = {}
        self._listeners: dict[tuple[bytes | None, int], TcpListener] = {}
        self._listener_of: dict[int, TcpListener] = {}
        self._dirty: dict[int, TcpConnection] = {}
        self._evented: dict[int, TcpConnection] = {}
        self._deadlines: dict[int, float] = {}
        self._heap: list[tuple[float, int, TcpConnection]] = []
        self._counter = 0
        #: Segments (with their 4-tuple) the table itself must send: RSTs.
        self._replies: list[tuple[bytes, bytes, TcpSegment]] = []

    # -- introspection -------------------------------------------------------

    def __len__(self) -> int:
        return len(self._conns)

    def connections(self) -> list[TcpConnection]:
        return list(self._conns.values())

    def lookup(self, key: ConnKey) -> TcpConnection | None:
        return self._conns.get(key)

    def listeners(self) -> list[TcpListener]:
        return list(self._listeners.values())

    # -- application side ----------------------------------------------------

    def touch(self, conn: TcpConnection) -> None:
        """The connection has input: collect its output and events next time."""
        self._dirty[id(conn)] = conn
        self._evented[id(conn)] = conn

    def listen(self, local_addr: bytes | None, port: int, backlog: int, config: TcpConfig) -> TcpListener:
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port {port} out of range")
        if (local_addr, port) in self._listeners or (
            local_addr is None and any(p == port for _a, p in self._listeners)
        ) or (None, port) in self._listeners:
            raise OSError(errno.EADDRINUSE, f"TCP port {port} already listening")
        listener = TcpListener(local_addr, port, max(1, min(backlog, TCP_MAX_BACKLOG)), config)
        self._listeners[(local_addr, port)] = listener
        return listener

    def close_listener(self, listener: TcpListener, now: float) -> None:
        """Stop listening; connections not yet accepted are reset."""
        if self._listeners.get((listener.local_addr, listener.port)) is listener:
            del self._listeners[(listener.local_addr, listener.port)]
        listener.closed = True
        for conn in list(listener._pending.values()):
            self._listener_of.pop(id(conn), None)
            conn.abort(now)
            self.touch(conn)
        listener._pending.clear()

    def connect(
        self, local_addr: bytes, remote: tuple[bytes, int], now: float, config: TcpConfig,
        local_port: int = 0,
    ) -> TcpConnection:
        """Active open (RFC 9293 §3.10.1): a SYN becomes due."""
        if len(self._conns) >= self.max_connections:
            raise OSError(errno.ENOBUFS, "too many TCP connections")
        raddr, rport = remote
        if local_port == 0:
            chosen = pick_ephemeral_port(
                self.rng,
                lambda p: (local_addr, p, raddr, rport) in self._conns
                or (local_addr, p) in self._listeners or (None, p) in self._listeners,
            )
            if chosen is None:
                raise OSError(errno.EADDRNOTAVAIL, "no free ephemeral TCP port")
            local_port = chosen
        key = (local_addr, local_port, raddr, rport)
        if key in self._conns:
            raise OSError(errno.EADDRINUSE, "TCP 4-tuple already in use")
        conn = TcpConnection.connect(
            config, local=(local_addr, local_port), remote=(raddr, rport), rng=self.rng, now=now
        )
        self._add(key, conn)
        return conn

    def abort_local(self, addr: bytes, now: float) -> None:
        """Reset every connection bound to ``addr`` (the address went away)."""
        for key, conn in list(self._conns.items()):
            if key[0] == addr:
                conn.abort(now)
                self.touch(conn)

    # -- network side --------------------------------------------------------

    def fast_packet(self, packet: bytes, src: bytes, dst: bytes, now: float) -> bool:
        """Bulk in-order data on an existing connection, from the raw packet.

        ``packet`` is a bare IPv6 + TCP packet (no extension headers,
        checksum verified) from ``src`` to ``dst``.  The connection's
        :meth:`~proxy.ipstack.tcp.TcpConnection.fast_packet` decides; True
        if it handled the segment completely, False (nothing changed) and
        the caller parses it for :meth:`segment_received`.
        """
        conn = self._conns.get((dst, packet[42] << 8 | packet[43], src, packet[40] << 8 | packet[41]))
        if conn is None or not conn.fast_packet(packet, now):
            return False
        self._dirty[id(conn)] = conn
        self._evented[id(conn)] = conn
        return True

    def segment_received(self, src: bytes, dst: bytes, seg: TcpSegment, now: float) -> None:
        """Route one checked segment (RFC 9293 §3.10.7)."""
        conn = self._conns.get((dst, seg.dst_port, src, seg.src_port))
        if conn is not None:
            conn.segment_received(seg, now)
            self._dirty[id(conn)] = conn
            self._evented[id(conn)] = conn
            return
        listener = self._listeners.get((dst, seg.dst_port)) or self._listeners.get(
            (None, seg.dst_port)
        )
        flags = seg.flags
        if listener is None:
            # §3.10.7.1 CLOSED: "all data in the incoming segment is discarded
            # ... An incoming segment not containing a RST causes a RST to be
            # sent in response."
            self.drops[DropReason.TCP_NO_CONNECTION] += 1
            self._reply(dst, src, seg)
            return
        # §3.10.7.2 LISTEN: first check for an RST, second for an ACK,
        # third for a SYN; anything else is dropped.
        if flags & _RST:
            self.drops[DropReason.TCP_NO_CONNECTION] += 1
            return
        if flags & _ACK:
            self.drops[DropReason.TCP_NO_CONNECTION] += 1
            self._reply(dst, src, seg)
            return
        if not flags & _SYN:
            self.drops[DropReason.TCP_NO_CONNECTION] += 1
            return
        if listener.pending >= listener.backlog:
            self.drops[DropReason.TCP_BACKLOG_FULL] += 1
            return
        if len(self._conns) >= self.max_connections:
            self.drops[DropReason.TCP_CONNECTION_LIMIT] += 1
            self._reply(dst, src, seg)
            return
        conn = TcpConnection.accept(
            listener.config, seg, local=(dst, seg.dst_port), remote=(src, seg.src_port),
            rng=self.rng, now=now,
        )
        self._add((dst, seg.dst_port, src, seg.src_port), conn)
        listener._pending[id(conn)] = conn
        self._listener_of[id(conn)] = listener

    def icmp_error(self, key: ConnKey, kind: str, now: float, quoted_seq: int | None = None) -> bool:
        """Hand an ICMPv6 error to the connection it concerns; False if none.

        ``quoted_seq`` lets the connection apply RFC 5927 §4.1 (ignore
        errors about sequence numbers it has not sent or that are acked).
        """
        conn = self._conns.get(key)
        if conn is None:
            return False
        conn.icmp_error_received(kind, now, quoted_seq=quoted_seq)
        self.touch(conn)
        return True

    # -- output and time -----------------------------------------------------

    def segments_to_send(self, now: float) -> list[tuple[bytes, bytes, TcpSegment]]:
        """Everything due: (source address, destination address, segment)."""
        out = self._replies
        self._replies = []
        if not self._dirty:
            return out
        dirty = self._dirty
        self._dirty = {}
        for cid, conn in dirty.items():
            segs = conn.segments_to_send(now)
            if segs:
                laddr = conn.local[0]
                raddr = conn.remote[0]
                for seg in segs:
                    out.append((laddr, raddr, seg))
            if conn.closed:
                self._remove(conn)
                continue
            deadline = conn.poll_at()
            if deadline != self._deadlines.get(cid):
                if deadline is None:
                    self._deadlines.pop(cid, None)
                else:
                    self._deadlines[cid] = deadline
                    self._counter += 1
                    heapq.heappush(self._heap, (deadline, self._counter, conn))
        return out

    def poll_at(self) -> float | None:
        """The earliest connection deadline (stale heap entries skipped)."""
        heap = self._heap
        while heap:
            deadline, _n, conn = heap[0]
            if self._deadlines.get(id(conn)) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _n, conn = heapq.heappop(heap)
            cid = id(conn)
            if self._deadlines.get(cid) != deadline:
                continue
            del self._deadlines[cid]
            conn.handle_timer(now)
            self._dirty[cid] = conn
            self._evented[cid] = conn

    @property
    def busy(self) -> bool:
        """Output may be due (dirty connections or queued RSTs)."""
        return bool(self._dirty) or bool(self._replies)

    def next_event(self) -> InterfaceEvent | None:
        """The next event of any connection, in connection order."""
        evented = self._evented
        while evented:
            cid, conn = next(iter(evented.items()))
            event = conn.next_event()
            if event is None:
                del evented[cid]
                continue
            listener = self._listener_of.get(cid)
            if listener is not None:
                # Not yet handed to the application: only its acceptance or
                # its silent death matter.
                if isinstance(event, Connected):
                    del self._listener_of[cid]
                    listener._pending.pop(cid, None)
                    return ConnectionAccepted(listener, conn)
                if isinstance(event, ConnectionClosed):
                    del self._listener_of[cid]
                    listener._pending.pop(cid, None)
                continue
            return ConnectionEvent(conn, event)
        return None

    # -- internals -----------------------------------------------------------

    def _add(self, key: ConnKey, conn: TcpConnection) -> None:
        self._conns[key] = conn
        self._keys[id(conn)] = key
        self.touch(conn)

    def _remove(self, conn: TcpConnection) -> None:
        cid = id(conn)
        key = self._keys.pop(cid, None)
        if key is not None and self._conns.get(key) is conn:
            del self._conns[key]
        self._deadlines.pop(cid, None)
        if cid not in self._evented:
            listener = self._listener_of.pop(cid, None)
            if listener is not None:
                listener._pending.pop(cid, None)

    def _reply(self, src: bytes, dst: bytes, seg: TcpSegment) -> None:
        rst = reset_for(seg)
        if rst is not None:
            self._replies.append((src, dst, rst))

    @staticmethod
    def config_for_mtu(config: TcpConfig, mtu: int) -> TcpConfig:
        """``config`` with its MSS fitted to ``mtu`` (40 + 20 header bytes)."""
        if config.mss > mtu - 60:
            return dataclasses.replace(config, mss=mtu - 60)
        return config
