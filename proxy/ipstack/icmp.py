"""ICMPv6 policy: which errors we may send, how fast, and what received ones mean.

Theory of operation
-------------------

*Sending errors* (RFC 4443 §2.4).  :func:`error_forbidden` applies rule (e):
never in response to an ICMPv6 error or a Redirect (e.1, e.2), never to a
packet sent to a multicast group except Packet Too Big and Parameter Problem
code 2 for an option with action ``10`` (e.3), never to a source that does not
name a single node (e.6: unspecified or multicast).  Rules (e.4)/(e.5) are
about link-layer multicast/broadcast, which our point-to-point links lack.
:class:`TokenBucket` is rule (f)'s rate limiter.  :func:`build_error` quotes
as much of the invoking packet as fits the 1280-byte minimum MTU (rule (c)).

*Receiving errors* (RFC 4443 §2.4(d), RFC 1122 §4.2.3.9).
:func:`error_kind` maps type and code to the vocabulary TCP connections and
UDP sockets understand (the strings of the TCP contract), much as Linux's
``icmpv6_err_convert`` maps them to errno values.

*Path MTU* (RFC 8201).  :class:`PmtuCache` remembers lowered estimates per
destination, never below 1280 (§4: "MUST NOT reduce ... below the IPv6
minimum link MTU") and never raised by a Packet Too Big; estimates age out
after ``PMTU_AGING`` so a path that got better is found again.
"""

from __future__ import annotations

from proxy.constants import (
    ICMP_ERROR_MAX_PACKET,
    IPV6_MIN_MTU,
    PMTU_AGING,
    PMTU_CACHE_SIZE,
)
from proxy.ipstack.wire.icmpv6 import (
    Icmpv6Error,
    Icmpv6Type,
    UnreachableCode,
)
from proxy.ipstack.wire.ipv6 import (
    IPV6_HEADER,
    IPV6_HEADER_LEN,
    NextHeader,
    ParamProblemCode,
    find_upper_layer,
    UNSPECIFIED,
)

__all__ = [
    "TokenBucket",
    "PmtuCache",
    "error_forbidden",
    "error_kind",
    "build_error",
    "ERROR_KINDS",
]

_REDIRECT = 137

#: Every kind :func:`error_kind` can return; the first six are the TCP
#: contract's, "parameter-problem" and "packet-too-big:<mtu>" complete them.
ERROR_KINDS = (
    "unreachable-net",
    "unreachable-host",
    "unreachable-port",
    "admin-prohibited",
    "time-exceeded",
    "parameter-problem",
    "packet-too-big:<mtu>",
)

_UNREACHABLE_KINDS = {
    UnreachableCode.NO_ROUTE: "unreachable-net",
    UnreachableCode.ADMIN_PROHIBITED: "admin-prohibited",
    UnreachableCode.BEYOND_SCOPE: "unreachable-host",
    UnreachableCode.ADDRESS: "unreachable-host",
    UnreachableCode.PORT: "unreachable-port",
    UnreachableCode.SOURCE_POLICY: "admin-prohibited",
    UnreachableCode.REJECT_ROUTE: "admin-prohibited",
}


class TokenBucket:
    """RFC 4443 §2.4(f) token bucket: ``rate`` tokens per second, ``burst`` deep."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp: float | None = None

    def consume(self, now: float) -> bool:
        """Take one token if there is one; time going backwards adds nothing."""
        if self._stamp is not None and now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        if self._stamp is None or now > self._stamp:
            self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def error_forbidden(packet: bytes | bytearray | memoryview, *, to_multicast: bool) -> bool:
    """RFC 4443 §2.4(e): must we stay silent about ``packet``?

    :param to_multicast: the error is one of the two §2.4(e.3) exceptions
        (Packet Too Big, Parameter Problem code 2 with option action ``10``).
    """
    if len(packet) < IPV6_HEADER_LEN:
        return True
    src = bytes(packet[8:24])
    if src == UNSPECIFIED or src[0] == 0xFF:
        return True  # (e.6)
    if packet[24] == 0xFF and not to_multicast:
        return True  # (e.3)
    end = IPV6_HEADER_LEN + (packet[4] << 8 | packet[5])
    found = find_upper_layer(packet, end)
    if found is not None:
        proto, off = found
        if proto == NextHeader.ICMPV6 and off < min(end, len(packet)):
            typ = packet[off]
            if typ < 128 or typ == _REDIRECT:
                return True  # (e.1), (e.2)
    return False


def error_kind(typ: int, code: int, param: int) -> str | None:
    """What a received ICMPv6 error means to the socket it concerns.

    Returns None for messages no socket needs to hear about (Parameter
    Problem codes other than 1: RFC 1122 §4.2.3.9 makes them soft errors
    the transport may ignore).
    """
    if typ == Icmpv6Type.DEST_UNREACHABLE:
        return _UNREACHABLE_KINDS.get(code, "unreachable-host")  # type: ignore[call-overload]
    if typ == Icmpv6Type.PACKET_TOO_BIG:
        return f"packet-too-big:{max(param, IPV6_MIN_MTU)}"
    if typ == Icmpv6Type.TIME_EXCEEDED:
        return "time-exceeded"
    if typ == Icmpv6Type.PARAMETER_PROBLEM:
        # Code 1 pointing at a Next Header is IPv6's "protocol unreachable",
        # a hard error like port unreachable (RFC 1122 §4.2.3.9).
        if code == ParamProblemCode.UNRECOGNIZED_NEXT_HEADER:
            return "unreachable-port"
        return "parameter-problem"
    return None


def build_error(
    typ: int,
    code: int,
    param: int,
    invoking: bytes | bytearray | memoryview,
    src: bytes,
    dst: bytes,
    hop_limit: int,
) -> bytes:
    """The whole IPv6 packet carrying an error about ``invoking``.

    RFC 4443 §2.4(c): the quote is cut so the packet fits 1280 bytes.
    """
    msg = Icmpv6Error(typ, code, param, bytes(invoking[: ICMP_ERROR_MAX_PACKET - 48])).emit(
        src, dst, ICMP_ERROR_MAX_PACKET - IPV6_HEADER_LEN
    )
    return IPV6_HEADER.pack(6 << 28, len(msg), NextHeader.ICMPV6, hop_limit, src, dst) + msg


class PmtuCache:
    """Per-destination Path MTU estimates (RFC 8201), bounded and aging."""

    def __init__(
        self, link_mtu: int, *, size: int = PMTU_CACHE_SIZE, aging: float = PMTU_AGING
    ) -> None:
        if link_mtu < IPV6_MIN_MTU:
            raise ValueError(f"link MTU {link_mtu} below the IPv6 minimum {IPV6_MIN_MTU}")
        self.link_mtu = link_mtu
        self.size = size
        self.aging = aging
        self._table: dict[bytes, tuple[int, float]] = {}

    def __len__(self) -> int:
        return len(self._table)

    def get(self, dst: bytes, now: float) -> int:
        """The MTU to use towards ``dst``."""
        entry = self._table.get(dst)
        if entry is None:
            return self.link_mtu
        mtu, expires = entry
        if now >= expires:
            del self._table[dst]
            return self.link_mtu
        return min(mtu, self.link_mtu)

    def update(self, dst: bytes, mtu: int, now: float) -> int | None:
        """Apply a Packet Too Big; return the new estimate if it went down."""
        mtu = max(mtu, IPV6_MIN_MTU)
        if mtu >= self.get(dst, now):
            return None  # RFC 8201 §4: a PTB never raises the estimate
        self._table.pop(dst, None)
        self._table[dst] = (mtu, now + self.aging)
        while len(self._table) > self.size:
            del self._table[next(iter(self._table))]
        return mtu
