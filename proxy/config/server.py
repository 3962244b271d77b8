"""Teredo server configuration (``teredo-proxy server``, ``miredo-server.conf``).

Sources, lowest priority first: defaults, a Miredo-syntax file
(``ServerBindAddress``, ``ServerBindAddress2``, ``Prefix``, ``InterfaceMTU``,
``SyslogFacility``), then flags.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping

from proxy.config.miredo import SYSLOG_FACILITIES, load_miredo_conf, parse_prefix
from proxy.constants import (
    SERVER_NATIVE_BURST,
    SERVER_NATIVE_RATE,
    SERVER_RS_BURST,
    SERVER_RS_RATE,
    TEREDO_MTU,
    TEREDO_PORT,
    TEREDO_PREFIX,
)
from proxy.errors import ConfigError
from proxy.teredo.ipv4 import global_check

__all__ = ["ServerConfig", "load_auth_keys"]

def load_auth_keys(path: str) -> dict[bytes, bytes]:
    """``client-id:hex-key`` per line, ``#`` comments (secure qualification, RFC 4380 §5.2.2)."""
    keys: dict[bytes, bytes] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ConfigError("--auth-keys", f"cannot read {path}: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        ident, sep, hexkey = line.partition(":")
        try:
            key = bytes.fromhex(hexkey.strip())
        except ValueError:
            key = b""
        if not sep or not ident or not key or len(ident.encode()) > 255:
            raise ConfigError(f"--auth-keys {path}:{n}", "expected client-id:hex-key")
        keys[ident.encode()] = key
    return keys


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server core and its driver need."""

    address: str
    "Primary IPv4 address (ServerBindAddress / --address); embedded in client addresses."
    address2: str
    "Secondary IPv4 address (ServerBindAddress2 / --address2), default primary + 1."
    port: int = TEREDO_PORT
    "UDP port on both addresses (RFC 4380 §2.7: 3544)."
    prefix: int = TEREDO_PREFIX
    "Teredo service prefix, 32 bits (Prefix / --prefix)."
    mtu: int = TEREDO_MTU
    "Link MTU advertised in RAs (InterfaceMTU / --mtu)."
    forward_native: bool = True
    "Forward clients' packets for native IPv6 (echo requests) over a raw socket."
    allow_loopback: bool = False
    "Treat 127.0.0.0/8 as global (embedded demo and loopback tests only)."
    auth_keys: Mapping[bytes, bytes] = field(default_factory=dict)
    "Client id -> key for secure qualification (RFC 4380 §5.2.2)."
    require_auth: bool = False
    "Refuse RSs that do not authenticate with a known key."
    rs_rate: float = SERVER_RS_RATE
    "Router Solicitations per second accepted from one IPv4 address."
    rs_burst: int = SERVER_RS_BURST
    "Burst of Router Solicitations from one IPv4 address."
    native_rate: float = SERVER_NATIVE_RATE
    "Packets per second forwarded to native IPv6, all clients together."
    native_burst: int = SERVER_NATIVE_BURST
    "Burst of native forwarding."
    user: str | None = None
    "Drop privileges to this user after binding (--user)."
    status_file: str | None = None
    "JSON status file, rewritten atomically (--status-file)."
    syslog_facility: str = "daemon"
    "Accepted for Miredo compatibility; logs go to stderr (and so to the journal)."

    def validate(self) -> "ServerConfig":
        is_global = global_check(self.allow_loopback)
        for name, value in (("--address", self.address), ("--address2", self.address2)):
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise ConfigError(name, f"{value!r} is not an IPv4 address") from None
            if not is_global(value):
                raise ConfigError(name, f"{value} is not a global unicast IPv4 address (RFC 4380 §5.3)")
        if self.address == self.address2:
            raise ConfigError("--address2", "must differ from --address (cone NAT detection needs two)")
        if not 1 <= self.port <= 65535:
            raise ConfigError("--port", f"{self.port} is not a port")
        if not 1280 <= self.mtu <= 65535:
            raise ConfigError("--mtu", f"{self.mtu} is outside 1280..65535")
        if self.rs_rate <= 0 or self.rs_burst < 1 or self.native_rate <= 0 or self.native_burst < 1:
            raise ConfigError("--rs-rate", "rates must be positive and bursts at least 1")
        if self.require_auth and not self.auth_keys:
            raise ConfigError("--require-auth", "needs --auth-keys")
        return self

    def describe(self) -> dict[str, Any]:
        """JSON-able resolved settings, for ``check-config`` and the log."""
        return {
            "address": self.address,
            "address2": self.address2,
            "port": self.port,
            "prefix": str(ipaddress.IPv6Network((self.prefix << 96, 32))),
            "mtu": self.mtu,
            "forward_native": self.forward_native,
            "allow_loopback": self.allow_loopback,
            "auth_clients": len(self.auth_keys),
            "require_auth": self.require_auth,
            "rs_rate": self.rs_rate,
            "rs_burst": self.rs_burst,
            "native_rate": self.native_rate,
            "native_burst": self.native_burst,
            "user": self.user,
            "status_file": self.status_file,
            "syslog_facility": self.syslog_facility,
        }

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ServerConfig":
        """Defaults, then ``-c`` file, then flags."""
        settings: dict[str, Any] = {}
        if getattr(args, "config", None):
            conf = load_miredo_conf(args.config)
            for key, value in (
                ("address", conf.pop_ipv4("ServerBindAddress")),
                ("address2", conf.pop_ipv4("ServerBindAddress2")),
                ("mtu", conf.pop_int("InterfaceMTU", 0, 65535)),
                ("syslog_facility", conf.pop_choice("SyslogFacility", SYSLOG_FACILITIES)),
            ):
                if value is not None:
                    settings[key] = value
            prefix = conf.pop_str("Prefix")
            if prefix is not None:
                settings["prefix"] = parse_prefix(prefix, "Prefix")
            conf.finish()
        flags = {
            "address": args.address, "address2": args.address2, "port": args.port, "mtu": args.mtu,
            "user": args.user, "status_file": args.status_file,
            "rs_rate": args.rs_rate, "rs_burst": args.rs_burst,
        }
        settings.update({k: v for k, v in flags.items() if v is not None})
        if args.prefix is not None:
            settings["prefix"] = parse_prefix(args.prefix, "--prefix")
        if args.no_native:
            settings["forward_native"] = False
        if args.allow_loopback:
            settings["allow_loopback"] = True
        if args.auth_keys:
            settings["auth_keys"] = load_auth_keys(args.auth_keys)
        if args.require_auth:
            settings["require_auth"] = True
        if "address" not in settings:
            raise ConfigError("--address", "required (or ServerBindAddress in the -c file)")
        if "address2" not in settings:
            try:
                settings["address2"] = str(ipaddress.IPv4Address(settings["address"]) + 1)
            except (ValueError, ipaddress.AddressValueError):
                raise ConfigError("--address", f"{settings['address']!r} is not an IPv4 address") from None
        return cls(**settings).validate()
