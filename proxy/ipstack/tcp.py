"""TCP connection machine (RFC 9293), sans-I/O.

Theory of operation
-------------------

A :class:`TcpConnection` is one TCB.  It never touches a socket or a clock:
the Interface (proxy/ipstack) hands it parsed segments, the application
calls ``send``/``receive``/``shutdown``/``close``/``abort``, and the driver
calls ``handle_timer(now)`` at ``poll_at()``.  Everything the machine wants
to transmit is pulled with ``segments_to_send(now)``: complete
:class:`TcpSegment` reprs the Interface wraps in IPv6.  Facts for the
application are pulled with ``next_event()``.

The code is split by direction, one mixin per module, sharing the
attributes initialised in :meth:`TcpConnection.__init__`:

* ``tcp.py`` (this file): construction (active/passive open), the
  application API, events, state changes, ICMP errors.
* ``tcp_fastpath.py``: header prediction, the in-order data fast path
  taken before the general arrival path (and proven equal to it).
* ``tcp_input.py``: segment arrival, in RFC 9293 §3.10.7's order
  (SYN-SENT; then sequence check with PAWS, RST, SYN, ACK, text, FIN), with
  the RFC 5961 defences, SACK scoreboard updates, dup-ACK counting and
  NewReno loss recovery (without SACK).
* ``tcp_recovery.py``: with SACK, loss detection and recovery: RACK
  (RFC 8985), PRR (RFC 6937), NextSeg() on RACK's marks (RFC 6675), the
  tail loss probe, recovery after a timeout.
* ``tcp_output.py``: what to send now: SYN/SYN-ACK, retransmissions, new
  data under the peer window, cwnd, Nagle and SWS rules, FIN, probes, and
  ACKs (delayed, every second segment, immediate for out-of-order data,
  window updates after reads).
* ``tcp_timers.py``: retransmission (RFC 6298), probe and RACK timers,
  persist, delayed ACK, keepalive, TIME-WAIT and FIN-WAIT-2; ``poll_at``.
* helpers: ``tcp_buffers`` (send buffer, receive reassembly), ``tcp_rack``
  (per-segment transmission records, RACK state), ``tcp_sack``
  (scoreboard), ``tcp_rto`` (estimator), ``tcp_cc`` (NewReno / CUBIC),
  ``tcp_window`` (window arithmetic).

Sequence numbers are unbounded integers inside the machine: ISS + bytes
sent, never reduced modulo 2**32.  Incoming 32-bit values are unwrapped
against RCV.NXT or SND.UNA (``seq_unwrap``); outgoing ones are masked.  So
``a < b`` is sequence order and wraparound bugs cannot hide in comparisons.

The send buffer holds every byte from SND.UNA to the last queued byte, so
retransmissions are views of it (``peek``); what was sent when, and what
became of it, is in one small record per segment (``tcp_rack.SentQueue``).
Without SACK, SND.NXT goes back to SND.UNA after a timeout (go-back-N);
with SACK the lost segments are resent from their records.  SND.MAX is
the highest sequence sent (RFC 6675's HighData).

Bounded everything: send buffer (``send()`` returns what it accepted),
receive buffer (the advertised window is its free space, so a peer that
respects the window cannot overrun it, and data beyond the window is
dropped), reassembly and scoreboard segment counts, pending RSTs,
challenge-ACK rate.  Events are edge-triggered (see tcp_events.py).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Protocol

from proxy import constants as C
from proxy.errors import DropReason
from proxy.ipstack.tcp_buffers import Reassembler, SendBuffer
from proxy.ipstack.tcp_cc import make_congestion_control
from proxy.ipstack.tcp_config import TcpConfig
from proxy.ipstack.tcp_events import (
    CLOSE_REASONS, ConnectionClosed, Connected, DataReceived, EndOfStream, SendSpaceAvailable,
    TcpEvent, TcpState,
)
from proxy.ipstack.tcp_fastpath import TcpFastPathMixin
from proxy.ipstack.tcp_input import TcpInputMixin, reset_for
from proxy.ipstack.tcp_output import TcpOutputMixin
from proxy.ipstack.tcp_rack import Rack, SentQueue
from proxy.ipstack.tcp_recovery import TcpRecoveryMixin
from proxy.ipstack.tcp_rto import RtoEstimator
from proxy.ipstack.tcp_sack import Scoreboard
from proxy.ipstack.tcp_timers import TcpTimerMixin
from proxy.ipstack.wire.tcp import ACK, RST, SEQ_MASK, SYN, TcpSegment, seq_unwrap

__all__ = [
    "TcpConfig", "TcpConnection", "TcpState", "TcpEvent", "Connected", "DataReceived",
    "SendSpaceAvailable", "EndOfStream", "ConnectionClosed", "reset_for", "ICMP_KINDS",
]

log = logging.getLogger(__name__)

Endpoint = tuple[bytes, int]


class Rng(Protocol):
    """What the machine needs from ``random.Random`` (ISN, timestamp offset).

    Seeded ``random.Random`` in tests, ``random.SystemRandom()`` in production;
    a Protocol so that this core never imports ``random`` (rule 2).
    """

    def getrandbits(self, k: int, /) -> int: ...


S = TcpState
#: ICMP error kinds the Interface reports (besides "packet-too-big:<mtu>").
ICMP_KINDS = (
    "unreachable-net", "unreachable-host", "unreachable-port", "admin-prohibited",
    "time-exceeded",
)
_HARD_ICMP = frozenset(ICMP_KINDS[:4])

# Shared event instances: the data-less events are immutable singletons.
_CONNECTED = Connected()
_DATA = DataReceived()
_SPACE = SendSpaceAvailable()
_EOF = EndOfStream()


class TcpConnection(
    TcpFastPathMixin, TcpInputMixin, TcpOutputMixin, TcpRecoveryMixin, TcpTimerMixin,
):
    """One TCP connection (RFC 9293).  Performs no I/O.

    Driven by three kinds of input:

    - segments from the peer, :meth:`segment_received` (and ICMP errors
      about our packets, :meth:`icmp_error_received`);
    - the application, :meth:`send`, :meth:`receive`, :meth:`shutdown`,
      :meth:`close`, :meth:`abort`;
    - the passage of time, :meth:`handle_timer`.

    Output is pulled with :meth:`segments_to_send` and :meth:`next_event`;
    :meth:`poll_at` gives the next deadline.  Build one with
    :meth:`connect` (active open) or :meth:`accept` (passive open).
    """

    def __init__(
        self, config: TcpConfig, local: Endpoint, remote: Endpoint, rng: Rng,
        now: float,
    ) -> None:
        """Use :meth:`connect` or :meth:`accept`; this only zeroes the TCB."""
        self.config = config
        self._local = local
        self._remote = remote
        self._lport = local[1]
        self._rport = remote[1]
        self._state = S.CLOSED
        self.drops: Counter[DropReason] = Counter()
        "Segments not used, by reason (one vocabulary, proxy.errors)."
        self.stats: Counter[str] = Counter()
        "Counters for tests and status: timeouts, fast retransmits, segments..."
        self._events: deque[TcpEvent] = deque()
        self._closed_reported = False
        self._active = False  # True for connect(): decides "refused" vs "reset"

        # --- send sequence space (RFC 9293 §3.3.1), unbounded integers ---
        # DEVIATION (RFC 9293 §3.4.1 clock-driven ISN, RFC 6528): 32 random
        # bits from the injected RNG; unpredictable, not monotonic per tuple.
        self.iss = rng.getrandbits(32)
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.snd_max = self.iss
        self.snd_wnd = 0
        self.max_snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = self.iss
        self._sbuf = SendBuffer(self.iss + 1, config.send_buffer)
        self._fin_seq: int | None = None  # sequence number of our FIN once queued
        self._shut_wr = False  # the application called shutdown() or close()
        self._orphan = False  # the application called close(): nobody reads
        self._send_blocked = False
        self._snd_sml = self.iss  # end of the last small segment sent (Nagle/Minshall)

        # --- receive sequence space ---
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0  # right edge of the window we advertised
        self.rcv_wup = 0  # RCV.NXT in the last segment we sent (Last.ACK.sent)
        self._rbuf = bytearray()
        self._ooo = Reassembler(C.TCP_MAX_OOO_SEGMENTS)
        self._peer_fin: int | None = None  # sequence number of the peer's FIN
        self._fin_received = False
        self._data_event = False

        # --- options (negotiated in the handshake) ---
        self.rcv_wscale = config.wscale if config.window_scaling else 0
        self.snd_wscale = 0
        self.ws_ok = False
        self.ts_ok = False
        self.sack_ok = False
        self._peer_offered: tuple[bool, bool, bool] = (False, False, False)  # ws, ts, sack
        self._peer_mss = C.TCP_DEFAULT_PEER_MSS
        self._mss = min(config.mss, self._peer_mss)  # RFC 6691 MSS (options not yet taken off)
        self._ts_len = 0
        self._max_payload = self._mss
        self._rcv_mss_v = config.mss
        self._ts_offset = rng.getrandbits(32)  # RFC 7323 §5.4: random per connection
        self._ts_recent = 0
        self._ts_recent_at: float | None = None

        # --- retransmission, congestion control, recovery ---
        self.rto = RtoEstimator(config.initial_rto, config.rto_min, config.rto_max)
        self.cc = make_congestion_control(
            config.congestion_control, self._max_payload, config.initial_window)
        self.scoreboard = Scoreboard(C.TCP_MAX_SACK_RANGES)
        self._sent = SentQueue(self.iss + 1, self._max_records())
        self._rack = Rack()  # RFC 8985 state (used with SACK)
        self._in_recovery = False
        self._rto_recovery = False  # the recovery started with a timeout (SACK)
        self._recover = self.iss  # RFC 6582 "recover" / RFC 6675 RecoveryPoint
        self._dupacks = 0
        self._rtx_seq: int | None = None  # one retransmission due (NewReno, timeout)
        self._rtx_first = False  # SACK recovery: the first lost segment is due
        self._prr_delivered = 0  # RFC 6937 state of the current recovery
        self._prr_out = 0
        self._prr_recover_fs = 1
        self._partial_acks = 0
        self._rtt_seq: int | None = None  # RTT timing without timestamps (Karn)
        self._rtt_time = 0.0
        self._retransmits = 0  # consecutive timeouts without progress (R2)
        self._syn_retries = 0
        self._soft_error: str | None = None
        self._cwnd_limited = False

        # --- output flags ---
        self._ctrl: list[TcpSegment] = []
        self._syn_due = False
        self._ack_now = False
        self._dupacks_owed = 0
        self._dsack: tuple[int, int] | None = None
        self._wnd_check = False
        self._probe_due = False
        self._keepalive_due = False
        self._chal_start = -1e18
        self._chal_count = 0

        # --- timers (absolute times or None) ---
        self._rto_at: float | None = None
        self._pto_at: float | None = None  # RFC 8985 §7 probe timeout
        self._rack_at: float | None = None  # RFC 8985 §6.2 reordering timer
        self._tlp_due = False
        self._tlp_end: int | None = None  # TLP.end_seq: a probe episode is open
        self._tlp_retrans = False  # TLP.is_retrans
        self._tlp_probe = (0, 0)  # the range a retransmitted probe carried
        self._tlp_dsacked = False
        self._tlp_in_recovery = False
        self._persist_at: float | None = None
        self._persist_backoff = 0
        self._probes = 0
        self._delack_at: float | None = None
        self._last_rx = now
        self._ka_probes = 0
        self._ka_at: float | None = None
        self._tw_at: float | None = None
        self._fw2_at: float | None = None

    # ------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------

    @classmethod
    def connect(
        cls, config: TcpConfig, *, local: Endpoint, remote: Endpoint, rng: Rng,
        now: float,
    ) -> "TcpConnection":
        """Active open (RFC 9293 §3.10.1): SYN-SENT with a SYN due now."""
        conn = cls(config, local, remote, rng, now)
        conn.snd_nxt = conn.snd_max = conn.iss + 1
        conn._active = True
        conn._state = S.SYN_SENT
        conn._syn_due = True
        return conn

    @classmethod
    def accept(
        cls, config: TcpConfig, syn: TcpSegment, *, local: Endpoint, remote: Endpoint,
        rng: Rng, now: float,
    ) -> "TcpConnection":
        """Passive open from a listener that received ``syn`` (RFC 9293 §3.10.7.2).

        The connection starts in SYN-RECEIVED with a SYN-ACK due.  ``syn``
        must be a SYN without ACK or RST (the Interface answers anything
        else itself).  DEVIATION (RFC 9293 §3.10.7.2 says queue it): data on
        the SYN is not acknowledged; the peer retransmits it.
        """
        if syn.flags & (SYN | ACK | RST) != SYN:
            raise ValueError(f"accept() needs a bare SYN, got {syn!r}")
        conn = cls(config, local, remote, rng, now)
        conn.snd_nxt = conn.snd_max = conn.iss + 1
        conn._take_syn(syn, now)
        conn._state = S.SYN_RECEIVED
        conn._syn_due = True
        return conn

    def _take_syn(self, syn: TcpSegment, now: float) -> None:
        """Record the peer's SYN: IRS and its options (RFC 9293 §3.10.7.2-3)."""
        cfg = self.config
        self.irs = syn.seq
        self.rcv_nxt = syn.seq + 1
        self.rcv_wup = self.rcv_nxt
        self.rcv_adv = self.rcv_nxt + min(cfg.recv_buffer, 65535)
        self._peer_offered = (
            syn.wscale is not None, syn.timestamps is not None, syn.sack_permitted)
        # RFC 7323 §2.2: scaling only when both SYNs carry the option; a
        # shift above 14 is used as 14 (§2.3).
        self.ws_ok = cfg.window_scaling and syn.wscale is not None
        if self.ws_ok:
            self.snd_wscale = min(syn.wscale or 0, C.TCP_MAX_WSCALE)
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.ts_ok = cfg.timestamps and syn.timestamps is not None
        if self.ts_ok and syn.timestamps is not None:
            self._ts_recent = syn.timestamps[0]
            self._ts_recent_at = now
        self.sack_ok = cfg.sack and syn.sack_permitted
        # RFC 9293 §3.7.1: the peer's MSS or the IPv6 default; floor against
        # absurdly small values (Linux tcp_min_snd_mss).
        peer = syn.mss if syn.mss is not None else C.TCP_DEFAULT_PEER_MSS
        self._peer_mss = max(peer, C.TCP_MIN_SND_MSS)
        self._set_mss(min(cfg.mss, self._peer_mss))
        self.snd_wnd = syn.window  # RFC 7323 §2.2: never scaled in a SYN
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1 = syn.seq

    def _max_records(self) -> int:
        """Bound on transmission records (see TCP_MAX_SENT_SEGMENTS)."""
        return max(C.TCP_MAX_SENT_SEGMENTS, 2 * self.config.send_buffer // self.config.mss)

    def _set_mss(self, mss: int) -> None:
        """Effective MSS; the payload limit leaves room for timestamps (RFC 6691)."""
        self._mss = max(mss, C.TCP_MIN_SND_MSS)
        self._ts_len = C.TCP_TS_OPTION_LEN if self.ts_ok else 0
        self._max_payload = self._mss - self._ts_len
        self._rcv_mss_v = self.config.mss - self._ts_len
        self.cc.set_smss(self._max_payload)

    # ------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------

    @property
    def state(self) -> TcpState:
        """The RFC 9293 state."""
        return self._state

    @property
    def local(self) -> Endpoint:
        """``(address, port)`` of our end."""
        return self._local

    @property
    def remote(self) -> Endpoint:
        """``(address, port)`` of the peer."""
        return self._remote

    @property
    def readable(self) -> int:
        """In-order bytes waiting for :meth:`receive`."""
        return len(self._rbuf)

    @property
    def send_space(self) -> int:
        """Bytes :meth:`send` would accept now (0 once the write side is shut)."""
        if self._shut_wr or self._state is S.CLOSED:
            return 0
        return self._sbuf.space

    @property
    def closed(self) -> bool:
        """True when the Interface may forget this connection.

        CLOSED and nothing left to transmit (a final RST is still returned
        by one more :meth:`segments_to_send`).
        """
        return self._state is S.CLOSED and not self._ctrl

    @property
    def mss(self) -> int:
        """Largest payload we put in a segment (MSS minus the timestamps option)."""
        return self._max_payload

    @property
    def cwnd(self) -> int:
        """Congestion window in bytes (for tests and status)."""
        return self.cc.cwnd

    @property
    def ssthresh(self) -> int:
        """Slow-start threshold in bytes."""
        return self.cc.ssthresh

    @property
    def in_recovery(self) -> bool:
        """True during fast recovery (NewReno or SACK-based)."""
        return self._in_recovery

    # ------------------------------------------------------------------
    # Events and state changes
    # ------------------------------------------------------------------

    def next_event(self) -> TcpEvent | None:
        """The oldest event not yet returned, or None."""
        return self._events.popleft() if self._events else None

    def _established(self, now: float) -> None:
        """SYN-SENT/SYN-RECEIVED -> ESTABLISHED (or on to FIN-WAIT-1)."""
        self._state = S.ESTABLISHED
        self._syn_due = False
        self._events.append(_CONNECTED)
        if self._syn_retries and self.rto.samples == 0:
            # RFC 6298 §5.7: the SYN timed out and no RTT sample since.
            self.rto.set_base(C.TCP_RTO_AFTER_SYN_TIMEOUT)
        self.rto.reset_backoff()
        self._ka_probes = 0
        self._last_rx = now
        if self._shut_wr:
            # RFC 9293 §3.10.4: a CLOSE queued in SYN-SENT/RECEIVED.
            self._queue_fin()
            self._state = S.FIN_WAIT_1

    def _queue_fin(self) -> None:
        if self._fin_seq is None:
            self._fin_seq = self._sbuf.end

    def _enter_time_wait(self, now: float) -> None:
        """Both FINs done: TIME-WAIT for 2*MSL (RFC 9293 §3.10.7.4)."""
        self._state = S.TIME_WAIT
        self._tw_at = now + self.config.time_wait
        self._rto_at = self._persist_at = self._fw2_at = self._ka_at = None
        self._pto_at = self._rack_at = None
        self._report_closed(None)

    def _report_closed(self, reason: str | None) -> None:
        if not self._closed_reported:
            self._closed_reported = True
            self._events.append(ConnectionClosed(reason))

    def _enter_closed(self, reason: str | None) -> None:
        """Delete the TCB (RFC 9293): CLOSED, timers off, buffers freed."""
        assert reason is None or reason in CLOSE_REASONS, reason
        self._state = S.CLOSED
        self._rto_at = self._persist_at = self._delack_at = None
        self._ka_at = self._tw_at = self._fw2_at = self._pto_at = self._rack_at = None
        self._syn_due = self._ack_now = self._probe_due = self._keepalive_due = False
        self._tlp_due = False
        self._dupacks_owed = 0
        self._ooo.clear()
        self._sbuf = SendBuffer(self._sbuf.seq, 0)
        self.scoreboard.clear()
        self._sent = SentQueue(self._sent.high, 0)
        self._report_closed(reason)

    def _queue_control(self, seg: TcpSegment) -> None:
        """Queue a RST; bounded (extra ones are dropped, the peer will retry)."""
        if len(self._ctrl) < C.TCP_MAX_PENDING_CONTROL:
            self._ctrl.append(seg)

    def _rst(self, seq: int) -> TcpSegment:
        """<SEQ=seq><CTL=RST> from this connection (seq already 32-bit or unbounded)."""
        return TcpSegment(self._lport, self._rport, seq & SEQ_MASK, 0, RST, 0)

    def _drop(self, reason: DropReason, seg: TcpSegment | None = None) -> None:
        self.drops[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("tcp %s %s drop %s: %r", self._lport, self._state.value, reason.value, seg)

    # ------------------------------------------------------------------
    # Application interface (RFC 9293 §3.10.2-3.10.5)
    # ------------------------------------------------------------------

    def send(self, data: bytes | memoryview) -> int:
        """Queue bytes for transmission; return how many were accepted.

        0 means the send buffer is full (backpressure: wait for
        :class:`SendSpaceAvailable`) or the connection is gone.  Sending
        after :meth:`shutdown` or :meth:`close` is a programming error
        (ValueError).  Data queued before the handshake completes goes out
        after it (RFC 9293 §3.10.2).
        """
        if self._shut_wr:
            raise ValueError("send() after shutdown() or close()")
        if self._state is S.CLOSED or not data:
            return 0
        n = self._sbuf.write(data)
        if n < len(data):
            self._send_blocked = True
        return n

    def receive(self, max_bytes: int = -1) -> bytes:
        """Take up to ``max_bytes`` in-order bytes (all when negative).

        Reading frees receive buffer: a window update becomes due when the
        window opened enough (RFC 9293 §3.8.6.2.2, SWS avoidance).  b'' when
        nothing is buffered (check :class:`EndOfStream` for the end).
        """
        rbuf = self._rbuf
        n = len(rbuf)
        self._data_event = False
        if not n or max_bytes == 0:
            return b""
        if max_bytes < 0 or max_bytes >= n:
            data = bytes(rbuf)
            rbuf.clear()
        else:
            data = bytes(rbuf[:max_bytes])
            del rbuf[:max_bytes]
        self._wnd_check = True
        return data

    def shutdown(self, now: float) -> None:
        """Half-close: a FIN follows the queued data (RFC 9293 §3.10.4).

        Receiving continues until the peer's FIN.
        """
        if self._shut_wr:
            return
        self._shut_wr = True
        st = self._state
        if st is S.ESTABLISHED:
            self._queue_fin()
            self._state = S.FIN_WAIT_1
        elif st is S.CLOSE_WAIT:
            self._queue_fin()
            self._state = S.LAST_ACK
        # SYN-SENT / SYN-RECEIVED: queued until ESTABLISHED (_established).

    def close(self, now: float) -> None:
        """Full close: nobody will read any more (the socket ``close()``).

        With unread data, or data arriving later, the connection is reset
        (RFC 2525 §2.17, RFC 1122 §4.2.2.13); otherwise a FIN follows the
        queued data and an unanswered FIN-WAIT-2 ends after
        ``fin_wait_2_timeout``.  In SYN-SENT the connection just goes away
        (RFC 9293 §3.10.4).
        """
        st = self._state
        if st is S.CLOSED or self._orphan:
            return
        if st is S.SYN_SENT:
            self._enter_closed("aborted")
            return
        if self._rbuf or self._ooo:
            self.abort(now)
            return
        self._orphan = True
        self.shutdown(now)
        if self._state is S.FIN_WAIT_2:
            self._fw2_at = now + self.config.fin_wait_2_timeout

    def abort(self, now: float) -> None:
        """Reset the connection (RFC 9293 §3.10.5): RST when synchronized."""
        st = self._state
        if st is S.CLOSED:
            return
        if st in (S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT):
            self._queue_control(self._rst(self.snd_nxt))
        self._enter_closed("aborted")

    # ------------------------------------------------------------------
    # ICMP errors (RFC 9293 §3.9.2.2, RFC 5927, RFC 1122 §4.2.3.9, RFC 8201)
    # ------------------------------------------------------------------

    def icmp_error_received(self, kind: str, now: float, *, quoted_seq: int | None = None) -> None:
        """An ICMPv6 error quoting one of our segments arrived.

        ``kind`` is one of :data:`ICMP_KINDS` or ``packet-too-big:<mtu>``.
        ``quoted_seq``, when the Interface passes it, is the sequence number
        of the quoted segment: errors about data outside SND.UNA..SND.MAX
        are ignored (RFC 5927 §4.1).  Unreachables abort a connection that
        is not yet synchronized, and so does Time Exceeded in SYN-SENT (an
        attempt of ours); in synchronized states every error is soft
        (RFC 5461 §4, RFC 5927 §4.1): it is remembered and becomes the reason
        if the connection later times out.
        """
        st = self._state
        if st in (S.CLOSED, S.LISTEN, S.TIME_WAIT):
            return
        if quoted_seq is not None:
            q = seq_unwrap(quoted_seq & SEQ_MASK, self.snd_una)
            if not (self.snd_una <= q < max(self.snd_max, self.snd_una + 1)):
                self._drop(DropReason.TCP_OUT_OF_WINDOW)
                return
        if kind.startswith("packet-too-big:"):
            try:
                mtu = int(kind.split(":", 1)[1])
            except ValueError:
                return
            self._path_mtu(mtu)
            return
        if kind in _HARD_ICMP and st in (S.SYN_SENT, S.SYN_RECEIVED):
            self._enter_closed(kind)
        # DEVIATION (RFC 1122 §4.2.3.9 calls Time Exceeded soft): it ends a
        # connection attempt, as RFC 5461 §4 describes and Linux does, so
        # the application hears "TTL expired" (SOCKS5 0x06) now instead of
        # "timed out" two minutes later.  An opening we answered stays soft.
        elif kind == "time-exceeded" and st is S.SYN_SENT:
            self._enter_closed(kind)
        # DEVIATION (RFC 1122 §4.2.3.9 would abort on port unreachable):
        # soft in synchronized states, per RFC 5461 §4 / RFC 5927 and Linux.
        elif kind in _HARD_ICMP or kind == "time-exceeded":
            self._soft_error = kind

    def _path_mtu(self, mtu: int) -> None:
        """RFC 8201 §4: a Packet Too Big lowers the MSS, never below 1280-60."""
        if mtu < C.IPV6_MIN_MTU:
            return
        mss = min(mtu - 60, self.config.mss, self._peer_mss)
        if mss < self._mss:
            self._set_mss(mss)
            # Resend what is in flight at the new size (no congestion signal).
            self.snd_nxt = self.snd_una if self.snd_max > self.snd_una else self.snd_nxt
            self._rtt_seq = None

    def _timeout_reason(self) -> str:
        return self._soft_error or "timeout"

    # ------------------------------------------------------------------
    # Event helpers used by the mixins
    # ------------------------------------------------------------------

    def _signal_data(self) -> None:
        if not self._data_event:
            self._data_event = True
            self._events.append(_DATA)

    def _signal_eof(self) -> None:
        self._events.append(_EOF)

    def _signal_space(self) -> None:
        if self._send_blocked and self._sbuf.space * 2 >= self._sbuf.limit:
            self._send_blocked = False
            self._events.append(_SPACE)

    def __repr__(self) -> str:
        return (
            f"<TcpConnection :{self._lport}->:{self._rport} {self._state.value}"
            f" una={self.snd_una - self.iss} nxt={self.snd_nxt - self.iss}"
            f" rcv={self.rcv_nxt - self.irs}>"
        )

