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


def xmlrpc_loads(body: bytes) -> tuple[tuple, str | None]:
    """``xmlrpc.client.loads`` whose expat refuses a DTD at its first token, in any encoding (UTF-16 too),
    before any entity is declared or expanded: (params, method name or None). A Fault raises as
    ``xmlrpc.client.Fault``; anything unreadable raises."""
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
