"""The one small interface between a relay (or server) core and native IPv6.

Three backends implement it: :mod:`proxy.native.tun_linux` (a Linux TUN
device the relay configures itself), :mod:`proxy.native.raw_socket` (raw
sockets, for hosts that route the Teredo prefix to the relay another way)
and :mod:`proxy.native.memory` (a socket pair, for tests and the demo).

The driver's hot loop binds ``link.recv`` and ``link.send`` once and calls
them per packet, so implementations make them plain callables (often a
``functools.partial`` of ``os.read``/``os.write``), not methods doing work.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

__all__ = ["NativeLink", "NativeLinkError"]


class NativeLinkError(RuntimeError):
    """A backend could not be opened or configured; the message says why and what to do."""


@runtime_checkable
class NativeLink(Protocol):
    """A bidirectional pipe of whole IPv6 packets (no link-layer header)."""

    name: str
    "Interface or backend name, for logs and the status file."
    mtu: int
    "Largest packet the native side takes."
    router: bool
    "True when nobody else routes: the core must decrement hop limits and enforce the MTU."
    recv: Callable[[], bytes]
    "One packet; raises BlockingIOError when none waits (never blocks)."
    send: Callable[[bytes], object]
    "Write one packet; may raise OSError (the driver counts and drops)."

    def fileno(self) -> int:
        """A descriptor that polls readable when ``recv`` has packets."""
        ...

    def close(self) -> None:
        """Release the descriptors (a TUN device disappears with them)."""
        ...
