"""pytest fixtures: a whole Teredo network for your tests (registered as a plugin).

Installed with teredo-proxy (entry point ``pytest11``), so any project whose
test environment has the package gets these fixtures without imports:

``teredo_network``
    a :class:`~proxy.testing.background.RunningNetwork`: server, relay,
    native IPv6 web host and client, running on loopback in a background
    thread (works from sync and async tests alike).
``teredo_socks_url``
    ``socks5h://127.0.0.1:PORT``: give it to httpx, requests, curl...
``native_host``
    the IPv6 web host: ``native_host.url``, ``native_host.add_file(path, data)``.

Knobs, per test or per module::

    @pytest.mark.teredo(nat="restricted", loss=0.02, seed=7)
    def test_download(teredo_socks_url, native_host): ...

(``nat``: open, full-cone, restricted, port-restricted, symmetric; ``loss``:
probability a datagram is dropped at the NAT; ``seed``: reproducible run;
any other :class:`~proxy.testing.network.NetworkOptions` field.)
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from proxy.testing.background import RunningNetwork
from proxy.testing.network import NetworkOptions

__all__ = ["NativeHostHandle"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "teredo(nat='open', loss=0.0, seed=None, ...): options of the teredo_network fixture "
        "(proxy.testing.network.NetworkOptions)",
    )


@dataclass
class NativeHostHandle:
    """The web host of a running network, from the test's thread."""

    network: RunningNetwork

    @property
    def address(self) -> str:
        return self.network.network.web.address  # type: ignore[union-attr]

    @property
    def url(self) -> str:
        return self.network.web_url

    def add_file(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path``; returns the URL."""
        return self.network.add_file(path, data)


@pytest.fixture
def teredo_network(request: pytest.FixtureRequest):
    """A running embedded Teredo network (see the module docstring for knobs)."""
    marker = request.node.get_closest_marker("teredo")
    options = NetworkOptions(**(marker.kwargs if marker else {}))
    with RunningNetwork(options) as net:
        yield net


@pytest.fixture
def teredo_socks_url(teredo_network: RunningNetwork) -> str:
    """The client's SOCKS5 endpoint as a ``socks5h://`` URL."""
    return teredo_network.socks_url


@pytest.fixture
def native_host(teredo_network: RunningNetwork) -> NativeHostHandle:
    """The native IPv6 web host of the network."""
    return NativeHostHandle(teredo_network)
