"""examples/anycast/: BIRD announces 2001::/32 exactly while our relay runs.

Root, BIRD 2 and /dev/net/tun: two uniquely named namespaces, ``relay``
(BIRD with examples/anycast/bird-bgp.conf as shipped, our relay on a TUN
device) and ``upstream`` (a BIRD BGP peer).  The upstream router learns
the prefix when the relay starts, loses it when ``relay-health.sh`` finds
the relay stuck, gets it back, and loses it again when the relay is killed
(the TUN device, and with it the static route, disappears).  Without the
tools the test is skipped with the reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proxy.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
ANYCAST = ROOT / "examples" / "anycast"

UPSTREAM_CONF = """\
log stderr all;
router id 198.51.100.1;
protocol device { scan time 5; }
protocol bgp relay_a {
    local 2001:db8:ffff::1 as 64500;
    neighbor 2001:db8:ffff::10 as 64512;
    ipv6 { import all; export none; };
}
"""


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN)"
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        return "needs BIRD 2 (apt-get install -y bird2)"
    if shutil.which("ip") is None or not os.path.exists("/dev/net/tun"):
        return "needs iproute2 and /dev/net/tun"
    return None


def test_bird_configs_parse():
    if shutil.which("bird") is None:
        pytest.skip("needs BIRD 2 (apt-get install -y bird2)")
    for name in ("bird-bgp.conf", "bird-ospf.conf"):
        p = subprocess.run(["bird", "-p", "-c", str(ANYCAST / name)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, (name, p.stderr)


def _wait(cond, timeout: float, what: str) -> None:
    wait_until(cond, timeout, what)


def test_anycast_announcement_follows_the_relay(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = "ac" + secrets.token_hex(3)
    ns_r, ns_u = f"{tag}-r", f"{tag}-u"
    procs: dict[str, subprocess.Popen] = {}

    def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}: {p.stderr}")
        return p

    def spawn(name: str, ns: str, *cmd: str, env: dict | None = None) -> None:
        log = open(tmp_path / f"{name}.log", "wb")
        procs[name] = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        log.close()

    r_ctl, u_ctl = str(tmp_path / "r.ctl"), str(tmp_path / "u.ctl")

    def upstream_has_prefix() -> bool:
        out = sh("birdc", "-s", u_ctl, "show", "route", "for", "2001::/32", check=False).stdout
        return "via 2001:db8:ffff::10" in out

    def health(status: Path) -> subprocess.CompletedProcess:
        env = dict(os.environ, STATUS_FILE=str(status), BIRDC=f"birdc -s {r_ctl}")
        return subprocess.run(["bash", str(ANYCAST / "relay-health.sh")], env=env, capture_output=True, text=True,
                              timeout=30)

    try:
        for ns in (ns_r, ns_u):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
        for ns, end, addr in ((ns_r, "a", "2001:db8:ffff::10/64"), (ns_u, "b", "2001:db8:ffff::1/64")):
            sh("ip", "link", "set", f"{tag}{end}", "netns", ns)
            sh("ip", "-n", ns, "link", "set", f"{tag}{end}", "name", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "-6", "addr", "add", addr, "dev", "eth0", "nodad")
        sh("ip", "netns", "exec", ns_r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        (tmp_path / "upstream.conf").write_text(UPSTREAM_CONF)
        spawn("bird-relay", ns_r, "bird", "-f", "-c", str(ANYCAST / "bird-bgp.conf"), "-s", r_ctl)
        spawn("bird-upstream", ns_u, "bird", "-f", "-c", str(tmp_path / "upstream.conf"), "-s", u_ctl)
        _wait(lambda: "Established" in sh("birdc", "-s", r_ctl, "show", "protocols", "upstream", check=False).stdout,
              30, "the BGP session")
        assert not upstream_has_prefix()  # no relay, no announcement

        status = tmp_path / "relay.json"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        spawn("relay", ns_r, sys.executable, "-m", "proxy", "relay", "--native", "tun", "--status-file", str(status),
              env=env)
        _wait(upstream_has_prefix, 20, "the upstream router to learn 2001::/32")

        ok = health(status)
        assert ok.returncode == 0 and "enabled" in ok.stdout, ok.stderr
        stuck = tmp_path / "stuck.json"
        shutil.copy(status, stuck)
        os.utime(stuck, (time.time() - 120, time.time() - 120))  # a relay that stopped rewriting its status
        bad = health(stuck)
        assert bad.returncode == 1 and "disabled" in bad.stderr
        _wait(lambda: not upstream_has_prefix(), 10, "the withdrawal after the health check")
        assert health(status).returncode == 0
        _wait(upstream_has_prefix, 10, "the announcement to come back")

        os.killpg(procs["relay"].pid, signal.SIGKILL)  # a crash: no clean-up code runs
        procs.pop("relay").wait(10)
        _wait(lambda: not upstream_has_prefix(), 10, "the withdrawal after the relay died")
    finally:
        for p in procs.values():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)
        for ns in (ns_r, ns_u):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
