"""asyncio driver for the userspace IPv6 stack, and its socket-like API.

Theory of operation
-------------------

:class:`Stack` owns an :class:`~proxy.ipstack.interface.Interface` and a
*link* (anything with ``send(packet: bytes)``: the Teredo client, a TUN
device).  The link hands received packets to :meth:`Stack.packets_received`
(a batch: everything that was readable) or :meth:`Stack.packet_received`
(one packet; the flush is deferred with ``call_soon`` so packets arriving in
the same loop iteration still share one flush).  A flush

1. dispatches the Interface's events to transports, protocols and futures,
2. sends every packet :meth:`Interface.ipv6_to_send` returns to the link,
3. repeats while either produced something (bounded), then
4. re-arms the single timer: ``loop.call_at(poll_at)``; the handler calls
   ``handle_timer(max(deadline, loop.time()))`` as aioquic does.  A later
   deadline never re-arms an earlier timer (an early wake-up is harmless),
   which keeps timer churn off the per-ACK path.

Application calls (``write``, ``sendto`` ...) change the Interface and ask
for a deferred flush.  There is no per-packet asyncio object anywhere.

The TCP API returns real :class:`asyncio.StreamReader` /
:class:`asyncio.StreamWriter` objects on top of :class:`TcpTransport`
(the transports live in ``streams_asyncio.py``), so
code written for ``asyncio.open_connection`` works unchanged, including
``drain()`` backpressure: the transport accepts what the TCP send buffer
takes, buffers at most a high-water mark more, and pauses the protocol
beyond it; reading pauses (``pause_reading``) stop taking data out of the
TCP receive buffer, which closes the advertised window.

Failures raise ``OSError`` subclasses that a socket would raise, each with
a ``reason`` attribute holding the TCP close reason or ICMPv6 error kind
(``"refused"``, ``"unreachable-host"``, ``"time-exceeded"`` ...), so the
SOCKS5 layer can choose its reply code exactly: see :func:`exception_for`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from proxy.ipstack.events import (
    ConnectionAccepted,
    ConnectionEvent,
    DatagramErrorReceived,
    DatagramReceived,
    EchoErrorReceived,
    EchoReplyReceived,
)
from proxy.ipstack.interface import Interface
from proxy.ipstack.tcp import TcpConnection
from proxy.ipstack.streams_asyncio import (
    TcpServer,
    TcpTransport,
    UdpTransport,
    exception_for,
    format_address,
    parse_address,
)
from proxy.ipstack.udp import UdpSocket

__all__ = [
    "Link",
    "Stack",
    "TcpTransport",
    "TcpServer",
    "UdpTransport",
    "exception_for",
    "parse_address",
    "format_address",
]

log = logging.getLogger(__name__)

#: Flush rounds (events -> packets) per flush before yielding to the loop.
_MAX_ROUNDS = 16
_DEFAULT_LIMIT = 2**16

class Link(Protocol):
    """Where the stack's packets go: the Teredo client or a TUN device."""

    def send(self, packet: bytes) -> None: ...


class _NullLink:
    def send(self, packet: bytes) -> None:
        pass


class Stack:
    """Runs an :class:`Interface` on the asyncio loop; the socket API.

    :param interface: the sans-I/O host.
    :param link: where packets go (may be attached later with :meth:`attach`).
    """

    def __init__(self, interface: Interface, link: Link | None = None) -> None:
        self.interface = interface
        self.link: Link = link if link is not None else _NullLink()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._transports: dict[int, TcpTransport] = {}
        self._servers: dict[int, TcpServer] = {}
        self._udp: dict[UdpSocket, UdpTransport] = {}
        self._pings: dict[tuple[bytes, int, int], asyncio.Future[float]] = {}
        self._ping_ident = interface.rng.getrandbits(16)
        self._closed = False
        #: In a batch from the link, send what is due every this many packets
        #: (0: only at the end of the batch).  DEVIATION (RFC 5681 §4.2: ACK
        #: at least every second full segment): a batch of in-order data thus
        #: draws one (stretch) ACK per ``ack_every`` packets, like Linux's
        #: per-GRO-batch ACKs (up to 64 KB).  Measured kernel -> stack over
        #: TUN with the kernel on CUBIC (docs/tcp.md, Performance): 8 -> 88-111
        #: MB/s, 16 -> 101-113, 32 -> 111-123, 64 -> 97-129 (0 and 1 % loss);
        #: 0 (end of batch only) fell to 46 MB/s at 1 % loss, as duplicate
        #: ACKs then wait for the whole batch; the kernel's cwnd kept growing
        #: (200-470 segments) at every value.  32 is the top of the plateau
        #: with half the sender bursts of 64.
        self.ack_every = 32
        #: Packets handed to the link, and packets taken from it.
        self.packets_sent = 0
        self.packets_received_count = 0

    # ------------------------------------------------------------- link side

    def attach(self, link: Link) -> None:
        """Send through ``link`` from now on."""
        self.link = link

    def packet_received(self, packet: bytes) -> None:
        """One packet from the link; the flush runs soon (batched)."""
        self.packets_received_count += 1
        self.interface.ipv6_received(packet, self._loop.time())
        self.schedule_flush()

    def packets_received(self, packets: Iterable[bytes]) -> None:
        """Everything the link had: feed all, then flush once.

        Within a long batch, packets due (ACKs, mostly) are sent every
        ``ack_every`` packets, so a sender is not left waiting for the end of
        our batch to learn its data arrived (a full flush, with events,
        still happens once at the end).
        """
        loop_time = self._loop.time
        now = loop_time()
        iface = self.interface
        recv = iface.ipv6_received
        every = self.ack_every
        n = 0
        for packet in packets:
            recv(packet, now)
            n += 1
            if every and n % every == 0:
                now = loop_time()
                out = iface.ipv6_to_send(now)
                if out:
                    self.packets_sent += len(out)
                    send = self.link.send
                    for p in out:
                        send(p)
        self.packets_received_count += n
        self.flush()

    def set_addresses(self, addresses: Iterable[str | bytes]) -> None:
        """Replace our addresses (the first is the primary), e.g. after the
        Teredo client requalified with a new mapping; connections on a
        removed address are aborted."""
        self.interface.set_addresses([parse_address(a) for a in addresses], self._loop.time())
        self.schedule_flush()

    # ---------------------------------------------------------------- driving

    def schedule_flush(self) -> None:
        """Flush on the next loop iteration (coalesces many calls)."""
        if self._flush_handle is None and not self._closed:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Dispatch events, send packets, re-arm the timer.

        A round dispatches every event, then sends every packet; sending
        produces no events, so another round is needed only when the
        dispatch of the last one produced new events (an application
        reacting by closing, say).  The common case is one round: one
        ``ipv6_to_send`` per flush.
        """
        iface = self.interface
        send = self.link.send
        for rnd in range(_MAX_ROUNDS):
            dispatched = False
            event = iface.next_event()
            while event is not None:
                dispatched = True
                self._dispatch(event)
                event = iface.next_event()
            if rnd and not dispatched:
                break
            if self._flush_handle is not None:
                # Whatever the dispatch asked to flush goes out now.
                self._flush_handle.cancel()
                self._flush_handle = None
            packets = iface.ipv6_to_send(self._loop.time())
            if packets:
                self.packets_sent += len(packets)
                for packet in packets:
                    send(packet)
            if not dispatched:
                break
        else:
            self.schedule_flush()
        self._arm()

    def _arm(self) -> None:
        deadline = self.interface.poll_at()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return  # fires early at worst; handle_timer is harmless when early
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._timer_at if self._timer_at is not None else self._loop.time()
        self._timer = self._timer_at = None
        self.interface.handle_timer(max(deadline, self._loop.time()))
        self.flush()

    def close(self) -> None:
        """Abort every connection and socket, stop the timer."""
        for transport in list(self._transports.values()):
            transport.abort()
        for server in list(self._servers.values()):
            server.close()
        for udp in list(self._udp.values()):
            udp.close()
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(ConnectionAbortedError("stack closed"))
        self.flush()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------- dispatch

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ConnectionEvent):
            transport = self._transports.get(id(event.connection))
            if transport is not None:
                transport._event(event.event)
        elif isinstance(event, ConnectionAccepted):
            server = self._servers.get(id(event.listener))
            if server is None:
                self.interface.tcp_abort(event.connection, self._loop.time())
                return
            transport = TcpTransport(self, event.connection)
            self._transports[id(event.connection)] = transport
            transport._attach(server._protocol_factory())
        elif isinstance(event, DatagramReceived):
            udp = self._udp.get(event.socket)
            if udp is not None:
                udp._protocol.datagram_received(
                    event.data, (format_address(event.remote[0]), event.remote[1], 0, 0)
                )
        elif isinstance(event, DatagramErrorReceived):
            udp = self._udp.get(event.socket)
            if udp is not None:
                udp._protocol.error_received(exception_for(event.kind))
        elif isinstance(event, EchoReplyReceived):
            fut = self._pings.get((event.remote, event.ident, event.seq))
            if fut is not None and not fut.done():
                fut.set_result(self._loop.time())
        elif isinstance(event, EchoErrorReceived):
            fut = self._pings.get((event.remote, event.ident, event.seq))
            if fut is not None and not fut.done():
                exc = exception_for(event.kind)
                exc.reporter = format_address(event.reporter)  # type: ignore[attr-defined]
                fut.set_exception(exc)

    def _forget(self, conn: TcpConnection) -> None:
        self._transports.pop(id(conn), None)

    # ------------------------------------------------------------------ TCP

    async def create_connection(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        host: str | bytes,
        port: int,
        *,
        local_addr: tuple[str, int] | None = None,
    ) -> tuple["TcpTransport", asyncio.Protocol]:
        """Like ``loop.create_connection`` for an IPv6 literal ``host``.

        Waits for the handshake; raises :func:`exception_for` the close
        reason if it fails (RST: ConnectionRefusedError, ICMPv6 unreachable:
        OSError EHOSTUNREACH/ENETUNREACH, SYN retries: TimeoutError).
        Cancelling the wait aborts the attempt.
        """
        dst = parse_address(host)
        laddr = parse_address(local_addr[0]) if local_addr and local_addr[0] else None
        lport = local_addr[1] if local_addr else 0
        conn = self.interface.tcp_connect(
            (dst, port), self._loop.time(), local_addr=laddr, local_port=lport
        )
        transport = TcpTransport(self, conn)
        self._transports[id(conn)] = transport
        self.schedule_flush()
        try:
            await transport._connected
        except asyncio.CancelledError:
            transport.abort()
            raise
        protocol = protocol_factory()
        transport._attach(protocol)
        return transport, protocol

    async def open_connection(
        self,
        host: str | bytes,
        port: int,
        *,
        limit: int = _DEFAULT_LIMIT,
        local_addr: tuple[str, int] | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Like ``asyncio.open_connection``, over the userspace stack."""
        reader = asyncio.StreamReader(limit=limit, loop=self._loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self._loop)
        transport, _ = await self.create_connection(
            lambda: protocol, host, port, local_addr=local_addr
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, self._loop)
        return reader, writer

    async def create_server(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        host: str | bytes | None = None,
        port: int = 0,
        *,
        backlog: int = 128,
    ) -> "TcpServer":
        """Listen on ``port`` of ``host`` (None: all our addresses)."""
        if port == 0:
            raise ValueError("listening needs an explicit port")
        addr = parse_address(host) if host else None
        listener = self.interface.tcp_listen(port, local_addr=addr, backlog=backlog)
        server = TcpServer(self, listener, protocol_factory)
        self._servers[id(listener)] = server
        return server

    async def start_server(
        self,
        client_connected_cb: Callable[
            [asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None
        ],
        host: str | bytes | None = None,
        port: int = 0,
        *,
        limit: int = _DEFAULT_LIMIT,
        backlog: int = 128,
    ) -> "TcpServer":
        """Like ``asyncio.start_server``, over the userspace stack."""
        loop = self._loop

        def factory() -> asyncio.Protocol:
            reader = asyncio.StreamReader(limit=limit, loop=loop)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

        return await self.create_server(factory, host, port, backlog=backlog)

    # ------------------------------------------------------------------ UDP

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
    ) -> tuple["UdpTransport", asyncio.DatagramProtocol]:
        """Like ``loop.create_datagram_endpoint`` (IPv6 literals only).

        ICMPv6 errors about datagrams the socket sent reach
        ``protocol.error_received`` (RFC 1122 §4.1.3.3; like Linux with
        IPV6_RECVERR), as :func:`exception_for` their kind.
        """
        laddr = parse_address(local_addr[0]) if local_addr and local_addr[0] else None
        lport = local_addr[1] if local_addr else 0
        remote = (parse_address(remote_addr[0]), remote_addr[1]) if remote_addr else None
        sock = self.interface.udp_open(local_addr=laddr, local_port=lport, remote=remote)
        protocol = protocol_factory()
        transport = UdpTransport(self, sock, protocol)
        self._udp[sock] = transport
        protocol.connection_made(transport)
        return transport, protocol

    # ----------------------------------------------------------------- ping

    async def ping(
        self,
        host: str | bytes,
        *,
        seq: int = 0,
        ident: int | None = None,
        data: bytes = b"",
        timeout: float = 4.0,
        hop_limit: int | None = None,
    ) -> float:
        """Send one Echo Request; return the round-trip time in seconds.

        :raises TimeoutError: no answer within ``timeout``.
        :raises OSError: an ICMPv6 error came back (``exc.reason`` is its
            kind, ``exc.reporter`` who sent it).
        """
        dst = parse_address(host)
        if ident is None:
            ident = self._ping_ident
        key = (dst, ident & 0xFFFF, seq & 0xFFFF)
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings[key] = fut
        start = self._loop.time()
        self.interface.send_echo_request(
            dst, ident, seq, start, data=data, hop_limit=hop_limit
        )
        self.schedule_flush()
        try:
            end = await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(key, None)
            if not fut.done() or fut.cancelled():
                self.interface.cancel_echo(dst, ident, seq)
        return end - start
