"""Hypothesis: no packet makes the Interface raise or grow without bound.

Packets are drawn from a grammar close to what breaks stacks (extension
header chains with odd options, fragments with random offsets/flags/ids,
ICMPv6 errors quoting our own packets, TCP segments with random flags,
UDP to open and closed ports) mixed with raw random bytes, delivered at
advancing fake times with timers fired in between.
"""

from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from proxy.constants import (
    INTERFACE_MAX_EVENTS,
    REASSEMBLY_MAX_BYTES,
    REASSEMBLY_MAX_DATAGRAMS,
    UDP_RECV_QUEUE_DATAGRAMS,
)
from proxy.ipstack.interface import Interface
from proxy.ipstack.wire.checksum import checksum, pseudo_header_sum
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.ipstack.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment
from proxy.testing.packets import (
    addr,
    fragment_header,
    icmp_message,
    ipv6,
    options_header,
    udp_packet,
)

US = addr("2001:db8::1")
PEERS = [addr("2001:db8::2")] * 4 + [addr("2001:db8::3")] * 3 + [addr("ff02::1"), bytes(16)]
DSTS = [US, US, US, addr("ff02::1"), addr("2001:db8::9")]

peer = st.sampled_from(PEERS)
dst = st.sampled_from(DSTS)


@st.composite
def options(draw) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        t = draw(st.sampled_from([0, 1, 4, 5, 0x1E, 0x5E, 0x9E, 0xDE, 0xC2]))
        if t == 0:
            out += b"\0"
        else:
            n = draw(st.integers(0, 6))
            out += bytes((t, n)) + draw(st.binary(min_size=n, max_size=n))
    return out


@st.composite
def upper(draw) -> tuple[int, bytes]:
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "raw"]))
    if kind == "tcp":
        flags = draw(st.integers(0, 255))
        opts = draw(st.sampled_from([b"", b"\x02\x04\x04\xc4", b"\x01\x01\x08\x0a" + bytes(8),
                                     b"\x05\x00\x00\x00", b"\x03\x03\x0e\x00"]))
        hlen = 20 + len(opts)
        seg = struct.pack("!HHIIBBHHH", draw(st.integers(0, 65535)), draw(st.sampled_from([80, 81, 9])),
                          draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)),
                          (hlen // 4) << 4, flags, draw(st.integers(0, 65535)), 0, 0)
        return 6, seg + opts + draw(st.binary(max_size=40))
    if kind == "udp":
        body = struct.pack("!HHHH", draw(st.integers(0, 65535)), draw(st.sampled_from([53, 54])),
                           draw(st.integers(0, 80)), draw(st.integers(0, 65535)))
        return 17, body + draw(st.binary(max_size=40))
    if kind == "icmp":
        typ = draw(st.sampled_from([1, 2, 3, 4, 128, 129, 133, 137, 200]))
        return 58, bytes((typ, draw(st.integers(0, 6)))) + draw(st.binary(max_size=60))
    return draw(st.integers(0, 255)), draw(st.binary(max_size=40))


_CSUM_AT = {6: 16, 17: 6, 58: 2}


def with_checksum(src: bytes, dst: bytes, nh: int, body: bytes) -> bytes:
    """Make the upper-layer checksum right, so the packet reaches the sockets."""
    at = _CSUM_AT.get(nh)
    if at is None or len(body) < at + 2:
        return body
    b = bytearray(body)
    b[at : at + 2] = b"\0\0"
    c = checksum(b, pseudo_header_sum(src, dst, len(b), nh))
    if nh == 17 and c == 0:
        c = 0xFFFF
    b[at : at + 2] = c.to_bytes(2, "big")
    return bytes(b)


@st.composite
def packet(draw) -> bytes:
    choice = draw(st.integers(0, 9))
    src, d = draw(peer), draw(dst)
    if choice == 0:
        return draw(st.binary(max_size=120))
    nh, body = draw(upper())
    if draw(st.integers(0, 9)):
        body = with_checksum(src, d, nh, body)
    if choice in (1, 2):  # extension header chain
        for _ in range(draw(st.integers(1, 3))):
            h = draw(st.sampled_from([NextHeader.HOP_BY_HOP, NextHeader.DESTINATION_OPTIONS,
                                      NextHeader.ROUTING]))
            if h == NextHeader.ROUTING:
                body = bytes((nh, 0, draw(st.integers(0, 4)), draw(st.integers(0, 2)))) + bytes(4) + body
            else:
                body = options_header(nh, draw(options())) + body
            nh = h
    if choice in (3, 4, 5):  # a fragment
        off = draw(st.integers(0, 40)) * 8
        more = draw(st.booleans())
        ident = draw(st.integers(0, 5))
        body = fragment_header(nh, off, more, ident) + body
        nh = NextHeader.FRAGMENT
    if choice == 6:  # an ICMPv6 error quoting one of "our" packets
        inner = ipv6(US, src, nh, body)
        return icmp_message(src, US, draw(st.integers(1, 4)), draw(st.integers(0, 6)),
                            draw(st.integers(0, 2000)), inner)
    if choice == 7:
        return udp_packet(src, d, 9, draw(st.sampled_from([53, 54])), body)
    if choice == 8:  # a well-formed TCP segment: reaches listeners and connections
        peer_port = draw(st.sampled_from([1000, 1001, 1002]))
        seg = TcpSegment(
            peer_port, draw(st.sampled_from([80, 80, 81])),
            draw(st.sampled_from([0, 1, 1000, 2**32 - 1])), draw(st.integers(0, 2**32 - 1)),
            draw(st.sampled_from([SYN, SYN, ACK, ACK | PSH, RST, FIN | ACK, SYN | ACK, RST | ACK])),
            draw(st.integers(0, 65535)),
            mss=draw(st.sampled_from([None, 536, 1220])),
            wscale=draw(st.sampled_from([None, 0, 7, 14, 15])),
            sack_permitted=draw(st.booleans()),
            timestamps=draw(st.sampled_from([None, (1, 0), (2**32 - 1, 5)])),
            payload=draw(st.binary(max_size=30)),
        )
        a = addr("2001:db8::2")
        return ipv6(a, US, 6, seg.emit(a, US))
    plen = draw(st.integers(0, 200)) if draw(st.integers(0, 9)) == 0 else None
    return ipv6(src, d, nh, body, payload_len=plen)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(packet(), st.floats(0, 30)), max_size=40), st.integers(0, 2**32))
def test_interface_never_raises_and_stays_bounded(items, seed):
    iface = Interface(rng=random.Random(seed), addresses=[US])
    iface.udp_open(local_port=53)
    iface.tcp_listen(80, backlog=4)
    iface.send_echo_request(addr("2001:db8::2"), 1, 1, 0.0)
    now = 0.0
    for pkt, dt in items:
        iface.ipv6_received(pkt, now)
        out = iface.ipv6_to_send(now)
        assert all(len(p) <= 1280 for p in out)
        now += dt
        deadline = iface.poll_at()
        if deadline is not None and deadline <= now:
            iface.handle_timer(now)
            iface.ipv6_to_send(now)
        assert len(iface.reassembler) <= REASSEMBLY_MAX_DATAGRAMS
        assert iface.reassembler.buffered_bytes <= REASSEMBLY_MAX_BYTES
        assert len(iface._events) <= INTERFACE_MAX_EVENTS
        # SYN floods stay within the listener's backlog (events not pulled)
        assert len(iface.tcp) <= 4
    n = 0
    while iface.next_event() is not None:
        n += 1
        assert n <= INTERFACE_MAX_EVENTS + UDP_RECV_QUEUE_DATAGRAMS + 10 * len(items) + 10
    # Far in the future every timer has run: nothing is left half-done.
    for t in (now + 100, now + 1000, now + 10000):
        iface.handle_timer(t)
        iface.ipv6_to_send(t)
    assert len(iface.reassembler) == 0 and iface.reassembler.buffered_bytes == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_random_bytes(data):
    iface = Interface(rng=random.Random(0), addresses=[US])
    iface.ipv6_received(data, 0.0)
    iface.ipv6_to_send(0.0)
    iface.next_event()
