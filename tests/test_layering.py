"""Rule 12: protocol cores do no I/O.

Every module under ``proxy/teredo`` and ``proxy/ipstack`` (and the SOCKS5
codec modules ``proxy/socks5*.py``) except ``*_asyncio.py`` drivers must not import asyncio, socket, time,
os, random, select or threading; nor anything from the I/O layers
(``proxy.native``, ``proxy.apps``, ``proxy.cli``).  The only exception is
``from socket import inet_aton/inet_ntoa/inet_pton/inet_ntop``: pure
address conversions that happen to live in the socket module.
"""

from __future__ import annotations

import ast
import pathlib

import proxy

ROOT = pathlib.Path(proxy.__file__).parent
FORBIDDEN = {"asyncio", "socket", "time", "os", "random", "select", "threading", "subprocess", "selectors"}
FORBIDDEN_PROJECT = ("proxy.native", "proxy.apps", "proxy.cli")
PURE_SOCKET_NAMES = {"inet_aton", "inet_ntoa", "inet_pton", "inet_ntop", "AF_INET", "AF_INET6"}


def core_modules() -> list[pathlib.Path]:
    out = []
    for sub in ("teredo", "ipstack"):
        for path in sorted((ROOT / sub).rglob("*.py")):
            if not path.name.endswith("_asyncio.py"):
                out.append(path)
    for path in sorted(ROOT.glob("socks5*.py")):
        if not path.name.endswith("_asyncio.py"):
            out.append(path)
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes under ``if TYPE_CHECKING:`` (annotations only, no run-time import)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, (ast.Name, ast.Attribute)):
            name = node.test.id if isinstance(node.test, ast.Name) else node.test.attr
            if name == "TYPE_CHECKING":
                skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def violations(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    bad = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FORBIDDEN or alias.name.startswith(FORBIDDEN_PROJECT):
                    bad.append(f"{path.name}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top == "socket" and all(a.name in PURE_SOCKET_NAMES for a in node.names):
                continue
            if top in FORBIDDEN or node.module.startswith(FORBIDDEN_PROJECT):
                bad.append(f"{path.name}:{node.lineno}: from {node.module} import ...")
    return bad


def test_there_are_core_modules():
    assert len(core_modules()) >= 5


def test_cores_do_no_io():
    found = [v for path in core_modules() for v in violations(path)]
    assert found == []


def test_checker_catches_an_import(tmp_path):
    p = tmp_path / "x.py"
    p.write_text(
        "import asyncio\nfrom socket import socket\nfrom socket import inet_aton\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import random\n"
    )
    assert len(violations(p)) == 2
