"""The peer table: index, capacity policy, expiry (fake clock), queues, flood resistance."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from proxy.constants import BUBBLE_MAX, PEER_EXPIRY, PEER_QUEUE_BYTES, PEER_VALIDITY
from proxy.teredo.peers import PeerTable, Probe, REC_SIZE, TRUSTED, bubble_rule, ping_rule


def keys(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(16) for _ in range(n)]


def drain_timer(t: PeerTable, now: float) -> list[bytes]:
    """Run handle_timer until the current sweep pass is done; return removed keys."""
    removed: list[bytes] = []
    for _ in range(10_000):
        removed += [k for k, _q in t.handle_timer(now)]
        p = t.poll_at()
        if p is None or p > now + 1:
            return removed
        now = max(now, p)
    raise AssertionError("sweep never finished")


# -- index ------------------------------------------------------------------------


def test_insert_lookup_remove(rng):
    t = PeerTable(1000)
    ks = keys(rng, 900)
    slots = [t.insert(k, 100.0, "192.0.2.1", 4000 + n) for n, k in enumerate(ks)]
    assert all(s >= 0 for s in slots)
    assert len(t) == 900
    for n, k in enumerate(ks):
        i = t.lookup(k)
        assert i >= 0 and t.key_at(i) == k
        assert t.endpoint(i) == ("192.0.2.1", 4000 + n)
    assert t.lookup(rng.randbytes(16)) == -1
    assert t.remove(ks[0]) and not t.remove(ks[0])
    assert t.lookup(ks[0]) == -1 and len(t) == 899
    assert set(t) == set(ks[1:])


def test_insert_existing_returns_same_slot(rng):
    t = PeerTable(10)
    k = rng.randbytes(16)
    i = t.insert(k, 0.0, 1, 2)
    assert t.insert(k, 5.0, 3, 4) == i
    assert t.mapping(i) == (1, 2)  # an existing entry is not overwritten


def test_lookup_accepts_any_bytes_like(rng):
    t = PeerTable(10)
    k = rng.randbytes(16)
    i = t.insert(bytearray(k), 0.0)
    assert t.lookup(bytearray(k)) == i == t.lookup(memoryview(k)) == t.lookup(k)


def test_bad_keys():
    t = PeerTable(10)
    with pytest.raises(ValueError):
        t.insert(bytes(16), 0.0)  # the unspecified address is the empty-slot marker
    with pytest.raises(ValueError):
        t.insert(b"short", 0.0)
    assert t.lookup(bytes(16)) == -1  # never matches an empty slot
    assert t.lookup(b"\x20\x01") == -1
    assert t.lookup(b"") == -1


def test_lookup_of_a_key_straddling_two_stored_keys():
    """find() can match across the boundary of two adjacent keys: must not count."""
    t = PeerTable(8)
    a = bytes(range(1, 17))
    b = bytes(range(17, 33))
    t.insert(a, 0.0)
    t.insert(b, 0.0)
    raw = t.keys[:]
    for off in range(0, len(raw) - 16):
        probe = raw[off : off + 16]
        if off % 16 and probe != bytes(16) and probe not in (a, b):
            assert t.lookup(probe) == -1


def test_fills_to_capacity_then_refuses(rng):
    t = PeerTable(5000)
    ks = keys(rng, 5000)
    assert all(t.insert(k, 1.0) >= 0 for k in ks)
    assert len(t) == 5000
    assert t.insert(rng.randbytes(16), 1.0) == -1  # full: refuse, evict nobody
    assert all(t.lookup(k) >= 0 for k in ks)


def test_full_table_reclaims_only_stale_entries(rng):
    t = PeerTable(64, expiry=30.0)
    old = keys(rng, 64)
    for k in old:
        t.insert(k, 0.0)
    # two epochs later every old entry is stale; a new key can reclaim one
    drain = t.handle_timer(30.0)
    t.handle_timer(60.0)
    del drain
    fresh = rng.randbytes(16)
    assert t.insert(fresh, 61.0) >= 0
    assert t.lookup(fresh) >= 0


def test_displacement_keeps_every_entry(rng):
    t = PeerTable(20_000)
    ks = keys(rng, 20_000)
    for n, k in enumerate(ks):
        i = t.insert(k, 1.0, n, n & 0xFFFF)
        assert i >= 0
    for n, k in enumerate(ks):
        i = t.lookup(k)
        assert i >= 0 and t.mapping(i) == (n, n & 0xFFFF)


def test_memory_per_slot_is_fixed():
    t = PeerTable(1000)
    assert t.nbytes() == t.slots * (16 + 1 + REC_SIZE) == t.slots * 45
    assert t.slots * 0.9 >= 1000


# -- expiry (Miredo's rule: 30-60 s after last use) ---------------------------------


def test_entry_lives_30_to_60_seconds_after_last_use(rng):
    t = PeerTable(100, expiry=PEER_EXPIRY)
    k = rng.randbytes(16)
    t.insert(k, 1000.0)
    assert t.poll_at() == 1000.0 + PEER_EXPIRY
    drain_timer(t, 1030.0)  # first epoch change: still alive (previous epoch)
    assert t.lookup(k) >= 0  # a use: stamped with the current epoch again
    drain_timer(t, 1060.0)
    assert t.lookup(k) >= 0  # used at 1030, alive at 1060
    drain_timer(t, 1090.0)
    assert k in t  # last use 1060: still in the previous epoch
    removed = drain_timer(t, 1120.0)
    assert removed == [k] and k not in t and len(t) == 0


def test_unused_entry_expires_within_60_seconds(rng):
    t = PeerTable(100)
    ks = keys(rng, 50)
    for k in ks:
        t.insert(k, 0.0)
    drain_timer(t, 29.0)
    assert len(t) == 50
    drain_timer(t, 30.0)
    assert len(t) == 50  # 30 s: previous epoch, alive
    removed = drain_timer(t, 60.0)
    assert sorted(removed) == sorted(ks) and len(t) == 0


def test_stale_entries_are_invisible_before_the_sweep(rng):
    t = PeerTable(100)
    k = rng.randbytes(16)
    t.insert(k, 0.0)
    t.handle_timer(30.0)
    t._ep[1] = t._ep[0]  # simulate a second epoch change without sweeping
    t._ep[0] = t._ep[0] % 255 + 1
    assert t.lookup(k) == -1 and len(t) == 0  # removed lazily


def test_sweep_is_bounded_per_call(rng, monkeypatch):
    import proxy.teredo.peers as peers

    monkeypatch.setattr(peers, "PEER_SWEEP_REMOVALS", 10)
    t = PeerTable(500)
    for k in keys(rng, 100):
        t.insert(k, 0.0)
    t.handle_timer(30.0)
    first = t.handle_timer(60.0)
    assert len(first) == 10  # bounded work per timer call
    assert t.poll_at() is not None and t.poll_at() <= 60.0 + 0.06
    assert len(first) + len(drain_timer(t, 60.1)) == 100


def test_handle_timer_early_is_harmless(rng):
    t = PeerTable(10)
    assert t.poll_at() is None and t.handle_timer(5.0) == []
    t.insert(rng.randbytes(16), 5.0)
    assert t.handle_timer(6.0) == [] and len(t) == 1


# -- fields and rules --------------------------------------------------------------


def test_new_entry_times_are_30_seconds_in_the_past(rng):
    t = PeerTable(10)
    i = t.insert(rng.randbytes(16), 100.0, "198.51.100.1", 3544)
    info = t.info(i)
    assert info.last_rx == info.last_tx == 100.0 - PEER_VALIDITY
    assert not info.trusted and info.bubbles == 0 and info.pings == 0 and info.queued == 0
    assert not t.is_reachable(i, 100.0)
    t.answered(i, 101.0)
    assert t.is_reachable(i, 101.0) and t.is_reachable(i, 131.0) and not t.is_reachable(i, 131.5)


def test_bubble_rule_rfc_5_2_6():
    assert bubble_rule(0, 0.0, 10.0) == (Probe.SEND, 1)
    assert bubble_rule(1, 10.0, 11.9) == (Probe.WAIT, 1)  # < 2 s after the previous
    assert bubble_rule(1, 10.0, 12.0) == (Probe.SEND, 2)
    assert bubble_rule(BUBBLE_MAX, 10.0, 11.0) == (Probe.WAIT, BUBBLE_MAX)
    assert bubble_rule(BUBBLE_MAX, 10.0, 12.0) == (Probe.GIVE_UP, BUBBLE_MAX)  # 4 per 300 s
    assert bubble_rule(BUBBLE_MAX, 10.0, 310.0) == (Probe.SEND, 1)  # new window


def test_ping_rule_rfc_5_2_4():
    assert ping_rule(0, 0.0, 1.0) == (Probe.SEND, 1)
    assert ping_rule(3, 1.0, 2.5) == (Probe.WAIT, 3)
    assert ping_rule(3, 1.0, 3.0) == (Probe.SEND, 4)
    assert ping_rule(4, 3.0, 5.0) == (Probe.GIVE_UP, 4)


def test_bubble_decision_never_sends_within_2_seconds(rng):
    """Stored times are rounded, but never so a bubble goes early."""
    t = PeerTable(10)
    i = t.insert(rng.randbytes(16), 0.0)
    sent = []
    now = 0.0
    while now < 60.0:
        if t.bubble_decision(i, now) is Probe.SEND:
            sent.append(now)
        now += 0.01
    assert len(sent) == BUBBLE_MAX
    assert all(b - a >= 2.0 for a, b in zip(sent, sent[1:]))
    assert t.bubble_decision(i, 60.0) is Probe.GIVE_UP
    t.answered(i, 61.0)
    assert t.bubble_decision(i, 61.0) is Probe.SEND


def test_ping_decision_counts(rng):
    t = PeerTable(10)
    i = t.insert(rng.randbytes(16), 0.0)
    assert [t.ping_decision(i, s) for s in (0.0, 1.0, 2.5, 5.0, 7.5, 10.0)] == [
        Probe.SEND, Probe.WAIT, Probe.SEND, Probe.SEND, Probe.SEND, Probe.GIVE_UP]


def test_flags_and_mapping(rng):
    t = PeerTable(10)
    i = t.insert(rng.randbytes(16), 0.0, trusted=True)
    assert t.is_trusted(i) and t.flags(i) & TRUSTED
    t.set_trusted(i, False)
    t.set_local(i)
    assert not t.is_trusted(i) and t.is_local(i)
    t.set_mapping(i, "203.0.113.9", 65535)
    assert t.endpoint(i) == ("203.0.113.9", 65535)
    t.touch_tx(i, 7.1)
    t.touch_rx(i, 7.1)
    assert t.last_tx(i) == 7.25 and t.last_rx(i) == 7.0  # tx rounded up, rx down


# -- queues -----------------------------------------------------------------------


def test_queue_is_fifo_and_bounded(rng):
    t = PeerTable(10)
    i = t.insert(rng.randbytes(16), 0.0)
    assert t.queue_push(i, b"a" * 600, "one")
    assert t.queue_push(i, b"b" * 600)
    assert not t.queue_push(i, b"c" * 100)  # 1300 > 1280
    assert t.queued_bytes(i) == 1200
    assert t.queue_push(i, b"d" * 80)
    assert t.queue_pop(i) == [(b"a" * 600, "one"), (b"b" * 600, None), (b"d" * 80, None)]
    assert t.queue_pop(i) == [] and t.queued_bytes(i) == 0
    assert not t.queue_push(i, b"x" * (PEER_QUEUE_BYTES + 1))


def test_queued_peers_are_bounded(rng):
    t = PeerTable(100, max_queued_peers=3)
    slots = [t.insert(k, 0.0) for k in keys(rng, 5)]
    assert [t.queue_push(s, b"p") for s in slots] == [True, True, True, False, False]
    assert len(t.queued_peers()) == 3


def test_queue_survives_displacement_and_goes_with_expiry(rng):
    t = PeerTable(2000)
    ks = keys(rng, 2000)
    i = t.insert(ks[0], 0.0)
    t.queue_push(i, b"kept", ("192.0.2.1", 1))
    for k in ks[1:]:
        t.insert(k, 0.0)  # may move ks[0] to another slot
    j = t.lookup(ks[0])
    assert t.queue_pop(j) == [(b"kept", ("192.0.2.1", 1))]
    t.queue_push(j, b"late")
    t.handle_timer(30.0)
    drain_timer(t, 60.0)
    assert t.queued_peers() == [] and len(t) == 0


def test_sweep_returns_queued_packets(rng):
    t = PeerTable(10)
    k = rng.randbytes(16)
    i = t.insert(k, 0.0)
    t.queue_push(i, b"pkt", "tag")
    t.handle_timer(30.0)
    out = []
    now = 60.0
    for _ in range(100):
        out += t.handle_timer(now)
        if t.poll_at() is None or t.poll_at() > now + 1:
            break
        now = t.poll_at()
    assert out == [(k, [(b"pkt", "tag")])]


# -- flood resistance ----------------------------------------------------------------


def test_lookups_read_at_most_two_buckets_whatever_the_keys(rng):
    """Structural: keys sharing every byte but one still land in random buckets."""
    t = PeerTable(10_000)
    base = bytearray(rng.randbytes(16))
    ks = []
    for n in range(9000):
        base[-2:] = n.to_bytes(2, "big")
        ks.append(bytes(base))
    assert all(t.insert(k, 0.0) >= 0 for k in ks)  # no pile-up: table fills normally
    buckets = {hash(k) % t.nbuckets for k in ks}
    assert len(buckets) > t.nbuckets * 0.9  # spread over (nearly) every bucket


def test_bucket_choice_is_keyed_per_process():
    """The same key maps to different buckets under different hash secrets:
    an attacker who does not know the secret cannot aim keys at one bucket."""
    code = (
        "from proxy.teredo.peers import PeerTable\n"
        "t = PeerTable(100000)\n"
        "print(hash(bytes(range(16))) % t.nbuckets)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    outs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=root)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout)
    assert len(outs) == 3


@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from(["ins", "del", "look", "tick"]), st.binary(min_size=0, max_size=17),
                          st.floats(0, 5)), max_size=200))
def test_random_operations_keep_invariants(ops):
    t = PeerTable(32)
    model: dict[bytes, None] = {}
    now = 0.0
    for op, k, dt in ops:
        now += dt
        if op == "ins":
            if len(k) != 16 or k == bytes(16):
                continue
            i = t.insert(k, now)
            if i >= 0:
                model[k] = None
                assert t.key_at(i) == k
        elif op == "del":
            t.remove(k)
            model.pop(k, None)
        elif op == "look":
            i = t.lookup(k)
            assert i == -1 or t.key_at(i) == k
        else:
            for key, _q in t.handle_timer(now):
                model.pop(key, None)
        assert len(t) <= t.capacity
    live = set(t)
    assert live <= set(model)
    assert len(t) >= len(live)
