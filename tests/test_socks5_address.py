"""SOCKS5 address codec (proxy/socks5_address.py): golden bytes, names, round trips."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import DropReason, ParseError
from proxy.socks5_address import UNSPECIFIED, Address, AddressType, decode_domain, parse_address


@pytest.mark.parametrize(("address", "wire"), [
    (Address(AddressType.IPV4, "192.0.2.1", 80), b"\x01\xc0\x00\x02\x01\x00\x50"),
    (Address(AddressType.IPV6, "2001:db8::1", 443),
     b"\x04" + bytes.fromhex("20010db8000000000000000000000001") + b"\x01\xbb"),
    (Address(AddressType.DOMAIN, "example.org", 8080), b"\x03\x0bexample.org\x1f\x90"),
    (UNSPECIFIED, b"\x01" + bytes(6)),
])
def test_golden(address, wire):
    assert address.emit() == wire
    assert address.buffer_len() == len(wire)
    assert parse_address(b"junk" + wire + b"tail", 4) == (address, 4 + len(wire))


@pytest.mark.parametrize("wire", [
    b"\x01\xc0\x00\x02\x01\x00\x50",
    b"\x04" + bytes(16) + b"\x00\x01",
    b"\x03\x0bexample.org\x1f\x90",
])
def test_every_prefix_needs_data(wire):
    for n in range(len(wire)):
        assert parse_address(wire[:n], 0) is None


def test_unknown_atyp_is_known_from_one_byte():
    with pytest.raises(ParseError) as e:
        parse_address(b"\x02", 0)
    assert e.value.reason == DropReason.SOCKS_BAD_ADDRESS_TYPE


@pytest.mark.parametrize(("text", "expected"), [
    ("example.com", "example.com"),
    ("Example.COM.", "Example.COM."),
    ("_srv._tcp.example", "_srv._tcp.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
])
def test_decode_domain(text, expected):
    assert decode_domain(text.encode()) == expected


@pytest.mark.parametrize(("text", "atyp", "host"), [
    ("10.0.0.1", AddressType.IPV4, "10.0.0.1"),
    ("::1", AddressType.IPV6, "::1"),
    ("[2001:DB8::1]", AddressType.IPV6, "2001:db8::1"),
    ("::ffff:192.0.2.1", AddressType.IPV4, "192.0.2.1"),
])
def test_ip_literal_names_become_addresses(text, atyp, host):
    got = decode_domain(text.encode())
    assert isinstance(got, Address) and (got.atyp, got.host) == (atyp, host)


@pytest.mark.parametrize("raw", [
    b"", b".", b"a..b", b"a" * 64, b"a b", b"a/b", b"a\x00", b"\xff\xfe", b"fe80::1%eth0",
    ("a" * 60 + ".").encode() * 5,  # 305 > 253
    ("ü" * 70).encode(),  # IDNA refuses: label too long
    "\x00ü".encode(),  # IDNA encodes it, but the A-label holds a NUL
])
def test_bad_domains(raw):
    with pytest.raises(ParseError) as e:
        decode_domain(raw)
    assert e.value.reason == DropReason.SOCKS_BAD_DOMAIN


@given(st.binary(max_size=300))
def test_decode_domain_only_raises_parse_error(raw):
    try:
        result = decode_domain(raw)
    except ParseError as e:
        assert e.reason == DropReason.SOCKS_BAD_DOMAIN
    else:
        if isinstance(result, str):
            assert result.isascii() and 0 < len(result.rstrip(".")) <= 253


@given(st.binary(max_size=300), st.integers(0, 10))
def test_parse_address_only_raises_parse_error(buf, offset):
    try:
        parse_address(buf, offset)
    except ParseError as e:
        assert e.reason in (DropReason.SOCKS_BAD_ADDRESS_TYPE, DropReason.SOCKS_BAD_DOMAIN)


_ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None))
_names = st.from_regex(r"\A[a-z0-9_-]{1,20}(\.[a-z0-9_-]{1,20}){0,4}\Z").filter(
    lambda s: not _is_ip(s))


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


@given(st.one_of(_ips.map(str), _names), st.integers(0, 65535))
def test_round_trip(host, port):
    a = Address.from_host(host, port)
    assert parse_address(a.emit(), 0) == (a, a.buffer_len())


def test_from_sockaddr_unmaps_and_drops_scope():
    assert Address.from_sockaddr(("::ffff:127.0.0.1", 5, 0, 0)) == Address(AddressType.IPV4, "127.0.0.1", 5)
    assert Address.from_sockaddr(("::1", 5, 0, 0)) == Address(AddressType.IPV6, "::1", 5)
    assert Address.from_sockaddr(("fe80::1%eth0", 5, 0, 2)) == Address(AddressType.IPV6, "fe80::1", 5)


def test_misuse_raises_value_error():
    with pytest.raises(ValueError):
        Address(AddressType.IPV4, "1.2.3.4", 70000)
    with pytest.raises(ValueError):
        Address.from_host("not a host", 1)


def test_str():
    assert str(Address.from_host("::1", 80)) == "[::1]:80"
    assert str(Address.from_host("example.com", 80)) == "example.com:80"
