"""Retransmission timeout estimator (RFC 6298) with exponential backoff.

Two numbers are kept apart so that the RTO can always be re-derived:

* the *base* RTO, ``SRTT + max(G, 4*RTTVAR)`` clamped to [rto_min, rto_max]
  (RFC 6298 §2.2-2.5), recomputed on every valid RTT sample;
* the *backoff* count, incremented by each expiry of the timer (§5.5) and
  cleared by a valid RTT sample (Karn's algorithm, §5: only unambiguous
  samples may feed the estimator, and the backed-off RTO is kept until one
  arrives) or explicitly when loss recovery ends (``reset_backoff``), so a
  connection never stays stuck on a backed-off timer (smoltcp #62, NuttX
  #13161 in docs/tcp.md).

``rto`` is therefore ``min(base << backoff, rto_max)``.
"""

from __future__ import annotations

from proxy.constants import TCP_CLOCK_GRANULARITY

__all__ = ["RtoEstimator"]


class RtoEstimator:
    """SRTT/RTTVAR/RTO per RFC 6298 §2, backoff per §5.5."""

    __slots__ = ("srtt", "rttvar", "base", "backoff", "rto_min", "rto_max", "samples")

    def __init__(self, initial_rto: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        "Smoothed RTT (None before the first sample)."
        self.rttvar = 0.0
        "RTT variation."
        self.base = initial_rto
        "RTO before backoff (§2.1: 1 s until the first sample)."
        self.backoff = 0
        "Number of timer expiries since the last valid sample (§5.5)."
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.samples = 0
        "Valid samples taken (for tests and status)."

    @property
    def rto(self) -> float:
        """The current retransmission timeout, backoff included."""
        r = self.base * (1 << self.backoff) if self.backoff < 32 else self.rto_max
        return r if r < self.rto_max else self.rto_max

    def sample(self, r: float) -> None:
        """Feed one unambiguous RTT measurement ``r`` (RFC 6298 §2.2-2.3)."""
        if r < 0:
            return
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            # Beta = 1/4, alpha = 1/8; RTTVAR first, with the old SRTT.
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        k = 4 * self.rttvar
        base = self.srtt + (k if k > TCP_CLOCK_GRANULARITY else TCP_CLOCK_GRANULARITY)
        self.base = min(max(base, self.rto_min), self.rto_max)
        self.backoff = 0
        self.samples += 1

    def on_timeout(self) -> None:
        """The timer expired: double the RTO (§5.5), bounded by rto_max."""
        if self.rto < self.rto_max:
            self.backoff += 1

    def reset_backoff(self) -> None:
        """Recovery is over: go back to the RTO derived from SRTT/RTTVAR."""
        self.backoff = 0

    def set_base(self, value: float) -> None:
        """Force the base RTO (RFC 6298 §5.7: 3 s after a SYN timeout)."""
        self.base = min(max(value, self.rto_min), self.rto_max)
