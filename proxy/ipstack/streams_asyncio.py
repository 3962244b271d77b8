"""asyncio transports of the userspace stack: TCP streams, servers, UDP.

:class:`TcpTransport` puts an :class:`asyncio.Transport` on one
:class:`~proxy.ipstack.tcp.TcpConnection`, so asyncio's own
``StreamReaderProtocol``/``StreamWriter`` (and any ``asyncio.Protocol``) run
on the stack unchanged.  Writing hands bytes to the TCP send buffer and keeps
at most a high-water mark more, pausing the protocol beyond it (``drain()``
backpressure); reading hands in-order data to the protocol unless it paused
reading, in which case the data stays in TCP and the window closes.
:class:`TcpServer` is the listening side, :class:`UdpTransport` a datagram
transport on a :class:`~proxy.ipstack.udp.UdpSocket`.  All of them act on
the :class:`~proxy.ipstack.stack_asyncio.Stack` that owns them, which
dispatches the Interface's events to them.

:func:`exception_for` is the one mapping from TCP close reasons and ICMPv6
error kinds to the ``OSError`` a socket would raise; ``exc.reason`` keeps
the exact cause for the SOCKS5 reply code.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from proxy.ipstack.demux import TcpListener
from proxy.ipstack.tcp import (
    Connected,
    ConnectionClosed,
    DataReceived,
    EndOfStream,
    SendSpaceAvailable,
    TcpConnection,
)
from proxy.ipstack.udp import UdpSocket

if TYPE_CHECKING:
    from proxy.ipstack.stack_asyncio import Stack

__all__ = [
    "TcpTransport",
    "TcpServer",
    "UdpTransport",
    "exception_for",
    "parse_address",
    "format_address",
]

#: Transport buffer beyond the TCP send buffer: pause/resume the protocol.
_WRITE_HIGH = 64 * 1024
_WRITE_LOW = 16 * 1024

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


class TcpTransport(asyncio.Transport):
    """An asyncio transport on one :class:`TcpConnection` of the stack."""

    def __init__(self, stack: "Stack", conn: TcpConnection) -> None:
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
        self, stack: "Stack", listener: TcpListener, protocol_factory: Callable[[], asyncio.Protocol]
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

    def __init__(self, stack: "Stack", sock: UdpSocket, protocol: asyncio.DatagramProtocol) -> None:
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
