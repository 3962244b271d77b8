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
:class:`asyncio.StreamWriter` objects on top of :class:`TcpTransport`, so
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
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from proxy.ipstack.demux import TcpListener
from proxy.ipstack.events import (
    ConnectionAccepted,
    ConnectionEvent,
    DatagramErrorReceived,
    DatagramReceived,
    EchoErrorReceived,
    EchoReplyReceived,
)
from proxy.ipstack.interface import Interface
from proxy.ipstack.tcp import (
    Connected,
    ConnectionClosed,
    DataReceived,
    EndOfStream,
    SendSpaceAvailable,
    TcpConnection,
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
#: Transport buffer beyond the TCP send buffer: pause/resume the protocol.
_WRITE_HIGH = 64 * 1024
_WRITE_LOW = 16 * 1024
_DEFAULT_LIMIT = 2**16

_ERRNO = {
    "reset": errno.ECONNRESET,
    "refused": errno.ECONNREFUSED,
    "timeout": errno.ETIMEDOUT,
    "aborted": errno.ECONNABORTED,
    "unreachable-host": errno.EHOSTUNREACH,
    "unreachable-net": errno.ENETUNREACH,
    "unreachable-port": errno.ECONNREFUSED,
    "admin-prohibited": errno.EACCES,
    "time-exceeded": errno.EHOSTUNREACH,
    "parameter-problem": errno.EPROTO,
}


def exception_for(reason: str) -> OSError:
    """The exception a socket would raise for a close reason / error kind.

    ``OSError(errno, ...)`` picks the builtin subclass from the errno
    (ConnectionRefusedError, ConnectionResetError, TimeoutError,
    PermissionError ...).  ``exc.reason`` keeps the exact cause, e.g.
    ``"time-exceeded"`` (SOCKS5 reply 0x06) which shares EHOSTUNREACH with
    ``"unreachable-host"`` (0x04).
    """
    if reason.startswith("packet-too-big"):
        code = errno.EMSGSIZE
    else:
        code = _ERRNO.get(reason, errno.EIO)
    exc = OSError(code, f"{reason} ({errno.errorcode.get(code, code)})")
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


def parse_address(host: str | bytes) -> bytes:
    """A 16-byte IPv6 address from text (or bytes passed through)."""
    if isinstance(host, (bytes, bytearray)):
        if len(host) != 16:
            raise ValueError("an IPv6 address is 16 bytes")
        return bytes(host)
    try:
        return socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    except OSError:
        raise ValueError(f"not an IPv6 address: {host!r}") from None


def format_address(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, addr)


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
        #: (0: only at the end of the batch).
        self.ack_every = 64
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
        """Dispatch events, send packets, re-arm the timer."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        iface = self.interface
        send = self.link.send
        for _ in range(_MAX_ROUNDS):
            busy = False
            event = iface.next_event()
            while event is not None:
                busy = True
                self._dispatch(event)
                event = iface.next_event()
            packets = iface.ipv6_to_send(self._loop.time())
            if packets:
                busy = True
                self.packets_sent += len(packets)
                for packet in packets:
                    send(packet)
            if not busy:
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


class TcpTransport(asyncio.Transport):
    """An asyncio transport on one :class:`TcpConnection` of the stack."""

    def __init__(self, stack: Stack, conn: TcpConnection) -> None:
        super().__init__()
        self._stack = stack
        self._iface = stack.interface
        self._conn = conn
        self._loop = stack._loop
        self._protocol: asyncio.Protocol | None = None
        self._connected: asyncio.Future[None] = self._loop.create_future()
        # A connect that was abandoned (cancelled) never awaits this future:
        # mark its exception as seen so asyncio does not log it.
        self._connected.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._buffer = bytearray()
        self._reading = True
        self._eof_seen = False
        self._eof_delivered = False
        self._closing = False
        self._eof_pending = False
        self._eof_sent = False
        self._lost = False
        self._close_reason: str | None = None
        self._finished = False
        self._protocol_paused = False
        self._high = _WRITE_HIGH
        self._low = _WRITE_LOW
        local = conn.local
        remote = conn.remote
        self._extra = {
            "sockname": (format_address(local[0]), local[1], 0, 0),
            "peername": (format_address(remote[0]), remote[1], 0, 0),
            "socket": None,
            "connection": conn,
        }

    # -- events from the stack ----------------------------------------------

    def _event(self, event: object) -> None:
        if isinstance(event, DataReceived):
            self._pull()
        elif isinstance(event, SendSpaceAvailable):
            self._push()
        elif isinstance(event, EndOfStream):
            self._eof_seen = True
            self._pull()
        elif isinstance(event, Connected):
            if not self._connected.done():
                self._connected.set_result(None)
        elif isinstance(event, ConnectionClosed):
            self._finished = True
            self._stack._forget(self._conn)
            reason = event.reason
            self._close_reason = reason
            if not self._connected.done():
                self._connected.set_exception(exception_for(reason or "reset"))
                return
            self._pull()
            self._lose(None if reason is None else exception_for(reason))

    def _attach(self, protocol: asyncio.Protocol) -> None:
        self._protocol = protocol
        protocol.connection_made(self)
        if self._finished:
            self._lose(None if self._close_reason is None else exception_for(self._close_reason))
        else:
            self._pull()

    def _pull(self) -> None:
        """Hand in-order data (then EOF) to the protocol while reading."""
        protocol = self._protocol
        if protocol is None or not self._reading or self._lost:
            return
        if self._conn.readable:
            data = self._iface.tcp_receive(self._conn)
            if data:
                protocol.data_received(data)
        if self._eof_seen and not self._eof_delivered and not self._conn.readable and self._reading:
            self._eof_delivered = True
            keep_open = protocol.eof_received()
            if not keep_open and not self._closing:
                self.close()

    def _push(self) -> None:
        """Move buffered bytes into the TCP send buffer as space opens."""
        if self._buffer:
            n = self._iface.tcp_send(self._conn, memoryview(self._buffer))
            if n:
                del self._buffer[:n]
                self._stack.schedule_flush()
        if not self._buffer:
            if self._eof_pending and not self._eof_sent:
                self._eof_sent = True
                self._iface.tcp_shutdown(self._conn, self._loop.time())
                self._stack.schedule_flush()
            if self._closing and not self._lost:
                self._iface.tcp_close(self._conn, self._loop.time())
                self._stack.schedule_flush()
                self._lose(None)
        self._maybe_resume()

    def _lose(self, exc: BaseException | None) -> None:
        """Report the end to the protocol, once (deferred like asyncio's)."""
        protocol = self._protocol
        if self._lost or protocol is None:
            return
        self._lost = True
        self._buffer.clear()
        self._protocol_paused = False
        self._loop.call_soon(protocol.connection_lost, exc)

    def _maybe_pause(self) -> None:
        if not self._protocol_paused and len(self._buffer) > self._high and self._protocol:
            self._protocol_paused = True
            self._protocol.pause_writing()

    def _maybe_resume(self) -> None:
        if self._protocol_paused and len(self._buffer) <= self._low and self._protocol:
            self._protocol_paused = False
            self._protocol.resume_writing()

    # -- asyncio.Transport API ----------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Send what is buffered, then FIN; ``connection_lost(None)`` after."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if self._lost or self._finished:
            self._lose(None)
            return
        self._push()

    def abort(self) -> None:
        """RST now; ``connection_lost(None)``."""
        self._closing = True
        if not self._finished:
            self._iface.tcp_abort(self._conn, self._loop.time())
            self._stack.schedule_flush()
        self._lose(None)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_pending:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._lost or self._closing or not data:
            return
        if self._buffer:
            self._buffer += data
        else:
            n = self._iface.tcp_send(self._conn, data)
            if n < len(data):
                self._buffer += memoryview(data)[n:]
            self._stack.schedule_flush()
        self._maybe_pause()

    def writelines(self, list_of_data: Iterable[bytes]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """Half-close (FIN after the buffered data)."""
        if self._eof_pending or self._lost:
            return
        self._eof_pending = True
        self._push()

    def can_write_eof(self) -> bool:
        return True

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self._closing:
            self._reading = True
            self._pull()

    def is_reading(self) -> bool:
        return self._reading

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = _WRITE_HIGH if low is None else 4 * low
        if low is None:
            low = high // 4
        self._high, self._low = high, low
        self._maybe_pause()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[return-value]


class TcpServer:
    """A listening socket of the stack (the part of ``asyncio.Server`` used)."""

    def __init__(
        self, stack: Stack, listener: TcpListener, protocol_factory: Callable[[], asyncio.Protocol]
    ) -> None:
        self._stack = stack
        self.listener = listener
        self._protocol_factory = protocol_factory
        self._closed = stack._loop.create_future()
        addr = listener.local_addr
        #: (address, port) it listens on ("::" for all of ours).
        self.sockname = (format_address(addr) if addr else "::", listener.port)

    @property
    def port(self) -> int:
        return self.listener.port

    def is_serving(self) -> bool:
        return not self.listener.closed

    def close(self) -> None:
        """Stop listening (established connections are unaffected)."""
        if self.listener.closed:
            return
        stack = self._stack
        stack.interface.tcp_close_listener(self.listener, stack._loop.time())
        stack._servers.pop(id(self.listener), None)
        stack.schedule_flush()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def __aenter__(self) -> "TcpServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


class UdpTransport(asyncio.DatagramTransport):
    """An asyncio datagram transport on one :class:`UdpSocket` of the stack."""

    def __init__(self, stack: Stack, sock: UdpSocket, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._stack = stack
        self._sock = sock
        self._protocol = protocol
        self._closing = False
        addr = sock.local_addr or stack.interface.primary_address
        self._extra: dict[str, Any] = {
            "sockname": (format_address(addr) if addr else "::", sock.local_port, 0, 0),
            "peername": None
            if sock.remote is None
            else (format_address(sock.remote[0]), sock.remote[1], 0, 0),
            "socket": None,
        }

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """Send one datagram to ``addr`` ((host, port, ...)) or the peer."""
        if self._closing:
            raise OSError(errno.EBADF, "transport is closed")
        remote = None if addr is None else (parse_address(addr[0]), addr[1])
        stack = self._stack
        stack.interface.udp_send(self._sock, bytes(data), remote, stack._loop.time())
        stack.schedule_flush()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stack.interface.udp_close(self._sock)
        self._stack._udp.pop(self._sock, None)
        self._stack._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0
