"""The routing connector: which network serves a SOCKS5 target (issue 6 policy).

One proxy setting must serve a whole browser, so every target is routed by
family:

* IPv6 literal  -> the IPv6 connector (the Teredo stack);
* IPv4 literal  -> the IPv4 connector (``--ipv4 direct``: the host's own
  network), or refused with REP 0x02 "not allowed by ruleset"
  (``--ipv4 refuse``);
* domain name   -> resolved by the injected resolver (off the loop), then the
  answers are tried in this order: IPv6 addresses the IPv6 path can reach
  (``ipv6_reachable``; over Teredo: global unicast), then IPv4 if allowed,
  then the remaining IPv6 answers; at most ``max_attempts`` of them.  If every
  attempt fails, the error of the first (the preferred path) is reported.

IPv4-mapped IPv6 targets arrive as IPv4 (the address codec maps them), so
the IPv4 policy cannot be bypassed by spelling an address differently.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable

from proxy.constants import SOCKS_MAX_ADDRESS_ATTEMPTS, SOCKS_UDP_NAME_CACHE, SOCKS_UDP_QUEUE
from proxy.socks5_address import Address, AddressType
from proxy.socks5_connector import (
    Connector,
    HostUnreachable,
    NotAllowed,
    Resolver,
    SocksError,
    TcpChannel,
    TcpListener,
    UdpEndpoint,
)

__all__ = ["PolicyConnector", "PolicyUdpEndpoint"]

log = logging.getLogger("proxy.socks5_policy")

def _any_ipv6(ip: ipaddress.IPv6Address) -> bool:
    return True


class PolicyConnector:
    """Dispatch each target to the IPv6 or IPv4 connector; resolve names first.

    :param ipv6: serves IPv6 targets (the Teredo connector in the client).
    :param ipv4: serves IPv4 targets, or None to refuse them with 0x02.
    :param resolver: resolves domain targets (A and AAAA).
    :param ipv6_reachable: which IPv6 answers ``ipv6`` can reach; those are
        tried first.  Default: all of them.
    :param max_attempts: addresses of one name tried per CONNECT.
    """

    def __init__(
        self,
        ipv6: Connector,
        ipv4: Connector | None,
        resolver: Resolver,
        *,
        ipv6_reachable: Callable[[ipaddress.IPv6Address], bool] = _any_ipv6,
        max_attempts: int = SOCKS_MAX_ADDRESS_ATTEMPTS,
    ) -> None:
        self.ipv6 = ipv6
        self.ipv4 = ipv4
        self.resolver = resolver
        self.ipv6_reachable = ipv6_reachable
        self.max_attempts = max_attempts

    def route(self, addr: Address) -> Connector:
        """The connector for an IP address; NotAllowed for refused IPv4."""
        if addr.atyp == AddressType.IPV6:
            return self.ipv6
        if addr.atyp == AddressType.IPV4:
            if self.ipv4 is None:
                raise NotAllowed(f"{addr}: IPv4 targets are refused (--ipv4 refuse)")
            return self.ipv4
        raise ValueError(f"route() needs an IP address, not {addr}")

    async def candidates(self, target: Address) -> list[Address]:
        """The IP addresses to try for ``target``, best first (see module doc)."""
        if target.atyp != AddressType.DOMAIN:
            self.route(target)  # refuse early
            return [target]
        hosts = await self.resolver.resolve(target.host)
        if not hosts:
            raise HostUnreachable(f"{target.host}: no address")
        preferred: list[Address] = []
        ipv4: list[Address] = []
        other: list[Address] = []
        for host in hosts:
            addr = Address.from_host(host, target.port)
            ip = addr.ip
            if isinstance(ip, ipaddress.IPv6Address):
                (preferred if self.ipv6_reachable(ip) else other).append(addr)
            elif self.ipv4 is not None:
                ipv4.append(addr)
        found = (preferred + ipv4 + other)[: self.max_attempts]
        if not found:
            raise NotAllowed(f"{target.host}: only IPv4 addresses, and IPv4 is refused")
        return found

    async def open_tcp(self, target: Address) -> TcpChannel:
        first: SocksError | None = None
        for addr in await self.candidates(target):
            try:
                return await self.route(addr).open_tcp(addr)
            except SocksError as e:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("connect %s via %s failed: REP %#04x", target, addr, e.rep)
                first = first or e
        assert first is not None
        raise first

    async def bind_tcp(self, target: Address) -> TcpListener:
        addr = (await self.candidates(target))[0]
        return await self.route(addr).bind_tcp(addr)

    async def open_udp(self) -> PolicyUdpEndpoint:
        return PolicyUdpEndpoint(self)


class PolicyUdpEndpoint:
    """One association's UDP, split over the per-family connectors' endpoints.

    Child endpoints are opened on first use of their family; their datagrams
    are merged into one bounded queue (tail drop, counted in ``dropped``).
    """

    def __init__(self, policy: PolicyConnector, queue_size: int = SOCKS_UDP_QUEUE) -> None:
        self._policy = policy
        self._children: dict[int, UdpEndpoint] = {}
        self._opening: dict[int, asyncio.Lock] = {}
        self._pumps: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue(queue_size)
        self._names: dict[str, Address] = {}
        self._closed = False
        self.dropped = 0

    async def _resolve(self, to: Address) -> Address:
        cached = self._names.get(to.host)
        if cached is None:
            cached = (await self._policy.candidates(Address(to.atyp, to.host, 0)))[0]
            if len(self._names) >= SOCKS_UDP_NAME_CACHE:
                self._names.pop(next(iter(self._names)))
            self._names[to.host] = cached
        return Address(cached.atyp, cached.host, to.port)

    async def _child(self, addr: Address) -> UdpEndpoint:
        key = int(addr.atyp)
        child = self._children.get(key)
        if child is not None:
            return child
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:
            child = self._children.get(key)
            if child is None:
                child = await self._policy.route(addr).open_udp()
                if self._closed:
                    child.close()
                    raise ConnectionError("endpoint closed")
                self._children[key] = child
                self._pumps.append(asyncio.create_task(self._pump(child)))
        return child

    async def _pump(self, child: UdpEndpoint) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                item = await child.recv()
                try:
                    self._queue.put_nowait(item)
                except asyncio.QueueFull:
                    self.dropped += 1

    async def send(self, data: bytes, to: Address) -> None:
        if to.atyp == AddressType.DOMAIN:
            to = await self._resolve(to)
        child = await self._child(to)
        await child.send(data, to)

    async def recv(self) -> tuple[bytes, Address]:
        if self._closed:
            raise ConnectionError("endpoint closed")
        return await self._queue.get()

    def close(self) -> None:
        self._closed = True
        for task in self._pumps:
            task.cancel()
        for child in self._children.values():
            child.close()
        self._children.clear()
