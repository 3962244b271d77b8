"""ICMPv6 errors delivered to a connection (RFC 5927, RFC 1122 §4.2.3.9,
RFC 8201 for Packet Too Big)."""

from __future__ import annotations

import pytest

from proxy.ipstack.tcp import ConnectionClosed, TcpConfig, TcpState
from proxy.ipstack.wire.tcp import ACK, SEQ_MASK
from proxy.testing.tcp_peer import Peer

S = TcpState


def test_packet_too_big_shrinks_segments_and_resends() -> None:
    p = Peer(TcpConfig(mss=1440))
    p.establish_active(mss=1440)
    p.send(ACK)
    assert p.dut.mss == 1440 - 12
    p.dut.send(b"x" * 5000)
    first = p.recv()
    assert len(first[0].payload) == 1428
    p.dut.icmp_error_received("packet-too-big:1300", p.now, quoted_seq=first[0].seq)
    assert p.dut.mss == 1300 - 60 - 12
    again = p.recv()
    assert again[0].seq == first[0].seq and len(again[0].payload) == 1228
    assert p.dut.state is S.ESTABLISHED


@pytest.mark.parametrize("kind", ["packet-too-big:1000", "packet-too-big:", "packet-too-big:x",
                                  "no-such-error"])
def test_useless_errors_ignored(kind: str) -> None:
    p = Peer()
    p.establish_active()
    p.dut.icmp_error_received(kind, p.now)
    assert p.dut.mss == 1208 and p.dut.state is S.ESTABLISHED
    p.recv_nothing()


@pytest.mark.parametrize("kind", ["unreachable-port", "admin-prohibited", "time-exceeded"])
def test_errors_are_soft_when_synchronized(kind: str) -> None:
    p = Peer()
    p.establish_active()
    p.dut.icmp_error_received(kind, p.now)
    assert p.dut.state is S.ESTABLISHED
    assert p.events() == [] or all(type(e).__name__ == "Connected" for e in p.events())


def test_quoted_sequence_outside_window_ignored() -> None:
    """RFC 5927 §4.1: the quoted SEQ must lie in SND.UNA..SND.NXT."""
    p = Peer()
    syn = p.connect()
    p.dut.icmp_error_received("unreachable-port", p.now, quoted_seq=(syn.seq + 5000) & SEQ_MASK)
    assert p.dut.state is S.SYN_SENT
    p.dut.icmp_error_received("unreachable-port", p.now, quoted_seq=syn.seq)
    assert p.dut.state is S.CLOSED
    assert p.events() == [ConnectionClosed("unreachable-port")]


def test_unreachable_aborts_syn_received() -> None:
    p = Peer().drive_to(S.SYN_RECEIVED)
    p.dut.icmp_error_received("unreachable-host", p.now)
    assert p.dut.closed
    assert p.events() == [ConnectionClosed("unreachable-host")]


def test_time_exceeded_is_soft_in_syn_received() -> None:
    # Only our own attempts end on Time Exceeded (Linux keeps a request
    # socket too): a routing loop towards the peer may heal before the
    # SYN-ACK's retries run out.
    p = Peer().drive_to(S.SYN_RECEIVED)
    p.dut.icmp_error_received("time-exceeded", p.now)
    assert p.dut.state is S.SYN_RECEIVED
    assert p.events() == []
