"""Data transfer: windows, ACK policy, Nagle, reassembly, buffers, persist.

Packet level with a fake clock (proxy.testing.tcp_peer.Peer).
"""

from __future__ import annotations

import pytest

from proxy import constants as C
from proxy.errors import DropReason
from proxy.ipstack.tcp import ConnectionClosed, TcpConfig, TcpState
from proxy.ipstack.wire.tcp import ACK, FIN, PSH, SEQ_MASK
from proxy.testing.tcp_peer import Peer

S = TcpState
MSS = 1208  # 1220 minus the timestamps option


def established(config: TcpConfig | None = None, **kw: object) -> Peer:
    p = Peer(config)
    p.establish_active(**kw)  # type: ignore[arg-type]
    p.events()
    return p


# -- sending ------------------------------------------------------------------------


def test_initial_window_is_ten_segments() -> None:
    p = established()
    assert p.dut.send(b"a" * 100_000) == 100_000
    segs = p.recv()
    assert [len(s.payload) for s in segs] == [MSS] * 10
    assert all(s.flags & ACK for s in segs)
    p.recv_nothing()  # cwnd-limited now


def test_slow_start_grows_per_ack() -> None:
    p = established()
    p.dut.send(b"a" * 200_000)
    segs = p.recv()
    cwnd0 = p.dut.cwnd
    p.send(ACK, ack=segs[1].seq + MSS)  # acknowledges two segments
    assert p.dut.cwnd == cwnd0 + 2 * MSS
    assert len(p.recv()) == 4  # two acknowledged + two from growth


def test_psh_on_last_segment_of_queued_data() -> None:
    p = established()
    p.dut.send(b"x" * (MSS + 10))
    a, b = p.recv()
    assert not a.flags & PSH and b.flags & PSH


def test_send_backpressure_and_space_event() -> None:
    p = established(TcpConfig(send_buffer=10_000))
    assert p.dut.send(b"a" * 25_000) == 10_000
    assert p.dut.send(b"b") == 0
    assert p.dut.send_space == 0
    segs = p.recv()
    assert sum(len(s.payload) for s in segs) == 10_000
    p.send(ACK, ack=segs[-1].seq + len(segs[-1].payload))
    assert p.event_names() == ["SendSpaceAvailable"]
    assert p.dut.send_space == 10_000


def test_send_after_shutdown_is_an_error() -> None:
    p = established()
    p.dut.shutdown(p.now)
    with pytest.raises(ValueError):
        p.dut.send(b"x")


def test_nagle_holds_second_small_segment() -> None:
    p = established()
    p.dut.send(b"a")
    first = p.recv_one()
    assert first.payload == b"a"
    p.dut.send(b"b")
    p.dut.send(b"c")
    p.recv_nothing()  # one small segment already in flight
    p.send(ACK, ack=first.seq + 1)
    assert p.recv_one().payload == b"bc"


def test_nodelay_sends_small_segments_at_once() -> None:
    p = established(TcpConfig(nodelay=True))
    p.dut.send(b"a")
    assert p.recv_one().payload == b"a"
    p.dut.send(b"b")
    assert p.recv_one().payload == b"b"


def test_nagle_does_not_hold_full_segments() -> None:
    p = established()
    p.dut.send(b"a")
    p.recv_one()
    p.dut.send(b"z" * (MSS * 2 + 5))
    assert [len(s.payload) for s in p.recv()] == [MSS, MSS]  # the 5-byte tail waits


def test_peer_window_is_scaled() -> None:
    p = established(wscale=2)
    # Window field 1000 << 2 = 4000 bytes.
    p.send(ACK, window=1000)
    p.dut.send(b"a" * 20_000)
    segs = p.recv()
    assert sum(len(s.payload) for s in segs) == 4000 - (4000 % MSS) or sum(
        len(s.payload) for s in segs) <= 4000
    assert max(s.seq + len(s.payload) for s in segs) - (p.dut.iss + 1) <= 4000


def test_sender_sws_avoidance() -> None:
    """RFC 9293 §3.8.6.2.1: no small segments into a window that is a sliver."""
    p = established(wscale=0)
    p.dut.send(b"a" * (3 * MSS))
    segs = p.recv()
    end = segs[-1].seq + len(segs[-1].payload)
    # Everything acknowledged, window now 100 bytes (max window seen: 65535).
    p.send(ACK, ack=end, window=100)
    p.dut.send(b"b" * 5000)
    p.recv_nothing()
    # The override (persist) timer eventually forces what the window allows.
    p.to_deadline()
    s = p.recv_one()
    assert len(s.payload) == 100


def test_small_peer_window_half_of_max_is_used() -> None:
    """A peer whose whole window is small still gets data (>= max_wnd/2 rule)."""
    p = Peer()
    p.establish_active(window=1000, wscale=0)
    p.dut.send(b"a" * 5000)
    segs = p.recv()
    assert [len(s.payload) for s in segs] == [1000]


# -- receiving ------------------------------------------------------------------------


def test_in_order_data_event_and_receive() -> None:
    p = established()
    p.send(ACK | PSH, b"hello")
    p.send(ACK | PSH, b" world")
    assert p.event_names() == ["DataReceived"]  # edge-triggered
    assert p.dut.readable == 11
    assert p.dut.receive(5) == b"hello"
    assert p.dut.receive() == b" world"
    assert p.dut.receive() == b""
    p.send(ACK, b"!")
    assert p.event_names() == ["DataReceived"]


def test_delayed_ack_timing() -> None:
    p = established()
    p.send(ACK, b"x" * 100)
    p.recv_nothing()
    assert p.dut.poll_at() == pytest.approx(p.now + C.TCP_DELAYED_ACK)
    p.tick(C.TCP_DELAYED_ACK / 2)
    p.recv_nothing()
    assert p.to_deadline() == pytest.approx(C.TCP_DELAYED_ACK / 2)
    a = p.recv_one()
    assert a.flags == ACK and a.ack == p.nxt


def test_ack_every_second_full_segment() -> None:
    p = established()
    p.send(ACK, b"x" * MSS)
    p.recv_nothing()
    p.send(ACK, b"x" * MSS)
    a = p.recv_one()
    assert a.ack == p.nxt
    p.send(ACK, b"x" * MSS)
    p.recv_nothing()


def test_piggybacked_ack_clears_delayed_ack() -> None:
    p = established()
    p.send(ACK, b"q")
    p.dut.send(b"r")
    s = p.recv_one()
    assert s.payload == b"r" and s.ack == p.nxt
    p.tick(C.TCP_DELAYED_ACK * 2)  # past the delayed-ACK time, before the RTO
    p.recv_nothing()


def test_out_of_order_reassembly_with_sack() -> None:
    p = established()
    base = p.nxt
    p.send(ACK, b"B" * 100, seq=base + 100)
    a1 = p.recv_one()  # immediate duplicate ACK (RFC 5681 §4.2)
    assert a1.ack == base and a1.sack_blocks == (((base + 100) & SEQ_MASK, (base + 200) & SEQ_MASK),)
    p.send(ACK, b"D" * 100, seq=base + 300)
    a2 = p.recv_one()
    # RFC 2018 §4: the most recent block first.
    assert a2.sack_blocks == (((base + 300) & SEQ_MASK, (base + 400) & SEQ_MASK),
                              ((base + 100) & SEQ_MASK, (base + 200) & SEQ_MASK))
    assert p.dut.readable == 0
    p.send(ACK, b"A" * 100, seq=base)
    a3 = p.recv_one()  # hole filled: ACK at once
    assert a3.ack == (base + 200) & SEQ_MASK
    assert a3.sack_blocks == (((base + 300) & SEQ_MASK, (base + 400) & SEQ_MASK),)
    p.send(ACK, b"C" * 100, seq=base + 200)
    a4 = p.recv_one()
    assert a4.ack == (base + 400) & SEQ_MASK and a4.sack_blocks == ()
    assert p.dut.receive() == b"A" * 100 + b"B" * 100 + b"C" * 100 + b"D" * 100


def test_overlapping_out_of_order_segments() -> None:
    p = established()
    base = p.nxt
    p.send(ACK, b"c" * 50, seq=base + 20)
    p.send(ACK, b"b" * 100, seq=base + 10)  # covers the first one
    p.send(ACK, b"d" * 30, seq=base + 100)  # overlaps the end
    p.send(ACK, b"a" * 15, seq=base)
    data = p.dut.receive()
    # The first copy of a byte is kept; later copies only fill gaps.
    assert data == b"a" * 15 + b"b" * 5 + b"c" * 50 + b"b" * 40 + b"d" * 20


def test_duplicate_segment_gets_dsack() -> None:
    p = established()
    base = p.nxt
    p.send(ACK, b"x" * 100)
    p.recv()  # maybe nothing (delayed)
    p.send(ACK, b"x" * 100, seq=base)
    a = p.recv_one()
    assert a.ack == (base + 100) & SEQ_MASK
    assert a.sack_blocks == ((base & SEQ_MASK, (base + 100) & SEQ_MASK),)  # RFC 2883


def test_receive_window_reflects_free_buffer() -> None:
    p = established(TcpConfig(recv_buffer=8192, window_scaling=False))
    p.send(ACK, b"x" * 1000)
    p.send(ACK, b"x" * 1000)
    p.tick(1)
    a = p.recv()[-1]
    assert a.window == 8192 - 2000
    p.dut.receive()
    p.send(ACK, b"y")
    p.tick(1)
    assert p.recv()[-1].window == 8191


def test_receive_buffer_bound_and_zero_window() -> None:
    p = established(TcpConfig(recv_buffer=4096, window_scaling=False))
    for _ in range(4):
        p.send(ACK, b"z" * 1024)
    a = p.recv()[-1]
    assert a.window == 0
    # A peer ignoring the window: the data is dropped and answered.
    p.send(ACK, b"!" * 1000)
    a = p.recv_one()
    assert a.window == 0 and a.ack == (p.nxt - 1000) & SEQ_MASK
    assert p.dut.readable == 4096
    assert p.dut.drops[DropReason.TCP_OUT_OF_WINDOW] >= 1


def test_window_update_after_read_opens_zero_window() -> None:
    p = established(TcpConfig(recv_buffer=4096, window_scaling=False))
    for _ in range(4):
        p.send(ACK, b"z" * 1024)
    assert p.recv()[-1].window == 0
    p.dut.receive(100)
    p.recv_nothing()  # SWS: 100 bytes is not worth a window update
    p.dut.receive()
    u = p.recv_one()
    assert u.flags == ACK and u.window == 4096


def test_no_window_update_when_window_still_large() -> None:
    p = established()
    p.send(ACK, b"z" * 1000)
    p.dut.receive()
    p.recv_nothing()


def test_reassembly_queue_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    p = established()
    p.dut._ooo.max_segments = 4
    base = p.nxt
    for i in range(10):
        p.send(ACK, b"o" * 10, seq=base + 20 * (i + 1))
    assert len(p.dut._ooo) == 4
    assert p.dut.drops[DropReason.TCP_OOO_FULL] == 6


def test_dupacks_emitted_per_out_of_order_segment() -> None:
    p = established()
    base = p.nxt
    for i in range(3):
        p.send(ACK, b"o" * 10, seq=base + 100 + 10 * i)
    acks = p.recv()
    assert len(acks) == 3 and all(a.ack == base & SEQ_MASK for a in acks)


# -- zero window from the peer: persist timer ----------------------------------------


def test_zero_window_probes_with_backoff_and_reopen() -> None:
    p = established()
    p.dut.send(b"a" * 1000)
    s = p.recv_one()
    p.send(ACK, ack=s.seq + 1000, window=0)
    p.dut.send(b"b" * 3000)
    p.recv_nothing()
    waits = []
    probes = []
    for _ in range(4):
        waits.append(p.to_deadline())
        pr = p.recv_one()
        probes.append(pr)
        assert len(pr.payload) == 1
        p.send(ACK, ack=s.seq + 1000, window=0)  # answered, still closed
    assert waits[1] == pytest.approx(2 * waits[0]) and waits[2] == pytest.approx(2 * waits[1])
    assert all(pr.seq == (s.seq + 1000) & SEQ_MASK for pr in probes)
    assert p.dut.state is S.ESTABLISHED
    # The application on the other side reads: the window opens.
    p.send(ACK, ack=s.seq + 1000, window=65535)
    segs = p.recv()
    assert sum(len(x.payload) for x in segs) == 3000
    assert segs[0].seq == (s.seq + 1000) & SEQ_MASK


def test_zero_window_probe_accepted_byte() -> None:
    p = established()
    p.send(ACK, window=0)
    p.dut.send(b"xyz")
    p.recv_nothing()  # arms the persist timer
    p.to_deadline()
    pr = p.recv_one()
    assert pr.payload == b"x"
    p.send(ACK, ack=pr.seq + 1, window=0)  # the receiver took the byte
    p.to_deadline()
    assert p.recv_one().payload == b"y"


def test_unanswered_zero_window_probes_time_out() -> None:
    p = established(TcpConfig(max_retransmits=3))
    p.send(ACK, window=0)
    p.dut.send(b"data")
    p.recv_nothing()
    for _ in range(3):
        p.to_deadline()
        assert len(p.recv_one().payload) == 1
    p.to_deadline()
    assert p.dut.state is S.CLOSED
    assert p.recv_one().flags & 4  # RST
    assert ConnectionClosed("timeout") in p.events()


def test_zero_window_with_unacked_data_and_nothing_queued() -> None:
    """The window closes while data is unacknowledged and nothing else is
    queued: the persist timer must still probe (a lost window update would
    otherwise deadlock both ends)."""
    p = established()
    p.dut.send(b"a" * 3000)
    segs = p.recv()
    p.send(ACK, ack=segs[0].seq + MSS, window=0)  # first segment in, window closed
    p.recv_nothing()
    assert p.dut.poll_at() is not None
    p.to_deadline()
    probe = p.recv_one()
    assert probe.seq == (segs[0].seq + MSS) & SEQ_MASK and len(probe.payload) == 1
    p.send(ACK, ack=segs[0].seq + MSS, window=100)  # reopened
    assert p.recv()[0].seq == (segs[0].seq + MSS) & SEQ_MASK


def test_zero_window_with_only_fin_pending() -> None:
    p = established()
    p.send(ACK, window=0)
    p.dut.shutdown(p.now)
    fin = p.recv_one()  # a FIN needs no window
    assert fin.flags & FIN and fin.payload == b""
    assert p.dut.state is S.FIN_WAIT_1


def test_keepalive_not_armed_by_default() -> None:
    p = established()
    assert p.dut.poll_at() is None
