"""The I/O of one SOCKS5 UDP association (RFC 1928 §7).

The client-facing UDP socket is bound on the address the client reached the
TCP control connection on (so the client can reach it), port chosen by the
kernel; that is BND of the UDP ASSOCIATE reply.  Every decision about a
datagram (source check, FRAG, header) is made by the sans-I/O
:class:`~proxy.socks5_udp.UdpAssociation`; this module only moves bytes:

* client socket -> ``UdpAssociation.client_datagram`` -> bounded queue ->
  ``endpoint.send`` (one task, so name resolution never runs unbounded);
* ``endpoint.recv`` -> ``UdpAssociation.target_datagram`` -> client socket;
* the TCP control connection is read (and its bytes discarded) until EOF:
  RFC 1928 §7 "A UDP association terminates when the TCP connection that the
  UDP ASSOCIATE request arrived on terminates."  An idle timer also ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from proxy.errors import DropReason
from proxy.socks5_address import Address
from proxy.socks5_connector import ByteReader, SocksError, UdpEndpoint
from proxy.socks5_relay_asyncio import IdleTimer, RelayEnd
from proxy.socks5_udp import UdpAssociation, UdpDatagram

__all__ = ["UdpRelay"]

log = logging.getLogger("proxy.socks5_udp")


class _ClientProtocol(asyncio.DatagramProtocol):
    """Hands client datagrams to the association core, queues what passes."""

    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("udp association: client socket error: %s", exc)


class UdpRelay:
    """One UDP association: client socket, core rules, outbound endpoint."""

    def __init__(self, assoc: UdpAssociation, endpoint: UdpEndpoint, queue_size: int) -> None:
        self.assoc = assoc
        self.endpoint = endpoint
        self.bound: Address | None = None
        "BND.ADDR/BND.PORT for the reply: the client-facing socket."
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[UdpDatagram] = asyncio.Queue(queue_size)
        self._timer: IdleTimer | None = None

    @classmethod
    async def open(
        cls,
        *,
        local_ip: str,
        client_host: str,
        requested: Address,
        endpoint: UdpEndpoint,
        drops: Counter[DropReason],
        queue_size: int,
    ) -> UdpRelay:
        """Bind the client-facing socket on ``local_ip``; raises OSError."""
        relay = cls(UdpAssociation(client_host, requested, drops), endpoint, queue_size)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _ClientProtocol(relay), local_addr=(local_ip, 0))
        relay._transport = transport
        relay.bound = Address.from_sockaddr(transport.get_extra_info("sockname"))
        return relay

    def _from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        dgram = self.assoc.client_datagram(data, addr)
        if dgram is None:
            return
        if self._timer is not None:
            self._timer.touch()
        try:
            self._queue.put_nowait(dgram)
        except asyncio.QueueFull:
            self.assoc.drops[DropReason.QUEUE_FULL] += 1

    async def _forward(self) -> None:
        while True:
            dgram = await self._queue.get()
            try:
                await self.endpoint.send(dgram.data, dgram.address)
            except (SocksError, OSError) as e:
                self.assoc.drops[DropReason.SOCKS_UDP_SEND_FAILED] += 1
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("udp association: cannot send to %s: %s", dgram.address, e)

    async def _backward(self) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                data, source = await self.endpoint.recv()
                out = self.assoc.target_datagram(data, source)
                if out is not None and self._transport is not None:
                    if self._timer is not None:
                        self._timer.touch()
                    self._transport.sendto(*out)

    @staticmethod
    async def _control(reader: ByteReader, chunk: int) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(chunk):
                pass

    async def run(self, control: ByteReader, *, idle_timeout: float, chunk: int) -> RelayEnd:
        """Relay until the control connection ends or the association idles."""
        tasks = [
            asyncio.create_task(self._control(control, chunk)),
            asyncio.create_task(self._forward()),
            asyncio.create_task(self._backward()),
        ]

        def on_idle() -> None:
            for t in tasks:
                t.cancel()

        self._timer = IdleTimer(idle_timeout, on_idle)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._timer.cancel()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return RelayEnd.IDLE if self._timer.fired else RelayEnd.CLOSED

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.endpoint.close()
