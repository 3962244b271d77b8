"""Connector contract pieces: REP mapping, the policy router, the OS connector."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket

import pytest

from proxy.socks5 import Rep
from proxy.socks5_address import Address, AddressType
from proxy.socks5_connector import (
    AddressTypeNotSupported,
    CommandNotSupported,
    ConnectionRefused,
    GeneralFailure,
    HostUnreachable,
    NetworkUnreachable,
    NotAllowed,
    SocksError,
    TcpChannel,
    TtlExpired,
    error_for_icmpv6,
    error_for_rep,
    rep_for_errno,
    rep_for_exception,
)
from proxy.socks5_os_asyncio import OsConnector, OsResolver
from proxy.socks5_policy_asyncio import PolicyConnector

# --- REP mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "rep"), [
    (GeneralFailure, 0x01), (NotAllowed, 0x02), (NetworkUnreachable, 0x03), (HostUnreachable, 0x04),
    (ConnectionRefused, 0x05), (TtlExpired, 0x06), (CommandNotSupported, 0x07), (AddressTypeNotSupported, 0x08),
])
def test_error_classes_carry_their_rep(cls, rep):
    assert cls("x").rep == rep
    assert type(error_for_rep(Rep(rep))) is cls
    assert rep_for_exception(cls("x")) == rep


@pytest.mark.parametrize(("code", "rep"), [
    (errno.ECONNREFUSED, Rep.CONNECTION_REFUSED),
    (errno.ENETUNREACH, Rep.NETWORK_UNREACHABLE),
    (errno.EHOSTUNREACH, Rep.HOST_UNREACHABLE),
    (errno.ETIMEDOUT, Rep.HOST_UNREACHABLE),
    (errno.EACCES, Rep.NOT_ALLOWED),
    (errno.EAFNOSUPPORT, Rep.ADDRESS_TYPE_NOT_SUPPORTED),
    (errno.EMFILE, Rep.GENERAL_FAILURE),
    (None, Rep.GENERAL_FAILURE),
])
def test_errno_mapping(code, rep):
    assert rep_for_errno(code) == rep
    assert rep_for_exception(OSError(code, "x")) == rep


@pytest.mark.parametrize(("icmp_type", "code", "cls"), [
    (1, 0, NetworkUnreachable), (1, 1, NotAllowed), (1, 2, HostUnreachable), (1, 3, HostUnreachable),
    (1, 4, ConnectionRefused), (1, 5, NotAllowed), (1, 6, NotAllowed), (1, 99, HostUnreachable),
    (3, 0, TtlExpired), (3, 1, TtlExpired), (4, 0, GeneralFailure),
])
def test_icmpv6_mapping(icmp_type, code, cls):
    assert type(error_for_icmpv6(icmp_type, code)) is cls


def test_other_exceptions():
    assert rep_for_exception(TimeoutError()) == Rep.HOST_UNREACHABLE
    assert rep_for_exception(ConnectionRefusedError(errno.ECONNREFUSED, "x")) == Rep.CONNECTION_REFUSED
    assert rep_for_exception(RuntimeError("bug")) == Rep.GENERAL_FAILURE


# --- policy router --------------------------------------------------------------------


class StaticResolver:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.queries: list[str] = []

    async def resolve(self, name: str) -> list[str]:
        self.queries.append(name)
        return list(self.table.get(name, []))


class FakeUdp:
    def __init__(self, owner: Recorder) -> None:
        self.owner = owner
        self.inbox: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.closed = False

    async def send(self, data: bytes, to: Address) -> None:
        self.owner.sent.append((data, to))

    async def recv(self) -> tuple[bytes, Address]:
        return await self.inbox.get()

    def close(self) -> None:
        self.closed = True


class Recorder:
    """A connector that records targets and fails the ones it is told to."""

    def __init__(self, fail: dict[str, SocksError] | None = None) -> None:
        self.fail = fail or {}
        self.calls: list[Address] = []
        self.sent: list[tuple[bytes, Address]] = []
        self.udp: list[FakeUdp] = []

    async def open_tcp(self, target: Address) -> TcpChannel:
        self.calls.append(target)
        if target.host in self.fail:
            raise self.fail[target.host]
        return TcpChannel(None, None, target, target)  # type: ignore[arg-type]

    async def bind_tcp(self, target: Address) -> object:
        self.calls.append(target)
        return target

    async def open_udp(self) -> FakeUdp:
        self.udp.append(FakeUdp(self))
        return self.udp[-1]


RESOLVER = StaticResolver({
    "dual.test": ["192.0.2.1", "2001:db8::1", "2001:db8::2"],
    "v4only.test": ["192.0.2.4"],
    "ula.test": ["fd00::1", "192.0.2.5", "2001:db8::5"],
    "many.test": [f"2001:db8::{i}" for i in range(1, 10)],
})


def policy(v6: Recorder, v4: Recorder | None, **kw: object) -> PolicyConnector:
    return PolicyConnector(v6, v4, RESOLVER, **kw)  # type: ignore[arg-type]


async def test_literals_route_by_family():
    v6, v4 = Recorder(), Recorder()
    p = policy(v6, v4)
    await p.open_tcp(Address.from_host("2001:db8::9", 80))
    await p.open_tcp(Address.from_host("192.0.2.9", 80))
    assert [a.host for a in v6.calls] == ["2001:db8::9"]
    assert [a.host for a in v4.calls] == ["192.0.2.9"]


async def test_ipv4_refused_is_not_allowed():
    p = policy(Recorder(), None)
    with pytest.raises(NotAllowed):
        await p.open_tcp(Address.from_host("192.0.2.9", 80))
    with pytest.raises(NotAllowed):
        await p.open_tcp(Address.from_host("v4only.test", 80))


async def test_names_prefer_ipv6_then_fall_back_to_ipv4():
    v6 = Recorder(fail={"2001:db8::1": HostUnreachable("icmp"), "2001:db8::2": NetworkUnreachable("x")})
    v4 = Recorder()
    chan = await policy(v6, v4).open_tcp(Address.from_host("dual.test", 443))
    assert [a.host for a in v6.calls] == ["2001:db8::1", "2001:db8::2"]
    assert chan.remote == Address.from_host("192.0.2.1", 443)


async def test_all_failing_reports_the_preferred_error():
    v6 = Recorder(fail={"2001:db8::1": TtlExpired("hop"), "2001:db8::2": TtlExpired("hop")})
    v4 = Recorder(fail={"192.0.2.1": ConnectionRefused("rst")})
    with pytest.raises(TtlExpired):
        await policy(v6, v4).open_tcp(Address.from_host("dual.test", 443))


async def test_unreachable_ipv6_answers_go_last():
    v6, v4 = Recorder(fail={"2001:db8::5": HostUnreachable("x")}), Recorder(fail={"192.0.2.5": HostUnreachable("x")})
    p = policy(v6, v4, ipv6_reachable=lambda ip: ip not in ipaddress.ip_network("fc00::/7"))
    found = await p.candidates(Address.from_host("ula.test", 1))
    assert [a.host for a in found] == ["2001:db8::5", "192.0.2.5", "fd00::1"]


async def test_attempts_are_bounded():
    v6 = Recorder(fail={f"2001:db8::{i}": HostUnreachable("x") for i in range(1, 10)})
    with pytest.raises(HostUnreachable):
        await policy(v6, None, max_attempts=3).open_tcp(Address.from_host("many.test", 1))
    assert len(v6.calls) == 3


async def test_unknown_name_is_host_unreachable():
    with pytest.raises(HostUnreachable):
        await policy(Recorder(), Recorder()).open_tcp(Address.from_host("nx.test", 1))


async def test_bind_routes_the_first_candidate():
    v6, v4 = Recorder(), Recorder()
    assert await policy(v6, v4).bind_tcp(Address.from_host("dual.test", 21)) == Address.from_host("2001:db8::1", 21)


async def test_udp_routes_per_datagram_and_merges_replies():
    v6, v4 = Recorder(), Recorder()
    resolver = StaticResolver({"dual.test": ["192.0.2.1", "2001:db8::1"]})
    ep = await PolicyConnector(v6, v4, resolver).open_udp()  # type: ignore[arg-type]
    await ep.send(b"a", Address.from_host("dual.test", 53))
    await ep.send(b"b", Address.from_host("dual.test", 53))
    await ep.send(b"c", Address.from_host("192.0.2.7", 53))
    assert v6.sent == [(b"a", Address.from_host("2001:db8::1", 53)), (b"b", Address.from_host("2001:db8::1", 53))]
    assert v4.sent == [(b"c", Address.from_host("192.0.2.7", 53))]
    assert resolver.queries == ["dual.test"]  # cached for the association
    assert len(v6.udp) == len(v4.udp) == 1
    v4.udp[0].inbox.put_nowait((b"from4", Address.from_host("192.0.2.7", 53)))
    assert await asyncio.wait_for(ep.recv(), 5) == (b"from4", Address.from_host("192.0.2.7", 53))
    ep.close()
    assert v6.udp[0].closed and v4.udp[0].closed
    with pytest.raises(ConnectionError):
        await ep.recv()


async def test_udp_to_refused_ipv4_raises():
    ep = await policy(Recorder(), None).open_udp()
    with pytest.raises(NotAllowed):
        await ep.send(b"x", Address.from_host("192.0.2.7", 53))


# --- OS connector (real sockets on loopback) --------------------------------------------


def closed_port() -> socket.socket:
    """A bound, non-listening TCP socket: connecting to its port is refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


async def test_os_connector_refused_is_0x05():
    with closed_port() as s:
        with pytest.raises(ConnectionRefused):
            await OsConnector().open_tcp(Address.from_sockaddr(s.getsockname()))


async def test_os_connector_connects_and_reports_its_end():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with server:
        target = Address.from_sockaddr(server.sockets[0].getsockname())
        chan = await OsConnector().open_tcp(target)
        assert chan.remote == target
        assert chan.local.atyp == AddressType.IPV4 and chan.local.port != 0
        chan.writer.close()


async def test_os_connector_resolves_names_with_the_injected_resolver():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        conn = OsConnector(resolver=StaticResolver({"web.test": ["127.0.0.1"]}))
        chan = await conn.open_tcp(Address.from_host("web.test", port))
        assert chan.remote == Address.from_host("127.0.0.1", port)
        chan.writer.close()
        with pytest.raises(HostUnreachable):
            await conn.open_tcp(Address.from_host("nx.test", port))


async def test_os_resolver_is_off_loop_and_returns_literals():
    assert "127.0.0.1" in await OsResolver().resolve("localhost")
    assert await OsResolver().resolve("192.0.2.1") == ["192.0.2.1"]
