"""The client driver's local-discovery socket (RFC 4380 §5.2.8), on loopback (no root)."""

from __future__ import annotations

import argparse
import json
import logging
import random
import socket

import pytest

from proxy.apps.client import ClientRunner, add_arguments, load_config
from proxy.cli import main
from proxy.config.client import ClientConfig
from proxy.errors import DropReason
from proxy.teredo.local_discovery import discovery_bubble
from proxy.testing.waiting import eventually

from tests.apps.test_client_driver import free_port

PEER = bytes.fromhex("20010000c633640100009c40fcffffff")  # a Teredo address, not ours


def config(**kw) -> ClientConfig:
    return ClientConfig(servers=("127.0.0.1",), server_port=free_port("127.0.0.1"), bind="127.0.0.1",
                        allow_loopback=True, **kw).validate()


async def test_joins_the_group_and_feeds_the_core():
    runner = ClientRunner(config(local_discovery=True), rng=random.Random(1))
    await runner.start()
    try:
        assert runner.discovery is not None and runner.core.local_discovery
        main = runner.endpoint.sock
        assert main.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
        assert main.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 0
        assert runner.discovery.local == ("224.0.0.253", 3544)
        # A discovery bubble multicast on the loopback interface reaches the core
        # through the group socket (not qualified here: counted, dropped).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            s.sendto(discovery_bubble(PEER), ("224.0.0.253", 3544))
            await eventually(lambda: runner.core.drops[DropReason.NOT_QUALIFIED] >= 1, 5.0,
                             "the discovery datagram at the core")
        assert runner.discovery.received >= 1
    finally:
        runner.close()
    assert runner.discovery is None


async def test_off_by_default_opens_nothing():
    runner = ClientRunner(config(), rng=random.Random(2))
    await runner.start()
    try:
        assert runner.discovery is None and not runner.core.local_discovery
    finally:
        runner.close()


class _UserspaceEndpoint:
    """What the demo's userspace NAT hands the runner: no kernel socket behind it."""

    def __init__(self) -> None:
        self.local = ("127.0.0.1", 40000)
        self.sent: list = []

    def sendto(self, data, addr) -> bool:
        self.sent.append((data, addr))
        return True

    def close(self) -> None:
        pass


async def test_a_socket_that_cannot_multicast_disables_discovery_with_a_warning(caplog):
    runner = ClientRunner(config(local_discovery=True, separate_probe=False), rng=random.Random(3),
                          udp_factory=lambda host, port, cb, loop: _UserspaceEndpoint())
    with caplog.at_level(logging.WARNING, logger="proxy.apps.client"):
        await runner.start()
    try:
        assert runner.discovery is None and not runner.core.local_discovery
        assert any("local discovery disabled" in r.getMessage() for r in caplog.records)
    finally:
        runner.close()


def test_local_discovery_in_miredo_conf_and_on_the_command_line(tmp_path, capsys):
    conf = tmp_path / "miredo.conf"
    for word, expected in (("enabled", True), ("disabled", False), ("yes", True), ("off", False)):
        conf.write_text(f"RelayType client\nServerAddress 192.0.2.1\nLocalDiscovery {word}\n")
        assert main(["check-config", str(conf)]) == 0
        assert json.loads(capsys.readouterr().out)["settings"]["local_discovery"] is expected
    conf.write_text("RelayType client\nServerAddress 192.0.2.1\n")
    assert main(["check-config", str(conf)]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["local_discovery"] is False
    conf.write_text("RelayType client\nServerAddress 192.0.2.1\nLocalDiscovery maybe\n")
    assert main(["check-config", str(conf)]) == 2
    capsys.readouterr()
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert load_config(p.parse_args(["--server", "192.0.2.1", "--local-discovery"])).local_discovery
    assert not load_config(p.parse_args(["--server", "192.0.2.1"])).local_discovery
    with pytest.raises(SystemExit):
        p.parse_args(["--server", "192.0.2.1", "--local-discovery=no"])
