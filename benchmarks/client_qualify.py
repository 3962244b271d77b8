#!/usr/bin/env python3
"""Client start-up: time to ``qualified`` and to the first echo reply, ours vs Miredo.

Runs as root in a uniquely named namespace lab (``proxy.testing.netns.Lab``)
with Debian's ``miredo-server`` and a Miredo relay.  Both clients sit in the
same place (behind the lab's MASQUERADE NAT, ``cli``), one after the other,
``--runs`` times each:

* **ours**: ``teredo-proxy client --ping 2001:db8:1::100 --count 1`` with a
  status file; *to_qualified* is from spawning the process to the status
  file saying ``qualified`` (polled every 2 ms), *to_first_reply* from
  spawning to the ping's first ``bytes from`` line.  *core_qualified* is the
  same measured inside the process (log timestamps), without the
  interpreter's start-up.
* **miredo**: ``miredo -f`` with ``RelayType client``; *to_qualified* is from
  spawning to a 2001:0:: address on its ``teredo`` interface (polled),
  *to_first_reply* adds a one-shot ICMPv6 echo started as soon as the address is up
  (its own round-trip includes relay discovery, as ours does).

Output: one JSON object per line per implementation and metric (median and
all runs), then the ratios.  Figures on a shared 2-core machine are noisy:
compare medians from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from proxy.testing.netns import HOST6, SRV1, Lab, lab_unavailable_reason  # noqa: E402


def poll(cond, timeout: float, interval: float = 0.002):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(interval)  # polling a condition with a deadline
    return None


def run_ours(lab: Lab, env: dict[str, str], i: int) -> dict[str, float] | None:
    status = os.path.join(lab.workdir, f"ours{i}.json")
    cmd = ("ip", "netns", "exec", lab.ns("cli"), sys.executable, "-m", "proxy", "client", "--server", SRV1,
           "--status-file", status, "--ping", HOST6, "--count", "1", "--log-format", "json", "-v")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def qualified():
        try:
            with open(status) as f:
                return json.load(f).get("state") == "qualified"
        except (OSError, ValueError):
            return False

    tq = poll(qualified, 30) and time.monotonic() - t0
    tr = None
    for line in p.stdout:
        if " bytes from " in line:
            tr = time.monotonic() - t0
            break
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    core = None
    stamps = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    start = next((s["ts"] for s in stamps if "starting -> qualifying" in s["msg"]), None)
    done = next((s["ts"] for s in stamps if s["msg"].startswith("qualified:")), None)
    if start is not None and done is not None:
        core = done - start
    if not tq:
        return None
    return {"to_qualified_ms": tq * 1000, "to_first_reply_ms": tr * 1000 if tr else None,
            "core_qualified_ms": core * 1000 if core is not None else None}


#: A one-shot ICMPv6 echo (the lab hosts may lack iputils' ping); the kernel
#: fills in the ICMPv6 checksum on raw ICMPv6 sockets.
PING_PY = """
import socket, sys, os, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.settimeout(float(sys.argv[2]))
ident = os.getpid() & 0xFFFF
s.sendto(bytes([128, 0, 0, 0]) + ident.to_bytes(2, "big") + b"\\x00\\x01" + b"bench", (sys.argv[1], 0))
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        data, addr = s.recvfrom(2048)
    except socket.timeout:
        break
    if data[0] == 129 and data[4:6] == ident.to_bytes(2, "big"):
        sys.exit(0)
sys.exit(1)
"""


def ping_once(lab: Lab, host: str, dst: str, timeout: float) -> bool:
    r = lab.run(host, sys.executable, "-c", PING_PY, dst, str(timeout), check=False, timeout=timeout + 10)
    return r.returncode == 0


def run_miredo(lab: Lab, i: int) -> dict[str, float] | None:
    name = f"mclient{i}"
    t0 = time.monotonic()
    lab.start_miredo_client("cli", name=name)
    addr = poll(lambda: lab.teredo_address("cli"), 30, 0.002)
    tq = time.monotonic() - t0
    tr = None
    if addr:
        # the hook may still be adding the route when the address shows: retry
        ok = poll(lambda: ping_once(lab, "cli", HOST6, 2.0), 20, 0.0)
        if ok:
            tr = time.monotonic() - t0
    lab.stop(name)
    poll(lambda: lab.run("cli", "ip", "link", "show", "teredo", check=False).returncode != 0, 10, 0.02)
    if not addr:
        return None
    return {"to_qualified_ms": tq * 1000, "to_first_reply_ms": tr * 1000 if tr else None}


def summarise(impl: str, runs: list[dict[str, float]]) -> dict[str, float]:
    medians = {}
    for metric in sorted({k for r in runs for k in r}):
        values = [r[metric] for r in runs if r.get(metric) is not None]
        if not values:
            continue
        med = statistics.median(values)
        medians[metric] = med
        print(json.dumps({"bench": "client_qualify", "impl": impl, "metric": metric, "median": round(med, 1),
                          "runs": [round(v, 1) for v in values]}), flush=True)
    return medians


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    reason = lab_unavailable_reason(miredo=True)
    if reason:
        print(json.dumps({"bench": "client_qualify", "skipped": reason}))
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    with Lab() as lab:
        lab.start_miredo_server()
        lab.start_miredo_relay()
        ours, miredo = [], []
        for i in range(args.runs):
            # alternate, so drift in machine load hits both alike
            r = run_ours(lab, env, i)
            if r:
                ours.append(r)
            m = run_miredo(lab, i)
            if m:
                miredo.append(m)
        a, b = summarise("ours", ours), summarise("miredo", miredo)
        # Miredo's first reply is timed with a Python helper: report its start-up cost
        starts = []
        for _ in range(3):
            t = time.monotonic()
            lab.run("cli", sys.executable, "-c", "import socket", check=False)
            starts.append((time.monotonic() - t) * 1000)
        helper = statistics.median(starts)
        print(json.dumps({"bench": "client_qualify", "impl": "miredo", "metric": "ping_helper_startup_ms",
                          "median": round(helper, 1), "note": "included in miredo to_first_reply_ms"}), flush=True)
        for metric in ("to_qualified_ms", "to_first_reply_ms"):
            if metric in a and metric in b and b[metric]:
                print(json.dumps({"bench": "client_qualify", "ratio": f"{metric} ours/miredo",
                                  "value": round(a[metric] / b[metric], 2)}), flush=True)
        print(json.dumps({"bench": "client_qualify", "runs_ok": {"ours": len(ours), "miredo": len(miredo)},
                          "runs": args.runs}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
