"""A Linux TUN device as the stack's link (interop tests and benchmarks).

The kernel on the other side of the device is the peer: its TCP, ICMPv6 and
UDP talk to our stack through real packets.  Reading uses one
``loop.add_reader`` callback that drains every readable packet (bounded per
callback) and hands the batch to the receiver, so the stack flushes once per
batch; the survey in the project notes measured about 11x the packet rate of
asyncio's one-datagram-per-callback transports with this pattern.

The device is created with ``IFF_TUN | IFF_NO_PI`` (bare IPv6 packets).
Configuration (address, MTU, up, namespace) is the caller's business, done
with ``ip``: creating a device needs CAP_NET_ADMIN.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
from collections.abc import Callable

__all__ = ["TunLink"]

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
#: Packets read per readable callback before yielding to the loop.
_BATCH = 256
_READ_SIZE = 65536


class TunLink:
    """A TUN device: ``send(packet)`` writes, a receiver gets read batches."""

    def __init__(self, name: str) -> None:
        """Create (or attach to) TUN device ``name``.

        :raises OSError: no /dev/net/tun or no CAP_NET_ADMIN.
        """
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            ifr = struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI)
            got = fcntl.ioctl(fd, _TUNSETIFF, ifr)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        #: The kernel's name for the device.
        self.name = got[:16].rstrip(b"\0").decode()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receiver: Callable[[list[bytes]], None] | None = None
        #: Packets written, and writes the kernel refused (dropped).
        self.sent = 0
        self.send_errors = 0
        self.received = 0

    def start(self, receiver: Callable[[list[bytes]], None]) -> None:
        """Deliver read batches to ``receiver`` (e.g. ``Stack.packets_received``)."""
        self._receiver = receiver
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        packets: list[bytes] = []
        read = os.read
        fd = self.fd
        for _ in range(_BATCH):
            try:
                packets.append(read(fd, _READ_SIZE))
            except BlockingIOError:
                break
            except OSError:
                break
        if packets and self._receiver is not None:
            self.received += len(packets)
            self._receiver(packets)

    def send(self, packet: bytes) -> None:
        """Write one packet to the kernel; a refused write is a dropped packet."""
        try:
            os.write(self.fd, packet)
            self.sent += 1
        except OSError:
            self.send_errors += 1

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
            self._loop = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
