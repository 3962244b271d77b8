"""Our relay on TUN between Debian's Miredo client and server (root + miredo packages).

In a uniquely named netns lab: miredo-server in ``srv``, our relay in
``relay``, the Miredo client behind ``nat2``; the client pings the native
host and downloads several MiB over HTTP through our relay, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import sys

import pytest

from proxy.testing.netns import HOST6, Lab, lab_unavailable_reason

pytestmark = pytest.mark.interop

REASON = lab_unavailable_reason(miredo=True)


@pytest.fixture(scope="module")
def lab():
    if REASON:
        pytest.skip(REASON)
    with Lab(tag="rl" + os.urandom(3).hex()) as lab:
        lab.write_file("big.bin", os.urandom(6 << 20))
        lab.http_server("host6", HOST6, 8080, lab.workdir)
        lab.start_miredo_server()
        lab.start_relay("--status-file", os.path.join(lab.workdir, "relay.json"))
        lab.start_miredo_client()
        lab.wait_for(lambda: lab.teredo_address("cli2"), 30, "the Miredo client to qualify")
        yield lab


def root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ping_through_our_relay(lab):
    p = lab.run("cli2", "env", f"PYTHONPATH={root()}", sys.executable, "-m", "proxy.testing.ping6", HOST6, "3",
                check=False)
    assert p.returncode == 0, p.stdout + p.stderr + lab.log("relay")
    assert "reply from" in p.stdout


def test_http_download_is_byte_exact(lab):
    out = os.path.join(lab.workdir, "dl.bin")
    p = lab.run("cli2", "curl", "-s", "-m", "120", "-o", out, "-w", "%{size_download}",
                f"http://[{HOST6}]:8080/big.bin", check=False, timeout=150)
    assert p.returncode == 0, p.stderr + lab.log("relay")
    with open(os.path.join(lab.workdir, "big.bin"), "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    with open(out, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    assert got == want and int(p.stdout) == 6 << 20


def test_relay_counts_and_peers(lab):
    import json

    lab.wait_for(lambda: os.path.exists(os.path.join(lab.workdir, "relay.json")), 5, "status file")
    with open(os.path.join(lab.workdir, "relay.json")) as f:
        st = json.load(f)
    assert st["role"] == "relay" and st["state"] == "qualified"
    assert st["settings"]["native"] == "tun"


def test_relay_stops_cleanly_on_sigterm(lab):
    rc = lab.stop("relay")
    assert rc == 0, lab.log("relay")
    assert lab.run("relay", "ip", "link", "show", "teredo", check=False).returncode != 0  # the TUN went with it
