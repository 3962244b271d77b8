#!/usr/bin/env python3
"""RS/RA round trips per second: our server against miredo-server, same load.

Runs as root.  Builds one network namespace whose loopback interface holds
the server addresses 198.51.100.1 and .2 and a load-generator address
198.51.100.50 (all "global", as Miredo insists), then for each server in
turn: start it, run the load generator for ``--duration`` seconds, stop it.

The load generator keeps ``--window`` Router Solicitations in flight on each
of ``--sockets`` UDP sockets (distinct source ports, so every RS is a
different client) and sends a new RS for every RA that comes back; it
counts RAs per second after a warm-up.  Our server's per-client RS rate
limit is lifted for the run (Miredo has none).

Output: one JSON object per line: each server's figure, then the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from proxy.teredo.messages import router_solicitation  # noqa: E402

SERVER1, SERVER2, LOADGEN = "198.51.100.1", "198.51.100.2", "198.51.100.50"


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def load(duration: float, sockets: int, window: int, warmup: float) -> dict:
    """The load generator (runs inside the namespace, in its own process)."""
    rs = router_solicitation(b"benchRS!")
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOADGEN, 0))
        s.setblocking(False)
        s.connect((SERVER1, 3544))
        socks.append(s)
    for s in socks:
        for _ in range(window):
            s.send(rs)
    received = 0
    start = time.monotonic()
    t_measure = start + warmup
    end = t_measure + duration
    counted = 0
    last_refill = start
    while True:
        now = time.monotonic()
        if now >= end:
            break
        got_any = False
        for s in socks:
            try:
                while True:
                    s.recv(2048)
                    received += 1
                    got_any = True
                    if now >= t_measure:
                        counted += 1
                    try:
                        s.send(rs)
                    except BlockingIOError:
                        pass
            except BlockingIOError:
                pass
            except ConnectionRefusedError:
                pass
        if not got_any and now - last_refill > 0.2:
            # Losses shrink the window: top it up when the line goes quiet.
            for s in socks:
                for _ in range(window):
                    try:
                        s.send(rs)
                    except (BlockingIOError, ConnectionRefusedError):
                        pass
            last_refill = now
    for s in socks:
        s.close()
    return {"ra": counted, "seconds": duration, "ra_per_s": counted / duration}


def wait_udp_bound(ns: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hlun", f"sport = :{port}"],
                             capture_output=True, text=True).stdout
        if out.count("\n") >= 2 or (out.strip() and "198.51.100.2" in out):
            return
        time.sleep(0.05)
    raise RuntimeError("server did not bind")


def run_one(ns: str, name: str, cmd: list[str], args: argparse.Namespace, workdir: str) -> dict:
    log = open(os.path.join(workdir, f"{name}.log"), "wb")
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_udp_bound(ns, 3544)
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--loadgen",
             "--duration", str(args.duration), "--sockets", str(args.sockets), "--window", str(args.window),
             "--warmup", str(args.warmup)],
            check=True, capture_output=True, text=True,
        ).stdout
        result = json.loads(out)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    result.update({"bench": "server_rs_ra", "impl": name})
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--sockets", type=int, default=16)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="alternate the servers this many times; medians")
    p.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.loadgen:
        print(json.dumps(load(args.duration, args.sockets, args.window, args.warmup)))
        return 0
    if os.geteuid() != 0:
        print(json.dumps({"bench": "server_rs_ra", "skipped": "needs root (network namespace)"}))
        return 0
    miredo = shutil.which("miredo-server") or "/usr/sbin/miredo-server"
    ns = "bsrv-" + secrets.token_hex(3)
    workdir = tempfile.mkdtemp(prefix="bench-srv-")
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        for a in (SERVER1, SERVER2, LOADGEN):
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{a}/32", "dev", "lo")
        impls: list[tuple[str, list[str]]] = []
        if os.path.exists(miredo):
            conf = os.path.join(workdir, "miredo-server.conf")
            with open(conf, "w") as f:
                f.write(f"ServerBindAddress {SERVER1}\n")
            impls.append(("miredo-server", [miredo, "-f", "-c", conf, "-p", os.path.join(workdir, "m.pid")]))
        impls.append(("teredo-proxy", [sys.executable, "-m", "proxy", "server", "--address", SERVER1,
                                       "--no-native", "--rs-rate", "1e9", "--rs-burst", "1000000000"]))
        per_impl: dict[str, list[float]] = {name: [] for name, _ in impls}
        for _ in range(args.rounds):
            for name, cmd in impls:  # alternate, so background noise hits both alike
                r = run_one(ns, name, cmd, args, workdir)
                per_impl[name].append(r["ra_per_s"])
                print(json.dumps(r), flush=True)
        medians = {name: statistics.median(v) for name, v in per_impl.items()}
        for name, m in medians.items():
            print(json.dumps({"bench": "server_rs_ra", "impl": name, "median_ra_per_s": round(m),
                              "rounds": per_impl[name]}))
        if len(medians) == 2 and medians["miredo-server"]:
            print(json.dumps({"bench": "server_rs_ra", "ratio_ours_over_miredo":
                              round(medians["teredo-proxy"] / medians["miredo-server"], 3)}))
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
