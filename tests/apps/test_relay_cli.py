"""``teredo-proxy relay`` and ``check-config`` for a Miredo relay configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from proxy.testing.waiting import wait_until

from proxy.cli import main
from proxy.config.relay import RelayConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIREDO_RELAY_CONF = """\
# /etc/miredo/miredo.conf of a Miredo relay
RelayType restricted
InterfaceName teredo0
BindAddress 198.51.100.10
BindPort 3545
Prefix 3ffe:831f::
InterfaceMTU 1400
SyslogFacility local3
"""


def write(tmp_path, text: str, name: str = "miredo.conf") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_check_config_reads_a_miredo_relay_conf(tmp_path, capsys):
    assert main(["check-config", write(tmp_path, MIREDO_RELAY_CONF)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["role"] == "relay"
    s = out["settings"]
    assert (s["relay_type"], s["interface"], s["bind"], s["port"], s["prefix"], s["mtu"], s["syslog_facility"]) == (
        "restricted", "teredo0", "198.51.100.10", 3545, "3ffe:831f::/32", 1400, "local3")
    assert s["direct_bubbles"] is True


def test_flags_override_the_file(tmp_path):
    import argparse

    args = argparse.Namespace(config=write(tmp_path, MIREDO_RELAY_CONF), port=4000, interface="t9", mtu=None,
                              bind=None, native="memory", prefix="2001::/32", no_route=True, user=None,
                              status_file=None, max_peers=10, icmp_source=None, relay_type="cone")
    c = RelayConfig.from_args(args)
    assert (c.port, c.interface, c.mtu, c.native, c.prefix, c.route, c.max_peers, c.relay_type) == (
        4000, "t9", 1400, "memory", 0x20010000, False, 10, "cone")


@pytest.mark.parametrize("argv,field", [
    (["relay", "--port", "70000"], "--port"),
    (["relay", "--mtu", "1000"], "--mtu"),
    (["relay", "--prefix", "ff00::"], "--prefix"),
    (["relay", "--prefix", "2001::/48"], "--prefix"),
    (["relay", "--prefix", "nonsense"], "--prefix"),
    (["relay", "--bind", "::1"], "--bind"),
    (["relay", "--interface", "x" * 16], "--interface"),
    (["relay", "--user", "no-such-user-here"], "--user"),
    (["relay", "--max-peers", "0"], "--max-peers"),
    (["relay", "--icmp-source", "1.2.3.4"], "--icmp-source"),
])
def test_bad_flags_exit_2_naming_the_field(argv, field, capsys):
    assert main(argv) == 2
    assert field in capsys.readouterr().err


@pytest.mark.parametrize("text,field", [
    ("RelayType client\n", "RelayType"),
    ("RelayType cone\nServerAddress 192.0.2.1\n", "ServerAddress"),
    ("RelayType bogus\n", "RelayType"),
    ("RelayType cone\nInterfaceMTU 1000\n", "InterfaceMTU"),
    ("RelayType cone\nPrefix ff02::\n", "Prefix"),
    ("RelayType cone\nBindPort 99999\n", "BindPort"),
    ("RelayType cone\nSyslogFacility nowhere\n", "SyslogFacility"),
])
def test_bad_miredo_files_exit_2(tmp_path, capsys, text, field):
    assert main(["relay", "-c", write(tmp_path, text)]) == 2
    assert field in capsys.readouterr().err


def test_unknown_flag_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        main(["relay", "--frobnicate"])
    assert e.value.code == 2


def _spawn(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "proxy", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_status(path: str, timeout: float = 10.0) -> dict:
    def up() -> dict | None:
        try:
            with open(path) as f:
                st = json.load(f)
        except (OSError, ValueError):
            return None
        return st if st.get("state") == "qualified" else None

    return wait_until(up, timeout, "the relay to report itself up")


def test_memory_relay_runs_and_stops_cleanly_on_sigterm(tmp_path):
    status = str(tmp_path / "status.json")
    p = _spawn(["relay", "--native", "memory", "--bind", "127.0.0.1", "--port", "0", "--status-file", status])
    try:
        st = _wait_status(status)
        assert st["role"] == "relay" and st["settings"]["native"] == "memory"
        assert st["address"].startswith("127.0.0.1:") and not st["address"].endswith(":0")
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_port_in_use_is_a_runtime_failure():
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        p = _spawn(["relay", "--native", "memory", "--bind", "127.0.0.1", "--port", str(s.getsockname()[1])])
        _out, err = p.communicate(timeout=20)
        assert p.returncode == 1 and "cannot bind" in err
    finally:
        s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child without CAP_NET_ADMIN")
def test_no_permission_for_tun_is_a_runtime_failure():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, CAP_NET_ADMIN = 24, 12

    def demote() -> None:  # root without CAP_NET_ADMIN in the child after exec
        if libc.prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")

    p = _spawn(["relay", "--native", "tun", "--interface", "tpnoperm", "--port", "0"], preexec_fn=demote)
    _out, err = p.communicate(timeout=20)
    assert p.returncode == 1 and "CAP_NET_ADMIN" in err


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_drops_privileges_after_setup():
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody")
    d = tempfile.mkdtemp(prefix="relay-user-", dir="/tmp")  # reachable by nobody, unlike pytest's tmp_path
    os.chmod(d, 0o777)
    status = os.path.join(d, "status.json")
    p = _spawn(["relay", "--native", "memory", "--bind", "127.0.0.1", "--port", "0", "--user", "nobody",
                "--status-file", status])
    try:
        _wait_status(status)
        with open(f"/proc/{p.pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert all(int(u) == nobody.pw_uid for u in uids)
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)
