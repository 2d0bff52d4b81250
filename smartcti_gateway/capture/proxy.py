"""The recording proxy as a whole: its sides, its file, its start and stop, what it tells the operator."""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .. import __version__
from .http import HttpSide, SideSpec, hostport
from .limits import BODY_CAP, DEFAULT_MAX_BYTES
from .mask import mask_url
from .raw import RawSide
from .record import Recorder
from .rewrite import rewrite_soap, rewrite_xmlrpc

log = logging.getLogger("smartcti_gateway.capture")

XMLRPC = SideSpec("xmlrpc", "_cb", ("to_pabx", "from_pabx", "callback_to_gateway", "callback_answer"),
                  rewrite_xmlrpc, "the NGC", "--xmlrpc-upstream", "DigitroCTILink's event listener",
                  "callback URL", "restart DigitroCTILink so it registers its callback URL again")
SOAP = SideSpec("soap", "_ev", ("to_middleware", "from_middleware", "event_to_protheus", "event_answer"),
                rewrite_soap, "DigitroCTILink", "--soap-upstream", "Protheus SmartCTIWSEventing (MV_TKCTIEV)",
                "AgentInService ipaddress", "have the Protheus users connect again (a new AgentInService)")

_WILDCARD = ("0.0.0.0", "::", "")


class ListenError(OSError):
    """A listener could not be bound: ``flag`` says which option to change."""

    def __init__(self, flag: str, address: str, error: OSError):
        super().__init__(error.errno, f"cannot listen on {address} ({error.strerror or error})")
        self.flag = flag
        self.address = address
        self.error = error


@dataclass
class CaptureOptions:
    out: str
    xmlrpc_listen: tuple[str, int] | None = None
    xmlrpc_upstream: str | None = None
    soap_listen: tuple[str, int] | None = None
    soap_upstream: str | None = None
    raw: list[tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=list)
    max_bytes: int = DEFAULT_MAX_BYTES
    callback_host: str | None = None
    body_cap: int = BODY_CAP
    force: bool = False


def address_towards(url: str) -> str:
    """This machine's address as the host of ``url`` sees it (a UDP connect: no packet is sent)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, parts.port or 80))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


class CaptureProxy:
    """``await start()``, then ``await stop()`` (returns the summary). Ports: ``xmlrpc.port`` etc."""

    def __init__(self, options: CaptureOptions):
        self.options = options
        self.recorder = Recorder(options.out, options.max_bytes, body_cap=options.body_cap,
                                 on_limit=self._limit_reached, force=options.force)
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self.xmlrpc: HttpSide | None = None
        self.soap: HttpSide | None = None
        self.raw: list[RawSide] = []
        self.started = 0.0
        self._stopped: dict[str, Any] | None = None
        o = options
        if o.xmlrpc_listen:
            self.xmlrpc = HttpSide(XMLRPC, o.xmlrpc_listen, o.xmlrpc_upstream or "",
                                   self._callback_host(o.xmlrpc_listen[0], o.xmlrpc_upstream or ""),
                                   self.recorder, self.next_id, self.session)
        if o.soap_listen:
            self.soap = HttpSide(SOAP, o.soap_listen, o.soap_upstream or "",
                                 self._callback_host(o.soap_listen[0], o.soap_upstream or ""),
                                 self.recorder, self.next_id, self.session)
        self.raw = [RawSide(listen, upstream, self.recorder, self.next_id) for listen, upstream in o.raw]

    def _callback_host(self, listen_host: str, upstream: str) -> str:
        if self.options.callback_host:
            return self.options.callback_host
        if listen_host in _WILDCARD:
            return address_towards(upstream)
        return listen_host

    def next_id(self) -> int:
        return next(self._ids)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10),
                auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))
        return self._session

    @property
    def sides(self) -> list[Any]:
        return [s for s in (self.xmlrpc, self.soap) if s is not None] + list(self.raw)

    # ---------------------------------------------------------------- start
    async def start(self) -> None:
        """Bind every listener (ListenError names the one that failed), then write the header."""
        started: list[Any] = []
        try:
            for side in self.sides:
                try:
                    await side.start()
                except OSError as e:
                    flag = {"xmlrpc": "--xmlrpc-listen", "soap": "--soap-listen"}.get(
                        getattr(getattr(side, "spec", None), "name", ""), "--raw-listen")
                    raise ListenError(flag, hostport(side.listen_host, side.listen_port), e) from None
                started.append(side)
        except BaseException:
            for side in started:
                await side.stop()
            self.recorder.close()
            try:
                if os.path.getsize(self.options.out) == 0:
                    os.unlink(self.options.out)
            except OSError:
                pass
            raise
        self.session()
        self.started = time.time()
        self.recorder.start(self.header())

    def header(self) -> dict[str, Any]:
        sides: dict[str, Any] = {}
        for name, side in (("xmlrpc", self.xmlrpc), ("soap", self.soap)):
            if side is not None:
                sides[name] = {"listen": side.listen, "upstream": mask_url(side.upstream),
                               "callback_base": f"http://{side.callback}/{side.spec.prefix}/"}
        if self.raw:
            sides["raw"] = [{"listen": r.listen, "upstream": r.upstream} for r in self.raw]
        return {"started": self.started, "sides": sides, "program": f"smartcti-gateway {__version__}",
                "max_bytes": self.options.max_bytes, "body_cap": self.options.body_cap,
                "pid": os.getpid()}

    def start_messages(self) -> list[str]:
        """What the operator must do now, one line each."""
        lines = [(f"capture: recording to {self.options.out} (at most {_size(self.options.max_bytes)}; "
                  f"passwords masked)")]
        if self.xmlrpc is not None:
            x = self.xmlrpc
            path = urlsplit(x.upstream).path or "/RPC2"
            lines.append(f"XML-RPC: listening on {x.listen}, forwarding to the NGC at {mask_url(x.upstream)}. "
                         f"Point DigitroCTILink's URL.Xml-RPC.Server at http://{x.callback}{path} and restart it; "
                         f"the callback URL it registers (URL_RETORNO) is rewritten to "
                         f"http://{x.callback}/_cb/<n>/… so the NGC's events come through here too")
        if self.soap is not None:
            s = self.soap
            path = urlsplit(s.upstream).path or "/"
            lines.append(f"SOAP: listening on {s.listen}, forwarding to DigitroCTILink at {mask_url(s.upstream)}. "
                         f"Set K4_CMD_URL in Protheus to http://{s.callback}{path}; the eventing URL "
                         f"(MV_TKCTIEV) in each AgentInService is rewritten to http://{s.callback}/_ev/<n>/… "
                         f"so the events to Protheus come through here too (users must connect again); the addresses "
                         f"in a WSDL read through here are pointed at it the same way")
        for r in self.raw:
            lines.append(f"raw: listening on {r.listen}, forwarding to {r.upstream} (point the client at "
                         f"{r.listen} instead of {r.upstream})")
        lines.append("stop with Ctrl+C or SIGTERM (the file is flushed every second)")
        return lines

    def _limit_reached(self, message: str) -> None:
        log.warning("capture: %s.", message)

    # ----------------------------------------------------------------- stop
    async def stop(self) -> dict[str, Any]:
        """Close the listeners, let in-flight exchanges end (2 s at most), write and close the file."""
        if self._stopped is not None:
            return self._stopped
        await asyncio.gather(*(side.stop() for side in self.sides), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        counts = {f"{side} {d}": n for (side, d), n in sorted(self.recorder.counts.items())}
        await asyncio.to_thread(self.recorder.close, {"counts": counts, "rewritten": self._rewritten()})
        self._stopped = self.summary()
        return self._stopped

    def _rewritten(self) -> list[dict[str, str]]:
        out = []
        for side in (self.xmlrpc, self.soap):
            if side is None:
                continue
            for n in sorted(side.table.first):
                r = side.table.first[n]
                out.append({"side": side.spec.name, "from": mask_url(r.original), "to": mask_url(r.replacement)})
        return out

    def summary(self) -> dict[str, Any]:
        rec = self.recorder
        try:
            size = os.path.getsize(rec.path)
        except OSError:
            size = rec.written
        by_side: dict[str, dict[str, int]] = {}
        for (side, d), n in sorted(rec.counts.items()):
            by_side.setdefault(side, {})[d] = n
        return {"file": rec.path, "size": size, "records": rec.records_written, "messages": by_side,
                "methods": dict(sorted(rec.methods.items())), "operations": dict(sorted(rec.operations.items())),
                "rewritten": self._rewritten(), "limited": rec.limited, "dropped": rec.dropped,
                "error": rec.error}

    @staticmethod
    def summary_lines(s: dict[str, Any]) -> list[str]:
        total = sum(n for d in s["messages"].values() for n in d.values())
        lines = [(f"capture stopped: {total} message(s) seen, {s['records']} record(s) in {s['file']} "
                  f"({_size(s['size'])})")]
        for side, dirs in s["messages"].items():
            lines.append(f"  {side}: " + ", ".join(f"{d} {n}" for d, n in dirs.items()))
        if not s["messages"]:
            lines.append("  nothing came through: check the addresses the programs were pointed at")
        if s["methods"]:
            lines.append("  XML-RPC methods: " + ", ".join(f"{m} ×{n}" for m, n in s["methods"].items()))
        if s["operations"]:
            lines.append("  SOAP operations: " + ", ".join(f"{m} ×{n}" for m, n in s["operations"].items()))
        for r in s["rewritten"]:
            lines.append(f"  {r['side']} callback URL rewritten: {r['from']} -> {r['to']}")
        if s["limited"]:
            lines.append("  --max-bytes was reached: the file ends there (forwarding went on)")
        if s["dropped"]:
            lines.append(f"  {s['dropped']} record(s) dropped: the disk could not keep up")
        if s["error"]:
            lines.append(f"  writing the file failed: {s['error']}")
        if s["rewritten"]:
            lines.append("  now point the programs back at their real peers (URL.Xml-RPC.Server, K4_CMD_URL) "
                         "and restart DigitroCTILink so the NGC gets its real callback URL again")
        return lines
