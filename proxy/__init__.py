"""teredo-proxy: Teredo client, relay and server (RFC 4380, 5991, 6081)."""

__version__ = "0.1.0"
