"""End to end on loopback: an emulated Teredo client, the relay driver, the in-memory native link."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from proxy.native.memory import MemoryLink
from proxy.teredo.address import TeredoAddress
from proxy.teredo.packet import TeredoPacket, bubble, ipv6_packet
from proxy.teredo.relay import TeredoRelay
from proxy.teredo.relay_asyncio import RelayDriver, open_udp_socket
from proxy.testing.relay_fixtures import HOST, RELAY6

DEADLINE = 5.0


def udp(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.setblocking(False)
    return s


async def recv(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    return await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), DEADLINE)


@pytest.fixture
async def relay_setup():
    loop = asyncio.get_running_loop()
    server = udp()  # plays the client's Teredo server
    link = MemoryLink()
    sock = open_udp_socket("127.0.0.1", 0)
    core = TeredoRelay(secret=os.urandom(32), icmp_source=RELAY6, router=link.router,
                       server_port=server.getsockname()[1], require_global=False)
    driver = RelayDriver(core, sock, link, loop)
    driver.start()
    yield loop, core, driver, sock.getsockname(), server, link
    driver.stop()
    sock.close()
    link.close()
    server.close()


async def test_client_reaches_native_and_back(relay_setup):
    loop, core, driver, relay_ep, server, link = relay_setup
    client = udp()
    cport = client.getsockname()[1]
    me = TeredoAddress("127.0.0.1", 0, cport, "127.0.0.1").emit()
    try:
        # native host -> client: the relay queues it and bubbles us through the server
        first = ipv6_packet(HOST, me, 17, b"native says hi")
        await loop.sock_sendall(link.peer, first)
        b, src = await recv(loop, server)
        p = TeredoPacket.parse(b)
        assert p.is_bubble and p.dst == me and src == relay_ep
        # as a client does on an indirect bubble: a direct bubble to the relay
        await loop.sock_sendto(client, bubble(me, p.src), relay_ep)
        got, src = await recv(loop, client)
        assert got == first[:7] + b"\x3f" + first[8:] and src == relay_ep  # router mode: hop limit - 1
        # client -> native host
        up = ipv6_packet(me, HOST, 17, b"client says hi", 64)
        await loop.sock_sendto(client, up, relay_ep)
        fwd = await asyncio.wait_for(loop.sock_recv(link.peer, 65535), DEADLINE)
        assert fwd == up[:7] + b"\x3f" + up[8:]  # memory link: the core decrements the hop limit
        # and the trusted path the other way
        down = ipv6_packet(HOST, me, 17, b"x" * 1200)
        await loop.sock_sendall(link.peer, down)
        got, _ = await recv(loop, client)
        assert got == down[:7] + bytes((down[7] - 1,)) + down[8:]
        assert core.to_native == 1 and core.to_teredo == 2
    finally:
        client.close()


async def test_spoofed_and_unknown_sources_forward_nothing(relay_setup):
    loop, core, driver, relay_ep, server, link = relay_setup
    client = udp()
    try:
        cport = client.getsockname()[1]
        me = TeredoAddress("127.0.0.1", 0, cport, "127.0.0.1").emit()
        other = TeredoAddress("127.0.0.1", 0, 1, "127.0.0.2").emit()
        for packet in (ipv6_packet(me, HOST, 17, b"unknown peer"), ipv6_packet(other, HOST, 17, b"spoofed"),
                       b"garbage", b""):
            await loop.sock_sendto(client, packet, relay_ep)
        # a marker from the native side proves the relay has processed the datagrams above
        await loop.sock_sendall(link.peer, ipv6_packet(HOST, me, 17, b"marker"))
        await recv(loop, server)
        with pytest.raises(BlockingIOError):
            link.peer.recv(65535)
        assert core.to_native == 0 and sum(core.drops.values()) == 4
    finally:
        client.close()


async def test_timer_retries_bubbles_through_the_driver(relay_setup, monkeypatch):
    loop, core, driver, relay_ep, server, link = relay_setup
    me = TeredoAddress("127.0.0.1", 0, 9, "127.0.0.1").emit()
    await loop.sock_sendall(link.peer, ipv6_packet(HOST, me, 17, b"nobody home"))
    first = loop.time()
    await recv(loop, server)
    await recv(loop, server)  # the 2-second retry, fired by the driver's timer
    assert loop.time() - first >= 2.0 - 0.05
