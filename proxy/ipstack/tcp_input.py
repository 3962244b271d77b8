"""Segment arrival (RFC 9293 §3.10.7), the input half of TcpConnection.

The order is the RFC's: §3.10.7.3 for SYN-SENT; for every other state
§3.10.7.4's "first" (sequence number, preceded by PAWS, RFC 7323 §5.3)
through "eighth" (FIN).  The RFC 5961 defences sit where that RFC puts
them: an in-window RST that is not exactly RCV.NXT, any SYN in a
synchronized state, and an ACK outside [SND.UNA - MAX.SND.WND, SND.MAX]
each get a rate-limited challenge ACK instead of being believed.

ACK processing also drives loss recovery:

* without SACK, NewReno (RFC 5681 §3.2, RFC 6582): three duplicate ACKs
  enter fast recovery, each further duplicate inflates cwnd by one SMSS,
  a partial ACK retransmits the next hole and deflates, a full ACK (at or
  beyond ``recover``) ends recovery;
* with SACK, the blocks update the scoreboard and the per-segment
  transmission records (a D-SACK is recognised, RFC 2883), and every ACK
  goes to RACK (``tcp_recovery.py``, RFC 8985), which decides what is lost
  and starts recovery; duplicate ACKs then only drive limited transmit.

In-order data in ESTABLISHED usually never gets here: ``segment_received``
first tries header prediction (``tcp_fastpath.py``).

Deviations, each marked DEVIATION below and listed in docs/deviations.md:
the acceptability test's left edge is the last RCV.NXT we acknowledged
(Linux), so reordered pure ACKs are used instead of answered; a RST in
TIME-WAIT is ignored (RFC 1337); a bare FIN at RCV.NXT is accepted in a
zero window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy import constants as C
from proxy.errors import DropReason
from proxy.ipstack.tcp_events import TcpState
from proxy.ipstack.tcp_rack import Sent
from proxy.ipstack.wire.tcp import ACK, FIN, RST, SEQ_MASK, SYN, TcpSegment, seq_unwrap

if TYPE_CHECKING:  # pragma: no cover
    from proxy.ipstack.tcp import TcpConnection

__all__ = ["TcpInputMixin", "reset_for"]

S = TcpState
_HALF = 0x80000000
# States in which in-order data is delivered to the application.
_RECEIVING = frozenset((S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2))


class TcpInputMixin:
    """``segment_received`` and everything it calls."""

    __slots__ = ()

    def segment_received(self: "TcpConnection", seg: TcpSegment, now: float) -> None:
        """Process one segment from the peer (never raises for any segment)."""
        st = self._state
        if st is S.ESTABLISHED and self._fast_data(seg, now):
            return  # header prediction (tcp_fastpath.py)
        if st is S.SYN_SENT:
            self._in_syn_sent(seg, now)
        elif st is S.CLOSED or st is S.LISTEN:
            # RFC 9293 §3.10.7.1: answer anything but a RST with a RST.
            self._drop(DropReason.TCP_CLOSED, seg)
            if not seg.flags & RST:
                rst = reset_for(seg)
                if rst is not None:
                    self._queue_control(rst)
        else:
            self._in_synchronized(seg, now)

    # ------------------------------------------------------------------
    # RFC 9293 §3.10.7.3: SYN-SENT
    # ------------------------------------------------------------------

    def _in_syn_sent(self: "TcpConnection", seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        ack = 0
        if flags & ACK:
            # First: the ACK must acknowledge our SYN and nothing beyond.
            ack = seq_unwrap(seg.ack, self.snd_una)
            if ack <= self.iss or ack > self.snd_max:
                if not flags & RST:
                    self._queue_control(self._rst(seg.ack))
                self._drop(DropReason.TCP_BAD_ACK, seg)
                return
        if flags & RST:
            # Second: a RST counts only with an acceptable ACK (RFC 5961 §3).
            if ack:
                self._enter_closed("refused")
            else:
                self._drop(DropReason.TCP_RST_IGNORED, seg)
            return
        if not flags & SYN:
            self._drop(DropReason.TCP_BAD_FLAGS, seg)
            return
        # Fourth: SYN.
        self._take_syn(seg, now)
        if ack:
            self._syn_acked(seg, ack, now)
            self._established(now)
            self._ack_now = True
            if seg.payload or flags & FIN:
                self._process_text(seg, seg.seq + 1, now)
        else:
            # Simultaneous open (RFC 9293 Figure 8): SYN-RECEIVED, send SYN-ACK.
            self._state = S.SYN_RECEIVED
            self._syn_due = True
            self._rto_at = None

    def _syn_acked(self: "TcpConnection", seg: TcpSegment, ack: int, now: float) -> None:
        """Our SYN is acknowledged: SND.UNA past it, first RTT sample."""
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        self._rto_at = None
        if self._syn_retries == 0:
            # RACK.min_RTT from the clock, not the 1 ms timestamps (sub-ms paths).
            self._rack.rtt_sample(now - self._rtt_time)
        if self.ts_ok and seg.timestamps is not None and seg.timestamps[1]:
            self._ts_rtt_sample(seg.timestamps[1], now)
        elif self._syn_retries == 0:
            # Karn: only an unretransmitted SYN gives an unambiguous sample.
            self.rto.sample(now - self._rtt_time)
        self.snd_wl1 = seg.seq
        self.snd_wl2 = ack

    # ------------------------------------------------------------------
    # RFC 9293 §3.10.7.4: every other state
    # ------------------------------------------------------------------

    def _in_synchronized(self: "TcpConnection", seg: TcpSegment, now: float) -> None:
        flags = seg.flags
        st = self._state
        rcv_nxt = self.rcv_nxt
        seq = rcv_nxt + (((seg.seq - rcv_nxt + _HALF) & SEQ_MASK) - _HALF)  # seq_unwrap

        if st is S.TIME_WAIT and flags & (SYN | RST | ACK) == SYN and seq > rcv_nxt:
            # RFC 6191 / RFC 9293 §3.10.7.4: a new incarnation's SYN.  We
            # free the 4-tuple; the peer's retransmitted SYN reaches the
            # listener.  DEVIATION: the SYN itself is not accepted here.
            self._drop(DropReason.TCP_NOT_SYNCHRONIZED, seg)
            self._state = S.CLOSED
            self._tw_at = None
            return
        if st is S.SYN_RECEIVED and seq == self.irs and flags & (SYN | RST) == SYN:
            if not flags & ACK:
                # The peer retransmitted its SYN: our SYN-ACK was lost.
                self._syn_due = True
                return
            if seq_unwrap(seg.ack, self.snd_una) == self.snd_max:
                # Simultaneous open (RFC 9293 Figure 8 line 7): the peer's
                # SYN-ACK repeats its SYN and acknowledges ours; use it as
                # the handshake's ACK (as Linux does), not as a new SYN.
                seg = TcpSegment(seg.src_port, seg.dst_port, (seg.seq + 1) & SEQ_MASK, seg.ack,
                                 ACK, seg.window, 0, None, None, False, (), seg.timestamps)
                seq += 1
                flags = ACK

        # PAWS (RFC 7323 §5.3 R1), before the sequence check.
        ts = seg.timestamps
        if self.ts_ok:
            if ts is None:
                if not flags & RST:
                    # RFC 7323 §3.2: drop non-RST segments without TSopt.
                    self._drop(DropReason.TCP_NO_TIMESTAMP, seg)
                    return
            elif (
                not flags & RST and self._ts_recent_at is not None
                and ts[0] != self._ts_recent and (ts[0] - self._ts_recent) & SEQ_MASK >= _HALF
            ):
                if now - self._ts_recent_at > C.TCP_TS_RECENT_MAX_IDLE:
                    self._ts_recent_at = None  # §5.5: ts_recent too old to judge
                else:
                    self._drop(DropReason.TCP_PAWS, seg)
                    self._oow_ack(now, bool(seg.payload))
                    return

        # First: sequence number acceptability.
        plen = len(seg.payload)
        seg_len = plen + (flags & SYN) // SYN + (flags & FIN)
        wnd = self.rcv_adv - rcv_nxt
        if wnd < 0:
            wnd = 0
        # DEVIATION (Linux tcp_sequence): the left edge is RCV.NXT as last
        # acknowledged (rcv_wup), so a pure ACK overtaken by data is used,
        # not answered with a duplicate ACK the peer would count.
        if seq + seg_len < self.rcv_wup or seq > rcv_nxt + wnd:
            self._drop(DropReason.TCP_OUT_OF_WINDOW, seg)
            if not flags & RST:
                if st is S.TIME_WAIT and flags & FIN:
                    self._tw_at = now + self.config.time_wait
                self._oow_ack(now, bool(plen))
            return

        # Second: RST (RFC 5961 §3.2).
        if flags & RST:
            self._in_rst(seg, seq, now)
            return

        # Fourth: SYN in a synchronized state (RFC 5961 §4).
        if flags & SYN:
            self._drop(DropReason.TCP_SYN_CHALLENGED, seg)
            self._challenge_ack(now)
            return

        # Fifth: ACK.
        if not flags & ACK:
            self._drop(DropReason.TCP_BAD_FLAGS, seg)
            return
        self._last_rx = now
        self._ka_probes = 0
        self._probes = 0  # any ACK answers a zero-window probe
        if ts is not None and seq <= self.rcv_wup and (
            self._ts_recent_at is None or not (ts[0] - self._ts_recent) & SEQ_MASK >= _HALF
        ):
            # RFC 7323 §4.3: TS.Recent from segments covering Last.ACK.sent.
            self._ts_recent = ts[0]
            self._ts_recent_at = now
        if st is S.SYN_RECEIVED:
            ack = seq_unwrap(seg.ack, self.snd_una)
            if not self.snd_una < ack <= self.snd_max:
                self._drop(DropReason.TCP_BAD_ACK, seg)
                self._queue_control(self._rst(seg.ack))
                return
            self._syn_acked(seg, ack, now)
            self.snd_wnd = seg.window << self.snd_wscale
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self._established(now)
            st = self._state
        elif not self._in_ack(seg, seq, now):
            return
        st = self._state
        if st is S.CLOSED or st is S.TIME_WAIT and not flags & FIN:
            return

        # Sixth (URG).  DEVIATION (RFC 9293 MUST-30/31): not supported; the
        # urgent pointer is ignored and the bytes are delivered inline
        # (RFC 6093 §4).  Seventh and eighth: text and FIN.
        if plen or flags & FIN:
            self._process_text(seg, seq, now)

    def _in_rst(self: "TcpConnection", seg: TcpSegment, seq: int, now: float) -> None:
        """RFC 9293 §3.10.7.4 second check with RFC 5961 §3.2."""
        st = self._state
        if seq != self.rcv_nxt:
            self._drop(DropReason.TCP_RST_CHALLENGED, seg)
            self._challenge_ack(now)
            return
        if st is S.TIME_WAIT:
            # DEVIATION (RFC 1337 §3 "F1"): TIME-WAIT ignores RSTs, so an old
            # duplicate cannot assassinate it.
            self._drop(DropReason.TCP_RST_IGNORED, seg)
            return
        if st is S.SYN_RECEIVED and self._active:
            # RFC 9293: an active open (simultaneous) is refused ...
            self._enter_closed("refused")
            return
        # ... a passive one "returns to LISTEN": for us the TCB just goes.
        self._enter_closed("reset")

    # ------------------------------------------------------------------
    # Fifth check: the ACK field, and loss recovery
    # ------------------------------------------------------------------

    def _in_ack(self: "TcpConnection", seg: TcpSegment, seq: int, now: float) -> bool:
        """Process SEG.ACK in a synchronized state; False when the segment is done."""
        una = self.snd_una
        ack = una + (((seg.ack - una + _HALF) & SEQ_MASK) - _HALF)  # seq_unwrap
        if ack > self.snd_max:
            # RFC 9293 / RFC 5961 §5.2: acknowledges something not yet sent.
            self._drop(DropReason.TCP_BAD_ACK, seg)
            self._challenge_ack(now)
            return False
        if ack < una - self.max_snd_wnd:
            self._drop(DropReason.TCP_BAD_ACK, seg)
            self._challenge_ack(now)
            return False

        window = seg.window << self.snd_wscale
        sack_new = 0
        sacked_before = self.scoreboard.sacked_bytes
        delivered: list[Sent] = []
        dsack: tuple[int, int] | None = None
        if self.sack_ok and seg.sack_blocks:
            sack_new, dsack = self._take_sack(seg.sack_blocks, max(ack, una), delivered)

        if ack > una:
            self._new_ack(seg, ack, now, delivered)
        elif (
            ack == una and self.snd_max > una and not seg.payload and self.snd_wnd
            and not seg.flags & (SYN | FIN) and (window == self.snd_wnd or sack_new)
        ):
            # RFC 5681 §2 (and not while the window is closed: those are
            # answers to zero-window probes).
            self._dup_ack(now)

        # RFC 9293 §3.10.7.4: window update when SND.UNA =< SEG.ACK and the
        # segment is newer than the last update (SND.WL1, SND.WL2).
        if ack >= una and (self.snd_wl1 < seq or (self.snd_wl1 == seq and self.snd_wl2 <= ack)):
            opened = self.snd_wnd == 0 and window > 0
            self.snd_wnd = window
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            if window > self.max_snd_wnd:
                self.max_snd_wnd = window
            if opened:
                self._window_opened()
            elif window == 0 and self.snd_max > self.snd_una:
                # The persist timer takes over from the retransmission timer
                # (with nothing queued, output would not arm it).
                self._rto_at = None
                if self._persist_at is None:
                    self._persist_at = now + self._persist_interval()

        if self.sack_ok:
            # RFC 6937 DeliveredData: change in SND.UNA plus change in SACKed bytes.
            nbytes = (self.snd_una - una) + (self.scoreboard.sacked_bytes - sacked_before)
            self._rack_on_ack(seg, ack, ack > una, delivered, nbytes, dsack, now)

        st = self._state
        fin = self._fin_seq
        if fin is not None and self.snd_una > fin:
            if st is S.FIN_WAIT_1:
                self._state = S.FIN_WAIT_2
                if self._orphan:
                    self._fw2_at = now + self.config.fin_wait_2_timeout
            elif st is S.CLOSING:
                self._enter_time_wait(now)
            elif st is S.LAST_ACK:
                self._enter_closed(None)
                return False
        return True

    def _take_sack(
        self: "TcpConnection", blocks: tuple[tuple[int, int], ...], una: int,
        delivered: list[Sent],
    ) -> tuple[int, tuple[int, int] | None]:
        """Take SACK blocks (RFC 2018 §3) into the scoreboard and the records.

        Returns the newly SACKed bytes and the D-SACK block, if the first
        block is one (RFC 2883 §4: below the cumulative ACK, or inside the
        second block).  Records newly SACKed are appended to ``delivered``.
        """
        new = 0
        sb = self.scoreboard
        q = self._sent
        top = self.snd_max
        dsack = None
        blocks = blocks[: C.TCP_MAX_SACK_BLOCKS]
        for i, (left, right) in enumerate(blocks):
            lo = seq_unwrap(left, una)
            hi = seq_unwrap(right, una)
            if i == 0 and lo < hi:
                if hi <= una:
                    dsack = (lo, hi)
                elif len(blocks) > 1:
                    lo1 = seq_unwrap(blocks[1][0], una)
                    hi1 = seq_unwrap(blocks[1][1], una)
                    if lo1 <= lo and hi <= hi1:
                        dsack = (lo, hi)
            if lo < una:
                lo = una
            if hi > top:
                hi = top
            if lo < hi:
                got = sb.add(lo, hi)
                if got:
                    for a, b in got:
                        new += b - a
                    # Records wholly inside the merged range are SACKed.
                    lo, hi = sb.covering(lo) or (lo, hi)
                    delivered += q.sack(lo, hi, got)
        return new, dsack

    def _new_ack(
        self: "TcpConnection", seg: TcpSegment, ack: int, now: float, delivered: list[Sent],
    ) -> None:
        """SND.UNA < SEG.ACK <= SND.MAX: data (or our FIN) acknowledged.

        The transmission records it covers are appended to ``delivered``.
        """
        una = self.snd_una
        acked = ack - una
        flight_before = self.snd_nxt - una
        # RTT measurement: timestamps (RFC 7323 §4) or one timed segment (Karn).
        ts = seg.timestamps
        if self.ts_ok and ts is not None and ts[1]:
            # DEVIATION (RFC 7323 Appendix G): every ACK samples, standard gains.
            self._ts_rtt_sample(ts[1], now)
        elif self._rtt_seq is not None and ack > self._rtt_seq:
            self.rto.sample(now - self._rtt_time)
            self._rtt_seq = None
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        sbuf = self._sbuf
        sbuf.ack_to(ack if ack < sbuf.end else sbuf.end)
        if self.scoreboard:
            self.scoreboard.ack_to(ack)
        delivered += self._sent.ack_to(ack)
        self._retransmits = 0
        self._probes = 0

        if self._in_recovery:
            if ack >= self._recover:
                # Full ACK: recovery is over (RFC 6582 §3.2 step 3, RFC 6675).
                self._exit_recovery(ack)
            elif not self.sack_ok:
                # Partial ACK (RFC 6582 §3.2 step 5): retransmit the next
                # hole, deflate by the amount acknowledged, add back one SMSS.
                self._rtx_seq = ack
                cc = self.cc
                cc.cwnd -= acked
                if acked >= cc.smss:
                    cc.cwnd += cc.smss
                if cc.cwnd < cc.smss:
                    cc.cwnd = cc.smss
                self._partial_acks += 1
                if self._partial_acks > 1:
                    # "Impatient" variant (RFC 6582 §4): only the first
                    # partial ACK restarts the timer.
                    self._after_ack_timer(now, restart=False)
                    self._signal_space()
                    return
            elif self._rto_recovery:
                # After a timeout the window restarts in slow start (RFC 5681 §3.1).
                self.cc.on_ack(acked, now, self.rto.srtt)
        else:
            self._dupacks = 0
            if self.rto.backoff and ack >= self._recover:
                # Everything outstanding at the timeout is acknowledged:
                # re-derive the RTO from SRTT/RTTVAR (no stale backoff).
                self.rto.reset_backoff()
            if 2 * flight_before >= self.cc.cwnd or self._cwnd_limited:
                # Grow only while the window is in use (RFC 7661 spirit).
                self.cc.on_ack(acked, now, self.rto.srtt)
        self._after_ack_timer(now, restart=True)
        self._signal_space()

    def _after_ack_timer(self: "TcpConnection", now: float, restart: bool) -> None:
        """RFC 6298 §5.2-5.3: stop when all is acknowledged, else restart."""
        if self.snd_una >= self.snd_max:
            self._rto_at = None
        elif restart or self._rto_at is None:
            self._rto_at = now + self.rto.rto

    def _dup_ack(self: "TcpConnection", now: float) -> None:
        """A duplicate ACK (RFC 5681 §2 definition; RFC 6675 with new SACK info).

        With SACK, RACK decides about losses (tcp_recovery.py); the count
        still drives limited transmit (RFC 3042).
        """
        if self._in_recovery:
            if not self.sack_ok:
                self.cc.cwnd += self.cc.smss  # RFC 6582 §3.2 step 4: inflate
            return
        self._dupacks += 1
        if not self.sack_ok:
            self._maybe_enter_recovery(now)

    def _maybe_enter_recovery(self: "TcpConnection", now: float) -> None:
        """NewReno fast retransmit (RFC 5681 §3.2 steps 2-3, RFC 6582)."""
        if self.snd_una < self._recover:
            # RFC 6582 §3.2 step 2: not before the previous recovery point
            # (or the data sent before a timeout) is acknowledged.
            return
        if self._dupacks < C.TCP_DUPTHRESH:
            return
        self._in_recovery = True
        self._rto_recovery = False
        self.stats["fast_retransmit"] += 1
        self._recover = self.snd_max
        self._partial_acks = 0
        self.cc.on_loss(self.snd_max - self.snd_una, now)
        self._rtx_seq = self.snd_una  # retransmit the first unacknowledged segment
        self._rtt_seq = None
        self.cc.cwnd = self.cc.ssthresh + C.TCP_DUPTHRESH * self.cc.smss

    def _ts_rtt_sample(self: "TcpConnection", tsecr: int, now: float) -> None:
        """RTT from an echoed timestamp (RFC 7323 §4.1), in ms ticks."""
        ticks = (self._tsval(now) - tsecr) & SEQ_MASK
        if ticks < _HALF:
            self.rto.sample(ticks / C.TCP_TS_HZ)

    def _window_opened(self: "TcpConnection") -> None:
        """The peer's window went from zero to open: probes are over."""
        self._persist_at = None
        self._persist_backoff = 0
        self._probes = 0
        if self.snd_nxt > self.snd_una:
            # A probe byte beyond the old window was most likely dropped.
            self.snd_nxt = self.snd_una

    # ------------------------------------------------------------------
    # Seventh and eighth: segment text and FIN
    # ------------------------------------------------------------------

    def _process_text(self: "TcpConnection", seg: TcpSegment, seq: int, now: float) -> None:
        """Deliver in-order data, store out-of-order data, then the FIN."""
        st = self._state
        payload = seg.payload
        fin_seq = seq + len(payload) if seg.flags & FIN else None
        rcv_nxt = self.rcv_nxt
        if payload:
            end = seq + len(payload)
            if st not in _RECEIVING:
                # After the peer's FIN no more data can be valid.
                self._ack_now = True
                payload = b""
            elif self._orphan and end > rcv_nxt:
                # Data after a full close(): nobody will read it (RFC 9293
                # §3.10.4, Linux): reset.
                self._queue_control(self._rst(self.snd_nxt))
                self._enter_closed("reset")
                return
            elif end <= rcv_nxt:
                # Entirely old: duplicate; report it with D-SACK (RFC 2883).
                self._dsack = (seq, end)
                self._ack_now = True
                payload = b""
            else:
                if seq < rcv_nxt:
                    self._dsack = (seq, rcv_nxt)
                    payload = payload[rcv_nxt - seq :]
                    seq = rcv_nxt
                right = self.rcv_adv if self.rcv_adv > rcv_nxt else rcv_nxt
                if end > right:
                    # Beyond the window: trimmed; a FIN there is not ours yet.
                    payload = payload[: right - seq] if right > seq else b""
                    fin_seq = None
                    self._ack_now = True
                    self._drop(DropReason.TCP_OUT_OF_WINDOW, seg)
                if not payload:
                    self._ack_now = True
                elif seq == rcv_nxt:
                    self._rbuf += payload
                    rcv_nxt += len(payload)
                    if self._ooo:
                        rcv_nxt, chunks = self._ooo.pull(rcv_nxt)
                        for c in chunks:
                            self._rbuf += c
                        self._ack_now = True  # RFC 5681 §4.2: hole filled
                    self.rcv_nxt = rcv_nxt
                    self._signal_data()
                    if rcv_nxt - self.rcv_wup >= 2 * self._rcv_mss_v:
                        self._ack_now = True  # RFC 5681 §4.2: every 2nd segment
                    elif not self._ack_now and self._delack_at is None:
                        if self.config.delayed_ack > 0:
                            self._delack_at = now + self.config.delayed_ack
                        else:
                            self._ack_now = True
                else:
                    if not self._ooo.add(seq, payload):
                        self._drop(DropReason.TCP_OOO_FULL, seg)
                    self._ack_now = True  # RFC 5681 §4.2: immediate dup ACK
                    self._dupacks_owed += 1
        # Eighth: FIN.
        if fin_seq is not None:
            if fin_seq > self.rcv_nxt and st in _RECEIVING:
                self._peer_fin = fin_seq  # out of order: wait for the hole
                self._ack_now = True
            elif fin_seq == self.rcv_nxt or self._fin_received:
                self._take_fin(now)
        elif self._peer_fin is not None and self._peer_fin == self.rcv_nxt:
            self._take_fin(now)

    def _rcv_mss(self: "TcpConnection") -> int:
        """Typical full segment from the peer (our MSS minus timestamps)."""
        return self._rcv_mss_v

    def _take_fin(self: "TcpConnection", now: float) -> None:
        """The peer's FIN is in order (RFC 9293 §3.10.7.4 eighth)."""
        st = self._state
        self._ack_now = True
        if not self._fin_received:
            self._fin_received = True
            self.rcv_nxt += 1
            self._peer_fin = None
            self._signal_eof()
        if st is S.ESTABLISHED:
            self._state = S.CLOSE_WAIT
        elif st is S.FIN_WAIT_1:
            self._state = S.CLOSING  # our FIN not yet acknowledged: simultaneous close
        elif st is S.FIN_WAIT_2:
            self._enter_time_wait(now)
        elif st is S.TIME_WAIT:
            self._tw_at = now + self.config.time_wait  # restart the 2 MSL timeout

    # ------------------------------------------------------------------
    # RFC 5961 §7: rate-limited challenge ACKs
    # ------------------------------------------------------------------

    def _challenge_ack(self: "TcpConnection", now: float) -> None:
        if now - self._chal_start >= C.TCP_CHALLENGE_ACK_INTERVAL:
            self._chal_start = now
            self._chal_count = 0
        if self._chal_count < C.TCP_CHALLENGE_ACK_LIMIT:
            self._chal_count += 1
            self._ack_now = True

    def _oow_ack(self: "TcpConnection", now: float, has_data: bool) -> None:
        """ACK an unacceptable segment (RFC 9293 §3.10.7.4 first check).

        Segments with data are always answered (they are zero-window probes
        or retransmissions); pure ones share the challenge-ACK budget, which
        breaks ACK loops (Linux tcp_oow_rate_limited).
        """
        if has_data:
            self._ack_now = True
        else:
            self._challenge_ack(now)


def reset_for(seg: TcpSegment) -> TcpSegment | None:
    """The RST answering ``seg`` when no connection exists (RFC 9293 §3.10.7.1).

    None when ``seg`` is itself a RST.  For the Interface: a SYN to a port
    nobody listens on, or any segment for an unknown 4-tuple.
    """
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return TcpSegment(
        seg.dst_port, seg.src_port, 0, (seg.seq + seg.seg_len) & SEQ_MASK, RST | ACK, 0)
