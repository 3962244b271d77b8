"""The per-peer rate rules of RFC 4380, as pure functions shared by relay and client.

The relay (§5.4.1) and the client (§5.2.4, §5.2.6) must pace bubbles and
echo requests the same way; keeping the arithmetic here, as functions of
(counter, time of the latest one, now), means one implementation and one
set of tests.  The peer table stores the counters and times and offers
``bubble_decision`` / ``ping_decision`` wrappers that apply these rules and
record a send.

Also here: the tick conversion the table uses to store times compactly.
"""

from __future__ import annotations

import enum
import math

from proxy.constants import (
    BUBBLE_INTERVAL,
    BUBBLE_MAX,
    BUBBLE_WINDOW,
    PEER_TIME_UNIT,
    PEER_VALIDITY,
    PING_INTERVAL,
    PING_MAX,
)

__all__ = ["Probe", "bubble_rule", "ping_rule", "is_valid", "ticks", "ticks_up", "TICKS_PER_SECOND"]

TICKS_PER_SECOND = 1.0 / PEER_TIME_UNIT
_TMIN, _TMAX = -(2**31), 2**31 - 1


def ticks(now: float) -> int:
    """``now`` as a signed 32-bit count of ``PEER_TIME_UNIT``, rounded down.

    Receptions are stored rounded down, so a validity window computed from
    them never stretches past the RFC's.
    """
    try:
        t = math.floor(now * TICKS_PER_SECOND)
    except (OverflowError, ValueError):  # inf, nan: clamp rather than raise
        return _TMAX if now > 0 else _TMIN
    return t if _TMIN <= t <= _TMAX else (_TMIN if t < 0 else _TMAX)


def ticks_up(now: float) -> int:
    """``now`` in ticks rounded up: transmissions are stored this way, so an
    interval measured from them is never shorter than the real one."""
    try:
        t = math.ceil(now * TICKS_PER_SECOND)
    except (OverflowError, ValueError):
        return _TMAX if now > 0 else _TMIN
    return t if _TMIN <= t <= _TMAX else (_TMIN if t < 0 else _TMAX)


class Probe(enum.Enum):
    """What a rate rule allows now."""

    SEND = "send"
    "Send the bubble (or echo request) now."
    WAIT = "wait"
    "Too soon after the previous one: keep the packet queued, try later."
    GIVE_UP = "give-up"
    "The budget is spent without an answer: the peer is unreachable."


def bubble_rule(sent: int, last: float, now: float) -> tuple[Probe, int]:
    """RFC 4380 §5.2.6 (applied to relays by §5.4.1): may a bubble go now?

    A bubble MUST NOT follow the previous one to the same peer within 2
    seconds, and no more than 4 may be sent in 300 seconds without an
    answer.  ``sent`` counts the bubbles since the peer last answered,
    ``last`` is when the latest went.  Returns the decision and the counter
    to store if the bubble is sent: after 300 s of silence a new window
    starts (as Miredo's ``CountBubble``).  The 2 s spacing is checked first,
    so a packet arriving just after the fourth bubble waits for that
    bubble's answer instead of being refused at once.
    """
    if sent <= 0:
        return Probe.SEND, 1
    if now - last < BUBBLE_INTERVAL:
        return Probe.WAIT, sent
    if sent >= BUBBLE_MAX:
        if now - last >= BUBBLE_WINDOW:
            return Probe.SEND, 1
        return Probe.GIVE_UP, sent
    return Probe.SEND, sent + 1


def ping_rule(sent: int, last: float, now: float) -> tuple[Probe, int]:
    """RFC 4380 §5.2.4 case 2 and §5.2.9: pacing of the direct IPv6 connectivity test.

    One echo request, then repeats "after a 2 second timer, up to 3 times"
    (4 in all, ``PING_MAX``); once the last has had its 2 s without a
    reply, the peer is unreachable.  Same return convention as
    :func:`bubble_rule`; a new test may start ``BUBBLE_WINDOW`` seconds
    after the last echo request.
    """
    if sent <= 0:
        return Probe.SEND, 1
    if now - last < PING_INTERVAL:
        return Probe.WAIT, sent
    if sent >= PING_MAX:
        if now - last >= BUBBLE_WINDOW:
            return Probe.SEND, 1
        return Probe.GIVE_UP, sent
    return Probe.SEND, sent + 1


def is_valid(last_rx: float, now: float, validity: float = PEER_VALIDITY) -> bool:
    """RFC 4380 §5.2: a trusted entry is usable for 30 s after its last reception."""
    return now - last_rx <= validity
