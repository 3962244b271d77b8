"""Window arithmetic for every shift 0..14 (RFC 7323 §2, RFC 9293 §3.8.6.2.2).

Property tests of ``select_window`` on a simulated receiver, and the
machine end to end for every shift: the advertised right edge never moves
left, the raw field fits 16 bits, the buffer is never overrun by more than
the rounding unit, a free buffer is always offered, and the peer's window
is decoded with the negotiated shift.
"""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from proxy.ipstack.tcp import TcpConfig
from proxy.ipstack.tcp_window import scaled_window, select_window
from proxy.ipstack.wire.tcp import ACK
from proxy.testing.tcp_peer import Peer

MSS = 1208


@st.composite
def receiver_runs(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, float]]]:
    shift = draw(st.integers(0, 14))
    # Buffers that fit the shift (as TcpConfig.wscale guarantees), from tiny to 1 GiB.
    buffer = draw(st.integers(1, 65535 << shift))
    ops = draw(st.lists(st.tuples(st.sampled_from(["data", "read"]), st.floats(0, 1)),
                        max_size=40))
    return shift, buffer, ops


@given(receiver_runs())
def test_select_window_invariants(run: tuple[int, int, list[tuple[str, float]]]) -> None:
    shift, buffer, ops = run
    unit = 1 << shift
    rcv_nxt = 0
    buffered = 0
    edge = 0  # the right edge last advertised (what the peer sees)
    promised = 0  # the largest edge ever advertised (what we accept up to)
    for op, frac in ops + [("read", 1.0)]:
        if op == "data":
            # A well-behaved peer sends within the window it was given.
            n = int(max(edge - rcv_nxt, 0) * frac)
            rcv_nxt += n
            buffered += n
        else:
            buffered -= int(buffered * frac)
        free = buffer - buffered
        cur = max(edge - rcv_nxt, 0)
        raw = select_window(free, cur, MSS, buffer, shift)
        assert 0 <= raw <= 0xFFFF
        new_edge = rcv_nxt + scaled_window(raw, shift)
        # Memory: buffered data plus every promise stays within one unit.
        assert buffered + (max(new_edge, promised) - rcv_nxt) <= buffer + unit - 1
        # The edge moves left only by rounding, and only when over-committed.
        if new_edge < edge:
            assert edge - new_edge < unit and cur > free
        # Free space is offered, up to SWS avoidance and rounding (within 16 bits).
        step = min(buffer // 2, MSS)
        assert scaled_window(raw, shift) >= min(free, 0xFFFF << shift) - max(step, unit)
        edge = new_edge
        promised = max(promised, new_edge)


@pytest.mark.parametrize("shift", range(15))
def test_machine_advertises_and_decodes_every_shift(shift: int) -> None:
    buffer = max(65535 << shift, 1) if shift else 65535
    cfg = TcpConfig(recv_buffer=min(buffer, 1 << 30))
    assert cfg.wscale == shift
    p = Peer(cfg)
    ack = p.establish_active(wscale=shift)
    assert p.dut.rcv_wscale == shift and p.dut.snd_wscale == shift
    # Our window: the whole buffer, scaled.
    assert ack.window == min(cfg.recv_buffer >> shift, 0xFFFF)
    assert scaled_window(ack.window, shift) <= cfg.recv_buffer
    # The peer's window: raw 3 means 3 << shift bytes.
    p.send(ACK, window=3)
    assert p.dut.snd_wnd == 3 << shift
    # Data shrinks the advertised window by exactly what is buffered, rounded.
    p.send(ACK, b"x" * 1000)
    p.send(ACK, b"x" * 1000)
    p.to_deadline()  # the delayed ACK
    a = p.recv()[-1]
    left = (ack.window << shift) - 2000
    assert (a.window << shift) >= left  # never below the old right edge
    assert (a.window << shift) - left < (1 << shift)


def test_window_never_rounds_to_zero_with_free_space() -> None:
    """google/netstack #34: free space smaller than the unit must not read as 0
    while the old edge is still open."""
    raw = select_window(free=100, current=100, mss=MSS, buffer=1 << 20, shift=14)
    assert raw == 1  # rounded up: the edge stays where it was
