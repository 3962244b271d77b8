"""IPv6 fragment reassembly (RFC 8200 §4.5, RFC 5722, RFC 6946, RFC 7112).

Theory of operation
-------------------

A datagram is identified by (source, destination, Identification).  Its
fragments are kept as non-overlapping ``(start, end, data)`` runs sorted by
offset; because overlaps are never admitted, the datagram is complete as soon
as the last fragment (M = 0) fixed its length, the first fragment (offset 0)
brought the unfragmentable part, and the buffered bytes add up to that length.

Checks, in the order of RFC 8200 §4.5:

1. a fragment with M = 1 whose length is not a multiple of 8 is dropped with
   a Parameter Problem code 0 pointing at the Payload Length field;
2. a fragment that would make the reassembled payload exceed 65535 bytes is
   dropped with a Parameter Problem code 0 pointing at the Fragment Offset;
3. a first fragment that does not hold the whole header chain through the
   upper-layer header is dropped with Parameter Problem code 3 (RFC 7112);
4. an atomic fragment (offset 0, M = 0) is handed back at once, outside any
   reassembly (RFC 6946);
5. overlaps (RFC 5722): a fragment wholly inside data already received (an
   exact duplicate or a subset) is ignored, as RFC 5722 Errata 3089 allows
   for duplicates and as Linux and gVisor also do for subsets; any other
   overlap discards the whole datagram *and* its later fragments: the entry
   stays as a data-less tombstone until the timeout;
6. a fragment contradicting the known length discards the datagram (Linux).

Bounds: datagrams at once, buffered bytes and fragments per datagram are
limits from :mod:`proxy.constants`; when full, the oldest reassembly is
evicted (as Linux does above ip6frag_high_thresh), so a flood can delay but
never grow memory.  After ``REASSEMBLY_TIMEOUT`` a reassembly is abandoned;
if its first fragment had arrived, :meth:`Reassembler.handle_timer` returns
that fragment so the caller can send Time Exceeded code 1.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from proxy.constants import (
    REASSEMBLY_MAX_BYTES,
    REASSEMBLY_MAX_DATAGRAMS,
    REASSEMBLY_MAX_FRAGMENTS,
    REASSEMBLY_TIMEOUT,
)
from proxy.errors import DropReason, ParseError
from proxy.ipstack.wire.frag import FRAGMENT_HEADER_LEN, FragmentHeader
from proxy.ipstack.wire.ipv6 import IPV6_HEADER_LEN, NextHeader, ParamProblem, ParamProblemCode

__all__ = ["Reassembler"]

#: Minimum upper-layer header bytes that must sit in a first fragment
#: (RFC 7112 §5: the whole header chain, upper-layer header included).
_UPPER_MIN = {NextHeader.TCP: 20, NextHeader.UDP: 8, NextHeader.ICMPV6: 8}

_Key = tuple[bytes, bytes, int]


@dataclass(slots=True)
class _Datagram:
    """One reassembly in progress (or a tombstone after an overlap)."""

    deadline: float
    starts: list[int] = field(default_factory=list)
    "Run start offsets, sorted (parallel to ``runs``)."
    runs: list[tuple[int, int, bytes]] = field(default_factory=list)
    total: int | None = None
    "Payload length of the original datagram, once the last fragment came."
    received: int = 0
    "Fragmentable bytes buffered."
    first: bytes | None = None
    "The whole first fragment (unfragmentable part and quote for errors)."
    frag_at: int = 0
    "Offset of the Fragment header inside ``first``."
    nh_offset: int = 6
    "Offset inside ``first`` of the Next Header field naming the Fragment header."
    next_header: int = 0
    "Protocol of the fragmentable part, from the first fragment."
    cost: int = 0
    "Bytes charged against the global budget."
    dead: bool = False
    "Tombstone: an overlap was seen; discard every further fragment."


def _chain_complete(data: bytes | memoryview, proto: int) -> bool:
    """Does the fragmentable part ``data`` start with a whole header chain?"""
    i, n = 0, len(data)
    for _ in range(16):
        if proto in (NextHeader.HOP_BY_HOP, NextHeader.DESTINATION_OPTIONS, NextHeader.ROUTING):
            if i + 2 > n:
                return False
            proto, i = data[i], i + (data[i + 1] + 1) * 8
        elif proto == NextHeader.AH:
            if i + 2 > n:
                return False
            proto, i = data[i], i + (data[i + 1] + 2) * 4
        else:
            break
        if i > n:
            return False
    return i + _UPPER_MIN.get(proto, 0) <= n


class Reassembler:
    """Bounded IPv6 reassembly buffer.  Performs no I/O.

    Driven by two kinds of input: fragments (:meth:`fragment_received`) and
    the passage of time (:meth:`handle_timer`).  :meth:`poll_at` gives the
    next deadline.
    """

    def __init__(
        self,
        *,
        timeout: float = REASSEMBLY_TIMEOUT,
        max_datagrams: int = REASSEMBLY_MAX_DATAGRAMS,
        max_bytes: int = REASSEMBLY_MAX_BYTES,
        max_fragments: int = REASSEMBLY_MAX_FRAGMENTS,
    ) -> None:
        self.timeout = timeout
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.max_fragments = max_fragments
        #: Insertion-ordered, so the first entry is the oldest (and expires first).
        self._table: dict[_Key, _Datagram] = {}
        self._bytes = 0

    # -- introspection ----------------------------------------------------

    def __len__(self) -> int:
        return len(self._table)

    @property
    def buffered_bytes(self) -> int:
        """Bytes currently held (all reassemblies)."""
        return self._bytes

    def poll_at(self) -> float | None:
        """Deadline of the oldest reassembly, or None when idle."""
        for dgram in self._table.values():
            return dgram.deadline
        return None

    # -- input ---------------------------------------------------------------

    def fragment_received(
        self, packet: bytes, end: int, frag_at: int, nh_offset: int, now: float
    ) -> bytes | None:
        """Take one fragment; return the reassembled packet when complete.

        :param packet: the whole IPv6 packet (bytes: it may be stored).
        :param end: ``40 + payload length``.
        :param frag_at: offset of its Fragment header.
        :param nh_offset: offset of the Next Header field that named it.
        :param now: current time, seconds.
        :raises ParamProblem: drop with an ICMPv6 Parameter Problem.
        :raises ParseError: drop silently (the reason says why).

        The reassembled packet is the first fragment's unfragmentable part,
        with the Fragment header removed (its Next Header copied into the
        field that named it) and the Payload Length recomputed.
        """
        fh = FragmentHeader.parse(packet, frag_at)
        start = frag_at + FRAGMENT_HEADER_LEN
        if start > end:
            raise ParseError(DropReason.IPV6_TRUNCATED, "fragment header past the payload")
        flen = end - start
        # RFC 8200 §4.5, first check: non-last fragments are multiples of 8.
        if fh.more and (flen & 7 or flen == 0):
            raise ParamProblem(
                DropReason.FRAGMENT_BAD_LENGTH,
                ParamProblemCode.ERRONEOUS_HEADER,
                4,
                detail=f"{flen}-byte fragment with M set",
            )
        # Second check: the reassembled payload must fit 65535 bytes.
        if (frag_at - IPV6_HEADER_LEN) + fh.offset + flen > 0xFFFF:
            raise ParamProblem(
                DropReason.FRAGMENT_TOO_BIG,
                ParamProblemCode.ERRONEOUS_HEADER,
                frag_at + 2,
                detail=f"offset {fh.offset} + {flen} bytes",
            )
        if fh.offset == 0:
            # RFC 7112 §5 / RFC 8200 §4.5: the first fragment holds the chain.
            if not _chain_complete(memoryview(packet)[start:end], fh.next_header):
                raise ParamProblem(
                    DropReason.FRAGMENT_INCOMPLETE_CHAIN, ParamProblemCode.INCOMPLETE_CHAIN, 0
                )
            if not fh.more:
                # RFC 6946: an atomic fragment is processed on its own.
                return self._assemble(packet, frag_at, nh_offset, fh.next_header, [packet[start:end]])
        key = (packet[8:24], packet[24:40], fh.ident)
        dgram = self._table.get(key)
        if dgram is None:
            dgram = self._new(key, now)
        if dgram.dead:
            raise ParseError(DropReason.FRAGMENT_OVERLAP, "datagram already discarded")
        fend = fh.offset + flen
        # Consistency with the known length (Linux discards the datagram).
        if (not fh.more and dgram.total is not None and dgram.total != fend) or (
            dgram.total is not None and fend > dgram.total
        ) or (not fh.more and dgram.runs and dgram.runs[-1][1] > fend):
            self._discard(key)
            raise ParseError(DropReason.FRAGMENT_INCONSISTENT, f"fragment ending at {fend}")
        # RFC 5722 overlap check.
        i = bisect.bisect_right(dgram.starts, fh.offset)
        lo = i - 1 if i > 0 and dgram.runs[i - 1][1] > fh.offset else i
        hi = i
        while hi < len(dgram.runs) and dgram.runs[hi][0] < fend:
            hi += 1
        if hi > lo:
            covered = fh.offset
            for s, e, _d in dgram.runs[lo:hi]:
                if s > covered:
                    break
                covered = max(covered, e)
            if covered >= fend:
                # DEVIATION: RFC 5722 discards on any overlap; Errata 3089
                # spares exact duplicates and we (like Linux and gVisor)
                # spare subsets too: they carry no new data to disagree on.
                raise ParseError(DropReason.FRAGMENT_DUPLICATE, f"[{fh.offset}, {fend}) already held")
            self._kill(key, dgram)
            raise ParseError(DropReason.FRAGMENT_OVERLAP, f"[{fh.offset}, {fend}) overlaps")
        if len(dgram.runs) >= self.max_fragments:
            self._kill(key, dgram)
            raise ParseError(DropReason.REASSEMBLY_LIMIT, "too many fragments")
        cost = flen + (frag_at if fh.offset == 0 else 0)
        if not self._make_room(cost, key):
            self._kill(key, dgram)
            raise ParseError(DropReason.REASSEMBLY_LIMIT, "datagram exceeds the byte budget")
        data = packet[start:end]
        dgram.starts.insert(lo, fh.offset)
        dgram.runs.insert(lo, (fh.offset, fend, data))
        dgram.received += flen
        dgram.cost += cost
        self._bytes += cost
        if not fh.more:
            dgram.total = fend
        if fh.offset == 0:
            dgram.first = packet[:end]
            dgram.frag_at = frag_at
            dgram.nh_offset = nh_offset
            dgram.next_header = fh.next_header
        if dgram.total is None or dgram.first is None or dgram.received != dgram.total:
            return None
        self._discard(key)
        return self._assemble(
            dgram.first, dgram.frag_at, dgram.nh_offset, dgram.next_header,
            [d for _s, _e, d in dgram.runs],
        )

    def handle_timer(self, now: float) -> list[bytes]:
        """Abandon expired reassemblies; return their first fragments.

        RFC 8200 §4.5: Time Exceeded (code 1) goes to the source only when
        the first fragment was received; tombstones expire silently.
        """
        expired: list[bytes] = []
        while self._table:
            key, dgram = next(iter(self._table.items()))
            if dgram.deadline > now:
                break
            self._discard(key)
            if dgram.first is not None and not dgram.dead:
                expired.append(dgram.first)
        return expired

    # -- internals -----------------------------------------------------------

    def _new(self, key: _Key, now: float) -> _Datagram:
        if len(self._table) >= self.max_datagrams:
            self._discard(next(iter(self._table)))
        dgram = _Datagram(deadline=now + self.timeout)
        self._table[key] = dgram
        return dgram

    def _make_room(self, cost: int, keep: _Key) -> bool:
        """Evict the oldest other reassemblies until ``cost`` more bytes fit."""
        for key in list(self._table):
            if self._bytes + cost <= self.max_bytes:
                break
            if key != keep:
                self._discard(key)
        return self._bytes + cost <= self.max_bytes

    def _kill(self, key: _Key, dgram: _Datagram) -> None:
        """Turn a reassembly into a tombstone (RFC 5722: drop later fragments)."""
        self._bytes -= dgram.cost
        dgram.cost = 0
        dgram.runs.clear()
        dgram.starts.clear()
        dgram.first = None
        dgram.dead = True

    def _discard(self, key: _Key) -> None:
        dgram = self._table.pop(key, None)
        if dgram is not None:
            self._bytes -= dgram.cost

    @staticmethod
    def _assemble(
        first: bytes, frag_at: int, nh_offset: int, next_header: int, pieces: list[bytes]
    ) -> bytes:
        head = bytearray(first[:frag_at])
        head[nh_offset] = next_header
        body = b"".join(pieces)
        plen = len(head) - IPV6_HEADER_LEN + len(body)
        head[4] = plen >> 8
        head[5] = plen & 0xFF
        return bytes(head) + body
