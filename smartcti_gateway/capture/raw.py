"""A plain TCP forwarder for peers at fixed addresses, whatever they speak; both directions recorded.

Each connection accepted on the listen address gets its own connection to the upstream. Bytes go
through as they come (no parsing at all), each read recorded as one chunk (``event: "data"``, text
when UTF-8 else ``body_b64``); the end of one direction is passed on as a half-close
(``event: "eof"``), so request/answer protocols that close their sending side keep working.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from .http import SHUTDOWN, hostport
from .record import Recorder

log = logging.getLogger("smartcti_gateway.capture")

READ_SIZE = 65536
CONNECT_TIMEOUT = 10.0


class RawSide:
    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], recorder: Recorder,
                 ids: Callable[[], int]):
        self.listen_host, self.listen_port = listen
        self.up_host, self.up_port = upstream
        self.recorder = recorder
        self.ids = ids
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task] = set()
        self.connections = 0
        self._warned = -1e9

    @property
    def listen(self) -> str:
        return hostport(self.listen_host, self.port)

    @property
    def upstream(self) -> str:
        return hostport(self.up_host, self.up_port)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, self.listen_host, self.listen_port,
                                                 reuse_address=True, limit=READ_SIZE)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=SHUTDOWN)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        self.server = None

    def _rec(self, xid: int, direction: str, event: str, data: bytes | None = None, **extra) -> None:
        self.recorder.record({"side": "raw", "dir": direction, "conn": xid, "event": event, **extra},
                             data[:self.recorder.body_cap] if data is not None else None,
                             len(data) if data is not None else None)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        xid = self.ids()
        self.connections += 1
        addr = writer.get_extra_info("peername")
        peer = hostport(str(addr[0]), int(addr[1])) if isinstance(addr, tuple) and len(addr) >= 2 else ""
        info = {"listen": self.listen, "upstream": self.upstream, "peer": peer}
        up_writer: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.up_host, self.up_port, limit=READ_SIZE), CONNECT_TIMEOUT)
            except (TimeoutError, OSError) as e:
                why = (f"no connection within {CONNECT_TIMEOUT:g} s" if isinstance(e, asyncio.TimeoutError)
                       else f"{type(e).__name__}: {e}")
                self._rec(xid, "c2s", "open", raw=info, error=f"upstream {self.upstream} unreachable: {why}")
                now = time.monotonic()
                if now - self._warned >= 10:
                    log.warning("raw %s: %s could not be reached (%s); the client's connection was closed. "
                                "Check --raw-upstream and that the peer runs; the proxy keeps serving.",
                                self.listen, self.upstream, why)
                self._warned = now
                return
            self._rec(xid, "c2s", "open", raw=info)
            await asyncio.gather(self._pipe(reader, up_writer, "c2s", xid, writer),
                                 self._pipe(up_reader, writer, "s2c", xid, up_writer))
        except asyncio.CancelledError:
            self._rec(xid, "c2s", "close", error="the capture stopped with the connection open")
            raise
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()
            if task is not None:
                self.tasks.discard(task)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str, xid: int,
                    other: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await src.read(READ_SIZE)
                if not data:
                    self._rec(xid, direction, "eof")
                    if dst.can_write_eof():
                        dst.write_eof()
                    else:
                        dst.close()
                    return
                self._rec(xid, direction, "data", data)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError, RuntimeError) as e:
            self._rec(xid, direction, "error", error=f"{type(e).__name__}: {e}")
            # one side broke: end the other one too, or its reader would wait forever
            for w in (dst, other):
                with contextlib.suppress(Exception):
                    w.close()
