"""SmartCTIWSCommand SOAP 1.1 messages: request parsing, response and fault writing, WSDL.

Pure functions, no I/O except one cached read of the committed WSDL file.
Wire contract: smartcti.md §1 (document/literal wrapped, namespace
``http://DefaultNamespace``, responses ``<ns:OpResponse><ns:return>``).

Parsing is tolerant of what real clients send (any envelope prefix, qualified
or unqualified wrapper and children, case differences, ``xsi:type`` and
``xsi:nil``, missing elements, surrounding whitespace, UTF-8 or ISO-8859-1)
and strict about what is dangerous (DTDs and entities are refused before the
parser sees the document; the parser itself never loads DTDs, resolves
entities or touches the network).
"""
from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from smartcti_gateway import xmlsafe
from smartcti_gateway.core.operations import OPERATIONS

__all__ = [
    "CLIENT",
    "SERVER",
    "SOAP11_NS",
    "SOAP12_NS",
    "SERVICE_NS",
    "WSDL_PATH",
    "WSDL_PLACEHOLDER_ADDRESS",
    "SoapFault",
    "SoapRequest",
    "fault",
    "parse_request",
    "response",
    "wsdl",
]

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
SERVICE_NS = "http://DefaultNamespace"
_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

CLIENT = "soapenv:Client"
SERVER = "soapenv:Server"

def _find_wsdl() -> Path:
    here = Path(__file__).resolve()
    # Installed wheel: force-included as smartcti_gateway/wsdl/; source tree: <repo>/wsdl/.
    candidates = (here.parents[1] / "wsdl", here.parents[2] / "wsdl")
    for folder in candidates:
        if (folder / "SmartCTIWSCommand.wsdl").is_file():
            return folder / "SmartCTIWSCommand.wsdl"
    return candidates[-1] / "SmartCTIWSCommand.wsdl"


WSDL_PATH = _find_wsdl()
# The soap:address location written in the committed WSDL; wsdl() replaces it.
WSDL_PLACEHOLDER_ADDRESS = (
    "http://localhost:8080/axis2/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint/"
)


class SoapFault(Exception):
    """A request that cannot be answered with a normal response."""

    def __init__(self, faultcode: str, faultstring: str) -> None:
        super().__init__(faultstring)
        self.faultcode = faultcode
        self.faultstring = faultstring


@dataclass(slots=True)
class SoapRequest:
    operation: str
    # Every parameter of the operation, in the table's order; missing = "".
    args: dict[str, str] = field(default_factory=dict)
    # True when bytes invalid in the declared charset were read as windows-1252 (what ADVPL strings are)
    recoded: bool = False


def _as_cp1252(error: UnicodeDecodeError) -> tuple[str, int]:
    """Codec error handler: the bytes that are not valid in the declared charset, read as windows-1252."""
    return error.object[error.start:error.end].decode("cp1252", "replace"), error.end


codecs.register_error("smartcti-cp1252", _as_cp1252)


# --------------------------------------------------------------------------
# Parsing

_ENVELOPE_TAGS = {"{%s}Envelope" % SOAP11_NS, "Envelope"}
_BODY_TAGS = {"{%s}Body" % SOAP11_NS, "Body"}
_XSI_NIL = "{%s}nil" % _XSI_NS


# Case-insensitive fallbacks, kept only where the lower-cased name is unique.
def _unique_lower(names) -> dict[str, str]:
    table: dict[str, str | None] = {}
    for name in names:
        low = name.lower()
        table[low] = None if low in table else name
    return {low: name for low, name in table.items() if name is not None}


_OP_BY_LOWER = _unique_lower(OPERATIONS)
_PARAM_BY_LOWER = {name: _unique_lower(op.params) for name, op in OPERATIONS.items()}

_DECL_ENCODING = re.compile(rb"<\?xml\s[^?>]*?encoding\s*=\s*[\"']([^\"']{1,40})[\"']")
_CT_CHARSET = re.compile(r"charset\s*=\s*[\"']?([^\s;\"']+)", re.IGNORECASE)

# Python codec name -> libxml2 encoding name (also used in fault strings).
_SUPPORTED_ENCODINGS = {
    "utf-8": "UTF-8",
    "ascii": "US-ASCII",
    "iso8859-1": "ISO-8859-1",
    "cp1252": "windows-1252",
    "iso8859-15": "ISO-8859-15",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16LE",
    "utf-16-be": "UTF-16BE",
}
# Content-Type charsets honoured when the document has no XML declaration.
_CT_ENCODINGS = {"iso8859-1", "cp1252", "utf-8"}


@functools.lru_cache(maxsize=64)
def _codec(label: str) -> str | None:
    """Python codec name for an encoding label, or None if not supported."""
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):  # ValueError: a NUL in the label
        return None
    return name if name in _SUPPORTED_ENCODINGS else None


def _parser(codec: str) -> etree.XMLParser:
    return xmlsafe.parser(_SUPPORTED_ENCODINGS[codec])


def _encoding(body: bytes, content_type: str | None) -> str:
    """Python codec name for the request body (see module doc)."""
    if body[:3] == codecs.BOM_UTF8:
        return "utf-8"
    if body[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    if body[:4] == b"<\x00?\x00":
        return "utf-16-le"
    if body[:4] == b"\x00<\x00?":
        return "utf-16-be"
    if body[:5] == b"<?xml":
        m = _DECL_ENCODING.match(body)
        if m is not None:
            label = m.group(1).decode("ascii", "replace")
            codec = _codec(label)
            if codec is None:
                raise SoapFault(CLIENT, f"Unsupported XML encoding {label!r}; send UTF-8 or ISO-8859-1")
            return codec
    if content_type and "charset" in content_type.lower():
        m = _CT_CHARSET.search(content_type)
        if m is not None:
            codec = _codec(m.group(1))
            if codec in _CT_ENCODINGS:
                return codec
    return "utf-8"


def _local(tag: str) -> str:
    return tag.rpartition("}")[2] if tag[:1] == "{" else tag


# The device is echoed to Protheus exactly as it came (its events are routed by that
# string, padding included); the core trims it for its own use. Other values are trimmed here.
UNTRIMMED = frozenset({"device", "cDevice"})


def _value(elem: etree._Element, name: str) -> str:
    text = elem.text if len(elem) == 0 else "".join(elem.itertext())
    if not text:
        return ""
    if elem.get(_XSI_NIL) in ("true", "1"):
        return ""
    return text if name in UNTRIMMED else text.strip()


def parse_request(body: bytes, content_type: str | None = None) -> SoapRequest:
    """Parse a SmartCTIWSCommand SOAP 1.1 request; raise SoapFault if it is not one."""
    if not body or body.isspace():
        raise SoapFault(CLIENT, "Empty request body; expected a SOAP 1.1 envelope")
    if body[:1].isspace():
        body = body.lstrip()

    codec = _encoding(body, content_type)
    recoded = False
    if codec in ("utf-8", "ascii"):
        # ADVPL strings are cp1252: a password with "Ç" may come as cp1252 bytes under a UTF-8 label
        # (smartcti.md §10.11). A Fault would read in Protheus as "cannot reach the middleware": what
        # is not valid in the declared charset is read as windows-1252 instead.
        try:
            body.decode("utf-8")          # US-ASCII labels on UTF-8 bytes are read as UTF-8
        except UnicodeDecodeError:
            body = body.decode("utf-8", "smartcti-cp1252").encode("utf-8")
            recoded = True
        codec = "utf-8"
    if codec == "utf-8" or codec == "iso8859-1":
        # ASCII-compatible: look for markup in the bytes.
        text: bytes | str = body
        doctype, entity = b"<!DOCTYPE", b"<!ENTITY"
    else:
        try:
            text = body.decode(codec)
        except UnicodeDecodeError as exc:
            raise SoapFault(
                CLIENT, f"Request body is not valid {_SUPPORTED_ENCODINGS[codec]} "
                f"(byte offset {exc.start})",
            ) from None
        doctype, entity = "<!DOCTYPE", "<!ENTITY"
    if doctype in text or entity in text:  # type: ignore[operator]
        raise SoapFault(CLIENT, "DTDs and entities are not accepted")

    try:
        root = etree.fromstring(body, _parser(codec))
    except (etree.XMLSyntaxError, ValueError) as exc:
        msg = str(exc) or type(exc).__name__
        if len(msg) > 160:
            msg = msg[:157] + "..."
        raise SoapFault(CLIENT, f"Request is not well-formed XML: {msg}") from None

    tag = root.tag
    if tag not in _ENVELOPE_TAGS:
        if _local(tag) == "Envelope":
            ns = tag[1:].partition("}")[0]
            if ns == SOAP12_NS:
                raise SoapFault(CLIENT, "SOAP 1.2 is not supported, use the SOAP 1.1 endpoint")
            raise SoapFault(CLIENT, f"Envelope is in namespace {ns!r}; expected SOAP 1.1 {SOAP11_NS!r}")
        raise SoapFault(CLIENT, f"No SOAP Envelope: the document element is <{_local(tag)}>")

    body_elem = None
    for child in root:
        if child.tag in _BODY_TAGS:
            body_elem = child
            break
    if body_elem is None:
        raise SoapFault(CLIENT, "SOAP Envelope has no Body")

    wrapper = None
    for child in body_elem:
        if isinstance(child.tag, str):
            wrapper = child
            break
    if wrapper is None:
        raise SoapFault(CLIENT, "SOAP Body is empty; expected a SmartCTIWSCommand operation element")

    name = _local(wrapper.tag)
    op = OPERATIONS.get(name)
    if op is None:
        real = _OP_BY_LOWER.get(name.lower())
        if real is None:
            shown = name if len(name) <= 60 else name[:57] + "..."
            raise SoapFault(
                CLIENT,
                f"Unknown operation {shown!r}: not one of the {len(OPERATIONS)} "
                "SmartCTIWSCommand operations",
            )
        op = OPERATIONS[real]
        name = real

    args = dict.fromkeys(op.params, "")
    if op.params and len(wrapper):
        by_lower = _PARAM_BY_LOWER[name]
        exact: set[str] = set()
        loose: set[str] = set()
        for child in wrapper:
            ctag = child.tag
            if not isinstance(ctag, str):
                continue
            local = _local(ctag)
            if local in args:
                if local in exact:
                    continue
                exact.add(local)
                args[local] = _value(child, local)
            else:
                key = by_lower.get(local.lower())
                if key is None or key in exact or key in loose:
                    continue
                loose.add(key)
                args[key] = _value(child, key)
    return SoapRequest(name, args, recoded)


# --------------------------------------------------------------------------
# Writing

_HEAD = (
    "<?xml version='1.0' encoding='UTF-8'?>"
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>"
)
_TAIL = "</soapenv:Body></soapenv:Envelope>"

_FRAMES: dict[str, tuple[bytes, bytes]] = {
    name: (
        f'{_HEAD}<ns:{name}Response xmlns:ns="{SERVICE_NS}"><ns:return>'.encode(),
        f"</ns:return></ns:{name}Response>{_TAIL}".encode(),
    )
    for name in OPERATIONS
}

# Characters XML 1.0 cannot carry at all; they are dropped from output text.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escape(text: str) -> str:
    if _NOT_XML.search(text) is not None:
        text = _NOT_XML.sub("", text)
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def response(operation: str, value: int | str) -> bytes:
    """The SOAP 1.1 response for ``operation`` carrying ``value`` in ``ns:return``."""
    try:
        head, tail = _FRAMES[operation]
    except KeyError:
        raise ValueError(f"unknown SmartCTIWSCommand operation {operation!r}") from None
    if isinstance(value, int):
        return b"%b%d%b" % (head, value, tail)
    if isinstance(value, str):
        return head + _escape(value).encode("utf-8") + tail
    raise TypeError(f"{operation} result must be int or str, not {type(value).__name__}")


def fault(faultcode: str, faultstring: str) -> bytes:
    """A SOAP 1.1 Fault envelope."""
    return (
        f"{_HEAD}<soapenv:Fault><faultcode>{_escape(faultcode)}</faultcode>"
        f"<faultstring>{_escape(faultstring)}</faultstring></soapenv:Fault>{_TAIL}"
    ).encode("utf-8")


# --------------------------------------------------------------------------
# WSDL


@functools.cache
def _wsdl_parts() -> tuple[bytes, bytes]:
    data = WSDL_PATH.read_bytes()
    marker = f'location="{WSDL_PLACEHOLDER_ADDRESS}"'.encode()
    before, found, after = data.partition(marker)
    if not found or marker in after:
        raise RuntimeError(f"{WSDL_PATH}: expected exactly one soap:address {marker.decode()}")
    return before, after


@functools.lru_cache(maxsize=32)
def wsdl(address: str) -> bytes:
    """The committed WSDL with its soap:address location set to ``address``."""
    before, after = _wsdl_parts()
    attr = _escape(address).replace('"', "&quot;")
    return b"%blocation=\"%b\"%b" % (before, attr.encode("utf-8"), after)
