"""The client driver on real loopback sockets against our ServerRunner (no root)."""

from __future__ import annotations

import asyncio
import io
import json
import random
import socket

import pytest

from proxy.apps.client import ClientRunner, ping
from proxy.apps.server import ServerRunner
from proxy.cli import main
from proxy.config.client import ClientConfig
from proxy.config.server import ServerConfig
from proxy.status import StatusFile


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
async def server():
    port = free_port("127.0.0.1")
    cfg = ServerConfig(address="127.0.0.1", address2="127.0.0.2", port=port, forward_native=False,
                       allow_loopback=True).validate()
    runner = ServerRunner(cfg)
    await runner.start()
    yield runner
    runner.close()


async def test_qualifies_on_loopback_and_writes_status(server, tmp_path):
    path = tmp_path / "status.json"
    cfg = ClientConfig(servers=("127.0.0.1",), server_port=server.config.port, bind="127.0.0.1",
                       allow_loopback=True, status_file=str(path)).validate()
    runner = ClientRunner(cfg, rng=random.Random(7), status=StatusFile(str(path), "client"))
    await runner.start()
    try:
        await asyncio.wait_for(runner.qualified_event.wait(), 10)
        status = json.loads(path.read_text())
        assert status["role"] == "client" and status["state"] == "qualified"
        # loopback is no NAT: the mapping is the local endpoint
        assert status["nat"] == "open"
        assert status["address"].startswith("2001:0:7f00:1:")
        assert status["server"] == "127.0.0.1" and status["mtu"] == 1280
        assert set(status) >= {"role", "state", "address", "nat", "server", "mtu", "since"}
    finally:
        runner.close()


async def test_ping_without_relay_reports_unreachable(server):
    cfg = ClientConfig(servers=("127.0.0.1",), server_port=server.config.port, bind="127.0.0.1",
                       allow_loopback=True).validate()
    runner = ClientRunner(cfg, rng=random.Random(8))
    await runner.start()
    out = io.StringIO()
    try:
        # the server does not forward to native IPv6 here: no reply can come
        code = await ping(runner, "2001:db8::1", 1, 0.1, 10, out=out, linger=0.5)
    finally:
        runner.close()
    assert code == 1
    text = out.getvalue()
    assert text.startswith("PING 2001:db8::1 from 2001:0:7f00:1:")
    assert "1 packets transmitted, 0 received, 100% packet loss" in text


async def test_unreachable_server_fails_and_ping_gives_up():
    port = free_port("127.0.0.1")
    cfg = ClientConfig(servers=("127.0.0.1",), server_port=port, bind="127.0.0.1", allow_loopback=True).validate()
    runner = ClientRunner(cfg, rng=random.Random(9))
    await runner.start()
    out = io.StringIO()
    try:
        assert await ping(runner, "2001:db8::1", 1, 0.1, 0.3, out=out) == 1
    finally:
        runner.close()
    assert "not qualified" in out.getvalue()
    assert runner.core.state == "qualifying"


def test_cli_configuration_errors(capsys):
    assert main(["client"]) == 2
    assert "--server" in capsys.readouterr().err
    assert main(["client", "--server", "10.0.0.1"]) == 2
    assert main(["client", "--server", "192.0.2.1", "--ping", "nonsense"]) == 2
    assert main(["client", "--server", "192.0.2.1", "--socks", "127.0.0.1:x"]) == 2


def test_check_config_reads_miredo_conf(tmp_path, capsys):
    conf = tmp_path / "miredo.conf"
    conf.write_text("# Miredo client\nRelayType client\nServerAddress teredo.example.net\n"
                    "ServerAddress2 192.0.2.2\nBindPort 3545\nInterfaceName teredo\nSyslogFacility local3\n")
    assert main(["check-config", str(conf)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["role"] == "client"
    s = out["settings"]
    assert s["servers"] == ["teredo.example.net"] and s["server2"] == "192.0.2.2" and s["port"] == 3545
    conf.write_text("RelayType cone\nServerAddress 192.0.2.1\n")
    assert main(["check-config", "--role", "client", str(conf)]) == 2


async def test_server_name_resolved_by_the_driver(server):
    cfg = ClientConfig(servers=("localhost",), server_port=server.config.port, bind="127.0.0.1",
                       allow_loopback=True).validate()
    runner = ClientRunner(cfg, rng=random.Random(10))
    await runner.start()
    try:
        await asyncio.wait_for(runner.qualified_event.wait(), 10)
        assert runner.core.server == "127.0.0.1"
    finally:
        runner.close()


async def test_close_sends_what_is_already_queued(server):
    # The stack's last packets (FINs, RSTs from Stack.close()) reach the
    # runner just before it closes: they must still leave.
    from proxy.ipstack.wire.icmpv6 import Echo
    from proxy.ipstack.wire.ipv6 import NextHeader
    from proxy.teredo.packet import ipv6_packet

    cfg = ClientConfig(servers=("127.0.0.1",), server_port=server.config.port, bind="127.0.0.1",
                       allow_loopback=True).validate()
    runner = ClientRunner(cfg, rng=random.Random(9))
    await runner.start()
    await asyncio.wait_for(runner.qualified_event.wait(), 10)
    endpoint = runner.endpoint
    before = endpoint.sent
    src, dst = runner.core.address, socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    runner.send_ipv6(ipv6_packet(src, dst, NextHeader.ICMPV6, Echo(True, 1, 1, b"x").emit(src, dst), 64))
    runner.close()  # before the deferred flush ran
    assert endpoint.sent == before + 1  # the direct connectivity test's echo request went out
