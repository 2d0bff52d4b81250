"""Fuzzing the two endpoints anyone on the network can reach: SmartCTIWSCommand (SOAP, from
Protheus) and the PABX events endpoint (XML-RPC, from the NGC).

One machinery for both uses:

* ``tests/test_fuzz.py`` runs a few hundred inputs per endpoint in the suite;
* ``scripts/fuzz`` (``python -m tests.fuzzing``) runs 100 000 per endpoint and writes
  ``bench/fuzz-results.json``.

Inputs come from Hypothesis strategies, two kinds per endpoint: *structured* (well-formed or
nearly well-formed requests with random operation names, children, namespaces, prefixes,
encodings and declarations, text with control characters, lone surrogates written as bytes,
huge and empty values, deep nesting; XML-RPC values of every type, wrong types, broken
structs and arrays) and *mutational* (byte flips, insertions of dangerous tokens, deletions,
duplications, truncations and splices of good requests).

Most inputs go through the real handlers in process, without sockets: the aiohttp handler of
SmartCTIWSCommand (``soap.parse_request`` then ``Link.handle`` with a fake PABX driver) and
``DigitroDriver.handle_event_request`` (XML-RPC parsing, ``parse_event``, the link's CSTA
model). A slice goes over real HTTP to a running gateway, which must still answer a good
request after each batch. An input *crashes* when an exception escapes a handler, when the
answer is not a well-formed SOAP answer/Fault (XML-RPC answer/fault), when the service answers
"internal error", or when anything is logged at ERROR level; it *hangs* when it takes over 1 s.
"""
from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import http.client
import json
import logging
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple
from xml.sax.saxutils import escape

from aiohttp import web
from hypothesis import HealthCheck, Phase, given, seed as hseed, settings, strategies as st
from lxml import etree
from multidict import CIMultiDict

from smartcti_gateway.core import pabx as p
from smartcti_gateway.core.codes import Result
from smartcti_gateway.core.operations import OPERATIONS
from smartcti_gateway.link import Link
from smartcti_gateway.pabx.digitro.dialect import EVENTS, FIELDS, METHODS
from smartcti_gateway.pabx.base import Common, Driver
from smartcti_gateway.pabx.digitro.driver import DigitroDriver
from smartcti_gateway.protheus.command_service import add_command_routes
from smartcti_gateway.protheus.soap import SOAP11_NS, SOAP12_NS, SERVICE_NS

REPO = Path(__file__).resolve().parents[1]
CMD_PATH = "/axis2/services/SmartCTIWSCommand"
SOAP_PATH = CMD_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/"
EVENTS_PATH = "/pabx/digitro/1/RPC2"
HANG_SECONDS = 1.0          # one input taking longer is a hang
BOMB_LIMIT_MS = 10.0        # scripts/fuzz fails when a bomb takes longer to be refused
XSI = "http://www.w3.org/2001/XMLSchema-instance"


class FuzzInput(NamedTuple):
    body: bytes
    content_type: str | None


# ===================================================================== memory

def rss_kib(pid: int | str = "self") -> int:
    """Resident set size of a process now, KiB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ====================================================================== seeds

DEVICES = ["2001", "2002", "2003", "3001"]
_PLAUSIBLE = {
    "device": "2001", "cDevice": "2001", "agentID": "1234", "groupID": "701", "password": "1234",
    "ipaddress": "http://127.0.0.1:9/SMARTCTIWSEVENTING.apw", "number": "4832810000", "route": "0",
    "CallID": "", "reason": "1", "timeout": "30", "account": "", "data": "2|11122233344",
}


def _plausible(param: str) -> str:
    for key, value in _PLAUSIBLE.items():
        if key.lower() == param.lower():
            return value
    return "2001" if "device" in param.lower() else "1"


def soap_envelope(op: str, args: dict[str, str], *, prefix: str = "soap", qualified: bool = False,
                  decl: str = "") -> bytes:
    """A request the way Protheus (unqualified children) or zeep/Axis2 (``ns:`` children) write it."""
    q = "ns:" if qualified else ""
    children = "".join(f"<{q}{k}>{escape(v)}</{q}{k}>" for k, v in args.items())
    wrapper = (f'<ns:{op} xmlns:ns="{SERVICE_NS}">{children}</ns:{op}>' if qualified
               else f'<{op} xmlns="{SERVICE_NS}">{children}</{op}>')
    return (f'{decl}<{prefix}:Envelope xmlns:{prefix}="{SOAP11_NS}"><{prefix}:Body>{wrapper}'
            f'</{prefix}:Body></{prefix}:Envelope>').encode("utf-8")


def _soap_seeds() -> list[bytes]:
    seeds = []
    for name, op in OPERATIONS.items():
        args = {k: _plausible(k) for k in op.params}
        seeds.append(soap_envelope(name, args))
        seeds.append(soap_envelope(name, args, prefix="soapenv", qualified=True,
                                   decl="<?xml version='1.0' encoding='UTF-8'?>"))
    seeds.append(b"<?xml version='1.0' encoding='ISO-8859-1'?>" + soap_envelope(
        "Logon", {"device": "2001", "agentID": "Jos\xe9", "groupID": "701"}).decode().encode("latin-1"))
    seeds.append(
        f'<S:Envelope xmlns:S="{SOAP11_NS}" xmlns:xsi="{XSI}" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f'<S:Header><t:Trace xmlns:t="urn:t" S:mustUnderstand="0">x</t:Trace></S:Header><S:Body>'
        f'<Hold xmlns="{SERVICE_NS}"><device xsi:type="xsd:string">2001</device>'
        f'<CallID xsi:nil="true"/></Hold></S:Body></S:Envelope>'.encode())
    return seeds


def event_body(struct: dict[str, Any], method: str = METHODS["event"]) -> bytes:
    return xmlrpc.client.dumps((struct,), method).encode("utf-8")


def _event_seeds() -> list[bytes]:
    f = FIELDS
    seeds = []
    for i, name in enumerate(EVENTS):
        s = {f["event"]: name, f["device"]: DEVICES[i % len(DEVICES)], f["sequence"]: i,
             f["timestamp"]: "2026-11-21T16:02:10"}
        if name.startswith("CHAMADA"):
            s.update({f["call_id"]: f"21/11/26 16:02:10 010A 000{i % 3}/00", f["calling"]: "4832810000",
                      f["called"]: "7001", f["direction"]: "ENTRADA", f["last_redirection"]: "701",
                      f["other_device"]: "2002", f["data"]: "2|11122233344", f["cause"]: "OCUPADO"})
        else:
            s.update({f["agent"]: "1234", f["groups"]: "701,702", f["reason"]: "1"})
        seeds.append(event_body(s))
    return seeds


SOAP_SEEDS = _soap_seeds()
EVENT_SEEDS = _event_seeds()


def good_soap() -> FuzzInput:
    return FuzzInput(soap_envelope("SystemStatus", {}), "text/xml; charset=UTF-8")


def good_event() -> FuzzInput:
    return FuzzInput(event_body({FIELDS["event"]: "AGENTE_DISPONIVEL", FIELDS["device"]: "2001",
                                 FIELDS["agent"]: "1234", FIELDS["groups"]: "701"}), "text/xml")


# ================================================================= strategies

# Text: the whole of Unicode, lone surrogates included (they become invalid bytes on encoding).
_ANY_CHAR = st.characters(codec=None, exclude_categories=())
_CONTROL = st.characters(max_codepoint=0x1F)
_NAME_CHAR = st.sampled_from("abcdefgxyzABCDXYZ_-.:0123456789\u00e9\u4e2d")
_SPECIAL = [
    "&amp;", "&lt;", "&#0;", "&#x1F;", "&#xD800;", "&#xFFFE;", "&#1114112;", "&undefined;", "&", "<", ">",
    "]]>", "<![CDATA[x]]>", "<![CDATA[", "<!-- c -->", "<?pi x?>", "<a/>", "<a><b>x</b></a>", "</x>",
    "\r\n", "\t", "\x00", "\ufeff", "\ufffe", "\ud800", "\udfff", "\U0001f600", "\u202e", "%s%n", "${NGC_URL}",
    "' or 1=1 --", "../../etc/passwd", "2001\x002002", "-1", "99999999999999999999999", "1e999", "NaN",
]
_TEXT = st.one_of(
    st.sampled_from(list(_PLAUSIBLE.values()) + DEVICES + ["", " ", "0", "Jos\u00e9", "a\u00e7\u00e3o"]),
    st.text(_ANY_CHAR, max_size=24),
    st.text(_CONTROL, min_size=1, max_size=6),
    st.lists(st.sampled_from(_SPECIAL), min_size=1, max_size=4).map("".join),
)


@st.composite
def _texts(draw, huge_max: int = 20000) -> tuple[str, bool]:
    """(text, escape it?) — sometimes repeated into a huge value, sometimes left unescaped."""
    text = draw(_TEXT)
    if draw(st.integers(0, 19)) == 0:
        text = text * draw(st.integers(1, max(1, huge_max // max(1, len(text)))))
    return text, draw(st.integers(0, 5)) != 0


def _render(text: str, escaped: bool) -> str:
    return escape(text) if escaped else text


_CHARSETS = ["utf-8", "iso-8859-1", "cp1252", "utf-16", "utf-16-le", "utf-16-be", "ascii"]
_DECL_LABELS = ["UTF-8", "utf8", "ISO-8859-1", "latin1", "windows-1252", "ISO-8859-15", "UTF-16", "UTF-16LE",
                "US-ASCII", "UTF-32", "UTF-7", "EBCDIC-CP-US", "cp500", "klingon", "", "x" * 60]
_CONTENT_TYPES = [None, "text/xml; charset=UTF-8", "text/xml", "text/xml; charset=ISO-8859-1",
                  "text/xml; charset=windows-1252", "application/soap+xml; charset=utf-8",
                  "text/xml; charset=utf-16", "text/xml; charset=klingon", "text/xml; charset=",
                  "application/json", "multipart/form-data; boundary=x", "text/xml; charset=\"utf-8\"; q=x"]


@st.composite
def _encoded(draw, text: str) -> FuzzInput:
    """``text`` with an optional (true, false or bogus) XML declaration and BOM, encoded somehow."""
    charset = draw(st.sampled_from(_CHARSETS)) if draw(st.integers(0, 3)) == 0 else "utf-8"
    how = draw(st.integers(0, 4))                      # 0-1 no declaration, 2-3 the true one, 4 another
    if how >= 2:
        label = charset.upper() if how < 4 else draw(st.sampled_from(_DECL_LABELS))
        quote = draw(st.sampled_from(["'", '"']))
        text = f"<?xml version={quote}1.0{quote} encoding={quote}{label}{quote}?>" + text
    errors = draw(st.sampled_from(["surrogatepass", "xmlcharrefreplace", "replace"]))
    if errors == "surrogatepass" and not charset.startswith("utf"):
        errors = "replace"
    body = text.encode(charset, errors)
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b" \r\n\t", b"\x00"])) + body
    if draw(st.integers(0, 9)) == 0:
        body += draw(st.sampled_from([b" ", b"<!-- after -->", b"<second/>", b"\x00", b"junk", b"\xff"]))
    return FuzzInput(body, draw(st.sampled_from(_CONTENT_TYPES)))


def _nest(draw, inner: str) -> str:
    """Sometimes bury ``inner`` under a deep pile of elements (libxml2 refuses > 256 levels)."""
    if draw(st.integers(0, 24)) != 0:
        return inner
    depth = draw(st.sampled_from([10, 255, 257, 1000, 3000]))
    return "<a>" * depth + inner + "</a>" * depth


_OP_NAMES = list(OPERATIONS)
_BAD_OP_NAMES = ["", "Foo", "systemstatus", "LOGON", "Envelope", "Body", "Fault", "ns:Logon", "1Logon",
                 "Logon\u00e9", "SystemStatusResponse", "x" * 200]


@st.composite
def soap_structured(draw) -> FuzzInput:
    r = draw(st.integers(0, 9))
    op = draw(st.sampled_from(_OP_NAMES)) if r < 8 else draw(st.sampled_from(_BAD_OP_NAMES))
    if r == 9:
        op = draw(st.text(_NAME_CHAR, min_size=1, max_size=16))
    params = list(OPERATIONS[op].params) if op in OPERATIONS else []
    names = params + ["device", "DEVICE", "agentid", "x", "ns:device", "xsi:device", "1bad", ""]

    children = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(names)) if draw(st.integers(0, 3)) else draw(st.text(_NAME_CHAR, max_size=10))
        text, escaped = draw(_texts())
        attrs = draw(st.sampled_from(["", "", "", ' xsi:nil="true"', ' xsi:nil="1"', ' xsi:type="xsd:int"',
                                      ' xmlns="urn:other"', ' a="1" a="2"', ' foo="<"', ' q:x="1"']))
        value = _render(text, escaped)
        if draw(st.integers(0, 9)) == 0:
            value = f"<inner>{value}</inner>tail"
        children.append(f"<{name}{attrs}>{value}</{name}>" if draw(st.integers(0, 9)) else f"<{name}{attrs}/>")
    body_inner = "".join(children)

    wrap = draw(st.integers(0, 5))
    if wrap == 0:
        wrapper = f'<ns:{op} xmlns:ns="{SERVICE_NS}">{body_inner}</ns:{op}>'
    elif wrap == 1:
        wrapper = f"<{op}>{body_inner}</{op}>"
    elif wrap == 2:
        wrapper = f"<ns:{op}>{body_inner}</ns:{op}>"                 # unbound prefix
    elif wrap == 3:
        wrapper = f'<{op} xmlns="{draw(st.sampled_from(["urn:x", "", SOAP11_NS]))}">{body_inner}</{op}>'
    else:
        wrapper = f'<{op} xmlns="{SERVICE_NS}">{body_inner}</{op}>'
    wrapper = _nest(draw, wrapper)
    if draw(st.integers(0, 9)) == 0:
        wrapper = draw(st.sampled_from(["", " ", "<!-- c -->", "text"])) + wrapper + \
            draw(st.sampled_from(["", "<Second/>", "tail"]))

    pre = draw(st.sampled_from(["soap", "soapenv", "S", "SOAP-ENV", "env", "", "xsi", "a.b-c"]))
    ns = draw(st.sampled_from([SOAP11_NS] * 10 + [SOAP12_NS, "", SERVICE_NS, "urn:x", XSI]))
    q = f"{pre}:" if pre else ""
    decls = f' xmlns{":" + pre if pre else ""}="{ns}"' if draw(st.integers(0, 9)) else ""
    if draw(st.integers(0, 2)) == 0:
        decls += f' xmlns:xsi="{XSI}" xmlns:xsd="http://www.w3.org/2001/XMLSchema"'
    header = ""
    if draw(st.integers(0, 6)) == 0:
        header = f'<{q}Header><h:t xmlns:h="urn:h" {q}mustUnderstand="1">x</h:t></{q}Header>'
    shape = draw(st.integers(0, 19))
    if shape == 0:                                              # no Body
        doc = f"<{q}Envelope{decls}>{header}</{q}Envelope>"
    elif shape == 1:                                            # empty Body
        doc = f"<{q}Envelope{decls}><{q}Body/></{q}Envelope>"
    elif shape == 2:                                            # no Envelope
        doc = wrapper
    elif shape == 3:                                            # two Bodies
        doc = f"<{q}Envelope{decls}><{q}Body>{wrapper}</{q}Body><{q}Body/></{q}Envelope>"
    elif shape == 4:                                            # unclosed
        doc = f"<{q}Envelope{decls}><{q}Body>{wrapper}"
    else:
        doc = f"<{q}Envelope{decls}>{header}<{q}Body>{wrapper}</{q}Body></{q}Envelope>"
    return draw(_encoded(doc))


# ------------------------------------------------------------- XML-RPC values

_SCALARS = [
    ("string", st.one_of(_TEXT, st.sampled_from(list(EVENTS) + DEVICES)).map(lambda t: (t, True))),
    ("int", st.sampled_from(["1", "-1", "0", "2147483648", "9" * 40, "9" * 5000, "abc", "", " 1 ", "1.5", "0x10"])),
    ("i4", st.sampled_from(["1", "x", "99999999999"])),
    ("i8", st.sampled_from(["1", "-9223372036854775809", "y"])),
    ("boolean", st.sampled_from(["0", "1", "2", "true", "", "x"])),
    ("double", st.sampled_from(["1.5", "nan", "inf", "-inf", "1e999", "x", "", "1,5"])),
    ("dateTime.iso8601", st.sampled_from(["20261121T16:02:10", "garbage", "", "99999999T99:99:99"])),
    ("base64", st.sampled_from(["AAEC", "!!!", "A", "", "=" * 10])),
    ("nil", st.just("")),
    ("bigdecimal", st.sampled_from(["1.5", "x"])),
    ("foo", st.just("1")),
]


@st.composite
def _xmlrpc_value(draw, depth: int = 0) -> str:
    kind = draw(st.integers(0, 19))
    if kind < 12 or depth >= 3:
        if kind == 0:
            text, escaped = draw(_texts(4000))
            return f"<value>{_render(text, escaped)}</value>"                     # untyped: a string
        name, values = _SCALARS[draw(st.integers(0, len(_SCALARS) - 1))]
        v = draw(values)
        text, escaped = v if isinstance(v, tuple) else (v, True)
        text = _render(text, escaped)
        if name == "nil" and draw(st.booleans()):
            return "<value><nil/></value>"
        return f"<value><{name}>{text}</{name}></value>"
    if kind < 16:
        return f"<value>{draw(_xmlrpc_struct(depth + 1))}</value>"
    if kind < 19:
        items = "".join(draw(_xmlrpc_value(depth + 1)) for _ in range(draw(st.integers(0, 3))))
        return f"<value><array><data>{items}</data></array></value>"
    deep = draw(st.sampled_from([17, 100, 1000, 2500]))                          # nested arrays
    return "<value><array><data>" * deep + "<value>1</value>" + "</data></array></value>" * deep


_MEMBER_NAMES = list(FIELDS.values()) + ["", "X", "evento", "dispositivo"]


@st.composite
def _xmlrpc_struct(draw, depth: int = 0, event: bool = False) -> str:
    members = []
    if event and draw(st.integers(0, 4)):
        members.append(("EVENTO", f"<value><string>{draw(st.sampled_from(list(EVENTS) + ['', 'X']))}</string></value>"))
        members.append(("DISPOSITIVO", f"<value>{draw(st.sampled_from(DEVICES + ['', ' ', 'x' * 300]))}</value>"))
        if draw(st.booleans()):
            members.append(("ID_CHAMADA", f"<value>{draw(st.sampled_from(['c1', 'c2', 'c3', '']))}</value>"))
    for _ in range(draw(st.integers(0, 5))):
        members.append((draw(st.sampled_from(_MEMBER_NAMES)), draw(_xmlrpc_value(depth))))
    out = []
    for name, value in members:
        shape = draw(st.integers(0, 29))
        if shape == 0:
            out.append(f"<member>{value}</member>")                                 # no name
        elif shape == 1:
            out.append(f"<member><name>{escape(name)}</name></member>")             # no value
        elif shape == 2:
            out.append(f"<member><value>{name}</value><name>{name}</name></member>")
        else:
            out.append(f"<member><name>{escape(name)}</name>{value}</member>")
    return "<struct>" + "".join(out) + "</struct>"


@st.composite
def event_structured(draw) -> FuzzInput:
    method = draw(st.sampled_from([METHODS["event"]] * 8 + ["", "cti.Evento", "system.multicall", "x" * 300]))
    params = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 1, 0, 2, 3]))):
        if draw(st.integers(0, 5)):
            params.append(f"<param><value>{draw(_xmlrpc_struct(0, event=True))}</value></param>")
        else:
            params.append(f"<param>{draw(_xmlrpc_value())}</param>")
    shape = draw(st.integers(0, 19))
    name = "" if shape == 0 else f"<methodName>{escape(method)}</methodName>"
    if shape == 1:
        doc = f"<methodResponse><params>{''.join(params)}</params></methodResponse>"
    elif shape == 2:
        doc = ("<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1</int>"
               "</value></member></struct></value></fault></methodResponse>")
    elif shape == 3:
        doc = f"<methodCall>{name}<params>{''.join(params)}</params>"                # unclosed
    elif shape == 4:
        doc = f"<other>{name}</other>"
    else:
        doc = f"<methodCall>{name}<params>{''.join(params)}</params></methodCall>"
    return draw(_encoded(doc))


# ------------------------------------------------------------------ mutation

_TOKENS = [
    b"<!DOCTYPE x>", b"<!DOCTYPE x [<!ENTITY a 'b'>]>", b"<!ENTITY", b"<!doctype", b"&a;", b"&#0;", b"&#xD800;",
    b"]]>", b"<![CDATA[", b"<?xml version='1.0'?>", b"<?xml version='1.0' encoding='UTF-16'?>",
    b"<a>" * 300, b"</a>", b"\r\n", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xc3", b"\x80",
    b"\xf4\x90\x80\x80", b" xmlns:ns='urn:x'", b" xsi:nil='true'", b" xmlns=''", b"<", b">", b"&", b"'", b'"',
    b"<value><array><data>" * 50, b"<struct><member><name>EVENTO</name>", b"<int>x</int>", b"<nil/>",
]


@st.composite
def mutated(draw, seeds: list[bytes]) -> FuzzInput:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        n = len(data)
        op = draw(st.integers(0, 8))
        i = draw(st.integers(0, n))
        j = min(n, i + draw(st.integers(0, 64)))
        if op == 0 and i < n:                                       # flip bits
            data[i] ^= draw(st.integers(1, 255))
        elif op == 1 and i < n:                                     # set a byte
            data[i] = draw(st.sampled_from([0, 0xFF, 0xC3, 0x80, 0x3C, 0x3E, 0x26, 0x22, 0x0A, 0x20]))
        elif op == 2:                                               # insert a token
            data[i:i] = draw(st.sampled_from(_TOKENS))
        elif op == 3:                                               # delete a range
            del data[i:j]
        elif op == 4:                                               # duplicate a range
            data[j:j] = data[i:j] * draw(st.integers(1, 50))
        elif op == 5:                                               # truncate
            del data[i:]
        elif op == 6:                                               # splice with another seed
            other = draw(st.sampled_from(seeds))
            data[i:] = other[draw(st.integers(0, len(other))):]
        elif op == 7:                                               # swap two bytes
            if n >= 2:
                k = draw(st.integers(0, n - 1))
                if i < n:
                    data[i], data[k] = data[k], data[i]
        else:                                                       # insert random bytes
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
    ct = "text/xml; charset=UTF-8" if draw(st.integers(0, 7)) else draw(st.sampled_from(_CONTENT_TYPES))
    return FuzzInput(bytes(data), ct)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@st.composite
def soap_valid(draw) -> FuzzInput:
    """A well-formed request of a real operation, every parameter a random (escaped) value."""
    op = draw(st.sampled_from(_OP_NAMES))
    args = {}
    for name in OPERATIONS[op].params:
        text, _ = draw(_texts())
        args[name] = _NOT_XML.sub("", text) if draw(st.integers(0, 2)) else _plausible(name)
    xml = soap_envelope(op, args, prefix=draw(st.sampled_from(["soap", "soapenv"])), qualified=draw(st.booleans()))
    return draw(_encoded(xml.decode("utf-8")))


@st.composite
def event_valid(draw) -> FuzzInput:
    """A well-formed cti.evento of a known kind for a device in service, other members random."""
    f = FIELDS
    s: dict[str, Any] = {f["event"]: draw(st.sampled_from(list(EVENTS))), f["device"]: draw(st.sampled_from(DEVICES))}
    if draw(st.integers(0, 5)):
        s[f["call_id"]] = draw(st.sampled_from(["c1", "c2", "c3", "c4"]))
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from(list(FIELDS.values())))
        kind = draw(st.integers(0, 9))
        if kind == 0:
            s[key] = draw(st.integers(-2**31, 2**31 - 1))
        elif kind == 1:
            s[key] = draw(st.booleans())
        elif kind == 2:
            s[key] = [draw(_TEXT)]
        else:
            s[key] = draw(st.sampled_from(DEVICES + ["701", "ENTRADA", "SAIDA", "OCUPADO", "c1", "c2"])) \
                if kind < 6 else draw(_TEXT)
    text = xmlrpc.client.dumps((s,), METHODS["event"])
    return draw(_encoded(_NOT_XML.sub("", text)))


def soap_inputs() -> st.SearchStrategy[FuzzInput]:
    """Structured (valid and broken) and mutated SmartCTIWSCommand requests, in equal shares."""
    return st.one_of(soap_valid(), soap_structured(), mutated(SOAP_SEEDS))


def event_inputs() -> st.SearchStrategy[FuzzInput]:
    """Structured (valid and broken) and mutated cti.evento calls, in equal shares."""
    return st.one_of(event_valid(), event_structured(), mutated(EVENT_SEEDS))


# ======================================================================= bombs

def _billion_laughs(levels: int = 10) -> str:
    ents = "".join(f'<!ENTITY l{i} "{("&l%d;" % (i - 1)) * 10}">' for i in range(1, levels))
    return f'<!DOCTYPE m [<!ENTITY l0 "lol">{ents}]>'


def _quadratic(size: int) -> str:
    return f'<!DOCTYPE q [<!ENTITY a "{"a" * size}">]>'


def bombs(endpoint: str, max_body: int) -> dict[str, bytes]:
    """XML bombs for ``endpoint`` ("soap" or "events"), by name; ``max_body`` sizes the quadratic ones."""
    if endpoint == "soap":
        def doc(dtd: str, ref: str) -> str:
            return (f'{dtd}<soap:Envelope xmlns:soap="{SOAP11_NS}"><soap:Body><Logon xmlns="{SERVICE_NS}">'
                    f'<device>{ref}</device><agentID>1</agentID></Logon></soap:Body></soap:Envelope>')
    else:
        def doc(dtd: str, ref: str) -> str:
            return (f"{dtd}<methodCall><methodName>{METHODS['event']}</methodName><params><param><value>"
                    f"<struct><member><name>EVENTO</name><value>AGENTE_DISPONIVEL</value></member>"
                    f"<member><name>DISPOSITIVO</name><value>{ref}</value></member></struct>"
                    f"</value></param></params></methodCall>")
    decl = '<?xml version="1.0"?>'
    refs = "&a;" * 1000
    under = 100 * 1024                                   # one 100 KB entity, 1000 references
    assert len(doc(_quadratic(under), refs)) < max_body, "the quadratic bomb must fit in max_body"
    over = max_body + 1024
    return {
        "billion-laughs": (decl + doc(_billion_laughs(), "&l9;")).encode(),
        "billion-laughs-utf16": ('<?xml version="1.0" encoding="UTF-16"?>' + doc(_billion_laughs(), "&l9;"))
        .encode("utf-16"),
        "external-file": (decl + doc('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>', "&e;")).encode(),
        "external-http": (decl + doc('<!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:9/e.xml">]>', "&e;")).encode(),
        "external-dtd": (decl + doc('<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd">', "2001")).encode(),
        "parameter-entity": (decl + doc('<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
                                        "2001")).encode(),
        "quadratic-100KBx1000": (decl + doc(_quadratic(under), refs)).encode(),
        "quadratic-over-max-body": (decl + doc(_quadratic(over), refs)).encode(),
    }


# ============================================================ in-process targets

class Outcome(NamedTuple):
    kind: str           # "ok", "fault" or "crash"
    detail: str = ""


class _Arrived:
    """request.content of a body that has arrived whole."""

    @staticmethod
    def is_eof() -> bool:
        return True


class _Request:
    """What the two handlers read from an aiohttp request."""

    __slots__ = ("_body", "headers", "remote", "content")

    def __init__(self, inp: FuzzInput):
        self._body = inp.body
        self.headers = CIMultiDict({"Content-Type": inp.content_type} if inp.content_type else {})
        self.remote = "fuzz"
        self.content = _Arrived

    async def read(self) -> bytes:
        return self._body


class FakePabx(Driver):
    """Answers every request the way a NGC would, instantly; refuses devices it does not have."""

    def __init__(self):
        super().__init__(Common(1, "fuzz", 2.0, 5.0))
        self.requests = 0

    @property
    def target(self) -> str:
        return "fake NGC"

    async def keepalive(self) -> bool:
        return True

    async def reconnect(self, devices: list[str]) -> list[str]:
        return [d for d in devices if d not in DEVICES]

    async def execute(self, req: p.Request) -> Any:
        self.requests += 1
        if getattr(req, "device", "") and req.device not in DEVICES and not isinstance(req, p.QueryGroupCalls):
            raise p.PabxError(Result.INVALID_DEVICE, "DISPOSITIVO_INVALIDO")
        if isinstance(req, p.QueryAgentState):
            return p.AgentInfo(p.AgentState.READY, "1234", ("701",))
        if isinstance(req, p.SnapshotDevice):
            return [p.CallInfo("c1", p.ConnectionState.CONNECTED, calling="4832810000", called="7001")]
        if isinstance(req, p.QueryGroupCalls):
            return [p.GroupCall("c2", p.ConnectionState.QUEUED, "", "4832810000")]
        if isinstance(req, (p.MakeCall, p.ConsultationCall)):
            return "c3"
        if isinstance(req, p.QueryVersion):
            return "fake NGC 1.0"
        return None


def _fuzz_link() -> Link:
    link = Link(1, "fuzz", FakePabx(), timeout=2.0, version="smartcti-gateway fuzz")
    link.notifications = 0

    def submit(notes) -> None:           # no eventing in process: count what Protheus would hear
        link.notifications += len(notes)
    link.delivery.submit = submit
    return link


class ErrorLog(logging.Handler):
    """Counts ERROR records of the gateway and of aiohttp (an 'Error handling request' is a crash)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()[:300]}")

    def __enter__(self) -> "ErrorLog":
        self._levels = {}
        for name in ("smartcti_gateway", "aiohttp"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.ERROR)      # warnings about each bad input cost time and fill the screen
            logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).removeHandler(self)
            logging.getLogger(name).setLevel(level)


_SOAP_ANSWER = re.compile(rb"<ns:(\w+)Response xmlns:ns=\"http://DefaultNamespace\"><ns:return>")


def check_soap_answer(status: int, body: bytes) -> Outcome:
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError as e:
        return Outcome("crash", f"HTTP {status}, answer is not well-formed XML ({e}): {body[:200]!r}")
    if status == 200 and _SOAP_ANSWER.search(body):
        return Outcome("ok")
    fault = root.find(f".//{{{SOAP11_NS}}}Fault")
    if status in (408, 500) and fault is not None:
        text = fault.findtext("faultstring") or ""
        if text.startswith("internal error"):
            return Outcome("crash", text)
        return Outcome("fault", text)
    return Outcome("crash", f"HTTP {status}, unexpected answer {body[:200]!r}")


def check_event_answer(status: int, body: bytes) -> Outcome:
    try:
        (reply,), _ = xmlrpc.client.loads(body)
    except xmlrpc.client.Fault as f:
        if status in (200, 408) and "not understood" not in f.faultString:
            return Outcome("fault", f.faultString)
        return Outcome("crash", f"HTTP {status}: {f.faultString}")
    except Exception as e:  # noqa: BLE001
        return Outcome("crash", f"HTTP {status}, unreadable answer ({e}): {body[:200]!r}")
    if status == 200 and reply == {FIELDS["result"]: "OK"}:
        return Outcome("ok")
    return Outcome("crash", f"HTTP {status}, unexpected answer {reply!r}")


class SoapTarget:
    """The aiohttp POST handler of SmartCTIWSCommand over a link with a fake PABX."""

    name = "soap"

    def __init__(self):
        self.link = _fuzz_link()
        app = web.Application()
        add_command_routes(app, CMD_PATH, self.link.handle, name="fuzz", body_timeout=5)
        self._post = next(r.handler for r in app.router.routes()
                          if r.method == "POST" and r.resource.canonical == SOAP_PATH)

    async def __call__(self, inp: FuzzInput) -> Outcome:
        resp = await self._post(_Request(inp))
        return check_soap_answer(resp.status, resp.body)


class EventTarget:
    """``DigitroDriver.handle_event_request`` feeding a link's CSTA model (no eventing)."""

    name = "events"

    def __init__(self):
        self.link = _fuzz_link()
        self.driver = DigitroDriver("http://127.0.0.1:9/RPC2", name="fuzz")
        self.driver._on_event = self.link.on_event
        self.driver.body_timeout = 5
        self._in_service = False

    async def __call__(self, inp: FuzzInput) -> Outcome:
        if not self._in_service:          # so that events reach the model and the notifier
            self._in_service = True
            for device in DEVICES:
                await self.link.handle("AgentInService", {"device": device, "ipaddress": _PLAUSIBLE["ipaddress"]})
        resp = await self.driver.handle_event_request(_Request(inp))
        return check_event_answer(resp.status, resp.body)


# ===================================================================== runner

@dataclass
class Stats:
    endpoint: str
    mode: str                                   # "in-process" or "http"
    inputs: int = 0
    ok: int = 0
    faults: int = 0
    http_413: int = 0
    crashes: int = 0
    hangs: int = 0
    seconds: float = 0.0
    times: array = field(default_factory=lambda: array("d"))
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    blocks_before: int = 0                      # live heap blocks (sys.getallocatedblocks), in process
    blocks_after: int = 0
    examples: list[tuple[str, bytes]] = field(default_factory=list)     # (why, input) of crashes and hangs
    good_checks: int = 0
    slowest: tuple[float, bytes] = (0.0, b"")

    def add(self, outcome: Outcome, elapsed: float, inp: FuzzInput) -> None:
        self.inputs += 1
        self.times.append(elapsed)
        if elapsed > self.slowest[0]:
            self.slowest = (elapsed, inp.body)
        if outcome.kind == "ok":
            self.ok += 1
        elif outcome.kind == "fault":
            self.faults += 1
        elif outcome.kind == "413":
            self.http_413 += 1
        else:
            self.crashes += 1
            self._keep(f"crash: {outcome.detail}", inp)
        if elapsed > HANG_SECONDS:
            self.hangs += 1
            self._keep(f"hang: {elapsed:.2f} s", inp)

    def _keep(self, why: str, inp: FuzzInput) -> None:
        if len(self.examples) < 20:
            self.examples.append((why, inp.body))

    def summary(self) -> dict[str, Any]:
        times = sorted(self.times) or [0.0]
        return {
            "endpoint": self.endpoint, "mode": self.mode, "inputs": self.inputs, "ok": self.ok,
            "faults": self.faults, "http_413": self.http_413, "crashes": self.crashes, "hangs": self.hangs,
            "median_ms": round(statistics.median(times) * 1000, 3),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 3),
            "max_ms": round(times[-1] * 1000, 3), "seconds": round(self.seconds, 1),
            "rss_before_mib": round(self.rss_before_kib / 1024, 1), "rss_after_mib": round(self.rss_after_kib / 1024, 1),
            "live_blocks_growth": self.blocks_after - self.blocks_before,
            "good_request_checks": self.good_checks,
            "crash_examples": [why for why, _ in self.examples],
            "slowest_input": {"ms": round(self.slowest[0] * 1000, 3), "bytes": len(self.slowest[1]),
                              "head": self.slowest[1][:160].decode("latin-1")},
        }


class CrashFound(AssertionError):
    pass


def _drive(strategy: st.SearchStrategy[FuzzInput], n: int, step: Callable[[FuzzInput], None], *,
           seed: int, deadline: float | None, batch: int, shrink: bool) -> None:
    """Feed ``n`` Hypothesis-generated inputs to ``step``, in batches of fresh Hypothesis runs
    (which bounds Hypothesis' own memory); ``shrink``: let it minimise a failing input."""
    done = 0
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    while done < n and (deadline is None or time.monotonic() < deadline):
        size = min(batch, n - done)
        count = [0]

        @hseed(seed + done)
        @settings(max_examples=size, database=None, deadline=None, phases=phases, derandomize=False,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @given(strategy)
        def run(inp: FuzzInput) -> None:
            if count[0] >= size or (deadline is not None and time.monotonic() > deadline):
                return
            count[0] += 1
            step(inp)

        run()
        done += max(count[0], 1)


def fuzz_in_process(target, strategy: st.SearchStrategy[FuzzInput], n: int, *, seed: int = 0,
                    seconds: float | None = None, batch: int = 5000, raise_on_crash: bool = False,
                    loop: asyncio.AbstractEventLoop | None = None) -> Stats:
    """``n`` inputs through ``target`` (SoapTarget or EventTarget) on ``loop``."""
    own_loop = loop is None
    loop = loop or asyncio.new_event_loop()
    stats = Stats(target.name, "in-process")
    deadline = time.monotonic() + seconds if seconds else None
    errors = ErrorLog()

    def step(inp: FuzzInput) -> None:
        if stats.inputs % 256 == 0:
            faulthandler.dump_traceback_later(120, exit=True)      # a real infinite loop ends the run loudly
        before = len(errors.records)
        # No cyclic GC inside the timed call: Hypothesis' own heap makes full collections take
        # 100-200 ms here, which says nothing about the gateway; they run between inputs instead.
        gc.disable()
        t0 = time.perf_counter()
        try:
            outcome = loop.run_until_complete(target(inp))
        except Exception as e:  # noqa: BLE001 - that is what we are looking for
            outcome = Outcome("crash", f"{type(e).__name__}: {e}")
        finally:
            elapsed = time.perf_counter() - t0
            gc.enable()
        if len(errors.records) > before and outcome.kind != "crash":
            outcome = Outcome("crash", "logged " + errors.records[-1])
        stats.add(outcome, elapsed, inp)
        if raise_on_crash and (outcome.kind == "crash" or elapsed > HANG_SECONDS):
            raise CrashFound(f"{target.name}: {outcome.detail or f'{elapsed:.2f} s'}; input {inp!r:.600}")

    gc.collect()
    stats.rss_before_kib, stats.blocks_before = rss_kib(), sys.getallocatedblocks()
    t = time.monotonic()
    try:
        with errors:
            _drive(strategy, n, step, seed=seed, deadline=deadline, batch=batch, shrink=raise_on_crash)
    finally:
        faulthandler.cancel_dump_traceback_later()
        stats.seconds = time.monotonic() - t
        gc.collect()
        stats.rss_after_kib, stats.blocks_after = rss_kib(), sys.getallocatedblocks()
        if own_loop:
            loop.close()
    return stats


# ----------------------------------------------------------------- over HTTP

class HttpClient:
    """One keep-alive connection to the gateway, reopened when the server closes it."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, inp: FuzzInput) -> tuple[int, bytes]:
        headers = {"Content-Type": inp.content_type} if inp.content_type else {}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", path, body=inp.body, headers=headers)
                resp = self.conn.getresponse()
                body = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, body
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()                    # keep-alive connection closed under us: once more
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def good_request_answers(client: HttpClient, endpoint: str) -> bool:
    if endpoint == "soap":
        status, body = client.post(SOAP_PATH, good_soap())
        return status == 200 and b"<ns:return>0</ns:return>" in body
    status, body = client.post(EVENTS_PATH, good_event())
    return check_event_answer(status, body).kind == "ok"


def fuzz_http(port: int, endpoint: str, strategy: st.SearchStrategy[FuzzInput], n: int, *,
              rss: Callable[[], int], max_body: int, errors: Callable[[], list[str]], seed: int = 1,
              seconds: float | None = None, check_every: int = 100, batch: int = 5000,
              raise_on_crash: bool = False, alive: Callable[[], bool] = lambda: True) -> Stats:
    """``n`` inputs POSTed to a running gateway; after every ``check_every`` a good request must answer."""
    stats = Stats(endpoint, "http")
    path = SOAP_PATH if endpoint == "soap" else EVENTS_PATH
    check = check_soap_answer if endpoint == "soap" else check_event_answer
    client = HttpClient(port)
    deadline = time.monotonic() + seconds if seconds else None

    def step(inp: FuzzInput) -> None:
        seen = len(errors())
        t0 = time.perf_counter()
        try:
            status, body = client.post(path, inp)
            if status == 413 and len(inp.body) > max_body:
                outcome = Outcome("413")
            else:
                outcome = check(status, body)
        except (OSError, http.client.HTTPException) as e:
            client.close()
            outcome = Outcome("crash", f"no answer: {type(e).__name__}: {e}")
        elapsed = time.perf_counter() - t0
        if len(errors()) > seen and outcome.kind != "crash":
            outcome = Outcome("crash", "gateway logged " + errors()[-1])
        stats.add(outcome, elapsed, inp)
        if stats.inputs % check_every == 0:
            stats.good_checks += 1
            if not alive() or not good_request_answers(client, endpoint):
                stats.add(Outcome("crash", "the gateway no longer answers a good request"), 0.0, inp)
        if raise_on_crash and (outcome.kind == "crash" or elapsed > HANG_SECONDS):
            raise CrashFound(f"{endpoint} over HTTP: {outcome.detail or f'{elapsed:.2f} s'}; input {inp!r:.600}")

    stats.rss_before_kib = rss()
    t = time.monotonic()
    try:
        _drive(strategy, n, step, seed=seed, deadline=deadline, batch=batch, shrink=raise_on_crash)
        stats.good_checks += 1
        if not alive() or not good_request_answers(client, endpoint):
            stats.add(Outcome("crash", "the gateway no longer answers a good request"), 0.0, FuzzInput(b"", None))
    finally:
        stats.seconds = time.monotonic() - t
        stats.rss_after_kib = rss()
        client.close()
    return stats


# ---------------------------------------------------------------- bomb timing

def time_bombs_in_process(target, max_body: int, repeats: int = 50,
                          loop: asyncio.AbstractEventLoop | None = None) -> dict[str, dict[str, Any]]:
    """Per bomb: the outcome and the refusal time through the handler (after one warm-up call)."""
    own = loop is None
    loop = loop or asyncio.new_event_loop()
    out = {}
    try:
        with ErrorLog():
            for name, body in bombs(target.name, max_body).items():
                inp = FuzzInput(body, "text/xml; charset=UTF-8")
                outcome = loop.run_until_complete(target(inp))
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    loop.run_until_complete(target(inp))
                    times.append(time.perf_counter() - t0)
                out[name] = {"outcome": outcome.kind, "detail": outcome.detail[:120], "bytes": len(body),
                             "median_ms": round(statistics.median(times) * 1000, 3),
                             "max_ms": round(max(times) * 1000, 3)}
    finally:
        if own:
            loop.close()
    return out


def time_bombs_http(port: int, endpoint: str, max_body: int, repeats: int = 20) -> dict[str, dict[str, Any]]:
    path = SOAP_PATH if endpoint == "soap" else EVENTS_PATH
    check = check_soap_answer if endpoint == "soap" else check_event_answer
    client = HttpClient(port)
    out = {}
    try:
        for name, body in bombs(endpoint, max_body).items():
            inp = FuzzInput(body, "text/xml; charset=UTF-8")
            times, status, outcome = [], 0, Outcome("crash")
            for _ in range(repeats + 1):
                t0 = time.perf_counter()
                status, answer = client.post(path, inp)
                times.append(time.perf_counter() - t0)
                outcome = Outcome("413") if status == 413 else check(status, answer)
            times = times[1:]
            out[name] = {"status": status, "outcome": outcome.kind, "detail": outcome.detail[:120],
                         "median_ms": round(statistics.median(times) * 1000, 3),
                         "max_ms": round(max(times) * 1000, 3)}
    finally:
        client.close()
    return out


def bomb_memory(target, max_body: int, count: int = 200,
                loop: asyncio.AbstractEventLoop | None = None) -> tuple[int, int, list[str]]:
    """Refuse ``count`` bombs in a row (cycling through all of them); RSS before/after in KiB."""
    own = loop is None
    loop = loop or asyncio.new_event_loop()
    kinds: list[str] = []
    try:
        with ErrorLog():
            items = list(bombs(target.name, max_body).values())
            loop.run_until_complete(target(FuzzInput(items[0], None)))     # warm-up
            before = rss_kib()
            for i in range(count):
                kinds.append(loop.run_until_complete(target(FuzzInput(items[i % len(items)], None))).kind)
            after = rss_kib()
    finally:
        if own:
            loop.close()
    return before, after, kinds


# ===================================================================== script

class GatewayProcess:
    """``smartcti-gateway run`` in a child process, with its embedded NGC simulator."""

    def __init__(self, max_body: int, client_timeout: float = 15):
        self.dir = tempfile.TemporaryDirectory(prefix="smartcti-fuzz-")
        self.port, sim_port = _free_port(), _free_port()
        self.max_body = max_body
        cfg = Path(self.dir.name) / "gateway.yaml"
        cfg.write_text(json.dumps({
            "listen": f"127.0.0.1:{self.port}", "max_body": max_body, "client_timeout": client_timeout,
            "log_level": "warning",
            "links": [{"link_id": 1, "pabx": {"url": f"http://127.0.0.1:{sim_port}/RPC2", "timeout": 2}}],
            "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}"},
        }))
        self.log_path = Path(self.dir.name) / "gateway.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "smartcti_gateway.cli", "run", "--config", str(cfg)],
                                     cwd=self.dir.name, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        client = HttpClient(self.port, timeout=2)
        while True:
            try:
                if good_request_answers(client, "soap"):
                    break
            except OSError:
                client.close()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        client.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss(self) -> int:
        return rss_kib(self.proc.pid)

    def errors(self) -> list[str]:
        """ERROR lines and tracebacks the gateway wrote so far."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback")]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self.dir.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("endpoint", "mode", "inputs", "faults", "ok", "413", "crashes", "hangs", "median ms", "max ms",
            "RSS before", "RSS after", "live blocks +", "seconds")
    lines = [head]
    for r in rows:
        lines.append((r["endpoint"], r["mode"], str(r["inputs"]), str(r["faults"]), str(r["ok"]), str(r["http_413"]),
                      str(r["crashes"]), str(r["hangs"]), f"{r['median_ms']:.3f}", f"{r['max_ms']:.1f}",
                      f"{r['rss_before_mib']} MiB", f"{r['rss_after_mib']} MiB",
                      f"{r['live_blocks_growth']}" if r["mode"] == "in-process" else "-", f"{r['seconds']}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def _local_job(endpoint: str, n: int, seed: int, seconds: float | None) -> tuple[dict, list[tuple[str, bytes]]]:
    """One endpoint fuzzed in process (in a worker process of its own when --jobs > 1)."""
    logging.basicConfig(level=logging.CRITICAL)
    target, strategy = (SoapTarget(), soap_inputs()) if endpoint == "soap" else (EventTarget(), event_inputs())
    stats = fuzz_in_process(target, strategy, n, seed=seed, seconds=seconds)
    summary = stats.summary()
    summary["model_calls_left"] = len(target.link.switch.calls)
    return summary, stats.examples


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="inputs per endpoint (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=None, help="time budget per endpoint (default: none)")
    ap.add_argument("--http-share", type=float, default=0.02,
                    help="share of the inputs sent over real HTTP to a gateway process (default %(default)s)")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--max-body", type=int, default=256 * 1024,
                    help="the gateway's max_body (default %(default)s: the 100 KB quadratic bomb fits under it)")
    ap.add_argument("--growth-mib", type=float, default=64.0,
                    help="fail when the gateway process' RSS grows more than this (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="endpoints fuzzed in process at the same time, one process each (default %(default)s)")
    ap.add_argument("--out", default=str(REPO / "bench" / "fuzz-results.json"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    n_http = int(args.n * args.http_share)
    n_local = args.n - n_http
    budget_local = args.seconds * (1 - args.http_share) if args.seconds else None
    budget_http = args.seconds * args.http_share if args.seconds else None
    failures: list[str] = []
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                              "n_per_endpoint": args.n, "seed": args.seed, "max_body": args.max_body}

    examples: list[tuple[str, str, bytes]] = []
    endpoints = ("soap", "events")
    print(f"fuzzing {' and '.join(endpoints)}: {n_local} inputs each in process, {args.jobs} at a time ...",
          flush=True)
    jobs = [(endpoint, n_local, args.seed, budget_local) for endpoint in endpoints]
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            local = list(pool.map(_local_job, *zip(*jobs)))
    else:
        local = [_local_job(*job) for job in jobs]
    for endpoint, (summary, found) in zip(endpoints, local):
        rows.append(summary)
        examples += [(endpoint, why, body) for why, body in found]

    gateway = GatewayProcess(args.max_body)
    try:
        gw_rss_start = gateway.rss()
        for endpoint in endpoints:
            strategy = soap_inputs() if endpoint == "soap" else event_inputs()
            print(f"fuzzing {endpoint}: {n_http} inputs over HTTP to the gateway process ...", flush=True)
            h = fuzz_http(gateway.port, endpoint, strategy, n_http, rss=gateway.rss, max_body=args.max_body,
                          errors=gateway.errors, seed=args.seed + 1, seconds=budget_http, alive=gateway.alive)
            rows.append(h.summary())
            examples += [(endpoint, why, body) for why, body in h.examples]

        print("timing bomb refusals ...", flush=True)
        loop = asyncio.new_event_loop()
        bomb_rows = {}
        for target in (SoapTarget(), EventTarget()):
            local = time_bombs_in_process(target, args.max_body, loop=loop)
            remote = time_bombs_http(gateway.port, target.name, args.max_body)
            before, after, kinds = bomb_memory(target, args.max_body, loop=loop)
            bomb_rows[target.name] = {"in_process": local, "http": remote,
                                      "rss_200_bombs_kib": [before, after], "outcomes_200_bombs": sorted(set(kinds))}
        loop.close()
        gw_rss_end = gateway.rss()
        gw_alive = gateway.alive() and good_request_answers(HttpClient(gateway.port), "soap")
        gw_errors = gateway.errors()
    finally:
        gateway.close()

    result.update(endpoints=rows, bombs=bomb_rows,
                  gateway_process={"rss_start_mib": round(gw_rss_start / 1024, 1),
                                   "rss_end_mib": round(gw_rss_end / 1024, 1), "alive": gw_alive,
                                   "error_lines": gw_errors[:20]})

    print()
    print(_table(rows))
    print()
    print("bomb refusals (in process: through the handler; http: round trip on loopback)")
    print(f"  {'endpoint':8} {'bomb':26} {'answer':8} {'median ms':>10} {'max ms':>8}   {'http':>6} {'median ms':>10}")
    for endpoint, b in bomb_rows.items():
        for name, r in b["in_process"].items():
            hr = b["http"][name]
            print(f"  {endpoint:8} {name:26} {r['outcome']:8} {r['median_ms']:10.3f} {r['max_ms']:8.3f}   "
                  f"{hr['status']:>6} {hr['median_ms']:10.3f}")
        before, after = b["rss_200_bombs_kib"]
        print(f"  {endpoint:8} 200 bombs in a row: RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB "
              f"({(after - before) / 1024:+.1f})")
    print(f"gateway process: RSS {gw_rss_start / 1024:.1f} -> {gw_rss_end / 1024:.1f} MiB, "
          f"{'alive and answering' if gw_alive else 'NOT ANSWERING'}, {len(gw_errors)} ERROR lines")

    for r in rows:
        if r["crashes"] or r["hangs"]:
            failures.append(f"{r['endpoint']} {r['mode']}: {r['crashes']} crashes, {r['hangs']} hangs")
        if r["inputs"] < (n_local if r["mode"] == "in-process" else n_http) and not args.seconds:
            failures.append(f"{r['endpoint']} {r['mode']}: only {r['inputs']} inputs ran")
    for endpoint, b in bomb_rows.items():
        for name, r in b["in_process"].items():
            expected = "fault"
            if r["outcome"] != expected:
                failures.append(f"{endpoint} bomb {name}: answered {r['outcome']} ({r['detail']})")
            if r["max_ms"] > BOMB_LIMIT_MS:
                failures.append(f"{endpoint} bomb {name}: refused in {r['max_ms']} ms > {BOMB_LIMIT_MS} ms")
        for name, r in b["http"].items():
            want = "413" if name == "quadratic-over-max-body" else "fault"
            if r["outcome"] != want:
                failures.append(f"{endpoint} bomb {name} over HTTP: {r['status']} {r['outcome']}, expected {want}")
        before, after = b["rss_200_bombs_kib"]
        if after - before > 20 * 1024:
            failures.append(f"{endpoint}: 200 bombs grew RSS by {(after - before) / 1024:.1f} MiB")
    if gw_rss_end - gw_rss_start > args.growth_mib * 1024:
        failures.append(f"gateway RSS grew {(gw_rss_end - gw_rss_start) / 1024:.1f} MiB > {args.growth_mib} MiB")
    if not gw_alive:
        failures.append("the gateway process does not answer a good request at the end")
    if gw_errors:
        failures.append(f"the gateway logged {len(gw_errors)} ERROR lines, first: {gw_errors[0]}")

    if examples:
        folder = REPO / "bench" / "fuzz-crashes"
        folder.mkdir(parents=True, exist_ok=True)
        for i, (endpoint, why, body) in enumerate(examples):
            (folder / f"{endpoint}-{i}.bin").write_bytes(body)
            print(f"  {endpoint}-{i}.bin: {why}")
        print(f"crashing inputs written to {folder}")
    result["failures"] = failures
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures written to {out}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("OK: no crash, no hang")
    return 0


if __name__ == "__main__":
    sys.exit(main())
