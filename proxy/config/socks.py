"""The SOCKS5 endpoint's settings: ``--socks``, users, ``--ipv4``, timeouts and caps.

Security default: the endpoint listens on loopback.  Binding anywhere else
without RFC 1929 credentials is refused by :meth:`SocksConfig.validate` with
an error naming ``--socks``, so the client never becomes an open proxy by
accident.

Password file (``--socks-password-file FILE``), one user per line::

    # comment lines start with '#'; blank lines are ignored
    alice:correct horse battery staple
    bob:s3cret:with:colons

The user name is everything before the first ``:`` (so it cannot contain
one), the password everything after it up to the end of the line, spaces
included (only the line break is removed).  Both are UTF-8, 1-255 bytes
(RFC 1929 §2).  A duplicate user is an error naming the line.  The file
should be readable by its owner only; a group- or world-readable file is
accepted with a warning.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from proxy.constants import (
    SOCKS_BIND_TIMEOUT,
    SOCKS_CONNECT_TIMEOUT,
    SOCKS_DEFAULT_HOST,
    SOCKS_DEFAULT_PORT,
    SOCKS_HANDSHAKE_BUFFER,
    SOCKS_HANDSHAKE_BUFFER_MIN,
    SOCKS_HANDSHAKE_TIMEOUT,
    SOCKS_IDLE_TIMEOUT,
    SOCKS_MAX_CONNECTIONS,
    SOCKS_MAX_CREDENTIAL,
    SOCKS_RELAY_CHUNK,
    SOCKS_RELAY_HIGH_WATER,
    SOCKS_UDP_IDLE_TIMEOUT,
    SOCKS_UDP_QUEUE,
)
from proxy.errors import ConfigError

__all__ = [
    "SocksConfig", "IPV4_POLICIES", "is_loopback_host", "parse_endpoint",
    "parse_password_file", "load_password_file", "parse_user_spec",
    "add_socks_arguments", "socks_config_from_args",
]

log = logging.getLogger("proxy.config.socks")

#: ``--ipv4``: IPv4 targets leave through the host's network, or get 0x02.
IPV4_POLICIES = ("direct", "refuse")


@dataclass(frozen=True, slots=True, kw_only=True)
class SocksConfig:
    """Everything the SOCKS5 server needs; validated once by :meth:`validate`."""

    host: str = SOCKS_DEFAULT_HOST
    "Listen address (``--socks HOST:PORT``)."
    port: int = SOCKS_DEFAULT_PORT
    "Listen port; 0 picks a free one (tests)."
    users: Mapping[str, str] | None = field(default=None, hash=False, repr=False)
    "RFC 1929 user -> password; None: no authentication (loopback only)."
    ipv4: str = "direct"
    "IPv4 target policy, one of :data:`IPV4_POLICIES`."
    allow_bind: bool = True
    "Serve BIND (else REP 0x07)."
    allow_udp: bool = True
    "Serve UDP ASSOCIATE (else REP 0x07)."
    handshake_timeout: float = SOCKS_HANDSHAKE_TIMEOUT
    "Seconds from accept to a parsed request."
    connect_timeout: float = SOCKS_CONNECT_TIMEOUT
    "Seconds the connector may take for CONNECT/BIND/UDP set-up."
    idle_timeout: float = SOCKS_IDLE_TIMEOUT
    "A relayed TCP connection silent both ways this long is closed."
    udp_idle_timeout: float = SOCKS_UDP_IDLE_TIMEOUT
    "A UDP association silent both ways this long is closed."
    bind_timeout: float = SOCKS_BIND_TIMEOUT
    "Seconds BIND waits for the inbound connection."
    max_connections: int = SOCKS_MAX_CONNECTIONS
    "Client connections served at once; more are closed at accept."
    handshake_buffer: int = SOCKS_HANDSHAKE_BUFFER
    "Bytes the handshake codec may buffer."
    relay_chunk: int = SOCKS_RELAY_CHUNK
    "Relay read size."
    relay_high_water: int = SOCKS_RELAY_HIGH_WATER
    "Per-direction write buffer bound (backpressure point)."
    udp_queue: int = SOCKS_UDP_QUEUE
    "Datagrams queued per association and direction before tail drop."

    @property
    def auth_required(self) -> bool:
        return bool(self.users)

    def validate(self) -> SocksConfig:
        """Check every field; returns self.  Raises ConfigError naming the flag."""
        if not 0 <= self.port <= 0xFFFF:
            raise ConfigError("--socks", f"port {self.port} is outside 0..65535")
        if self.ipv4 not in IPV4_POLICIES:
            raise ConfigError("--ipv4", f"{self.ipv4!r} is not one of {', '.join(IPV4_POLICIES)}")
        for name in ("handshake_timeout", "connect_timeout", "idle_timeout", "udp_idle_timeout", "bind_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"socks.{name}", "must be a positive number of seconds")
        for name in ("max_connections", "handshake_buffer", "relay_chunk", "relay_high_water", "udp_queue"):
            if getattr(self, name) < 1:
                raise ConfigError(f"socks.{name}", "must be at least 1")
        if self.handshake_buffer < SOCKS_HANDSHAKE_BUFFER_MIN:
            raise ConfigError("socks.handshake_buffer",
                              f"must hold a whole handshake ({SOCKS_HANDSHAKE_BUFFER_MIN} bytes)")
        for user, password in (self.users or {}).items():
            _check_credential("--socks-user", user, password)
        if not self.auth_required and not is_loopback_host(self.host):
            raise ConfigError(
                "--socks",
                f"{self.host or '*'} is not a loopback address and no --socks-user or "
                "--socks-password-file is set: refusing to run an open SOCKS5 proxy",
            )
        return self

    def describe(self) -> dict[str, Any]:
        """The resolved settings for ``check-config`` (passwords never shown)."""
        return {
            "socks": f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}",
            "users": sorted(self.users) if self.users else [],
            "ipv4": self.ipv4,
            "bind": self.allow_bind,
            "udp": self.allow_udp,
            "handshake_timeout": self.handshake_timeout,
            "connect_timeout": self.connect_timeout,
            "idle_timeout": self.idle_timeout,
            "udp_idle_timeout": self.udp_idle_timeout,
            "bind_timeout": self.bind_timeout,
            "max_connections": self.max_connections,
        }


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback literals (``127/8``, ``::1``, mapped)."""
    h = host.strip("[]").lower()
    if h in ("localhost", "localhost."):
        return True
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def parse_endpoint(text: str, flag: str = "--socks") -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> ``(host, port)``."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(flag, f"{text!r} is not [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(flag, f"{text!r} is not HOST:PORT (write IPv6 as [ADDR]:PORT)")
    if not host:
        raise ConfigError(flag, f"{text!r} has no host")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 0xFFFF:
        raise ConfigError(flag, f"{port_text!r} is not a port number")
    return host, int(port_text)


def _check_credential(where: str, user: str, password: str) -> None:
    u, p = user.encode("utf-8", "surrogateescape"), password.encode("utf-8", "surrogateescape")
    if not 1 <= len(u) <= SOCKS_MAX_CREDENTIAL:
        raise ConfigError(where, "user name must be 1-255 bytes (RFC 1929)")
    if ":" in user:
        raise ConfigError(where, "user name cannot contain ':'")
    if not 1 <= len(p) <= SOCKS_MAX_CREDENTIAL:
        raise ConfigError(where, f"password of {user!r} must be 1-255 bytes (RFC 1929)")


def parse_user_spec(text: str, flag: str = "--socks-user") -> tuple[str, str]:
    """``USER:PASSWORD`` -> ``(user, password)``."""
    user, sep, password = text.partition(":")
    if not sep:
        raise ConfigError(flag, "expected USER:PASSWORD")
    _check_credential(flag, user, password)
    return user, password


def parse_password_file(text: str, source: str = "<password file>") -> dict[str, str]:
    """Parse the password file format (module docstring)."""
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        where = f"{source}:{number}"
        user, sep, password = raw.partition(":")
        if not sep:
            raise ConfigError(where, "expected user:password")
        _check_credential(where, user, password)
        if user in users:
            raise ConfigError(where, f"duplicate user {user!r}")
        users[user] = password
    return users


def load_password_file(path: str, flag: str = "--socks-password-file") -> dict[str, str]:
    """Read a password file; an unreadable or empty file is a ConfigError on ``flag``."""
    try:
        with open(path, encoding="utf-8") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read()
    except OSError as e:
        raise ConfigError(flag, f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(flag, f"{path} is not UTF-8 text") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; chmod 600 it", path)
    users = parse_password_file(text, path)
    if not users:
        raise ConfigError(flag, f"{path} defines no user")
    return users


def add_socks_arguments(parser: argparse.ArgumentParser) -> None:
    """The client's SOCKS5 flags (CONTRACT.md ``--socks``; issue 6)."""
    g = parser.add_argument_group("SOCKS5 endpoint")
    g.add_argument("--socks", metavar="HOST:PORT", default=None,
                   help=f"listen address (default {SOCKS_DEFAULT_HOST}:{SOCKS_DEFAULT_PORT}); "
                        "a non-loopback address needs credentials")
    g.add_argument("--socks-user", metavar="USER:PASSWORD", action="append", default=None,
                   help="require RFC 1929 authentication (repeatable; visible in ps: prefer the file)")
    g.add_argument("--socks-password-file", metavar="FILE", default=None,
                   help="user:password lines, '#' comments")
    g.add_argument("--ipv4", choices=IPV4_POLICIES, default=None,
                   help="IPv4 targets: leave through the host's network (direct, default) or refuse")


def socks_config_from_args(args: argparse.Namespace, base: SocksConfig | None = None) -> SocksConfig:
    """Apply the flags of :func:`add_socks_arguments` over ``base``; validated."""
    base = base or SocksConfig()
    host, port = base.host, base.port
    if getattr(args, "socks", None):
        host, port = parse_endpoint(args.socks)
    users: dict[str, str] = dict(base.users or {})
    if getattr(args, "socks_password_file", None):
        users.update(load_password_file(args.socks_password_file))
    for spec in getattr(args, "socks_user", None) or ():
        user, password = parse_user_spec(spec)
        users[user] = password
    ipv4 = getattr(args, "ipv4", None) or base.ipv4
    return replace(base, host=host, port=port, users=users or None, ipv4=ipv4).validate()
