"""In-memory throughput of two TcpConnections: the machine's own ceiling.

Two connections exchange segments directly (no IPv6, no I/O).  With
``--wire`` (the default) every segment goes through ``emit`` and ``parse``
with checksums, as it would on the TUN path minus the IPv6 header.  The
sender's application writes 64 KiB chunks whenever there is room and the
receiver reads everything after each batch.

Prints one JSON object per configuration:
``{"bench": "tcp_machine", "wire": true, "mb": 64, "seconds": .., "mb_per_s": ..,
"us_per_segment": .., "segments": ..}``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.ipstack.tcp import TcpConfig, TcpConnection  # noqa: E402
from proxy.ipstack.wire.tcp import TcpSegment  # noqa: E402

A_ADDR = bytes.fromhex("20010000000000000000000000000001")
B_ADDR = bytes.fromhex("20010000000000000000000000000002")


def run(total: int, wire: bool, cc: str, sack_loss: float = 0.0) -> dict:
    cfg = TcpConfig(congestion_control=cc)
    rng = random.Random(1)
    a_ep, b_ep = (A_ADDR, 40000), (B_ADDR, 80)
    now = 0.0
    a = TcpConnection.connect(cfg, local=a_ep, remote=b_ep, rng=rng, now=now)
    syn = a.segments_to_send(now)[0]
    b = TcpConnection.accept(cfg, syn, local=b_ep, remote=a_ep, rng=rng, now=now)
    chunk = bytes(range(256)) * 256
    sent = received = 0
    segments = 0
    drop = random.Random(2)

    def deliver(src: TcpConnection, dst: TcpConnection, s_addr: bytes, d_addr: bytes) -> int:
        nonlocal segments
        segs = src.segments_to_send(now)
        for seg in segs:
            if sack_loss and seg.payload and drop.random() < sack_loss:
                continue
            if wire:
                seg = TcpSegment.parse(seg.emit(s_addr, d_addr), s_addr, d_addr)
            dst.segment_received(seg, now)
        segments += len(segs)
        return len(segs)

    t0 = time.perf_counter()
    while received < total:
        while sent < total:
            n = a.send(chunk)
            if not n:
                break
            sent += n
        moved = deliver(a, b, A_ADDR, B_ADDR)
        received += len(b.receive())
        moved += deliver(b, a, B_ADDR, A_ADDR)
        now += 0.0005
        a.handle_timer(now)
        b.handle_timer(now)
        if not moved:
            t = min(x for x in (a.poll_at(), b.poll_at(), now + 0.01) if x is not None)
            now = max(now, t)
            a.handle_timer(now)
            b.handle_timer(now)
    dt = time.perf_counter() - t0
    return {
        "bench": "tcp_machine", "wire": wire, "cc": cc, "loss": sack_loss,
        "mb": total / 1e6, "seconds": round(dt, 3), "mb_per_s": round(total / dt / 1e6, 2),
        "segments": segments, "us_per_segment": round(dt / segments * 1e6, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=float, default=32.0, help="megabytes to transfer")
    p.add_argument("--no-wire", action="store_true", help="skip emit/parse")
    p.add_argument("--loss", type=float, default=0.0, help="drop this fraction of data segments")
    p.add_argument("--cc", default="newreno", choices=("newreno", "cubic"))
    args = p.parse_args()
    print(json.dumps(run(int(args.mb * 1e6), not args.no_wire, args.cc, args.loss)), flush=True)


if __name__ == "__main__":
    main()
