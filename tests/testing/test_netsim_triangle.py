"""Client <-> server <-> relay <-> native host, all cores in the NAT simulator.

Relay discovery (RFC 4380 §5.2.9): the client's echo test goes out through
its server; the native host answers towards the Teredo prefix, which the
relay serves; the relay bubbles the client through the server (§5.4.1),
the client answers, and from then on traffic flows client <-> relay.
"""

from __future__ import annotations

import random
from ipaddress import IPv6Address

import pytest

from proxy.teredo.relay import TeredoRelay
from proxy.testing.netsim import NAT_MODELS, NativeHost, Network, RelayNode

from proxy.testing.scenarios import make_client, make_server, qualified

HOST6 = IPv6Address("2001:db8:1::100").packed
RELAY = ("198.51.100.10", 3544)


def triangle(model: str, seed: int = 0, **net_kw):
    net = Network(seed=seed, **net_kw)
    make_server(net)
    relay = TeredoRelay(secret=random.Random(seed).randbytes(32))
    net.add(RelayNode(relay, RELAY))
    host = net.add(NativeHost(HOST6))
    cl = make_client(net, model, 1, seed=seed)
    assert net.run(until=120, stop=qualified(cl))
    return net, cl, relay, host


@pytest.mark.parametrize("model", list(NAT_MODELS))
def test_ping_native_host_through_our_relay(model):
    net, cl, relay, host = triangle(model)
    for seq in (1, 2, 3):
        cl.ping(HOST6, seq=seq)
    ok = net.run(until=net.now + 20, stop=lambda: len(cl.replies) == 3)
    # our relay checks the client's mapping strictly (§5.4.2): a client behind
    # a symmetric NAT answers its bubble from another mapping and is refused
    assert ok is (model != "symmetric")
    if ok:
        assert cl.core.stats["relays_trusted"] == 1
        assert relay.to_native >= 3 and relay.to_teredo >= 3
        # the first reply waited for relay discovery, the later ones did not
        rtts = [cl.replies[s] - cl.sent_at[s] for s in (1, 2, 3)]
        assert all(r < 0.2 for r in rtts)


@pytest.mark.parametrize("seed", range(5))
def test_triangle_under_loss(seed):
    net, cl, relay, host = triangle("port-restricted", seed=seed, loss=0.1, delay=0.01, jitter=0.02)
    for seq in range(1, 11):
        cl.ping(HOST6, seq=seq)
        net.run(until=net.now + 1.0)
    assert net.run(until=net.now + 30, stop=lambda: len(cl.replies) >= 3)


def test_native_host_reaches_the_client_first():
    """Inbound first: the native side starts; the client holds the packet
    until its own echo test proves the relay (§5.2.3 case 6)."""
    net, cl, relay, host = triangle("restricted")
    from proxy.ipstack.wire.icmpv6 import Echo
    from proxy.ipstack.wire.ipv6 import NextHeader
    from proxy.teredo.packet import ipv6_packet

    me = cl.core.address
    msg = Echo(True, 7, 77, b"from-native").emit(HOST6, me)
    net.send_ipv6(ipv6_packet(HOST6, me, NextHeader.ICMPV6, msg))
    assert net.run(until=net.now + 20, stop=lambda: any(
        p[40] == 129 and p[24:40] == HOST6 for p in host.received if len(p) > 40))
