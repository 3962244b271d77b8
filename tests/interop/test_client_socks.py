"""The whole unprivileged client in the lab: applications -> SOCKS5 -> our
userspace IPv6 stack -> Teredo -> a relay -> a native IPv6 host (issue 6).

Every test runs twice, once with Debian's ``miredo-server`` and ``miredo``
relay and once with our own server and relay (``infra``), in a freshly
built, uniquely named lab (``proxy.testing.netns.Lab``).  Applications run
inside the client's namespace (``lab_apps.py``, curl): curl
``--socks5-hostname``, python-socks, PySocks (CONNECT and UDP ASSOCIATE to
a UDP echo service on the native host) and httpx.

REP codes come from real network conditions on the Teredo path; the lab
gets extra routes for them (:func:`add_error_routes`):

=====  =================================================================
0x02   host6's firewall: ``REJECT --reject-with icmp6-adm-prohibited``
0x03   the relay has no route to the destination (its kernel answers
       ICMPv6 "no route", code 0)
0x04   the relay's neighbour discovery for the destination fails
       (ICMPv6 "address unreachable", code 3)
0x05   a closed port on host6 (TCP RST); an ``icmp6-port-unreachable``
       reject
0x06   a routing loop between the relay and host6: the SYN's hop limit
       runs out and a router answers ICMPv6 Time Exceeded
0x07   an undefined command (0x04) -- CONNECT, BIND and UDP are served
0x08   an undefined address type (0x02)
=====  =================================================================

A native destination must first pass the client's direct connectivity
test (an echo request through the Teredo server, RFC 4380 §5.2.9) before
anything is sent to it through a relay, so the broken destinations live on
``pub``, which answers the server's echo requests, while the relay's route
to them is what is broken.

Peer to peer: our client fetches over TCP from an HTTP server bound to a
Miredo client's Teredo address.  Our client sits behind the lab's *cone*
NAT (a fixed UDP port forward).  Two plain Linux MASQUERADE NATs cannot
meet over Teredo bubbles: the first unsolicited direct bubble that reaches
the other NAT is filtered, but it leaves an UNREPLIED conntrack entry
behind, so the peer's own later packet to us is source-NATed to a random
port (the tuple is taken) and no longer matches its Teredo address; two
Miredo clients fail exactly the same way in this lab (verified with
``conntrack -L``).  See docs/client.md, "Who reaches whom".
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest

from proxy.testing.netns import Lab

pytestmark = [pytest.mark.interop]

SERVER = "198.51.100.1"
HOST6 = "2001:db8:1::100"
RELAY6 = "2001:db8:1::10"
PUB6 = "2001:db8:1::30"
SOCKS = "127.0.0.1:1080"
APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab_apps.py")
BIG = 16 * 1024 * 1024
INFRA = ("miredo", "ours")

#: Destinations that exist (on pub: the server's echo test succeeds) but
#: that the relay cannot reach, each for its own reason.
NO_ROUTE = "2001:db8:98::1"
NO_NEIGHBOUR = "2001:db8:97::1"
LOOP = "2001:db8:99::1"
#: host6 ports with an ip6tables REJECT rule, and one closed port.
PORT_PROHIBITED, PORT_UNREACHABLE, PORT_CLOSED = 8082, 8083, 9


# --- the lab ------------------------------------------------------------------------------------


def status_of(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def start_infra(lab: Lab, infra: str, tp: list[str]) -> None:
    """Teredo server and relay: Miredo's or ours."""
    if infra == "miredo":
        lab.start_miredo_server()
        lab.start_miredo_relay()
    else:
        lab.spawn("server", "srv", *tp, "server", "--address", SERVER, env=lab.env)
        lab.wait_for(lambda: "Teredo server on" in lab.log("server"), 15, "our server to start")
        lab.start_relay()


def start_client(lab: Lab, tp: list[str], *extra: str, name: str = "client") -> tuple[str, dict]:
    """Our client in ``cli``; returns (status path, status once qualified)."""
    path = os.path.join(lab.workdir, f"{name}.json")
    lab.spawn(name, "cli", *tp, "client", "--server", SERVER, "--status-file", path, "--socks", SOCKS, "-v",
              *extra, env=lab.env)

    def qualified() -> dict | None:
        if lab.processes[name].poll() is not None:
            pytest.fail(f"our client exited: {lab.log(name)[-2000:]}")
        st = status_of(path)
        return st if st and st["state"] == "qualified" and st.get("socks_ready") else None

    return path, lab.wait_for(qualified, 30, "our client to qualify")


def app(lab: Lab, *args: str, host: str = "cli", timeout: float = 120) -> dict:
    """Run a lab_apps.py client in ``host``; its JSON answer."""
    r = lab.run(host, sys.executable, APPS, *args, check=False, timeout=timeout)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.returncode == 0 and lines, f"{args[0]} failed ({r.returncode}): {r.stdout}{r.stderr[-3000:]}"
    return json.loads(lines[-1])


def curl(lab: Lab, url: str, *extra: str, out: str = "dl.bin") -> tuple[str, float]:
    """curl through our SOCKS5 endpoint; (sha256 of the body, bytes/s)."""
    path = os.path.join(lab.workdir, out)
    r = lab.run("cli", "curl", "-sS", "-m", "120", "--socks5-hostname", SOCKS, *extra, "-o", path,
                "-w", "%{http_code} %{speed_download}", url, check=False, timeout=150)
    assert r.returncode == 0, f"curl failed ({r.returncode}): {r.stderr}"
    code, speed = r.stdout.split()
    assert code == "200", r.stdout
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    os.unlink(path)
    return digest, float(speed)


def add_error_routes(lab: Lab) -> None:
    """Destinations that answer the server's echo test but break on the relay's path."""
    lab.run("pub", "ip", "-6", "addr", "add", f"{PUB6}/64", "dev", "wan", "nodad")
    lab.run("pub", "ip", "-6", "route", "add", "2001::/32", "via", RELAY6)
    for dst in (NO_ROUTE, NO_NEIGHBOUR, LOOP):
        net = dst.rsplit(":", 2)[0] + "::/64"
        lab.run("pub", "ip", "-6", "addr", "add", f"{dst}/128", "dev", "lo")
        lab.run("srv", "ip", "-6", "route", "add", net, "via", PUB6)
    # The relay: no route to NO_ROUTE's network; NO_NEIGHBOUR's is "on link"
    # (nobody answers neighbour solicitations); LOOP's goes to host6, which
    # sends it back.
    lab.run("relay", "ip", "-6", "route", "add", NO_NEIGHBOUR.rsplit(":", 2)[0] + "::/64", "dev", "wan")
    lab.run("relay", "ip", "-6", "route", "add", LOOP.rsplit(":", 2)[0] + "::/64", "via", HOST6)
    lab.run("host6", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    lab.run("host6", "ip", "-6", "route", "add", LOOP.rsplit(":", 2)[0] + "::/64", "via", RELAY6)
    for port, reject in ((PORT_PROHIBITED, "icmp6-adm-prohibited"), (PORT_UNREACHABLE, "icmp6-port-unreachable")):
        lab.run("host6", "ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "REJECT",
                "--reject-with", reject)


class Net:
    """One lab with a Teredo server, a relay, services on host6 and our client."""

    def __init__(self, lab: Lab, infra: str, status_path: str, status: dict, sha: str) -> None:
        self.lab, self.infra, self.status_path, self.sha = lab, infra, status_path, sha
        self.address: str = status["address"]
        self.url = f"http://[{HOST6}]:8080/big16.bin"

    def status(self) -> dict:
        st = status_of(self.status_path)
        assert st is not None
        return st


def build(lab: Lab, infra: str, tp: list[str], *client_args: str) -> Net:
    data = os.urandom(BIG)
    lab.write_file("big16.bin", data)
    lab.http_server("host6", HOST6, 8080, lab.workdir)
    lab.spawn("udp-echo", "host6", sys.executable, APPS, "udp-echo", HOST6, "7")
    lab.spawn("tcp-echo", "host6", sys.executable, APPS, "tcp-echo", HOST6, "7")
    lab.wait_for(lambda: "ready" in lab.log("udp-echo") and "ready" in lab.log("tcp-echo"), 10, "echo services")
    start_infra(lab, infra, tp)
    path, st = start_client(lab, tp, *client_args)
    return Net(lab, infra, path, st, hashlib.sha256(data).hexdigest())


def new_lab() -> Lab:
    from proxy.testing.netns import lab_unavailable_reason

    reason = lab_unavailable_reason(miredo=True)
    if reason:
        pytest.skip(f"interop lab unavailable: {reason}")
    lab = Lab()
    lab.up()
    lab.env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return lab


@pytest.fixture(scope="module", params=INFRA)
def net(request):
    """A shared lab per infrastructure for the tests that leave it as they found it."""
    lab = new_lab()
    try:
        tp = [sys.executable, "-m", "proxy"]
        add_error_routes(lab)
        yield build(lab, request.param, tp)
    finally:
        lab.down()


@pytest.fixture(params=INFRA)
def infra(request) -> str:
    return request.param


@pytest.fixture
def own_lab():
    """A lab of the test's own (for tests that change the NAT or stop the client)."""
    lab = new_lab()
    try:
        yield lab
    finally:
        lab.down()


# --- applications through the SOCKS5 endpoint ---------------------------------------------------


def test_curl_downloads_16_mib_byte_exact(net):
    digest, speed = curl(net.lab, net.url)
    assert digest == net.sha
    print(f"{net.infra}: 16 MiB through our client at {speed / 1e6:.1f} MB/s")


def test_curl_downloads_16_mib_byte_exact_with_2_percent_loss_on_the_nat(net):
    lab = net.lab
    lab.loss(2)
    try:
        digest, speed = curl(lab, net.url)
        dropped = lab.run("nat", "iptables", "-L", "FORWARD", "-v", "-x", "-n").stdout
    finally:
        lab.loss(0)
    assert digest == net.sha
    # The rule really dropped packets (a loss test that lost nothing proves nothing).
    drops = [int(line.split()[0]) for line in dropped.splitlines() if "statistic" in line]
    assert drops and drops[0] > 100, dropped
    print(f"{net.infra}: 16 MiB at 2 % loss ({drops[0]} packets dropped) at {speed / 1e6:.1f} MB/s")


@pytest.mark.parametrize("client", ["python-socks", "pysocks", "httpx"])
def test_python_clients_download_byte_exact(net, client):
    got = app(net.lab, client, SOCKS, f"http://[{HOST6}]:8080/big16.bin")
    assert got == {"bytes": BIG, "sha256": net.sha}


def test_pysocks_udp_associate_to_an_echo_service_on_the_native_host(net):
    got = app(net.lab, "pysocks-udp", SOCKS, HOST6, "7", "--count", "20", "--size", "1024")
    assert got["answered"] == 20
    assert got["source"] == [HOST6, 7]


# --- REP codes from real conditions ----------------------------------------------------------------


@pytest.mark.parametrize(("target", "port", "rep"), [
    pytest.param(HOST6, PORT_PROHIBITED, 0x02, id="0x02-firewall-prohibits"),
    pytest.param(NO_ROUTE, 80, 0x03, id="0x03-relay-has-no-route"),
    pytest.param(NO_NEIGHBOUR, 80, 0x04, id="0x04-neighbour-unreachable"),
    pytest.param(HOST6, PORT_CLOSED, 0x05, id="0x05-rst-from-closed-port"),
    pytest.param(HOST6, PORT_UNREACHABLE, 0x05, id="0x05-port-unreachable"),
    pytest.param(LOOP, 80, 0x06, id="0x06-routing-loop-hop-limit"),
])
def test_rep_code_from_a_real_condition(net, target, port, rep):
    got = app(net.lab, "rep", SOCKS, target, str(port))
    assert got["rep"] == rep, f"{got}\n{net.lab.log('client')[-3000:]}"
    # An ICMPv6 answer ends the attempt at once, long before the 30 s connect timeout.
    assert got["seconds"] < 15


def test_python_socks_sees_the_refusal(net):
    got = app(net.lab, "python-socks-error", SOCKS, HOST6, str(PORT_CLOSED))
    assert got["error_code"] == 0x05


@pytest.mark.parametrize(("request_hex", "rep"), [
    pytest.param("0504000420010db8000100000000000000000100" "0050", 0x07, id="0x07-command-4"),
    pytest.param("05010002" "c6336401" "0050", 0x08, id="0x08-address-type-2"),
])
def test_rep_code_for_a_malformed_request(net, request_hex, rep):
    assert app(net.lab, "rep", SOCKS, "--raw", request_hex)["rep"] == rep


# --- observability -----------------------------------------------------------------------------------


def test_start_qualify_ready_are_logged_in_order_and_in_the_status_file(net):
    st = net.status()
    assert st["role"] == "client" and st["state"] == "qualified" and st["socks_ready"] is True
    assert st["socks"] == SOCKS and st["server"] == SERVER and st["mtu"] == 1280
    assert st["nat"] == "restricted" and st["address"] == net.address
    assert isinstance(st["since"], float) and isinstance(st["pid"], int)
    log = net.lab.log("client")
    steps = ["SOCKS5 endpoint on 127.0.0.1:1080", "state starting -> qualifying", "state qualifying -> qualified",
             f"Teredo address {net.address}", f"SOCKS5 ready: IPv6 from {net.address}"]
    where = [log.find(step) for step in steps]
    assert -1 not in where and where == sorted(where), log


def test_traffic_counters_in_the_status_file_follow_the_traffic(net):
    def traffic() -> dict | None:
        return net.status().get("traffic")

    before = net.lab.wait_for(traffic, 15, "the first counters in the status file")
    curl(net.lab, f"http://[{HOST6}]:8080/big16.bin", "-r", "0-999999")
    after = net.lab.wait_for(
        lambda: (t := traffic()) and t["udp_bytes_in"] >= before["udp_bytes_in"] + 1_000_000 and t, 15,
        "the status file to count the download")
    assert after["ipv6_packets_in"] > before["ipv6_packets_in"] + 800
    assert after["udp_datagrams_out"] > before["udp_datagrams_out"]
    st = net.status()
    assert st["socks_stats"]["rep-0x00"] >= 1 and "stats" in st and "drops" in st


# --- peer to peer -----------------------------------------------------------------------------------------


def test_peer_to_peer_tcp_to_an_http_server_on_a_miredo_clients_teredo_address(own_lab, infra, tp):
    """Our client (cone NAT: the lab forwards udp/3545) fetches over TCP from
    a Miredo client (behind MASQUERADE) with the server, Miredo's or ours.

    Both behind plain MASQUERADE does not work, for Miredo clients either:
    see the module docstring.
    """
    lab = own_lab
    lab.env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    start_infra(lab, infra, tp)
    lab.nat_mode("cone")
    lab.start_miredo_client("cli2")
    peer = lab.wait_for(lambda: lab.teredo_address("cli2"), 30, "the Miredo client's Teredo address")
    data = os.urandom(4 * 1024 * 1024 + 4321)
    lab.write_file("p2p.bin", data)
    lab.http_server("cli2", peer, 8081, lab.workdir, name="peer-http")
    _, st = start_client(lab, tp, "--port", "3545")
    assert st["nat"] == "cone"
    digest, speed = curl(lab, f"http://[{peer}]:8081/p2p.bin")
    assert digest == hashlib.sha256(data).hexdigest()
    print(f"{infra}: peer to peer, 4 MiB from the Miredo client at {speed / 1e6:.1f} MB/s")


# --- lifecycle: requalification and SIGTERM ----------------------------------------------------------------


class InteractiveApp:
    """A lab_apps.py client in a namespace, talked to through its stdin/stdout."""

    def __init__(self, lab: Lab, host: str, *args: str) -> None:
        import queue
        import threading

        self.proc = subprocess.Popen(
            ("ip", "netns", "exec", lab.ns(host), sys.executable, APPS, *args),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def answer(self, timeout: float = 60) -> dict:
        """The next JSON line (skipping anything else); fails on EOF or timeout."""
        import queue
        import time

        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no answer within {timeout:g} s: {''.join(seen)}")
            if not line:
                pytest.fail(f"the app ended: {''.join(seen)}")
            if line.startswith("{"):
                return json.loads(line)
            seen.append(line)

    def send(self, text: str) -> None:
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


def block_server(lab: Lab, on: bool) -> None:
    """Drop every packet between the client's NAT and the Teredo server (both addresses)."""
    op = "-I" if on else "-D"
    for direction in ("-d", "-s"):
        lab.run("nat", "iptables", op, "FORWARD", "-p", "udp", direction, "198.51.100.0/31", "-j", "DROP")


def test_losing_and_regaining_the_server_with_the_same_mapping_keeps_connections(own_lab, tp):
    """The server goes silent until the client loses its address; when it
    answers again the NAT still has our mapping, so the address is the same:
    an idle connection and a download in progress both carry on."""
    lab = own_lab
    lab.env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    net = build(lab, "miredo", tp, "--refresh", "5")
    hold = InteractiveApp(lab, "cli", "hold", SOCKS, HOST6, "7", "--phases", "2")
    download = None
    try:
        assert hold.answer() == {"phase": 1, "ok": True}
        out = os.path.join(lab.workdir, "slow.bin")
        # The reader holds the download to 200 kB/s until told to finish, so
        # it is in progress through the whole outage however long that takes.
        download = InteractiveApp(lab, "cli", "paced-get", SOCKS, net.url, "--out", out, "--rate", "200000")
        assert download.answer() == {"started": True}
        lab.wait_for(lambda: os.path.getsize(out) > 500_000, 30, "the download to flow")
        block_server(lab, True)
        st = lab.wait_for(lambda: (s := net.status())["state"] != "qualified" and s, 60,
                          "the client to lose the server")
        assert st["socks_ready"] is False and download.proc.poll() is None
        during = os.path.getsize(out)
        block_server(lab, False)
        st = lab.wait_for(lambda: (s := net.status())["state"] == "qualified" and s["socks_ready"] and s, 60,
                          "the client to qualify again")
        assert st["address"] == net.address
        hold.send("go\n")
        assert hold.answer() == {"phase": 2, "ok": True}
        assert os.path.getsize(out) > during  # it kept flowing
        download.send("finish\n")
        assert download.answer(timeout=120) == {"bytes": BIG, "sha256": net.sha}
        log = lab.log("client")
        assert "lost Teredo connectivity" in log and log.count(f"SOCKS5 ready: IPv6 from {net.address}") == 2
        assert "connections on the old one end" not in log
    finally:
        hold.close()
        if download is not None:
            download.close()


def test_sigterm_during_transfers_ends_connections_with_fin_and_exits_0(own_lab, tp):
    """SIGTERM: SOCKS5 sessions end, their IPv6 connections close with FIN
    (an idle one and an upload in flight: the sink on host6 reads to a clean
    EOF), and the client exits 0.

    A *download* in flight is the exception, and the same as with kernel
    sockets: data the application will never read is still arriving, so
    closing resets the connection (RFC 2525 §2.17, RFC 1122 §4.2.2.13) and
    the server learns that the rest was not delivered.
    """
    lab = own_lab
    lab.env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    net = build(lab, "miredo", tp)
    lab.spawn("sink", "host6", sys.executable, APPS, "sink", HOST6, "9000")
    lab.wait_for(lambda: "ready" in lab.log("sink"), 10, "the sink")
    lab.spawn("idle", "cli", sys.executable, APPS, "upload", SOCKS, HOST6, "9000", "--idle")
    lab.wait_for(lambda: "connected" in lab.log("idle"), 30, "the idle connection")
    lab.spawn("upload", "cli", sys.executable, APPS, "upload", SOCKS, HOST6, "9000")
    lab.wait_for(lambda: '"receiving"' in lab.log("sink"), 30, "the upload to flow")
    out = os.path.join(lab.workdir, "partial.bin")
    lab.spawn("download", "cli", "curl", "-sS", "--socks5-hostname", SOCKS, "--limit-rate", "1M", "-o", out, net.url)
    lab.wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 100_000, 30, "the download to flow")

    assert lab.stop("client", timeout=10) == 0, lab.log("client")
    ends = lab.wait_for(lambda: (e := [json.loads(x) for x in lab.log("sink").splitlines() if '"end"' in x])
                        and len(e) == 2 and e, 10, "the sink to see both connections end")
    assert [e["end"] for e in ends] == ["eof", "eof"], ends
    assert sorted(e["bytes"] > 0 for e in ends) == [False, True]  # the idle one and the upload
    assert '"end": "eof"' in lab.log("idle")
    # ECONNRESET, or EPIPE when our FIN came first (Linux reports a reset in
    # CLOSE-WAIT so); a FIN alone never fails a send.
    lab.wait_for(lambda: "ConnectionResetError" in lab.log("http") or "BrokenPipeError" in lab.log("http"), 10,
                 "the download's reset")
    assert lab.wait_for(lambda: lab.processes["download"].poll() is not None, 10, "curl to end") is True
    assert lab.processes["download"].returncode != 0  # curl knows the transfer was cut
