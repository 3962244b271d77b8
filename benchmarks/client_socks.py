#!/usr/bin/env python3
"""HTTP download throughput through our client's SOCKS5 endpoint vs the Miredo client.

Runs as root in a uniquely named namespace lab (``proxy.testing.netns.Lab``):
one Teredo server and relay (Debian's ``miredo-server`` + ``miredo``, or with
``--infra ours`` our ``teredo-proxy server`` + ``relay``), a Python
``http.server`` on the native host ``host6`` serving ``--mb`` MiB of random
bytes, and two clients on the same path, each behind its own MASQUERADE NAT:

* **ours**: ``teredo-proxy client`` in ``cli``; curl ``--socks5-hostname``
  through its SOCKS5 endpoint (userspace TCP over Teredo);
* **miredo**: ``miredo`` (``RelayType client``) in ``cli2``; curl straight
  to the host (kernel TCP over Miredo's TUN).

Downloads alternate (ours, miredo, ours ...) ``--runs`` times each, every
one checked byte-exact (SHA-256).  Output, one JSON object per line: each
run, the median MB/s per client, the CPU seconds our client process spent
per MB, and the ratio ours/miredo (issue 6: first target 0.3, goal 1.0).
``--infra both`` repeats everything with our server and relay.
``--profile FILE`` runs our client under cProfile (the file is written when
it stops; the top entries go to stderr).  Figures on a shared 2-core
machine are noisy: compare the two clients within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from proxy.testing.netns import HOST6, SRV1, Lab, lab_unavailable_reason  # noqa: E402

SOCKS = "127.0.0.1:1080"


def emit(**fields: object) -> None:
    print(json.dumps({"bench": "client_socks", **fields}), flush=True)


def status_of(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (and of its finished children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def download(lab: Lab, host: str, url: str, want: str, *curl_args: str) -> float:
    """One curl download in ``host``; bytes/s.  Raises if the bytes differ."""
    out = os.path.join(lab.workdir, f"dl-{host}.bin")
    r = lab.run(host, "curl", "-sS", "-m", "300", *curl_args, "-o", out, "-w", "%{http_code} %{speed_download}",
                url, check=False, timeout=330)
    if r.returncode != 0 or not r.stdout.startswith("200 "):
        raise RuntimeError(f"curl in {host} failed ({r.returncode}): {r.stdout} {r.stderr}")
    with open(out, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    os.unlink(out)
    if got != want:
        raise RuntimeError(f"curl in {host}: the bytes differ")
    return float(r.stdout.split()[1])


def warm_up(lab: Lab, host: str, url: str, *curl_args: str) -> bool:
    """A small fetch; False while the path is not there yet (Miredo's hook
    may still be adding its route when the address shows)."""
    r = lab.run(host, "curl", "-sS", "-m", "10", *curl_args, "-r", "0-99999", "-o", "/dev/null", url,
                check=False, timeout=30)
    return r.returncode == 0


def start_infra(lab: Lab, infra: str, env: dict[str, str]) -> None:
    if infra == "miredo":
        lab.start_miredo_server()
        lab.start_miredo_relay()
    else:
        lab.spawn("server", "srv", sys.executable, "-m", "proxy", "server", "--address", SRV1, env=env)
        lab.wait_for(lambda: "Teredo server on" in lab.log("server"), 15, "our server")
        lab.start_relay()


def start_ours(lab: Lab, env: dict[str, str], profile: str | None) -> int:
    """Our client in ``cli``; its PID once SOCKS5 is ready."""
    status = os.path.join(lab.workdir, "ours.json")
    python = [sys.executable] + (["-m", "cProfile", "-o", profile] if profile else [])
    lab.spawn("ours", "cli", *python, "-m", "proxy", "client", "--server", SRV1, "--status-file", status,
              "--socks", SOCKS, env=env)
    st = lab.wait_for(lambda: (s := status_of(status)) and s.get("socks_ready") and s, 30,
                      f"our client ({lab.log('ours')[-500:]})")
    return int(st["pid"])


def bench(infra: str, args: argparse.Namespace, env: dict[str, str]) -> None:
    with Lab() as lab:
        data = os.urandom(args.mb * 1024 * 1024)
        want = hashlib.sha256(data).hexdigest()
        lab.write_file("big.bin", data)
        del data
        lab.http_server("host6", HOST6, 8080, lab.workdir)
        url = f"http://[{HOST6}]:8080/big.bin"
        start_infra(lab, infra, env)
        lab.start_miredo_client("cli2")
        lab.wait_for(lambda: lab.teredo_address("cli2"), 30, "the Miredo client")
        pid = start_ours(lab, env, args.profile)
        if args.loss:
            lab.loss(args.loss, "nat")
            lab.loss(args.loss, "nat2")
        # One warm-up each: relay discovery, the first bubbles, page cache.
        lab.wait_for(lambda: warm_up(lab, "cli", url, "--socks5-hostname", SOCKS), 30, "our client's path")
        lab.wait_for(lambda: warm_up(lab, "cli2", url), 20, "the Miredo client's route")
        ours, miredo, cpu = [], [], []
        for i in range(args.runs):
            c0 = cpu_seconds(pid)
            speed = download(lab, "cli", url, want, "--socks5-hostname", SOCKS)
            cpu.append((cpu_seconds(pid) - c0) / args.mb)
            ours.append(speed / 1e6)
            emit(infra=infra, impl="ours", run=i, mb_s=round(ours[-1], 2), cpu_s_per_mib=round(cpu[-1], 4))
            miredo.append(download(lab, "cli2", url, want) / 1e6)
            emit(infra=infra, impl="miredo", run=i, mb_s=round(miredo[-1], 2))
        o, m = statistics.median(ours), statistics.median(miredo)
        common = {"infra": infra, "mib": args.mb, "runs": args.runs, "loss_pct": args.loss}
        emit(**common, impl="ours", metric="mb_s", median=round(o, 2), all=[round(x, 2) for x in ours],
             cpu_s_per_mib=round(statistics.median(cpu), 4))
        emit(**common, impl="miredo", metric="mb_s", median=round(m, 2), all=[round(x, 2) for x in miredo])
        emit(**common, ratio="ours/miredo", value=round(o / m, 3), target=0.3, goal=1.0)
        if args.profile:
            lab.stop("ours", timeout=20)
            import pstats

            pstats.Stats(args.profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=16, help="MiB per download (default 16)")
    ap.add_argument("--infra", choices=("miredo", "ours", "both"), default="miredo",
                    help="whose Teredo server and relay (default Miredo's)")
    ap.add_argument("--loss", type=float, default=0.0, help="percent loss on both NATs (default 0)")
    ap.add_argument("--profile", metavar="FILE", help="run our client under cProfile, write FILE")
    args = ap.parse_args()
    reason = lab_unavailable_reason(miredo=True)
    if reason:
        emit(skipped=reason)
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # ``python -m proxy`` in the lab puts the working directory first on
    # sys.path: make it this checkout, whatever directory we were run from.
    os.chdir(ROOT)
    for infra in (("miredo", "ours") if args.infra == "both" else (args.infra,)):
        bench(infra, args, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
