"""Bounded byte buffers of a TCP connection: send queue and reassembly.

:class:`SendBuffer` holds every byte from SND.UNA to the last byte the
application queued, in one ``bytearray``: the retransmission queue *is* the
send buffer (a segment is just a ``(seq, length)`` view of it), so nothing
per segment is allocated until a segment is emitted.  Acknowledged bytes are
dropped from the front with ``del buf[:n]``, which CPython implements by
moving the start offset (amortised O(1)), not by copying the tail.

:class:`Reassembler` holds out-of-order segments for the receiver (RFC 9293
§3.10.7.4 "seventh"): disjoint ``bytes`` keyed by start, trimmed against
their neighbours on insertion, bounded by a segment count (the bytes are
already bounded by the advertised window because the connection only
stores what falls inside it).  It also answers the receiver side of SACK
(RFC 2018 §4): which blocks to report, the most recently changed first.

Sequence numbers here are the connection's unbounded integers (see
``seq_unwrap`` in wire/tcp.py), never 32-bit wire values.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["SendBuffer", "Reassembler"]


class SendBuffer:
    """Unacknowledged plus unsent bytes, bounded by ``limit``."""

    __slots__ = ("_buf", "seq", "limit")

    def __init__(self, seq: int, limit: int) -> None:
        self._buf = bytearray()
        self.seq = seq
        "Sequence number of the first byte held (SND.UNA once data flows)."
        self.limit = limit
        "Capacity in bytes."

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def end(self) -> int:
        """Sequence number just past the last queued byte."""
        return self.seq + len(self._buf)

    @property
    def space(self) -> int:
        """Bytes ``write`` would accept now."""
        return self.limit - len(self._buf)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as fits; return the count accepted."""
        room = self.limit - len(self._buf)
        if room <= 0:
            return 0
        if len(data) > room:
            data = memoryview(data)[:room]
        self._buf += data
        return len(data)

    def peek(self, seq: int, n: int) -> bytes:
        """Copy of the ``n`` bytes starting at ``seq`` (fewer at the end)."""
        off = seq - self.seq
        return bytes(self._buf[off : off + n])

    def ack_to(self, seq: int) -> None:
        """Forget everything before ``seq`` (it was cumulatively acknowledged)."""
        n = seq - self.seq
        if n > 0:
            del self._buf[:n]
            self.seq = seq


class Reassembler:
    """Out-of-order segments above RCV.NXT, disjoint, bounded in count."""

    __slots__ = ("_starts", "_data", "max_segments", "bytes", "_recent")

    def __init__(self, max_segments: int) -> None:
        self._starts: list[int] = []
        self._data: dict[int, bytes] = {}
        self.max_segments = max_segments
        "Bound on stored segments (bytes are bounded by the window)."
        self.bytes = 0
        "Bytes stored."
        self._recent: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def clear(self) -> None:
        """Drop everything (connection closed)."""
        self._starts.clear()
        self._data.clear()
        self._recent.clear()
        self.bytes = 0

    def add(self, seq: int, data: bytes) -> bool:
        """Store ``data`` at ``seq`` (> RCV.NXT); False when it had to be dropped.

        Overlaps with stored segments are trimmed off the new segment, and
        stored segments it covers entirely are replaced, so the store stays
        disjoint whatever a peer sends.  When the store is full, a segment
        below the highest one evicts it; one above everything is dropped.
        """
        starts, store = self._starts, self._data
        end = seq + len(data)
        i = bisect_right(starts, seq)
        if i:
            ps = starts[i - 1]
            pe = ps + len(store[ps])
            if pe >= end:
                self._note(seq)
                return True
            if pe > seq:
                data = data[pe - seq :]
                seq = pe
        while i < len(starts) and starts[i] < end:
            ns = starts[i]
            nd = store[ns]
            if ns + len(nd) <= end:
                del starts[i]
                del store[ns]
                self.bytes -= len(nd)
            else:
                data = data[: ns - seq]
                end = ns
                break
        if not data:
            self._note(seq)
            return True
        if len(starts) >= self.max_segments:
            if i >= len(starts):
                return False
            # Full: keep the lower data, which unblocks delivery sooner (as
            # Linux prunes the out-of-order queue from its tail).
            last = starts.pop()
            self.bytes -= len(store.pop(last))
        starts.insert(i, seq)
        store[seq] = data
        self.bytes += len(data)
        self._note(seq)
        return True

    def _note(self, seq: int) -> None:
        """Remember ``seq`` as recently received, for SACK block order."""
        recent = self._recent
        if seq in recent:
            recent.remove(seq)
        recent.insert(0, seq)
        del recent[4:]

    def pull(self, rcv_nxt: int) -> tuple[int, list[bytes]]:
        """Segments now in order at ``rcv_nxt``: the new RCV.NXT and the bytes."""
        starts, store = self._starts, self._data
        out: list[bytes] = []
        while starts and starts[0] <= rcv_nxt:
            s = starts.pop(0)
            d = store.pop(s)
            self.bytes -= len(d)
            e = s + len(d)
            if e > rcv_nxt:
                out.append(d[rcv_nxt - s :] if s < rcv_nxt else d)
                rcv_nxt = e
        return rcv_nxt, out

    def ranges(self) -> list[tuple[int, int]]:
        """Stored data as merged ``(start, end)`` ranges, ascending."""
        out: list[tuple[int, int]] = []
        store = self._data
        for s in self._starts:
            e = s + len(store[s])
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
        return out

    def sack_blocks(self, n: int) -> list[tuple[int, int]]:
        """Up to ``n`` SACK blocks, the most recently received first (RFC 2018 §4)."""
        if n <= 0 or not self._starts:
            return []
        ranges = self.ranges()
        out: list[tuple[int, int]] = []
        for seq in self._recent:
            for r in ranges:
                if r[0] <= seq < r[1]:
                    if r not in out:
                        out.append(r)
                    break
        for r in reversed(ranges):
            if len(out) >= n:
                break
            if r not in out:
                out.append(r)
        return out[:n]
