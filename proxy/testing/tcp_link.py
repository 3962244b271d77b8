"""Two TcpConnections joined by a seeded, lossy, reordering link in virtual time.

A test tool (like smoltcp's loopback-with-fault-injector): it proves that
the machine moves bytes exactly under loss and reordering, and exercises
congestion control against a bottleneck with a finite queue.

The link, per direction: every segment is emitted to bytes and parsed
back (checksums included) unless ``wire=False``; it is dropped with
probability ``loss``; it leaves after the segments queued before it at
``rate`` bytes/s (``None`` = infinitely fast), tail-dropped when more than
``queue`` bytes wait; it arrives ``delay`` seconds later, plus a uniform
``jitter``, plus ``delay`` again with probability ``reorder`` (so it
overtakes nothing but is overtaken).  Time jumps straight to the next
arrival or timer deadline (trio's autojump): a multi-megabyte transfer with
seconds of virtual time runs in real seconds.

``b`` is created from the first SYN that reaches B, as a listener would.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from proxy.ipstack.tcp import TcpConfig, TcpConnection
from proxy.ipstack.tcp_events import ConnectionClosed, EndOfStream
from proxy.ipstack.wire.tcp import TcpSegment

__all__ = ["LinkConfig", "TcpLink", "ADDR_A", "ADDR_B"]

ADDR_A = bytes.fromhex("20010000" "4136e378" "800063bf" "3ffffdd2")
ADDR_B = bytes.fromhex("2001db80" "00000000" "00000000" "00000002")


@dataclass
class LinkConfig:
    """Impairments of one direction of the link."""

    loss: float = 0.0
    "Probability that a segment is dropped."
    delay: float = 0.01
    "One-way propagation delay (s)."
    jitter: float = 0.0
    "Extra uniform delay in [0, jitter) (s)."
    reorder: float = 0.0
    "Probability that a segment is delayed by one more ``delay``."
    rate: float | None = None
    "Bottleneck rate in bytes/s (None: no serialisation delay)."
    queue: int = 1 << 30
    "Bottleneck queue in bytes (tail drop beyond)."


@dataclass
class _Dir:
    cfg: LinkConfig
    free_at: float = 0.0
    sent: int = 0
    dropped: int = 0
    queue_drops: int = 0
    in_flight: list = field(default_factory=list)


class TcpLink:
    """A <-> B through two impaired directions; A actively opens."""

    def __init__(
        self, config_a: TcpConfig | None = None, config_b: TcpConfig | None = None, *,
        ab: LinkConfig | None = None, ba: LinkConfig | None = None, seed: int = 0,
        wire: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.wire = wire
        self.config_b = config_b or TcpConfig()
        self.ep_a = (ADDR_A, 40000)
        self.ep_b = (ADDR_B, 8080)
        self.a = TcpConnection.connect(
            config_a or TcpConfig(), local=self.ep_a, remote=self.ep_b, rng=self.rng, now=0.0)
        self.b: TcpConnection | None = None
        self.dirs = {"ab": _Dir(ab or LinkConfig()), "ba": _Dir(ba or LinkConfig())}
        self._heap: list[tuple[float, int, str, object]] = []
        self._n = 0
        self.segments = 0

    # -- moving segments ----------------------------------------------------

    def _send(self, name: str, segs: list[TcpSegment]) -> None:
        d = self.dirs[name]
        cfg = d.cfg
        src, dst = (ADDR_A, ADDR_B) if name == "ab" else (ADDR_B, ADDR_A)
        for seg in segs:
            self.segments += 1
            d.sent += 1
            size = 60 + len(seg.payload)
            if cfg.rate is not None:
                backlog = (d.free_at - self.now) * cfg.rate if d.free_at > self.now else 0.0
                if backlog + size > cfg.queue:
                    d.queue_drops += 1
                    continue
                d.free_at = max(d.free_at, self.now) + size / cfg.rate
                leave = d.free_at
            else:
                leave = self.now
            if cfg.loss and self.rng.random() < cfg.loss:
                d.dropped += 1
                continue
            t = leave + cfg.delay
            if cfg.jitter:
                t += self.rng.random() * cfg.jitter
            if cfg.reorder and self.rng.random() < cfg.reorder:
                t += cfg.delay
            item: object = seg.emit(src, dst) if self.wire else seg
            self._n += 1
            heapq.heappush(self._heap, (t, self._n, name, item))

    def _deliver(self, name: str, item: object) -> None:
        src, dst = (ADDR_A, ADDR_B) if name == "ab" else (ADDR_B, ADDR_A)
        seg = TcpSegment.parse(item, src, dst) if self.wire else item  # type: ignore[arg-type]
        assert isinstance(seg, TcpSegment)
        if name == "ab":
            if self.b is None:
                if seg.flags == 2:  # a bare SYN: the listener accepts it
                    self.b = TcpConnection.accept(
                        self.config_b, seg, local=self.ep_b, remote=self.ep_a, rng=self.rng,
                        now=self.now)
                return
            self.b.segment_received(seg, self.now)
        else:
            self.a.segment_received(seg, self.now)

    def flush(self) -> None:
        """Collect everything both ends want to send now."""
        self._send("ab", self.a.segments_to_send(self.now))
        if self.b is not None:
            self._send("ba", self.b.segments_to_send(self.now))

    def step(self, until: float) -> bool:
        """Advance to the next arrival or deadline (not past ``until``).

        False when nothing at all is pending (both ends idle).
        """
        self.flush()
        times = [t for t in (self.a.poll_at(), self.b.poll_at() if self.b else None) if t is not None]
        if self._heap:
            times.append(self._heap[0][0])
        if not times:
            return False
        t = min(times)
        if t > until:
            self.now = until
            return True
        self.now = max(self.now, t)
        while self._heap and self._heap[0][0] <= self.now:
            _, _, name, item = heapq.heappop(self._heap)
            self._deliver(name, item)
        self.a.handle_timer(self.now)
        if self.b is not None:
            self.b.handle_timer(self.now)
        return True

    # -- an application on each side -----------------------------------------

    def transfer(
        self, a_to_b: bytes, b_to_a: bytes = b"", *, timeout: float = 3600.0,
        close: bool = True,
    ) -> tuple[bytes, bytes]:
        """Send both streams, half-close each side when done, read until EOF.

        Returns ``(bytes B received, bytes A received)``.  Raises
        AssertionError if either side reports an abnormal close or the
        virtual ``timeout`` passes.
        """
        got_b = bytearray()
        got_a = bytearray()
        sent = {"a": 0, "b": 0}
        eof = {"a": False, "b": False}
        shut = {"a": False, "b": False}
        deadline = self.now + timeout
        while self.now < deadline:
            for name, conn, data, got in (("a", self.a, a_to_b, got_a), ("b", self.b, b_to_a, got_b)):
                if conn is None or conn.state.value in ("SYN-SENT", "SYN-RECEIVED"):
                    continue
                while sent[name] < len(data):
                    n = conn.send(memoryview(data)[sent[name] : sent[name] + 65536])
                    if not n:
                        break
                    sent[name] += n
                if close and sent[name] == len(data) and not shut[name]:
                    shut[name] = True
                    conn.shutdown(self.now)
                got += conn.receive()
                while (ev := conn.next_event()) is not None:
                    if isinstance(ev, EndOfStream):
                        eof[name] = True
                    elif isinstance(ev, ConnectionClosed) and ev.reason is not None:
                        raise AssertionError(f"{name} closed: {ev.reason}")
                got += conn.receive()
            if len(got_b) >= len(a_to_b) and len(got_a) >= len(b_to_a) and (
                not close or (eof["a"] and eof["b"])
            ):
                self.flush()
                return bytes(got_b), bytes(got_a)
            if not self.step(deadline):
                break
        raise AssertionError(
            f"transfer incomplete at t={self.now:.3f}: B got {len(got_b)}/{len(a_to_b)},"
            f" A got {len(got_a)}/{len(b_to_a)}, a={self.a!r}, b={self.b!r}")

    def run_until_closed(self, timeout: float = 600.0) -> None:
        """Run timers until both ends are CLOSED (TIME-WAIT included)."""
        deadline = self.now + timeout
        while self.now < deadline:
            if self.a.closed and (self.b is None or self.b.closed):
                return
            if not self.step(deadline):
                break
        raise AssertionError(f"not closed at t={self.now:.3f}: a={self.a!r} b={self.b!r}")
