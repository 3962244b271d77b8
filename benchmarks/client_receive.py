#!/usr/bin/env python3
"""CPU cost of the client's download path, in process: Teredo datagrams in, bytes to the reader.

``benchmarks/client_socks.py`` measures the whole download through real
sockets and namespaces; this one isolates what our process does per
received segment, without sockets, syscalls or a network: the real
:class:`~proxy.apps.client.ClientRunner` (Teredo core, flushes, timer),
:class:`~proxy.ipstack.stack_asyncio.Stack` (Interface, TCP, events) and an
``asyncio.StreamReader`` read by a task ``--read`` bytes at a time, as the
SOCKS5 relay reads it (but writing nowhere), on
a running asyncio loop.  Only the UDP endpoint is fake: it answers the
client's Router Solicitation (cone NAT), the peer's SYN-ACK is made by a
second :class:`~proxy.ipstack.tcp.TcpConnection`, and then ``--mb``
megabytes of pre-built, in-order, timestamped data segments from a
trusted Teredo peer are handed to the runner ``--batch`` datagrams per
wake-up (what ``proxy.netio`` delivers per ``recvfrom`` drain).  The
client's ACKs go to the fake endpoint and are counted.

Prints one JSON object per run::

    {"bench": "client_receive", "mb": 32.0, "batch": 64, "segments": ..,
     "seconds": .., "us_per_segment": .., "mb_per_s": .., "acks": ..,
     "loop": "asyncio"}

``mb_per_s`` is payload per second of CPU on one core: the ceiling of our
client if the network and the kernel were free.  ``--profile FILE`` writes
a cProfile of the timed part.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.apps.client import ClientRunner  # noqa: E402
from proxy.config.client import ClientConfig  # noqa: E402
from proxy.ipstack.interface import Interface  # noqa: E402
from proxy.ipstack.stack_asyncio import Stack  # noqa: E402
from proxy.ipstack.tcp import TcpConfig, TcpConnection  # noqa: E402
from proxy.ipstack.wire.ipv6 import NextHeader  # noqa: E402
from proxy.ipstack.wire.tcp import ACK, PSH, TcpSegment  # noqa: E402
from proxy.teredo.address import TeredoAddress, server_link_local  # noqa: E402
from proxy.constants import LINK_LOCAL_CONE, SOCKS_RELAY_CHUNK  # noqa: E402
from proxy.teredo.messages import router_advertisement  # noqa: E402
from proxy.teredo.packet import TeredoPacket, bubble, ipv6_packet  # noqa: E402

SRV1 = "198.51.100.1"
SRV2 = "198.51.100.2"
MAPPED = ("203.0.113.5", 40001)
PEER_MAPPED = ("203.0.113.77", 50000)
PEER = TeredoAddress(SRV1, 0x0100, PEER_MAPPED[1], PEER_MAPPED[0]).emit()


class FakeEndpoint:
    """Stands for ``proxy.netio.UdpEndpoint``: records what the client sends."""

    def __init__(self, host: str, port: int, on_batch, loop) -> None:
        self.local = ("10.0.0.2", 40001)
        self.on_batch = on_batch
        self.sent = self.received = self.bytes_sent = self.bytes_received = self.send_errors = 0
        self.out: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> bool:
        self.sent += 1
        self.out.append((data, addr))
        return True

    def deliver(self, batch: list[tuple[bytes, tuple[str, int]]]) -> None:
        self.received += len(batch)
        self.on_batch(self, batch)

    def close(self) -> None:
        pass


async def wait(cond, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise RuntimeError(f"benchmark set-up: no {what}")
        await asyncio.sleep(0.001)


async def run(nbytes: int, batch: int, read: int, profile: str | None) -> dict:
    cfg = ClientConfig(servers=(SRV1,), separate_probe=False).validate()
    endpoints: list[FakeEndpoint] = []

    def factory(host, port, on_batch, loop):
        endpoints.append(FakeEndpoint(host, port, on_batch, loop))
        return endpoints[-1]

    runner = ClientRunner(cfg, rng=random.Random(1), udp_factory=factory)
    await runner.start()
    ep = endpoints[0]
    # Qualify: answer the cone-flagged Router Solicitation from the secondary address.
    await wait(lambda: ep.out, "router solicitation")
    rs = next(p for p in (TeredoPacket.parse(d) for d, _ in ep.out) if p.src == LINK_LOCAL_CONE)
    ep.out.clear()
    ep.deliver([(router_advertisement(server=SRV1, server_link_local=server_link_local(SRV1),
                                      client_link_local=rs.src, origin=MAPPED, nonce=rs.auth.nonce),
                 (SRV2, 3544))])
    await wait(lambda: runner.core.qualified, "qualification")
    me = runner.core.address
    ep.deliver([(bubble(PEER, me), PEER_MAPPED)])  # the peer is trusted at its mapping
    ep.out.clear()

    iface = Interface(rng=random.Random(2))
    stack = Stack(iface)

    class Link:
        def send(self, packet: bytes) -> None:
            runner.send_ipv6(packet)

    stack.attach(Link())
    runner.on_packets.append(stack.packets_received)
    stack.set_addresses([me])
    iface.mtu = 1280
    opener = asyncio.ensure_future(stack.open_connection(PEER, 80, limit=1 << 20))
    await wait(lambda: ep.out, "SYN")
    syn = TeredoPacket.parse(ep.out[0][0]).ipv6
    ep.out.clear()
    seg = TcpSegment.parse(syn[40:], me, PEER)
    peer = TcpConnection.accept(TcpConfig(mss=1220), seg, local=(PEER, 80), remote=(me, seg.src_port),
                                rng=random.Random(3), now=0.0)
    for s in peer.segments_to_send(0.0):
        ep.deliver([(ipv6_packet(PEER, me, NextHeader.TCP, s.emit(PEER, me)), PEER_MAPPED)])
    reader, writer = await opener
    await wait(lambda: ep.out, "ACK of the SYN-ACK")
    ep.out.clear()

    # Pre-built in-order data: what a bulk sender's segments look like.
    mss = 1208  # 1220 minus the timestamp option
    chunk = bytes(range(256)) * 5
    seq = peer.snd_nxt
    ack = seg.seq + 1
    wnd = min(65535, peer.config.recv_buffer >> peer.config.wscale)
    datagrams: list[bytes] = []
    tsval = 1000
    for off in range(0, nbytes, mss):
        n = min(mss, nbytes - off)
        s = TcpSegment(80, seg.src_port, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, ACK | PSH, wnd,
                       timestamps=(tsval, 0), payload=chunk[:n])
        datagrams.append(ipv6_packet(PEER, me, NextHeader.TCP, s.emit(PEER, me)))
        seq += n
        tsval += 1
    got = 0

    async def read_all() -> None:
        nonlocal got
        while got < nbytes:
            data = await reader.read(read)
            if not data:
                raise RuntimeError("EOF before the end")
            got += len(data)

    reading = asyncio.ensure_future(read_all())
    prof = cProfile.Profile() if profile else None
    acks0 = ep.sent
    t0, c0 = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    for i in range(0, len(datagrams), batch):
        ep.deliver([(d, PEER_MAPPED) for d in datagrams[i : i + batch]])
        ep.out.clear()
        await asyncio.sleep(0)  # the reader's turn, as between two wake-ups
    await reading
    if prof:
        prof.disable()
    c1, t1 = time.process_time(), time.perf_counter()
    if prof:
        prof.dump_stats(profile)
    if got != nbytes:
        raise RuntimeError(f"read {got} of {nbytes} bytes")
    writer.transport.abort()
    stack.close()
    runner.close()
    cpu = c1 - c0
    return {
        "bench": "client_receive", "mb": nbytes / 1e6, "batch": batch, "segments": len(datagrams),
        "seconds": round(t1 - t0, 3), "cpu_seconds": round(cpu, 3),
        "us_per_segment": round(cpu / len(datagrams) * 1e6, 2), "mb_per_s": round(nbytes / cpu / 1e6, 1),
        "read": read, "acks": ep.sent - acks0, "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=32.0, help="megabytes per run (default 32)")
    p.add_argument("--batch", type=int, default=64, help="datagrams per wake-up (default 64)")
    p.add_argument("--read", type=int, default=SOCKS_RELAY_CHUNK,
                   help="bytes per reader.read(), as the SOCKS5 relay reads (default SOCKS_RELAY_CHUNK)")
    p.add_argument("--repeat", type=int, default=3, help="runs (default 3); each is printed, then the median")
    p.add_argument("--profile", metavar="FILE", help="cProfile the timed part of the first run into FILE")
    args = p.parse_args()
    results = []
    for i in range(max(args.repeat, 1)):
        r = asyncio.run(run(int(args.mb * 1e6), args.batch, args.read, args.profile if i == 0 else None))
        results.append(r)
        print(json.dumps(r), flush=True)
    us = sorted(r["us_per_segment"] for r in results)[len(results) // 2]
    mbs = sorted(r["mb_per_s"] for r in results)[len(results) // 2]
    print(json.dumps({"bench": "client_receive", "summary": "median", "batch": args.batch,
                      "us_per_segment": us, "mb_per_s": mbs}), flush=True)


if __name__ == "__main__":
    main()
