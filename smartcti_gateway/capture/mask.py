"""Secrets out of a capture: passwords in bodies, parsed values, headers and URLs become ``***``.

A name is secret when it contains ``senha``, ``pass`` (password, passwd), ``pwd`` or ``secret``, in
any case. Bodies are masked as bytes, so the same expressions serve UTF-8, ISO-8859-1 and windows-1252
(what ADVPL writes): an XML-RPC struct member ``<name>SENHA_DISPOSITIVO</name><value>…</value>``, an
element ``<password>…</password>`` (any prefix, attributes, CDATA), a ``key=value`` pair of a query or a
form, a ``"password": "…"`` JSON pair, a ``Secret: …`` header-like line (what the raw forwarder sees of
AMI or plain HTTP, Authorization and Cookie lines included) and the password of a URL's user-info.
Masking never raises and never touches anything else.
"""
from __future__ import annotations

import codecs
import re
from typing import Any

from ..urls import redact_url

MASK = "***"
SECRET_NAME = re.compile(r"senha|pass|pwd|secret", re.IGNORECASE)
_SECRET_B = re.compile(rb"senha|pass|pwd|secret", re.IGNORECASE)

# Every repetition below is bounded, so that no body (1 MB of "pass", a "<name>" without its
# "</value>", an unterminated CDATA) makes a pattern slower than linear.
_S = rb"(?:senha|pass|pwd|secret)"
_CDATA_PART = rb"<!\[CDATA\[.{0,1024}?\]\]>"
# XML-RPC struct member: the name in <name>, the value in the <value> that follows (a scalar, typed or not).
_MEMBER = re.compile(
    rb"(<name>\s{0,64})([^<]{1,200}?)(\s{0,64}</name>\s{0,64}<value\s{0,8}>)"
    rb"((?:\s{0,64}<([A-Za-z0-9.:_\-]{1,40})\s{0,8}>(?:[^<]|" + _CDATA_PART + rb")*</\5\s{0,8}>\s{0,64})|[^<]*)"
    rb"(</value\s{0,8}>)", re.DOTALL)
# One element holding text only (CDATA allowed): <p:tag attr="…">text</p:tag>.
_ELEMENT = re.compile(
    rb"<((?:[A-Za-z_][\w.\-]{0,100}:)?([A-Za-z_][\w.\-]{0,100}))(\s[^<>]*)?>((?:[^<]|" + _CDATA_PART +
    rb")*)</\1\s{0,8}>", re.DOTALL)
_TEXT_RUN = re.compile(rb">([^<]*[^<\s][^<]*)<")
_CDATA = re.compile(_CDATA_PART, re.DOTALL)
# scheme://user:password@host
_USERINFO = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]{0,30}://[^/\s:@<>\"'?#]{0,256}):([^@/\s<>\"'?#]{1,256})@")
# key=value in a query string or a form, the key secret (&amp; in XML text ends in ';' too)
_PAIR = re.compile(rb"((?:^|[?&;\s>])[^=&;#\s<>\"'?]{0,64}" + _S + rb"[^=&;#\s<>\"'?]{0,64}=)([^&;#\s<>\"']+)",
                   re.IGNORECASE)
# <e password="value"> (an attribute)
_ATTR = re.compile(rb"(\s[\w:.\-]{0,64}" + _S + rb"[\w:.\-]{0,64}\s{0,8}=\s{0,8})(\"[^\"<>]*\"|'[^'<>]*')",
                   re.IGNORECASE)
# "password": "value"
_JSON = re.compile(rb"(\"[^\"\\]{0,100}" + _S + rb"[^\"\\]{0,100}\"\s{0,8}:\s{0,8})\"(?:[^\"\\]|\\.)*\"",
                   re.IGNORECASE)
# Header-like line: "Secret: value", "Authorization: Basic …", "Cookie: …"
_LINE = re.compile(rb"(?im)^([ \t]{0,16}(?:[\w\-]{0,64}" + _S + rb"[\w\-]{0,64}|authorization|proxy-authorization|"
                   rb"cookie|set-cookie)[ \t]{0,16}:[ \t]{0,16})([^\r\n]+)")


def _mask_text_runs(inner: bytes) -> bytes:
    if b"<" not in inner:
        return b"***" if inner.strip() else inner
    inner = _CDATA.sub(b"<![CDATA[***]]>", inner)
    return _TEXT_RUN.sub(b">***<", inner)


def _member(m: re.Match) -> bytes:
    if not _SECRET_B.search(m.group(2)):
        return m.group(0)
    return m.group(1) + m.group(2) + m.group(3) + _mask_text_runs(m.group(4)) + m.group(6)


def _element(m: re.Match) -> bytes:
    text = m.group(4)
    if not text.strip() or not _SECRET_B.search(m.group(2)):
        return m.group(0)
    head = m.group(0)[:m.start(4) - m.start(0)]
    tail = m.group(0)[m.end(4) - m.start(0):]
    return head + (b"<![CDATA[***]]>" if text.lstrip().startswith(b"<![CDATA[") else b"***") + tail


def _mask_ascii(data: bytes) -> bytes:
    if b"<name>" in data:
        data = _MEMBER.sub(_member, data)
    if b"<" in data and _SECRET_B.search(data):
        data = _ELEMENT.sub(_element, data)
    if b"@" in data:
        data = _USERINFO.sub(rb"\1:***@", data)
    if b"=" in data:
        data = _PAIR.sub(rb"\1***", data)
        if b"<" in data:
            data = _ATTR.sub(lambda m: m.group(1) + m.group(2)[:1] + b"***" + m.group(2)[:1], data)
    if b'"' in data and b":" in data:
        data = _JSON.sub(rb'\1"***"', data)
    if b":" in data:
        data = _LINE.sub(rb"\1***", data)
    return data


def _utf16(data: bytes) -> str | None:
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16"
    if data[:4] == b"<\x00?\x00":
        return "utf-16-le"
    if data[:4] == b"\x00<\x00?":
        return "utf-16-be"
    return None


def mask_bytes(data: bytes) -> bytes:
    """``data`` with every secret value replaced by ``***`` (see the module doc)."""
    if not data:
        return data
    try:
        codec = _utf16(data)
        if codec is not None:
            text = data.decode(codec, "replace")
            masked = _mask_ascii(text.encode("utf-8")).decode("utf-8", "replace")
            return masked.encode(codec)
        return _mask_ascii(data)
    except Exception:  # noqa: BLE001 - a capture must never fail on a body
        return data


def mask_value(value: Any, depth: int = 0) -> Any:
    """A parsed value with every secret-named dict member as ``***`` (recursively)."""
    if depth > 40:
        return value
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and SECRET_NAME.search(k) and v not in ("", None)
                    else mask_value(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(v, depth + 1) for v in value]
    if isinstance(value, str) and "@" in value and "://" in value:
        return mask_url(value)
    return value


def mask_url(url: str) -> str:
    """A URL with its user-info password and secret query values as ``***``."""
    return redact_url(url)


_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def mask_header(name: str, value: str) -> str:
    low = name.lower()
    if low in _SECRET_HEADERS:
        scheme, sep, _ = value.partition(" ")
        if low.endswith("authorization") and sep and scheme.isalpha():
            return f"{scheme} {MASK}"
        return MASK
    if SECRET_NAME.search(name):
        return MASK
    return value
