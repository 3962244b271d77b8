"""Congestion control: NewReno (RFC 5681 + RFC 3465) and CUBIC (RFC 9438).

Both keep ``cwnd`` and ``ssthresh`` in bytes and share one small protocol
called by the connection machine:

* ``on_ack(acked, now, srtt)``: new data was cumulatively acknowledged
  outside loss recovery, while the sender was using its window;
* ``on_loss(flight, now)``: loss detected by duplicate ACKs or SACK (fast
  retransmit, RFC 5681 §3.2 step 2 / RFC 6675 §5 step 4.2);
* ``on_rto(flight, now)``: the retransmission timer expired (RFC 5681 §3.1
  eq. 4: ssthresh from FlightSize, cwnd = loss window);
* ``on_recovery_exit(flight)``: a full ACK ended recovery (RFC 6582 §3.2
  step 3: cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS)).

What stays in the machine: the dup-ACK counting, NewReno's window
inflation during recovery and the RFC 6675 pipe; these depend on the
scoreboard, not on the growth function.
"""

from __future__ import annotations

from proxy.constants import TCP_CUBIC_BETA, TCP_CUBIC_C

__all__ = ["NewReno", "Cubic", "make_congestion_control"]


class NewReno:
    """RFC 5681 slow start / congestion avoidance with byte counting (RFC 3465)."""

    name = "newreno"

    def __init__(self, smss: int, initial_window: int) -> None:
        self.smss = smss
        "Sender MSS the window is counted in."
        self.cwnd = initial_window * smss
        "Congestion window (bytes)."
        self.ssthresh = 1 << 30
        "Slow-start threshold, 'arbitrarily high' initially (RFC 5681 §3.1)."
        self._acked = 0

    def set_smss(self, smss: int) -> None:
        """The sender MSS changed (negotiation, PMTU): rescale nothing, just count in it."""
        self.smss = smss

    def on_ack(self, acked: int, now: float, srtt: float | None) -> None:
        """Grow the window for ``acked`` newly acknowledged bytes."""
        if self.cwnd < self.ssthresh:
            # RFC 3465 §2.2: slow start with byte counting, L = 2*SMSS.
            self.cwnd += min(acked, 2 * self.smss)
            return
        # RFC 5681 §3.1 / RFC 3465 §2.1: one SMSS per cwnd of acknowledged bytes.
        self._acked += acked
        if self._acked >= self.cwnd:
            self._acked -= self.cwnd
            self.cwnd += self.smss

    def _half(self, flight: int) -> int:
        return max(flight // 2, 2 * self.smss)

    def on_loss(self, flight: int, now: float) -> None:
        """RFC 5681 §3.2 step 2 / RFC 6582: halve (eq. 4), cwnd = ssthresh."""
        self.ssthresh = self._half(flight)
        self.cwnd = self.ssthresh
        self._acked = 0

    def on_rto(self, flight: int, now: float) -> None:
        """RFC 5681 §3.1 eq. 4 and the 1-SMSS loss window."""
        self.ssthresh = self._half(flight)
        self.cwnd = self.smss
        self._acked = 0

    def on_recovery_exit(self, flight: int) -> None:
        """RFC 6582 §3.2 step 3 (1): deflate to ssthresh, avoiding a burst."""
        self.cwnd = min(self.ssthresh, max(flight, self.smss) + self.smss)
        self._acked = 0


class Cubic(NewReno):
    """CUBIC (RFC 9438) in congestion avoidance; slow start as NewReno.

    Windows are computed in segments as in the RFC and applied in bytes.
    Includes the Reno-friendly region (§4.3) and fast convergence (§4.7).
    """

    name = "cubic"

    def __init__(self, smss: int, initial_window: int) -> None:
        super().__init__(smss, initial_window)
        self._w_max = 0.0
        self._k = 0.0
        self._epoch: float | None = None
        self._w_est = 0.0
        self._cwnd_epoch = 0.0

    def on_ack(self, acked: int, now: float, srtt: float | None) -> None:
        if self.cwnd < self.ssthresh:
            super().on_ack(acked, now, srtt)
            return
        smss = self.smss
        cwnd = self.cwnd / smss
        if self._epoch is None:
            # §4.2: a new congestion-avoidance epoch starts now.
            self._epoch = now
            self._cwnd_epoch = cwnd
            if cwnd < self._w_max:
                self._k = ((self._w_max - cwnd) / TCP_CUBIC_C) ** (1 / 3)
            else:
                self._k = 0.0
                self._w_max = cwnd
            self._w_est = cwnd
        rtt = srtt or 0.0
        t = now - self._epoch + rtt
        target = TCP_CUBIC_C * (t - self._k) ** 3 + self._w_max
        # §4.2: the target stays within [cwnd, 1.5 cwnd].
        target = min(max(target, cwnd), 1.5 * cwnd)
        segs = acked / smss
        # §4.3: Reno-friendly estimate with alpha = 3(1-beta)/(1+beta).
        alpha = 3 * (1 - TCP_CUBIC_BETA) / (1 + TCP_CUBIC_BETA)
        self._w_est += alpha * segs / cwnd
        if self._w_est > target:
            new = self._w_est
        else:
            new = cwnd + (target - cwnd) / cwnd * segs
        self.cwnd = max(self.cwnd, int(new * smss))

    def _reduce(self) -> None:
        cwnd = self.cwnd / self.smss
        # §4.7 fast convergence.
        if cwnd < self._w_max:
            self._w_max = cwnd * (1 + TCP_CUBIC_BETA) / 2
        else:
            self._w_max = cwnd
        self._epoch = None
        self.ssthresh = max(int(self.cwnd * TCP_CUBIC_BETA), 2 * self.smss)

    def on_loss(self, flight: int, now: float) -> None:
        """§4.6: multiplicative decrease by beta_cubic = 0.7."""
        self._reduce()
        self.cwnd = self.ssthresh

    def on_rto(self, flight: int, now: float) -> None:
        """§4.8: same reduction, then restart from one segment."""
        self._reduce()
        self.cwnd = self.smss


def make_congestion_control(name: str, smss: int, initial_window: int) -> NewReno:
    """The controller named in :class:`TcpConfig` (``newreno`` or ``cubic``)."""
    if name == "cubic":
        return Cubic(smss, initial_window)
    return NewReno(smss, initial_window)
