"""TCP connection machine (RFC 9293), sans-I/O.  SKELETON: API only, being filled in.

See tcp-contract.md: the names and signatures below are binding.
"""

from __future__ import annotations

import random
from collections import Counter

from proxy.errors import DropReason
from proxy.ipstack.tcp_config import TcpConfig
from proxy.ipstack.tcp_events import (
    ConnectionClosed, Connected, DataReceived, EndOfStream, SendSpaceAvailable, TcpEvent, TcpState,
)
from proxy.ipstack.wire.tcp import TcpSegment

__all__ = [
    "TcpConfig", "TcpConnection", "TcpState", "TcpEvent", "Connected", "DataReceived",
    "SendSpaceAvailable", "EndOfStream", "ConnectionClosed", "reset_for",
]

Endpoint = tuple[bytes, int]


class TcpConnection:
    """One TCP connection.  Performs no I/O.

    Driven by three kinds of input:
    - segments from the peer: :meth:`segment_received` (and ICMP errors:
      :meth:`icmp_error_received`)
    - calls from the application: :meth:`send`, :meth:`receive`,
      :meth:`shutdown`, :meth:`close`, :meth:`abort`
    - the passage of time: :meth:`handle_timer`

    Output is pulled with :meth:`segments_to_send` and :meth:`next_event`;
    :meth:`poll_at` gives the next deadline.
    """

    @classmethod
    def connect(cls, config: TcpConfig, *, local: Endpoint, remote: Endpoint,
                rng: random.Random, now: float) -> "TcpConnection":
        raise NotImplementedError

    @classmethod
    def accept(cls, config: TcpConfig, syn: TcpSegment, *, local: Endpoint, remote: Endpoint,
               rng: random.Random, now: float) -> "TcpConnection":
        raise NotImplementedError

    drops: Counter[DropReason]

    def segment_received(self, seg: TcpSegment, now: float) -> None: raise NotImplementedError
    def icmp_error_received(self, kind: str, now: float) -> None: raise NotImplementedError
    def send(self, data: bytes | memoryview) -> int: raise NotImplementedError
    def receive(self, max_bytes: int = -1) -> bytes: raise NotImplementedError
    def shutdown(self, now: float) -> None: raise NotImplementedError
    def close(self, now: float) -> None: raise NotImplementedError
    def abort(self, now: float) -> None: raise NotImplementedError
    def segments_to_send(self, now: float) -> list[TcpSegment]: raise NotImplementedError
    def handle_timer(self, now: float) -> None: raise NotImplementedError
    def poll_at(self) -> float | None: raise NotImplementedError
    def next_event(self) -> TcpEvent | None: raise NotImplementedError

    @property
    def state(self) -> TcpState: raise NotImplementedError
    @property
    def local(self) -> Endpoint: raise NotImplementedError
    @property
    def remote(self) -> Endpoint: raise NotImplementedError
    @property
    def readable(self) -> int: raise NotImplementedError
    @property
    def send_space(self) -> int: raise NotImplementedError
    @property
    def closed(self) -> bool: raise NotImplementedError


def reset_for(seg: TcpSegment) -> TcpSegment | None:
    """The RST answering ``seg`` sent to no connection (RFC 9293 §3.10.7.1).

    None when ``seg`` is itself a RST.  For the Interface: SYN to a closed
    port, or any segment for an unknown 4-tuple.
    """
    raise NotImplementedError
