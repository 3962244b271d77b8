"""Loss detection and recovery with SACK: RACK-TLP (RFC 8985) + RFC 6675.

Theory of operation
-------------------

With SACK negotiated, loss is decided by time (RACK, ``tcp_rack.py``)
instead of by counting duplicate ACKs: after every ACK the records it
delivered update the RACK state, and every segment sent before the most
recently delivered one, and older than RACK.rtt plus the reordering
window, is marked lost.  When a segment is still inside the window the
RACK timer looks again when it expires.  The first loss mark starts fast
recovery (RFC 6675 §5 with RACK's marks as IsLost(), as RFC 8985 §9.3
allows): ssthresh and cwnd from the congestion controller, RecoveryPoint
= SND.MAX, and while ``cwnd - pipe >= 1 SMSS`` the output sends NextSeg():

1. the lowest segment marked lost and not yet retransmitted;
2. new data (RFC 6675 rule 2).

DEVIATION (RFC 6675 rule 3 is a SHOULD): rules 3 and 4 (retransmitting
unmarked holes, the rescue retransmission) are not used: they guess where
RACK knows, and the tail loss probe covers the tail.  Because a retransmission carries a new
transmission time, a lost retransmission is detected like any other loss
and resent within the same recovery, without waiting for the RTO.

Tail loss probe (RFC 8985 §7): when segments are outstanding and nothing
else is in progress (or, a deviation, when a fast recovery has resent
everything it knows to be lost), a probe timeout PTO = 2*SRTT (plus the worst-case
delayed ACK when a single segment is out; floor TCP_TLP_MIN_PTO; never
later than the RTO) is armed after new data goes out and after each ACK.
When it fires, one new segment (if the window allows) or the last
segment again is sent, ignoring cwnd, and the RTO is re-armed.  The ACK
it draws lets RACK see the tail losses and recover them by fast recovery;
if the probe itself repaired a single loss (its D-SACK never comes and the
ACK moves past it), the congestion controller still reduces the window
(§7.4.2).

Retransmission timeout with SACK: RFC 8985 §6.3 marks the first segment
and every segment older than RACK.rtt + reordering window lost, the head
is retransmitted at once (RFC 6298 §5.4) and recovery continues with
the same NextSeg() loop in slow start from one segment (RFC 5681 §3.1),
until SND.UNA passes the SND.MAX of the timeout.  Without SACK the older
go-back-N of ``tcp_timers.py`` and NewReno (``tcp_input.py``) are used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy import constants as C
from proxy.ipstack.tcp_events import TcpState
from proxy.ipstack.tcp_rack import Sent
from proxy.ipstack.wire.tcp import TcpSegment, ts_lt

if TYPE_CHECKING:  # pragma: no cover
    from proxy.ipstack.tcp import TcpConnection

__all__ = ["TcpRecoveryMixin"]

S = TcpState
_SENDING = frozenset((S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK))


class TcpRecoveryMixin:
    """RACK, the tail loss probe and SACK-based recovery."""

    __slots__ = ()

    # ------------------------------------------------------------------
    # ACK side
    # ------------------------------------------------------------------

    def _rack_on_ack(
        self: "TcpConnection", seg: TcpSegment, ack: int, advanced: bool,
        delivered: list[Sent], nbytes: int, dsack: tuple[int, int] | None, now: float,
    ) -> None:
        """RFC 8985 §6.2 steps 1-5 and §7.4, RFC 6937 for one ACK (SACK connections).

        ``advanced``: the ACK moved SND.UNA; ``delivered``: the records it
        acknowledged, cumulatively or selectively, for the first time;
        ``nbytes``: the bytes it newly delivered (RFC 6937 DeliveredData);
        ``dsack``: the D-SACK block it carried (RFC 2883), if any.
        """
        rack = self._rack
        q = self._sent
        if delivered:
            if q.in_order and q.clean:
                # In order: the last record is the newest, none was retransmitted.
                last = delivered[-1]
                rtt = now - last.xmit_ts
                rack.rtt = rtt
                if rack.min_rtt is None or rtt < rack.min_rtt:
                    rack.min_rtt = rtt
                rack.xmit_ts = last.xmit_ts
                rack.end_seq = last.end
                if last.end > rack.fack:
                    rack.fack = last.end
            else:
                rack.update(delivered, now, self._echo_predicate(seg))
        if dsack is not None or rack.dsack_round is not None:
            rack.dsack_seen(dsack is not None, self.snd_una, self.snd_max)
        if self._tlp_end is not None:
            self._tlp_on_ack(seg, ack, bool(delivered), dsack, now)
        if not q.clean:
            self._rack_detect(now)
        elif self._rack_at is not None:
            self._rack_at = None  # everything suspect was acknowledged
        if self._in_recovery and not self._rto_recovery:
            self._prr_on_ack(nbytes)
        if delivered or advanced:
            self._arm_pto(now)

    def _echo_predicate(self: "TcpConnection", seg: TcpSegment) -> Callable[[Sent], bool]:
        """``echoed_before(record)`` for Rack.update: TSecr older than its transmission."""
        ts = seg.timestamps
        if not self.ts_ok or ts is None or not ts[1]:
            return lambda s: False
        tsecr = ts[1]
        return lambda s: ts_lt(tsecr, self._tsval(s.xmit_ts))

    def _rack_detect(self: "TcpConnection", now: float) -> None:
        """Step 5 and the RACK timer; the first loss mark starts recovery."""
        q = self._sent
        if q.clean:
            self._rack_at = None
            return
        rack = self._rack
        reo = rack.reo_wnd(self._in_recovery, q.sacked_count, self.rto.srtt)
        lost, timeout = rack.detect_loss(q, now, reo)
        self._rack_at = now + timeout if timeout > 0 else None
        if lost:
            self.stats["rack_lost"] += lost
            if (
                not self._in_recovery and self.snd_una >= self._recover
                and self._state in _SENDING
            ):
                self._enter_recovery(now)

    def _enter_recovery(self: "TcpConnection", now: float) -> None:
        """RFC 6675 §5 step 4 (entered on RACK's first loss mark)."""
        self._in_recovery = True
        self._rto_recovery = False
        self.stats["fast_retransmit"] += 1
        self._recover = self.snd_max
        self.cc.on_loss(self.snd_max - self.snd_una, now)
        self._prr_delivered = self._prr_out = 0  # RFC 6937 §3
        self._prr_recover_fs = self.snd_max - self.snd_una
        self._rtx_first = True  # RFC 6675 §5 step 4.3, whatever pipe says
        self._rtt_seq = None
        self._tlp_end = None
        self._pto_at = None

    def _exit_recovery(self: "TcpConnection", ack: int) -> None:
        """SND.UNA reached the recovery point (RFC 6582 §3.2 step 3, RFC 6675)."""
        self._in_recovery = False
        self._dupacks = 0
        self._rtx_seq = None
        if self._rto_recovery:
            pass  # slow start goes on from where it is
        elif self.sack_ok:
            self.cc.cwnd = self.cc.ssthresh  # RFC 6937: PRR ends at ssthresh
        else:
            self.cc.on_recovery_exit(self.snd_max - ack)
        self._rto_recovery = False
        # Everything outstanding at the loss (or the timeout) is acknowledged:
        # the RTO is re-derived from SRTT/RTTVAR, no stale backoff.
        self.rto.reset_backoff()
        if self.sack_ok:
            self._rack.recovery_ended()

    def _prr_on_ack(self: "TcpConnection", delivered: int) -> None:
        """Proportional Rate Reduction (RFC 6937 §3, PRR-SSRB): cwnd for this ACK.

        While pipe is above ssthresh, sending follows deliveries in the
        ratio ssthresh / RecoverFS, so the window comes down smoothly
        instead of stalling for half a round trip (RFC 6675 alone); below
        it, slow-start-like catch-up bounded by what was delivered.
        """
        self._prr_delivered += delivered
        cc = self.cc
        pipe = self._sent.pipe(self.snd_max - self.snd_una)
        ssthresh = cc.ssthresh
        if pipe > ssthresh:
            sndcnt = -(-self._prr_delivered * ssthresh // self._prr_recover_fs) - self._prr_out
        else:
            limit = self._prr_delivered - self._prr_out
            if delivered > limit:
                limit = delivered
            limit += cc.smss
            sndcnt = ssthresh - pipe if ssthresh - pipe < limit else limit
        if sndcnt < 0:
            sndcnt = 0
        cwnd = pipe + sndcnt
        cc.cwnd = cwnd if cwnd > cc.smss else cc.smss

    # ------------------------------------------------------------------
    # Tail loss probe (RFC 8985 §7)
    # ------------------------------------------------------------------

    def _probe_allowed(self: "TcpConnection") -> bool:
        """May a loss probe be scheduled now (RFC 8985 §7.2, one deviation)?

        Data outstanding, SACK, no probe episode open, no timeout in
        progress, an open window.  DEVIATION (RFC 8985 §7.2 never probes
        during recovery): also during fast recovery once every segment
        marked lost has been retransmitted.  Recovery then waits on ACKs
        alone; if the last retransmissions or their ACKs are lost, nothing
        tells RACK, and on small windows (5 % loss) that ended in a
        timeout per a few recoveries.  The probe draws the ACK that lets
        RACK see it, as RFC 6675's rescue retransmission (rule 4) does by
        cwnd rather than by time.
        """
        if (
            self.snd_max <= self.snd_una or not self.sack_ok or self._tlp_end is not None
            or self._retransmits or not self.snd_wnd or not self.config.tail_loss_probe
        ):
            return False
        if self._in_recovery:
            return not self._rto_recovery and self._sent.next_lost(self.snd_una) is None
        return True

    def _arm_pto(self: "TcpConnection", now: float) -> None:
        """§7.2: (re)start the probe timeout, or stop it when no probe may go."""
        if not self._probe_allowed():
            self._pto_at = None
            return
        flight = self.snd_max - self.snd_una
        srtt = self.rto.srtt
        if srtt is None:
            pto = C.TCP_INITIAL_RTO
        else:
            pto = 2 * srtt
            if pto < C.TCP_TLP_MIN_PTO:
                pto = C.TCP_TLP_MIN_PTO  # DEVIATION (RFC 8985 has no floor): see constants
            if flight <= self._max_payload:
                pto += C.TCP_TLP_WORST_CASE_DELACK  # a lone segment may wait for a delayed ACK
        t = now + pto
        rto_at = self._rto_at
        if rto_at is not None and t > rto_at:
            t = rto_at
        self._pto_at = t

    def _on_pto(self: "TcpConnection", now: float) -> None:
        """§7.3: the probe timeout fired: a probe is due, the RTO re-armed."""
        if self._state not in _SENDING or not self._probe_allowed():
            return
        self._tlp_due = True
        self._rto_at = now + self.rto.rto

    def _send_tlp(
        self: "TcpConnection", now: float, out: list[TcpSegment], win: int,
        ts: tuple[int, int] | None, blocks: tuple[tuple[int, int], ...], pmax: int,
    ) -> None:
        """§7.3: new data if the window allows, else the last segment again.

        DEVIATION (RFC 8985 §7.3 sends one new segment): up to two full
        segments of new data.  When the probe answers the loss of the
        flight's last ACK (the data arrived), a single in-order segment
        may sit behind the receiver's delayed ACK (40-200 ms on Linux, more
        than the RTO floor); two full segments draw an ACK at once (RFC
        5681 §4.2, every second full segment).  Measured on the TUN path
        at 1 % loss: this removed most of the remaining timeouts.
        """
        n0 = len(out)
        for _ in range(C.TCP_TLP_NEW_SEGMENTS):
            if not (
                self._pending() and self.snd_una + self.snd_wnd > self.snd_nxt
                and not self._sent.full
            ):
                break
            self._send_from_nxt(now, out, pmax, win, ts, blocks, pmax, force=True)
        if len(out) > n0:
            self._tlp_retrans = False
        else:
            last = self._sent.last_unsacked()
            if last is None:
                return
            fin_seq = self._fin_seq
            top = last.end if last.end < self._sbuf.end else self._sbuf.end
            start = top - pmax if top - pmax > last.start else last.start
            fin = fin_seq is not None and last.end > fin_seq
            self._emit(out, now, start, top - start, fin, win, ts, blocks)
            self._tlp_retrans = True
            self._tlp_probe = (start, top + fin)
        self._tlp_end = self.snd_max
        self._tlp_dsacked = False
        self._tlp_in_recovery = self._in_recovery  # the window is reduced already
        self._pto_at = None
        self.stats["tlp"] += 1

    def _tlp_on_ack(
        self: "TcpConnection", seg: TcpSegment, ack: int, sacked_or_acked: bool,
        dsack: tuple[int, int] | None, now: float,
    ) -> None:
        """§7.4.2: did the probe repair a loss?  Then the window is reduced."""
        end = self._tlp_end
        assert end is not None
        if dsack is not None and self._tlp_retrans:
            lo, hi = self._tlp_probe
            if dsack[0] < hi and dsack[1] > lo:
                self._tlp_dsacked = True  # the original arrived: the probe was redundant
        if ack < end:
            return
        if not self._tlp_retrans or self._tlp_dsacked:
            self._tlp_end = None
        elif ack > end:
            # The probe repaired a loss: respond to it as to any loss
            # (unless it was sent during a recovery that already did).
            self._tlp_end = None
            self.stats["tlp_recovery"] += 1
            if not self._tlp_in_recovery and not self._in_recovery:
                self.cc.on_loss(self.cc.cwnd, now)
        elif not seg.sack_blocks and not sacked_or_acked and not seg.payload:
            self._tlp_end = None  # a duplicate ACK without SACK: both copies arrived

    # ------------------------------------------------------------------
    # Output during recovery: NextSeg()
    # ------------------------------------------------------------------

    def _sack_recovery(
        self: "TcpConnection", now: float, out: list[TcpSegment], win: int,
        ts: tuple[int, int] | None, blocks: tuple[tuple[int, int], ...], pmax: int,
    ) -> None:
        """RFC 6675 §5 step (C): while cwnd - pipe >= 1 SMSS, rule 1 then rule 2.

        The first lost segment of a recovery goes out regardless of pipe
        (step 4.3; after a timeout, RFC 6298 §5.4).
        """
        q = self._sent
        cwnd = self.cc.cwnd
        pipe = q.pipe(self.snd_max - self.snd_una)
        data_end = self._sbuf.end
        fin_seq = self._fin_seq
        for _ in range(len(q) + 1):  # bounded: each pass retransmits one record
            if cwnd - pipe < pmax and not self._rtx_first:
                return
            self._rtx_first = False
            lost = q.next_lost(self.snd_una)
            if lost is None:
                break
            start = lost.start
            top = lost.end if lost.end < data_end else data_end
            n = top - start if top - start < pmax else pmax
            fin = fin_seq is not None and start + n == fin_seq and lost.end > fin_seq
            self._emit(out, now, start, n, fin, win, ts, blocks)
            pipe += n + fin
            if start <= self.snd_una:
                # DEVIATION (RFC 6298 §5.3 restarts only on new ACKs): the
                # head is on its way again, the RTO measures from this
                # attempt (as Linux), so a recovery that is still repairing
                # the head by RACK is not cut short by the old deadline.
                self._rto_at = now + self.rto.rto
        if self._pending():
            self._send_from_nxt(now, out, cwnd - pipe, win, ts, blocks, pmax, force=False)

    # ------------------------------------------------------------------
    # Timers
    # ------------------------------------------------------------------

    def _on_rack_timer(self: "TcpConnection", now: float) -> None:
        """The reordering window of a suspect segment is over: look again."""
        if self._state in _SENDING and self.sack_ok:
            self._rack_detect(now)

    def _rto_with_sack(self: "TcpConnection", now: float) -> None:
        """RFC 8985 §6.3 on a retransmission timeout; recovery from SND.UNA."""
        q = self._sent
        if self._retransmits > 1:
            # RFC 2018 §8: the receiver may have reneged; stop trusting SACKs.
            # DEVIATION: only from the second consecutive timeout (Linux).
            self.scoreboard.clear()
            q.unsack_all()
        rack = self._rack
        reo = rack.reo_wnd(True, q.sacked_count, self.rto.srtt)
        q.mark_lost_on_timeout(self.snd_una, now, rack.rtt, reo)
        self._in_recovery = True
        self._rto_recovery = True
        self._recover = self.snd_max
        self._rtx_first = True  # RFC 6298 §5.4: the earliest segment (marked lost), now
        self._tlp_end = None
        self._pto_at = None
        self._rack_at = None
