"""One hardened lxml configuration for every XML the gateway reads, from Protheus or from the PABX.

No DTD is loaded, no entity is resolved, nothing is fetched from the network,
huge trees are refused; and since SmartCTI, SOAP answers and XML-RPC never
need a DTD, a document that declares one is refused before parsing, which
keeps entity bombs (billion laughs, quadratic blow-up, external entities) out.
"""
from __future__ import annotations

import functools
import re

from lxml import etree

_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def has_dtd(body: bytes) -> bool:
    """True when ``body`` (ASCII-compatible bytes) declares a DTD or an entity."""
    return _DTD.search(body) is not None


@functools.lru_cache(maxsize=None)
def parser(encoding: str | None = None) -> etree.XMLParser:
    return etree.XMLParser(
        encoding=encoding,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _refuse_dtd(*_) -> None:
    raise ValueError("DTDs and entities are not accepted")


def xmlrpc_loads(body: bytes, plain_utf8: bool | None = None) -> tuple[tuple, str | None]:
    """``xmlrpc.client.loads`` that refuses a DTD: (params, method name or None). A Fault raises as
    ``xmlrpc.client.Fault``; anything unreadable raises.

    A plain UTF-8 document (every NGC event and answer) is read with lxml, four times cheaper than
    expat's callbacks into Python; anything else -- another encoding, a DTD, a shape the tree reading
    does not know, malformed XML -- goes to the stdlib's own reading, so every odd input gets exactly
    the answer or the error it always got. ``plain_utf8``: what the caller already found of the body
    (markup first, UTF-8, no DTD); None, looked at here."""
    if _plain_utf8(body) if plain_utf8 is None else plain_utf8:
        try:
            return _from_tree(etree.fromstring(body, parser()))
        except (_Unusual, etree.XMLSyntaxError, ValueError, TypeError):
            pass
    return _expat_loads(body)


_UTF8_DECLARATION = re.compile(rb"<\?xml\s[^?>]*?encoding\s*=\s*[\"'](?:utf-?8)[\"']", re.IGNORECASE)
_ANY_DECLARATION = re.compile(rb"<\?xml\s[^?>]*?encoding\s*=")


def _plain_utf8(body: bytes) -> bool:
    """Starts with markup, declares no encoding but UTF-8, declares no DTD."""
    if body[:1] != b"<" or has_dtd(body):
        return False
    head = body[:200]
    return _ANY_DECLARATION.match(head) is None or _UTF8_DECLARATION.match(head) is not None


def _expat_loads(body: bytes) -> tuple[tuple, str | None]:
    """The stdlib's reading, its expat refusing a DTD at its first token, in any encoding (UTF-16 too),
    before any entity is declared or expanded."""
    import xmlrpc.client
    from xml.parsers import expat
    unmarshaller = xmlrpc.client.Unmarshaller()
    p = expat.ParserCreate(None, None)
    p.StartElementHandler = unmarshaller.start
    p.EndElementHandler = unmarshaller.end
    p.CharacterDataHandler = unmarshaller.data
    p.StartDoctypeDeclHandler = p.EntityDeclHandler = _refuse_dtd
    unmarshaller.xml(None, None)
    p.Parse(body, True)
    return unmarshaller.close(), unmarshaller.getmethodname()


# ---- XML-RPC from an lxml tree: the canonical shapes only, as xmlrpc.client.Unmarshaller reads them
class _Unusual(Exception):
    """Not the canonical shape: the stdlib's tolerant reading decides what it is."""


def _text(e: etree._Element) -> str:
    if len(e):
        raise _Unusual
    return e.text or ""


def _boolean(text: str) -> bool:
    if text not in ("0", "1"):
        raise _Unusual          # the stdlib's TypeError, with its words
    return text == "1"


def _datetime(text: str):
    import xmlrpc.client
    value = xmlrpc.client.DateTime()
    value.decode(text)
    return value


def _base64(text: str):
    import xmlrpc.client
    value = xmlrpc.client.Binary()
    value.decode(text.encode("ascii"))
    return value


def _decimal(text: str):
    from decimal import Decimal
    return Decimal(text)


_SCALARS = {"string": str, "int": int, "i4": int, "i8": int, "i1": int, "i2": int, "biginteger": int,
            "boolean": _boolean, "double": float, "float": float, "bigdecimal": _decimal,
            "dateTime.iso8601": _datetime, "base64": _base64}


def _value(v: etree._Element):
    if len(v) == 0:
        return v.text or ""                      # <value>text</value>: a string
    if len(v) != 1:
        raise _Unusual
    t = v[0]
    tag = t.tag
    convert = _SCALARS.get(tag)
    if convert is not None:
        return convert(_text(t))
    if tag == "struct":
        out = {}
        for m in t:
            if m.tag != "member" or len(m) != 2 or m[0].tag != "name" or m[1].tag != "value":
                raise _Unusual
            out[_text(m[0])] = _value(m[1])
        return out
    if tag == "array":
        if len(t) != 1 or t[0].tag != "data":
            raise _Unusual
        return [_value(x) if x.tag == "value" else _unusual() for x in t[0]]
    if tag == "nil" and len(t) == 0:
        return None
    raise _Unusual


def _unusual():
    raise _Unusual


def _params(e: etree._Element) -> tuple:
    out = []
    for param in e:
        if param.tag != "param" or len(param) != 1 or param[0].tag != "value":
            raise _Unusual
        out.append(_value(param[0]))
    return tuple(out)


def _from_tree(root: etree._Element) -> tuple[tuple, str | None]:
    if root.tag == "methodCall":
        name = params = None
        for child in root:
            if child.tag == "methodName" and name is None:
                name = _text(child)
            elif child.tag == "params" and params is None:
                params = _params(child)
            else:
                raise _Unusual
        if name is None and params is None:
            raise _Unusual
        return params or (), name
    if root.tag == "methodResponse" and len(root) == 1:
        child = root[0]
        if child.tag == "params":
            return _params(child), None
        if child.tag == "fault" and len(child) == 1 and child[0].tag == "value":
            fault = _value(child[0])
            if isinstance(fault, dict):
                import xmlrpc.client
                raise xmlrpc.client.Fault(**fault)
    raise _Unusual
