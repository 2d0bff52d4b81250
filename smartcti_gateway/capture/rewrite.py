"""Callback URLs pointed at the proxy, by byte substitution in the request body.

XML-RPC: every ``http://`` or ``https://`` string value of a ``methodCall`` (a struct member such as
URL_RETORNO, or a positional parameter; ``<string>…</string>`` or a bare ``<value>…</value>``).
SOAP: the ``ipaddress`` element of an ``AgentInService`` request (Protheus' MV_TKCTIEV).
Only the URL text changes: the bytes around it, whitespace and escapes included, stay as they came.

A URL ``scheme://[user-info@]host:port/path?query`` becomes
``http://[user-info@]<callback host>:<listen port>/<prefix>/<n>/path?query``, where ``n`` numbers the
distinct ``scheme://host:port`` seen on that side (``CallbackTable``); a request arriving at
``/<prefix>/<n>/rest`` is forwarded to that base + ``/rest``. Only URLs seen in a rewritten request
can be reached that way: the proxy is no open relay.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import unescape

_XML_ENTITIES = {"&quot;": '"', "&apos;": "'"}
_CHARREF = re.compile(r"&#(x[0-9a-fA-F]{1,6}|[0-9]{1,7});")

# An XML-RPC string value holding a URL (leading/trailing blanks kept outside the URL).
_XMLRPC_URL = re.compile(rb"<(string|value)>(\s*)((?i:https?)://[^<\s]+)(\s*)</\1>")
_METHOD_CALL = re.compile(rb"<methodCall[\s>]")
# The AgentInService wrapper and its ipaddress element (any prefix, any case).
_AGENT_IN_SERVICE = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?agentinservice[\s>/]", re.IGNORECASE)
_IPADDRESS = re.compile(
    rb"<((?:[A-Za-z_][\w.\-]*:)?ipaddress)(\s[^<>]*)?>(\s*)((?i:https?)://[^<\s]+)(\s*)</\1\s*>",
    re.IGNORECASE)
_SPLIT = re.compile(rb"(?i)(https?)://([^/?#]*)(.*)", re.DOTALL)

MAX_TARGETS = 64


def xml_unescape(text: str) -> str:
    text = unescape(text, _XML_ENTITIES)
    if "&#" in text:
        def ref(m: re.Match) -> str:
            code = m.group(1)
            try:
                return chr(int(code[1:], 16) if code[:1] == "x" else int(code))
            except (ValueError, OverflowError):
                return m.group(0)
        text = _CHARREF.sub(ref, text)
    return text


@dataclass(frozen=True)
class Rewrite:
    original: str       # the URL as the peer meant it (XML-unescaped)
    replacement: str    # the URL the upstream got instead
    index: int


class CallbackTable:
    """The original bases (``scheme://host:port``) reachable at ``/<prefix>/<n>/…`` on one listener."""

    def __init__(self, prefix: str, max_targets: int = MAX_TARGETS):
        self.prefix = prefix            # "_cb" or "_ev"
        self.bases: list[str] = []
        self._index: dict[str, int] = {}
        self.max_targets = max_targets
        self.refused = 0
        self.first: dict[int, Rewrite] = {}   # the first rewrite of each base, for the summary

    def index_of(self, base: str) -> int | None:
        n = self._index.get(base)
        if n is None:
            if len(self.bases) >= self.max_targets:
                self.refused += 1
                return None
            n = self._index[base] = len(self.bases)
            self.bases.append(base)
        return n

    def target(self, raw_path: str) -> str | None:
        """The original URL of a request at ``/<prefix>/<n>/rest?query``; None when not one of ours."""
        head = f"/{self.prefix}/"
        if not raw_path.startswith(head):
            return None
        number, slash, rest = raw_path[len(head):].partition("/")
        query = ""
        if not slash:
            number, q, query = number.partition("?")
            rest = "?" + query if q else ""
        else:
            rest = "/" + rest
        if not number.isdigit() or len(number) > 6:
            return None
        n = int(number)
        if n >= len(self.bases):
            return None
        if not rest.startswith("/"):
            rest = "/" + rest
        return self.bases[n] + rest


def _rewrite_url(url: bytes, table: CallbackTable, callback: bytes) -> tuple[bytes, Rewrite] | None:
    m = _SPLIT.match(url)
    if m is None:
        return None
    scheme, authority, rest = m.group(1).lower(), m.group(2), m.group(3)
    userinfo, at, hostport = authority.rpartition(b"@")
    if not hostport:
        return None
    base = xml_unescape((scheme + b"://" + hostport).decode("latin-1")).lower()
    n = table.index_of(base)
    if n is None:
        return None
    if not rest.startswith(b"/"):
        rest = b"/" + rest
    new = b"http://" + (userinfo + b"@" if at else b"") + callback + b"/" + table.prefix.encode() + \
        b"/%d" % n + rest
    rewrite = Rewrite(xml_unescape(url.decode("latin-1")), xml_unescape(new.decode("latin-1")), n)
    table.first.setdefault(n, rewrite)
    return new, rewrite


def _substitute(body: bytes, pattern: re.Pattern, url_group: int, table: CallbackTable,
                callback: bytes) -> tuple[bytes, list[Rewrite]]:
    done: list[Rewrite] = []
    out: list[bytes] = []
    last = 0
    for m in pattern.finditer(body):
        result = _rewrite_url(m.group(url_group), table, callback)
        if result is None:
            continue
        new, rewrite = result
        out.append(body[last:m.start(url_group)])
        out.append(new)
        last = m.end(url_group)
        done.append(rewrite)
    if not done:
        return body, done
    out.append(body[last:])
    return b"".join(out), done


def rewrite_xmlrpc(body: bytes, table: CallbackTable, callback: str) -> tuple[bytes, list[Rewrite]]:
    """``body`` with every URL string value of a methodCall pointed at ``callback`` (host:port)."""
    if b"://" not in body or _METHOD_CALL.search(body) is None:
        return body, []
    return _substitute(body, _XMLRPC_URL, 3, table, callback.encode("latin-1"))


def rewrite_soap(body: bytes, table: CallbackTable, callback: str) -> tuple[bytes, list[Rewrite]]:
    """``body`` with the ipaddress URL of an AgentInService request pointed at ``callback``."""
    if b"://" not in body or _AGENT_IN_SERVICE.search(body) is None:
        return body, []
    return _substitute(body, _IPADDRESS, 4, table, callback.encode("latin-1"))
