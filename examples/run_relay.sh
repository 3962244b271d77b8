#!/usr/bin/env bash
# Run teredo-proxy as a Teredo relay, configured by a Miredo-syntax file.
#
#   sudo examples/run_relay.sh [extra teredo-proxy relay flags]
#
# The host needs native IPv6; the relay creates the TUN device named in
# InterfaceName, routes the Teredo prefix (2001::/32) to it, and the kernel
# forwards between that device and the native interface.  Announce the
# prefix to your IPv6 routers (docs/scaling.md: BGP/OSPF with BIRD).
# Environment: CONF (default: miredo.conf next to this script),
# TEREDO_USER (default nobody), STATUS_FILE.
#
# The same without a file:
#   teredo-proxy relay --bind 198.51.100.10 --interface teredo
# Miredo's own file works unchanged:
#   teredo-proxy relay -c /etc/miredo/miredo.conf
# No TUN device: the prefix arrives on eth0 and a blackhole route keeps the
# kernel from answering it (needs CAP_NET_RAW only):
#   ip -6 route add blackhole 2001::/32
#   teredo-proxy relay -c "$CONF" --native raw --interface eth0
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CONF=${CONF:-$here/miredo.conf}
STATUS_FILE=${STATUS_FILE:-/tmp/teredo-relay.status.json}

teredo-proxy check-config --role relay "$CONF" >/dev/null

# The kernel forwards between the TUN device and the native interface.
sysctl -qw net.ipv6.conf.all.forwarding=1

# The TUN device (CAP_NET_ADMIN) and the UDP socket are opened first, then
# the process becomes TEREDO_USER; the device goes away when the relay exits.
exec teredo-proxy relay -c "$CONF" \
    --user "${TEREDO_USER:-nobody}" \
    --status-file "$STATUS_FILE" \
    --log-format json \
    "$@"
