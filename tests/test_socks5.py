"""The sans-I/O SOCKS5 handshake codec (proxy/socks5.py).

Stream parsing is checked h11-style: each message is fed whole, one byte at
a time (NEED_DATA until the last byte) and with trailing bytes (left for the
next stage).  Every malformed input has a row saying which reply it gets;
hypothesis checks that no byte string makes the codec raise.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import DropReason
from proxy.socks5 import (
    NEED_DATA,
    PAUSED,
    Address,
    AddressType,
    AuthRequest,
    AuthResult,
    BindRequest,
    ConnectionClosed,
    ConnectRequest,
    Greeting,
    Method,
    MethodSelected,
    Rejected,
    Rep,
    Reply,
    Request,
    Socks5Connection,
    Socks5LocalError,
    State,
    UdpAssociateRequest,
    bind_peer_allowed,
    credentials_ok,
    select_method,
)

GREETING = b"\x05\x02\x00\x02"
AUTH = b"\x01\x05alice\x06secret"
CONNECT_V4 = b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"
CONNECT_V6 = b"\x05\x01\x00\x04" + bytes(15) + b"\x01" + b"\x1f\x90"
CONNECT_NAME = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"
BIND_V4 = b"\x05\x02\x00\x01\xc0\x00\x02\x01\x00\x15"
UDP_ZERO = b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"


def at(state: State, *, auth: bool = False) -> Socks5Connection:
    """A codec advanced to ``state`` by a well-behaved client."""
    c = Socks5Connection()
    if state == State.GREETING:
        return c
    c.receive_data(GREETING)
    assert isinstance(c.next_event(), Greeting)
    if state == State.METHOD:
        return c
    if auth:
        c.send(MethodSelected(Method.USERNAME_PASSWORD))
        if state == State.AUTH:
            return c
        c.receive_data(AUTH)
        assert isinstance(c.next_event(), AuthRequest)
        if state == State.AUTH_RESULT:
            return c
        c.send(AuthResult(True))
    else:
        c.send(MethodSelected(Method.NO_AUTH))
    assert c.state == State.REQUEST
    return c


def feed_three_ways(state: State, data: bytes, expected: object, *, auth: bool = False) -> None:
    """h11's tr(): whole, byte by byte, and with trailing bytes left over."""
    c = at(state, auth=auth)
    c.receive_data(data)
    assert c.next_event() == expected

    c = at(state, auth=auth)
    for i, byte in enumerate(data):
        c.receive_data(bytes([byte]))
        event = c.next_event()
        if i < len(data) - 1:
            assert event is NEED_DATA, (i, event)
    assert event == expected

    c = at(state, auth=auth)
    c.receive_data(data + b"TRAILING")
    assert c.next_event() == expected
    assert c.take_trailing_data() == b"TRAILING"


# --- well-formed messages ------------------------------------------------------


def test_greeting_three_ways():
    feed_three_ways(State.GREETING, GREETING, Greeting((0, 2)))


def test_auth_request_three_ways():
    feed_three_ways(State.AUTH, AUTH, AuthRequest(b"alice", b"secret"), auth=True)


def test_auth_request_hides_password_in_repr():
    assert "secret" not in repr(AuthRequest(b"alice", b"secret"))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (CONNECT_V4, ConnectRequest(Address(AddressType.IPV4, "127.0.0.1", 80))),
        (CONNECT_V6, ConnectRequest(Address(AddressType.IPV6, "::1", 8080))),
        (CONNECT_NAME, ConnectRequest(Address(AddressType.DOMAIN, "example.com", 443))),
        (BIND_V4, BindRequest(Address(AddressType.IPV4, "192.0.2.1", 21))),
        (UDP_ZERO, UdpAssociateRequest(Address(AddressType.IPV4, "0.0.0.0", 0))),
    ],
)
def test_requests_three_ways(data, expected):
    feed_three_ways(State.REQUEST, data, expected)


def test_pipelined_greeting_and_request():
    """A client may send greeting and request at once (RFC 1928 allows no-wait)."""
    c = Socks5Connection()
    c.receive_data(GREETING + CONNECT_NAME + b"GET /")
    assert c.next_event() == Greeting((0, 2))
    assert c.next_event() is PAUSED  # we owe the method first
    c.send(MethodSelected(Method.NO_AUTH))
    assert isinstance(c.next_event(), ConnectRequest)
    c.send(Reply(Rep.SUCCEEDED, Address.from_host("::1", 1)))
    assert c.state == State.ESTABLISHED
    assert c.take_trailing_data() == b"GET /"


def test_eof_after_request_is_kept_for_the_relay():
    c = at(State.REQUEST)
    c.receive_data(CONNECT_V4 + b"x")
    c.receive_data(b"")
    assert isinstance(c.next_event(), ConnectRequest)
    assert c.client_eof


# --- golden bytes of what the server sends -------------------------------------


def test_server_messages_golden():
    c = at(State.METHOD)
    assert c.send(MethodSelected(Method.USERNAME_PASSWORD)) == b"\x05\x02"
    c.receive_data(AUTH)
    c.next_event()
    assert c.send(AuthResult(True)) == b"\x01\x00"
    c.receive_data(CONNECT_V4)
    c.next_event()
    reply = c.send(Reply(Rep.SUCCEEDED, Address.from_host("10.1.2.3", 0x1234)))
    assert reply == b"\x05\x00\x00\x01\x0a\x01\x02\x03\x12\x34"


def test_failure_reply_golden():
    c = at(State.REQUEST)
    c.receive_data(CONNECT_V4)
    c.next_event()
    assert c.send(Reply(Rep.CONNECTION_REFUSED)) == b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"
    assert c.state == State.CLOSED


def test_ipv6_reply_golden():
    r = Reply(Rep.SUCCEEDED, Address.from_host("2001:db8::5", 1080)).emit()
    assert r == b"\x05\x00\x00\x04" + bytes.fromhex("20010db8000000000000000000000005") + b"\x04\x38"


def test_bind_sends_two_replies():
    c = at(State.REQUEST)
    c.receive_data(BIND_V4)
    assert isinstance(c.next_event(), BindRequest)
    c.send(Reply(Rep.SUCCEEDED, Address.from_host("192.0.2.9", 4000)))
    assert c.state == State.BIND_PEER
    c.send(Reply(Rep.SUCCEEDED, Address.from_host("192.0.2.1", 20)))
    assert c.state == State.ESTABLISHED


def test_bind_second_reply_may_fail():
    c = at(State.REQUEST)
    c.receive_data(BIND_V4)
    c.next_event()
    c.send(Reply(Rep.SUCCEEDED, Address.from_host("192.0.2.9", 4000)))
    c.send(Reply(Rep.HOST_UNREACHABLE))
    assert c.state == State.CLOSED


@pytest.mark.parametrize(("event", "state"), [
    (MethodSelected(Method.NO_ACCEPTABLE), State.CLOSED),
    (MethodSelected(Method.NO_AUTH), State.REQUEST),
    (MethodSelected(Method.USERNAME_PASSWORD), State.AUTH),
])
def test_method_transitions(event, state):
    c = at(State.METHOD)
    c.send(event)
    assert c.state == state


def test_auth_denied_closes():
    c = at(State.AUTH_RESULT, auth=True)
    assert c.send(AuthResult(False)) == b"\x01\x01"
    assert c.state == State.CLOSED
    assert c.next_event() is PAUSED


# --- malformed input: the reply each case gets --------------------------------

_FAIL = {rep: bytes((5, rep, 0, 1)) + bytes(6) for rep in Rep}

MALFORMED = [
    # (description, state, bytes, reason, reply bytes)
    ("SOCKS4 greeting", State.GREETING, b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00",
     DropReason.SOCKS_BAD_VERSION, b"\x00\x5b" + bytes(6)),
    ("HTTP on the SOCKS port", State.GREETING, b"GET / HTTP/1.1\r\n", DropReason.SOCKS_BAD_VERSION, b""),
    ("no methods", State.GREETING, b"\x05\x00", DropReason.SOCKS_NO_ACCEPTABLE_METHOD, b"\x05\xff"),
    ("auth version 5", State.AUTH, b"\x05\x01a\x01b", DropReason.SOCKS_BAD_AUTH_VERSION, b"\x01\x01"),
    ("request version 4", State.REQUEST, b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
     DropReason.SOCKS_BAD_VERSION, _FAIL[Rep.GENERAL_FAILURE]),
    ("command 0", State.REQUEST, b"\x05\x00\x00\x01", DropReason.SOCKS_BAD_COMMAND, _FAIL[Rep.COMMAND_NOT_SUPPORTED]),
    ("command 9", State.REQUEST, b"\x05\x09", DropReason.SOCKS_BAD_COMMAND, _FAIL[Rep.COMMAND_NOT_SUPPORTED]),
    ("ATYP 2", State.REQUEST, b"\x05\x01\x00\x02", DropReason.SOCKS_BAD_ADDRESS_TYPE,
     _FAIL[Rep.ADDRESS_TYPE_NOT_SUPPORTED]),
    ("ATYP 0xff", State.REQUEST, b"\x05\x01\x00\xff", DropReason.SOCKS_BAD_ADDRESS_TYPE,
     _FAIL[Rep.ADDRESS_TYPE_NOT_SUPPORTED]),
    ("empty domain", State.REQUEST, b"\x05\x01\x00\x03\x00\x00\x50", DropReason.SOCKS_BAD_DOMAIN,
     _FAIL[Rep.HOST_UNREACHABLE]),
    ("domain with NUL", State.REQUEST, b"\x05\x01\x00\x03\x04a\x00b.\x00\x50", DropReason.SOCKS_BAD_DOMAIN,
     _FAIL[Rep.HOST_UNREACHABLE]),
    ("domain with space", State.REQUEST, b"\x05\x01\x00\x03\x03a b\x00\x50", DropReason.SOCKS_BAD_DOMAIN,
     _FAIL[Rep.HOST_UNREACHABLE]),
    ("domain not UTF-8", State.REQUEST, b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50", DropReason.SOCKS_BAD_DOMAIN,
     _FAIL[Rep.HOST_UNREACHABLE]),
    ("empty label", State.REQUEST, b"\x05\x01\x00\x03\x04a..b\x00\x50", DropReason.SOCKS_BAD_DOMAIN,
     _FAIL[Rep.HOST_UNREACHABLE]),
    ("label of 64", State.REQUEST, b"\x05\x01\x00\x03\x40" + b"a" * 64 + b"\x00\x50", DropReason.SOCKS_BAD_DOMAIN,
     _FAIL[Rep.HOST_UNREACHABLE]),
    ("scoped IPv6 literal", State.REQUEST, b"\x05\x01\x00\x03\x0bfe80::1%eth\x00\x50", DropReason.SOCKS_BAD_DOMAIN,
     _FAIL[Rep.HOST_UNREACHABLE]),
]


@pytest.mark.parametrize(("description", "state", "data", "reason", "reply"), MALFORMED,
                         ids=[row[0] for row in MALFORMED])
def test_malformed(description, state, data, reason, reply):
    c = at(state, auth=state == State.AUTH)
    c.receive_data(data)
    event = c.next_event()
    assert isinstance(event, Rejected), description
    assert (event.reason, event.reply) == (reason, reply)
    assert c.state == State.CLOSED
    assert c.next_event() is PAUSED
    assert c.take_trailing_data() == b""


def test_rejected_carries_rep():
    c = at(State.REQUEST)
    c.receive_data(b"\x05\x01\x00\x02")
    event = c.next_event()
    assert isinstance(event, Rejected) and event.rep == Rep.ADDRESS_TYPE_NOT_SUPPORTED


def test_unknown_command_is_answered_without_waiting_for_the_address():
    c = at(State.REQUEST)
    c.receive_data(b"\x05\x07")
    assert isinstance(c.next_event(), Rejected)


@pytest.mark.parametrize("state", [State.GREETING, State.AUTH, State.REQUEST])
@pytest.mark.parametrize("partial", [b"", b"\x05"])
def test_eof_mid_handshake(state, partial):
    c = at(state, auth=state == State.AUTH)
    if state == State.AUTH and partial:
        partial = b"\x01"
    c.receive_data(partial)
    c.receive_data(b"")
    assert c.next_event() == ConnectionClosed(DropReason.SOCKS_HANDSHAKE_EOF)
    assert c.state == State.CLOSED


def test_buffer_is_bounded():
    c = Socks5Connection(max_buffer=1024)
    c.receive_data(GREETING)
    c.receive_data(b"x" * 2000)
    event = c.next_event()
    assert isinstance(event, Rejected) and event.reason == DropReason.SOCKS_HANDSHAKE_OVERFLOW
    assert event.reply == b""


def test_reserved_byte_is_read_past():
    c = at(State.REQUEST)
    c.receive_data(b"\x05\x01\xff\x01\x7f\x00\x00\x01\x00\x50")
    assert isinstance(c.next_event(), ConnectRequest)


def test_ipv4_mapped_ipv6_request_becomes_ipv4():
    c = at(State.REQUEST)
    c.receive_data(b"\x05\x01\x00\x04" + bytes(10) + b"\xff\xff\x0a\x00\x00\x01\x00\x50")
    assert c.next_event() == ConnectRequest(Address(AddressType.IPV4, "10.0.0.1", 80))


def test_utf8_domain_becomes_a_label():
    name = "bücher.example".encode()
    c = at(State.REQUEST)
    c.receive_data(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x00\x50")
    assert c.next_event() == ConnectRequest(Address(AddressType.DOMAIN, "xn--bcher-kva.example", 80))


def test_ip_literal_domain_becomes_ip_address():
    c = at(State.REQUEST)
    c.receive_data(b"\x05\x01\x00\x03\x05[::1]\x00\x50")
    assert c.next_event() == ConnectRequest(Address(AddressType.IPV6, "::1", 80))


# --- driver misuse raises ----------------------------------------------------------


def test_send_out_of_turn_raises():
    c = Socks5Connection()
    with pytest.raises(Socks5LocalError):
        c.send(Reply(Rep.SUCCEEDED))


def test_method_not_offered_raises():
    c = Socks5Connection()
    c.receive_data(b"\x05\x01\x00")
    c.next_event()
    with pytest.raises(Socks5LocalError):
        c.send(MethodSelected(Method.USERNAME_PASSWORD))


def test_gssapi_is_not_implemented():
    c = Socks5Connection()
    c.receive_data(b"\x05\x01\x01")
    c.next_event()
    with pytest.raises(Socks5LocalError):
        c.send(MethodSelected(Method.GSSAPI))


# --- hypothesis: no byte string makes the codec raise ----------------------------


def drive(chunks: list[bytes], auth: bool, success: bool) -> list[object]:
    """A server that answers every event correctly; returns the events seen."""
    c = Socks5Connection(max_buffer=2048)
    users = {"alice": "secret"}
    seen: list[object] = []
    for chunk in chunks + [b""]:
        c.receive_data(chunk)
        while True:
            event = c.next_event()
            seen.append(event)
            if event is NEED_DATA or event is PAUSED:
                break
            if isinstance(event, Greeting):
                c.send(MethodSelected(select_method(event.methods, auth)))
            elif isinstance(event, AuthRequest):
                c.send(AuthResult(credentials_ok(users, event.username, event.password)))
            elif isinstance(event, Request):
                bound = Address.from_host("192.0.2.7", 9)
                c.send(Reply(Rep.SUCCEEDED if success else Rep.HOST_UNREACHABLE, bound))
                if c.state == State.BIND_PEER:
                    c.send(Reply(Rep.SUCCEEDED, bound))
            else:
                assert isinstance(event, (Rejected, ConnectionClosed))
        assert len(c._buf) <= 2048
        if c.state in (State.CLOSED, State.ESTABLISHED):
            break
    return seen


@given(st.binary(max_size=600), st.booleans(), st.booleans())
def test_never_raises_whole(data, auth, success):
    drive([data], auth, success)


@given(st.lists(st.binary(max_size=40), max_size=30), st.booleans(), st.booleans())
def test_never_raises_chunked(chunks, auth, success):
    drive(chunks, auth, success)


@given(st.binary(max_size=300), st.booleans())
def test_never_raises_with_valid_prefix(tail, auth):
    """Valid greeting (and auth) then garbage: the request parser gets fuzzed too."""
    prefix = GREETING + (AUTH if auth else b"")
    drive([prefix + tail], auth, True)
    drive([bytes([b]) for b in prefix + tail], auth, False)


# --- decisions ---------------------------------------------------------------------


@pytest.mark.parametrize(("offered", "auth", "method"), [
    ((0,), False, Method.NO_AUTH),
    ((0, 2), False, Method.NO_AUTH),
    ((2,), False, Method.NO_ACCEPTABLE),
    ((0, 2), True, Method.USERNAME_PASSWORD),
    ((0,), True, Method.NO_ACCEPTABLE),
    ((1, 0x80), False, Method.NO_ACCEPTABLE),
])
def test_select_method(offered, auth, method):
    assert select_method(offered, auth) == method


def test_credentials():
    users = {"alice": "secret", "bøb": "pä"}
    assert credentials_ok(users, b"alice", b"secret")
    assert credentials_ok(users, "bøb".encode(), "pä".encode())
    assert not credentials_ok(users, b"alice", b"Secret")
    assert not credentials_ok(users, b"mallory", b"secret")
    assert not credentials_ok(users, b"\xff", b"secret")
    assert not credentials_ok(None, b"alice", b"secret")
    assert not credentials_ok(users, b"alice", b"")


@pytest.mark.parametrize(("requested", "peer", "ok"), [
    ("192.0.2.1", "192.0.2.1", True),
    ("192.0.2.1", "192.0.2.2", False),
    ("0.0.0.0", "198.51.100.1", True),
    ("::", "2001:db8::1", True),
    ("2001:db8::1", "2001:db8::1", True),
    ("2001:db8::1", "2001:db8::2", False),
    ("ftp.example", "192.0.2.1", True),
])
def test_bind_peer_allowed(requested, peer, ok):
    assert bind_peer_allowed(Address.from_host(requested, 21), Address.from_host(peer, 20)) is ok
