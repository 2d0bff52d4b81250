"""aiohttp routes of the SmartCTIWSCommand SOAP service (Protheus → gateway).

For a command path P (normally ``/axis2/services/SmartCTIWSCommand``, the path of
``K4_CMD_URL``) the service answers on every URL shape a Protheus client may
build (smartcti.md §1.1):

* ``P``
* ``P.SmartCTIWSCommandHttpSoap11Endpoint`` and ``…Endpoint/`` — what Protheus
  actually posts to (``K4_CMD_URL + ".SmartCTIWSCommandHttpSoap11Endpoint/"``)
* ``P.jws`` and ``P.jws.SmartCTIWSCommandHttpSoap11Endpoint[/]`` — an Axis 1
  style ``K4_CMD_URL`` concatenated the same way
* each of these with doubled or trailing slashes: a ``K4_CMD_URL`` typed with a
  trailing ``/`` gives ``P/.SmartCTIWSCommandHttpSoap11Endpoint/`` (smartcti.md
  §10.12), and ``http://host:8080//axis2/services/…`` reaches the path as typed

POST carries a SOAP 1.1 request; the operation is taken from the body's
wrapper element only (never from the URL or SOAPAction). GET with a ``wsdl``
query key (any case) returns the WSDL whose soap:address is the URL asked.
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from smartcti_gateway.core.operations import SECRET_PARAMS

from ..httpbody import BodyTimeout, read_body
from .soap import CLIENT, SERVER, SoapFault, fault, parse_request, response, wsdl

__all__ = ["CommandHandler", "DEFAULT_PATH", "ENDPOINT_SUFFIXES", "add_command_routes"]

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, dict[str, str]], Awaitable[int | str]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]     # an aiohttp request handler

DEFAULT_PATH = "/axis2/services/SmartCTIWSCommand"

ENDPOINT_SUFFIXES = (
    "",
    ".SmartCTIWSCommandHttpSoap11Endpoint",
    ".SmartCTIWSCommandHttpSoap11Endpoint/",
    ".jws",
    ".jws.SmartCTIWSCommandHttpSoap11Endpoint",
    ".jws.SmartCTIWSCommandHttpSoap11Endpoint/",
)

_XML_HEADERS = {hdrs.CONTENT_TYPE: "text/xml; charset=UTF-8"}


def _redacted(args: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if k in SECRET_PARAMS else v) for k, v in args.items()}


def _asked_url(request: web.Request) -> str:
    """scheme://host/path of the request, as asked, without the query."""
    return f"{request.scheme}://{request.host}{request.rel_url.raw_path}"


class _CommandService:
    __slots__ = ("_body_timeout", "_handler", "_name", "_recoded_from")

    MAX_REMEMBERED = 10_000   # client addresses already told about cp1252 bytes

    def __init__(self, handler: CommandHandler, name: str, body_timeout: float | None = None) -> None:
        self._handler = handler
        self._name = name
        self._body_timeout = body_timeout
        self._recoded_from: set[str] = set()

    def _note_recoded(self, request: web.Request, op: str) -> None:
        """Once per client address: its requests carry windows-1252 bytes under a UTF-8 label."""
        remote = request.remote or "(unknown)"
        if remote in self._recoded_from:
            return
        if len(self._recoded_from) >= self.MAX_REMEMBERED:
            self._recoded_from.clear()
        self._recoded_from.add(remote)
        log.info("%sSOAP requests from %s carry bytes that are not valid in their declared charset (first "
                 "seen in %s); read as windows-1252, the charset of Protheus' strings, and answered normally. "
                 "Said once per address.", self._prefix(), remote, op)

    async def post(self, request: web.Request) -> web.Response:
        # read() honours the application's client_max_size (413 beyond it).
        try:
            body = await read_body(request, self._body_timeout, lambda: fault(
                CLIENT, f"Request body not received within {self._body_timeout:g} s"), _XML_HEADERS[hdrs.CONTENT_TYPE])
        except BodyTimeout as e:
            log.warning("%sSOAP request from %s: body not received within %g s", self._prefix(),
                        request.remote, self._body_timeout)
            return e.response
        try:
            req = parse_request(body, request.headers.get(hdrs.CONTENT_TYPE))
        except SoapFault as exc:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%sSOAP request refused: %s", self._prefix(), exc.faultstring)
            return web.Response(status=500, body=fault(exc.faultcode, exc.faultstring),
                                headers=_XML_HEADERS)
        op = req.operation
        if req.recoded:
            self._note_recoded(request, op)
        try:
            out = response(op, await self._handler(op, req.args))
        except asyncio.CancelledError:
            raise
        except SoapFault as exc:  # a handler may refuse a request deliberately
            log.warning("%s%s refused: %s", self._prefix(), op, exc.faultstring)
            return web.Response(status=500, body=fault(exc.faultcode, exc.faultstring),
                                headers=_XML_HEADERS)
        except Exception as exc:  # noqa: BLE001 - the service must keep serving
            log.exception("%s%s failed, args %s", self._prefix(), op, _redacted(req.args))
            short = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if len(short) > 200:
                short = short[:197] + "..."
            return web.Response(status=500, body=fault(SERVER, f"internal error: {short}"),
                                headers=_XML_HEADERS)
        return web.Response(body=out, headers=_XML_HEADERS)

    async def get(self, request: web.Request) -> web.Response:
        url = _asked_url(request)
        if any(key.lower() == "wsdl" for key in request.query):
            return web.Response(body=wsdl(url), headers=_XML_HEADERS)
        return web.Response(
            text=f"SmartCTIWSCommand SOAP 1.1 service{self._for()}; WSDL: {url}?wsdl\n",
            content_type="text/plain",
        )

    def _prefix(self) -> str:
        return f"[{self._name}] " if self._name else ""

    def _for(self) -> str:
        return f" ({self._name})" if self._name else ""


def add_command_routes(
    app: web.Application,
    path: str,
    handler: CommandHandler,
    *,
    name: str = "",
    body_timeout: float | None = None,
    wrap: Callable[[Handler], Handler] = lambda handler: handler,
) -> list[str]:
    """Serve SmartCTIWSCommand on ``path`` and its aliases (see module doc).

    ``handler(operation, args)`` gets the operation name exactly as in
    OPERATIONS and every parameter of it (missing ones as ""), and returns the
    int or str to put in ``ns:return``. A handler exception becomes an HTTP 500
    ``soapenv:Server`` Fault ("internal error: …", logged without secret
    arguments); a SoapFault raised by the handler is sent as it is. ``name``
    only labels log lines (e.g. the link name when several links share one
    application). ``wrap`` is put around the aiohttp handlers (the access
    guard's ``guarded``). Request bodies are limited by the application's
    ``client_max_size`` (HTTP 413 beyond it); a body that has not fully arrived
    ``body_timeout`` seconds after the handler starts reading it gets HTTP 408.

    Returns the canonical names of the routes added (for the access guard).
    """
    if not path.startswith("/"):
        raise ValueError(f"command path must start with '/': {path!r}")
    path = path.rstrip("/")
    if not path:
        raise ValueError("command path must not be '/'")
    if not _PATH_CHARS.fullmatch(path):
        raise ValueError(f"command path may hold letters, digits and . _ ~ - / only: {path!r}")
    service = _CommandService(handler, name, body_timeout)
    post, get = wrap(service.post), wrap(service.get)
    canonical = []
    for suffix in ENDPOINT_SUFFIXES:   # the shapes Protheus builds, matched exactly (and first)
        resource = app.router.add_resource(path + suffix)
        resource.add_route("POST", post)
        resource.add_route("GET", get)
        canonical.append(resource.canonical)
    # the same shapes with doubled or trailing slashes anywhere
    resource = app.router.add_resource(_loose_pattern(path))
    resource.add_route("POST", post)
    resource.add_route("GET", get)
    canonical.append(resource.canonical)
    return canonical


_PATH_CHARS = re.compile(r"/[A-Za-z0-9._~/-]*")


def _loose_pattern(path: str) -> str:
    """An aiohttp route pattern for ``path`` + any suffix of ENDPOINT_SUFFIXES, every ``/`` one or more."""
    segments = [s for s in path.split("/") if s]
    parts = ["/{lead:/*}"]
    for i, segment in enumerate(segments):
        if i:
            parts.append(f"{{s{i}:/+}}")
        parts.append(segment)
    parts.append(r"{tail:/*(?:\.jws)?/*(?:\.SmartCTIWSCommandHttpSoap11Endpoint)?/*}")
    return "".join(parts)
