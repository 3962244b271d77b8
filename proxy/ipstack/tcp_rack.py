"""RACK loss detection (RFC 8985) over per-segment transmission records.

Theory of operation
-------------------

RACK ("recent acknowledgment") decides that a segment is lost when a
segment *sent after it* has been delivered and more than one round trip
plus a reordering window has passed since it was sent.  Time, not a count
of duplicate ACKs, is the evidence, so RACK also sees a lost
retransmission (its new transmission time is compared with later
deliveries) and losses in a window too small for three duplicates.

That needs what the send buffer alone cannot give: per segment, when it
was last transmitted and what became of it.  :class:`SentQueue` keeps one
:class:`Sent` record per segment between SND.UNA and SND.MAX (the FIN
included), in two orders:

* sequence order (a list): cumulative ACKs drop records from the front,
  SACK blocks find theirs by bisection;
* transmission order (an ``OrderedDict`` used as an ordered set), holding
  only the records whose fate is open (not SACKed, not marked lost without
  a retransmission in flight).  Loss detection walks it from the oldest
  transmission and stops at the first segment sent after the most recently
  delivered one, so each ACK costs O(newly lost + 1), as Linux's
  time-sorted list.  A retransmission moves its record to the end.

While nothing is SACKed, lost or retransmitted, transmission order *is*
sequence order and nothing can be lost by RACK's rule (every delivery is
cumulative), so the queue runs in a *clean* mode without the ordered set:
a segment costs one small object and a list append, an ACK a slice
deletion.  The first SACK, loss mark or retransmission builds the set; it
is dropped again once all three counters are back to zero.

Byte counters give RFC 6675's SetPipe() in O(1) (Linux's
``packets_out - sacked_out - lost_out + retrans_out``): outstanding bytes,
minus SACKed, minus lost, plus retransmissions in flight.  Records marked
lost wait in a heap by sequence number for NextSeg() rule 1.

:class:`Rack` is the per-connection RACK state of RFC 8985 §6 (RACK.xmit_ts,
.end_seq, .rtt, .min_RTT, .fack, the reordering window and its DSACK-driven
adaptation) and its steps 2-5 run over the records an ACK delivered.

Bounded: records only come from our own transmissions (at most one per
segment sent, split only when a retransmission starts inside one), and
the queue refuses new data beyond ``max_records`` (the connection then
waits as if cwnd-limited); SACK blocks never split records, so a peer
cannot fragment the queue.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator
from operator import attrgetter

from proxy.constants import TCP_DUPTHRESH, TCP_RACK_REO_WND_PERSIST

__all__ = ["Sent", "SentQueue", "Rack", "sent_after"]

_start = attrgetter("start")
#: Remaining reordering time below which a segment counts as expired: a
#: timer that short could not fire after ``now`` on a float clock.
_EPSILON = 1e-6


class Sent:
    """One transmitted segment (RFC 8985 §6.1 "Segment"): ``[start, end)``."""

    __slots__ = ("start", "end", "xmit_ts", "retransmitted", "lost", "rtx", "sacked")

    def __init__(self, start: int, end: int, xmit_ts: float) -> None:
        self.start = start
        self.end = end
        self.xmit_ts = xmit_ts
        "Time of the latest transmission (Segment.xmit_ts)."
        self.retransmitted = False
        "Ever retransmitted (Segment.retransmitted)."
        self.lost = False
        "Marked lost (Segment.lost) and not yet acknowledged."
        self.rtx = False
        "A retransmission is in flight (counted in pipe)."
        self.sacked = False
        "Selectively acknowledged (RFC 2018)."

    def __repr__(self) -> str:
        flags = "".join(f for f, on in (
            ("S", self.sacked), ("L", self.lost), ("R", self.rtx), ("r", self.retransmitted))
            if on)
        return f"<Sent {self.start}-{self.end} t={self.xmit_ts:.6f} {flags or '-'}>"


def sent_after(t1: float, end1: int, t2: float, end2: int) -> bool:
    """RACK_sent_after (RFC 8985 §6.2): was (t1, end1) sent after (t2, end2)?"""
    return t1 > t2 or (t1 == t2 and end1 > end2)


class SentQueue:
    """Records of every segment in flight, in sequence and transmission order."""

    __slots__ = (
        "_segs", "_tq", "_lostq", "_n", "high", "max_records", "in_order",
        "sacked_bytes", "lost_bytes", "rtx_bytes", "sacked_count", "_resent",
    )

    def __init__(self, start: int, max_records: int) -> None:
        self._segs: list[Sent] = []
        self._tq: OrderedDict[Sent, None] | None = None  # None: clean mode
        self._lostq: list[tuple[int, int, Sent]] = []
        self._n = 0
        self.high = start
        "End of the highest record (SND.MAX once the handshake is over)."
        self.max_records = max_records
        "Bound on records; new data waits beyond it."
        self.sacked_bytes = 0
        "Bytes of records marked SACKed."
        self.lost_bytes = 0
        "Bytes of records marked lost (and not SACKed since)."
        self.rtx_bytes = 0
        "Bytes of retransmissions in flight."
        self.sacked_count = 0
        "SACKed records (RFC 8985 RACK.segs_sacked)."
        self._resent = 0  # records ever retransmitted, still outstanding
        self.in_order = True
        "The last :meth:`ack_to` ran in clean mode: what it delivered was in order."

    def __len__(self) -> int:
        return len(self._segs)

    def __iter__(self) -> Iterator[Sent]:
        """Records in sequence order (tests, status)."""
        return iter(self._segs)

    @property
    def full(self) -> bool:
        """True when no record may be added (new data must wait)."""
        return len(self._segs) >= self.max_records

    @property
    def clean(self) -> bool:
        """Nothing SACKed, lost or retransmitted: RACK has nothing to find."""
        return self._tq is None

    def pipe(self, flight: int) -> int:
        """RFC 6675 SetPipe() from ``flight`` = SND.MAX - SND.UNA bytes."""
        return flight - self.sacked_bytes - self.lost_bytes + self.rtx_bytes

    # -- transmissions --------------------------------------------------------

    def sent(self, start: int, end: int, now: float) -> bool:
        """``[start, end)`` was just transmitted; True when any of it is a retransmission."""
        high = self.high
        if start >= high:
            seg = Sent(high, end, now)  # start == high: SND.MAX never jumps
            self._segs.append(seg)
            if self._tq is not None:
                self._tq[seg] = None
            self.high = end
            return False
        i = self._index(start)
        if i < 0:
            return False  # below SND.UNA: nothing to record
        self._dirty()
        segs = self._segs
        top = end if end < high else high
        cut = segs[i].start < start and self._split(i, start, resent_tail=True)
        if cut:
            i += 1
        while i < len(segs) and segs[i].start < top:
            if segs[i].end > top and not (cut and segs[i].start == start):
                # (A middle piece of one record is not cut twice: its tail
                # would need a place in transmission order; the whole tail
                # counts as resent, which only delays RACK's verdict on it.)
                self._split(i, top, resent_tail=False)
            self._retransmitted(segs[i], now)
            i += 1
        if end > high:
            self.sent(high, end, now)
        return True

    def _index(self, seq: int) -> int:
        """Index of the record holding ``seq`` (-1 below the first)."""
        return bisect_right(self._segs, seq, key=_start) - 1

    def _split(self, i: int, at: int, resent_tail: bool) -> bool:
        """Cut record i at ``at`` for a retransmission of one side of it.

        The part about to be retransmitted becomes a new record; the other
        keeps the original object and so its place in transmission order.
        False (nothing cut: the whole record counts as resent) when the
        queue is full.
        """
        segs = self._segs
        if len(segs) >= self.max_records:
            return False
        old = segs[i]
        if resent_tail:
            new = Sent(at, old.end, old.xmit_ts)
            old.end = at
            segs.insert(i + 1, new)
        else:
            new = Sent(old.start, at, old.xmit_ts)
            old.start = at
            segs.insert(i, new)
        new.retransmitted, new.lost, new.rtx, new.sacked = (
            old.retransmitted, old.lost, old.rtx, old.sacked)
        self.sacked_count += old.sacked
        self._resent += old.retransmitted
        return True

    def _retransmitted(self, seg: Sent, now: float) -> None:
        if seg.sacked:
            return
        if not seg.retransmitted:
            seg.retransmitted = True
            self._resent += 1
        seg.xmit_ts = now
        if not seg.rtx:
            seg.rtx = True
            self.rtx_bytes += seg.end - seg.start
        tq = self._tq
        assert tq is not None
        tq[seg] = None
        tq.move_to_end(seg)

    def _dirty(self) -> None:
        """Leave clean mode: every record's fate is open, in sequence order."""
        if self._tq is None:
            self._tq = OrderedDict.fromkeys(self._segs)

    def _maybe_clean(self) -> None:
        # Nothing SACKed, lost or ever retransmitted among the outstanding
        # records: transmission order is sequence order again.
        if not (self.sacked_bytes or self.lost_bytes or self.rtx_bytes or self._resent):
            self._tq = None
            self._lostq.clear()

    # -- acknowledgments --------------------------------------------------------

    def ack_to(self, una: int) -> list[Sent]:
        """Cumulative ACK up to ``una``: drop records; return the newly delivered.

        Records SACKed earlier are not "newly" delivered (RFC 8985 §6.2).
        """
        segs = self._segs
        k = 0
        n = len(segs)
        while k < n and segs[k].end <= una:
            k += 1
        done = segs[:k]
        del segs[:k]
        tq = self._tq
        self.in_order = tq is None
        if tq is not None:
            delivered = []
            for seg in done:
                if not self._forget(seg, seg.end - seg.start):
                    delivered.append(seg)
                tq.pop(seg, None)
            done = delivered
        if segs and segs[0].start < una:
            # Partly acknowledged (a peer may ACK inside a segment).
            seg = segs[0]
            if tq is not None:
                self._forget(seg, una - seg.start, gone=False)
            seg.start = una
        if tq is not None:
            self._maybe_clean()
        return done

    def _forget(self, seg: Sent, nbytes: int, gone: bool = True) -> bool:
        """Take ``nbytes`` of ``seg`` out of the counters; True when it was SACKed."""
        if gone and seg.retransmitted:
            self._resent -= 1
        if seg.sacked:
            self.sacked_bytes -= nbytes
            if gone:
                self.sacked_count -= 1
            return True
        if seg.lost:
            self.lost_bytes -= nbytes
        if seg.rtx:
            self.rtx_bytes -= nbytes
        if gone:
            seg.lost = seg.rtx = False
        return False

    def sack(self, lo: int, hi: int, new: list[tuple[int, int]]) -> list[Sent]:
        """``[lo, hi)`` is SACKed, the ``new`` ranges in it just now: mark records.

        A record is SACKed when the range covers it wholly (receivers SACK
        the segments they got, so edges match ours); only records touching
        a newly covered range are looked at, so a long block that keeps
        growing costs O(segments it gained).  Returns the records marked.
        """
        segs = self._segs
        out = []
        for a, b in new:
            i = bisect_right(segs, a, key=_start) - 1
            if i < 0:
                i = 0
            n = len(segs)
            while i < n:
                seg = segs[i]
                if seg.start >= b:
                    break
                if not seg.sacked and seg.start >= lo and seg.end <= hi and seg.end > a:
                    out.append(seg)
                i += 1
        if not out:
            return out
        self._dirty()
        tq = self._tq
        assert tq is not None
        marked = []
        for seg in out:
            if seg.sacked:
                continue  # listed twice (touching two new ranges)
            marked.append(seg)
            length = seg.end - seg.start
            if seg.lost:
                self.lost_bytes -= length
            if seg.rtx:
                self.rtx_bytes -= length
            seg.lost = seg.rtx = False
            seg.sacked = True
            self.sacked_bytes += length
            self.sacked_count += 1
            tq.pop(seg, None)
        return marked

    def unsack_all(self) -> None:
        """Forget SACK marks (the peer may have reneged, RFC 2018 §8)."""
        if not self.sacked_bytes:
            return
        for seg in self._segs:
            seg.sacked = False  # its fate is open again (old xmit_ts: RACK judges it)
        self.sacked_bytes = self.sacked_count = 0
        self._tq = OrderedDict.fromkeys(sorted(
            (s for s in self._segs if not s.lost or s.rtx), key=lambda s: (s.xmit_ts, s.start)))

    # -- loss marks -----------------------------------------------------------

    def mark_lost(self, seg: Sent) -> bool:
        """Mark ``seg`` lost (a retransmission in flight is lost with it); True if new."""
        if seg.sacked or (seg.lost and not seg.rtx):
            return False
        self._dirty()
        length = seg.end - seg.start
        if seg.rtx:
            seg.rtx = False
            self.rtx_bytes -= length
        if not seg.lost:
            seg.lost = True
            self.lost_bytes += length
        self._push_lost(seg)
        assert self._tq is not None
        self._tq.pop(seg, None)
        return True

    def _push_lost(self, seg: Sent) -> None:
        q = self._lostq
        if len(q) > 2 * len(self._segs) + 64:
            # Entries go stale (resent, SACKed, acknowledged) and leave only
            # from the top: rebuild rather than let them pile up.
            q[:] = [e for e in q if e[2].lost and not e[2].rtx and not e[2].sacked]
            heapq.heapify(q)
        self._n += 1
        heapq.heappush(q, (seg.start, self._n, seg))

    def next_lost(self, una: int) -> Sent | None:
        """The lowest record marked lost and not retransmitted since (rule 1)."""
        q = self._lostq
        while q:
            seg = q[0][2]
            if seg.lost and not seg.rtx and not seg.sacked and seg.end > una:
                return seg
            heapq.heappop(q)
        return None

    def in_flight_by_time(self) -> OrderedDict[Sent, None]:
        """Open records, oldest transmission first (empty in clean mode)."""
        return self._tq if self._tq is not None else OrderedDict()

    def last_unsacked(self) -> Sent | None:
        """The highest record not SACKed (what a tail loss probe resends)."""
        for seg in reversed(self._segs):
            if not seg.sacked:
                return seg
        return None

    def mark_lost_on_timeout(self, una: int, now: float, rtt: float, reo_wnd: float) -> None:
        """RFC 8985 §6.3: the first segment, and every one older than rtt + reo_wnd."""
        for seg in list(self._segs):
            if seg.start <= una or now - seg.xmit_ts >= rtt + reo_wnd:
                self.mark_lost(seg)


class Rack:
    """RACK state (RFC 8985 §6.1) and steps 1-5 of §6.2."""

    __slots__ = (
        "xmit_ts", "end_seq", "rtt", "min_rtt", "fack", "reordering_seen",
        "dsack_round", "reo_wnd_mult", "reo_wnd_persist",
    )

    def __init__(self) -> None:
        self.xmit_ts = -1.0
        "Transmission time of the most recently sent segment delivered."
        self.end_seq = 0
        self.rtt = 0.0
        "RTT of that segment (RACK.rtt)."
        self.min_rtt: float | None = None
        "Smallest RTT seen (RACK.min_RTT; no windowing, see docs/tcp.md)."
        self.fack = 0
        "Highest sequence delivered (RACK.fack)."
        self.reordering_seen = False
        self.dsack_round: int | None = None
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = TCP_RACK_REO_WND_PERSIST

    def update(
        self, delivered: list[Sent], now: float, echoed_before: Callable[[Sent], bool],
    ) -> None:
        """Steps 1-3 for the segments this ACK delivered (any order).

        ``echoed_before(seg)`` tells whether the ACK's TSecr predates the
        segment's last transmission (False without timestamps): such an ACK
        was caused by an earlier transmission and says nothing about this one.
        """
        # Step 1: the minimum RTT, from segments sent once (unambiguous).
        min_rtt = self.min_rtt
        for seg in delivered:
            if not seg.retransmitted:
                rtt = now - seg.xmit_ts
                if min_rtt is None or rtt < min_rtt:
                    min_rtt = rtt
        self.min_rtt = min_rtt
        # Step 2: the most recently sent segment delivered.
        newest: Sent | None = None
        for seg in delivered:
            if seg.retransmitted and (
                # An ACK for an earlier transmission says nothing about the
                # last one: its TSecr predates it, or it came back too soon.
                echoed_before(seg) or (min_rtt is not None and now - seg.xmit_ts < min_rtt)
            ):
                continue
            if newest is None or sent_after(seg.xmit_ts, seg.end, newest.xmit_ts, newest.end):
                newest = seg
        if newest is not None:
            self.rtt = now - newest.xmit_ts
            if sent_after(newest.xmit_ts, newest.end, self.xmit_ts, self.end_seq):
                self.xmit_ts = newest.xmit_ts
                self.end_seq = newest.end
        # Step 3: a segment delivered below the highest delivered one, never
        # retransmitted, arrived out of order.
        for seg in sorted(delivered, key=_start) if len(delivered) > 1 else delivered:
            if seg.end > self.fack:
                self.fack = seg.end
            elif seg.end < self.fack and not seg.retransmitted:
                self.reordering_seen = True

    def rtt_sample(self, rtt: float) -> None:
        """An unambiguous RTT measured elsewhere (the handshake) for RACK.min_RTT."""
        if rtt >= 0 and (self.min_rtt is None or rtt < self.min_rtt):
            self.min_rtt = rtt

    def dsack_seen(self, dsack: bool, snd_una: int, snd_nxt: int) -> None:
        """Step 4, first half: grow the window once per round that sees a D-SACK."""
        if self.dsack_round is not None and snd_una >= self.dsack_round:
            self.dsack_round = None
        if dsack and self.dsack_round is None:
            self.dsack_round = snd_nxt
            self.reo_wnd_mult += 1
            self.reo_wnd_persist = TCP_RACK_REO_WND_PERSIST

    def recovery_ended(self) -> None:
        """Step 4: after 16 recoveries without a D-SACK the window resets."""
        self.reo_wnd_persist -= 1
        if self.reo_wnd_persist <= 0:
            self.reo_wnd_mult = 1

    def reo_wnd(self, in_recovery: bool, sacked_count: int, srtt: float | None) -> float:
        """Step 4, second half: the reordering window RACK_update_reo_wnd() returns."""
        if not self.reordering_seen and (in_recovery or sacked_count >= TCP_DUPTHRESH):
            return 0.0
        if self.min_rtt is None:
            return 0.0
        w = self.reo_wnd_mult * self.min_rtt / 4
        return w if srtt is None or w < srtt else srtt

    def detect_loss(self, queue: SentQueue, now: float, reo_wnd: float) -> tuple[int, float]:
        """Step 5 (RACK_detect_loss): mark lost; return (newly lost, timeout).

        ``timeout`` > 0 is when the last segment still inside its
        reordering window must be looked at again (the RACK timer).
        """
        lost: list[Sent] = []
        timeout = 0.0
        x_ts, x_end, rtt = self.xmit_ts, self.end_seq, self.rtt
        for seg in queue.in_flight_by_time():
            if not sent_after(x_ts, x_end, seg.xmit_ts, seg.end):
                break  # this one and every later transmission are newer
            # (rtt + reo_wnd) - elapsed, not xmit_ts + rtt + reo_wnd - now: the
            # same subtraction as RACK.rtt's, so "sent together" is exact.
            remaining = rtt + reo_wnd - (now - seg.xmit_ts)
            if remaining <= _EPSILON:
                lost.append(seg)
            elif remaining > timeout:
                timeout = remaining
        n = 0
        for seg in lost:
            n += queue.mark_lost(seg)
        return n, timeout
