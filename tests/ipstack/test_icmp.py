"""ICMPv6 policy: RFC 4443 §2.4(e) suppression, token bucket, error kinds, PMTU."""

from __future__ import annotations

import pytest

from proxy.ipstack.icmp import PmtuCache, TokenBucket, build_error, error_forbidden, error_kind
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.testing.packets import addr, echo_request, icmp_message, ipv6, options_header, parse, udp_packet

A = addr("2001:db8::1")
B = addr("2001:db8::2")
ALL_NODES = addr("ff02::1")


def test_error_allowed_for_plain_udp():
    assert not error_forbidden(udp_packet(A, B, 1, 2, b"x"), to_multicast=False)


def test_no_error_about_an_error():  # RFC 4443 §2.4(e.1)
    err = icmp_message(A, B, 1, 4, 0, udp_packet(B, A, 1, 2, b"x"))
    assert error_forbidden(err, to_multicast=False)
    assert error_forbidden(err, to_multicast=True)


def test_no_error_about_an_error_behind_extension_headers():
    msg = icmp_message(A, B, 3, 0, 0, b"")[40:]
    p = ipv6(A, B, NextHeader.DESTINATION_OPTIONS, options_header(NextHeader.ICMPV6, b"") + msg)
    assert error_forbidden(p, to_multicast=False)


def test_no_error_about_a_redirect():  # (e.2)
    assert error_forbidden(icmp_message(A, B, 137, 0, 0, bytes(32)), to_multicast=False)


def test_error_about_an_echo_request_is_allowed():
    assert not error_forbidden(echo_request(A, B, 1, 1), to_multicast=False)


def test_multicast_destination_only_for_the_exceptions():  # (e.3)
    p = udp_packet(A, ALL_NODES, 1, 2, b"")
    assert error_forbidden(p, to_multicast=False)
    assert not error_forbidden(p, to_multicast=True)


@pytest.mark.parametrize("src", [bytes(16), ALL_NODES])
def test_source_must_name_one_node(src):  # (e.6)
    assert error_forbidden(udp_packet(src, B, 1, 2, b""), to_multicast=True)


def test_token_bucket():
    b = TokenBucket(rate=10.0, burst=3)
    assert [b.consume(0.0) for _ in range(4)] == [True, True, True, False]
    assert not b.consume(0.05)
    assert b.consume(0.1)
    assert not b.consume(0.1)
    assert [b.consume(100.0) for _ in range(4)] == [True, True, True, False]
    assert not b.consume(50.0)  # time going backwards adds nothing


@pytest.mark.parametrize(
    "typ,code,param,kind",
    [
        (1, 0, 0, "unreachable-net"),
        (1, 1, 0, "admin-prohibited"),
        (1, 3, 0, "unreachable-host"),
        (1, 4, 0, "unreachable-port"),
        (1, 5, 0, "admin-prohibited"),
        (1, 6, 0, "admin-prohibited"),
        (1, 99, 0, "unreachable-host"),
        (2, 0, 1400, "packet-too-big:1400"),
        (2, 0, 576, "packet-too-big:1280"),
        (3, 0, 0, "time-exceeded"),
        (3, 1, 0, "time-exceeded"),
        (4, 1, 6, "unreachable-port"),
        (4, 0, 4, "parameter-problem"),
        (128, 0, 0, None),
    ],
)
def test_error_kind(typ, code, param, kind):
    assert error_kind(typ, code, param) == kind


def test_build_error_fits_1280_and_checksums():
    big = udp_packet(A, B, 1, 2, bytes(3000))
    p = parse(build_error(1, 4, 0, big, B, A, 64))
    assert len(p.raw) == 1280
    assert (p.src, p.dst, p.protocol, p.icmp_type, p.icmp_code) == (B, A, 58, 1, 4)
    assert p.icmp_body == big[:1232]
    assert p.checksum_ok()


def test_pmtu_cache_floor_no_raise_and_aging():
    c = PmtuCache(1500, size=2, aging=600.0)
    assert c.get(B, 0.0) == 1500
    assert c.update(B, 1400, 0.0) == 1400
    assert c.update(B, 1450, 1.0) is None  # a PTB never raises the estimate
    assert c.update(B, 500, 2.0) == 1280  # RFC 8201 §4 floor
    assert c.get(B, 2.0) == 1280
    assert c.update(B, 1000, 3.0) is None
    assert c.get(B, 602.0) == 1500  # aged out
    for i in range(5):
        c.update(addr(f"2001:db8::{i + 10}"), 1300, 0.0)
    assert len(c) == 2


def test_pmtu_cache_at_1280_link():
    c = PmtuCache(1280)
    assert c.update(B, 1200, 0.0) is None
    with pytest.raises(ValueError):
        PmtuCache(1000)
