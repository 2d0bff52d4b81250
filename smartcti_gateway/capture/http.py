"""One recording HTTP reverse proxy: the XML-RPC side (before the NGC) or the SOAP side (before
DigitroCTILink's Tomcat).

Every request, on any path and with any method, goes to the upstream's ``scheme://host:port`` with
its own path and query, its headers (hop-by-hop ones aside; ``Host`` names the upstream, as it would
without the proxy) and its body. The answer comes back as a stream: status, reason, headers and body
chunks as they arrive, so a long or endless answer is never held in memory; the file keeps its first
``body_cap`` bytes (``truncated``). A request body up to ``BUFFER_LIMIT`` is read whole first (that is
where a callback URL may have to be rewritten); a longer one is streamed as it comes.

Requests arriving at ``/<prefix>/<n>/…`` are the peers' callbacks (the NGC's ``cti.evento`` posts,
DigitroCTILink's SmartCTIWSEventing events): they go to the URL that was rewritten to point here.

The answer to a ``GET …?wsdl`` is the one answer read whole (up to ``BUFFER_LIMIT``) before it is
relayed: the address locations in it that name the upstream are pointed at the proxy
(``rewrite.rewrite_wsdl``), or a client reading the WSDL would post past the capture. The file keeps
the answer as the upstream sent it, the rewrites beside it (``rewritten``), as for requests.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from .mask import mask_header, mask_url
from .record import Recorder
from .rewrite import MAX_TARGETS, CallbackTable, Rewrite, rewrite_wsdl, wsdl_query

log = logging.getLogger("smartcti_gateway.capture")

BUFFER_LIMIT = 4 << 20      # request bodies up to this are read whole (and may be rewritten)
BODY_IDLE = 30.0            # s a client may stay silent in the middle of a request body
CONNECT_TIMEOUT = 10.0      # s to connect to an upstream
SHUTDOWN = 2.0              # s in-flight exchanges get to finish on stop
WARN_EVERY = 10.0           # s between two "upstream down" warnings for one target

_REQUEST_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                          "transfer-encoding", "upgrade", "expect", "host", "content-length"})
_RESPONSE_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "trailer", "transfer-encoding",
                           "upgrade", "content-length"})
_SKIP_AUTO = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


HEAD_TIMEOUT = 15.0      # seconds for a request's head, and of idle keep-alive

# A Host header fit to be written into a WSDL location: host name, IPv4 or [IPv6], optional port.
_HOST_HEADER = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._\-]+)(?::[0-9]{1,5})?")


@dataclass(frozen=True)
class SideSpec:
    name: str                   # "xmlrpc" | "soap": the record's side
    prefix: str                 # "_cb" | "_ev": where callbacks arrive
    dirs: tuple[str, str, str, str]  # request, answer, callback request, callback answer
    rewrite: Callable[[bytes, CallbackTable, str], tuple[bytes, list[Rewrite]]]
    upstream_name: str          # "the NGC", "DigitroCTILink"
    upstream_flag: str          # "--xmlrpc-upstream"
    callback_name: str          # who the callbacks are for
    url_name: str               # what is rewritten ("callback URL", "AgentInService ipaddress")
    restart_hint: str           # how the peer learns the proxy's callback URL again after a restart


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _base(url: str) -> tuple[str, str]:
    """(scheme://host:port, host:port as a Host header) of an upstream URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    hp = hostport(host, port)
    default = (parts.scheme == "http" and port == 80) or (parts.scheme == "https" and port == 443)
    return f"{parts.scheme}://{hp}", (hostport(host, port) if not default else
                                       (f"[{host}]" if ":" in host else host))


def _note_rewrites(rec: dict[str, Any], rewrites: list[Rewrite]) -> None:
    """``rewritten`` (the first rewrite) and, when there are more, ``rewritten_all`` in a record."""
    rec["rewritten"] = {"from": mask_url(rewrites[0].original), "to": mask_url(rewrites[0].replacement)}
    if len(rewrites) > 1:
        rec["rewritten_all"] = [{"from": mask_url(r.original), "to": mask_url(r.replacement)} for r in rewrites]


class _Kept:
    """The first ``cap`` bytes of a body as it passed, and its whole length."""

    def __init__(self, cap: int):
        self.cap = cap
        self.parts: list[bytes] = []
        self.kept = 0
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.kept < self.cap:
            piece = chunk[:self.cap - self.kept]
            self.parts.append(piece)
            self.kept += len(piece)

    def data(self) -> bytes:
        return b"".join(self.parts)


def _headers(raw: Any) -> list[list[str]]:
    return [[k.decode("latin-1"), mask_header(k.decode("latin-1"), v.decode("latin-1"))] for k, v in raw]


class _BadRequests(logging.Filter):
    """aiohttp logs each malformed request with a traceback: one short line instead (10 s apart at most)."""

    def __init__(self) -> None:
        super().__init__()
        self.last = -WARN_EVERY
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now - self.last < WARN_EVERY:
            self.suppressed += 1
            return False
        more = f" ({self.suppressed} more since the last such line)" if self.suppressed else ""
        self.last, self.suppressed = now, 0
        detail = " ".join(str(exc.message or exc).split())[:160]
        original = record.getMessage()
        peer = original.rpartition(" from ")[2] if " from " in original else "a client"
        record.msg = "malformed HTTP request from %s refused with %s (%s)%s; the proxy goes on"
        record.args = (peer, exc.code, detail, more)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_server_log = logging.getLogger("smartcti_gateway.capture.http")
_server_log.addFilter(_BadRequests())


class _ClientGone(Exception):
    """Writing the answer to the client failed: it left."""


class HttpSide:
    """The listener of one side and its forwarding."""

    def __init__(self, spec: SideSpec, listen: tuple[str, int], upstream: str, callback_host: str,
                 recorder: Recorder, ids: Callable[[], int], session: Callable[[], aiohttp.ClientSession]):
        self.spec = spec
        self.listen_host, self.listen_port = listen
        self.upstream = upstream
        self.upstream_base, self.upstream_host = _base(upstream)
        self.callback_host = callback_host
        self.recorder = recorder
        self.ids = ids
        self._session = session
        self.table = CallbackTable(spec.prefix)
        self.port = 0
        self.runner: web.AppRunner | None = None
        self._warned: dict[str, float] = {}
        self.exchanges = 0
        self.failures = 0
        self._inflight: set[asyncio.Task] = set()
        self._refused_warned = False
        self._wsdl_logged: set[tuple[str, str]] = set()
        self._wsdl_warned = False

    @property
    def callback(self) -> str:
        """host:port the peers must use to reach this listener."""
        return hostport(self.callback_host, self.port)

    @property
    def listen(self) -> str:
        return hostport(self.listen_host, self.port)

    async def start(self) -> None:
        app = web.Application(client_max_size=BUFFER_LIMIT)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        # keepalive_timeout: aiohttp arms it at connect and after each answer and closes a connection whose
        # request head has not come by then, so it bounds a peer that stalls in the headers (slowloris) too
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN,
                                    logger=_server_log, keepalive_timeout=HEAD_TIMEOUT)
        await self.runner.setup()
        try:
            site = web.TCPSite(self.runner, self.listen_host, self.listen_port, reuse_address=True)
            await site.start()
        except BaseException:
            await self.runner.cleanup()
            self.runner = None
            raise
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop accepting, give in-flight exchanges SHUTDOWN seconds, cancel the rest (recorded as such)."""
        if self.runner is None:
            return
        for site in list(self.runner.sites):
            await site.stop()
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=SHUTDOWN)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await self.runner.cleanup()
        self.runner = None

    # --------------------------------------------------------------- handling
    async def handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is None:
            return await self._handle(request)
        self._inflight.add(task)
        try:
            return await self._handle(request)
        finally:
            self._inflight.discard(task)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        t0, m0 = time.time(), time.monotonic()
        xid = self.ids()
        spec = self.spec
        raw_path = request.raw_path
        if not raw_path.startswith("/"):
            # absolute-form (a client that takes us for a forward proxy): only its path counts
            parts = urlsplit(raw_path)
            raw_path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        callback = raw_path.startswith(f"/{spec.prefix}/") or raw_path == f"/{spec.prefix}"
        req_dir, ans_dir = (spec.dirs[2], spec.dirs[3]) if callback else (spec.dirs[0], spec.dirs[1])
        target = self.table.target(raw_path) if callback else self.upstream_base + raw_path
        peer = request.remote or ""
        if request.transport is not None:
            addr = request.transport.get_extra_info("peername")
            if isinstance(addr, tuple) and len(addr) >= 2:
                peer = hostport(str(addr[0]), int(addr[1]))
        rec: dict[str, Any] = {
            "t": t0, "side": spec.name, "dir": req_dir, "conn": xid,
            "http": {"method": request.method, "path": mask_url(raw_path),
                     "version": f"{request.version.major}.{request.version.minor}",
                     "headers": _headers(request.raw_headers), "peer": peer},
        }
        if target is not None:
            rec["upstream"] = mask_url(target)
        cap = self.recorder.body_cap

        # ------------------------------------------------ the request body
        arrived: list[bytes] = []
        try:
            head, complete = await self._read_prefix(request.content, arrived)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - timeout, client gone mid-body, bad chunking: never a crash
            timeout = isinstance(e, (asyncio.TimeoutError, TimeoutError))
            why = (f"the request body did not arrive within {BODY_IDLE:g} s" if timeout else
                   f"the client closed the connection or sent a bad body ({type(e).__name__}: {e})")
            rec["error"] = why
            partial = b"".join(arrived)
            self.recorder.record(rec, partial[:cap], len(partial), spec.name)
            status = 408 if timeout else 400
            return self._local_answer(xid, ans_dir, m0, status, f"smartcti-gateway capture: {why}; "
                                      "the request was not forwarded.\n", why)

        url = None
        if target is not None:
            try:
                url = URL(target, encoded=True)
                if not url.host:
                    raise ValueError("no host")
            except (ValueError, TypeError) as e:
                rec["error"] = f"request target {raw_path[:80]!r} cannot be forwarded ({e})"
                self.recorder.record(rec, head[:cap], len(head), spec.name)
                return self._local_answer(xid, ans_dir, m0, 400, f"smartcti-gateway capture: {rec['error']}.\n",
                                          rec["error"])
        if target is None or url is None:
            self.recorder.record(rec, head[:cap], len(head), spec.name)
            why = (f"no callback URL number matches {raw_path[:80]!r}: this proxy only forwards "
                   f"/{spec.prefix}/<n>/… for the URLs it rewrote since it started (after restarting "
                   f"the proxy, {spec.restart_hint})")
            return self._local_answer(xid, ans_dir, m0, 404, f"smartcti-gateway capture: {why}.\n", why)

        body = head
        rewrites: list[Rewrite] = []
        if complete and head and not callback:
            body, rewrites = spec.rewrite(head, self.table, self.callback)
            if rewrites:
                _note_rewrites(rec, rewrites)
                for r in rewrites:
                    if self.table.first.get(r.index) is r:
                        log.info("%s: %s %s rewritten to %s: the calls to %s come through the proxy",
                                 spec.name, spec.url_name, mask_url(r.original), mask_url(r.replacement),
                                 spec.callback_name)
            elif self.table.refused and not self._refused_warned:
                self._refused_warned = True
                log.warning("%s: more than %d distinct callback URLs seen; the new ones go to the upstream "
                            "unchanged (their calls back will not be recorded)", spec.name, self.table.max_targets)

        # ------------------------------------------------ headers upstream
        target_host = self.upstream_host if not callback else _base(target)[1]
        conn_tokens = {t.strip().lower() for v in request.headers.getall("Connection", []) for t in v.split(",")}
        fwd: list[tuple[str, str]] = []
        host_done = False
        for k, v in request.raw_headers:
            name = k.decode("latin-1")
            low = name.lower()
            if low == "host":
                if not host_done:
                    fwd.append((name, target_host))
                    host_done = True
                continue
            if low == "content-length" and not complete:
                fwd.append((name, v.decode("latin-1")))
                continue
            if low in _REQUEST_HOP or low in conn_tokens:
                continue
            fwd.append((name, v.decode("latin-1")))
        if not host_done:
            fwd.insert(0, ("Host", target_host))

        data: Any
        if complete:
            data = body if (body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS", "TRACE")
                            or request.body_exists) else None
            self.recorder.record(rec, head[:cap], len(head), spec.name)
            stream_state: dict[str, Any] = {"recorded": True}
        else:
            # recorded when the body ends (or, at the latest, before the answer)
            stream_state = {"kept": [head[:cap]], "kept_n": min(len(head), cap), "size": len(head),
                            "recorded": False, "rec": rec}
            data = self._stream_body(head, request.content, stream_state)

        # ------------------------------------------------ forwarding
        ans: dict[str, Any] = {"side": spec.name, "dir": ans_dir, "conn": xid}
        answer = _Kept(cap)
        wsdl = self._wsdl_bases(request, raw_path, target, callback)
        resp: web.StreamResponse | None = None
        try:
            try:
                async with self._session().request(
                        request.method, url, data=data, headers=fwd,
                        allow_redirects=False, skip_auto_headers=_SKIP_AUTO) as up:
                    ans["t"] = time.time()
                    ans["ms"] = round((time.monotonic() - m0) * 1000, 3)
                    ans["http"] = {"status": up.status, "reason": up.reason or "",
                                   "version": f"{up.version.major}.{up.version.minor}" if up.version else "",
                                   "headers": _headers(up.raw_headers)}
                    resp = web.StreamResponse(status=up.status, reason=up.reason)
                    resp_conn = {t.strip().lower() for v in up.headers.getall("Connection", []) for t in v.split(",")}
                    for k, v in up.raw_headers:
                        name = k.decode("latin-1")
                        low = name.lower()
                        if low in _RESPONSE_HOP or low in resp_conn:
                            continue
                        resp.headers.add(name, v.decode("latin-1"))
                    chunked = "chunked" in up.headers.get("Transfer-Encoding", "").lower()
                    length = up.content_length if not chunked else None
                    first: list[bytes] = []
                    if wsdl is not None:
                        first, length = await self._wsdl_answer(up, answer, ans, wsdl, length)
                    if length is not None:
                        resp.content_length = length
                    try:
                        await resp.prepare(request)
                        for chunk in first:
                            await resp.write(chunk)
                    except Exception as e:  # noqa: BLE001
                        raise _ClientGone(e) from None
                    async for chunk in up.content.iter_any():
                        answer.add(chunk)
                        try:
                            await resp.write(chunk)
                        except Exception as e:  # noqa: BLE001
                            raise _ClientGone(e) from None
                    try:
                        await resp.write_eof()
                    except Exception as e:  # noqa: BLE001
                        raise _ClientGone(e) from None
                    self._ok(target)
            except _ClientGone as gone:
                ans["error"] = f"the client closed the connection during the answer ({gone.args[0]!r})"
                ans["incomplete"] = True
                return resp
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                self._record_streamed(stream_state, "the body was not sent whole")
                if resp is None or not resp.prepared:
                    ans.pop("http", None)
                    return self._upstream_down(xid, ans_dir, m0, target, callback, e)
                ans["error"] = self._describe(e, "the answer was cut")
                ans["incomplete"] = True
                if request.transport is not None:
                    request.transport.close()   # the client sees the answer end early, as it did
                return resp
        except asyncio.CancelledError:
            ans["incomplete"] = True
            ans["error"] = "the capture stopped before the exchange ended"
            raise
        finally:
            self._record_streamed(stream_state, "the upstream answered before the whole body was sent")
            if "http" in ans:
                ans["ms_total"] = round((time.monotonic() - m0) * 1000, 3)
                self.recorder.record(ans, answer.data(), answer.size, spec.name)
                self.exchanges += 1
        return resp

    # ---------------------------------------------------------------- WSDL
    def _wsdl_bases(self, request: web.Request, raw_path: str, target: str,
                    callback: bool) -> tuple[str, str] | None:
        """(upstream base, proxy base) for the WSDL addresses of the answer; None when no WSDL is asked.

        The proxy base is the Host the client used (it reached the proxy that way; this listener's
        callback address when the header is missing or unfit), plus ``/<prefix>/<n>`` on a callback path:
        a location on that upstream is only reachable through the proxy there.
        """
        if request.method != "GET" or not wsdl_query(raw_path):
            return None
        host = request.headers.get("Host", "").strip()
        proxy = "http://" + (host if _HOST_HEADER.fullmatch(host) else self.callback)
        if callback:
            number = raw_path[len(self.spec.prefix) + 2:].partition("/")[0].partition("?")[0]
            proxy += f"/{self.spec.prefix}/{number}"
        return _base(target)[0], proxy

    async def _wsdl_answer(self, up: aiohttp.ClientResponse, answer: _Kept, ans: dict[str, Any],
                           wsdl: tuple[str, str], length: int | None) -> tuple[list[bytes], int | None]:
        """Read the answer to a WSDL request whole and rewrite its addresses: (the chunks to send first,
        the Content-Length to send). The original goes to ``answer`` (the record); a compressed answer
        or one larger than BUFFER_LIMIT is relayed as it is, with a ``not_rewritten`` note."""
        coding = up.headers.get("Content-Encoding", "").strip().lower()
        if coding not in ("", "identity"):
            self._not_rewritten(ans, f"{coding}-encoded answer to a WSDL request: its addresses were not "
                                     f"rewritten (a client reading it may post to {mask_url(wsdl[0])} directly)")
            return [], length
        chunks: list[bytes] = []
        n = 0
        while n <= BUFFER_LIMIT:
            chunk = await up.content.readany()
            if not chunk:
                break
            answer.add(chunk)
            chunks.append(chunk)
            n += len(chunk)
        else:
            self._not_rewritten(ans, f"answer to a WSDL request larger than {BUFFER_LIMIT} bytes: its addresses "
                                     f"were not rewritten (a client reading it may post to {mask_url(wsdl[0])} "
                                     f"directly)")
            return chunks, length
        body, rewrites = rewrite_wsdl(b"".join(chunks), *wsdl)
        if not rewrites:
            return chunks, length
        _note_rewrites(ans, rewrites)
        for r in rewrites:
            key = (r.original, r.replacement)
            if key not in self._wsdl_logged and len(self._wsdl_logged) < MAX_TARGETS:
                self._wsdl_logged.add(key)
                log.info("%s: WSDL address %s rewritten to %s: the clients that read it post through the proxy",
                         self.spec.name, mask_url(r.original), mask_url(r.replacement))
        return [body], (len(body) if length is not None else None)

    def _not_rewritten(self, ans: dict[str, Any], why: str) -> None:
        ans["not_rewritten"] = why
        if not self._wsdl_warned:
            self._wsdl_warned = True
            log.warning("%s: %s; the traffic that takes that way will not be recorded", self.spec.name, why)

    async def _read_prefix(self, content: aiohttp.StreamReader, chunks: list[bytes]) -> tuple[bytes, bool]:
        """Up to BUFFER_LIMIT bytes of the body (also in ``chunks``); True when that is the whole body."""
        n = 0
        while n <= BUFFER_LIMIT:
            async with asyncio.timeout(BODY_IDLE):
                chunk = await content.readany()
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
            n += len(chunk)
        return b"".join(chunks), False

    async def _stream_body(self, head: bytes, content: aiohttp.StreamReader,
                           state: dict[str, Any]) -> AsyncIterator[bytes]:
        cap = self.recorder.body_cap
        yield head
        while True:
            async with asyncio.timeout(BODY_IDLE):
                chunk = await content.readany()
            if not chunk:
                break
            state["size"] += len(chunk)
            if state["kept_n"] < cap:
                piece = chunk[:cap - state["kept_n"]]
                state["kept"].append(piece)
                state["kept_n"] += len(piece)
            yield chunk
        self._record_streamed(state)

    def _record_streamed(self, state: dict[str, Any], incomplete: str | None = None) -> None:
        if state["recorded"]:
            return
        state["recorded"] = True
        rec = state["rec"]
        if incomplete:
            rec["incomplete"] = True
            rec["error"] = incomplete
        self.recorder.record(rec, b"".join(state["kept"]), state["size"], self.spec.name)

    # ------------------------------------------------------- local answers
    def _local_answer(self, xid: int, ans_dir: str, m0: float, status: int, text: str,
                      error: str) -> web.Response:
        resp = web.Response(status=status, text=text)
        body = text.encode("utf-8")
        self.recorder.record({"side": self.spec.name, "dir": ans_dir, "conn": xid,
                              "ms": round((time.monotonic() - m0) * 1000, 3),
                              "http": {"status": status, "reason": resp.reason, "version": "1.1",
                                       "headers": [["Content-Type", "text/plain; charset=utf-8"]]},
                              "error": error, "local": True}, body, len(body), self.spec.name)
        self.failures += 1
        return resp

    @staticmethod
    def _describe(e: BaseException, what: str) -> str:
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
            return f"{what}: no connection within {CONNECT_TIMEOUT:g} s"
        text = str(e) or type(e).__name__
        return f"{what}: {type(e).__name__}: {text}"

    def _upstream_down(self, xid: int, ans_dir: str, m0: float, target: str, callback: bool,
                       e: BaseException) -> web.Response:
        spec = self.spec
        who = spec.callback_name if callback else spec.upstream_name
        where = mask_url(_base(target)[0])
        why = self._describe(e, f"{who} at {where} could not be reached")
        hint = ("Check that it runs and accepts connections from this machine" +
                ("" if callback else f", and that {spec.upstream_flag} is right") + "; this proxy keeps serving")
        now = time.monotonic()
        key = _base(target)[0]
        if now - self._warned.get(key, -WARN_EVERY) >= WARN_EVERY:
            log.warning("%s: %s. %s.", spec.name, why, hint)
        self._warned[key] = now
        return self._local_answer(xid, ans_dir, m0, 502, f"smartcti-gateway capture: {why}. {hint}.\n", why)

    def _ok(self, target: str) -> None:
        key = _base(target)[0]
        if self._warned.pop(key, None) is not None:
            log.info("%s: %s answers again", self.spec.name, mask_url(key))
