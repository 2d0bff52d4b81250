"""A fake Protheus SmartCTIWSEventing: the SOAP service the gateway pushes PABX events to.

Protheus hosts SmartCTIWSEventing as an ADVPL ``WSSERVICE`` without a
NAMESPACE clause (smartcti.md §3).  This simulator answers like that service:

* ``GET  …/SMARTCTIWSEVENTING.apw?WSDL`` (any path whose last segment is
  ``SMARTCTIWSEVENTING.apw``, case-insensitive): a WSDL in the shape the ADVPL
  WS server generates — namespace = ``http://<Host>/``, document/literal,
  upper-case names, ``s:``/``s0:`` prefixes, ``<M>SOAPIN``/``<M>SOAPOUT``
  messages, port type, binding and port ``SMARTCTIWSEVENTINGSOAP``.
* ``POST …/SMARTCTIWSEVENTING.apw``: one of the 13 events (§3.2), validated the
  way a strict ADVPL server would (wrapper in the target namespace, every
  parameter present once, ILINKID/CALLTYPE/CAUSE integers) and answered with
  ``<M>RESPONSE/<M>RESULT`` = 0 when a Protheus session is registered for
  (CDEVICE, ILINKID), 99 when none (§3.4); anything invalid gets a SOAP Fault
  with HTTP 500.
* A JSON control API (``/sim/sessions``, ``/sim/mode``, ``/events``), see
  docs/protheus-simulator.md.

Every event is recorded (``GET /events``) and described on one readable log
line (logger ``smartcti_gateway.protheus_sim``), plus a "SCREEN POP" line for a
RINGING that would pop the Protheus listener.

Run it alone with ``python -m smartcti_gateway.sim.protheus.eventing``.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import re
import time
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web
from lxml import etree

from smartcti_gateway import xmlsafe

__all__ = [
    "CAUSE_TEXTS",
    "IDENTIFICATION_TYPES",
    "INTEGER_PARAMS",
    "MODES",
    "OPERATIONS",
    "SERVICE_NAME",
    "ProtheusSimulator",
    "build_app",
    "parse_associated_data",
    "start_protheus_simulator",
    "wsdl",
]

log = logging.getLogger("smartcti_gateway.protheus_sim")

SERVICE_NAME = "SMARTCTIWSEVENTING"
SERVICE_SEGMENT = SERVICE_NAME.lower() + ".apw"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"

# §3.2: operation -> parameters in WsReceive order (WSDL element names).
_CALL = ("CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS")
_AGENT = ("CDEVICE", "ILINKID", "CAGENTID", "CGROUPID")
OPERATIONS: dict[str, tuple[str, ...]] = {
    "INSERVICE": ("CDEVICE", "ILINKID"),
    "RINGING": _CALL + ("ASSOCIATEDDATA", "CALLTYPE"),
    "SERVICEINITIATED": _CALL,
    "ORIGINATED": _CALL,
    "CALLFAILURE": _CALL + ("CAUSE",),
    "ANSWERED": _CALL,
    "HELD": _CALL,
    "RETRIEVE": _CALL,
    "CONNECTIONCLEARED": _CALL,
    "LOGGEDON": _AGENT,
    "LOGGEDOFF": _AGENT,
    "READY": _AGENT,
    "NOTREADY": _AGENT,
}
INTEGER_PARAMS = frozenset({"ILINKID", "CALLTYPE", "CAUSE"})

# WSMETHOD ... DESCRIPTION of tmkxwssmeventing.prw (string table tmkxwssmeventing.ch).
_SERVICE_DESCRIPTION = "Interface para notificação de eventos CTI"
_DESCRIPTIONS = {
    "INSERVICE": "Notifica que um usuário está conectado ao Middleware",
    "RINGING": "Notifica uma nova chamada",
    "SERVICEINITIATED": "Notifica que o ramal saiu do gancho para discagem",
    "ORIGINATED": "Notifica que uma chamada começou a ser discada",
    "CALLFAILURE": "Notifica erro ao iniciar uma chamada",
    "ANSWERED": "Notifica o atendimento de uma chamada receptiva no ramal",
    "HELD": "Notifica que uma chamada foi enviada para espera",
    "RETRIEVE": "Notifica que uma chamada saiu de Hold e retornou para o ramal",
    "CONNECTIONCLEARED": "Notifica que uma chamada chegou ao fim",
    "LOGGEDON": "Notifica que um operador conectou-se ao DAC",
    "LOGGEDOFF": "Notifica que um operador desconectou-se do DAC",
    "READY": "Notifica que um operador encontra-se disponível para receber chamadas",
    "NOTREADY": "Notifica que um operador encontra-se indisponível para receber chamadas",
}

# §2 short texts (CallFailure.Cause uses the same numbering).
CAUSE_TEXTS: dict[int, str] = {
    0: "Sucesso",
    1: "Código de Agente inválido",
    2: "Número de telefone inválido",
    3: "Operação inválida ou o ramal deve estar no gancho",
    4: "Arquivo não encontrado",
    5: "Call ID inválido",
    6: "Call ID já criado",
    7: "Tamanho de buffer inválido",
    8: "Sem tom de discagem",
    10: "Telefone Ocupado",
    11: "Telefone não atende",
    12: "Secretária Eletrônica",
    13: "Fax",
    14: "Destino desligou",
    15: "Falha durante envio de fax",
    16: "Sem comunicação com WebService do Middleware",
    17: "Buffer incompleto",
    18: "Número de ramal inválido",
    19: "Sem chamada em espera",
    20: "Falha ao estacionar chamada",
    21: "Facilidade não disponível",
    22: "Fora de serviço",
    23: "DAC inválido",
    24: "Erro interno do Middleware",
    25: "Mensagem da Operadora",
    99: "Erro desconhecido",
}

# §3.3: identification types of RINGING.ASSOCIATEDDATA ("type|value").
IDENTIFICATION_TYPES: dict[int, str] = {
    0: "not identified",
    1: "customer code+store",
    2: "CNPJ/CPF",
    3: "phone",
    4: "KEY=VALUE pairs",
    5: "customer function",
}

MODES = ("normal", "error", "hang")
RESULT_SESSION = 0
RESULT_NO_SESSION = 99

# String parameters Protheus pastes between single quotes into a macro (§3.4).
_MACRO_UNSAFE = re.compile(r"['\r\n]")
_INTEGER = re.compile(r"[+-]?[0-9]+")


# --------------------------------------------------------------------------
# WSDL and SOAP text

def wsdl(namespace: str, location: str) -> str:
    """SmartCTIWSEventing's WSDL as the ADVPL WS server writes it.

    ``namespace`` is the server's base URL with a trailing slash (the ADVPL
    default when a WSSERVICE has no NAMESPACE clause); ``location`` the full
    endpoint URL (``…/SMARTCTIWSEVENTING.apw``).  Operations are listed in
    alphabetical order, as the ADVPL server lists the methods of a service.
    """
    ns = quoteattr(namespace)
    ops = sorted(OPERATIONS)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n',
        '<definitions xmlns:http="http://schemas.xmlsoap.org/wsdl/http/"'
        ' xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"'
        ' xmlns:s="http://www.w3.org/2001/XMLSchema"'
        f' xmlns:s0={ns}'
        ' xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"'
        ' xmlns:tm="http://microsoft.com/wsdl/mime/textMatching/"'
        ' xmlns:mime="http://schemas.xmlsoap.org/wsdl/mime/"'
        f' targetNamespace={ns} xmlns="http://schemas.xmlsoap.org/wsdl/">\n',
        '<types>\n',
        f'<s:schema elementFormDefault="qualified" targetNamespace={ns}>\n',
    ]
    for op in ops:
        out.append(f'<s:element name="{op}">\n<s:complexType>\n<s:sequence>\n')
        for param in OPERATIONS[op]:
            xsd = "s:integer" if param in INTEGER_PARAMS else "s:string"
            out.append(f'<s:element minOccurs="1" maxOccurs="1" name="{param}" type="{xsd}" />\n')
        out.append('</s:sequence>\n</s:complexType>\n</s:element>\n')
        out.append(f'<s:element name="{op}RESPONSE">\n<s:complexType>\n<s:sequence>\n'
                   f'<s:element minOccurs="1" maxOccurs="1" name="{op}RESULT" type="s:integer" />\n'
                   '</s:sequence>\n</s:complexType>\n</s:element>\n')
    out.append('</s:schema>\n</types>\n')
    for op in ops:
        out.append(f'<message name="{op}SOAPIN">\n<part name="parameters" element="s0:{op}" />\n</message>\n'
                   f'<message name="{op}SOAPOUT">\n<part name="parameters" element="s0:{op}RESPONSE" />\n'
                   '</message>\n')
    port = SERVICE_NAME + "SOAP"
    out.append(f'<portType name="{port}">\n')
    for op in ops:
        out.append(f'<operation name="{op}">\n<documentation>{escape(_DESCRIPTIONS[op])}</documentation>\n'
                   f'<input message="s0:{op}SOAPIN" />\n<output message="s0:{op}SOAPOUT" />\n</operation>\n')
    out.append('</portType>\n')
    out.append(f'<binding name="{port}" type="s0:{port}">\n'
               '<soap:binding transport="http://schemas.xmlsoap.org/soap/http" style="document" />\n')
    for op in ops:
        action = quoteattr(namespace + op)
        out.append(f'<operation name="{op}">\n<soap:operation soapAction={action} style="document" />\n'
                   '<input>\n<soap:body use="literal" />\n</input>\n'
                   '<output>\n<soap:body use="literal" />\n</output>\n</operation>\n')
    out.append('</binding>\n')
    out.append(f'<service name="{SERVICE_NAME}">\n<documentation>{escape(_SERVICE_DESCRIPTION)}</documentation>\n'
               f'<port name="{port}" binding="s0:{port}">\n'
               f'<soap:address location={quoteattr(location)} />\n</port>\n</service>\n')
    out.append('</definitions>\n')
    return "".join(out)


def _response_xml(method: str, namespace: str, result: int) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body>'
            f'<{method}RESPONSE xmlns={quoteattr(namespace)}><{method}RESULT>{result}</{method}RESULT>'
            f'</{method}RESPONSE></soap:Body></soap:Envelope>')


def _fault_xml(code: str, message: str) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body><soap:Fault>'
            f'<faultcode>soap:{code}</faultcode><faultstring>{escape(message)}</faultstring>'
            '</soap:Fault></soap:Body></soap:Envelope>')


# --------------------------------------------------------------------------
# Request parsing

class _Fault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Parsed:
    """What could be read from a request, even when it ends in a fault."""

    __slots__ = ("method", "namespace", "params", "order")

    def __init__(self) -> None:
        self.method: str | None = None
        self.namespace: str | None = None
        self.params: dict[str, str] = {}
        self.order: list[str] = []


def _split(tag: str) -> tuple[str, str]:
    if tag[:1] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _same_ns(a: str, b: str) -> bool:
    return a.rstrip("/").casefold() == b.rstrip("/").casefold()


def _parse(body: bytes, accepted_ns: tuple[str, ...], parsed: _Parsed) -> None:
    """Fill ``parsed`` from a SOAP 1.1 request; raise _Fault when a strict ADVPL server would refuse it."""
    if not body or body.isspace():
        raise _Fault("Client", "Empty request: a SOAP 1.1 envelope is required")
    if xmlsafe.has_dtd(body):
        raise _Fault("Client", "DOCTYPE and ENTITY declarations are not allowed")
    try:
        root = etree.fromstring(body.lstrip(), xmlsafe.parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise _Fault("Client", f"Malformed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise _Fault("Client", "DOCTYPE and ENTITY declarations are not allowed")

    env_ns, env_local = _split(root.tag)
    if env_local != "Envelope" or env_ns not in (SOAP11_NS, SOAP12_NS):
        raise _Fault("Client", f"Not a SOAP envelope: root element {root.tag!r}")
    if env_ns != SOAP11_NS:
        raise _Fault("VersionMismatch", "Only SOAP 1.1 is supported (envelope namespace "
                                        f"{SOAP11_NS})")
    body_el = root.find(f"{{{SOAP11_NS}}}Body")
    if body_el is None:
        raise _Fault("Client", "SOAP Body not found")
    children = [el for el in body_el if isinstance(el.tag, str)]
    if not children:
        raise _Fault("Client", "SOAP Body is empty")
    if len(children) > 1:
        raise _Fault("Client", "SOAP Body must hold exactly one method element")
    wrapper = children[0]
    ns, method = _split(wrapper.tag)
    parsed.method = method
    parsed.namespace = ns
    if method not in OPERATIONS:
        raise _Fault("Client", f"Method {method!r} not found in service {SERVICE_NAME} "
                               f"(expected one of {', '.join(OPERATIONS)})")

    duplicates: list[str] = []
    for child in wrapper:
        if not isinstance(child.tag, str):
            continue
        cns, name = _split(child.tag)
        if cns and cns != ns:
            name = child.tag  # foreign element: keep "{ns}name" so it never counts as a parameter
        parsed.order.append(name)
        if len(child):
            raise _Fault("Client", f"{method}: element {name} must hold a simple value, not child elements")
        value = "".join(child.itertext())
        if name in parsed.params:
            duplicates.append(name)
        else:
            parsed.params[name] = value

    if not any(_same_ns(ns, accepted) for accepted in accepted_ns):
        raise _Fault("Client", f"{method}: namespace {ns!r} is not this service's namespace "
                               f"{accepted_ns[0]!r}")
    missing = [p for p in OPERATIONS[method] if p not in parsed.params]
    if missing:
        raise _Fault("Client", f"{SERVICE_NAME}:{method} : missing required element(s) "
                               f"{', '.join(missing)} (minOccurs=1)")
    dup = [p for p in OPERATIONS[method] if p in duplicates]
    if dup:
        raise _Fault("Client", f"{SERVICE_NAME}:{method} : element(s) {', '.join(dup)} "
                               "sent more than once (maxOccurs=1)")
    for p in OPERATIONS[method]:
        if p in INTEGER_PARAMS and not _INTEGER.fullmatch(parsed.params[p].strip()):
            raise _Fault("Client", f"{SERVICE_NAME}:{method} : element {p} must be an integer, "
                                   f"got {parsed.params[p]!r}")


# --------------------------------------------------------------------------
# Event description (log lines)

def _advpl_val(text: str) -> int:
    """ADVPL ``Val()`` of the leading part of ``text`` (0 when it does not start with a number)."""
    m = re.match(r"\s*([+-]?[0-9]+)", text)
    return int(m.group(1)) if m else 0


def parse_associated_data(data: str, ani: str) -> tuple[int, str]:
    """(identification type, value) as Protheus' listener reads ASSOCIATEDDATA (§3.3)."""
    if data == "":
        return 3, ani
    if "|" not in data:
        return 0, ""
    head, _, rest = data.partition("|")
    return _advpl_val(head), rest


def _show(value: str) -> str:
    return value.replace("\r", "\\r").replace("\n", "\\n")


def _describe(method: str, p: dict[str, str]) -> str:
    head = f"{_show(p['CDEVICE'])}@{p['ILINKID'].strip()} {method}"
    if method == "INSERVICE":
        return head
    if "CAGENTID" in OPERATIONS[method]:
        return f"{head} agent={_show(p['CAGENTID'])} group={_show(p['CGROUPID'])}"
    line = f"{head} call={_show(p['CALLID'])} ANI={_show(p['ANI'])} DNIS={_show(p['DNIS'])}"
    if method == "RINGING":
        line += f" data={_show(p['ASSOCIATEDDATA'])} type={int(p['CALLTYPE'])}"
    elif method == "CALLFAILURE":
        cause = int(p["CAUSE"])
        line += f" cause={cause} ({CAUSE_TEXTS.get(cause, 'código não definido')})"
    return line


def _screen_pop(p: dict[str, str]) -> str | None:
    call_type = int(p["CALLTYPE"])
    if call_type not in (1, 3):  # the listener tests cValToChar(callType) $ "1|3"
        return None
    kind = "receptive call" if call_type == 1 else "dialler call (active layout)"
    id_type, value = parse_associated_data(p["ASSOCIATEDDATA"], p["ANI"])
    if id_type == 0:
        ident = "not identified"
    elif id_type in IDENTIFICATION_TYPES:
        ident = f"identified by {IDENTIFICATION_TYPES[id_type]}: {_show(value)}"
    else:
        ident = f"identification type {id_type} (unknown): {_show(value)}"
    return (f"  >>> SCREEN POP on {_show(p['CDEVICE'])} (link {int(p['ILINKID'])}): {kind} "
            f"from {_show(p['ANI'])} to {_show(p['DNIS'])}, {ident}")


# --------------------------------------------------------------------------
# State

class ControlError(Exception):
    """A bad control-API request (answered with HTTP 400)."""


class ProtheusSimulator:
    """State of the fake SmartCTIWSEventing: sessions, mode, received events.  No sockets here."""

    def __init__(self, *, quiet: bool = False, default_open: bool = True, max_events: int = 10_000) -> None:
        self.quiet = quiet
        self.hanging = 0   # POSTs held by the "hang" mode right now
        self.default_open = default_open
        self.sessions: dict[tuple[str, int], bool] = {}
        self.mode = "normal"
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_events)
        self.seq = 0
        self.wsdl_requests = 0
        self.host = "127.0.0.1"
        self.port = 0
        self.base_url = ""
        self._released = asyncio.Event()
        self._released.set()
        self._closing = False

    @property
    def url(self) -> str:
        """The service endpoint (what a site stores in MV_TKCTIEV), once started."""
        return self.base_url + SERVICE_NAME + ".apw"

    @property
    def wsdl_url(self) -> str:
        return self.url + "?WSDL"

    # -- sessions and mode -------------------------------------------------

    def session_open(self, device: str, link_id: int) -> bool:
        """Would Protheus find a registered session for this (device as received, link)?"""
        return self.sessions.get((device, link_id), self.default_open)

    def set_session(self, device: str, link_id: int, open: bool = True) -> None:  # noqa: A002
        self.sessions[(device, int(link_id))] = bool(open)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ControlError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        if mode == "hang":
            self._released.clear()
        else:
            self._released.set()
        log.info("protheus-sim: mode %s", mode)

    def reset(self) -> None:
        """Back to the initial state: every session open, normal mode, no events."""
        self.sessions.clear()
        self.default_open = True
        self.set_mode("normal")
        self.clear_events()

    def state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "default_open": self.default_open,
            "sessions": [{"device": d, "link_id": link, "open": o} for (d, link), o in self.sessions.items()],
            "events": len(self.events),
            "last_seq": self.seq,
            "wsdl_requests": self.wsdl_requests,
            "base_url": self.base_url,
        }

    # -- events ------------------------------------------------------------

    def events_since(self, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events if e["seq"] > since]

    def clear_events(self) -> int:
        n = len(self.events)
        self.events.clear()
        return n

    async def wait_events(self, count: int, *, since: int = 0, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events with seq > ``since`` were recorded; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events_since(since)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} Protheus events after {timeout} s: "
                                   f"{[e['method'] for e in found]}")
            await asyncio.sleep(0.005)

    # -- SOAP --------------------------------------------------------------

    def handle_post(self, body: bytes, *, host: str, path: str, soapaction: str | None) -> tuple[int, str]:
        """Process one SOAP request for ``http://<host><path>``; record it; return (HTTP status, XML)."""
        namespace = f"http://{host}/"
        accepted = (namespace,) + ((self.base_url,) if self.base_url else ())
        if soapaction is not None:
            soapaction = soapaction.strip()
            if len(soapaction) >= 2 and soapaction[0] == soapaction[-1] == '"':
                soapaction = soapaction[1:-1]
        parsed = _Parsed()
        fault: _Fault | None = None
        try:
            _parse(body, accepted, parsed)
        except _Fault as exc:
            fault = exc
        event: dict[str, Any] = {
            "seq": 0,
            "method": parsed.method,
            "params": parsed.params,
            "order": parsed.order,
            "soapaction": soapaction,
            "soapaction_ok": bool(parsed.method) and soapaction is not None
                             and soapaction.casefold() == (namespace + (parsed.method or "")).casefold(),
            "path": path,
            "namespace": parsed.namespace,
            "result": None,
            "fault": None,
            "breaks_protheus": False,
            "received_at": time.time(),
        }

        if self.mode == "error":
            message = "Simulated Protheus failure (simulator in error mode)"
            event.update(result="error", fault=message)
            self._record(event)
            log.warning("protheus-sim: %s -> HTTP 500 (error mode)", parsed.method or "request")
            return 500, _fault_xml("Server", message)
        if fault is not None:
            event.update(result="fault", fault=fault.message)
            self._record(event)
            log.warning("protheus-sim: SOAP fault -> %s", fault.message)
            return 500, _fault_xml(fault.code, fault.message)

        method = parsed.method
        assert method is not None
        p = parsed.params
        unsafe = [name for name in OPERATIONS[method]
                  if name not in INTEGER_PARAMS and _MACRO_UNSAFE.search(p[name])]
        result = RESULT_SESSION if self.session_open(p["CDEVICE"], int(p["ILINKID"])) else RESULT_NO_SESSION
        event.update(result=result, breaks_protheus=bool(unsafe))
        self._record(event)

        level = logging.DEBUG if self.quiet else logging.INFO
        suffix = "" if result == RESULT_SESSION else " (no Protheus session registered)"
        log.log(level, "%s -> %d%s", _describe(method, p), result, suffix)
        if not event["soapaction_ok"]:
            log.warning("protheus-sim: #%d %s: SOAPAction %r, expected %r", event["seq"], method,
                        soapaction, namespace + method)
        if unsafe:
            log.warning("protheus-sim: #%d %s: ' or line break in %s would break Protheus' macro "
                        "evaluation of this event", event["seq"], method, ", ".join(unsafe))
        elif method == "RINGING" and result == RESULT_SESSION:
            pop = _screen_pop(p)
            if pop is not None:
                log.log(level, "%s", pop)
        return 200, _response_xml(method, namespace, result)

    def _record(self, event: dict[str, Any]) -> None:
        self.seq += 1
        event["seq"] = self.seq
        self.events.append(event)


# --------------------------------------------------------------------------
# HTTP

SIM_KEY = web.AppKey("protheus_simulator", ProtheusSimulator)
_XML = "text/xml"


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _is_service(path: str) -> bool:
    return path.rstrip("/").rpartition("/")[2].lower() == SERVICE_SEGMENT


def _wants_wsdl(request: web.Request) -> bool:
    return any(key.lower() == "wsdl" for key in request.query)


async def _service(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    path = request.path
    if not _is_service(path):
        return _json_error(404, f"not found: {path} (the service is at …/{SERVICE_NAME}.apw)")
    if request.method == "GET":
        location = f"http://{request.host}{path}"
        if not _wants_wsdl(request):
            html = (f"<html><body><h3>{SERVICE_NAME}</h3><p>{escape(_SERVICE_DESCRIPTION)}</p>"
                    f'<p><a href="{escape(location)}?WSDL">{escape(location)}?WSDL</a></p></body></html>')
            return web.Response(text=html, content_type="text/html")
        sim.wsdl_requests += 1
        return web.Response(text=wsdl(f"http://{request.host}/", location), content_type=_XML)
    if request.method != "POST":
        return _json_error(405, f"method {request.method} not allowed")

    body = await request.read()
    if sim.mode == "hang":
        sim.hanging += 1
        try:
            while sim.mode == "hang" and not sim._closing:
                await sim._released.wait()
        finally:   # also when the client gives up and the handler is cancelled
            sim.hanging -= 1
        transport = request.transport
        if sim._closing or transport is None or transport.is_closing():
            # The client gave up (or the simulator stops): nothing is answered, nothing recorded.
            return web.Response(status=503, text="simulator stopping")
    try:
        status, xml = sim.handle_post(body, host=request.host, path=path,
                                      soapaction=request.headers.get("SOAPAction"))
    except Exception as exc:  # noqa: BLE001 - a fault, never a traceback
        log.exception("protheus-sim: internal error")
        status, xml = 500, _fault_xml("Server", f"simulator error: {exc}")
    return web.Response(status=status, text=xml, content_type=_XML, charset="utf-8")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("expected a JSON object")
    return data


def _link_id(value: Any) -> int:
    if isinstance(value, bool):
        raise ControlError("link_id must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise ControlError("link_id must be an integer")


async def _post_sessions(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    data = await _json_body(request)
    known = {"device", "link_id", "open", "default_open"}
    if unknown := sorted(set(data) - known):
        raise ControlError(f"unknown field(s) {', '.join(unknown)}; expected device, link_id, open, default_open")
    if not ("device" in data or "default_open" in data):
        raise ControlError('expected {"device": "2001", "link_id": 1, "open": false} or {"default_open": false}')
    if "default_open" in data and not isinstance(data["default_open"], bool):
        raise ControlError("default_open must be true or false")
    if "open" in data and not isinstance(data["open"], bool):
        raise ControlError("open must be true or false")
    if "device" in data:
        device = data["device"]
        if isinstance(device, bool) or not isinstance(device, (str, int)):
            raise ControlError("device must be a string")
        if "link_id" not in data:
            raise ControlError("link_id is required with device")
        link = _link_id(data["link_id"])
        sim.set_session(str(device), link, data.get("open", True))
        log.info("protheus-sim: session %s@%d %s", device, link, "open" if data.get("open", True) else "closed")
    elif "link_id" in data or "open" in data:
        raise ControlError("link_id/open need a device")
    if "default_open" in data:
        sim.default_open = data["default_open"]
        log.info("protheus-sim: unknown devices %s", "have a session" if sim.default_open else "have no session")
    return web.json_response(sim.state())


async def _get_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_KEY].state())


async def _post_mode(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    data = await _json_body(request)
    mode = data.get("mode")
    if not isinstance(mode, str):
        raise ControlError(f"expected {{\"mode\": \"{'|'.join(MODES)}\"}}")
    sim.set_mode(mode)
    return web.json_response({"mode": sim.mode})


async def _post_reset(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    sim.reset()
    return web.json_response(sim.state())


async def _get_events(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    raw = request.query.get("since", "0")
    if not _INTEGER.fullmatch(raw.strip()):
        raise ControlError("since must be an integer (a seq number)")
    return web.json_response(sim.events_since(int(raw)))


async def _delete_events(request: web.Request) -> web.Response:
    return web.json_response({"cleared": request.app[SIM_KEY].clear_events()})


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as exc:
        return _json_error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _json_error(exc.status, exc.reason)
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - never a traceback page
        log.exception("protheus-sim: %s %s", request.method, request.path)
        return _json_error(500, f"simulator error: {exc}")


def build_app(sim: ProtheusSimulator) -> web.Application:
    """The SOAP service (any path ending in SMARTCTIWSEVENTING.apw) and the JSON control API of ``sim``."""
    app = web.Application(middlewares=[_errors])
    app[SIM_KEY] = sim
    app.router.add_get("/sim/sessions", _get_state)
    app.router.add_post("/sim/sessions", _post_sessions)
    app.router.add_get("/sim/mode", _get_state)
    app.router.add_post("/sim/mode", _post_mode)
    app.router.add_get("/sim/state", _get_state)
    app.router.add_post("/sim/reset", _post_reset)
    app.router.add_get("/events", _get_events)
    app.router.add_delete("/events", _delete_events)
    app.router.add_route("*", "/{tail:.*}", _service)

    async def release(app: web.Application) -> None:
        sim._closing = True
        sim._released.set()

    app.on_shutdown.append(release)
    return app


async def start_protheus_simulator(host: str, port: int, *, quiet: bool = False
                                   ) -> tuple[ProtheusSimulator, web.AppRunner]:
    """Serve a new simulator on ``host:port`` (0 picks a free port: see ``sim.port`` / ``sim.base_url``)."""
    sim = ProtheusSimulator(quiet=quiet)
    runner = web.AppRunner(build_app(sim), access_log=None, handler_cancellation=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    sim.port = runner.addresses[0][1]
    url_host = host or "127.0.0.1"
    if url_host in ("0.0.0.0", "::"):
        url_host = "127.0.0.1"
    sim.host = url_host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    sim.base_url = f"http://{url_host}:{sim.port}/"
    return sim, runner


# --------------------------------------------------------------------------
# Command line

async def _serve(host: str, port: int, quiet: bool, closed: bool) -> None:
    sim, runner = await start_protheus_simulator(host, port, quiet=quiet)
    sim.default_open = not closed
    log.info("Protheus SmartCTIWSEventing simulator at %s (WSDL: %s?WSDL); control API: /sim/sessions, "
             "/sim/mode, /events", sim.url, sim.url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smartcti_gateway.sim.protheus.eventing",
                                     description="Fake Protheus SmartCTIWSEventing (SOAP) for the SmartCTI gateway.")
    parser.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="log events at DEBUG instead of INFO")
    parser.add_argument("--no-sessions", action="store_true",
                        help="unknown devices have no Protheus session (answer 99)")
    args = parser.parse_args(argv)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        parser.error("--listen must be HOST:PORT")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(_serve(host.strip("[]") or "127.0.0.1", int(port), args.quiet, args.no_sessions))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
