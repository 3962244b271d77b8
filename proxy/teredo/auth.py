"""Secure qualification (RFC 4380 §5.2.2): the authentication value.

When a client and its server share a key, the client's RS carries a client
identifier and an authentication value, and the server's RA carries the
same identifier and its own value computed with the key.  RFC 4380 §5.2.2
makes HMAC-SHA1 the default algorithm, computed over the nonce, the
confirmation byte, the origin indication (when present) and the IPv6
packet, in that order: everything that follows the value in the datagram.

Miredo implements none of this; we do, on both sides, and a deployment
without keys never sees it.
"""

from __future__ import annotations

import hashlib
import hmac

from proxy.teredo.packet import Authentication, OriginIndication

__all__ = ["authentication_value", "authenticate", "verify"]


def authentication_value(
    key: bytes, nonce: bytes, confirmation: int, origin: OriginIndication | None, ipv6: bytes | memoryview
) -> bytes:
    """HMAC-SHA1 (20 bytes) over nonce | confirmation | origin | IPv6 packet."""
    mac = hmac.new(key, digestmod=hashlib.sha1)
    mac.update(nonce)
    mac.update(bytes((confirmation,)))
    if origin is not None:
        mac.update(origin.emit())
    mac.update(ipv6)
    return mac.digest()


def authenticate(
    client_id: bytes, key: bytes, nonce: bytes, ipv6: bytes, origin: OriginIndication | None = None,
    confirmation: int = 0,
) -> Authentication:
    """The indicator a sender with ``key`` attaches to ``ipv6``."""
    return Authentication(
        nonce=nonce,
        confirmation=confirmation,
        client_id=client_id,
        auth_value=authentication_value(key, nonce, confirmation, origin, ipv6),
    )


def verify(auth: Authentication, key: bytes, origin: OriginIndication | None, ipv6: bytes | memoryview) -> bool:
    """Constant-time check of a received indicator."""
    expected = authentication_value(key, auth.nonce, auth.confirmation, origin, ipv6)
    return hmac.compare_digest(expected, auth.auth_value)
