"""Hypothesis: the relay core never raises on hostile input and its state stays bounded."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from proxy.ipstack.wire.ipv6 import IPV6_HEADER
from proxy.teredo.peers import PeerTable
from proxy.testing.relay_fixtures import CLIENT, CLIENT_EP, HOST, SERVER, make_relay, open_peer, teredo

CAP = 16

ipv4s = st.sampled_from(["198.51.100.21", "203.0.113.5", "10.0.0.1", "0.0.0.0", "255.255.255.255", "not-an-ip"])
endpoints = st.tuples(ipv4s, st.integers(0, 65535))
addresses = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.builds(lambda s, i, p, f: teredo(server=s, ip=i, port=p, flags=f),
              st.sampled_from([SERVER, "10.1.1.1", "203.0.113.1"]),
              st.sampled_from(["198.51.100.21", "203.0.113.5", "192.168.0.1"]),
              st.integers(0, 65535), st.integers(0, 65535)),
    st.just(CLIENT), st.just(HOST),
)


@st.composite
def ipv6_packets(draw) -> bytes:
    """Mostly well-formed IPv6 headers with hostile fields, sometimes mangled."""
    payload = draw(st.binary(max_size=1400))
    plen = draw(st.one_of(st.just(len(payload)), st.integers(0, 65535)))
    word = draw(st.one_of(st.just(0x60000000), st.integers(0, 2**32 - 1)))
    nh = draw(st.sampled_from([59, 58, 17, 6, 0, 43, 44, 255]))
    head = IPV6_HEADER.pack(word, plen, nh, draw(st.integers(0, 255)), draw(addresses), draw(addresses))
    data = head + payload
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return data if cut is None else data[:cut]


datagrams = st.one_of(
    st.binary(max_size=200),
    ipv6_packets(),
    st.builds(lambda pre, p: pre + p, st.sampled_from([b"\x00\x01\x00\x00" + bytes(9), b"\x00\x00" + bytes(6),
                                                        b"\x00\x01\x05\x07", b"\x00\x00\xff"]), ipv6_packets()),
)


def check_bounds(r) -> None:
    assert len(r.peers) <= CAP
    assert sum(r.peers.queued_bytes(r.peers.peek(k)) for k in r.peers.queued_peers() if r.peers.peek(k) >= 0) <= CAP * 1280
    assert len(r._retry) <= CAP and len(r._heap) <= 8 * CAP + 64


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), datagrams, endpoints, st.floats(0, 3)), max_size=40),
       st.booleans(), st.booleans())
def test_any_input_never_raises_and_stays_bounded(events, router, restricted):
    r = make_relay(peers=PeerTable(CAP), router=router, direct_bubbles=restricted)
    open_peer(r, now=0.0)
    now = 0.0
    for native, data, ep, dt in events:
        now += dt
        if native:
            r.ipv6_from_native(data, now)
        else:
            r.datagram_received(data, ep, now)
        if r.poll_at() is not None and r.poll_at() <= now:
            r.handle_timer(now)
        out = r.datagrams_to_send()
        nat = r.ipv6_to_native()
        assert all(isinstance(d, bytes) and isinstance(e, tuple) for d, e in out)
        assert all(isinstance(p, bytes) and len(p) >= 40 for p in nat)
        check_bounds(r)


@settings(max_examples=200)
@given(st.lists(ipv6_packets(), max_size=60))
def test_native_floods_create_at_most_capacity_peers(packets):
    r = make_relay(peers=PeerTable(CAP))
    now = 0.0
    for p in packets:
        now += 0.01
        r.ipv6_from_native(p, now)
        r.handle_timer(now)
        check_bounds(r)
    # whatever arrived, only Teredo destinations were ever bubbled
    for b, ep in r.datagrams_to_send():
        assert b[24:28] == b"\x20\x01\x00\x00" or ep[1] != 3544


@settings(max_examples=200)
@given(st.lists(st.tuples(datagrams, endpoints), max_size=60))
def test_teredo_side_input_alone_creates_no_state_and_forwards_nothing(events):
    r = make_relay(peers=PeerTable(CAP))
    for data, ep in events:
        r.datagram_received(data, ep, 1.0)
    assert len(r.peers) == 0 and r.ipv6_to_native() == [] and r.datagrams_to_send() == []


@given(ipv6_packets())
def test_forwarded_packets_are_exactly_the_ipv6_packet(p):
    r = make_relay()
    open_peer(r, now=0.0)
    r.datagram_received(p, CLIENT_EP, 1.0)
    for fwd in r.ipv6_to_native():
        assert fwd == p[: 40 + ((p[4] << 8) | p[5])]
