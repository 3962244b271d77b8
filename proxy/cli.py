"""The ``teredo-proxy`` command line (see CONTRACT.md).

This module only parses arguments, sets up logging and hands over to the
role's app module.  Each role module (``proxy.apps.<role>``) provides:

* ``HELP``: one line for ``--help``;
* ``add_arguments(parser)``: its flags;
* ``load_config(args) -> config``: defaults, then ``-c FILE``, then flags;
  raises :class:`~proxy.errors.ConfigError` naming the bad field;
* ``run(config, args) -> int``: the exit code.

Exit codes: 0 clean stop, 1 runtime failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from types import ModuleType

from proxy import __version__
from proxy.errors import ConfigError

__all__ = ["main", "build_parser"]

#: Sub-command -> module.  Roles whose config ``check-config`` can resolve
#: are those with a ``load_config``.
COMMANDS: dict[str, str] = {
    "client": "proxy.apps.client",
    "relay": "proxy.apps.relay",
    "server": "proxy.apps.server",
    "stress": "proxy.apps.stress",
    "demo": "proxy.apps.demo",
}

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("proxy.cli")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its messages, add ours."""


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-c", "--config", metavar="FILE", help="Miredo-syntax configuration file")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: per-packet)")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format")
    return p


def _modules(argv: list[str] | None = None) -> dict[str, ModuleType]:
    """The role modules to register.

    A role's command line imports only that role (a client does not load
    the relay, the stress tool or the demo network: start-up time is part
    of time-to-qualified); help, ``check-config`` and errors get them all.
    """
    first = next((a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")), None)
    names = [first] if first in COMMANDS else list(COMMANDS)
    return {name: importlib.import_module(COMMANDS[name]) for name in names}


def build_parser(modules: dict[str, ModuleType] | None = None) -> argparse.ArgumentParser:
    modules = modules if modules is not None else _modules()
    parser = _Parser(prog="teredo-proxy", description="Teredo client, relay and server (RFC 4380).")
    parser.add_argument("--version", action="version", version=f"teredo-proxy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common()
    for name, mod in modules.items():
        p = sub.add_parser(name, parents=[common], help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
    cc = sub.add_parser(
        "check-config",
        parents=[common],
        help="parse a configuration file, print the resolved settings, exit 0 or 2",
    )
    cc.add_argument("file", metavar="FILE", help="Miredo-syntax configuration file")
    cc.add_argument(
        "--role",
        choices=[n for n, m in modules.items() if hasattr(m, "load_config")],
        help="role to resolve for (default: guessed from the directives)",
    )
    return parser


def _guess_role(path: str, modules: dict[str, ModuleType]) -> str:
    """miredo-server.conf has ServerBindAddress; miredo.conf has RelayType."""
    from proxy.config.miredo import load_miredo_conf

    conf = load_miredo_conf(path)
    names = conf.directives
    if "serverbindaddress" in names or "serverbindaddress2" in names:
        return "server"
    relay_type = names.get("relaytype")
    if relay_type is not None and relay_type.value.lower() in ("relay", "cone", "restricted"):
        return "relay"
    return "client" if "client" in modules else "server"


def _check_config(args: argparse.Namespace, parser: argparse.ArgumentParser, modules: dict[str, ModuleType]) -> int:
    role = args.role or _guess_role(args.file, modules)
    if role not in modules or not hasattr(modules[role], "load_config"):
        raise ConfigError("--role", f"role {role!r} is not available in this build")
    role_args = parser.parse_args([role, "-c", args.file])
    config = modules[role].load_config(role_args)
    print(json.dumps({"role": role, "file": args.file, "settings": config.describe()}, indent=2, sort_keys=True))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    modules = _modules(argv)
    parser = build_parser(modules)
    args = parser.parse_args(argv)
    from proxy.logs import setup_logging

    setup_logging(args.verbose, args.log_format)
    try:
        if args.command == "check-config":
            return _check_config(args, parser, modules)
        mod = modules[args.command]
        config = mod.load_config(args) if hasattr(mod, "load_config") else None
        return int(mod.run(config, args))
    except ConfigError as e:
        print(f"teredo-proxy: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
