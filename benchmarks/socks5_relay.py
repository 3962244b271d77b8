"""SOCKS5 server figures on loopback, one JSON object per line.

* ``socks5_upload`` / ``socks5_download``: bulk bytes through one CONNECT
  (client -> proxy -> sink, source -> proxy -> client), Mbit/s.
* ``socks5_direct_upload``: the same transfer without the proxy, for scale.
* ``socks5_handshakes``: sequential connect + greeting + CONNECT + close, per second.

Everything runs in one process and one event loop (the client, the proxy and
the target share the CPU), so compare runs with each other, not with a
kernel proxy.  Usage: ``python3 benchmarks/socks5_relay.py [--mb 64] [--uvloop]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.config.socks import SocksConfig  # noqa: E402
from proxy.socks5_address import Address  # noqa: E402
from proxy.socks5_asyncio import Socks5Server  # noqa: E402
from proxy.socks5_os_asyncio import OsConnector  # noqa: E402

CHUNK = 65536


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(CHUNK):
        pass
    writer.write(b"done")
    await writer.drain()
    writer.close()


def _source(total: int):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        block = b"\0" * CHUNK
        sent = 0
        while sent < total:
            writer.write(block)
            sent += len(block)
            await writer.drain()
        writer.close()
    return handler


async def _socks_open(proxy: tuple[str, int], target: tuple[str, int]):
    reader, writer = await asyncio.open_connection(*proxy)
    writer.write(b"\x05\x01\x00" + b"\x05\x01\x00" + Address.from_host(*target).emit())
    head = await reader.readexactly(2 + 10)
    assert head[:2] == b"\x05\x00" and head[3] == 0, head
    return reader, writer


async def _upload(reader, writer, total: int) -> float:
    block = b"\0" * CHUNK
    start = time.perf_counter()
    sent = 0
    while sent < total:
        writer.write(block)
        sent += len(block)
        await writer.drain()
    writer.write_eof()
    assert await reader.read() == b"done"
    return time.perf_counter() - start


async def _download(reader, total: int) -> float:
    start = time.perf_counter()
    got = 0
    while data := await reader.read(CHUNK):
        got += len(data)
    assert got >= total
    return time.perf_counter() - start


def _line(name: str, **fields: object) -> None:
    print(json.dumps({"benchmark": name, **fields}), flush=True)


async def main(mb: int, handshakes: int) -> None:
    total = mb * 1024 * 1024
    sink = await asyncio.start_server(_sink, "127.0.0.1", 0)
    source = await asyncio.start_server(_source(total), "127.0.0.1", 0)
    sink_addr = sink.sockets[0].getsockname()[:2]
    source_addr = source.sockets[0].getsockname()[:2]
    server = Socks5Server(SocksConfig(port=0), OsConnector())
    await server.start()
    loop = "uvloop" if "uvloop" in type(asyncio.get_running_loop()).__module__ else "asyncio"

    reader, writer = await asyncio.open_connection(*sink_addr)
    t = await _upload(reader, writer, total)
    writer.close()
    _line("socks5_direct_upload", bytes=total, seconds=round(t, 4), mbit_per_s=round(total * 8 / t / 1e6, 1), loop=loop)

    reader, writer = await _socks_open(server.address, sink_addr)
    t = await _upload(reader, writer, total)
    writer.close()
    _line("socks5_upload", bytes=total, seconds=round(t, 4), mbit_per_s=round(total * 8 / t / 1e6, 1), loop=loop)

    reader, writer = await _socks_open(server.address, source_addr)
    t = await _download(reader, total)
    writer.close()
    _line("socks5_download", bytes=total, seconds=round(t, 4), mbit_per_s=round(total * 8 / t / 1e6, 1), loop=loop)

    start = time.perf_counter()
    for _ in range(handshakes):
        reader, writer = await _socks_open(server.address, sink_addr)
        writer.close()
        await writer.wait_closed()
    t = time.perf_counter() - start
    _line("socks5_handshakes", count=handshakes, seconds=round(t, 4), per_s=round(handshakes / t, 1), loop=loop)

    server.close()
    await server.wait_closed()
    sink.close()
    source.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64, help="megabytes per transfer")
    ap.add_argument("--handshakes", type=int, default=500)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.mb, args.handshakes))
    else:
        asyncio.run(main(args.mb, args.handshakes))
