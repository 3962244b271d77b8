"""``teredo-proxy relay``: a Teredo relay (RFC 4380 §5.4) on UDP/IPv4 and native IPv6.

Composition root: open the native link (TUN, raw sockets or the in-memory
pair) and the UDP socket while privileged, then drop to ``--user``, then
run the :class:`~proxy.teredo.relay.TeredoRelay` core under the asyncio
driver (uvloop when installed) until SIGINT/SIGTERM.  One process: see
docs/relay.md for why there are no worker processes.

Exit codes (CONTRACT.md): 0 on a clean stop, 1 when the relay cannot run
(no permission for the TUN device, port in use...), 2 for a bad
configuration (raised as ConfigError before anything is opened).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
from typing import Any

from proxy.config.relay import NATIVE_BACKENDS, RELAY_TYPES, RelayConfig
from proxy.native.base import NativeLinkError
from proxy.status import StatusFile
from proxy.teredo.peers import PeerTable
from proxy.teredo.relay import TeredoRelay
from proxy.privileges import drop_privileges
from proxy.teredo.relay_asyncio import RelayDriver, open_udp_socket

__all__ = ["HELP", "add_arguments", "load_config", "run", "open_link", "find_icmp_source"]

HELP = "Teredo relay: UDP/IPv4 clients on one side, native IPv6 (TUN or raw sockets) on the other"

log = logging.getLogger("proxy.apps.relay")

STATUS_INTERVAL = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bind", metavar="IPV4", help="IPv4 address of the UDP socket (default 0.0.0.0)")
    p.add_argument("--port", type=int, metavar="N", help="UDP port (default 3544)")
    p.add_argument("--native", choices=NATIVE_BACKENDS, help="native IPv6 backend (default tun)")
    p.add_argument("--interface", metavar="NAME", help="TUN device to create, or capture interface for raw (default teredo)")
    p.add_argument("--prefix", metavar="PREFIX", help="Teredo prefix served (default 2001::/32)")
    p.add_argument("--mtu", type=int, metavar="N", help="tunnel MTU (default 1280)")
    p.add_argument("--no-route", action="store_true", help="do not route the prefix to the TUN device")
    p.add_argument("--relay-type", choices=RELAY_TYPES, help="as Miredo's RelayType (default cone)")
    p.add_argument("--user", metavar="NAME", help="drop privileges to this user after setup")
    p.add_argument("--status-file", metavar="PATH", help="JSON status, rewritten atomically")
    p.add_argument("--max-peers", type=int, metavar="N", help="peer table capacity (default 1048576)")
    p.add_argument("--icmp-source", metavar="IPV6", help="source of ICMPv6 errors (default: first global address)")


def load_config(args: argparse.Namespace) -> RelayConfig:
    return RelayConfig.from_args(args)


# -- setup helpers ------------------------------------------------------------------


def open_link(config: RelayConfig):
    """The native link the configuration asks for (NativeLinkError if impossible)."""
    if config.native == "tun":
        from proxy.native.tun_linux import TunLink

        route = config.prefix.to_bytes(4, "big") if config.route else None
        return TunLink(config.interface, config.mtu, route_prefix=route)
    if config.native == "raw":
        from proxy.native.raw_socket import RawLink

        return RawLink(config.interface, config.prefix, config.mtu)
    from proxy.native.memory import MemoryLink

    return MemoryLink(config.mtu)


def find_icmp_source(exclude_interface: str, prefix: int) -> bytes | None:
    """The host's first usable global IPv6 address (from /proc/net/if_inet6).

    Skips the relay's own interface, Teredo addresses, and tentative,
    deprecated or DAD-failed addresses.
    """
    try:
        with open("/proc/net/if_inet6") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) != 6:
            continue
        hexaddr, _idx, _plen, scope, flags, ifname = parts
        raw = bytes.fromhex(hexaddr)
        if ifname == exclude_interface or int(scope, 16) != 0 or int(flags, 16) & 0x68:
            continue
        addr = ipaddress.IPv6Address(raw)
        if addr.is_loopback or addr.is_link_local or addr.is_multicast or int.from_bytes(raw[:4], "big") == prefix:
            continue
        return raw
    return None


def use_uvloop() -> bool:
    """Install uvloop's event loop policy when the package is present."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def make_core(config: RelayConfig, link, icmp_source: bytes | None) -> TeredoRelay:
    return TeredoRelay(
        secret=os.urandom(32),
        prefix=config.prefix,
        mtu=config.mtu,
        direct_bubbles=config.direct_bubbles,
        router=link.router,
        icmp_source=icmp_source,
        peers=PeerTable(config.max_peers),
    )


def update_status(status: StatusFile, **fields: Any) -> None:
    """Write the status file; a failure (e.g. no permission after --user) is logged, not fatal."""
    try:
        status.update(**fields)
    except OSError as e:
        if status.path:
            log.warning("cannot write status file %s: %s", status.path, e.strerror or e)
            status.path = None  # stop trying


def status_fields(core: TeredoRelay, driver: RelayDriver) -> dict[str, Any]:
    return {
        "peers": len(core.peers),
        "to_native": core.to_native,
        "to_teredo": core.to_teredo,
        "drops": {r.value: n for r, n in core.drops.items()},
        "events": dict(core.counters),
        "errors": dict(driver.errors),
    }


# -- running ---------------------------------------------------------------------------


async def serve(config: RelayConfig, core: TeredoRelay, sock, link, status: StatusFile,
                stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM when ``stop`` is None)."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    driver = RelayDriver(core, sock, link, loop)
    driver.start()
    update_status(status, state="qualified", mtu=config.mtu, address=f"{config.bind}:{sock.getsockname()[1]}",
                  **status_fields(core, driver))
    log.info("relay up: udp %s:%d, native %s %s, prefix %s", config.bind, sock.getsockname()[1], config.native,
             link.name, config.describe()["prefix"])
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), STATUS_INTERVAL)
            except asyncio.TimeoutError:
                update_status(status, **status_fields(core, driver))
    finally:
        driver.stop()
        update_status(status, **status_fields(core, driver))
        log.info("relay stopped: %d to native, %d to Teredo, %d peers", core.to_native, core.to_teredo, len(core.peers))


def run(config: RelayConfig, args: argparse.Namespace) -> int:
    status = StatusFile(config.status_file, "relay")
    update_status(status, settings=config.describe())
    try:
        link = open_link(config)
    except NativeLinkError as e:
        print(f"teredo-proxy relay: {e}", file=sys.stderr)
        update_status(status, state="failed", error=str(e))
        return 1
    try:
        sock = open_udp_socket(config.bind, config.port)
    except OSError as e:
        link.close()
        print(f"teredo-proxy relay: cannot bind UDP {config.bind}:{config.port}: {e.strerror or e}", file=sys.stderr)
        update_status(status, state="failed", error=str(e))
        return 1
    icmp = (ipaddress.IPv6Address(config.icmp_source).packed if config.icmp_source
            else find_icmp_source(link.name, config.prefix))
    if icmp is None:
        log.warning("no global IPv6 address for ICMPv6 errors (--icmp-source): errors will not be sent")
    core = make_core(config, link, icmp)
    uv = use_uvloop()  # imported while the package directories are still readable
    log.debug("event loop: %s", "uvloop" if uv else "asyncio")
    try:
        if config.user:
            drop_privileges(config.user)
    except OSError as e:
        print(f"teredo-proxy relay: cannot drop privileges to {config.user}: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve(config, core, sock, link, status))
    finally:
        sock.close()
        link.close()
    return 0
