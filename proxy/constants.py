"""Every protocol number, timer and limit, each with its source.

One module so that an operator (or a reviewer) can see every bound the
implementation enforces in one place.  Sections: Teredo wire, Teredo client,
peers and relay, Teredo server, IPv6 stack, SOCKS5.  Values copied from Miredo
are marked with the Miredo file they were measured from; everything else
cites the RFC section.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------
# Teredo wire format (RFC 4380 §2, §4, §5.1)
# ---------------------------------------------------------------------------

#: RFC 4380 §2.7: the Teredo UDP port (servers listen on it).
TEREDO_PORT = 3544
#: RFC 4380 §2.6: the global Teredo service prefix 2001:0000::/32, as an int.
TEREDO_PREFIX = 0x20010000
#: RFC 4380 §2.6: the same prefix as 4 bytes.
TEREDO_PREFIX_BYTES = b"\x20\x01\x00\x00"
#: Windows XP's pre-RFC prefix 3ffe:831f::/32; Miredo rewrites it in RAs.
TEREDO_PREFIX_OBSOLETE = 0x3FFE831F
#: RFC 4380 §2.17: IPv4 multicast group for local client discovery.
TEREDO_DISCOVERY_IPV4 = "224.0.0.253"

#: RFC 4380 §4: the cone flag bit of the 16-bit flags field.
FLAG_CONE = 0x8000
#: RFC 5991 §4: the 12 random "A" bits of ``CRAAAAUG AAAAAAAA``.
FLAG_RANDOM_MASK = 0x3CFF
#: RFC 5991 §4: the bits that must be zero (R, U, G).
FLAG_RESERVED_MASK = 0x4300

#: RFC 4380 §5.1.1: encapsulation indicator types.
AUTH_INDICATOR = 0x0001
ORIGIN_INDICATOR = 0x0000
#: RFC 4380 §5.1.1: origin indication length; minimum authentication length.
ORIGIN_LEN = 8
AUTH_MIN_LEN = 13
#: RFC 4380 §5.1.1: nonce length inside the authentication indicator.
NONCE_LEN = 8

#: RFC 4380 §5.1.2: default Teredo link MTU (and the IPv6 minimum MTU).
TEREDO_MTU = 1280
#: IPv6 minimum link MTU (RFC 8200 §5).
IPV6_MIN_MTU = 1280
#: Largest UDP payload over IPv4 (65535 - 20 - 8).
MAX_UDP_PAYLOAD = 65507

#: RFC 4380 §5.2.1: restricted RS source, as sent by Vista and Miredo.
LINK_LOCAL_RESTRICTED = bytes.fromhex("fe80000000000000" "0000ffffffffffff")
#: RFC 4380 §5.2.1: cone RS source fe80::8000:5445:5245:444f ("TEREDO").
LINK_LOCAL_CONE = bytes.fromhex("fe80000000000000" "8000544552454" "44f")
#: ff02::2, all-routers: the RS destination (RFC 4861 §6.3.7).
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
#: ff02::1, all-nodes: the destination of local discovery bubbles (§5.2.8).
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")

#: RFC 4861 §4.1, §4.2: hop limit of RS/RA.
ND_HOP_LIMIT = 255
#: Miredo packets.c: bubbles carry hop limit 0 (the RFC leaves it free).
BUBBLE_HOP_LIMIT = 0
#: Miredo packets.c: hop limit of the direct-connectivity echo request.
PING_HOP_LIMIT = 128

# ---------------------------------------------------------------------------
# Teredo client (RFC 4380 §5.2, RFC 5991)
# ---------------------------------------------------------------------------

#: RFC 4380 §5.2.1: qualification timeout T and retry count N.
QUALIFICATION_TIMEOUT = 4.0
QUALIFICATION_RETRIES = 3
#: RFC 4380 §5.2: default refresh interval; refresh is randomised to 75-100 %.
REFRESH_INTERVAL = 30.0
REFRESH_RANDOM_MIN = 0.75
#: Backoff between failed qualification rounds (Miredo waits a fixed 100 s).
RESTART_BACKOFF_MIN = 4.0
RESTART_BACKOFF_MAX = 100.0
#: How long to keep listening for the cone RA (answered from the secondary
#: address) after the restricted RA came back: both RSs leave together, so
#: the cone RA is due about one round trip later.  Grace = max(MIN, 4 x RTT),
#: at most the qualification timeout T.  (Ours: the RFC probes one after the
#: other, which costs N x T = 12 s behind every non-cone NAT.)
CONE_GRACE_MIN = 0.02
CONE_GRACE_RTT_FACTOR = 4.0
#: How long the driver may take to answer a ResolveServer request.
RESOLVE_TIMEOUT = 10.0
#: A clock jump larger than this (suspend, VM pause) makes a qualified client
#: refresh at once: the NAT mapping may have expired meanwhile.
CLOCK_JUMP = 2 * 30.0
#: Nonces and client id of an RS (RFC 4380 §5.2.1; RFC 5991 §3: at least 64 bits).
RS_NONCE_LEN = 8
#: Bound on outstanding RS nonces remembered per qualification round.
MAX_RS_NONCES = 16
#: RFC 4380 §5.2.9: the relay-discovery echo carries at least 64 random bits.
PING_NONCE_LEN = 8
#: Peers a client remembers (Miredo's non-Judy build: 1024; a client talks
#: to few peers, a relay to many).
CLIENT_MAX_PEERS = 4096
#: Same-NAT peers whose advertised local endpoints (RFC 6081 §5.6) a client remembers.
MAX_PEERS_ALTERNATES = 256
#: When a rate rule says "wait" (the 2 s spacing is not over), look again this much later.
PROBE_RECHECK = 0.1
#: Peers of a client that may have packets queued at once.
CLIENT_MAX_QUEUED_PEERS = 1024
#: Packets delivered to the local stack but not yet pulled are bounded too.
CLIENT_STACK_QUEUE = 4096

# ---------------------------------------------------------------------------
# Peers (client and relay: RFC 4380 §5.2.4, §5.2.6, §5.4; Miredo peerlist.c)
# ---------------------------------------------------------------------------

#: RFC 4380 §5.2: an entry is valid for 30 s after the last reception.
PEER_VALIDITY = 30.0
#: Miredo peerlist.c: an entry lives 30-60 s after its last use (two generations).
PEER_EXPIRY = 30.0
#: Miredo relay.c: hard cap on the peer table (Judy build).
MAX_PEERS = 1_048_576
#: RFC 4380 §5.2.4 / Miredo peerlist.c: queue budget per not-yet-reachable peer.
PEER_QUEUE_BYTES = 1280
#: RFC 4380 §5.2.6: no bubble within 2 s of the previous one; 4 per 300 s.
BUBBLE_INTERVAL = 2.0
BUBBLE_MAX = 4
BUBBLE_WINDOW = 300.0
#: RFC 4380 §5.2.4 case 2 / §5.2.9: echo test timeout and repeats (4 pings).
PING_INTERVAL = 2.0
PING_MAX = 4
#: RFC 4380 §5.2.8: local peers stay valid 600 s; discovery every 200-300 s.
LOCAL_PEER_VALIDITY = 600.0
DISCOVERY_INTERVAL_MIN = 200.0
DISCOVERY_INTERVAL_MAX = 300.0
#: Miredo relay.c: ICMPv6 errors generated at most 10 per second.
ICMP_ERROR_RATE = 10.0
ICMP_ERROR_BURST = 10
#: RFC 4443 §2.4(c): an ICMPv6 error quotes at most 1280 - 40 - 8 bytes.
ICMP_ERROR_QUOTE = 1232

# ---------------------------------------------------------------------------
# Teredo server (RFC 4380 §5.3; Miredo server.c)
# ---------------------------------------------------------------------------

#: Miredo server.c: RA router lifetime 0 (not a default router) ...
RA_ROUTER_LIFETIME = 0
#: ... and retransmission timer 2000 ms.
RA_RETRANS_TIMER_MS = 2000
#: RFC 4861 §4.6.2: infinite prefix lifetimes.
RA_PREFIX_LIFETIME = 0xFFFFFFFF
#: DEVIATION (Miredo server.c, Microsoft servers): non-bubble ICMPv6 with a
#: payload above 88 bytes is not forwarded, so the server is no open relay.
SERVER_MAX_ICMP_PAYLOAD = 88
#: Per-source-address token bucket for Router Solicitations (RS per second,
#: burst).  A client sends at most 3 RS per 4 s while qualifying.
SERVER_RS_RATE = 5.0
SERVER_RS_BURST = 20
#: Bound on the per-source rate-limit table; oldest sources are forgotten.
SERVER_RATE_TABLE_SIZE = 65536
#: Global cap on packets the server forwards to native IPv6, per second.
SERVER_NATIVE_RATE = 20000.0
SERVER_NATIVE_BURST = 2000
#: Miredo server.c: retries of a raw send failing with an ICMP-induced errno.
SERVER_RAW_SEND_RETRIES = 10

# ---------------------------------------------------------------------------
# Peer table layout (proxy/teredo/peers.py; our design, see docs/relay.md)
# ---------------------------------------------------------------------------

#: Slots per bucket of the two-choice cuckoo table: one bucket's keys are a
#: 128-byte run searched with a single C-level ``bytearray.find``.
PEER_BUCKET_SLOTS = 8
#: Buckets are sized so the nominal capacity fills at most this share of the
#: slots; bucketized cuckoo hashing with 8-slot buckets inserts reliably to
#: about 0.97 (Erlingsson et al. 2006), so 0.93 leaves headroom.
PEER_TABLE_LOAD = 0.9
#: Displacements tried before an insertion gives up (table "full").
PEER_CUCKOO_KICKS = 256
#: Times are stored as signed 32-bit counts of this many seconds (a 17-year
#: range of monotonic time); rate rules round transmissions up, receptions
#: down, so every RFC interval is honoured conservatively.
PEER_TIME_UNIT = 0.25
#: Expiry sweep: slots examined (C-level scan) and entries removed per
#: ``handle_timer`` call, and the delay between calls while a pass runs.
PEER_SWEEP_SLOTS = 65536
PEER_SWEEP_REMOVALS = 8192
PEER_SWEEP_INTERVAL = 0.05
#: Peers that may hold queued packets at once (each at most
#: PEER_QUEUE_BYTES): bounds queue memory to about 20 MiB.
MAX_QUEUED_PEERS = 16384

# ---------------------------------------------------------------------------
# Teredo relay (RFC 4380 §5.4; Miredo relay.c, relayd.c)
# ---------------------------------------------------------------------------

#: Miredo relayd.c: a relay's default tunnel MTU (InterfaceMTU).
RELAY_MTU = 1280
#: Miredo relayd.c: the relay's tunnel interface carries this link-local
#: address (fe80::ffff:ffff:ffff/64) and routes the prefix with metric 1024.
RELAY_LINK_LOCAL = LINK_LOCAL_RESTRICTED
RELAY_ROUTE_METRIC = 1024
#: Largest IPv6 packet read from the native side or a UDP datagram
#: (RFC 4380 §5.1.2 allows up to the UDP maximum).
RELAY_MAX_PACKET = MAX_UDP_PAYLOAD
#: Datagrams drained per readiness callback before yielding to the loop,
#: so one busy socket cannot starve the other direction.
RELAY_DRAIN_BATCH = 256
#: Default hard cap on the relay's peer table (Miredo's Judy cap).
RELAY_MAX_PEERS = MAX_PEERS
