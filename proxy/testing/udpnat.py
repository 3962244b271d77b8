"""A NAT in front of an in-process client, on real loopback sockets.

The fixtures and the demo run a whole Teredo network in one process on
loopback, where there is no NAT between the client and the server.  This
module puts one there: the client's UDP endpoints are replaced by
:class:`NattedEndpoint` objects with a private (virtual) address, and every
datagram they send leaves from a real socket on the NAT's public loopback
address, chosen and filtered as an RFC 4787 NAT of the requested model
would.  Loss is injected here too, with a seeded RNG.

Models (as in :data:`proxy.testing.netsim.NAT_MODELS`): ``full-cone``
(endpoint-independent mapping and filtering), ``restricted`` (address-
dependent filtering), ``port-restricted`` (address-and-port-dependent
filtering), ``symmetric`` (a new mapping per destination).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from proxy.netio import DRAIN_BATCH, RECV_SIZE, UdpEndpoint, open_udp

__all__ = ["LoopbackNat", "NattedEndpoint", "MODELS", "udp_factory"]

log = logging.getLogger("proxy.testing.udpnat")

Endpoint = tuple[str, int]
OnBatch = Callable[[object, list[tuple[bytes, Endpoint]]], None]

#: model -> (mapping, filtering)
MODELS: dict[str, tuple[str, str]] = {
    "full-cone": ("endpoint", "endpoint"),
    "cone": ("endpoint", "endpoint"),
    "restricted": ("endpoint", "address"),
    "port-restricted": ("endpoint", "port"),
    "symmetric": ("port", "port"),
}


class _Mapping:
    """One public socket and what it lets in."""

    def __init__(self, nat: "LoopbackNat", owner: "NattedEndpoint") -> None:
        self.nat = nat
        self.owner = owner
        self.sock = open_udp(nat.public_ip, 0)
        self.public: Endpoint = self.sock.getsockname()[:2]
        self.allowed: set = set()
        nat.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        batch: list[tuple[bytes, Endpoint]] = []
        for _ in range(DRAIN_BATCH):
            try:
                data, src = self.sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if not self.nat.admits(self, src):
                continue
            if self.nat.lose():
                continue
            batch.append((data, src))
        if batch:
            self.owner.received += len(batch)
            self.owner.bytes_received += sum(len(d) for d, _ in batch)
            self.owner.on_batch(self.owner, batch)

    def close(self) -> None:
        try:
            self.nat.loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()


class LoopbackNat:
    """One NAT box: public address ``public_ip``, private addresses behind it."""

    def __init__(self, model: str, *, public_ip: str = "127.0.0.5", private_ip: str = "10.64.0.2",
                 loss: float = 0.0, rng: random.Random | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown NAT model {model!r} (one of {', '.join(MODELS)})")
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss is a probability in [0, 1)")
        self.model = model
        self.mapping, self.filtering = MODELS[model]
        self.public_ip = public_ip
        self.private_ip = private_ip
        self.loss = loss
        self.rng = rng or random.Random(0)
        self.loop = loop or asyncio.get_running_loop()
        self.dropped_filtered = 0
        self.dropped_loss = 0
        self._mappings: dict[tuple, _Mapping] = {}

    def endpoint(self, port: int, on_batch: OnBatch) -> "NattedEndpoint":
        """A private UDP endpoint ``private_ip:port`` behind this NAT."""
        return NattedEndpoint(self, port, on_batch)

    def lose(self) -> bool:
        if self.loss and self.rng.random() < self.loss:
            self.dropped_loss += 1
            return True
        return False

    def mapping_for(self, owner: "NattedEndpoint", dst: Endpoint) -> _Mapping:
        key = (owner.local,) if self.mapping == "endpoint" else (owner.local, dst)
        m = self._mappings.get(key)
        if m is None:
            m = self._mappings[key] = _Mapping(self, owner)
        m.allowed.add(dst[0] if self.filtering == "address" else dst)
        return m

    def admits(self, m: _Mapping, src: Endpoint) -> bool:
        if self.filtering == "endpoint":
            return True
        if (src[0] if self.filtering == "address" else src[:2]) in m.allowed:
            return True
        self.dropped_filtered += 1
        return False

    def release(self, owner: "NattedEndpoint") -> None:
        for key, m in list(self._mappings.items()):
            if m.owner is owner:
                m.close()
                del self._mappings[key]


class NattedEndpoint:
    """Looks like :class:`proxy.netio.UdpEndpoint` to the client runner."""

    def __init__(self, nat: LoopbackNat, port: int, on_batch: OnBatch) -> None:
        self.nat = nat
        self.local: Endpoint = (nat.private_ip, port or nat.rng.randrange(20000, 60000))
        self.on_batch = on_batch
        self.sent = self.received = self.send_errors = 0
        self.bytes_sent = self.bytes_received = 0

    def sendto(self, data: bytes, addr: Endpoint) -> bool:
        m = self.nat.mapping_for(self, addr)
        self.sent += 1
        self.bytes_sent += len(data)
        if self.nat.lose():
            return True
        try:
            m.sock.sendto(data, addr)
        except OSError:
            self.send_errors += 1
            return False
        return True

    def close(self) -> None:
        self.nat.release(self)


def udp_factory(nat: LoopbackNat | None, bind: str = "127.0.0.4"):
    """The endpoint factory a :class:`~proxy.apps.client.ClientRunner` takes:
    real sockets on ``bind`` without a NAT, natted endpoints with one."""

    def make(host: str, port: int, on_batch: OnBatch, loop: asyncio.AbstractEventLoop):
        if nat is None:
            return UdpEndpoint(open_udp(bind if host == "0.0.0.0" else host, port), on_batch, loop)
        return nat.endpoint(port, on_batch)

    return make

