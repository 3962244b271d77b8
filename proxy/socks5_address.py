"""SOCKS5 addresses: the ``ATYP | ADDR | PORT`` triple of RFC 1928 §4, §5, §7.

Wire format (RFC 1928 §5)::

    +------+----------+----------+
    | ATYP | DST.ADDR | DST.PORT |
    +------+----------+----------+
    |  1   | Variable |    2     |
    +------+----------+----------+

    ATYP 0x01  IPv4: 4 octets
    ATYP 0x03  domain name: 1 length octet, then that many octets (no NUL)
    ATYP 0x04  IPv6: 16 octets

One frozen :class:`Address` is used for requests, replies and UDP headers.
Its ``host`` is always text a resolver or ``connect()`` accepts: dotted quad,
compressed IPv6, or an ASCII (A-label) host name.  Why normalise here: the
connectors behind the server (OS sockets, the Teredo stack) then never see
raw bytes from the network.

Domain names arrive as bytes.  RFC 1928 says only "fully-qualified domain
name"; clients send ASCII, sometimes UTF-8 (a browser given an IDN may send
either).  :func:`decode_domain` accepts ASCII host names as they are, turns
UTF-8 into IDNA A-labels (stdlib ``idna`` codec, IDNA 2003), and maps an
IP literal sent as a "domain" (``"::1"``, ``"[::1]"``, ``"10.0.0.1"``) to the
IP address type, so policy decisions see the real family.  Anything else is
refused with :class:`~proxy.errors.ParseError`, never another exception.
"""

from __future__ import annotations

import enum
import ipaddress
import string
import struct
from dataclasses import dataclass

from proxy.constants import DNS_MAX_LABEL, DNS_MAX_NAME
from proxy.errors import DropReason, ParseError

__all__ = ["AddressType", "Address", "decode_domain", "parse_address", "UNSPECIFIED"]

_PORT = struct.Struct("!H")
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


class AddressType(enum.IntEnum):
    """RFC 1928 §4 ATYP values."""

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


@dataclass(frozen=True, slots=True)
class Address:
    """A SOCKS5 address: type, host text and port.

    Build with :meth:`from_host` or :meth:`from_sockaddr` so that ``host``
    is normalised; the constructor only checks ranges.
    """

    atyp: AddressType
    "The address type as it will be (or was) on the wire."
    host: str
    "Dotted quad, compressed IPv6 (no brackets, no scope) or an ASCII host name."
    port: int
    "0-65535."

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port out of range: {self.port}")

    @classmethod
    def from_host(cls, host: str, port: int) -> Address:
        """The address for ``host`` text: an IP literal or a host name.

        IPv4-mapped IPv6 literals become IPv4, as a connector must treat them.
        Raises ValueError for text that is neither (our own misuse).
        """
        ip = _ip_literal(host)
        if ip is not None:
            return cls._from_ip(ip, port)
        try:
            name = decode_domain(host.encode("utf-8"))
        except (ParseError, UnicodeError) as e:
            raise ValueError(f"not a host: {host!r}") from e
        if isinstance(name, Address):
            return Address(name.atyp, name.host, port)
        return cls(AddressType.DOMAIN, name, port)

    @classmethod
    def from_sockaddr(cls, sockaddr: tuple[object, ...]) -> Address:
        """The address of a socket address tuple ``(host, port[, flow, scope])``.

        A link-local host's ``%scope`` suffix is dropped: SOCKS5 cannot carry it.
        """
        host, port = str(sockaddr[0]).split("%", 1)[0], int(sockaddr[1])  # type: ignore[call-overload]
        ip = _ip_literal(host)
        if ip is None:
            raise ValueError(f"not an IP socket address: {sockaddr!r}")
        return cls._from_ip(ip, port)

    @classmethod
    def _from_ip(cls, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> Address:
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return cls(AddressType.IPV4, str(ip.ipv4_mapped), port)
            return cls(AddressType.IPV6, str(ip), port)
        return cls(AddressType.IPV4, str(ip), port)

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The IP address object, or None for a domain name."""
        if self.atyp == AddressType.DOMAIN:
            return None
        return ipaddress.ip_address(self.host)

    @property
    def is_unspecified(self) -> bool:
        """``0.0.0.0`` or ``::`` (RFC 1928 §7: "all zeros": not known yet)."""
        ip = self.ip
        return ip is not None and ip.is_unspecified

    def sockaddr(self) -> tuple[str, int]:
        """``(host, port)`` as asyncio and ``socket`` take it."""
        return (self.host, self.port)

    def emit(self) -> bytes:
        """``ATYP | ADDR | PORT`` bytes (RFC 1928 §5)."""
        port = _PORT.pack(self.port)
        if self.atyp == AddressType.IPV4:
            return b"\x01" + ipaddress.IPv4Address(self.host).packed + port
        if self.atyp == AddressType.IPV6:
            return b"\x04" + ipaddress.IPv6Address(self.host).packed + port
        raw = self.host.encode("ascii")
        return b"\x03" + bytes([len(raw)]) + raw + port

    def buffer_len(self) -> int:
        """Length of :meth:`emit`'s output."""
        if self.atyp == AddressType.IPV4:
            return 7
        if self.atyp == AddressType.IPV6:
            return 19
        return 4 + len(self.host)

    def __str__(self) -> str:
        if self.atyp == AddressType.IPV6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


#: The all-zeros IPv4 address: BND.ADDR/BND.PORT of a failure reply.
UNSPECIFIED = Address(AddressType.IPV4, "0.0.0.0", 0)


def _ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``text`` spells (brackets allowed), else None."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:  # a scope id selects an interface: never from the network
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def decode_domain(raw: bytes) -> str | Address:
    """Validate the DST.ADDR of an ATYP 0x03 address.

    :returns: the ASCII host name, or an :class:`Address` (port 0) when the
        "name" is an IP literal.
    :raises ParseError: ``SOCKS_BAD_DOMAIN`` for an empty name, bytes that are
        neither ASCII nor UTF-8, a name IDNA cannot encode, characters outside
        letters/digits/``-``/``_``, or a label/name too long (RFC 1035 §2.3.4).
    """
    if not raw:
        raise ParseError(DropReason.SOCKS_BAD_DOMAIN, "empty name")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(DropReason.SOCKS_BAD_DOMAIN, "neither ASCII nor UTF-8") from None
        try:
            text = text.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            raise ParseError(DropReason.SOCKS_BAD_DOMAIN, "no IDNA form") from None
    ip = _ip_literal(text)
    if ip is not None:
        return Address._from_ip(ip, 0)
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > DNS_MAX_NAME:
        raise ParseError(DropReason.SOCKS_BAD_DOMAIN, "bad name length")
    for label in name.split("."):
        if not label or len(label) > DNS_MAX_LABEL:
            raise ParseError(DropReason.SOCKS_BAD_DOMAIN, "bad label length")
        if not _HOST_CHARS.issuperset(label):
            raise ParseError(DropReason.SOCKS_BAD_DOMAIN, "bad character in name")
    return text


def parse_address(buf: bytes | bytearray | memoryview, offset: int) -> tuple[Address, int] | None:
    """Parse ``ATYP | ADDR | PORT`` starting at ``buf[offset]``.

    :returns: ``(address, end_offset)``, or None if ``buf`` ends first.
    :raises ParseError: ``SOCKS_BAD_ADDRESS_TYPE`` (unknown ATYP, known as
        soon as that octet is in) or ``SOCKS_BAD_DOMAIN``.
    """
    n = len(buf)
    if n <= offset:
        return None
    atyp = buf[offset]
    if atyp == AddressType.IPV4:
        end = offset + 1 + 4
        if n < end + 2:
            return None
        host = str(ipaddress.IPv4Address(bytes(buf[offset + 1:end])))
        return Address(AddressType.IPV4, host, _PORT.unpack_from(buf, end)[0]), end + 2
    if atyp == AddressType.IPV6:
        end = offset + 1 + 16
        if n < end + 2:
            return None
        ip6 = ipaddress.IPv6Address(bytes(buf[offset + 1:end]))
        port = _PORT.unpack_from(buf, end)[0]
        return Address._from_ip(ip6, port), end + 2
    if atyp == AddressType.DOMAIN:
        if n < offset + 2:
            return None
        end = offset + 2 + buf[offset + 1]
        if n < end + 2:
            return None
        port = _PORT.unpack_from(buf, end)[0]
        name = decode_domain(bytes(buf[offset + 2:end]))
        if isinstance(name, Address):
            return Address(name.atyp, name.host, port), end + 2
        return Address(AddressType.DOMAIN, name, port), end + 2
    raise ParseError(DropReason.SOCKS_BAD_ADDRESS_TYPE, f"ATYP {atyp:#04x}")
