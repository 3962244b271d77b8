"""The SOCKS5 server: asyncio glue around the sans-I/O codec and a connector.

Usage::

    config = SocksConfig(host="127.0.0.1", port=1080)          # validated by start()
    server = Socks5Server(config, OsConnector())                 # any Connector
    await server.start()                                         # or start(host, port)
    ...
    server.close()
    await server.wait_closed()

Per client connection (one task each):

1. Cap: above ``max_connections`` live sessions the new connection is closed
   at once (counted as ``SOCKS_CONNECTION_LIMIT``), before reading a byte.
2. Handshake under ``handshake_timeout``: bytes go into
   :class:`~proxy.socks5.Socks5Connection`, whose events are answered here:
   method choice and RFC 1929 check (:func:`~proxy.socks5.select_method`,
   :func:`~proxy.socks5.credentials_ok`); a :class:`~proxy.socks5.Rejected`
   event's bytes are written and the connection closed.
3. The request goes to the connector under ``connect_timeout``; a
   :class:`~proxy.socks5_connector.SocksError` (or OSError, timeout) becomes
   its REP code (:func:`~proxy.socks5_connector.rep_for_exception`).
4. CONNECT and BIND relay with :func:`~proxy.socks5_relay_asyncio.relay_tcp`
   (half-close kept, idle timeout, backpressure); UDP ASSOCIATE runs a
   :class:`~proxy.socks5_udp_asyncio.UdpRelay` until the control connection
   ends.

Counters: ``drops`` (a ``Counter[DropReason]``, shared with UDP
associations) and ``stats`` (``accepted``, ``rep-0x..`` per reply sent,
``relay-closed|idle|reset``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import replace

from proxy.config.socks import SocksConfig
from proxy.errors import DropReason
from proxy.socks5 import (
    NEED_DATA,
    AuthRequest,
    AuthResult,
    BindRequest,
    ConnectionClosed,
    ConnectRequest,
    Greeting,
    Method,
    MethodSelected,
    Rejected,
    Rep,
    Reply,
    Request,
    Socks5Connection,
    UdpAssociateRequest,
    bind_peer_allowed,
    credentials_ok,
    select_method,
)
from proxy.socks5_address import Address
from proxy.socks5_connector import Connector, SocksError, TcpChannel, TcpListener, rep_for_exception
from proxy.socks5_relay_asyncio import close_writer, relay_tcp
from proxy.socks5_udp_asyncio import UdpRelay

__all__ = ["Socks5Server"]

log = logging.getLogger("proxy.socks5_server")


class _Refused(Exception):
    """Internal: the request was answered with a failure reply; stop."""


class Socks5Server:
    """A SOCKS5 listener whose outbound side is a :class:`Connector`."""

    def __init__(self, config: SocksConfig, connector: Connector) -> None:
        self.config = config
        self.connector = connector
        self.drops: Counter[DropReason] = Counter()
        self.stats: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Validate the configuration for this address, then listen.

        :raises ConfigError: e.g. a non-loopback ``host`` without users.
        :raises OSError: the address cannot be bound.
        """
        cfg = replace(self.config, host=self.config.host if host is None else host,
                      port=self.config.port if port is None else port).validate()
        self.config = cfg
        self._server = await asyncio.start_server(
            self._on_client, cfg.host, cfg.port, limit=cfg.relay_high_water)
        log.info("SOCKS5 listening on %s", ", ".join(str(a) for a in self.addresses))

    @property
    def addresses(self) -> list[Address]:
        """Every bound listening address."""
        if self._server is None:
            return []
        return [Address.from_sockaddr(s.getsockname()) for s in self._server.sockets]

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the first listening socket (handy with port 0)."""
        return self.addresses[0].sockaddr()

    @property
    def active(self) -> int:
        """Client connections being served now."""
        return len(self._sessions)

    def close(self) -> None:
        """Stop listening and end every session."""
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listener and every session have finished."""
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Socks5Server:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    # --- one client ----------------------------------------------------------

    def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accept callback: apply the cap, then serve in a task of our own.

        (A task we own, not asyncio's handler task, so close() can cancel
        sessions without asyncio logging the cancellation as an error.)
        """
        if len(self._sessions) >= self.config.max_connections:
            self.drops[DropReason.SOCKS_CONNECTION_LIMIT] += 1
            writer.close()
            return
        self.stats["accepted"] += 1
        task = asyncio.create_task(self._session(reader, writer))
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.set_write_buffer_limits(high=self.config.relay_high_water)
        try:
            await self._serve(reader, writer)
        except _Refused:
            pass
        except (ConnectionError, OSError) as e:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("socks5 client %s: %s", writer.get_extra_info("peername"), e)
        except Exception:
            log.exception("socks5 session failed")
        finally:
            await close_writer(writer)

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if data:
            writer.write(data)
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        codec = Socks5Connection(max_buffer=self.config.handshake_buffer)
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                request = await self._handshake(codec, reader, writer)
        except TimeoutError:
            self.drops[DropReason.SOCKS_HANDSHAKE_TIMEOUT] += 1
            return
        if request is None:
            return
        if isinstance(request, ConnectRequest):
            channel = await self._open(codec, writer, request)
            await self._relay(codec, reader, writer, channel, self._reply(codec, Rep.SUCCEEDED, channel.local))
        elif isinstance(request, BindRequest):
            await self._bind(codec, reader, writer, request)
        elif isinstance(request, UdpAssociateRequest):
            await self._udp(codec, reader, writer, request)

    async def _handshake(
        self, codec: Socks5Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Request | None:
        """Run the codec up to a parsed request; None when the client is gone or refused."""
        while True:
            event = codec.next_event()
            if event is NEED_DATA:
                codec.receive_data(await reader.read(self.config.relay_chunk))
            elif isinstance(event, Greeting):
                method = select_method(event.methods, self.config.auth_required)
                await self._write(writer, codec.send(MethodSelected(method)))
                if method == Method.NO_ACCEPTABLE:
                    self.drops[DropReason.SOCKS_NO_ACCEPTABLE_METHOD] += 1
                    return None
            elif isinstance(event, AuthRequest):
                ok = credentials_ok(self.config.users, event.username, event.password)
                await self._write(writer, codec.send(AuthResult(ok)))
                if not ok:
                    self.drops[DropReason.SOCKS_AUTH_FAILED] += 1
                    return None
            elif isinstance(event, Request):
                return event
            elif isinstance(event, Rejected):
                self.drops[event.reason] += 1
                if event.rep is not None:
                    self.stats[f"rep-{event.rep:#04x}"] += 1
                await self._write(writer, event.reply)
                return None
            elif isinstance(event, ConnectionClosed):
                self.drops[event.reason] += 1
                return None
            else:  # PAUSED: cannot happen with the sends above
                raise AssertionError(f"codec paused in state {codec.state}")

    def _reply(self, codec: Socks5Connection, rep: Rep, bound: Address | None = None) -> bytes:
        self.stats[f"rep-{rep:#04x}"] += 1
        return codec.send(Reply(rep, bound) if bound is not None else Reply(rep))

    async def _refuse(self, codec: Socks5Connection, writer: asyncio.StreamWriter, rep: Rep) -> _Refused:
        await self._write(writer, self._reply(codec, rep))
        return _Refused()

    async def _open(self, codec: Socks5Connection, writer: asyncio.StreamWriter, request: ConnectRequest) -> TcpChannel:
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                return await self.connector.open_tcp(request.address)
        except Exception as e:  # every failure is a reply, never a crash
            raise await self._refuse(codec, writer, self._rep_for(e, "connect", request.address)) from None

    def _rep_for(self, exc: Exception, what: str, target: Address) -> Rep:
        rep = rep_for_exception(exc)
        if rep == Rep.GENERAL_FAILURE and not isinstance(exc, (OSError, TimeoutError)):
            log.warning("socks5 %s %s: unexpected %r", what, target, exc)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("socks5 %s %s failed: REP %#04x (%s)", what, target, rep, exc)
        return rep

    async def _relay(
        self, codec: Socks5Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        channel: TcpChannel, reply: bytes, early: bytes = b"",
    ) -> None:
        """Send the success reply, then what the client pipelined, then relay.

        Owns ``channel`` from here: it is closed however this ends.  (An EOF
        the handshake already read is seen again by the relay's reads.)
        """
        try:
            await self._write(writer, reply)
            data = codec.take_trailing_data() + early
            if data:
                channel.writer.write(data)
                await channel.writer.drain()
            end = await relay_tcp((reader, writer), (channel.reader, channel.writer),
                                  chunk=self.config.relay_chunk, idle_timeout=self.config.idle_timeout)
            self.stats[f"relay-{end.value}"] += 1
        finally:
            await close_writer(channel.writer)

    async def _bind(
        self, codec: Socks5Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: BindRequest
    ) -> None:
        """RFC 1928 §4 BIND: reply with the listening address, then with the peer."""
        if not self.config.allow_bind:
            raise await self._refuse(codec, writer, Rep.COMMAND_NOT_SUPPORTED)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                listener = await self.connector.bind_tcp(request.address)
        except Exception as e:
            raise await self._refuse(codec, writer, self._rep_for(e, "bind", request.address)) from None
        try:
            await self._write(writer, self._reply(codec, Rep.SUCCEEDED, listener.local))
            try:
                async with asyncio.timeout(self.config.bind_timeout):
                    channel, early = await self._await_peer(listener, request, reader)
            except TimeoutError:
                raise await self._refuse(codec, writer, Rep.HOST_UNREACHABLE) from None
            except (SocksError, OSError) as e:
                raise await self._refuse(codec, writer, self._rep_for(e, "bind accept", request.address)) from None
        finally:
            listener.close()
        if channel is None:  # the client sent more than we keep while waiting
            return
        await self._relay(codec, reader, writer, channel, self._reply(codec, Rep.SUCCEEDED, channel.remote), early)

    async def _await_peer(
        self, listener: TcpListener, request: BindRequest, reader: asyncio.StreamReader
    ) -> tuple[TcpChannel | None, bytes]:
        """Accept until the expected peer connects, reading the client meanwhile.

        Bytes the client sends before the peer arrives are kept (bounded by
        ``handshake_buffer``; beyond it the BIND is abandoned) and relayed
        once the peer is there.  The client's EOF is half-close, not an
        abort: we keep waiting and pass the EOF on later.
        """
        early = bytearray()
        chosen: TcpChannel | None = None
        watch: asyncio.Future[bytes] | None = asyncio.ensure_future(reader.read(self.config.relay_chunk))
        accept = asyncio.ensure_future(listener.accept())
        try:
            while True:
                await asyncio.wait({accept} if watch is None else {accept, watch},
                                   return_when=asyncio.FIRST_COMPLETED)
                if watch is not None and watch.done():
                    data = watch.result()
                    if len(early) + len(data) > self.config.handshake_buffer:
                        self.drops[DropReason.SOCKS_HANDSHAKE_OVERFLOW] += 1
                        return None, b""
                    early += data
                    watch = asyncio.ensure_future(reader.read(self.config.relay_chunk)) if data else None
                if accept.done():
                    channel = accept.result()
                    if bind_peer_allowed(request.address, channel.remote):
                        chosen = channel
                        return channel, bytes(early)
                    self.drops[DropReason.SOCKS_BIND_WRONG_PEER] += 1
                    await close_writer(channel.writer)
                    accept = asyncio.ensure_future(listener.accept())
        finally:
            if watch is not None:
                watch.cancel()
            if not accept.done():
                accept.cancel()
            elif not accept.cancelled() and accept.exception() is None and accept.result() is not chosen:
                accept.result().writer.close()  # accepted just as we gave up

    async def _udp(
        self, codec: Socks5Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        request: UdpAssociateRequest,
    ) -> None:
        """RFC 1928 §7 UDP ASSOCIATE: relay until the control connection closes."""
        if not self.config.allow_udp:
            raise await self._refuse(codec, writer, Rep.COMMAND_NOT_SUPPORTED)
        sockname = writer.get_extra_info("sockname")
        peername = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                endpoint = await self.connector.open_udp()
        except Exception as e:
            raise await self._refuse(codec, writer, self._rep_for(e, "udp associate", request.address)) from None
        relay: UdpRelay | None = None
        try:
            try:
                relay = await UdpRelay.open(
                    local_ip=str(sockname[0]), client_host=str(peername[0]), requested=request.address,
                    endpoint=endpoint, drops=self.drops, queue_size=self.config.udp_queue)
            except OSError as e:
                raise await self._refuse(codec, writer, self._rep_for(e, "udp associate", request.address)) from None
            assert relay.bound is not None
            await self._write(writer, self._reply(codec, Rep.SUCCEEDED, relay.bound))
            codec.take_trailing_data()
            if codec.client_eof:
                return
            end = await relay.run(reader, idle_timeout=self.config.udp_idle_timeout, chunk=self.config.relay_chunk)
            self.stats[f"udp-{end.value}"] += 1
        finally:
            if relay is not None:
                relay.close()
            else:
                endpoint.close()

