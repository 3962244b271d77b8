"""The SOCKS5 server on loopback with the OS connector, against real clients.

Clients: PySocks (CONNECT, UDP ASSOCIATE), python-socks (CONNECT, REP codes
via ``ProxyError.error_code``), httpx ``socks5://``, curl
``--socks5-hostname``, and raw sockets for what no client library sends
(BIND, bad commands, bad address types, fragments, foreign UDP sources).

REP codes come from real conditions where the OS can produce them on
loopback (refused port, IPv4 policy, bad names, unresolvable names, connect
timeout).  ICMP-only outcomes (network unreachable, hop limit exceeded) come
from :class:`IcmpStandInConnector`, a fake that raises the typed errors the
Teredo connector raises on ICMPv6 errors.

Timeouts are configured short; nothing sleeps to wait: tests await the
event itself (EOF, a reply) under ``asyncio.wait_for`` or poll a counter
with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from proxy.testing.waiting import eventually as _eventually
import socks
from python_socks import ProxyError
from python_socks.async_.asyncio import Proxy

from proxy.config.socks import SocksConfig
from proxy.errors import ConfigError, DropReason
from proxy.socks5 import Rep
from proxy.socks5_address import Address, parse_address
from proxy.socks5_connector import (
    ConnectionRefused,
    HostUnreachable,
    NetworkUnreachable,
    TcpChannel,
    TtlExpired,
)
from proxy.socks5_os_asyncio import OsConnector
from proxy.socks5_policy_asyncio import PolicyConnector
from proxy.socks5_asyncio import Socks5Server

T = 10.0  # generous upper bound on any single wait; tests finish long before


# --- helpers -----------------------------------------------------------------------------


class StaticResolver:
    """Deterministic names for tests (no DNS)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    async def resolve(self, name: str) -> list[str]:
        return list(self.table.get(name, []))


NAMES = StaticResolver({"web.test": ["127.0.0.1"], "echo.test": ["127.0.0.1"], "v4only.test": ["127.0.0.1"]})


class IcmpStandInConnector:
    """Stands in for the Teredo connector's ICMPv6 outcomes: raises the error it is given."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def open_tcp(self, target: Address) -> TcpChannel:
        raise self.error

    async def bind_tcp(self, target: Address) -> object:
        raise self.error

    async def open_udp(self) -> object:
        raise self.error


class HangingConnector(IcmpStandInConnector):
    """Never answers: exercises the server's connect timeout."""

    def __init__(self) -> None:
        super().__init__(RuntimeError("unused"))

    async def open_tcp(self, target: Address) -> TcpChannel:
        await asyncio.Event().wait()
        raise AssertionError


async def eventually(condition: Callable[[], bool], timeout: float = T) -> None:
    """Poll ``condition`` until true, failing after ``timeout`` seconds."""
    await _eventually(condition, timeout)


@contextlib.asynccontextmanager
async def running(connector: object | None = None, **settings: object) -> AsyncIterator[Socks5Server]:
    server = Socks5Server(SocksConfig(port=0, **settings), connector or OsConnector(resolver=NAMES))  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), T)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.fixture
async def echo_tcp() -> AsyncIterator[tuple[str, int]]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[:2]


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


@pytest.fixture
async def echo_udp() -> AsyncIterator[tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[:2]
    finally:
        transport.close()


async def _http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    body = b"hello over socks"
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


@pytest.fixture
async def web() -> AsyncIterator[int]:
    server = await asyncio.start_server(_http, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port with a bound, non-listening socket: connecting is refused (RST)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def request(cmd: int, host: str, port: int) -> bytes:
    return b"\x05" + bytes([cmd, 0]) + Address.from_host(host, port).emit()


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, Address]:
    """One RFC 1928 §6 reply: (REP, BND address)."""
    head = await asyncio.wait_for(reader.readexactly(4), T)
    assert head[0] == 5 and head[2] == 0
    atyp = head[3]
    if atyp == 1:
        body = await reader.readexactly(6)
    elif atyp == 4:
        body = await reader.readexactly(18)
    else:
        n = await reader.readexactly(1)
        body = n + await reader.readexactly(n[0] + 2)
    parsed = parse_address(bytes([atyp]) + body, 0)
    assert parsed is not None
    return head[1], parsed[0]


async def open_client(server: Socks5Server, greeting: bytes = b"\x05\x01\x00", method: int = 0
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(greeting)
    assert await asyncio.wait_for(reader.readexactly(2), T) == bytes([5, method])
    return reader, writer


async def ask(server: Socks5Server, req: bytes) -> tuple[int, Address, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await open_client(server)
    writer.write(req)
    rep, bound = await read_reply(reader)
    return rep, bound, reader, writer


async def rep_for(server: Socks5Server, req: bytes) -> int:
    rep, _, reader, writer = await ask(server, req)
    if rep != 0:
        assert await asyncio.wait_for(reader.read(), T) == b""  # closed after a failure reply
    writer.close()
    return rep


# --- real clients -------------------------------------------------------------------------


async def test_pysocks_connect(echo_tcp):
    async with running() as server:
        def client() -> bytes:
            s = socks.socksocket()
            s.set_proxy(socks.SOCKS5, *server.address)
            s.settimeout(T)
            s.connect(echo_tcp)
            s.sendall(b"ping through pysocks")
            data = b""
            while len(data) < 20:
                data += s.recv(100)
            s.close()
            return data

        assert await asyncio.to_thread(client) == b"ping through pysocks"


async def test_pysocks_udp_associate(echo_udp):
    async with running() as server:
        def client() -> tuple[bytes, tuple[str, int]]:
            s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
            s.set_proxy(socks.SOCKS5, *server.address)
            s.settimeout(T)
            s.bind(("127.0.0.1", 0))
            s.sendto(b"datagram", echo_udp)
            got = s.recvfrom(2048)
            s.close()
            return got

        data, source = await asyncio.to_thread(client)
        assert data == b"datagram"
        assert source == echo_udp


async def test_pysocks_auth(echo_tcp):
    async with running(users={"alice": "s3cret"}) as server:
        def client() -> bytes:
            s = socks.socksocket()
            s.set_proxy(socks.SOCKS5, *server.address, username="alice", password="s3cret")
            s.settimeout(T)
            s.connect(echo_tcp)
            s.sendall(b"authenticated")
            data = s.recv(100)
            s.close()
            return data

        assert await asyncio.to_thread(client) == b"authenticated"


async def test_python_socks_connect(echo_tcp):
    async with running() as server:
        proxy = Proxy.from_url("socks5://%s:%d" % server.address)
        sock = await proxy.connect(dest_host=echo_tcp[0], dest_port=echo_tcp[1], timeout=T)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), T) == b"ping"
        writer.close()


async def test_python_socks_remote_dns(echo_tcp):
    async with running(OsConnector(resolver=StaticResolver({"echo.test": [echo_tcp[0]]}))) as server:
        proxy = Proxy.from_url("socks5://%s:%d" % server.address, rdns=True)
        sock = await proxy.connect(dest_host="echo.test", dest_port=echo_tcp[1], timeout=T)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"by name")
        assert await asyncio.wait_for(reader.readexactly(7), T) == b"by name"
        writer.close()


async def test_python_socks_sees_refused_as_0x05(closed_port):
    async with running() as server:
        proxy = Proxy.from_url("socks5://%s:%d" % server.address)
        with pytest.raises(ProxyError) as e:
            await proxy.connect(dest_host="127.0.0.1", dest_port=closed_port, timeout=T)
        assert e.value.error_code == Rep.CONNECTION_REFUSED


async def test_python_socks_sees_ipv4_refusal_as_0x02(echo_tcp):
    policy = PolicyConnector(OsConnector(), None, NAMES)
    async with running(policy) as server:
        proxy = Proxy.from_url("socks5://%s:%d" % server.address)
        with pytest.raises(ProxyError) as e:
            await proxy.connect(dest_host=echo_tcp[0], dest_port=echo_tcp[1], timeout=T)
        assert e.value.error_code == Rep.NOT_ALLOWED


async def test_python_socks_wrong_password():
    async with running(users={"alice": "s3cret"}) as server:
        proxy = Proxy.from_url("socks5://alice:wrong@%s:%d" % server.address)
        with pytest.raises(ProxyError):
            await proxy.connect(dest_host="127.0.0.1", dest_port=9, timeout=T)
        await eventually(lambda: server.drops[DropReason.SOCKS_AUTH_FAILED] == 1)


async def test_httpx_socks5(web):
    async with running() as server:
        async with httpx.AsyncClient(proxy="socks5://%s:%d" % server.address, timeout=T) as client:
            r = await client.get(f"http://web.test:{web}/")
        assert (r.status_code, r.text) == (200, "hello over socks")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("auth", [False, True])
async def test_curl_socks5_hostname(web, auth):
    settings = {"users": {"bob": "pw:with:colon"}} if auth else {}
    async with running(**settings) as server:
        args = ["curl", "-sS", "--max-time", str(T), "--socks5-hostname", "%s:%d" % server.address]
        if auth:
            args += ["--proxy-user", "bob:pw:with:colon"]
        proc = await asyncio.create_subprocess_exec(*args, f"http://web.test:{web}/",
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), T + 5)
        assert proc.returncode == 0, err
        assert out == b"hello over socks"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_wrong_password_fails(web):
    async with running(users={"bob": "right"}) as server:
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--max-time", str(T), "--socks5-hostname", "%s:%d" % server.address,
            "--proxy-user", "bob:wrong", f"http://web.test:{web}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await asyncio.wait_for(proc.communicate(), T + 5)
        assert proc.returncode != 0
        assert server.drops[DropReason.SOCKS_AUTH_FAILED] == 1


# --- authentication and the handshake ---------------------------------------------------------


async def test_auth_required_but_not_offered():
    async with running(users={"alice": "pw"}) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"\x05\x01\x00")
        assert await asyncio.wait_for(reader.read(), T) == b"\x05\xff"
        assert server.drops[DropReason.SOCKS_NO_ACCEPTABLE_METHOD] == 1
        writer.close()


async def test_raw_rfc1929_success_and_failure(echo_tcp):
    async with running(users={"alice": "pw"}) as server:
        reader, writer = await open_client(server, b"\x05\x02\x00\x02", method=2)
        writer.write(b"\x01\x05alice\x02pw" + request(1, *echo_tcp))
        assert await asyncio.wait_for(reader.readexactly(2), T) == b"\x01\x00"
        assert (await read_reply(reader))[0] == 0
        writer.close()
        reader, writer = await open_client(server, b"\x05\x01\x02", method=2)
        writer.write(b"\x01\x05alice\x02PW")
        assert await asyncio.wait_for(reader.read(), T) == b"\x01\x01"
        writer.close()


async def test_handshake_timeout():
    async with running(handshake_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"\x05\x01")  # half a greeting, then silence
        assert await asyncio.wait_for(reader.read(), T) == b""
        assert server.drops[DropReason.SOCKS_HANDSHAKE_TIMEOUT] == 1
        writer.close()


async def test_handshake_timeout_covers_the_whole_handshake():
    async with running(handshake_timeout=0.2) as server:
        reader, writer = await open_client(server)  # greeting done; request never comes
        assert await asyncio.wait_for(reader.read(), T) == b""
        assert server.drops[DropReason.SOCKS_HANDSHAKE_TIMEOUT] == 1
        writer.close()


async def test_garbage_is_closed_without_reply():
    async with running() as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), T) == b""
        assert server.drops[DropReason.SOCKS_BAD_VERSION] == 1
        writer.close()


async def test_pipelined_request_and_data(echo_tcp):
    """An optimistic client sends everything at once; nothing is lost."""
    async with running() as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"\x05\x01\x00" + request(1, *echo_tcp) + b"early bytes")
        assert await asyncio.wait_for(reader.readexactly(2), T) == b"\x05\x00"
        assert (await read_reply(reader))[0] == 0
        assert await asyncio.wait_for(reader.readexactly(11), T) == b"early bytes"
        writer.close()


# --- reply codes from real conditions (and the ICMP stand-in) ----------------------------------


async def test_rep_0x05_refused(closed_port):
    async with running() as server:
        assert await rep_for(server, request(1, "127.0.0.1", closed_port)) == Rep.CONNECTION_REFUSED


async def test_rep_0x02_ipv4_refused_by_policy(echo_tcp):
    async with running(PolicyConnector(OsConnector(), None, NAMES)) as server:
        assert await rep_for(server, request(1, *echo_tcp)) == Rep.NOT_ALLOWED
        assert await rep_for(server, request(1, "v4only.test", echo_tcp[1])) == Rep.NOT_ALLOWED


async def test_rep_0x07_unknown_command():
    async with running() as server:
        assert await rep_for(server, b"\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50") == Rep.COMMAND_NOT_SUPPORTED


@pytest.mark.parametrize(("setting", "cmd"), [("allow_bind", 2), ("allow_udp", 3)])
async def test_rep_0x07_disabled_command(setting, cmd):
    async with running(**{setting: False}) as server:
        assert await rep_for(server, request(cmd, "127.0.0.1", 0)) == Rep.COMMAND_NOT_SUPPORTED


async def test_rep_0x08_address_type():
    async with running() as server:
        assert await rep_for(server, b"\x05\x01\x00\x02\x7f\x00\x00\x01\x00\x50") == Rep.ADDRESS_TYPE_NOT_SUPPORTED


async def test_rep_0x04_bad_and_unknown_names(web):
    async with running() as server:
        bad = b"\x05\x01\x00\x03\x04a b.\x00\x50"
        assert await rep_for(server, bad) == Rep.HOST_UNREACHABLE
        assert await rep_for(server, request(1, "nx.test", web)) == Rep.HOST_UNREACHABLE


async def test_rep_0x04_connect_timeout():
    async with running(HangingConnector(), connect_timeout=0.2) as server:
        assert await rep_for(server, request(1, "2001:db8::1", 80)) == Rep.HOST_UNREACHABLE


@pytest.mark.parametrize(("error", "rep"), [
    (NetworkUnreachable("ICMPv6 no route"), Rep.NETWORK_UNREACHABLE),
    (HostUnreachable("ICMPv6 address unreachable"), Rep.HOST_UNREACHABLE),
    (ConnectionRefused("RST"), Rep.CONNECTION_REFUSED),
    (TtlExpired("ICMPv6 hop limit exceeded"), Rep.TTL_EXPIRED),
    (RuntimeError("connector bug"), Rep.GENERAL_FAILURE),
])
async def test_icmp_stand_in_connector_reps(error, rep):
    async with running(IcmpStandInConnector(error)) as server:
        assert await rep_for(server, request(1, "2001:db8::1", 80)) == rep
        assert await rep_for(server, request(2, "2001:db8::1", 21)) == rep
        assert await rep_for(server, request(3, "0.0.0.0", 0)) == rep
        assert server.stats[f"rep-{rep:#04x}"] == 3


# --- relay behaviour --------------------------------------------------------------------------


async def count_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read()  # until the client's FIN
    writer.write(b"got %d bytes" % len(data))
    await writer.drain()
    writer.close()


async def test_half_close_client_shuts_write_and_still_receives():
    target = await asyncio.start_server(count_then_answer, "127.0.0.1", 0)
    async with target, running() as server:
        rep, _, reader, writer = await ask(server, request(1, *target.sockets[0].getsockname()[:2]))
        assert rep == 0
        writer.write(b"x" * 300_000)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), T) == b"got 300000 bytes"
        writer.close()


async def test_half_close_during_the_handshake_is_kept():
    """Request, data and FIN in one go, before the server even replied."""
    target = await asyncio.start_server(count_then_answer, "127.0.0.1", 0)
    async with target, running() as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"\x05\x01\x00" + request(1, *target.sockets[0].getsockname()[:2]) + b"12345")
        writer.write_eof()
        assert await asyncio.wait_for(reader.readexactly(2), T) == b"\x05\x00"
        assert (await read_reply(reader))[0] == 0
        assert await asyncio.wait_for(reader.read(), T) == b"got 5 bytes"
        writer.close()


async def test_half_close_target_shuts_write_and_still_receives():
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def greet_then_listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        writer.write_eof()
        received.set_result(await reader.read())
        writer.close()

    target = await asyncio.start_server(greet_then_listen, "127.0.0.1", 0)
    async with target, running() as server:
        rep, _, reader, writer = await ask(server, request(1, *target.sockets[0].getsockname()[:2]))
        assert await asyncio.wait_for(reader.read(), T) == b"hello"  # target's FIN reached us
        writer.write(b"still talking")
        writer.write_eof()
        assert await asyncio.wait_for(received, T) == b"still talking"
        await eventually(lambda: server.stats["relay-closed"] == 1)
        writer.close()


async def test_target_reset_resets_the_client():
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    target = await asyncio.start_server(reset, "127.0.0.1", 0)
    async with target, running() as server:
        rep, _, reader, writer = await ask(server, request(1, *target.sockets[0].getsockname()[:2]))
        writer.write(b"!")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), T)
        assert server.stats["relay-reset"] == 1
        writer.close()


async def test_idle_timeout_closes_the_relay(echo_tcp):
    async with running(idle_timeout=0.3) as server:
        rep, _, reader, writer = await ask(server, request(1, *echo_tcp))
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), T) == b"ping"
        assert await asyncio.wait_for(reader.read(), T) == b""  # then silence -> closed
        await eventually(lambda: server.stats["relay-idle"] == 1)
        writer.close()


async def test_connection_cap(echo_tcp):
    async with running(max_connections=2) as server:
        held = [await ask(server, request(1, *echo_tcp)) for _ in range(2)]
        reader, writer = await asyncio.open_connection(*server.address)
        assert await asyncio.wait_for(reader.read(), T) == b""  # closed before any byte
        assert server.drops[DropReason.SOCKS_CONNECTION_LIMIT] == 1
        writer.close()
        held[0][3].close()
        await eventually(lambda: server.active == 1)
        rep, _, _, w = await ask(server, request(1, *echo_tcp))
        assert rep == 0
        w.close()
        held[1][3].close()


async def test_close_ends_live_sessions(echo_tcp):
    server = Socks5Server(SocksConfig(port=0), OsConnector())
    await server.start()
    rep, _, reader, writer = await ask(server, request(1, *echo_tcp))
    server.close()
    await asyncio.wait_for(server.wait_closed(), T)
    assert server.active == 0
    assert await asyncio.wait_for(reader.read(), T) == b""
    writer.close()


async def test_start_refuses_an_open_proxy():
    server = Socks5Server(SocksConfig(port=0), OsConnector())
    with pytest.raises(ConfigError) as e:
        await server.start("0.0.0.0", 0)
    assert e.value.field == "--socks"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")
async def test_ipv6_target_and_ipv6_listener():
    target = await asyncio.start_server(_echo, "::1", 0)
    async with target:
        server = Socks5Server(SocksConfig(host="::1", port=0), OsConnector())
        async with server:
            rep, bound, reader, writer = await ask(server, request(1, "::1", target.sockets[0].getsockname()[1]))
            assert rep == 0 and bound.host == "::1"
            writer.write(b"v6")
            assert await asyncio.wait_for(reader.readexactly(2), T) == b"v6"
            writer.close()


# --- BIND -------------------------------------------------------------------------------------


async def test_bind_two_replies_and_relay():
    async with running() as server:
        rep, bound, reader, writer = await ask(server, request(2, "127.0.0.1", 0))
        assert rep == 0 and bound.host == "127.0.0.1" and bound.port != 0
        peer_r, peer_w = await asyncio.open_connection(bound.host, bound.port)
        rep2, peer = await read_reply(reader)
        assert rep2 == 0
        assert peer == Address.from_sockaddr(peer_w.get_extra_info("sockname"))
        peer_w.write(b"from the application server")
        assert await asyncio.wait_for(reader.readexactly(27), T) == b"from the application server"
        writer.write(b"from the client")
        assert await asyncio.wait_for(peer_r.readexactly(15), T) == b"from the client"
        peer_w.close()
        writer.close()


async def test_bind_refuses_an_unexpected_peer():
    async with running() as server:
        rep, bound, reader, writer = await ask(server, request(2, "127.0.0.2", 0))
        intruder_r, intruder_w = await asyncio.open_connection(bound.host, bound.port)
        assert await asyncio.wait_for(intruder_r.read(), T) == b""  # closed by the server
        assert server.drops[DropReason.SOCKS_BIND_WRONG_PEER] == 1
        peer_r, peer_w = await asyncio.open_connection(bound.host, bound.port, local_addr=("127.0.0.2", 0))
        rep2, peer = await read_reply(reader)
        assert (rep2, peer.host) == (0, "127.0.0.2")
        intruder_w.close()
        peer_w.close()
        writer.close()


async def test_bind_timeout_sends_a_failure_second_reply():
    async with running(bind_timeout=0.2) as server:
        rep, _, reader, writer = await ask(server, request(2, "127.0.0.1", 0))
        assert rep == 0
        assert (await read_reply(reader))[0] == Rep.HOST_UNREACHABLE
        writer.close()


async def test_bind_client_data_before_the_peer_is_kept():
    async with running() as server:
        rep, bound, reader, writer = await ask(server, request(2, "127.0.0.1", 0))
        writer.write(b"early")
        peer_r, peer_w = await asyncio.open_connection(bound.host, bound.port)
        assert (await read_reply(reader))[0] == 0
        assert await asyncio.wait_for(peer_r.readexactly(5), T) == b"early"
        peer_w.close()
        writer.close()


async def test_bind_client_half_close_before_the_peer_arrives():
    async with running() as server:
        rep, bound, reader, writer = await ask(server, request(2, "127.0.0.1", 0))
        writer.write(b"upload")
        writer.write_eof()
        peer_r, peer_w = await asyncio.open_connection(bound.host, bound.port)
        assert (await read_reply(reader))[0] == 0
        assert await asyncio.wait_for(peer_r.read(), T) == b"upload"  # data, then the client's FIN
        peer_w.write(b"thanks")
        peer_w.write_eof()
        assert await asyncio.wait_for(reader.read(), T) == b"thanks"
        peer_w.close()
        writer.close()


# --- UDP ASSOCIATE (raw client) ----------------------------------------------------------------


class UdpClient:
    """A raw SOCKS5 UDP client socket on loopback."""

    def __init__(self, relay: Address, local: str = "127.0.0.1") -> None:
        self.relay = relay.sockaddr()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local, 0))
        self.sock.setblocking(False)

    async def send(self, payload: bytes, to: tuple[str, int], frag: int = 0) -> None:
        header = b"\x00\x00" + bytes([frag]) + Address.from_host(*to).emit()
        await asyncio.get_running_loop().sock_sendto(self.sock, header + payload, self.relay)

    async def recv(self) -> tuple[bytes, Address]:
        data, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_recvfrom(self.sock, 4096), T)
        assert data[:3] == b"\x00\x00\x00"
        parsed = parse_address(data, 3)
        assert parsed is not None
        return data[parsed[1]:], parsed[0]

    def close(self) -> None:
        self.sock.close()


async def associate(server: Socks5Server, port: int = 0) -> tuple[Address, asyncio.StreamReader, asyncio.StreamWriter]:
    rep, bound, reader, writer = await ask(server, request(3, "0.0.0.0", port))
    assert rep == 0
    return bound, reader, writer


async def test_udp_fragments_are_dropped(echo_udp):
    async with running() as server:
        relay, _, writer = await associate(server)
        client = UdpClient(relay)
        await client.send(b"fragment", echo_udp, frag=1)
        await client.send(b"whole", echo_udp)
        assert await client.recv() == (b"whole", Address.from_host(*echo_udp))
        assert server.drops[DropReason.SOCKS_UDP_FRAGMENT] == 1
        client.close()
        writer.close()


async def test_udp_source_check(echo_udp):
    async with running() as server:
        relay, _, writer = await associate(server)
        client = UdpClient(relay)
        await client.send(b"first", echo_udp)  # fixes the client's port
        assert (await client.recv())[0] == b"first"
        same_host = UdpClient(relay)
        other_host = UdpClient(relay, local="127.0.0.2")
        await same_host.send(b"other port", echo_udp)
        await other_host.send(b"other address", echo_udp)
        await client.send(b"second", echo_udp)
        assert (await client.recv())[0] == b"second"
        assert server.drops[DropReason.SOCKS_UDP_WRONG_SOURCE] == 2
        for c in (client, same_host, other_host):
            c.close()
        writer.close()


async def test_udp_domain_target(echo_udp):
    async with running() as server:
        relay, _, writer = await associate(server)
        client = UdpClient(relay)
        await client.send(b"by name", ("echo.test", echo_udp[1]))
        assert await client.recv() == (b"by name", Address.from_host(*echo_udp))
        await client.send(b"unknown", ("nx.test", echo_udp[1]))
        await eventually(lambda: server.drops[DropReason.SOCKS_UDP_SEND_FAILED] == 1)
        client.close()
        writer.close()


async def test_udp_association_ends_with_the_control_connection(echo_udp):
    async with running() as server:
        relay, reader, writer = await associate(server)
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), T) == b""
        await eventually(lambda: server.stats["udp-closed"] == 1 and server.active == 0)
        writer.close()


async def test_udp_idle_timeout(echo_udp):
    async with running(udp_idle_timeout=0.3) as server:
        relay, reader, writer = await associate(server)
        client = UdpClient(relay)
        await client.send(b"once", echo_udp)
        assert (await client.recv())[0] == b"once"
        assert await asyncio.wait_for(reader.read(), T) == b""
        assert server.stats["udp-idle"] == 1
        client.close()
        writer.close()


async def test_udp_through_the_policy_router(echo_udp):
    """The policy connector's UDP endpoint, IPv4 direct, end to end."""
    async with running(PolicyConnector(OsConnector(), OsConnector(), NAMES)) as server:
        relay, _, writer = await associate(server)
        client = UdpClient(relay)
        await client.send(b"routed", ("echo.test", echo_udp[1]))
        assert await client.recv() == (b"routed", Address.from_host(*echo_udp))
        client.close()
        writer.close()

