"""``teredo-proxy stress``: the JSON contract of ``stress peers`` and the pieces of ``stress relay``."""

from __future__ import annotations

import json
import os

import pytest

from proxy.apps.stress import _blast, _endpoint, bench_dict_baseline, bench_peers, in_netns, ip6_in_receives
from proxy.cli import main
from proxy.errors import ConfigError


def test_stress_peers_prints_json_lines_ending_with_the_table(capsys):
    assert main(["stress", "peers", "--count", "20000", "--rounds", "1", "--baseline"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["impl"] for r in rows] == ["dict-of-slots", "peer-table"]
    last = rows[-1]
    # what the acceptance check reads: the first key with "byte" and "peer", the first with "lookup"
    bpp = next(last[k] for k in last if "byte" in k and "peer" in k)
    lps = next(last[k] for k in last if "lookup" in k)
    assert bpp == last["bytes_per_peer"] and lps == last["lookups_per_s"]
    assert 0 < bpp < 100 and lps > 0 and last["found_check"] is True
    assert last["table_array_bytes_per_peer"] == pytest.approx(45 * last["slots"] / 20000, rel=0.01)


def test_bench_functions_agree_on_counts():
    assert bench_peers(5000, rounds=1)["count"] == 5000
    assert bench_dict_baseline(5000, rounds=1)["count"] == 5000


@pytest.mark.parametrize("text", ["1.2.3.4", "1.2.3.4:0", "x:3544", "1.2.3.4:70000", ":3544"])
def test_bad_targets(text):
    with pytest.raises(ConfigError):
        _endpoint(text)


def test_bad_stress_arguments_exit_2(capsys):
    assert main(["stress", "relay", "--target", "127.0.0.1:9", "--size", "20"]) == 2
    assert main(["stress", "peers", "--count", "0"]) == 2


def test_blast_paces_to_the_rate():
    sent_packets: list[bytes] = []
    sent, errors, elapsed = _blast([sent_packets.append, sent_packets.append], [b"a", b"b"], rate=2000, duration=0.25)
    assert errors == 0 and sent == len(sent_packets)
    assert abs(sent - 2000 * elapsed) <= 70  # within a batch of the target
    assert sent_packets[:4] == [b"a", b"b", b"a", b"b"]  # round-robin over the clients


def test_counter_reads_this_namespace():
    assert in_netns(None, ip6_in_receives) >= 0


@pytest.mark.skipif(os.geteuid() != 0, reason="setns needs root")
def test_in_netns_runs_in_another_namespace():
    import subprocess

    name = "relay-st" + os.urandom(3).hex()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        here = os.readlink("/proc/self/ns/net")
        there = in_netns(name, lambda: os.readlink("/proc/self/ns/net"))
        assert there != here and os.readlink("/proc/self/ns/net") == here
        with pytest.raises(RuntimeError):
            in_netns(name, lambda: 1 / 0)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
