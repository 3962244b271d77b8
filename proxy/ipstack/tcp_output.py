"""What to transmit now: the output half of TcpConnection.

``segments_to_send(now)`` returns, in order: queued RSTs; the SYN or
SYN-ACK when due; then, in synchronized states,

0. a tail loss probe when its timer fired (RFC 8985 §7.3, see
   tcp_recovery.py);
1. a forced retransmission of SND.UNA (NewReno fast retransmit, RFC 5681
   §3.2 step 2; NewReno partial ACK, RFC 6582 §3.2 step 5; the head after
   a timeout, RFC 6298 §5.4);
2. during SACK recovery, RFC 6675 §5 step (C) with RACK's loss marks
   (tcp_recovery.py): while ``cwnd - pipe >= 1 SMSS``, the segments marked
   lost, then new data;
3. otherwise data from SND.NXT (new, or go-back-N after a timeout without
   SACK, skipping SACKed ranges) limited by the peer window and by cwnd
   (+2 SMSS of limited transmit, RFC 3042), with sender-side SWS
   avoidance and Nagle (RFC 9293 §3.7.4, §3.8.6.2.1), then the FIN;
4. a zero-window / SWS-override probe when the persist timer fired, a
   keepalive probe when that timer fired;
5. pure ACKs when one is owed and no segment above carried it: delayed ACK
   expiry, every second full segment, out-of-order data (one duplicate ACK
   per out-of-order arrival, bounded), challenge ACKs, window updates.

Every segment in a synchronized state carries ACK, the current window
(``tcp_window.select_window``), timestamps when negotiated and SACK blocks
when out-of-order data (or a D-SACK report) exists; the payload shrinks
so that header + options + data stay within the MSS (RFC 6691).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy import constants as C
from proxy.ipstack.tcp_events import TcpState
from proxy.ipstack.tcp_window import select_window
from proxy.ipstack.wire.tcp import ACK, FIN, PSH, SEQ_MASK, SYN, TcpSegment

if TYPE_CHECKING:  # pragma: no cover
    from proxy.ipstack.tcp import TcpConnection

__all__ = ["TcpOutputMixin"]

S = TcpState
# States in which we may still (re)transmit data or our FIN.
_SENDING = frozenset((S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK))
_NO_OPTS: tuple[tuple[int, int], ...] = ()


class TcpOutputMixin:
    """``segments_to_send`` and the segment builders."""

    __slots__ = ()

    def segments_to_send(self: "TcpConnection", now: float) -> list[TcpSegment]:
        """Every segment due now, complete and in order."""
        out = self._ctrl
        if out:
            self._ctrl = []
        else:
            out = []
        st = self._state
        if st is S.CLOSED:
            return out
        if st is S.SYN_SENT or st is S.SYN_RECEIVED:
            if self._syn_due:
                self._syn_due = False
                out.append(self._syn_segment(now))
                if self._rto_at is None:
                    self._rto_at = now + self.rto.rto
                if self._syn_retries == 0:
                    self._rtt_time = now
            elif st is S.SYN_RECEIVED and self._ack_now:
                out.append(self._pure_ack(now, self._window_field()))
            self._ack_now = False
            return out

        if self._wnd_check:
            self._wnd_check = False
            self._window_update_due()
        data = (
            self._probe_due or self._in_recovery or self._rtx_seq is not None or self._tlp_due
            or self.snd_nxt < self._sbuf.end
            or (self._fin_seq is not None and self.snd_nxt <= self._fin_seq)
        )
        if not (data or self._ack_now or self._dupacks_owed or self._keepalive_due):
            return out  # fast path: nothing owed, nothing queued
        win = self._window_field()
        blocks = self._sack_option() if self.sack_ok and (self._ooo or self._dsack) else _NO_OPTS
        ts = (self._tsval(now), self._ts_recent) if self.ts_ok else None
        pmax = self._max_payload
        if blocks:
            pmax -= 4 + 8 * len(blocks)
        n0 = len(out)
        if st in _SENDING and (
            data or self._persist_at is not None or (not self.snd_wnd and self.snd_max > self.snd_una)
        ):
            self._output_data(now, out, win, ts, blocks, pmax)
        else:
            self._cwnd_limited = False  # (what _send_from_nxt says with nothing to send)
        if self._keepalive_due:
            self._keepalive_due = False
            out.append(self._segment(self.snd_una - 1, ACK, b"", win, ts, blocks))
        if len(out) == n0 and (self._ack_now or self._dupacks_owed):
            n = min(max(self._dupacks_owed, 1), C.TCP_MAX_DUPACKS_PER_FLUSH)
            seg = self._segment(self.snd_nxt, ACK, b"", win, ts, blocks)
            out.extend([seg] * n)
        if len(out) > n0:
            self.rcv_wup = self.rcv_nxt
            self._ack_now = False
            self._dupacks_owed = 0
            self._delack_at = None
            self._dsack = None
        return out

    # ------------------------------------------------------------------
    # Builders
    # ------------------------------------------------------------------

    def _tsval(self: "TcpConnection", now: float) -> int:
        """Our timestamp clock: milliseconds plus a per-connection offset."""
        return (int(now * C.TCP_TS_HZ) + self._ts_offset) & SEQ_MASK

    def _segment(
        self: "TcpConnection", seq: int, flags: int, payload: bytes, win: int,
        ts: tuple[int, int] | None, blocks: tuple[tuple[int, int], ...],
    ) -> TcpSegment:
        return TcpSegment(
            self._lport, self._rport, seq & SEQ_MASK, self.rcv_nxt & SEQ_MASK, flags, win, 0,
            None, None, False, blocks, ts, payload,
        )

    def _pure_ack(self: "TcpConnection", now: float, win: int) -> TcpSegment:
        ts = (self._tsval(now), self._ts_recent) if self.ts_ok else None
        return self._segment(self.snd_nxt, ACK, b"", win, ts, _NO_OPTS)

    def _syn_segment(self: "TcpConnection", now: float) -> TcpSegment:
        """SYN (active open) or SYN-ACK, with our options (RFC 7323, RFC 2018)."""
        cfg = self.config
        window = min(cfg.recv_buffer, 65535)  # RFC 7323 §2.2: SYN windows are unscaled
        if self._state is S.SYN_RECEIVED:
            # RFC 7323 §2.2, §3.2 and RFC 2018 §2: answer only what the SYN offered.
            return TcpSegment(
                self._lport, self._rport, self.iss & SEQ_MASK, self.rcv_nxt & SEQ_MASK,
                SYN | ACK, window, 0, cfg.mss, self.rcv_wscale if self.ws_ok else None,
                self.sack_ok, (), (self._tsval(now), self._ts_recent) if self.ts_ok else None,
            )
        return TcpSegment(
            self._lport, self._rport, self.iss & SEQ_MASK, 0, SYN, window, 0, cfg.mss,
            cfg.wscale if cfg.window_scaling else None, cfg.sack,
            (), (self._tsval(now), 0) if cfg.timestamps else None,
        )

    def _window_field(self: "TcpConnection") -> int:
        """Raw window to advertise; moves the advertised right edge."""
        cfg = self.config
        shift = self.rcv_wscale
        raw = select_window(
            cfg.recv_buffer - len(self._rbuf), self.rcv_adv - self.rcv_nxt, self._rcv_mss(),
            cfg.recv_buffer, shift,
        )
        edge = self.rcv_nxt + (raw << shift)
        if edge > self.rcv_adv:
            self.rcv_adv = edge
        return raw

    def _window_update_due(self: "TcpConnection") -> None:
        """After a read: ACK now if the window at least doubled (Linux rule)
        and grew by at least min(buffer/2, MSS) (RFC 9293 §3.8.6.2.2)."""
        if self._state not in (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2):
            return
        buf = self.config.recv_buffer
        free = buf - len(self._rbuf)
        cur = self.rcv_adv - self.rcv_nxt
        if free >= 2 * cur and free - cur >= min(buf // 2, self._rcv_mss()):
            self._ack_now = True

    def _sack_option(self: "TcpConnection") -> tuple[tuple[int, int], ...]:
        """SACK blocks for our ACKs: D-SACK first (RFC 2883), then RFC 2018 §4."""
        n = 3 if self.ts_ok else C.TCP_MAX_SACK_BLOCKS
        blocks: list[tuple[int, int]] = []
        if self._dsack is not None:
            blocks.append(self._dsack)
        blocks += self._ooo.sack_blocks(n - len(blocks))
        return tuple((s & SEQ_MASK, e & SEQ_MASK) for s, e in blocks)

    # ------------------------------------------------------------------
    # Data, retransmissions, FIN, probes
    # ------------------------------------------------------------------

    def _emit(
        self: "TcpConnection", out: list[TcpSegment], now: float, seq: int, n: int, fin: bool,
        win: int, ts: tuple[int, int] | None, blocks: tuple[tuple[int, int], ...],
    ) -> None:
        """Send ``[seq, seq+n)`` (+FIN) from the send buffer; update SND.MAX, timers."""
        sbuf = self._sbuf
        payload = sbuf.peek(seq, n) if n else b""
        flags = ACK
        end = seq + n
        if n and end == sbuf.end:
            flags |= PSH
        if fin:
            flags |= FIN
            end += 1
        out.append(TcpSegment(
            self._lport, self._rport, seq & SEQ_MASK, self.rcv_nxt & SEQ_MASK, flags, win, 0,
            None, None, False, blocks, ts, payload,
        ))
        if seq >= self.snd_max:
            if self._rtt_seq is None and not self.ts_ok:
                self._rtt_seq = seq
                self._rtt_time = now
        else:
            self.stats["retransmitted"] += 1
            self._rtt_seq = None  # Karn: never time a retransmitted segment
        if end > seq:
            self._sent.sent(seq, end, now)  # RACK's transmission record
            if self._in_recovery:
                self._prr_out += end - seq  # RFC 6937 prr_out
        if end > self.snd_max:
            self.snd_max = end
        if self._rto_at is None and self.snd_wnd:
            self._rto_at = now + self.rto.rto  # RFC 6298 §5.1

    def _output_data(
        self: "TcpConnection", now: float, out: list[TcpSegment], win: int,
        ts: tuple[int, int] | None, blocks: tuple[tuple[int, int], ...], pmax: int,
    ) -> None:
        una = self.snd_una
        fin_seq = self._fin_seq
        smax = self.snd_max
        # 0. A tail loss probe (RFC 8985 §7.3), outside cwnd.
        if self._tlp_due:
            self._tlp_due = False
            self._send_tlp(now, out, win, ts, blocks, pmax)
        # 1. Forced retransmission of the first unacknowledged segment.
        rtx = self._rtx_seq
        if rtx is not None:
            self._rtx_seq = None
            if una <= rtx < self.snd_max:
                sent_end = min(self._sbuf.end, self.snd_max)
                n = min(pmax, sent_end - rtx)
                fin = fin_seq is not None and rtx + n == fin_seq
                self._emit(out, now, rtx, n, fin, win, ts, blocks)
        # 2./3. SACK recovery (tcp_recovery.py) or the normal window.
        if self._in_recovery and self.sack_ok:
            self._sack_recovery(now, out, win, ts, blocks, pmax)
        else:
            budget = self.cc.cwnd - (self.snd_nxt - una)
            if self._dupacks and not self._in_recovery:
                budget += min(self._dupacks, 2) * self.cc.smss  # RFC 3042
            self._send_from_nxt(now, out, budget, win, ts, blocks, pmax, force=False)
        # 4. Probes, and arming the persist timer.
        if self._probe_due:
            self._probe_due = False
            self._send_probe(now, out, win, ts, blocks, pmax)
        self._check_persist(now)
        if self._tlp_end is None and (
            self.snd_max > smax or (self._in_recovery and self._pto_at is None)
        ):
            # RFC 8985 §7.2: new data went out (or recovery may have resent
            # the last segment it knew lost: see _probe_allowed).
            self._arm_pto(now)

    def _pending(self: "TcpConnection") -> bool:
        """Queued data or a FIN not yet sent from SND.NXT."""
        fin = self._fin_seq
        return self.snd_nxt < self._sbuf.end or (fin is not None and self.snd_nxt <= fin)

    def _check_persist(self: "TcpConnection", now: float) -> None:
        """Arm the persist timer when queued data cannot go and nothing else
        will wake us: zero window, or SWS-blocked with nothing in flight
        (RFC 1122 §4.2.2.17, RFC 9293 §3.8.6.2.1 override timer)."""
        pending = self._pending()
        if (self.snd_wnd == 0 and (pending or self.snd_max > self.snd_una)) or (
            pending and self.snd_una >= self.snd_max
        ):
            if self._persist_at is None:
                self._persist_at = now + self._persist_interval()
            if self.snd_wnd == 0:
                self._rto_at = None
        elif self._persist_at is not None and self.snd_wnd:
            self._persist_at = None
            self._persist_backoff = 0

    def _persist_interval(self: "TcpConnection") -> float:
        t = self.rto.base * (1 << min(self._persist_backoff, 16))
        return min(max(t, C.TCP_PERSIST_MIN), C.TCP_PERSIST_MAX)

    def _send_probe(
        self: "TcpConnection", now: float, out: list[TcpSegment], win: int,
        ts: tuple[int, int] | None, blocks: tuple[tuple[int, int], ...], pmax: int,
    ) -> None:
        """The persist timer fired: force a segment or probe the zero window."""
        sbuf = self._sbuf
        fin_seq = self._fin_seq
        room = self.snd_una + self.snd_wnd - self.snd_nxt
        if room > 0 and self._pending():
            # SWS override: send what the window allows.
            self._send_from_nxt(now, out, room, win, ts, blocks, pmax, force=True)
            return
        # Zero-window probe: one octet (RFC 1122 §4.2.2.17, RFC 9293 §3.8.6.1),
        # the unacknowledged one if any, else the next new one (or the FIN).
        seq = self.snd_una if self.snd_max > self.snd_una else self.snd_nxt
        n = 1 if seq < sbuf.end else 0
        fin = fin_seq is not None and seq + n == fin_seq and n == 0
        if n or fin:
            self._emit(out, now, seq, n, fin, win, ts, blocks)
            if seq + n + fin > self.snd_nxt:
                self.snd_nxt = seq + n + fin

    def _send_from_nxt(
        self: "TcpConnection", now: float, out: list[TcpSegment], budget: int, win: int,
        ts: tuple[int, int] | None, blocks: tuple[tuple[int, int], ...], pmax: int,
        force: bool,
    ) -> int:
        """Segments from SND.NXT within the peer window and ``budget`` bytes.

        Returns the bytes sent.  After a timeout SND.NXT < SND.MAX and this
        is go-back-N, skipping ranges the peer SACKed.
        """
        sbuf = self._sbuf
        data_end = sbuf.end
        fin_seq = self._fin_seq
        wnd_edge = self.snd_una + self.snd_wnd
        sb = self.scoreboard
        nodelay = self.config.nodelay or fin_seq is not None
        nxt = self.snd_nxt
        sent = 0
        self._cwnd_limited = False
        while True:
            if nxt >= data_end:
                if fin_seq is not None and nxt == fin_seq:
                    # The FIN alone: needs no window (it carries no data).
                    self._emit(out, now, nxt, 0, True, win, ts, blocks)
                    nxt += 1
                break
            if nxt >= self.snd_max and self._sent.full:
                break  # too many tiny segments in flight: wait for ACKs
            limit = data_end
            if sb and nxt < self.snd_max:
                nxt, hole_end = sb.next_hole(nxt)
                if nxt >= data_end:
                    continue
                if hole_end is not None and hole_end < limit:
                    limit = hole_end
            n = limit - nxt
            if n > pmax:
                n = pmax
            room_w = wnd_edge - nxt
            room_c = budget - sent
            can = n
            if room_w < can:
                can = room_w
            if room_c < can:
                can = room_c
            if can <= 0:
                self._cwnd_limited = room_c <= 0 < room_w
                break
            if not force:
                if can < n:
                    # Window- or cwnd-limited to a partial segment: sender SWS
                    # avoidance, unless it is half the largest window seen.
                    if room_c < n or can < self.max_snd_wnd // 2:
                        self._cwnd_limited = room_c < n
                        break
                elif n < pmax and nxt >= self.snd_max and not nodelay:
                    # Nagle (RFC 9293 §3.7.4).  DEVIATION: Minshall's form (as
                    # Linux): at most one *small* segment unacknowledged.
                    if self.snd_una < self._snd_sml:
                        break
            fin = fin_seq is not None and nxt + can == fin_seq
            self._emit(out, now, nxt, can, fin, win, ts, blocks)
            if can < pmax:
                self._snd_sml = nxt + can
            nxt += can + fin
            sent += can
            if fin or force:
                break
        if nxt > self.snd_nxt:
            self.snd_nxt = nxt
        return sent
