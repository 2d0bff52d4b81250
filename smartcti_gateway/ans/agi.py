"""FastAGI on the wire, without I/O: the environment block in, replies in, commands out as bytes.

Asterisk opens the connection and writes ``key: value`` lines ended by an empty line (the
environment: channel, unique id, caller id, the script's path and its arguments); then the server
sends one command per line and reads one reply for each: ``200 result=<v> [(<data>)] [endpos=<n>]``,
after any number of ``100 result=0 Trying...``; ``510`` (unknown command), ``511`` (the channel is
dead), ``520`` (bad syntax, possibly ``520-`` lines of usage up to ``520 End of proper usage.``), and
between or before replies the bare line ``HANGUP`` when the caller hangs up
(asterisk-ans-dialler.md §2.2-2.3).

Our own rather than panoramisk's: its header reader never ends on an early EOF, it takes an in-band
``HANGUP`` for the reply (the stream is then one line late) and it bounds nothing. The subset an IVR
needs is small enough to own and to test without sockets, with limits on what a peer may send.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

MAX_LINE = 2048          # bytes in one line, environment or reply: far beyond any Asterisk writes
MAX_ENV_LINES = 200      # environment lines: ~25 plus one per dialplan argument
MAX_USAGE_LINES = 200    # lines of a 520 usage text

HANGUP_LINE = "HANGUP"
UNKNOWN = ("unknown", "<unknown>")   # Asterisk's word for a caller id / dnid it does not have


class AgiProtocolError(Exception):
    """What the peer sent is not FastAGI (or is beyond our bounds): the connection must be dropped."""


@dataclass
class AgiEnv:
    """The environment Asterisk sends as a session opens. ``script`` is ``agi_network_script`` without
    its query and leading ``/``; ``query`` its ``?a=b&c=d``; ``args`` the dialplan's ``agi_arg_1..N``;
    ``callerid`` and ``dnid`` are "" when Asterisk says ``unknown``; ``raw`` has every line as sent."""

    request: str = ""
    script: str = ""
    query: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    uniqueid: str = ""
    channel: str = ""
    callerid: str = ""
    calleridname: str = ""
    dnid: str = ""
    context: str = ""
    extension: str = ""
    language: str = ""
    raw: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: dict[str, str]) -> AgiEnv:
        def known(key: str) -> str:
            value = raw.get(key, "")
            return "" if value.lower() in UNKNOWN else value

        request = raw.get("agi_request", "")
        path = raw.get("agi_network_script")
        if path is None:         # no path after the host: what follows it in the request, if anything
            rest = request.partition("://")[2]
            path = rest.partition("/")[2] if "/" in rest else ""
        script, _, query = path.partition("?")
        numbered = []
        for key, value in raw.items():
            if key.startswith("agi_arg_") and key[8:].isdigit():
                numbered.append((int(key[8:]), value))
        return cls(request=request, script=script.lstrip("/"),
                   query=dict(parse_qsl(query, keep_blank_values=True)),
                   args=[v for _, v in sorted(numbered)],
                   uniqueid=raw.get("agi_uniqueid", ""), channel=raw.get("agi_channel", ""),
                   callerid=known("agi_callerid"), calleridname=known("agi_calleridname"),
                   dnid=known("agi_dnid"), context=raw.get("agi_context", ""),
                   extension=raw.get("agi_extension", ""), language=raw.get("agi_language", ""),
                   raw=dict(raw))


def _text(raw: bytes, what: str) -> str:
    if len(raw) > MAX_LINE:
        raise AgiProtocolError(f"{what}: a line longer than {MAX_LINE} bytes")
    try:
        return raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        raise AgiProtocolError(f"{what}: a line that is not UTF-8 ({raw[:40]!r})") from None


class EnvParser:
    """Feed it the environment's lines one by one; it returns the AgiEnv at the empty line, None before."""

    def __init__(self) -> None:
        self.lines: dict[str, str] = {}
        self.count = 0

    def feed(self, raw: bytes) -> AgiEnv | None:
        line = _text(raw, "AGI environment")
        if not line:
            if not self.lines:
                raise AgiProtocolError("AGI environment: empty (a blank line first)")
            return AgiEnv.of(self.lines)
        self.count += 1
        if self.count > MAX_ENV_LINES:
            raise AgiProtocolError(f"AGI environment: more than {MAX_ENV_LINES} lines")
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key or " " in key:
            raise AgiProtocolError(f"AGI environment: not a 'key: value' line ({line[:60]!r})")
        self.lines[key] = value.strip()
        return None


def parse_env(data: bytes) -> AgiEnv:
    """A whole environment block, up to and including its empty line (what follows is ignored)."""
    parser = EnvParser()
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        env = parser.feed(raw)
        if env is not None:
            return env
    raise AgiProtocolError(f"AGI environment: no empty line after {parser.count} line(s)")


@dataclass(frozen=True)
class Reply:
    """One reply. ``code`` 200/100/510/511/520, or 0 for the in-band ``HANGUP`` line; ``result`` the
    text after ``result=``; ``data`` what is in parentheses (``timeout``, a variable's value), or the
    message of an error reply; ``endpos`` the sample offset playback commands report."""

    code: int
    result: str = ""
    data: str = ""
    endpos: int | None = None
    text: str = field(default="", compare=False)    # the line(s) as received, for log lines

    @property
    def is_hangup(self) -> bool:
        return self.code == 0

    @property
    def digit(self) -> str:
        """The key a playback or WAIT FOR DIGIT answers with (result = its ASCII code), "" for none."""
        try:
            value = int(self.result)
        except ValueError:
            return ""
        return chr(value) if 32 < value < 127 else ""


_LINE = re.compile(r"^(\d{3})([ -])(.*)$")
_ENDPOS = re.compile(r"\s*\bendpos=(-?\d+)\s*$")


def parse_reply(raw: bytes | str) -> Reply:
    """One reply line. A ``520-`` line is only the first of a usage text: ReplyReader joins the rest."""
    line = _text(raw, "AGI reply") if isinstance(raw, bytes) else raw.rstrip("\r\n")
    if line.strip() == HANGUP_LINE:
        return Reply(0, text=line)
    m = _LINE.match(line)
    if not m:
        raise AgiProtocolError(f"AGI reply: not a reply line ({line[:60]!r})")
    code, rest = int(m.group(1)), m.group(3).strip()
    if code not in (100, 200, 510, 511, 520):
        raise AgiProtocolError(f"AGI reply: unknown code {code} ({line[:60]!r})")
    if not rest.startswith("result="):
        if code == 200:
            raise AgiProtocolError(f"AGI reply: 200 without result= ({line[:60]!r})")
        return Reply(code, data=rest, text=line)
    result, _, rest = rest[7:].partition(" ")
    endpos = None
    e = _ENDPOS.search(rest)
    if e:
        endpos, rest = int(e.group(1)), rest[:e.start()]
    rest = rest.strip()
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    return Reply(code, result, rest, endpos, line)


class ReplyReader:
    """Feed it reply lines; it returns each complete Reply, None while inside a 520 usage text."""

    def __init__(self) -> None:
        self._usage: list[str] | None = None

    def feed(self, raw: bytes) -> Reply | None:
        if self._usage is not None:
            line = _text(raw, "AGI reply")
            if line.startswith("520 "):
                text, self._usage = "\n".join(self._usage + [line[4:]]), None
                return Reply(520, data=text, text=text)
            self._usage.append(line)
            if len(self._usage) > MAX_USAGE_LINES:
                raise AgiProtocolError(f"AGI reply: a 520 usage text of more than {MAX_USAGE_LINES} lines")
            return None
        line = _text(raw, "AGI reply")
        if line.startswith("520-"):
            self._usage = [line[4:]]
            return None
        return parse_reply(line)


_VERB = re.compile(r"^[A-Za-z]+( [A-Za-z]+)*$")
_FORBIDDEN = ("\r", "\n", "\0")


class Quoted(str):
    """An argument always sent between quotes, even when it needs none (escape digits: ``"1"``, ``""``)."""


def _arg(value: object) -> str:
    text = str(value)
    if any(c in text for c in _FORBIDDEN):
        raise ValueError(f"an AGI argument cannot hold CR, LF or NUL: {text[:40]!r}")
    if isinstance(value, Quoted) or not text or any(c in text for c in ' \t"\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def command(*words: object) -> bytes:
    """One command line: the first word is the command (``"STREAM FILE"`` or ``"STREAM"``, ``"FILE"``),
    sent as is; every other word is one argument, quoted when it holds a blank, a quote or a backslash,
    or is empty, with ``\\`` escapes (what res_agi's parse_args reads). A line break or NUL anywhere is
    refused (ValueError): a caller id or a card number can never smuggle a second command."""
    if not words:
        raise ValueError("an AGI command needs a name")
    verb = str(words[0])
    if not _VERB.match(verb):
        raise ValueError(f"not an AGI command name: {verb[:40]!r}")
    return (" ".join([verb.upper()] + [_arg(w) for w in words[1:]]) + "\n").encode("utf-8")
