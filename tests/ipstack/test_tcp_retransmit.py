"""Retransmission and loss recovery.

RFC 6298 (RTO, Karn, backoff), RFC 5681 (fast retransmit, limited
transmit), RFC 6582 (NewReno partial ACKs), RFC 6675 (SACK recovery).
"""

from __future__ import annotations

import pytest

from proxy.ipstack.tcp import ConnectionClosed, TcpConfig, TcpState
from proxy.ipstack.wire.tcp import ACK, FIN, RST, SEQ_MASK
from proxy.testing.tcp_peer import Peer

S = TcpState
MSS = 1208
#: RTO mechanics on their own: no tail loss probe ahead of the timer.
NO_TLP = TcpConfig(tail_loss_probe=False)


def established(config: TcpConfig | None = None, rtt: float = 0.1, **kw: object) -> Peer:
    """Handshake with a measured RTT of ``rtt`` (so RTO = rtt + 4*rtt/2 = 3 rtt)."""
    p = Peer(config)
    syn = p.connect()
    p.use_ts = kw.pop("ts", True) and syn.timestamps is not None  # type: ignore[assignment]
    if p.use_ts:
        p.ts_echo = syn.timestamps[0]
    p.tick(rtt)
    p.send(0x12, seq=p.iss, mss=1220, wscale=kw.pop("wscale", 7),
           sack_permitted=kw.pop("sack", True))
    p.recv_one()
    p.send(ACK)  # a first scaled window (the SYN-ACK's was unscaled)
    p.events()
    return p


def flight(p: Peer, n: int) -> list:
    p.dut.send(b"d" * (n * MSS))
    segs = p.recv()
    assert len(segs) == n
    return segs


# -- RFC 6298 -----------------------------------------------------------------------


def test_rto_from_handshake_sample() -> None:
    p = established(rtt=0.1)
    assert p.dut.rto.srtt == pytest.approx(0.1, abs=0.002)
    assert p.dut.rto.rto == pytest.approx(0.3, abs=0.01)


def test_retransmit_and_exponential_backoff() -> None:
    p = established(TcpConfig(max_retransmits=20, tail_loss_probe=False), rtt=0.1)
    segs = flight(p, 4)
    rto = p.dut.rto.rto
    waits = []
    for _ in range(5):
        waits.append(p.to_deadline())
        r = p.recv()
        assert len(r) == 1 and r[0].seq == segs[0].seq and r[0].payload == segs[0].payload
    assert waits == pytest.approx([rto, 2 * rto, 4 * rto, 8 * rto, 16 * rto], rel=1e-3)
    assert p.dut.cwnd == MSS  # RFC 5681 §3.1: loss window
    assert p.dut.ssthresh == 2 * MSS  # max(FlightSize / 2, 2 SMSS) at the first timeout


def test_backoff_capped_at_rto_max() -> None:
    p = established(TcpConfig(rto_max=2.0, max_retransmits=20, tail_loss_probe=False), rtt=0.1)
    flight(p, 1)
    waits = [p.to_deadline() for _ in range(8) if p.recv() is not None]
    assert max(waits) == pytest.approx(2.0)


def test_give_up_after_max_retransmits() -> None:
    p = established(TcpConfig(max_retransmits=3, tail_loss_probe=False), rtt=0.1)
    flight(p, 1)
    for _ in range(3):
        p.to_deadline()
        assert len(p.recv()) == 1
    p.to_deadline()
    rst = p.recv_one()
    assert rst.flags == RST
    assert p.dut.state is S.CLOSED
    assert p.events() == [ConnectionClosed("timeout")]


def test_timeout_reason_from_soft_icmp_error() -> None:
    p = established(TcpConfig(max_retransmits=1, tail_loss_probe=False), rtt=0.1)
    flight(p, 1)
    p.dut.icmp_error_received("unreachable-host", p.now)
    assert p.dut.state is S.ESTABLISHED  # soft while synchronized (RFC 5461)
    p.to_deadline()
    p.recv()
    p.to_deadline()
    assert p.events() == [ConnectionClosed("unreachable-host")]


def test_go_back_n_after_timeout_in_slow_start() -> None:
    p = established(NO_TLP, rtt=0.1)
    segs = flight(p, 6)
    p.to_deadline()
    assert [s.seq for s in p.recv()] == [segs[0].seq]
    # The peer acknowledges the retransmission: slow start sends the next two.
    p.send(ACK, ack=segs[0].seq + MSS)
    again = p.recv()
    assert [s.seq for s in again] == [segs[1].seq, segs[2].seq]


def test_timer_restarts_only_when_new_data_is_acked() -> None:
    p = established(NO_TLP, rtt=0.1)
    segs = flight(p, 4)
    deadline = p.dut.poll_at()
    p.tick(0.05)
    p.send(ACK, ack=segs[0].seq)  # a duplicate ACK: no new data
    assert p.dut.poll_at() == deadline
    p.send(ACK, ack=segs[1].seq)  # new data: restart (RFC 6298 §5.3)
    assert p.dut.poll_at() == pytest.approx(p.now + p.dut.rto.rto)
    p.send(ACK, ack=segs[3].seq + MSS)  # everything: stop (§5.2)
    assert p.dut.poll_at() is None


def test_karn_no_sample_from_retransmission_without_timestamps() -> None:
    p = established(TcpConfig(timestamps=False, tail_loss_probe=False), rtt=0.1, ts=False)
    srtt = p.dut.rto.srtt
    samples = p.dut.rto.samples
    segs = flight(p, 1)
    p.to_deadline()
    p.recv_one()
    backed_off = p.dut.rto.rto
    p.tick(0.01)
    p.send(ACK, ack=segs[0].seq + MSS)  # ambiguous: original or retransmission?
    assert p.dut.rto.samples == samples and p.dut.rto.srtt == srtt
    # The timeout's data is all acknowledged: the RTO is re-derived.
    assert p.dut.rto.rto < backed_off
    # The next, unretransmitted segment gives a sample again.
    segs = flight(p, 1)
    p.tick(0.2)
    p.send(ACK, ack=segs[0].seq + MSS)
    assert p.dut.rto.samples == samples + 1


def test_timestamps_sample_every_ack_including_retransmissions() -> None:
    p = established(NO_TLP, rtt=0.1)
    segs = flight(p, 1)
    p.to_deadline()
    r = p.recv_one()
    p.ts_echo = r.timestamps[0]
    p.tick(0.05)
    n = p.dut.rto.samples
    p.send(ACK, ack=segs[0].seq + MSS)
    assert p.dut.rto.samples == n + 1
    assert p.dut.rto.backoff == 0


# -- fast retransmit and NewReno (no SACK) --------------------------------------------


def test_fast_retransmit_on_third_dupack_newreno() -> None:
    p = established(rtt=0.1, sack=False)
    assert not p.dut.sack_ok
    segs = flight(p, 10)
    first = segs[0].seq
    p.dut.send(b"e" * (3 * MSS))
    # Limited transmit (RFC 3042): the first two duplicates each release one segment.
    p.send(ACK, ack=first)
    assert len(p.recv()) == 1
    p.send(ACK, ack=first)
    assert len(p.recv()) == 1
    p.send(ACK, ack=first)
    r = p.recv()
    assert r[0].seq == first and len(r[0].payload) == MSS
    assert p.dut.in_recovery
    flight_size = 12 * MSS
    assert p.dut.ssthresh == flight_size // 2
    assert p.dut.cwnd == flight_size // 2 + 3 * MSS  # RFC 6582 §3.2 step 2
    cwnd = p.dut.cwnd
    p.send(ACK, ack=first)
    assert p.dut.cwnd == cwnd + MSS  # inflation


def test_newreno_partial_ack_retransmits_next_hole() -> None:
    p = established(rtt=0.1, sack=False)
    segs = flight(p, 10)
    s0, s4 = segs[0].seq, segs[4].seq
    for _ in range(3):
        p.send(ACK, ack=s0)
    p.recv()
    # Segments 0 and 4 were lost; the retransmission of 0 fills the first hole.
    p.send(ACK, ack=s4)  # partial ACK
    r = p.recv()
    assert r and r[0].seq == s4
    assert p.dut.in_recovery
    # Full ACK: everything up to the recovery point.
    end = segs[-1].seq + MSS
    p.send(ACK, ack=end)
    assert not p.dut.in_recovery
    assert p.dut.cwnd <= p.dut.ssthresh


def test_no_second_fast_retransmit_before_recover_is_acked() -> None:
    p = established(rtt=0.1, sack=False)
    segs = flight(p, 10)
    for _ in range(3):
        p.send(ACK, ack=segs[0].seq)
    p.recv()
    p.to_deadline()  # timeout during recovery: recover = SND.MAX
    p.recv()
    assert not p.dut.in_recovery
    n = p.dut.stats["fast_retransmit"]
    for _ in range(4):
        p.send(ACK, ack=segs[0].seq)
    assert p.dut.stats["fast_retransmit"] == n  # RFC 6582 §3.2 step 2


# -- SACK (RFC 6675) ------------------------------------------------------------------


def test_sack_recovery_retransmits_only_holes() -> None:
    p = established(rtt=0.1)
    assert p.dut.sack_ok
    segs = flight(p, 10)
    seqs = [s.seq for s in segs]
    lost = {0, 3}
    # The peer got 1-2 and 4-9: three SACKing duplicate ACKs.
    blocks = []
    for i in (1, 2, 4, 5, 6):
        if i == 1:
            blocks = [(seqs[1], seqs[2] + MSS)]
        elif i == 4:
            blocks = [(seqs[4], seqs[4] + MSS), (seqs[1], seqs[2] + MSS)]
        else:
            blocks = [(seqs[4], seqs[i] + MSS), (seqs[1], seqs[2] + MSS)]
        if i == 2:
            continue
        p.send(ACK, ack=seqs[0], sack=blocks)
    out = p.recv()
    assert p.dut.in_recovery
    retx = [s.seq for s in out if s.seq in seqs]
    assert retx == [seqs[0], seqs[3]]
    assert {seqs.index(s) for s in retx} == lost
    # ACK everything: recovery ends, RTO re-derived.
    p.send(ACK, ack=seqs[-1] + MSS)
    assert not p.dut.in_recovery


def test_sack_blocks_below_una_and_beyond_max_ignored() -> None:
    p = established(rtt=0.1)
    segs = flight(p, 3)
    una = segs[0].seq
    p.send(ACK, ack=una, sack=[((una - 5000) & SEQ_MASK, (una - 100) & SEQ_MASK),
                               (una + 10 * MSS, una + 20 * MSS)])
    assert p.dut.scoreboard.sacked_bytes == 0


def test_sack_entry_by_islost_with_fewer_dupacks() -> None:
    """RFC 6675 §5: IsLost(HighACK+1) can start recovery before 3 duplicates."""
    p = established(rtt=0.1)
    segs = flight(p, 10)
    seqs = [s.seq for s in segs]
    # One ACK SACKing segments 1..4 (4 segments > 2*SMSS above segment 0).
    p.send(ACK, ack=seqs[0], sack=[(seqs[1], seqs[4] + MSS)])
    out = p.recv()
    assert p.dut.in_recovery
    assert out[0].seq == seqs[0]


def test_fin_retransmitted_with_last_data() -> None:
    p = established(rtt=0.1)
    p.dut.send(b"tail")
    p.dut.shutdown(p.now)
    s = p.recv_one()
    assert s.payload == b"tail" and s.flags & FIN
    p.to_deadline()
    again = p.recv_one()
    assert again.payload == b"tail" and again.flags & FIN and again.seq == s.seq
