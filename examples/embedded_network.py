#!/usr/bin/env python3
"""Start a whole Teredo network inside this script and fetch through it.

No root, no network: a Teredo server on 127.0.0.1 + 127.0.0.2, a relay
whose native side is an in-memory IPv6 network, a web host on that network
(``http://[2001:db8:1::100]/``) and a client behind a userspace NAT model,
with its SOCKS5 endpoint on a free loopback port.  The same machinery runs
``teredo-proxy demo`` and the pytest fixtures (docs/testing.md)::

    python3 examples/embedded_network.py
    python3 examples/embedded_network.py --nat port-restricted --loss 0.05 --seed 7
    python3 examples/embedded_network.py --thread          # RunningNetwork + sync httpx
    python3 examples/embedded_network.py --nat symmetric   # fails, see below

Exit status 0 when the file came back intact, 1 otherwise.  Behind the
symmetric NAT model the fetch fails with "Host unreachable": the client
qualifies (NAT type ``symmetric``), but its NAT shows the relay another
port than the one in its Teredo address, and the relay refuses such
packets (RFC 4380 §5.4.2; ``mapping-mismatch`` in the relay's drop
counters).  docs/troubleshooting.md has the whole story.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys

import httpx

from proxy.testing.background import RunningNetwork
from proxy.testing.network import NAT_CHOICES, NetworkOptions, TeredoNetwork

PAYLOAD = os.urandom(256 * 1024)


def report(outcome: httpx.Response | httpx.HTTPError) -> bool:
    """Print what one GET gave; True when the payload came back intact."""
    if isinstance(outcome, httpx.HTTPError):
        print(f"GET failed: {type(outcome).__name__}: {outcome}")
        return False
    ok = outcome.status_code == 200 and hashlib.sha256(outcome.content).digest() == hashlib.sha256(PAYLOAD).digest()
    print(f"GET {outcome.url} -> {outcome.status_code}, {len(outcome.content)} bytes, {'intact' if ok else 'WRONG'}")
    return ok


def show(snapshot: dict[str, dict[str, object]]) -> None:
    """Counters of every role (``TeredoNetwork.snapshot()``)."""
    c, s, r = snapshot["client"], snapshot["server"], snapshot["relay"]
    print(f"client  {c['address']}  NAT type seen: {c['nat']}  "
          f"UDP datagrams out/in: {c['udp_datagrams_out']}/{c['udp_datagrams_in']}")
    print(f"server  {s['rs']} RS, {s['ra']} RA, {s['to_native']} packets to native IPv6, {s['dropped']} dropped")
    print(f"relay   {r['peers']} peer(s), {r['to_teredo']} packets to Teredo, {r['to_native']} to native IPv6, "
          f"{r['dropped']} dropped")
    if "nat" in snapshot:
        n = snapshot["nat"]
        print(f"nat     {n['model']}: {n['filtered']} datagrams filtered, {n['lost']} lost")


async def with_asyncio(options: NetworkOptions) -> bool:
    """The network on this script's own event loop (``async with``)."""
    async with TeredoNetwork(options) as net:
        print(f"SOCKS5 endpoint {net.socks_url}, web host {net.web.url}")
        async with httpx.AsyncClient(proxy=net.socks_url, timeout=30) as http:
            try:
                outcome = await http.get(net.web.url + "payload.bin")
            except httpx.HTTPError as e:
                outcome = e
        ok = report(outcome)
        show(net.snapshot())
        if net.relay is not None and net.relay.drops:
            print("relay drops:", ", ".join(f"{r.value} {n}" for r, n in net.relay.drops.items()))
        return ok


def with_thread(options: NetworkOptions) -> bool:
    """The network on a background thread: for code without an event loop."""
    with RunningNetwork(options) as net:
        print(f"SOCKS5 endpoint {net.socks_url}, web host {net.web_url}")
        try:
            outcome = httpx.get(net.web_url + "payload.bin", proxy=net.socks_url, timeout=30)
        except httpx.HTTPError as e:
            outcome = e
        ok = report(outcome)
        show(net.snapshot())
        return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nat", choices=NAT_CHOICES, default="restricted", help="NAT model in front of the client")
    p.add_argument("--loss", type=float, default=0.0, help="datagram loss at the NAT, each way (needs a NAT)")
    p.add_argument("--seed", type=int, help="seed every random choice")
    p.add_argument("--thread", action="store_true", help="RunningNetwork in a thread, synchronous httpx")
    args = p.parse_args(argv)
    options = NetworkOptions(nat=args.nat, loss=args.loss, seed=args.seed, files={"/payload.bin": PAYLOAD})
    ok = with_thread(options) if args.thread else asyncio.run(with_asyncio(options))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
