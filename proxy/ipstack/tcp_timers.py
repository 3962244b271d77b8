"""Timers of a TcpConnection: deadlines as values, ``handle_timer(now)``.

Eight deadlines, each an absolute time or None, all on the caller's clock:

* retransmission (RFC 6298 §5): armed when data is sent and the timer is
  off (§5.1), stopped when everything is acknowledged (§5.2), restarted
  only when new data is acknowledged (§5.3).  On expiry (§5.4-5.6):
  back off, ssthresh/cwnd per RFC 5681 §3.1, set ``recover`` = SND.MAX
  (RFC 6582); with SACK, RACK marks the losses (RFC 8985 §6.3) and
  recovery resends them from SND.UNA in slow start (tcp_recovery.py);
  without SACK, go-back-N from SND.UNA.  A SYN or SYN-ACK is retransmitted
  ``syn_retries`` times, data ``max_retransmits`` times, then the
  connection times out.
* tail loss probe and RACK reordering timer (RFC 8985 §7 and §6.2; see
  tcp_recovery.py).
* persist (RFC 1122 §4.2.2.17): while the peer's window is zero (the
  retransmission timer is off then), or while queued data is held back by
  sender SWS avoidance with nothing in flight (the RFC 9293 §3.8.6.2.1
  override timeout).  Backs off like the RTO up to 60 s; the connection
  is kept as long as probes are answered, and times out after
  ``max_retransmits`` unanswered ones.
* delayed ACK (RFC 1122 §4.2.3.2, RFC 5681 §4.2).
* keepalive (RFC 1122 §4.2.3.6): after ``keepalive_idle`` without any
  segment from the peer, ``keepalive_count`` probes ``keepalive_interval``
  apart (SEQ = SND.UNA - 1, no data), then the connection times out.
* TIME-WAIT (2*MSL) and orphaned FIN-WAIT-2.

``handle_timer`` may be called early or late: every handler checks its
own deadline and re-derives what to do from the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.ipstack.tcp_events import TcpState

if TYPE_CHECKING:  # pragma: no cover
    from proxy.ipstack.tcp import TcpConnection

__all__ = ["TcpTimerMixin"]

S = TcpState
_SENDING = frozenset((S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK))
_KEEPALIVE = frozenset((S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2))


class TcpTimerMixin:
    """``poll_at``, ``handle_timer`` and the expiry handlers."""

    __slots__ = ()

    def poll_at(self: "TcpConnection") -> float | None:
        """The earliest deadline, or None when no timer runs."""
        t = self._rto_at
        for d in (
            self._pto_at, self._rack_at, self._persist_at, self._delack_at, self._tw_at,
            self._fw2_at,
        ):
            if d is not None and (t is None or d < t):
                t = d
        if self.config.keepalive and self._state in _KEEPALIVE:
            d = self._keepalive_deadline()
            if t is None or d < t:
                t = d
        return t

    def handle_timer(self: "TcpConnection", now: float) -> None:
        """Run every timer whose deadline is at or before ``now``."""
        if self._rack_at is not None and now >= self._rack_at:
            self._rack_at = None
            self._on_rack_timer(now)
        if self._pto_at is not None and now >= self._pto_at:
            # Before the RTO: a probe due at the same time replaces it once.
            self._pto_at = None
            self._on_pto(now)
        if self._rto_at is not None and now >= self._rto_at:
            self._rto_at = None
            self._on_rto(now)
        if self._persist_at is not None and now >= self._persist_at:
            self._persist_at = None
            self._on_persist(now)
        if self._delack_at is not None and now >= self._delack_at:
            self._delack_at = None
            self._ack_now = True
        if self.config.keepalive and self._state in _KEEPALIVE:
            if now >= self._keepalive_deadline():
                self._on_keepalive(now)
        if self._tw_at is not None and now >= self._tw_at:
            self._tw_at = None
            if self._state is S.TIME_WAIT:
                self._enter_closed(None)
        if self._fw2_at is not None and now >= self._fw2_at:
            self._fw2_at = None
            if self._state is S.FIN_WAIT_2:
                # DEVIATION (Linux tcp_fin_timeout; no such timer in RFC 9293).
                self._queue_control(self._rst(self.snd_nxt))
                self._enter_closed("timeout")

    # ------------------------------------------------------------------

    def _on_rto(self: "TcpConnection", now: float) -> None:
        """RFC 6298 §5.4-5.6 (and RFC 1122 §4.2.3.5's give-up threshold)."""
        cfg = self.config
        st = self._state
        if st is S.SYN_SENT or st is S.SYN_RECEIVED:
            self._syn_retries += 1
            if self._syn_retries > cfg.syn_retries:
                self._enter_closed(self._timeout_reason())
                return
            self.rto.on_timeout()
            self._syn_due = True
            self._rto_at = now + self.rto.rto
            return
        if st not in _SENDING or self.snd_max <= self.snd_una or self.snd_wnd == 0:
            return  # nothing outstanding, or the persist timer owns it
        self._retransmits += 1
        self.stats["rto"] += 1
        if self._retransmits > cfg.max_retransmits:
            self._queue_control(self._rst(self.snd_nxt))
            self._enter_closed(self._timeout_reason())
            return
        cc = self.cc
        if self._retransmits == 1:
            cc.on_rto(self.snd_max - self.snd_una, now)  # RFC 5681 §3.1 eq. 4
        else:
            cc.cwnd = cc.smss  # later timeouts: ssthresh stays (RFC 5681 §3.1)
        self.rto.on_timeout()
        self._dupacks = 0
        self._rtt_seq = None
        self._rto_at = now + self.rto.rto
        if self.sack_ok:
            self._rto_with_sack(now)  # RACK marks, recovery from SND.UNA
            return
        self._in_recovery = False
        self._recover = self.snd_max
        self._rtx_seq = None
        self.snd_nxt = self.snd_una  # go-back-N

    def _on_persist(self: "TcpConnection", now: float) -> None:
        if self._state not in _SENDING or not (self._pending() or self.snd_max > self.snd_una):
            return
        self._probes += 1
        if self._probes > self.config.max_retransmits:
            self._queue_control(self._rst(self.snd_nxt))
            self._enter_closed(self._timeout_reason())
            return
        self._probe_due = True
        self._persist_backoff += 1
        self._persist_at = now + self._persist_interval()

    def _keepalive_deadline(self: "TcpConnection") -> float:
        cfg = self.config
        return self._last_rx + cfg.keepalive_idle + self._ka_probes * cfg.keepalive_interval

    def _on_keepalive(self: "TcpConnection", now: float) -> None:
        if self.snd_max > self.snd_una or self._pending():
            # Busy: the retransmission or persist timer watches the peer.
            self._last_rx = now
            return
        if self._ka_probes >= self.config.keepalive_count:
            self._queue_control(self._rst(self.snd_nxt))
            self._enter_closed("timeout")
            return
        self._ka_probes += 1
        self._keepalive_due = True
