"""``teredo-proxy demo``: the embedded Teredo network, on loopback, without root.

At this stage of the project the demo runs the pieces that exist: a Teredo
server on 127.0.0.1 and 127.0.0.2, probed by a qualification exchange
(restricted and cone Router Solicitations) that prints the Teredo address a
client behind this "NAT" would get.  ``--check`` does the exchange once and
exits 0 or 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

from proxy.config.server import ServerConfig
from proxy.constants import LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED
from proxy.errors import ParseError
from proxy.teredo.address import TeredoAddress
from proxy.teredo.messages import parse_router_advertisement, router_solicitation
from proxy.teredo.packet import TeredoPacket
from proxy.apps.server import ServerRunner

__all__ = ["HELP", "add_arguments", "run"]

HELP = "the embedded default: a whole Teredo network in one process, on loopback"
log = logging.getLogger("proxy.apps.demo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="run one exchange through the chain, exit 0 or 1")
    p.add_argument("--server", default="127.0.0.1", metavar="IPV4", help="loopback address of the server")
    p.add_argument("--port", type=int, default=0, help="server UDP port (default: a free one)")


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def qualify_probe(server: tuple[str, int], *, cone: bool, timeout: float = 2.0) -> TeredoAddress | None:
    """Send one RS to ``server`` and turn the RA into a Teredo address."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    nonce = os.urandom(8)
    try:
        await loop.sock_sendto(sock, router_solicitation(nonce, cone=cone), server)
        while True:
            data, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), timeout)
            try:
                packet = TeredoPacket.parse(data)
                if packet.auth is None or packet.auth.nonce != nonce:
                    continue
                answer = parse_router_advertisement(packet)
            except ParseError:
                continue
            flags = 0x8000 if packet.dst == LINK_LOCAL_CONE else 0
            return TeredoAddress(answer.server, flags, answer.mapped[1], answer.mapped[0], answer.prefix)
    except asyncio.TimeoutError:
        return None
    finally:
        sock.close()


async def _demo(args: argparse.Namespace, stop: asyncio.Event) -> int:
    host2 = args.server.rsplit(".", 1)[0] + "." + str(int(args.server.rsplit(".", 1)[1]) + 1)
    port = args.port or _free_udp_port(args.server)
    config = ServerConfig(address=args.server, address2=host2, port=port, forward_native=False,
                          allow_loopback=True).validate()
    runner = ServerRunner(config)
    await runner.start()
    try:
        print(f"Teredo server on {config.address} and {config.address2}, udp/{port}")
        restricted = await qualify_probe((config.address, port), cone=False)
        print(f"  restricted RS -> {'RA, address ' + str(restricted) if restricted else 'no answer'}")
        cone = await qualify_probe((config.address, port), cone=True)
        # Loopback is no NAT: the cone RA comes from the secondary address and
        # still arrives, as it would behind a cone NAT.
        print(f"  cone RS       -> {'RA from the secondary address, address ' + str(cone) if cone else 'no answer'}")
        ok = restricted is not None and cone is not None
        if args.check:
            print("demo check:", "ok" if ok else "FAILED")
            return 0 if ok else 1
        print("The client, relay and SOCKS5 endpoint join the demo in later versions; Ctrl-C stops.")
        await stop.wait()
        return 0
    finally:
        runner.close()


def run(config: object, args: argparse.Namespace) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await _demo(args, stop)

    try:
        return asyncio.run(main())
    except OSError as e:
        print(f"teredo-proxy demo: {e}", file=sys.stderr)
        return 1
