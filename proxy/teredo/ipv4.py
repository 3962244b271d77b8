"""IPv4 addresses as Teredo sees them: conversions and the global-unicast test.

Teredo refuses to talk to, or embed, an IPv4 address that is not global
unicast (RFC 4380 §4, §5.2.4, §5.3.1 check 3, §7.4.3).  Python's
``ipaddress.is_global`` is no use here: it calls the documentation ranges
private, while Miredo's RFC-style table (``v4global.c``) accepts them, and
test networks (ours, the lab's) are built from them.  So the table is
written out below, one line per range with its source.

Endpoints everywhere in the project are ``(dotted-quad str, port)``: the
shape asyncio and the socket module use, so drivers pass them through.
"""

from __future__ import annotations

from socket import inet_aton, inet_ntoa  # pure conversions, no I/O

from proxy.constants import DISCOVERY_LOCAL_NETWORKS

__all__ = [
    "ipv4_to_bytes", "ipv4_from_bytes", "ipv4_to_int", "is_global_unicast", "global_check", "is_local_scope",
    "NON_GLOBAL",
]


def ipv4_to_bytes(addr: str) -> bytes:
    """``"192.0.2.1"`` -> ``b"\\xc0\\x00\\x02\\x01"``; raises ValueError if invalid."""
    if addr.count(".") != 3:  # inet_aton also takes "1" or "1.2"
        raise ValueError(f"not a dotted-quad IPv4 address: {addr!r}")
    try:
        return inet_aton(addr)
    except OSError:
        raise ValueError(f"not a dotted-quad IPv4 address: {addr!r}") from None


def ipv4_from_bytes(b: bytes | bytearray | memoryview) -> str:
    """4 bytes -> dotted quad."""
    return inet_ntoa(bytes(b))


def ipv4_to_int(addr: str) -> int:
    return int.from_bytes(ipv4_to_bytes(addr), "big")


def _net(cidr: str) -> tuple[int, int]:
    base, _, plen = cidr.partition("/")
    bits = int(plen)
    mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return ipv4_to_int(base) & mask, mask


#: Ranges that are never a global unicast Teredo endpoint.
#: Miredo's v4global.c list first, then RFC 6890 additions that postdate it.
#: The documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24) are
#: deliberately *absent*: they count as global, as in Miredo.
NON_GLOBAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "RFC 1122 'this network'"),
    ("10.0.0.0/8", "RFC 1918 private"),
    ("127.0.0.0/8", "RFC 1122 loopback"),
    ("169.254.0.0/16", "RFC 3927 link-local"),
    ("172.16.0.0/12", "RFC 1918 private"),
    ("192.168.0.0/16", "RFC 1918 private"),
    ("192.88.99.0/24", "RFC 3068 6to4 relay anycast"),
    ("224.0.0.0/4", "RFC 5771 multicast"),
    ("255.255.255.255/32", "RFC 919 limited broadcast"),
    # Beyond Miredo (RFC 6890 special-purpose registry):
    ("100.64.0.0/10", "RFC 6598 shared (CGN) space"),
    ("192.0.0.0/24", "RFC 6890 IETF protocol assignments"),
    ("198.18.0.0/15", "RFC 2544 benchmarking"),
    ("240.0.0.0/4", "RFC 1112 reserved"),
)

_NON_GLOBAL_NETS = tuple(_net(c) for c, _ in NON_GLOBAL)
# Indexed by first octet so a check tests at most the one or two ranges that
# can contain the address (this runs for every packet a server handles).
_BY_FIRST_OCTET: tuple[tuple[tuple[int, int], ...], ...] = tuple(
    tuple((b, m) for b, m in _NON_GLOBAL_NETS if (o << 24) & m & 0xFF000000 == b & 0xFF000000)
    for o in range(256)
)


def is_global_unicast(addr: str | bytes | int) -> bool:
    """Whether ``addr`` may be a Teredo endpoint (RFC 4380 §5.2.4 'global').

    Accepts a dotted quad, 4 bytes or an int.  Malformed input is simply
    not global.
    """
    try:
        if isinstance(addr, str):
            value = ipv4_to_int(addr)
        elif isinstance(addr, int):
            if not 0 <= addr <= 0xFFFFFFFF:
                return False
            value = addr
        else:
            if len(addr) != 4:
                return False
            value = int.from_bytes(addr, "big")
    except ValueError:
        return False
    for base, mask in _BY_FIRST_OCTET[(value >> 24) & 0xFF]:
        if value & mask == base:
            return False
    return True


def global_check(allow_loopback: bool = False):
    """The predicate a role uses for "global unicast".

    ``allow_loopback`` also accepts 127.0.0.0/8: only for the embedded demo
    and loopback tests, where every role lives on 127.x addresses.
    """
    if not allow_loopback:
        return is_global_unicast

    def check(addr: str | bytes | int) -> bool:
        if isinstance(addr, str):
            if addr.startswith("127."):
                return True
        elif isinstance(addr, int):
            if addr >> 24 == 127:
                return True
        elif len(addr) == 4 and addr[0] == 127:
            return True
        return is_global_unicast(addr)

    return check


_LOCAL_NETS = tuple(_net(c) for c in DISCOVERY_LOCAL_NETWORKS)


def is_local_scope(addr: str) -> bool:
    """Whether ``addr`` may be a LAN neighbour's address (RFC 4380 §5.2.8).

    Private (RFC 1918) or link-local (RFC 3927), as Miredo master accepts
    discovery bubbles (``DISCOVERY_LOCAL_NETWORKS``).  Malformed input is
    simply not local.
    """
    try:
        value = ipv4_to_int(addr)
    except (ValueError, TypeError, AttributeError):
        return False
    return any(value & mask == base for base, mask in _LOCAL_NETS)
