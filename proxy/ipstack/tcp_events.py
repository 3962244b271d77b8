"""The TCP states (RFC 9293 §3.3.2) and the events a connection reports.

Events are past-tense facts, pulled with ``TcpConnection.next_event()``.
They are edge-triggered, not per segment: ``DataReceived`` appears when
bytes arrive and none was reported since the application last called
``receive()``; ``SendSpaceAvailable`` appears once after a ``send()`` was
cut short, when at least half the send buffer is free again.  That keeps
the event queue bounded no matter what the network does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "TcpState",
    "TcpEvent",
    "Connected",
    "DataReceived",
    "SendSpaceAvailable",
    "EndOfStream",
    "ConnectionClosed",
    "CLOSE_REASONS",
]


class TcpState(enum.Enum):
    """The eleven connection states of RFC 9293 §3.3.2."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    # Members are singletons compared by identity; the C-level identity hash
    # makes ``state in {...}`` as cheap as ``is`` (Enum's default hashes the
    # name in Python, which showed up in profiles of the segment path).
    __hash__ = object.__hash__


#: Reasons a ConnectionClosed may carry (None is an orderly close).
CLOSE_REASONS = (
    "reset", "refused", "timeout", "aborted",
    "unreachable-host", "unreachable-net", "unreachable-port", "admin-prohibited",
    "time-exceeded",
)


class TcpEvent:
    """Base class of everything ``next_event()`` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Connected(TcpEvent):
    """The three-way handshake completed (ESTABLISHED)."""


@dataclass(frozen=True, slots=True)
class DataReceived(TcpEvent):
    """In-order bytes are waiting: call ``receive()``."""


@dataclass(frozen=True, slots=True)
class SendSpaceAvailable(TcpEvent):
    """A ``send()`` was cut short earlier; the send buffer has room again."""


@dataclass(frozen=True, slots=True)
class EndOfStream(TcpEvent):
    """The peer's FIN arrived: after the buffered bytes there is no more data."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(TcpEvent):
    """The connection is over (the last event it reports).

    ``reason`` is None for an orderly close, else one of
    :data:`CLOSE_REASONS`: ``reset`` (RST from the peer), ``refused`` (RST
    answering our SYN), ``timeout`` (retransmissions, keepalive or
    FIN-WAIT-2 gave up), ``aborted`` (our own ``abort()``), or the ICMP
    error that killed it (``unreachable-port`` ...).
    """

    reason: str | None = None
