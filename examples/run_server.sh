#!/usr/bin/env bash
# Run teredo-proxy as a Teredo server, configured by a Miredo-syntax file.
#
#   sudo examples/run_server.sh [extra teredo-proxy server flags]
#
# CONF (default: miredo-server.conf next to this script) must name an
# address this host owns in ServerBindAddress; the host also needs the next
# address (ServerBindAddress2, default primary + 1) for the NAT-type test.
# Environment: CONF, TEREDO_USER (default nobody), STATUS_FILE.
#
# The same without a file:
#   teredo-proxy server --address 198.51.100.1                 # secondary: .2
#   teredo-proxy server --address 198.51.100.1 --address2 198.51.100.2
# Miredo's own file works unchanged:
#   teredo-proxy server -c /etc/miredo/miredo-server.conf
# Without root and without relay discovery through this server (no raw socket):
#   teredo-proxy server -c "$CONF" --no-native
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CONF=${CONF:-$here/miredo-server.conf}
STATUS_FILE=${STATUS_FILE:-/tmp/teredo-server.status.json}

# Refuse a bad file before touching the network: exit 2 and the bad line.
teredo-proxy check-config --role server "$CONF" >/dev/null

# Both UDP sockets and the raw IPv6 socket (CAP_NET_RAW) are opened first,
# then the process becomes TEREDO_USER.  JSON log lines suit journald; the
# status file is rewritten atomically (state, counters, drop reasons).
exec teredo-proxy server -c "$CONF" \
    --user "${TEREDO_USER:-nobody}" \
    --status-file "$STATUS_FILE" \
    --log-format json \
    "$@"
