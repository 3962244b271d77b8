"""The Linux kernel's side of TUN interop runs: a tiny socket tool.

Run inside the test namespace (``ip netns exec NS python3 kernel_peer.py
COMMAND ...``) so that every socket here uses the kernel's own TCP, UDP and
ICMPv6 against our userspace stack on the other end of the TUN device.
Stdlib only, no project imports (it runs outside the package).

Every command prints ``ready`` (flushed) once its socket is listening or
bound, then one JSON line with its result, and exits.  Data is the
deterministic stream ``random.Random(seed).randbytes`` so both ends can
compare SHA-256 digests without shipping the bytes around.

Commands::

    sink PORT                      accept one TCP connection, read to EOF
    source PORT NBYTES SEED        accept one TCP connection, send, close
    connect-sink ADDR PORT         connect, read to EOF
    connect-source ADDR PORT NBYTES SEED   connect, send, close
    udp-echo PORT COUNT            echo COUNT datagrams back to their sender
    udp-send ADDR PORT COUNT       send COUNT datagrams, await each echo
    ping ADDR COUNT SIZE           ICMPv6 echo via a raw socket
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import struct
import sys
import time

CHUNK = 256 * 1024


def stream(nbytes: int, seed: int):
    rng = random.Random(seed)
    left = nbytes
    while left:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


def ready() -> None:
    print("ready", flush=True)


def result(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


#: Congestion control for our TCP sockets (``KERNEL_PEER_CC``, e.g. "cubic"),
#: else the namespace default.  Set per socket: a namespace cannot change its
#: default to a controller outside the host's allowed list, a root socket can.
CC = os.environ.get("KERNEL_PEER_CC")


def tcp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    if CC:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, CC.encode())
    return s


def connect(addr: str, port: int) -> socket.socket:
    s = tcp_socket()
    s.settimeout(60)
    s.connect((addr, port))
    s.settimeout(None)
    return s


def listener(port: int) -> socket.socket:
    s = tcp_socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(4)
    return s


def read_all(conn: socket.socket) -> None:
    h = hashlib.sha256()
    total = 0
    start = time.monotonic()
    while True:
        data = conn.recv(CHUNK)
        if not data:
            break
        h.update(data)
        total += len(data)
    result(bytes=total, sha256=h.hexdigest(), seconds=time.monotonic() - start)


def send_all(conn: socket.socket, nbytes: int, seed: int) -> None:
    h = hashlib.sha256()
    start = time.monotonic()
    for chunk in stream(nbytes, seed):
        conn.sendall(chunk)
        h.update(chunk)
    conn.shutdown(socket.SHUT_WR)
    # wait for the peer's close so that every byte was acknowledged
    while conn.recv(CHUNK):
        pass
    result(bytes=nbytes, sha256=h.hexdigest(), seconds=time.monotonic() - start)


def cmd_sink(port: str) -> None:
    s = listener(int(port))
    ready()
    conn, _ = s.accept()
    read_all(conn)


def cmd_source(port: str, nbytes: str, seed: str) -> None:
    s = listener(int(port))
    ready()
    conn, _ = s.accept()
    send_all(conn, int(nbytes), int(seed))


def cmd_connect_sink(addr: str, port: str) -> None:
    ready()
    conn = connect(addr, int(port))
    read_all(conn)


def cmd_connect_source(addr: str, port: str, nbytes: str, seed: str) -> None:
    ready()
    conn = connect(addr, int(port))
    send_all(conn, int(nbytes), int(seed))


def cmd_udp_echo(port: str, count: str) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::", int(port)))
    ready()
    sizes = []
    for _ in range(int(count)):
        data, addr = s.recvfrom(65535)
        sizes.append(len(data))
        s.sendto(data, addr)
    result(echoed=sizes)


def cmd_udp_send(addr: str, port: str, count: str) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect((addr, int(port)))
    ready()
    ok = 0
    for i in range(int(count)):
        payload = bytes([i % 256]) * (1 + i * 700)  # up to multi-fragment sizes
        s.send(payload)
        if s.recv(65535) == payload:
            ok += 1
    result(ok=ok)


def cmd_ping(addr: str, count: str, size: str) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.settimeout(2)
    ready()
    ident = 0x5A5A
    rtts = []
    for seq in range(int(count)):
        data = bytes(range(256)) * (int(size) // 256 + 1)
        data = data[: int(size)]
        # the kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets
        try:
            s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + data, (addr, 0))
        except PermissionError:  # dropped by an OUTPUT rule (the loss model)
            continue
        start = time.monotonic()
        while True:
            try:
                reply, _ = s.recvfrom(65535)
            except TimeoutError:
                break
            typ, _code, _ck, rid, rseq = struct.unpack_from("!BBHHH", reply)
            if typ == 129 and rid == ident and rseq == seq and reply[8:] == data:
                rtts.append(time.monotonic() - start)
                break
    result(replies=len(rtts), rtts=rtts)


COMMANDS = {
    "sink": cmd_sink,
    "source": cmd_source,
    "connect-sink": cmd_connect_sink,
    "connect-source": cmd_connect_source,
    "udp-echo": cmd_udp_echo,
    "udp-send": cmd_udp_send,
    "ping": cmd_ping,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
