"""RST, SYN and ACK validation in every state: RFC 9293 §3.10.7.4, RFC 5961,
RFC 1337; PAWS (RFC 7323 §5)."""

from __future__ import annotations

import pytest

from proxy import constants as C
from proxy.errors import DropReason
from proxy.ipstack.tcp import ConnectionClosed, TcpConfig, TcpState, reset_for
from proxy.ipstack.wire.tcp import ACK, FIN, RST, SEQ_MASK, SYN, TcpSegment
from proxy.testing.tcp_peer import Peer

S = TcpState


def in_state(state: TcpState, config: TcpConfig | None = None) -> Peer:
    """A DUT driven into ``state`` by a scripted peer (events drained)."""
    return Peer(config).drive_to(state)


SYNCHRONIZED = [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK]


@pytest.mark.parametrize("state", SYNCHRONIZED + [S.SYN_RECEIVED], ids=lambda s: s.value)
def test_exact_rst_resets(state: TcpState) -> None:
    p = in_state(state)
    p.send(RST, seq=p.nxt, ack=0)
    assert p.dut.state is S.CLOSED and p.dut.closed
    assert p.events() == [ConnectionClosed("reset")]
    p.recv_nothing()


@pytest.mark.parametrize("state", SYNCHRONIZED + [S.SYN_RECEIVED, S.TIME_WAIT],
                         ids=lambda s: s.value)
def test_in_window_rst_gets_challenge_ack(state: TcpState) -> None:
    p = in_state(state)
    p.send(RST, seq=p.nxt + 100, ack=0)
    assert p.dut.state is state
    a = p.recv_one()
    assert a.flags == ACK and a.ack == p.nxt
    assert p.dut.drops[DropReason.TCP_RST_CHALLENGED] == 1


@pytest.mark.parametrize("state", SYNCHRONIZED, ids=lambda s: s.value)
def test_out_of_window_rst_silently_dropped(state: TcpState) -> None:
    p = in_state(state)
    p.send(RST, seq=p.nxt + (1 << 30), ack=0)
    assert p.dut.state is state
    p.recv_nothing()
    p.send(RST, seq=p.nxt - 1000, ack=0)
    p.recv_nothing()
    assert p.dut.drops[DropReason.TCP_OUT_OF_WINDOW] == 2


def test_time_wait_ignores_exact_rst_rfc1337() -> None:
    p = in_state(S.TIME_WAIT)
    p.send(RST, seq=p.nxt, ack=0)
    assert p.dut.state is S.TIME_WAIT
    assert p.dut.drops[DropReason.TCP_RST_IGNORED] == 1


@pytest.mark.parametrize("state", SYNCHRONIZED, ids=lambda s: s.value)
def test_syn_in_synchronized_state_gets_challenge_ack(state: TcpState) -> None:
    p = in_state(state)
    p.send(SYN, seq=p.nxt + 5, ack=0)
    assert p.dut.state is state
    a = p.recv_one()
    assert a.flags == ACK and a.ack == p.nxt
    assert p.dut.drops[DropReason.TCP_SYN_CHALLENGED] == 1


def test_time_wait_old_syn_gets_challenge_ack() -> None:
    p = in_state(S.TIME_WAIT)
    p.send(SYN, seq=p.nxt - 1, ack=0)
    assert p.dut.state is S.TIME_WAIT
    assert p.recv_one().flags == ACK


def test_time_wait_new_syn_frees_the_tuple() -> None:
    """RFC 6191: a SYN above RCV.NXT is a new incarnation; we step aside so
    the retransmitted SYN reaches the listener."""
    p = in_state(S.TIME_WAIT)
    p.send(SYN, seq=p.nxt + 100000, ack=0)
    assert p.dut.state is S.CLOSED and p.dut.closed
    p.recv_nothing()
    assert p.events() == []  # ConnectionClosed(None) was reported at TIME-WAIT


def test_challenge_acks_are_rate_limited() -> None:
    p = in_state(S.ESTABLISHED)
    acks = 0
    for _ in range(50):
        p.send(RST, seq=p.nxt + 10, ack=0)
        acks += len(p.recv())
    assert acks == C.TCP_CHALLENGE_ACK_LIMIT
    p.tick(C.TCP_CHALLENGE_ACK_INTERVAL)
    p.send(RST, seq=p.nxt + 10, ack=0)
    assert len(p.recv()) == 1


def test_ack_for_unsent_data_is_challenged_and_dropped() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(ACK, b"data", ack=p.rcv + 5000)
    assert p.dut.readable == 0  # RFC 9293: the segment is dropped
    a = p.recv_one()
    assert a.ack == (p.nxt - 4) & SEQ_MASK
    assert p.dut.drops[DropReason.TCP_BAD_ACK] == 1


def test_too_old_ack_is_challenged() -> None:
    """RFC 5961 §5.2: SEG.ACK < SND.UNA - MAX.SND.WND."""
    p = in_state(S.ESTABLISHED)
    p.send(ACK, b"x", ack=p.rcv - (1 << 30))
    assert p.dut.readable == 0
    assert p.dut.drops[DropReason.TCP_BAD_ACK] == 1


def test_segment_without_ack_dropped() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(0, b"noack")
    assert p.dut.readable == 0
    assert p.dut.drops[DropReason.TCP_BAD_FLAGS] == 1


def test_out_of_window_data_gets_ack() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(ACK, b"far", seq=p.nxt + (1 << 28))
    a = p.recv_one()
    assert a.ack == p.nxt
    assert p.dut.readable == 0


def test_keepalive_style_probe_answered() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(ACK, seq=p.nxt - 1)
    assert p.recv_one().ack == p.nxt


# -- PAWS (RFC 7323 §5) -------------------------------------------------------------


def test_paws_rejects_old_timestamp() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(ACK, b"new", ts=(p.tsval + 10, p.ts_echo))
    p.recv()
    p.send(ACK, b"old", ts=(p.tsval - 1, p.ts_echo))
    assert p.dut.receive() == b"new"
    assert p.dut.drops[DropReason.TCP_PAWS] == 1
    assert p.recv_one().ack == (p.nxt - 3) & SEQ_MASK


def test_paws_modular_comparison() -> None:
    p = Peer(ts_start=0xFFFFFFF0)
    p.establish_active()
    p.send(ACK, b"a", ts=(0xFFFFFFF8, p.ts_echo))
    p.send(ACK, b"b", ts=(0x00000004, p.ts_echo))  # wrapped: newer
    assert p.dut.receive() == b"ab"


def test_paws_ignores_ts_recent_after_24_days() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(ACK, b"a", ts=(p.tsval + 100, p.ts_echo))
    p.recv()
    p.now += C.TCP_TS_RECENT_MAX_IDLE + 1
    p.send(ACK, b"b", ts=(p.tsval, p.ts_echo))
    assert p.dut.receive() == b"ab"


def test_missing_timestamp_dropped_when_negotiated() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(ACK, b"nots", ts=None)
    assert p.dut.readable == 0
    assert p.dut.drops[DropReason.TCP_NO_TIMESTAMP] == 1


def test_rst_without_timestamp_accepted() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(RST, seq=p.nxt, ts=None)
    assert p.dut.state is S.CLOSED


def test_rst_with_old_timestamp_accepted() -> None:
    p = in_state(S.ESTABLISHED)
    p.send(RST, seq=p.nxt, ts=(0, 0))
    assert p.dut.state is S.CLOSED


# -- closed connections and the Interface helper -----------------------------------------


def test_segment_to_closed_connection_gets_rst() -> None:
    p = in_state(S.ESTABLISHED)
    p.dut.abort(p.now)
    rst = p.recv_one()
    assert rst.flags == RST and rst.seq == p.rcv
    assert p.events() == [ConnectionClosed("aborted")]
    p.send(ACK, b"late", ack=1234)
    r = p.recv_one()
    assert r.flags == RST and r.seq == 1234


def test_reset_for() -> None:
    syn = TcpSegment(1, 2, 100, 0, SYN, 10)
    r = reset_for(syn)
    assert r == TcpSegment(2, 1, 0, 101, RST | ACK, 0)
    data = TcpSegment(1, 2, 100, 555, ACK, 10, payload=b"abc")
    assert reset_for(data) == TcpSegment(2, 1, 555, 0, RST, 0)
    fin = TcpSegment(1, 2, 0xFFFFFFFF, 0, FIN, 10, payload=b"ab")
    assert reset_for(fin) == TcpSegment(2, 1, 0, 2, RST | ACK, 0)
    assert reset_for(TcpSegment(1, 2, 3, 4, RST, 0)) is None
