"""A stand-in for the old DigitroCTILink middleware: the "old program" a site runs before the gateway.

It is test support code and deliberately independent of the gateway: nothing from
``smartcti_gateway`` is imported (no core, no link, no Dígitro driver, no SOAP helpers), so a
dialect learnt from its traffic (issue 13) was learnt from a second implementation, not from the
gateway talking to itself.

Toward Protheus it hosts SmartCTIWSCommand (SOAP 1.1 over HTTP, document/literal wrapped, Axis2
answer shape ``<ns:{Op}Response xmlns:ns="http://DefaultNamespace"><ns:return>…``; smartcti.md §1)
and pushes SmartCTIWSEventing events (§3) to the URL each device gave in ``AgentInService``.

Toward the NGC it speaks one foreign XML-RPC dialect, hard-coded here (tests/fixtures/foreign_dialect.yaml
describes the same dialect as data, and this module does not read that file):

* one ``ura.*`` method per command, positional parameters (``ura.discar(ramal, destino)``…),
  call ids as XML-RPC ints;
* any answer is success, an XML-RPC Fault with a numeric code (101…110) is the refusal; ``ura.discar``
  and ``ura.consultar`` answer the new call's id, ``ura.ping`` answers 0, ``ura.situacaoOperador``
  answers a struct ``{codigo: "0", situacao: "LIVRE"}``;
* no listener registration: ``ura.eventos()`` is polled every ``poll_interval`` (0.1 s) and answers a
  list of events, each ``[wire method, ramal, idChamada, origem, discado, outroRamal, idAnterior, fila,
  sentido, causa, operador, filas, motivo]``.

It is less careful than the gateway (no retries, no WSDL reading of the eventing side, one sender for
every event) but correct on the happy paths.

    standin = CtiLinkStandIn("http://127.0.0.1:8090/RPC2", link_id=1)
    await standin.start()          # standin.url = K4_CMD_URL of the SK4 row
    ...
    await standin.close()
"""
from __future__ import annotations

import asyncio
import logging
import re
import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from lxml import etree

__all__ = ["COMMAND_PATH", "ENDPOINT_SUFFIX", "CtiLinkStandIn"]

log = logging.getLogger("tests.ctilink_standin")

COMMAND_PATH = "/axis2/services/SmartCTIWSCommand"
ENDPOINT_SUFFIX = ".SmartCTIWSCommandHttpSoap11Endpoint/"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE_NS = "http://DefaultNamespace"

# ------------------------------------------------------------------ the foreign dialect, hard-coded
# NGC fault code -> SmartCTI result code (smartcti.md §2)
RESULTS = {"0": 0, "101": 18, "102": 1, "103": 23, "104": 2, "105": 10, "106": 11, "107": 3,
           "108": 19, "109": 5, "110": 24}
UNKNOWN_REFUSAL = 24     # a fault code not in RESULTS
NGC_UNREACHABLE = 22     # SMARTCTI_OUTOFSERVICE
NO_CALL = 3              # SMARTCTI_INVALIDOPTION: the command needs a call the device does not have
NOTHING_HELD = 19        # SMARTCTI_NOWAITINGCALL
NOT_SUPPORTED = 21

# ura.situacaoOperador's situacao -> queryAgentState value (smartcti.md §4.3)
AGENT_STATES = {"DESLOGADO": 25, "LOGADO": 26, "POS": 27, "LIVRE": 28, "FALANDO": 29, "PAUSA": 30}
STATE_UNKNOWN = 25       # never 16: it would close Protheus' listener
# ura.chamadasDaFila's situacaoChamada -> the state of a GetCallList entry (smartcti.md §4.4: 7 = queued)
CALL_LIST_STATES = {"INI": "1", "TOC": "2", "CON": "3", "RET": "4", "FAL": "6", "FIL": "7"}

# polled event method -> SmartCTIWSEventing operation (None: known, not told to Protheus)
EVENTS = {
    "ura.evTocando": "RINGING",
    "ura.evAtendida": "ANSWERED",
    "ura.evRetida": "HELD",
    "ura.evRecuperada": "RETRIEVE",
    "ura.evFinalizada": "CONNECTIONCLEARED",
    "ura.evIniciada": "SERVICEINITIATED",
    "ura.evOriginada": "ORIGINATED",
    "ura.evFalhou": "CALLFAILURE",
    "ura.evLogado": "LOGGEDON",
    "ura.evDeslogado": "LOGGEDOFF",
    "ura.evLivre": "READY",
    "ura.evPausa": "NOTREADY",
    "ura.evPos": "NOTREADY",           # after-call work: not taking calls
    "ura.evTransferida": None,
    "ura.evConferencia": None,
    "ura.evDesviada": None,
}
# positional event parameters after the method name
EVENT_FIELDS = ("ramal", "idChamada", "origem", "discado", "outroRamal", "idAnterior", "fila", "sentido",
                "causa", "operador", "filas", "motivo")
# sentido -> RINGING.CALLTYPE (1 pops the receptive screen, 3 the dialler screen, 2 nothing)
CALL_TYPES = {"IN": 1, "OUT": 2, "DISC": 3, "INT": 2}

# SmartCTIWSEventing parameters after CDEVICE, ILINKID (smartcti.md §3.2)
_CALL = ("CALLID", "ANI", "DNIS")
_AGENT = ("CAGENTID", "CGROUPID")
EVENT_PARAMS = {
    "INSERVICE": (),
    "RINGING": _CALL + ("ASSOCIATEDDATA", "CALLTYPE"),
    "SERVICEINITIATED": _CALL, "ORIGINATED": _CALL, "ANSWERED": _CALL, "HELD": _CALL, "RETRIEVE": _CALL,
    "CONNECTIONCLEARED": _CALL,
    "CALLFAILURE": _CALL + ("CAUSE",),
    "LOGGEDON": _AGENT, "LOGGEDOFF": _AGENT, "READY": _AGENT, "NOTREADY": _AGENT,
}

# SmartCTIWSCommand operations and their request elements (smartcti.md §1.2); string results marked
OPERATIONS: dict[str, tuple[str, ...]] = {
    "AgentInService": ("device", "ipaddress"),
    "AgentOutOfService": ("device",),
    "Logon": ("device", "agentID", "groupID"),
    "LogonPass": ("device", "agentID", "groupID", "agentPass"),
    "Logoff": ("device", "agentID", "groupID"),
    "LogoffPass": ("device", "agentID", "groupID", "agentPass"),
    "Ready": ("device", "agentID", "groupID"),
    "ReadyPass": ("device", "agentID", "groupID", "agentPass"),
    "NotReady": ("device", "agentID", "groupID"),
    "NotReadyPass": ("device", "agentID", "groupID", "agentPass"),
    "MakeCall": ("device", "telephoneNumber"),
    "MakeCallPass": ("device", "telephoneNumber", "agentID", "agentPass", "route"),
    "Answer": ("device",),
    "ConnectionClear": ("device", "CallID"),
    "Hold": ("device",),
    "Retrieve": ("device",),
    "Alternate": ("device",),
    "Conference": ("device",),
    "Consultation": ("device", "deviceTo", "Route"),
    "Transfer": ("device",),
    "OneStepCallTransfer": ("device", "deviceTo"),
    "ImmediateTransfer": ("device", "deviceTo"),
    "Redirect": ("device", "deviceTo"),
    "StartRec": ("device",),
    "StopRec": ("device",),
    "SystemStatus": (),
    "selfTest": (),
    "showVersion": (),
    "queryAgentState": ("cDevice",),
    "GetInfoChamAtiv": ("cDevice",),
    "getActiveCallInfo": ("cDevice",),
    "GetCallList": ("groupID",),
}
_BY_LOWER = {name.lower(): name for name in OPERATIONS}
_UNTRIMMED = {"device", "cDevice"}   # echoed to Protheus exactly as written (events are routed by it)
VERSION = "DigitroCTILink stand-in 1.0"

# call states kept per device
ALERTING, INITIATED, CONNECTED, HELD = "alerting", "initiated", "connected", "held"


class _Refused(Exception):
    """The NGC refused (a fault) or could not be reached; ``code`` is the SmartCTI result."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass
class _Call:
    call_id: Any                  # int as the NGC gives it
    state: str
    ani: str = ""
    dnis: str = ""
    other: str = ""
    group: str = ""


@dataclass
class _Device:
    name: str                     # as Protheus wrote it (CDEVICE of every event)
    event_url: str = ""           # where its events go; "" = not in service
    agent: str = ""
    groups: str = ""
    calls: dict[Any, _Call] = field(default_factory=dict)

    def find(self, *states: str) -> _Call | None:
        """The most recent call in one of ``states`` (in order of preference)."""
        for state in states:
            for call in reversed(list(self.calls.values())):
                if call.state == state:
                    return call
        return None


def _call_id(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d{1,18}", text) else text


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _safe(value: Any) -> str:
    """A string parameter Protheus can paste between single quotes (smartcti.md §3.4)."""
    return re.sub(r"['\r\n]", " ", str(value))


def _response(op: str, value: int | str) -> bytes:
    text = str(value) if isinstance(value, int) else escape(value)
    return (f"<?xml version='1.0' encoding='UTF-8'?>"
            f'<soapenv:Envelope xmlns:soapenv="{SOAP11_NS}"><soapenv:Body>'
            f'<ns:{op}Response xmlns:ns="{SERVICE_NS}"><ns:return>{text}</ns:return></ns:{op}Response>'
            f"</soapenv:Body></soapenv:Envelope>").encode()


def _fault(message: str) -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?>"
            f'<soapenv:Envelope xmlns:soapenv="{SOAP11_NS}"><soapenv:Body><soapenv:Fault>'
            f"<faultcode>soapenv:Client</faultcode><faultstring>{escape(message)}</faultstring>"
            f"</soapenv:Fault></soapenv:Body></soapenv:Envelope>").encode()


def _local(tag: Any) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_command(body: bytes) -> tuple[str, dict[str, str]]:
    """(operation, {element: value}) of a SmartCTIWSCommand request; ValueError if it is not one."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ValueError("DTDs are not accepted")
    try:
        root = etree.fromstring(body.strip(), _PARSER)
    except etree.XMLSyntaxError as e:
        raise ValueError(f"not XML: {e}") from None
    if root.tag != f"{{{SOAP11_NS}}}Envelope":
        raise ValueError(f"not a SOAP 1.1 envelope: {root.tag}")
    soap_body = root.find(f"{{{SOAP11_NS}}}Body")
    wrapper = None if soap_body is None else next((c for c in soap_body if isinstance(c.tag, str)), None)
    if wrapper is None:
        raise ValueError("empty SOAP Body")
    op = _BY_LOWER.get(_local(wrapper.tag).lower())
    if op is None:
        raise ValueError(f"unknown operation {_local(wrapper.tag)!r}")
    wanted = {p.lower(): p for p in OPERATIONS[op]}
    args = dict.fromkeys(OPERATIONS[op], "")
    for child in wrapper:
        name = wanted.get(_local(child.tag).lower())
        if name is None:
            continue
        value = "".join(child.itertext())
        args[name] = value if name in _UNTRIMMED else value.strip()
    return op, args


def event_target(url: str) -> tuple[str, str]:
    """(POST URL, namespace) of a SmartCTIWSEventing URL as Protheus gives it (MV_TKCTIEV)."""
    parts = urlsplit(url.strip())
    query = "" if parts.query.lower() == "wsdl" else parts.query
    return (urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")),
            f"{parts.scheme}://{parts.netloc}/")


def event_envelope(namespace: str, method: str, params: list[tuple[str, Any]]) -> bytes:
    """The ADVPL shape: wrapper in the service's namespace as default namespace, unprefixed children."""
    children = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in params)
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body>'
            f'<{method} xmlns="{escape(namespace)}">{children}</{method}>'
            f"</soap:Body></soap:Envelope>").encode()


class CtiLinkStandIn:
    """The old middleware: SmartCTIWSCommand on ``url``, the foreign dialect toward ``ngc_url``."""

    def __init__(self, ngc_url: str, *, link_id: int = 1, host: str = "127.0.0.1", port: int = 0,
                 poll_interval: float = 0.1, timeout: float = 5.0) -> None:
        self.ngc_url = ngc_url
        self.link_id = int(link_id)
        self.host = host
        self.port = port
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.devices: dict[str, _Device] = {}        # by trimmed device
        # what happened, for tests: (operation, args, answer); (event, params, Protheus' result)
        self.commands: list[tuple[str, dict[str, str], int | str]] = []
        self.pushed: list[tuple[str, list[tuple[str, Any]], int | str]] = []
        self.polls = 0
        self._outbox: asyncio.Queue[tuple[str, str, str, list[tuple[str, Any]]]] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []

    @property
    def url(self) -> str:
        """K4_CMD_URL: Protheus POSTs to this + ``.SmartCTIWSCommandHttpSoap11Endpoint/``."""
        return f"http://{self.host}:{self.port}{COMMAND_PATH}"

    @property
    def endpoint(self) -> str:
        return self.url + ENDPOINT_SUFFIX

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> CtiLinkStandIn:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._poll()), loop.create_task(self._send())]
        return self

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ NGC side
    async def _ngc(self, method: str, *args: Any) -> Any:
        """Call the NGC; the answer, or _Refused with the SmartCTI code."""
        assert self._session is not None, "not started"
        body = xmlrpc.client.dumps(tuple(args), method, allow_none=False).encode("utf-8")
        try:
            async with self._session.post(self.ngc_url, data=body, headers={"Content-Type": "text/xml"}) as resp:
                text = await resp.read()
                if resp.status != 200:
                    raise _Refused(NGC_UNREACHABLE, f"{method}: HTTP {resp.status}")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise _Refused(NGC_UNREACHABLE, f"{method}: NGC unreachable ({e!r})") from None
        try:
            (reply,), _ = xmlrpc.client.loads(text)
        except xmlrpc.client.Fault as f:
            code = str(f.faultCode).strip()
            raise _Refused(RESULTS.get(code, UNKNOWN_REFUSAL), f"{method}: fault {code} {f.faultString}") from None
        except Exception as e:  # noqa: BLE001 - an unreadable answer is a failed command
            raise _Refused(UNKNOWN_REFUSAL, f"{method}: unreadable answer ({e})") from None
        return reply

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                reply = await self._ngc("ura.eventos")
            except _Refused as e:
                log.debug("poll: %s", e)
                continue
            self.polls += 1
            for item in reply if isinstance(reply, list) else []:
                if isinstance(item, list) and item and isinstance(item[0], str):
                    try:
                        self._on_event(item[0], item[1:])
                    except Exception:
                        log.exception("event %r not understood", item)
                else:
                    log.warning("poll: not an event: %r", item)

    # ------------------------------------------------------------------ events to Protheus
    def _push(self, dev: _Device, event: str, *values: Any) -> None:
        if not dev.event_url:
            return
        params = [("CDEVICE", dev.name), ("ILINKID", self.link_id), *zip(EVENT_PARAMS[event], values)]
        post_url, namespace = event_target(dev.event_url)
        self._outbox.put_nowait((post_url, namespace, event, params))

    async def _namespace(self, post_url: str, guess: str) -> str:
        """The service's namespace from its WSDL, as the old program's Axis client had it (through a proxy the
        URL's host is not the service's); the URL's own host when the WSDL cannot be read."""
        known = self._namespaces.get(post_url) if hasattr(self, "_namespaces") else None
        if known:
            return known
        self._namespaces = getattr(self, "_namespaces", {})
        try:
            assert self._session is not None
            async with self._session.get(post_url + "?WSDL") as resp:
                m = re.search(rb'targetNamespace="([^"]+)"', await resp.read())
            namespace = m.group(1).decode() if resp.status == 200 and m else guess
        except Exception:  # noqa: BLE001 - no WSDL: the guess
            namespace = guess
        self._namespaces[post_url] = namespace
        return namespace

    async def _send(self) -> None:
        """One sender: every event in the order it was produced; no retries."""
        while True:
            post_url, namespace, event, params = await self._outbox.get()
            namespace = await self._namespace(post_url, namespace)
            headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{namespace}{event}"'}
            result: int | str
            try:
                assert self._session is not None
                async with self._session.post(post_url, data=event_envelope(namespace, event, params),
                                              headers=headers) as resp:
                    answer = await resp.read()
                m = re.search(rb"RESULT>\s*(-?\d+)\s*<", answer)
                result = int(m.group(1)) if resp.status == 200 and m else f"HTTP {resp.status}"
            except Exception as e:  # noqa: BLE001 - the event is lost, as the old program lost it
                result = f"failed: {e!r}"
            if result != 0:
                log.warning("%s for %s: Protheus answered %s", event, params[0][1], result)
            self.pushed.append((event, params, result))

    def _on_event(self, method: str, values: list[Any]) -> None:
        if method not in EVENTS:
            log.warning("unknown NGC event %s", method)
            return
        ev = dict(zip(EVENT_FIELDS, values))
        name = EVENTS[method]
        dev = self.devices.get(_text(ev.get("ramal")))
        if dev is None or name is None:
            return
        if name in ("LOGGEDON", "LOGGEDOFF", "READY", "NOTREADY"):
            agent = _text(ev.get("operador")) or dev.agent
            groups = _text(ev.get("filas")) or dev.groups
            if name == "LOGGEDON":
                dev.agent, dev.groups = agent, groups
            self._push(dev, name, _safe(agent), _safe(groups))
            if name == "LOGGEDOFF":
                dev.agent = dev.groups = ""
            return

        call_id = _call_id(ev.get("idChamada", ""))
        call = dev.calls.get(call_id)
        if call is None:
            old = dev.calls.pop(_call_id(ev.get("idAnterior", "")), None) if _text(ev.get("idAnterior")) else None
            call = _Call(call_id, INITIATED, ani=old.ani if old else "", dnis=old.dnis if old else "")
            dev.calls[call_id] = call
        call.ani = _text(ev.get("origem")) or call.ani
        call.dnis = _text(ev.get("discado")) or call.dnis
        call.other = _text(ev.get("outroRamal")) or call.other
        call.group = _text(ev.get("fila")) or call.group
        ids = (_safe(call_id), _safe(call.ani), _safe(call.dnis))
        if name == "RINGING":
            call.state = ALERTING
            call_type = CALL_TYPES.get(_text(ev.get("sentido")).upper(), 1)
            self._push(dev, name, *ids, _safe(f"3|{call.ani}"), call_type)
            return
        if name == "CALLFAILURE":
            cause = RESULTS.get(_text(ev.get("causa")), 99)
            self._push(dev, name, *ids, cause)
            return
        if name == "CONNECTIONCLEARED":
            dev.calls.pop(call_id, None)
        else:
            call.state = {"ANSWERED": CONNECTED, "RETRIEVE": CONNECTED, "HELD": HELD}.get(name, INITIATED)
        self._push(dev, name, *ids)

    # ------------------------------------------------------------------ SmartCTIWSCommand
    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            op, args = parse_command(body)
        except ValueError as e:
            return web.Response(status=500, body=_fault(str(e)), content_type="text/xml", charset="UTF-8")
        try:
            result = await self._command(op, args)
        except Exception:
            log.exception("%s failed", op)
            result = "" if op in ("showVersion", "GetInfoChamAtiv", "getActiveCallInfo", "GetCallList") \
                else UNKNOWN_REFUSAL
        self.commands.append((op, args, result))
        return web.Response(body=_response(op, result), content_type="text/xml", charset="UTF-8")

    def _device(self, raw: str) -> _Device:
        key = raw.strip()
        dev = self.devices.get(key)
        if dev is None:
            dev = self.devices[key] = _Device(raw)
        return dev

    async def _command(self, op: str, a: dict[str, str]) -> int | str:
        if op == "SystemStatus":
            try:
                reply = await self._ngc("ura.ping")
            except _Refused:
                return NGC_UNREACHABLE
            return 0 if str(reply).strip() == "0" else RESULTS.get(str(reply).strip(), UNKNOWN_REFUSAL)
        if op == "selfTest":
            return 0
        if op == "showVersion":
            try:
                return str(await self._ngc("ura.versao"))
            except _Refused:
                return VERSION
        if op == "GetCallList":
            return await self._call_list(a.get("groupID", ""))
        if op in ("queryAgentState", "GetInfoChamAtiv", "getActiveCallInfo"):
            return await self._query(op, self._device(a["cDevice"]))
        dev = self._device(a["device"])
        ramal = dev.name.strip()
        try:
            return await self._device_command(op, dev, ramal, a)
        except _Refused as e:
            log.info("%s %s: %s -> %d", op, ramal, e, e.code)
            return e.code

    async def _call_list(self, group: str) -> str:
        """``CMD#LISTA_CHAMADAS#0#group#id,state,device;…`` from ura.chamadasDaFila; "" when there is none."""
        group = group.strip()
        try:
            reply = await self._ngc("ura.chamadasDaFila", group)
        except _Refused:
            return ""
        calls = reply.get("chamadas") if isinstance(reply, dict) else None
        entries = [",".join((_text(c.get("idChamada")), CALL_LIST_STATES.get(_text(c.get("situacaoChamada")), "0"),
                             _text(c.get("ramal")) or _text(c.get("origem"))))
                   for c in calls or [] if isinstance(c, dict) and _text(c.get("idChamada"))]
        return f"CMD#LISTA_CHAMADAS#0#{group}#" + ";".join(entries) if entries else ""

    async def _query(self, op: str, dev: _Device) -> int | str:
        if op == "queryAgentState":
            try:
                reply = await self._ngc("ura.situacaoOperador", dev.name.strip())
            except _Refused:
                return STATE_UNKNOWN
            if not isinstance(reply, dict) or _text(reply.get("codigo")) != "0":
                return STATE_UNKNOWN
            return AGENT_STATES.get(_text(reply.get("situacao")).upper(), STATE_UNKNOWN)
        call = dev.find(CONNECTED, ALERTING, INITIATED, HELD)
        if call is None:
            return "CMD#INFOCHAMATIV#11"
        fields = [dev.name.strip(), call.call_id, call.other, call.ani, call.dnis, call.group, "0", "0", "0"]
        return "CMD#INFOCHAMATIV#0#" + "#".join(_safe(f).replace("#", " ").strip() or "0" for f in fields)

    async def _device_command(self, op: str, dev: _Device, ramal: str, a: dict[str, str]) -> int:
        if op == "AgentInService":
            await self._ngc("ura.monitorarRamal", ramal)
            dev.name = a["device"]
            dev.event_url = a["ipaddress"].strip()
            self._push(dev, "INSERVICE")
            return 0
        if op == "AgentOutOfService":
            dev.event_url = ""
            await self._ngc("ura.pararMonitoracao", ramal)
            return 0
        if op in ("Logon", "LogonPass"):
            await self._ngc("ura.entrarFila", ramal, a["agentID"], a["groupID"])
            dev.agent, dev.groups = a["agentID"], a["groupID"]
            return 0
        if op in ("Logoff", "LogoffPass"):
            await self._ngc("ura.sairFila", ramal, a["agentID"] or dev.agent)
            return 0
        if op in ("Ready", "ReadyPass"):
            await self._ngc("ura.ficarLivre", ramal)
            return 0
        if op in ("NotReady", "NotReadyPass"):
            await self._ngc("ura.pausar", ramal, "")
            return 0
        if op in ("MakeCall", "MakeCallPass"):
            number = re.sub(r"\D", "", a["telephoneNumber"])
            call_id = _call_id(await self._ngc("ura.discar", ramal, number))
            dev.calls.setdefault(call_id, _Call(call_id, INITIATED, ani=ramal, dnis=number))
            return 0
        if op == "Consultation":
            call_id = _call_id(await self._ngc("ura.consultar", ramal, a["deviceTo"]))
            dev.calls.setdefault(call_id, _Call(call_id, INITIATED, ani=ramal, dnis=a["deviceTo"]))
            return 0
        if op in ("Alternate", "Conference", "Transfer"):
            method = {"Alternate": "ura.alternar", "Conference": "ura.conferenciar", "Transfer": "ura.transferir"}
            await self._ngc(method[op], ramal)
            return 0
        if op == "Redirect":
            await self._ngc("ura.sigaMe", ramal, a["deviceTo"])
            return 0

        # the commands about one of the device's calls
        if op == "ConnectionClear" and a["CallID"]:
            call = dev.calls.get(_call_id(a["CallID"])) or _Call(_call_id(a["CallID"]), CONNECTED)
        else:
            prefer = {
                "Answer": (ALERTING,),
                "ConnectionClear": (CONNECTED, ALERTING, INITIATED, HELD),
                "Hold": (CONNECTED,),
                "Retrieve": (HELD,),
                "OneStepCallTransfer": (CONNECTED, HELD),
                "ImmediateTransfer": (ALERTING, CONNECTED),
                "StartRec": (CONNECTED,),
                "StopRec": (CONNECTED, HELD),
            }.get(op)
            if prefer is None:
                return NOT_SUPPORTED
            call = dev.find(*prefer)
            if call is None:
                return NOTHING_HELD if op == "Retrieve" else NO_CALL
        cid = call.call_id
        # a command the NGC accepted moves the call at once; its event, when polled, confirms it
        if op == "Answer":
            await self._ngc("ura.atender", ramal, cid)
            call.state = CONNECTED
        elif op == "ConnectionClear":
            await self._ngc("ura.desligar", ramal, cid)
        elif op == "Hold":
            await self._ngc("ura.reter", ramal, cid)
            call.state = HELD
        elif op == "Retrieve":
            await self._ngc("ura.recuperar", ramal, cid)
            call.state = CONNECTED
        elif op == "OneStepCallTransfer":
            await self._ngc("ura.transferirDireto", ramal, cid, a["deviceTo"])
        elif op == "ImmediateTransfer":
            await self._ngc("ura.desviarChamada", ramal, cid, a["deviceTo"])
        elif op == "StartRec":
            await self._ngc("ura.gravar", ramal, cid)
        else:
            await self._ngc("ura.pararGravacao", ramal, cid)
        return 0
