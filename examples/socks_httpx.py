#!/usr/bin/env python3
"""Fetch a URL over IPv6 through teredo-proxy's SOCKS5 endpoint with httpx.

The same request is made twice: with the synchronous ``httpx.Client`` and
with the asynchronous ``httpx.AsyncClient``.  Start a client first::

    teredo-proxy demo                                  # offline, on loopback
    teredo-proxy client --server teredo.example.net    # the real thing

then::

    python3 examples/socks_httpx.py [URL] [--socks HOST:PORT]

The SOCKS5 address is ``--socks``, else ``$TEREDO_SOCKS``, else
``127.0.0.1:1080`` (the default of ``teredo-proxy client`` and ``demo``).
The URL defaults to the demo's native IPv6 web host.  Exit status 0 when
both requests got a 2xx answer, 1 otherwise.

Needs ``pip install 'httpx[socks]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import httpx

DEFAULT_URL = "http://[2001:db8:1::100]/"
DEFAULT_SOCKS = "127.0.0.1:1080"


def proxy_url(socks: str) -> str:
    """``socks5h://``: host names are resolved by the proxy, not here.

    The proxy looks up AAAA records and sends IPv6 over Teredo, so a name
    works even on a host with no IPv6 DNS path of its own.
    """
    return f"socks5h://{socks}"


def fetch_sync(url: str, proxy: str, timeout: float) -> httpx.Response:
    with httpx.Client(proxy=proxy, timeout=timeout) as client:
        return client.get(url)


async def fetch_async(url: str, proxy: str, timeout: float) -> httpx.Response:
    async with httpx.AsyncClient(proxy=proxy, timeout=timeout) as client:
        return await client.get(url)


def report(kind: str, response: httpx.Response) -> bool:
    print(f"{kind}: {response.status_code} {response.reason_phrase}, {len(response.content)} bytes "
          f"from {response.url}")
    return response.is_success


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="httpx through teredo-proxy's SOCKS5 endpoint")
    p.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"default {DEFAULT_URL}")
    p.add_argument("--socks", default=os.environ.get("TEREDO_SOCKS", DEFAULT_SOCKS),
                   help="SOCKS5 HOST:PORT (default $TEREDO_SOCKS or 127.0.0.1:1080)")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    proxy = proxy_url(args.socks)
    try:
        ok = report("sync ", fetch_sync(args.url, proxy, args.timeout))
        ok = report("async", asyncio.run(fetch_async(args.url, proxy, args.timeout))) and ok
    except httpx.HTTPError as e:
        # A refused SOCKS request surfaces as httpx.ProxyError naming the
        # reply ("Connection refused", "Host unreachable", ...).
        print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
