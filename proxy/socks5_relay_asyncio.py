"""Byte relay between a SOCKS5 client and its target: both ways, bounded, half-close kept.

Theory of operation
-------------------

Two pump tasks copy ``client -> target`` and ``target -> client``.  Each
reads at most ``chunk`` bytes, writes them and awaits ``drain()`` before the
next read, so a slow receiver stops the reads on the other side (the
stream's high-water mark is the only buffer that grows: backpressure instead
of memory).  End of file in one direction is passed on with ``write_eof()``
(TCP FIN) and that pump ends; the other keeps running until its own EOF, so a
client that shuts down its sending side still gets the whole response
(half-close, which asyncio-socks-server loses).

A reset or write error on either side ends both pumps, and the other side
is aborted (RST where the stream allows it), so the client learns that the
connection broke rather than seeing a clean end.

One :class:`IdleTimer` (a single re-armed ``loop.call_at``, no per-chunk
timer objects) ends the relay when neither direction moved a byte for
``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
from collections.abc import Callable

from proxy.socks5_connector import ByteReader, ByteWriter

__all__ = ["IdleTimer", "RelayEnd", "relay_tcp", "abort_writer", "close_writer"]

log = logging.getLogger("proxy.socks5_relay")

_LINGER_RST = struct.pack("ii", 1, 0)


class RelayEnd(enum.Enum):
    """How a relay finished."""

    CLOSED = "closed"   # both directions reached EOF
    IDLE = "idle"       # idle timeout
    RESET = "reset"     # a side was reset or failed


class IdleTimer:
    """Calls ``on_idle`` once nothing called :meth:`touch` for ``timeout`` seconds."""

    def __init__(self, timeout: float, on_idle: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._on_idle = on_idle
        self.last = self._loop.time()
        self.fired = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(self.last + timeout, self._check)

    def touch(self) -> None:
        """Record activity (cheap: no timer is re-armed here)."""
        self.last = self._loop.time()

    def _check(self) -> None:
        deadline = self.last + self._timeout
        if self._loop.time() >= deadline:
            self._handle = None
            self.fired = True
            self._on_idle()
        else:
            self._handle = self._loop.call_at(deadline, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def abort_writer(writer: ByteWriter) -> None:
    """Close ``writer`` with a TCP RST when possible (``abort()``, or SO_LINGER 0)."""
    abort = getattr(writer, "abort", None)
    if callable(abort):
        abort()
        return
    transport = getattr(writer, "transport", None)
    if transport is None:
        writer.close()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


async def close_writer(writer: ByteWriter) -> None:
    """Close and wait, ignoring the errors a dying connection produces."""
    with contextlib.suppress(Exception):
        writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


def _write_eof(writer: ByteWriter) -> None:
    try:
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()
        else:
            writer.close()
    except OSError:
        writer.close()


async def _pump(src: ByteReader, dst: ByteWriter, chunk: int, timer: IdleTimer) -> None:
    while True:
        data = await src.read(chunk)
        if not data:
            break
        timer.touch()
        dst.write(data)
        await dst.drain()
    _write_eof(dst)


async def relay_tcp(
    client: tuple[ByteReader, ByteWriter],
    target: tuple[ByteReader, ByteWriter],
    *,
    chunk: int,
    idle_timeout: float,
) -> RelayEnd:
    """Copy both ways until both EOFs, a reset, or the idle timeout.

    The caller closes both writers afterwards (this function only aborts
    them on RESET).  Cancelling it cancels both pumps.
    """
    pumps: list[asyncio.Task[None]] = []

    def on_idle() -> None:
        for task in pumps:
            task.cancel()

    timer = IdleTimer(idle_timeout, on_idle)
    pumps.append(asyncio.create_task(_pump(client[0], target[1], chunk, timer)))
    pumps.append(asyncio.create_task(_pump(target[0], client[1], chunk, timer)))
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        timer.cancel()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    if timer.fired:
        return RelayEnd.IDLE
    failed = [t for t in pumps if not t.cancelled() and t.exception() is not None]
    if failed:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("relay: %r; resetting both sides", failed[0].exception())
        abort_writer(client[1])
        abort_writer(target[1])
        return RelayEnd.RESET
    return RelayEnd.CLOSED
