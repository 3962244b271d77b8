"""RACK-TLP (RFC 8985) and PRR (RFC 6937): packet-level scenarios, fake clock.

The peer plays the receiver segment by segment; every scenario checks
what the connection retransmits, when, and that no retransmission timeout
was needed.  RTT is 0.1 s (SRTT 0.1, RTO 0.3, PTO 2*SRTT = 0.2).
"""

from __future__ import annotations

import pytest

from proxy.ipstack.tcp import TcpConfig
from proxy.ipstack.wire.tcp import ACK
from proxy.testing.tcp_peer import Peer

MSS = 1208
RTT = 0.1


def established(config: TcpConfig | None = None) -> Peer:
    """Handshake with a measured RTT of 0.1 s, SACK and timestamps."""
    p = Peer(config)
    syn = p.connect()
    p.use_ts = True
    p.ts_echo = syn.timestamps[0]
    p.tick(RTT)
    p.send(0x12, seq=p.iss, mss=1220, wscale=7, sack_permitted=True)
    p.recv_one()
    p.send(ACK)
    p.events()
    return p


def flight(p: Peer, n: int, extra: int = 0) -> list:
    """Queue n (+extra) segments of data; exactly n go out now."""
    p.dut.send(b"d" * ((n + extra) * MSS))
    segs = p.recv()
    assert len(segs) == n, len(segs)
    return segs


def end(s) -> int:
    return s.seq + len(s.payload)


def sack_ack(p: Peer, ack: int, *blocks: tuple[int, int]) -> list:
    p.send(ACK, ack=ack, sack=list(blocks))
    return p.recv()


# -- RACK ------------------------------------------------------------------------


def test_lost_retransmission_is_resent_without_rto() -> None:
    """RFC 8985 §3.3.2: a retransmission is timed like any segment."""
    p = established()
    segs = flight(p, 10, extra=8)
    s = [x.seq for x in segs]
    p.tick(RTT)
    # The peer got 1..9, not 0: recovery starts and resends 0, then new data.
    out = sack_ack(p, s[0], (s[1], end(segs[9])))
    d = p.dut
    assert d.in_recovery and d.stats["fast_retransmit"] == 1
    assert out[0].seq == s[0]
    new = [x for x in out[1:]]
    assert new and all(x.seq >= end(segs[9]) for x in new)
    # The retransmission is lost; the new data after it arrives.
    p.tick(RTT)
    out = sack_ack(p, s[0], (new[0].seq, end(new[-1])), (s[1], end(segs[9])))
    assert out[0].seq == s[0] and len(out[0].payload) == MSS  # resent again, at once
    assert d.stats["rto"] == 0 and d.stats["fast_retransmit"] == 1  # one reduction
    p.tick(RTT)
    p.send(ACK, ack=end(out[-1]))
    assert not d.in_recovery and d.cwnd == d.ssthresh  # RFC 6937: PRR ends at ssthresh


def test_multiple_losses_in_one_window_one_recovery() -> None:
    p = established()
    first = flight(p, 10, extra=20)
    p.tick(RTT)
    segs = []
    for x in first:  # slow start: each ACK releases two segments
        p.send(ACK, ack=end(x), ts=(p.tsval, x.timestamps[0]))  # echo what it ACKs
        segs += p.recv()
    assert len(segs) == 20
    s = [x.seq for x in segs]
    lost = [2, 5, 9, 14]
    p.tick(RTT)
    una = s[2]
    runs = [(s[3], end(segs[4])), (s[6], end(segs[8])), (s[10], end(segs[13])),
            (s[15], end(segs[19]))]
    # SACK blocks arrive in several ACKs (three per ACK with timestamps).
    out = sack_ack(p, una, runs[0])
    out += sack_ack(p, una, runs[1], runs[0])
    out += sack_ack(p, una, runs[2], runs[1], runs[0])
    out += sack_ack(p, una, runs[3], runs[2], runs[1])
    resent = sorted(x.seq for x in out if x.seq < end(segs[19]))
    assert resent == [s[i] for i in lost]
    d = p.dut
    assert d.stats["fast_retransmit"] == 1 and d.stats["rto"] == 0
    p.tick(RTT)
    p.send(ACK, ack=end(segs[19]))
    assert not d.in_recovery


def test_reordering_inside_the_window_is_not_a_loss() -> None:
    """One SACK for a later segment: wait min_RTT/4 before calling a hole lost."""
    p = established()
    segs = flight(p, 10)
    s = [x.seq for x in segs]
    p.tick(RTT)
    assert sack_ack(p, s[0], (s[5], end(segs[5]))) == []
    d = p.dut
    assert d.poll_at() == pytest.approx(p.now + RTT / 4)  # the RACK timer
    p.tick(RTT / 10)
    p.send(ACK, ack=end(segs[5]))  # the hole was only late
    assert p.recv() == [] and not d.in_recovery
    assert d.stats["retransmitted"] == 0
    assert d._rack.reordering_seen


def test_rack_timer_marks_the_hole_lost() -> None:
    p = established()
    segs = flight(p, 10)
    s = [x.seq for x in segs]
    p.tick(RTT)
    sack_ack(p, s[0], (s[5], end(segs[5])))
    assert p.to_deadline() == pytest.approx(RTT / 4)
    out = p.recv()
    assert p.dut.in_recovery and out[0].seq == s[0]
    assert p.dut.stats["rto"] == 0


def test_three_sacked_segments_mean_loss_at_once() -> None:
    """RFC 8985 §6.2 step 4: reo_wnd is 0 once DupThresh segments are SACKed."""
    p = established()
    segs = flight(p, 10)
    s = [x.seq for x in segs]
    p.tick(RTT)
    out = sack_ack(p, s[0], (s[1], end(segs[3])))
    assert p.dut.in_recovery and out[0].seq == s[0]


# -- TLP -------------------------------------------------------------------------


def test_tail_loss_probe_after_two_srtt_resends_the_last_segment() -> None:
    p = established()
    segs = flight(p, 4)
    assert p.dut.poll_at() == pytest.approx(p.now + 2 * RTT)  # PTO < RTO (0.3)
    assert p.to_deadline() == pytest.approx(2 * RTT)
    probe = p.recv_one()
    assert probe.seq == segs[-1].seq and probe.payload == segs[-1].payload
    assert p.dut.stats["tlp"] == 1
    # The tail (1, 2) was lost: the probe's SACK lets RACK see it.
    p.tick(RTT)
    out = sack_ack(p, segs[1].seq, (segs[3].seq, end(segs[3])))
    assert [x.seq for x in out] == [segs[1].seq, segs[2].seq]
    assert p.dut.stats["rto"] == 0


def test_probe_sends_new_data_when_the_window_allows() -> None:
    """cwnd-limited with data queued: the probe is new data, two segments
    (DEVIATION from one, see tcp_recovery._send_tlp), outside cwnd."""
    p = established()
    segs = flight(p, 10, extra=5)
    p.to_deadline()
    out = p.recv()
    assert [x.seq for x in out] == [end(segs[-1]), end(segs[-1]) + MSS]
    cwnd = p.dut.cwnd
    p.tick(RTT)
    p.send(ACK, ack=end(out[-1]))
    assert p.dut.cwnd >= cwnd and p.dut.stats["tlp_recovery"] == 0


def test_single_segment_probe_waits_for_a_delayed_ack() -> None:
    """PTO += WCDelAckT for one segment in flight; never later than the RTO."""
    p = established()
    flight(p, 1)
    rto = p.dut.rto.rto
    assert 2 * RTT + 0.2 > rto
    assert p.to_deadline() == pytest.approx(rto)
    p.recv_one()
    assert p.dut.stats["tlp"] == 1 and p.dut.stats["rto"] == 0
    # The probe re-armed the RTO, not another probe.
    assert p.to_deadline() == pytest.approx(rto)
    p.recv_one()
    assert p.dut.stats["rto"] == 1


def _probe_last_segment(p: Peer) -> tuple:
    segs = flight(p, 4)
    p.tick(RTT)
    p.send(ACK, ack=segs[3].seq)  # 0..2 arrive; 3 (or its ACK) is lost
    p.to_deadline()
    probe = p.recv_one()
    assert probe.seq == segs[3].seq and p.dut.stats["tlp"] == 1
    return segs, probe


def test_probe_that_repaired_a_loss_reduces_the_window() -> None:
    """RFC 8985 §7.4.2: no D-SACK for the probe, and the ACK moves past it."""
    p = established()
    segs, probe = _probe_last_segment(p)
    cwnd = p.dut.cwnd
    p.tick(RTT)
    p.send(ACK, ack=end(probe))
    more = flight(p, 1)
    p.tick(RTT)
    p.send(ACK, ack=end(more[0]))
    assert p.dut.stats["tlp_recovery"] == 1 and p.dut.cwnd < cwnd


def test_probe_answered_by_a_dsack_was_redundant() -> None:
    p = established()
    segs, probe = _probe_last_segment(p)
    cwnd = p.dut.cwnd
    p.tick(RTT)
    # The original arrived too: the peer reports the probe as a duplicate.
    p.send(ACK, ack=end(probe), sack=[(probe.seq, end(probe))])
    more = flight(p, 1)
    p.tick(RTT)
    p.send(ACK, ack=end(more[0]))
    assert p.dut.stats["tlp_recovery"] == 0 and p.dut.cwnd >= cwnd


def test_probe_during_recovery_finds_a_lost_retransmission() -> None:
    """DEVIATION (tcp_recovery._probe_allowed): everything marked lost was
    resent and nothing else can go: the probe draws the SACK RACK needs."""
    p = established()
    segs = flight(p, 4)
    s = [x.seq for x in segs]
    p.tick(RTT)
    out = sack_ack(p, s[0], (s[1], end(segs[3])))
    assert [x.seq for x in out] == [s[0]] and p.dut.in_recovery
    # The retransmission is lost; no ACK comes.  A probe, not the RTO:
    assert p.to_deadline() == pytest.approx(2 * RTT)
    probe = p.recv_one()
    assert probe.seq == s[0]  # the only segment not SACKed
    p.tick(RTT)
    p.send(ACK, ack=end(segs[3]))
    assert not p.dut.in_recovery and p.dut.stats["rto"] == 0


def test_no_probe_without_the_option() -> None:
    p = established(TcpConfig(tail_loss_probe=False))
    flight(p, 4)
    rto = p.dut.rto.rto
    assert p.to_deadline() == pytest.approx(rto)
    assert p.dut.stats["rto"] == 1 and p.dut.stats["tlp"] == 0


# -- RTO with SACK -----------------------------------------------------------------


def test_rto_resends_lost_segments_not_sacked_ones_then_rto_is_rederived() -> None:
    p = established(TcpConfig(tail_loss_probe=False))
    segs = flight(p, 6)
    s = [x.seq for x in segs]
    p.tick(RTT)
    sack_ack(p, s[0], (s[2], end(segs[2])))  # 2 arrived; too little for RACK (timer)
    d = p.dut
    while d.stats["rto"] == 0:
        p.to_deadline()
        out = p.recv()
    assert [x.seq for x in out] == [s[0]]  # the head, cwnd = 1 SMSS
    assert d.rto.backoff == 1
    p.tick(RTT)
    out = sack_ack(p, end(segs[0]), (s[2], end(segs[2])))
    assert [x.seq for x in out] == [s[1], s[3]]  # slow start: 2 segments, 2 skipped
    p.tick(RTT)
    out = sack_ack(p, end(segs[3]))
    assert [x.seq for x in out] == [s[4], s[5]]
    p.tick(RTT)
    p.send(ACK, ack=end(segs[5]))
    assert not d.in_recovery
    # Everything outstanding at the timeout is acknowledged: the RTO comes
    # from SRTT/RTTVAR again, not from the backed-off value.
    assert d.rto.backoff == 0 and d.rto.rto == d.rto.base


# -- the transmission records on their own -------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from proxy.ipstack.tcp_rack import Rack, SentQueue  # noqa: E402

_OPS = st.lists(
    st.tuples(st.sampled_from(["new", "rtx", "ack", "sack", "lost", "unsack"]),
              st.integers(0, 10**6), st.integers(1, 4000)),
    max_size=60,
)


def _check(q: SentQueue, una: int) -> None:
    segs = list(q)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
    assert not segs or (segs[0].start >= una and segs[-1].end == q.high)
    assert all(x.start < x.end for x in segs)
    size = lambda f: sum(x.end - x.start for x in segs if f(x))  # noqa: E731
    assert q.sacked_bytes == size(lambda x: x.sacked)
    assert q.lost_bytes == size(lambda x: x.lost)
    assert q.rtx_bytes == size(lambda x: x.rtx)
    assert q.sacked_count == sum(x.sacked for x in segs)
    assert not any(x.sacked and (x.lost or x.rtx) for x in segs)
    open_ = [x for x in segs if not x.sacked and (not x.lost or x.rtx)]
    if q.clean:
        assert not any(x.retransmitted or x.lost or x.sacked for x in segs)
        assert all(a.xmit_ts <= b.xmit_ts for a, b in zip(segs, segs[1:]))
    else:
        by_time = list(q.in_flight_by_time())
        assert sorted(by_time, key=lambda x: x.start) == open_
        assert all(a.xmit_ts <= b.xmit_ts for a, b in zip(by_time, by_time[1:]))
    lost = [x for x in segs if x.lost and not x.rtx]
    assert q.next_lost(una) is (lost[0] if lost else None)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_sent_queue_invariants(ops: list[tuple[str, int, int]]) -> None:
    """Counters, both orders and the lost queue stay consistent whatever happens."""
    q = SentQueue(1000, 64)
    una = 1000
    now = 0.0
    for op, pick, n in ops:
        now += 0.001
        span = q.high - una
        if op == "new" and not q.full:
            q.sent(q.high, q.high + n, now)
        elif op == "rtx" and span:
            start = una + pick % span
            q.sent(start, min(start + n, q.high + n // 2), now)
        elif op == "ack" and span:
            una += pick % (span + 1)
            q.ack_to(una)
        elif op == "sack" and span:
            lo = una + pick % span
            hi = min(lo + n, q.high)
            q.sack(lo, hi, [(lo, hi)])
        elif op == "lost" and len(q):
            q.mark_lost(list(q)[pick % len(q)])
        elif op == "unsack":
            q.unsack_all()
        _check(q, una)
        assert len(q) <= 64 + 2  # a retransmission may split past the bound once


def test_rack_detects_by_time_and_orders_ties_by_sequence() -> None:
    q = SentQueue(0, 100)
    for i in range(5):
        q.sent(i * 100, i * 100 + 100, 1.0)  # sent together
    q.sent(500, 600, 1.5)
    rack = Rack()
    got = q.sack(300, 400, [(300, 400)])
    rack.update(got, 2.0, lambda s: False)
    assert (rack.xmit_ts, rack.end_seq, rack.rtt, rack.min_rtt) == (1.0, 400, 1.0, 1.0)
    # Segments 0-2 were sent "before" 3 (same time, lower sequence), 4 and 5 after.
    n, timeout = rack.detect_loss(q, 2.0, reo_wnd=0.25)
    assert (n, timeout) == (0, pytest.approx(0.25))
    n, timeout = rack.detect_loss(q, 2.25, reo_wnd=0.25)
    assert (n, timeout) == (3, 0.0)
    assert [x.start for x in q if x.lost] == [0, 100, 200]
    assert q.pipe(600 - 0) == 600 - 100 - 300  # sacked 100, lost 300
