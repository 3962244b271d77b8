"""A scripted TCP peer for packet-level tests of one TcpConnection.

In the spirit of smoltcp's ``send!``/``recv!``/``recv_nothing!`` and
gVisor's packetimpact testbench: the test plays the remote end byte by
byte with a fake clock, and asserts on every segment the connection under
test (the *DUT*) emits.  Every emitted segment is also pushed through
``emit``/``parse`` so the codec is exercised on the way.

Sequence bookkeeping for convenience: ``peer.nxt`` is the peer's next
sequence number (advanced by :meth:`send` for in-order segments) and
``peer.rcv`` the next sequence number the peer expects from the DUT
(advanced by :meth:`recv` as segments arrive in order).  Both are 32-bit
wire values; explicit ``seq=``/``ack=`` override them.
"""

from __future__ import annotations

import random
from typing import Any

from proxy.ipstack.tcp import TcpConfig, TcpConnection
from proxy.ipstack.tcp_events import TcpEvent, TcpState
from proxy.ipstack.wire.tcp import ACK, FIN, SEQ_MASK, SYN, TcpSegment

__all__ = ["Peer", "DUT_ADDR", "PEER_ADDR", "DUT_PORT", "PEER_PORT"]

DUT_ADDR = bytes.fromhex("20010000" "4136e378" "800063bf" "3ffffdd2")
PEER_ADDR = bytes.fromhex("2001db80" "00000000" "00000000" "00000002")
DUT_PORT = 40000
PEER_PORT = 80

_DEFAULT = object()


class Peer:
    """The remote end of a TcpConnection under test, with a fake clock."""

    def __init__(
        self, config: TcpConfig | None = None, *, now: float = 100.0, seed: int = 1,
        peer_iss: int = 0x10000000, ts_start: int = 5000,
    ) -> None:
        self.config = config or TcpConfig()
        self.now = now
        self.rng = random.Random(seed)
        self.iss = peer_iss & SEQ_MASK
        self.nxt = (peer_iss + 1) & SEQ_MASK
        self.rcv = 0
        self.window = 65535
        "Raw window field the peer advertises by default."
        self.use_ts = False
        "The peer puts timestamps on its segments (set by the handshake helpers)."
        self.tsval = ts_start
        self.ts_echo = 0
        self.conn: TcpConnection | None = None
        self.local = (DUT_ADDR, DUT_PORT)
        self.remote = (PEER_ADDR, PEER_PORT)

    # -- building and sending -------------------------------------------------

    @property
    def dut(self) -> TcpConnection:
        assert self.conn is not None, "no connection yet"
        return self.conn

    def seg(
        self, flags: int = ACK, payload: bytes = b"", *, seq: int | None = None,
        ack: int | None = None, window: int | None = None, ts: Any = _DEFAULT,
        **options: Any,
    ) -> TcpSegment:
        """A segment from the peer to the DUT (defaults: next seq, ack = rcv)."""
        if ts is _DEFAULT:
            ts = (self.tsval, self.ts_echo) if self.use_ts else None
        return TcpSegment(
            PEER_PORT, DUT_PORT,
            (self.nxt if seq is None else seq) & SEQ_MASK,
            (self.rcv if ack is None else ack) & SEQ_MASK,
            flags, self.window if window is None else window, 0,
            options.pop("mss", None), options.pop("wscale", None),
            options.pop("sack_permitted", False), tuple(options.pop("sack", ())), ts, payload,
        )

    def send(self, flags: int = ACK, payload: bytes = b"", **kw: Any) -> TcpSegment:
        """Deliver a segment to the DUT; advance ``nxt`` when it was in order."""
        s = self.seg(flags, payload, **kw)
        if s.seq == self.nxt:
            self.nxt = (self.nxt + s.seg_len) & SEQ_MASK
        self.deliver(s)
        return s

    def deliver(self, s: TcpSegment) -> None:
        """Hand an exact segment to the DUT (through emit/parse)."""
        wire = s.emit(PEER_ADDR, DUT_ADDR)
        parsed = TcpSegment.parse(wire, PEER_ADDR, DUT_ADDR)
        assert parsed == s
        self.dut.segment_received(parsed, self.now)

    # -- receiving ------------------------------------------------------------

    def recv(self) -> list[TcpSegment]:
        """Everything the DUT sends now (codec round trip checked)."""
        out = []
        for s in self.dut.segments_to_send(self.now):
            wire = s.emit(DUT_ADDR, PEER_ADDR)
            # RFC 6691: options + payload within the MSS (1220 on a 1280 MTU).
            limit = self.config.mss + 20
            assert len(wire) <= limit, f"segment of {len(wire)} bytes exceeds {limit}"
            parsed = TcpSegment.parse(wire, DUT_ADDR, PEER_ADDR)
            assert parsed == s, (parsed, s)
            if s.timestamps is not None:
                self.ts_echo = s.timestamps[0]
            if s.seq == self.rcv and s.seg_len:
                self.rcv = (self.rcv + s.seg_len) & SEQ_MASK
            out.append(s)
        return out

    def recv_one(self) -> TcpSegment:
        """Exactly one segment is due; return it."""
        out = self.recv()
        assert len(out) == 1, f"expected one segment, got {out}"
        return out[0]

    def recv_nothing(self) -> None:
        """Nothing is due."""
        out = self.recv()
        assert out == [], f"expected nothing, got {out}"

    def events(self) -> list[TcpEvent]:
        out = []
        while (e := self.dut.next_event()) is not None:
            out.append(e)
        return out

    def event_names(self) -> list[str]:
        return [type(e).__name__ for e in self.events()]

    # -- time ---------------------------------------------------------------

    def tick(self, dt: float) -> None:
        """Advance the clock by ``dt`` and run the DUT's timers."""
        self.now += dt
        self.tsval = (self.tsval + max(1, int(dt * 1000))) & SEQ_MASK
        self.dut.handle_timer(self.now)

    def to_deadline(self) -> float:
        """Jump to the DUT's next deadline, run timers; return the time jumped."""
        t = self.dut.poll_at()
        assert t is not None, "no timer armed"
        dt = max(t - self.now, 0.0)
        self.tick(dt)
        return dt

    # -- handshakes -----------------------------------------------------------

    def connect(self) -> TcpSegment:
        """Create the DUT with connect(); return its SYN."""
        self.conn = TcpConnection.connect(
            self.config, local=self.local, remote=self.remote, rng=self.rng, now=self.now)
        syn = self.recv_one()
        assert syn.flags == SYN
        self.rcv = (syn.seq + 1) & SEQ_MASK
        return syn

    def establish_active(self, *, mss: int | None = 1220, wscale: int | None = 7,
                         sack_permitted: bool = True, ts: bool = True,
                         window: int = 65535) -> TcpSegment:
        """DUT connects; the peer answers SYN-ACK; return the DUT's ACK."""
        syn = self.connect()
        self.use_ts = ts and syn.timestamps is not None
        if self.use_ts:
            self.ts_echo = syn.timestamps[0]  # type: ignore[index]
        self.send(SYN | ACK, seq=self.iss, mss=mss, wscale=wscale,
                  sack_permitted=sack_permitted, window=window)
        a = self.recv_one()
        assert a.flags == ACK, a
        self.window = window
        return a

    def syn(self, *, mss: int | None = 1220, wscale: int | None = 7,
            sack_permitted: bool = True, ts: bool = True, window: int = 65535) -> TcpSegment:
        """The SYN this peer would open with."""
        return TcpSegment(
            PEER_PORT, DUT_PORT, self.iss, 0, SYN, window, 0, mss, wscale, sack_permitted, (),
            (self.tsval, 0) if ts else None)

    def establish_passive(self, **syn_options: Any) -> TcpSegment:
        """The peer sends a SYN, the DUT is accept()ed and answers; peer ACKs.

        Returns the DUT's SYN-ACK.
        """
        syn = self.syn(**syn_options)
        self.use_ts = syn.timestamps is not None
        self.conn = TcpConnection.accept(
            self.config, syn, local=self.local, remote=self.remote, rng=self.rng, now=self.now)
        synack = self.recv_one()
        assert synack.flags == SYN | ACK, synack
        self.rcv = (synack.seq + 1) & SEQ_MASK
        self.nxt = (self.iss + 1) & SEQ_MASK
        self.send(ACK)
        self.window = syn.window
        return synack

    def drive_to(self, state: TcpState) -> "Peer":
        """Create the DUT and script the peer until the DUT is in ``state``.

        Events are drained.  Every state but LISTEN and CLOSED (use
        ``abort``) is reachable.
        """
        S = TcpState
        if state is S.SYN_SENT:
            self.connect()
        elif state is S.SYN_RECEIVED:
            syn = self.syn()
            self.use_ts = True
            self.conn = TcpConnection.accept(
                self.config, syn, local=self.local, remote=self.remote, rng=self.rng,
                now=self.now)
            synack = self.recv_one()
            self.rcv = (synack.seq + 1) & SEQ_MASK
            if synack.timestamps is not None:
                self.ts_echo = synack.timestamps[0]
        else:
            self.establish_active()
            if state in (S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT):
                self.dut.shutdown(self.now)
                fin = self.recv_one()
                if state in (S.FIN_WAIT_2, S.TIME_WAIT):
                    self.send(ACK)
                if state is S.CLOSING:
                    self.send(FIN | ACK, ack=fin.seq)  # ours not acknowledged yet
                    self.recv()
                if state is S.TIME_WAIT:
                    self.send(FIN | ACK)
                    self.recv()
            elif state in (S.CLOSE_WAIT, S.LAST_ACK):
                self.send(FIN | ACK)
                self.recv()
                if state is S.LAST_ACK:
                    self.dut.shutdown(self.now)
                    self.recv_one()
        assert self.dut.state is state, (self.dut.state, state)
        self.events()
        return self
