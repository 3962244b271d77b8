"""A minimal ping6 for the interop tests (hosts without iputils): ``python -m proxy.testing.ping6 ADDR [COUNT]``.

Sends ICMPv6 Echo Requests over a raw socket (root) and prints one line per
reply; exits 0 if at least one reply came back.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time


def ping(addr: str, count: int = 3, timeout: float = 5.0) -> list[float]:
    """Round-trip times in seconds of the replies received."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    ident = os.getpid() & 0xFFFF
    rtts = []
    try:
        for seq in range(1, count + 1):
            # the kernel fills the ICMPv6 checksum on raw ICMPv6 sockets
            s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"teredo-proxy", (addr, 0))
            sent = time.monotonic()
            deadline = sent + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([s], [], [], left)[0]:
                    break
                data, _src = s.recvfrom(2048)
                if len(data) >= 8 and data[0] == 129 and struct.unpack("!HH", data[4:8]) == (ident, seq):
                    rtts.append(time.monotonic() - sent)
                    print(f"reply from {addr}: seq={seq} time={rtts[-1] * 1000:.1f} ms", flush=True)
                    break
    finally:
        s.close()
    return rtts


if __name__ == "__main__":
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    sys.exit(0 if ping(sys.argv[1], n) else 1)
