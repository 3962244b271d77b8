"""Reader for Miredo's configuration syntax (miredo.conf(5), miredo-server.conf(5)).

One ``Name Value`` directive per line, names case-insensitive, ``#`` starts a
comment line.  Like Miredo (``src/conf.c``), only the first whitespace token
of the value is used, and integers accept C prefixes (``0x1f``, ``017``).

Where Miredo only warns, we refuse with a message naming the line, as
``miredo-checkconf`` does: a duplicate directive, a name without a value,
or a directive nobody consumed.  Nothing is silently ignored.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from proxy.errors import ConfigError

__all__ = ["Directive", "MiredoConf", "read_miredo_conf", "KNOWN_DIRECTIVES", "SYSLOG_FACILITIES", "parse_prefix"]

#: Every directive Miredo 1.2.6 (and master) understands, lower-cased.
KNOWN_DIRECTIVES = frozenset(
    {
        "relaytype",
        "serveraddress",
        "serveraddress2",
        "bindaddress",
        "bindport",
        "interfacename",
        "prefix",
        "interfacemtu",
        "serverbindaddress",
        "serverbindaddress2",
        "syslogfacility",
        "localdiscovery",
    }
)

_MAX_LINE = 1055  # Miredo skips longer lines; we refuse them.

#: ``SyslogFacility`` values Miredo accepts (``src/conf.c``).
SYSLOG_FACILITIES = (
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user", "uucp",
    *(f"local{n}" for n in range(8)),
)


def parse_prefix(text: str, field: str) -> int:
    """A Teredo prefix (``Prefix`` / ``--prefix``): an IPv6 address whose first
    32 bits are used, as Miredo reads it, optionally written with ``/32``;
    never multicast."""
    addr, slash, plen = text.partition("/")
    if slash and plen != "32":
        raise ConfigError(field, f"{text!r}: a Teredo prefix is a /32")
    try:
        value = int.from_bytes(ipaddress.IPv6Address(addr).packed[:4], "big")
    except ValueError:
        raise ConfigError(field, f"{text!r} is not an IPv6 prefix") from None
    if value >> 24 == 0xFF:
        raise ConfigError(field, f"{text!r} is a multicast prefix")
    return value


def _c_int(text: str) -> int:
    """An unsigned integer as C's ``strtoul(s, NULL, 0)`` reads it."""
    t = text.lower()
    if t.startswith("0x"):
        return int(t[2:], 16)
    if len(t) > 1 and t.startswith("0"):
        return int(t[1:], 8)
    if not t.isdigit():
        raise ValueError(text)
    return int(t, 10)


@dataclass(frozen=True, slots=True)
class Directive:
    name: str
    "Name as written in the file."
    value: str
    "First token of the value."
    line: int
    "1-based line number."


@dataclass
class MiredoConf:
    """Directives read from one file; consumed one by one by a role's loader."""

    source: str
    "File name, for messages."
    directives: dict[str, Directive] = field(default_factory=dict)
    "By lower-cased name."

    def _where(self, d: Directive) -> str:
        return f"{self.source}:{d.line}: {d.name}"

    def pop_str(self, name: str) -> str | None:
        d = self.directives.pop(name.lower(), None)
        return None if d is None else d.value

    def pop_int(self, name: str, lo: int = 0, hi: int = 65535) -> int | None:
        d = self.directives.pop(name.lower(), None)
        if d is None:
            return None
        try:
            value = _c_int(d.value)
        except ValueError:
            raise ConfigError(self._where(d), f"{d.value!r} is not an integer") from None
        if not lo <= value <= hi:
            raise ConfigError(self._where(d), f"{value} is outside {lo}..{hi}")
        return value

    def pop_ipv4(self, name: str) -> str | None:
        """An IPv4 literal.  (Host names are resolved by the role, not here.)"""
        d = self.directives.pop(name.lower(), None)
        if d is None:
            return None
        try:
            return str(ipaddress.IPv4Address(d.value))
        except ValueError:
            raise ConfigError(self._where(d), f"{d.value!r} is not an IPv4 address") from None

    def pop_host(self, name: str) -> str | None:
        """An IPv4 literal or a host name (validated syntactically only)."""
        d = self.directives.pop(name.lower(), None)
        if d is None:
            return None
        v = d.value
        try:
            return str(ipaddress.IPv4Address(v))
        except ValueError:
            pass
        if len(v) > 253 or not all(lbl and len(lbl) <= 63 and all(c.isalnum() or c == "-" for c in lbl)
                                   for lbl in v.rstrip(".").split(".")):
            raise ConfigError(self._where(d), f"{v!r} is neither an IPv4 address nor a host name")
        return v

    def pop_choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        d = self.directives.pop(name.lower(), None)
        if d is None:
            return None
        v = d.value.lower()
        if v not in choices:
            raise ConfigError(self._where(d), f"{d.value!r} is not one of {', '.join(choices)}")
        return v

    def finish(self) -> None:
        """Refuse whatever the role did not consume (Miredo: "Superfluous directive")."""
        if self.directives:
            d = min(self.directives.values(), key=lambda d: d.line)
            raise ConfigError(self._where(d), "directive not used by this role")


def read_miredo_conf(text: str, source: str = "<config>") -> MiredoConf:
    """Parse the text of a Miredo-syntax file."""
    conf = MiredoConf(source)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(raw) > _MAX_LINE:
            raise ConfigError(f"{source}:{number}", f"line longer than {_MAX_LINE} characters")
        parts = line.split()
        if len(parts) < 2:
            raise ConfigError(f"{source}:{number}: {parts[0]}", "directive without a value")
        name, value = parts[0], parts[1]
        key = name.lower()
        if key not in KNOWN_DIRECTIVES:
            raise ConfigError(f"{source}:{number}: {name}", "unknown directive")
        if key in conf.directives:
            first = conf.directives[key]
            raise ConfigError(f"{source}:{number}: {name}", f"duplicate (first at line {first.line})")
        conf.directives[key] = Directive(name, value, number)
    return conf


def load_miredo_conf(path: str) -> MiredoConf:
    """Read and parse a file; an unreadable file is a ConfigError on ``-c``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("-c", f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("-c", f"{path} is not UTF-8 text") from None
    return read_miredo_conf(text, path)
