"""The client core in the NAT simulator: NAT types, reachability, loss, failover.

Table-driven over every NAT model (RFC 4787 terms, see proxy/testing/netsim.py).
Virtual time: each test runs whole Teredo exchanges in milliseconds.
"""

from __future__ import annotations

import itertools

import pytest

from proxy.errors import DropReason
from proxy.teredo.client_events import NatType, Qualified, ServerFailed
from proxy.testing.netsim import NAT_MODELS, Network
from proxy.testing.scenarios import SRV1, make_client, make_server, qualified

EXPECTED_NAT = {
    "open": NatType.OPEN,
    "full-cone": NatType.CONE,
    "restricted": NatType.RESTRICTED,
    "port-restricted": NatType.RESTRICTED,
    "symmetric": NatType.SYMMETRIC,
    "linux": NatType.RESTRICTED,
}


def test_linux_nat_in_rfc_order_from_one_socket():
    # The RFC order (cone RS first, then the secondary from the same socket)
    # against a Linux conntrack NAT: the filtered cone RA takes the secondary
    # tuple, so the secondary sees another port.  Without the collision rule
    # (no local endpoint known) that reads as symmetric; with it, restricted.
    for local_known, expected in ((False, NatType.SYMMETRIC), (True, NatType.RESTRICTED)):
        net = Network(seed=1)
        make_server(net)
        cl = make_client(net, "linux", 1, separate_probe=False)
        if not local_known:
            cl.core.qual.local = None
        assert net.run(until=60, stop=qualified(cl))
        assert cl.core.nat is expected


def test_linux_nat_one_socket_breaks_new_destinations_the_probe_socket_does_not():
    """Why the NAT-type comparison uses a second socket.

    From one socket, the secondary's new port becomes the mapping Linux
    gives every *new* destination, so a peer sees us from a port our address
    does not name, and refuses us.  With the probe socket the main socket
    never talks to the secondary address.
    """
    results = {}
    for separate in (False, True):
        net = Network(seed=4)
        make_server(net)
        a = make_client(net, "linux", 1, separate_probe=separate)
        b = make_client(net, "full-cone", 2)
        assert net.run(until=60, stop=qualified(a, b))
        a.ping(b.core.address, seq=1)
        results[separate] = net.run(until=net.now + 20, stop=lambda: 1 in a.replies)
        if not separate:
            assert b.core.drops[DropReason.MAPPING_MISMATCH] > 0
    assert results == {False: False, True: True}


@pytest.mark.parametrize("model", list(NAT_MODELS))
def test_nat_type_detected(model):
    net = Network(seed=1)
    make_server(net)
    cl = make_client(net, model, 1)
    assert net.run(until=60, stop=qualified(cl))
    assert cl.core.nat is EXPECTED_NAT[model]
    q = [e for e in cl.events if isinstance(e, Qualified)]
    assert len(q) == 1 and q[0].server == SRV1 and q[0].mtu == 1280
    # qualification behind any NAT takes a few round trips, not N x T
    assert net.now < 1.0


@pytest.mark.parametrize("model", list(NAT_MODELS))
def test_refresh_keeps_address(model):
    net = Network(seed=2)
    make_server(net)
    cl = make_client(net, model, 1)
    assert net.run(until=60, stop=qualified(cl))
    addr = cl.core.address
    net.run(until=600)
    assert cl.core.qualified and cl.core.address == addr
    assert not any(isinstance(e, ServerFailed) for e in cl.events)


def reachable(model_a, model_b, hairpin=None, seed=3, **cfg):
    """A pings B's Teredo address; True when the echo reply comes back."""
    net = Network(seed=seed)
    make_server(net)
    if hairpin is None:
        a = make_client(net, model_a, 1, **cfg)
        b = make_client(net, model_b, 2, **cfg)
    else:  # both behind one NAT
        nat = net.add_nat("203.0.113.9", model_a, hairpin=hairpin)
        a = make_client(net, model_a, 1, nat=nat, **cfg)
        b = make_client(net, model_b, 2, nat=nat, **cfg)
    assert net.run(until=60, stop=qualified(a, b))
    a.ping(b.core.address, seq=1)
    return net.run(until=net.now + 30, stop=lambda: 1 in a.replies)


PAIRS = list(itertools.product(NAT_MODELS, repeat=2))


def expected_reachable(a: str, b: str) -> bool:
    """Who reaches whom when ``a`` starts (direct + indirect bubbles, §5.2.4 case 5).

    * ``a`` symmetric: its mapping towards the peer is not the one in its
      address, and the peer's answer goes to the mapping in the address.
    * ``b`` symmetric: ``b`` answers our indirect bubble from a new mapping;
      the answer names our link-local nonce, so we accept it (Miredo's
      scheme) -- if our NAT lets it in: no filtering, or by address only.
    * ``b`` Linux conntrack: our direct bubble, filtered at ``b``'s NAT,
      still takes the tuple there, so ``b``'s answer leaves from another
      port: same condition.  (Two Linux NATs never meet: the lab shows the
      same for two Miredo clients.)
    """
    if a == "symmetric":
        return False
    if b in ("symmetric", "linux"):
        return a in ("open", "full-cone", "restricted")
    return True


@pytest.mark.parametrize("model_a,model_b", PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_peer_to_peer_reachability(model_a, model_b):
    assert reachable(model_a, model_b) is expected_reachable(model_a, model_b)


@pytest.mark.parametrize("model", ["full-cone", "restricted", "port-restricted", "linux"])
@pytest.mark.parametrize("hairpin", [True, False])
def test_same_nat_peers(model, hairpin):
    # RFC 6081 §5.6: the Alternate Address trailer lets two clients behind
    # one NAT talk over the LAN even when the NAT does not hairpin.
    assert reachable(model, model, hairpin=hairpin)


@pytest.mark.parametrize("model", ["restricted", "port-restricted"])
def test_same_nat_without_hairpinning_extension_needs_a_hairpinning_nat(model):
    assert reachable(model, model, hairpin=True, hairpinning=False)
    assert not reachable(model, model, hairpin=False, hairpinning=False)


@pytest.mark.parametrize("seed", range(8))
def test_qualification_under_loss_and_reordering(seed):
    net = Network(seed=seed, loss=0.2, delay=0.02, jitter=0.05)
    make_server(net)
    cl = make_client(net, "port-restricted", 1, seed=seed)
    assert net.run(until=300, stop=qualified(cl))
    # loss may hide the secondary's answer (nat unknown) but never invents a cone
    assert cl.core.nat in (NatType.RESTRICTED, NatType.UNKNOWN)


@pytest.mark.parametrize("seed", range(6))
def test_peer_to_peer_under_loss(seed):
    net = Network(seed=seed, loss=0.1, delay=0.02, jitter=0.03)
    make_server(net)
    a = make_client(net, "restricted", 1, seed=seed)
    b = make_client(net, "port-restricted", 2, seed=seed)
    assert net.run(until=300, stop=qualified(a, b))
    for seq in range(1, 6):
        a.ping(b.core.address, seq=seq)
        net.run(until=net.now + 1.0)
    assert net.run(until=net.now + 30, stop=lambda: len(a.replies) >= 2)


def test_failover_to_second_server_and_name_resolution():
    net = Network(seed=5)
    make_server(net)  # only 198.51.100.1/.2 exists
    cl = make_client(net, "restricted", 1, servers=("teredo.invalid", "dead.example", SRV1),
                     resolver={"dead.example": ["192.0.2.77"]})
    assert net.run(until=120, stop=qualified(cl))
    failed = [e.server for e in cl.events if isinstance(e, ServerFailed)]
    assert failed == ["teredo.invalid", "dead.example"]
    assert cl.core.server == SRV1
    # 192.0.2.77 got N=3 rounds of T=4 s; the unresolvable name failed at once
    assert 12 <= net.now < 14


def test_backoff_then_recovery():
    net = Network(seed=6)
    cl = make_client(net, "restricted", 1)
    net.run(until=13)
    assert cl.core.state == "failed"
    make_server(net)
    assert net.run(until=200, stop=qualified(cl))
    assert cl.core.state == "qualified"


@pytest.mark.parametrize("model", ["full-cone", "restricted", "port-restricted"])
def test_nat_reboot_moves_the_mapping_and_the_client_follows(model):
    from proxy.teredo.client_events import AddressChanged

    net = Network(seed=7)
    make_server(net)
    nat = net.add_nat("203.0.113.1", model)
    cl = make_client(net, model, 1, nat=nat)
    assert net.run(until=60, stop=qualified(cl))
    old = cl.core.address
    nat.mappings.clear(), nat.inside.clear(), nat.allowed.clear(), nat.blocked.clear()
    nat.port_preserving = False  # the rebooted NAT picks a new port
    assert net.run(until=net.now + 60, stop=lambda: any(isinstance(e, AddressChanged) for e in cl.events))
    assert net.run(until=net.now + 10, stop=qualified(cl))
    assert cl.core.address != old and cl.core.nat is EXPECTED_NAT[model]
