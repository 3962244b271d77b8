#!/usr/bin/env bash
# Withdraw this host's anycast announcement of the Teredo prefix while the
# local relay does not work, announce it again when it does.
#
# The TUN device already takes the route away when the relay process dies
# (bird-bgp.conf).  This covers a relay that is alive but stuck: it rewrites
# its status file every 10 s, so a file older than MAX_AGE seconds, or a
# state other than "qualified" (serving), means stuck.  Run it every few
# seconds, e.g. from a systemd timer (OnUnitActiveSec=5s) or:
#   while sleep 5; do relay-health.sh; done
#
# Environment: STATUS_FILE (default /run/teredo-relay/status.json),
# BIRD_PROTOCOL (default teredo_anycast), MAX_AGE (default 30),
# BIRDC (default birdc; e.g. "birdc -s /run/bird/bird.ctl").
set -u
STATUS_FILE=${STATUS_FILE:-/run/teredo-relay/status.json}
BIRD_PROTOCOL=${BIRD_PROTOCOL:-teredo_anycast}
MAX_AGE=${MAX_AGE:-30}
BIRDC=${BIRDC:-birdc}

healthy() {
    [ -f "$STATUS_FILE" ] || return 1
    local age=$(( $(date +%s) - $(stat -c %Y "$STATUS_FILE") ))
    [ "$age" -le "$MAX_AGE" ] || return 1
    grep -q '"state": "qualified"' "$STATUS_FILE"
}

if healthy; then
    $BIRDC enable "$BIRD_PROTOCOL" >/dev/null
    echo "relay healthy: $BIRD_PROTOCOL enabled"
else
    $BIRDC disable "$BIRD_PROTOCOL" >/dev/null
    echo "relay not healthy: $BIRD_PROTOCOL disabled" >&2
    exit 1
fi
