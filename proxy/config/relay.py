"""The relay's configuration: defaults, then a Miredo-syntax file, then flags.

A Miredo relay's ``miredo.conf`` is accepted as is (miredo.conf(5)):
``RelayType`` (``relay`` or ``cone``: a relay with a public address or
behind a cone NAT, sends indirect bubbles only; ``restricted``: behind a
restricted NAT, also sends direct bubbles), ``BindAddress``, ``BindPort``,
``InterfaceName``, ``Prefix``, ``InterfaceMTU``, ``SyslogFacility``.
Directives meant for a client (``ServerAddress``...) are refused, as
``miredo-checkconf`` refuses superfluous ones.
"""

from __future__ import annotations

import argparse
import ipaddress
import pwd
from dataclasses import asdict, dataclass, replace
from typing import Any

from proxy.config.miredo import SYSLOG_FACILITIES, MiredoConf, load_miredo_conf, parse_prefix
from proxy.constants import IPV6_MIN_MTU, RELAY_MAX_PEERS, RELAY_MTU, TEREDO_PORT, TEREDO_PREFIX
from proxy.errors import ConfigError

__all__ = ["RelayConfig", "RELAY_TYPES", "NATIVE_BACKENDS", "SYSLOG_FACILITIES", "parse_prefix"]

RELAY_TYPES = ("relay", "cone", "restricted")
NATIVE_BACKENDS = ("tun", "raw", "memory")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Everything ``teredo-proxy relay`` needs; validated once by :meth:`validate`."""

    relay_type: str = "cone"
    "RelayType: relay/cone (indirect bubbles only) or restricted (direct bubbles too)."
    bind: str = "0.0.0.0"
    "BindAddress / --bind: IPv4 address of the UDP socket."
    port: int = TEREDO_PORT
    "BindPort / --port: UDP port (Miredo relays use 3544)."
    native: str = "tun"
    "--native: tun, raw or memory."
    interface: str = "teredo"
    "InterfaceName / --interface: the TUN device to create, or the capture interface for raw."
    prefix: int = TEREDO_PREFIX
    "Prefix / --prefix: the Teredo /32 served, as an integer."
    mtu: int = RELAY_MTU
    "InterfaceMTU / --mtu."
    route: bool = True
    "Route the prefix to the TUN device (--no-route leaves it to the operator)."
    user: str | None = None
    "--user: drop to this account after opening the sockets and the device."
    status_file: str | None = None
    "--status-file: JSON status rewritten atomically."
    syslog_facility: str = "daemon"
    "SyslogFacility: accepted for compatibility; logs go to stderr (journald takes them)."
    max_peers: int = RELAY_MAX_PEERS
    "--max-peers: hard cap of the peer table."
    icmp_source: str | None = None
    "--icmp-source: source of ICMPv6 errors (default: the host's first global IPv6 address)."
    source: str | None = None
    "The configuration file read, if any."

    @property
    def direct_bubbles(self) -> bool:
        """RelayType restricted: the relay is behind a restricted NAT and must open it."""
        return self.relay_type == "restricted"

    def validate(self) -> "RelayConfig":
        """Check every field; raise ConfigError naming the first bad one."""
        try:
            ipaddress.IPv4Address(self.bind)
        except ValueError:
            raise ConfigError("--bind", f"{self.bind!r} is not an IPv4 address") from None
        if not 0 <= self.port <= 65535:
            raise ConfigError("--port", f"{self.port} is outside 0..65535")
        if self.native not in NATIVE_BACKENDS:
            raise ConfigError("--native", f"{self.native!r} is not one of {', '.join(NATIVE_BACKENDS)}")
        if not self.interface or len(self.interface.encode()) > 15 or "/" in self.interface or " " in self.interface:
            raise ConfigError("--interface", f"{self.interface!r} is not a valid interface name (1-15 bytes)")
        if not IPV6_MIN_MTU <= self.mtu <= 65535:
            raise ConfigError("--mtu", f"{self.mtu} is outside {IPV6_MIN_MTU}..65535")
        if self.relay_type not in RELAY_TYPES:
            raise ConfigError("RelayType", f"{self.relay_type!r} is not one of {', '.join(RELAY_TYPES)}")
        if self.max_peers < 1:
            raise ConfigError("--max-peers", "must be at least 1")
        if self.user is not None:
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                raise ConfigError("--user", f"no such user {self.user!r}") from None
        if self.icmp_source is not None:
            try:
                ipaddress.IPv6Address(self.icmp_source)
            except ValueError:
                raise ConfigError("--icmp-source", f"{self.icmp_source!r} is not an IPv6 address") from None
        return self

    def describe(self) -> dict[str, Any]:
        """The resolved settings as a JSON-able dict (``check-config``, the status file)."""
        d = asdict(self)
        d["prefix"] = f"{ipaddress.IPv6Address(self.prefix.to_bytes(4, 'big') + bytes(12))}/32"
        d["direct_bubbles"] = self.direct_bubbles
        return d

    # -- loading -------------------------------------------------------------------
    @classmethod
    def from_miredo(cls, conf: MiredoConf, base: "RelayConfig | None" = None) -> "RelayConfig":
        """Apply a Miredo-syntax file on top of ``base`` (defaults)."""
        c = base or cls()
        changes: dict[str, Any] = {"source": conf.source}
        rt = conf.pop_choice("RelayType", ("client", "autoclient", *RELAY_TYPES))
        if rt in ("client", "autoclient"):
            raise ConfigError(f"{conf.source}: RelayType", f"{rt!r} configures a client, not a relay")
        if rt is not None:
            changes["relay_type"] = rt
        if (v := conf.pop_ipv4("BindAddress")) is not None:
            changes["bind"] = v
        if (v := conf.pop_int("BindPort", 0, 65535)) is not None:
            changes["port"] = v
        if (v := conf.pop_str("InterfaceName")) is not None:
            changes["interface"] = v
        if (v := conf.pop_str("Prefix")) is not None:
            changes["prefix"] = parse_prefix(v, f"{conf.source}: Prefix")
        if (v := conf.pop_int("InterfaceMTU", 0, 65535)) is not None:
            if v < IPV6_MIN_MTU:
                raise ConfigError(f"{conf.source}: InterfaceMTU", f"{v} is below the IPv6 minimum {IPV6_MIN_MTU}")
            changes["mtu"] = v
        if (v := conf.pop_choice("SyslogFacility", SYSLOG_FACILITIES)) is not None:
            changes["syslog_facility"] = v
        conf.finish()
        return replace(c, **changes)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RelayConfig":
        """Defaults, then ``-c FILE``, then flags; validated."""
        c = cls()
        if getattr(args, "config", None):
            c = cls.from_miredo(load_miredo_conf(args.config), c)
        changes: dict[str, Any] = {}
        for name in ("bind", "port", "native", "interface", "mtu", "user", "status_file", "max_peers",
                     "icmp_source", "relay_type"):
            v = getattr(args, name, None)
            if v is not None:
                changes[name] = v
        if getattr(args, "prefix", None) is not None:
            changes["prefix"] = parse_prefix(args.prefix, "--prefix")
        if getattr(args, "no_route", False):
            changes["route"] = False
        return replace(c, **changes).validate()
