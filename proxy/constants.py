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
#: Receive (and send) buffer asked for the client's Teredo UDP socket.  It
#: must hold a whole TCP receive window (TCP_RECV_BUFFER, 1 MiB: ~860
#: datagrams of ~1.3 kB, each charged at its kernel truesize of 2-4 kB): a
#: bulk sender bursts up to the window, and with Linux's default
#: (net.core.rmem_default, 212992) about 13 % of a 16 MiB download was
#: dropped by the socket (UdpRcvbufErrors), each drop a recovery for the
#: sender and out-of-order work for us (benchmarks/client_socks.py: 64 ->
#: 86 MB/s; docs/client.md, Performance).  Without CAP_NET_ADMIN the kernel
#: caps the request at net.core.rmem_max (proxy.netio.set_buffers); it
#: doubles it for bookkeeping.
CLIENT_SOCKET_BUFFER = 4 << 20

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
#: The first discovery bubble leaves 0..this many seconds after qualification
#: (ours: the RFC gives no first delay; Miredo sends one at once; a little
#: jitter keeps clients that qualify together from bubbling in step).
DISCOVERY_FIRST_DELAY = 2.0
#: RFC 4380 §5.2.8: discovery bubbles go to 224.0.0.253 (TEREDO_DISCOVERY_IPV4)
#: port 3544 (TEREDO_PORT), IPv4 TTL 1, and carry IPv6 hop limit 1 (the RFC's
#: value; Miredo master sends 0, and neither side checks it on reception).
DISCOVERY_HOP_LIMIT = 1
DISCOVERY_TTL = 1
#: Local peers (§5.2.8) a client remembers; the oldest is forgotten first.
MAX_LOCAL_PEERS = 256
#: Unicast bubbles sent in answer to local peers' bubbles (§5.2.8), at most
#: this many per second with this burst (ours: the RFC sets no limit; without
#: one, anyone on the LAN could make us send a bubble for each they send).
DISCOVERY_REPLY_RATE = 5.0
DISCOVERY_REPLY_BURST = 20
#: Where a discovery bubble may come from (RFC 4380 §5.2.8 "on the local
#: subnet"; Miredo master commits 39f4b75/e5788ee: private or link-local).
DISCOVERY_LOCAL_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
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

# ---------------------------------------------------------------------------
# IPv6 host stack (proxy/ipstack: RFC 8200, RFC 4443, RFC 5722, RFC 8201)
# ---------------------------------------------------------------------------

#: IANA "default TTL" (RFC 1700 successor registry), also Linux's
#: net.ipv6.conf.*.hop_limit: the hop limit of every packet we originate.
IPV6_DEFAULT_HOP_LIMIT = 64
#: Bound on the extension headers walked in one packet.  RFC 8200 §4.1 allows
#: each header once (Destination Options twice); anything longer is an attack.
IPV6_MAX_EXTENSION_HEADERS = 16
#: RFC 8200 §4.5: abandon a reassembly 60 s after its first-arriving fragment.
REASSEMBLY_TIMEOUT = 60.0
#: Datagrams under reassembly at once (Linux bounds by memory only; FreeBSD
#: net.inet6.ip6.maxfragpackets scales with nmbclusters): a small host needs few.
REASSEMBLY_MAX_DATAGRAMS = 64
#: Fragment payload bytes buffered across all reassemblies (Linux
#: ip6frag_high_thresh is 4 MiB; a 1280-MTU host needs far less).
REASSEMBLY_MAX_BYTES = 1 << 20
#: FreeBSD net.inet6.ip6.maxfragsperpacket default: fragments per datagram.
REASSEMBLY_MAX_FRAGMENTS = 64
#: RFC 4443 §2.4(f) token bucket for the errors we originate: rate per second
#: and burst (Linux icmp_msgs_per_sec/icmp_msgs_burst are 1000/50; gVisor as
#: configured by tun2socks: 1000/50).  Echo replies are not limited (Linux's
#: default icmpv6 ratemask leaves them out).
IPSTACK_ICMP_ERROR_RATE = 100.0
IPSTACK_ICMP_ERROR_BURST = 50
#: RFC 4443 §2.4(c): an error message must not exceed the minimum IPv6 MTU.
ICMP_ERROR_MAX_PACKET = 1280
#: RFC 8201 §4: a lowered PMTU estimate may be raised again after 10 minutes.
PMTU_AGING = 600.0
#: Destinations remembered in the PMTU cache (least recently updated go first).
PMTU_CACHE_SIZE = 1024
#: RFC 6335 §6: the dynamic/private port range used for ephemeral ports,
#: chosen at random (RFC 6056 §3.3.1, algorithm 1).
EPHEMERAL_PORT_MIN = 49152
EPHEMERAL_PORT_MAX = 65535
#: Random draws before falling back to a scan of the ephemeral range.
EPHEMERAL_PORT_TRIES = 64
#: Global cap on TCP connections; new SYNs beyond it get an RST
#: (xjasonlyu/tun2socks PR #529 caps at 4096 for the same reason).
TCP_MAX_CONNECTIONS = 4096
#: Default and maximum listen backlog (Linux SOMAXCONN is 4096 since 5.4).
TCP_DEFAULT_BACKLOG = 128
TCP_MAX_BACKLOG = 4096
#: UDP sockets open at once, and each socket's receive queue (datagrams and
#: bytes; Linux net.core.rmem_default is 212992).
UDP_MAX_SOCKETS = 1024
UDP_RECV_QUEUE_DATAGRAMS = 256
UDP_RECV_QUEUE_BYTES = 212992
#: Largest UDP payload over IPv6 without jumbograms (65535 - 8).
UDP_MAX_PAYLOAD = 65527
#: Echo requests awaiting a reply (the --ping API); the oldest is forgotten.
ECHO_MAX_OUTSTANDING = 256
#: Interface-level events queued for the driver (datagrams, echo replies,
#: errors); beyond it datagram events are dropped (counted as queue-full).
INTERFACE_MAX_EVENTS = 4096

# ---------------------------------------------------------------------------
# TCP (RFC 9293, 7323, 2018, 6675, 8985, 6298, 5681, 6582, 5961, 1122, 6928)
# ---------------------------------------------------------------------------

#: RFC 9293 §3.7.1 / RFC 8200 §5: MSS over a 1280-byte IPv6 MTU (1280-40-20).
TCP_MSS_IPV6_MIN = 1220
#: RFC 9293 §3.7.1: the MSS assumed when the peer sends no MSS option
#: (IPv6 default: 1280 - 40 - 20).
TCP_DEFAULT_PEER_MSS = 1220
#: Linux tcp_min_snd_mss: the smallest peer MSS we honour (CVE-2019-11479).
TCP_MIN_SND_MSS = 48
#: RFC 9293 §3.1: fixed header length; RFC 9293 §3.1: options <= 40 bytes.
TCP_HEADER_LEN = 20
TCP_MAX_OPTIONS_LEN = 40
#: RFC 7323 §2.3: the largest window shift.
TCP_MAX_WSCALE = 14
#: RFC 7323 §3.2: length of the timestamps option with its two NOPs.
TCP_TS_OPTION_LEN = 12
#: RFC 7323 §5.5: ts_recent is invalid after 24 days of idleness.
TCP_TS_RECENT_MAX_IDLE = 24 * 86400.0
#: RFC 7323 §5.4: timestamp clock 1 ms per tick (within 1 ms .. 1 s).
TCP_TS_HZ = 1000
#: RFC 2018 §3: at most 4 SACK blocks (3 when timestamps are on).
TCP_MAX_SACK_BLOCKS = 4
#: RFC 5681 §3.2 / RFC 6675 §2: DupThresh.
TCP_DUPTHRESH = 3
#: RFC 6928: initial window of 10 segments (min(10*MSS, max(2*MSS, 14600))).
TCP_INITIAL_WINDOW_SEGMENTS = 10
#: RFC 5681 §3.1: loss window after a retransmission timeout, in segments.
TCP_LOSS_WINDOW_SEGMENTS = 1
#: RFC 6298 §2.1: initial RTO; §2.5: maximum (at least 60 s).
#: DEVIATION: RFC 6298 §2.4 rounds the RTO up to 1 s; Linux's 200 ms here.
TCP_INITIAL_RTO = 1.0
TCP_RTO_MIN = 0.2
TCP_RTO_MAX = 60.0
#: RFC 6298 §5.7: RTO once data flows when the SYN had to be retransmitted.
TCP_RTO_AFTER_SYN_TIMEOUT = 3.0
#: RFC 6298 §4: clock granularity G (the timestamp clock: 1 ms).
TCP_CLOCK_GRANULARITY = 0.001
#: RFC 1122 §4.2.3.5 (R2): retransmissions of data before giving up.
#: DEVIATION: a count, not a time (with the 60 s cap: several minutes, above
#: the 100 s minimum).
TCP_MAX_RETRANSMITS = 12
#: RFC 1122 §4.2.3.5: retransmissions of a SYN.  DEVIATION: the RFC asks for
#: at least 3 minutes; Linux's tcp_syn_retries = 6 gives about 127 s.
TCP_SYN_RETRIES = 6
#: RFC 1122 §4.2.3.2 / RFC 5681 §4.2: delayed ACK at most 500 ms; 40 ms is
#: Linux's minimum delayed-ACK timeout.
TCP_DELAYED_ACK = 0.04
#: RFC 5681 §4.2: ACK at least every second full-sized segment.
TCP_ACK_EVERY_SEGMENTS = 2
#: DEVIATION: RFC 9293 §3.4.2 (MSL = 2 min) gives 240 s; Linux's fixed 60 s TIME-WAIT.
TCP_TIME_WAIT = 60.0
#: DEVIATION (not in RFC 9293; Linux tcp_fin_timeout): an orphaned (fully
#: closed) FIN-WAIT-2 lives 60 s.
TCP_FIN_WAIT_2_TIMEOUT = 60.0
#: RFC 1122 §4.2.3.6: keepalive idle >= 2 h; Linux probe interval and count.
TCP_KEEPALIVE_IDLE = 7200.0
TCP_KEEPALIVE_INTERVAL = 75.0
TCP_KEEPALIVE_COUNT = 9
#: RFC 1122 §4.2.2.17: persist (zero-window probe) interval bounds.
TCP_PERSIST_MIN = 0.2
TCP_PERSIST_MAX = 60.0
#: RFC 5961 §7: challenge ACKs (and ACKs answering out-of-window pure ACKs,
#: Linux tcp_invalid_ratelimit) per connection and per interval.
TCP_CHALLENGE_ACK_LIMIT = 10
TCP_CHALLENGE_ACK_INTERVAL = 1.0
#: Pending control segments (RSTs) queued between two output calls.
TCP_MAX_PENDING_CONTROL = 4
#: Bound on out-of-order segments held for reassembly (bytes are bounded by
#: the receive window already; this bounds the bookkeeping).
TCP_MAX_OOO_SEGMENTS = 1024
#: Bound on the sender's SACK scoreboard (disjoint SACKed ranges).
TCP_MAX_SACK_RANGES = 256
#: Duplicate ACKs emitted per output batch for out-of-order arrivals.
TCP_MAX_DUPACKS_PER_FLUSH = 8
#: Default buffers: 512 KiB send, 1 MiB receive (window scale 5).
TCP_SEND_BUFFER = 512 * 1024
TCP_RECV_BUFFER = 1024 * 1024
#: Upper bound a configuration may ask for (1 GiB = 65535 << 14).
TCP_MAX_BUFFER = 65535 << TCP_MAX_WSCALE
#: RFC 9438 §4: CUBIC constants C and beta_cubic.
TCP_CUBIC_C = 0.4
TCP_CUBIC_BETA = 0.7
#: RFC 8985 §6.2 step 4: recoveries without a D-SACK before the reordering
#: window multiplier resets to 1.
TCP_RACK_REO_WND_PERSIST = 16
#: RFC 8985 §7.2: WCDelAckT, the worst-case delayed-ACK time a probe of a
#: single outstanding segment must wait out.
TCP_TLP_WORST_CASE_DELACK = 0.2
#: Floor of the probe timeout PTO = 2*SRTT (RFC 8985 §7.2 sets none; Linux
#: uses 10 ms): twice the 1 ms granularity of our timestamp clock and of
#: the event loop's timers.  Measured on the TUN path (0.3 ms RTT, 1 %
#: loss) a 10 ms floor left tail losses waiting 10 ms each.
TCP_TLP_MIN_PTO = 0.002
#: Segments of new data a tail loss probe may carry (RFC 8985 §7.3 says
#: one; two draw an immediate ACK from a receiver that delays ACKs for a
#: single segment: see DEVIATION in tcp_recovery.py).
TCP_TLP_NEW_SEGMENTS = 2
#: Transmission records kept for RACK (one per segment in flight); a bulk
#: flow needs send_buffer / MSS of them (430 at the defaults).  New data
#: waits beyond max(this, 2 * send_buffer / MSS), which only ever stops a
#: flood of tiny segments.
TCP_MAX_SENT_SEGMENTS = 4096

# ---------------------------------------------------------------------------
# SOCKS5 endpoint (RFC 1928, RFC 1929; limits chosen from the servers
# compared in shared/reference/stacks-and-socks.md §C)
# ---------------------------------------------------------------------------

#: RFC 1928 §3: the protocol version byte.
SOCKS_VERSION = 5
#: RFC 1929 §2: the username/password sub-negotiation version byte.
SOCKS_AUTH_VERSION = 1
#: RFC 1929 §2: ULEN and PLEN are one octet, 1-255.
SOCKS_MAX_CREDENTIAL = 255
#: CONTRACT.md: ``--socks`` default endpoint (loopback: never an open proxy).
SOCKS_DEFAULT_HOST = "127.0.0.1"
SOCKS_DEFAULT_PORT = 1080
#: Bound on bytes the codec buffers before the handshake ends.  The largest
#: handshake message is an RFC 1929 request (3 + 255 + 255 = 513 bytes); the
#: rest is room for data a client pipelines after its request (one driver
#: read of SOCKS_RELAY_CHUNK), as h11's ``max_incomplete_event_size``.
SOCKS_HANDSHAKE_BUFFER = 32768
#: Smallest handshake buffer a configuration may set: a greeting (257) plus
#: an RFC 1929 request (513) plus a request (262) fit in it.
SOCKS_HANDSHAKE_BUFFER_MIN = 1024
#: Whole handshake (greeting to parsed request) deadline.  Dante's
#: ``timeout.negotiate`` is 30 s, pproxy 60 s; browsers finish in one RTT.
SOCKS_HANDSHAKE_TIMEOUT = 10.0
#: Deadline for the connector to reach a CONNECT target (Teredo adds a
#: bubble exchange before the SYN, so this is longer than a LAN would need).
SOCKS_CONNECT_TIMEOUT = 30.0
#: A relayed TCP connection with no byte in either direction for this long is
#: closed (tun2socks closes idle flows after 60 s; Dante's ``timeout.io``).
SOCKS_IDLE_TIMEOUT = 300.0
#: A UDP association with no datagram either way for this long is closed
#: (shadowsocks-rust ``udp_timeout`` default: 5 minutes).
SOCKS_UDP_IDLE_TIMEOUT = 300.0
#: RFC 1928 §6 sets no limit on the wait for BIND's inbound connection.
SOCKS_BIND_TIMEOUT = 120.0
#: Global cap on client connections (3proxy ``maxconn`` default 500;
#: tun2socks PR #529 caps at 4096).  Beyond it new clients are closed.
SOCKS_MAX_CONNECTIONS = 512
#: Relay read size and per-direction write buffer high-water mark: the
#: per-connection memory bound is about 2 x (chunk + high water).
SOCKS_RELAY_CHUNK = 16384
SOCKS_RELAY_HIGH_WATER = 65536
#: Datagrams queued per UDP association towards the client before tail drop.
SOCKS_UDP_QUEUE = 256
#: Addresses of one resolved name tried per CONNECT before giving up.
SOCKS_MAX_ADDRESS_ATTEMPTS = 4
#: Names remembered per UDP association (no TTL: associations are short-lived;
#: oldest forgotten first), so a DNS lookup is not made per datagram.
SOCKS_UDP_NAME_CACHE = 64
#: RFC 1035 §2.3.4: a name is at most 255 octets on the wire (253 as text),
#: a label at most 63.
DNS_MAX_NAME = 253
DNS_MAX_LABEL = 63
