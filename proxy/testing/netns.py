"""A closed Teredo test network in Linux network namespaces (root only).

The same topology as ``teredo-lab`` (see ``docs/testing.md``), but every
namespace and host-side interface name carries a random tag, so several
labs (tests, benchmarks, people) can run at once, and :meth:`Lab.down`
removes all of it -- namespaces and every process started through
:meth:`Lab.spawn` -- however the caller ends.

Topology (documentation addresses, reachable only inside)::

    srv    Teredo server     198.51.100.1 + .2          2001:db8:1::1
    relay  Teredo relay      198.51.100.10              2001:db8:1::10
    host6  native IPv6 host                             2001:db8:1::100
    nat    NAT  wan 198.51.100.20  lan 192.0.2.1/25   -> cli  192.0.2.2
    nat2   NAT  wan 198.51.100.21  lan 192.0.2.129/25 -> cli2 192.0.2.130
    pub    public IPv4 host  198.51.100.30

All meet on one bridge (IPv4 198.51.100.0/24, IPv6 2001:db8:1::/64);
host6 and srv route the Teredo prefix 2001::/32 via the relay.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from proxy.testing.waiting import wait_until

__all__ = ["Lab", "LabError", "lab_unavailable_reason", "HOSTS"]

SRV1, SRV2 = "198.51.100.1", "198.51.100.2"
RELAY4, PUB4 = "198.51.100.10", "198.51.100.30"
SRV6, RELAY6, HOST6 = "2001:db8:1::1", "2001:db8:1::10", "2001:db8:1::100"
NAT_WAN = {"nat": "198.51.100.20", "nat2": "198.51.100.21"}
NAT_LAN = {"nat": ("192.0.2.1/25", "192.0.2.2/25"), "nat2": ("192.0.2.129/25", "192.0.2.130/25")}
NAT_CLIENT = {"nat": "cli", "nat2": "cli2"}
HOSTS = ("wan", "srv", "relay", "host6", "nat", "cli", "nat2", "cli2", "pub")


class LabError(RuntimeError):
    """A lab command failed; the message carries the command and its stderr."""


def lab_unavailable_reason(*, miredo: bool = False) -> str | None:
    """Why a lab cannot run here (for ``pytest.skip``), or None if it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install -y iproute2 iptables)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    if miredo:
        for tool in ("miredo", "miredo-server"):
            if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
                return f"needs the Debian package providing {tool} (apt-get install -y miredo miredo-server)"
    return None


def _miredo_bin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class Lab:
    """The namespaces of one test network; use as a context manager."""

    tag: str = field(default_factory=lambda: "t" + secrets.token_hex(3))
    "Prefix of every name this lab creates (short: interface names are <= 15 chars)."
    workdir: str = ""
    "Directory for configs and logs (a fresh temporary one by default)."
    keep_workdir: bool = False
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _up: bool = False
    hosts: ClassVar[tuple[str, ...]] = HOSTS
    "The namespaces :meth:`_build` makes and :meth:`down` removes (a subclass may build others)."

    # -- names and commands ------------------------------------------------
    def ns(self, host: str) -> str:
        """Full namespace name of ``host`` (one of HOSTS)."""
        return f"{self.tag}-{host}"

    def _run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise LabError(f"{' '.join(cmd)} -> {p.returncode}: {p.stderr.strip()}")
        return p

    def run(self, host: str, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command inside ``host``'s namespace and wait for it."""
        return self._run("ip", "netns", "exec", self.ns(host), *cmd, check=check, timeout=timeout)

    def spawn(self, name: str, host: str, *cmd: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start a long-running process in ``host``, leading its own process group.

        Output goes to ``<workdir>/<name>.log`` (see :meth:`log`).  The
        process group is killed by :meth:`stop` or :meth:`down`.
        """
        if name in self.processes:
            raise ValueError(f"a process named {name!r} is already running")
        out = open(self.log_path(name), "wb")
        p = subprocess.Popen(
            ("ip", "netns", "exec", self.ns(host), *cmd),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
        out.close()
        self.processes[name] = p
        return p

    def log_path(self, name: str) -> str:
        return os.path.join(self.workdir, f"{name}.log")

    def log(self, name: str) -> str:
        try:
            with open(self.log_path(name), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, name: str, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, then SIGKILL after ``timeout``."""
        p = self.processes.pop(name, None)
        if p is None:
            return None
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                return p.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return p.poll()

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> "Lab":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> None:
        reason = lab_unavailable_reason()
        if reason:
            raise LabError(reason)
        if not self.workdir:
            self.workdir = tempfile.mkdtemp(prefix=f"teredo-{self.tag}-")
        self._up = True
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def _build(self) -> None:
        for h in self.hosts:
            self._run("ip", "netns", "add", self.ns(h))
            self.run(h, "ip", "link", "set", "lo", "up")
            self.run(h, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        self.run("wan", "ip", "link", "add", "br0", "type", "bridge")
        self.run("wan", "ip", "link", "set", "br0", "up")
        for h in ("srv", "relay", "host6", "pub", "nat", "nat2"):
            self._wan_link(h)
        self.run("srv", "ip", "addr", "add", f"{SRV1}/24", "dev", "wan")
        self.run("srv", "ip", "addr", "add", f"{SRV2}/24", "dev", "wan")
        self.run("srv", "ip", "-6", "addr", "add", f"{SRV6}/64", "dev", "wan", "nodad")
        self.run("srv", "ip", "-6", "route", "add", "2001::/32", "via", RELAY6)
        self.run("relay", "ip", "addr", "add", f"{RELAY4}/24", "dev", "wan")
        self.run("relay", "ip", "-6", "addr", "add", f"{RELAY6}/64", "dev", "wan", "nodad")
        self.run("relay", "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        self.run("host6", "ip", "-6", "addr", "add", f"{HOST6}/64", "dev", "wan", "nodad")
        self.run("host6", "ip", "-6", "route", "add", "2001::/32", "via", RELAY6)
        self.run("pub", "ip", "addr", "add", f"{PUB4}/24", "dev", "wan")
        for nat, cli in NAT_CLIENT.items():
            router, client = NAT_LAN[nat]
            self.run(nat, "ip", "addr", "add", f"{NAT_WAN[nat]}/24", "dev", "wan")
            host_side = f"{self.tag}l{nat[-1]}"
            self._run("ip", "link", "add", host_side, "type", "veth", "peer", "name", "lan", "netns", self.ns(cli))
            self._run("ip", "link", "set", host_side, "netns", self.ns(nat))
            self.run(nat, "ip", "link", "set", host_side, "name", "lan")
            self.run(nat, "ip", "link", "set", "lan", "up")
            self.run(nat, "ip", "addr", "add", router, "dev", "lan")
            self.run(cli, "ip", "link", "set", "lan", "up")
            self.run(cli, "ip", "addr", "add", client, "dev", "lan")
            self.run(cli, "ip", "route", "add", "default", "via", router.split("/")[0])
            self.run(nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self.nat_mode("restricted", nat)

    def _wan_link(self, host: str) -> None:
        peer = f"{self.tag}b{HOSTS.index(host)}"
        self._run("ip", "link", "add", peer, "type", "veth", "peer", "name", "wan", "netns", self.ns(host))
        self._run("ip", "link", "set", peer, "netns", self.ns("wan"))
        self.run("wan", "ip", "link", "set", peer, "master", "br0", "up")
        self.run(host, "ip", "link", "set", "wan", "up")

    def down(self) -> None:
        """Stop every process, delete every namespace; never raises."""
        for name in list(self.processes):
            try:
                self.stop(name, timeout=3.0)
            except Exception:  # pragma: no cover - best effort cleanup
                pass
        for h in self.hosts:
            ns = self.ns(h)
            # Kill anything still living in the namespace (daemons that forked).
            pids = self._run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            self._run("ip", "netns", "del", ns, check=False)
        self._up = False
        if self.workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- NAT behaviour ---------------------------------------------------------
    def nat_mode(self, mode: str, nat: str = "nat") -> None:
        """``restricted`` (MASQUERADE: endpoint-independent mapping,
        port-restricted filtering), ``symmetric`` (``--random-fully``) or
        ``cone`` (udp/3545 of the client forwarded to the same public port)."""
        cli_ip = NAT_LAN[nat][1].split("/")[0]
        self.run(nat, "iptables", "-t", "nat", "-F")
        if mode == "restricted":
            self.run(nat, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
        elif mode == "symmetric":
            self.run(nat, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE", "--random-fully")
        elif mode == "cone":
            self.run(nat, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-p", "udp", "-s", cli_ip,
                     "--sport", "3545", "-j", "SNAT", "--to-source", f"{NAT_WAN[nat]}:3545")
            self.run(nat, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "udp", "--dport", "3545",
                     "-j", "DNAT", "--to-destination", f"{cli_ip}:3545")
            self.run(nat, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
        else:
            raise ValueError(f"unknown NAT mode {mode!r}")
        self.run(nat, "conntrack", "-F", check=False) if shutil.which("conntrack") else None

    def loss(self, percent: float, nat: str = "nat") -> None:
        """Drop ``percent`` % of the packets forwarded by ``nat`` (iptables statistic)."""
        self.run(nat, "iptables", "-F", "FORWARD")
        if percent:
            self.run(nat, "iptables", "-A", "FORWARD", "-m", "statistic", "--mode", "random",
                     "--probability", f"{percent / 100:.4f}", "-j", "DROP")

    # -- services --------------------------------------------------------------
    def http_server(self, host: str, address: str, port: int, directory: str, name: str = "http") -> None:
        """A python http.server bound to ``address`` inside ``host``."""
        import sys

        self.spawn(name, host, sys.executable, "-m", "http.server", str(port), "--bind", address,
                   "--directory", directory)
        self.wait_for(lambda: self._listening(host, port), 10, f"http server on [{address}]:{port}")

    def _listening(self, host: str, port: int) -> bool:
        out = self.run(host, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
        return bool(out.strip())

    def write_file(self, name: str, data: bytes) -> str:
        path = os.path.join(self.workdir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def start_miredo_server(self, name: str = "miredo-server") -> None:
        conf = self.write_file(f"{name}.conf", f"ServerBindAddress {SRV1}\n".encode())
        self.spawn(name, "srv", _miredo_bin("miredo-server"), "-f", "-c", conf,
                   "-p", os.path.join(self.workdir, f"{name}.pid"))

    def start_miredo_relay(self, name: str = "miredo-relay") -> None:
        conf = self.write_file(f"{name}.conf", b"RelayType cone\nInterfaceName teredo\nBindPort 3544\n")
        self.spawn(name, "relay", _miredo_bin("miredo"), "-f", "-c", conf,
                   "-p", os.path.join(self.workdir, f"{name}.pid"))
        self.wait_for(lambda: self.run("relay", "ip", "link", "show", "teredo", check=False).returncode == 0,
                      10, "Miredo relay's teredo interface")
        self.run("relay", "ip", "-6", "route", "replace", "2001::/32", "dev", "teredo")

    def start_relay(self, *args: str, name: str = "relay", interface: str = "teredo", timeout: float = 15.0) -> None:
        """Start *our* relay (``python -m proxy relay --native tun``) in the relay namespace.

        Extra ``args`` go to the command line; the package is imported from
        the checkout this module lives in.  Returns once the TUN interface
        exists and routes the Teredo prefix.
        """
        import sys

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.spawn(name, "relay", sys.executable, "-m", "proxy", "relay", "--native", "tun",
                   "--interface", interface, *args, env=env)

        def up() -> bool:
            if self.processes[name].poll() is not None:
                raise LabError(f"our relay exited with {self.processes[name].returncode}: {self.log(name)[-2000:]}")
            out = self.run("relay", "ip", "-6", "route", "show", "2001::/32", check=False).stdout
            return f"dev {interface}" in out

        self.wait_for(up, timeout, "our relay's TUN interface and route")

    def start_miredo_client(self, host: str = "cli2", server: str = SRV1, name: str = "miredo-client",
                            bind_port: int | None = None) -> None:
        text = f"RelayType client\nServerAddress {server}\nInterfaceName teredo\n"
        if bind_port is not None:
            text += f"BindPort {bind_port}\n"
        conf = self.write_file(f"{name}.conf", text.encode())
        self.spawn(name, host, _miredo_bin("miredo"), "-f", "-c", conf,
                   "-p", os.path.join(self.workdir, f"{name}.pid"))

    def teredo_address(self, host: str, ifname: str = "teredo") -> str | None:
        """The global 2001:0::/32 address on ``ifname`` in ``host``, if any."""
        out = self.run(host, "ip", "-6", "-o", "addr", "show", "dev", ifname, check=False).stdout
        for line in out.splitlines():
            parts = line.split()
            if "inet6" in parts:
                addr = parts[parts.index("inet6") + 1].split("/")[0]
                if addr.startswith(("2001:0:", "2001::")):
                    return addr
        return None

    # -- waiting -----------------------------------------------------------------
    @staticmethod
    def wait_for(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
        """Poll ``cond`` until it returns a true value; LabError after ``timeout``."""
        try:
            return wait_until(cond, timeout, what, interval)
        except TimeoutError as e:
            raise LabError(str(e)) from None
