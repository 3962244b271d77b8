"""Raw sockets as the relay's native IPv6 side, for hosts that route the
Teredo prefix to the relay another way than a TUN device.

Receiving: an ``AF_PACKET``/``SOCK_DGRAM`` socket bound to the interface
the prefix arrives on (``--interface``) sees every inbound IPv6 packet
before routing; a classic BPF filter attached to it keeps only packets
addressed to the Teredo prefix that arrive from outside, so the relay
wakes only for its own traffic.

Sending: an ``AF_INET6``/``SOCK_RAW``/``IPPROTO_RAW`` socket (the header is
ours, as with ``IPV6_HDRINCL``) hands each packet to the kernel's routing,
as miredo-server forwards to native IPv6.

What the host needs (docs/relay.md):

* CAP_NET_RAW (root, or ``setcap cap_net_raw+ep``); the sockets are opened
  before privileges are dropped;
* the Teredo prefix routed to this host by its upstream router;
* the kernel must neither forward nor answer those packets itself: a
  ``blackhole`` route for the prefix (``ip -6 route add blackhole
  2001::/32``) drops its own copy silently while ours is relayed;
* nobody decrements hop limits or enforces the MTU for us, so the core
  runs in router mode (``router = True``).
"""

from __future__ import annotations

import ctypes
import functools
import socket

from proxy.constants import RELAY_MAX_PACKET, RELAY_MTU
from proxy.native.base import NativeLinkError

__all__ = ["RawLink"]

ETH_P_IPV6 = 0x86DD
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
_SKF_AD_OFF, _SKF_AD_PKTTYPE = -0x1000, 4
# BPF opcodes (linux/filter.h)
_LD_W_ABS, _LD_B_ABS, _JEQ_K, _RET_K = 0x20, 0x30, 0x15, 0x06


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _prefix_filter(prefix: int) -> list[tuple[int, int, int, int]]:
    """Accept inbound packets whose destination starts with ``prefix`` (32 bits)."""
    return [
        (_LD_B_ABS, 0, 0, (_SKF_AD_OFF + _SKF_AD_PKTTYPE) & 0xFFFFFFFF),  # A = packet type
        (_JEQ_K, 3, 0, PACKET_OUTGOING),  # our own sends: reject
        (_LD_W_ABS, 0, 0, 24),  # A = first word of the IPv6 destination
        (_JEQ_K, 0, 1, prefix),
        (_RET_K, 0, 0, RELAY_MAX_PACKET),
        (_RET_K, 0, 0, 0),
    ]


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    insns = (_SockFilter * len(program))(*[_SockFilter(c, t, f, k) for c, t, f, k in program])
    prog = _SockFprog(len(program), insns)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))  # the kernel copies the program


class RawLink:
    """Raw-socket native link; see the module notes."""

    router = True

    def __init__(self, interface: str, prefix: int = 0x20010000, mtu: int = RELAY_MTU) -> None:
        self.name = interface
        self.mtu = mtu
        try:
            self._rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IPV6))
        except PermissionError:
            raise NativeLinkError("raw native link needs CAP_NET_RAW (run as root or setcap cap_net_raw+ep)") from None
        try:
            _attach(self._rx, _prefix_filter(prefix))
            self._rx.bind((interface, ETH_P_IPV6))
            self._tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except OSError as e:
            self._rx.close()
            raise NativeLinkError(f"cannot open raw sockets on {interface!r}: {e.strerror or e}") from None
        self._rx.setblocking(False)
        self._tx.setblocking(False)
        rx, tx = self._rx, self._tx
        self.recv = functools.partial(rx.recv, RELAY_MAX_PACKET)
        ntop = socket.inet_ntop

        def send(packet: bytes) -> int:
            return tx.sendto(packet, (ntop(socket.AF_INET6, packet[24:40]), 0))

        self.send = send

    def fileno(self) -> int:
        return self._rx.fileno()

    def close(self) -> None:
        self._rx.close()
        self._tx.close()

