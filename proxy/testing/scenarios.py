"""Builders for Teredo scenarios in :mod:`proxy.testing.netsim` (tests, examples, benchmarks).

Addressing: servers on 198.51.100.1/.2, client ``n`` behind its own NAT at
203.0.113.n (LAN 10.n.0.2), or directly on 198.51.100.(100+n) when ``open``.
"""

from __future__ import annotations

import random
from typing import Callable

from proxy.config.client import ClientConfig
from proxy.config.server import ServerConfig
from proxy.teredo.client import TeredoClient
from proxy.teredo.server import TeredoServer
from proxy.testing.netsim import ClientNode, Nat, Network, ServerNode

__all__ = ["SRV1", "SRV2", "make_server", "make_client", "qualified"]

SRV1, SRV2 = "198.51.100.1", "198.51.100.2"


def make_server(net: Network, address: str = SRV1, address2: str = SRV2) -> ServerNode:
    """Our server core on ``address``/``address2``, forwarding to native IPv6."""
    cfg = ServerConfig(address=address, address2=address2, forward_native=True).validate()
    return net.add(ServerNode(TeredoServer(cfg)))


def make_client(net: Network, model: str, n: int, *, nat: Nat | None = None, servers=(SRV1,), seed: int = 0,
                resolver: dict[str, list[str]] | None = None, **cfg) -> ClientNode:
    """Client ``n`` behind its own NAT of ``model`` (or behind ``nat``), seeded RNG."""
    config = ClientConfig(servers=tuple(servers), **cfg).validate()
    rng = random.Random(seed * 1000 + n)
    if model == "open":
        local = (f"198.51.100.{100 + n}", 40000 + n)
        return net.add(ClientNode(TeredoClient(config, rng=rng, local=local), local, resolver))
    if nat is None:
        nat = net.add_nat(f"203.0.113.{n}", model)
    local = (f"10.{n}.0.2", 40000 + n)
    return net.add(ClientNode(TeredoClient(config, rng=rng, local=local), local, resolver), nat)


def qualified(*nodes: ClientNode) -> Callable[[], bool]:
    """A ``stop`` condition: every client has its address."""
    return lambda: all(nd.core.qualified for nd in nodes)
