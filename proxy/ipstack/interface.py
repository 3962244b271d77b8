"""The userspace IPv6 host: one interface, its addresses and its sockets.

Theory of operation
-------------------

:class:`Interface` is a sans-I/O IPv6 host (RFC 8200 §4, RFC 4443, RFC 1122)
on one point-to-point link (the Teredo tunnel, or a TUN device in tests).
Every received packet goes through one ingress point,
:meth:`Interface.ipv6_received`, which

1. checks the fixed header and that the packet is for us (one of our
   unicast addresses, or all-nodes ``ff02::1``/``ff01::1``); multicast and
   unspecified sources are dropped;
2. takes a fast path for a bare TCP segment to a unicast address (the bulk
   data case), else walks the extension headers
   (:func:`~proxy.ipstack.wire.ipv6.walk_extension_headers`), hands
   fragments to the :class:`~proxy.ipstack.reassembly.Reassembler` and
   processes the reassembled packet once complete;
3. dispatches to TCP (:class:`~proxy.ipstack.demux.TcpTable`), UDP
   (:class:`~proxy.ipstack.udp.UdpTable`) or ICMPv6 (echo, errors).

Anything unusable raises :class:`~proxy.errors.ParseError` inside; the
ingress point counts its reason in :attr:`Interface.drops` and, for a
:class:`~proxy.ipstack.wire.ipv6.ParamProblem`, answers with ICMPv6
Parameter Problem, subject to the RFC 4443 §2.4(e) rules and the §2.4(f)
rate limit.  ICMPv6 errors received are matched, through the packet they
quote, to the TCP connection, UDP socket or echo request that caused them.

Output is pulled: :meth:`Interface.ipv6_to_send` returns whole IPv6 packets
(our own datagrams larger than the path MTU are fragmented, RFC 8200 §5).
Time enters through :meth:`Interface.handle_timer`; :meth:`Interface.poll_at`
is the one deadline of the whole host (TCP timers, reassembly timeouts).
"""

from __future__ import annotations

import errno
import logging
from collections import Counter, deque

from proxy.constants import (
    ALL_NODES,
    ECHO_MAX_OUTSTANDING,
    INTERFACE_MAX_EVENTS,
    IPSTACK_ICMP_ERROR_BURST,
    IPSTACK_ICMP_ERROR_RATE,
    IPV6_DEFAULT_HOP_LIMIT,
    IPV6_MIN_MTU,
    TCP_DEFAULT_BACKLOG,
    UDP_MAX_PAYLOAD,
)
from proxy.errors import DropReason, ParseError
from proxy.ipstack.demux import ConnKey, TcpListener, TcpTable
from proxy.ipstack.events import (
    DatagramErrorReceived,
    DatagramReceived,
    EchoErrorReceived,
    EchoReplyReceived,
    InterfaceEvent,
)
from proxy.ipstack.icmp import PmtuCache, TokenBucket, build_error, error_forbidden, error_kind
from proxy.ipstack.ports import Rng
from proxy.ipstack.reassembly import Reassembler
from proxy.ipstack.tcp import TcpConfig, TcpConnection
from proxy.ipstack.udp import Endpoint, UdpSocket, UdpTable
from proxy.ipstack.wire.checksum import bare_payload_checksum_ok, checksum, pseudo_header_sum
from proxy.ipstack.wire.frag import fragment
from proxy.ipstack.wire.icmpv6 import (
    Echo,
    Icmpv6Type,
    QuotedPacket,
    TimeExceededCode,
    UnreachableCode,
)
from proxy.ipstack.wire.ipv6 import (
    IPV6_HEADER,
    IPV6_HEADER_LEN,
    NextHeader,
    ParamProblem,
    ParamProblemCode,
    UNSPECIFIED,
    walk_extension_headers,
)
from proxy.ipstack.wire.tcp import TcpSegment
from proxy.ipstack.wire.udp import UdpDatagram

__all__ = ["Interface"]

log = logging.getLogger(__name__)

#: ff01::1, interface-local all-nodes (RFC 4291 §2.7.1).
_ALL_NODES_IF = bytes.fromhex("ff010000000000000000000000000001")
_GROUPS = frozenset({ALL_NODES, _ALL_NODES_IF})
_WORD = 6 << 28
_TCP = NextHeader.TCP
_UDP = NextHeader.UDP
_ICMP = NextHeader.ICMPV6
_ERROR_TYPES = frozenset(
    {
        Icmpv6Type.DEST_UNREACHABLE,
        Icmpv6Type.PACKET_TOO_BIG,
        Icmpv6Type.TIME_EXCEEDED,
        Icmpv6Type.PARAMETER_PROBLEM,
    }
)

class Interface:
    """A sans-I/O IPv6 host.  Performs no I/O.

    Driven by three kinds of input:

    - IPv6 packets from the link: :meth:`ipv6_received`
    - the application, through the socket calls (``tcp_*``, ``udp_*``,
      :meth:`send_echo_request`)
    - the passage of time: :meth:`handle_timer`

    Output is pulled with :meth:`ipv6_to_send` and :meth:`next_event`;
    :meth:`poll_at` gives the next deadline.  Addresses are 16-byte
    ``bytes``; endpoints are ``(address, port)`` tuples.
    """

    def __init__(
        self,
        *,
        rng: Rng,
        addresses: tuple[bytes, ...] | list[bytes] = (),
        mtu: int = IPV6_MIN_MTU,
        hop_limit: int = IPV6_DEFAULT_HOP_LIMIT,
        tcp_config: TcpConfig | None = None,
        icmp_error_rate: float = IPSTACK_ICMP_ERROR_RATE,
        icmp_error_burst: int = IPSTACK_ICMP_ERROR_BURST,
    ) -> None:
        """
        :param rng: ``random.SystemRandom()`` in production, seeded in tests
            (ISNs, ephemeral ports, fragment identifications).
        :param addresses: our unicast addresses; the first is the primary
            (source of connections we open and of errors about multicast).
        :param mtu: link MTU (Teredo: 1280, RFC 4380 §5.1.2).
        :param hop_limit: hop limit of every packet we originate.
        :param tcp_config: configuration of TCP connections (its MSS is
            lowered to fit the MTU; default: TcpConfig with MSS = MTU - 60).
        """
        self.rng = rng
        self.hop_limit = hop_limit
        #: Why packets were dropped, by reason.
        self.drops: Counter[DropReason] = Counter()
        self._addrs: dict[bytes, None] = {}
        for addr in addresses:
            self.add_address(addr)
        self._pmtu = PmtuCache(mtu)
        self._icmp_bucket = TokenBucket(icmp_error_rate, icmp_error_burst)
        self._reasm = Reassembler()
        # Without an explicit configuration the MSS follows the link MTU
        # (1220 on Teredo's 1280); an explicit one is only ever lowered.
        base = tcp_config if tcp_config is not None else TcpConfig(mss=mtu - 60)
        self.tcp_config = TcpTable.config_for_mtu(base, mtu)
        self._tcp = TcpTable(self.tcp_config, rng, self.drops)
        #: Header prediction on raw packets (``TcpTable.fast_packet``), before
        #: a ``TcpSegment`` is built; off only to test it against the general path.
        self.tcp_fast_packets = True
        self._udp = UdpTable()
        self._readable: dict[UdpSocket, None] = {}
        self._events: deque[InterfaceEvent] = deque()
        self._echo: dict[tuple[bytes, int, int], float] = {}
        self._out: list[bytes] = []
        self._now = 0.0

    # ------------------------------------------------------------------ state

    @property
    def addresses(self) -> tuple[bytes, ...]:
        """Our unicast addresses, primary first."""
        return tuple(self._addrs)

    @property
    def primary_address(self) -> bytes | None:
        for addr in self._addrs:
            return addr
        return None

    def add_address(self, addr: bytes) -> None:
        """Own ``addr`` (appended; the first address added is the primary)."""
        if len(addr) != 16 or addr[0] == 0xFF or addr == UNSPECIFIED:
            raise ValueError(f"not a unicast IPv6 address: {addr.hex()}")
        self._addrs[bytes(addr)] = None

    def remove_address(self, addr: bytes, now: float) -> None:
        """Stop owning ``addr``; its TCP connections are reset.

        Used when the Teredo client requalifies with a new mapping: the
        connections of the old address can never be reached again.
        """
        self._now = now
        if addr in self._addrs:
            del self._addrs[addr]
            self._tcp.abort_local(addr, now)

    def set_addresses(self, addresses: tuple[bytes, ...] | list[bytes], now: float) -> None:
        """Replace the address set (order gives the primary)."""
        new = [bytes(a) for a in addresses]
        for addr in list(self._addrs):
            if addr not in new:
                self.remove_address(addr, now)
        self._addrs = {}
        for addr in new:
            self.add_address(addr)

    @property
    def mtu(self) -> int:
        """The link MTU (per-destination PMTU may be lower)."""
        return self._pmtu.link_mtu

    @mtu.setter
    def mtu(self, value: int) -> None:
        if value < IPV6_MIN_MTU:
            raise ValueError(f"MTU {value} below {IPV6_MIN_MTU}")
        self._pmtu.link_mtu = value
        self.tcp_config = TcpTable.config_for_mtu(self.tcp_config, value)

    def path_mtu(self, dst: bytes) -> int:
        """The MTU we use towards ``dst`` now."""
        return self._pmtu.get(dst, self._now)

    @property
    def tcp(self) -> TcpTable:
        """The TCP table (introspection: connection count, listeners)."""
        return self._tcp

    @property
    def reassembler(self) -> Reassembler:
        return self._reasm

    # ---------------------------------------------------------------- ingress

    def ipv6_received(self, packet: bytes, now: float) -> None:
        """Take one IPv6 packet from the link.  Never raises for any input.

        :param packet: the whole packet (trailing bytes past the Payload
            Length are ignored).
        :param now: current time, seconds.
        """
        self._now = now
        if type(packet) is not bytes:
            packet = bytes(packet)
        n = len(packet)
        # Fast path, the bulk-data case: a bare TCP segment (no extension
        # headers, no trailer) to one of our unicast addresses on an existing
        # connection.  Same checks as _dispatch, fewer calls.
        if n >= 60 and packet[6] == _TCP and packet[0] >> 4 == 6 and n == 40 + (packet[4] << 8 | packet[5]):
            dst = packet[24:40]
            src = packet[8:24]
            if dst in self._addrs and packet[8] != 0xFF and src != UNSPECIFIED:
                if not bare_payload_checksum_ok(packet, _TCP):
                    self._drop(ParseError(DropReason.BAD_CHECKSUM, "TCP checksum"))
                    return
                if self.tcp_fast_packets and self._tcp.fast_packet(packet, src, dst, now):
                    return  # header prediction on the raw bytes (tcp_fastpath.py)
                try:
                    seg = TcpSegment.parse(
                        memoryview(packet)[40:], src, dst, verify_checksum=False)
                except ParseError as exc:
                    self._drop(exc)
                    return
                self._tcp.segment_received(src, dst, seg, now)
                return
        self._process(packet, now, reassembled=False)

    def _process(self, packet: bytes, now: float, reassembled: bool) -> None:
        try:
            self._dispatch(packet, now, reassembled)
        except ParamProblem as exc:
            self._drop(exc)
            self._send_error(
                packet, Icmpv6Type.PARAMETER_PROBLEM, exc.code, exc.pointer, now,
                to_multicast=exc.to_multicast,
            )
        except ParseError as exc:
            self._drop(exc)

    def _drop(self, exc: ParseError) -> None:
        self.drops[exc.reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dropping packet: %s", exc)

    def _dispatch(self, packet: bytes, now: float, reassembled: bool) -> None:
        n = len(packet)
        if n < IPV6_HEADER_LEN:
            raise ParseError(DropReason.IPV6_TRUNCATED, f"{n} bytes")
        if packet[0] >> 4 != 6:
            raise ParseError(DropReason.NOT_IPV6, f"version {packet[0] >> 4}")
        end = IPV6_HEADER_LEN + (packet[4] << 8 | packet[5])
        if end > n:
            raise ParseError(DropReason.IPV6_TRUNCATED, f"payload length {end - 40} > {n - 40}")
        dst = packet[24:40]
        multicast = packet[24] == 0xFF
        if multicast:
            # DEVIATION: the only groups joined are the all-nodes ones
            # (RFC 4291 §2.8 also lists solicited-node groups, used by ND).
            if dst not in _GROUPS:
                raise ParseError(DropReason.NOT_FOR_US, "multicast group not joined")
        elif dst not in self._addrs:
            raise ParseError(DropReason.NOT_FOR_US, "destination not ours")
        src = packet[8:24]
        if packet[8] == 0xFF or src == UNSPECIFIED:
            raise ParseError(DropReason.BAD_SOURCE, "multicast or unspecified source")
        nxt = packet[6]
        if nxt == _TCP and not multicast:  # fast path: a bare segment
            self._tcp_input(packet, IPV6_HEADER_LEN, end, src, dst, now)
            return
        chain = walk_extension_headers(packet, end, multicast)
        proto, off = chain.protocol, chain.offset
        if proto == _TCP:
            if multicast:
                raise ParseError(DropReason.MULTICAST_DESTINATION, "TCP to a multicast group")
            self._tcp_input(packet, off, end, src, dst, now)
        elif proto == _UDP:
            self._udp_input(packet, off, end, src, dst, multicast, now)
        elif proto == _ICMP:
            self._icmp_input(packet, off, end, src, dst, multicast, now)
        elif proto == NextHeader.FRAGMENT:
            if reassembled:
                raise ParseError(DropReason.FRAGMENT_NESTED, "fragment inside a reassembled packet")
            whole = self._reasm.fragment_received(packet, end, off, chain.nh_offset, now)
            if whole is not None:
                self._process(whole, now, reassembled=True)
        elif proto == NextHeader.NO_NEXT_HEADER:
            raise ParseError(DropReason.NO_NEXT_HEADER, "no next header")
        else:
            # RFC 8200 §4: unrecognised Next Header: Parameter Problem code 1
            # pointing at the field that named it.
            raise ParamProblem(
                DropReason.UNKNOWN_NEXT_HEADER,
                ParamProblemCode.UNRECOGNIZED_NEXT_HEADER,
                chain.nh_offset,
                detail=f"next header {proto}",
            )

    # -------------------------------------------------------------------- TCP

    def _tcp_input(
        self, packet: bytes, off: int, end: int, src: bytes, dst: bytes, now: float
    ) -> None:
        seg = TcpSegment.parse(memoryview(packet)[off:end], src, dst)
        self._tcp.segment_received(src, dst, seg, now)

    def tcp_connect(
        self,
        remote: Endpoint,
        now: float,
        *,
        local_addr: bytes | None = None,
        local_port: int = 0,
        config: TcpConfig | None = None,
    ) -> TcpConnection:
        """Open a connection to ``remote``; its SYN goes out with the next flush.

        :raises OSError: no address, no free port, or the connection cap.
        """
        self._now = now
        src = self._source(local_addr)
        cfg = TcpTable.config_for_mtu(config or self.tcp_config, self._pmtu.get(remote[0], now))
        return self._tcp.connect(src, (bytes(remote[0]), remote[1]), now, cfg, local_port)

    def tcp_listen(
        self,
        port: int,
        *,
        local_addr: bytes | None = None,
        backlog: int = TCP_DEFAULT_BACKLOG,
        config: TcpConfig | None = None,
    ) -> TcpListener:
        """Accept connections on ``port`` (of ``local_addr``, or any of ours).

        Accepted connections appear as
        :class:`~proxy.ipstack.events.ConnectionAccepted` events.
        """
        cfg = TcpTable.config_for_mtu(config or self.tcp_config, self.mtu)
        return self._tcp.listen(local_addr, port, backlog, cfg)

    def tcp_close_listener(self, listener: TcpListener, now: float) -> None:
        self._now = now
        self._tcp.close_listener(listener, now)

    def tcp_send(self, conn: TcpConnection, data: bytes | memoryview) -> int:
        """Queue data; returns the bytes accepted (0 when the buffer is full)."""
        n = conn.send(data)
        self._tcp.touch(conn)
        return n

    def tcp_receive(self, conn: TcpConnection, max_bytes: int = -1) -> bytes:
        """Read in-order data (reading opens the window: an update may be due)."""
        data = conn.receive(max_bytes)
        self._tcp.touch(conn)
        return data

    def tcp_shutdown(self, conn: TcpConnection, now: float) -> None:
        """Half-close: FIN after the queued data."""
        self._now = now
        conn.shutdown(now)
        self._tcp.touch(conn)

    def tcp_close(self, conn: TcpConnection, now: float) -> None:
        self._now = now
        conn.close(now)
        self._tcp.touch(conn)

    def tcp_abort(self, conn: TcpConnection, now: float) -> None:
        self._now = now
        conn.abort(now)
        self._tcp.touch(conn)

    # -------------------------------------------------------------------- UDP

    def _udp_input(
        self, packet: bytes, off: int, end: int, src: bytes, dst: bytes, multicast: bool, now: float
    ) -> None:
        dgram = UdpDatagram.parse(memoryview(packet)[off:end], src, dst)
        sock = None if multicast else self._udp.lookup(dst, dgram.dst_port)
        if sock is None or not sock.accepts(src, dgram.src_port):
            self.drops[DropReason.NO_SOCKET] += 1
            # RFC 4443 §3.1: code 4 when "the transport protocol ... has no
            # listener"; never for multicast (§2.4(e.3)).
            self._send_error(
                packet, Icmpv6Type.DEST_UNREACHABLE, UnreachableCode.PORT, 0, now,
                to_multicast=False,
            )
            return
        if not sock.enqueue(dgram.payload, (src, dgram.src_port)):
            self.drops[DropReason.UDP_QUEUE_FULL] += 1
            return
        self._readable[sock] = None

    def udp_open(
        self,
        *,
        local_addr: bytes | None = None,
        local_port: int = 0,
        remote: Endpoint | None = None,
    ) -> UdpSocket:
        """Create a UDP socket (port 0: ephemeral); ``remote`` connects it.

        :raises OSError: port in use, or no port/socket left.
        """
        if local_addr is not None and local_addr not in self._addrs:
            raise OSError(errno.EADDRNOTAVAIL, f"{local_addr.hex()} is not one of our addresses")
        sock = self._udp.bind(local_addr, local_port, self.rng)
        if remote is not None:
            sock.remote = (bytes(remote[0]), remote[1])
        return sock

    def udp_send(
        self, sock: UdpSocket, data: bytes, remote: Endpoint | None, now: float
    ) -> None:
        """Send one datagram (fragmented if above the path MTU).

        :raises ValueError: closed socket, no destination, or too large.
        """
        self._now = now
        if sock.closed:
            raise ValueError("socket is closed")
        dest = remote if remote is not None else sock.remote
        if dest is None:
            raise ValueError("no destination for an unconnected socket")
        if len(data) > UDP_MAX_PAYLOAD:
            raise ValueError(f"{len(data)}-byte datagram exceeds {UDP_MAX_PAYLOAD}")
        dst = bytes(dest[0])
        src = self._source(sock.local_addr)
        payload = UdpDatagram(sock.local_port, dest[1], bytes(data)).emit(src, dst)
        self._output(src, dst, _UDP, payload, self.hop_limit)

    def udp_close(self, sock: UdpSocket) -> None:
        sock.closed = True
        self._udp.unbind(sock)
        self._readable.pop(sock, None)

    # ----------------------------------------------------------------- ICMPv6

    def _icmp_input(
        self, packet: bytes, off: int, end: int, src: bytes, dst: bytes, multicast: bool, now: float
    ) -> None:
        msg = memoryview(packet)[off:end]
        if len(msg) < 8:
            raise ParseError(DropReason.TRUNCATED, f"ICMPv6 message of {len(msg)} bytes")
        if checksum(msg, pseudo_header_sum(src, dst, len(msg), _ICMP)) != 0:
            raise ParseError(DropReason.BAD_CHECKSUM, "ICMPv6 checksum")
        typ = msg[0]
        if typ == Icmpv6Type.ECHO_REQUEST:
            if msg[1] != 0:
                raise ParseError(DropReason.BAD_HEADER, f"echo request code {msg[1]}")
            # RFC 4443 §4.2: the reply goes back from the address the request
            # was sent to, or from one of ours if that was a group.
            reply_src = dst if not multicast else self._source(None)
            reply = bytearray(msg)
            reply[0] = Icmpv6Type.ECHO_REPLY
            reply[2] = reply[3] = 0
            c = checksum(reply, pseudo_header_sum(reply_src, src, len(reply), _ICMP))
            reply[2], reply[3] = c >> 8, c & 0xFF
            self._output(reply_src, src, _ICMP, bytes(reply), self.hop_limit)
        elif typ == Icmpv6Type.ECHO_REPLY:
            echo = Echo.parse(msg)
            if self._echo.pop((src, echo.ident, echo.seq), None) is None:
                raise ParseError(DropReason.NO_SOCKET, "echo reply nobody waits for")
            self._event(EchoReplyReceived(src, echo.ident, echo.seq, echo.data, packet[7]))
        elif typ in _ERROR_TYPES:
            self._icmp_error_input(msg, src, now)
        else:
            # RFC 4443 §2.4(b): unknown informational messages are discarded.
            # DEVIATION: no Neighbor Discovery (RFC 4861) or MLD: RS/RA/NS/NA/
            # Redirect (133-137) are dropped; a Teredo tunnel and a TUN
            # device are point-to-point links without link-layer addresses.
            raise ParseError(DropReason.ICMP_IGNORED, f"ICMPv6 type {typ}")

    def _icmp_error_input(self, msg: memoryview, reporter: bytes, now: float) -> None:
        """RFC 4443 §2.4(d): hand the error to whoever sent the quoted packet."""
        typ, code = msg[0], msg[1]
        param = int.from_bytes(msg[4:8], "big")
        quote = QuotedPacket.parse(msg[8:])
        if quote.src not in self._addrs:
            raise ParseError(DropReason.ICMP_NOT_OURS, "quoted source is not ours")
        kind = error_kind(typ, code, param)
        if typ == Icmpv6Type.PACKET_TOO_BIG:
            lowered = self._pmtu.update(quote.dst, param, now)
            if lowered is None:
                raise ParseError(DropReason.ICMP_IGNORED, f"packet too big {param}: no change")
            kind = f"packet-too-big:{lowered}"
        if kind is None:
            raise ParseError(DropReason.ICMP_IGNORED, f"ICMPv6 error {typ}/{code}")
        proto = quote.protocol
        if proto == _TCP:
            # RFC 1122 §4.2.3.9: "TCP MUST act on an ICMP error message";
            # the connection decides which kinds are hard (RFC 5461).
            sport, dport = quote.ports
            key: ConnKey = (quote.src, sport, quote.dst, dport)
            if self._tcp.icmp_error(key, kind, now, quote.tcp_seq):
                return
            raise ParseError(DropReason.ICMP_UNMATCHED, f"TCP {kind}")
        if proto == _UDP:
            sport, dport = quote.ports
            sock = self._udp.lookup(quote.src, sport)
            if sock is not None and sock.accepts(quote.dst, dport) and not kind.startswith("packet-too-big"):
                sock.error_received(kind, (quote.dst, dport))
                self._readable[sock] = None
                return
            raise ParseError(DropReason.ICMP_UNMATCHED, f"UDP {kind}")
        if proto == _ICMP and quote.header[0] == Icmpv6Type.ECHO_REQUEST:
            ident = quote.header[4] << 8 | quote.header[5]
            seq = quote.header[6] << 8 | quote.header[7]
            if self._echo.pop((quote.dst, ident, seq), None) is not None:
                self._event(EchoErrorReceived(quote.dst, reporter, ident, seq, kind))
                return
        raise ParseError(DropReason.ICMP_UNMATCHED, f"protocol {proto} {kind}")

    def send_echo_request(
        self,
        dst: bytes,
        ident: int,
        seq: int,
        now: float,
        *,
        data: bytes = b"",
        hop_limit: int | None = None,
    ) -> None:
        """Ping ``dst``: the reply (or an error) comes back as an event.

        Requests wait for their answer in a table bounded by
        ``ECHO_MAX_OUTSTANDING`` (oldest forgotten first); call
        :meth:`cancel_echo` on timeout.
        """
        self._now = now
        dst = bytes(dst)
        src = self._source(None)
        key = (dst, ident & 0xFFFF, seq & 0xFFFF)
        self._echo.pop(key, None)
        self._echo[key] = now
        while len(self._echo) > ECHO_MAX_OUTSTANDING:
            del self._echo[next(iter(self._echo))]
        msg = Echo(True, ident & 0xFFFF, seq & 0xFFFF, bytes(data)).emit(src, dst)
        self._output(src, dst, _ICMP, msg, self.hop_limit if hop_limit is None else hop_limit)

    def cancel_echo(self, dst: bytes, ident: int, seq: int) -> None:
        """Forget an echo request (its reply, if any, will be dropped)."""
        self._echo.pop((bytes(dst), ident & 0xFFFF, seq & 0xFFFF), None)

    def _send_error(
        self,
        invoking: bytes,
        typ: int,
        code: int,
        param: int,
        now: float,
        *,
        to_multicast: bool,
    ) -> None:
        """Originate an ICMPv6 error about ``invoking`` (RFC 4443 §2.4)."""
        if error_forbidden(invoking, to_multicast=to_multicast):
            self.drops[DropReason.ICMP_ERROR_SUPPRESSED] += 1
            return
        if not self._icmp_bucket.consume(now):
            self.drops[DropReason.RATE_LIMITED] += 1
            return
        dst = invoking[24:40]
        src = dst if dst in self._addrs else self.primary_address
        if src is None:
            return
        self._out.append(
            build_error(typ, code, param, invoking, src, invoking[8:24], self.hop_limit)
        )

    # ----------------------------------------------------------- time, output

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now`` (harmless when early)."""
        self._now = now
        self._tcp.handle_timer(now)
        for first in self._reasm.handle_timer(now):
            # RFC 8200 §4.5: Time Exceeded code 1, quoting the first fragment.
            self.drops[DropReason.REASSEMBLY_TIMEOUT] += 1
            self._send_error(
                first, Icmpv6Type.TIME_EXCEEDED, TimeExceededCode.REASSEMBLY, 0, now,
                to_multicast=False,
            )

    def poll_at(self) -> float | None:
        """The next deadline (absolute, same clock as ``now``), or None.

        Valid after :meth:`ipv6_to_send`; before it, pending output makes
        the answer "now".
        """
        if self._tcp.busy or self._out:
            return self._now
        t = self._tcp.poll_at()
        r = self._reasm.poll_at()
        if r is not None and (t is None or r < t):
            return r
        return t

    def ipv6_to_send(self, now: float | None = None) -> list[bytes]:
        """Every packet due now, ready for the link.

        :param now: current time (default: the latest time seen); TCP stamps
            timestamps and arms timers with it.
        """
        if now is not None:
            self._now = now
        segs = self._tcp.segments_to_send(self._now)
        out = self._out
        self._out = []
        if segs:
            hl = self.hop_limit
            pack = IPV6_HEADER.pack
            join = b"".join
            for src, dst, seg in segs:
                head, payload = seg.emit_parts(src, dst)
                out.append(join((pack(_WORD, len(head) + len(payload), _TCP, hl, src, dst), head, payload)))
        return out

    def next_event(self) -> InterfaceEvent | None:
        """The next event for the driver, or None."""
        if self._events:
            return self._events.popleft()
        event = self._tcp.next_event()
        if event is not None:
            return event
        while self._readable:
            sock = next(iter(self._readable))
            got = sock.dequeue()
            if got is not None:
                return DatagramReceived(sock, got[0], got[1])
            err = sock.next_error()
            if err is not None:
                return DatagramErrorReceived(sock, err[0], err[1])
            del self._readable[sock]
        return None

    # -------------------------------------------------------------- internals

    def _event(self, event: InterfaceEvent) -> None:
        if len(self._events) >= INTERFACE_MAX_EVENTS:
            self.drops[DropReason.EVENT_QUEUE_FULL] += 1
            return
        self._events.append(event)

    def _source(self, local_addr: bytes | None) -> bytes:
        if local_addr is not None:
            if local_addr not in self._addrs:
                raise OSError(errno.EADDRNOTAVAIL, f"{local_addr.hex()} is not one of our addresses")
            return local_addr
        src = self.primary_address
        if src is None:
            raise OSError(errno.ENETUNREACH, "the interface has no address")
        return src

    def _output(self, src: bytes, dst: bytes, nxt: int, payload: bytes, hop_limit: int) -> None:
        """Queue one of our own datagrams, fragmenting it above the PMTU."""
        mtu = self._pmtu.get(dst, self._now)
        if IPV6_HEADER_LEN + len(payload) <= mtu:
            self._out.append(IPV6_HEADER.pack(_WORD, len(payload), nxt, hop_limit, src, dst) + payload)
        else:
            # RFC 8200 §5 / RFC 7739: unpredictable Identification values.
            self._out.extend(
                fragment(_WORD, hop_limit, src, dst, nxt, payload, mtu, self.rng.getrandbits(32))
            )
