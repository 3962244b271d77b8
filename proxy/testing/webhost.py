"""A native IPv6 host made of our own userspace stack: HTTP and UDP echo.

The demo and the fixtures need a web server on the "IPv6 Internet" without
root or a kernel interface.  This is one :class:`~proxy.ipstack.interface.Interface`
on an :class:`~proxy.testing.ipv6net.Ipv6Network` port, serving files over a
small HTTP/1.1 implementation (GET and HEAD, keep-alive, ``Content-Length``)
and echoing UDP datagrams.  It answers pings through the stack itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections import Counter

from proxy.ipstack.interface import Interface
from proxy.ipstack.stack_asyncio import Stack
from proxy.testing.ipv6net import Ipv6Network

__all__ = ["WebHost"]

log = logging.getLogger("proxy.testing.webhost")

MAX_REQUEST_HEAD = 16384


class _NetworkLink:
    def __init__(self, network: Ipv6Network) -> None:
        self.network = network

    def send(self, packet: bytes) -> None:
        self.network.send(packet)


class _EchoProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr[:2])


class WebHost:
    """An IPv6 host at ``address`` on ``network``: ``http://[address]:port/``."""

    def __init__(self, network: Ipv6Network, address: str = "2001:db8:1::100", *,
                 http_port: int = 80, echo_port: int = 7, rng: random.Random | None = None) -> None:
        self.network = network
        self.address = str(ipaddress.IPv6Address(address))
        self.http_port = http_port
        self.echo_port = echo_port
        self.files: dict[str, bytes] = {}
        self.counters: Counter[str] = Counter()
        self._rng = rng or random.SystemRandom()
        self.stack: Stack | None = None
        self._servers: list = []

    def add_file(self, path: str, data: bytes) -> None:
        """Serve ``data`` at ``path`` (``/index.html`` also answers ``/``)."""
        self.files["/" + path.lstrip("/")] = data

    async def start(self) -> None:
        iface = Interface(rng=self._rng, addresses=[ipaddress.IPv6Address(self.address).packed])
        self.stack = Stack(iface, _NetworkLink(self.network))
        self.network.add_route(f"{self.address}/128", "webhost", self.stack.packet_received)
        self._servers.append(await self.stack.start_server(self._http, self.address, self.http_port))
        transport, _ = await self.stack.create_datagram_endpoint(_EchoProtocol, (self.address, self.echo_port))
        self._servers.append(transport)

    @property
    def url(self) -> str:
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://[{self.address}]{port}/"

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                if len(head) > MAX_REQUEST_HEAD:
                    return
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split()
                if len(parts) != 3:
                    await self._reply(writer, 400, b"bad request\n", head_only=False, close=True)
                    return
                method, target, version = parts
                headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
                close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
                path = target.split("?", 1)[0]
                if path == "/":
                    path = "/index.html"
                self.counters["requests"] += 1
                if method not in ("GET", "HEAD"):
                    await self._reply(writer, 405, b"method not allowed\n", method == "HEAD", close)
                elif path in self.files:
                    await self._reply(writer, 200, self.files[path], method == "HEAD", close)
                else:
                    await self._reply(writer, 404, b"not found\n", method == "HEAD", close)
                if close:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, status: int, body: bytes, head_only: bool,
                     close: bool) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[status]
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                f"Content-Type: application/octet-stream\r\nServer: teredo-proxy-demo\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n").encode()
        writer.write(head)
        if not head_only:
            view = memoryview(body)
            for i in range(0, len(body), 65536):
                writer.write(view[i:i + 65536])
                await writer.drain()
            self.counters["bytes_sent"] += len(body)
        await writer.drain()

    def close(self) -> None:
        for s in self._servers:
            s.close()
        self._servers.clear()
        if self.stack is not None:
            self.stack.close()
