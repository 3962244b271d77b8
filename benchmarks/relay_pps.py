#!/usr/bin/env python3
"""Relay forwarding rate, ours against Miredo's, under the same stress load (root + Debian miredo).

In a uniquely named netns lab (proxy.testing.netns): ``teredo-proxy stress
relay`` in ``pub`` emulates Teredo clients sending IPv6 through the relay in
``relay`` to the native host ``host6``, where the kernel counts arrivals
(``Ip6InReceives``).  Miredo's relay runs first, then ours (``teredo-proxy
relay --native tun``), at each packet size; every run prints a JSON line,
then one line per size gives ours/Miredo as a ratio of forwarded packets
per second.  ``relay_cpu_s`` is the CPU time of every process in the relay
namespace during the run (Miredo forks a worker).

    sudo python3 benchmarks/relay_pps.py [--sizes 100,1280] [--duration 5] [--peers 100]
                                         [--rate 0] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from proxy.testing.netns import HOST6, RELAY4, Lab, lab_unavailable_reason  # noqa: E402


def cpu_seconds(lab: Lab, host: str) -> float:
    """utime + stime of every process in ``host``'s namespace."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in lab._run("ip", "netns", "pids", lab.ns(host), check=False).stdout.split():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def stress(lab: Lab, size: int, a: argparse.Namespace, label: str) -> dict:
    c0 = cpu_seconds(lab, "relay")
    p = lab.run("pub", sys.executable, "-m", "proxy", "stress", "relay", "--target", f"{RELAY4}:3544",
                "--peers", str(a.peers), "--size", str(size), "--duration", str(a.duration), "--rate", str(a.rate),
                "--sink", HOST6, "--sink-netns", lab.ns("host6"), "--open-netns", lab.ns("host6"),
                "--label", label, check=False, timeout=a.duration + 120)
    c1 = cpu_seconds(lab, "relay")
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    row = lines[-1] if lines else {"label": label, "error": p.stderr[-500:]}
    row.update(benchmark="relay_pps", relay=label.split("-")[0], relay_cpu_s=round(c1 - c0, 2))
    if row.get("forwarded") and c1 > c0:
        row["forwarded_per_cpu_s"] = round(row["forwarded"] / (c1 - c0))
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1280")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--peers", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0, help="offered pps (0: as fast as the generator goes)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per relay and size; medians are compared")
    ap.add_argument("--relay-args", default="", help="extra flags for our relay, e.g. --output-thread")
    a = ap.parse_args()
    reason = lab_unavailable_reason(miredo=True)
    if reason:
        print(json.dumps({"benchmark": "relay_pps", "skipped": reason}))
        return 0
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    os.environ.update(env)
    sizes = [int(s) for s in a.sizes.split(",")]
    results: dict[tuple[str, int], list[float]] = {}
    with Lab(tag="bp" + os.urandom(3).hex()) as lab:
        for _ in range(a.repeat):
            lab.start_miredo_relay()
            for size in sizes:
                r = stress(lab, size, a, f"miredo-{size}")
                results.setdefault(("miredo", size), []).append(r.get("forwarded_pps", 0))
            lab.stop("miredo-relay")
            lab.wait_for(lambda: lab.run("relay", "ip", "link", "show", "teredo", check=False).returncode != 0,
                         10, "Miredo's tunnel to go")
            lab.start_relay(*a.relay_args.split())
            for size in sizes:
                r = stress(lab, size, a, f"ours-{size}")
                results.setdefault(("ours", size), []).append(r.get("forwarded_pps", 0))
            lab.stop("relay")
            lab.wait_for(lambda: lab.run("relay", "ip", "link", "show", "teredo", check=False).returncode != 0,
                         10, "our tunnel to go")
    for size in sizes:
        m = statistics.median(results[("miredo", size)])
        o = statistics.median(results[("ours", size)])
        print(json.dumps({"benchmark": "relay_pps_ratio", "size": size, "miredo_pps": m, "ours_pps": o,
                          "ratio": round(o / m, 3) if m else None, "runs": a.repeat}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
