"""Sender-side SACK scoreboard (RFC 6675 §2-4).

The scoreboard is the set of sequence ranges above SND.UNA that the peer
reported in SACK blocks (RFC 2018 §3), kept as two parallel sorted lists of
disjoint, non-touching ``[start, end)`` ranges.  Everything RFC 6675 asks
of it is a walk over those ranges:

* ``IsLost(seq)`` (§4): more than (DupThresh-1)*SMSS bytes, or DupThresh
  discontiguous ranges, SACKed above ``seq``.  Both counts only grow as
  ``seq`` goes down, so there is one *loss boundary* L: every unSACKed
  octet below L is lost, none above.  :meth:`loss_boundary` finds L.
* ``SetPipe()`` (§4): unSACKed octets that are not lost, plus unSACKed
  octets already retransmitted (below HighRxt): :meth:`pipe`.
* ``NextSeg()`` (§4) rules 1 and 3 need the holes: :meth:`next_hole`.

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

    def add(self, start: int, end: int) -> int:
        """Mark ``[start, end)`` SACKed (already clamped); return newly SACKed bytes."""
        if start >= end:
            return 0
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, start)  # first range that ends at or after start
        j = bisect_right(starts, end)  # ranges [i, j) touch or overlap
        if i < j:
            covered = 0
            for k in range(i, j):
                covered += ends[k] - starts[k]
            ns = min(start, starts[i])
            ne = max(end, ends[j - 1])
            starts[i:j] = [ns]
            ends[i:j] = [ne]
            new = (ne - ns) - covered
        else:
            starts.insert(i, start)
            ends.insert(i, end)
            new = end - start
        self.sacked_bytes += new
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

    def last_hole(self, snd_una: int, snd_max: int) -> tuple[int, int] | None:
        """The highest unSACKed range ``[start, end)`` below ``snd_max`` (rule 4)."""
        starts, ends = self._starts, self._ends
        if not starts or ends[-1] < snd_max:
            lo = ends[-1] if starts else snd_una
            return (max(lo, snd_una), snd_max) if max(lo, snd_una) < snd_max else None
        lo = ends[-2] if len(starts) > 1 else snd_una
        lo = max(lo, snd_una)
        return (lo, starts[-1]) if lo < starts[-1] else None

    def sacked_between(self, a: int, b: int) -> int:
        """Bytes SACKed in ``[a, b)``."""
        if a >= b or not self._starts:
            return 0
        starts, ends = self._starts, self._ends
        total = 0
        for k in range(max(bisect_right(starts, a) - 1, 0), len(starts)):
            s, e = starts[k], ends[k]
            if s >= b:
                break
            lo = s if s > a else a
            hi = e if e < b else b
            if hi > lo:
                total += hi - lo
        return total

    def loss_boundary(self, smss: int, dupthresh: int) -> int | None:
        """L such that an unSACKed octet is lost iff it lies below L (RFC 6675 §4).

        None when nothing is lost yet.
        """
        starts, ends = self._starts, self._ends
        count = 0
        total = 0
        limit = (dupthresh - 1) * smss
        for k in range(len(starts) - 1, -1, -1):
            count += 1
            total += ends[k] - starts[k]
            if count >= dupthresh or total > limit:
                return starts[k]
        return None

    def pipe(self, snd_una: int, snd_max: int, high_rxt: int, lost_below: int | None) -> int:
        """RFC 6675 §4 SetPipe(): octets believed to be in the network."""
        unsacked_out = (snd_max - snd_una) - self.sacked_bytes
        if lost_below is not None and lost_below > snd_una:
            # Lost octets have left the network...
            lost = (lost_below - snd_una) - self.sacked_between(snd_una, lost_below)
            unsacked_out -= lost
        if high_rxt > snd_una:
            # ... unless they were retransmitted (each counts once more).
            unsacked_out += (high_rxt - snd_una) - self.sacked_between(snd_una, high_rxt)
        return unsacked_out if unsacked_out > 0 else 0
