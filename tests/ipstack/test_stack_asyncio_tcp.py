"""The asyncio stream API over two stacks wired back to back (real loop)."""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy.ipstack.interface import Interface
from proxy.ipstack.stack_asyncio import Stack, parse_address
from proxy.testing.packets import icmp_error

A = "2001:db8::a"
B = "2001:db8::b"


class Wire:
    def __init__(self) -> None:
        self.peer: Stack | None = None
        self.hook = None

    def send(self, packet: bytes) -> None:
        if self.hook is not None and self.hook(packet):
            return
        if self.peer is not None:
            self.peer.packet_received(packet)


async def pair(**kw) -> tuple[Stack, Stack, Wire, Wire]:
    ia = Interface(rng=random.Random(1), addresses=[parse_address(A)], **kw)
    ib = Interface(rng=random.Random(2), addresses=[parse_address(B)], **kw)
    wa, wb = Wire(), Wire()
    sa, sb = Stack(ia, wa), Stack(ib, wb)
    wa.peer, wb.peer = sb, sa
    return sa, sb, wa, wb


async def test_open_connection_and_start_server_roundtrip():
    sa, sb, _, _ = await pair()
    served = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        line = await reader.readline()
        body = await reader.readexactly(5)
        writer.write(line.upper() + body[::-1])
        await writer.drain()
        assert await reader.read() == b""  # client half-closed
        writer.write(b"after-eof")
        writer.close()
        await writer.wait_closed()
        served.set_result(writer.get_extra_info("peername"))

    server = await sb.start_server(handler, B, 8080)
    reader, writer = await sa.open_connection(B, 8080)
    assert writer.get_extra_info("peername")[:2] == (B, 8080)
    assert writer.get_extra_info("sockname")[0] == A
    writer.write(b"hello\nworld")
    await writer.drain()
    assert await reader.readexactly(11) == b"HELLO\ndlrow"
    writer.write_eof()
    assert await reader.read() == b"after-eof"
    peer = await asyncio.wait_for(served, 5)
    assert peer[0] == A
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


async def test_bulk_with_backpressure():
    sa, sb, _, _ = await pair()
    data = random.Random(7).randbytes(3 << 20)
    got = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def handler(reader, writer):
        await release.wait()  # do not read at first: the sender must block
        buf = bytearray()
        while chunk := await reader.read(1 << 16):
            buf += chunk
        got.set_result(bytes(buf))
        writer.close()

    await sb.start_server(handler, None, 9000)
    reader, writer = await sa.open_connection(B, 9000)

    async def send() -> None:
        for off in range(0, len(data), 100_000):
            writer.write(data[off : off + 100_000])
            await writer.drain()
        writer.write_eof()

    task = asyncio.create_task(send())
    # With nobody reading, drain() must stop the sender well before 3 MiB.
    for _ in range(200):
        await asyncio.sleep(0)
    await asyncio.wait([task], timeout=0.3)
    assert not task.done()
    assert writer.transport.get_write_buffer_size() > 0
    release.set()
    await asyncio.wait_for(task, 30)
    assert await asyncio.wait_for(got, 30) == data


async def test_connect_refused():
    sa, sb, _, _ = await pair()
    with pytest.raises(ConnectionRefusedError) as info:
        await sa.open_connection(B, 1)
    assert info.value.reason == "refused"


@pytest.mark.parametrize(
    "code,reason,errno_", [(0, "unreachable-net", 101), (3, "unreachable-host", 113)]
)
async def test_connect_icmp_unreachable(code, reason, errno_):
    sa, sb, wa, _ = await pair()
    router = parse_address("2001:db8::fe")
    wa.hook = lambda p: sa.packet_received(icmp_error(router, 1, code, 0, p)) or True
    with pytest.raises(OSError) as info:
        await asyncio.wait_for(sa.open_connection(B, 80), 5)
    assert info.value.errno == errno_ and info.value.reason == reason


async def test_connect_timeout_when_nothing_answers():
    from proxy.ipstack.tcp import TcpConfig

    sa, sb, wa, _ = await pair(tcp_config=TcpConfig(initial_rto=0.01, rto_min=0.01, syn_retries=2))
    wa.hook = lambda p: True  # black hole
    with pytest.raises(TimeoutError) as info:
        await asyncio.wait_for(sa.open_connection(B, 80), 10)
    assert info.value.reason == "timeout"


async def test_cancelled_connect_aborts():
    sa, sb, wa, _ = await pair()
    wa.hook = lambda p: True
    task = asyncio.create_task(sa.open_connection(B, 80))
    await asyncio.sleep(0)  # let the task send its SYN
    assert len(sa.interface.tcp) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sa.flush()
    assert len(sa.interface.tcp) == 0


async def test_peer_reset_surfaces_as_connection_reset():
    sa, sb, _, _ = await pair()
    accepted = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        accepted.set_result(writer)

    await sb.start_server(handler, None, 7000)
    reader, writer = await sa.open_connection(B, 7000)
    server_writer = await asyncio.wait_for(accepted, 5)
    server_writer.transport.abort()
    with pytest.raises(ConnectionResetError) as info:
        await asyncio.wait_for(reader.read(10), 5)
    assert info.value.reason == "reset"
    with pytest.raises(ConnectionResetError):
        writer.write(b"x")
        await writer.drain()


async def test_close_flushes_buffered_data_first():
    sa, sb, _, _ = await pair()
    data = random.Random(9).randbytes(2 << 20)
    got = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        got.set_result(await reader.read(-1))

    await sb.start_server(handler, None, 7001)
    reader, writer = await sa.open_connection(B, 7001)
    writer.write(data)  # far more than the TCP send buffer: the transport holds the rest
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), 30)
    assert await asyncio.wait_for(got, 30) == data


async def test_server_close_stops_accepting():
    sa, sb, _, _ = await pair()
    server = await sb.start_server(lambda r, w: None, None, 7002)
    async with server:
        pass
    assert not server.is_serving()
    with pytest.raises(ConnectionRefusedError):
        await sa.open_connection(B, 7002)


async def test_stack_close_aborts_everything():
    sa, sb, _, _ = await pair()

    async def handler(reader, writer):
        await reader.read()

    await sb.start_server(handler, None, 7003)
    reader, writer = await sa.open_connection(B, 7003)
    sa.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""
