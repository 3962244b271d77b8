"""SOCKS5 UDP relay rules (RFC 1928 §7): the datagram header and one association.

Every datagram between a client and its UDP relay port carries::

    +----+------+------+----------+----------+----------+
    |RSV | FRAG | ATYP | DST.ADDR | DST.PORT |   DATA   |
    +----+------+------+----------+----------+----------+
    | 2  |  1   |  1   | Variable |    2     | Variable |
    +----+------+------+----------+----------+----------+

From the client, DST is where DATA goes; towards the client, it is where
DATA came from.

Theory of operation
-------------------

:class:`UdpAssociation` holds the §7 rules for one UDP ASSOCIATE, with no
I/O.  Driven by two kinds of input: datagrams from the client
(:meth:`~UdpAssociation.client_datagram`) and datagrams from targets
(:meth:`~UdpAssociation.target_datagram`); each returns what to send, or
None after counting why it was dropped in ``drops``:

* RFC 1928 §7: "MUST drop any datagrams arriving from any source IP address
  other than the one recorded for the particular association."  The recorded
  address is the source IP of the TCP control connection (the client told us
  nothing more trustworthy).  When the request named a port, only that port
  is accepted; otherwise the first valid datagram fixes it, so a second
  process on the client's host cannot inject into the association.
* RFC 1928 §7: "An implementation that does not support fragmentation MUST
  drop any datagram whose FRAG field is other than X'00'."  We do not.
* Datagrams from targets go to the fixed client endpoint, with the target's
  IP address in the header (also for domain-name destinations: the reply
  comes from an address, and clients accept that).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass

from proxy.errors import DropReason, ParseError
from proxy.socks5_address import Address, parse_address

__all__ = ["UdpDatagram", "UdpAssociation"]

log = logging.getLogger("proxy.socks5_udp")


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One RFC 1928 §7 datagram: destination (or source) address and payload."""

    address: Address
    data: bytes
    frag: int = 0
    "Fragment number; we only ever emit 0 and drop anything else."

    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview) -> UdpDatagram:
        """Decode a client datagram.

        :raises ParseError: ``SOCKS_UDP_TRUNCATED``, ``SOCKS_UDP_FRAGMENT``,
            ``SOCKS_BAD_ADDRESS_TYPE`` or ``SOCKS_BAD_DOMAIN``.
        """
        if len(buf) < 4:
            raise ParseError(DropReason.SOCKS_UDP_TRUNCATED, f"{len(buf)} bytes")
        frag = buf[2]
        if frag != 0:
            raise ParseError(DropReason.SOCKS_UDP_FRAGMENT, f"FRAG {frag}")
        parsed = parse_address(buf, 3)
        if parsed is None:
            raise ParseError(DropReason.SOCKS_UDP_TRUNCATED, "address cut short")
        address, end = parsed
        return cls(address, bytes(buf[end:]))

    def emit(self) -> bytes:
        """The datagram bytes (RSV = 0)."""
        return b"\x00\x00" + bytes((self.frag,)) + self.address.emit() + self.data

    def buffer_len(self) -> int:
        return 3 + self.address.buffer_len() + len(self.data)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class UdpAssociation:
    """RFC 1928 §7 source checks and framing for one UDP ASSOCIATE.  No I/O.

    :param client_host: IP of the client's TCP control connection.
    :param requested: DST.ADDR/DST.PORT of the UDP ASSOCIATE request.
    :param drops: counter to add drop reasons to (shared with the server).
    """

    def __init__(self, client_host: str, requested: Address, drops: Counter[DropReason] | None = None) -> None:
        self.client_ip = _ip(client_host)
        self.client_port: int | None = requested.port or None
        "The client's datagram port: from the request, else the first valid datagram."
        self.client_addr: tuple[str, int] | None = None
        "Where datagrams for the client go, once known."
        self.drops: Counter[DropReason] = drops if drops is not None else Counter()
        if self.client_port is not None:
            self.client_addr = (client_host, self.client_port)

    def _drop(self, reason: DropReason, addr: tuple[str, int]) -> None:
        self.drops[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("udp association: dropping datagram from %s: %s", addr, reason.value)

    def client_datagram(self, data: bytes, addr: tuple[str, int]) -> UdpDatagram | None:
        """A datagram the client sent to the relay port: what to forward, or None.

        :param addr: its source ``(host, port, ...)`` as the socket reports it.
        """
        ip = _ip(str(addr[0]))
        if ip is None or ip != self.client_ip or (self.client_port is not None and addr[1] != self.client_port):
            self._drop(DropReason.SOCKS_UDP_WRONG_SOURCE, addr)
            return None
        try:
            dgram = UdpDatagram.parse(data)
        except ParseError as e:
            self._drop(e.reason, addr)
            return None
        if self.client_addr is None:
            self.client_port = int(addr[1])
            self.client_addr = (str(addr[0]), self.client_port)
        return dgram

    def target_datagram(self, data: bytes, source: Address) -> tuple[bytes, tuple[str, int]] | None:
        """A datagram from a target: ``(bytes, client endpoint)`` to send, or None."""
        if self.client_addr is None:
            self._drop(DropReason.SOCKS_UDP_NO_CLIENT, source.sockaddr())
            return None
        return UdpDatagram(source, data).emit(), self.client_addr
