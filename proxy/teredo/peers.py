"""The Teredo peer table, shared by the relay and the client (RFC 4380 §5.2, §5.4).

Theory of operation
-------------------
A relay may know a million peers, so an entry must cost tens of bytes, not
the ~200 of a dict of slotted objects (Miredo's Judy list costs 137).  The
table is three preallocated arrays indexed by a slot number, with no
Python object per peer:

* ``keys``: the 16-byte IPv6 address of each slot, zero when empty;
* ``gen``: one byte per slot, the epoch of the entry's last use (0: empty);
* ``rec``: a packed 28-byte record per slot (layout :data:`REC`): flags,
  bubble and ping counters, mapped IPv4 and port, and the times of last
  reception, transmission, bubble and echo request.  The record layout, the
  slot accessors and the queues live in :mod:`proxy.teredo.peer_record`
  (a mixin of :class:`PeerTable`); this module is the index and the expiry.

45 bytes per slot; at the nominal load of 0.9, 50 bytes per peer.  One
record keeps a peer's fields in one or two cache lines (an earlier layout
with one array per field cost a cache miss per field).  Typed views of
``rec`` (``rec_i32``, ``rec_u32``, ``rec_u16``) give hot paths single-field
access by index arithmetic; see the ``I32_*``/``U32_*``/``U16_*``/``B_*``
constants.

Index: bucketized two-choice cuckoo hashing.  Slots are grouped in buckets
of 8; a key may live in bucket ``h % n`` or ``(h >> 32) % n`` where ``h`` is
Python's ``hash()`` of the key as ``bytes``.  That hash is SipHash keyed by
a per-process random secret, so a remote party choosing addresses cannot
aim them at one bucket (``int`` hashes are not keyed and would be useless
here).  And whatever the keys, a lookup reads at most two buckets, each
with one C-level ``find`` of the key in the bucket's 128-byte run of keys.
An insertion that finds both buckets full moves entries to their other
bucket along a short path (cuckoo displacement); it fails only when the
table is genuinely full.  New keys go to their first bucket when it has
room, so most lookups end after one ``find``.

Expiry (Miredo's rule; RFC 4380 §5.2 leaves it open): an entry lives 30 to
60 s after its last *use*.  Time is cut into epochs of ``expiry`` seconds;
a lookup stamps the entry's ``gen`` byte with the current epoch; an entry
is alive while its stamp is the current or the previous epoch.  A stale
entry is invisible to lookups at once, and is removed lazily (by a lookup
or insertion that meets it) or by the incremental sweep that
:meth:`PeerTable.handle_timer` runs after each epoch change: the sweep maps
a chunk of ``gen`` through ``bytes.translate`` and ``find``\\ s the stale
slots, so live entries cost nothing to skip.

Capacity policy: at most ``capacity`` entries (stale ones included until
removed).  When full, an insertion first reclaims a stale entry in the new
key's two buckets; otherwise it is refused (``-1``) and the caller counts
``DropReason.PEER_TABLE_FULL``.  Live peers are never evicted to make
room: a flood of new addresses must not push out peers in use.

Queues (RFC 4380 §5.2.4, §5.4.1) live outside the arrays, in a dict keyed
by peer address, only for peers with packets waiting: at most
``queue_bytes`` per peer (1280, as Miredo) and ``max_queued_peers`` peers.

Slot numbers stay valid until the next insertion or removal (a
displacement may move entries).  Times cross the API as float seconds
(the caller's ``now``) and are stored as ticks of ``PEER_TIME_UNIT``
(:mod:`proxy.teredo.peer_rules`).

Storage comes from anonymous private memory maps with ``MADV_HUGEPAGE``:
zero pages arrive lazily and 2 MiB pages spare random lookups most TLB
misses (about 20 % faster here).  No file and no I/O are involved.
"""

from __future__ import annotations

import math
import mmap
from socket import inet_aton
from typing import Callable, Iterator

from proxy.constants import (
    MAX_PEERS,
    MAX_QUEUED_PEERS,
    PEER_BUCKET_SLOTS,
    PEER_CUCKOO_KICKS,
    PEER_EXPIRY,
    PEER_QUEUE_BYTES,
    PEER_SWEEP_INTERVAL,
    PEER_SWEEP_REMOVALS,
    PEER_SWEEP_SLOTS,
    PEER_TABLE_LOAD,
    PEER_TIME_UNIT,
    PEER_VALIDITY,
)
from proxy.teredo.peer_record import (
    B_BUBBLES,
    B_FLAGS,
    B_PINGS,
    I32_BUBBLE,
    I32_PING,
    I32_RX,
    I32_TX,
    LOCAL,
    QUEUED,
    REC,
    REC_SIZE,
    TRUSTED,
    U16_PORT,
    U32_IPV4,
    PeerInfo,
    PeerRecords,
    QueueItem,
    _Queue,
)
from proxy.teredo.peer_rules import Probe, bubble_rule, is_valid, ping_rule, ticks, ticks_up

__all__ = [
    "PeerTable", "PeerInfo", "QueueItem", "REC", "REC_SIZE",
    "TRUSTED", "LOCAL", "QUEUED", "B_FLAGS", "B_BUBBLES", "B_PINGS", "U32_IPV4", "U16_PORT",
    "I32_RX", "I32_TX", "I32_BUBBLE", "I32_PING",
    # re-exported rules
    "Probe", "bubble_rule", "ping_rule", "is_valid", "ticks", "ticks_up",
]


_ZERO_KEY = bytes(16)
_B = PEER_BUCKET_SLOTS
_BKEYS = _B * 16  # bytes of keys per bucket
assert _BKEYS == 128, "lookup shifts by 7: 8 slots of 16 bytes per bucket"
_TPS = 1.0 / PEER_TIME_UNIT



def _zeroed(size: int) -> mmap.mmap:
    """Zeroed anonymous private memory (see the module notes)."""
    m = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None and size >= 1 << 21:
        try:
            m.madvise(advice)
        except OSError:  # pragma: no cover - kernel without THP
            pass
    return m


class PeerTable(PeerRecords):
    """A fixed-capacity table of Teredo peers keyed by 16-byte IPv6 address."""

    __slots__ = (
        "capacity", "expiry", "queue_bytes", "max_queued_peers", "nbuckets", "slots",
        "keys", "gen", "rec", "rec_i32", "rec_u32", "rec_u16", "lookup",
        "_ep", "_count", "_queues", "_epoch_end", "_sweep_pos", "_sweep_again",
        "_sweep_due", "_stale", "_rr",
    )

    def __init__(
        self,
        capacity: int = MAX_PEERS,
        *,
        expiry: float = PEER_EXPIRY,
        queue_bytes: int = PEER_QUEUE_BYTES,
        max_queued_peers: int = MAX_QUEUED_PEERS,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if expiry <= 0:
            raise ValueError("expiry must be positive")
        self.capacity = capacity
        "Hard cap on entries."
        self.expiry = expiry
        "Epoch length: an entry lives expiry..2*expiry seconds after its last use."
        self.queue_bytes = queue_bytes
        "Per-peer queue budget in bytes."
        self.max_queued_peers = max_queued_peers
        "How many peers may have a queue at once."
        nb = self.nbuckets = max(1, math.ceil(capacity / (_B * PEER_TABLE_LOAD)))
        n = self.slots = nb * _B
        self.keys = _zeroed(16 * n)
        "Keys, 16 bytes per slot, searched with ``find``; zero in an empty slot."
        self.gen = _zeroed(n)
        "Epoch stamp of each slot's last use; 0 = empty."
        self.rec = _zeroed(REC_SIZE * n)
        "Packed records (:data:`REC`)."
        self.rec_i32 = memoryview(self.rec).cast("i")
        "The records as signed 32-bit words (times)."
        self.rec_u32 = memoryview(self.rec).cast("I")
        "The records as unsigned 32-bit words (IPv4)."
        self.rec_u16 = memoryview(self.rec).cast("H")
        "The records as 16-bit words (port)."
        self._ep = bytearray((1, 1))  # current and previous epoch stamps, 1..255
        self._count = 0
        self._queues: dict[bytes, _Queue] = {}
        self._epoch_end: float | None = None
        self._sweep_pos: int | None = None
        self._sweep_again = False
        self._sweep_due = 0.0
        self._stale = self._stale_table()
        self._rr = 0
        self.lookup: Callable[[bytes], int] = self._make_lookup()
        """``lookup(key) -> slot``: the slot of the live entry for ``key``
        (16 bytes), or -1; marks the entry used (the "last use" of the expiry
        rule).  A stale entry met here is removed and reported absent.  A
        closure over the arrays, so a call costs no attribute lookups."""

    # -- size -------------------------------------------------------------------
    def __len__(self) -> int:
        """Entries held, including stale ones not removed yet."""
        return self._count

    def nbytes(self) -> int:
        """Bytes of the preallocated arrays (queues excluded): 45 per slot."""
        return len(self.keys) + len(self.gen) + len(self.rec)

    def stats(self) -> dict[str, int]:
        """Counters for status files and benchmarks."""
        return {
            "peers": self._count,
            "capacity": self.capacity,
            "slots": self.slots,
            "queued_peers": len(self._queues),
            "queued_bytes": sum(q.nbytes for q in self._queues.values()),
            "array_bytes": self.nbytes(),
        }

    @property
    def epochs(self) -> tuple[int, int]:
        """Current and previous epoch stamps."""
        return self._ep[0], self._ep[1]

    # -- index ------------------------------------------------------------------
    def _make_lookup(self) -> Callable[[bytes], int]:
        nb = self.nbuckets
        find = self.keys.find
        gen = self.gen
        ep = self._ep
        slow = self._lookup_slow

        def lookup(key: bytes) -> int:
            if len(key) != 16:
                return -1
            try:
                h = hash(key)
            except TypeError:  # a bytearray or writable view: look up its bytes
                return lookup(bytes(key))
            s = (h % nb) << 7
            o = find(key, s, s + 128)
            if o < 0:
                s = ((h >> 32) % nb) << 7
                o = find(key, s, s + 128)
                if o < 0:
                    return -1
            if o & 15:
                return slow(key, h)
            i = o >> 4
            if gen[i] != ep[0]:
                return slow(key, h)
            return i

        return lookup

    def _lookup_slow(self, key: bytes, h: int) -> int:
        """The rest of :attr:`lookup`: matches straddling two keys, older epochs."""
        i = self._slot_of(key, h)
        if i < 0:
            return -1
        g = self.gen[i]
        cur, prev = self._ep
        if g == cur:
            return i
        if g == prev:
            self.gen[i] = cur
            return i
        if g:
            self._remove_slot(i)
        return -1

    def _slot_of(self, key: bytes, h: int) -> int:
        """The slot whose key equals ``key`` (any epoch), or -1."""
        nb, find = self.nbuckets, self.keys.find
        for s in ((h % nb) * _BKEYS, ((h >> 32) % nb) * _BKEYS):
            end = s + _BKEYS
            o = find(key, s, end)
            while o >= 0 and o & 15:  # a match straddling two keys
                o = find(key, o + 1, end)
            if o >= 0:
                return o >> 4
        return -1

    def _locate(self, key: bytes) -> int:
        """The slot holding ``key``, live or stale, without marking it used."""
        if type(key) is not bytes:
            key = bytes(key)
        if len(key) != 16 or key == _ZERO_KEY:
            return -1
        return self._slot_of(key, hash(key))

    def peek(self, key: bytes) -> int:
        """The slot of the live entry for ``key`` without counting a use, or -1."""
        i = self._locate(key)
        return i if i >= 0 and self._alive(i) else -1

    def _alive(self, i: int) -> bool:
        g = self.gen[i]
        return g != 0 and g in self._ep

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (bytes, bytearray)):
            return False
        i = self._locate(bytes(key))
        return i >= 0 and self._alive(i)

    def insert(self, key: bytes, now: float, ipv4: int | str = 0, port: int = 0, *, trusted: bool = False) -> int:
        """Add a peer, or return the slot of the existing live one; -1 if full.

        A new entry follows RFC 4380 §5.2.4 / §5.4.1: last reception and
        transmission "30 seconds in the past", no bubble or ping sent.
        ``key`` must be 16 bytes and not the unspecified address; ``ipv4``
        a dotted quad or its integer value.
        """
        if type(key) is not bytes:
            key = bytes(key)
        if len(key) != 16 or key == _ZERO_KEY:
            raise ValueError("a peer key is a 16-byte IPv6 address other than ::")
        if self._epoch_end is None:
            self._epoch_end = now + self.expiry
        i = self.lookup(key)
        if i >= 0:
            return i
        h = hash(key)
        nb = self.nbuckets
        b1 = h % nb
        if self._count >= self.capacity:
            if not (self._reclaim_stale(b1) or self._reclaim_stale((h >> 32) % nb)):
                return -1
        gen = self.gen
        i = gen.find(b"\0", b1 << 3, (b1 << 3) + 8)
        if i < 0:
            i = self._free_slot(b1)
            if i < 0:
                b2 = (h >> 32) % nb
                i = self._free_slot(b2)
                if i < 0:
                    i = self._displace(b1, b2)
                    if i < 0:
                        return -1
        self._count += 1
        self.keys[i << 4 : (i << 4) + 16] = key
        gen[i] = self._ep[0]
        if type(ipv4) is str:
            ipv4 = int.from_bytes(inet_aton(ipv4), "big")
        old = (now - PEER_VALIDITY) * _TPS
        old = int(old) if 0.0 <= old < 2e9 else ticks(now - PEER_VALIDITY)  # int() floors non-negative values
        REC.pack_into(self.rec, i * REC_SIZE, 1 if trusted else 0, 0, 0, ipv4, port, old, old, old, old)
        return i

    def _free_slot(self, b: int) -> int:
        """An empty slot in bucket ``b`` (reclaiming a stale entry if need be), or -1."""
        j = self.gen.find(b"\0", b * _B, b * _B + _B)
        if j >= 0:
            return j
        if self._reclaim_stale(b):
            return self.gen.find(b"\0", b * _B, b * _B + _B)
        return -1

    def _reclaim_stale(self, b: int) -> bool:
        """Remove one stale entry of bucket ``b``; True if there was one."""
        gen = self.gen
        cur, prev = self._ep
        for j in range(b * _B, b * _B + _B):
            g = gen[j]
            if g and g != cur and g != prev:
                self._remove_slot(j)
                return True
        return False

    def _displace(self, b1: int, b2: int) -> int:
        """Cuckoo displacement: free a slot in ``b1`` or ``b2`` by moving entries.

        Walks a path of entries, each bound for its other bucket, until one
        of those buckets has room; then moves them, last first, and returns
        the slot freed at the head of the path.  Nothing moves unless the
        path succeeds, so a failure loses no entry.
        """
        nb, keys = self.nbuckets, self.keys
        path: list[int] = []
        on_path: set[int] = set()
        b = b1 if self._rr & 1 else b2
        for _ in range(PEER_CUCKOO_KICKS):
            v = -1
            for k in range(_B):
                cand = b * _B + ((self._rr + k) & (_B - 1))
                if cand not in on_path:
                    v = cand
                    break
            self._rr += 1
            if v < 0:
                return -1
            vh = hash(keys[v * 16 : v * 16 + 16])
            vb1 = vh % nb
            alt = (vh >> 32) % nb if vb1 == b else vb1
            path.append(v)
            on_path.add(v)
            f = self._free_slot(alt)
            if f >= 0:
                dst = f
                for src in reversed(path):
                    self._move(src, dst)
                    dst = src
                return dst
            b = alt
        return -1

    def _move(self, src: int, dst: int) -> None:
        """Copy the entry in ``src`` to the empty slot ``dst`` and empty ``src``."""
        k, r = self.keys, self.rec
        k[dst * 16 : dst * 16 + 16] = k[src * 16 : src * 16 + 16]
        k[src * 16 : src * 16 + 16] = _ZERO_KEY
        r[dst * REC_SIZE : (dst + 1) * REC_SIZE] = r[src * REC_SIZE : (src + 1) * REC_SIZE]
        r[src * REC_SIZE + B_FLAGS] = 0
        self.gen[dst] = self.gen[src]
        self.gen[src] = 0

    def remove(self, key: bytes) -> bool:
        """Forget a peer (and its queue); True if it was present."""
        i = self._locate(key)
        if i < 0 or not self.gen[i]:
            return False
        self._remove_slot(i)
        return True

    def _remove_slot(self, i: int) -> list[QueueItem]:
        key = self.keys[i * 16 : i * 16 + 16]
        queued: list[QueueItem] = []
        if self.rec[i * REC_SIZE + B_FLAGS] & QUEUED:
            q = self._queues.pop(key, None)
            if q is not None:
                queued = list(q.items)
        self.keys[i * 16 : i * 16 + 16] = _ZERO_KEY
        self.gen[i] = 0
        self.rec[i * REC_SIZE + B_FLAGS] = 0
        self._count -= 1
        return queued

    def clear(self) -> None:
        """Forget every peer (Miredo resets its list when the client's address changes)."""
        self.keys[:] = bytes(len(self.keys))
        self.gen[:] = bytes(len(self.gen))
        self._queues.clear()
        self._count = 0
        self._sweep_pos = None

    def __iter__(self) -> Iterator[bytes]:
        """Keys of live entries (a snapshot: the table may change meanwhile)."""
        t = bytearray(256)
        t[self._ep[0]] = t[self._ep[1]] = 1
        live = self.gen[:].translate(bytes(t))
        out = []
        j = live.find(1)
        while j >= 0:
            out.append(self.keys[j * 16 : j * 16 + 16])
            j = live.find(1, j + 1)
        return iter(out)

    # -- expiry -----------------------------------------------------------------
    def _stale_table(self) -> bytes:
        t = bytearray(b"\x01" * 256)
        t[0] = t[self._ep[0]] = t[self._ep[1]] = 0
        return bytes(t)

    def poll_at(self) -> float | None:
        """When :meth:`handle_timer` has work: the next epoch or sweep step."""
        if self._epoch_end is None:
            return None
        if self._sweep_pos is not None:
            return min(self._epoch_end, self._sweep_due)
        return self._epoch_end

    def handle_timer(self, now: float) -> list[tuple[bytes, list[QueueItem]]]:
        """Advance the epoch when due and run one bounded sweep step.

        Returns the entries this step removed, each with the packets still
        queued for it (the caller may answer those with ICMPv6 errors).
        Harmless when called early.
        """
        out: list[tuple[bytes, list[QueueItem]]] = []
        if self._epoch_end is None:
            return out
        if now >= self._epoch_end:
            cur = self._ep[0]
            self._ep[1] = cur
            self._ep[0] = cur % 255 + 1
            self._stale = self._stale_table()
            self._epoch_end = max(self._epoch_end + self.expiry, now)
            if self._sweep_pos is None:
                self._sweep_pos = 0
                self._sweep_due = now
            else:
                self._sweep_again = True
        if self._sweep_pos is None or now < self._sweep_due:
            return out
        a = self._sweep_pos
        b = min(a + PEER_SWEEP_SLOTS, self.slots)
        chunk = self.gen[a:b].translate(self._stale)
        j = chunk.find(1)
        pos = b
        while j >= 0:
            i = a + j
            out.append((self.keys[i * 16 : i * 16 + 16], self._remove_slot(i)))
            if len(out) >= PEER_SWEEP_REMOVALS:
                pos = i + 1
                break
            j = chunk.find(1, j + 1)
        if pos >= self.slots:
            pos = 0 if self._sweep_again else None
            self._sweep_again = False
        self._sweep_pos = pos
        self._sweep_due = now + PEER_SWEEP_INTERVAL
        return out
