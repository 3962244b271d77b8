"""Builders for relay tests and tools: addresses, packets, a relay core with test defaults."""

from __future__ import annotations

from ipaddress import IPv6Address

from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.teredo.address import TeredoAddress
from proxy.teredo.packet import bubble, ipv6_packet
from proxy.teredo.peers import PeerTable
from proxy.teredo.relay import TeredoRelay

SERVER = "198.51.100.1"
CLIENT_IP, CLIENT_PORT = "198.51.100.21", 40000
CLIENT = TeredoAddress(SERVER, 0x0123, CLIENT_PORT, CLIENT_IP).emit()
CLIENT_EP = (CLIENT_IP, CLIENT_PORT)
HOST = IPv6Address("2001:db8:1::100").packed
RELAY6 = IPv6Address("2001:db8:1::10").packed
SECRET = bytes(range(32))


def a6(text: str) -> bytes:
    return IPv6Address(text).packed


def teredo(server: str = SERVER, ip: str = CLIENT_IP, port: int = CLIENT_PORT, flags: int = 0) -> bytes:
    return TeredoAddress(server, flags, port, ip).emit()


def udp_like(src: bytes, dst: bytes, size: int = 100, hop: int = 64, nh: int = NextHeader.UDP) -> bytes:
    """An IPv6 packet of ``size`` bytes in all with an opaque payload."""
    return ipv6_packet(src, dst, nh, b"x" * (size - 40), hop)


def make_relay(**kw) -> TeredoRelay:
    kw.setdefault("secret", SECRET)
    kw.setdefault("icmp_source", RELAY6)
    return TeredoRelay(**kw)


def open_peer(relay: TeredoRelay, client: bytes = CLIENT, ep: tuple[str, int] = CLIENT_EP, now: float = 100.0) -> None:
    """Native traffic creates the peer; the client answers the bubble: trusted."""
    relay.ipv6_from_native(udp_like(HOST, client), now)
    out = relay.datagrams_to_send()
    assert out and out[0][1][1] == 3544
    b = out[0][0]
    reply = bubble(client, b[8:24])
    relay.datagram_received(reply, ep, now)
    relay.datagrams_to_send()


__all__ = [
    "SERVER", "CLIENT_IP", "CLIENT_PORT", "CLIENT", "CLIENT_EP", "HOST", "RELAY6", "SECRET",
    "a6", "teredo", "udp_like", "make_relay", "open_peer", "PeerTable", "bubble", "ipv6_packet",
]
