"""TCP through the Interface: demux, listeners, RSTs, ICMPv6 errors (fake clock).

Named after gVisor packetimpact tests where one exists; the peer is played
by hand-built segments (proxy.testing.packets) or by a second Interface.
"""

from __future__ import annotations

import random

import pytest

from proxy.errors import DropReason
from proxy.ipstack.events import ConnectionAccepted
from proxy.ipstack.interface import Interface
from proxy.ipstack.tcp import Connected, ConnectionClosed, DataReceived, EndOfStream, TcpState
from proxy.ipstack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment
from proxy.testing.packets import addr, icmp_error, ipv6, parse

US = addr("2001:db8::1")
PEER = addr("2001:db8::2")
ROUTER = addr("2001:db8::fe")


@pytest.fixture
def iface() -> Interface:
    return Interface(rng=random.Random(5), addresses=[US])


def seg_packet(seg: TcpSegment, src: bytes = PEER, dst: bytes = US) -> bytes:
    return ipv6(src, dst, 6, seg.emit(src, dst))


def sent(iface: Interface, now: float = 0.0) -> list[TcpSegment]:
    out = []
    for raw in iface.ipv6_to_send(now):
        p = parse(raw)
        assert p.protocol == 6 and p.checksum_ok() and p.hop_limit == 64
        out.append(TcpSegment.parse(p.upper, p.src, p.dst))
    return out


def events(iface: Interface) -> list:
    out = []
    while (e := iface.next_event()) is not None:
        out.append(e)
    return out


# --- closed ports ---------------------------------------------------------


def test_syn_to_closed_port_gets_rst_ack(iface):
    iface.ipv6_received(seg_packet(TcpSegment(4000, 80, 1000, 0, SYN, 65535, mss=1220)), 0.0)
    (rst,) = sent(iface)
    assert (rst.src_port, rst.dst_port, rst.flags, rst.seq, rst.ack) == (80, 4000, RST | ACK, 0, 1001)
    assert iface.drops[DropReason.TCP_NO_CONNECTION] == 1


def test_ack_to_closed_port_gets_rst_with_its_ack_as_seq(iface):
    iface.ipv6_received(seg_packet(TcpSegment(4000, 80, 1000, 777, ACK, 100, payload=b"data")), 0.0)
    (rst,) = sent(iface)
    assert (rst.flags, rst.seq) == (RST, 777)


def test_rst_to_closed_port_is_not_answered(iface):
    iface.ipv6_received(seg_packet(TcpSegment(4000, 80, 1000, 0, RST, 0)), 0.0)
    assert sent(iface) == []


def test_tcp_to_multicast_is_dropped(iface):
    group = addr("ff02::1")
    iface.ipv6_received(seg_packet(TcpSegment(1, 80, 0, 0, SYN, 100), dst=group), 0.0)
    assert sent(iface) == []


def test_bad_checksum_gets_no_rst(iface):
    p = bytearray(seg_packet(TcpSegment(4000, 80, 1000, 0, SYN, 65535)))
    p[-1] ^= 0xFF
    iface.ipv6_received(bytes(p), 0.0)
    assert sent(iface) == [] and iface.drops[DropReason.BAD_CHECKSUM] == 1


# --- listeners --------------------------------------------------------------


def handshake(iface: Interface, sport: int = 4000, now: float = 0.0) -> TcpSegment:
    iface.ipv6_received(seg_packet(TcpSegment(sport, 80, 1000, 0, SYN, 65535, mss=1220)), now)
    (synack,) = sent(iface, now)
    assert synack.flags == SYN | ACK and synack.ack == 1001
    iface.ipv6_received(seg_packet(TcpSegment(sport, 80, 1001, synack.seq + 1, ACK, 65535)), now)
    return synack


def test_listener_accepts_and_data_flows(iface):
    listener = iface.tcp_listen(80)
    synack = handshake(iface)
    assert synack.mss == 1220
    (acc,) = events(iface)
    assert isinstance(acc, ConnectionAccepted) and acc.listener is listener
    conn = acc.connection
    assert conn.state == TcpState.ESTABLISHED and conn.remote == (PEER, 4000)
    iface.ipv6_received(
        seg_packet(TcpSegment(4000, 80, 1001, synack.seq + 1, ACK | FIN, 65535, payload=b"hi")), 0.1
    )
    evs = events(iface)
    assert [type(e.event) for e in evs] == [DataReceived, EndOfStream]
    assert iface.tcp_receive(conn) == b"hi"
    assert iface.tcp_send(conn, b"bye") == 3
    iface.tcp_close(conn, 0.2)
    out = sent(iface, 0.2)
    assert out[-1].flags & FIN and b"".join(s.payload for s in out) == b"bye"


def test_segment_to_listener_without_syn(iface):
    iface.tcp_listen(80)
    iface.ipv6_received(seg_packet(TcpSegment(4000, 80, 5, 9, ACK, 100)), 0.0)
    (rst,) = sent(iface)
    assert (rst.flags, rst.seq) == (RST, 9)  # RFC 9293 §3.10.7.2: ACK in LISTEN
    iface.ipv6_received(seg_packet(TcpSegment(4000, 80, 5, 0, RST, 0)), 0.0)
    iface.ipv6_received(seg_packet(TcpSegment(4000, 80, 5, 0, 0, 0)), 0.0)
    assert sent(iface) == []


def test_tcp_listen_backlog(iface):
    iface.tcp_listen(80, backlog=2)
    for port in (4001, 4002, 4003):
        iface.ipv6_received(seg_packet(TcpSegment(port, 80, 1000, 0, SYN, 65535)), 0.0)
    assert [s.dst_port for s in sent(iface)] == [4001, 4002]
    assert iface.drops[DropReason.TCP_BACKLOG_FULL] == 1


def test_backlog_frees_when_the_driver_takes_the_connection(iface):
    iface.tcp_listen(80, backlog=1)
    handshake(iface, 4001)
    iface.ipv6_received(seg_packet(TcpSegment(4002, 80, 1000, 0, SYN, 65535)), 0.0)
    assert sent(iface) == []  # established but not yet pulled: still counted
    assert isinstance(events(iface)[0], ConnectionAccepted)
    iface.ipv6_received(seg_packet(TcpSegment(4003, 80, 1000, 0, SYN, 65535)), 0.0)
    assert [s.dst_port for s in sent(iface)] == [4003]


def test_handshake_that_dies_frees_its_slot_silently(iface):
    iface.tcp_listen(80, backlog=1)
    iface.ipv6_received(seg_packet(TcpSegment(4001, 80, 1000, 0, SYN, 65535)), 0.0)
    (synack,) = sent(iface)
    iface.ipv6_received(seg_packet(TcpSegment(4001, 80, 1001, 0, RST, 0)), 0.1)
    assert sent(iface, 0.1) == []
    assert events(iface) == []
    assert iface.tcp.listeners()[0].pending == 0
    assert len(iface.tcp) == 0


def test_closing_listener_resets_pending(iface):
    listener = iface.tcp_listen(80)
    iface.ipv6_received(seg_packet(TcpSegment(4001, 80, 1000, 0, SYN, 65535)), 0.0)
    sent(iface)
    iface.tcp_close_listener(listener, 0.1)
    assert any(s.flags & RST for s in sent(iface, 0.1))
    iface.ipv6_received(seg_packet(TcpSegment(4002, 80, 1000, 0, SYN, 65535)), 0.2)
    assert sent(iface, 0.2)[0].flags == RST | ACK


def test_connection_limit_answers_rst(iface):
    iface.tcp.max_connections = 1
    iface.tcp_listen(80)
    iface.ipv6_received(seg_packet(TcpSegment(4001, 80, 1000, 0, SYN, 65535)), 0.0)
    iface.ipv6_received(seg_packet(TcpSegment(4002, 80, 1000, 0, SYN, 65535)), 0.0)
    flags = sorted((s.dst_port, s.flags) for s in sent(iface))
    assert flags == [(4001, SYN | ACK), (4002, RST | ACK)]
    assert iface.drops[DropReason.TCP_CONNECTION_LIMIT] == 1
    with pytest.raises(OSError):
        iface.tcp_connect((PEER, 80), 0.0)


def test_port_already_listening(iface):
    iface.tcp_listen(80)
    with pytest.raises(OSError):
        iface.tcp_listen(80)
    with pytest.raises(OSError):
        iface.tcp_listen(80, local_addr=US)


# --- active opens and ICMPv6 errors ---------------------------------------


def connect(iface: Interface) -> tuple[object, TcpSegment, bytes]:
    conn = iface.tcp_connect((PEER, 80), 0.0)
    (raw,) = iface.ipv6_to_send(0.0)
    syn = TcpSegment.parse(raw[40:], US, PEER)
    assert syn.flags == SYN and 49152 <= syn.src_port <= 65535 and syn.mss == 1220
    return conn, syn, raw


@pytest.mark.parametrize(
    "code,reason", [(0, "unreachable-net"), (3, "unreachable-host"), (1, "admin-prohibited"),
                    (4, "unreachable-port")],
)
def test_tcp_network_unreachable(iface, code, reason):
    conn, syn, raw = connect(iface)
    iface.ipv6_received(icmp_error(ROUTER, 1, code, 0, raw), 0.5)
    evs = events(iface)
    assert [e.event for e in evs] == [ConnectionClosed(reason)]
    iface.ipv6_to_send(0.5)
    assert len(iface.tcp) == 0


def test_tcp_connect_icmp_error_then_rst_for_late_ack(iface):
    # packetimpact tcp_connect_icmp_error: after the error aborted the
    # handshake, the connection is gone: a segment for it draws an RST.
    conn, syn, raw = connect(iface)
    iface.ipv6_received(icmp_error(ROUTER, 1, 3, 0, raw), 0.5)
    assert events(iface)[-1].event == ConnectionClosed("unreachable-host")
    iface.ipv6_to_send(0.5)
    iface.ipv6_received(
        seg_packet(TcpSegment(80, syn.src_port, 5000, syn.seq + 1, ACK, 100)), 0.6
    )
    (rst,) = sent(iface, 0.6)
    assert rst.flags == RST and rst.seq == syn.seq + 1


def test_time_exceeded_ends_a_connection_attempt(iface):
    # RFC 5461 §4 and Linux (RFC 1122 would call it soft): the application
    # learns "hop limit exceeded" at once (SOCKS5 0x06), not a timeout later.
    conn, syn, raw = connect(iface)
    iface.ipv6_received(icmp_error(ROUTER, 3, 0, 0, raw), 0.1)
    assert events(iface)[-1].event == ConnectionClosed("time-exceeded")
    assert conn.state == TcpState.CLOSED


def test_rst_answering_syn_is_refused(iface):
    conn, syn, raw = connect(iface)
    iface.ipv6_received(seg_packet(TcpSegment(80, syn.src_port, 0, syn.seq + 1, RST | ACK, 0)), 0.1)
    assert [e.event for e in events(iface)] == [ConnectionClosed("refused")]


def test_error_quoting_unsent_sequence_is_ignored(iface):
    # RFC 5927 §4.1: the quoted sequence number must be in flight.
    conn, syn, raw = connect(iface)
    forged = bytearray(raw)
    forged[44:48] = ((syn.seq + 100000) & 0xFFFFFFFF).to_bytes(4, "big")
    iface.ipv6_received(icmp_error(ROUTER, 1, 3, 0, bytes(forged)), 0.1)
    assert events(iface) == [] and conn.state == TcpState.SYN_SENT


def test_error_for_unknown_connection_is_counted(iface):
    conn, syn, raw = connect(iface)
    forged = bytearray(raw)
    forged[40:42] = b"\x00\x01"
    iface.ipv6_received(icmp_error(ROUTER, 1, 3, 0, bytes(forged)), 0.1)
    assert iface.drops[DropReason.ICMP_UNMATCHED] == 1


def test_syn_retries_time_out(iface):
    conn, syn, raw = connect(iface)
    now = 0.0
    for _ in range(200):
        deadline = iface.poll_at()
        if deadline is None:
            break
        now = max(now, deadline)
        iface.handle_timer(now)
        iface.ipv6_to_send(now)
    assert [e.event for e in events(iface)] == [ConnectionClosed("timeout")]
    assert len(iface.tcp) == 0 and iface.poll_at() is None


def test_removing_our_address_aborts_its_connections(iface):
    conn, syn, raw = connect(iface)
    iface.remove_address(US, 0.1)
    assert iface.ipv6_to_send(0.1) == []  # SYN-SENT: aborted without an RST
    assert events(iface)[-1].event == ConnectionClosed("aborted")
    assert len(iface.tcp) == 0


# --- two Interfaces back to back -----------------------------------------


def pump(a: Interface, b: Interface, now: float) -> None:
    for _ in range(100):
        pa, pb = a.ipv6_to_send(now), b.ipv6_to_send(now)
        if not pa and not pb:
            return
        for p in pa:
            b.ipv6_received(p, now)
        for p in pb:
            a.ipv6_received(p, now)


def test_two_interfaces_transfer_and_close():
    a = Interface(rng=random.Random(1), addresses=[US])
    b = Interface(rng=random.Random(2), addresses=[PEER])
    b.tcp_listen(9000)
    ca = a.tcp_connect((PEER, 9000), 0.0)
    pump(a, b, 0.0)
    assert [type(e.event) for e in events(a)] == [Connected]
    (acc,) = events(b)
    cb = acc.connection
    data = bytes(random.Random(3).randbytes(300_000))
    sent_n = 0
    got = bytearray()
    now = 0.0
    while len(got) < len(data):
        if sent_n < len(data):
            sent_n += a.tcp_send(ca, data[sent_n:])
        pump(a, b, now)
        for e in events(b):
            if isinstance(e.event, DataReceived):
                got += b.tcp_receive(cb)
        events(a)
        now += 0.01
        for i in (a, b):
            if (d := i.poll_at()) is not None and d <= now:
                i.handle_timer(now)
    assert bytes(got) == data
    a.tcp_close(ca, now)
    pump(a, b, now)
    assert [type(e.event) for e in events(b)] == [EndOfStream]
    b.tcp_close(cb, now)
    pump(a, b, now)
    assert ConnectionClosed(None) in [e.event for e in events(b)]
    for t in (now + 1, now + 100, now + 1000):
        for i in (a, b):
            i.handle_timer(t)
            i.ipv6_to_send(t)
    assert len(a.tcp) == 0 and len(b.tcp) == 0
    assert a.poll_at() is None and b.poll_at() is None


def test_packet_too_big_reaches_tcp():
    a = Interface(rng=random.Random(1), addresses=[US], mtu=1500)
    b = Interface(rng=random.Random(2), addresses=[PEER], mtu=1500)
    b.tcp_listen(9000)
    ca = a.tcp_connect((PEER, 9000), 0.0)
    pump(a, b, 0.0)
    events(a), events(b)
    a.tcp_send(ca, bytes(20000))
    big = [p for p in a.ipv6_to_send(0.0) if len(p) > 1400]
    assert big and max(len(p) for p in big) == 1500
    a.ipv6_received(icmp_error(ROUTER, 2, 0, 1280, big[0]), 0.01)
    assert a.path_mtu(PEER) == 1280
    out = a.ipv6_to_send(0.01)
    assert out and max(len(p) for p in out) <= 1280
