"""``smartcti-gateway probe-pabx URL``: what an NGC's XML-RPC service answers, and a draft dialect.

Dígitro publishes no EasyCall Gate method list (docs/digitro-xmlrpc.md), so before a site's first
start the probe asks the NGC itself, touching nothing:

* reachability and latency: TCP connect time and the HTTP round trip of ``system.listMethods``
  (min / median / max over ``--count`` samples);
* XML-RPC introspection where the server offers it: ``system.listMethods``, then
  ``system.methodSignature`` and ``system.methodHelp`` for each listed method (at most
  :data:`MAX_METHODS`, each answer at most :data:`MAX_ANSWER` bytes, texts cut at :data:`MAX_TEXT`);
* a **draft dialect**: for each logical method of :data:`~.pabx.digitro.dialect.METHODS`, the listed
  method that matches it best (its current wire name when listed, else Portuguese / English
  keywords), with a confidence and the candidates; written as the YAML a site puts under
  ``pabx.dialect`` (confident matches only; uncertain ones and unknown methods as comments).

It calls only ``system.listMethods``, ``system.methodSignature`` and ``system.methodHelp``, and, when
the server has no introspection, the current dialect's read-only ``version`` method (``cti.status``
needs a listener channel: never called). Every call goes through :meth:`_Client.call`, which refuses
any other name.

Exit codes: 0 introspection read (draft made); 1 something answered, but not with introspection
(XML-RPC without it, HTTP error, HTML, not XML-RPC at all); 2 no answer (bad URL, host not found,
connection refused, TLS failure, nothing within ``--timeout``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import socket
import ssl
import statistics
import sys
import time
import unicodedata
import xmlrpc.client
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import yaml

from . import __version__
from .pabx.digitro.dialect import METHODS, Dialect
from .pabx.digitro.driver import _loads
from .tls import client_context
from .urls import redact_url

__all__ = ["MAX_ANSWER", "MAX_METHODS", "add_probe_parser", "match_methods", "probe", "render_draft",
           "run_probe"]

MAX_ANSWER = 1 << 20      # bytes of one HTTP answer
MAX_METHODS = 500         # listed methods examined (names, signatures, help)
MAX_TEXT = 2000           # characters kept of one help text or signature
MAX_NAME = 200            # a longer "method name" is ignored
CONFIDENT = 0.7           # from this confidence on, a match goes into the draft's methods:
DETAIL_CONCURRENCY = 4    # methodSignature / methodHelp calls in flight

INTROSPECTION = ("system.listMethods", "system.methodSignature", "system.methodHelp")
DRAFT_HEADER = "# Draft pabx.dialect"
NEXT_CAPTURE = ("run `smartcti-gateway capture` beside DigitroCTILink to record the method names it really "
                "uses, then write pabx.dialect from them (docs/migration.md)")
URL_HINT = "the NGC's XML-RPC URL is usually http://HOST:2551/RPC2, URL.Xml-RPC.Server in the old Digitro.properties"

EXIT_OK, EXIT_NOT_XMLRPC, EXIT_UNREACHABLE = 0, 1, 2


# ---------------------------------------------------------------- matching
# Logical method -> (patterns, excluded stems). A pattern is concepts joined by "+", a concept is
# alternative stems joined by "|"; a stem matches a word of the method name that starts with it
# ("stem$": the whole word). A pattern matches when every concept does; its score is its number of
# concepts. A word starting with an excluded stem rules the logical method out.
_ACTIONS = ("atende$ atender$ answer deslig finaliz hangup clear transf gera$ gerar$ disca dial grav record "
            "hold recuper retriev captur pickup estacion park redirec desvi confer pendul login logout logon "
            "logoff deslog monitor regist remov inici start stop encerr set$ altera muda change envi send "
            "make execut")
_WHO = "agent atendente dac$ pa$ operador chamada call ligac dispositivo device ramal grupo group fila queue"
_LISTENER = "retorno|callback|evento|event|listener|canal|channel"

MATCHERS: dict[str, tuple[tuple[str, ...], str]] = {
    "register_listener": ((f"regist+{_LISTENER}", "regist", "subscri", "assina", "callback", "retorno",
                           "listener", "abre|abrir|open+canal|channel"),
                          ("remov unregist desregist cancel unsub desassin encerr exclu delet fecha close paus "
                           "chamada call agent dispositivo device")),
    "unregister_listener": (((f"remov|unregist|desregist|cancel|unsub|desassin|exclu|delet|fecha|close|encerr"
                              f"+{_LISTENER}|assinatura|subscri|regist"), "unregist", "desregist", "unsubscri",
                             "desassin"),
                            "monitor chamada call"),
    "monitor_start": (("monitor+inici|start|begin|add|adicion|ativ", "monitor"),
                      "encerr stop fim$ finaliz remov cancel termin parar desmonit unmonit desativ end$"),
    "monitor_stop": (("monitor+encerr|stop|fim$|finaliz|remov|cancel|termin|parar|desativ|end$", "desmonit",
                      "unmonit", "stopmonitor"), ""),
    "make_call": (("gera|gerar|make|faz|origin+chamada|call|ligac", "disca", "dial", "makecall", "origin",
                   "chamar$", "ligar$"),
                  "deslig consult preditiv confer transf"),
    "answer": (("atend", "answer", "accept", "aceit"), "atendente atendimento attendant pos$"),
    "clear": (("finaliz", "deslig", "hangup", "hang+up$", "clear", "release", "drop",
               "encerr|termin+chamada|call|ligac|conexao|connection"),
              "monitor grav record reconect atendimento evento retorno listener canal channel paus servico"),
    "hold": (("coloca|poe|put+espera|hold", "espera", "hold", "reter$", "retem$"),
             "recuper retriev unhold retir tira$ consult lista list chamadas$ musica music"),
    "retrieve": (("retir|tira$+espera|hold", "recuper", "retriev", "unhold", "retoma", "resume"),
                 "senha password grav record agent"),
    "alternate": (("pendul", "alterna", "swap", "toggle"), ""),
    "consultation": (("consult",),
                     ("estado state status lista list agent grupo group fila queue versao versio dispositivo "
                      "device ramal saldo")),
    "transfer": (("transf",), "diret direct imediat immediat single blind cega step paus"),
    "single_step_transfer": (("transf+diret|direct|single|blind|cega|step", "singlestep"), ""),
    "immediate_transfer": (("transf+imediat|immediat",), ""),
    "conference": (("confer",), ""),
    "forward": (("siga+me$", "sigame", "forward", "desvi", "encaminh"), "fila$ dac$ caixa voicemail postal execut"),
    "start_recording": (("grav|record+inici|start|begin|comec", "grav", "record"),
                        "encerr stop fim$ finaliz parar termin end$ paus consult lista list senha dado data$"),
    "stop_recording": (("grav|record+encerr|stop|fim$|finaliz|parar|termin|end$",), ""),
    "attach_data": (("associ|attach|anex|set|grava|envi|inser|put|atualiz|update+dado|data$|userdata|info",
                     "attach", "userdata", "calldata"), "senha password"),
    "agent_login": (("login", "logon", "logar$", "loga$", "entra|entrar$+dac$|fila|grupo|group|queue"),
                    "deslog logout logoff estado state status senha password"),
    "agent_logout": (("logout", "logoff", "deslog", "log$+out$|off$", "sai$|sair$+dac$|fila|grupo|group|queue"),
                     "estado state status"),
    "agent_ready": (("disponi", "ready", "livre", "despaus", "unpause", "resume+agent|atendente",
                     "fim$|sai$|sair$|retorn|volta|remov+paus"),
                    "not$ nao$ notready indisp unavail estado state status"),
    "agent_not_ready": (("paus", "notready", "not$+ready", "nao$+disponi|pront", "indisponi", "unavail",
                         "intervalo"),
                        "despaus unpause fim$ sai$ sair$ retorn volta remov transf grav record estado state status"),
    "agent_state": (("estado|state|status|situac+agent|atendente|dac$|pa$|operador", "agentstate", "agentstatus"),
                    _ACTIONS),
    "device_calls": (("chamada|call|ligac+dispositivo|device|ramal|extens|terminal", "snapshot"), _ACTIONS),
    "group_calls": (("chamada|call|ligac+grupo|group|fila|queue|dac$",), _ACTIONS),
    "status": (("status", "estado|situac|status+sistema|system|pabx|central|ngc|servidor|server|link", "ping",
                "heartbeat", "keepalive", "saude", "health"), f"{_ACTIONS} {_WHO}"),
    "version": (("versao", "versio"), _ACTIONS),
    "poll_events": (("evento|event+busca|buscar$|le$|ler$|lista|list|get|fetch|poll|pendente|pending|fila|queue",
                     "poll", "getevents", "fetchevents"), "registr regist subscri monitor"),
}
# ``event`` is the method the NGC calls on the gateway: the NGC's own method list cannot show it.
NOT_MATCHED = ("event",)

_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def words(name: str) -> list[str]:
    """``pbx.atenderChamada`` -> ``['pbx', 'atender', 'chamada']``: accents off, camelCase and _ . - split."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return [w.lower() for w in _WORDS.findall(plain)]


def _stem_matches(stem: str, tokens: list[str]) -> bool:
    if stem.endswith("$"):
        return stem[:-1] in tokens
    return any(t.startswith(stem) for t in tokens)


def keyword_score(logical: str, name: str) -> int:
    """How well the method ``name`` matches ``logical`` by keywords: 0 (not at all) or the concepts matched."""
    patterns, excluded = MATCHERS[logical]
    tokens = words(name)
    if any(_stem_matches(s, tokens) for s in excluded.split()):
        return 0
    best = 0
    for pattern in patterns:
        concepts = pattern.split("+")
        if all(any(_stem_matches(s, tokens) for s in c.split("|")) for c in concepts):
            best = max(best, len(concepts))
    return best


@dataclass
class Match:
    """The best listed method for one logical method."""

    logical: str
    current: str                    # its wire name in the current dialect
    wire: str | None = None         # the best listed method, None when nothing matches
    confidence: float = 0.0
    how: str = "none"               # exact | keywords | none
    candidates: list[tuple[str, int]] = field(default_factory=list)   # (method, score), best first
    note: str = ""

    @property
    def confident(self) -> bool:
        return self.wire is not None and self.confidence >= CONFIDENT

    def as_json(self) -> dict[str, Any]:
        return {"wire": self.wire, "current": self.current, "confidence": self.confidence, "how": self.how,
                "confident": self.confident, "note": self.note,
                "candidates": [{"method": m, "score": s} for m, s in self.candidates]}


def match_methods(listed: Iterable[str], methods: dict[str, str] | None = None
                  ) -> tuple[dict[str, Match], list[str]]:
    """Each logical method's best match among ``listed`` (system.* ignored), and the listed methods the
    draft does not mention (unknown): neither a best match nor a candidate of an uncertain one."""
    methods = dict(METHODS if methods is None else methods)
    names = [m for m in dict.fromkeys(listed) if not m.startswith("system.")]
    present = set(names)
    logicals = [x for x in methods if x not in NOT_MATCHED]
    exact = {x for x in logicals if methods[x] and methods[x] in present}
    taken = {methods[x] for x in exact}
    scores = {x: {m: s for m in names if m not in taken and (s := keyword_score(x, m)) > 0}
              for x in logicals if x not in exact}
    out: dict[str, Match] = {}
    for x in logicals:
        match = out[x] = Match(x, methods[x])
        if x in exact:
            match.wire, match.confidence, match.how = methods[x], 1.0, "exact"
            match.candidates = [(methods[x], 0)]
            continue
        cands = sorted(scores[x].items(), key=lambda c: (-c[1], c[0]))
        match.candidates = cands
        if not cands:
            continue

        def elsewhere(m: str, x: str = x) -> tuple[int, str]:
            """The best score of ``m`` for another logical method, and that method."""
            return max(((s[m], o) for o, s in scores.items() if o != x and m in s), default=(0, ""))

        eligible = [c for c in cands if c[1] >= elsewhere(c[0])[0]]
        match.how = "keywords"
        if not eligible:
            match.wire = cands[0][0]
            match.confidence = 0.3
            match.note = f"matches {elsewhere(cands[0][0])[1]} better"
            continue
        wire, score = eligible[0]
        match.wire = wire
        rival, rival_name = elsewhere(wire)
        if any(s == score for m, s in eligible[1:]):
            match.confidence = 0.5
            match.note = "several methods match equally"
        elif rival == score:
            match.confidence = 0.45
            match.note = f"matches {rival_name} as well"
        else:
            match.confidence = (0.9 if score >= 2 else 0.8) - (0.1 if len(cands) > 1 else 0.0)
    mentioned = {m.wire for m in out.values() if m.wire}
    mentioned.update(c for m in out.values() if m.wire and not m.confident for c, _ in m.candidates)
    unknown = [m for m in names if m not in mentioned]
    return out, unknown


# ------------------------------------------------------------------ output
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: Any, limit: int = 120) -> str:
    """Server text fit for one line of a terminal or a YAML comment: no control characters, cut at ``limit``."""
    s = _UNPRINTABLE.sub(" ", str(text))
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= limit else s[:limit - 1] + "…"


def _plain_name(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and not _UNPRINTABLE.search(name)


def _signature_text(sig: Any) -> str:
    if isinstance(sig, list):
        forms = []
        for s in sig[:10]:
            if isinstance(s, list) and s:
                types = [clean(t, 40) for t in s]
                forms.append(f"{types[0]} ({', '.join(types[1:])})")
        return clean("; ".join(forms), MAX_TEXT)
    return clean(sig, MAX_TEXT) if sig not in (None, "") else ""


def render_draft(matches: dict[str, Match], unknown: list[str], details: dict[str, dict[str, str]],
                 url: str, listed: int) -> str:
    """The draft as YAML text shaped like a ``pabx.dialect`` override, with comments."""
    confident = {x: m.wire for x, m in matches.items() if m.confident}
    lines = [
        (f"{DRAFT_HEADER} made by smartcti-gateway probe-pabx {__version__} on "
         f"{datetime.now().astimezone():%Y-%m-%d %H:%M %z}"),
        f"# from the method list of {clean(redact_url(url), 300)} ({listed} methods besides system.*).",
        "# Review it, put it under links[].pabx.dialect in the config, then run smartcti-gateway check-config.",
        "# Only confident matches are set; a logical method left out keeps the current dialect's name.",
    ]
    body = yaml.safe_dump({"methods": confident}, sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=1000)
    lines.extend(body.rstrip("\n").split("\n"))
    uncertain = [m for m in matches.values() if m.wire and not m.confident]
    if uncertain:
        where = "remove the # of the right line" + (" (and the {} after methods:)" if not confident else "")
        lines.append(f"# Uncertain matches, best first: check the methods' help, then {where}:")
        for m in uncertain:
            shown = [m.wire] + [c for c, _ in m.candidates if c != m.wire][:2]
            for n, wire in enumerate(shown):
                entry = yaml.safe_dump({m.logical: wire}, allow_unicode=True, default_flow_style=False,
                                       width=1000).strip()
                why = (f"confidence {m.confidence:.2f}" + (f", {clean(m.note, 80)}" if m.note else "")) if n == 0 \
                    else "another candidate"
                lines.append(f"#  {clean(entry, 300)}  # {why}")
            if len(m.candidates) > len(shown):
                lines.append(f"#    ({len(m.candidates) - len(shown)} more candidates for {m.logical}: see the report)")
    missing = [m for m in matches.values() if not m.wire]
    if missing:
        lines.append("# No listed method matches these (they keep the current name, which this NGC does not list):")
        line = "#  "
        for n, m in enumerate(missing):
            item = f" {m.logical} ({m.current or 'off'})" + ("," if n < len(missing) - 1 else "")
            if len(line) + len(item) > 100 and line != "#  ":
                lines.append(line)
                line = "#  "
            line += item
        lines.append(line)
    lines.append(f"# methods.event ({METHODS['event']}) is the method the NGC calls on the gateway: its method "
                 f"list cannot show it; a capture can.")
    if unknown:
        lines.append("# Listed methods no logical method matched (unknown):")
        for name in unknown:
            d = details.get(name, {})
            extra = "; ".join(f"{k}: {d[k]}" for k in ("signature", "help") if d.get(k))
            lines.append(f"#   {clean(name, 120)}" + (f"  {clean(extra, 160)}" if extra else ""))
    text = "\n".join(lines) + "\n"
    Dialect.with_overrides(yaml.safe_load(text))     # the draft must be what the config accepts
    return text


def _stats(samples: list[float]) -> dict[str, Any] | None:
    if not samples:
        return None
    ms = [round(s * 1000, 3) for s in samples]
    return {"min": min(ms), "median": round(statistics.median(ms), 3), "max": max(ms), "samples": ms}


def _fmt_stats(label: str, st: dict[str, Any] | None, asked: int) -> str:
    if st is None:
        return f"{label}: no sample"
    return (f"{label}: min {st['min']:.1f} ms, median {st['median']:.1f} ms, max {st['max']:.1f} ms "
            f"({len(st['samples'])} of {asked} samples)")


# ------------------------------------------------------------------ HTTP
class _NoAnswer(Exception):
    """Nothing usable came back: exit 2."""


class _NotXmlRpc(Exception):
    """Something answered, but not XML-RPC: exit 1."""


@dataclass
class _Reply:
    status: int
    reason: str
    content_type: str
    body: bytes
    elapsed: float
    location: str = ""


class _Client:
    """XML-RPC calls over one keep-alive session; only read-only names pass."""

    def __init__(self, url: str, timeout: float, ssl_context: ssl.SSLContext | None, allowed: set[str]):
        self.url = url
        self.shown = redact_url(url)
        parts = urlsplit(url)
        self.hostport = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        self.timeout = timeout
        self.allowed = allowed
        self.calls: Counter[str] = Counter()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=DETAIL_CONCURRENCY, ssl=ssl_context or True))

    async def close(self) -> None:
        await self._session.close()

    async def call(self, method: str, *params: Any) -> _Reply:
        if method not in self.allowed:   # the promise of this module: nothing that changes the PABX's state
            raise AssertionError(f"probe-pabx never calls {method}")
        body = xmlrpc.client.dumps(params, method, allow_none=False).encode("utf-8")
        self.calls[method] += 1
        started = time.perf_counter()
        try:
            async with self._session.post(self.url, data=body, allow_redirects=False,
                                          headers={"Content-Type": "text/xml"}) as resp:
                if resp.content_length is not None and resp.content_length > MAX_ANSWER:
                    raise _NotXmlRpc(f"{self.shown} announced a {resp.content_length}-byte answer to {method}, "
                                     f"more than the {MAX_ANSWER >> 20} MB this probe reads")
                data = bytearray()
                async for chunk in resp.content.iter_any():
                    data += chunk
                    if len(data) > MAX_ANSWER:
                        raise _NotXmlRpc(f"{self.shown} sent more than {MAX_ANSWER >> 20} MB in answer to "
                                         f"{method}; the probe stopped reading")
                return _Reply(resp.status, resp.reason or "", resp.headers.get("Content-Type", ""), bytes(data),
                              time.perf_counter() - started, resp.headers.get("Location", ""))
        except TimeoutError:
            raise _NoAnswer(f"{self.hostport} accepted the connection but did not answer {method} within "
                            f"{self.timeout:g} s: the service is stuck or this port is not the NGC's XML-RPC; "
                            f"check the port, or try again with a larger --timeout") from None
        except aiohttp.ClientConnectorCertificateError as e:
            raise _NoAnswer(f"TLS: the certificate of {self.hostport} is not trusted "
                            f"({clean(e.certificate_error, 200)}); if the NGC has its own CA or a self-signed "
                            f"certificate, give that certificate with --ca-file (pabx.ca_file in the config)") from None
        except (aiohttp.ClientConnectorSSLError, aiohttp.ClientSSLError, ssl.SSLError) as e:
            raise _NoAnswer(f"TLS with {self.hostport} failed ({clean(getattr(e, 'os_error', None) or e, 200)}): "
                            f"does it really speak HTTPS? "
                            f"If not, use http:// in the URL") from None
        except aiohttp.ClientConnectorError as e:
            raise _NoAnswer(f"cannot connect to {self.hostport} ({clean(e.os_error.strerror or e, 200)}): "
                            f"check the host and port in the URL and that the NGC is up") from None
        except aiohttp.ServerDisconnectedError:
            raise _NoAnswer(f"{self.hostport} closed the connection without answering {method}: if the NGC "
                            f"speaks HTTPS there, use https:// in the URL") from None
        except aiohttp.ClientResponseError as e:
            raise _NotXmlRpc(f"{self.hostport} answered {method} with something that is not HTTP "
                             f"({clean(e.message, 120)}): if the NGC speaks HTTPS there, use https:// "
                             f"in the URL; else {URL_HINT}") from None
        except aiohttp.ClientPayloadError as e:
            raise _NotXmlRpc(f"the answer of {self.hostport} to {method} was cut short ({clean(e, 120)})") from None
        except aiohttp.ClientError as e:
            raise _NoAnswer(f"{method} to {self.shown} failed: {clean(e, 200)}") from None


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)


def _looks_like_html(reply: _Reply) -> bool:
    head = reply.body[:512].lstrip().lower()
    return "html" in reply.content_type.lower() or head.startswith((b"<!doctype html", b"<html"))


def _html_title(body: bytes) -> str:
    m = _TITLE.search(body[:65536])
    return clean(m.group(1).decode("utf-8", "replace"), 80) if m else ""


@dataclass
class _Answer:
    """One XML-RPC answer: a value, or a fault."""

    value: Any = None
    fault: xmlrpc.client.Fault | None = None


def _xmlrpc_answer(reply: _Reply, method: str, shown: str) -> _Answer:
    """The XML-RPC value (or fault) in ``reply``; raises _NotXmlRpc with what it is instead."""
    looks_xml = reply.body.lstrip()[:200].startswith((b"<?xml", b"<methodResponse"))
    if reply.status != 200 and not looks_xml:
        if reply.status in (301, 302, 303, 307, 308):
            where = f" to {clean(redact_url(reply.location), 200)}" if reply.location else ""
            raise _NotXmlRpc(f"{shown} answered HTTP {reply.status} (moved{where}): use the URL it moved to")
        what = {401: "it asks for credentials: put user:password@ in the URL",
                403: "it refuses this client: check the NGC's allowed addresses (licence / firewall)",
                404: "nothing at this path", 405: "it does not take POST here"}.get(reply.status, "")
        raise _NotXmlRpc(f"{shown} answered HTTP {reply.status} {clean(reply.reason, 60)} to an XML-RPC POST"
                         f"{': ' + what if what else ''}. Check the URL ({URL_HINT}). If it is right, {NEXT_CAPTURE}")
    if _looks_like_html(reply) and not looks_xml:
        title = _html_title(reply.body)
        raise _NotXmlRpc(f"{shown} answered an HTML page{' (' + repr(title) + ')' if title else ''}, not XML-RPC: "
                         f"a web interface, not the NGC's XML-RPC service. Check the URL ({URL_HINT})")
    try:
        (value,), _ = _loads(reply.body)
    except xmlrpc.client.Fault as fault:
        return _Answer(fault=fault)
    except Exception as e:  # noqa: BLE001 - whatever it is, it is not XML-RPC
        ctype = clean(reply.content_type, 60) or "no Content-Type"
        first = clean(reply.body[:60].decode("utf-8", "replace"), 60)
        raise _NotXmlRpc(f"{shown} answered {method} with something that is not XML-RPC ({ctype}, "
                         f"HTTP {reply.status}, {len(reply.body)} bytes, starting {first!r}: {clean(e, 100)}). "
                         f"Check the URL ({URL_HINT})") from None
    return _Answer(value=value)


# ------------------------------------------------------------------ the probe
@dataclass
class Report:
    url: str
    exit_code: int = EXIT_OK
    outcome: str = ""           # introspection | no-introspection | not-xml-rpc | unreachable
    message: str = ""
    tcp: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    count: int = 0
    notes: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    listed_total: int = 0
    details: dict[str, dict[str, str]] = field(default_factory=dict)
    signatures: bool | None = None
    helps: bool | None = None
    matches: dict[str, Match] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    draft_text: str = ""
    version: dict[str, Any] | None = None
    calls: Counter = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "url": redact_url(self.url), "exit_code": self.exit_code, "outcome": self.outcome,
            "message": self.message, "notes": self.notes,
            "latency": {"tcp_connect_ms": _stats(self.tcp), "round_trip_ms": _stats(self.round_trip),
                        "samples_asked": self.count, "round_trip_method": "system.listMethods"},
            "introspection": None if self.outcome != "introspection" else {
                "listed": self.listed_total, "examined": len(self.listed), "signatures": self.signatures,
                "help": self.helps,
                "methods": [{"name": n, **self.details.get(n, {})} for n in self.listed]},
            "matches": {x: m.as_json() for x, m in self.matches.items()},
            "unknown": self.unknown,
            "draft": yaml.safe_load(self.draft_text) if self.draft_text else None,
            "draft_yaml": self.draft_text or None,
            "version": self.version,
            "calls": dict(self.calls),
        }


async def _tcp_samples(host: str, port: int, count: int, timeout: float) -> list[float]:
    """Connect times; raises _NoAnswer when the first connection fails."""
    samples: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            if i:
                break
            raise _NoAnswer(f"no TCP connection to {host}:{port} within {timeout:g} s: the host is down or a "
                            f"firewall drops the packets; check the route and the firewall from this machine "
                            f"(or raise --timeout)") from None
        except socket.gaierror as e:
            raise _NoAnswer(f"host name {host!r} not found ({clean(e.strerror or e, 80)}): check the URL's host "
                            f"name, or use the NGC's IP address") from None
        except OSError as e:
            if i:
                break
            what = "connection refused" if isinstance(e, ConnectionRefusedError) else clean(e.strerror or e, 80)
            hint = ("nothing listens there: check the host and port in the URL (the NGC's XML-RPC usually "
                    "listens on 2551) and that the NGC is up") if isinstance(e, ConnectionRefusedError) else \
                "check the route and the firewall from this machine"
            raise _NoAnswer(f"cannot connect to {host}:{port} ({what}): {hint}") from None
        samples.append(time.perf_counter() - started)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return samples


async def _details(client: _Client, report: Report) -> None:
    """methodSignature and methodHelp of each examined method, stopping a kind at its first failure."""
    todo = [n for n in report.listed if not n.startswith("system.")]
    if not todo:
        return
    supported = {"system.methodSignature": True, "system.methodHelp": True}
    stopped: dict[str, str] = {}
    key = {"system.methodSignature": "signature", "system.methodHelp": "help"}

    async def one(kind: str, name: str) -> None:
        if not supported[kind]:
            return
        try:
            answer = _xmlrpc_answer(await client.call(kind, name), kind, client.shown)
        except (_NoAnswer, _NotXmlRpc) as e:
            supported[kind] = False
            stopped.setdefault(kind, f"{kind} stopped at {clean(name, 80)}: {e}")
            return
        if answer.fault is not None or (kind == "system.methodSignature" and not isinstance(answer.value, list)):
            if name == todo[0]:         # no such call, or "signatures not supported" / "undef" for all
                supported[kind] = False
            return
        text = _signature_text(answer.value) if kind == "system.methodSignature" else clean(answer.value, MAX_TEXT)
        if text:
            report.details.setdefault(name, {})[key[kind]] = text

    for kind in supported:              # the first method alone: does the server offer this call at all?
        await one(kind, todo[0])
    sem = asyncio.Semaphore(DETAIL_CONCURRENCY)

    async def bounded(kind: str, name: str) -> None:
        async with sem:
            await one(kind, name)

    await asyncio.gather(*(bounded(k, n) for n in todo[1:] for k in supported))
    report.signatures = any("signature" in d for d in report.details.values())
    report.helps = any("help" in d for d in report.details.values())
    report.notes.extend(stopped.values())


def _check_url(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _NoAnswer(f"{clean(redact_url(url), 200)} is not a usable URL ({e}); e.g. http://ngc:2551/RPC2") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _NoAnswer(f"{clean(redact_url(url), 200)} is not an http:// or https:// URL with a host; "
                        f"e.g. http://ngc:2551/RPC2")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def probe(url: str, *, timeout: float = 5.0, count: int = 5, ca_file: str = "") -> Report:
    """Probe the NGC at ``url``; never raises for what the network or the server does."""
    report = Report(url, count=count)
    try:
        host, port = _check_url(url)
        report.tcp = await _tcp_samples(host, port, count, timeout)
    except _NoAnswer as e:
        report.exit_code, report.outcome, report.message = EXIT_UNREACHABLE, "unreachable", str(e)
        return report
    version_method = METHODS["version"]
    client = _Client(url, timeout, client_context(ca_file), set(INTROSPECTION) | {version_method})
    try:
        await _probe_xmlrpc(client, report, version_method)
    finally:
        report.calls = client.calls
        await client.close()
    return report


async def _probe_xmlrpc(client: _Client, report: Report, version_method: str) -> None:
    shown = client.shown
    try:
        first = await client.call("system.listMethods")
    except _NoAnswer as e:
        report.exit_code, report.outcome, report.message = EXIT_UNREACHABLE, "unreachable", str(e)
        return
    except _NotXmlRpc as e:
        report.exit_code, report.outcome, report.message = EXIT_NOT_XMLRPC, "not-xml-rpc", str(e)
        return
    report.round_trip.append(first.elapsed)
    for _ in range(report.count - 1):
        try:
            report.round_trip.append((await client.call("system.listMethods")).elapsed)
        except (_NoAnswer, _NotXmlRpc) as e:
            report.notes.append(f"a latency sample failed: {e}")
            break
    try:
        answer = _xmlrpc_answer(first, "system.listMethods", shown)
    except _NotXmlRpc as e:
        report.exit_code, report.outcome, report.message = EXIT_NOT_XMLRPC, "not-xml-rpc", str(e)
        return
    if answer.fault is not None:
        f = answer.fault
        report.exit_code, report.outcome = EXIT_NOT_XMLRPC, "no-introspection"
        report.message = (f"{shown} speaks XML-RPC but offers no introspection (system.listMethods answered "
                          f"Fault {clean(f.faultCode, 20)}: {clean(f.faultString, 160)}), so no draft dialect can "
                          f"be made from it: {NEXT_CAPTURE}")
        await _version(client, report, version_method)
        return
    value = answer.value
    if not isinstance(value, list):
        report.exit_code, report.outcome = EXIT_NOT_XMLRPC, "no-introspection"
        report.message = (f"{shown}: system.listMethods answered a {type(value).__name__}, not a list of method "
                          f"names, so no draft dialect can be made from it: {NEXT_CAPTURE}")
        return
    names = [v for v in value if isinstance(v, str)]
    odd = len(value) - len(names) + sum(1 for n in names if not _plain_name(n))
    names = list(dict.fromkeys(n for n in names if _plain_name(n)))
    if odd:
        report.notes.append(f"{odd} entries of the method list were not plain method names and were ignored")
    report.listed_total = len(names)
    if len(names) > MAX_METHODS:
        report.notes.append(f"{len(names)} methods listed; only the first {MAX_METHODS} were examined")
    report.listed = names[:MAX_METHODS]
    report.outcome = "introspection"
    await _details(client, report)
    report.matches, report.unknown = match_methods(report.listed)
    own = [n for n in report.listed if not n.startswith("system.")]
    report.draft_text = render_draft(report.matches, report.unknown, report.details, report.url, len(own))
    if not own:
        report.notes.append("the NGC lists no method besides system.*: nothing to map")


async def _version(client: _Client, report: Report, method: str) -> None:
    """The current dialect's read-only version query, as the driver sends it (one empty struct)."""
    try:
        answer = _xmlrpc_answer(await client.call(method, {}), method, client.shown)
    except (_NoAnswer, _NotXmlRpc) as e:
        report.version = {"method": method, "error": str(e)}
        return
    if answer.fault is not None:
        report.version = {"method": method, "fault": f"{clean(answer.fault.faultCode, 20)}: "
                                                     f"{clean(answer.fault.faultString, 160)}"}
    else:
        value = answer.value
        shown = {clean(k, 40): clean(v, 120) for k, v in list(value.items())[:10]} if isinstance(value, dict) \
            else clean(value, 200)
        report.version = {"method": method, "answer": shown}


# ------------------------------------------------------------------ text report
def _text_report(r: Report, draft_path: str | None) -> list[str]:
    out = [f"probe-pabx {redact_url(r.url)}"]
    if r.tcp:
        out.append(_fmt_stats("TCP connect", _stats(r.tcp), r.count))
    if r.round_trip:
        out.append(_fmt_stats("HTTP round trip of system.listMethods", _stats(r.round_trip), r.count)
                   + " (the first one includes the connection set-up)")
    if r.outcome == "introspection":
        own = [n for n in r.listed if not n.startswith("system.")]
        yes = {True: "yes", False: "no", None: "-"}
        out.append(f"Introspection: {r.listed_total} methods listed, {len(own)} besides system.*; "
                   f"signatures: {yes[r.signatures]}, help: {yes[r.helps]}")
        out.append("Draft dialect (logical method -> NGC method, confidence):")
        width = max(len(x) for x in r.matches) if r.matches else 10
        wide = min(50, max((len(m.wire) for m in r.matches.values() if m.wire), default=10))
        for x, m in r.matches.items():
            if m.wire is None:
                out.append(f"  {x:<{width}}  -  no listed method matches (keeps {m.current or 'off'})")
                continue
            tag = "" if m.confident else "   UNCERTAIN" + (f" ({m.note})" if m.note else "")
            alts = [c for c, _ in m.candidates if c != m.wire]
            more = f"; also: {', '.join(clean(c, 60) for c in alts[:4])}" if alts and not m.confident else ""
            out.append(f"  {x:<{width}}  {clean(m.wire, 80):<{wide}}  {m.confidence:.2f} {m.how}{tag}{more}")
        if r.unknown:
            out.append(f"Unknown methods (no logical method matched): {', '.join(clean(u, 80) for u in r.unknown)}")
    elif r.version is not None:
        v = r.version
        if "answer" in v:
            out.append(f"{v['method']} (the current dialect's read-only version query) answered: "
                       f"{json.dumps(v['answer'], ensure_ascii=False)}: this NGC knows at least that name of the "
                       f"current dialect")
        elif "fault" in v:
            out.append(f"{v['method']} (the current dialect's read-only version query) answered Fault "
                       f"{v['fault']}: this NGC's vocabulary differs from the current dialect")
        else:
            out.append(f"{v['method']} (the current dialect's read-only version query) failed: {v['error']}")
    for note in r.notes:
        out.append(f"Note: {note}")
    if r.calls:
        called = ", ".join(f"{m} x{n}" for m, n in r.calls.items())
        out.append(f"Called only: {called}; read-only, nothing that changes the PABX's state.")
    if r.outcome == "introspection":
        where = f"written to {draft_path}" if draft_path else "below"
        out.append(f"Next: review the draft ({where}), check the uncertain entries against their help text, put "
                   f"it under links[].pabx.dialect in the config, then run smartcti-gateway check-config.")
    return out


class _Scrub:
    """Removes the URL's password from any text, whatever printed it."""

    def __init__(self, url: str):
        self.secrets: list[str] = []
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            self.secrets = sorted({password, unquote(password)}, key=len, reverse=True)
        self.url, self.shown = url, redact_url(url)

    def __call__(self, text: str) -> str:
        text = text.replace(self.url, self.shown)
        for s in self.secrets:
            text = text.replace(s, "***")
        return text


def _own_draft_or_absent(path: str) -> str | None:
    """Why ``path`` must not be overwritten, or None."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(len(DRAFT_HEADER))
    except OSError as e:
        return f"cannot read {path} ({e.strerror or e})"
    if head != DRAFT_HEADER:
        return f"{path} exists and is not a draft written by probe-pabx: give another --draft file"
    return None


def run_probe(args: argparse.Namespace) -> int:
    """The ``probe-pabx`` command."""
    scrub = _Scrub(args.url)
    out, err = sys.stdout, sys.stderr
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        print("probe-pabx: --timeout must be a positive number of seconds", file=err)
        return EXIT_UNREACHABLE
    if not 1 <= args.count <= 1000:
        print("probe-pabx: --count must be between 1 and 1000", file=err)
        return EXIT_UNREACHABLE
    if args.draft:
        problem = _own_draft_or_absent(args.draft)
        if problem:
            print(f"probe-pabx: {problem}", file=err)
            return EXIT_NOT_XMLRPC
    report = asyncio.run(probe(args.url, timeout=args.timeout, count=args.count, ca_file=args.ca_file or ""))
    written = None
    if args.draft and report.draft_text:
        try:
            tmp = f"{args.draft}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(report.draft_text)
            os.replace(tmp, args.draft)
            written = args.draft
        except OSError as e:
            report.notes.append(f"the draft could not be written to {args.draft} ({e.strerror or e}); it is below")
    elif args.draft:
        report.notes.append(f"no draft written to {args.draft}: there was no method list to make it from")
    if args.json:
        print(scrub(json.dumps(report.as_json(), ensure_ascii=False, indent=2)), file=out)
    else:
        if report.exit_code != EXIT_UNREACHABLE:
            print(scrub("\n".join(_text_report(report, written))), file=out)
        if report.draft_text and not written:
            print(scrub("--- draft pabx.dialect (YAML) ---\n" + report.draft_text.rstrip("\n")), file=out)
    if report.message:
        print(scrub(f"probe-pabx: {report.message}"), file=err)
    return report.exit_code


def add_probe_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``probe-pabx URL [--timeout S] [--count N] [--draft FILE] [--json]`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "probe-pabx",
        help="ask an NGC what it offers (reachability, latency, XML-RPC introspection) and draft pabx.dialect",
        description="Measure the reachability and latency of the NGC's XML-RPC service, read its method list "
                    "where it offers introspection (system.listMethods, system.methodSignature, "
                    "system.methodHelp) and draft the pabx.dialect that maps the gateway's logical methods "
                    "to it. Only read-only introspection is called (and, without introspection, the current "
                    "dialect's version query): nothing that changes the PABX's state. Exit code 0: draft made; "
                    "1: it answered, but without introspection; 2: no answer.")
    p.add_argument("url", metavar="URL", help="the NGC's XML-RPC URL, e.g. http://ngc:2551/RPC2")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds for each connection and each answer (default: %(default)s)")
    p.add_argument("--count", type=int, default=5, metavar="N", help="latency samples (default: %(default)s)")
    p.add_argument("--draft", metavar="FILE", help="write the draft dialect YAML to FILE (default: print it)")
    p.add_argument("--json", action="store_true", help="print a machine-readable report (JSON)")
    p.add_argument("--ca-file", metavar="FILE",
                   help="PEM CA certificate(s) to trust for an https URL, as pabx.ca_file")
    p.set_defaults(func=run_probe)
    return p
