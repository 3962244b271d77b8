"""Teredo client configuration (``teredo-proxy client``, ``miredo.conf``).

Sources, lowest priority first: defaults, a Miredo-syntax file
(``RelayType client``, ``ServerAddress``, ``ServerAddress2``, ``BindAddress``,
``BindPort``, ``InterfaceName``, ``InterfaceMTU``, ``SyslogFacility``,
``LocalDiscovery`` of Miredo master), then
flags.  ``--server`` may be repeated (or given as a comma list): the client
fails over across the list.  ``InterfaceName`` is accepted and unused (the
client has no TUN: its IPv6 stack lives in the process).
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from proxy.config.miredo import SYSLOG_FACILITIES, load_miredo_conf
from proxy.config.socks import SocksConfig, socks_config_from_args
from proxy.constants import REFRESH_INTERVAL, TEREDO_PORT
from proxy.errors import ConfigError
from proxy.teredo.ipv4 import global_check

__all__ = ["ClientConfig", "split_servers"]

RELAY_TYPES_CLIENT = ("client", "autoclient")
#: Boolean words of Miredo's configuration parser.
_ON = ("enabled", "yes", "true", "on")
_OFF = ("disabled", "no", "false", "off")


def _is_hostname(v: str) -> bool:
    return len(v) <= 253 and all(
        lbl and len(lbl) <= 63 and all(c.isalnum() or c == "-" for c in lbl) for lbl in v.rstrip(".").split(".")
    )


def split_servers(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Flatten repeated/comma-separated ``--server`` values, keeping order, no duplicates."""
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return tuple(out)


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client core and its driver need."""

    servers: tuple[str, ...]
    "Teredo servers in failover order: IPv4 literals or host names (ServerAddress / --server)."
    server2: str | None = None
    "Secondary address of the first server (ServerAddress2 / --server2); default: its primary + 1."
    server_port: int = TEREDO_PORT
    "UDP port of the servers (RFC 4380 §2.7: 3544; tests use others)."
    bind: str = "0.0.0.0"
    "Local IPv4 address (BindAddress / --bind)."
    port: int = 0
    "Local UDP port (BindPort / --port); 0 = random, as RFC 4380 §5.2 advises."
    socks: SocksConfig = field(default_factory=SocksConfig)
    "SOCKS5 endpoint: --socks, --socks-user, --socks-password-file, --ipv4."
    status_file: str | None = None
    "JSON status file, rewritten atomically (--status-file)."
    interface_name: str | None = None
    "InterfaceName: accepted for Miredo compatibility, unused (no TUN)."
    mtu: int | None = None
    "InterfaceMTU: accepted; the link MTU comes from the server's RA."
    syslog_facility: str = "daemon"
    "Accepted for Miredo compatibility; logs go to stderr."
    refresh_interval: float = REFRESH_INTERVAL
    "RFC 4380 §5.2.5 refresh interval (randomised to 75-100 %)."
    cone_probe: bool = True
    "Run the RFC 4380 §5.2.1 cone test (an RS from the cone link-local address)."
    separate_probe: bool = True
    "Compare the primary/secondary mappings from a second socket (see qualification.py)."
    accept_symmetric: bool = True
    "RFC 6081 §3.1 / §5.2: keep the address behind a symmetric NAT (RFC 4380 alone refuses)."
    hairpinning: bool = True
    "RFC 6081 §3.5 / §5.6: advertise the local endpoint in bubbles (Alternate Address trailer)."
    local_discovery: bool = False
    "RFC 4380 §5.2.8 multicast local discovery (LocalDiscovery / --local-discovery); off as in Miredo master."
    auth_id: bytes = b""
    "Secure qualification client identifier (RFC 4380 §5.2.2); empty = off."
    auth_key: bytes = b""
    "Secure qualification key shared with the server."
    allow_loopback: bool = False
    "Treat 127.0.0.0/8 as global (loopback tests and the embedded demo only)."

    def validate(self) -> "ClientConfig":
        if not self.servers:
            raise ConfigError("--server", "at least one Teredo server is required (or ServerAddress in -c)")
        is_global = global_check(self.allow_loopback)
        for s in self.servers:
            try:
                ipaddress.IPv4Address(s)
            except ValueError:
                if not _is_hostname(s):
                    raise ConfigError("--server", f"{s!r} is neither an IPv4 address nor a host name") from None
                continue
            if not is_global(s):
                raise ConfigError("--server", f"{s} is not a global unicast IPv4 address (RFC 4380 §5.2)")
        if self.server2 is not None:
            try:
                ipaddress.IPv4Address(self.server2)
            except ValueError:
                raise ConfigError("--server2", f"{self.server2!r} is not an IPv4 address") from None
        try:
            ipaddress.IPv4Address(self.bind)
        except ValueError:
            raise ConfigError("--bind", f"{self.bind!r} is not an IPv4 address") from None
        for name, value in (("--port", self.port), ("--server-port", self.server_port)):
            if not 0 <= value <= 65535 or (name == "--server-port" and value == 0):
                raise ConfigError(name, f"{value} is not a port")
        if self.mtu is not None and self.mtu and not 1280 <= self.mtu <= 65535:
            raise ConfigError("InterfaceMTU", f"{self.mtu} is outside 1280..65535")
        if not 5.0 <= self.refresh_interval <= 3600.0:
            raise ConfigError("--refresh", f"{self.refresh_interval} s is outside 5..3600")
        if bool(self.auth_id) != bool(self.auth_key):
            raise ConfigError("--auth-id", "secure qualification needs both --auth-id and --auth-key")
        if len(self.auth_id) > 255 or len(self.auth_key) > 255:
            raise ConfigError("--auth-id", "client id and key are at most 255 bytes")
        return self

    def describe(self) -> dict[str, Any]:
        """JSON-able resolved settings, for ``check-config`` and the log."""
        return {
            "servers": list(self.servers),
            "server2": self.server2,
            "server_port": self.server_port,
            "bind": self.bind,
            "port": self.port,
            "socks": self.socks.describe(),
            "status_file": self.status_file,
            "interface_name": self.interface_name,
            "mtu": self.mtu,
            "syslog_facility": self.syslog_facility,
            "refresh_interval": self.refresh_interval,
            "cone_probe": self.cone_probe,
            "separate_probe": self.separate_probe,
            "accept_symmetric": self.accept_symmetric,
            "hairpinning": self.hairpinning,
            "local_discovery": self.local_discovery,
            "secure_qualification": bool(self.auth_id),
            "allow_loopback": self.allow_loopback,
        }

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ClientConfig":
        """Defaults, then the ``-c`` file, then flags."""
        settings: dict[str, Any] = {}
        servers: list[str] = []
        if getattr(args, "config", None):
            conf = load_miredo_conf(args.config)
            relay_type = conf.pop_choice("RelayType", ("client", "autoclient", "relay", "cone", "restricted"))
            if relay_type is not None and relay_type not in RELAY_TYPES_CLIENT:
                raise ConfigError("RelayType", f"{relay_type!r} is a relay: use `teredo-proxy relay`")
            s1 = conf.pop_host("ServerAddress")
            if s1:
                servers.append(s1)
            s2 = conf.pop_ipv4("ServerAddress2")
            if s2:
                settings["server2"] = s2
            for key, value in (
                ("bind", conf.pop_ipv4("BindAddress")),
                ("port", conf.pop_int("BindPort", 0, 65535)),
                ("interface_name", conf.pop_str("InterfaceName")),
                ("mtu", conf.pop_int("InterfaceMTU", 0, 65535)),
                ("syslog_facility", conf.pop_choice("SyslogFacility", SYSLOG_FACILITIES)),
            ):
                if value is not None:
                    settings[key] = value
            # Miredo master: LocalDiscovery takes its boolean words (conf.c parse_bool).
            discovery = conf.pop_choice("LocalDiscovery", _ON + _OFF)
            if discovery is not None:
                settings["local_discovery"] = discovery in _ON
            conf.finish()
        if getattr(args, "server", None):
            servers = list(split_servers(args.server))  # flags replace the file's server
        settings["servers"] = tuple(servers)
        flags = {
            "server2": getattr(args, "server2", None), "bind": getattr(args, "bind", None),
            "port": getattr(args, "port", None), "status_file": getattr(args, "status_file", None),
            "server_port": getattr(args, "server_port", None), "refresh_interval": getattr(args, "refresh", None),
        }
        settings.update({k: v for k, v in flags.items() if v is not None})
        settings["socks"] = socks_config_from_args(args)
        if getattr(args, "no_cone_probe", False):
            settings["cone_probe"] = False
        if getattr(args, "single_socket", False):
            settings["separate_probe"] = False
        if getattr(args, "refuse_symmetric", False):
            settings["accept_symmetric"] = False
        if getattr(args, "no_hairpinning", False):
            settings["hairpinning"] = False
        if getattr(args, "local_discovery", False):
            settings["local_discovery"] = True
        if getattr(args, "allow_loopback", False):
            settings["allow_loopback"] = True
        if getattr(args, "auth_id", None):
            settings["auth_id"] = args.auth_id.encode()
        if getattr(args, "auth_key", None):
            try:
                settings["auth_key"] = bytes.fromhex(args.auth_key)
            except ValueError:
                raise ConfigError("--auth-key", "expected hexadecimal") from None
        return cls(**settings).validate()
