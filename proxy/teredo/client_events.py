"""Events a Teredo client core hands to its driver (pulled with ``next_event()``).

Plain frozen dataclasses, as h11 and aioquic do it: the driver matches on
the type.  Two of them are requests rather than news: :class:`ResolveServer`
asks the driver to resolve a host name (the core never blocks on DNS) and is
answered with ``TeredoClient.server_resolved(name, ipv4_list, now)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv6Address

__all__ = [
    "NatType",
    "ClientEvent",
    "ResolveServer",
    "StateChanged",
    "Qualified",
    "QualificationLost",
    "AddressChanged",
    "ServerFailed",
]


class NatType(enum.Enum):
    """What qualification learned about the NAT in front of the client.

    Values are the status-file names of CONTRACT.md.
    """

    OPEN = "open"
    "No NAT: the mapped endpoint is the local one."
    CONE = "cone"
    "Endpoint-independent filtering: the cone RA from the other address came in (RFC 4380 §5.2.1)."
    RESTRICTED = "restricted"
    "Endpoint-independent mapping, filtering by address or address and port."
    SYMMETRIC = "symmetric"
    "The secondary server address saw another mapping (RFC 4380 §5.2.1)."
    UNKNOWN = "unknown"
    "Not probed yet, or the secondary address never answered."


class ClientEvent:
    """Base class of every client event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ResolveServer(ClientEvent):
    """Resolve ``name`` to IPv4 addresses; answer with ``server_resolved()``."""

    name: str


@dataclass(frozen=True, slots=True)
class StateChanged(ClientEvent):
    """The public state moved: ``starting``, ``qualifying``, ``qualified``, ``failed``."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Qualified(ClientEvent):
    """The client has a Teredo address (after qualification or requalification)."""

    address: bytes
    "The 16-byte Teredo address."
    mtu: int
    "Link MTU from the RA."
    nat: NatType
    "NAT type found while qualifying."
    server: str
    "IPv4 address of the server that qualified us."

    @property
    def address_text(self) -> str:
        return str(IPv6Address(self.address))


@dataclass(frozen=True, slots=True)
class QualificationLost(ClientEvent):
    """The address is no longer usable (the server stopped answering refreshes)."""

    address: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class AddressChanged(ClientEvent):
    """The NAT mapping (or the server) changed: a new address replaces ``old``."""

    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class ServerFailed(ClientEvent):
    """A server did not qualify us; the client moves on (failover or backoff)."""

    server: str
    reason: str
    retry_at: float | None
    "When the next attempt starts (None: at once, with the next server)."
