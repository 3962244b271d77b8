"""A whole Teredo network in one process, on loopback, without root.

:class:`TeredoNetwork` is the embedded default behind ``teredo-proxy demo``
and the pytest fixtures (``proxy.testing.pytest_plugin``)::

      app --SOCKS5--> client (userspace stack) --UDP--[NAT model]--> server 127.0.0.1 + .2
                         |                                    \\
                         +--UDP--> relay 127.0.0.3 <-- memory IPv6 network --> web host 2001:db8:1::100

* the **server** qualifies the client on two loopback addresses and forwards
  its relay-discovery ping into the in-memory IPv6 network;
* the **relay** serves 2001::/32 on that network (memory native link);
* the **web host** is our own userspace stack on the network, serving
  ``/index.html`` and ``/big.bin`` over HTTP and echoing UDP on port 7;
* the **client** is the real ``teredo-proxy client`` machinery with its SOCKS5
  endpoint, optionally behind a userspace NAT (``nat=``) with seeded loss.

Use it as an async context manager::

    async with TeredoNetwork() as net:
        status, body = await net.fetch("/index.html")
        print(net.socks_url, net.web.url)
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from dataclasses import dataclass, field

from proxy.apps.client_proxy import TeredoProxy
from proxy.apps.server import ServerRunner
from proxy.config.client import ClientConfig
from proxy.config.server import ServerConfig
from proxy.config.socks import SocksConfig
from proxy.native.memory import MemoryLink
from proxy.status import StatusFile
from proxy.teredo.relay import TeredoRelay
from proxy.teredo.relay_asyncio import RelayDriver, open_udp_socket
from proxy.testing.ipv6net import Ipv6Network
from proxy.testing.socks_client import http_get
from proxy.testing.udpnat import LoopbackNat, udp_factory
from proxy.testing.webhost import WebHost

__all__ = ["TeredoNetwork", "NetworkOptions", "NAT_CHOICES"]

SERVER1, SERVER2, RELAY4, CLIENT4, NAT4 = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
RELAY6 = "2001:db8:1::10"
WEB6 = "2001:db8:1::100"
#: ``nat=`` values: no NAT, or one of the userspace NAT models.
NAT_CHOICES = ("open", "full-cone", "restricted", "port-restricted", "symmetric")


@dataclass
class NetworkOptions:
    """Knobs of the embedded network."""

    nat: str = "open"
    "NAT in front of the client: one of NAT_CHOICES."
    loss: float = 0.0
    "Probability that the NAT drops a datagram (each way)."
    seed: int | None = None
    "Seed for every RNG (None: system randomness)."
    socks_port: int = 0
    "SOCKS5 listen port on 127.0.0.1 (0: a free one)."
    big_size: int = 1 << 20
    "Size of /big.bin on the web host."
    http_port: int = 80
    "HTTP port of the web host."
    qualify_timeout: float = 20.0
    "How long start() waits for the client to qualify."
    status_file: str | None = None
    "The client's --status-file, if any."
    files: dict[str, bytes] = field(default_factory=dict)
    "Extra files to serve."


def _free_udp_port(*hosts: str) -> int:
    """A UDP port free on every one of ``hosts`` (the server binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for h in hosts:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((h, port))
        except OSError:
            continue
        return port
    raise OSError("no common free UDP port")


class TeredoNetwork:
    """Server, relay, native IPv6 web host and client, wired on loopback."""

    def __init__(self, options: NetworkOptions | None = None, **kw) -> None:
        self.options = options or NetworkOptions(**kw)
        if self.options.nat not in NAT_CHOICES:
            raise ValueError(f"nat must be one of {', '.join(NAT_CHOICES)}")
        seed = self.options.seed
        self.rng: random.Random = random.Random(seed) if seed is not None else random.SystemRandom()
        self.ipv6 = Ipv6Network()
        self.web = WebHost(self.ipv6, WEB6, http_port=self.options.http_port, rng=self._child_rng())
        self.server: ServerRunner | None = None
        self.relay: TeredoRelay | None = None
        self.relay_driver: RelayDriver | None = None
        self.client: TeredoProxy | None = None
        self.nat: LoopbackNat | None = None
        self._link: MemoryLink | None = None
        self._relay_sock: socket.socket | None = None
        self.server_port = 0

    def _child_rng(self) -> random.Random:
        return random.Random(self.rng.getrandbits(64)) if self.options.seed is not None else random.SystemRandom()

    # -- lifecycle ------------------------------------------------------------
    async def __aenter__(self) -> "TeredoNetwork":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        """Bring every role up and wait until the client is qualified."""
        loop = asyncio.get_running_loop()
        opts = self.options
        try:
            await self._start_web()
            self.server_port = _free_udp_port(SERVER1, SERVER2)
            self.server = ServerRunner(
                ServerConfig(address=SERVER1, address2=SERVER2, port=self.server_port,
                             allow_loopback=True).validate(),
                native=self.ipv6.send,
            )
            await self.server.start()
            self._start_relay(loop)
            if opts.nat != "open":
                self.nat = LoopbackNat(opts.nat, public_ip=NAT4, loss=opts.loss, rng=self._child_rng(), loop=loop)
            elif opts.loss:
                self.nat = None
                raise ValueError("loss needs a NAT model (it is applied by the NAT)")
            config = ClientConfig(
                servers=(SERVER1,), server_port=self.server_port, bind=CLIENT4 if self.nat is None else "0.0.0.0",
                allow_loopback=True, status_file=opts.status_file,
                socks=SocksConfig(host="127.0.0.1", port=opts.socks_port),
            ).validate()
            status = StatusFile(opts.status_file, "client") if opts.status_file else None
            self.client = TeredoProxy(config, rng=self._child_rng(), status=status,
                                      udp_factory=udp_factory(self.nat, CLIENT4))
            await self.client.start()
            await asyncio.wait_for(self.client.ready.wait(), opts.qualify_timeout)
        except BaseException:
            await self.close()
            raise

    async def _start_web(self) -> None:
        opts = self.options
        big = random.Random(opts.seed).randbytes(opts.big_size) if opts.seed is not None else os.urandom(opts.big_size)
        self.web.add_file("/index.html", b"hello from native IPv6, through Teredo\n")
        self.web.add_file("/big.bin", big)
        for path, data in opts.files.items():
            self.web.add_file(path, data)
        await self.web.start()

    def _start_relay(self, loop: asyncio.AbstractEventLoop) -> None:
        import ipaddress

        self._link = MemoryLink()
        self.relay = TeredoRelay(
            secret=self.rng.getrandbits(256).to_bytes(32, "big"), router=True,
            icmp_source=ipaddress.IPv6Address(RELAY6).packed, max_peers=4096,
            server_port=self.server_port, require_global=False,
        )
        self._relay_sock = open_udp_socket(RELAY4, 0)
        self.relay_driver = RelayDriver(self.relay, self._relay_sock, self._link, loop)
        self.ipv6.attach_link(self._link, "2001::/32", "relay", loop)
        self.relay_driver.start()

    async def close(self) -> None:
        """Stop every role; never raises."""
        if self.client is not None:
            try:
                await self.client.close()
            except Exception:  # pragma: no cover - best-effort teardown
                pass
        if self.relay_driver is not None:
            self.relay_driver.stop()
        if self._relay_sock is not None:
            self._relay_sock.close()
        self.ipv6.close()
        if self._link is not None:
            self._link.close()
        if self.server is not None:
            self.server.close()
        self.web.close()

    # -- use ----------------------------------------------------------------
    @property
    def socks_address(self) -> tuple[str, int]:
        assert self.client is not None
        return self.client.socks_address

    @property
    def socks_url(self) -> str:
        host, port = self.socks_address
        return f"socks5h://{host}:{port}"

    @property
    def client_address(self) -> str | None:
        return self.client.address if self.client else None

    async def fetch(self, path: str = "/index.html", timeout: float = 60.0) -> tuple[int, bytes]:
        """GET a file of the web host through the client's SOCKS5 endpoint."""
        return await http_get(self.socks_address, self.web.url.rstrip("/") + "/" + path.lstrip("/"),
                              timeout=timeout)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Counters per role, for the demo's live view and for assertions."""
        out: dict[str, dict[str, object]] = {}
        if self.server is not None:
            s = self.server.core
            out["server"] = {"rs": s.stats["rs"], "ra": s.stats["ra"],
                             "to_clients": s.stats["forwarded_teredo"], "to_native": s.stats["forwarded_native"],
                             "dropped": sum(s.drops.values())}
        if self.relay is not None:
            r = self.relay
            out["relay"] = {"peers": len(r.peers) if hasattr(r, "peers") else None,
                            "to_native": getattr(r, "to_native", None), "to_teredo": getattr(r, "to_teredo", None),
                            "dropped": sum(r.drops.values())}
        if self.client is not None:
            core = self.client.runner.core
            traffic = self.client.counters()["traffic"]
            out["client"] = {"state": core.state, "address": self.client.address, "nat": core.nat.value,
                             **traffic, "socks_sessions": self.client.socks.active if self.client.socks else 0}
        out["web"] = dict(self.web.counters)
        if self.nat is not None:
            out["nat"] = {"model": self.nat.model, "filtered": self.nat.dropped_filtered,
                          "lost": self.nat.dropped_loss}
        return out
