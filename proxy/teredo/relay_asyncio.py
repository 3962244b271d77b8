"""Drive a :class:`~proxy.teredo.relay.TeredoRelay` core with asyncio.

Two readers, one timer:

* ``loop.add_reader`` on the UDP socket and on the native link's descriptor;
  each readiness callback drains up to ``RELAY_DRAIN_BATCH`` packets
  (``recvfrom`` / ``os.read`` until ``BlockingIOError``), feeds them to the
  core with one ``now`` for the batch, then flushes the core's outputs once.
  A ``DatagramProtocol`` would cost a loop turn per datagram, several times
  slower (measured in the lab notes);
* a single ``call_at`` timer re-armed to the core's ``poll_at`` after each
  batch, fired with ``now = max(deadline, loop.time())`` so the core always
  sees a time at or past the deadline it asked for.

Send errors (a full socket buffer, an unreachable network, EMSGSIZE on the
native side) drop that packet and are counted in :attr:`RelayDriver.errors`;
they never stop the relay.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import Counter

from proxy.constants import RELAY_DRAIN_BATCH, RELAY_MAX_PACKET
from proxy.netio import open_udp
from proxy.teredo.relay import TeredoRelay

__all__ = ["RelayDriver", "open_udp_socket"]

log = logging.getLogger("proxy.teredo.relay_asyncio")

#: Socket buffers of the relay's UDP socket: room for bursts of a busy relay.
RELAY_SOCKET_BUFFER = 4 << 20


def open_udp_socket(bind: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The relay's UDP/IPv4 socket: :func:`proxy.netio.open_udp` with large buffers."""
    return open_udp(bind, port, reuse_port=reuse_port, bufsize=RELAY_SOCKET_BUFFER)


class RelayDriver:
    """Connects a relay core to a UDP socket and a native link on an event loop."""

    def __init__(self, core: TeredoRelay, sock: socket.socket, link, loop: asyncio.AbstractEventLoop) -> None:
        self.core = core
        self.sock = sock
        self.link = link
        self.loop = loop
        self.errors: Counter[str] = Counter()
        "Send and receive failures by errno name."
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self.loop.add_reader(self.sock.fileno(), self._on_udp)
        self.loop.add_reader(self.link.fileno(), self._on_native)
        self._arm()

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        for fd in (self.sock.fileno(), self.link.fileno()):
            try:
                self.loop.remove_reader(fd)
            except (ValueError, OSError):
                pass
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- readers -------------------------------------------------------------------
    def _on_udp(self) -> None:
        recvfrom = self.sock.recvfrom
        feed = self.core.datagram_received
        now = self.loop.time()
        try:
            for _ in range(RELAY_DRAIN_BATCH):
                data, addr = recvfrom(RELAY_MAX_PACKET)
                feed(data, addr, now)
        except BlockingIOError:
            pass
        except OSError as e:  # e.g. an ICMP error reported on the socket
            self.errors[errno.errorcode.get(e.errno or 0, "recv")] += 1
        self._flush()

    def _on_native(self) -> None:
        recv = self.link.recv
        feed = self.core.ipv6_from_native
        now = self.loop.time()
        try:
            for _ in range(RELAY_DRAIN_BATCH):
                feed(recv(), now)
        except BlockingIOError:
            pass
        except OSError as e:
            self.errors[errno.errorcode.get(e.errno or 0, "read")] += 1
        self._flush()

    def _flush(self) -> None:
        core = self.core
        out = core.datagrams_to_send()
        if out:
            sendto = self.sock.sendto
            for data, addr in out:
                try:
                    sendto(data, addr)
                except OSError as e:
                    self.errors[errno.errorcode.get(e.errno or 0, "sendto")] += 1
        native = core.ipv6_to_native()
        if native:
            send = self.link.send
            for packet in native:
                try:
                    send(packet)
                except OSError as e:
                    self.errors[errno.errorcode.get(e.errno or 0, "write")] += 1
        at = core.poll_at()
        if at != self._timer_at:
            self._arm(at)

    # -- timer -----------------------------------------------------------------------
    def _arm(self, at: float | None = None) -> None:
        if at is None:
            at = self.core.poll_at()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None and self._running:
            self._timer = self.loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        at = self._timer_at
        now = self.loop.time()
        if at is not None and now < at:
            now = at
        self._timer_at = None
        self.core.handle_timer(now)
        self._flush()
        if self._timer is None:
            self._arm()
