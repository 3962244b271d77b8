"""Our userspace stack against the Linux kernel over a TUN device.

The kernel sits in a uniquely named network namespace on the far side of
the TUN device (see proxy.testing.tunlab); iptables ``statistic`` rules in
the namespace drop packets at random in both directions.  Needs root.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from proxy.testing.tunlab import TunLab, lab_unavailable_reason

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]


def stream(nbytes: int, seed: int):
    rng = random.Random(seed)
    left = nbytes
    while left:
        n = min(256 * 1024, left)
        yield rng.randbytes(n)
        left -= n


def digest(nbytes: int, seed: int) -> str:
    h = hashlib.sha256()
    for chunk in stream(nbytes, seed):
        h.update(chunk)
    return h.hexdigest()


async def test_kernel_pings_our_stack():
    async with TunLab() as lab:
        peer = await lab.peer("ping", lab.stack_addr, 3, 56)
        res = await peer.result(30)
        assert res["replies"] == 3
        # a 3000-byte ping: the kernel fragments it, we reassemble and answer
        # with fragments the kernel reassembles
        peer = await lab.peer("ping", lab.stack_addr, 2, 3000)
        assert (await peer.result(30))["replies"] == 2


async def test_we_ping_the_kernel():
    async with TunLab() as lab:
        rtt = await lab.stack.ping(lab.kernel_addr, data=b"x" * 64, timeout=5)
        assert 0 <= rtt < 5
        rtt = await lab.stack.ping(lab.kernel_addr, seq=1, data=b"y" * 2500, timeout=5)
        assert 0 <= rtt < 5


class Echoer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.got: asyncio.Queue = asyncio.Queue()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.got.put_nowait((data, addr))


async def test_udp_kernel_to_stack():
    async with TunLab() as lab:
        transport, proto = await lab.stack.create_datagram_endpoint(
            Echoer, local_addr=(lab.stack_addr, 7000)
        )
        peer = await lab.peer("udp-send", lab.stack_addr, 7000, 5)

        async def echo() -> None:
            for _ in range(5):
                data, addr = await proto.got.get()
                transport.sendto(data, addr)

        task = asyncio.create_task(echo())
        assert (await peer.result(30))["ok"] == 5
        await task


async def test_udp_stack_to_kernel_and_port_unreachable():
    async with TunLab() as lab:
        peer = await lab.peer("udp-echo", 7001, 3)
        transport, proto = await lab.stack.create_datagram_endpoint(
            Echoer, remote_addr=(lab.kernel_addr, 7001)
        )
        for size in (10, 1300, 5000):
            payload = random.Random(size).randbytes(size)
            transport.sendto(payload)
            data, addr = await asyncio.wait_for(proto.got.get(), 10)
            assert data == payload and addr[0] == lab.kernel_addr
        assert (await peer.result(30))["echoed"] == [10, 1300, 5000]
        # nobody listens on 7002: the kernel answers Port Unreachable
        errors: asyncio.Queue = asyncio.Queue()
        t2, p2 = await lab.stack.create_datagram_endpoint(Echoer)
        p2.error_received = errors.put_nowait
        t2.sendto(b"x", (lab.kernel_addr, 7002))
        exc = await asyncio.wait_for(errors.get(), 10)
        assert isinstance(exc, ConnectionRefusedError) and exc.reason == "unreachable-port"


async def test_kernel_connect_to_closed_port_is_refused():
    async with TunLab() as lab:
        peer = await lab.peer("connect-sink", lab.stack_addr, 9)
        with pytest.raises(RuntimeError, match="ConnectionRefusedError"):
            await peer.result(30)


async def test_connect_to_kernel_closed_port_is_refused():
    async with TunLab() as lab:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(lab.stack.open_connection(lab.kernel_addr, 9), 10)


LOSSES = [0.0, 0.01, 0.05]
SIZES = {0.0: 8 << 20, 0.01: 4 << 20, 0.05: 1 << 20}


@pytest.mark.parametrize("loss", LOSSES, ids=["0%", "1%", "5%"])
async def test_bulk_stack_to_kernel(loss):
    nbytes, seed = SIZES[loss], 11
    async with TunLab() as lab:
        lab.set_loss(loss)
        peer = await lab.peer("sink", 5001)
        reader, writer = await asyncio.wait_for(lab.stack.open_connection(lab.kernel_addr, 5001), 30)
        for chunk in stream(nbytes, seed):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        res = await peer.result(300)
        assert res["bytes"] == nbytes and res["sha256"] == digest(nbytes, seed)
        assert (lab.dropped() > 0) == (loss > 0)
        assert await asyncio.wait_for(reader.read(), 60) == b""
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("loss", LOSSES, ids=["0%", "1%", "5%"])
async def test_bulk_kernel_to_stack(loss):
    nbytes, seed = SIZES[loss], 12
    async with TunLab() as lab:
        lab.set_loss(loss)
        peer = await lab.peer("source", 5002, nbytes, seed)
        reader, writer = await asyncio.wait_for(lab.stack.open_connection(lab.kernel_addr, 5002), 30)
        h = hashlib.sha256()
        total = 0
        while True:
            data = await asyncio.wait_for(reader.read(1 << 16), 120)
            if not data:
                break
            h.update(data)
            total += len(data)
        assert total == nbytes and h.hexdigest() == digest(nbytes, seed)
        writer.close()
        await writer.wait_closed()
        res = await peer.result(120)
        assert res["sha256"] == digest(nbytes, seed)
        assert (lab.dropped() > 0) == (loss > 0)


@pytest.mark.parametrize("loss", [0.0, 0.05], ids=["0%", "5%"])
async def test_kernel_connects_to_our_listener_both_ways(loss):
    nbytes = 2 << 20
    async with TunLab() as lab:
        lab.set_loss(loss)
        done: asyncio.Queue = asyncio.Queue()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            port = writer.get_extra_info("sockname")[1]
            if port == 6001:  # the kernel sends: read everything
                h = hashlib.sha256()
                total = 0
                while data := await reader.read(1 << 16):
                    h.update(data)
                    total += len(data)
                writer.close()
                await done.put((total, h.hexdigest()))
            else:  # we send
                for chunk in stream(nbytes, 22):
                    writer.write(chunk)
                    await writer.drain()
                writer.close()
                await writer.wait_closed()
                await done.put("sent")

        s1 = await lab.stack.start_server(handler, None, 6001)
        s2 = await lab.stack.start_server(handler, None, 6002)
        peer = await lab.peer("connect-source", lab.stack_addr, 6001, nbytes, 21)
        assert await asyncio.wait_for(done.get(), 120) == (nbytes, digest(nbytes, 21))
        await peer.result(60)
        peer = await lab.peer("connect-sink", lab.stack_addr, 6002)
        res = await peer.result(120)
        assert res["bytes"] == nbytes and res["sha256"] == digest(nbytes, 22)
        assert await asyncio.wait_for(done.get(), 60) == "sent"
        assert (lab.dropped() > 0) == (loss > 0)
        s1.close()
        s2.close()
