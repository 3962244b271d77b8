"""A Linux TUN device as the relay's native IPv6 side.

The relay owns the interface as Miredo's does (``libtun6/tun6.c``,
``src/relayd.c``): it creates it (``TUNSETIFF``, ``IFF_TUN | IFF_NO_PI``:
raw IPv6 packets, no packet-information header), brings it up without
broadcast or multicast, sets the MTU, adds ``fe80::ffff:ffff:ffff/64`` and
routes the Teredo prefix to it with metric 1024, unless told to leave
routing to the operator.  The kernel then forwards between the tunnel and
the native interface, decrementing hop limits and sending Packet Too Big,
so the core need not (``router = False``); the host must have IPv6
forwarding enabled (``net.ipv6.conf.all.forwarding=1``).

Opening needs CAP_NET_ADMIN (root); afterwards the descriptor is all the
relay needs, so privileges can be dropped.  The interface disappears when
the last descriptor closes.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import struct

from proxy.constants import RELAY_LINK_LOCAL, RELAY_MAX_PACKET, RELAY_MTU, RELAY_ROUTE_METRIC
from proxy.native import netlink
from proxy.native.base import NativeLinkError

__all__ = ["TunLink"]

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
_IFREQ = struct.Struct("16sH22x")


def _open_tun(name: str) -> tuple[int, str]:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NativeLinkError("no /dev/net/tun: load the tun module (modprobe tun)") from None
    except PermissionError:
        raise NativeLinkError("cannot open /dev/net/tun: run as root or with CAP_NET_ADMIN") from None
    try:
        res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as e:
        os.close(fd)
        if e.errno == errno.EPERM:
            raise NativeLinkError(f"cannot create TUN interface {name!r}: needs CAP_NET_ADMIN") from None
        if e.errno == errno.EBUSY:
            raise NativeLinkError(f"TUN interface {name!r} is busy (another relay running?)") from None
        raise NativeLinkError(f"cannot create TUN interface {name!r}: {e.strerror}") from None
    return fd, _IFREQ.unpack(res)[0].rstrip(b"\0").decode()


class TunLink:
    """The relay end of a TUN interface; see the module notes."""

    router = False

    def __init__(
        self,
        name: str = "teredo",
        mtu: int = RELAY_MTU,
        *,
        route_prefix: bytes | None = b"\x20\x01\x00\x00",
        configure: bool = True,
    ) -> None:
        """
        :param route_prefix: the 4-byte Teredo prefix to route to the interface
            (a /32), or None to leave routing to the operator (``--no-route``).
        :param configure: bring the link up, set MTU, address and route
            (False: the operator configures the device).
        """
        if len(name.encode()) > 15:
            raise NativeLinkError(f"interface name {name!r} is longer than 15 bytes")
        self._fd, self.name = _open_tun(name)
        self.mtu = mtu
        fd = self._fd
        self.recv = functools.partial(os.read, fd, RELAY_MAX_PACKET)
        self.send = functools.partial(os.write, fd)
        if configure:
            try:
                self._configure(route_prefix)
            except OSError as e:
                self.close()
                raise NativeLinkError(f"cannot configure interface {self.name!r}: {e.strerror or e}") from None

    def _configure(self, route_prefix: bytes | None) -> None:
        for knob in ("accept_ra", "accept_redirects"):  # a relay takes no advice (Miredo: libtun6)
            try:
                with open(f"/proc/sys/net/ipv6/conf/{self.name}/{knob}", "w") as f:
                    f.write("0")
            except OSError:
                pass
        netlink.set_link(self.name, mtu=self.mtu, up=True)
        netlink.add_address(self.name, RELAY_LINK_LOCAL, 64)
        if route_prefix is not None:
            netlink.replace_route(self.name, route_prefix + bytes(12), 32, RELAY_ROUTE_METRIC)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
