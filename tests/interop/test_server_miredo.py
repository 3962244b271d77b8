"""Our Teredo server with real Miredo clients and relays (RFC 4380 §5.3 interop).

* A Miredo client behind a Linux NAT qualifies against our server and gets
  an address naming it; through a Miredo relay it fetches a file from a
  native IPv6 host byte-exact.  The relay is found by the client's echo
  request, which only our server's native forwarding can deliver.
* Cone NAT (a fixed port forward): the cone RS is answered from the
  secondary address and passes the NAT; the same probe behind the
  restricted NAT gets no answer; a Miredo client qualifies there too.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from proxy.teredo.address import TeredoAddress

pytestmark = [pytest.mark.interop]

SERVER = "198.51.100.1"


def start_our_server(lab, tp):
    lab.spawn("server", "srv", *tp, "server", "--address", SERVER, "-v", env=lab.env)
    lab.wait_for(lambda: "Teredo server on" in lab.log("server"), 15, "our server to start")


def test_miredo_client_qualifies_and_fetches_through_miredo_relay(lab, tp, payload):
    start_our_server(lab, tp)
    lab.start_miredo_relay()
    lab.start_miredo_client("cli2")
    addr = lab.wait_for(lambda: lab.teredo_address("cli2"), 30, "the Miredo client's Teredo address")
    t = TeredoAddress.parse(addr)
    assert t.server == SERVER
    assert t.mapped == ("198.51.100.21", t.port)  # nat2's public address
    assert t.random_bits != 0 or t.flags == 0        # Miredo sets RFC 5991 random bits
    r = lab.run("cli2", "curl", "-s", "-m", "60", "-o", f"{lab.workdir}/got.bin", "-w", "%{http_code}",
                "http://[2001:db8:1::100]:8080/big.bin", check=False, timeout=90)
    assert r.stdout == "200", lab.log("server") + lab.log("miredo-client")
    with open(f"{lab.workdir}/got.bin", "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(payload).digest()


def probe(lab, tp, host, *, cone, port=3545):
    r = lab.run(host, tp[0], "-m", "proxy.testing.rsprobe", SERVER, "--bind", f"0.0.0.0:{port}",
                "--timeout", "3", *(["--cone"] if cone else []), check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def test_cone_probe_passes_a_cone_nat_only(lab, tp):
    start_our_server(lab, tp)
    # Restricted NAT (MASQUERADE): the RA to a cone RS comes from the
    # secondary address, which the client never contacted: filtered.
    assert probe(lab, tp, "cli", cone=True) is None
    restricted = probe(lab, tp, "cli", cone=False)
    assert restricted and restricted["answered_from"] == [SERVER, 3544]
    assert restricted["mapped"][0] == "198.51.100.20"
    # Cone NAT: the fixed forward lets the secondary address's RA in.
    lab.nat_mode("cone")
    cone = probe(lab, tp, "cli", cone=True)
    assert cone and cone["answered_from"] == ["198.51.100.2", 3544] and cone["cone"]
    assert cone["mapped"] == ["198.51.100.20", 3545]


def test_miredo_client_behind_cone_nat(lab, tp):
    start_our_server(lab, tp)
    lab.nat_mode("cone")
    lab.start_miredo_client("cli", bind_port=3545)
    addr = lab.wait_for(lambda: lab.teredo_address("cli"), 30, "the Miredo client's Teredo address")
    assert TeredoAddress.parse(addr).mapped == ("198.51.100.20", 3545)


def test_without_native_forwarding_the_relay_is_never_found(lab, tp, payload):
    """The control for the first test: relay discovery needs our echo forwarding."""
    lab.spawn("server", "srv", *tp, "server", "--address", SERVER, "--no-native", "-v", env=lab.env)
    lab.wait_for(lambda: "Teredo server on" in lab.log("server"), 15, "our server to start")
    lab.start_miredo_relay()
    lab.start_miredo_client("cli2")
    lab.wait_for(lambda: lab.teredo_address("cli2"), 30, "the Miredo client's Teredo address")
    r = lab.run("cli2", "curl", "-s", "-m", "12", "-o", "/dev/null", "-w", "%{http_code}",
                "http://[2001:db8:1::100]:8080/big.bin", check=False, timeout=30)
    assert r.stdout != "200"
