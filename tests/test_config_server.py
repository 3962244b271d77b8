"""Server configuration: Miredo files, flags, errors that name the field (exit 2)."""

from __future__ import annotations

import json

import pytest

from proxy.cli import main
from proxy.config.miredo import read_miredo_conf
from proxy.errors import ConfigError


def write(tmp_path, text, name="miredo-server.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_miredo_server_conf_is_accepted_as_is(tmp_path, capsys):
    path = write(tmp_path, """#! /usr/sbin/miredo-server -f -c
# comment
ServerBindAddress 198.51.100.1
serverbindaddress2 198.51.100.9
Prefix 2001:0::
InterfaceMTU 0x578
SyslogFacility local3
""")
    assert main(["check-config", path]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["role"] == "server"
    s = out["settings"]
    assert (s["address"], s["address2"], s["mtu"], s["prefix"], s["syslog_facility"]) == (
        "198.51.100.1", "198.51.100.9", 1400, "2001::/32", "local3")


def test_flags_override_the_file(tmp_path, capsys):
    path = write(tmp_path, "ServerBindAddress 198.51.100.1\nInterfaceMTU 1400\n")
    from proxy.cli import build_parser
    from proxy.apps.server import load_config
    args = build_parser().parse_args(["server", "-c", path, "--mtu", "1300", "--address", "203.0.113.1"])
    c = load_config(args)
    assert (c.address, c.address2, c.mtu) == ("203.0.113.1", "203.0.113.2", 1300)


@pytest.mark.parametrize("text,field", [
    ("ServerBindAddress 10.0.0.1\n", "--address"),
    ("ServerBindAddress 198.51.100.1\nInterfaceMTU 1000\n", "--mtu"),
    ("ServerBindAddress 198.51.100.1\nInterfaceMTU banana\n", "InterfaceMTU"),
    ("ServerBindAddress 198.51.100.1\nBogusDirective 1\n", "BogusDirective"),
    ("ServerBindAddress 198.51.100.1\nServerBindAddress 198.51.100.3\n", "ServerBindAddress"),
    ("ServerBindAddress\n", "ServerBindAddress"),
    ("ServerBindAddress 198.51.100.1\nRelayType cone\n", "RelayType"),
    ("ServerBindAddress 198.51.100.1\nPrefix ff02::\n", "Prefix"),
    ("ServerBindAddress 198.51.100.1\nServerBindAddress2 198.51.100.1\n", "--address2"),
])
def test_bad_config_exits_2_naming_the_field(tmp_path, capsys, text, field):
    path = write(tmp_path, text)
    assert main(["check-config", "--role", "server", path]) == 2
    err = capsys.readouterr().err
    assert field in err


def test_missing_file(capsys):
    assert main(["check-config", "--role", "server", "/nonexistent/x.conf"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_missing_address(capsys):
    assert main(["server"]) == 2
    assert "--address" in capsys.readouterr().err


def test_bad_flag_is_usage_error():
    with pytest.raises(SystemExit) as e:
        main(["server", "--no-such-flag"])
    assert e.value.code == 2


def test_c_style_integers():
    conf = read_miredo_conf("InterfaceMTU 02400\nBindPort 0x10\n")
    assert conf.pop_int("interfacemtu") == 0o2400
    assert conf.pop_int("BINDPORT") == 16
    with pytest.raises(ConfigError):
        read_miredo_conf("BindPort 1\nbindport 2\n")


def test_unknown_user(capsys):
    assert main(["server", "--address", "198.51.100.1", "--user", "no-such-user-xyz"]) == 2
    assert "--user" in capsys.readouterr().err
