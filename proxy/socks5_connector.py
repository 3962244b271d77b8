"""What the SOCKS5 server needs from the network: the outbound connector contract.

The server (:mod:`proxy.socks5_asyncio`) speaks SOCKS5 to applications and
hands every outbound action to a *connector*.  A connector is any object with
the three coroutine methods of :class:`Connector`; the server never opens a
socket towards a target itself.  Implementations:

* :class:`proxy.socks5_os_asyncio.OsConnector`: the host's own network
  (``--ipv4 direct``, and every test);
* :class:`proxy.socks5_policy_asyncio.PolicyConnector`: dispatches by family
  (IPv6 to one connector, IPv4 to another or refused, names resolved first);
* the Teredo client's connector over the userspace IPv6 stack (separate).

Failures are reported by raising a :class:`SocksError` subclass; its ``rep``
is the RFC 1928 §6 REP code the client receives.  The mapping a connector
should use:

=============================================  ==================================
condition                                      raise
=============================================  ==================================
ICMPv6 unreachable code 0 (no route),          :class:`NetworkUnreachable` 0x03
  errno ENETUNREACH
ICMPv6 unreachable code 1, 5, 6 (prohibited    :class:`NotAllowed` 0x02
  by policy), errno EACCES; our own policy
ICMPv6 unreachable code 2, 3 (address          :class:`HostUnreachable` 0x04
  unreachable), no answer before the timeout,
  name not resolved, errno EHOSTUNREACH
ICMPv6 unreachable code 4 (port), TCP RST to   :class:`ConnectionRefused` 0x05
  our SYN, errno ECONNREFUSED
ICMPv6 time exceeded (hop limit)               :class:`TtlExpired` 0x06
command not offered (e.g. no BIND)             :class:`CommandNotSupported` 0x07
address family not served                      :class:`AddressTypeNotSupported` 0x08
anything else                                  :class:`GeneralFailure` 0x01
=============================================  ==================================

The ICMPv6 code mapping is Linux's ``icmpv6_err_convert`` (so a Teredo path
and a native one report the same REP), except time exceeded, which Linux
folds into EHOSTUNREACH and SOCKS5 can say precisely.

An ``OSError`` or ``TimeoutError`` escaping a connector is mapped with
:func:`rep_for_exception` (errno table below); any other exception becomes
0x01 and is logged as a bug.

Streams are duck-typed halves, so ``asyncio.StreamReader``/``StreamWriter``
fit as they are, and a single stack stream object can be passed as both.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from proxy.errors import ProxyError
from proxy.socks5 import Rep
from proxy.socks5_address import Address

__all__ = [
    "ByteReader", "ByteWriter", "TcpChannel", "TcpListener", "UdpEndpoint", "Connector", "Resolver",
    "SocksError", "GeneralFailure", "NotAllowed", "NetworkUnreachable", "HostUnreachable",
    "ConnectionRefused", "TtlExpired", "CommandNotSupported", "AddressTypeNotSupported",
    "rep_for_errno", "rep_for_exception", "error_for_rep", "error_for_icmpv6",
]


# --- errors ------------------------------------------------------------------


class SocksError(ProxyError):
    """An outbound action failed; ``rep`` is the REP code to send (RFC 1928 §6)."""

    rep: ClassVar[Rep] = Rep.GENERAL_FAILURE


class GeneralFailure(SocksError):
    rep = Rep.GENERAL_FAILURE


class NotAllowed(SocksError):
    rep = Rep.NOT_ALLOWED


class NetworkUnreachable(SocksError):
    rep = Rep.NETWORK_UNREACHABLE


class HostUnreachable(SocksError):
    rep = Rep.HOST_UNREACHABLE


class ConnectionRefused(SocksError):
    rep = Rep.CONNECTION_REFUSED


class TtlExpired(SocksError):
    rep = Rep.TTL_EXPIRED


class CommandNotSupported(SocksError):
    rep = Rep.COMMAND_NOT_SUPPORTED


class AddressTypeNotSupported(SocksError):
    rep = Rep.ADDRESS_TYPE_NOT_SUPPORTED


_BY_REP: dict[Rep, type[SocksError]] = {
    cls.rep: cls
    for cls in (GeneralFailure, NotAllowed, NetworkUnreachable, HostUnreachable, ConnectionRefused,
                TtlExpired, CommandNotSupported, AddressTypeNotSupported)
}

#: errno -> REP, for connectors built on OS sockets.  EHOSTUNREACH and
#: ENETUNREACH are how Linux reports ICMP(v6) destination unreachable.
_ERRNO_REP: dict[int, Rep] = {
    errno.ECONNREFUSED: Rep.CONNECTION_REFUSED,
    errno.ECONNRESET: Rep.CONNECTION_REFUSED,
    errno.ENETUNREACH: Rep.NETWORK_UNREACHABLE,
    errno.ENETDOWN: Rep.NETWORK_UNREACHABLE,
    errno.EADDRNOTAVAIL: Rep.NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: Rep.HOST_UNREACHABLE,
    errno.EHOSTDOWN: Rep.HOST_UNREACHABLE,
    errno.ETIMEDOUT: Rep.HOST_UNREACHABLE,
    errno.EACCES: Rep.NOT_ALLOWED,
    errno.EPERM: Rep.NOT_ALLOWED,
    errno.EAFNOSUPPORT: Rep.ADDRESS_TYPE_NOT_SUPPORTED,
}


def rep_for_errno(code: int | None) -> Rep:
    """The REP code for an OS error number (0x01 when it has no better meaning)."""
    if code is None:
        return Rep.GENERAL_FAILURE
    return _ERRNO_REP.get(code, Rep.GENERAL_FAILURE)


def rep_for_exception(exc: BaseException) -> Rep:
    """The REP code for anything a connector raised."""
    if isinstance(exc, SocksError):
        return exc.rep
    if isinstance(exc, TimeoutError):
        return Rep.HOST_UNREACHABLE
    if isinstance(exc, OSError):
        return rep_for_errno(exc.errno)
    return Rep.GENERAL_FAILURE


#: RFC 4443 §3.1 Destination Unreachable code -> REP (Linux icmpv6_err_convert).
_UNREACH_REP: dict[int, Rep] = {
    0: Rep.NETWORK_UNREACHABLE,   # no route to destination
    1: Rep.NOT_ALLOWED,           # administratively prohibited
    2: Rep.HOST_UNREACHABLE,      # beyond scope of source address
    3: Rep.HOST_UNREACHABLE,      # address unreachable
    4: Rep.CONNECTION_REFUSED,    # port unreachable
    5: Rep.NOT_ALLOWED,           # source address failed ingress/egress policy
    6: Rep.NOT_ALLOWED,           # reject route to destination
}
_ICMPV6_DEST_UNREACH = 1
_ICMPV6_TIME_EXCEEDED = 3


def error_for_icmpv6(icmp_type: int, code: int, message: str = "") -> SocksError:
    """The error to raise when an ICMPv6 error (RFC 4443 §3) ends a connection attempt.

    For connectors over a userspace stack (the Teredo client): Destination
    Unreachable by code as in the table above (an unknown code: host
    unreachable), Time Exceeded: TTL expired, anything else: general failure.
    """
    if icmp_type == _ICMPV6_DEST_UNREACH:
        rep = _UNREACH_REP.get(code, Rep.HOST_UNREACHABLE)
    elif icmp_type == _ICMPV6_TIME_EXCEEDED:
        rep = Rep.TTL_EXPIRED
    else:
        rep = Rep.GENERAL_FAILURE
    return error_for_rep(rep, message or f"ICMPv6 type {icmp_type} code {code}")


def error_for_rep(rep: Rep, message: str = "") -> SocksError:
    """The SocksError subclass instance that carries ``rep``."""
    return _BY_REP.get(rep, GeneralFailure)(message)


# --- streams -----------------------------------------------------------------


@runtime_checkable
class ByteReader(Protocol):
    """The reading half of a byte stream (``asyncio.StreamReader`` fits)."""

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes; ``b""`` once the peer has shut down its sending side.

        May raise ``ConnectionResetError`` when the peer aborted (RST).
        """
        ...


@runtime_checkable
class ByteWriter(Protocol):
    """The writing half of a byte stream (``asyncio.StreamWriter`` fits).

    ``write`` buffers; ``drain`` waits until the buffer is under the
    high-water mark (this is the relay's backpressure, so it must really
    wait on the peer's window).  ``write_eof`` sends FIN but keeps reading
    possible: half-close.  A writer may also offer ``abort()`` (close with
    RST); the relay uses it when the other side was reset.
    """

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


@dataclass(slots=True)
class TcpChannel:
    """An established outbound (CONNECT) or inbound (BIND) TCP connection."""

    reader: ByteReader
    writer: ByteWriter
    local: Address
    "Our end: BND.ADDR/BND.PORT of a CONNECT reply (RFC 1928 §6)."
    remote: Address
    "The peer: the address a name resolved to, or BIND's connecting host."


class TcpListener(Protocol):
    """A listening socket for BIND (RFC 1928 §4: one inbound connection)."""

    local: Address
    "Where the application server must connect: BND of BIND's first reply."

    async def accept(self) -> TcpChannel:
        """The next inbound connection (``remote`` = the peer).

        May be called again after the server refused a peer (wrong source).
        """
        ...

    def close(self) -> None:
        """Stop listening (connections already accepted stay open)."""
        ...


class UdpEndpoint(Protocol):
    """The outbound side of one UDP association."""

    async def send(self, data: bytes, to: Address) -> None:
        """Send one datagram; ``to`` may be a domain name (resolve it).

        Raises SocksError when it cannot be sent; the server counts and
        drops (UDP has no error reply).
        """
        ...

    async def recv(self) -> tuple[bytes, Address]:
        """The next datagram from any target: ``(payload, source IP address)``.

        Raises ``ConnectionError`` once the endpoint is closed.
        """
        ...

    def close(self) -> None: ...


class Connector(Protocol):
    """Outbound actions for the SOCKS5 server; raise SocksError on failure.

    Addresses are :class:`~proxy.socks5_address.Address`: ``atyp`` IPv4,
    IPv6 (never IPv4-mapped: the codec turns those into IPv4) or DOMAIN (an
    ASCII name the connector resolves, or refuses).  Each method is awaited
    under the server's connect timeout; a cancelled call must release what
    it opened.
    """

    async def open_tcp(self, target: Address) -> TcpChannel:
        """CONNECT (RFC 1928 §4): a TCP connection to ``target``."""
        ...

    async def bind_tcp(self, target: Address) -> TcpListener:
        """BIND: listen for one connection expected from ``target``.

        ``listener.local`` must be an address ``target`` can reach (for the
        Teredo connector: the Teredo address and a port of the stack).
        """
        ...

    async def open_udp(self) -> UdpEndpoint:
        """UDP ASSOCIATE: an endpoint to send to and receive from targets."""
        ...


class Resolver(Protocol):
    """Name resolution without blocking the event loop."""

    async def resolve(self, name: str) -> list[str]:
        """IP literals for ``name`` (any family, best first); [] if none.

        Raises SocksError (HostUnreachable) when resolution itself failed.
        """
        ...
