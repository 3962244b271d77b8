"""pytest: the fixtures teredo-proxy registers (no import, no conftest needed).

``teredo_socks_url``  socks5h://127.0.0.1:PORT of the network's Teredo client
``native_host``       the IPv6 web host: .url, .address, .add_file(path, data)
``teredo_network``    the whole network (proxy.testing.background.RunningNetwork)

``@pytest.mark.teredo(nat=..., loss=..., seed=...)`` chooses the NAT model in
front of the client (open, full-cone, restricted, port-restricted,
symmetric), the probability that it drops a datagram each way, and a seed.
Each test gets a fresh network (about half a second to start).  Behind
``nat="symmetric"`` the client qualifies but the relay refuses it, so a
fetch ends in ``httpx.ProxyError`` ("Host unreachable") after about 8 s of
bubbling: see docs/troubleshooting.md of teredo-proxy.
"""

import httpx
import pytest

import ipv6check


def test_fetch_over_teredo(teredo_socks_url, native_host):
    url = native_host.add_file("/hello.txt", b"hello over IPv6")
    assert ipv6check.fetch(url, proxy=teredo_socks_url) == b"hello over IPv6"


async def test_fetch_async(teredo_socks_url, native_host):
    body = await ipv6check.fetch_async(native_host.url, proxy=teredo_socks_url)
    assert b"through Teredo" in body


@pytest.mark.teredo(nat="port-restricted", loss=0.02, seed=7)
def test_lossy_nat(teredo_network, teredo_socks_url, native_host):
    data = bytes(range(256)) * 1024
    url = native_host.add_file("/data.bin", data)
    assert ipv6check.fetch(url, proxy=teredo_socks_url) == data
    snapshot = teredo_network.snapshot()
    assert snapshot["client"]["nat"] == "restricted"      # what qualification found out
    assert snapshot["nat"]["model"] == "port-restricted"  # what the test asked for


def test_missing_file_is_an_http_error(teredo_socks_url, native_host):
    with pytest.raises(httpx.HTTPStatusError):
        ipv6check.fetch(native_host.url + "no-such-file", proxy=teredo_socks_url)

