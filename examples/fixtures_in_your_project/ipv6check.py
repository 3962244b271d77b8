"""The "application" under test: it fetches URLs, optionally through a proxy.

Nothing here knows about Teredo.  The tests hand it the SOCKS5 URL of an
embedded Teredo network, which is how a real deployment would hand it
``socks5h://127.0.0.1:1080`` of ``teredo-proxy client``.
"""

from __future__ import annotations

import httpx


def fetch(url: str, proxy: str | None = None, timeout: float = 30.0) -> bytes:
    """GET ``url``; raise for anything but a 2xx answer."""
    response = httpx.get(url, proxy=proxy, timeout=timeout)
    response.raise_for_status()
    return response.content


async def fetch_async(url: str, proxy: str | None = None, timeout: float = 30.0) -> bytes:
    """The same with httpx's async client."""
    async with httpx.AsyncClient(proxy=proxy, timeout=timeout) as client:
        response = await client.get(url)
    response.raise_for_status()
    return response.content
