"""RFC 1928 §7 UDP header codec and association rules (proxy/socks5_udp.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import DropReason, ParseError
from proxy.socks5_address import Address, AddressType
from proxy.socks5_udp import UdpAssociation, UdpDatagram

DNS_QUERY = b"\x00\x00\x00\x01\x08\x08\x08\x08\x00\x35" + b"query"


def test_golden_parse():
    d = UdpDatagram.parse(DNS_QUERY)
    assert d == UdpDatagram(Address(AddressType.IPV4, "8.8.8.8", 53), b"query")
    assert d.emit() == DNS_QUERY
    assert d.buffer_len() == len(DNS_QUERY)


def test_domain_destination():
    wire = b"\x00\x00\x00\x03\x0bexample.com\x00\x35payload"
    assert UdpDatagram.parse(wire).address == Address(AddressType.DOMAIN, "example.com", 53)


def test_empty_payload_is_valid():
    assert UdpDatagram.parse(b"\x00\x00\x00\x01\x01\x02\x03\x04\x00\x07").data == b""


@pytest.mark.parametrize(("wire", "reason"), [
    (b"", DropReason.SOCKS_UDP_TRUNCATED),
    (b"\x00\x00\x00", DropReason.SOCKS_UDP_TRUNCATED),
    (b"\x00\x00\x00\x01\x01\x02", DropReason.SOCKS_UDP_TRUNCATED),
    (b"\x00\x00\x01\x01\x08\x08\x08\x08\x00\x35x", DropReason.SOCKS_UDP_FRAGMENT),
    (b"\x00\x00\x81\x01\x08\x08\x08\x08\x00\x35x", DropReason.SOCKS_UDP_FRAGMENT),
    (b"\x00\x00\x00\x05\x08\x08\x08\x08\x00\x35x", DropReason.SOCKS_BAD_ADDRESS_TYPE),
    (b"\x00\x00\x00\x03\x00\x00\x35x", DropReason.SOCKS_BAD_DOMAIN),
])
def test_malformed(wire, reason):
    with pytest.raises(ParseError) as e:
        UdpDatagram.parse(wire)
    assert e.value.reason == reason


@given(st.binary(max_size=400))
def test_parse_only_raises_parse_error(wire):
    try:
        UdpDatagram.parse(wire)
    except ParseError:
        pass


# --- association rules --------------------------------------------------------------


def test_source_ip_must_match_the_control_connection():
    drops: Counter[DropReason] = Counter()
    a = UdpAssociation("127.0.0.1", Address.from_host("0.0.0.0", 0), drops)
    assert a.client_datagram(DNS_QUERY, ("127.0.0.2", 4000)) is None
    assert drops[DropReason.SOCKS_UDP_WRONG_SOURCE] == 1
    assert a.client_datagram(DNS_QUERY, ("127.0.0.1", 4000)) is not None


def test_first_valid_datagram_fixes_the_port():
    a = UdpAssociation("127.0.0.1", Address.from_host("0.0.0.0", 0))
    assert a.client_datagram(b"\x00\x00\x00", ("127.0.0.1", 4000)) is None  # does not fix the port
    assert a.client_datagram(DNS_QUERY, ("127.0.0.1", 4001)) is not None
    assert a.client_addr == ("127.0.0.1", 4001)
    assert a.client_datagram(DNS_QUERY, ("127.0.0.1", 4000)) is None
    assert a.drops == Counter({DropReason.SOCKS_UDP_TRUNCATED: 1, DropReason.SOCKS_UDP_WRONG_SOURCE: 1})


def test_requested_port_is_enforced_from_the_start():
    a = UdpAssociation("::1", Address.from_host("0.0.0.0", 5000))
    assert a.client_addr == ("::1", 5000)
    assert a.client_datagram(DNS_QUERY, ("::1", 5001, 0, 0)) is None
    assert a.client_datagram(DNS_QUERY, ("::1", 5000, 0, 0)) is not None


def test_ipv4_mapped_source_matches_ipv4_client():
    a = UdpAssociation("127.0.0.1", Address.from_host("0.0.0.0", 0))
    assert a.client_datagram(DNS_QUERY, ("::ffff:127.0.0.1", 7, 0, 0)) is not None


def test_fragment_is_dropped_and_counted():
    a = UdpAssociation("127.0.0.1", Address.from_host("0.0.0.0", 0))
    frag = b"\x00\x00\x01" + DNS_QUERY[3:]
    assert a.client_datagram(frag, ("127.0.0.1", 9)) is None
    assert a.drops[DropReason.SOCKS_UDP_FRAGMENT] == 1


def test_target_datagrams_wait_for_a_client_address():
    a = UdpAssociation("127.0.0.1", Address.from_host("0.0.0.0", 0))
    src = Address.from_host("192.0.2.53", 53)
    assert a.target_datagram(b"answer", src) is None
    assert a.drops[DropReason.SOCKS_UDP_NO_CLIENT] == 1
    a.client_datagram(DNS_QUERY, ("127.0.0.1", 4000))
    data, dest = a.target_datagram(b"answer", src)
    assert dest == ("127.0.0.1", 4000)
    assert data == b"\x00\x00\x00\x01\xc0\x00\x02\x35\x00\x35answer"


@given(st.binary(max_size=200), st.sampled_from(["127.0.0.1", "10.0.0.1", "::1", "not-an-ip"]),
       st.integers(0, 65535))
def test_client_datagram_never_raises(data, host, port):
    a = UdpAssociation("127.0.0.1", Address.from_host("0.0.0.0", 0))
    a.client_datagram(data, (host, port))
