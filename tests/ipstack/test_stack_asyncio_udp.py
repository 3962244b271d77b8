"""The asyncio driver with two stacks wired back to back: UDP, ping, timer."""

from __future__ import annotations

import asyncio
import random

import pytest

from proxy.ipstack.interface import Interface
from proxy.ipstack.stack_asyncio import Stack, exception_for, format_address, parse_address

A = "2001:db8::a"
B = "2001:db8::b"


class Wire:
    """One direction of a link: hands packets to the other stack, maybe dropping."""

    def __init__(self) -> None:
        self.peer: Stack | None = None
        self.drop = lambda packet: False
        self.seen: list[bytes] = []

    def send(self, packet: bytes) -> None:
        self.seen.append(packet)
        if self.peer is not None and not self.drop(packet):
            self.peer.packet_received(packet)


async def pair() -> tuple[Stack, Stack, Wire, Wire]:
    ia = Interface(rng=random.Random(1), addresses=[parse_address(A)])
    ib = Interface(rng=random.Random(2), addresses=[parse_address(B)])
    wa, wb = Wire(), Wire()
    sa, sb = Stack(ia, wa), Stack(ib, wb)
    wa.peer, wb.peer = sb, sa
    return sa, sb, wa, wb


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue = asyncio.Queue()
        self.errors: asyncio.Queue = asyncio.Queue()
        self.lost = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        self.got.put_nowait((data, addr))

    def error_received(self, exc):
        self.errors.put_nowait(exc)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def test_udp_both_ways():
    sa, sb, _, _ = await pair()
    tb, pb = await sb.create_datagram_endpoint(Collector, local_addr=(B, 5353))
    ta, pa = await sa.create_datagram_endpoint(Collector, remote_addr=(B, 5353))
    ta.sendto(b"question")
    data, addr = await asyncio.wait_for(pb.got.get(), 5)
    assert data == b"question" and addr[0] == A
    tb.sendto(b"answer" * 500, addr)  # 3000 bytes: fragmented and reassembled
    data, addr = await asyncio.wait_for(pa.got.get(), 5)
    assert data == b"answer" * 500 and addr[:2] == (B, 5353)
    assert ta.get_extra_info("peername")[:2] == (B, 5353)
    ta.close()
    assert await asyncio.wait_for(pa.lost, 5) is None


async def test_udp_port_unreachable_reaches_error_received():
    sa, sb, _, _ = await pair()
    ta, pa = await sa.create_datagram_endpoint(Collector, remote_addr=(B, 9999))
    ta.sendto(b"anyone?")
    exc = await asyncio.wait_for(pa.errors.get(), 5)
    assert isinstance(exc, ConnectionRefusedError) and exc.reason == "unreachable-port"


async def test_ping_rtt_and_timeout():
    sa, sb, wa, _ = await pair()
    rtt = await sa.ping(B, seq=1, data=b"x" * 100, timeout=5)
    assert 0 <= rtt < 5
    wa.drop = lambda packet: True
    with pytest.raises(TimeoutError):
        await sa.ping(B, seq=2, timeout=0.05)
    assert sa.interface._echo == {}


async def test_ping_error():
    from proxy.testing.packets import icmp_error

    sa, _, wa, _ = await pair()
    router = parse_address("2001:db8::fe")
    # The "network" answers echo requests to ::c with Destination Unreachable.
    wa.send = lambda p: sa.packet_received(icmp_error(router, 1, 3, 0, p))
    with pytest.raises(OSError) as info:
        await sa.ping("2001:db8::c", timeout=5)
    assert info.value.reason == "unreachable-host"
    assert info.value.reporter == "2001:db8::fe"


def test_exception_for():
    assert isinstance(exception_for("refused"), ConnectionRefusedError)
    assert isinstance(exception_for("reset"), ConnectionResetError)
    assert isinstance(exception_for("timeout"), TimeoutError)
    assert isinstance(exception_for("admin-prohibited"), PermissionError)
    e = exception_for("time-exceeded")
    assert e.reason == "time-exceeded" and e.errno == 113
    assert exception_for("unreachable-net").errno == 101
    assert format_address(parse_address("2001:db8::1")) == "2001:db8::1"
    with pytest.raises(ValueError):
        parse_address("192.0.2.1")


async def test_timer_drives_reassembly_timeout():
    # A lone first fragment: after the 60 s timeout the stack sends Time
    # Exceeded. Virtual time would be nicer; instead shrink the timeout.
    sa, sb, wa, wb = await pair()
    sb.interface._reasm.timeout = 0.05
    from proxy.testing.packets import fragment_header, ipv6
    first = ipv6(parse_address(A), parse_address(B), 44, fragment_header(58, 0, True, 1) + b"\x80" + bytes(15))
    got = asyncio.get_running_loop().create_future()
    wb.peer = None
    wb.send = lambda p: got.done() or got.set_result(p)
    sb.packet_received(first)
    err = await asyncio.wait_for(got, 5)
    assert err[40] == 3 and err[41] == 1
