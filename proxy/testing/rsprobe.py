"""``python -m proxy.testing.rsprobe``: ask a Teredo server what it sees of us.

Sends one qualification RS (restricted or cone) from a chosen local port and
prints what the RA says as one JSON line: the mapped endpoint, the address a
client would form, and which server address answered.  A diagnostic for
people and a probe for the interop tests (it runs inside a namespace).
Exit 0 on an answer, 1 on none.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

from proxy.constants import LINK_LOCAL_CONE, TEREDO_PORT
from proxy.errors import ParseError
from proxy.teredo.address import TeredoAddress
from proxy.teredo.messages import parse_router_advertisement, router_solicitation
from proxy.teredo.packet import TeredoPacket


def probe(server: str, *, port: int = TEREDO_PORT, cone: bool = False, bind: tuple[str, int] = ("0.0.0.0", 0),
          timeout: float = 3.0, tries: int = 3) -> dict | None:
    """Send up to ``tries`` RSs; return the first valid answer as a dict."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(bind)
        for _ in range(tries):
            nonce = os.urandom(8)
            sock.sendto(router_solicitation(nonce, cone=cone), (server, port))
            deadline = time.monotonic() + timeout / tries
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, addr = sock.recvfrom(2048)
                except socket.timeout:
                    break
                try:
                    packet = TeredoPacket.parse(data)
                    if packet.auth is None or packet.auth.nonce != nonce:
                        continue
                    ans = parse_router_advertisement(packet)
                except ParseError:
                    continue
                flags = 0x8000 if packet.dst == LINK_LOCAL_CONE else 0
                address = TeredoAddress(ans.server, flags, ans.mapped[1], ans.mapped[0], ans.prefix)
                return {"answered_from": list(addr), "mapped": list(ans.mapped), "address": str(address),
                        "mtu": ans.mtu, "cone": ans.cone}
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m proxy.testing.rsprobe", description=__doc__.splitlines()[0])
    p.add_argument("server", help="server IPv4 address")
    p.add_argument("--port", type=int, default=TEREDO_PORT)
    p.add_argument("--cone", action="store_true", help="send the cone RS (answer comes from the other address)")
    p.add_argument("--bind", default="0.0.0.0:0", help="local IPV4:PORT")
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    host, _, lport = args.bind.rpartition(":")
    answer = probe(args.server, port=args.port, cone=args.cone, bind=(host, int(lport)), timeout=args.timeout)
    print(json.dumps(answer))
    return 0 if answer else 1


if __name__ == "__main__":
    sys.exit(main())
