"""Token buckets with an explicit clock, alone or one per key in a bounded table.

Every rate limit in the project (RS per client address at the server,
native forwarding, ICMPv6 errors) is one of these, so that a limit is a
number in ``constants.py`` and a test can drive it with a fake ``now``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

__all__ = ["TokenBucket", "KeyedTokenBuckets"]

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if available; a clock going backwards adds none."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class KeyedTokenBuckets(Generic[K]):
    """One bucket per key, at most ``max_keys`` remembered (least recently used go).

    Forgetting a key gives it a full bucket on its next packet, so the table
    bound trades a little precision under a flood of distinct sources for
    bounded memory; a flood from one source is still limited.
    """

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, TokenBucket] = OrderedDict()

    def allow(self, key: K, now: float, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.allow(now, cost)

    def __len__(self) -> int:
        return len(self._buckets)
