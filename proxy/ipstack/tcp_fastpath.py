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

:meth:`TcpFastPathMixin.fast_packet` makes the same prediction one step
earlier, on the raw IPv6 packet (``TcpTable.fast_packet``, called by the
Interface once the checksum is verified): for the usual bulk layout (data
offset 8, NOP NOP Timestamps) it reads the fields with one ``struct``
call and skips building a ``TcpSegment`` and the general demux.  Both
entries share :meth:`TcpFastPathMixin._fast_fields`.  On the client's
download benchmark it took 1.0 µs off ~8.5 per segment;
``tests/ipstack/test_tcp_fast_packets.py`` compares generated packet
sequences through Interfaces with and without it.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from proxy.ipstack.tcp_events import TcpState
from proxy.ipstack.wire.tcp import ACK, FIN, RST, SEQ_MASK, SYN, URG, TcpSegment

if TYPE_CHECKING:  # pragma: no cover
    from proxy.ipstack.tcp import TcpConnection

__all__ = ["TcpFastPathMixin"]

_HALF = 0x80000000
#: Control bits that send a segment to the general path (PSH, ECE, CWR do not).
_SLOW_FLAGS = SYN | FIN | RST | URG | ACK
_ESTABLISHED = TcpState.ESTABLISHED
#: Sequence, acknowledgment, data offset, flags, window (from byte 4 of the TCP header).
_RAW = struct.Struct("!IIBBH")
_TWO_U32 = struct.Struct("!II")
_NOP_NOP_TS_BYTES = b"\x01\x01\x08\x0a"


class TcpFastPathMixin:
    """``_fast_data``: header prediction for in-order data in ESTABLISHED."""

    __slots__ = ()

    def _fast_data(self: "TcpConnection", seg: TcpSegment, now: float) -> bool:
        """Handle ``seg`` if it is predicted in-order data; False (untouched) if not.

        The caller has checked that the state is ESTABLISHED.
        """
        if seg.sack_blocks:
            return False
        return self._fast_fields(seg.flags, seg.seq, seg.ack, seg.window, seg.timestamps, seg.payload, now)

    def fast_packet(self: "TcpConnection", packet: bytes, now: float) -> bool:
        """:meth:`_fast_data` on the raw bytes of a bare IPv6 + TCP packet.

        ``packet`` is a whole IPv6 packet without extension headers whose
        checksum has been verified and whose addresses and ports are this
        connection's.  Only the shape bulk senders use is taken: data
        offset 8 with NOP NOP Timestamps as the sole option (what
        ``TcpSegment.parse`` decodes on its own shortcut); the fields go
        to the very same prediction, so no ``TcpSegment`` is built.  False
        (nothing changed) for anything else: the caller then parses the
        segment and takes the general path.
        """
        if (
            self._state is not _ESTABLISHED or len(packet) <= 72 or packet[52] >> 4 != 8
            or packet[60:64] != _NOP_NOP_TS_BYTES
        ):
            return False
        seq, ack, _off, flags, window = _RAW.unpack_from(packet, 44)
        return self._fast_fields(flags, seq, ack, window, _TWO_U32.unpack_from(packet, 64), packet[72:], now)

    def _fast_fields(
        self: "TcpConnection", flags: int, seq: int, ack: int, window: int,
        ts: tuple[int, int] | None, payload: bytes, now: float,
    ) -> bool:
        """The prediction proper, on decoded fields (no SACK blocks)."""
        una = self.snd_una
        rcv_nxt = self.rcv_nxt
        if (
            not payload or flags & _SLOW_FLAGS != ACK
            or seq != rcv_nxt & SEQ_MASK or ack != una & SEQ_MASK
            or self.snd_max != una or (window << self.snd_wscale) != self.snd_wnd
            or not self.snd_wnd or self._ooo or self._peer_fin is not None or self._orphan
            or self._in_recovery or self._tlp_end is not None
            or self._rack.dsack_round is not None or not self._sent.clean
        ):
            return False
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
