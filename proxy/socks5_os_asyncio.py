"""A connector over the host's own network (sockets), and the OS resolver.

Serves ``--ipv4 direct`` in the Teredo client (IPv4 targets leave through
the host's IPv4 as any program's would) and every SOCKS5 test.  Names are
resolved with ``loop.getaddrinfo``, which runs ``getaddrinfo(3)`` in the
default executor: the loop never blocks on DNS.  OS errors become the REP
codes of :func:`proxy.socks5_connector.rep_for_errno`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from proxy.constants import SOCKS_MAX_ADDRESS_ATTEMPTS, SOCKS_RELAY_HIGH_WATER, SOCKS_UDP_QUEUE
from proxy.socks5_address import Address, AddressType
from proxy.socks5_connector import (
    HostUnreachable,
    Resolver,
    SocksError,
    TcpChannel,
    error_for_rep,
    rep_for_errno,
)

__all__ = ["OsConnector", "OsResolver", "OsTcpListener", "OsUdpEndpoint"]

log = logging.getLogger("proxy.socks5_os")


class OsResolver:
    """:class:`~proxy.socks5_connector.Resolver` over ``getaddrinfo(3)``, off the loop."""

    def __init__(self, *, socktype: int = socket.SOCK_STREAM) -> None:
        self.socktype = socktype

    async def resolve(self, name: str) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, None, type=self.socktype)
        except socket.gaierror as e:
            raise HostUnreachable(f"{name}: {e.strerror}") from None
        out: list[str] = []
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                host = str(sockaddr[0])
                if host not in out:
                    out.append(host)
        return out


def _os_error(exc: OSError, what: str) -> SocksError:
    return error_for_rep(rep_for_errno(exc.errno), f"{what}: {exc.strerror or exc}")


def _family(addr: Address) -> int:
    return socket.AF_INET6 if addr.atyp == AddressType.IPV6 else socket.AF_INET


def _ip_addresses(hosts: list[str], port: int) -> list[Address]:
    return [Address.from_host(h, port) for h in hosts]


class OsTcpListener:
    """One listening socket for BIND; accepts until closed."""

    def __init__(self, sock: socket.socket, local: Address, high_water: int) -> None:
        self._sock = sock
        self.local = local
        self._high_water = high_water

    async def accept(self) -> TcpChannel:
        loop = asyncio.get_running_loop()
        conn, peer = await loop.sock_accept(self._sock)
        reader, writer = await asyncio.open_connection(sock=conn, limit=self._high_water)
        writer.transport.set_write_buffer_limits(high=self._high_water)
        local = Address.from_sockaddr(conn.getsockname())
        return TcpChannel(reader, writer, local, Address.from_sockaddr(peer))

    def close(self) -> None:
        self._sock.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue[tuple[bytes, Address]], on_drop: Callable[[], None]) -> None:
        self.queue = queue
        self.on_drop = on_drop

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.queue.put_nowait((data, Address.from_sockaddr(addr)))
        except asyncio.QueueFull:
            self.on_drop()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier datagrams: UDP has no way to tell the client.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("udp association: ICMP error on outbound socket: %s", exc)


class OsUdpEndpoint:
    """Outbound UDP for one association: one socket per family, made on first use."""

    def __init__(self, resolver: Resolver, queue_size: int = SOCKS_UDP_QUEUE) -> None:
        self._resolver = resolver
        self._queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue(queue_size)
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._closed = False
        self.dropped = 0
        "Datagrams from targets dropped because the client was not reading."

    def _count_drop(self) -> None:
        self.dropped += 1

    async def _transport(self, family: int) -> asyncio.DatagramTransport:
        t = self._transports.get(family)
        if t is None:
            loop = asyncio.get_running_loop()
            local = ("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)
            try:
                t, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self._queue, self._count_drop), local_addr=local, family=family)
            except OSError as e:
                raise _os_error(e, "udp socket") from None
            if self._closed:
                t.close()
                raise ConnectionError("endpoint closed")
            self._transports[family] = t
        return t

    async def send(self, data: bytes, to: Address) -> None:
        if to.atyp == AddressType.DOMAIN:
            hosts = await self._resolver.resolve(to.host)
            if not hosts:
                raise HostUnreachable(f"{to.host}: no address")
            to = Address.from_host(hosts[0], to.port)
        t = await self._transport(_family(to))
        t.sendto(data, to.sockaddr())

    async def recv(self) -> tuple[bytes, Address]:
        if self._closed:
            raise ConnectionError("endpoint closed")
        return await self._queue.get()

    def close(self) -> None:
        self._closed = True
        for t in self._transports.values():
            t.close()
        self._transports.clear()


class OsConnector:
    """:class:`~proxy.socks5_connector.Connector` over the host's sockets.

    :param resolver: for domain targets, TCP and UDP (default :class:`OsResolver`).
    :param high_water: per-direction buffer bound of each stream.
    """

    def __init__(self, *, resolver: Resolver | None = None, high_water: int = SOCKS_RELAY_HIGH_WATER) -> None:
        self.resolver: Resolver = resolver or OsResolver()
        self.high_water = high_water

    async def _targets(self, target: Address) -> list[Address]:
        if target.atyp != AddressType.DOMAIN:
            return [target]
        hosts = await self.resolver.resolve(target.host)
        if not hosts:
            raise HostUnreachable(f"{target.host}: no address")
        return _ip_addresses(hosts, target.port)[:SOCKS_MAX_ADDRESS_ATTEMPTS]

    async def open_tcp(self, target: Address) -> TcpChannel:
        first: SocksError | None = None
        for addr in await self._targets(target):
            try:
                reader, writer = await asyncio.open_connection(addr.host, addr.port, limit=self.high_water)
            except OSError as e:
                first = first or _os_error(e, str(addr))
                continue
            writer.transport.set_write_buffer_limits(high=self.high_water)
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = Address.from_sockaddr(writer.get_extra_info("sockname"))
            return TcpChannel(reader, writer, local, addr)
        assert first is not None
        raise first

    async def bind_tcp(self, target: Address) -> OsTcpListener:
        addr = (await self._targets(target))[0]
        family = _family(addr)
        local_ip = self._source_ip(addr, family)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((local_ip, 0))
            sock.listen(1)
        except OSError as e:
            sock.close()
            raise _os_error(e, "bind") from None
        return OsTcpListener(sock, Address.from_sockaddr(sock.getsockname()), self.high_water)

    @staticmethod
    def _source_ip(addr: Address, family: int) -> str:
        """The local IP the kernel would use towards ``addr``.

        A connected UDP socket sends nothing, so this neither blocks nor
        leaks; the wildcard is the answer when ``addr`` is all zeros.
        """
        if addr.is_unspecified:
            return "::" if family == socket.AF_INET6 else "0.0.0.0"
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.connect((addr.host, addr.port or 9))
            return str(probe.getsockname()[0])
        except OSError as e:
            raise _os_error(e, "bind") from None
        finally:
            probe.close()

    async def open_udp(self) -> OsUdpEndpoint:
        return OsUdpEndpoint(self.resolver)

