"""Closing (RFC 9293 §3.6): active, passive, simultaneous; TIME-WAIT;
FIN retransmission; FIN-WAIT-2 timeout; close() semantics; keepalive."""

from __future__ import annotations

import pytest

from proxy.ipstack.tcp import ConnectionClosed, EndOfStream, TcpConfig, TcpState
from proxy.ipstack.wire.tcp import ACK, FIN, RST, SEQ_MASK
from proxy.testing.tcp_peer import Peer

S = TcpState


def established(config: TcpConfig | None = None) -> Peer:
    p = Peer(config)
    p.establish_active()
    p.send(ACK)
    p.events()
    return p


def test_active_close_through_time_wait() -> None:
    p = established(TcpConfig(time_wait=30.0))
    p.dut.shutdown(p.now)
    assert p.dut.state is S.FIN_WAIT_1
    fin = p.recv_one()
    assert fin.flags == FIN | ACK and fin.payload == b""
    p.send(ACK)
    assert p.dut.state is S.FIN_WAIT_2
    p.send(FIN | ACK)
    assert p.dut.state is S.TIME_WAIT
    a = p.recv_one()
    assert a.flags == ACK and a.ack == p.nxt
    assert p.events() == [EndOfStream(), ConnectionClosed(None)]
    assert not p.dut.closed
    assert p.to_deadline() == pytest.approx(30.0)
    assert p.dut.state is S.CLOSED and p.dut.closed
    p.recv_nothing()
    assert p.events() == []


def test_time_wait_acks_retransmitted_fin_and_restarts_timer() -> None:
    p = established(TcpConfig(time_wait=30.0))
    p.dut.shutdown(p.now)
    p.recv_one()
    p.send(ACK)
    fin = p.send(FIN | ACK)
    p.recv_one()
    p.tick(20.0)
    p.deliver(fin)  # our ACK was lost: the peer retransmits its FIN
    a = p.recv_one()
    assert a.flags == ACK and a.ack == (fin.seq + 1) & SEQ_MASK
    assert p.dut.state is S.TIME_WAIT
    assert p.to_deadline() == pytest.approx(30.0)  # restarted, not 10 s
    assert p.dut.closed


def test_passive_close() -> None:
    p = established()
    p.send(FIN | ACK)
    assert p.dut.state is S.CLOSE_WAIT
    assert p.events() == [EndOfStream()]
    a = p.recv_one()
    assert a.ack == p.nxt
    assert p.dut.receive() == b""
    p.dut.send(b"last words")
    p.dut.shutdown(p.now)
    assert p.dut.state is S.LAST_ACK
    s = p.recv_one()
    assert s.payload == b"last words" and s.flags & FIN
    p.send(ACK)
    assert p.dut.state is S.CLOSED and p.dut.closed
    assert p.events() == [ConnectionClosed(None)]


def test_simultaneous_close_through_closing() -> None:
    p = established()
    p.dut.shutdown(p.now)
    fin = p.recv_one()
    p.send(FIN | ACK, ack=fin.seq)  # FINs cross: ours not yet acknowledged
    assert p.dut.state is S.CLOSING
    a = p.recv_one()
    assert a.ack == p.nxt
    p.send(ACK, ack=fin.seq + 1)
    assert p.dut.state is S.TIME_WAIT
    assert p.events() == [EndOfStream(), ConnectionClosed(None)]


def test_fin_ack_in_fin_wait_1_goes_to_time_wait() -> None:
    p = established()
    p.dut.shutdown(p.now)
    p.recv_one()
    p.send(FIN | ACK)
    assert p.dut.state is S.TIME_WAIT


def test_fin_retransmission_with_backoff() -> None:
    p = established(TcpConfig(max_retransmits=3, tail_loss_probe=False))
    p.dut.shutdown(p.now)
    fin = p.recv_one()
    waits = []
    for _ in range(3):
        waits.append(p.to_deadline())
        again = p.recv_one()
        assert again.flags == FIN | ACK and again.seq == fin.seq
    assert waits[1] == pytest.approx(2 * waits[0])
    p.to_deadline()
    assert p.recv_one().flags == RST
    assert p.events() == [ConnectionClosed("timeout")]


def test_last_ack_fin_retransmission() -> None:
    p = established()
    p.send(FIN | ACK)
    p.recv()
    p.dut.shutdown(p.now)
    fin = p.recv_one()
    p.to_deadline()
    assert p.recv_one().seq == fin.seq
    p.send(ACK)
    assert p.dut.closed


def test_half_close_keeps_receiving() -> None:
    p = established()
    p.dut.shutdown(p.now)
    p.recv_one()
    p.send(ACK)
    assert p.dut.state is S.FIN_WAIT_2
    p.send(ACK, b"still talking")
    assert p.dut.receive() == b"still talking"
    assert p.dut.poll_at() is not None  # delayed ACK only: no FIN-WAIT-2 timer
    p.tick(1000)
    assert p.dut.state is S.FIN_WAIT_2


def test_orphaned_fin_wait_2_times_out() -> None:
    p = established(TcpConfig(fin_wait_2_timeout=15.0))
    p.dut.close(p.now)
    p.recv_one()
    p.send(ACK)
    assert p.dut.state is S.FIN_WAIT_2
    assert p.to_deadline() == pytest.approx(15.0)
    assert p.recv_one().flags == RST
    assert p.dut.closed
    assert p.events() == [ConnectionClosed("timeout")]


def test_close_with_unread_data_resets() -> None:
    p = established()
    p.send(ACK, b"unread")
    p.dut.close(p.now)
    rst = p.recv_one()
    assert rst.flags == RST
    assert p.dut.closed
    assert p.events()[-1] == ConnectionClosed("aborted")


def test_data_after_close_resets() -> None:
    p = established()
    p.dut.close(p.now)
    p.recv_one()  # FIN
    p.send(ACK, b"too late")
    assert p.recv_one().flags == RST
    assert p.dut.closed


def test_close_in_syn_sent_just_goes() -> None:
    p = Peer()
    p.connect()
    p.dut.close(p.now)
    assert p.dut.closed
    p.recv_nothing()
    assert p.events() == [ConnectionClosed("aborted")]


def test_shutdown_in_syn_sent_sends_fin_after_handshake() -> None:
    p = Peer()
    p.connect()
    p.dut.send(b"req")
    p.dut.shutdown(p.now)
    p.recv_nothing()
    p.send(0x12, seq=p.iss, ts=(1, 0))
    assert p.dut.state is S.FIN_WAIT_1
    s = p.recv_one()
    assert s.payload == b"req" and s.flags & FIN


def test_out_of_order_fin_waits_for_the_hole() -> None:
    p = established()
    base = p.nxt
    p.send(FIN | ACK, b"end", seq=base + 5)
    assert p.dut.state is S.ESTABLISHED
    assert p.events() == []
    p.send(ACK, b"start", seq=base)
    assert p.dut.state is S.CLOSE_WAIT
    assert p.dut.receive() == b"startend"
    assert [type(e).__name__ for e in p.events()] == ["DataReceived", "EndOfStream"]
    assert p.recv()[-1].ack == (base + 9) & SEQ_MASK


def test_data_and_fin_together() -> None:
    p = established()
    p.send(FIN | ACK, b"bye")
    assert p.dut.receive() == b"bye"
    assert p.dut.state is S.CLOSE_WAIT
    assert [type(e).__name__ for e in p.events()] == ["DataReceived", "EndOfStream"]


def test_abort_sends_rst_from_every_synchronized_state() -> None:
    for setup in ("est", "fw2", "cw"):
        p = established()
        if setup == "fw2":
            p.dut.shutdown(p.now)
            p.recv_one()
            p.send(ACK)
        elif setup == "cw":
            p.send(FIN | ACK)
            p.recv()
        p.dut.abort(p.now)
        assert p.recv_one().flags == RST
        assert p.dut.closed


# -- keepalive (RFC 1122 §4.2.3.6) --------------------------------------------------


def ka_config(**kw: object) -> TcpConfig:
    return TcpConfig(keepalive=True, keepalive_idle=10.0, keepalive_interval=2.0,
                     keepalive_count=3, **kw)  # type: ignore[arg-type]


def test_keepalive_probe_after_idle_and_answer_resets() -> None:
    p = established(ka_config())
    assert p.to_deadline() == pytest.approx(10.0)
    probe = p.recv_one()
    assert probe.flags == ACK and probe.payload == b""
    assert probe.seq == (p.rcv - 1) & SEQ_MASK  # SEG.SEQ = SND.NXT - 1
    p.send(ACK)  # the answer
    assert p.dut.poll_at() == pytest.approx(p.now + 10.0)


def test_keepalive_gives_up_after_count_probes() -> None:
    p = established(ka_config())
    waits = []
    for _ in range(3):
        waits.append(p.to_deadline())
        assert p.recv_one().payload == b""
    assert waits == pytest.approx([10.0, 2.0, 2.0])
    p.to_deadline()
    assert p.recv_one().flags == RST
    assert p.events() == [ConnectionClosed("timeout")]


def test_keepalive_idle_counts_from_last_segment() -> None:
    p = established(ka_config())
    p.tick(8.0)
    p.send(ACK, b"x")
    p.recv()
    p.tick(8.0)
    p.recv()
    assert p.dut.state is S.ESTABLISHED
    assert p.to_deadline() == pytest.approx(2.0)
    assert p.recv()[-1].payload == b""
