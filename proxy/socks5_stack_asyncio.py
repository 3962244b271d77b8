"""The SOCKS5 connector over the userspace IPv6 stack: how the client's
applications reach IPv6 through Teredo.

:class:`StackConnector` implements :class:`~proxy.socks5_connector.Connector`
with :class:`~proxy.ipstack.stack_asyncio.Stack`: CONNECT opens a TCP
connection from our Teredo address, BIND listens on it, UDP ASSOCIATE opens
a UDP socket on it.  The stack reports failures the way a socket would, with
the exact cause in ``exc.reason``; :func:`socks_error_for` turns that cause
into the RFC 1928 reply: an ICMPv6 unreachable becomes 0x03/0x04, a reset
0x05, an expired hop limit 0x06, a policy refusal 0x02.

Requests that arrive while the client is still qualifying wait for the
address (within the SOCKS server's connect timeout) rather than failing:
an application started together with the client just works.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from proxy.constants import EPHEMERAL_PORT_MAX, EPHEMERAL_PORT_MIN
from proxy.ipstack.stack_asyncio import Stack, format_address
from proxy.socks5_address import Address, AddressType
from proxy.socks5_connector import (
    AddressTypeNotSupported,
    ConnectionRefused,
    GeneralFailure,
    HostUnreachable,
    NetworkUnreachable,
    NotAllowed,
    SocksError,
    TcpChannel,
    TtlExpired,
)

__all__ = ["StackConnector", "StackListener", "StackUdpEndpoint", "socks_error_for", "is_teredo_reachable"]

log = logging.getLogger("proxy.socks5_stack")

_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")

#: The stack's failure causes (TCP close reasons, ICMPv6 error kinds).
_BY_REASON: dict[str, type[SocksError]] = {
    "refused": ConnectionRefused,
    "unreachable-port": ConnectionRefused,
    "reset": ConnectionRefused,
    "unreachable-net": NetworkUnreachable,
    "unreachable-host": HostUnreachable,
    "timeout": HostUnreachable,
    "time-exceeded": TtlExpired,
    "admin-prohibited": NotAllowed,
}


def socks_error_for(exc: BaseException) -> SocksError:
    """The SOCKS error for a failure raised by the stack."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        cls = _BY_REASON.get(reason)
        if cls is not None:
            return cls(f"{reason}")
    if isinstance(exc, TimeoutError):
        return HostUnreachable("no answer")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused(str(exc))
    if isinstance(exc, OSError):
        return NetworkUnreachable(str(exc)) if "unreach" in str(exc).lower() else GeneralFailure(str(exc))
    return GeneralFailure(repr(exc))


class StackConnector:
    """CONNECT, BIND and UDP ASSOCIATE for IPv6 targets, over ``stack``.

    :param stack: the client's userspace stack (its address is the Teredo
        address).
    :param ready: set while the client is qualified; requests wait for it.
    """

    def __init__(self, stack: Stack, ready: asyncio.Event) -> None:
        self.stack = stack
        self.ready = ready

    async def _address(self) -> bytes:
        await self.ready.wait()
        addr = self.stack.interface.primary_address
        if addr is None:
            raise NetworkUnreachable("no Teredo address")
        return addr

    @staticmethod
    def _check(target: Address) -> None:
        if target.atyp != AddressType.IPV6:
            raise AddressTypeNotSupported(f"{target}: the Teredo connector serves IPv6 only")

    async def open_tcp(self, target: Address) -> TcpChannel:
        self._check(target)
        await self._address()
        try:
            reader, writer = await self.stack.open_connection(target.host, target.port)
        except OSError as e:
            raise socks_error_for(e) from None
        local = writer.get_extra_info("sockname")
        return TcpChannel(reader, writer, Address.from_host(local[0], local[1]), target)

    async def bind_tcp(self, target: Address) -> "StackListener":
        self._check(target)
        addr = await self._address()
        listener = StackListener(self.stack, addr)
        await listener.start()
        return listener

    async def open_udp(self) -> "StackUdpEndpoint":
        await self._address()
        endpoint = StackUdpEndpoint()
        await self.stack.create_datagram_endpoint(lambda: endpoint)
        return endpoint


class StackListener:
    """BIND: one listening port on the Teredo address (RFC 1928 §4)."""

    def __init__(self, stack: Stack, address: bytes) -> None:
        self.stack = stack
        self._addr = address
        self._queue: asyncio.Queue[TcpChannel] = asyncio.Queue(maxsize=4)
        self._server = None
        self.local: Address = Address.from_host(format_address(address), 0)

    async def start(self) -> None:
        """Listen on a random dynamic port (RFC 6335 §6) not yet in use."""
        rng = self.stack.interface.rng
        host = format_address(self._addr)
        for _ in range(64):
            port = rng.randint(EPHEMERAL_PORT_MIN, EPHEMERAL_PORT_MAX)
            try:
                self._server = await self.stack.start_server(self._accepted, host, port, backlog=4)
            except OSError:
                continue
            self.local = Address.from_host(host, port)
            return
        raise GeneralFailure("no free port for BIND")

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        channel = TcpChannel(reader, writer, self.local, Address.from_host(peer[0], peer[1]))
        try:
            self._queue.put_nowait(channel)
        except asyncio.QueueFull:
            writer.close()

    async def accept(self) -> TcpChannel:
        return await self._queue.get()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


class StackUdpEndpoint(asyncio.DatagramProtocol):
    """UDP ASSOCIATE's outbound side: a UDP socket on the Teredo address."""

    def __init__(self, queue_size: int = 256) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[tuple[bytes, Address] | None] = asyncio.Queue(maxsize=queue_size)
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self._queue.put_nowait((data, Address.from_host(addr[0], addr[1])))
        except asyncio.QueueFull:
            self.dropped += 1  # UDP: a full queue drops, it never blocks the stack

    def error_received(self, exc: Exception) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("UDP association error: %s", exc)

    async def send(self, data: bytes, to: Address) -> None:
        if to.atyp != AddressType.IPV6:
            raise AddressTypeNotSupported(f"{to}: IPv6 only")
        if self._transport is None or self._transport.is_closing():
            raise GeneralFailure("closed")
        self._transport.sendto(data, (to.host, to.port))

    async def recv(self) -> tuple[bytes, Address]:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)
            raise ConnectionError("closed")
        return item

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


def is_teredo_reachable(ip: ipaddress.IPv6Address) -> bool:
    """Whether an IPv6 answer is worth trying over Teredo: any address a relay
    can route to, i.e. not link-local, loopback, multicast, unspecified,
    unique-local (fc00::/7) or IPv4-mapped.  (Documentation space counts:
    test networks use it.)"""
    return not (
        ip.is_link_local or ip.is_loopback or ip.is_multicast or ip.is_unspecified
        or ip in _UNIQUE_LOCAL or ip.ipv4_mapped is not None
    )
