"""Socket plumbing: buffer sizes beyond net.core.rmem_max."""

from __future__ import annotations

import os
import socket

import pytest

from proxy.netio import SO_RCVBUFFORCE, SO_SNDBUFFORCE, open_udp, set_buffers


def _sysctl(name: str) -> int:
    with open(f"/proc/sys/net/core/{name}") as f:
        return int(f.read())


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs CAP_NET_ADMIN (run as root)")
def test_with_cap_net_admin_the_buffers_exceed_the_sysctl_caps():
    size = max(_sysctl("rmem_max"), _sysctl("wmem_max")) + (1 << 20)
    sock = open_udp("127.0.0.1", 0, bufsize=size)
    with sock:
        # Linux doubles the request for its bookkeeping.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 2 * size
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= 2 * size


class _Unprivileged:
    """A socket stand-in refusing the FORCE options, as without CAP_NET_ADMIN."""

    def __init__(self) -> None:
        self.set: list[tuple[int, int]] = []

    def setsockopt(self, level: int, opt: int, value: int) -> None:
        if opt in (SO_RCVBUFFORCE, SO_SNDBUFFORCE):
            raise PermissionError(1, "Operation not permitted")
        self.set.append((opt, value))


def test_without_cap_net_admin_the_plain_options_are_used():
    sock = _Unprivileged()
    set_buffers(sock, 4 << 20)  # type: ignore[arg-type]
    assert sock.set == [(socket.SO_RCVBUF, 4 << 20), (socket.SO_SNDBUF, 4 << 20)]
