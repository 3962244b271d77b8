"""RFC 4380 §5.2.8 local discovery between two of *our* clients on one LAN (root).

Namespaces built here (a :class:`Lab` with its own hosts, so the usual
cleanup applies)::

    srv  our server  198.51.100.1 + .2 ---- nat  wan 198.51.100.20  (MASQUERADE, no hairpinning)
                                             |  br0 10.77.0.1/24
                                    c1 10.77.0.2        c2 10.77.0.3

The NAT does not hairpin, and the clients run with ``--no-hairpinning``
(no RFC 6081 trailers): the LAN, found by multicast discovery, is the only
way from one client to the other.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from proxy.testing.netns import Lab, lab_unavailable_reason

pytestmark = [pytest.mark.interop]

SERVER, SERVER2, NAT_WAN = "198.51.100.1", "198.51.100.2", "198.51.100.20"
LAN = {"nat": "10.77.0.1", "c1": "10.77.0.2", "c2": "10.77.0.3"}


class LanLab(Lab):
    """Two clients on one bridge behind one NAT, and a server."""

    hosts = ("srv", "nat", "c1", "c2")

    def _build(self) -> None:
        for h in self.hosts:
            self._run("ip", "netns", "add", self.ns(h))
            self.run(h, "ip", "link", "set", "lo", "up")
        # WAN: one veth pair between the server and the NAT.
        self._veth(f"{self.tag}w", "srv", "wan", "nat", "wan")
        self.run("srv", "ip", "addr", "add", f"{SERVER}/24", "dev", "wan")
        self.run("srv", "ip", "addr", "add", f"{SERVER2}/24", "dev", "wan")
        self.run("nat", "ip", "addr", "add", f"{NAT_WAN}/24", "dev", "wan")
        # LAN: a bridge in the NAT namespace, one port per client.
        self.run("nat", "ip", "link", "add", "br0", "type", "bridge")
        self.run("nat", "ip", "link", "set", "br0", "up")
        self.run("nat", "ip", "addr", "add", f"{LAN['nat']}/24", "dev", "br0")
        for cli in ("c1", "c2"):
            self._veth(f"{self.tag}{cli}", "nat", f"p{cli}", cli, "lan")
            self.run("nat", "ip", "link", "set", f"p{cli}", "master", "br0")
            self.run(cli, "ip", "addr", "add", f"{LAN[cli]}/24", "dev", "lan")
            self.run(cli, "ip", "route", "add", "default", "via", LAN["nat"])
        self.run("nat", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.run("nat", "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")

    def _veth(self, tmp: str, a: str, a_name: str, b: str, b_name: str) -> None:
        """A veth pair from ``a`` (named ``a_name``) to ``b`` (``b_name``), both up."""
        self._run("ip", "link", "add", tmp, "type", "veth", "peer", "name", b_name, "netns", self.ns(b))
        self._run("ip", "link", "set", tmp, "netns", self.ns(a))
        self.run(a, "ip", "link", "set", tmp, "name", a_name)
        self.run(a, "ip", "link", "set", a_name, "up")
        self.run(b, "ip", "link", "set", b_name, "up")


@pytest.fixture
def lan():
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    with LanLab() as lab:
        lab.env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        lab.tp = [sys.executable, "-m", "proxy"]
        lab.spawn("server", "srv", *lab.tp, "server", "--address", SERVER, env=lab.env)
        lab.wait_for(lambda: "Teredo server on" in lab.log("server"), 15, "our server to start")
        yield lab


def _status(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def start_c2(lab, *extra) -> str:
    """The client to be reached, running until the test ends; its Teredo address."""
    path = os.path.join(lab.workdir, "c2.json")
    lab.spawn("c2", "c2", *lab.tp, "client", "--server", SERVER, "--status-file", path, "-v",
              "--socks", "127.0.0.1:1080", "--no-hairpinning", *extra, env=lab.env)
    st = lab.wait_for(lambda: (s := _status(path)) and s["state"] == "qualified" and s, 30,
                      f"c2 to qualify ({lab.log('c2')[-400:]})")
    return st["address"]


def ping_from_c1(lab, target: str, *extra):
    return lab.run("c1", *lab.tp, "client", "--server", SERVER, "--ping", target, "--count", "3",
                   "--interval", "1", "--no-hairpinning", *extra, check=False, timeout=90)


def test_two_clients_behind_one_nat_meet_by_local_discovery(lan):
    target = start_c2(lan, "--local-discovery")
    assert "local discovery: listening on 224.0.0.253:3544" in lan.log("c2")
    r = ping_from_c1(lan, target, "--local-discovery")
    assert r.returncode == 0, r.stdout + r.stderr + lan.log("c2")[-3000:]
    assert f"bytes from {target}: icmp_seq=" in r.stdout


def test_without_local_discovery_they_do_not(lan):
    target = start_c2(lan)
    r = ping_from_c1(lan, target)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "0 received" in r.stdout
