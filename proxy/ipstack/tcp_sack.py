"""Sender-side SACK scoreboard (RFC 6675 §2-3): the SACKed byte ranges.

The scoreboard is the set of sequence ranges above SND.UNA that the peer
reported in SACK blocks (RFC 2018 §3), kept as two parallel sorted lists of
disjoint, non-touching ``[start, end)`` ranges.  :meth:`Scoreboard.add`
returns the sub-ranges a block newly covers, which is what the
per-segment records of ``tcp_rack.py`` need (they are marked SACKed
there, and pipe and IsLost() come from those records and RACK);
:meth:`next_hole` lets a go-back-N pass skip what the peer already has.

The number of ranges is bounded (``TCP_MAX_SACK_RANGES``): when a peer
fragments the scoreboard beyond it, the highest ranges are forgotten, which
only makes the sender more conservative (fewer octets count as lost).
Sequence numbers are the connection's unbounded integers.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["Scoreboard"]


class Scoreboard:
    """SACKed ranges above SND.UNA (RFC 6675)."""

    __slots__ = ("_starts", "_ends", "sacked_bytes", "max_ranges")

    def __init__(self, max_ranges: int) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.sacked_bytes = 0
        "Total bytes currently marked SACKed."
        self.max_ranges = max_ranges
        "Bound on the number of disjoint ranges kept."

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def ranges(self) -> list[tuple[int, int]]:
        """The SACKed ranges, ascending (for tests and status)."""
        return list(zip(self._starts, self._ends))

    def clear(self) -> None:
        """Forget all SACK information (RFC 2018 §8, after a timeout)."""
        self._starts.clear()
        self._ends.clear()
        self.sacked_bytes = 0

    @property
    def highest(self) -> int | None:
        """End of the highest SACKed range (the highest SACKed octet + 1)."""
        return self._ends[-1] if self._ends else None

    def add(self, start: int, end: int) -> list[tuple[int, int]]:
        """Mark ``[start, end)`` SACKed (already clamped); return the newly SACKed parts."""
        if start >= end:
            return []
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, start)  # first range that ends at or after start
        j = bisect_right(starts, end)  # ranges [i, j) touch or overlap
        if i < j:
            new = []
            pos = start
            for k in range(i, j):
                if pos < starts[k]:
                    new.append((pos, starts[k]))
                if ends[k] > pos:
                    pos = ends[k]
            if pos < end:
                new.append((pos, end))
            ns = min(start, starts[i])
            ne = max(end, ends[j - 1])
            starts[i:j] = [ns]
            ends[i:j] = [ne]
        else:
            starts.insert(i, start)
            ends.insert(i, end)
            new = [(start, end)]
        for a, b in new:
            self.sacked_bytes += b - a
        while len(starts) > self.max_ranges:
            self.sacked_bytes -= ends.pop() - starts.pop()
        return new

    def ack_to(self, snd_una: int) -> None:
        """Drop what is now cumulatively acknowledged."""
        starts, ends = self._starts, self._ends
        while starts and starts[0] < snd_una:
            if ends[0] <= snd_una:
                self.sacked_bytes -= ends[0] - starts[0]
                del starts[0]
                del ends[0]
            else:
                self.sacked_bytes -= snd_una - starts[0]
                starts[0] = snd_una
                break

    def is_sacked(self, seq: int) -> bool:
        """True when octet ``seq`` was SACKed."""
        i = bisect_right(self._starts, seq) - 1
        return i >= 0 and seq < self._ends[i]

    def covering(self, seq: int) -> tuple[int, int] | None:
        """The SACKed range holding octet ``seq``, or None."""
        i = bisect_right(self._starts, seq) - 1
        if i >= 0 and seq < self._ends[i]:
            return self._starts[i], self._ends[i]
        return None

    def next_hole(self, seq: int) -> tuple[int, int | None]:
        """First unSACKed octet at or after ``seq`` and the end of its hole.

        The end is the start of the next SACKed range, or None above them all.
        """
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, seq) - 1
        if i >= 0 and seq < ends[i]:
            seq = ends[i]
        i += 1
        return seq, (starts[i] if i < len(starts) else None)
