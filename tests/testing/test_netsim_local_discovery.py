"""RFC 4380 §5.2.8 in the netsim: two clients behind one NAT that does not hairpin.

With RFC 6081 hairpinning switched off, their only way to each other is the
LAN, which they find by multicast local discovery: on, they reach each
other whatever the NAT; off, never.
"""

from __future__ import annotations

import pytest

from proxy.testing.netsim import Network
from proxy.testing.scenarios import make_client, make_server, qualified

MODELS = ["full-cone", "restricted", "port-restricted", "symmetric", "linux"]


def same_lan(model: str, discovery: bool, seed: int = 5):
    net = Network(seed=seed)
    make_server(net)
    nat = net.add_nat("203.0.113.9", model, hairpin=False)
    cfg = dict(hairpinning=False, local_discovery=discovery)
    a = make_client(net, model, 1, nat=nat, **cfg)
    b = make_client(net, model, 2, nat=nat, **cfg)
    assert net.run(until=60, stop=qualified(a, b))
    return net, a, b


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("discovery", [True, False])
def test_same_nat_peers_meet_only_through_local_discovery(model, discovery):
    net, a, b = same_lan(model, discovery)
    a.ping(b.core.address, seq=1)
    got = net.run(until=net.now + 30, stop=lambda: 1 in a.replies)
    assert got is discovery
    if discovery:
        # Both learnt the other as a local peer at its LAN endpoint.
        assert (a.core.peers.get(b.core.address).ipv4, a.core.peers.get(b.core.address).port) == b.local
        assert a.core.peers.get(b.core.address).local
        assert b.core.stats["discovery_bubbles_in"] + a.core.stats["discovery_bubbles_in"] >= 1
    else:
        assert a.core.stats["discovery_bubbles"] == 0


def test_discovery_reaches_the_lan_only():
    # A third client behind another NAT hears no discovery bubble.
    net = Network(seed=2)
    make_server(net)
    nat = net.add_nat("203.0.113.9", "restricted")
    a = make_client(net, "restricted", 1, nat=nat, local_discovery=True)
    b = make_client(net, "restricted", 2, nat=nat, local_discovery=True)
    far = make_client(net, "restricted", 3, local_discovery=True)
    assert net.run(until=60, stop=qualified(a, b, far))
    net.run(until=net.now + 700)
    assert far.core.stats["discovery_bubbles_in"] == 0
    assert a.core.stats["discovery_bubbles_in"] >= 2 and b.core.stats["discovery_bubbles_in"] >= 2
    assert a.core.stats["discovery_bubbles"] >= 3  # every 200-300 s
    assert not a.core.drops and not b.core.drops


def test_peers_keep_talking_across_many_discovery_periods():
    net, a, b = same_lan("linux", True, seed=11)
    for seq in range(1, 6):
        net.run(until=net.now + 250)
        a.ping(b.core.address, seq=seq)
        assert net.run(until=net.now + 30, stop=lambda s=seq: s in a.replies), seq
