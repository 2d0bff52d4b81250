"""Migration from an old DigitroCTILink install: ``smartcti-gateway import-properties DIR``.

DigitroCTILink (Java 1.5, Tomcat 4.1, Axis) kept its settings in Java ``.properties``
files, one Tomcat web application per link:

* ``Digitro.properties`` — ``URL.Xml-RPC.Server``: the NGC's XML-RPC URL;
* ``DigitroCTILink.properties`` — ``Microsiga.LinkID`` (K4_LINKID), ``File.Log`` (Y or N: the
  switch of DigitroCTILink's per-extension file log, which it wrote in its own ``Log`` folder),
  ``EventingServer.Port`` (where the NGC posted its events), ``WSDL.SmartCTIWSCommand`` (the
  command service's WSDL URL: port and path of K4_CMD_URL);
* ``SmartCTIWSCommand<N>.properties`` or ``SmartCTIWSCommands<N>.properties`` (N = 2, 3, …, the
  TOTVS course spells it with an s) — one more link each, with the same keys; a key missing
  there is inherited from the two files above.

:func:`import_properties` turns them into the gateway's YAML config (text with comments,
accepted by :func:`smartcti_gateway.config.parse`); :func:`parse_properties` reads one
file with the semantics of ``java.util.Properties.load``. Secrets (keys containing
senha, password, pass, pwd or secret) are never copied nor printed.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

__all__ = [
    "MigrationError",
    "add_import_properties_parser",
    "import_properties",
    "main",
    "parse_properties",
    "run_import_properties",
]

DEFAULT_COMMAND_PATH = "/axis2/services/SmartCTIWSCommand"
DEFAULT_PORT = 8080
MAX_DEPTH = 4                       # directory levels searched below DIR

KEY_LINK_ID = "Microsiga.LinkID"
KEY_PABX_URL = "URL.Xml-RPC.Server"
KEY_WSDL = "WSDL.SmartCTIWSCommand"
KEY_LOG_DIR = "File.Log"
KEY_EVENT_PORT = "EventingServer.Port"
KNOWN_KEYS = (KEY_LINK_ID, KEY_PABX_URL, KEY_WSDL, KEY_LOG_DIR, KEY_EVENT_PORT)

# Main files, in the order they are merged (a key of a later file wins).
MAIN_FILES = ("digitro.properties", "smartctiwscommand.properties", "smartctiwscommands.properties",
              "digitroctilink.properties")
_EXTRA_RE = re.compile(r"^SmartCTIWSCommands?(\d+)\.properties$", re.IGNORECASE)
# File.Log: the switch of DigitroCTILink's file log ("Para habilitar, indique Y")
_YES = frozenset({"y", "yes", "s", "sim", "true", "1", "on"})
_NO = frozenset({"", "n", "no", "não", "nao", "false", "0", "off"})
_SECRET_RE = re.compile(r"senha|password|pass|pwd|secret", re.IGNORECASE)
_ENDPOINT_SUFFIX = ".SmartCTIWSCommandHttpSoap11Endpoint"


class MigrationError(Exception):
    """A problem with the old install: the message names the file, the key and what to do."""


# --------------------------------------------------------------------------- .properties


class PropertiesSyntaxError(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class _Entry:
    key: str
    value: str
    raw: str            # the value as written, escapes not yet processed
    line: int


_WS = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(s: str, line: int) -> str:
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        i += 1
        if c != "\\" or i >= n:
            if c != "\\":
                out.append(c)
            continue
        c = s[i]
        i += 1
        if c == "u":
            digits = s[i:i + 4]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesSyntaxError(line, f"malformed \\uXXXX escape: \\u{digits}")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_ESCAPES.get(c, c))
    return "".join(out)


def _trailing_backslashes(s: str) -> int:
    return len(s) - len(s.rstrip("\\"))


def _entries(text: str) -> list[_Entry]:
    """The key/value pairs of a .properties text, as ``java.util.Properties.load`` reads them."""
    naturals = re.split(r"\r\n|\r|\n", text)
    entries: list[_Entry] = []
    i = 0
    while i < len(naturals):
        first = i + 1
        segment = naturals[i].lstrip(_WS)
        i += 1
        if not segment or segment[0] in "#!":
            continue                                # blank or comment line (never continued)
        logical = ""
        while True:
            if _trailing_backslashes(segment) % 2 == 1:     # odd: the line goes on
                logical += segment[:-1]
                if i >= len(naturals):
                    break
                segment = naturals[i].lstrip(_WS)
                i += 1
                continue
            logical += segment
            break
        if not logical:
            continue
        # The key ends at the first unescaped '=', ':' or white space.
        k, n, escaped, has_sep = 0, len(logical), False, False
        value_start = n
        while k < n:
            c = logical[k]
            if not escaped and c in "=:":
                value_start, has_sep = k + 1, True
                break
            if not escaped and c in _WS:
                value_start = k + 1
                break
            escaped = (not escaped) if c == "\\" else False
            k += 1
        while value_start < n:
            c = logical[value_start]
            if c not in _WS:
                if not has_sep and c in "=:":
                    has_sep = True
                else:
                    break
            value_start += 1
        raw = logical[value_start:]
        entries.append(_Entry(_unescape(logical[:k], first), _unescape(raw, first), raw, first))
    return entries


def parse_properties(text: str) -> dict[str, str]:
    """Parse the text of a Java ``.properties`` file with ``Properties.load`` semantics.

    ``key=value``, ``key: value`` and ``key value``; ``#`` and ``!`` comment lines; a line
    ending with an odd number of backslashes goes on in the next one (whose leading blanks
    are dropped); ``\\uXXXX``, ``\\t``, ``\\n``, ``\\r``, ``\\f`` escapes, and ``\\`` before
    any other character stands for that character (``\\:``, ``\\=``, ``\\\\``). The last
    occurrence of a key wins. A malformed ``\\uXXXX`` raises ``ValueError`` naming the line.
    """
    return {e.key: e.value for e in _entries(text)}


# --------------------------------------------------------------------------- files


@dataclass
class _PropFile:
    path: Path
    rel: str                                    # relative to DIR, with '/'
    entries: dict[str, _Entry]
    encoding: str


@dataclass
class _Value:
    value: str
    raw: str
    file: _PropFile
    line: int

    @property
    def where(self) -> str:
        return f"{self.file.rel}:{self.line}"


@dataclass
class _Link:
    link_id: int
    source: str                                 # file(s) the link comes from
    values: dict[str, _Value]
    own: _PropFile | None                       # the extra file, None for the main link
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    host: str = ""                              # of WSDL.SmartCTIWSCommand
    port: int = DEFAULT_PORT
    command_path: str = DEFAULT_COMMAND_PATH
    old_cmd_url: str = ""
    pabx_url: str = ""
    log_on: bool | None = None                  # File.Log: Y (True), N (False), absent (None)
    log_dir: str = ""                           # File.Log held a folder instead of Y/N
    path_changed: bool = False
    conflict_with: int = 0
    conflict_path: str = ""


def _read(path: Path, rel: str) -> _PropFile:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MigrationError(f"{path}: cannot read this file ({e.strerror or e}). Check that it exists and that "
                             f"this user may read it (copy the old install's folder somewhere readable), "
                             f"then run import-properties again.") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # Java 1.5 reads ISO-8859-1; a file re-saved as UTF-8 by a modern editor is read as UTF-8.
    encoding = "ISO-8859-1"
    if any(b >= 0x80 for b in data):
        try:
            text = data.decode("utf-8")
            encoding = "UTF-8"
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    else:
        text = data.decode("latin-1")
    try:
        entries = _entries(text)
    except PropertiesSyntaxError as e:
        raise MigrationError(f"{path}:{e.line}: {e.args[0].split(': ', 1)[1]}. Java would refuse this file too: "
                             f"write the character itself or a complete \\u followed by 4 hex digits.") from None
    return _PropFile(path, rel, {e.key: e for e in entries}, encoding)


def _walk(root: Path) -> list[tuple[int, Path]]:
    """Every ``*.properties`` file under ``root``, at most MAX_DEPTH directory levels below it."""
    found: list[tuple[int, Path]] = []
    for here, dirs, files in os.walk(root, onerror=None, followlinks=False):
        depth = len(Path(here).relative_to(root).parts)
        if depth >= MAX_DEPTH:
            dirs[:] = []
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".properties"):
                found.append((depth, Path(here) / name))
    return found


# --------------------------------------------------------------------------- values


def _is_secret(key: str) -> bool:
    return bool(_SECRET_RE.search(key))


def _printable(s: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)


def _q(value: str) -> str:
    """A YAML scalar for ``value``: plain when that reads back as the same string, else double-quoted."""
    if re.fullmatch(r"[A-Za-z0-9_./:@%+~\-\[\]]+", value) and not value.startswith(("[", "@", "%")):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _has_scheme(url: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", url))


def _is_local(host: str) -> bool:
    if host.lower() in ("", "localhost", "localhost.localdomain"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _pabx_url(v: _Value, notes: list[str]) -> str:
    url = v.value.strip()
    fix = f"Write the NGC's XML-RPC address there, e.g. {KEY_PABX_URL}=http://10.0.0.5:2551/RPC2"
    if not url:
        raise MigrationError(f"{v.where}: {KEY_PABX_URL} is empty. {fix}")
    if not _has_scheme(url):
        url = "http://" + url.lstrip("/")
        notes.append(f"{KEY_PABX_URL} has no scheme: http:// added")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MigrationError(f"{v.where}: {KEY_PABX_URL} = {v.value!r} is not a URL. {fix}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise MigrationError(f"{v.where}: {KEY_PABX_URL} = {v.value!r} is not an http:// URL. {fix}")
    if parts.path in ("", "/"):
        url = url.split("?", 1)[0].split("#", 1)[0].rstrip("/") + "/RPC2"
        if parts.query:
            url += "?" + parts.query
        notes.append(f"{KEY_PABX_URL} has no path: /RPC2 added")
    if port is None:
        notes.append(f"{KEY_PABX_URL} has no port, so port {443 if parts.scheme.lower() == 'https' else 80} "
                     f"(as for the old link); the NGC's XML-RPC (EasyCall Gate) usually listens on 2551 - check")
    return url


def _wsdl(link: _Link, v: _Value) -> None:
    url = v.value.strip()
    fix = (f"Write the URL of the old command service there, e.g. "
           f"{KEY_WSDL}=http://server:8080/axis2/services/SmartCTIWSCommand?wsdl, or remove the line to use "
           f"port {DEFAULT_PORT} and {DEFAULT_COMMAND_PATH}")
    if not url:
        raise MigrationError(f"{v.where}: {KEY_WSDL} is empty. {fix}")
    if not _has_scheme(url):
        url = "http://" + url.lstrip("/")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MigrationError(f"{v.where}: {KEY_WSDL} = {v.value!r} is not a URL (bad port?). {fix}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise MigrationError(f"{v.where}: {KEY_WSDL} = {v.value!r} is not an http:// URL. {fix}")
    link.host = parts.hostname
    link.port = port if port is not None else (443 if scheme == "https" else 80)
    old_path = parts.path.rstrip("/")
    link.old_cmd_url = f"{scheme}://{parts.netloc}{old_path}"
    path = old_path
    if path.endswith(_ENDPOINT_SUFFIX):
        path = path[: -len(_ENDPOINT_SUFFIX)]
        link.old_cmd_url = f"{scheme}://{parts.netloc}{path}"
        link.notes.append(f"{KEY_WSDL} names the SOAP endpoint; its base URL is used")
    if path.lower().endswith(".jws"):
        path = path[:-4]
        link.notes.append(f"Axis 1 '.jws' service: command_path is the path without '.jws'; the gateway also "
                          f"serves {path}.jws (and {path}.jws{_ENDPOINT_SUFFIX}/), so the old URL keeps working")
    if not path:
        path = DEFAULT_COMMAND_PATH
        link.notes.append(f"{KEY_WSDL} has no path: the default {DEFAULT_COMMAND_PATH} is used")
    link.command_path = path
    if scheme == "https":
        link.notes.append("the old service used https://: the gateway serves plain http:// on this port - put a "
                          "TLS proxy in front of it or change K4_CMD_URL to http://")


def _file_log(v: _Value, notes: list[str]) -> tuple[bool, str]:
    """``File.Log``: (per-extension logs on?, the folder when the value is one rather than Y/N)."""
    value = v.value.strip()
    if value.lower() in _YES:
        return True, ""
    if value.lower() in _NO:
        return False, ""
    notes.append(f"{KEY_LOG_DIR} = {_printable(value)!r} ({v.where}) is neither Y nor N, the values of DigitroCTILink's "
                 f"log switch: taken as the folder of the per-extension logs, which are switched on")
    return True, _log_dir(v, notes)


def _log_dir(v: _Value, notes: list[str]) -> str:
    value, raw = v.value.strip(), v.raw.strip()
    if "\\" in raw and "\\\\" not in raw:
        # Single backslashes, as in C:\DigitroCTILink\logs: Java dropped them (C:DigitroCTILinklogs),
        # but the path as written is what the administrator meant.
        intended = re.sub(r"\\([:=#! ])", r"\1", raw)
        if intended != value:
            notes.append(f"{KEY_LOG_DIR} is written with single backslashes ({_printable(raw)}), which Java read as "
                         f"{_printable(value)!r}: the path as written is used")
            value = intended
    if "\\" in value:
        value = value.replace("\\", "/")
        notes.append(f"{KEY_LOG_DIR}: backslashes turned into '/' (Python accepts both on Windows)")
    return value


# --------------------------------------------------------------------------- import


def _main_dir_key(item: tuple[Path, list[tuple[int, Path]]]) -> tuple:
    folder, files = item
    core = any(p.name.lower() != "smartctiwscommand.properties" for _, p in files)
    return (not core, min(d for d, _ in files), str(folder).lower())


def import_properties(dir: Path, *, now: datetime | None = None, warnings: list[str] | None = None) -> str:
    """The YAML config equivalent to the DigitroCTILink install in ``dir`` (text with comments).

    Raises :class:`MigrationError` with a message naming the file, the key and what to do. What the
    administrator must hear at once (a file that looks like a link and is not read) is also appended
    to ``warnings``.
    """
    root = Path(dir)
    if not root.exists():
        raise MigrationError(f"{root}: no such folder. Give the folder of the old DigitroCTILink install (the one "
                             f"with Digitro.properties and DigitroCTILink.properties, or the Tomcat folder above it).")
    if not root.is_dir():
        raise MigrationError(f"{root}: not a folder. Give the folder that holds Digitro.properties and "
                             f"DigitroCTILink.properties, not a file.")
    try:
        found = _walk(root)
    except OSError as e:
        raise MigrationError(f"{root}: cannot list this folder ({e.strerror or e}).") from None

    def rel(p: Path) -> str:
        return p.relative_to(root).as_posix()

    mains: dict[Path, list[tuple[int, Path]]] = {}
    extras: list[tuple[int, str, Path]] = []
    others: list[Path] = []
    for depth, p in found:
        name = p.name.lower()
        if name in MAIN_FILES:
            mains.setdefault(p.parent, []).append((depth, p))
        elif m := _EXTRA_RE.match(p.name):
            extras.append((int(m.group(1)), rel(p).lower(), p))
        else:
            others.append(p)
    if not mains and not extras:
        raise MigrationError(
            f"{root}: no Digitro.properties, DigitroCTILink.properties or SmartCTIWSCommand<N>.properties here nor "
            f"in its subfolders (up to {MAX_DEPTH} levels). Give the folder of the old install, e.g. "
            f"C:\\DigitroCTILink or Tomcat's webapps\\DigitroCTILink\\WEB-INF\\classes.")

    # The main files: those of the shallowest folder (DIR itself first); other copies are only listed.
    ignored: list[str] = []
    main_files: list[_PropFile] = []
    if mains:
        ordered = sorted(mains.items(), key=_main_dir_key)
        chosen = ordered[0][1]
        chosen.sort(key=lambda dp: MAIN_FILES.index(dp[1].name.lower()))
        main_files = [_read(p, rel(p)) for _, p in chosen]
        ignored = [rel(p) for _, files in ordered[1:] for _, p in sorted(files)]
    extras.sort(key=lambda e: (e[0], e[1]))
    extra_files = [_read(p, rel(p)) for _, _, p in extras]

    # Merge the main files.
    merged: dict[str, _Value] = {}
    header_notes: list[str] = []
    for f in main_files:
        for key in KNOWN_KEYS:
            e = f.entries.get(key)
            if e is None:
                continue
            if key in merged and merged[key].value != e.value:
                header_notes.append(f"{key} is set in {merged[key].where} and in {f.rel}:{e.line}: the latter is used")
            merged[key] = _Value(e.value, e.raw, f, e.line)

    links: list[_Link] = []
    if main_files:
        if KEY_LINK_ID not in merged:
            names = " and ".join(f.rel for f in main_files)
            raise MigrationError(f"{names}: {KEY_LINK_ID} is missing. Add the line {KEY_LINK_ID}=<K4_LINKID> to "
                                 f"DigitroCTILink.properties, with the K4_LINKID of this link's SK4 row in Protheus "
                                 f"(routine TMKXMID).")
        link = _Link(0, " + ".join(f.rel for f in main_files), dict(merged), None)
        for f in main_files:
            link.unknown += _unknown_lines(f)
        links.append(link)
    for f in extra_files:
        values = dict(merged)
        inherited = [k for k in KNOWN_KEYS if k in merged and k not in f.entries]
        for key in KNOWN_KEYS:
            e = f.entries.get(key)
            if e is not None:
                values[key] = _Value(e.value, e.raw, f, e.line)
        if KEY_LINK_ID not in values:
            raise MigrationError(f"{f.rel}: {KEY_LINK_ID} is missing (and there is no DigitroCTILink.properties to "
                                 f"inherit it from). Add {KEY_LINK_ID}=<K4_LINKID> with the K4_LINKID of this link's "
                                 f"SK4 row in Protheus.")
        link = _Link(0, f.rel, values, f)
        if inherited:
            link.notes.append(f"inherited from the main files: {', '.join(inherited)}")
        link.unknown += _unknown_lines(f)
        links.append(link)

    # Link ids.
    seen: dict[int, _Link] = {}
    for link in links:
        v = link.values[KEY_LINK_ID]
        text = v.value.strip()
        if not re.fullmatch(r"[0-9]+", text) or int(text) <= 0:
            raise MigrationError(f"{v.where}: {KEY_LINK_ID} = {_printable(v.value)!r} is not a positive integer. "
                                 f"Write the K4_LINKID of this link's SK4 row in Protheus (a number such as 1), "
                                 f"then run import-properties again.")
        link.link_id = int(text)
        if link.link_id in seen:
            a, b = seen[link.link_id], link
            why = ""
            if b.own is not None and v.file is not b.own:
                why = f" ({b.own.rel} has no {KEY_LINK_ID} and inherits it from {v.file.rel})"
            raise MigrationError(
                f"{a.source} and {b.source}: both are LinkID {link.link_id}{why}. Each link needs its own "
                f"{KEY_LINK_ID} (the K4_LINKID of its SK4 row): fix one of them, or remove the file that is a "
                f"leftover copy, then run import-properties again.")
        seen[link.link_id] = link

    # Everything else, per link.
    used: dict[tuple[int, str], int] = {}
    for link in links:
        vals = link.values
        if KEY_PABX_URL not in vals:
            where = link.own.rel if link.own else " and ".join(f.rel for f in main_files)
            raise MigrationError(f"{where}: {KEY_PABX_URL} is missing (the NGC's XML-RPC URL). Add "
                                 f"{KEY_PABX_URL}=http://<NGC address>:2551/RPC2 to Digitro.properties.")
        link.pabx_url = _pabx_url(vals[KEY_PABX_URL], _notes_for(link, vals[KEY_PABX_URL]))
        if KEY_WSDL in vals:
            _wsdl(link, vals[KEY_WSDL])
        else:
            link.notes.append(f"{KEY_WSDL} is not set: port {DEFAULT_PORT} and {DEFAULT_COMMAND_PATH} are used - "
                              f"make them match the K4_CMD_URL of this link's SK4 row")
        if KEY_LOG_DIR in vals:
            link.log_on, link.log_dir = _file_log(vals[KEY_LOG_DIR], _notes_for(link, vals[KEY_LOG_DIR]))
        if (link.port, link.command_path) in used:
            base = link.command_path
            link.conflict_with, link.conflict_path = used[(link.port, base)], base
            link.command_path = f"/link{link.link_id}{base}"
            n = 2
            while (link.port, link.command_path) in used:
                link.command_path = f"/link{link.link_id}-{n}{base}"
                n += 1
            link.path_changed = True
            link.notes.append(f"another link already serves {base} on port {link.port} (the same "
                              f"{KEY_WSDL}): this link gets command_path {link.command_path} instead, so its "
                              f"K4_CMD_URL CHANGES")
        used[(link.port, link.command_path)] = link.link_id

    if warnings is not None:
        warnings += _unread_links(root, [root / r for r in ignored] + others)
    return _render(root, links, main_files, extra_files, ignored, others, header_notes, now)


def _unread_links(root: Path, paths: list[Path]) -> list[str]:
    """Files not read that hold a link's keys: a link the administrator would lose without noticing."""
    out = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        try:
            entries = _read(path, rel).entries
        except MigrationError:
            continue
        keys = [k for k in (KEY_LINK_ID, KEY_EVENT_PORT) if k in entries]
        if keys:
            shown = ", ".join(f"{k} = {_printable(entries[k].value.strip())}" for k in keys)
            out.append(f"{_printable(rel)} looks like a link ({shown}) but is not read: only Digitro.properties, "
                       f"DigitroCTILink.properties and SmartCTIWSCommand<N>.properties (or SmartCTIWSCommands<N>) "
                       f"of one folder are. If it is a link, rename it SmartCTIWSCommand<N>.properties (N = 2, 3, ...) "
                       f"and run import-properties again")
    return out


def _notes_for(link: _Link, v: _Value) -> list[str]:
    """Where notes about ``v`` go: the link's, unless the value is inherited (noted at the main link already)."""
    return link.notes if link.own is None or v.file is link.own else []


def _unknown_lines(f: _PropFile) -> list[str]:
    out = []
    for key, e in f.entries.items():
        if key in KNOWN_KEYS:
            continue
        if _is_secret(key):
            out.append(f"{_printable(key)}: (secret not copied)")
        else:
            out.append(f"not used by smartcti-gateway: {_printable(key)} = {_printable(e.value)}   ({f.rel}:{e.line})")
    return out


# --------------------------------------------------------------------------- YAML text


def _render(root: Path, links: list[_Link], main_files: list[_PropFile], extra_files: list[_PropFile],
            ignored: list[str], others: list[Path], header_notes: list[str], now: datetime | None) -> str:
    now = now or datetime.now().astimezone()
    first = links[0]
    top_port = first.port
    ports = sorted({l.port for l in links})
    event_ports = sorted({int(l.values[KEY_EVENT_PORT].value.strip()) for l in links
                          if KEY_EVENT_PORT in l.values and l.values[KEY_EVENT_PORT].value.strip().isdigit()})
    log_link = next((l for l in links if l.log_on), None)
    switched = [l for l in links if l.log_on is not None]

    out: list[str] = []
    w = out.append
    w("# smartcti-gateway configuration, generated by `smartcti-gateway import-properties`")
    w(f"# from the DigitroCTILink install in {_printable(str(root.resolve()))}")
    w(f"# on {now.strftime('%Y-%m-%d %H:%M:%S %z').strip()}.")
    w("#")
    w("# Files read:")
    for f in main_files + extra_files:
        enc = " (read as UTF-8; Java 1.5 read it as ISO-8859-1)" if f.encoding == "UTF-8" else ""
        w(f"#   {_printable(f.rel)}{enc}")
    if ignored:
        w("# Other copies of the main files, NOT read (if one belongs to another link, copy it into a")
        w("# SmartCTIWSCommand<N>.properties file and run import-properties again):")
        for r in ignored:
            w(f"#   {_printable(r)}")
    if others:
        w("# Other .properties files, not used by smartcti-gateway: "
          + ", ".join(_printable(p.relative_to(root).as_posix()) for p in others[:10])
          + (f" and {len(others) - 10} more" if len(others) > 10 else ""))
    for n in header_notes:
        for i, line in enumerate(textwrap.wrap(_printable(n), 96, break_on_hyphens=False, break_long_words=False)):
            w(f"# {'Note: ' if i == 0 else '      '}{line}")
    w("#")
    w("# Check before starting (docs/migration.md):")
    w("#  1. K4_CMD_URL of each link's SK4 row in Protheus (routine TMKXMID): see the comment above")
    w("#     each link below. Usually it does not change: the gateway serves the old URL shapes.")
    w(f"#  2. Firewall: Protheus must reach this gateway on TCP port {', '.join(map(str, ports))}; the NGC must")
    w(f"#     reach the gateway's callback URL on the same port{'s' if len(ports) > 1 else ''}"
      + (f" (no longer EventingServer.Port {', '.join(map(str, event_ports))})." if event_ports else "."))
    w("#  3. logging: where the per-extension logs go (a path of the old server, if File.Log held one).")
    w("#  4. Stop the old Tomcat service, then: smartcti-gateway check-config THIS_FILE")
    w("")
    origin = f"port of {KEY_WSDL}" if first.old_cmd_url else f"{KEY_WSDL} not set: default port"
    w(f"listen: {_q(f'0.0.0.0:{top_port}')}          # HOST:PORT of the SOAP listener ({origin})")
    w("log_level: info")
    if switched:
        src = (log_link or switched[0]).values[KEY_LOG_DIR]
        w("")
        w(f"logging:                      # {KEY_LOG_DIR} = {_printable(src.value.strip())} "
          f"({_printable(src.where)})")
        if log_link is not None and log_link.log_dir:
            w(f"  dir: {_q(log_link.log_dir)}")
        else:
            w("  dir: logs                   # DigitroCTILink wrote them in its own Log\\ folder; here: logs/")
        if log_link is not None:
            w("  per_extension: true         # one file per extension: <device>-<linkid>-<DD>.log, as the old link")
        else:
            w("  per_extension: false        # off, as in the old install; console keys s / n switch them")
    w("")
    w("# No simulator: section - this config drives the real NGC.")
    w("links:")
    for link in links:
        _render_link(w, link, top_port, log_link)
    return "\n".join(out) + "\n"


def _render_link(w, link: _Link, top_port: int, log_link: _Link | None) -> None:
    host_known = bool(link.host) and not _is_local(link.host)
    shown_host = _url_host(link.host) if host_known else "<this server>"
    new_url = f"http://{shown_host}:{link.port}{link.command_path}"
    w("")
    w(f"  # --- LinkID {link.link_id}, from {_printable(link.source)} ---")
    w(f"  # Protheus, SK4 row with K4_LINKID = {link.link_id} (routine TMKXMID):")
    if link.path_changed:
        w(f"  #   K4_CMD_URL CHANGES to {_printable(new_url)}")
        w(f"  #   (port {link.port} with {_printable(link.conflict_path)} is LinkID {link.conflict_with}'s)")
    elif link.old_cmd_url.lower().startswith("https://"):
        w(f"  #   K4_CMD_URL CHANGES to {_printable(new_url)}: the gateway serves http:// only")
        w(f"  #   (was {_printable(link.old_cmd_url)})")
    elif link.old_cmd_url:
        old = link.old_cmd_url
        if not host_known:
            old = re.sub(r"^(\w+://)[^/]*", lambda m: f"{m.group(1)}<this server>:{link.port}", old)
        w(f"  #   K4_CMD_URL = {_printable(old)}   (from {KEY_WSDL}, without ?wsdl)")
        w("  #   unchanged: the gateway serves this URL as it is (and the ...SmartCTIWSCommandHttpSoap11Endpoint/")
        w("  #   URL Protheus builds from it) when it runs on the same server and port.")
        if old.lower() != new_url.lower():
            w(f"  #   Equivalent form, also served: {_printable(new_url)}")
    else:
        w(f"  #   K4_CMD_URL = {new_url}")
        w(f"  #   (old value unknown, {KEY_WSDL} is not set: check that the SK4 row has this port and path)")
    w("  #   If the gateway runs on another server, put that server's name or address in K4_CMD_URL.")
    for n in link.notes:
        for i, line in enumerate(textwrap.wrap(_printable(n), 96, break_on_hyphens=False, break_long_words=False)):
            w(f"  # {'Note: ' if i == 0 else '      '}{line}")
    w(f"  - link_id: {link.link_id}                 # K4_LINKID ({_printable(link.values[KEY_LINK_ID].where)})")
    w(f"    name: {_q(f'DigitroCTILink link {link.link_id}')}")
    if link.port != top_port:
        w(f"    listen: {_q(f'0.0.0.0:{link.port}')}        # this link's own port (from {KEY_WSDL})")
    w(f"    command_path: {_q(link.command_path)}")
    w("    pabx:")
    w("      driver: digitro")
    w(f"      url: {_q(link.pabx_url)}   # {KEY_PABX_URL} ({_printable(link.values[KEY_PABX_URL].where)})")
    w("      timeout: 5                # seconds: no SOAP call waits longer for the NGC")
    _render_callback(w, link)
    if link.log_dir and log_link is not None and link.log_dir != log_link.log_dir:
        w(f"    # {KEY_LOG_DIR} of this link was {_q(link.log_dir)}: the gateway writes the logs of every link")
        w("    # into logging.dir (the file names carry the link id).")
    elif link.log_on is False and log_link is not None:
        w(f"    # {KEY_LOG_DIR} of this link was N: the gateway has one switch for every link (on above).")
    for line in link.unknown:
        w(f"    # {line}")


def _render_callback(w, link: _Link) -> None:
    events_path = f"/pabx/digitro/{link.link_id}/RPC2"
    v = link.values.get(KEY_EVENT_PORT)
    old_port = v.value.strip() if v is not None else ""
    if v is not None:
        w(f"      # {KEY_EVENT_PORT} = {_printable(old_port)} ({_printable(v.where)}): the old link received the NGC's")
        w(f"      # events on that port. The gateway receives them on its own listener (port {link.port}),")
        w("      # at callback_url, which it gives to the NGC at start-up; open that port to the NGC.")
    host_ok = bool(link.host) and not _is_local(link.host)
    url_host = _url_host(link.host) if host_ok else "<this server>"
    url = f"http://{url_host}:{link.port}{events_path}"
    if v is not None and host_ok and _is_ip(link.host):
        w(f"      callback_url: {_q(url)}   # host of {KEY_WSDL}; delete this line to let")
        w("                                # the gateway use its own address toward the NGC")
    else:
        reason = ""
        if v is not None and host_ok:
            reason = f" ({link.host} is a name: the NGC would need DNS)"
        w(f"      # callback_url: {url}{reason}")
        w("      #   when omitted, the gateway uses its own address toward the NGC and its listener port")


# --------------------------------------------------------------------------- command line


def add_import_properties_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``import-properties DIR [-o FILE] [--force]`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "import-properties",
        help="write the YAML config equivalent to an old DigitroCTILink install's .properties files",
        description="Read Digitro.properties, DigitroCTILink.properties and SmartCTIWSCommand<N>.properties "
                    "of an old DigitroCTILink install (DIR and its subfolders) and write the equivalent "
                    "smartcti-gateway YAML config. See docs/migration.md.")
    p.add_argument("dir", metavar="DIR", help="folder of the old install (or the Tomcat folder above it)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the YAML to FILE (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(func=run_import_properties)
    return p


def _validate(text: str) -> str | None:
    """None when smartcti_gateway.config accepts the text, else the problem."""
    from .config import ConfigError, parse
    try:
        parse(yaml.safe_load(text), "<generated>")
    except ConfigError as e:
        return str(e)
    return None


def run_import_properties(args: argparse.Namespace) -> int:
    """The ``import-properties`` command: 0 done, 1 written but not valid for the gateway, 2 error."""
    err = sys.stderr
    warnings: list[str] = []
    try:
        text = import_properties(Path(args.dir), warnings=warnings)
    except MigrationError as e:
        print(f"import-properties: error: {e}", file=err)
        return 2
    except Exception as e:  # noqa: BLE001 - an administrator's tool: a message, never a traceback
        print(f"import-properties: unexpected error while reading {args.dir}: {type(e).__name__}: {e}. "
              f"Please report it with the folder's file list.", file=err)
        return 2
    for warning in warnings:
        print(f"import-properties: warning: {warning}.", file=err)
    problem = _validate(text)
    out = getattr(args, "output", None)
    if not out or out == "-":
        stream = getattr(sys.stdout, "buffer", None)
        if stream is not None:
            sys.stdout.flush()
            stream.write(text.encode("utf-8"))
            stream.flush()
        else:
            sys.stdout.write(text)
    else:
        path = Path(out)
        try:
            with open(path, "w" if args.force else "x", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
        except FileExistsError:
            print(f"import-properties: error: {path} exists; add --force to overwrite it, or choose another "
                  f"file with -o.", file=err)
            return 2
        except OSError as e:
            print(f"import-properties: error: cannot write {path}: {e.strerror or e}. Check the folder exists and "
                  f"is writable.", file=err)
            return 2
        n = text.count("\n  - link_id: ")
        print(f"import-properties: wrote {path} ({n} link(s)). Review it (K4_CMD_URL, firewall, logging.dir), "
              f"then: smartcti-gateway check-config {path}", file=err)
    if problem:
        print(f"import-properties: warning: the generated config is not accepted by this gateway version: "
              f"{problem}. Review and fix it before starting.", file=err)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``import-properties`` on its own: ``python -c 'from smartcti_gateway.migration import main; main()'``."""
    parser = argparse.ArgumentParser(prog="smartcti-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    add_import_properties_parser(sub)
    if argv is None:
        argv = sys.argv[1:]
    if not argv or argv[0] != "import-properties":
        argv = ["import-properties", *argv]
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
