"""Hypothesis: random and malformed segments to a connection in every state.

Every ingress must be safe (development rule 5): whatever a peer sends,
``segment_received`` never raises, every segment the connection emits is
valid (fits the 1280-byte MTU, survives emit/parse), and memory stays
bounded: receive buffer and reassembly within the window, the scoreboard,
the event queue and the pending-RST queue within their limits.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from proxy import constants as C
from proxy.ipstack.tcp import TcpConfig, TcpState
from proxy.ipstack.wire.tcp import SEQ_MASK, TcpSegment
from proxy.testing.tcp_peer import DUT_PORT, PEER_PORT, Peer

S = TcpState
STATES = [S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2,
          S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT]
BUF = 16384
CONFIG = TcpConfig(recv_buffer=BUF, send_buffer=BUF, keepalive=True, keepalive_idle=30.0,
                   keepalive_interval=5.0, max_retransmits=4, syn_retries=2)

near = st.one_of(st.integers(-70000, 70000), st.integers(-5, 5), st.just(0))
u32 = st.integers(0, SEQ_MASK)


@st.composite
def segment_ops(draw: st.DrawFn) -> tuple:
    return ("seg", draw(st.integers(0, 255)), draw(near), draw(st.booleans()), draw(near),
            draw(st.booleans()), draw(u32), draw(u32), draw(st.integers(0, 0xFFFF)),
            draw(st.binary(max_size=1500)),
            draw(st.none() | st.tuples(st.integers(-3, 3), st.integers(-3, 3))
                 | st.tuples(u32, u32)),
            draw(st.lists(st.tuples(near, near), max_size=3)),
            draw(st.none() | st.integers(0, 0xFFFF)), draw(st.none() | st.integers(0, 255)),
            draw(st.booleans()))


ops = st.lists(
    st.one_of(
        segment_ops(),
        st.tuples(st.just("tick"), st.floats(0, 120, allow_nan=False)),
        st.tuples(st.just("send"), st.integers(0, 40000)),
        st.tuples(st.just("receive"), st.integers(-1, 5000)),
        st.sampled_from([("shutdown",), ("close",), ("abort",)]),
    ),
    max_size=30,
)


def check_bounds(p: Peer) -> None:
    d = p.dut
    slack = 1 << C.TCP_MAX_WSCALE
    assert len(d._rbuf) <= BUF + slack
    assert d._ooo.bytes <= BUF + slack and len(d._ooo) <= C.TCP_MAX_OOO_SEGMENTS
    assert len(d.scoreboard) <= C.TCP_MAX_SACK_RANGES
    assert len(d._sent) <= d._sent.max_records + 2  # RACK's records (tcp_rack.py)
    assert len(d._sent._lostq) <= 2 * len(d._sent) + 66
    assert len(d._sbuf) <= BUF
    assert len(d._events) <= 8
    assert len(d._ctrl) <= C.TCP_MAX_PENDING_CONTROL


def apply(p: Peer, op: tuple) -> None:
    kind = op[0]
    d = p.dut
    if kind == "seg":
        (_, flags, dseq, rand_seq, dack, rand_ack, rseq, rack, window, payload, ts, sack,
         mss, wscale, sackok) = op
        seq = rseq if rand_seq else (p.nxt + dseq) & SEQ_MASK
        ack = rack if rand_ack else (p.rcv + dack) & SEQ_MASK
        if ts is not None and -3 <= ts[0] <= 3:
            ts = ((p.tsval + ts[0]) & SEQ_MASK, (p.ts_echo + ts[1]) & SEQ_MASK)
        blocks = tuple(((p.rcv + a) & SEQ_MASK, (p.rcv + b) & SEQ_MASK) for a, b in sack)
        if ts is not None:
            blocks = blocks[:3]
        while True:
            seg = TcpSegment(PEER_PORT, DUT_PORT, seq, ack, flags, window, 0, mss, wscale,
                             sackok, blocks, ts, payload)
            try:
                seg.options_bytes()
                break
            except ValueError:
                blocks = blocks[:-1]  # the peer cannot send more than 40 option bytes
        p.deliver(seg)
        if seq == p.nxt and not flags & 4:
            p.nxt = (p.nxt + seg.seg_len) & SEQ_MASK
    elif kind == "tick":
        p.tick(op[1])
    elif kind == "send":
        try:
            d.send(b"s" * op[1])
        except ValueError:
            pass  # after shutdown/close: a programming error, not a network one
    elif kind == "receive":
        d.receive(op[1])
    elif kind == "shutdown":
        d.shutdown(p.now)
    elif kind == "close":
        d.close(p.now)
    elif kind == "abort":
        d.abort(p.now)
    out = p.recv()
    assert len(out) <= 64
    p.events()
    check_bounds(p)


@settings(max_examples=300)
@given(st.sampled_from(STATES), ops)
def test_random_segments_in_every_state(state: TcpState, script: list[tuple]) -> None:
    p = Peer(CONFIG).drive_to(state)
    for op in script:
        apply(p, op)
    # Whatever happened, time eventually ends every connection that is not
    # ESTABLISHED-and-idle, and nothing raises doing so.
    for _ in range(50):
        if p.dut.poll_at() is None:
            break
        p.to_deadline()
        p.recv()
        p.events()
        check_bounds(p)


@settings(max_examples=100)
@given(st.sampled_from(STATES), st.lists(st.binary(min_size=20, max_size=80), max_size=20))
def test_random_wire_bytes(state: TcpState, blobs: list[bytes]) -> None:
    """Random bytes that happen to parse are just segments: never raise."""
    from proxy.errors import ParseError
    from proxy.testing.tcp_peer import DUT_ADDR, PEER_ADDR

    p = Peer(CONFIG).drive_to(state)
    for b in blobs:
        try:
            seg = TcpSegment.parse(b, PEER_ADDR, DUT_ADDR, verify_checksum=False)
        except ParseError:
            continue
        p.dut.segment_received(seg, p.now)
        p.recv()
        check_bounds(p)


def test_flood_of_out_of_order_segments_is_bounded() -> None:
    p = Peer(TcpConfig(recv_buffer=1 << 20)).drive_to(S.ESTABLISHED)
    base = p.nxt
    for i in range(3000):
        p.deliver(p.seg(0x10, b"x", seq=base + 2 + 2 * i))
        if i % 50 == 0:
            p.recv()
    assert len(p.dut._ooo) <= C.TCP_MAX_OOO_SEGMENTS
    check_bounds(p)


def test_sack_scoreboard_flood_is_bounded() -> None:
    p = Peer(TcpConfig(send_buffer=1 << 20)).drive_to(S.ESTABLISHED)
    p.send(0x10)
    p.dut.send(b"z" * 1_000_000)
    p.recv()
    for _ in range(30):
        p.send(0x10)
        p.recv()
    base = (p.dut.snd_una) & SEQ_MASK
    for i in range(2000):
        s = (base + 3 + 4 * i) & SEQ_MASK
        p.send(0x10, ack=base, sack=[(s, (s + 2) & SEQ_MASK)])
    assert len(p.dut.scoreboard) <= C.TCP_MAX_SACK_RANGES


def _mangle(rng: "random.Random", seg: TcpSegment) -> TcpSegment:
    """Rewrite one header field of ``seg`` (a forged or corrupted-then-
    re-checksummed segment).  Not SEG.SEQ: data at a forged sequence number
    inside the window is undetectable by design (RFC 5961 §1)."""
    field = rng.choice(["flags", "ack", "window", "sack", "ts"])
    if field == "flags":
        return seg._replace(flags=rng.randrange(256))
    if field == "ack":
        return seg._replace(ack=(seg.ack + rng.randint(-70000, 70000)) & SEQ_MASK)
    if field == "window":
        return seg._replace(window=rng.randrange(65536))
    if field == "sack":
        s = (seg.ack + rng.randint(-5000, 200000)) & SEQ_MASK
        return seg._replace(sack_blocks=((s, (s + rng.randrange(50000)) & SEQ_MASK),))
    ts = seg.timestamps or (0, 0)
    return seg._replace(timestamps=((ts[0] + rng.randint(-10, 10)) & SEQ_MASK, ts[1]))


@pytest.mark.parametrize("seed", range(12))
def test_transfer_through_a_mangling_link(seed: int) -> None:
    """Forged header fields mid-transfer: the ends never raise, never
    deliver wrong bytes, and either finish or fail with a reason."""
    import random

    from proxy.testing.tcp_link import LinkConfig, TcpLink

    rng = random.Random(seed)
    link = TcpLink(seed=seed, wire=False, ab=LinkConfig(loss=0.01, delay=0.01),
                   ba=LinkConfig(loss=0.01, delay=0.01))
    original = link._deliver

    def deliver(name: str, item: object) -> None:
        if isinstance(item, TcpSegment) and rng.random() < 0.02:
            item = _mangle(rng, item)
        original(name, item)

    link._deliver = deliver  # type: ignore[method-assign]
    up, down = rng.randbytes(300_000), rng.randbytes(200_000)
    try:
        got_b, got_a = link.transfer(up, down, timeout=900)
    except AssertionError as e:
        # A forged exact RST (or a timeout after one) is a legitimate end.
        assert "closed:" in str(e) or "incomplete" in str(e), e
        return
    assert got_b == up and got_a == down
