"""Dígitro NGC driver: neutral requests as XML-RPC calls, XML-RPC events as neutral events.

Requests go out on one aiohttp session (keep-alive) with the stdlib's
marshalling; events come in on an endpoint this driver adds to the
gateway's own listener, after ``cti.registra_retorno`` told the NGC where it
is. Every wire name comes from the ``Dialect``.
"""
from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import xmlrpc.client
from typing import Any, Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ...core.codes import Result
from ...core import pabx as p
from ...extlog import masked_struct
from ...httpbody import BodyTimeout, read_body
from ...tls import client_context
from ...urls import redact_url
from ...xmlsafe import has_dtd, xmlrpc_loads
from ..base import Common, Driver, EventSink, LostSink, Route, monitor_each
from .dialect import CHANNEL_UNKNOWN, OK, Dialect
from .options import DigitroOptions

log = logging.getLogger(__name__)

class XmlRpcFaultError(Exception):
    pass


class _EventRefused(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _dumps_response(value: Any) -> bytes:
    return xmlrpc.client.dumps((value,), methodresponse=True, allow_none=False).encode("utf-8")


def _dumps_fault(code: int, message: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True).encode("utf-8")


_DECLARED_ENCODING = re.compile(rb"<\?xml\s[^?>]*?encoding\s*=\s*[\"']([^\"']{1,40})[\"']")
_MAX_DEPTH = 16     # arrays and structs inside an XML-RPC value; the NGC's are flat



def _loads(body: bytes) -> tuple[tuple[Any, ...], str | None]:
    """``xmlrpc.client.loads`` refusing, in any encoding, what XML-RPC never carries: a DTD.

    ``has_dtd`` finds one in ASCII-compatible bytes before parsing; expat's doctype
    handler finds it in the others (UTF-16) at its first token, before any entity is
    declared or expanded. A body that declares no other encoding must be UTF-8.
    """
    if has_dtd(body):
        raise ValueError("DTDs and entities are not accepted")
    plain = False
    if body[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        m = _DECLARED_ENCODING.match(body)
        if m is None or m.group(1).lower() in (b"utf-8", b"utf8"):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"the body is not valid UTF-8 (byte offset {e.start})") from None
            plain = body[:1] == b"<"          # what xmlsafe would look for again
    return xmlrpc_loads(body, plain)


def _too_deep(value: Any) -> bool:
    """More than _MAX_DEPTH nested arrays/structs (str() and repr() of it would recurse too far)."""
    level = [value]
    for _ in range(_MAX_DEPTH):
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x)
                 if isinstance(v, (dict, list))]
        if not level:
            return False
    return True


def local_address_towards(url: str) -> str:
    """The address of this host as the PABX at ``url`` would see it (no packet is sent)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, parts.port or 80))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


class DigitroDriver(Driver):
    """One NGC for one link."""

    bounds_requests = True     # one XML-RPC round trip per request, under the session's total timeout

    def __init__(self, url: str, *, dialect: Dialect | None = None, timeout: float = 5.0,
                 callback_url: str = "", name: str = "digitro", ssl_context: ssl.SSLContext | None = None,
                 events_path: str = "", body_timeout: float | None = None):
        super().__init__(Common(0, name, timeout, body_timeout or timeout))
        self.url = url
        self.d = dialect or Dialect()
        self.timeout = timeout
        self.callback_url = callback_url
        self.ssl_context = ssl_context   # for an https url: system CAs + pabx.ca_file; None = system CAs
        self.events_path = events_path   # where the NGC posts events on the link's listener
        self.channel = ""
        self._session: aiohttp.ClientSession | None = None
        self._on_event: EventSink = lambda ev: None
        self._on_lost: LostSink = lambda reason: None
        self._poller: asyncio.Task | None = None      # dialect.transport.events = poll
        self._register_lock = asyncio.Lock()
        self.monitored: set[str] = set()
        self.body_timeout = body_timeout   # s for the NGC to send an event's body (HTTP 408 after)

    @classmethod
    def from_options(cls, o: DigitroOptions, common: Common) -> "DigitroDriver":
        driver = cls(o.url, dialect=Dialect.with_overrides(o.dialect), timeout=common.timeout,
                     callback_url=o.callback_url, name=common.name, ssl_context=client_context(o.ca_file),
                     events_path=o.events_path, body_timeout=common.body_timeout)
        driver.common = common
        return driver

    # ------------------------------------------------------ what is shown
    @property
    def target(self) -> str:
        return redact_url(self.url)

    def describe(self) -> str:
        return f"PABX {self.target}, events expected at {redact_url(self.callback_url) or '(nowhere)'}"

    # ------------------------------------------------------- inbound HTTP
    def routes(self) -> list[Route]:
        return [Route("POST", self.events_path, self.handle_event_request)] if self.events_path else []

    @property
    def peer_host(self) -> str:
        return urlsplit(self.url).hostname or ""

    peer_key, peer_name = "url", "NGC"

    def listening(self, scheme: str, host: str, port: int) -> None:
        """The NGC is told (cti.registra_retorno) to post events there, unless callback_url says where."""
        if self.callback_url or not self.events_path or self.d.polled:
            return
        if host in ("0.0.0.0", "::", ""):
            host = local_address_towards(self.url)
        host = f"[{host}]" if ":" in host else host
        self.callback_url = f"{scheme}://{host}:{port}{self.events_path}"

    # ------------------------------------------------------------ lifecycle
    async def start(self, on_event: EventSink, on_lost: LostSink = lambda reason: None) -> None:
        self._on_event, self._on_lost = on_event, on_lost
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=32, keepalive_timeout=30, ssl=self.ssl_context or True),
        )
        # the link makes the first contact (reconnect: listener and monitors), and judges its outcome
        if self.d.polled:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
            self._poller = None
        if self._session is not None:
            if self.channel:
                try:
                    await self._call("unregister_listener", {"channel": self.channel})
                except p.PabxError:
                    pass
            await self._session.close()
            self._session = None

    def _must_register(self) -> bool:
        return not self.channel and bool(self.callback_url or self.d.polled) \
            and bool(self.d.methods.get("register_listener"))

    async def _ensure_registered(self) -> None:
        if not self._must_register():
            return
        async with self._register_lock:
            if self.channel:
                return
            reply = await self._call("register_listener", {"callback_url": self.callback_url})
            self.channel = str(reply.get(self.d.fields["channel"], ""))
            log.info("%s: events registered at %s (channel %s)", self.name, redact_url(self.callback_url),
                     self.channel)

    async def _poll(self) -> None:
        """transport.events = poll: ask the NGC for its events every poll_interval; each one goes where a
        posted one would. A failed poll is a lost link for the link's supervisor to judge."""
        interval = float(self.d.transport.get("poll_interval", 1.0))
        event_method = self.d.methods.get("event") or None
        while True:
            await asyncio.sleep(interval)
            try:
                reply = await self._call("poll_events", {"channel": self.channel} if self.channel else {})
            except p.PabxUnavailable as e:
                self._on_lost(e.detail)
                continue
            except p.PabxError as e:
                log.warning("%s: polling for events refused: %s", self.name, e.detail)
                continue
            items = reply.get("events", [])
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    self.accept_event(event_method, (item,))
                elif isinstance(item, list) and self.d.event_methods and item and isinstance(item[0], str):
                    self.accept_event(item[0], tuple(item[1:]))
                elif isinstance(item, list):
                    self.accept_event(event_method, tuple(item))
                else:
                    self.events_rejected += 1

    # ------------------------------------------------------------ link health
    async def keepalive(self) -> bool:
        """Is the NGC there and does it still know our listener? False: register again (it restarted)."""
        try:
            await self._call("status", {"channel": self.channel} if self.channel else {})
        except p.PabxUnavailable:
            raise
        except p.PabxError as e:
            if getattr(e, "result", "") == CHANNEL_UNKNOWN:
                return False
            raise
        return bool(self.channel) or not self.callback_url

    async def reconnect(self, devices: list[str]) -> list[str]:
        """Register the listener again and monitor ``devices``; returns those the NGC refused."""
        self.channel = ""
        await self._ensure_registered()

        async def monitor(device: str) -> None:
            await self._call("monitor_start", {"channel": self.channel, "device": device})
            self.monitored.add(device)
        return await monitor_each(devices, monitor, f"{self.name}: the NGC refused to monitor %s again (%s)",
                                  self.concurrency)

    # ------------------------------------------------------------- requests
    async def execute(self, req: p.Request) -> Any:
        """Perform ``req``; returns its reply or raises PabxError with a SmartCTI code."""
        handler = _HANDLERS.get(type(req))
        if handler is None:
            raise p.PabxError(Result.NOT_SUPPORTED_FEATURE, f"{type(req).__name__} is not supported")
        if not self._must_register():     # one round trip, under the session's total timeout (bounds_requests)
            return await handler(self, req)
        try:                              # registering first: two round trips, bounded as one
            async with asyncio.timeout(self.timeout):
                return await handler(self, req)
        except TimeoutError:
            raise p.PabxUnavailable(Result.INTERNAL_ERROR,
                                    f"no answer from {redact_url(self.url)} within {self.timeout:g} s") from None

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Call a logical ``method`` with logical ``params``; returns the reply struct."""
        if self._session is None:
            raise p.PabxUnavailable(Result.OUT_OF_SERVICE, "driver not started")
        f = self.d.fields
        struct = {f[k]: self._encode(k, v) for k, v in params.items()}
        wire_method = self.d.methods[method]
        if not wire_method:
            raise p.PabxError(Result.NOT_SUPPORTED_FEATURE, f"the dialect has no {method} method")
        layout = self.d.params.get(method)
        args = tuple(struct.get(f[k], self._encode(k, "")) for k in layout) if layout is not None else (struct,)
        body = xmlrpc.client.dumps(args, wire_method, allow_none=False).encode("utf-8")
        device = str(params.get("device", "")) if self.trace.on else ""
        if device:
            self.trace(device, f"PABX> {wire_method} {masked_struct(struct)}")
        try:
            reply = await self._post(method, wire_method, body)
        except p.PabxError as e:
            if device:
                self.trace(device, f"PABX< {wire_method} failed: {e.code.value} {e.detail}")
            raise
        if device:
            self.trace(device, f"PABX< {wire_method} {masked_struct(reply)}")
        return reply

    def _encode(self, field: str, value: Any) -> Any:
        """A logical field's value as the dialect puts it on the wire (dialect.types; text by default)."""
        kind = self.d.types.get(field)
        if kind == "int":
            if isinstance(value, int):
                return value
            text = str(value).strip()
            if not text:
                return 0                     # none known: the NGC acts on the obvious one
            if not re.fullmatch(r"-?\d{1,18}", text):
                raise p.PabxError(Result.INVALID_CALL_ID if field == "call_id" else Result.INVALID_OPTION,
                                  f"{field} {text[:40]!r} is not the number this NGC expects")
            return int(text)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "s", "sim", "yes")
        return value

    async def _post(self, method: str, wire_method: str, body: bytes) -> dict[str, Any]:
        f = self.d.fields
        try:
            async with self._session.post(self.url, data=body, headers={"Content-Type": "text/xml"}) as resp:
                text = await resp.read()
                if resp.status != 200:
                    raise p.PabxUnavailable(Result.OUT_OF_SERVICE, f"{wire_method}: HTTP {resp.status} from {redact_url(self.url)}")
        except asyncio.TimeoutError:
            raise p.PabxUnavailable(Result.INTERNAL_ERROR,
                                    f"{wire_method}: no answer from {redact_url(self.url)} within {self.timeout:g} s") from None
        except aiohttp.ClientError as e:
            raise p.PabxUnavailable(Result.OUT_OF_SERVICE, f"{wire_method}: {redact_url(self.url)} unreachable ({e})") from None
        try:
            (reply,), _ = _loads(text)
        except xmlrpc.client.Fault as fault:
            raise self._refusal(wire_method, str(fault.faultCode), fault.faultString) from None
        except Exception as e:  # noqa: BLE001 - anything unreadable is the PABX's fault
            raise p.PabxError(Result.INVALID_SIZE_BUFFER, f"{wire_method}: unreadable answer ({e})") from None
        if method == "poll_events" and isinstance(reply, list):
            return {f["result"]: OK, "events": reply}
        style = self.d.reply_style(method)
        if style == "value":        # the answer is the result itself: OK, or a code of dialect.results
            result = str(reply)
            if not self.d.success(result):
                raise self._refusal(wire_method, result, "")
            return {f["result"]: OK}
        if style == "fault" and not isinstance(reply, dict):   # any answer is success; a Fault was the refusal
            returned = self.d.returns.get(method)
            return {f["result"]: OK, **({f[returned]: reply} if returned else {})}
        if not isinstance(reply, dict):
            raise p.PabxError(Result.INVALID_SIZE_BUFFER, f"{wire_method}: answer is not a struct")
        if style == "fault":
            return {f["result"]: OK, **reply}
        result = str(reply.get(f["result"], ""))
        if not self.d.success(result):
            raise self._refusal(wire_method, result, str(reply.get(f["message"], "")))
        return reply

    def _refusal(self, method: str, result: str, message: str) -> p.PabxError:
        code = self.d.results.get(result)
        if code is None:
            log.warning("%s: %s answered the unknown result %r (%s); add it to dialect.results "
                        "in the config to map it to a SmartCTI code", self.name, method, result, message)
            code = Result.INTERNAL_ERROR
        error = p.PabxError(code, f"{method}: {result} {message}".strip())
        error.result = result
        return error

    def _groups(self, groups: tuple[str, ...]) -> str:
        return ",".join(groups)

    # --------------------------------------------------------------- events
    async def handle_event_request(self, request: web.Request) -> web.Response:
        try:
            body = await read_body(request, self.body_timeout, lambda: _dumps_fault(
                4, f"request body not received within {self.body_timeout:g} s"), "text/xml")
        except BodyTimeout as e:
            self.events_rejected += 1
            log.warning("%s: event from %s: body not received within %g s", self.name, request.remote,
                        self.body_timeout)
            return e.response
        try:
            params, method = _loads(body)
        except Exception as e:  # noqa: BLE001 - a bad event must never hurt the daemon
            self.events_rejected += 1
            log.warning("%s: unreadable event from %s: %s", self.name, request.remote, e)
            return web.Response(body=_dumps_fault(1, f"unreadable XML-RPC request: {e}"), content_type="text/xml")
        fault = self.accept_event(method, params)
        if fault is not None:
            return web.Response(body=_dumps_fault(*fault), content_type="text/xml")
        return web.Response(body=_dumps_response({self.d.fields["result"]: OK}), content_type="text/xml")

    def _event_struct(self, method: str | None, params: tuple) -> dict[str, Any]:
        """The event as one struct of wire field names, whatever its shape in the dialect; _EventRefused
        (fault code, message) when it is not an event."""
        d = self.d
        if d.event_methods:                   # one method per event: the method says which
            name = d.event_methods.get(method or "")
            if name is None:
                raise _EventRefused(1, f"unknown method {method!r}; expected one of {', '.join(d.event_methods)}")
        elif method != d.methods["event"]:
            raise _EventRefused(1, f"unknown method {method!r}; expected {d.methods['event']}")
        else:
            name = None
        layout = d.event_params.get(method or "") or d.event_params.get("default")
        if layout is not None:
            if len(params) > len(layout) or any(isinstance(v, (dict, list)) for v in params):
                raise _EventRefused(2, f"the event takes at most {len(layout)} plain parameters ({', '.join(layout)})")
            struct = {d.fields[k]: v for k, v in zip(layout, params)}
        elif len(params) != 1 or not isinstance(params[0], dict):
            raise _EventRefused(2, "the event must be one struct")
        else:
            struct = params[0]
        if _too_deep(struct):
            raise _EventRefused(2, f"the event nests more than {_MAX_DEPTH} arrays or structs")
        if name is not None:
            struct = {**struct, d.fields["event"]: name}
        return struct

    def accept_event(self, method: str | None, params: tuple) -> tuple[int, str] | None:
        """One event from the NGC, posted to us or returned by a poll: to the link. The fault owed to the
        NGC when it is refused, else None. Never raises."""
        try:
            struct = self._event_struct(method, params)
            event = self.parse_event(struct)
        except _EventRefused as e:
            self.events_rejected += 1
            return e.code, e.message
        except ValueError as e:
            self.events_rejected += 1
            log.warning("%s: event refused: %s", self.name, e)
            return 3, str(e)
        except Exception as e:  # noqa: BLE001 - a bug here costs the NGC one fault, not the endpoint
            self.events_rejected += 1
            log.exception("%s: event not understood", self.name)
            return 3, f"event not understood ({type(e).__name__})"
        self.events_received += 1
        if self.trace.on:
            self.trace(str(struct.get(self.d.fields["device"], "")), f"PABX event {masked_struct(struct)}")
        if event is not None:
            try:
                self._on_event(event)
            except Exception:  # noqa: BLE001 - one bad event must not stop the others
                log.exception("%s: failed to apply event %r", self.name, event)
        return None

    def parse_event(self, s: dict[str, Any]) -> p.PabxEvent | None:
        """A neutral event from an event struct; None for events the gateway does not use."""
        f = self.d.fields

        def text(key: str) -> str:
            v = s.get(f[key], "")
            return v.strip() if isinstance(v, str) else str(v)

        name = text("event")
        kind = self.d.events.get(name)
        if kind is None:
            raise ValueError(f"unknown EVENTO {name!r}")
        device = text("device")
        if not device:
            raise ValueError(f"{name} without {f['device']}")
        try:
            agent_type = p.AgentEventType(kind)
        except ValueError:
            agent_type = None
        if agent_type is not None:
            return p.AgentEvent(agent_type, device, text("agent"),
                                tuple(g for g in text("groups").split(",") if g.strip()), text("reason"))
        call_id = text("call_id")
        if not call_id:
            raise ValueError(f"{name} without {f['call_id']}")
        cause = Result.SUCCESS
        if kind == p.CallEventType.FAILED.value:
            cause = Result(self.d.results.get(text("cause"), Result.UNKNOWN_ERROR))
        return p.CallEvent(
            p.CallEventType(kind), device, call_id,
            calling=text("calling"), called=text("called"), other_device=text("other_device"),
            old_call_id=text("old_call_id"), group=text("last_redirection"), data=text("data"),
            direction=self.d.directions.get(text("direction"), p.Direction.UNKNOWN),
            cause=cause, trunks=text("trunks"), category=text("category"),
        )


# ------------------------------------------------------- request handlers
async def _monitor_start(drv: DigitroDriver, r: p.MonitorStart):
    await drv._ensure_registered()
    await drv._call("monitor_start", {"channel": drv.channel, "device": r.device})
    drv.monitored.add(r.device)


async def _monitor_stop(drv: DigitroDriver, r: p.MonitorStop):
    drv.monitored.discard(r.device)
    if drv.channel or not drv.d.methods.get("register_listener"):   # an NGC without listeners is told too
        await drv._call("monitor_stop", {"channel": drv.channel, "device": r.device})


async def _make_call(drv: DigitroDriver, r: p.MakeCall):
    reply = await drv._call("make_call", {"device": r.device, "device_password": r.password,
                                          "number": r.number, "route": r.route, "account": ""})
    return str(reply.get(drv.d.fields["call_id"], ""))


def _on_call(method: str, with_call_id: bool = True):
    async def handler(drv: DigitroDriver, r):
        params = {"device": r.device}
        if with_call_id:
            params["call_id"] = r.call_id
        await drv._call(method, params)
    return handler


async def _attach_data(drv: DigitroDriver, r: p.AttachCallData):
    if not drv.d.methods.get("attach_data"):
        raise p.PabxError(Result.NOT_SUPPORTED_FEATURE, "this dialect attaches no data to calls "
                                                        "(pabx.dialect.methods.attach_data)")
    await drv._call("attach_data", {"device": r.device, "call_id": r.call_id, "data": f"{r.name}={r.value}"})


def _to_number(method: str):
    async def handler(drv: DigitroDriver, r):
        await drv._call(method, {"device": r.device, "call_id": r.call_id, "destination": r.number})
    return handler


async def _consultation(drv: DigitroDriver, r: p.ConsultationCall):
    reply = await drv._call("consultation", {"device": r.device, "destination": r.number, "route": r.route})
    return str(reply.get(drv.d.fields["call_id"], ""))


async def _forward(drv: DigitroDriver, r: p.SetForwarding):
    await drv._call("forward", {"device": r.device, "destination": r.number})


_AGENT_METHODS = {
    p.AgentState.LOGGED_ON: "agent_login",
    p.AgentState.LOGGED_OFF: "agent_logout",
    p.AgentState.READY: "agent_ready",
    p.AgentState.NOT_READY: "agent_not_ready",
}


async def _set_agent_state(drv: DigitroDriver, r: p.SetAgentState):
    method = _AGENT_METHODS.get(r.state)
    if method is None:
        raise p.PabxError(Result.NOT_SUPPORTED_FEATURE, f"agent state {r.state.value} cannot be set")
    params = {"device": r.device, "agent": r.agent_id, "device_password": r.password, "groups": drv._groups(r.groups)}
    if r.reason:        # pause_reasons[].pabx, wrap_up.reason: the NGC's MOTIVO (absent when none, as before)
        params["reason"] = r.reason
    await drv._call(method, params)


def _split(text: Any) -> tuple[str, ...]:
    return tuple(x.strip() for x in str(text or "").split(",") if x.strip())


async def _agent_state(drv: DigitroDriver, r: p.QueryAgentState) -> p.AgentInfo:
    reply = await drv._call("agent_state", {"device": r.device})
    f = drv.d.fields
    name = str(reply.get(f["agent_state"], ""))
    state = drv.d.agent_states.get(name)
    if state is None:
        raise p.PabxError(Result.INVALID_SIZE_BUFFER, f"unknown agent state {name!r}")
    return p.AgentInfo(state, str(reply.get(f["agent"], "")), _split(reply.get(f["groups"])))


def _call_info(drv: DigitroDriver, c: dict[str, Any]) -> p.CallInfo:
    f, d = drv.d.fields, drv.d

    def t(key: str) -> str:
        return str(c.get(f[key], "") or "").strip()

    return p.CallInfo(
        call_id=t("call_id"),
        state=d.call_states.get(t("call_state"), p.ConnectionState.NULL),
        calling=t("calling"), called=t("called"), other_devices=_split(c.get(f["other_devices"])),
        group=t("last_redirection"), trunks=t("trunks"), category=t("category"), data=t("data"),
        direction=d.directions.get(t("direction"), p.Direction.UNKNOWN),
    )


def _calls(drv: DigitroDriver, reply: dict[str, Any]) -> list[dict[str, Any]]:
    calls = reply.get(drv.d.fields["calls"], [])
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise p.PabxError(Result.INVALID_SIZE_BUFFER, f"{drv.d.fields['calls']} is not a list of structs")
    return calls


async def _snapshot(drv: DigitroDriver, r: p.SnapshotDevice) -> list[p.CallInfo]:
    reply = await drv._call("device_calls", {"device": r.device})
    return [_call_info(drv, c) for c in _calls(drv, reply) if c.get(drv.d.fields["call_id"])]


async def _group_calls(drv: DigitroDriver, r: p.QueryGroupCalls) -> list[p.GroupCall]:
    reply = await drv._call("group_calls", {"groups": r.device})
    f = drv.d.fields
    return [
        p.GroupCall(str(c.get(f["call_id"], "")),
                    drv.d.call_states.get(str(c.get(f["call_state"], "")), p.ConnectionState.NULL),
                    str(c.get(f["device"], "") or ""), str(c.get(f["calling"], "") or ""))
        for c in _calls(drv, reply) if c.get(f["call_id"])
    ]


async def _status(drv: DigitroDriver, r: p.QuerySystemStatus):
    await drv._call("status", {})
    await drv._ensure_registered()


async def _version(drv: DigitroDriver, r: p.QueryVersion) -> str:
    reply = await drv._call("version", {})
    return str(reply.get(drv.d.fields["version"], ""))


_HANDLERS: dict[type, Callable[..., Any]] = {
    p.MonitorStart: _monitor_start,
    p.MonitorStop: _monitor_stop,
    p.MakeCall: _make_call,
    p.AnswerCall: _on_call("answer"),
    p.ClearConnection: _on_call("clear"),
    p.HoldCall: _on_call("hold"),
    p.RetrieveCall: _on_call("retrieve"),
    p.AlternateCall: _on_call("alternate", with_call_id=False),
    p.ConsultationCall: _consultation,
    p.TransferCall: _on_call("transfer", with_call_id=False),
    p.ConferenceCall: _on_call("conference", with_call_id=False),
    p.SingleStepTransfer: _to_number("single_step_transfer"),
    p.ImmediateTransfer: _to_number("immediate_transfer"),
    p.SetForwarding: _forward,
    p.AttachCallData: _attach_data,
    p.StartRecording: _on_call("start_recording"),
    p.StopRecording: _on_call("stop_recording"),
    p.SetAgentState: _set_agent_state,
    p.QueryAgentState: _agent_state,
    p.SnapshotDevice: _snapshot,
    p.QueryGroupCalls: _group_calls,
    p.QuerySystemStatus: _status,
    p.QueryVersion: _version,
}
