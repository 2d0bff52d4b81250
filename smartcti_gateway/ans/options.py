"""The ``protocol:`` section of the config (docs/protocolo-ans.md): read and checked at load, with the line
of every mistake. No section, no protocol numbers: existing configs run as before."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..configread import Map, Reader, between, listen_problem, url_problem
from ..networks import parse_networks
from ..core.notify import pop_template_problem
from .agi_server import IvrOptions
from .layout import DEFAULT_LAYOUT, DEFAULT_TIMEZONE, Layout, LayoutError, registro_problem, zone

MODES = ("gateway", "external", "off")
LOOPBACK = ("127.0.0.0/8", "::1")


@dataclass
class HookConfig:
    url: str = ""
    timeout: float = 2.0
    token: str = ""


@dataclass
class ExternalConfig(HookConfig):
    timeout: float = 3.0
    fallback: bool = True       # the generator failing: issue one of our own rather than none


@dataclass
class ProtocolConfig:
    mode: str = "gateway"
    registro_ans: str = ""
    layout: str = DEFAULT_LAYOUT
    timezone: str = DEFAULT_TIMEZONE
    database: str = "var/protocols.sqlite"
    agi_listen: str = ""             # "" = no FastAGI server
    agi_allow: tuple = field(default_factory=lambda: parse_networks(LOOPBACK))
    api_allow: tuple = field(default_factory=lambda: parse_networks(LOOPBACK))
    api_token: str = ""
    associated_data: str = ""        # RINGING.ASSOCIATEDDATA template; "" = what the gateway always sent
    issue_at_ringing: bool = True    # a call that pops a screen without a number gets one as it rings
    retention_days: int = 730
    external: ExternalConfig = field(default_factory=ExternalConfig)
    beneficiary_hook: HookConfig = field(default_factory=HookConfig)
    ivr: IvrOptions = field(default_factory=IvrOptions)
    warnings: list[str] = field(default_factory=list)


KEYS = {"mode", "registro_ans", "layout", "timezone", "database", "agi_listen", "agi_allow", "api_allow",
        "api_token", "associated_data", "issue_at_ringing", "retention_days", "external", "beneficiary_hook", "ivr"}


def _address_list(r: Reader, m: Map, key: str, path: str, default: tuple) -> tuple:
    raw = m.get(key)
    if raw is None:
        return default
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise r.fail(m, key, f"{path}.{key}", "must be a list of addresses or networks, e.g. [10.0.0.5, 10.1.0.0/24]")
    try:
        return parse_networks([r.expand(m, key, f"{path}.{key}", i) for i in items])
    except ValueError as e:
        raise r.fail(m, key, f"{path}.{key}", str(e)) from None


def _hook(r: Reader, m: Map, key: str, path: str, hook: HookConfig) -> HookConfig:
    full = f"{path}.{key}"
    hm = r.mapping(m.get(key), full, m, key)
    allowed = {"url", "timeout", "token"} | ({"fallback"} if isinstance(hook, ExternalConfig) else set())
    r.check_keys(hm, full, allowed)
    hook.url = r.get(hm, "url", full, str, "", check=lambda v: url_problem(v) if v else None)
    hook.timeout = r.get(hm, "timeout", full, float, hook.timeout, check=between(0.1, 30))
    hook.token = r.get(hm, "token", full, str, "")
    if isinstance(hook, ExternalConfig):
        hook.fallback = r.get(hm, "fallback", full, bool, True)
    return hook


def _ivr(r: Reader, m: Map, path: str) -> IvrOptions:
    full = f"{path}.ivr"
    im = r.mapping(m.get("ivr"), full, m, "ivr")
    ivr = IvrOptions()
    r.check_keys(im, full, set(IvrOptions.__dataclass_fields__))
    for name, f in IvrOptions.__dataclass_fields__.items():
        kind = type(getattr(ivr, name))
        check = None
        if kind is float:
            check = between(0.5, 60)
        elif kind is int:
            check = between(1, 40, "")
        elif name == "repeat_key":
            check = lambda v: None if v in ("",) or (len(v) == 1 and v in "0123456789*#") else \
                "must be one key of the phone (0-9, * or #), or \"\" for no repeat"
        elif name == "variable":
            check = lambda v: None if v.replace("_", "").isalnum() and v[:1].isalpha() else \
                "must be a channel variable name (letters, digits, _)"
        elif kind is str:
            check = lambda v: None if " " not in v and "\"" not in v else \
                "a sound file name has no spaces or quotes (e.g. custom/protocolo-intro)"
        setattr(ivr, name, r.get(im, name, full, kind, getattr(ivr, name), check=check))
    return ivr


def parse(r: Reader, root: Map) -> ProtocolConfig | None:
    m = r.section(root, "protocol", KEYS)
    if m is None:
        return None
    path = "protocol"
    pc = ProtocolConfig()
    pc.mode = r.get(m, "mode", path, str, pc.mode,
                    check=lambda v: None if v in MODES else f"must be one of {', '.join(MODES)}")
    raw = m.get("registro_ans")
    if isinstance(raw, int) and not isinstance(raw, bool) and len(str(raw)) != 6:
        raise r.fail(m, "registro_ans", f"{path}.registro_ans",
                     f"{raw} has lost its leading zeros: write the registry between quotes, e.g. \"012345\"")
    pc.registro_ans = r.get(m, "registro_ans", path, str, "")
    pc.layout = r.get(m, "layout", path, str, pc.layout)
    pc.timezone = r.get(m, "timezone", path, str, pc.timezone)
    pc.database = r.get(m, "database", path, str, pc.database)
    pc.agi_listen = r.get(m, "agi_listen", path, str, "", check=lambda v: listen_problem(v) if v else None)
    pc.agi_allow = _address_list(r, m, "agi_allow", path, pc.agi_allow)
    pc.api_allow = _address_list(r, m, "api_allow", path, pc.api_allow)
    pc.api_token = r.get(m, "api_token", path, str, "")
    pc.associated_data = r.get(m, "associated_data", path, str, "",
                               check=lambda v: pop_template_problem(v) if v else None)
    pc.issue_at_ringing = r.get(m, "issue_at_ringing", path, bool, True)
    pc.retention_days = r.get(m, "retention_days", path, int, pc.retention_days, check=between(90, 36500, "days"))
    _hook(r, m, "external", path, pc.external)
    _hook(r, m, "beneficiary_hook", path, pc.beneficiary_hook)
    pc.ivr = _ivr(r, m, path)
    if pc.mode == "external" and not pc.external.url:
        raise r.fail(m, "external", f"{path}.external.url", "is required with mode: external (the URL that "
                                                              "makes the numbers)")
    if pc.mode == "off":
        return pc
    needs_registry = pc.mode == "gateway" or pc.external.fallback
    if needs_registry or pc.registro_ans:
        problem = registro_problem(pc.registro_ans)
        if problem:
            raise r.fail(m, "registro_ans", f"{path}.registro_ans", problem if pc.registro_ans else
                         "is required: the operator's 6-digit ANS registry (Registro ANS), e.g. \"123456\"")
        try:
            pc.warnings += Layout(pc.layout, pc.registro_ans).check()
        except LayoutError as e:
            raise r.fail(m, "layout", f"{path}.layout", str(e)) from None
    try:
        zone(pc.timezone)
    except LayoutError as e:
        raise r.fail(m, "timezone", f"{path}.timezone", str(e)) from None
    return pc
