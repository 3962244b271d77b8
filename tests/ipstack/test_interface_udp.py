"""UDP through the Interface: demux, port unreachable, ICMP error propagation."""

from __future__ import annotations

import random

import pytest

from proxy.constants import UDP_RECV_QUEUE_DATAGRAMS
from proxy.errors import DropReason
from proxy.ipstack.events import DatagramErrorReceived, DatagramReceived
from proxy.ipstack.interface import Interface
from proxy.ipstack.wire.udp import UdpDatagram
from proxy.testing.packets import addr, icmp_error, ipv6, parse, udp_packet

US = addr("2001:db8::1")
US2 = addr("2001:db8::11")
PEER = addr("2001:db8::2")
OTHER = addr("2001:db8::3")
ROUTER = addr("2001:db8::fe")


@pytest.fixture
def iface() -> Interface:
    return Interface(rng=random.Random(2), addresses=[US, US2])


def events(iface: Interface) -> list:
    out = []
    while (e := iface.next_event()) is not None:
        out.append(e)
    return out


def test_bound_socket_receives(iface):
    sock = iface.udp_open(local_port=5000)
    iface.ipv6_received(udp_packet(PEER, US, 1234, 5000, b"hello"), 0.0)
    assert iface.ipv6_to_send(0.0) == []
    assert events(iface) == [DatagramReceived(sock, b"hello", (PEER, 1234))]


def test_udp_port_unreachable(iface):
    # packetimpact udp_port_unreachable: bound port works, unused port gets
    # Destination Unreachable code 4, bound port still works afterwards.
    sock = iface.udp_open(local_port=5000)
    iface.ipv6_received(udp_packet(PEER, US, 1234, 5000, b"a"), 0.0)
    bad = udp_packet(PEER, US, 1234, 20001, b"hello world")
    iface.ipv6_received(bad, 0.0)
    iface.ipv6_received(udp_packet(PEER, US, 1234, 5000, b"b"), 0.0)
    (err,) = [parse(p) for p in iface.ipv6_to_send(0.0)]
    assert (err.src, err.dst, err.icmp_type, err.icmp_code) == (US, PEER, 1, 4)
    assert err.icmp_body == bad and err.checksum_ok()
    assert [e.data for e in events(iface)] == [b"a", b"b"]
    assert sock.queued == 0


def test_zero_checksum_is_dropped_without_error(iface):
    iface.udp_open(local_port=5000)
    raw = bytearray(UdpDatagram(1234, 5000, b"x").emit(PEER, US))
    raw[6:8] = b"\0\0"
    iface.ipv6_received(ipv6(PEER, US, 17, bytes(raw)), 0.0)
    assert iface.ipv6_to_send(0.0) == [] and events(iface) == []
    assert iface.drops[DropReason.UDP_ZERO_CHECKSUM] == 1


def test_multicast_gets_no_port_unreachable(iface):
    iface.ipv6_received(udp_packet(PEER, addr("ff02::1"), 1, 2, b""), 0.0)
    assert iface.ipv6_to_send(0.0) == []


def test_specific_address_binding_wins_over_wildcard(iface):
    any_sock = iface.udp_open(local_port=7000)
    with pytest.raises(OSError):
        iface.udp_open(local_addr=US2, local_port=7000)
    iface.udp_close(any_sock)
    specific = iface.udp_open(local_addr=US2, local_port=7000)
    iface.ipv6_received(udp_packet(PEER, US2, 1, 7000, b"to-2"), 0.0)
    iface.ipv6_received(udp_packet(PEER, US, 1, 7000, b"to-1"), 0.0)
    assert [e.data for e in events(iface)] == [b"to-2"]
    assert len(iface.ipv6_to_send(0.0)) == 1  # port unreachable for the other address
    assert specific.local_addr == US2


def test_connected_socket_only_hears_its_peer(iface):
    sock = iface.udp_open(local_port=6000, remote=(PEER, 53))
    iface.ipv6_received(udp_packet(OTHER, US, 53, 6000, b"spoof"), 0.0)
    iface.ipv6_received(udp_packet(PEER, US, 53, 6000, b"real"), 0.0)
    assert events(iface) == [DatagramReceived(sock, b"real", (PEER, 53))]


def test_send_checksummed_and_from_bound_address(iface):
    sock = iface.udp_open(local_addr=US2, local_port=6001)
    iface.udp_send(sock, b"query", (PEER, 53), 0.0)
    (p,) = [parse(x) for x in iface.ipv6_to_send(0.0)]
    assert (p.src, p.dst, p.protocol) == (US2, PEER, 17)
    assert UdpDatagram.parse(p.upper, US2, PEER) == UdpDatagram(6001, 53, b"query")


def test_ephemeral_ports_are_random_and_distinct(iface):
    ports = {iface.udp_open().local_port for _ in range(50)}
    assert len(ports) == 50 and all(49152 <= p <= 65535 for p in ports)


def test_send_misuse_raises(iface):
    sock = iface.udp_open()
    with pytest.raises(ValueError):
        iface.udp_send(sock, b"x", None, 0.0)
    with pytest.raises(ValueError):
        iface.udp_send(sock, bytes(70000), (PEER, 1), 0.0)
    iface.udp_close(sock)
    with pytest.raises(ValueError):
        iface.udp_send(sock, b"x", (PEER, 1), 0.0)


def test_large_datagram_is_fragmented_and_fits(iface):
    sock = iface.udp_open()
    iface.udp_send(sock, bytes(4000), (PEER, 9), 0.0)
    out = iface.ipv6_to_send(0.0)
    assert len(out) == 4 and all(len(p) <= 1280 for p in out)
    # fed back to a second interface, it reassembles
    other = Interface(rng=random.Random(3), addresses=[PEER])
    rx = other.udp_open(local_port=9)
    for p in out:
        other.ipv6_received(p, 0.0)
    e = other.next_event()
    assert isinstance(e, DatagramReceived) and e.socket is rx and e.data == bytes(4000)


def test_receive_queue_is_bounded(iface):
    iface.udp_open(local_port=5000)
    for i in range(UDP_RECV_QUEUE_DATAGRAMS + 10):
        iface.ipv6_received(udp_packet(PEER, US, 1, 5000, b"x"), 0.0)
    assert iface.drops[DropReason.UDP_QUEUE_FULL] == 10
    assert len(events(iface)) == UDP_RECV_QUEUE_DATAGRAMS


@pytest.mark.parametrize("connect", [True, False], ids=["connected", "connectionless"])
@pytest.mark.parametrize(
    "typ,code,kind", [(1, 4, "unreachable-port"), (3, 0, "time-exceeded")],
    ids=["port-unreachable", "ttl-expired"],
)
def test_udp_icmp_error_propagation(iface, connect, typ, code, kind):
    remote = (PEER, 4242)
    sock = iface.udp_open(remote=remote if connect else None)
    clean = iface.udp_open(remote=remote if connect else None)
    iface.udp_send(sock, b"", remote, 0.0)
    (sent,) = iface.ipv6_to_send(0.0)
    reporter = PEER if typ == 1 else ROUTER
    iface.ipv6_received(icmp_error(reporter, typ, code, 0, sent), 0.1)
    assert events(iface) == [DatagramErrorReceived(sock, kind, remote)]
    # the clean socket is unaffected and both still work afterwards
    iface.ipv6_received(udp_packet(PEER, US, 4242, clean.local_port, b"c"), 0.2)
    iface.ipv6_received(udp_packet(PEER, US, 4242, sock.local_port, b"s"), 0.2)
    assert [(e.socket, e.data) for e in events(iface)] == [(clean, b"c"), (sock, b"s")]


def test_error_for_closed_socket_is_counted(iface):
    sock = iface.udp_open()
    iface.udp_send(sock, b"x", (PEER, 1), 0.0)
    (sent,) = iface.ipv6_to_send(0.0)
    iface.udp_close(sock)
    iface.ipv6_received(icmp_error(PEER, 1, 4, 0, sent), 0.0)
    assert events(iface) == []
    assert iface.drops[DropReason.ICMP_UNMATCHED] == 1


def test_socket_limit():
    iface = Interface(rng=random.Random(2), addresses=[US])
    iface._udp.max_sockets = 3
    for _ in range(3):
        iface.udp_open()
    with pytest.raises(OSError):
        iface.udp_open()
