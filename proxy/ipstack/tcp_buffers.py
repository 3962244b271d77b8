"""Bounded byte buffers of a TCP connection: send queue and reassembly.

:class:`SendBuffer` holds every byte from SND.UNA to the last byte the
application queued, in one ``bytearray``: the retransmission queue *is* the
send buffer (a segment is just a ``(seq, length)`` view of it), so nothing
per segment is allocated until a segment is emitted.  Acknowledged bytes are
dropped from the front with ``del buf[:n]``, which CPython implements by
moving the start offset (amortised O(1)), not by copying the tail.

:class:`Reassembler` holds out-of-order data for the receiver (RFC 9293
§3.10.7.4 "seventh"): disjoint runs of chunks, trimmed on insertion,
bounded by a chunk count (the bytes are already bounded by the advertised
window because the connection only stores what falls inside it).  It also answers the receiver side of SACK
(RFC 2018 §4): which blocks to report, the most recently changed first.

Sequence numbers here are the connection's unbounded integers (see
``seq_unwrap`` in wire/tcp.py), never 32-bit wire values.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["SendBuffer", "Reassembler"]


class SendBuffer:
    """Unacknowledged plus unsent bytes, bounded by ``limit``."""

    __slots__ = ("_buf", "seq", "end", "limit")

    def __init__(self, seq: int, limit: int) -> None:
        self._buf = bytearray()
        self.seq = seq
        "Sequence number of the first byte held (SND.UNA once data flows)."
        self.end = seq
        "Sequence number just past the last queued byte."
        self.limit = limit
        "Capacity in bytes."

    def __len__(self) -> int:
        return len(self._buf)

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
        self.end += len(data)
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
    """Out-of-order data above RCV.NXT: disjoint runs, bounded in segment count.

    Data is kept as *runs*: maximal contiguous ranges, each a list of the
    ``bytes`` chunks that arrived.  After a loss every following segment
    lands at the end of the same run, which is an O(1) append; SACK blocks
    are runs, so reporting them costs O(number of holes), not O(segments).
    """

    __slots__ = ("_starts", "_ends", "_chunks", "max_segments", "bytes", "count", "_recent")

    def __init__(self, max_segments: int) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._chunks: list[list[bytes]] = []
        self.max_segments = max_segments
        "Bound on stored chunks (bytes are bounded by the window)."
        self.bytes = 0
        "Bytes stored."
        self.count = 0
        "Chunks stored."
        self._recent: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return self.count

    def clear(self) -> None:
        """Drop everything (connection closed)."""
        self._starts.clear()
        self._ends.clear()
        self._chunks.clear()
        self._recent.clear()
        self.bytes = self.count = 0

    def add(self, seq: int, data: bytes) -> bool:
        """Store ``data`` at ``seq`` (> RCV.NXT); False when it had to be dropped.

        Only the parts not already held are stored, so the runs stay
        disjoint whatever a peer sends.  When the store is full, a segment
        below the highest data evicts the highest chunk (as Linux prunes its
        out-of-order queue from the tail); one above everything is dropped.
        """
        starts, ends, chunks = self._starts, self._ends, self._chunks
        end = seq + len(data)
        # Runs touching [seq, end]: j = first with end >= seq, k = first with start > end.
        j = bisect_left(ends, seq)
        k = bisect_right(starts, end)
        if j < k and starts[j] <= seq and ends[j] >= end:
            self._note(seq)
            return True  # entirely held already
        if self.count >= self.max_segments:
            if not starts or seq >= ends[-1]:
                return False
            self._evict()
            return self.add(seq, data)
        if j == k - 1 and ends[j] == seq:
            # The common case: the next segment after a run.
            chunks[j].append(data)
            ends[j] = end
        elif j == k:
            starts.insert(j, seq)
            ends.insert(j, end)
            chunks.insert(j, [data])
        else:
            # Merge runs j..k-1 with the new data filling the gaps.
            new_start = min(seq, starts[j])
            pos = new_start
            merged: list[bytes] = []
            added = 0
            for r in range(j, k):
                if pos < starts[r]:
                    merged.append(data[pos - seq : starts[r] - seq])
                    added += starts[r] - pos
                merged.extend(chunks[r])
                pos = ends[r]
            if pos < end:
                merged.append(data[pos - seq :])
                added += end - pos
            new_end = max(end, pos)
            starts[j:k] = [new_start]
            ends[j:k] = [new_end]
            chunks[j:k] = [merged]
            self.bytes += added
            self.count = sum(len(c) for c in chunks)
            self._note(seq)
            return True
        self.bytes += len(data)
        self.count += 1
        self._note(seq)
        return True

    def _evict(self) -> None:
        last = self._chunks[-1]
        d = last.pop()
        self.bytes -= len(d)
        self.count -= 1
        self._ends[-1] -= len(d)
        if not last:
            del self._starts[-1], self._ends[-1], self._chunks[-1]

    def _note(self, seq: int) -> None:
        """Remember ``seq`` as recently received, for SACK block order."""
        recent = self._recent
        if seq in recent:
            recent.remove(seq)
        recent.insert(0, seq)
        del recent[4:]

    def pull(self, rcv_nxt: int) -> tuple[int, list[bytes]]:
        """Data now in order at ``rcv_nxt``: the new RCV.NXT and the bytes."""
        starts = self._starts
        out: list[bytes] = []
        while starts and starts[0] <= rcv_nxt:
            s = starts.pop(0)
            e = self._ends.pop(0)
            run = self._chunks.pop(0)
            self.count -= len(run)
            self.bytes -= e - s
            if e <= rcv_nxt:
                continue
            skip = rcv_nxt - s
            for c in run:
                if skip >= len(c):
                    skip -= len(c)
                    continue
                out.append(c[skip:] if skip else c)
                skip = 0
            rcv_nxt = e
        return rcv_nxt, out

    def ranges(self) -> list[tuple[int, int]]:
        """Stored data as merged ``(start, end)`` ranges, ascending."""
        return list(zip(self._starts, self._ends))

    def sack_blocks(self, n: int) -> list[tuple[int, int]]:
        """Up to ``n`` SACK blocks, the most recently received first (RFC 2018 §4)."""
        starts, ends = self._starts, self._ends
        if n <= 0 or not starts:
            return []
        out: list[tuple[int, int]] = []
        for seq in self._recent:
            i = bisect_right(starts, seq) - 1
            if i >= 0 and seq < ends[i]:
                r = (starts[i], ends[i])
                if r not in out:
                    out.append(r)
        for i in range(len(starts) - 1, -1, -1):
            if len(out) >= n:
                break
            r = (starts[i], ends[i])
            if r not in out:
                out.append(r)
        return out[:n]
