"""asyncio: the network as an async context manager on the test's own loop.

``proxy.testing.network.TeredoNetwork`` is what the fixtures run on a
thread; in async code it can live on the running loop instead.  Its
options are those of the ``teredo`` marker (``NetworkOptions``).
"""

from proxy.testing.network import NetworkOptions, TeredoNetwork

import ipv6check


async def test_network_on_the_running_loop():
    options = NetworkOptions(nat="full-cone", seed=3, files={"/a.txt": b"served by the native host"})
    async with TeredoNetwork(options) as net:
        body = await ipv6check.fetch_async(net.web.url + "a.txt", proxy=net.socks_url)
        assert body == b"served by the native host"
        assert net.snapshot()["client"]["nat"] == "cone"
        status, _ = await net.fetch("/index.html")  # the network's own SOCKS5 client
        assert status == 200
