"""The files in examples/ work as their comments say.

* The SOCKS5 examples run as scripts against one embedded network (a
  :class:`~proxy.testing.background.RunningNetwork` on a thread), given its
  address by flag and by ``TEREDO_SOCKS``, including the failure a refused
  CONNECT produces.
* ``embedded_network.py`` starts its own network.
* ``fixtures_in_your_project/`` runs its own test suite in a subprocess, as
  a separate project would (pytest with the plugin, and plain unittest).
* The shell scripts parse (``bash -n``) and every ``*.conf`` passes
  ``teredo-proxy check-config`` with the role it is meant for.
* As root, the server and relay scripts run for real in a network-namespace
  lab, and a client configured by ``miredo-client.conf`` pings and fetches
  through them from behind a NAT.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from proxy.testing.background import RunningNetwork

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _env(**extra: str) -> dict[str, str]:
    """The environment of an example: this checkout importable, nothing inherited that steers pytest."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "TEREDO_SOCKS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def _run(*args: str, timeout: float = 120, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def network():
    with RunningNetwork(nat="restricted", seed=2024) as net:
        yield net


@pytest.fixture(scope="module")
def socks(network) -> str:
    host, port = network.socks_address
    return f"{host}:{port}"


# -- SOCKS5 clients ---------------------------------------------------------------


def test_httpx_example_sync_and_async(network, socks):
    url = network.add_file("/example.txt", b"x" * 5000)
    p = _run("examples/socks_httpx.py", url, "--socks", socks)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "sync : 200 OK, 5000 bytes" in p.stdout
    assert "async: 200 OK, 5000 bytes" in p.stdout


def test_httpx_example_takes_the_address_from_the_environment(network, socks):
    p = _run("examples/socks_httpx.py", network.web_url, TEREDO_SOCKS=socks)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("200 OK") == 2


def test_httpx_example_fails_on_a_refused_connect(network, socks):
    p = _run("examples/socks_httpx.py", "http://[2001:db8:1::100]:81/", "--socks", socks)
    assert p.returncode == 1
    assert "Connection refused" in p.stderr


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_python_socks_example(network, socks, mode):
    p = _run("examples/socks_python_socks.py", *mode, "--socks", socks)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("HTTP/1.1 200 OK")


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_python_socks_example_prints_the_rep_code(network, socks, mode):
    # Nobody listens on port 81 of the web host: its stack answers the SYN
    # with a RST, the endpoint replies REP 0x05.
    p = _run("examples/socks_python_socks.py", *mode, "2001:db8:1::100", "81", TEREDO_SOCKS=socks)
    assert p.returncode == 1
    assert "SOCKS5 REP 0x05: connection refused" in p.stderr


def test_python_socks_example_unreachable_destination(network, socks):
    # Nothing routes 2001:db8:2::/48 on the in-memory IPv6 network: an ICMPv6
    # unreachable comes back, REP 0x04.
    p = _run("examples/socks_python_socks.py", "2001:db8:2::1", "80", "--socks", socks)
    assert p.returncode == 1
    assert "SOCKS5 REP 0x04: host unreachable" in p.stderr


def test_python_socks_example_without_a_proxy():
    p = _run("examples/socks_python_socks.py", "--socks", "127.0.0.1:9", timeout=60)
    assert p.returncode == 1
    assert "cannot use the SOCKS5 endpoint 127.0.0.1:9" in p.stderr


# -- the embedded network -----------------------------------------------------------


@pytest.mark.parametrize("args", [["--seed", "5"], ["--thread", "--nat", "full-cone", "--seed", "6"]],
                         ids=["asyncio", "thread"])
def test_embedded_network_example(args):
    p = _run("examples/embedded_network.py", *args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "-> 200, 262144 bytes, intact" in p.stdout
    assert "relay   1 peer(s)" in p.stdout


def test_fixtures_example_project_with_pytest(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "fixtures_in_your_project", project)
    p = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project, timeout=300)
    if "fixture 'teredo_socks_url' not found" in p.stdout:
        pytest.fail("the pytest plugin is not registered: is teredo-proxy installed (pip install -e .)?")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "8 passed" in p.stdout, p.stdout


def test_fixtures_example_project_with_unittest(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "fixtures_in_your_project", project)
    p = _run("-m", "unittest", "-v", "tests.test_with_unittest", cwd=project)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Ran 3 tests" in p.stderr and "OK" in p.stderr


# -- scripts and configuration files --------------------------------------------------


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.sh")))
def test_shell_script_parses(script):
    path = EXAMPLES / script
    assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    p = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


CONFIGS = {"miredo.conf": "relay", "miredo-server.conf": "server", "miredo-client.conf": "client"}


def test_every_example_config_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.conf")) == sorted(CONFIGS)


@pytest.mark.parametrize("name,role", sorted(CONFIGS.items()))
def test_example_config_passes_check_config(name, role):
    p = _run("-m", "proxy", "check-config", f"examples/{name}")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["role"] == role  # guessed from the directives, as a Miredo user would rely on
    settings = out["settings"]
    if role == "server":
        assert (settings["address"], settings["address2"]) == ("198.51.100.1", "198.51.100.2")
    elif role == "relay":
        assert (settings["interface"], settings["port"], settings["prefix"]) == ("teredo", 3544, "2001::/32")
    else:
        assert settings["servers"] == ["198.51.100.1"] and settings["socks"]["socks"] == "127.0.0.1:1080"


def test_scripts_refuse_a_bad_config_before_starting(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("ServerBindAddress 198.51.100.1\nNoSuchDirective 1\n")
    shim = _teredo_proxy_shim(tmp_path)
    for script in ("run_server.sh", "run_relay.sh"):
        p = subprocess.run(["bash", str(EXAMPLES / script)], env=_env(CONF=str(bad), PATH=f"{shim}:{os.environ['PATH']}"),
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, (script, p.stdout, p.stderr)
        assert "bad.conf:2: NoSuchDirective" in p.stderr


def _teredo_proxy_shim(directory: Path) -> Path:
    """A ``teredo-proxy`` command running this checkout (the scripts call it by name)."""
    bindir = directory / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "teredo-proxy"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m proxy "$@"\n')
    shim.chmod(0o755)
    return bindir


# -- the scripts for real, in a namespace lab (root) -----------------------------------


def test_run_scripts_serve_a_client_behind_a_nat(tmp_path):
    from proxy.testing.netns import HOST6, Lab, lab_unavailable_reason

    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    shim = _teredo_proxy_shim(tmp_path)
    env = _env(PATH=f"{shim}:{os.environ['PATH']}", TEREDO_USER="nobody")
    # Status files are written after the scripts drop to nobody: a directory
    # nobody can reach (pytest's tmp_path is private to root).
    with tempfile.TemporaryDirectory(prefix="teredo-examples-") as status_dir, Lab() as lab:
        shared = Path(status_dir)
        shared.chmod(0o777)
        server_status, relay_status = shared / "server.json", shared / "relay.json"
        lab.spawn("server", "srv", "bash", str(EXAMPLES / "run_server.sh"),
                  env=dict(env, STATUS_FILE=str(server_status)))
        lab.spawn("relay", "relay", "bash", str(EXAMPLES / "run_relay.sh"),
                  env=dict(env, STATUS_FILE=str(relay_status)))

        def state(path: Path) -> str | None:
            try:
                return json.loads(path.read_text()).get("state")
            except (OSError, ValueError):
                return None

        for name, path in (("server", server_status), ("relay", relay_status)):
            try:
                lab.wait_for(lambda: state(path) == "qualified", 20, f"{name} status 'qualified'")
            except Exception:
                pytest.fail(f"{name} did not come up: {lab.log(name)[-3000:]}")
        lab.wait_for(lambda: "dev teredo" in lab.run("relay", "ip", "-6", "route", "show", "2001::/32").stdout,
                     10, "the relay's route for the Teredo prefix")

        client = [sys.executable, "-m", "proxy", "client", "-c", str(EXAMPLES / "miredo-client.conf")]
        ping = lab.run("cli", *client, "--ping", HOST6, "--count", "2", "--interval", "0.2", timeout=60, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr + lab.log("server")[-2000:] + lab.log("relay")[-2000:]
        assert "2 received" in ping.stdout

        page = b"fetched through the example scripts\n"
        (Path(lab.workdir) / "page.txt").write_bytes(page)
        lab.http_server("host6", HOST6, 8080, lab.workdir)
        client_status = shared / "client.json"
        lab.spawn("client", "cli", *client, "--status-file", str(client_status), env=env)
        lab.wait_for(lambda: state(client_status) == "qualified", 20, "client status 'qualified'")
        status = json.loads(client_status.read_text())
        assert status["nat"] == "restricted" and status["server"] == "198.51.100.1"
        fetch = lab.run("cli", sys.executable, str(EXAMPLES / "socks_httpx.py"), f"http://[{HOST6}]:8080/page.txt",
                        timeout=60, check=False)
        assert fetch.returncode == 0, fetch.stdout + fetch.stderr + lab.log("client")[-2000:]
        assert f"sync : 200 OK, {len(page)} bytes" in fetch.stdout

        assert lab.stop("client") == 0
        assert lab.stop("relay") == 0, lab.log("relay")[-2000:]
        assert lab.stop("server") == 0, lab.log("server")[-2000:]
        assert json.loads(relay_status.read_text())["to_native"] > 0
        log = [json.loads(line) for line in lab.log("server").splitlines() if line.startswith("{")]
        assert any("running as user nobody" in entry["msg"] for entry in log)


# -- systemd units ----------------------------------------------------------------------


@pytest.mark.parametrize("unit", sorted(p.name for p in (EXAMPLES / "systemd").glob("*.service")))
def test_systemd_unit_verifies(unit, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs systemd-analyze")
    # verify wants the executables to exist: point them at one that does.
    text = (EXAMPLES / "systemd" / unit).read_text()
    text = text.replace("%h/.local/bin/teredo-proxy", "/bin/true").replace("/usr/local/bin/teredo-proxy", "/bin/true")
    (tmp_path / unit).write_text(text)
    p = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr
