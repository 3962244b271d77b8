"""The relay loop with scripted streams: backpressure, half-close, reset, idle."""

from __future__ import annotations

import asyncio

from proxy.socks5_relay_asyncio import IdleTimer, RelayEnd, relay_tcp

T = 10.0


class Source:
    """A reader serving scripted chunks, then blocking (or EOF / an error)."""

    def __init__(self, chunks: list[bytes | BaseException] | None = None, *, endless: bytes | None = None) -> None:
        self.chunks = list(chunks or [])
        self.endless = endless
        self.reads = 0
        self.more = asyncio.Event()

    async def read(self, n: int = -1) -> bytes:
        self.reads += 1
        if self.endless is not None:
            await asyncio.sleep(0)  # a socket's data arrives through the loop
            return self.endless[:n]
        while not self.chunks:
            self.more.clear()
            await self.more.wait()
        item = self.chunks.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def push(self, item: bytes | BaseException) -> None:
        self.chunks.append(item)
        self.more.set()


class Sink:
    """A writer whose drain() blocks until released (a peer not reading)."""

    def __init__(self, *, blocked: bool = False) -> None:
        self.data = bytearray()
        self.eof = False
        self.closed = False
        self.aborted = False
        self.flowing = asyncio.Event()
        if not blocked:
            self.flowing.set()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        await self.flowing.wait()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    async def wait_closed(self) -> None:
        pass


async def until(cond, timeout: float = T) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0)


async def test_backpressure_stops_reading_until_the_peer_drains():
    client_in, target_out = Source(endless=b"x" * 100), Sink(blocked=True)
    task = asyncio.create_task(relay_tcp((client_in, Sink()), (Source(), target_out), chunk=64, idle_timeout=T))
    await until(lambda: len(target_out.data) == 64)
    for _ in range(50):  # give the pump every chance to read more
        await asyncio.sleep(0)
    assert client_in.reads == 1 and len(target_out.data) == 64
    target_out.flowing.set()
    await until(lambda: client_in.reads > 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_eof_one_way_keeps_the_other_way_open():
    client_in, client_out = Source([b"request", b""]), Sink()
    target_in, target_out = Source(), Sink()
    task = asyncio.create_task(relay_tcp((client_in, client_out), (target_in, target_out), chunk=64, idle_timeout=T))
    await until(lambda: target_out.eof)
    assert bytes(target_out.data) == b"request" and not target_out.closed
    target_in.push(b"response after the client's FIN")
    await until(lambda: bytes(client_out.data) == b"response after the client's FIN")
    assert not task.done()
    target_in.push(b"")
    assert await asyncio.wait_for(task, T) == RelayEnd.CLOSED
    assert client_out.eof and not client_out.aborted


async def test_reset_aborts_both_sides():
    client_in, client_out = Source(), Sink()
    target_in, target_out = Source([ConnectionResetError()]), Sink()
    end = await asyncio.wait_for(
        relay_tcp((client_in, client_out), (target_in, target_out), chunk=64, idle_timeout=T), T)
    assert end == RelayEnd.RESET
    assert client_out.aborted and target_out.aborted


async def test_idle_ends_the_relay():
    end = await asyncio.wait_for(relay_tcp((Source(), Sink()), (Source(), Sink()), chunk=64, idle_timeout=0.05), T)
    assert end == RelayEnd.IDLE


async def test_idle_timer_rearms_on_activity():
    """Deterministic: drive the timer's check directly instead of waiting."""
    fired: list[bool] = []
    timer = IdleTimer(60.0, lambda: fired.append(True))
    timer.cancel()  # drive it by hand from here
    timer.touch()
    timer._check()  # early (the loop may run a timer up to a clock tick early)
    assert not fired and timer._handle is not None
    assert timer._handle.when() == timer.last + 60.0
    timer.last -= 61.0  # as if nothing happened for 61 s
    timer._check()
    assert fired == [True] and timer.fired and timer._handle is None
    timer.cancel()
