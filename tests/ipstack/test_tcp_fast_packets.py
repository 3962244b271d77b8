"""Header prediction on raw packets (``Interface.tcp_fast_packets``) changes nothing.

``TcpTable.fast_packet`` / ``TcpConnection.fast_packet`` take bulk
in-order data straight from the packet bytes, without building a
``TcpSegment``.  Two Interfaces with the same seed and the same
established connection receive the same generated sequences of packets:
in order, out of order (SACK state), duplicates, old and missing
timestamps (PAWS, RFC 7323 §5.3), window changes, other option layouts,
data of ours in flight, application reads and timers.  One takes the raw
path, the other only the general one (RFC 9293 §3.10.7.4; with header
prediction on ``TcpSegment`` disabled too, in half of the examples); after
every step their connections, packets sent, events, drops and timers
must be equal.
"""

from __future__ import annotations

import random
from unittest import mock

from hypothesis import given, settings, strategies as st

from proxy.ipstack.interface import Interface
from proxy.ipstack.tcp import TcpConfig, TcpConnection
from proxy.ipstack.wire.tcp import ACK, PSH, SEQ_MASK, SYN, TcpSegment
from proxy.testing.packets import addr, ipv6
from tests.ipstack.test_tcp_fastpath import snapshot

US = addr("2001:db8::1")
PEER = addr("2001:db8::2")
MSS = 1208
PEER_ISS = 0xFFFFF000  # wraps during the test


def packet(seg: TcpSegment) -> bytes:
    return ipv6(PEER, US, 6, seg.emit(PEER, US))


def observe(iface: Interface, now: float) -> object:
    """Everything visible of ``iface`` and its one connection, as values."""
    (conn,) = iface.tcp.connections()
    out = iface.ipv6_to_send(now)
    events = []
    while (e := iface.next_event()) is not None:
        events.append((type(e).__name__, repr(getattr(e, "event", None))))
    return snapshot(conn), out, events, sorted(iface.drops.items()), iface.poll_at()


def establish(fast: bool, ts: bool, sack: bool, recv_buffer: int, delayed_ack: float) -> Interface:
    cfg = TcpConfig(timestamps=ts, sack=sack, recv_buffer=recv_buffer, delayed_ack=delayed_ack)
    iface = Interface(rng=random.Random(7), addresses=[US], tcp_config=cfg)
    iface.tcp_fast_packets = fast
    iface.tcp_listen(80)
    syn = TcpSegment(4000, 80, PEER_ISS, 0, SYN, 65535, mss=1220, wscale=7,
                     sack_permitted=sack, timestamps=(100, 0) if ts else None)
    iface.ipv6_received(packet(syn), 0.0)
    (raw,) = iface.ipv6_to_send(0.0)
    synack = TcpSegment.parse(raw[40:], US, PEER)
    ack = TcpSegment(4000, 80, (PEER_ISS + 1) & SEQ_MASK, (synack.seq + 1) & SEQ_MASK, ACK, 512,
                     timestamps=(101, synack.timestamps[0]) if ts else None)
    iface.ipv6_received(packet(ack), 0.001)
    iface.ipv6_to_send(0.001)
    while iface.next_event() is not None:
        pass
    return iface


STEPS = st.sampled_from([
    "data", "data", "data", "data", "ooo", "dup", "old_ts", "no_ts", "same_ts", "window",
    "sack_option", "ece", "fin", "read", "our_data", "ack_ours", "tick", "empty",
])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_raw_fast_path_equals_the_general_path(data: st.DataObject) -> None:
    ts = data.draw(st.booleans(), "timestamps")
    sack = data.draw(st.booleans(), "sack")
    general_only = data.draw(st.booleans(), "no header prediction on TcpSegment either")
    recv_buffer = data.draw(st.sampled_from([8000, 60000, 1 << 20]))
    delayed_ack = data.draw(st.sampled_from([0.0, 0.04]))
    patch = (mock.patch.object(TcpConnection, "_fast_data", lambda self, seg, now: False)
             if general_only else mock.patch.object(TcpConnection, "_fast_data", TcpConnection._fast_data))
    with patch:
        fast = establish(True, ts, sack, recv_buffer, delayed_ack)
        slow = establish(False, ts, sack, recv_buffer, delayed_ack)
        now = 0.001
        assert observe(fast, now) == observe(slow, now)
        tsval = 200
        window = 512
        for _ in range(data.draw(st.integers(1, 25), "steps")):
            step = data.draw(STEPS)
            now += data.draw(st.sampled_from([0.0, 0.0001, 0.01, 0.05]))
            (fc,) = fast.tcp.connections()
            (sc,) = slow.tcp.connections()
            nxt, una = sc.rcv_nxt & SEQ_MASK, sc.snd_una & SEQ_MASK
            if step in ("read", "our_data", "tick"):
                if step == "read":
                    n = data.draw(st.integers(1, 5000))
                    assert fc.receive(n) == sc.receive(n)
                elif step == "our_data":
                    n = data.draw(st.integers(1, 3000))
                    assert fc.send(b"u" * n) == sc.send(b"u" * n)
                else:
                    now += data.draw(st.sampled_from([0.05, 0.3, 1.5]))
                    fast.handle_timer(now)
                    slow.handle_timer(now)
                assert observe(fast, now) == observe(slow, now)
                continue
            flags = ACK | data.draw(st.sampled_from([0, PSH]))
            n = data.draw(st.one_of(st.integers(1, 2 * MSS), st.sampled_from([MSS, 1])))
            seq, ack = nxt, una
            tsval += data.draw(st.sampled_from([0, 1, 1, 5]))
            stamps: tuple[int, int] | None = (tsval & SEQ_MASK, 0) if ts else None
            blocks: tuple[tuple[int, int], ...] = ()
            if step == "ooo":
                seq = (nxt + data.draw(st.sampled_from([1, MSS, 3 * MSS]))) & SEQ_MASK
            elif step == "dup":
                seq = (nxt - data.draw(st.sampled_from([1, n, MSS, 3 * MSS]))) & SEQ_MASK
            elif step == "old_ts" and ts:
                stamps = ((tsval - data.draw(st.sampled_from([1, 1000, 1 << 30]))) & SEQ_MASK, 0)
            elif step == "no_ts":
                stamps = None
            elif step == "same_ts" and ts:
                stamps = (sc._ts_recent, 0)
            elif step == "window":
                window = data.draw(st.sampled_from([0, 1, 100, 512, 65535]))
            elif step == "sack_option" and sack:
                blocks = (((una - 100) & SEQ_MASK, una),)
            elif step == "ece":
                flags |= data.draw(st.sampled_from([0x40, 0x80, 0x20]))  # ECE, CWR, URG
            elif step == "fin":
                flags |= 0x01
            elif step == "ack_ours":
                ack = (sc.snd_una + data.draw(st.integers(0, 3000))) & SEQ_MASK
                ack = ack if ((ack - sc.snd_una) & SEQ_MASK) <= ((sc.snd_max - sc.snd_una) & SEQ_MASK) else una
            payload = b"" if step == "empty" else bytes([len(step)]) * n
            seg = TcpSegment(4000, 80, seq, ack, flags, window, timestamps=stamps,
                             sack_blocks=blocks, payload=payload)
            raw = packet(seg)
            fast.ipv6_received(raw, now)
            slow.ipv6_received(raw, now)
            assert observe(fast, now) == observe(slow, now), step


def test_bulk_data_takes_the_raw_path() -> None:
    """The test above is not vacuous: predicted data never builds a TcpSegment."""
    iface = establish(True, True, True, 1 << 20, 0.04)
    (conn,) = iface.tcp.connections()
    segs = [TcpSegment(4000, 80, (conn.rcv_nxt + i * MSS) & SEQ_MASK, conn.snd_una & SEQ_MASK, ACK | PSH, 512,
                       timestamps=(300 + i, 0), payload=b"d" * MSS) for i in range(20)]
    acks = 0
    with mock.patch.object(TcpSegment, "parse", side_effect=AssertionError("parsed")):
        for i, seg in enumerate(segs):
            iface.ipv6_received(packet(seg), 0.01 + i * 0.001)
            acks += len(iface.ipv6_to_send(0.01 + i * 0.001))
    assert conn.receive() == b"d" * MSS * 20
    assert acks == 10  # every second full segment acknowledged
    assert conn._ts_recent == 300 + 18  # TS.Recent: the segment that was last acknowledged


def test_declines_what_it_does_not_predict() -> None:
    """Out-of-order data held, another option layout, no connection: the general path."""
    iface = establish(True, True, True, 1 << 20, 0.04)
    (conn,) = iface.tcp.connections()
    nxt, una = conn.rcv_nxt & SEQ_MASK, conn.snd_una & SEQ_MASK
    hole = TcpSegment(4000, 80, (nxt + MSS) & SEQ_MASK, una, ACK, 512, timestamps=(300, 0), payload=b"h" * 10)
    iface.ipv6_received(packet(hole), 0.01)
    in_order = TcpSegment(4000, 80, nxt, una, ACK, 512, timestamps=(301, 0), payload=b"i" * 10)
    assert not iface.tcp.fast_packet(packet(in_order), PEER, US, 0.02)
    no_ts = in_order._replace(timestamps=None)
    assert not iface.tcp.fast_packet(packet(no_ts), PEER, US, 0.02)
    other_port = in_order._replace(src_port=4001)
    assert not iface.tcp.fast_packet(packet(other_port), PEER, US, 0.02)
    assert conn.rcv_nxt & SEQ_MASK == nxt
