"""Header prediction (tcp_fastpath.py) agrees with the general path.

Generated connection states and segments near the prediction's edges go
through ``_fast_data`` on one copy of a connection; whenever it takes a
segment, the general path (RFC 9293 §3.10.7.4 in ``tcp_input.py``) gets
the same segment on another copy, and the two copies must then be equal
in every attribute, event and segment sent.  When it declines, it must
not have changed anything.
"""

from __future__ import annotations

import copy
import enum
from collections import deque

from hypothesis import given, settings, strategies as st

from proxy.ipstack.tcp import TcpConfig, TcpConnection
from proxy.ipstack.wire.tcp import ACK, FIN, PSH, RST, SEQ_MASK, SYN, URG, TcpSegment
from proxy.testing.tcp_peer import Peer

MSS = 1208


def snapshot(obj: object, _depth: int = 0) -> object:
    """Every piece of state reachable from ``obj``, as comparable values."""
    assert _depth < 12
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, enum.Enum)):
        return obj
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, TcpSegment):
        return tuple(obj)
    if isinstance(obj, (tuple, list, deque)):
        return [snapshot(v, _depth + 1) for v in obj]
    if isinstance(obj, dict):
        return [(snapshot(k, _depth + 1), snapshot(v, _depth + 1)) for k, v in obj.items()]
    if isinstance(obj, (set, frozenset)):
        return sorted(repr(snapshot(v, _depth + 1)) for v in obj)
    names: list[str] = []
    for klass in type(obj).__mro__:
        names += [n for n in getattr(klass, "__slots__", ()) if n != "__weakref__"]
    fields = {n: getattr(obj, n) for n in names if hasattr(obj, n)}
    fields.update(getattr(obj, "__dict__", {}))
    return (type(obj).__name__, sorted(
        (k, snapshot(v, _depth + 1)) for k, v in fields.items() if not callable(v)))


def everything(conn: TcpConnection, now: float) -> object:
    """State, then what the connection would send and report."""
    state = snapshot(conn)
    out = [tuple(s) for s in conn.segments_to_send(now)]
    events = []
    while (e := conn.next_event()) is not None:
        events.append(e)
    return state, out, events, conn.poll_at()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Peer, TcpSegment]:
    ts = draw(st.booleans())
    sack = draw(st.booleans())
    scaling = draw(st.booleans())
    cfg = TcpConfig(
        timestamps=ts, sack=sack, delayed_ack=draw(st.sampled_from([0.0, 0.04])),
        recv_buffer=draw(st.sampled_from([8000, (1 << 20) if scaling else 60000])),
        window_scaling=scaling, keepalive=draw(st.booleans()), keepalive_idle=1.0,
        keepalive_interval=0.5,
    )
    p = Peer(cfg, peer_iss=draw(st.sampled_from([0x10000000, 0xFFFFF000])))
    p.establish_active(ts=ts, sack_permitted=sack, window=draw(st.sampled_from([65535, 3000])))
    # Preamble: in-order data received, perhaps read; perhaps a hole; perhaps
    # our own data in flight.
    for _ in range(draw(st.integers(0, 5))):
        p.tick(draw(st.sampled_from([0.0, 0.001, 0.05])))
        p.send(ACK | PSH, b"x" * draw(st.integers(1, MSS)))
        if draw(st.booleans()):
            p.recv()  # else the ACK is still owed (RCV.NXT ahead of Last.ACK.sent)
    if draw(st.integers(0, 3)) == 0:
        p.tick(1.2)  # idle: keepalive probes (when enabled)
        p.recv()
    if draw(st.booleans()):
        p.dut.receive()
        p.recv()
    if draw(st.integers(0, 4)) == 0:
        p.send(ACK, b"o" * 100, seq=(p.nxt + 2000) & SEQ_MASK)  # out of order
        p.recv()
    if draw(st.integers(0, 3)) == 0:
        p.dut.send(b"y" * draw(st.integers(1, 3000)))
        p.recv()
    p.events()
    p.tick(draw(st.sampled_from([0.0, 0.0005, 0.002, 0.1, 0.6])))
    # The segment: predicted data, or one field (sometimes more) away from it.
    bend = set(draw(st.lists(
        st.sampled_from(["flags", "seq", "ack", "window", "ts", "sack"]), max_size=2)))
    d = p.dut
    room = d.rcv_adv - d.rcv_nxt  # the window's right edge, and just past it
    owed = 2 * d.mss - (d.rcv_nxt - d.rcv_wup)  # the "every second segment" ACK
    n = draw(st.one_of(
        st.integers(1, 2 * MSS),
        st.sampled_from([MSS, 2 * MSS, room, room + 1, owed - 1, owed]).filter(lambda v: v > 0),
    ))
    flags = ACK | draw(st.sampled_from([0, PSH, 0x40, 0x80]))
    if "flags" in bend:
        flags = ACK | draw(st.sampled_from([FIN, URG, RST, SYN, FIN | PSH]))
    seq = p.nxt
    if "seq" in bend:
        seq = (p.nxt + draw(st.sampled_from([-1, 1, -n, 5000, -70000]))) & SEQ_MASK
    ack = p.rcv
    if "ack" in bend:
        ack = (p.rcv + draw(st.sampled_from([1, -1, 70000, -(1 << 31)]))) & SEQ_MASK
    window = None
    if "window" in bend:
        window = draw(st.sampled_from([0, 1, 100, 65535]))
    kw: dict = {}
    if ts:
        tsv = draw(st.sampled_from(["same", "newer"]))
        if "ts" in bend:
            tsv = draw(st.sampled_from(["older", "none", "far"]))
        if tsv == "none":
            kw["ts"] = None
        else:
            # Relative to TS.Recent, what PAWS (RFC 7323 §5.3) compares with.
            delta = {"same": 0, "newer": 7, "older": -1, "far": 1 << 31}[tsv]
            kw["ts"] = ((d._ts_recent + delta) & SEQ_MASK, p.ts_echo)
    elif "ts" in bend:
        kw["ts"] = (draw(st.integers(0, SEQ_MASK)), 0)  # unnegotiated timestamps
    if sack and "sack" in bend:
        kw["sack"] = [((p.rcv + 10) & SEQ_MASK, (p.rcv + 20) & SEQ_MASK)]
    seg = p.seg(flags, b"z" * n, seq=seq, ack=ack, window=window, **kw)
    return p, seg


@settings(max_examples=1000, deadline=None)
@given(scenarios())
def test_fast_path_agrees_with_the_general_path(scenario: tuple[Peer, TcpSegment]) -> None:
    p, seg = scenario
    conn = p.dut
    if conn.state.value != "ESTABLISHED":
        return
    before = snapshot(conn)
    fast, general = copy.deepcopy(conn), copy.deepcopy(conn)
    now = p.now
    if fast._fast_data(seg, now):
        general._in_synchronized(seg, now)
        assert everything(fast, now + 0.001) == everything(general, now + 0.001)
    else:
        assert snapshot(fast) == before


def test_bulk_receive_takes_the_fast_path() -> None:
    """The prediction is not vacuous: in-order data in ESTABLISHED is taken,
    with timestamps, SACK and window scaling negotiated."""
    p = Peer()
    p.establish_active()
    taken = 0
    for i in range(50):
        s = p.seg(ACK | PSH, bytes([i]) * MSS)
        if p.dut._fast_data(s, p.now):
            taken += 1
            p.nxt = (p.nxt + MSS) & SEQ_MASK
        else:
            p.send(ACK | PSH, bytes([i]) * MSS)
        p.recv()
        p.tick(0.001)
    assert taken >= 49
    assert p.dut.receive() == b"".join(bytes([i]) * MSS for i in range(50))


def test_declines_while_our_data_is_in_flight_or_out_of_order_is_held() -> None:
    p = Peer()
    p.establish_active()
    p.dut.send(b"q" * 100)
    p.recv()
    assert not p.dut._fast_data(p.seg(ACK, b"a" * 10), p.now)
    p.send(ACK)  # everything of ours acknowledged
    assert p.dut._fast_data(p.seg(ACK, b"a" * 10), p.now)
    p.nxt = (p.nxt + 10) & SEQ_MASK
    p.send(ACK, b"o" * 10, seq=(p.nxt + 100) & SEQ_MASK)
    assert not p.dut._fast_data(p.seg(ACK, b"b" * 10), p.now)
