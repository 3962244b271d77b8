"""Small programs the SOCKS interop tests run *inside* lab namespaces.

The test process lives in the root namespace and cannot reach a lab
host's loopback, so each client or service is started with
``ip netns exec NS python lab_apps.py COMMAND ...`` (``Lab.run`` or
``Lab.spawn``).  Clients print one JSON object on stdout: what they got, or
the SOCKS5 reply code / error they met.  Services run until killed.

Clients: ``curl``-like fetches through python-socks, PySocks and httpx;
a UDP exchange through PySocks' UDP ASSOCIATE; ``rep`` (the raw REP code
for one request); ``hold`` (one connection kept open across an outage);
``paced-get`` (a download held to a fixed rate until told to finish).
Services: ``udp-echo``, ``tcp-echo``, ``sink`` (reports how a TCP
connection ended: FIN or RST).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time

TIMEOUT = 60.0


def out(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def split_url(url: str) -> tuple[str, int, str]:
    """``http://[host]:port/path`` -> (host, port, path); IPv6 literals only."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port), "/" + path


def http_get(sock: socket.socket, host: str, path: str) -> bytes:
    """HTTP/1.0 GET on a connected socket; the body."""
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: [{host}]\r\n\r\n".encode())
    chunks = []
    while data := sock.recv(1 << 16):
        chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"bad HTTP answer: {head[:80]!r}")
    return body


def report_body(body: bytes) -> None:
    out(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())


# --- clients --------------------------------------------------------------------------------


def cmd_python_socks(a: argparse.Namespace) -> None:
    from python_socks.sync import Proxy

    host, port, path = split_url(a.url)
    proxy = Proxy.from_url(f"socks5://{a.proxy}", rdns=True)
    sock = proxy.connect(dest_host=host, dest_port=port, timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    with sock:
        report_body(http_get(sock, host, path))


def cmd_python_socks_error(a: argparse.Namespace) -> None:
    """python-socks' own view of a refused CONNECT (its ProxyError.error_code)."""
    from python_socks import ProxyError
    from python_socks.sync import Proxy

    proxy = Proxy.from_url(f"socks5://{a.proxy}")
    try:
        proxy.connect(dest_host=a.host, dest_port=a.port, timeout=TIMEOUT).close()
    except ProxyError as e:
        out(error_code=e.error_code, message=str(e))
    else:
        out(error_code=0)


def _pysocks(kind: int = socket.SOCK_STREAM, proxy: str = "127.0.0.1:1080"):
    import socks

    host, _, port = proxy.rpartition(":")
    s = socks.socksocket(socket.AF_INET, kind)
    s.set_proxy(socks.SOCKS5, host, int(port), rdns=True)
    s.settimeout(TIMEOUT)
    return s


def cmd_pysocks(a: argparse.Namespace) -> None:
    host, port, path = split_url(a.url)
    s = _pysocks(proxy=a.proxy)
    with s:
        s.connect((host, port))
        report_body(http_get(s, host, path))


def cmd_pysocks_udp(a: argparse.Namespace) -> None:
    """UDP ASSOCIATE: ``count`` datagrams to an echo service, each answered."""
    s = _pysocks(socket.SOCK_DGRAM, a.proxy)
    s.settimeout(5.0)
    s.bind(("127.0.0.1", 0))
    answered = []
    source = None
    with s:
        for i in range(a.count):
            payload = f"datagram {i} ".encode() + bytes(range(256)) * (a.size // 256)
            for _attempt in range(5):  # UDP: the first datagram may wait for relay discovery
                s.sendto(payload, (a.host, a.port))
                try:
                    data, source = s.recvfrom(65535)
                except (socket.timeout, TimeoutError):
                    continue
                if data == payload:
                    answered.append(i)
                    break
    out(answered=len(answered), source=list(source) if source else None)


def cmd_httpx(a: argparse.Namespace) -> None:
    import httpx

    with httpx.Client(proxy=f"socks5://{a.proxy}", timeout=TIMEOUT) as client:
        r = client.get(a.url)
        r.raise_for_status()
        report_body(r.content)


def socks_request(cmd: int, atyp: int, addr: bytes, port: int) -> bytes:
    return bytes([5, cmd, 0, atyp]) + addr + struct.pack("!H", port)


def cmd_rep(a: argparse.Namespace) -> None:
    """Greeting, then one request; print the REP octet (or why there was none)."""
    host, _, port = a.proxy.rpartition(":")
    if a.raw:
        request = bytes.fromhex(a.raw)
    else:
        request = socks_request(a.cmd, 4, socket.inet_pton(socket.AF_INET6, a.host), a.port)
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
        s.sendall(b"\x05\x01\x00")
        if s.recv(2) != b"\x05\x00":
            out(rep=None, error="no method accepted")
            return
        s.sendall(request)
        reply = b""
        while len(reply) < 2:
            data = s.recv(2 - len(reply))
            if not data:
                break
            reply += data
    out(rep=reply[1] if len(reply) == 2 else None, seconds=round(time.monotonic() - start, 3))


def cmd_hold(a: argparse.Namespace) -> None:
    """One TCP connection through the proxy to an echo service, kept open.

    Exchanges a message, prints ``{"phase": 1}``, then waits for a line on
    stdin before each further exchange (the test creates the outage in
    between) and prints ``{"phase": n}`` after each.
    """
    s = _pysocks(proxy=a.proxy)
    s.connect((a.host, a.port))
    with s:
        for phase in range(1, a.phases + 1):
            if phase > 1 and not sys.stdin.readline():
                return
            msg = f"phase {phase} ".encode() * 100
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                data = s.recv(len(msg) - len(got))
                if not data:
                    out(phase=phase, error="eof")
                    return
                got += data
            out(phase=phase, ok=got == msg)


def cmd_paced_get(a: argparse.Namespace) -> None:
    """HTTP GET through the proxy, read at ``--rate`` bytes/s until a line
    arrives on stdin, then as fast as possible; the body goes to ``--out``.

    The reader sets the pace itself (the sender's window closes behind it),
    so a test can keep a transfer in progress for exactly as long as it
    needs, whatever the machine's speed.  Prints ``{"started": true}`` after
    the first data and the usual bytes/sha256 at the end.
    """
    host, port, path = split_url(a.url)
    unpaced = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), unpaced.set()), daemon=True).start()
    s = _pysocks(proxy=a.proxy)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    s.connect((host, port))
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: [{host}]\r\n\r\n".encode())
    digest = hashlib.sha256()
    head = b""
    total = 0
    start = time.monotonic()
    with s, open(a.out, "wb") as f:
        while data := s.recv(1 << 14):
            if head is not None:
                head += data
                if b"\r\n\r\n" not in head:
                    continue
                status, _, data = head.partition(b"\r\n\r\n")
                if b" 200 " not in status.split(b"\r\n", 1)[0]:
                    raise RuntimeError(f"bad HTTP answer: {status[:80]!r}")
                head = None
                out(started=True)
            digest.update(data)
            f.write(data)
            f.flush()
            total += len(data)
            if not unpaced.is_set():
                ahead = total / a.rate - (time.monotonic() - start)
                if ahead > 0:
                    unpaced.wait(ahead)
    out(bytes=total, sha256=digest.hexdigest())


def cmd_upload(a: argparse.Namespace) -> None:
    """Send without pause through the proxy until the proxy ends the connection
    (``--idle``: send nothing, just wait for the end)."""
    s = _pysocks(proxy=a.proxy)
    s.connect((a.host, a.port))
    sent = 0
    block = bytes(16384)
    with s:
        out(connected=True)
        try:
            if a.idle:
                s.settimeout(None)
                end = "eof" if s.recv(1) == b"" else "data"
                out(end=end)
                return
            while True:
                s.sendall(block)
                sent += len(block)
        except OSError as e:
            out(sent=sent, error=type(e).__name__)


# --- services -------------------------------------------------------------------------------


def cmd_udp_echo(a: argparse.Namespace) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((a.address, a.port))
    print("udp echo ready", flush=True)
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Server6(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True


def cmd_tcp_echo(a: argparse.Namespace) -> None:
    with _Server6((a.address, a.port), _EchoHandler) as server:
        print("tcp echo ready", flush=True)
        server.serve_forever()


def cmd_sink(a: argparse.Namespace) -> None:
    """Accept connections; for each, read to the end and report FIN or RST."""
    ls = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.address, a.port))
    ls.listen(8)
    print(json.dumps({"ready": True}), flush=True)

    def serve(conn: socket.socket) -> None:
        total = 0
        end = "eof"
        with conn:
            try:
                while data := conn.recv(1 << 16):
                    total += len(data)
                    if total and total == len(data):
                        out(receiving=True)
            except ConnectionResetError:
                end = "reset"
        out(end=end, bytes=total)

    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("python-socks", "pysocks", "httpx"):
        c = sub.add_parser(name)
        c.add_argument("proxy")
        c.add_argument("url")
    c = sub.add_parser("python-socks-error")
    c.add_argument("proxy")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c = sub.add_parser("pysocks-udp")
    c.add_argument("proxy")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--count", type=int, default=20)
    c.add_argument("--size", type=int, default=1024)
    c = sub.add_parser("rep")
    c.add_argument("proxy")
    c.add_argument("host", nargs="?")
    c.add_argument("port", type=int, nargs="?")
    c.add_argument("--cmd", type=int, default=1)
    c.add_argument("--raw", help="the request as hex (after the greeting)")
    c = sub.add_parser("paced-get")
    c.add_argument("proxy")
    c.add_argument("url")
    c.add_argument("--out", required=True)
    c.add_argument("--rate", type=float, default=200_000, help="bytes/s until told to finish")
    for name in ("hold", "upload"):
        c = sub.add_parser(name)
        c.add_argument("proxy")
        c.add_argument("host")
        c.add_argument("port", type=int)
        c.add_argument("--phases", type=int, default=2)
        c.add_argument("--idle", action="store_true")
    for name in ("udp-echo", "tcp-echo", "sink"):
        c = sub.add_parser(name)
        c.add_argument("address")
        c.add_argument("port", type=int)
    a = p.parse_args()
    {
        "python-socks": cmd_python_socks, "python-socks-error": cmd_python_socks_error,
        "pysocks": cmd_pysocks, "pysocks-udp": cmd_pysocks_udp, "httpx": cmd_httpx, "rep": cmd_rep,
        "hold": cmd_hold, "paced-get": cmd_paced_get, "upload": cmd_upload, "udp-echo": cmd_udp_echo, "tcp-echo": cmd_tcp_echo,
        "sink": cmd_sink,
    }[a.command](a)


if __name__ == "__main__":
    main()
