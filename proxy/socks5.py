"""Sans-I/O SOCKS5 server handshake (RFC 1928, RFC 1929 username/password).

Theory of operation
-------------------

:class:`Socks5Connection` is the server side of one client connection, in
h11's shape: bytes from the client go in with :meth:`~Socks5Connection.receive_data`,
parsed client messages come out of :meth:`~Socks5Connection.next_event`, and
the server's answers are events turned into bytes by :meth:`~Socks5Connection.send`.
It does no I/O and keeps no clock: the driver owns sockets and timeouts.

The conversation (RFC 1928 §3, §4, §6; RFC 1929 §2)::

    client                                   server
    VER NMETHODS METHODS     Greeting  ->
                                       <-    MethodSelected   VER METHOD
    [VER ULEN UNAME PLEN PASSWD
                           AuthRequest ->
                                       <-    AuthResult       VER STATUS]
    VER CMD RSV ATYP DST.ADDR DST.PORT
              Connect/Bind/UdpAssociateRequest ->
                                       <-    Reply            VER REP RSV ATYP BND.ADDR BND.PORT
                                       <-    [Reply: BIND's second reply, the peer]
    ... relay: the codec is done; left-over bytes via take_trailing_data()

States and what moves them (the tables below are the whole machine)::

    GREETING --Greeting--> METHOD --send MethodSelected--> AUTH | REQUEST | CLOSED
    AUTH --AuthRequest--> AUTH_RESULT --send AuthResult--> REQUEST | CLOSED
    REQUEST --*Request--> REPLY --send Reply--> ESTABLISHED | BIND_PEER | CLOSED
    BIND_PEER --send Reply--> ESTABLISHED | CLOSED

Bad input from the client is never raised: it becomes a :class:`Rejected`
event carrying the exact bytes to write before closing (a failure reply with
the meaningful REP code, ``05 FF``, ``01 01``, or nothing when no reply can
be understood) and the :class:`~proxy.errors.DropReason` to count.  End of
input in the middle of a message is a :class:`ConnectionClosed` event.
Misuse by the driver (sending an event the state does not allow) raises
:class:`Socks5LocalError`, a ValueError: that is a bug to fix, not input.

Buffering is bounded (``max_buffer``); a handshake message is at most 513
bytes, so only a client pipelining too much data overflows.  Data a client
sends right behind its request (optimistic clients do) is kept for the relay.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from proxy.constants import SOCKS_AUTH_VERSION, SOCKS_HANDSHAKE_BUFFER, SOCKS_VERSION
from proxy.errors import DropReason, ParseError
from proxy.socks5_address import UNSPECIFIED, Address, AddressType, parse_address

__all__ = [
    "Method", "Command", "Rep", "State", "Address", "AddressType",
    "Greeting", "AuthRequest", "Request", "ConnectRequest", "BindRequest", "UdpAssociateRequest",
    "Rejected", "ConnectionClosed", "MethodSelected", "AuthResult", "Reply",
    "NEED_DATA", "PAUSED", "Socks5Connection", "Socks5LocalError",
    "select_method", "credentials_ok", "bind_peer_allowed",
]

log = logging.getLogger("proxy.socks5")


class Method(enum.IntEnum):
    """RFC 1928 §3 authentication methods (the ones we name)."""

    NO_AUTH = 0x00
    GSSAPI = 0x01
    USERNAME_PASSWORD = 0x02
    NO_ACCEPTABLE = 0xFF


class Command(enum.IntEnum):
    """RFC 1928 §4 CMD values."""

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class Rep(enum.IntEnum):
    """RFC 1928 §6 REP values."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


class State(enum.Enum):
    """Where the handshake is; who speaks next is in the name."""

    GREETING = "greeting"          # client owes its version/methods
    METHOD = "method"              # server owes MethodSelected
    AUTH = "auth"                  # client owes its RFC 1929 request
    AUTH_RESULT = "auth-result"    # server owes AuthResult
    REQUEST = "request"            # client owes its request
    REPLY = "reply"                # server owes the (first) Reply
    BIND_PEER = "bind-peer"        # server owes BIND's second Reply
    ESTABLISHED = "established"    # handshake over: bytes belong to the relay
    CLOSED = "closed"              # a refusal was produced: close the connection


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: next_event(): the client must send more bytes first.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: next_event(): the server owes a send() (or the handshake is over).
PAUSED: Final = _Sentinel("PAUSED")


class Socks5LocalError(ValueError):
    """The driver sent an event the current state does not allow."""


# --- events from the client --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Greeting:
    """RFC 1928 §3 version identifier/method selection message."""

    methods: tuple[int, ...]
    "The METHODS octets, in the client's order."


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """RFC 1929 §2 username/password request (raw octets, 0-255 each)."""

    username: bytes
    password: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Request:
    """RFC 1928 §4 request; one subclass per command."""

    address: Address
    "DST.ADDR/DST.PORT."


@dataclass(frozen=True, slots=True)
class ConnectRequest(Request):
    """CMD 0x01: open a TCP connection to ``address``."""


@dataclass(frozen=True, slots=True)
class BindRequest(Request):
    """CMD 0x02: accept one inbound TCP connection, expected from ``address``."""


@dataclass(frozen=True, slots=True)
class UdpAssociateRequest(Request):
    """CMD 0x03: relay UDP; ``address`` is the client's datagram source if known."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The client broke the protocol: write ``reply``, then close.

    ``rep`` is the REP code inside ``reply`` when it is a request reply.
    """

    reason: DropReason
    reply: bytes
    rep: Rep | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The client closed its side in the middle of the handshake."""

    reason: DropReason = DropReason.SOCKS_HANDSHAKE_EOF


ClientEvent = Greeting | AuthRequest | Request | Rejected | ConnectionClosed


# --- events from the server -------------------------------------------------


@dataclass(frozen=True, slots=True)
class MethodSelected:
    """RFC 1928 §3 METHOD selection message."""

    method: int


@dataclass(frozen=True, slots=True)
class AuthResult:
    """RFC 1929 §2 status: 0x00 success, anything else closes."""

    success: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """RFC 1928 §6 reply: REP and BND.ADDR/BND.PORT."""

    rep: Rep
    bound: Address = UNSPECIFIED

    def emit(self) -> bytes:
        return bytes((SOCKS_VERSION, self.rep, 0)) + self.bound.emit()


ServerEvent = MethodSelected | AuthResult | Reply

#: Which client message each waiting state parses.
_RECEIVE_STATES: Final = frozenset({State.GREETING, State.AUTH, State.REQUEST})

#: (state, outcome of the sent event) -> next state.  Anything missing is a
#: Socks5LocalError; outcomes are computed by Socks5Connection._outcome.
_SEND_TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (State.METHOD, "no-auth"): State.REQUEST,
    (State.METHOD, "username-password"): State.AUTH,
    (State.METHOD, "refuse"): State.CLOSED,
    (State.AUTH_RESULT, "granted"): State.REQUEST,
    (State.AUTH_RESULT, "denied"): State.CLOSED,
    (State.REPLY, "granted"): State.ESTABLISHED,
    (State.REPLY, "granted-bind"): State.BIND_PEER,
    (State.REPLY, "refused"): State.CLOSED,
    (State.BIND_PEER, "granted"): State.ESTABLISHED,
    (State.BIND_PEER, "refused"): State.CLOSED,
}

#: SOCKS4 "request rejected or failed" (VN 0, CD 91): a SOCKS4 client that
#: reached us learns why instead of seeing a bare close.
_SOCKS4_REJECT: Final = b"\x00\x5b" + bytes(6)
_REQUEST_CLASSES: Final = {
    Command.CONNECT: ConnectRequest,
    Command.BIND: BindRequest,
    Command.UDP_ASSOCIATE: UdpAssociateRequest,
}


class Socks5Connection:
    """The server side of one SOCKS5 client connection.  Performs no I/O.

    Driven by two kinds of input: bytes from the client
    (:meth:`receive_data`, ``b""`` for end of file) and the server's
    decisions (:meth:`send`).  Output: :meth:`next_event` returns the next
    client message, :data:`NEED_DATA` or :data:`PAUSED`; :meth:`send` returns
    the bytes to write.  After the handshake, :meth:`take_trailing_data` and
    :attr:`client_eof` hand what was read ahead to the relay.
    """

    def __init__(self, *, max_buffer: int = SOCKS_HANDSHAKE_BUFFER) -> None:
        self.state = State.GREETING
        self.max_buffer = max_buffer
        self.client_eof = False
        "The client has shut down its sending side (it may still read)."
        self.methods: tuple[int, ...] = ()
        "The methods the client offered."
        self.command: Command | None = None
        "The command of the parsed request."
        self._buf = bytearray()
        self._overflow = False

    # --- input ---------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the client; ``b""`` means end of file."""
        if not data:
            self.client_eof = True
            return
        if len(self._buf) + len(data) > self.max_buffer:
            self._overflow = True
            return
        self._buf += data

    def next_event(self) -> ClientEvent | _Sentinel:
        """The next client message, or NEED_DATA / PAUSED.  Never raises."""
        if self.state == State.CLOSED:
            return PAUSED
        if self._overflow:
            return self._reject(DropReason.SOCKS_HANDSHAKE_OVERFLOW, b"")
        if self.state not in _RECEIVE_STATES:
            return PAUSED
        try:
            event = self._parse()
        except ParseError as e:  # pragma: no cover - every parser maps its own errors
            return self._reject(e.reason, b"")
        if event is NEED_DATA and self.client_eof:
            self._set_state(State.CLOSED)
            return ConnectionClosed()
        return event

    # --- output --------------------------------------------------------------

    def send(self, event: ServerEvent) -> bytes:
        """The bytes of a server message; advances the state.

        :raises Socks5LocalError: the event is not allowed now (driver bug).
        """
        outcome = self._outcome(event)
        nxt = _SEND_TRANSITIONS.get((self.state, outcome))
        if nxt is None:
            raise Socks5LocalError(f"cannot send {event!r} in state {self.state.value}")
        if isinstance(event, MethodSelected):
            data = bytes((SOCKS_VERSION, event.method))
        elif isinstance(event, AuthResult):
            data = bytes((SOCKS_AUTH_VERSION, 0x00 if event.success else 0x01))
        else:
            data = event.emit()
        self._set_state(nxt)
        return data

    def take_trailing_data(self) -> bytes:
        """Bytes the client sent past its request (for the relay); clears them."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    # --- internals -----------------------------------------------------------

    def _set_state(self, new: State) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("socks5 handshake: %s -> %s", self.state.value, new.value)
        self.state = new

    def _reject(self, reason: DropReason, reply: bytes, rep: Rep | None = None) -> Rejected:
        self._set_state(State.CLOSED)
        self._buf.clear()
        return Rejected(reason, reply, rep)

    def _reject_request(self, reason: DropReason, rep: Rep) -> Rejected:
        return self._reject(reason, Reply(rep).emit(), rep)

    def _outcome(self, event: ServerEvent) -> str:
        if isinstance(event, MethodSelected):
            if event.method == Method.NO_ACCEPTABLE:
                return "refuse"
            if event.method not in self.methods:
                raise Socks5LocalError(f"method {event.method:#04x} was not offered")
            if event.method == Method.NO_AUTH:
                return "no-auth"
            if event.method == Method.USERNAME_PASSWORD:
                return "username-password"
            raise Socks5LocalError(f"method {event.method:#04x} is not implemented")
        if isinstance(event, AuthResult):
            return "granted" if event.success else "denied"
        if isinstance(event, Reply):
            if event.rep != Rep.SUCCEEDED:
                return "refused"
            if self.state == State.REPLY and self.command == Command.BIND:
                return "granted-bind"
            return "granted"
        raise Socks5LocalError(f"not a server event: {event!r}")

    def _parse(self) -> ClientEvent | _Sentinel:
        if self.state == State.GREETING:
            return self._parse_greeting()
        if self.state == State.AUTH:
            return self._parse_auth()
        return self._parse_request()

    def _consume(self, n: int) -> None:
        del self._buf[:n]

    def _parse_greeting(self) -> ClientEvent | _Sentinel:
        # RFC 1928 §3: VER | NMETHODS | METHODS (1-255 octets)
        buf = self._buf
        if len(buf) < 1:
            return NEED_DATA
        if buf[0] != SOCKS_VERSION:
            reply = _SOCKS4_REJECT if buf[0] == 4 else b""
            return self._reject(DropReason.SOCKS_BAD_VERSION, reply)
        if len(buf) < 2:
            return NEED_DATA
        n = buf[1]
        if n == 0:
            return self._reject(DropReason.SOCKS_NO_ACCEPTABLE_METHOD, bytes((SOCKS_VERSION, Method.NO_ACCEPTABLE)))
        if len(buf) < 2 + n:
            return NEED_DATA
        self.methods = tuple(buf[2:2 + n])
        self._consume(2 + n)
        self._set_state(State.METHOD)
        return Greeting(self.methods)

    def _parse_auth(self) -> ClientEvent | _Sentinel:
        # RFC 1929 §2: VER(0x01) | ULEN | UNAME | PLEN | PASSWD
        buf = self._buf
        if len(buf) < 1:
            return NEED_DATA
        if buf[0] != SOCKS_AUTH_VERSION:
            return self._reject(DropReason.SOCKS_BAD_AUTH_VERSION, bytes((SOCKS_AUTH_VERSION, 0x01)))
        if len(buf) < 2:
            return NEED_DATA
        ulen = buf[1]
        if len(buf) < 3 + ulen:
            return NEED_DATA
        plen = buf[2 + ulen]
        end = 3 + ulen + plen
        if len(buf) < end:
            return NEED_DATA
        event = AuthRequest(bytes(buf[2:2 + ulen]), bytes(buf[3 + ulen:end]))
        self._consume(end)
        self._set_state(State.AUTH_RESULT)
        return event

    def _parse_request(self) -> ClientEvent | _Sentinel:
        # RFC 1928 §4: VER | CMD | RSV | ATYP | DST.ADDR | DST.PORT
        buf = self._buf
        if len(buf) < 1:
            return NEED_DATA
        if buf[0] != SOCKS_VERSION:
            return self._reject_request(DropReason.SOCKS_BAD_VERSION, Rep.GENERAL_FAILURE)
        if len(buf) < 2:
            return NEED_DATA
        try:
            command = Command(buf[1])
        except ValueError:
            return self._reject_request(DropReason.SOCKS_BAD_COMMAND, Rep.COMMAND_NOT_SUPPORTED)
        # RSV (buf[2]) is X'00' by RFC 1928 §4; it carries nothing, so any value is read past.
        try:
            parsed = parse_address(buf, 3)
        except ParseError as e:
            if e.reason == DropReason.SOCKS_BAD_ADDRESS_TYPE:
                return self._reject_request(e.reason, Rep.ADDRESS_TYPE_NOT_SUPPORTED)
            # A name that cannot be a DNS name can never be resolved.
            return self._reject_request(e.reason, Rep.HOST_UNREACHABLE)
        if parsed is None:
            return NEED_DATA
        address, end = parsed
        self._consume(end)
        self.command = command
        self._set_state(State.REPLY)
        return _REQUEST_CLASSES[command](address)


# --- server decisions that are protocol, not I/O ------------------------------


def select_method(offered: tuple[int, ...], auth_required: bool) -> Method:
    """RFC 1928 §3: the method to answer a greeting with.

    With users configured only RFC 1929 username/password is acceptable;
    without, only "no authentication" (a client offering nothing else is
    refused rather than asked for credentials nobody checks).
    """
    wanted = Method.USERNAME_PASSWORD if auth_required else Method.NO_AUTH
    return wanted if wanted in offered else Method.NO_ACCEPTABLE


_DUMMY_SECRET: Final = b"\x00" * 32


def credentials_ok(users: Mapping[str, str] | None, username: bytes, password: bytes) -> bool:
    """RFC 1929 check in constant time per attempt (no user enumeration by timing)."""
    if not users:
        return False
    try:
        name = username.decode("utf-8")
    except UnicodeDecodeError:
        name = None
    expected = users.get(name) if name is not None else None
    secret = expected.encode("utf-8") if expected is not None else _DUMMY_SECRET
    match = hmac.compare_digest(secret, password)
    return expected is not None and match


def bind_peer_allowed(requested: Address, peer: Address) -> bool:
    """RFC 1928 §4 BIND: "DST.ADDR ... the SOCKS server is expected to use
    [it] in evaluating the BIND request": when the client named an IP, only
    a connection from that IP is accepted.  A name or all-zeros accepts any.
    """
    want = requested.ip
    if want is None or want.is_unspecified:
        return True
    return peer.ip == want
