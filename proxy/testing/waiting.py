"""Waiting for a condition, never for a fixed time.

Tests and lab tools poll a condition with a deadline; the sleeps between
polls live here, in one place, so a test reads as what it waits for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until", "eventually"]

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str = "the condition",
               interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns a true value, which is returned.

    :raises TimeoutError: after ``timeout`` seconds, naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def eventually(condition: Callable[[], T], timeout: float = 5.0, what: str = "the condition",
                     interval: float = 0.005) -> T:
    """The asyncio form of :func:`wait_until`: the loop keeps running between polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
