"""Bulk TCP through the userspace stack to the Linux kernel over a TUN device.

Our stack (Interface + asyncio Stack, this process) talks to the kernel's
TCP in a fresh network namespace (proxy.testing.tunlab), MTU 1280 like
Teredo.  For each direction and loss rate, one connection moves ``--mb``
megabytes; ``iptables statistic`` rules drop packets at random in both
directions when loss > 0.

Prints one JSON object per result line::

    {"bench": "ipstack_tun", "direction": "stack->kernel", "loss": 0.01,
     "mb": 32, "seconds": .., "mb_per_s": .., "cpu_s_per_mb": ..,
     "packets_in": .., "packets_out": .., "dropped": .., "loop": "asyncio",
     "kernel_cc": "bbr", "ack_every": 32,
     "tcp": {"rto": .., "fast_retransmit": .., "tlp": .., ...}}

``kernel_cc`` is the kernel peer's congestion control (``--kernel-cc``
sets it per socket; the host default otherwise): a pacing BBR sender
hands us two or three packets per read, a CUBIC one full batches, which
changes the receive cost per packet threefold.  ``tcp`` holds our
connection's counters (timeouts, fast recoveries, tail
loss probes and the losses they repaired, segments RACK marked lost,
retransmitted segments).

``seconds`` runs from the first byte written to the last byte delivered
(the kernel's reported end for stack->kernel; our EOF for kernel->stack);
``cpu_s_per_mb`` is this process's CPU time (user+system: the stack, the
asyncio loop, and the TUN syscalls) per megabyte over the same span.  The
kernel peer's CPU is not counted.  Needs root.  ``--profile FILE`` writes a
cProfile of the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.testing.kernel_peer import stream  # noqa: E402
from proxy.testing.tunlab import TunLab, lab_unavailable_reason  # noqa: E402

MB = 1 << 20


def expected(nbytes: int, seed: int) -> tuple[bytes, str]:
    data = b"".join(stream(nbytes, seed))
    return data, hashlib.sha256(data).hexdigest()


def tcp_stats(writer: asyncio.StreamWriter) -> dict:
    """Our connection's counters: timeouts, recoveries, probes, retransmissions."""
    conn = writer.get_extra_info("connection")
    keys = ("rto", "fast_retransmit", "tlp", "tlp_recovery", "rack_lost", "retransmitted")
    return {k: conn.stats[k] for k in keys} if conn is not None else {}


async def stack_to_kernel(lab: TunLab, nbytes: int) -> dict:
    data, digest = expected(nbytes, 1)
    peer = await lab.peer("sink", 5001)
    reader, writer = await lab.stack.open_connection(lab.kernel_addr, 5001)
    view = memoryview(data)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for off in range(0, nbytes, 256 * 1024):
        writer.write(view[off : off + 256 * 1024])
        await writer.drain()
    writer.write_eof()
    res = await peer.result(600)
    t1, cpu1 = time.perf_counter(), time.process_time()
    assert res["bytes"] == nbytes and res["sha256"] == digest, "transfer corrupted"
    stats = tcp_stats(writer)
    writer.close()
    return {"seconds": t1 - t0, "cpu": cpu1 - cpu0, "tcp": stats}


async def kernel_to_stack(lab: TunLab, nbytes: int) -> dict:
    _data, digest = expected(nbytes, 2)
    peer = await lab.peer("source", 5002, nbytes, 2)
    reader, writer = await lab.stack.open_connection(lab.kernel_addr, 5002)
    chunks = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    while True:
        data = await reader.read(1 << 20)
        if not data:
            break
        chunks.append(data)
    t1, cpu1 = time.perf_counter(), time.process_time()
    got = b"".join(chunks)
    assert len(got) == nbytes and hashlib.sha256(got).hexdigest() == digest, "transfer corrupted"
    stats = tcp_stats(writer)
    writer.close()
    await peer.result(60)
    return {"seconds": t1 - t0, "cpu": cpu1 - cpu0, "tcp": stats}


def kernel_cc(lab: TunLab) -> str:
    """The congestion control the kernel peer's sockets use."""
    if lab.kernel_cc:
        return lab.kernel_cc
    out = subprocess.run(
        ["ip", "netns", "exec", lab.ns, "cat", "/proc/sys/net/ipv4/tcp_congestion_control"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    return out.stdout.strip() or "unknown"


async def one(
    direction: str, loss: float, nbytes: int, loop_name: str, cc: str | None,
    ack_every: int | None,
) -> dict:
    async with TunLab(kernel_cc=cc) as lab:
        lab.set_loss(loss)
        if ack_every is not None:
            lab.stack.ack_every = ack_every
        run = stack_to_kernel if direction == "stack->kernel" else kernel_to_stack
        r = await run(lab, nbytes)
        mb = nbytes / MB
        return {
            "bench": "ipstack_tun",
            "direction": direction,
            "loss": loss,
            "mb": round(mb, 3),
            "seconds": round(r["seconds"], 4),
            "mb_per_s": round(mb / r["seconds"], 2),
            "cpu_s_per_mb": round(r["cpu"] / mb, 4),
            "packets_in": lab.link.received,
            "packets_out": lab.link.sent,
            "dropped": lab.dropped(),
            "loop": loop_name,
            "kernel_cc": kernel_cc(lab),
            "ack_every": lab.stack.ack_every,
            "python": platform.python_version(),
            "tcp": r["tcp"],
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=32, help="megabytes per transfer")
    ap.add_argument("--loss", type=float, action="append", help="loss rates (default 0 and 0.01)")
    ap.add_argument("--direction", choices=["stack->kernel", "kernel->stack"], action="append")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    ap.add_argument("--kernel-cc", metavar="NAME",
                    help="congestion control of the kernel's sockets (default: the host's)")
    ap.add_argument("--ack-every", type=int, metavar="N",
                    help="Stack.ack_every for the run (default: the Stack's)")
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of the runs")
    args = ap.parse_args()
    reason = lab_unavailable_reason()
    if reason is not None:
        print(json.dumps({"bench": "ipstack_tun", "skipped": reason}))
        return 0
    losses = args.loss or [0.0, 0.01]
    directions = args.direction or ["stack->kernel", "kernel->stack"]
    nbytes = int(args.mb * MB)
    loop_name = "asyncio"
    if args.uvloop:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    prof = cProfile.Profile() if args.profile else None

    async def runs() -> None:
        for _ in range(args.repeat):
            for direction in directions:
                for loss in losses:
                    if prof:
                        prof.enable()
                    line = await one(
                        direction, loss, nbytes, loop_name, args.kernel_cc, args.ack_every)
                    if prof:
                        prof.disable()
                    print(json.dumps(line), flush=True)

    asyncio.run(runs())
    if prof:
        prof.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
