"""``stress relay`` drives both Miredo's relay and ours in one lab (root + Debian miredo)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from proxy.testing.netns import HOST6, RELAY4, Lab, lab_unavailable_reason

pytestmark = pytest.mark.interop
REASON = lab_unavailable_reason(miredo=True)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stress(lab: Lab, peers: int, size: int) -> dict:
    p = lab.run("pub", "env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "proxy", "stress", "relay", "--target", f"{RELAY4}:3544",
                "--peers", str(peers), "--size", str(size), "--duration", "1", "--rate", "2000",
                "--sink", HOST6, "--sink-netns", lab.ns("host6"), "--open-netns", lab.ns("host6"),
                check=False, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.splitlines()[-1])


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_stress_relay_against_miredo_and_ours():
    with Lab(tag="rt" + os.urandom(3).hex()) as lab:
        lab.start_miredo_relay()
        m = stress(lab, 20, 200)
        lab.stop("miredo-relay")
        lab.wait_for(lambda: lab.run("relay", "ip", "link", "show", "teredo", check=False).returncode != 0,
                     10, "Miredo's tunnel to go")
        lab.start_relay()
        o = stress(lab, 20, 200)
    for r in (m, o):
        assert r["opened"] == 20  # every emulated client got its opener through the relay
        assert r["sent"] > 1000 and r["forwarded"] >= 0.9 * r["sent"]  # 2000 pps is easy for both
