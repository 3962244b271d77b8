#!/usr/bin/env python3
"""A raw TCP connection over IPv6 through teredo-proxy's SOCKS5 endpoint, with python-socks.

python-socks hands back a plain socket connected through the proxy, for
protocols that are not HTTP.  This one sends an HTTP/1.0 request by hand
and prints the status line; when the proxy refuses the request it prints
the SOCKS5 reply code (REP, RFC 1928 §6) and what it means for Teredo::

    teredo-proxy demo &
    python3 examples/socks_python_socks.py                       # 2001:db8:1::100 port 80
    python3 examples/socks_python_socks.py 2001:db8:1::100 81    # nobody listens: REP 0x05
    python3 examples/socks_python_socks.py --async ipv6.example.net 80

The SOCKS5 address is ``--socks``, else ``$TEREDO_SOCKS``, else
``127.0.0.1:1080``.  Exit status: 0 on an answer, 1 when the proxy refused
(the REP code is printed) or could not be reached.

Needs ``pip install python-socks``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
from python_socks.async_.asyncio import Proxy as AsyncProxy
from python_socks.sync import Proxy

DEFAULT_SOCKS = "127.0.0.1:1080"

#: What each SOCKS5 reply code means when the endpoint is a Teredo client
#: (the full table, with the ICMPv6 messages behind them, is docs/socks5.md).
REP_MEANING = {
    0x01: "general failure",
    0x02: "not allowed by ruleset (IPv4 target under --ipv4 refuse, or ICMPv6 administratively prohibited)",
    0x03: "network unreachable (ICMPv6 no route)",
    0x04: "host unreachable (no answer, no relay found, or a name without addresses)",
    0x05: "connection refused (TCP reset or ICMPv6 port unreachable)",
    0x06: "TTL expired (ICMPv6 time exceeded)",
    0x07: "command not supported",
    0x08: "address type not supported",
}


def request(host: str, path: str) -> bytes:
    name = f"[{host}]" if ":" in host else host
    return f"GET {path} HTTP/1.0\r\nHost: {name}\r\nUser-Agent: teredo-proxy-example\r\n\r\n".encode()


def fetch_sync(socks: str, host: str, port: int, path: str, timeout: float) -> bytes:
    # rdns=True: a host name travels to the proxy, which resolves it (AAAA first).
    proxy = Proxy.from_url(f"socks5://{socks}", rdns=True)
    sock = proxy.connect(dest_host=host, dest_port=port, timeout=timeout)
    with sock:
        sock.settimeout(timeout)
        sock.sendall(request(host, path))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def fetch_async(socks: str, host: str, port: int, path: str, timeout: float) -> bytes:
    proxy = AsyncProxy.from_url(f"socks5://{socks}", rdns=True)
    sock = await proxy.connect(dest_host=host, dest_port=port, timeout=timeout)
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(request(host, path))
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="python-socks through teredo-proxy's SOCKS5 endpoint")
    p.add_argument("host", nargs="?", default="2001:db8:1::100", help="IPv6 address or host name")
    p.add_argument("port", nargs="?", type=int, default=80)
    p.add_argument("--path", default="/")
    p.add_argument("--socks", default=os.environ.get("TEREDO_SOCKS", DEFAULT_SOCKS),
                   help="SOCKS5 HOST:PORT (default $TEREDO_SOCKS or 127.0.0.1:1080)")
    p.add_argument("--async", dest="use_async", action="store_true", help="use python-socks' asyncio API")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    try:
        if args.use_async:
            data = asyncio.run(fetch_async(args.socks, args.host, args.port, args.path, args.timeout))
        else:
            data = fetch_sync(args.socks, args.host, args.port, args.path, args.timeout)
    except ProxyError as e:
        code = e.error_code or 0
        print(f"SOCKS5 REP 0x{code:02x}: {REP_MEANING.get(code, 'unknown code')} ({e})", file=sys.stderr)
        return 1
    except ProxyTimeoutError:
        print(f"no SOCKS5 reply within {args.timeout:g} s (relay discovery alone may take 8 s)", file=sys.stderr)
        return 1
    except (ProxyConnectionError, OSError) as e:
        print(f"cannot use the SOCKS5 endpoint {args.socks}: {e}", file=sys.stderr)
        return 1
    status = data.split(b"\r\n", 1)[0].decode("latin-1")
    print(f"{status} ({len(data)} bytes from [{args.host}]:{args.port})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
