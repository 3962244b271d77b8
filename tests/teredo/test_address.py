"""Teredo addresses (RFC 4380 §4, RFC 5991 §4): golden vectors and round trips."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from proxy.errors import ParseError
from proxy.teredo.address import (
    TeredoAddress, is_teredo, mapped_endpoint, server_ipv4, server_link_local,
)


def test_widely_cited_example():
    # 2001:0:4136:e378:8000:63bf:3fff:fdd2 (RFC 4380 era example, Wikipedia)
    a = TeredoAddress.parse("2001:0:4136:e378:8000:63bf:3fff:fdd2")
    assert a.server == "65.54.227.120"      # 0x4136e378
    assert a.flags == 0x8000 and a.cone
    assert a.port == 0x63BF ^ 0xFFFF == 40000
    assert a.client == "192.0.2.45"          # 0x3ffffdd2 ^ 0xffffffff = c000022d
    assert a.random_bits == 0
    assert str(a) == "2001:0:4136:e378:8000:63bf:3fff:fdd2"


def test_agrees_with_stdlib_teredo_property():
    text = "2001:0:4136:e378:8000:63bf:3fff:fdd2"
    server, client = ipaddress.IPv6Address(text).teredo
    a = TeredoAddress.parse(text)
    assert (a.server, a.client) == (str(server), str(client))


def test_random_bits_mask():
    a = TeredoAddress("192.0.2.1", 0xFFFF, 1, "198.51.100.20")
    assert a.random_bits == 0x3CFF


def test_fast_helpers_agree():
    raw = TeredoAddress("198.51.100.1", 0x0A3A, 45000, "198.51.100.20").emit()
    assert is_teredo(raw)
    assert mapped_endpoint(raw) == ("198.51.100.20", 45000)
    assert server_ipv4(raw) == "198.51.100.1"
    assert not is_teredo(bytes.fromhex("20010db8000000000000000000000100"))


def test_other_prefix():
    with pytest.raises(ParseError):
        TeredoAddress.parse("2001:db8::1")
    a = TeredoAddress.parse("3ffe:831f:4136:e378:8000:63bf:3fff:fdd2", prefix=None)
    assert a.prefix == 0x3FFE831F


def test_server_link_local():
    # Miredo's form for server 192.0.2.1 (reference notes §8)
    assert str(ipaddress.IPv6Address(server_link_local("192.0.2.1"))) == "fe80::8000:f227:3fff:fdfe"


ipv4s = st.builds(lambda b: str(ipaddress.IPv4Address(b)), st.integers(0, 2**32 - 1))


@given(ipv4s, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), ipv4s)
def test_round_trip(server, flags, port, client):
    a = TeredoAddress(server, flags, port, client)
    raw = a.emit()
    assert len(raw) == 16
    assert TeredoAddress.parse(raw) == a
    assert TeredoAddress.parse(str(a)) == a
