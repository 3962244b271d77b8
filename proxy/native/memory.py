"""An in-memory native link: a datagram socket pair, no privileges.

One end is the relay's :class:`MemoryLink`; the other (:attr:`MemoryLink.peer`)
plays the native IPv6 Internet for tests and the demo: whatever it sends
arrives at the relay as if routed from native IPv6, and what the relay
forwards can be read from it.  A kernel socket pair rather than a Python
deque so the same ``add_reader`` driver runs unchanged.
"""

from __future__ import annotations

import functools
import socket

from proxy.constants import RELAY_MAX_PACKET, RELAY_MTU

__all__ = ["MemoryLink"]


class MemoryLink:
    """The relay's end of an in-memory native link (router duty falls on the core)."""

    router = True

    def __init__(self, mtu: int = RELAY_MTU, name: str = "memory") -> None:
        self.name = name
        self.mtu = mtu
        self._sock, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for s in (self._sock, self.peer):
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock = self._sock
        self.recv = functools.partial(sock.recv, RELAY_MAX_PACKET)
        self.send = sock.send

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()
        self.peer.close()
