"""Our userspace stack on a TUN device, the Linux kernel as its peer.

Used by ``tests/interop/test_ipstack_tun.py`` and ``benchmarks/ipstack_tun.py``.
:class:`TunLab` creates a uniquely named network namespace, a TUN device
whose file descriptor our process keeps, moves the device into the
namespace and configures it there (``KERNEL_ADDR``/64, MTU, up).  The kernel
inside the namespace routes the /64 onto the device, so its sockets reach
our stack at ``STACK_ADDR``; optional ``ip6tables`` ``statistic`` rules in the
namespace drop packets at random in both directions (GSO is capped at one
segment so that every wire packet meets the rules).  The kernel side runs
:mod:`proxy.testing.kernel_peer` with ``ip netns exec``.

Everything is removed however the lab ends: peer processes killed, the
namespace deleted (which deletes the device), the fd closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import random
import shutil
import subprocess
from typing import Any

from proxy.ipstack.interface import Interface
from proxy.ipstack.stack_asyncio import Stack, parse_address
from proxy.ipstack.tcp import TcpConfig
from proxy.ipstack.tun_asyncio import TunLink

__all__ = ["TunLab", "LabUnavailable", "lab_unavailable_reason", "PeerProcess"]

PEER_SCRIPT = str(pathlib.Path(__file__).with_name("kernel_peer.py"))


class LabUnavailable(RuntimeError):
    """The machine cannot run the lab (not root, no TUN, no ip)."""


def lab_unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (TUN device and network namespaces)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    for tool in ("ip", "ip6tables"):
        if shutil.which(tool) is None:
            return f"no {tool} binary"
    return None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)


class PeerProcess:
    """One kernel_peer command running in the namespace."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: list[str]) -> None:
        self.proc = proc
        self.argv = argv

    async def result(self, timeout: float = 120.0) -> dict[str, Any]:
        """The command's JSON result (waits for it to exit)."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        await asyncio.wait_for(self.proc.wait(), timeout)
        if not line:
            err = b""
            if self.proc.stderr is not None:
                err = await self.proc.stderr.read()
            raise RuntimeError(f"kernel peer {self.argv} failed: {err.decode(errors='replace')}")
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass


class TunLab:
    """``async with TunLab() as lab:`` gives ``lab.stack`` wired to the kernel."""

    def __init__(
        self,
        *,
        mtu: int = 1280,
        tcp_config: TcpConfig | None = None,
        seed: int | None = None,
        kernel_cc: str | None = None,
    ) -> None:
        """``kernel_cc``: congestion control of the kernel peer's sockets
        (e.g. "cubic"; None: the host's default)."""
        tag = os.urandom(3).hex()
        self.ns = f"ipstack-{tag}"
        self.dev = f"ipst{tag}"
        sub = int(tag[:4], 16)
        self.kernel_addr = f"fd00:5e:{sub:x}::1"
        self.stack_addr = f"fd00:5e:{sub:x}::2"
        self.mtu = mtu
        self.tcp_config = tcp_config
        self.kernel_cc = kernel_cc
        self.rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self.link: TunLink | None = None
        self.stack: Stack | None = None
        self.interface: Interface | None = None
        self._peers: list[PeerProcess] = []
        self._ns_created = False

    async def __aenter__(self) -> "TunLab":
        reason = lab_unavailable_reason()
        if reason is not None:
            raise LabUnavailable(reason)
        try:
            self._setup()
        except BaseException:
            self._teardown()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for peer in self._peers:
            peer.kill()
            try:
                await asyncio.wait_for(peer.proc.wait(), 10)
            except (asyncio.TimeoutError, ProcessLookupError):
                pass
        self._teardown()

    def _setup(self) -> None:
        self.link = TunLink(self.dev)
        _run("ip", "netns", "add", self.ns)
        self._ns_created = True
        _run("ip", "link", "set", self.dev, "netns", self.ns)
        self.ns_run("ip", "link", "set", "lo", "up")
        # One segment per skb: with GSO the kernel's TCP hands 64 KiB bursts to
        # netfilter, so the statistic loss rules would drop whole bursts and
        # see a fraction of the packets that cross the wire.
        self.ns_run("ip", "link", "set", self.dev, "gso_max_segs", "1", "gso_max_size", str(self.mtu))
        self.ns_run("ip", "link", "set", self.dev, "mtu", str(self.mtu), "up")
        self.ns_run("ip", "-6", "addr", "add", f"{self.kernel_addr}/64", "dev", self.dev, "nodad")
        self.interface = Interface(
            rng=self.rng, addresses=[parse_address(self.stack_addr)], mtu=self.mtu,
            tcp_config=self.tcp_config,
        )
        self.stack = Stack(self.interface, self.link)
        self.link.start(self.stack.packets_received)

    def ns_run(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.ns, *args)

    def set_loss(self, probability: float) -> None:
        """Drop packets at random in both directions (0 removes the rules)."""
        self.ns_run("ip6tables", "-F", "INPUT")
        self.ns_run("ip6tables", "-F", "OUTPUT")
        if probability > 0:
            for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
                self.ns_run(
                    "ip6tables", "-A", chain, flag, self.dev, "-m", "statistic",
                    "--mode", "random", "--probability", f"{probability:.4f}", "-j", "DROP",
                )

    def dropped(self) -> int:
        """Packets the loss rules dropped so far (both directions)."""
        total = 0
        for chain in ("INPUT", "OUTPUT"):
            out = subprocess.run(
                ["ip", "netns", "exec", self.ns, "ip6tables", "-L", chain, "-v", "-x", "-n"],
                check=True, capture_output=True, text=True, timeout=30,
            ).stdout
            for line in out.splitlines():
                fields = line.split()
                if "DROP" in fields and fields[0].isdigit():
                    total += int(fields[0])
        return total

    async def peer(self, *args: str | int) -> PeerProcess:
        """Start a kernel_peer command in the namespace; returns once ready."""
        argv = ["ip", "netns", "exec", self.ns, "python3", "-u", PEER_SCRIPT, *map(str, args)]
        env = dict(os.environ)
        if self.kernel_cc:
            env["KERNEL_PEER_CC"] = self.kernel_cc
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        peer = PeerProcess(proc, argv)
        self._peers.append(peer)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            err = await proc.stderr.read() if proc.stderr else b""
            raise RuntimeError(f"kernel peer {args} did not start: {line!r} {err!r}")
        return peer

    def _teardown(self) -> None:
        for peer in self._peers:
            peer.kill()
        if self.stack is not None:
            try:
                self.stack.close()
            except Exception:  # noqa: BLE001 - teardown must go on
                pass
        if self.link is not None:
            self.link.close()
        if self._ns_created:
            subprocess.run(["ip", "netns", "del", self.ns], check=False, timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._ns_created = False
