"""SOCKS5 settings (proxy/config/socks.py): open-proxy refusal, password file, flags."""

from __future__ import annotations

import argparse
import logging
import os

import pytest

from proxy.config.socks import (
    SocksConfig,
    add_socks_arguments,
    is_loopback_host,
    load_password_file,
    parse_endpoint,
    parse_password_file,
    parse_user_spec,
    socks_config_from_args,
)
from proxy.errors import ConfigError


def test_defaults_are_valid_and_loopback():
    c = SocksConfig().validate()
    assert (c.host, c.port, c.users, c.ipv4) == ("127.0.0.1", 1080, None, "direct")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.1", "2001:db8::1", "proxy.example"])
def test_non_loopback_without_auth_is_refused_naming_the_flag(host):
    with pytest.raises(ConfigError) as e:
        SocksConfig(host=host).validate()
    assert e.value.field == "--socks"
    assert "open SOCKS5 proxy" in e.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"])
def test_loopback_hosts(host):
    assert is_loopback_host(host)
    SocksConfig(host=host).validate()


def test_non_loopback_with_auth_is_allowed():
    SocksConfig(host="0.0.0.0", users={"alice": "pw"}).validate()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"port": 70000}, "--socks"),
    ({"ipv4": "tunnel"}, "--ipv4"),
    ({"idle_timeout": 0}, "socks.idle_timeout"),
    ({"handshake_timeout": -1}, "socks.handshake_timeout"),
    ({"max_connections": 0}, "socks.max_connections"),
    ({"handshake_buffer": 100}, "socks.handshake_buffer"),
    ({"users": {"a:b": "pw"}}, "--socks-user"),
    ({"users": {"alice": ""}}, "--socks-user"),
    ({"users": {"alice": "x" * 256}}, "--socks-user"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as e:
        SocksConfig(**kwargs).validate()
    assert e.value.field == field


def test_repr_and_describe_hide_passwords():
    c = SocksConfig(users={"alice": "hunter2"})
    assert "hunter2" not in repr(c)
    assert "hunter2" not in str(c.describe())
    assert c.describe()["users"] == ["alice"]


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:1080", ("127.0.0.1", 1080)),
    ("[::1]:9050", ("::1", 9050)),
    ("localhost:0", ("localhost", 0)),
])
def test_parse_endpoint(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["1080", "::1:1080", "[::1]1080", ":1080", "host:http", "host:65536"])
def test_parse_endpoint_errors(text):
    with pytest.raises(ConfigError) as e:
        parse_endpoint(text)
    assert e.value.field == "--socks"


PASSWORDS = """\
# users of the proxy
alice:correct horse battery staple

   # indented comment
bob:s3cret:with:colons
carol: leading and trailing spaces kept \r
"""


def test_password_file_format():
    users = parse_password_file(PASSWORDS)
    assert users == {
        "alice": "correct horse battery staple",
        "bob": "s3cret:with:colons",
        "carol": " leading and trailing spaces kept ",
    }


@pytest.mark.parametrize(("text", "line"), [
    ("alice\n", 1),
    ("alice:pw\nalice:other\n", 2),
    ("# c\n:pw\n", 2),
    ("alice:\n", 1),
])
def test_password_file_errors_name_the_line(text, line):
    with pytest.raises(ConfigError) as e:
        parse_password_file(text, "users.txt")
    assert e.value.field == f"users.txt:{line}"


def test_load_password_file(tmp_path, caplog):
    p = tmp_path / "users"
    p.write_text("alice:pw\n")
    os.chmod(p, 0o600)
    with caplog.at_level(logging.WARNING):
        assert load_password_file(str(p)) == {"alice": "pw"}
    assert not caplog.records
    os.chmod(p, 0o644)
    with caplog.at_level(logging.WARNING):
        load_password_file(str(p))
    assert "readable by other users" in caplog.text


def test_load_password_file_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_password_file(str(tmp_path / "missing"))
    assert e.value.field == "--socks-password-file"
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    with pytest.raises(ConfigError):
        load_password_file(str(empty))


def test_user_spec():
    assert parse_user_spec("alice:pa:ss") == ("alice", "pa:ss")
    with pytest.raises(ConfigError):
        parse_user_spec("alice")


def _parse(argv):
    p = argparse.ArgumentParser()
    add_socks_arguments(p)
    return p.parse_args(argv)


def test_flags_build_a_validated_config(tmp_path):
    f = tmp_path / "users"
    f.write_text("bob:pw2\n")
    os.chmod(f, 0o600)
    c = socks_config_from_args(_parse([
        "--socks", "0.0.0.0:1081", "--socks-user", "alice:pw", "--socks-password-file", str(f), "--ipv4", "refuse",
    ]))
    assert (c.host, c.port, c.ipv4) == ("0.0.0.0", 1081, "refuse")
    assert dict(c.users) == {"alice": "pw", "bob": "pw2"}


def test_flags_refuse_an_open_proxy():
    with pytest.raises(ConfigError) as e:
        socks_config_from_args(_parse(["--socks", "0.0.0.0:1080"]))
    assert e.value.field == "--socks"


def test_no_flags_keep_the_base():
    base = SocksConfig(port=0, idle_timeout=5)
    assert socks_config_from_args(_parse([]), base) == base
