"""The ``parsed`` form of a recorded body: XML-RPC calls and answers, SOAP requests, answers and faults.

Both functions return ``None`` for anything they cannot read (garbage, a WSDL, HTML, a DTD, a gzip
body) and never raise: a capture records what was said, it never judges it. DTDs and entities are
refused before any parser sees the document (``xmlsafe``), as everywhere in the gateway.
"""
from __future__ import annotations

import base64
import datetime
import re
import xmlrpc.client
from typing import Any

from lxml import etree

from .. import xmlsafe

_MAX_DEPTH = 32



def jsonable(value: Any, depth: int = 0) -> Any:
    """An XML-RPC value as JSON can hold it: base64 as {"base64": …}, dateTime as {"datetime": …}."""
    if depth > _MAX_DEPTH:
        return "…"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, xmlrpc.client.Binary):
        return {"base64": base64.b64encode(value.data).decode("ascii")}
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, xmlrpc.client.DateTime):
        return {"datetime": value.value}
    if isinstance(value, datetime.datetime):
        return {"datetime": value.isoformat()}
    return str(value)


def parse_xmlrpc(body: bytes) -> dict[str, Any] | None:
    """{"method": m, "params": [...]}, {"result": v} or {"fault": {"code", "string"}}; None if not XML-RPC."""
    if not body or xmlsafe.has_dtd(body):
        return None
    try:
        try:
            params, method = xmlsafe.xmlrpc_loads(body)
        except xmlrpc.client.Fault as fault:
            return {"fault": {"code": jsonable(fault.faultCode), "string": jsonable(fault.faultString)}}
    except RecursionError:
        return None
    except Exception:  # noqa: BLE001 - unreadable: recorded as it came, parsed null
        return None
    if method is not None:
        return {"method": method, "params": jsonable(list(params))}
    if len(params) == 1:
        return {"result": jsonable(params[0])}
    return None


_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>")


def _root(body: bytes) -> etree._Element | None:
    body = body.lstrip()
    try:
        return etree.fromstring(body, xmlsafe.parser())
    except (etree.XMLSyntaxError, ValueError):
        pass
    # ADVPL strings are windows-1252: bytes invalid in the declared UTF-8 are read as such
    try:
        text = _DECL.sub(b"", body).decode("cp1252", "replace")
        return etree.fromstring(text.encode("utf-8"), xmlsafe.parser("UTF-8"))
    except (etree.XMLSyntaxError, ValueError, LookupError):
        return None


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2] if tag[:1] == "{" else tag


def _text(elem: etree._Element) -> Any:
    children = [c for c in elem if isinstance(c.tag, str)]
    if not children:
        return "".join(elem.itertext())
    out: dict[str, Any] = {}
    for c in children:
        out.setdefault(_local(c.tag), _text(c))
    return out


def _child(elem: etree._Element, name: str) -> etree._Element | None:
    for c in elem:
        if _local(c.tag).lower() == name.lower():
            return c
    return None


def parse_soap(body: bytes) -> dict[str, Any] | None:
    """{"operation": op, "args": {...}} for a request, {"operation": op, "return": v} for an answer
    (``<opResponse><return>``, Protheus' ``<OPRESPONSE><OPRESULT>``), {"fault": {"code", "string"}}
    for a SOAP 1.1 or 1.2 fault; None when the body is no SOAP envelope."""
    if not body or b"Envelope" not in body or xmlsafe.has_dtd(body):
        return None
    try:
        root = _root(body)
        if root is None or _local(root.tag) != "Envelope":
            return None
        soap_body = _child(root, "Body")
        if soap_body is None:
            return None
        wrapper = next((c for c in soap_body if isinstance(c.tag, str)), None)
        if wrapper is None:
            return None
        name = _local(wrapper.tag)
        if name == "Fault":
            code = _child(wrapper, "faultcode")
            text = _child(wrapper, "faultstring")
            if code is None:            # SOAP 1.2: Code/Value, Reason/Text
                c12 = _child(wrapper, "Code")
                code = _child(c12, "Value") if c12 is not None else None
                r12 = _child(wrapper, "Reason")
                text = _child(r12, "Text") if r12 is not None else None
            return {"fault": {"code": "".join(code.itertext()).strip() if code is not None else "",
                              "string": "".join(text.itertext()) if text is not None else ""}}
        children = [c for c in wrapper if isinstance(c.tag, str)]
        if name.lower().endswith("response"):
            value: Any = _text(children[0]) if len(children) == 1 else _text(wrapper)
            return {"operation": name[:-len("response")], "return": value}
        args: dict[str, Any] = {}
        for c in children:
            args.setdefault(_local(c.tag), _text(c))
        return {"operation": name, "args": args}
    except RecursionError:
        return None
    except Exception:  # noqa: BLE001 - unreadable: recorded as it came, parsed null
        return None
