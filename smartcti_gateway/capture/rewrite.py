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

WSDL: in the answer to a ``GET …?wsdl``, the ``location`` of every ``<…:address>`` element (soap,
soap12, http; any prefix) on the upstream the request went to is moved to the proxy
(``rewrite_wsdl``), so that a client reading the WSDL posts through the proxy too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit
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
# The location attribute of a WSDL address element (any prefix), the attributes before it skipped whole
# so that a "location" inside another attribute's value is never taken; group 1 or 2 is the value.
# No "<" in a value (XML forbids it there): a search never runs past the next tag, so it stays linear.
_ATTRIBUTE = rb"""\s+[A-Za-z_][\w.:\-]*\s*=\s*(?:"[^"<]*"|'[^'<]*')"""
_ADDRESS_LOCATION = re.compile(
    rb"<(?:[A-Za-z_][\w.\-]*:)?address(?:" + _ATTRIBUTE + rb""")*?\s+location\s*=\s*(?:"([^"<]*)"|'([^'<]*)')""")
_XML_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*<")

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
    replacement: str    # the URL the upstream (or, for a WSDL, the client) got instead
    index: int          # the CallbackTable number; -1 for a WSDL address


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


def url_base(url: str) -> str | None:
    """``scheme://host:port`` of ``url``, lower case, the port always written (80/443 by default);
    None when it is no http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port or (443 if scheme == 'https' else 80)}"


def wsdl_query(raw_path: str) -> bool:
    """True when the query of ``raw_path`` asks for a WSDL (``?wsdl``, ``?WSDL``, ``?wsdl=…``, ``?x&wsdl``)."""
    query = raw_path.partition("?")[2].partition("#")[0]
    return any(p.partition("=")[0].lower() == "wsdl" for p in query.split("&"))


def rewrite_wsdl(body: bytes, upstream: str, proxy: str) -> tuple[bytes, list[Rewrite]]:
    """``body`` with every WSDL address location on ``upstream`` moved to ``proxy``.

    ``upstream`` is the ``scheme://host[:port]`` the request was forwarded to (compared as ``url_base``
    does: host in any case, default port or not); ``proxy`` the ``http://host:port[/prefix/n]`` that
    reaches it through the proxy. Only the ``scheme://host:port`` of a matching location changes (its
    user-info, path, query and escapes stay as they came, and so does every other byte); a location on
    another server is left alone. A body that does not start as XML is returned as it is.
    """
    want = url_base(upstream)
    if want is None or b"location" not in body or _XML_START.match(body) is None:
        return body, []
    scheme_end = proxy.index("://") + 3
    done: list[Rewrite] = []
    out: list[bytes] = []
    last = 0
    for m in _ADDRESS_LOCATION.finditer(body):
        group = 1 if m.group(1) is not None else 2
        value = m.group(group)
        split = _SPLIT.match(value)
        if split is None or url_base(xml_unescape(value.decode("latin-1"))) != want:
            continue
        userinfo, at, _ = split.group(2).rpartition(b"@")
        new = (proxy[:scheme_end].encode("latin-1") + (userinfo + b"@" if at else b"") +
               proxy[scheme_end:].encode("latin-1") + split.group(3))
        out.append(body[last:m.start(group)])
        out.append(new)
        last = m.end(group)
        done.append(Rewrite(xml_unescape(value.decode("latin-1")), xml_unescape(new.decode("latin-1")), -1))
    if not done:
        return body, done
    out.append(body[last:])
    return b"".join(out), done
