"""``teredo-proxy demo``: the embedded default, a whole Teredo network in one process.

On loopback and without root: a Teredo server on 127.0.0.1 and 127.0.0.2, a
relay whose native side is an in-memory IPv6 network, a web host on that
network (http://[2001:db8:1::100]/, our own userspace stack), and the client
with its SOCKS5 endpoint (see :mod:`proxy.testing.network`).  It prints what
to type, then shows live what each role does until Ctrl-C.  ``--check`` runs
one fetch through the whole chain and exits 0 or 1, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import hashlib
import logging
import signal
import sys
import time

from proxy.testing.network import NAT_CHOICES, NetworkOptions, TeredoNetwork

__all__ = ["HELP", "add_arguments", "run"]

HELP = "the embedded default: a whole Teredo network in one process, on loopback"
log = logging.getLogger("proxy.apps.demo")

DEFAULT_SOCKS_PORT = 1080


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="fetch once through the whole chain, exit 0 or 1")
    p.add_argument("--socks-port", type=int, default=DEFAULT_SOCKS_PORT,
                   help="SOCKS5 port on 127.0.0.1 (default 1080; another free one if busy)")
    p.add_argument("--nat", choices=NAT_CHOICES, default="restricted",
                   help="NAT model in front of the client (default restricted)")
    p.add_argument("--loss", type=float, default=0.0, help="datagram loss at the NAT, 0..0.5 (default 0)")
    p.add_argument("--seed", type=int, help="seed every random choice (reproducible runs)")
    p.add_argument("--status-file", metavar="PATH", help="the client's JSON status file")


async def _start(args: argparse.Namespace) -> TeredoNetwork:
    """Start the network; fall back to a free SOCKS5 port if the default is busy."""
    if not 0.0 <= args.loss <= 0.5:
        raise ValueError("--loss must be within 0..0.5")
    opts = dict(nat=args.nat, loss=args.loss, seed=args.seed, status_file=args.status_file)
    try:
        net = TeredoNetwork(NetworkOptions(socks_port=args.socks_port, **opts))
        await net.start()
    except OSError as e:
        if e.errno != errno.EADDRINUSE or args.socks_port != DEFAULT_SOCKS_PORT:
            raise
        print(f"(port {DEFAULT_SOCKS_PORT} is busy: using another one)", file=sys.stderr)
        net = TeredoNetwork(NetworkOptions(socks_port=0, **opts))
        await net.start()
    return net


def _banner(net: TeredoNetwork) -> str:
    host, port = net.socks_address
    return "\n".join([
        "teredo-proxy demo: a whole Teredo network in this process (loopback, no root)",
        f"  server  127.0.0.1 + 127.0.0.2 udp/{net.server_port}",
        "  relay   127.0.0.3, native side: in-memory IPv6 network (2001::/32)",
        f"  web     {net.web.url}  (index.html, big.bin)",
        f"  client  {net.client_address}  NAT {net.options.nat}, SOCKS5 on {host}:{port}",
        "",
        "Try:",
        f"  curl --socks5-hostname {host}:{port} {net.web.url}",
        f"  curl --socks5-hostname {host}:{port} -o /dev/null {net.web.url}big.bin",
        "",
    ])


def _view(snap: dict[str, dict[str, object]], elapsed: float) -> list[str]:
    c, s, r, w = snap.get("client", {}), snap.get("server", {}), snap.get("relay", {}), snap.get("web", {})
    lines = [
        f"[{elapsed:6.0f} s] client  {c.get('state')}  nat {c.get('nat')}  "
        f"udp out {c.get('udp_datagrams_out')} pkts/{_size(c.get('udp_bytes_out'))}  "
        f"in {c.get('udp_datagrams_in')} pkts/{_size(c.get('udp_bytes_in'))}  socks sessions {c.get('socks_sessions')}",
        f"           server  rs {s.get('rs')} ra {s.get('ra')}  to clients {s.get('to_clients')}  "
        f"to native {s.get('to_native')}  dropped {s.get('dropped')}",
        f"           relay   peers {r.get('peers')}  to native {r.get('to_native')}  to teredo {r.get('to_teredo')}  "
        f"dropped {r.get('dropped')}",
        f"           web     requests {w.get('requests', 0)}  sent {_size(w.get('bytes_sent', 0))}",
    ]
    if "nat" in snap:
        n = snap["nat"]
        lines.append(f"           nat     {n['model']}  filtered {n['filtered']}  lost {n['lost']}")
    return lines


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


async def _check(net: TeredoNetwork) -> bool:
    status, body = await net.fetch("/index.html", timeout=30)
    print(f"GET /index.html through SOCKS5 -> {status}, {body!r}")
    t = time.monotonic()
    status2, big = await net.fetch("/big.bin", timeout=60)
    dt = time.monotonic() - t
    same = hashlib.sha256(big).digest() == hashlib.sha256(net.web.files["/big.bin"]).digest()
    print(f"GET /big.bin -> {status2}, {len(big)} bytes in {dt:.2f} s, {'intact' if same else 'CORRUPTED'}")
    return status == 200 and status2 == 200 and same


async def _demo(args: argparse.Namespace, stop: asyncio.Event) -> int:
    net = await _start(args)
    try:
        print(_banner(net), flush=True)
        if args.check:
            ok = await _check(net)
            print("demo check:", "ok" if ok else "FAILED")
            return 0 if ok else 1
        tty = sys.stdout.isatty()
        start, shown = time.monotonic(), 0
        while not stop.is_set():
            lines = _view(net.snapshot(), time.monotonic() - start)
            if tty:
                if shown:
                    sys.stdout.write(f"\x1b[{shown}F\x1b[J")
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
                shown = len(lines)
            else:
                print("\n".join(lines), flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 1.0 if tty else 10.0)
            except asyncio.TimeoutError:
                pass
        return 0
    finally:
        await net.close()


def run(config: object, args: argparse.Namespace) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await _demo(args, stop)

    try:
        return asyncio.run(main())
    except (OSError, ValueError, asyncio.TimeoutError) as e:
        print(f"teredo-proxy demo: {e or 'the client did not qualify in time'}", file=sys.stderr)
        return 1
