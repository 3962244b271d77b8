"""Two relays announcing the Teredo prefix by anycast (docs/scaling.md), in the NAT simulator.

The native side's route for 2001::/32 moves from relay A to relay B, the
way an anycast announcement moves when routing changes or A is withdrawn.
Relays keep per-peer state, so B starts without an entry for the client:

* **shift** (A still up): the client's next packet still goes to A, but the
  answer comes back through B.  B queues it and bubbles the client through
  its server; the client answers, B delivers; the client sees a native
  source arrive through a relay it has not verified, holds the packet, runs
  its echo test, which B answers, and from then on sends through B.  No
  packet is lost; the first exchange takes a few extra round trips.
* **die** (A gone and withdrawn): nothing comes back, so nothing moves the
  client until its entry for the native host expires (PEER_VALIDITY, 30 s
  after the last packet received through A); then it tests again and finds B.
"""

from __future__ import annotations

import random
from ipaddress import IPv6Address

import pytest

from proxy.constants import PEER_VALIDITY
from proxy.teredo.relay import TeredoRelay
from proxy.testing.netsim import NativeHost, Network, RelayNode
from proxy.testing.scenarios import make_client, make_server, qualified

HOST6 = IPv6Address("2001:db8:1::100").packed
RELAY_A, RELAY_B = ("198.51.100.10", 3544), ("198.51.100.11", 3544)


def two_relays(model: str, seed: int):
    net = Network(seed=seed)
    make_server(net)
    a = TeredoRelay(secret=random.Random(seed).randbytes(32))
    b = TeredoRelay(secret=random.Random(seed + 1).randbytes(32))
    node_a = net.add(RelayNode(a, RELAY_A))
    node_b = net.add(RelayNode(b, RELAY_B))
    net._relay = node_a  # the native side's route for 2001::/32 (the simulator has one)
    net.add(NativeHost(HOST6))
    cl = make_client(net, model, 1, seed=seed)
    assert net.run(until=60, stop=qualified(cl))
    cl.ping(HOST6, seq=1)
    assert net.run(until=net.now + 10, stop=lambda: 1 in cl.replies)
    assert a.to_teredo >= 1 and b.to_teredo == 0
    return net, cl, a, b, node_b


def ping_every_second(net: Network, cl, seqs: range) -> None:
    for seq in seqs:
        cl.ping(HOST6, seq=seq)
        net.run(until=net.now + 1.0)


@pytest.mark.parametrize("model", ["restricted", "port-restricted", "full-cone", "linux"])
@pytest.mark.parametrize("seed", [1, 2])
def test_route_shift_moves_the_client_to_the_new_relay_without_loss(model, seed):
    net, cl, a, b, node_b = two_relays(model, seed)
    net._relay = node_b  # anycast now prefers B
    ping_every_second(net, cl, range(2, 12))
    assert sorted(cl.replies) == list(range(1, 12))  # nothing lost
    assert cl.replies[2] - cl.sent_at[2] < 0.5  # a few round trips through the server
    assert cl.core.stats["relays_trusted"] == 2  # A, then B after the echo test
    before = a.to_native
    ping_every_second(net, cl, range(12, 15))
    assert a.to_native == before  # the client sends through B now
    assert b.to_native >= 10 and b.to_teredo >= 10


@pytest.mark.parametrize("model", ["restricted", "full-cone"])
def test_dead_relay_costs_the_peer_validity_then_the_client_finds_the_other(model):
    net, cl, a, b, node_b = two_relays(model, seed=3)
    died = net.now
    net._by_endpoint.pop(RELAY_A)  # A's host is gone ...
    net._relay = node_b  # ... and its announcement withdrawn
    ping_every_second(net, cl, range(2, 40))
    answered = sorted(s for s in cl.replies if s >= 2)
    assert answered, "the client never moved to relay B"
    first = answered[0]
    # nothing came back while the entry through A stayed valid
    assert cl.sent_at[first] - died >= PEER_VALIDITY - 1.5
    assert cl.sent_at[first] - died <= PEER_VALIDITY + 3
    assert answered == list(range(first, 40))  # and everything after it did
    assert b.to_native == len(answered)
