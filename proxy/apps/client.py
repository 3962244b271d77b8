"""``teredo-proxy client``: the Teredo client core on a real UDP socket.

The composition root: one UDP endpoint (``--bind``/``--port``), the
:class:`~proxy.teredo.client.TeredoClient` core, one re-armed timer, name
resolution for ``ResolveServer`` requests, and the ``--status-file``.  The
driver has no protocol logic.  Until the SOCKS5 endpoint lands, the
command's visible job is ``--ping ADDR``: qualify, then ICMPv6 echo
requests through Teredo, printed like ping6 (kept as a diagnostic).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import random
import signal
import socket
import statistics
import sys
from typing import Callable

from proxy.config.client import ClientConfig
from proxy.config.socks import add_socks_arguments
from proxy.constants import CLIENT_SOCKET_BUFFER, DISCOVERY_TTL, TEREDO_DISCOVERY_IPV4, TEREDO_PORT
from proxy.errors import ConfigError
from proxy.ipstack.wire.icmpv6 import Echo, Icmpv6Type
from proxy.ipstack.wire.ipv6 import NextHeader
from proxy.netio import UdpEndpoint, open_multicast, open_udp, set_multicast_sender
from proxy.status import StatusFile
from proxy.teredo.client import TeredoClient
from proxy.teredo.client_events import QualificationLost, Qualified, ResolveServer, ServerFailed
from proxy.teredo.packet import ipv6_packet

__all__ = ["HELP", "add_arguments", "load_config", "run", "ClientRunner", "ping"]

HELP = "Teredo client in userspace; SOCKS5 endpoint for applications"
log = logging.getLogger("proxy.apps.client")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", action="append", metavar="HOST",
                   help="Teredo server, IPv4 or name (ServerAddress); repeat or comma-separate for failover")
    p.add_argument("--server2", metavar="IPV4", help="secondary address of the first server (default: its + 1)")
    p.add_argument("--bind", metavar="IPV4", help="local IPv4 address (BindAddress; default 0.0.0.0)")
    p.add_argument("--port", type=int, help="local UDP port (BindPort; default random)")
    p.add_argument("--status-file", metavar="PATH", help="JSON status, rewritten atomically")
    p.add_argument("--ping", metavar="ADDR", help="qualify, then ping this IPv6 address through Teredo")
    p.add_argument("--count", type=int, default=4, help="echo requests for --ping (default 4)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between echo requests (default 1)")
    p.add_argument("--qualify-timeout", type=float, default=30.0, help="give --ping up after this long")
    p.add_argument("--refresh", type=float, help="refresh interval in seconds (default 30)")
    p.add_argument("--no-cone-probe", action="store_true", help="skip the cone NAT test")
    p.add_argument("--single-socket", action="store_true",
                   help="NAT-type check from the main socket, in RFC order (no probe socket)")
    p.add_argument("--refuse-symmetric", action="store_true", help="no address behind a symmetric NAT (RFC 4380)")
    p.add_argument("--no-hairpinning", action="store_true", help="no RFC 6081 Alternate Address trailers")
    p.add_argument("--local-discovery", action="store_true",
                   help="find clients on the LAN by multicast (RFC 4380 §5.2.8; LocalDiscovery enabled)")
    p.add_argument("--auth-id", metavar="ID", help="secure qualification client id (RFC 4380 §5.2.2)")
    p.add_argument("--auth-key", metavar="HEX", help="secure qualification key")
    p.add_argument("--server-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--allow-loopback", action="store_true", help=argparse.SUPPRESS)
    add_socks_arguments(p)


def load_config(args: argparse.Namespace) -> ClientConfig:
    config = ClientConfig.from_args(args)
    if args.ping is not None:
        try:
            ipaddress.IPv6Address(args.ping)
        except ValueError:
            raise ConfigError("--ping", f"{args.ping!r} is not an IPv6 address") from None
    if args.count < 1:
        raise ConfigError("--count", "at least 1")
    if not 0.01 <= args.interval <= 60:
        raise ConfigError("--interval", "0.01..60 seconds")
    return config


def local_address_towards(server: str, port: int) -> str | None:
    """The local IPv4 the kernel would use to reach ``server`` (no packet sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((server, port))
            return s.getsockname()[0]
    except OSError:
        return None


#: ``(bind address, port, on_batch, loop) -> endpoint``: how the runner gets
#: its UDP endpoints (tests and the demo put a userspace NAT here).
UdpFactory = Callable[[str, int, Callable, asyncio.AbstractEventLoop], UdpEndpoint]


def _real_udp(host: str, port: int, on_batch: Callable, loop: asyncio.AbstractEventLoop) -> UdpEndpoint:
    # A window's worth of datagrams must fit in the socket (CLIENT_SOCKET_BUFFER).
    return UdpEndpoint(open_udp(host, port, bufsize=CLIENT_SOCKET_BUFFER), on_batch, loop)


class ClientRunner:
    """The client core on one UDP socket; usable in-process (demo, tests, ping).

    ``on_packet`` callbacks receive every IPv6 packet for the local stack.
    """

    def __init__(self, config: ClientConfig, *, rng: random.Random | None = None,
                 status: StatusFile | None = None, udp_factory: UdpFactory | None = None) -> None:
        self.config = config
        self._udp_factory = udp_factory or _real_udp
        self.rng = rng or random.SystemRandom()
        self.status = status
        self.core = TeredoClient(config, rng=self.rng)
        self.endpoint: UdpEndpoint | None = None
        self.probe: UdpEndpoint | None = None
        "Second socket for the NAT-type comparison (qualification.py explains why)."
        self.discovery: UdpEndpoint | None = None
        "RFC 4380 §5.2.8: the socket joined to 224.0.0.253:3544 (``--local-discovery``)."
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_packet: list[Callable[[bytes], None]] = []
        "Called with each IPv6 packet for the local stack (the ping tool)."
        self.on_packets: list[Callable[[list[bytes]], None]] = []
        "Called once per flush with every IPv6 packet for the local stack."
        self.on_event: list[Callable[[object], None]] = []
        "Called with every event of the core (Qualified, AddressChanged...)."
        self._flush_handle: asyncio.Handle | None = None
        self.qualified_event = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._status_seen: tuple | None = None
        self.started_at = 0.0
        self.qualified_at: float | None = None

    async def start(self) -> None:
        """Bind the socket and start qualifying; OSError when the bind fails."""
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        self.endpoint = self._udp_factory(self.config.bind, self.config.port, self._on_batch, self.loop)
        if self.config.separate_probe:
            try:
                self.probe = self._udp_factory(self.config.bind, 0, self._on_probe_batch, self.loop)
            except OSError:
                self.endpoint.close()
                raise
        self._learn_local(self.config.servers[0])
        if self.core.local is not None:
            self._open_discovery()
        self.core.start(self.loop.time())
        self.flush()

    def _open_discovery(self) -> None:
        """Local discovery (RFC 4380 §5.2.8): join the group on the interface of
        our local address; make the service socket able to send to it.

        Discovery bubbles leave from the service socket (peers answer to its
        port); only reception uses the group socket.  Any failure (port
        taken, no multicast route, a socket that is not a kernel one) turns
        discovery off with a warning: it is an optimisation, never a reason
        not to run.
        """
        if not self.core.local_discovery or self.discovery is not None or self.endpoint is None:
            return
        interface = self.core.local[0] if self.core.local is not None else "0.0.0.0"
        try:
            sock = getattr(self.endpoint, "sock", None)
            if not isinstance(sock, socket.socket):
                raise OSError("the Teredo endpoint is not a kernel socket")
            set_multicast_sender(sock, interface, DISCOVERY_TTL)
            self.discovery = UdpEndpoint(open_multicast(TEREDO_DISCOVERY_IPV4, TEREDO_PORT, interface),
                                         self._on_discovery_batch, self.loop)
        except OSError as e:
            log.warning("local discovery disabled: cannot join %s:%d on %s: %s",
                        TEREDO_DISCOVERY_IPV4, TEREDO_PORT, interface, e)
            self.core.disable_local_discovery()
            return
        log.info("local discovery: listening on %s:%d (interface %s)", TEREDO_DISCOVERY_IPV4, TEREDO_PORT, interface)

    def _on_discovery_batch(self, endpoint: UdpEndpoint, batch: list[tuple[bytes, tuple[str, int]]]) -> None:
        core, now = self.core, self.loop.time()
        for data, addr in batch:
            core.discovery_datagram_received(data, addr, now)
        self.flush()

    def _learn_local(self, server: str) -> None:
        ip, port = self.endpoint.local
        if ip == "0.0.0.0":
            try:
                ipaddress.IPv4Address(server)
            except ValueError:
                return
            ip = local_address_towards(server, self.config.server_port) or ip
        if ip != "0.0.0.0":
            self.core.set_local_endpoint((ip, port))

    def _on_batch(self, endpoint: UdpEndpoint, batch: list[tuple[bytes, tuple[str, int]]]) -> None:
        core, now = self.core, self.loop.time()
        for data, addr in batch:
            core.datagram_received(data, addr, now)
        self.flush()

    def _on_probe_batch(self, endpoint: UdpEndpoint, batch: list[tuple[bytes, tuple[str, int]]]) -> None:
        core, now = self.core, self.loop.time()
        for data, addr in batch:
            core.probe_datagram_received(data, addr, now)
        self.flush()

    def send_ipv6(self, packet: bytes) -> None:
        """An IPv6 packet from the local stack (or the ping tool).

        The flush is deferred to the end of the loop iteration, so a burst of
        packets from the stack becomes one batch of datagrams.
        """
        self.core.ipv6_from_stack(packet, self.loop.time())
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send, dispatch events and stack packets, write the status, re-arm the timer."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        core = self.core
        if self.endpoint is not None:
            for data, addr in core.datagrams_to_send():
                self.endpoint.sendto(data, addr)
        probe = core.probe_datagrams_to_send()
        if probe and self.probe is not None:
            for data, addr in probe:
                self.probe.sendto(data, addr)
        while (ev := core.next_event()) is not None:
            self._event(ev)
        packets = core.ipv6_to_stack()
        if packets:
            for cb in self.on_packet:
                for packet in packets:
                    cb(packet)
            for batch_cb in self.on_packets:
                batch_cb(packets)
        self._write_status()
        self._arm()

    def _event(self, ev: object) -> None:
        if isinstance(ev, ResolveServer):
            task = self.loop.create_task(self._resolve(ev.name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif isinstance(ev, Qualified):
            if self.qualified_at is None:
                self.qualified_at = self.loop.time()
            log.info("Teredo address %s (NAT %s, MTU %d, server %s)", ev.address_text, ev.nat.value, ev.mtu,
                     ev.server)
            self.qualified_event.set()
        elif isinstance(ev, QualificationLost):
            self.qualified_event.clear()
        elif isinstance(ev, ServerFailed):
            log.warning("server %s failed: %s", ev.server, ev.reason)
        # After our own bookkeeping and log line, so the log reads in order
        # (qualified, then what the SOCKS5 side does about it).
        for cb in self.on_event:
            cb(ev)

    async def _resolve(self, name: str) -> None:
        ips: list[str] = []
        try:
            infos = await asyncio.wait_for(
                self.loop.getaddrinfo(name, None, family=socket.AF_INET, type=socket.SOCK_DGRAM), 9.0
            )
            ips = list(dict.fromkeys(info[4][0] for info in infos))
        except (OSError, asyncio.TimeoutError) as e:
            log.warning("cannot resolve %s: %s", name, e)
        if ips:
            self._learn_local(ips[0])
            self._open_discovery()
        self.core.server_resolved(name, ips, self.loop.time())
        self.flush()

    def _write_status(self) -> None:
        if self.status is None:
            return
        core = self.core
        addr = core.address
        snapshot = (core.state, addr, core.nat.value, core.server, core.mtu if addr else None)
        if snapshot == self._status_seen:
            return
        self._status_seen = snapshot
        self.status.update(
            state=core.state,
            address=str(ipaddress.IPv6Address(addr)) if addr else None,
            nat=core.nat.value,
            server=core.server,
            mtu=core.mtu if addr else None,
        )

    def _arm(self) -> None:
        when = self.core.poll_at()
        if when == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None and self.loop is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(max(self.loop.time(), self.core.poll_at() or 0.0))
        self.flush()

    def counters(self) -> dict[str, object]:
        return {
            "stats": dict(self.core.stats),
            "drops": {r.value: n for r, n in self.core.drops.items()},
        }

    def close(self) -> None:
        """Send what is already queued (the stack's last FINs and RSTs), then
        stop the timer and close the sockets."""
        if self._flush_handle is not None and self.endpoint is not None:
            for data, addr in self.core.datagrams_to_send():
                self.endpoint.sendto(data, addr)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for t in list(self._tasks):
            t.cancel()
        for ep in (self.endpoint, self.probe, self.discovery):
            if ep is not None:
                ep.close()
        self.endpoint = self.probe = self.discovery = None


async def ping(runner: ClientRunner, target: str, count: int, interval: float, qualify_timeout: float,
               out=sys.stdout, linger: float = 10.0) -> int:
    """Qualify, then ``count`` echo requests to ``target``; 0 when replies came back."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(runner.qualified_event.wait(), qualify_timeout)
    except asyncio.TimeoutError:
        print(f"teredo-proxy: not qualified after {qualify_timeout:g} s (state {runner.core.state})", file=out)
        return 1
    dst = ipaddress.IPv6Address(target).packed
    ident = runner.rng.getrandbits(16)
    sent: dict[int, float] = {}
    rtts: list[float] = []
    done = asyncio.Event()
    src_text = str(ipaddress.IPv6Address(runner.core.address))

    def on_packet(pkt: bytes) -> None:
        if len(pkt) < 48 or pkt[6] != NextHeader.ICMPV6:
            return
        typ = pkt[40]
        if typ == Icmpv6Type.ECHO_REPLY and pkt[8:24] == dst:
            try:
                echo = Echo.parse(pkt[40:])
            except ValueError:
                return
            if echo.ident != ident or echo.seq not in sent:
                return
            rtt = (loop.time() - sent.pop(echo.seq)) * 1000
            rtts.append(rtt)
            print(f"{len(pkt) - 40} bytes from {target}: icmp_seq={echo.seq} ttl={pkt[7]} time={rtt:.2f} ms",
                  file=out, flush=True)
        elif typ < 128 and len(pkt) >= 48 + 48 and pkt[48 + 24: 48 + 40] == dst:
            inner = pkt[48:]
            if inner[6] == NextHeader.ICMPV6 and len(inner) >= 48 and inner[40] == Icmpv6Type.ECHO_REQUEST:
                seq = int.from_bytes(inner[46:48], "big")
                if sent.pop(seq, None) is not None:
                    errors[0] += 1
                    why = {1: "Destination unreachable", 3: "Time exceeded"}.get(typ, f"ICMPv6 type {typ}")
                    print(f"From {ipaddress.IPv6Address(pkt[8:24])} icmp_seq={seq} {why}", file=out, flush=True)
        if not sent and len(rtts) + errors[0] >= count:
            done.set()

    errors = [0]
    runner.on_packet.append(on_packet)
    print(f"PING {target} from {src_text} (Teredo, NAT {runner.core.nat.value}): 56 data bytes", file=out, flush=True)
    start = loop.time()
    for seq in range(1, count + 1):
        payload = seq.to_bytes(8, "big") + bytes(48)
        msg = Echo(True, ident, seq, payload).emit(runner.core.address, dst)
        sent[seq] = loop.time()
        runner.send_ipv6(ipv6_packet(runner.core.address, dst, NextHeader.ICMPV6, msg, 64))
        if seq < count:
            await asyncio.sleep(interval)  # the ping schedule itself, not a wait for a condition
    try:
        await asyncio.wait_for(done.wait(), linger)
    except asyncio.TimeoutError:
        pass
    runner.on_packet.remove(on_packet)
    elapsed = (loop.time() - start) * 1000
    received = len(rtts)
    loss = 100.0 * (count - received) / count
    print(f"--- {target} ping statistics ---", file=out)
    print(f"{count} packets transmitted, {received} received, {loss:.0f}% packet loss, time {elapsed:.0f}ms",
          file=out)
    if rtts:
        mdev = statistics.pstdev(rtts) if len(rtts) > 1 else 0.0
        print(f"rtt min/avg/max/mdev = {min(rtts):.3f}/{statistics.mean(rtts):.3f}/{max(rtts):.3f}/{mdev:.3f} ms",
              file=out, flush=True)
    return 0 if received else 1


async def serve(config: ClientConfig, args: argparse.Namespace, stop: asyncio.Event) -> int:
    """``--ping``: qualify and ping.  Otherwise: the whole client (SOCKS5
    endpoint, userspace IPv6 stack, Teredo) until ``stop``."""
    status = StatusFile(config.status_file, "client")
    status.update(state="starting")
    if args.ping is None:
        from proxy.apps.client_proxy import TeredoProxy

        proxy = TeredoProxy(config, status=status)
        try:
            await proxy.start()
        except OSError as e:
            log.error("%s", e)
            status.update(state="failed")
            return 1
        try:
            await proxy.run_until(stop)
        finally:
            await proxy.close()
        return 0
    runner = ClientRunner(config, status=status)
    try:
        await runner.start()
    except OSError as e:
        log.error("cannot bind %s:%d: %s", config.bind, config.port, e)
        status.update(state="failed")
        return 1
    try:
        return await ping(runner, args.ping, args.count, args.interval, args.qualify_timeout)
    finally:
        runner.close()
        status.update(**runner.counters())


def run(config: ClientConfig, args: argparse.Namespace) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.ping is None:
            return await serve(config, args, stop)
        task = asyncio.ensure_future(serve(config, args, stop))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not task.done():
            task.cancel()
            return 1
        return task.result()

    return asyncio.run(main())
