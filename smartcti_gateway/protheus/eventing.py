"""Client of Protheus' SmartCTIWSEventing: the site's own WSDL read with zeep, messages written by us.

zeep reads the WSDL at ``<MV_TKCTIEV URL>?WSDL`` (off the event loop, once
per URL): namespace, element names and order, SOAPAction of each of the 13
operations. Messages are then written from that shape with string templates:
the bytes are the ones zeep would send (a test checks it), at a fraction of
the CPU, and the same writer serves the ADVPL conventions of smartcti.md
§3.1 when no WSDL can be had (namespace = scheme://host:port/, upper-case
names, SOAPAction = namespace + METHOD).
"""
from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

import aiohttp
from lxml import etree

from .. import xmlsafe
from ..urls import redact_url
from ..core.notify import EVENT_PARAMS, Notification

log = logging.getLogger("smartcti_gateway.eventing")

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"



class DeliveryError(Exception):
    """An event could not be delivered this time; ``retry`` says whether trying again can help."""

    def __init__(self, message: str, *, retry: bool, schema: bool = False):
        super().__init__(message)
        self.retry = retry
        self.schema = schema   # Protheus refused the message itself: re-read the WSDL


@dataclass(frozen=True)
class OperationShape:
    namespace: str                         # of the wrapper element
    wrapper: str                           # e.g. RINGING
    children: tuple[tuple[str, bool], ...]  # (element name, qualified?) in order
    soapaction: str


@dataclass
class EventingSchema:
    url: str                               # where to POST (MV_TKCTIEV without ?WSDL)
    operations: dict[str, OperationShape]  # by canonical name (INSERVICE, RINGING, ...)
    source: str                            # "wsdl" or "conventions"
    loaded_at: float = field(default_factory=time.monotonic)


def service_url(url: str) -> str:
    """MV_TKCTIEV as it may come (with ``?WSDL``, blanks) -> the URL to POST to."""
    url = url.strip()
    parts = urlsplit(url)
    query = "" if parts.query.lower() == "wsdl" else parts.query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def conventions(url: str) -> EventingSchema:
    """The shape an ADVPL WSSERVICE without NAMESPACE clause has (smartcti.md §3.1)."""
    parts = urlsplit(url)
    ns = f"{parts.scheme}://{parts.netloc}/"
    ops = {
        name: OperationShape(ns, name, tuple((p, True) for p in ("CDEVICE", "ILINKID", *params)), ns + name)
        for name, params in EVENT_PARAMS.items()
    }
    return EventingSchema(service_url(url), ops, "conventions")


def schema_from_wsdl(url: str, timeout: float, ssl_context: ssl.SSLContext | None = None) -> EventingSchema:
    """Read ``url?WSDL`` with zeep (blocking: run it in a thread). Raises on any failure."""
    import zeep
    from zeep.transports import Transport

    post_url = service_url(url)
    if urlsplit(post_url).scheme.lower() not in ("http", "https"):
        # zeep would read a local file for a path or a file:// URL
        raise ValueError(f"{post_url[:120]!r} is not an http:// or https:// URL")
    session = requests_session(ssl_context)   # https verified with events.ca_file too; no scheme change
    client = zeep.Client(post_url + "?WSDL", transport=Transport(timeout=timeout, operation_timeout=timeout,
                                                                 session=session))
    wanted = set(EVENT_PARAMS)
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            binding = port.binding
            ops = {name.upper(): op for name, op in getattr(binding, "_operations", {}).items()}
            if not wanted <= set(ops):
                continue
            shapes = {}
            for name in wanted:
                op = ops[name]
                body = op.input.body
                ns = body.qname.namespace or ""
                children = tuple((child_name, bool(el.qname.namespace)) for child_name, el in body.type.elements)
                expected = ("CDEVICE", "ILINKID", *EVENT_PARAMS[name])
                if tuple(c.upper() for c, _ in children) != expected:
                    raise ValueError(f"{name} in the WSDL has {[c for c, _ in children]}, expected {list(expected)}")
                shapes[name] = OperationShape(ns, body.qname.localname, children, op.soapaction or ns + name)
            return EventingSchema(post_url, shapes, "wsdl")
    raise ValueError(f"no binding in {post_url}?WSDL has all of {', '.join(sorted(wanted))}")


def envelope(shape: OperationShape, values: list[tuple[str, str | int]]) -> bytes:
    """The SOAP 1.1 request; ``values`` in WSDL order (Notification.params)."""
    qualified = all(q for _, q in shape.children)
    parts = ['<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="', SOAP11_NS, '"><soap:Body>']
    ns = escape(shape.namespace, {'"': "&quot;"})
    if qualified:   # the ADVPL shape: default namespace, unprefixed children
        parts += ["<", shape.wrapper, ' xmlns="', ns, '">']
        for (name, _), (_, value) in zip(shape.children, values):
            parts += ["<", name, ">", escape(str(value)), "</", name, ">"]
        parts += ["</", shape.wrapper, ">"]
    else:
        parts += ["<m:", shape.wrapper, ' xmlns:m="', ns, '">']
        for (name, q), (_, value) in zip(shape.children, values):
            tag = f"m:{name}" if q else name
            parts += ["<", tag, ">", escape(str(value)), "</", tag, ">"]
        parts += ["</m:", shape.wrapper, ">"]
    parts.append("</soap:Body></soap:Envelope>")
    return "".join(parts).encode("utf-8")


_QUICK_RESULT = re.compile(rb"RESULT>\s*(\d+)\s*</")


def parse_result(body: bytes, status: int) -> int:
    """RETURNCODE of a SmartCTIWSEventing answer, or DeliveryError."""
    if status == 200 and b"Fault" not in body and not xmlsafe.has_dtd(body):
        quick = _QUICK_RESULT.findall(body)
        if len(quick) == 1:   # the usual one-element answer: no need for a parser
            return int(quick[0])
    try:
        if xmlsafe.has_dtd(body):
            raise ValueError("DTD in answer")
        root = etree.fromstring(body, xmlsafe.parser())
    except (etree.XMLSyntaxError, ValueError) as e:
        raise DeliveryError(f"HTTP {status}, answer is not XML ({e})"[:300], retry=True) from None
    fault = root.find(f".//{{{SOAP11_NS}}}Fault")
    if fault is not None:
        code = (fault.findtext("faultcode") or "").strip()
        text = (fault.findtext("faultstring") or "").strip()
        client_fault = code.rpartition(":")[2].lower().startswith("client")
        raise DeliveryError(f"SOAP fault {code}: {text}"[:300], retry=not client_fault, schema=client_fault)
    if status != 200:
        raise DeliveryError(f"HTTP {status}", retry=True)
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.rpartition("}")[2].upper().endswith("RESULT"):
            try:
                return int((el.text or "").strip())
            except ValueError:
                break
    raise DeliveryError("answer has no <METHOD>RESULT integer", retry=False, schema=True)


class EventingClient:
    """Sends notifications to the eventing URLs of one link; one schema per URL, cached."""

    def __init__(self, *, timeout: float = 10.0, wsdl_timeout: float = 10.0, wsdl_retry: float = 300.0,
                 max_connections: int = 64, ssl_context: ssl.SSLContext | None = None):
        self.timeout = timeout
        self.wsdl_timeout = wsdl_timeout
        self.wsdl_retry = wsdl_retry
        self.max_connections = max_connections
        self.ssl_context = ssl_context   # https: system CAs + events.ca_file; None = system CAs (always verified)
        self._schemas: dict[str, EventingSchema] = {}
        self._loading: dict[str, asyncio.Task] = {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections // 2 or 1,
                                           ssl=self.ssl_context or True),
        )

    async def close(self) -> None:
        for task in self._loading.values():
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def schema(self, url: str, *, refresh: bool = False) -> EventingSchema:
        known = self._schemas.get(url)
        if known is not None and not refresh:
            if known.source == "wsdl" or time.monotonic() - known.loaded_at < self.wsdl_retry:
                return known
        task = self._loading.get(url)
        if task is None:
            task = self._loading[url] = asyncio.ensure_future(self._load(url))
            task.add_done_callback(lambda _t: self._loading.pop(url, None))
        return await asyncio.shield(task)

    async def _load(self, url: str) -> EventingSchema:
        try:
            schema = await asyncio.to_thread(schema_from_wsdl, url, self.wsdl_timeout, self.ssl_context)
            log.info("eventing %s: WSDL read, namespace %s", url, schema.operations["RINGING"].namespace)
        except Exception as e:  # noqa: BLE001 - any WSDL problem means: use the conventions
            schema = conventions(url)
            log.warning("eventing %s: could not read %s?WSDL (%s); using the ADVPL conventions, namespace %s",
                        url, service_url(url), str(e)[:200] or type(e).__name__,
                        schema.operations["RINGING"].namespace)
        self._schemas[url] = schema
        return schema

    async def send(self, url: str, note: Notification, link_id: int) -> int:
        """POST one event; returns Protheus' RETURNCODE (0 delivered, 99 no session) or raises DeliveryError."""
        if self._session is None:
            raise DeliveryError("eventing client not started", retry=False)
        schema = await self.schema(url)
        shape = schema.operations[note.name]
        body = envelope(shape, note.params(link_id))
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{shape.soapaction}"'}
        try:
            # never follow a redirect: Protheus does not redirect SOAP posts, and a redirect could lead
            # anywhere (another scheme, a host inside the network)
            async with self._session.post(schema.url, data=body, headers=headers, allow_redirects=False) as resp:
                answer = await resp.read()
                status = resp.status
                location = resp.headers.get("Location", "")
        except asyncio.TimeoutError:
            raise DeliveryError(f"no answer within {self.timeout:g} s", retry=True) from None
        except aiohttp.ClientConnectorCertificateError as e:
            raise DeliveryError(f"the certificate of {schema.url} is not trusted ({e.certificate_error}); "
                                f"put its CA in the link's events.ca_file"[:300], retry=True) from None
        except aiohttp.ClientError as e:
            raise DeliveryError(f"cannot reach {schema.url}: {e}"[:300], retry=True) from None
        if 300 <= status < 400:
            raise DeliveryError(f"HTTP {status} redirect to {location[:120]!r} not followed; point MV_TKCTIEV "
                                f"at the SmartCTIWSEventing URL itself", retry=False)
        return parse_result(answer, status)


def requests_session(ctx: ssl.SSLContext | None = None):
    """A requests Session for zeep's WSDL reads: https verified with ``ctx`` (None: the system's CAs),
    and a redirect followed only to the same scheme (never http -> file, https -> http...)."""
    import requests
    from requests.adapters import HTTPAdapter

    class _SameScheme(requests.Session):
        def get_redirect_target(self, resp):
            target = super().get_redirect_target(resp)
            if target and urlsplit(target).scheme and urlsplit(target).scheme.lower() != \
                    urlsplit(resp.url).scheme.lower():
                log.warning("the WSDL at %s redirects to %s, another scheme: not followed",
                            redact_url(resp.url), redact_url(target)[:120])
                return None
            return target

    session = _SameScheme()
    if ctx is None:
        return session

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["ssl_context"] = ctx
            super().init_poolmanager(*args, **kwargs)

        def proxy_manager_for(self, *args, **kwargs):
            kwargs["ssl_context"] = ctx
            return super().proxy_manager_for(*args, **kwargs)

    session.mount("https://", _Adapter())
    return session
