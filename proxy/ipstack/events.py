"""Events an :class:`~proxy.ipstack.interface.Interface` hands to its driver.

Past-tense facts, pulled with ``Interface.next_event()``.  TCP connection
events (the TCP contract's ``Connected``, ``DataReceived``, ...) arrive
wrapped in :class:`ConnectionEvent` so the driver knows which connection
they belong to; a connection accepted by a listener first appears as
:class:`ConnectionAccepted` (its own ``Connected`` is folded into it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from proxy.ipstack.demux import TcpListener
    from proxy.ipstack.udp import UdpSocket

__all__ = [
    "ConnectionAccepted",
    "ConnectionEvent",
    "DatagramReceived",
    "DatagramErrorReceived",
    "EchoReplyReceived",
    "EchoErrorReceived",
    "InterfaceEvent",
]


@dataclass(frozen=True, slots=True)
class ConnectionAccepted:
    """A listener's connection completed its handshake; it is the app's now."""

    listener: "TcpListener"
    "The listener that received the SYN."
    connection: Any
    "The established :class:`~proxy.ipstack.tcp.TcpConnection`."


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A TCP contract event of one connection."""

    connection: Any
    "The :class:`~proxy.ipstack.tcp.TcpConnection`."
    event: Any
    "The TcpEvent (Connected, DataReceived, SendSpaceAvailable, EndOfStream, ConnectionClosed)."


@dataclass(frozen=True, slots=True)
class DatagramReceived:
    """A UDP datagram arrived for ``socket``."""

    socket: "UdpSocket"
    "The receiving socket."
    data: bytes
    "The payload."
    remote: tuple[bytes, int]
    "Sender (16-byte address, port)."


@dataclass(frozen=True, slots=True)
class DatagramErrorReceived:
    """An ICMPv6 error about a datagram ``socket`` sent (RFC 1122 §4.1.3.3)."""

    socket: "UdpSocket"
    "The socket that sent the invoking datagram."
    kind: str
    "What the error means (see proxy.ipstack.icmp.ERROR_KINDS)."
    remote: tuple[bytes, int]
    "Where that datagram was going."


@dataclass(frozen=True, slots=True)
class EchoReplyReceived:
    """An Echo Reply answered one of our Echo Requests (RFC 4443 §4.2)."""

    remote: bytes
    "Who answered (the address we pinged)."
    ident: int
    "Identifier."
    seq: int
    "Sequence number."
    data: bytes
    "Echoed data."
    hop_limit: int
    "Hop limit of the reply as received."


@dataclass(frozen=True, slots=True)
class EchoErrorReceived:
    """An ICMPv6 error came back instead of an Echo Reply."""

    remote: bytes
    "The address we pinged."
    reporter: bytes
    "Who sent the error (a router on the path, or the target)."
    ident: int
    "Identifier of the request."
    seq: int
    "Sequence number of the request."
    kind: str
    "What the error means (see proxy.ipstack.icmp.ERROR_KINDS)."


InterfaceEvent = Union[
    ConnectionAccepted,
    ConnectionEvent,
    DatagramReceived,
    DatagramErrorReceived,
    EchoReplyReceived,
    EchoErrorReceived,
]
