"""A link's call-centre keys, validated with their line: ``wrap_up``, ``pause_reasons``,
``default_pause_reason`` and ``dialler``.

    links:
      - link_id: 1
        wrap_up: {seconds: 10, groups: {"702": 30}}   # after-call work, then ready by itself; 0 = off
        pause_reasons:
          - {code: "1", name: Almoço, pabx: almoco, dialler_status_id: "3"}
        default_pause_reason: "1"                      # for Protheus' NotReady, which carries no reason
        dialler: {dnis: ["7009"], groups: ["709"], variable: DISCADOR}   # its calls pop as CALLTYPE 3
"""
from __future__ import annotations

import re

from .configread import Map, Reader, between
from .core.dialler import NO_DIALLER_RULE, DiallerRule
from .core.pauses import NO_PAUSE_REASONS, NO_WRAP_UP, PauseReason, PauseReasons, WrapUp

KEYS = frozenset({"wrap_up", "pause_reasons", "default_pause_reason", "dialler"})
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
MAX_WRAP_UP = 3600.0


def _text(r: Reader, m: Map, key: str, path: str, required: bool) -> str:
    value = r.get(m, key, path, str, "").strip()
    if required and not value:
        raise r.fail(m, key, f"{path}.{key}", "is required and may not be empty")
    return value


def wrap_up(r: Reader, link: Map, path: str) -> WrapUp:
    if "wrap_up" not in link or link["wrap_up"] is None:
        return NO_WRAP_UP
    wp = f"{path}.wrap_up"
    if isinstance(link["wrap_up"], (int, float)) and not isinstance(link["wrap_up"], bool):
        seconds = r.get(link, "wrap_up", path, float, 0.0, check=between(0, MAX_WRAP_UP))
        return WrapUp(seconds)
    m = r.mapping(link["wrap_up"], wp, link, "wrap_up")
    r.check_keys(m, wp, {"seconds", "groups", "reason"})
    seconds = r.get(m, "seconds", wp, float, 0.0, check=between(0, MAX_WRAP_UP))
    gm = r.mapping(m.get("groups"), f"{wp}.groups", m, "groups")
    groups = {}
    for group in gm:
        key = str(group).strip()
        if not key:
            raise r.fail(gm, str(group), f"{wp}.groups", "an ACD group number may not be empty")
        groups[key] = r.get(gm, str(group), f"{wp}.groups", float, 0.0, check=between(0, MAX_WRAP_UP))
    reason = r.get(m, "reason", wp, str, NO_WRAP_UP.reason).strip()
    if not reason:
        raise r.fail(m, "reason", f"{wp}.reason", "the pause reason the PABX is given during wrap-up may not be empty")
    return WrapUp(seconds, groups, reason)


def pause_reasons(r: Reader, link: Map, path: str) -> PauseReasons:
    raw = link.get("pause_reasons")
    default = r.get(link, "default_pause_reason", path, str, "").strip()
    if raw is None:
        if default:
            raise r.fail(link, "default_pause_reason", f"{path}.default_pause_reason",
                         "names a code of pause_reasons, but the link has no pause_reasons")
        return NO_PAUSE_REASONS
    if not isinstance(raw, list):
        raise r.fail(link, "pause_reasons", f"{path}.pause_reasons",
                     'must be a list, e.g. - {code: "1", name: Almoço, pabx: almoco, dialler_status_id: "3"}')
    reasons: list[PauseReason] = []
    for i, item in enumerate(raw):
        ip = f"{path}.pause_reasons[{i}]"
        m = r.mapping(item, ip, link, "pause_reasons")
        r.check_keys(m, ip, {"code", "name", "pabx", "dialler_status_id"})
        reason = PauseReason(_text(r, m, "code", ip, True), _text(r, m, "name", ip, True),
                             _text(r, m, "pabx", ip, True), _text(r, m, "dialler_status_id", ip, False))
        for other in reasons:
            for attr, what in (("code", "code"), ("pabx", "PABX reason")):
                if getattr(other, attr).casefold() == getattr(reason, attr).casefold():
                    raise r.fail(m, attr, f"{ip}.{attr}", f"{what} {getattr(reason, attr)!r} is already used by "
                                                          f"pause reason {other.code} ({other.name})")
        reasons.append(reason)
    table = PauseReasons(tuple(reasons), default)
    if default and table.default is None:
        raise r.fail(link, "default_pause_reason", f"{path}.default_pause_reason",
                     f"{default!r} is not a code of pause_reasons ({', '.join(x.code for x in reasons) or 'none'})")
    return table


def dialler(r: Reader, link: Map, path: str) -> DiallerRule:
    if link.get("dialler") is None:
        return NO_DIALLER_RULE
    dp = f"{path}.dialler"
    m = r.mapping(link["dialler"], dp, link, "dialler")
    r.check_keys(m, dp, {"dnis", "groups", "variable"})

    def texts(key: str) -> frozenset[str]:
        raw = m.get(key)
        if raw is None:
            return frozenset()
        items = raw if isinstance(raw, list) else [raw]
        out = set()
        for i, item in enumerate(items):
            if not isinstance(item, (str, int)) or isinstance(item, bool) or not str(item).strip():
                raise r.fail(m, key, f"{dp}.{key}[{i}]" if isinstance(raw, list) else f"{dp}.{key}",
                             f'must be a number written as text, e.g. {key}: ["7009"]')
            out.add(str(item).strip())
        return frozenset(out)

    variable = r.get(m, "variable", dp, str, "").strip()
    if variable and not _VARIABLE.fullmatch(variable):
        raise r.fail(m, "variable", f"{dp}.variable", f"{variable!r} is not a variable name (letters, digits, _)")
    rule = DiallerRule(texts("dnis"), texts("groups"), variable)
    if not rule:
        raise r.fail(link, "dialler", dp, "says nothing: give dnis, groups or variable (or remove it)")
    return rule
