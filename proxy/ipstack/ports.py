"""Ephemeral port selection (RFC 6056 §3.3.1, algorithm 1: simple random).

RFC 6056 wants ports that an off-path attacker cannot guess, so the port is
drawn from the injected RNG over the dynamic range of RFC 6335 §6; after
``EPHEMERAL_PORT_TRIES`` collisions the range is scanned from a random
starting point, so a nearly full table still finds the last free port.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from proxy.constants import EPHEMERAL_PORT_MAX, EPHEMERAL_PORT_MIN, EPHEMERAL_PORT_TRIES

__all__ = ["Rng", "pick_ephemeral_port"]


class Rng(Protocol):
    """The part of ``random.Random`` the stack uses (cores never import random)."""

    def randint(self, a: int, b: int) -> int: ...

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int: ...

    def getrandbits(self, k: int) -> int: ...


def pick_ephemeral_port(
    rng: Rng,
    in_use: Callable[[int], bool],
    *,
    low: int = EPHEMERAL_PORT_MIN,
    high: int = EPHEMERAL_PORT_MAX,
) -> int | None:
    """A free port in ``[low, high]``, or None when every one is taken."""
    for _ in range(EPHEMERAL_PORT_TRIES):
        port = rng.randint(low, high)
        if not in_use(port):
            return port
    span = high - low + 1
    start = rng.randrange(span)
    for k in range(span):
        port = low + (start + k) % span
        if not in_use(port):
            return port
    return None
