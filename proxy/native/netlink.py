"""Just enough rtnetlink to configure the relay's tunnel: link up, MTU, address, route.

Miredo's relay brings its tunnel up, sets the MTU, gives it
fe80::ffff:ffff:ffff/64 and routes the Teredo prefix to it with metric 1024
(``src/relayd.c``, ``libtun6/tun6.c``).  Doing the same over an
``AF_NETLINK`` socket avoids depending on the ``ip`` binary.  Messages
(``linux/netlink.h``, ``linux/rtnetlink.h``)::

    nlmsghdr  len u32 | type u16 | flags u16 | seq u32 | pid u32
    ifaddrmsg family u8 | prefixlen u8 | flags u8 | scope u8 | index u32
    rtmsg     family | dst_len | src_len | tos | table | protocol | scope | type (u8 each) | flags u32
    rtattr    len u16 | type u16 | value, padded to 4 bytes

Every request asks for an acknowledgement and an error becomes an OSError
with the kernel's errno.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import socket
import struct

__all__ = ["add_address", "replace_route", "set_link", "ifindex"]

_NLMSG = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")

NLMSG_ERROR = 2
RTM_NEWADDR, RTM_NEWROUTE = 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RTA_DST, RTA_OIF, RTA_PRIORITY = 1, 4, 6

SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFMTU = 0x8913, 0x8914, 0x8922
IFF_UP, IFF_BROADCAST, IFF_RUNNING, IFF_MULTICAST = 0x1, 0x2, 0x40, 0x1000

_seq = itertools.count(1)


def ifindex(name: str) -> int:
    return socket.if_nametoindex(name)


def _attr(kind: int, value: bytes) -> bytes:
    raw = _RTATTR.pack(4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _request(kind: int, flags: int, body: bytes) -> None:
    seq = next(_seq)
    msg = _NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
        s.bind((0, 0))
        s.send(msg)
        while True:
            data = s.recv(65536)
            off = 0
            while off + _NLMSG.size <= len(data):
                length, mtype, _f, mseq, _pid = _NLMSG.unpack_from(data, off)
                if mseq == seq and mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, off + _NLMSG.size)
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    return
                off += max(length, _NLMSG.size) + (-length % 4)


def add_address(name: str, address: bytes, prefixlen: int, scope: int = RT_SCOPE_LINK) -> None:
    """Add an IPv6 address (no duplicate address detection); an existing one is fine."""
    body = _IFADDRMSG.pack(socket.AF_INET6, prefixlen, IFA_F_NODAD, scope, ifindex(name))
    body += _attr(IFA_LOCAL, address) + _attr(IFA_ADDRESS, address)
    try:
        _request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)
    except FileExistsError:
        pass


def replace_route(name: str, prefix: bytes, prefixlen: int, metric: int) -> None:
    """Route ``prefix/prefixlen`` to interface ``name`` (replacing an older route)."""
    body = _RTMSG.pack(socket.AF_INET6, prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    body += _attr(RTA_DST, prefix) + _attr(RTA_OIF, struct.pack("=I", ifindex(name)))
    body += _attr(RTA_PRIORITY, struct.pack("=I", metric))
    _request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body)


def set_link(name: str, *, mtu: int | None = None, up: bool = True) -> None:
    """Set the MTU and bring the link up, without broadcast/multicast (as Miredo's libtun6)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifname = name.encode()[:15].ljust(16, b"\0")
        if mtu is not None:
            fcntl.ioctl(s, SIOCSIFMTU, ifname + struct.pack("=i", mtu) + bytes(20))
        flags = struct.unpack_from("=H", fcntl.ioctl(s, SIOCGIFFLAGS, ifname + bytes(24)), 16)[0]
        flags &= ~(IFF_BROADCAST | IFF_MULTICAST) & 0xFFFF
        if up:
            flags |= IFF_UP | IFF_RUNNING
        fcntl.ioctl(s, SIOCSIFFLAGS, ifname + struct.pack("=H", flags) + bytes(22))
