"""Receive-window arithmetic: what goes in the 16-bit window field.

Pure functions, property-tested for every shift 0..14 because window-scale
rounding is where stacks break (google/netstack #34: a window rounded to
zero; smoltcp #518: a collapsing window).  The rules:

* the window offered is the free receive buffer (RFC 9293 §3.8.6.2.2), so
  a peer that respects it cannot overrun the buffer;
* the right edge never moves left (RFC 9293 §3.8.6.2.2 "shrinking the
  window is strongly discouraged"): when the free space, rounded down to a
  multiple of 2**shift, would pull the edge back, the previous edge is kept
  and rounded *up*;
* but the total promise (buffered bytes + window) never exceeds the buffer
  by a rounding unit or more: rounding up is refused when it would, and the
  edge is rounded down instead (a "shrink" by less than 2**shift, only
  while the buffer is over-committed; the connection keeps accepting data
  up to the largest edge it ever advertised).  Rounding up without that
  bound lets a peer sending one byte less than each window creep the edge
  forward by 2**shift - 1 per ACK, unboundedly;
* receiver-side SWS avoidance (RFC 9293 §3.8.6.2.2, RFC 1122 §4.2.3.3):
  the edge only advances in steps of at least min(buffer/2, MSS).
"""

from __future__ import annotations

__all__ = ["select_window", "scaled_window"]


def select_window(free: int, current: int, mss: int, buffer: int, shift: int) -> int:
    """The raw window field to send.

    ``free``: free receive buffer (bytes, may be <= 0); ``current``: what is
    left of the window we last advertised (right edge - RCV.NXT, >= 0);
    ``mss``: receive MSS; ``buffer``: receive buffer size; ``shift``: our
    window scale (0..14).
    """
    if current < 0:
        current = 0
    unit = 1 << shift
    step = min(buffer // 2, mss)
    if free - current >= step and free > current:
        wnd = free - (free & (unit - 1))  # round down: never promise unbuffered space
        if wnd < current:
            wnd = current
    else:
        wnd = current
    raw = (wnd + unit - 1) >> shift  # round up: the old edge stays reachable ...
    if (raw << shift) > free + unit - 1:
        # DEVIATION (RFC 9293 §3.8.6.2.2): a shrink by < 2**shift, only while
        # over-committed; data up to the old edge is still accepted.
        raw = wnd >> shift  # ... unless that over-commits the buffer
    return raw if raw < 0xFFFF else 0xFFFF


def scaled_window(raw: int, shift: int) -> int:
    """The window in bytes a raw field means under ``shift`` (RFC 7323 §2.3)."""
    return raw << shift
