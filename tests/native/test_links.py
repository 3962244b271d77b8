"""Native links: the memory pair everywhere; TUN and raw sockets in throwaway namespaces (root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from proxy.apps.stress import in_netns
from proxy.native.base import NativeLink, NativeLinkError
from proxy.native.memory import MemoryLink
from proxy.teredo.packet import ipv6_packet
from proxy.testing.relay_fixtures import CLIENT, a6

ROOT_REASON = None if os.geteuid() == 0 and os.path.exists("/dev/net/tun") else "needs root and /dev/net/tun"


def test_memory_link_round_trip():
    link = MemoryLink(mtu=1400)
    try:
        assert isinstance(link, NativeLink) and link.router and link.mtu == 1400
        with pytest.raises(BlockingIOError):
            link.recv()
        link.peer.send(b"from native")
        assert link.recv() == b"from native"
        link.send(b"to native")
        assert link.peer.recv(100) == b"to native"
    finally:
        link.close()


@pytest.fixture
def netns():
    if ROOT_REASON:
        pytest.skip(ROOT_REASON)
    name = "relay-nl" + os.urandom(3).hex()
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def _tun_in_namespace() -> dict:
    import select
    import socket

    from proxy.native.tun_linux import TunLink

    link = TunLink("tptest", 1400)
    out = {"name": link.name, "router": link.router}
    out["route"] = subprocess.run(["ip", "-6", "route", "show", "2001::/32"], capture_output=True, text=True).stdout
    show = subprocess.run(["ip", "-6", "addr", "show", "dev", "tptest"], capture_output=True, text=True).stdout
    out["link_local"] = "fe80::ffff:ffff:ffff/64" in show
    # (setns does not remount /sys: ask the kernel over netlink through ip)
    out["mtu"] = subprocess.run(["ip", "-o", "link", "show", "tptest"], capture_output=True, text=True).stdout.split(" mtu ")[1].split()[0]
    subprocess.run(["ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "lo", "nodad"], check=True)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.sendto(b"via the tunnel", (socket.inet_ntop(socket.AF_INET6, CLIENT), 9))
    select.select([link.fileno()], [], [], 5)
    got = link.recv()
    out["read_dst"] = got[24:40].hex()
    # and a packet written by the relay reaches a local socket
    r = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    r.bind(("2001:db8::1", 5000))
    udp = bytes.fromhex("138813880014" "0000") + b"from tunnel!"  # ports 5000 -> 5000, no checksum fixup below
    from proxy.ipstack.wire.checksum import upper_layer_checksum

    pkt = ipv6_packet(CLIENT, a6("2001:db8::1"), 17, udp)
    c = upper_layer_checksum(CLIENT, a6("2001:db8::1"), 17, udp)
    pkt = pkt[:46] + c.to_bytes(2, "big") + pkt[48:]
    link.send(pkt)
    r.settimeout(5)
    out["delivered"] = r.recv(100).decode()
    link.close()  # the device goes with the descriptor
    out["gone"] = subprocess.run(["ip", "link", "show", "tptest"], capture_output=True).returncode != 0
    return out


def test_tun_link_configures_reads_and_writes(netns):
    out = in_netns(netns, _tun_in_namespace)
    assert out["name"] == "tptest" and out["router"] is False
    assert "dev tptest" in out["route"] and "metric 1024" in out["route"]
    assert out["link_local"] and out["mtu"] == "1400"
    assert out["read_dst"] == CLIENT.hex()
    assert out["delivered"] == "from tunnel!"
    assert out["gone"]


def test_tun_link_name_too_long():
    from proxy.native.tun_linux import TunLink

    with pytest.raises(NativeLinkError):
        TunLink("x" * 16)


def _raw_in_namespace() -> dict:
    import select
    import socket

    from proxy.native.raw_socket import RawLink

    run = lambda *c: subprocess.run(c, check=True)  # noqa: E731
    run("ip", "link", "add", "ra", "type", "veth", "peer", "name", "rb")
    run("ip", "link", "set", "ra", "up")
    run("ip", "link", "set", "rb", "up")
    run("ip", "-6", "addr", "add", "2001:db8:5::1/64", "dev", "ra", "nodad")
    run("ip", "-6", "addr", "add", "2001:db8:5::2/64", "dev", "rb", "nodad")
    run("ip", "-6", "route", "add", "blackhole", "2001::/32")
    link = RawLink("ra")
    # a packet for the Teredo prefix arriving on "ra" (sent out of "rb" at ra's MAC)
    mac = subprocess.run(["ip", "-o", "link", "show", "ra"], capture_output=True, text=True).stdout.split("link/ether ")[1].split()[0]
    run("ip", "-6", "neigh", "add", "2001::1", "lladdr", mac, "dev", "rb")
    run("ip", "-6", "route", "add", "2001::/32", "dev", "rb", "table", "100")
    run("ip", "-6", "rule", "add", "from", "2001:db8:5::2", "table", "100")
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("2001:db8:5::2", 0))
    s.sendto(b"teredo-bound", ("2001::1", 9))
    s.sendto(b"not for us", ("2001:db8:5::1", 9))
    select.select([link.fileno()], [], [], 5)
    got = [link.recv()]
    try:
        got.append(link.recv())
    except BlockingIOError:
        pass
    # sending: our header, the kernel's routing
    from proxy.ipstack.wire.checksum import upper_layer_checksum

    r = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    r.bind(("2001:db8:5::2", 5001))
    r.settimeout(5)
    udp = bytes.fromhex("1389138900140000") + b"raw sent it!"
    c = upper_layer_checksum(CLIENT, a6("2001:db8:5::2"), 17, udp)
    udp = udp[:6] + c.to_bytes(2, "big") + udp[8:]
    link.send(ipv6_packet(CLIENT, a6("2001:db8:5::2"), 17, udp))
    sent = r.recv(100).decode()
    link.close()
    return {"dsts": [g[24:40].hex() for g in got], "payload": got[0][48:].decode(errors="replace"), "sent": sent}


def test_raw_link_sees_only_the_prefix(netns):
    out = in_netns(netns, _raw_in_namespace)
    assert out["dsts"] == [a6("2001::1").hex()] and out["payload"] == "teredo-bound"
    assert out["sent"] == "raw sent it!"
