"""The embedded Teredo network on a thread of its own: for synchronous code.

:class:`~proxy.testing.network.TeredoNetwork` lives on an asyncio loop.  A
test written with ``requests``, ``httpx.Client`` or ``unittest`` has no loop
to lend it, and an async test's loop should not have to host the network
either.  :class:`RunningNetwork` runs the network on a private loop in a
daemon thread and exposes what a test needs, thread-safely::

    with RunningNetwork(nat="restricted") as net:
        httpx.get(net.web_url, proxy=net.socks_url)

Everything crosses to the network's loop with ``run_coroutine_threadsafe``,
and talks to it only over sockets, so any framework can use it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from proxy.testing.network import NetworkOptions, TeredoNetwork

__all__ = ["RunningNetwork"]

T = TypeVar("T")


class RunningNetwork:
    """A :class:`TeredoNetwork` running in a background thread (sync API)."""

    def __init__(self, options: NetworkOptions | None = None, *, start_timeout: float = 30.0, **kw) -> None:
        self.options = options or NetworkOptions(**kw)
        self.start_timeout = start_timeout
        self.network: TeredoNetwork | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "RunningNetwork":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name="teredo-network", daemon=True)
        self._thread.start()
        ready.wait()
        self.network = TeredoNetwork(self.options)
        try:
            self._call(self.network.start(), self.start_timeout)
        except BaseException:
            self.close()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        if self._loop is None:
            return
        if self.network is not None:
            try:
                self._call(self.network.close(), 30.0)
            except Exception:  # pragma: no cover - teardown is best effort
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10.0)
        self._loop.close()
        self._loop = None

    # -- what tests use ---------------------------------------------------------
    @property
    def socks_address(self) -> tuple[str, int]:
        assert self.network is not None
        return self.network.socks_address

    @property
    def socks_url(self) -> str:
        """``socks5h://127.0.0.1:PORT``: names resolve at the proxy."""
        assert self.network is not None
        return self.network.socks_url

    @property
    def web_url(self) -> str:
        """``http://[2001:db8:1::100]/`` (port added when not 80)."""
        assert self.network is not None
        return self.network.web.url

    @property
    def client_address(self) -> str | None:
        assert self.network is not None
        return self.network.client_address

    def add_file(self, path: str, data: bytes) -> str:
        """Serve ``data`` from the web host; returns its URL."""
        assert self.network is not None and self._loop is not None
        web = self.network.web

        async def add() -> None:
            web.add_file(path, data)

        self._call(add(), 10.0)
        return web.url.rstrip("/") + "/" + path.lstrip("/")

    def fetch(self, path: str = "/index.html", timeout: float = 60.0) -> tuple[int, bytes]:
        """GET a file of the web host through the SOCKS5 endpoint."""
        assert self.network is not None
        return self._call(self.network.fetch(path, timeout), timeout + 5)

    def snapshot(self) -> dict[str, dict[str, object]]:
        assert self.network is not None

        async def snap() -> dict[str, dict[str, object]]:
            return self.network.snapshot()  # type: ignore[union-attr]

        return self._call(snap(), 10.0)
