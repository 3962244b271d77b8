"""A minimal SOCKS5 CONNECT client and HTTP GET, for checks that must not
depend on curl or third-party packages (``teredo-proxy demo --check``, the
fixtures' ``fetch``).  Real applications use curl, httpx, python-socks...
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct

__all__ = ["socks5_connect", "http_get", "SocksReplyError"]


class SocksReplyError(ConnectionError):
    """The proxy answered a request with a non-zero REP code."""

    def __init__(self, rep: int) -> None:
        super().__init__(f"SOCKS5 reply {rep:#04x}")
        self.rep = rep


async def socks5_connect(proxy: tuple[str, int], host: str, port: int, *, timeout: float = 30.0
                         ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """CONNECT through a SOCKS5 proxy (no authentication); the stream to ``host``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*proxy), timeout)
    try:
        writer.write(b"\x05\x01\x00")
        if await asyncio.wait_for(reader.readexactly(2), timeout) != b"\x05\x00":
            raise ConnectionError("SOCKS5 proxy refused the no-authentication method")
        try:
            ip = ipaddress.ip_address(host)
            atyp = b"\x01" if ip.version == 4 else b"\x04"
            addr = atyp + ip.packed
        except ValueError:
            name = host.encode("idna")
            addr = b"\x03" + bytes((len(name),)) + name
        writer.write(b"\x05\x01\x00" + addr + struct.pack("!H", port))
        head = await asyncio.wait_for(reader.readexactly(4), timeout)
        if head[1] != 0:
            raise SocksReplyError(head[1])
        skip = {1: 4, 4: 16}.get(head[3])
        if skip is None:
            skip = (await reader.readexactly(1))[0]
        await reader.readexactly(skip + 2)
        return reader, writer
    except BaseException:
        writer.close()
        raise


async def http_get(proxy: tuple[str, int], url: str, *, timeout: float = 60.0) -> tuple[int, bytes]:
    """``GET url`` through the proxy (HTTP/1.0, whole body); ``(status, body)``."""
    if not url.startswith("http://"):
        raise ValueError("only http:// URLs")
    rest = url[len("http://"):]
    hostport, _, path = rest.partition("/")
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port = int(tail[1:]) if tail.startswith(":") else 80
    else:
        host, _, p = hostport.partition(":")
        port = int(p) if p else 80
    reader, writer = await socks5_connect(proxy, host, port, timeout=timeout)
    try:
        writer.write(f"GET /{path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body
