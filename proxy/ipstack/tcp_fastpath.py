"""Header prediction: the in-order data fast path (RFC 9293 §3.10.7.4, Jacobson 1990).

Theory of operation
-------------------

A bulk receiver sees the same segment over and over: ACK (perhaps PSH),
SEG.SEQ = RCV.NXT, SEG.ACK = SND.UNA, the same window, a newer timestamp,
data that fits the window, nothing out of order.  For such a segment the
eight checks of RFC 9293 §3.10.7.4 (with PAWS, RFC 7323, and RFC 5961)
collapse: it is acceptable, carries no RST or SYN, acknowledges nothing
new, updates no window, and its text is simply appended.  Van Jacobson's
header prediction (BSD ``tcp_input``, Linux ``tcp_rcv_established``)
checks exactly that on a handful of fields and then does only what the
general path would have done.

:meth:`TcpFastPathMixin._fast_data` is that check and that work, and
nothing else: it either handles the segment completely and returns True,
or changes nothing and returns False, and ``segment_received`` falls
through to the general path.  The prediction is deliberately narrow:
ESTABLISHED, nothing of ours in flight (so no ACK processing, RACK, probe
or recovery state can be touched), no SACK option, no out-of-order data,
no pending FIN.  ``tests/ipstack/test_tcp_fastpath.py`` runs generated
segments through both paths on copies of the same connection and
requires identical state, events and output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.ipstack.wire.tcp import ACK, FIN, RST, SEQ_MASK, SYN, URG, TcpSegment

if TYPE_CHECKING:  # pragma: no cover
    from proxy.ipstack.tcp import TcpConnection

__all__ = ["TcpFastPathMixin"]

_HALF = 0x80000000
#: Control bits that send a segment to the general path (PSH, ECE, CWR do not).
_SLOW_FLAGS = SYN | FIN | RST | URG | ACK


class TcpFastPathMixin:
    """``_fast_data``: header prediction for in-order data in ESTABLISHED."""

    __slots__ = ()

    def _fast_data(self: "TcpConnection", seg: TcpSegment, now: float) -> bool:
        """Handle ``seg`` if it is predicted in-order data; False (untouched) if not.

        The caller has checked that the state is ESTABLISHED.
        """
        payload = seg.payload
        una = self.snd_una
        rcv_nxt = self.rcv_nxt
        if (
            not payload or seg.flags & _SLOW_FLAGS != ACK or seg.sack_blocks
            or seg.seq != rcv_nxt & SEQ_MASK or seg.ack != una & SEQ_MASK
            or self.snd_max != una or (seg.window << self.snd_wscale) != self.snd_wnd
            or not self.snd_wnd or self._ooo or self._peer_fin is not None or self._orphan
            or self._in_recovery or self._tlp_end is not None
            or self._rack.dsack_round is not None or not self._sent.clean
        ):
            return False
        ts = seg.timestamps
        newer = ts is not None and (ts[0] - self._ts_recent) & SEQ_MASK < _HALF
        if self.ts_ok and not newer:
            return False  # missing (RFC 7323 §3.2) or PAWS-old (§5.3): general path
        end = rcv_nxt + len(payload)
        right = self.rcv_adv
        if end > right:
            return False  # beyond the window: trimmed by the general path

        # Predicted.  What the general path does for this segment, in its order:
        # fifth check (ACK): liveness, TS.Recent (RFC 7323 §4.3), SND.WL1/WL2.
        self._last_rx = now
        self._ka_probes = 0
        self._probes = 0
        if ts is not None and rcv_nxt <= self.rcv_wup and (self._ts_recent_at is None or newer):
            self._ts_recent = ts[0]
            self._ts_recent_at = now
        if self.snd_wl1 < rcv_nxt or (self.snd_wl1 == rcv_nxt and self.snd_wl2 <= una):
            self.snd_wl1 = rcv_nxt
            self.snd_wl2 = una
        # Seventh (text): append, then RFC 5681 §4.2's ACK policy.
        self._rbuf += payload
        self.rcv_nxt = end
        self._signal_data()
        if end - self.rcv_wup >= 2 * self._rcv_mss_v:
            self._ack_now = True  # every second full segment
        elif not self._ack_now and self._delack_at is None:
            if self.config.delayed_ack > 0:
                self._delack_at = now + self.config.delayed_ack
            else:
                self._ack_now = True
        return True
