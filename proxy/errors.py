"""One error and drop-reason vocabulary for every core.

Two classes of bad input, as in h11's Local/Remote split:

* bytes from the network that cannot be used are *dropped*: codecs raise
  :class:`ParseError` carrying a :class:`DropReason`, the core's single ingress
  point catches it, counts the reason and returns.  Nothing from the network
  ever raises out of a core.
* misuse by our own code (or a bad configuration) raises :class:`ValueError`
  or :class:`ConfigError`, which *should* propagate.

Every reason is a member of :class:`DropReason` so that counters, logs, the
status file and the tests all speak the same names.
"""

from __future__ import annotations

import enum

__all__ = ["ProxyError", "ConfigError", "ParseError", "DropReason"]


class ProxyError(Exception):
    """Root of the project's own exceptions."""


class ConfigError(ProxyError):
    """A configuration value (file directive or flag) is invalid.

    ``field`` names the directive or flag so the message can point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DropReason(enum.Enum):
    """Why an ingress packet was not used.  Values are stable log names."""

    # --- Teredo encapsulation (RFC 4380 §5.1.1) -----------------------------
    TRUNCATED = "truncated"
    BAD_AUTH_HEADER = "bad-auth-header"
    BAD_ORIGIN_INDICATION = "bad-origin-indication"
    NOT_IPV6 = "not-ipv6"
    IPV6_TRUNCATED = "ipv6-truncated"

    # --- Teredo server, RFC 4380 §5.3.1 acceptance checks, in RFC order ------
    SERVER_NOT_TEREDO_IPV6 = "server-1-not-teredo-ipv6"
    SERVER_NOT_BUBBLE_OR_ICMP = "server-2-not-bubble-or-icmpv6"
    SERVER_SOURCE_NOT_GLOBAL = "server-3-ipv4-source-not-global"
    SERVER_NO_ACCEPT_CASE = "server-7-no-acceptance-case"
    # --- Teredo server, after acceptance ----------------------------------
    SERVER_LOOP = "server-loop-from-own-address"
    SERVER_LOCAL_NOT_RS = "server-local-destination-not-rs"
    SERVER_BAD_RS = "server-bad-router-solicitation"
    SERVER_AUTH_FAILED = "server-authentication-failed"
    SERVER_DEST_NOT_GLOBAL = "server-destination-not-global"
    SERVER_ICMP_TOO_BIG = "server-icmpv6-too-big"
    SERVER_TEREDO_DEST_NOT_GLOBAL = "server-teredo-destination-not-global"
    SERVER_NO_NATIVE = "server-no-native-ipv6"
    SERVER_NATIVE_NOT_TEREDO = "server-native-destination-not-teredo"
    SERVER_NATIVE_NOT_OURS = "server-native-destination-not-our-client"
    SERVER_RATE_LIMITED = "server-rate-limited"

    # --- Client / relay (RFC 4380 §5.2.3, §5.4.2) ----------------------------
    NOT_QUALIFIED = "not-qualified"
    LINK_LOCAL_SOURCE = "link-local-source"
    MULTICAST_DESTINATION = "multicast-destination"
    NOT_TEREDO_SOURCE = "not-teredo-source"
    MAPPING_MISMATCH = "mapping-mismatch"
    UNKNOWN_PEER = "unknown-peer"
    PEER_TABLE_FULL = "peer-table-full"
    QUEUE_FULL = "queue-full"
    BAD_NONCE = "bad-nonce"
    BAD_RA = "bad-router-advertisement"
    NOT_FROM_SERVER = "not-from-server"
    SOURCE_NOT_GLOBAL = "ipv4-source-not-global"
    DESTINATION_NOT_GLOBAL = "destination-not-global"
    NOT_OUR_PREFIX = "not-our-prefix"
    HOP_LIMIT = "hop-limit-exceeded"
    TOO_BIG = "too-big"
    RATE_LIMITED = "rate-limited"
    AUTH_FAILED = "authentication-failed"
    UNEXPECTED_RA = "unexpected-router-advertisement"
    BUBBLE_LIMIT = "bubble-limit"
    PING_LIMIT = "ping-limit"
    BAD_TRAILER = "bad-trailer"
    NOT_FROM_PEER = "not-from-peer"
    SOURCE_NOT_OURS = "source-not-our-address"
    # RFC 4380 §5.2.8 local discovery (the multicast socket)
    DISCOVERY_DISABLED = "local-discovery-disabled"
    NOT_DISCOVERY_BUBBLE = "not-a-discovery-bubble"
    DISCOVERY_OWN = "own-discovery-bubble"
    DISCOVERY_NOT_LOCAL = "discovery-source-not-local"
    DISCOVERY_OTHER_NAT = "discovery-peer-behind-another-nat"

    # --- Relay (RFC 4380 §5.4) ------------------------------------------------
    TEREDO_TRANSIT = "teredo-to-teredo-transit"
    SOURCE_NOT_GLOBAL_IPV6 = "ipv6-source-not-global"
    BUBBLE_GIVE_UP = "peer-never-answered"
    ICMP_RATE_LIMITED = "icmpv6-error-rate-limited"
    SEND_FAILED = "send-failed"

    # --- IPv6 host stack -----------------------------------------------------
    BAD_CHECKSUM = "bad-checksum"
    BAD_HEADER = "bad-header"
    NOT_FOR_US = "not-for-us"
    NO_SOCKET = "no-socket"
    BAD_SOURCE = "bad-source-address"
    EXTENSION_HEADER_LIMIT = "extension-header-limit"
    UNKNOWN_NEXT_HEADER = "unknown-next-header"
    UNKNOWN_OPTION = "unknown-option"
    ROUTING_HEADER = "unsupported-routing-header"
    HOP_BY_HOP_POSITION = "hop-by-hop-not-first"
    NO_NEXT_HEADER = "no-next-header"
    FRAGMENT_BAD_LENGTH = "fragment-bad-length"
    FRAGMENT_TOO_BIG = "fragment-reassembled-too-big"
    FRAGMENT_INCOMPLETE_CHAIN = "fragment-incomplete-header-chain"
    FRAGMENT_OVERLAP = "fragment-overlap"
    FRAGMENT_DUPLICATE = "fragment-duplicate"
    FRAGMENT_INCONSISTENT = "fragment-inconsistent-length"
    FRAGMENT_NESTED = "fragment-nested"
    REASSEMBLY_LIMIT = "reassembly-limit"
    REASSEMBLY_TIMEOUT = "reassembly-timeout"
    UDP_ZERO_CHECKSUM = "udp-zero-checksum"
    UDP_BAD_LENGTH = "udp-bad-length"
    UDP_QUEUE_FULL = "udp-queue-full"
    ICMP_IGNORED = "icmpv6-ignored"
    ICMP_NOT_OURS = "icmpv6-error-not-about-us"
    ICMP_UNMATCHED = "icmpv6-error-no-socket"
    ICMP_ERROR_SUPPRESSED = "icmpv6-error-suppressed"
    TCP_BACKLOG_FULL = "tcp-backlog-full"
    TCP_CONNECTION_LIMIT = "tcp-connection-limit"
    TCP_NO_CONNECTION = "tcp-no-connection"
    EVENT_QUEUE_FULL = "event-queue-full"

    # --- TCP (RFC 9293 §3.10.7 segment arrival, RFC 5961, RFC 7323) -----------
    TCP_BAD_OPTION = "tcp-bad-option"
    TCP_BAD_FLAGS = "tcp-bad-flags"
    TCP_OUT_OF_WINDOW = "tcp-out-of-window"
    TCP_PAWS = "tcp-paws-rejected"
    TCP_NO_TIMESTAMP = "tcp-missing-timestamp"
    TCP_BAD_ACK = "tcp-unacceptable-ack"
    TCP_RST_CHALLENGED = "tcp-rst-challenged"
    TCP_RST_IGNORED = "tcp-rst-ignored"
    TCP_SYN_CHALLENGED = "tcp-syn-challenged"
    TCP_NOT_SYNCHRONIZED = "tcp-segment-in-wrong-state"
    TCP_OOO_FULL = "tcp-reassembly-full"
    TCP_CLOSED = "tcp-connection-closed"

    # --- SOCKS5 endpoint (RFC 1928, RFC 1929) --------------------------------
    SOCKS_BAD_VERSION = "socks-bad-version"
    SOCKS_NO_ACCEPTABLE_METHOD = "socks-no-acceptable-method"
    SOCKS_BAD_AUTH_VERSION = "socks-bad-auth-version"
    SOCKS_AUTH_FAILED = "socks-auth-failed"
    SOCKS_BAD_COMMAND = "socks-command-not-supported"
    SOCKS_BAD_ADDRESS_TYPE = "socks-address-type-not-supported"
    SOCKS_BAD_DOMAIN = "socks-bad-domain-name"
    SOCKS_HANDSHAKE_OVERFLOW = "socks-handshake-buffer-full"
    SOCKS_HANDSHAKE_EOF = "socks-eof-during-handshake"
    SOCKS_HANDSHAKE_TIMEOUT = "socks-handshake-timeout"
    SOCKS_CONNECTION_LIMIT = "socks-connection-limit"
    SOCKS_BIND_WRONG_PEER = "socks-bind-unexpected-peer"
    SOCKS_UDP_TRUNCATED = "socks-udp-truncated"
    SOCKS_UDP_FRAGMENT = "socks-udp-fragment"
    SOCKS_UDP_WRONG_SOURCE = "socks-udp-wrong-source"
    SOCKS_UDP_SEND_FAILED = "socks-udp-send-failed"
    SOCKS_UDP_NO_CLIENT = "socks-udp-client-unknown"


class ParseError(ProxyError, ValueError):
    """A byte string from the network cannot be decoded.

    Raised by codecs only; cores catch it at their ingress point.
    """

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
