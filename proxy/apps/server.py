"""``teredo-proxy server``: the Teredo server core on real sockets.

The composition root: two UDP endpoints (primary and secondary address,
port 3544), a send-only raw IPv6 socket for native forwarding, the
:class:`~proxy.teredo.server.TeredoServer` core between them.  The driver
has no protocol logic: it feeds datagrams in, sends what comes out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Callable

from proxy.config.server import ServerConfig
from proxy.netio import RawIpv6Sender, UdpEndpoint, open_udp
from proxy.privileges import check_user, drop_privileges
from proxy.status import StatusFile
from proxy.teredo.server import TeredoServer

__all__ = ["HELP", "add_arguments", "load_config", "run", "ServerRunner"]

HELP = "Teredo server on two consecutive IPv4 addresses, udp/3544"
log = logging.getLogger("proxy.apps.server")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", metavar="IPV4", help="primary address (ServerBindAddress)")
    p.add_argument("--address2", metavar="IPV4", help="secondary address (ServerBindAddress2; default address + 1)")
    p.add_argument("--port", type=int, help="UDP port on both addresses (default 3544)")
    p.add_argument("--prefix", metavar="PREFIX", help="Teredo prefix (default 2001::/32)")
    p.add_argument("--mtu", type=int, help="link MTU advertised to clients (default 1280)")
    p.add_argument("--no-native", action="store_true", help="do not forward to native IPv6 (no raw socket)")
    p.add_argument("--auth-keys", metavar="FILE", help="client-id:hex-key lines for secure qualification")
    p.add_argument("--require-auth", action="store_true", help="answer only authenticated RSs")
    p.add_argument("--rs-rate", type=float, metavar="N", help="RS per second per client address (default 5)")
    p.add_argument("--rs-burst", type=int, metavar="N", help="RS burst per client address (default 20)")
    p.add_argument("--allow-loopback", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--user", metavar="NAME", help="drop privileges to NAME after binding")
    p.add_argument("--status-file", metavar="PATH", help="JSON status, rewritten atomically")


def load_config(args: argparse.Namespace) -> ServerConfig:
    config = ServerConfig.from_args(args)
    check_user(config.user)
    return config


class ServerRunner:
    """The server core on two UDP sockets; usable in-process (demo, fixtures).

    :param native: where native IPv6 packets go; by default a raw IPv6
        socket when the config forwards to native IPv6.
    """

    def __init__(self, config: ServerConfig, *, native: Callable[[bytes], object] | None = None) -> None:
        self.config = config
        self.core = TeredoServer(config)
        self._native = native
        self._raw: RawIpv6Sender | None = None
        self.endpoints: dict[tuple[str, int], UdpEndpoint] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Bind both sockets (and the raw socket); raises OSError on failure."""
        self.loop = asyncio.get_running_loop()
        if self.config.forward_native and self._native is None:
            self._raw = RawIpv6Sender()
            self._native = self._raw.send
        try:
            for local in (self.core.primary, self.core.secondary):
                sock = open_udp(*local)
                self.endpoints[local] = UdpEndpoint(sock, self._on_batch, self.loop)
        except BaseException:
            self.close()
            raise

    def _on_batch(self, endpoint: UdpEndpoint, batch: list[tuple[bytes, tuple[str, int]]]) -> None:
        core, now, local = self.core, self.loop.time(), endpoint.local
        for data, addr in batch:
            core.datagram_received(data, local, addr, now)
        self.flush()

    def flush(self) -> None:
        for data, local, remote in self.core.datagrams_to_send():
            self.endpoints[local].sendto(data, remote)
        native = self.core.ipv6_to_native()
        if native and self._native is not None:
            for packet in native:
                self._native(packet)

    def counters(self) -> dict[str, object]:
        return {
            "stats": dict(self.core.stats),
            "drops": {r.value: n for r, n in self.core.drops.items()},
        }

    def close(self) -> None:
        for ep in self.endpoints.values():
            ep.close()
        self.endpoints.clear()
        if self._raw is not None:
            self._raw.close()
            self._raw = None


async def serve(config: ServerConfig, stop: asyncio.Event) -> int:
    status = StatusFile(config.status_file, "server")
    status.update(state="starting", server=config.address)
    runner = ServerRunner(config)
    try:
        await runner.start()
    except PermissionError as e:
        log.error("cannot open sockets: %s (port %d and the raw socket need root or CAP_NET_RAW/"
                  "CAP_NET_BIND_SERVICE; --no-native avoids the raw socket)", e, config.port)
        status.update(state="failed")
        return 1
    except OSError as e:
        log.error("cannot bind %s and %s port %d: %s", config.address, config.address2, config.port, e)
        status.update(state="failed")
        return 1
    try:
        drop_privileges(config.user)
    except (OSError, PermissionError) as e:
        log.error("cannot drop privileges to %s: %s", config.user, e)
        runner.close()
        return 1
    log.info("Teredo server on %s and %s port %d, prefix %s/32 (native forwarding %s)",
             config.address, config.address2, config.port, config.describe()["prefix"].split("/")[0],
             "on" if config.forward_native else "off")
    # For a server, "qualified" means serving (the contract's state set).
    status.update(state="qualified", mtu=config.mtu)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=10.0)
            except asyncio.TimeoutError:
                status.update(**runner.counters())
    finally:
        runner.close()
        status.update(**runner.counters())
    log.info("stopped: %s", runner.counters())
    return 0


def run(config: ServerConfig, args: argparse.Namespace) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await serve(config, stop)

    return asyncio.run(main())
