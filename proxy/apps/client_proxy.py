"""The complete unprivileged client: SOCKS5 -> userspace IPv6 stack -> Teredo.

The composition root of ``teredo-proxy client`` (and of the demo and test
fixtures, which run it in-process):

    applications --SOCKS5--> Socks5Server --PolicyConnector--+--> StackConnector --> Stack (ipstack)
                                                             |                        |  IPv6 packets
                                                             +--> OsConnector (IPv4)  v
                                                                               ClientRunner (Teredo)
                                                                                      | UDP
                                                                                      v  server, relays, peers

Start-up order is the contract's: the SOCKS5 listener binds first (so a busy
port fails at once, and a script that sees ``"qualified"`` in the status file
can connect immediately), then the client qualifies.  Requests that arrive
before the address exists wait for it.  On requalification with the same
address nothing changes for open connections; a new address replaces the
old one (connections on the old one are reset, as they must be).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random

from proxy.apps.client import ClientRunner, UdpFactory
from proxy.config.client import ClientConfig
from proxy.ipstack.interface import Interface
from proxy.ipstack.stack_asyncio import Stack
from proxy.ipstack.tcp_events import TcpState
from proxy.socks5_asyncio import Socks5Server
from proxy.socks5_connector import Connector, Resolver
from proxy.socks5_os_asyncio import OsConnector, OsResolver
from proxy.socks5_policy_asyncio import PolicyConnector
from proxy.socks5_stack_asyncio import StackConnector, is_teredo_reachable
from proxy.status import StatusFile
from proxy.teredo.client_events import AddressChanged, QualificationLost, Qualified

__all__ = ["TeredoProxy"]

log = logging.getLogger("proxy.apps.client")

#: How long a clean stop waits for TCP connections to finish closing.
CLOSE_GRACE = 2.0
#: Status file refresh period for the traffic counters.
STATUS_PERIOD = 5.0


class _RunnerLink:
    """The stack's link: its packets go into the Teredo client."""

    def __init__(self, runner: ClientRunner) -> None:
        self.runner = runner

    def send(self, packet: bytes) -> None:
        self.runner.send_ipv6(packet)


class TeredoProxy:
    """SOCKS5 endpoint + IPv6 stack + Teredo client, on the running loop.

    :param ipv4: connector for IPv4 targets (default: the host's network
        when ``--ipv4 direct``, none when ``refuse``).
    :param resolver: name resolution for domain targets (default: the OS).
    :param udp_factory: where the Teredo sockets come from (the demo and the
        fixtures put a userspace NAT in front of the client).
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        status: StatusFile | None = None,
        rng: random.Random | None = None,
        ipv4: Connector | None = None,
        resolver: Resolver | None = None,
        udp_factory: UdpFactory | None = None,
    ) -> None:
        self.config = config
        self.status = status
        self.rng = rng or random.SystemRandom()
        self.runner = ClientRunner(config, rng=self.rng, status=status, udp_factory=udp_factory)
        self.ready = asyncio.Event()
        "Set while the client has a Teredo address."
        self._ipv4 = ipv4 if ipv4 is not None else (OsConnector() if config.socks.ipv4 == "direct" else None)
        self._resolver = resolver or OsResolver()
        self.interface: Interface | None = None
        self.stack: Stack | None = None
        self.socks: Socks5Server | None = None

    # -- lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        """Bind the SOCKS5 endpoint, then start qualifying.

        :raises OSError: the SOCKS5 address or the Teredo socket cannot be
            bound (the message says which).
        """
        self.interface = Interface(rng=self.rng)
        self.stack = Stack(self.interface, _RunnerLink(self.runner))
        self.runner.on_packets.append(self.stack.packets_received)
        self.runner.on_event.append(self._on_event)
        connector = PolicyConnector(
            StackConnector(self.stack, self.ready), self._ipv4, self._resolver,
            ipv6_reachable=is_teredo_reachable,
        )
        self.socks = Socks5Server(self.config.socks, connector)
        s = self.config.socks
        try:
            await self.socks.start()
        except OSError as e:
            raise OSError(e.errno, f"cannot listen for SOCKS5 on {s.host}:{s.port}: {e.strerror}") from None
        host, port = self.socks.address
        log.info("SOCKS5 endpoint on %s:%d (IPv4 targets: %s); qualifying with %s", host, port, s.ipv4,
                 ", ".join(self.config.servers))
        self._status(socks=f"{host}:{port}", socks_ready=False)
        try:
            await self.runner.start()
        except OSError as e:
            self.socks.close()
            raise OSError(e.errno, f"cannot bind the Teredo socket {self.config.bind}:{self.config.port}: "
                                   f"{e.strerror}") from None

    def _on_event(self, ev: object) -> None:
        stack = self.stack
        assert stack is not None and self.interface is not None
        if isinstance(ev, Qualified):
            self.interface.mtu = ev.mtu
            if self.interface.primary_address != ev.address:
                stack.set_addresses([ev.address])
            if not self.ready.is_set():
                log.info("SOCKS5 ready: IPv6 from %s", ipaddress.IPv6Address(ev.address))
                self._status(socks_ready=True)
            self.ready.set()
        elif isinstance(ev, AddressChanged):
            log.info("Teredo address changed: %s -> %s; connections on the old one end",
                     ipaddress.IPv6Address(ev.old), ipaddress.IPv6Address(ev.new))
            stack.set_addresses([ev.new])
        elif isinstance(ev, QualificationLost):
            # Keep the address: if the server comes back with the same
            # mapping, open connections carry on.
            log.info("SOCKS5 requests wait until the client qualifies again")
            self._status(socks_ready=False)
            self.ready.clear()

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, refreshing the status counters."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=STATUS_PERIOD)
            except asyncio.TimeoutError:
                self._status(**self.counters())

    async def close(self) -> None:
        """End SOCKS sessions (their TCP connections close with FIN), give the
        stack a moment to finish the closes, then stop everything."""
        if self.socks is not None:
            self.socks.close()
            try:
                await asyncio.wait_for(self.socks.wait_closed(), CLOSE_GRACE)
            except asyncio.TimeoutError:
                log.warning("SOCKS5 sessions did not end within %.0f s", CLOSE_GRACE)
        if self.stack is not None and self.interface is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CLOSE_GRACE
            while self._open_connections() and loop.time() < deadline:
                await asyncio.sleep(0.05)  # bounded wait for FIN exchanges to finish
            self.stack.close()
        final = self.counters()  # before the sockets go: they hold the UDP counters
        self.runner.close()
        self._status(**final)

    def _open_connections(self) -> int:
        """TCP connections still exchanging data or FINs (TIME-WAIT excluded)."""
        assert self.interface is not None
        return sum(1 for c in self.interface.tcp.connections() if c.state not in (TcpState.TIME_WAIT,
                                                                                  TcpState.CLOSED))

    # -- observability --------------------------------------------------------
    def counters(self) -> dict[str, object]:
        out = self.runner.counters()
        ep = self.runner.endpoint
        out["traffic"] = {
            "udp_datagrams_out": ep.sent if ep else 0,
            "udp_datagrams_in": ep.received if ep else 0,
            "udp_bytes_out": ep.bytes_sent if ep else 0,
            "udp_bytes_in": ep.bytes_received if ep else 0,
            "ipv6_packets_out": self.stack.packets_sent if self.stack else 0,
            "ipv6_packets_in": self.stack.packets_received_count if self.stack else 0,
        }
        if self.socks is not None:
            out["socks_sessions"] = self.socks.active
            out["socks_stats"] = dict(self.socks.stats)
        return out

    def _status(self, **fields: object) -> None:
        if self.status is not None:
            self.status.update(**fields)

    @property
    def socks_address(self) -> tuple[str, int]:
        assert self.socks is not None
        return self.socks.address

    @property
    def address(self) -> str | None:
        a = self.runner.core.address
        return str(ipaddress.IPv6Address(a)) if a else None
