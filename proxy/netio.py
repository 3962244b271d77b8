"""Socket plumbing shared by the role drivers: UDP endpoints read by drain loops.

asyncio's ``DatagramProtocol`` delivers one datagram per event-loop turn
(measured here at 36-50 k datagrams/s); registering the socket with
``loop.add_reader`` and draining it until ``BlockingIOError`` reaches about
ten times that.  Each wake-up hands a *batch* to the callback, so a driver
can feed its core every datagram and flush once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Callable

__all__ = ["UdpEndpoint", "open_udp", "set_buffers", "open_multicast", "set_multicast_sender", "RawIpv6Sender"]

log = logging.getLogger("proxy.netio")

#: Read at most this many datagrams per wake-up, so one busy socket cannot
#: starve the loop (timers, other sockets).
DRAIN_BATCH = 256
RECV_SIZE = 65536

Endpoint = tuple[str, int]


def open_udp(host: str, port: int, *, reuse_port: bool = False, bufsize: int | None = None) -> socket.socket:
    """A non-blocking UDP/IPv4 socket bound to ``host:port``.

    Don't-Fragment is off (RFC 4380 §5.1.2: Teredo SHOULD NOT set DF; Miredo
    sets ``IP_PMTUDISC_DONT`` likewise).  ``reuse_port`` lets worker
    processes share the port; ``bufsize`` raises both socket buffers (a
    relay wants room for bursts; the kernel may cap it).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if hasattr(socket, "IP_MTU_DISCOVER"):
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MTU_DISCOVER, getattr(socket, "IP_PMTUDISC_DONT", 0))
        if bufsize:
            set_buffers(sock, bufsize)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


#: Linux ``IP_MULTICAST_ALL`` (49; Python 3.11 does not name it): 0 keeps a
#: socket to the groups *it* joined, instead of every group joined on the host.
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


def _multicast_all_off(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    except OSError:  # not Linux: the group bind below filters anyway
        pass


def open_multicast(group: str, port: int, interface: str) -> socket.socket:
    """A non-blocking UDP socket receiving ``group:port``, joined on ``interface``.

    Bound to the group address itself (with ``SO_REUSEADDR``), not to
    0.0.0.0: it then gets only the group's datagrams and never steals
    unicast ones from a socket on the same port (a client with BindPort
    3544), and several clients on one host can each have one.  The group
    is joined on the interface that holds ``interface`` (0.0.0.0: the
    kernel's default).  Raises OSError when the port or the group cannot
    be had (RFC 4380 §5.2.8 local discovery).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _multicast_all_off(sock)
        sock.bind((group, port))
        mreq = socket.inet_aton(group) + socket.inet_aton(interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def set_multicast_sender(sock: socket.socket, interface: str, ttl: int = 1) -> None:
    """Let ``sock`` send multicast: out of ``interface``, with ``ttl``, not looped back.

    RFC 4380 §5.2.8: discovery bubbles leave from the client's service
    socket (peers answer its port) with IPv4 TTL 1; Miredo turns the loop
    off so a client does not hear itself.
    """
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    if interface != "0.0.0.0":
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    _multicast_all_off(sock)


#: Linux's SO_RCVBUFFORCE / SO_SNDBUFFORCE (asm-generic/socket.h); Python
#: 3.11 has no names for them.  They ignore net.core.rmem_max/wmem_max but
#: need CAP_NET_ADMIN.
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33


def set_buffers(sock: socket.socket, size: int) -> None:
    """Ask for ``size``-byte receive and send buffers, as far as allowed.

    A plain SO_RCVBUF request is silently capped at net.core.rmem_max
    (212 992 bytes on a stock Debian kernel: about 90 Teredo datagrams,
    less than one burst of a sender with a 1 MiB window).  With
    CAP_NET_ADMIN (a relay or server started as root, before dropping
    privileges) the FORCE variants lift that cap; without it the plain
    request gets what the sysctl allows.
    """
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            continue
        except OSError:
            pass
        try:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
        except OSError:
            pass


class UdpEndpoint:
    """A bound UDP socket whose datagrams arrive in batches.

    ``on_batch(endpoint, [(data, addr), ...])`` runs once per wake-up.  Sends
    that would block are dropped and counted: UDP has no backpressure, and
    queueing would only add latency to a protocol built for loss.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_batch: Callable[["UdpEndpoint", list[tuple[bytes, Endpoint]]], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.sock = sock
        self.local: Endpoint = sock.getsockname()[:2]
        self.on_batch = on_batch
        self.loop = loop or asyncio.get_running_loop()
        self.sent = 0
        self.received = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.send_errors = 0
        self._closed = False
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        batch: list[tuple[bytes, Endpoint]] = []
        try:
            for _ in range(DRAIN_BATCH):
                batch.append(recvfrom(RECV_SIZE))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            # ICMP errors surface here on Linux (ECONNREFUSED...); not fatal.
            if e.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                log.warning("UDP receive error on %s:%d: %s", *self.local, e)
        if batch:
            self.received += len(batch)
            self.bytes_received += sum(len(d) for d, _ in batch)
            self.on_batch(self, batch)

    def sendto(self, data: bytes, addr: Endpoint) -> bool:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.send_errors += 1
            return False
        except OSError as e:
            self.send_errors += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("UDP send to %s:%d failed: %s", addr[0], addr[1], e)
            return False
        self.sent += 1
        self.bytes_sent += len(data)
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


class RawIpv6Sender:
    """Send-only raw IPv6 socket: we write whole packets, header included.

    ``IPPROTO_RAW`` on an IPv6 socket implies ``IPV6_HDRINCL`` on Linux, as
    Miredo's server relies on.  Needs CAP_NET_RAW, so it is opened before
    privileges are dropped.  Sends failing with an errno that reflects an
    earlier ICMPv6 error are retried a few times, as the error belongs to a
    previous packet, not this one.
    """

    RETRY_ERRNOS = frozenset({
        errno.ENETUNREACH, errno.EACCES, errno.EHOSTUNREACH, errno.ECONNREFUSED,
        errno.EMSGSIZE, errno.EPROTO,
    })

    def __init__(self, retries: int = 10) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setblocking(False)
        self.retries = retries
        self.sent = 0
        self.errors = 0

    def send(self, packet: bytes) -> bool:
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
        for _ in range(self.retries):
            try:
                self.sock.sendto(packet, (dst, 0))
                self.sent += 1
                return True
            except OSError as e:
                if e.errno not in self.RETRY_ERRNOS:
                    break
        self.errors += 1
        return False

    def close(self) -> None:
        self.sock.close()
