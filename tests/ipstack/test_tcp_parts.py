"""The TCP helper modules on their own: buffers, reassembly, SACK scoreboard,
RTO estimator, congestion controllers, configuration."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from proxy.errors import ConfigError
from proxy.ipstack.tcp_buffers import Reassembler, SendBuffer
from proxy.ipstack.tcp_cc import Cubic, NewReno, make_congestion_control
from proxy.ipstack.tcp_config import TcpConfig
from proxy.ipstack.tcp_rto import RtoEstimator
from proxy.ipstack.tcp_sack import Scoreboard

MSS = 1000


# -- SendBuffer ------------------------------------------------------------------


def test_send_buffer_bounds_and_views() -> None:
    b = SendBuffer(seq=1000, limit=10)
    assert b.write(b"abcdef") == 6
    assert b.write(memoryview(b"ghijklmn")) == 4
    assert b.write(b"x") == 0 and b.space == 0
    assert b.peek(1002, 3) == b"cde" and b.end == 1010
    b.ack_to(1004)
    assert b.seq == 1004 and len(b) == 6 and b.peek(1004, 100) == b"efghij"
    b.ack_to(900)  # old: ignored
    assert b.seq == 1004


# -- Reassembler -----------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 80)), max_size=40),
       st.randoms(use_true_random=False))
def test_reassembly_matches_a_reference(pieces: list[tuple[int, int]], rnd: random.Random) -> None:
    """Random overlapping pieces of a stream (above RCV.NXT = 1) reassemble."""
    stream = rnd.randbytes(400)
    r = Reassembler(1000)
    have: set[int] = set()
    for start, n in pieces:
        assert r.add(start, stream[start : start + n])
        have.update(range(start, start + n))
    assert r.bytes == len(have)
    covered = [x for s, e in r.ranges() for x in range(s, e)]
    assert covered == sorted(have)  # disjoint, merged, exact
    rcv, chunks = r.pull(1)
    expect = 1
    while expect in have:
        expect += 1
    assert rcv == expect
    assert b"".join(chunks) == stream[1:rcv]


def test_reassembler_bound_evicts_the_highest() -> None:
    r = Reassembler(3)
    assert r.add(10, b"a") and r.add(20, b"b") and r.add(30, b"c")
    assert not r.add(40, b"d")  # above everything: dropped
    assert r.add(20, b"b")  # duplicate of stored data: fine
    assert r.add(5, b"e")  # below: the highest (30) makes room
    assert r.ranges() == [(5, 6), (10, 11), (20, 21)] and r.bytes == 3


def test_reassembler_sack_order() -> None:
    r = Reassembler(10)
    assert r.add(10, b"a") and r.add(20, b"b") and r.add(30, b"c")
    assert r.add(20, b"b")  # a duplicate counts as recent
    assert r.sack_blocks(3) == [(20, 21), (30, 31), (10, 11)]
    r.add(11, b"x" * 9)  # joins 10..21
    assert r.sack_blocks(2) == [(10, 21), (30, 31)]


# -- Scoreboard ---------------------------------------------------------------------


def test_scoreboard_merges_and_acks() -> None:
    sb = Scoreboard(10)
    assert sb.add(100, 200) == [(100, 200)]
    assert sb.add(300, 400) == [(300, 400)]
    assert sb.add(150, 320) == [(200, 300)]  # bridges the gap
    assert sb.add(120, 380) == []
    assert sb.ranges() == [(100, 400)] and sb.sacked_bytes == 300
    assert sb.covering(250) == (100, 400) and sb.covering(400) is None
    sb.ack_to(250)
    assert sb.ranges() == [(250, 400)] and sb.sacked_bytes == 150
    assert sb.is_sacked(300) and not sb.is_sacked(400)


def test_scoreboard_holes() -> None:
    sb = Scoreboard(10)
    # Sent 0..10000 in 1000-byte segments; SACKed 2000-3000, 5000-6000, 7000-9000.
    for s, e in ((2000, 3000), (5000, 6000), (7000, 9000)):
        sb.add(s, e)
    assert sb.next_hole(0) == (0, 2000)
    assert sb.next_hole(2500) == (3000, 5000)
    assert sb.next_hole(8000) == (9000, None)
    assert sb.highest == 9000


def test_scoreboard_bounded() -> None:
    sb = Scoreboard(4)
    for i in range(10):
        sb.add(i * 10, i * 10 + 5)
    assert len(sb) == 4 and sb.sacked_bytes == 20


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(1, 60)), max_size=30))
def test_scoreboard_matches_a_set(blocks: list[tuple[int, int]]) -> None:
    sb = Scoreboard(1000)
    ref: set[int] = set()
    for s, n in blocks:
        new = sb.add(s, s + n)
        added = {y for a, b in new for y in range(a, b)}
        assert added == set(range(s, s + n)) - ref  # exactly the new octets
        assert all(a < b for a, b in new)
        ref.update(range(s, s + n))
    assert sb.sacked_bytes == len(ref)
    for x in range(0, 600, 7):
        assert sb.is_sacked(x) == (x in ref)


# -- RTO ---------------------------------------------------------------------------


def test_rto_estimator_rfc6298() -> None:
    r = RtoEstimator(1.0, 0.2, 60.0)
    assert r.rto == 1.0  # §2.1
    r.sample(0.5)
    assert r.srtt == 0.5 and r.rttvar == 0.25 and r.rto == pytest.approx(1.5)  # §2.2
    r.sample(0.3)
    assert r.rttvar == pytest.approx(0.75 * 0.25 + 0.25 * 0.2)  # §2.3
    assert r.srtt == pytest.approx(0.875 * 0.5 + 0.125 * 0.3)
    r.on_timeout()
    r.on_timeout()
    base = r.base
    assert r.rto == pytest.approx(4 * base)
    r.reset_backoff()
    assert r.rto == pytest.approx(base)


def test_rto_clamped() -> None:
    r = RtoEstimator(1.0, 0.2, 60.0)
    r.sample(0.0001)
    assert r.rto == 0.2
    for _ in range(40):
        r.on_timeout()
    assert r.rto == 60.0


# -- congestion control -----------------------------------------------------------------


def test_newreno_slow_start_and_avoidance() -> None:
    cc = NewReno(MSS, 10)
    assert cc.cwnd == 10 * MSS
    cc.on_ack(5 * MSS, 0.0, 0.1)
    assert cc.cwnd == 12 * MSS  # L = 2 SMSS per ACK (RFC 3465)
    cc.on_loss(12 * MSS, 0.0)
    assert cc.ssthresh == 6 * MSS and cc.cwnd == 6 * MSS
    for _ in range(6):
        cc.on_ack(MSS, 0.0, 0.1)
    assert cc.cwnd == 7 * MSS  # one SMSS per window of ACKed bytes
    cc.on_rto(7 * MSS, 0.0)
    assert cc.cwnd == MSS and cc.ssthresh == 7 * MSS // 2
    cc.on_recovery_exit(10 * MSS)
    assert cc.cwnd == 7 * MSS // 2  # min(ssthresh, FlightSize + SMSS)


def test_cubic_grows_back_towards_w_max() -> None:
    cc = Cubic(MSS, 10)
    cc.ssthresh = 10 * MSS
    cc.cwnd = 100 * MSS
    cc.on_loss(100 * MSS, 0.0)
    assert cc.cwnd == 70 * MSS  # beta 0.7
    now = 0.0
    for _ in range(2000):
        now += 0.01
        cc.on_ack(MSS, now, 0.05)
    assert cc.cwnd > 100 * MSS  # past W_max after K seconds


def test_make_congestion_control() -> None:
    assert isinstance(make_congestion_control("cubic", MSS, 10), Cubic)
    assert type(make_congestion_control("newreno", MSS, 10)) is NewReno


# -- configuration ---------------------------------------------------------------------


def test_config_defaults_and_wscale() -> None:
    c = TcpConfig()
    assert c.mss == 1220 and c.window_scaling and c.timestamps and c.sack
    assert c.wscale == 5
    assert TcpConfig(recv_buffer=65535).wscale == 0
    assert TcpConfig(recv_buffer=65536).wscale == 1
    assert TcpConfig(window_scaling=False, recv_buffer=1000).wscale == 0


@pytest.mark.parametrize("kw", [
    {"recv_buffer": 0}, {"send_buffer": 1 << 31}, {"window_scaling": False, "recv_buffer": 70000},
    {"delayed_ack": 0.6}, {"rto_min": 2.0}, {"congestion_control": "bbr"}, {"syn_retries": 0},
    {"mss": 10}, {"time_wait": -1},
])
def test_config_rejects(kw: dict) -> None:
    with pytest.raises(ConfigError):
        TcpConfig(**kw)
