"""Opening a connection (RFC 9293 §3.5): active, passive, simultaneous.

Packet level with a fake clock (proxy.testing.tcp_peer.Peer): each test
plays the remote end and checks every segment the connection emits.
"""

from __future__ import annotations

import pytest

from proxy.ipstack.tcp import ConnectionClosed, TcpConfig, TcpConnection, TcpState
from proxy.ipstack.wire.tcp import ACK, FIN, RST, SEQ_MASK, SYN
from proxy.testing.tcp_peer import Peer

S = TcpState


def test_active_open_syn_carries_all_options() -> None:
    p = Peer()
    syn = p.connect()
    assert p.dut.state is S.SYN_SENT
    assert syn.flags == SYN and syn.ack == 0
    assert syn.mss == 1220
    assert syn.wscale == TcpConfig().wscale == 5  # 1 MiB buffer
    assert syn.sack_permitted
    assert syn.timestamps is not None and syn.timestamps[1] == 0
    assert syn.window == 65535  # RFC 7323 §2.2: a SYN's window is not scaled
    assert syn.seq == p.dut.iss


def test_active_open_completes_with_full_options() -> None:
    p = Peer()
    ack = p.establish_active(wscale=7)
    dut = p.dut
    assert dut.state is S.ESTABLISHED
    assert p.event_names() == ["Connected"]
    assert ack.seq == (dut.iss + 1) & SEQ_MASK and ack.ack == (p.iss + 1) & SEQ_MASK
    assert ack.timestamps == (ack.timestamps[0], 5000)  # echoes the SYN-ACK's TSval
    assert dut.ws_ok and dut.snd_wscale == 7 and dut.ts_ok and dut.sack_ok
    # The ACK's window is scaled by our shift 5: 1 MiB >> 5.
    assert ack.window == (1 << 20) >> 5
    assert dut.snd_wnd == 65535  # the SYN-ACK's window is unscaled
    assert dut.mss == 1220 - 12


def test_syn_ack_without_options() -> None:
    p = Peer()
    p.connect()
    p.send(SYN | ACK, seq=p.iss, window=4000, ts=None)
    a = p.recv_one()
    dut = p.dut
    assert dut.state is S.ESTABLISHED
    assert not dut.ws_ok and not dut.ts_ok and not dut.sack_ok
    assert a.timestamps is None
    # No scaling: our window is capped at 65535, unscaled.
    assert a.window == 65535
    assert dut.mss == 1220  # RFC 9293 §3.7.1 IPv6 default, no timestamps


@pytest.mark.parametrize("peer_mss,payload", [(536, 536 - 12), (1220, 1208), (9000, 1208),
                                               (1, 48 - 12)])
def test_mss_negotiation(peer_mss: int, payload: int) -> None:
    p = Peer()
    p.establish_active(mss=peer_mss)
    p.dut.send(b"x" * 5000)
    segs = p.recv()
    assert segs and max(len(s.payload) for s in segs) == payload


def test_missing_mss_means_ipv6_default() -> None:
    p = Peer()
    p.establish_active(mss=None)
    assert p.dut.mss == 1220 - 12


def test_window_scale_above_14_used_as_14() -> None:
    p = Peer()
    p.establish_active(wscale=30)
    assert p.dut.snd_wscale == 14


def test_passive_open() -> None:
    p = Peer()
    synack = p.establish_passive()
    dut = p.dut
    assert synack.ack == (p.iss + 1) & SEQ_MASK
    assert synack.mss == 1220 and synack.wscale == 5 and synack.sack_permitted
    assert synack.timestamps == (synack.timestamps[0], 5000)
    assert dut.state is S.ESTABLISHED
    assert p.event_names() == ["Connected"]


def test_passive_open_answers_only_offered_options() -> None:
    p = Peer()
    synack = p.establish_passive(wscale=None, sack_permitted=False, ts=False, mss=None)
    assert synack.wscale is None and not synack.sack_permitted and synack.timestamps is None
    assert synack.mss == 1220
    assert not p.dut.ws_ok and not p.dut.ts_ok and not p.dut.sack_ok


def test_accept_rejects_non_syn() -> None:
    p = Peer()
    with pytest.raises(ValueError):
        TcpConnection.accept(p.config, p.seg(SYN | ACK), local=p.local, remote=p.remote,
                             rng=p.rng, now=0.0)


def test_simultaneous_open() -> None:
    """RFC 9293 Figure 8: SYNs cross, both send SYN-ACK, both establish."""
    p = Peer()
    syn = p.connect()
    p.use_ts = True
    p.ts_echo = syn.timestamps[0]
    p.send(SYN, seq=p.iss, ack=0, mss=1220, wscale=7, sack_permitted=True)
    assert p.dut.state is S.SYN_RECEIVED
    synack = p.recv_one()
    assert synack.flags == SYN | ACK
    assert synack.seq == syn.seq and synack.ack == (p.iss + 1) & SEQ_MASK
    assert synack.wscale == 5 and synack.sack_permitted
    # The peer's SYN-ACK (its SYN again, now acknowledging ours) completes it.
    p.send(SYN | ACK, seq=p.iss, mss=1220, wscale=7, sack_permitted=True)
    assert p.dut.state is S.ESTABLISHED
    assert p.event_names() == ["Connected"]
    p.recv_nothing()
    # A stray SYN now is a challenge-ACK case (RFC 5961 §4).
    p.send(SYN, seq=p.iss, ack=0)
    assert p.dut.state is S.ESTABLISHED
    assert p.recv_one().flags == ACK


def test_simultaneous_open_then_ack_only() -> None:
    p = Peer()
    p.connect()
    p.send(SYN, seq=p.iss, ack=0, ts=None)
    p.recv_one()
    p.send(ACK, ts=None)
    assert p.dut.state is S.ESTABLISHED


def test_syn_retransmission_backoff_and_give_up() -> None:
    p = Peer(TcpConfig(syn_retries=3))
    syn = p.connect()
    waits = []
    for _ in range(3):
        waits.append(p.to_deadline())
        again = p.recv_one()
        assert again.flags == SYN and again.seq == syn.seq
    assert waits == pytest.approx([1.0, 2.0, 4.0])
    p.to_deadline()
    p.recv_nothing()
    assert p.dut.state is S.CLOSED and p.dut.closed
    assert p.events() == [ConnectionClosed("timeout")]


def test_time_exceeded_ends_syn_sent() -> None:
    # DEVIATION from RFC 1122 (soft), as RFC 5461 §4 and Linux: the attempt
    # ends at once with the reason, so SOCKS5 can answer 0x06.
    p = Peer(TcpConfig(syn_retries=1))
    p.connect()
    p.dut.icmp_error_received("time-exceeded", p.now)
    assert p.dut.state is S.CLOSED
    assert p.events() == [ConnectionClosed("time-exceeded")]


@pytest.mark.parametrize("kind", ["unreachable-port", "unreachable-host", "unreachable-net",
                                  "admin-prohibited"])
def test_unreachable_aborts_connect(kind: str) -> None:
    p = Peer()
    p.connect()
    p.dut.icmp_error_received(kind, p.now)
    assert p.dut.state is S.CLOSED
    assert p.events() == [ConnectionClosed(kind)]
    p.recv_nothing()


def test_rto_after_syn_timeout_is_three_seconds() -> None:
    """RFC 6298 §5.7 (no timestamps, so no RTT sample from the retransmitted SYN)."""
    p = Peer(TcpConfig(timestamps=False))
    p.connect()
    p.to_deadline()
    p.recv_one()
    p.send(SYN | ACK, seq=p.iss, ts=None)
    p.recv_one()
    assert p.dut.rto.rto == pytest.approx(3.0)


def test_first_rtt_sample_from_handshake() -> None:
    p = Peer(TcpConfig(timestamps=False))
    p.connect()
    p.tick(0.05)
    p.send(SYN | ACK, seq=p.iss, ts=None)
    assert p.dut.rto.srtt == pytest.approx(0.05)


def test_data_queued_in_syn_sent_goes_after_handshake() -> None:
    p = Peer()
    p.connect()
    assert p.dut.send(b"early") == 5
    p.recv_nothing()
    p.send(SYN | ACK, seq=p.iss, mss=1220, wscale=7, sack_permitted=True,
           ts=(p.tsval, p.ts_echo))
    s = p.recv_one()
    assert s.payload == b"early" and s.flags & ACK


def test_data_on_syn_ack_is_delivered() -> None:
    p = Peer()
    syn = p.connect()
    p.send(SYN | ACK, b"hello", seq=p.iss, ts=(1, syn.timestamps[0]))
    assert p.dut.receive() == b"hello"
    a = p.recv_one()
    assert a.ack == (p.iss + 6) & SEQ_MASK


def test_syn_sent_unacceptable_ack_gets_rst() -> None:
    p = Peer()
    syn = p.connect()
    bad = (syn.seq + 1000) & SEQ_MASK
    p.send(SYN | ACK, seq=p.iss, ack=bad)
    rst = p.recv_one()
    assert rst.flags == RST and rst.seq == bad
    assert p.dut.state is S.SYN_SENT


def test_syn_sent_rst_with_acceptable_ack_refuses() -> None:
    p = Peer()
    syn = p.connect()
    p.send(RST | ACK, seq=0, ack=syn.seq + 1)
    assert p.dut.state is S.CLOSED
    assert p.events() == [ConnectionClosed("refused")]


def test_syn_sent_rst_without_ack_ignored() -> None:
    p = Peer()
    p.connect()
    p.send(RST, seq=0, ack=0)
    assert p.dut.state is S.SYN_SENT
    p.recv_nothing()


def test_syn_sent_rst_with_bad_ack_ignored() -> None:
    p = Peer()
    syn = p.connect()
    p.send(RST | ACK, seq=0, ack=syn.seq + 99)
    assert p.dut.state is S.SYN_SENT
    p.recv_nothing()  # no RST answers a RST


def test_syn_sent_plain_ack_without_syn_dropped() -> None:
    p = Peer()
    syn = p.connect()
    p.send(ACK, seq=p.iss, ack=syn.seq + 1)
    assert p.dut.state is S.SYN_SENT


def test_synack_retransmission_and_peer_syn_retransmit() -> None:
    p = Peer(TcpConfig(syn_retries=2))
    syn = p.syn()
    p.conn = TcpConnection.accept(p.config, syn, local=p.local, remote=p.remote, rng=p.rng,
                                  now=p.now)
    first = p.recv_one()
    assert first.flags == SYN | ACK
    # The peer retransmits its SYN (our SYN-ACK was lost): answered at once.
    p.deliver(syn)
    again = p.recv_one()
    assert (again.flags, again.seq, again.ack) == (first.flags, first.seq, first.ack)
    assert p.to_deadline() == pytest.approx(1.0)
    assert p.recv_one().flags == SYN | ACK
    assert p.to_deadline() == pytest.approx(2.0)
    assert p.recv_one().flags == SYN | ACK
    p.to_deadline()
    assert p.dut.closed
    assert p.events() == [ConnectionClosed("timeout")]


def test_syn_received_bad_ack_gets_rst() -> None:
    p = Peer()
    syn = p.syn()
    p.conn = TcpConnection.accept(p.config, syn, local=p.local, remote=p.remote, rng=p.rng,
                                  now=p.now)
    synack = p.recv_one()
    p.use_ts = True
    p.ts_echo = synack.timestamps[0]
    p.send(ACK, seq=p.iss + 1, ack=synack.seq + 50)
    rst = p.recv_one()
    assert rst.flags == RST and rst.seq == (synack.seq + 50) & SEQ_MASK
    assert p.dut.state is S.SYN_RECEIVED


def test_syn_received_rst_closes_passive_with_reset() -> None:
    p = Peer()
    syn = p.syn()
    p.conn = TcpConnection.accept(p.config, syn, local=p.local, remote=p.remote, rng=p.rng,
                                  now=p.now)
    p.recv_one()
    p.send(RST, seq=p.iss + 1, ts=None)
    assert p.dut.state is S.CLOSED
    assert p.events() == [ConnectionClosed("reset")]


def test_syn_received_fin_after_handshake_ack() -> None:
    p = Peer()
    p.establish_passive()
    p.send(FIN | ACK)
    assert p.dut.state is S.CLOSE_WAIT
