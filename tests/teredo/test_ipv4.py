"""The explicit global-unicast table (RFC 4380 §5.2.4, Miredo v4global.c)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, strategies as st

from proxy.teredo.ipv4 import NON_GLOBAL, ipv4_from_bytes, ipv4_to_bytes, is_global_unicast


@pytest.mark.parametrize("addr", [
    "192.0.2.1", "198.51.100.1", "203.0.113.9",  # documentation ranges: global, as in Miredo
    "8.8.8.8", "65.54.227.120", "1.0.0.1", "223.255.255.254",
])
def test_global(addr):
    assert is_global_unicast(addr)
    assert is_global_unicast(ipv4_to_bytes(addr))


@pytest.mark.parametrize("addr", [
    "0.1.2.3", "10.0.0.1", "127.0.0.1", "169.254.1.1", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "192.88.99.1", "224.0.0.253", "239.1.1.1", "255.255.255.255",
    "100.64.0.1", "192.0.0.8", "198.18.0.1", "240.0.0.1",
])
def test_not_global(addr):
    assert not is_global_unicast(addr)


@pytest.mark.parametrize("bad", ["", "1.2.3", "1.2.3.4.5", "300.1.1.1", "a.b.c.d", b"\1\2\3", -1, 2**32])
def test_malformed_is_not_global(bad):
    assert not is_global_unicast(bad)


@given(st.integers(0, 2**32 - 1))
def test_table_agrees_with_ipaddress(value):
    nets = [ipaddress.ip_network(c) for c, _ in NON_GLOBAL]
    assert is_global_unicast(value) == (not any(ipaddress.ip_address(value) in n for n in nets))


@given(st.binary(min_size=4, max_size=4))
def test_round_trip(raw):
    assert ipv4_to_bytes(ipv4_from_bytes(raw)) == raw


def test_to_bytes_refuses_short_forms():
    with pytest.raises(ValueError):
        ipv4_to_bytes("127.1")
