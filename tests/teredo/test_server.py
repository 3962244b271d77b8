"""The server core, case by case (RFC 4380 §5.3.1, §5.3.2), with a fake clock."""

from __future__ import annotations

import dataclasses

import dpkt
import pytest
from hypothesis import given, strategies as st

from proxy.config.server import ServerConfig
from proxy.constants import ALL_ROUTERS, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED
from proxy.errors import DropReason
from proxy.ipstack.wire.icmpv6 import Echo
from proxy.teredo import auth as teredo_auth
from proxy.teredo.address import TeredoAddress, server_link_local
from proxy.teredo.messages import parse_router_advertisement, router_solicitation
from proxy.teredo.packet import Authentication, OriginIndication, TeredoPacket, bubble, ipv6_packet
from proxy.teredo.server import TeredoServer

PRIMARY = ("198.51.100.1", 3544)
SECONDARY = ("198.51.100.2", 3544)
CLIENT = ("198.51.100.20", 40000)         # a client's public mapping
PEER = ("203.0.113.7", 50000)             # another client of ours
NONCE = bytes.fromhex("0011223344556677")
CLIENT_ADDR = TeredoAddress("198.51.100.1", 0x0123, *reversed(CLIENT)).emit()
PEER_ADDR = TeredoAddress("198.51.100.1", 0, *reversed(PEER)).emit()
OTHER_SERVER_PEER = TeredoAddress("192.0.2.99", 0, 1111, "203.0.113.8").emit()
NATIVE = bytes.fromhex("20010db8000100000000000000000100")
RELAY_LL = bytes.fromhex("fe80000000000000aabbccddeeff0011")  # Miredo relay's HMAC bubble source


def config(**kw) -> ServerConfig:
    return ServerConfig(address=PRIMARY[0], address2=SECONDARY[0], **kw).validate()


@pytest.fixture
def server() -> TeredoServer:
    return TeredoServer(config())


def feed(server, data, addr=CLIENT, local=PRIMARY, now=0.0):
    server.datagram_received(data, local, addr, now)
    return server.datagrams_to_send()


def only_drop(server) -> DropReason:
    assert sum(server.drops.values()) == 1, server.drops
    return next(iter(server.drops))


def echo_request(src, dst, size=18, hop=128):
    icmp = Echo(True, 1, 2, b"x" * size).emit(src, dst)
    return ipv6_packet(src, dst, 58, icmp, hop)


# -- §5.3.2 qualification ---------------------------------------------------------

def test_restricted_rs_answered_from_the_same_address(server):
    out = feed(server, router_solicitation(NONCE))
    assert len(out) == 1
    data, local, remote = out[0]
    assert (local, remote) == (PRIMARY, CLIENT)
    ra = TeredoPacket.parse(data)
    assert ra.auth == Authentication(NONCE)
    ans = parse_router_advertisement(ra)
    assert ans.mapped == CLIENT and ans.server == PRIMARY[0] and ans.mtu == 1280 and not ans.cone
    assert ra.src == server_link_local(PRIMARY[0]) and ra.dst == LINK_LOCAL_RESTRICTED
    assert dpkt.ip6.IP6(bytes(ra.ipv6)).data.type == 134


def test_restricted_rs_on_secondary_answered_from_secondary(server):
    (_, local, _), = feed(server, router_solicitation(NONCE), local=SECONDARY)
    assert local == SECONDARY


@pytest.mark.parametrize("received_on,answered_from", [(PRIMARY, SECONDARY), (SECONDARY, PRIMARY)])
def test_cone_rs_answered_from_the_other_address(server, received_on, answered_from):
    (data, local, _), = feed(server, router_solicitation(NONCE, cone=True), local=received_on)
    assert local == answered_from
    assert TeredoPacket.parse(data).dst == LINK_LOCAL_CONE


def test_rs_without_nonce_gets_ra_without_authentication(server):
    rs = TeredoPacket.parse(router_solicitation(NONCE))
    (data, _, _), = feed(server, bytes(rs.ipv6))
    ra = TeredoPacket.parse(data)
    assert ra.auth is None and ra.origin == OriginIndication(*CLIENT)


def test_mtu_and_prefix_from_config():
    s = TeredoServer(config(mtu=1400, prefix=0x3FFE831F))
    (data, _, _), = feed(s, router_solicitation(NONCE))
    ans = parse_router_advertisement(TeredoPacket.parse(data))
    assert ans.mtu == 1400


def test_rs_with_bad_checksum(server):
    rs = bytearray(router_solicitation(NONCE))
    rs[-1] ^= 0xFF
    assert feed(server, bytes(rs)) == []
    assert only_drop(server) is DropReason.SERVER_BAD_RS


def test_rs_rate_limit_per_source_address():
    s = TeredoServer(config(rs_rate=1.0, rs_burst=3))
    answered = [bool(feed(s, router_solicitation(NONCE), now=0.0)) for _ in range(5)]
    assert answered == [True, True, True, False, False]
    assert s.drops[DropReason.SERVER_RATE_LIMITED] == 2
    assert feed(s, router_solicitation(NONCE), addr=("203.0.113.1", 1), now=0.0)  # another source
    assert feed(s, router_solicitation(NONCE), now=1.0)  # one token back after a second


# -- secure qualification (§5.2.2) ---------------------------------------------------

KEY = b"shared secret"


def signed_rs(key=KEY, client_id=b"alice"):
    plain = TeredoPacket.parse(router_solicitation(NONCE))
    a = teredo_auth.authenticate(client_id, key, NONCE, bytes(plain.ipv6))
    return TeredoPacket(bytes(plain.ipv6), a).emit()


def test_authenticated_rs_gets_signed_ra():
    s = TeredoServer(config(auth_keys={b"alice": KEY}))
    (data, _, _), = feed(s, signed_rs())
    ra = TeredoPacket.parse(data)
    assert ra.auth.client_id == b"alice" and ra.auth.nonce == NONCE
    assert teredo_auth.verify(ra.auth, KEY, ra.origin, ra.ipv6)
    assert not teredo_auth.verify(ra.auth, b"wrong", ra.origin, ra.ipv6)


@pytest.mark.parametrize("rs", [signed_rs(key=b"wrong"), signed_rs(client_id=b"mallory")])
def test_bad_authentication_is_refused(rs):
    s = TeredoServer(config(auth_keys={b"alice": KEY}))
    assert feed(s, rs) == []
    assert only_drop(s) is DropReason.SERVER_AUTH_FAILED


def test_required_authentication():
    s = TeredoServer(config(auth_keys={b"alice": KEY}, require_auth=True))
    assert feed(s, router_solicitation(NONCE)) == []
    assert only_drop(s) is DropReason.SERVER_AUTH_FAILED
    assert feed(s, signed_rs())


# -- §5.3.1 acceptance checks, in RFC order -------------------------------------------

def test_case_1_not_a_teredo_ipv6_packet(server):
    for junk in (b"", b"\x45" + bytes(40), b"\x60" + bytes(10), b"\x00\x01\x09"):
        feed(server, junk)
    assert server.drops == {DropReason.SERVER_NOT_TEREDO_IPV6: 4}


def test_case_2_neither_bubble_nor_icmpv6(server):
    udp = ipv6_packet(CLIENT_ADDR, NATIVE, 17, bytes(8))
    assert feed(server, udp) == []
    assert only_drop(server) is DropReason.SERVER_NOT_BUBBLE_OR_ICMP


@pytest.mark.parametrize("source", ["10.1.2.3", "192.168.1.1", "127.0.0.1", "224.0.0.1", "100.64.0.1"])
def test_case_3_ipv4_source_not_global(server, source):
    assert feed(server, router_solicitation(NONCE), addr=(source, 3545)) == []
    assert only_drop(server) is DropReason.SERVER_SOURCE_NOT_GLOBAL


def test_case_5_teredo_source_with_matching_mapping_is_forwarded(server):
    (data, local, remote), = feed(server, bubble(CLIENT_ADDR, PEER_ADDR))
    assert (local, remote) == (PRIMARY, PEER)
    p = TeredoPacket.parse(data)
    assert p.origin == OriginIndication(*CLIENT) and p.is_bubble


def test_case_5_mapping_mismatch_is_refused(server):
    assert feed(server, bubble(CLIENT_ADDR, PEER_ADDR), addr=("198.51.100.20", 40001)) == []
    assert only_drop(server) is DropReason.SERVER_NO_ACCEPT_CASE


def test_case_6_non_teredo_source_to_our_client(server):
    relay = ("198.51.100.10", 3544)
    (data, _, remote), = feed(server, bubble(RELAY_LL, CLIENT_ADDR), addr=relay)
    assert remote == CLIENT
    assert TeredoPacket.parse(data).origin == OriginIndication(*relay)


def test_case_7_non_teredo_source_to_another_servers_client(server):
    assert feed(server, bubble(RELAY_LL, OTHER_SERVER_PEER), addr=("198.51.100.10", 3544)) == []
    assert only_drop(server) is DropReason.SERVER_NO_ACCEPT_CASE


def test_teredo_destination_of_another_server_forwarded_without_origin(server):
    (data, _, remote), = feed(server, bubble(CLIENT_ADDR, OTHER_SERVER_PEER))
    assert remote == ("203.0.113.8", 1111)
    assert TeredoPacket.parse(data).origin is None


# -- after acceptance ------------------------------------------------------------------

@pytest.mark.parametrize("source", [PRIMARY, SECONDARY])
def test_loop_prevention(server, source):
    src_addr = TeredoAddress("198.51.100.1", 0, source[1], source[0]).emit()
    assert feed(server, bubble(src_addr, PEER_ADDR), addr=source) == []
    assert only_drop(server) is DropReason.SERVER_LOOP


def test_non_rs_to_all_routers(server):
    icmp = Echo(True, 1, 1).emit(LINK_LOCAL_RESTRICTED, ALL_ROUTERS)
    pkt = ipv6_packet(LINK_LOCAL_RESTRICTED, ALL_ROUTERS, 58, icmp, 255)
    # not case 4 (not an RS), link-local is not Teredo: case 6 fails too
    assert feed(server, pkt) == []
    assert only_drop(server) is DropReason.SERVER_NO_ACCEPT_CASE


def test_echo_to_the_server_link_local_is_answered(server):
    ll = server_link_local(PRIMARY[0])
    (data, local, remote), = feed(server, echo_request(CLIENT_ADDR, ll))
    assert (local, remote) == (PRIMARY, CLIENT)
    p = TeredoPacket.parse(data)
    reply = Echo.parse(p.payload)
    assert not reply.request and reply.data == b"x" * 18 and p.dst == CLIENT_ADDR


def test_echo_request_to_native_host_is_forwarded_natively(server):
    req = echo_request(CLIENT_ADDR, NATIVE)
    assert feed(server, req + b"\x01\x04abcd") == []     # a trailer rides along
    (out,) = server.ipv6_to_native()
    assert out[7] == 127                                   # hop limit decremented
    assert out[:7] == req[:7] and out[8:] == req[8:]      # trailer stripped
    assert server.stats["forwarded_native"] == 1


def test_hop_limit_exhausted(server):
    feed(server, echo_request(CLIENT_ADDR, NATIVE, hop=1))
    assert only_drop(server) is DropReason.HOP_LIMIT


def test_bubbles_with_hop_limit_zero_are_forwarded(server):
    assert feed(server, bubble(CLIENT_ADDR, PEER_ADDR, hop_limit=0))


def test_icmpv6_over_88_bytes_is_not_forwarded(server):
    feed(server, echo_request(CLIENT_ADDR, NATIVE, size=81))   # 8 + 81 = 89
    assert only_drop(server) is DropReason.SERVER_ICMP_TOO_BIG
    feed(server, echo_request(CLIENT_ADDR, NATIVE, size=80))   # exactly 88
    assert server.ipv6_to_native()


@pytest.mark.parametrize("dst", [
    bytes.fromhex("fe800000000000000000000000000001"),
    bytes.fromhex("ff050000000000000000000000000001"),
    bytes(15) + b"\x01",
    bytes(16),
])
def test_non_global_destination(server, dst):
    feed(server, echo_request(CLIENT_ADDR, dst))
    assert only_drop(server) is DropReason.SERVER_DEST_NOT_GLOBAL


def test_teredo_destination_with_non_global_mapping(server):
    private = TeredoAddress("198.51.100.1", 0, 1, "10.0.0.1").emit()
    feed(server, bubble(CLIENT_ADDR, private))
    assert only_drop(server) is DropReason.SERVER_TEREDO_DEST_NOT_GLOBAL


def test_trailers_are_kept_on_teredo_forwarding(server):
    (data, _, _), = feed(server, bubble(CLIENT_ADDR, PEER_ADDR) + b"\x01\x04\x00\x00\x00\x01")
    assert TeredoPacket.parse(data).trailer == b"\x01\x04\x00\x00\x00\x01"


def test_native_forwarding_disabled():
    s = TeredoServer(config(forward_native=False))
    feed(s, echo_request(CLIENT_ADDR, NATIVE))
    assert only_drop(s) is DropReason.SERVER_NO_NATIVE


def test_native_forwarding_rate_limit():
    s = TeredoServer(config(native_rate=10.0, native_burst=2))
    for _ in range(3):
        feed(s, echo_request(CLIENT_ADDR, NATIVE), now=5.0)
    assert len(s.ipv6_to_native()) == 2
    assert s.drops[DropReason.SERVER_RATE_LIMITED] == 1


def test_timer_shape(server):
    assert server.poll_at() is None
    server.handle_timer(123.0)


# -- never raises, always accounts ---------------------------------------------------------

ADDRS = st.tuples(
    st.sampled_from(["198.51.100.20", "10.0.0.1", "198.51.100.1", "198.51.100.2", "203.0.113.5"]),
    st.integers(0, 65535),
)


def _accounted(server) -> int:
    return sum(server.drops.values()) + sum(server.stats.values())


@given(st.binary(max_size=160), ADDRS, st.sampled_from([PRIMARY, SECONDARY]))
def test_any_bytes_are_handled_or_dropped_with_a_reason(data, addr, local):
    s = TeredoServer(config())
    s.datagram_received(data, local, addr, 0.0)
    assert _accounted(s) >= 1


ADDR16 = st.sampled_from([CLIENT_ADDR, PEER_ADDR, OTHER_SERVER_PEER, NATIVE, RELAY_LL, ALL_ROUTERS,
                          LINK_LOCAL_CONE, server_link_local(PRIMARY[0]), bytes(16)])


@given(ADDR16, ADDR16, st.sampled_from([58, 59, 17, 6, 0]), st.binary(max_size=100), st.integers(0, 255),
       ADDRS, st.booleans(), st.binary(max_size=12))
def test_structured_packets_never_raise(src, dst, nh, payload, hop, addr, with_auth, trailer):
    s = TeredoServer(config())
    pkt = ipv6_packet(src, dst, nh, payload, hop)
    head = Authentication(NONCE).emit() if with_auth else b""
    s.datagram_received(head + pkt + trailer, PRIMARY, addr, 0.0)
    out = s.datagrams_to_send()
    assert _accounted(s) >= 1
    for data, local, remote in out:
        assert local in (PRIMARY, SECONDARY)
        TeredoPacket.parse(data)  # everything we emit parses


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        config().mtu = 1500  # type: ignore[misc]


def test_accepted_packet_to_all_routers_that_is_not_an_rs(server):
    icmp = Echo(True, 1, 1).emit(CLIENT_ADDR, ALL_ROUTERS)
    feed(server, ipv6_packet(CLIENT_ADDR, ALL_ROUTERS, 58, icmp, 255))  # case 5 accepts it
    assert only_drop(server) is DropReason.SERVER_LOCAL_NOT_RS


@given(st.binary(min_size=8, max_size=8), st.booleans(), st.sampled_from([PRIMARY, SECONDARY]), ADDRS,
       st.integers(0, 3))
def test_fast_rs_path_has_the_general_paths_outcome(nonce, cone, local, addr, corrupt):
    data = bytearray(router_solicitation(nonce, cone=cone))
    if corrupt:
        data[-corrupt] ^= 0x40   # a damaged RS must also end the same way
    results = []
    for fast in (True, False):
        s = TeredoServer(config())
        s.fast_rs = fast
        s.datagram_received(bytes(data), local, addr, 0.0)
        results.append((s.datagrams_to_send(), dict(s.drops), dict(s.stats)))
    assert results[0] == results[1]
