"""Teredo client qualification and maintenance (RFC 4380 §5.2.1, §5.2.5; RFC 5991). No I/O.

Theory of operation
-------------------
One server at a time, taken in order from the configured list:

1. **Resolve** (``RESOLVING``): a host name is handed to the driver as a
   :class:`ResolveServer` event; the answer comes back through
   :meth:`Qualifier.server_resolved`.  IPv4 literals skip this state.
2. **Cone and restricted probes** (``PROBING``): two Router Solicitations
   leave together for the primary address, one from the cone link-local
   address (the server answers it from its *secondary* address, so only a
   NAT with endpoint-independent filtering lets the answer in) and one from
   the restricted address (answered from the primary).  Both carry fresh
   random nonces (RFC 5991 §3).  Every T = 4 s they are repeated with new
   nonces, N = 3 times in all (§5.2.1).
3. **Cone grace** (``CONE_WAIT``): the restricted RA is in; the cone RA is
   due about one round trip later.  It gets ``max(20 ms, 4 x RTT)``.  If it
   arrives the NAT is a cone (or there is none: ``open``).
4. **Secondary check** (``SECONDARY``): restricted RSs to the server's
   primary and *secondary* addresses from a separate *probe socket* (the
   driver's second UDP socket: ``probe_datagrams_to_send`` /
   ``probe_datagram_received``).  One mapping for both means the NAT maps
   independently of the destination (``restricted``); two mean a
   symmetric NAT.  RFC 4380 refuses service then; RFC 6081 §3.1 keeps the
   address (``accept_symmetric``).  Why a second socket: the filtered cone
   RA left state in stateful NATs (Linux conntrack takes the tuple
   secondary:3544 <-> public:P), so an RS from the main socket to the
   secondary gets another port -- the RFC order then calls every Linux NAT
   symmetric -- and worse, Linux hands that second port to every *new*
   destination of the main socket (relays, peers) until it expires, which
   breaks the mapping in our address.  A fresh socket sees neither.  With
   ``separate_probe`` off the main socket does the RFC's probe, and a
   port-preserving collision rule corrects the verdict.  The cone RA must be
   over before any RS reaches the secondary address.
5. **Qualified** (``QUALIFIED``): the address is
   ``prefix:server:flags:~port:~ipv4`` with 12 random flag bits (RFC 5991),
   kept while the mapping stays the same.  Maintenance (§5.2.5): when no
   packet came from the server for a randomised 75-100 % of the refresh
   interval, an RS with the same cone bit as at qualification goes out
   (``REFRESHING``).  A changed mapping starts a full requalification (the
   NAT may have changed too); silence after N tries loses the address and
   fails over to the next server.
6. **Backoff** (``BACKOFF``): when every server failed, wait (exponential,
   4 s to 100 s, jittered; Miredo waits a fixed 100 s) and start again.

Time is an argument; a clock that jumps far ahead (suspend) triggers an
immediate refresh, and one that goes backwards re-arms the deadline.
Every state change goes through :meth:`Qualifier._set_state`, checked
against :data:`TRANSITIONS` and logged ``old -> new``.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.config.client import ClientConfig
from proxy.constants import (
    CLOCK_JUMP,
    CONE_GRACE_MIN,
    CONE_GRACE_RTT_FACTOR,
    FLAG_CONE,
    FLAG_RANDOM_MASK,
    MAX_RS_NONCES,
    QUALIFICATION_RETRIES,
    QUALIFICATION_TIMEOUT,
    REFRESH_RANDOM_MIN,
    RESOLVE_TIMEOUT,
    RESTART_BACKOFF_MAX,
    RESTART_BACKOFF_MIN,
    RS_NONCE_LEN,
)
from proxy.errors import DropReason, ParseError
from proxy.teredo import auth as teredo_auth
from proxy.teredo.address import TeredoAddress
from proxy.teredo.client_events import (
    AddressChanged,
    ClientEvent,
    NatType,
    QualificationLost,
    Qualified,
    ResolveServer,
    ServerFailed,
    StateChanged,
)
from proxy.teredo.ipv4 import global_check
from proxy.teredo.messages import QualificationAnswer, parse_router_advertisement, router_solicitation
from proxy.teredo.packet import TeredoPacket

if TYPE_CHECKING:
    import random

__all__ = ["QState", "Qualifier", "TRANSITIONS", "PUBLIC_STATE", "ServerEntry"]

Endpoint = tuple[str, int]
log = logging.getLogger("proxy.teredo.qualification")


class QState(enum.Enum):
    """Internal states; :data:`PUBLIC_STATE` maps them to the status-file names."""

    IDLE = "idle"
    RESOLVING = "resolving"
    PROBING = "probing"
    CONE_WAIT = "cone-wait"
    SECONDARY = "secondary"
    QUALIFIED = "qualified"
    REFRESHING = "refreshing"
    BACKOFF = "backoff"


S = QState
#: Allowed transitions (the machine's whole shape, in one table).
TRANSITIONS: dict[QState, frozenset[QState]] = {
    S.IDLE: frozenset({S.RESOLVING, S.PROBING}),
    S.RESOLVING: frozenset({S.PROBING, S.RESOLVING, S.BACKOFF}),
    S.PROBING: frozenset({S.CONE_WAIT, S.SECONDARY, S.QUALIFIED, S.RESOLVING, S.PROBING, S.BACKOFF}),
    S.CONE_WAIT: frozenset({S.QUALIFIED, S.SECONDARY}),
    S.SECONDARY: frozenset({S.QUALIFIED, S.RESOLVING, S.PROBING, S.BACKOFF}),
    S.QUALIFIED: frozenset({S.REFRESHING, S.PROBING, S.RESOLVING}),
    S.REFRESHING: frozenset({S.QUALIFIED, S.PROBING, S.RESOLVING, S.BACKOFF}),
    S.BACKOFF: frozenset({S.RESOLVING, S.PROBING}),
}

#: Internal state -> CONTRACT.md state.
PUBLIC_STATE: dict[QState, str] = {
    S.IDLE: "starting",
    S.RESOLVING: "qualifying",
    S.PROBING: "qualifying",
    S.CONE_WAIT: "qualifying",
    S.SECONDARY: "qualifying",
    S.QUALIFIED: "qualified",
    S.REFRESHING: "qualified",
    S.BACKOFF: "failed",
}


class Probe(enum.Enum):
    """What an outstanding RS was for; decides where its RA must come from."""

    CONE = "cone"
    RESTRICTED = "restricted"
    SECONDARY = "secondary"
    PROBE_PRIMARY = "probe-primary"
    REFRESH = "refresh"
    REFRESH_CONE = "refresh-cone"


@dataclass(frozen=True, slots=True)
class ServerEntry:
    """One configured server: a name or literal, and an optional secondary address."""

    name: str
    secondary: str | None = None


@dataclass(slots=True)
class _Sent:
    probe: Probe
    source: Endpoint
    "The endpoint the RA must come from."
    at: float
    via_probe: bool = False
    "Sent from the separate probe socket (its answer must come back there)."


def _next_ipv4(addr: str) -> str:
    return str(ipaddress.IPv4Address((int(ipaddress.IPv4Address(addr)) + 1) & 0xFFFFFFFF))


class Qualifier:
    """The qualification and maintenance machine of one Teredo client.

    Inputs: :meth:`start`, :meth:`server_resolved`, :meth:`ra_received`,
    :meth:`server_seen`, :meth:`handle_timer`.  Outputs, pulled:
    :meth:`datagrams_to_send`, :meth:`next_event`, :meth:`poll_at`.
    """

    def __init__(self, config: ClientConfig, *, rng: random.Random, local: Endpoint | None = None) -> None:
        self.config = config
        self.rng = rng
        self.local = local
        self.servers = tuple(
            ServerEntry(name, config.server2 if i == 0 else None) for i, name in enumerate(config.servers)
        )
        self._is_global = global_check(config.allow_loopback)
        self.state = QState.IDLE
        self.index = 0
        "Position in :attr:`servers` of the server in use."
        self.primary: Endpoint | None = None
        self.secondary: Endpoint | None = None
        self.deadline: float | None = None
        self.tries = 0
        self.failures = 0
        "Consecutive full rounds through the server list that failed."
        self._sent: dict[bytes, _Sent] = {}
        self._restricted: QualificationAnswer | None = None
        self._probe_answers: dict[Probe, QualificationAnswer] = {}
        self._probe_datagrams: list[tuple[bytes, Endpoint]] = []
        self._rtt = QUALIFICATION_TIMEOUT
        self.answer: QualificationAnswer | None = None
        "The RA that qualified us (primary mapping)."
        self.nat = NatType.UNKNOWN
        self.address: bytes | None = None
        "Our Teredo address while qualified."
        self.mtu = 1280
        self._random_flags = 0
        self._flags_for: tuple[Endpoint, str, int] | None = None
        "(mapping, server, prefix) the random flag bits were drawn for; kept across a loss."
        self._last_now: float | None = None
        self._server_rx = 0.0
        self._refresh_frac = 1.0
        self._old_address: bytes | None = None
        self._datagrams: list[tuple[bytes, Endpoint]] = []
        self._events: deque[ClientEvent] = deque()

    # -- outputs -------------------------------------------------------------
    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        out, self._datagrams = self._datagrams, []
        return out

    def probe_datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        """RSs for the separate probe socket (``config.separate_probe``)."""
        out, self._probe_datagrams = self._probe_datagrams, []
        return out

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def poll_at(self) -> float | None:
        return self.deadline

    @property
    def public_state(self) -> str:
        return PUBLIC_STATE[self.state]

    @property
    def qualified(self) -> bool:
        return self.state in (QState.QUALIFIED, QState.REFRESHING) and self.address is not None

    @property
    def server(self) -> str | None:
        return self.primary[0] if self.primary else None

    def is_server(self, addr: Endpoint) -> bool:
        return addr == self.primary or addr == self.secondary

    # -- state ------------------------------------------------------------------
    def _set_state(self, new: QState) -> None:
        old = self.state
        if new not in TRANSITIONS[old]:
            raise RuntimeError(f"qualification: no transition {old.value} -> {new.value}")
        self.state = new
        log.debug("qualification %s -> %s", old.value, new.value)
        if PUBLIC_STATE[old] != PUBLIC_STATE[new]:
            log.info("state %s -> %s", PUBLIC_STATE[old], PUBLIC_STATE[new])
            self._events.append(StateChanged(PUBLIC_STATE[old], PUBLIC_STATE[new]))

    def _clock(self, now: float) -> None:
        """Time-drift handling: a backwards clock re-arms, a big jump refreshes."""
        last, self._last_now = self._last_now, now
        if last is None:
            return
        if now < last:
            log.warning("clock went backwards by %.3f s; re-arming timers", last - now)
            if self.deadline is not None:
                self.deadline = min(self.deadline, now + QUALIFICATION_TIMEOUT)
            self._server_rx = min(self._server_rx, now)
        elif now - last > CLOCK_JUMP and self.state is QState.QUALIFIED:
            log.info("clock jumped %.0f s (suspend?); refreshing the mapping now", now - last)
            self._server_rx = now - self.config.refresh_interval
            self.deadline = now

    # -- inputs -------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Begin with the first server."""
        self._clock(now)
        if self.state is QState.IDLE:
            self._start_server(now)

    def server_resolved(self, name: str, ipv4s: list[str] | tuple[str, ...], now: float) -> None:
        """The driver's answer to :class:`ResolveServer` (empty: resolution failed)."""
        self._clock(now)
        if self.state is not QState.RESOLVING or self.servers[self.index].name != name:
            return  # a late answer to an abandoned request
        for ip in ipv4s:
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                continue
            if self._is_global(ip):
                self._begin_probing(ip, now)
                return
        self._server_failed(now, f"{name} did not resolve to a global IPv4 address")

    def server_seen(self, now: float) -> None:
        """A valid packet came from our server: the mapping is alive (§5.2.5)."""
        self._server_rx = max(self._server_rx, now)

    def handle_timer(self, now: float) -> None:
        """Act on an expired deadline; harmless when called early."""
        self._clock(now)
        if self.deadline is None or now < self.deadline:
            return
        st = self.state
        if st is QState.RESOLVING:
            self._server_failed(now, "name resolution timed out")
        elif st is QState.PROBING:
            if self.tries < QUALIFICATION_RETRIES:
                self._send_probes(now)
            else:
                self._server_failed(now, f"no reply from Teredo server after {self.tries} solicitations")
        elif st is QState.CONE_WAIT:
            self._begin_secondary(now)
        elif st is QState.SECONDARY:
            if self.tries < QUALIFICATION_RETRIES:
                self._send_secondary(now)
            else:
                # DEVIATION: RFC 4380 §5.2.1 gives up when the secondary address
                # stays silent; we keep the primary's answer and report "unknown"
                # (Miredo never asks the secondary at all).
                log.warning("no mapping comparison from the secondary server address %s; NAT type unknown",
                            self.secondary[0])
                self._qualify(self._restricted, NatType.UNKNOWN, now)
        elif st is QState.QUALIFIED:
            due = self._server_rx + self.config.refresh_interval * self._refresh_frac
            if now >= due:
                self.tries = 0
                self._set_state(QState.REFRESHING)
                self._send_refresh(now)
            else:
                self.deadline = due
        elif st is QState.REFRESHING:
            if self.tries < QUALIFICATION_RETRIES:
                self._send_refresh(now)
            else:
                self._lose(now, "no reply to refresh solicitations")
        elif st is QState.BACKOFF:
            self.index = 0
            self._start_server(now)

    def ra_received(self, packet: TeredoPacket, addr: Endpoint, now: float, *, via_probe: bool = False) -> None:
        """A Router Advertisement from ``addr``; raises ParseError when refused.

        Checks, in order: an authentication indicator whose nonce is one of
        ours (RFC 5991), the endpoint that RS was sent to, the HMAC when
        secure qualification is on (§5.2.2), the RA validity rules of
        §5.2.1, the prefix naming our server, the link-local destination
        matching the probe, a global mapped address.
        """
        self._clock(now)
        a = packet.auth
        if a is None:
            raise ParseError(DropReason.BAD_NONCE, "RA without authentication indicator")
        sent = self._sent.get(a.nonce)
        if sent is None:
            raise ParseError(DropReason.BAD_NONCE, "RA nonce is not one of ours")
        if addr != sent.source or via_probe != sent.via_probe:
            raise ParseError(DropReason.NOT_FROM_SERVER, f"RA from {addr[0]}:{addr[1]}, expected {sent.source}")
        if self.config.auth_key:
            if a.client_id != self.config.auth_id or not teredo_auth.verify(
                a, self.config.auth_key, packet.origin, packet.ipv6
            ):
                raise ParseError(DropReason.AUTH_FAILED, "RA authentication value")
        if a.confirmation != 0:
            raise ParseError(DropReason.AUTH_FAILED, f"confirmation byte {a.confirmation}")
        answer = parse_router_advertisement(packet)
        if self.primary is None or answer.server != self.primary[0]:
            raise ParseError(DropReason.BAD_RA, f"prefix names server {answer.server}")
        cone_probe = sent.probe in (Probe.CONE, Probe.REFRESH_CONE)
        if answer.cone != cone_probe:
            raise ParseError(DropReason.BAD_RA, "RA destination does not match the solicitation")
        if not self._is_global(answer.mapped[0]):
            raise ParseError(DropReason.BAD_RA, f"mapped address {answer.mapped[0]} is not global")
        del self._sent[a.nonce]
        self.server_seen(now)
        self._answer(sent, answer, now)

    # -- transitions ----------------------------------------------------------------
    def _answer(self, sent: _Sent, answer: QualificationAnswer, now: float) -> None:
        st = self.state
        if sent.probe is Probe.CONE and st in (QState.PROBING, QState.CONE_WAIT):
            nat = NatType.OPEN if self.local is not None and answer.mapped == self.local else NatType.CONE
            self._qualify(answer, nat, now)
        elif sent.probe is Probe.RESTRICTED and st is QState.PROBING:
            self._restricted = answer
            self._rtt = max(0.0, now - sent.at)
            if self.config.cone_probe:
                grace = min(QUALIFICATION_TIMEOUT, max(CONE_GRACE_MIN, CONE_GRACE_RTT_FACTOR * self._rtt))
                self._set_state(QState.CONE_WAIT)
                self.deadline = now + grace
            else:
                self._begin_secondary(now)
        elif sent.probe in (Probe.SECONDARY, Probe.PROBE_PRIMARY) and st is QState.SECONDARY:
            self._probe_answers[sent.probe] = answer
            if self.config.separate_probe:
                # both mappings come from the probe socket: compare them
                a = self._probe_answers.get(Probe.PROBE_PRIMARY)
                b = self._probe_answers.get(Probe.SECONDARY)
                if a is None or b is None:
                    return
            else:
                a, b = self._restricted, answer
            self._mapping_verdict(a, b, now)
        elif sent.probe in (Probe.REFRESH, Probe.REFRESH_CONE) and st is QState.REFRESHING:
            if answer.mapped == self.answer.mapped and answer.prefix == self.answer.prefix:
                self.mtu = answer.mtu
                self._set_state(QState.QUALIFIED)
                self._schedule_refresh(now)
            else:
                log.info("mapping changed from %s:%d to %s:%d; requalifying", *self.answer.mapped, *answer.mapped)
                self._old_address = self.address
                self._begin_probing(self.primary[0], now)
        # else: a late answer for a phase already over (duplicate RA): ignore

    def _mapping_verdict(self, first: QualificationAnswer, second: QualificationAnswer, now: float) -> None:
        """RFC 4380 §5.2.1: one mapping for both server addresses, or a symmetric NAT."""
        main = self._restricted
        if first.mapped == second.mapped:
            nat = NatType.OPEN if self.local is not None and main.mapped == self.local else NatType.RESTRICTED
            self._qualify(main, nat, now)
        elif not self.config.separate_probe and self._cone_probe_collision(first, second):
            log.info("secondary mapping %s:%d differs from %s:%d only because the unanswered cone RA "
                     "took the port (port-preserving NAT): restricted", *second.mapped, *first.mapped)
            self._qualify(main, NatType.RESTRICTED, now)
        elif self.config.accept_symmetric:
            log.info("symmetric NAT: %s:%d via the primary, %s:%d via the secondary (RFC 6081 §3.1)",
                     *first.mapped, *second.mapped)
            self._qualify(main, NatType.SYMMETRIC, now)
        else:
            self.nat = NatType.SYMMETRIC
            self._server_failed(now, "symmetric NAT (RFC 4380 §5.2.1; accept_symmetric is off)")

    def _cone_probe_collision(self, first: QualificationAnswer, second: QualificationAnswer) -> bool:
        """Whether a port-preserving NAT moved the secondary mapping because of the cone probe.

        DEVIATION (a refinement of RFC 4380 §5.2.1 learnt in the lab): the
        cone RA that a non-cone NAT filters out still leaves state behind in
        stateful NATs such as Linux conntrack (MASQUERADE): the tuple
        (secondary:3544, public:P) is taken, so our own later RS to the
        secondary address cannot keep port P and gets another one.  Followed
        to the letter, the RFC order calls every such NAT symmetric (Windows
        clients are known to).  When the NAT preserved our local port
        towards the primary and only the port differs towards the
        secondary, the collision explains the difference; a symmetric NAT
        (``--random-fully``) does not preserve ports to begin with.
        """
        return (
            self.config.cone_probe
            and self.local is not None
            and first.mapped[0] == second.mapped[0]
            and first.mapped[1] == self.local[1]
        )

    def _start_server(self, now: float) -> None:
        entry = self.servers[self.index]
        self._sent.clear()
        try:
            ipaddress.IPv4Address(entry.name)
        except ValueError:
            self._set_state(QState.RESOLVING)
            self.deadline = now + RESOLVE_TIMEOUT
            self._events.append(ResolveServer(entry.name))
            return
        self._begin_probing(entry.name, now)

    def _begin_probing(self, ipv4: str, now: float) -> None:
        entry = self.servers[self.index]
        port = self.config.server_port
        self.primary = (ipv4, port)
        self.secondary = (entry.secondary or _next_ipv4(ipv4), port)
        self._restricted = None
        self.tries = 0
        self._sent.clear()
        self._set_state(QState.PROBING)
        self._send_probes(now)

    def _begin_secondary(self, now: float) -> None:
        self.tries = 0
        self._probe_answers = {}
        self._set_state(QState.SECONDARY)
        self._send_secondary(now)

    def _qualify(self, answer: QualificationAnswer, nat: NatType, now: float) -> None:
        # RFC 5991 §4: 12 random flag bits, new for every new mapping.  The
        # same mapping with the same server keeps them -- also after the
        # server was lost for a while -- so it gives the same address and
        # the stack's open connections survive the outage.
        key = (answer.mapped, answer.server, answer.prefix)
        if key != self._flags_for:
            self._random_flags = self.rng.getrandbits(16) & FLAG_RANDOM_MASK
            self._flags_for = key
        # RFC 5991: the cone bit is left clear even behind a cone NAT, so that
        # the address does not advertise the NAT type (as Miredo and Windows do).
        flags = self._random_flags & ~FLAG_CONE
        addr = TeredoAddress(answer.server, flags, answer.mapped[1], answer.mapped[0], answer.prefix).emit()
        self.answer, self.nat, self.mtu = answer, nat, answer.mtu
        old = self._old_address or (self.address if self.address != addr else None)
        self.address = addr
        self._old_address = None
        self.failures = 0
        self._sent.clear()
        self._set_state(QState.QUALIFIED)
        self._schedule_refresh(now)
        if old is not None and old != addr:
            self._events.append(AddressChanged(old, addr))
        log.info("qualified: %s (NAT %s, MTU %d, server %s)", TeredoAddress.parse(addr), nat.value,
                 answer.mtu, answer.server)
        self._events.append(Qualified(addr, answer.mtu, nat, answer.server))

    def _schedule_refresh(self, now: float) -> None:
        # RFC 4380 §5.2.5 / §5.2: randomised between 75 % and 100 % of the interval.
        self._refresh_frac = self.rng.uniform(REFRESH_RANDOM_MIN, 1.0)
        self._server_rx = max(self._server_rx, now)
        self.deadline = self._server_rx + self.config.refresh_interval * self._refresh_frac

    def _lose(self, now: float, reason: str) -> None:
        addr = self.address
        log.warning("lost Teredo connectivity with %s: %s", self.server, reason)
        self.address = None
        self.answer = None
        if addr is not None:
            self._events.append(QualificationLost(addr, reason))
        self._server_failed(now, reason)

    def _server_failed(self, now: float, reason: str) -> None:
        """Fail over to the next server, or back off after a full round."""
        name = self.servers[self.index].name
        if self.address is not None:
            self._events.append(QualificationLost(self.address, reason))
            self.address = None
            self.answer = None
        self._sent.clear()
        self.index += 1
        if self.index < len(self.servers):
            log.warning("server %s: %s; trying %s", name, reason, self.servers[self.index].name)
            self._events.append(ServerFailed(name, reason, None))
            self._start_server(now)
            return
        self.failures += 1
        delay = min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_MIN * 2 ** (self.failures - 1))
        delay *= self.rng.uniform(0.75, 1.0)
        log.warning("server %s: %s; every server failed, retrying in %.0f s", name, reason, delay)
        self._set_state(QState.BACKOFF)
        self.deadline = now + delay
        self._events.append(ServerFailed(name, reason, self.deadline))

    # -- solicitations ---------------------------------------------------------------
    def _nonce(self) -> bytes:
        return self.rng.getrandbits(8 * RS_NONCE_LEN).to_bytes(RS_NONCE_LEN, "big")

    def _rs(self, probe: Probe, cone: bool, to: Endpoint, answer_from: Endpoint, now: float,
            via_probe: bool = False) -> None:
        nonce = self._nonce()
        auth = None
        if self.config.auth_key:
            plain = TeredoPacket.parse(router_solicitation(nonce, cone=cone))
            auth = teredo_auth.authenticate(self.config.auth_id, self.config.auth_key, nonce, bytes(plain.ipv6))
        if len(self._sent) >= MAX_RS_NONCES:
            self._sent.pop(next(iter(self._sent)))
        self._sent[nonce] = _Sent(probe, answer_from, now, via_probe)
        out = self._probe_datagrams if via_probe else self._datagrams
        out.append((router_solicitation(nonce, cone=cone, auth=auth), to))

    def _send_probes(self, now: float) -> None:
        self.tries += 1
        if self.config.cone_probe:
            self._rs(Probe.CONE, True, self.primary, self.secondary, now)
        self._rs(Probe.RESTRICTED, False, self.primary, self.primary, now)
        self.deadline = now + QUALIFICATION_TIMEOUT

    def _send_secondary(self, now: float) -> None:
        self.tries += 1
        if self.config.separate_probe:
            # Both mappings from a second, fresh socket: the main socket never
            # talks to the secondary address (see the module notes).
            if Probe.PROBE_PRIMARY not in self._probe_answers:
                self._rs(Probe.PROBE_PRIMARY, False, self.primary, self.primary, now, via_probe=True)
            if Probe.SECONDARY not in self._probe_answers:
                self._rs(Probe.SECONDARY, False, self.secondary, self.secondary, now, via_probe=True)
        else:
            self._rs(Probe.SECONDARY, False, self.secondary, self.secondary, now)
        self.deadline = now + QUALIFICATION_TIMEOUT

    def _send_refresh(self, now: float) -> None:
        # §5.2.5: "the same cone bit as at qualification".
        self.tries += 1
        if self.nat in (NatType.CONE, NatType.OPEN):
            self._rs(Probe.REFRESH_CONE, True, self.primary, self.secondary, now)
        else:
            self._rs(Probe.REFRESH, False, self.primary, self.primary, now)
        self.deadline = now + QUALIFICATION_TIMEOUT
