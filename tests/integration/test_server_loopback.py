"""The server on real sockets (loopback): RS/RA both ways, garbage survives, status file."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

from proxy.testing.rsprobe import probe
from proxy.testing.waiting import eventually
from proxy.apps.server import ServerRunner, serve
from proxy.config.server import ServerConfig


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def qualify_probe(server: tuple[str, int], *, cone: bool) -> dict | None:
    return await asyncio.to_thread(probe, server[0], port=server[1], cone=cone, bind=("127.0.0.1", 0),
                                   timeout=3.0)


def loopback_config(**kw) -> ServerConfig:
    return ServerConfig(address="127.0.0.1", address2="127.0.0.2", port=free_port(),
                        forward_native=False, allow_loopback=True, **kw).validate()


async def test_qualification_over_real_sockets():
    config = loopback_config()
    runner = ServerRunner(config)
    await runner.start()
    try:
        restricted = await qualify_probe((config.address, config.port), cone=False)
        cone = await qualify_probe((config.address, config.port), cone=True)
        assert restricted is not None and restricted["address"].startswith("2001:0:7f00:1:")
        assert restricted["mapped"][0] == "127.0.0.1" and not restricted["cone"]
        assert restricted["answered_from"] == ["127.0.0.1", config.port]
        assert cone is not None and cone["cone"] and cone["answered_from"] == ["127.0.0.2", config.port]
        assert runner.core.stats["ra"] == 2
    finally:
        runner.close()


async def test_garbage_does_not_stop_the_server():
    config = loopback_config()
    runner = ServerRunner(config)
    await runner.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for junk in (b"", b"\x00", os.urandom(100), b"\x60" * 2000):
                s.sendto(junk, (config.address, config.port))
        await eventually(lambda: sum(runner.core.drops.values()) >= 4, 5, "four drops")
        assert sum(runner.core.drops.values()) == 4
        assert await qualify_probe((config.address, config.port), cone=False) is not None
    finally:
        runner.close()


async def test_status_file_and_clean_stop(tmp_path):
    path = tmp_path / "status.json"
    config = loopback_config(status_file=str(path))
    stop = asyncio.Event()
    task = asyncio.create_task(serve(config, stop))
    await eventually(lambda: path.exists() and json.loads(path.read_text())["state"] == "qualified", 5,
                     "the status file to say qualified")
    status = json.loads(path.read_text())
    assert {"role", "state", "address", "nat", "server", "mtu", "since"} <= status.keys()
    assert status["role"] == "server" and status["server"] == "127.0.0.1"
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0


async def test_bind_failure_is_a_runtime_failure(tmp_path):
    config = ServerConfig(address="198.51.100.77", address2="198.51.100.78", port=free_port(),
                          forward_native=False, status_file=str(tmp_path / "s.json")).validate()
    assert await serve(config, asyncio.Event()) == 1
    assert json.loads((tmp_path / "s.json").read_text())["state"] == "failed"


def test_demo_check_command():
    p = subprocess.run([sys.executable, "-m", "proxy", "demo", "--check"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "demo check: ok" in p.stdout
