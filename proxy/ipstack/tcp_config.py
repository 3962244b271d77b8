"""TCP tunables: one frozen configuration shared by every connection.

Defaults come from :mod:`proxy.constants` (each with its RFC or Linux
source); :meth:`TcpConfig.__post_init__` rejects values that would break an
invariant of the machine (a buffer that cannot be advertised, an RTO range
upside down) with :class:`ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy import constants as C
from proxy.errors import ConfigError

__all__ = ["TcpConfig", "CONGESTION_CONTROLS"]

#: Congestion controllers selectable by name (see tcp_cc.py).
CONGESTION_CONTROLS = ("newreno", "cubic")


@dataclass(frozen=True)
class TcpConfig:
    """Per-connection TCP settings (sizes in bytes, times in seconds)."""

    mss: int = C.TCP_MSS_IPV6_MIN
    "MSS we advertise and the ceiling of what we send (MTU 1280 - 40 - 20)."
    send_buffer: int = C.TCP_SEND_BUFFER
    "Bytes ``send()`` may queue (unacknowledged + unsent); beyond: backpressure."
    recv_buffer: int = C.TCP_RECV_BUFFER
    "Bytes of in-order data held for the application; the advertised window."
    window_scaling: bool = True
    "Offer the Window Scale option (RFC 7323 §2)."
    timestamps: bool = True
    "Offer the Timestamps option: RTTM and PAWS (RFC 7323 §3-5)."
    sack: bool = True
    "Offer SACK-Permitted; send SACK blocks, use them for recovery (RFC 2018, 6675, 8985)."
    tail_loss_probe: bool = True
    "With SACK, probe a silent tail after ~2*SRTT instead of waiting for the RTO (RFC 8985 §7)."
    nodelay: bool = False
    "Disable Nagle's algorithm (RFC 9293 §3.7.4)."
    delayed_ack: float = C.TCP_DELAYED_ACK
    "Delayed-ACK timeout (RFC 1122 §4.2.3.2: < 0.5 s); 0 acknowledges at once."
    keepalive: bool = False
    "Send keepalive probes on an idle connection (RFC 1122 §4.2.3.6)."
    keepalive_idle: float = C.TCP_KEEPALIVE_IDLE
    "Idle time before the first keepalive probe."
    keepalive_interval: float = C.TCP_KEEPALIVE_INTERVAL
    "Time between unanswered probes."
    keepalive_count: int = C.TCP_KEEPALIVE_COUNT
    "Unanswered probes before the connection is declared dead."
    time_wait: float = C.TCP_TIME_WAIT
    "TIME-WAIT duration (2*MSL, RFC 9293 §3.4.2)."
    fin_wait_2_timeout: float = C.TCP_FIN_WAIT_2_TIMEOUT
    "How long a fully closed connection waits in FIN-WAIT-2 for the peer's FIN."
    initial_rto: float = C.TCP_INITIAL_RTO
    "RTO before the first RTT sample (RFC 6298 §2.1)."
    rto_min: float = C.TCP_RTO_MIN
    "Lower bound of the RTO (RFC 6298 §2.4; see docs/deviations.md)."
    rto_max: float = C.TCP_RTO_MAX
    "Upper bound of the RTO and of its backoff (RFC 6298 §2.5)."
    max_retransmits: int = C.TCP_MAX_RETRANSMITS
    "Retransmissions (or unanswered zero-window probes) before giving up (R2)."
    syn_retries: int = C.TCP_SYN_RETRIES
    "Retransmissions of a SYN or SYN-ACK before giving up."
    congestion_control: str = "newreno"
    "``newreno`` (RFC 5681/6582, RFC 6675 with SACK) or ``cubic`` (RFC 9438)."
    initial_window: int = C.TCP_INITIAL_WINDOW_SEGMENTS
    "Initial congestion window in segments (RFC 6928)."

    def __post_init__(self) -> None:
        if not C.TCP_HEADER_LEN + 16 <= self.mss <= 65535 - 60:
            raise ConfigError("tcp.mss", f"{self.mss} out of range")
        for name in ("send_buffer", "recv_buffer"):
            v = getattr(self, name)
            if not 1 <= v <= C.TCP_MAX_BUFFER:
                raise ConfigError(f"tcp.{name}", f"{v} not in 1..{C.TCP_MAX_BUFFER}")
        if not self.window_scaling and self.recv_buffer > 65535:
            raise ConfigError("tcp.recv_buffer", "above 65535 needs window_scaling")
        if not 0 <= self.delayed_ack < 0.5:
            raise ConfigError("tcp.delayed_ack", "must be in [0, 0.5) (RFC 1122 §4.2.3.2)")
        if not 0 < self.rto_min <= self.initial_rto <= self.rto_max:
            raise ConfigError("tcp.rto_min", "need 0 < rto_min <= initial_rto <= rto_max")
        for name in ("keepalive_idle", "keepalive_interval", "time_wait", "fin_wait_2_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"tcp.{name}", "must not be negative")
        for name in ("max_retransmits", "syn_retries", "keepalive_count", "initial_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tcp.{name}", "must be at least 1")
        if self.congestion_control not in CONGESTION_CONTROLS:
            raise ConfigError("tcp.congestion_control", f"one of {CONGESTION_CONTROLS}")

    @property
    def wscale(self) -> int:
        """The window shift we offer: the least that makes recv_buffer fit 16 bits."""
        if not self.window_scaling:
            return 0
        shift = 0
        while (self.recv_buffer >> shift) > 65535 and shift < C.TCP_MAX_WSCALE:
            shift += 1
        return shift
