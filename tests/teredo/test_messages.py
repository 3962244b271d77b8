"""Qualification RS/RA: Miredo's golden checksums, RA validity rules, dpkt decoding."""

from __future__ import annotations

import dataclasses

import dpkt
import pytest

from proxy.constants import LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.icmpv6 import icmpv6_checksum_ok
from proxy.ipstack.wire.ndisc import PrefixInformation, RouterAdvertisement
from proxy.teredo.address import server_link_local
from proxy.teredo.messages import parse_router_advertisement, router_advertisement, router_solicitation
from proxy.teredo.packet import TeredoPacket, ipv6_packet

NONCE = bytes.fromhex("0123456789abcdef")


@pytest.mark.parametrize("cone,cksum", [(False, 0x7D37), (True, 0x125D)])
def test_rs_matches_miredo(cone, cksum):
    rs = router_solicitation(NONCE, cone=cone)
    assert len(rs) == 61  # 13 (auth) + 40 (IPv6) + 8 (RS)
    assert rs[:13] == bytes.fromhex("00010000") + NONCE + b"\0"
    assert rs[13:21] == bytes.fromhex("60000000" "0008" "3a" "ff")
    assert int.from_bytes(rs[55:57], "big") == cksum
    ip = dpkt.ip6.IP6(rs[13:])
    assert ip.data.type == 133
    assert ip.src == (LINK_LOCAL_CONE if cone else LINK_LOCAL_RESTRICTED)


def make_ra(**kw):
    args = dict(server="198.51.100.1", server_link_local=server_link_local("198.51.100.1"),
                client_link_local=LINK_LOCAL_RESTRICTED, origin=("198.51.100.20", 40000), nonce=NONCE)
    args.update(kw)
    return router_advertisement(**args)


def test_ra_layout_matches_miredo():
    ra = make_ra()
    assert len(ra) == 117  # 13 + 8 + 40 + 16 + 32 + 8
    p = TeredoPacket.parse(ra)
    assert icmpv6_checksum_ok(p.src, p.dst, p.payload)
    ans = parse_router_advertisement(p)
    assert ans.server == "198.51.100.1" and ans.mapped == ("198.51.100.20", 40000)
    assert ans.mtu == 1280 and not ans.cone and ans.nonce == NONCE
    msg = RouterAdvertisement.parse(p.payload)
    assert msg.router_lifetime == 0 and msg.retrans_timer == 2000
    assert msg.prefixes[0].autonomous and msg.prefixes[0].valid_lifetime == 0xFFFFFFFF
    icmp = dpkt.ip6.IP6(bytes(p.ipv6)).data
    assert icmp.type == 134


def rebuild(ra_message: RouterAdvertisement, *, origin=True, dst=LINK_LOCAL_RESTRICTED, hop=255, corrupt=False):
    src = server_link_local("198.51.100.1")
    icmp = bytearray(ra_message.emit(src, dst))
    if corrupt:
        icmp[-1] ^= 1
    ip = ipv6_packet(src, dst, 58, bytes(icmp), hop)
    from proxy.teredo.packet import OriginIndication
    return TeredoPacket(ip, None, OriginIndication("198.51.100.20", 1) if origin else None)


GOOD = RouterAdvertisement(prefixes=(PrefixInformation(bytes.fromhex("20010000c6336401") + bytes(8)),), mtu=1280)


@pytest.mark.parametrize("name,packet", [
    ("no origin", rebuild(GOOD, origin=False)),
    ("hop limit", rebuild(GOOD, hop=64)),
    ("checksum", rebuild(GOOD, corrupt=True)),
    ("two prefixes", rebuild(dataclasses.replace(GOOD, prefixes=GOOD.prefixes * 2))),
    ("no prefix", rebuild(dataclasses.replace(GOOD, prefixes=()))),
    ("prefix /48", rebuild(dataclasses.replace(GOOD, prefixes=(dataclasses.replace(GOOD.prefixes[0], prefix_len=48),)))),
    ("mtu 1000", rebuild(dataclasses.replace(GOOD, mtu=1000))),
    ("wrong destination", rebuild(GOOD, dst=bytes.fromhex("fe80000000000000000000000000abcd"))),
])
def test_ra_validity_rules(name, packet):
    with pytest.raises(ParseError) as e:
        parse_router_advertisement(packet)
    assert e.value.reason is DropReason.BAD_RA


def test_obsolete_prefix_is_rewritten():
    ra = dataclasses.replace(GOOD, prefixes=(PrefixInformation(bytes.fromhex("3ffe831fc6336401") + bytes(8)),))
    assert parse_router_advertisement(rebuild(ra)).prefix == 0x20010000


from hypothesis import given, strategies as st  # noqa: E402

from proxy.teredo.messages import RouterAdvertisementTemplate, is_valid_router_solicitation  # noqa: E402
from proxy.teredo.packet import OriginIndication, origin_indication  # noqa: E402


@given(st.binary(min_size=16, max_size=16), st.none() | st.binary(min_size=8, max_size=8),
       st.sampled_from(["198.51.100.20", "1.2.3.4", "255.255.255.255"]), st.integers(0, 65535),
       st.sampled_from([1280, 1400, 65535]), st.sampled_from([0x20010000, 0x3FFE831F]))
def test_ra_template_is_byte_identical(dst, nonce, ip, port, mtu, prefix):
    ll = server_link_local("198.51.100.1")
    t = RouterAdvertisementTemplate(server="198.51.100.1", server_link_local=ll, mtu=mtu, prefix=prefix)
    assert origin_indication((ip, port)) == OriginIndication(ip, port).emit()
    assert t.build(dst, nonce, origin_indication((ip, port))) == router_advertisement(
        server="198.51.100.1", server_link_local=ll, client_link_local=dst, origin=(ip, port),
        nonce=nonce, mtu=mtu, prefix=prefix)


def test_rs_validity():
    from proxy.constants import ALL_ROUTERS
    for cone in (False, True):
        p = TeredoPacket.parse(router_solicitation(NONCE, cone=cone))
        assert is_valid_router_solicitation(p.src, p.dst, p.payload)
        bad = bytearray(p.payload)
        bad[4] = 1
        assert not is_valid_router_solicitation(p.src, p.dst, bytes(bad))
    other = bytes.fromhex("fe800000000000000000000000001234")
    from proxy.ipstack.wire.ndisc import RouterSolicitation
    assert is_valid_router_solicitation(other, ALL_ROUTERS, RouterSolicitation().emit(other, ALL_ROUTERS))
