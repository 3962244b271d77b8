"""Interop tests: real Miredo daemons in network namespaces built per test.

They need root, iproute2/iptables and the Debian packages miredo and
miredo-server; without them every test here is skipped with the reason.
"""

from __future__ import annotations

import os
import sys

import pytest

from proxy.testing.netns import Lab, lab_unavailable_reason


@pytest.fixture
def tp() -> list[str]:
    """Our command, as a process in a lab namespace runs it."""
    return [sys.executable, "-m", "proxy"]


@pytest.fixture
def lab():
    reason = lab_unavailable_reason(miredo=True)
    if reason:
        pytest.skip(f"interop lab unavailable: {reason}")
    with Lab() as lab:
        lab.env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        yield lab


@pytest.fixture
def payload(lab) -> bytes:
    """A few MiB of random bytes served by the native host."""
    data = os.urandom(3 * 1024 * 1024 + 12345)
    lab.write_file("big.bin", data)
    lab.http_server("host6", "2001:db8:1::100", 8080, lab.workdir)
    return data
