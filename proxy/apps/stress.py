"""``teredo-proxy stress``: the peer-table benchmark and a relay load generator.

Like Miredo's ``stresslist`` and ``teredo-mire`` tooling, two jobs, each
printing one JSON object per result line on stdout:

``stress peers --count N``
    Inserts N random 16-byte keys into a :class:`~proxy.teredo.peers.PeerTable`
    sized for N, then looks every key up; reports inserts/s, lookups/s and
    the resident memory the table added, per peer.  ``--baseline`` measures
    a dict of slotted objects the same way first.  The last line is the
    table's.

``stress relay --target IP:PORT --peers N --rate R --size S --duration T``
    Emulates N Teredo clients (one UDP socket each, so distinct source
    ports, with Teredo addresses whose mapping matches them) sending IPv6
    packets of S bytes through a relay to a native sink, and reports offered
    and forwarded packets per second and the loss.  It works against any
    relay, Miredo's included: a relay that only accepts known peers (Miredo,
    ours) learns each emulated client when native traffic reaches it, so
    the tool first sends one packet from the native side to every emulated
    address (``--open-netns``), answers the relay's bubbles as the clients'
    Teredo server would (the emulated addresses name this host as their
    server) and as the clients would, and waits until every client has
    received its packet through the relay.  Forwarded packets are counted
    at the sink by the kernel (``Ip6InReceives`` in ``--sink-netns``).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import random
import resource
import selectors
import socket
import sys
import time
from typing import Any, Callable

from proxy.errors import ConfigError
from proxy.teredo.address import TeredoAddress
from proxy.teredo.packet import bubble, ipv6_packet
from proxy.teredo.peers import PeerTable

__all__ = ["HELP", "add_arguments", "run", "bench_peers", "in_netns", "ip6_in_receives"]

HELP = "load generator and peer-table benchmark (JSON lines on stdout)"

CLONE_NEWNET = 0x40000000


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="stress_cmd", metavar="WHAT", required=True)
    pp = sub.add_parser("peers", help="peer table: inserts/s, lookups/s, bytes per peer")
    pp.add_argument("--count", type=int, default=1_000_000, metavar="N", help="peers to insert (default 1000000)")
    pp.add_argument("--rounds", type=int, default=5, metavar="R", help="lookup rounds; the best is reported (default 5)")
    pp.add_argument("--baseline", action="store_true", help="also measure a dict of slotted objects")
    pp.add_argument("--seed", type=int, default=1, help="key generator seed")
    pr = sub.add_parser("relay", help="emulate Teredo clients sending through a relay to a native sink")
    pr.add_argument("--target", required=True, metavar="IP:PORT", help="the relay's UDP endpoint")
    pr.add_argument("--peers", type=int, default=100, metavar="N", help="emulated clients (default 100)")
    pr.add_argument("--rate", type=float, default=0, metavar="PPS", help="packets/s offered; 0 = as fast as possible")
    pr.add_argument("--size", type=int, default=1280, metavar="BYTES", help="IPv6 packet size (default 1280)")
    pr.add_argument("--duration", type=float, default=5.0, metavar="SEC", help="load duration (default 5)")
    pr.add_argument("--bind", metavar="IPV4", help="local IPv4 of the emulated clients (default: route to target)")
    pr.add_argument("--server-port", type=int, default=3544, metavar="N",
                    help="port of the emulated Teredo server that receives indirect bubbles (default 3544)")
    pr.add_argument("--sink", default="2001:db8:1::100", metavar="IPV6", help="native destination")
    pr.add_argument("--sink-netns", metavar="NS", help="count arrivals (Ip6InReceives) in this network namespace")
    pr.add_argument("--open-netns", metavar="NS",
                    help="send the opening packets from this namespace (default: this one)")
    pr.add_argument("--open-timeout", type=float, default=20.0, metavar="SEC", help="time allowed to open peers")
    pr.add_argument("--label", default="", help="free text copied to the result line")


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, sort_keys=False), flush=True)


def run(config: object, args: argparse.Namespace) -> int:
    if args.stress_cmd == "peers":
        if args.count < 1:
            raise ConfigError("--count", "must be at least 1")
        if args.baseline:
            emit(bench_dict_baseline(args.count, args.rounds, args.seed))
        emit(bench_peers(args.count, args.rounds, args.seed))
        return 0
    return stress_relay(args)


# -- stress peers ---------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _keys_blob(count: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(16 * count)


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_peers(count: int, rounds: int = 3, seed: int = 1) -> dict[str, Any]:
    """Insert ``count`` keys into a table sized for them; time lookups of fresh key objects.

    Keys are sliced from one pre-generated blob inside the timed loops, so
    every lookup hashes a new ``bytes`` object as the relay does for each
    packet; the slicing is included in the time (conservative).  Lookup
    rounds: the best is reported (as ``timeit``), the median too.
    """
    blob = _keys_blob(count, seed)
    gc.collect()
    rss0 = rss_bytes()
    table = PeerTable(count)
    insert, lookup = table.insert, table.lookup
    now = 1000.0

    def do_insert() -> None:
        for off in range(0, 16 * count, 16):
            insert(blob[off : off + 16], now)

    t_ins = _timed(do_insert)
    gc.collect()
    rss1 = rss_bytes()
    assert len(table) == count, "the table refused keys below its capacity"

    def do_lookup() -> None:
        for off in range(0, 16 * count, 16):
            lookup(blob[off : off + 16])

    times = sorted(_timed(do_lookup) for _ in range(max(1, rounds)))
    cached = [blob[off : off + 16] for off in range(0, 16 * min(count, 1_000_000), 16)]
    for k in cached:
        hash(k)
    t_cached = min(_timed(lambda: [lookup(k) for k in cached]) for _ in range(max(1, rounds)))
    missing = [os.urandom(16) for _ in range(min(count, 200_000))]
    t_miss = min(_timed(lambda: [lookup(k) for k in missing]) for _ in range(max(1, rounds)))
    found = sum(1 for off in range(0, 16 * min(count, 100_000), 16) if lookup(blob[off : off + 16]) >= 0)
    return {
        "impl": "peer-table",
        "count": count,
        "bytes_per_peer": round((rss1 - rss0) / count, 1),
        "lookups_per_s": round(count / times[0]),
        "inserts_per_s": round(count / t_ins),
        "lookups_per_s_median": round(count / times[len(times) // 2]),
        "lookups_per_s_cached_hash": round(len(cached) / t_cached),
        "misses_per_s": round(len(missing) / t_miss),
        "table_array_bytes_per_peer": round(table.nbytes() / count, 1),
        "rss_delta_bytes": rss1 - rss0,
        "capacity": table.capacity,
        "slots": table.slots,
        "found_check": found == min(count, 100_000),
        "python": sys.version.split()[0],
        "miredo_judy_bytes_per_peer": 137,
    }


class _Slotted:
    __slots__ = ("ipv4", "port", "trusted", "last_rx", "last_tx", "bubbles", "pings", "queue")

    def __init__(self, ipv4: int, port: int) -> None:
        self.ipv4, self.port, self.trusted = ipv4, port, False
        self.last_rx = self.last_tx = 0.0
        self.bubbles = self.pings = 0
        self.queue = None


def bench_dict_baseline(count: int, rounds: int = 3, seed: int = 1) -> dict[str, Any]:
    """The plain-Python baseline: ``dict[bytes, slotted object]``."""
    blob = _keys_blob(count, seed)
    gc.collect()
    rss0 = rss_bytes()
    d: dict[bytes, _Slotted] = {}

    def do_insert() -> None:
        for off in range(0, 16 * count, 16):
            d[blob[off : off + 16]] = _Slotted(1, 2)

    t_ins = _timed(do_insert)
    gc.collect()
    rss1 = rss_bytes()
    get = d.get

    def do_lookup() -> None:
        for off in range(0, 16 * count, 16):
            get(blob[off : off + 16])

    times = sorted(_timed(do_lookup) for _ in range(max(1, rounds)))
    result = {
        "impl": "dict-of-slots",
        "count": count,
        "bytes_per_peer": round((rss1 - rss0) / count, 1),
        "lookups_per_s": round(count / times[0]),
        "inserts_per_s": round(count / t_ins),
    }
    d.clear()
    return result


# -- network namespaces ---------------------------------------------------------------------


def in_netns(ns: str | None, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Run ``fn`` in network namespace ``ns`` (a name under /var/run/netns) and
    return its JSON-able result; a forked child does the ``setns``, so this
    process stays where it is.  ``ns=None`` runs ``fn`` here."""
    if ns is None:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
            os.write(w, json.dumps({"ok": fn()}).encode())
            code = 0
        except BaseException as e:  # report, never return into the parent's code
            try:
                os.write(w, json.dumps({"error": repr(e)}).encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    with os.fdopen(r, "rb") as f:
        while time.monotonic() < deadline:
            b = f.read()
            if not b:
                break
            chunks.append(b)
    os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks) or b'{"error": "no answer"}')
    if "error" in out:
        raise RuntimeError(f"in namespace {ns}: {out['error']}")
    return out["ok"]


def ip6_in_receives() -> int:
    """``Ip6InReceives`` of the current network namespace."""
    with open("/proc/net/snmp6") as f:
        for line in f:
            name, _, value = line.partition(" ")
            if name == "Ip6InReceives":
                return int(value)
    raise RuntimeError("no Ip6InReceives in /proc/net/snmp6")


def _send_openers(addresses: list[str], port: int = 9) -> int:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sent = 0
    try:
        for a in addresses:
            try:
                s.sendto(b"open", (a, port))
                sent += 1
            except OSError:
                pass
    finally:
        s.close()
    return sent


# -- stress relay ----------------------------------------------------------------------------


def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    try:
        socket.inet_aton(host)
        if not sep or not 0 < int(port) < 65536:
            raise ValueError
    except (OSError, ValueError):
        raise ConfigError("--target", f"{text!r} is not IPV4:PORT") from None
    return host, int(port)


def _local_ip_towards(target: tuple[str, int]) -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(target)
        return s.getsockname()[0]
    finally:
        s.close()


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


class _Clients:
    """N emulated Teredo clients and the Teredo server they name (this host)."""

    def __init__(self, target: tuple[str, int], bind: str, n: int, server_port: int, rng: random.Random) -> None:
        self.target = target
        self.server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.server.bind((bind, server_port))
        self.server.setblocking(False)
        self.socks: list[socket.socket] = []
        self.addrs: list[bytes] = []
        self.index: dict[bytes, int] = {}
        for i in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((bind, 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.connect(target)  # a connected socket: cheaper sends, replies only from the relay
            s.setblocking(False)
            port = s.getsockname()[1]
            a = TeredoAddress(bind, rng.randrange(0x10000) & 0x3CFF, port, bind).emit()
            self.socks.append(s)
            self.addrs.append(a)
            self.index[a] = i
        self.opened = bytearray(n)

    def open_all(self, open_netns: str | None, timeout: float) -> float:
        """Get every client known and trusted by the relay; returns the seconds it took."""
        t0 = time.monotonic()
        texts = [socket.inet_ntop(socket.AF_INET6, a) for a in self.addrs]
        in_netns(open_netns, lambda: _send_openers(texts))
        sel = selectors.DefaultSelector()
        sel.register(self.server, selectors.EVENT_READ, -1)
        for i, s in enumerate(self.socks):
            sel.register(s, selectors.EVENT_READ, i)
        deadline = t0 + timeout
        resend = t0 + 3.0
        while sum(self.opened) < len(self.socks) and time.monotonic() < deadline:
            for key, _ev in sel.select(0.2):
                self._drain(key.fileobj, key.data)
            if time.monotonic() > resend:  # lost openers or bubbles: try the stragglers again
                in_netns(open_netns, lambda: _send_openers([t for t, o in zip(texts, self.opened) if not o]))
                resend = time.monotonic() + 3.0
        sel.close()
        return time.monotonic() - t0

    def _drain(self, sock: socket.socket, i: int) -> None:
        while True:
            try:
                data, src = sock.recvfrom(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if len(data) < 40 or data[0] >> 4 != 6:
                continue
            if i < 0:
                # As the clients' server: an (indirect) bubble from the relay for
                # one of our clients; the client answers the origin directly.
                j = self.index.get(data[24:40])
                if j is not None and data[6] == 59:
                    try:
                        self.socks[j].send(bubble(self.addrs[j], data[8:24]))
                    except OSError:
                        pass
            elif data[24:40] == self.addrs[i]:
                if data[6] == 59 and len(data) == 40:  # a direct bubble: answer it
                    try:
                        sock.send(bubble(self.addrs[i], data[8:24]))
                    except OSError:
                        pass
                else:
                    self.opened[i] = 1

    def close(self) -> None:
        self.server.close()
        for s in self.socks:
            s.close()


def _blast(sends: list[Callable[[bytes], int]], packets: list[bytes], rate: float, duration: float) -> tuple[int, int, float]:
    """Send round-robin for ``duration`` s at ``rate`` pps (0: flat out); (sent, errors, elapsed)."""
    n = len(sends)
    pairs = list(zip(sends, packets))
    sent = errors = 0
    batch = 64
    t0 = time.perf_counter()
    end = t0 + duration
    j = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate > 0:
            due = int((now - t0) * rate) - sent - errors
            if due <= 0:
                time.sleep(min(0.0005, end - now))
                continue
            k = min(due, batch)
        else:
            k = batch
        for _ in range(k):
            send, pkt = pairs[j]
            j += 1
            if j == n:
                j = 0
            try:
                send(pkt)
                sent += 1
            except OSError:
                errors += 1
    return sent, errors, time.perf_counter() - t0


def stress_relay(args: argparse.Namespace) -> int:
    target = _endpoint(args.target)
    if args.peers < 1:
        raise ConfigError("--peers", "must be at least 1")
    if not 48 <= args.size <= 65507:
        raise ConfigError("--size", "an IPv6 packet of 48..65507 bytes")
    if args.duration <= 0:
        raise ConfigError("--duration", "must be positive")
    try:
        sink = socket.inet_pton(socket.AF_INET6, args.sink)
    except OSError:
        raise ConfigError("--sink", f"{args.sink!r} is not an IPv6 address") from None
    bind = args.bind or _local_ip_towards(target)
    _raise_fd_limit(args.peers + 64)
    rng = random.Random(7)
    clients = _Clients(target, bind, args.peers, args.server_port, rng)
    try:
        open_s = clients.open_all(args.open_netns, args.open_timeout)
        opened = [i for i in range(args.peers) if clients.opened[i]]
        result: dict[str, Any] = {
            "label": args.label, "target": args.target, "peers": args.peers, "opened": len(opened),
            "open_seconds": round(open_s, 3), "size": args.size, "duration": args.duration,
            "rate": args.rate,
        }
        if not opened:
            result["error"] = "no emulated client got through the relay"
            emit(result)
            return 1
        payload = b"\0" * (args.size - 40)
        packets = [ipv6_packet(clients.addrs[i], sink, 59, payload, 64) for i in opened]
        sends = [clients.socks[i].send for i in opened]
        before = in_netns(args.sink_netns, ip6_in_receives) if args.sink_netns else None
        sent, errors, elapsed = _blast(sends, packets, args.rate, args.duration)
        time.sleep(0.5)  # let the relay drain its queues before counting
        after = in_netns(args.sink_netns, ip6_in_receives) if args.sink_netns else None
        result.update(sent=sent, send_errors=errors, elapsed=round(elapsed, 3),
                      offered_pps=round(sent / elapsed))
        if before is not None and after is not None:
            fwd = after - before
            result.update(forwarded=fwd, forwarded_pps=round(fwd / elapsed),
                          loss=round(max(0.0, 1 - fwd / sent), 4) if sent else None)
        emit(result)
        return 0
    finally:
        clients.close()

