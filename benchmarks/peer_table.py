#!/usr/bin/env python3
"""Peer-table figures at 1 M and 5 M peers: inserts/s, lookups/s, RSS bytes per peer.

Each size runs in a fresh process (``teredo-proxy stress peers``) so the
RSS delta belongs to the table alone; the dict-of-slotted-objects baseline
runs the same way.  One JSON object per line; Miredo's Judy list, measured
on this kind of machine, costs 137 B/peer (1.37 M lookups/s at 5 M).

    python3 benchmarks/peer_table.py [--counts 1000000,5000000] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(count: int, baseline: bool, rounds: int) -> list[dict]:
    cmd = [sys.executable, "-m", "proxy", "stress", "peers", "--count", str(count), "--rounds", str(rounds)]
    if baseline:
        cmd.append("--baseline")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000000,5000000")
    ap.add_argument("--no-baseline", action="store_true", help="skip the dict-of-slots baseline")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for n in (int(c) for c in a.counts.split(",")):
        rows = measure(n, baseline=not a.no_baseline, rounds=a.rounds)
        for r in rows:
            r["benchmark"] = "peer_table"
            print(json.dumps(r), flush=True)
        ours = rows[-1]
        base = rows[0] if len(rows) > 1 else None
        summary = {"benchmark": "peer_table_summary", "count": n, "bytes_per_peer": ours["bytes_per_peer"],
                   "lookups_per_s": ours["lookups_per_s"], "inserts_per_s": ours["inserts_per_s"],
                   "vs_miredo_judy_bytes": round(ours["bytes_per_peer"] / 137, 3)}
        if base:
            summary["vs_dict_bytes"] = round(ours["bytes_per_peer"] / base["bytes_per_peer"], 3)
            summary["vs_dict_lookups"] = round(ours["lookups_per_s"] / base["lookups_per_s"], 3)
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
