"""The gateway's YAML configuration, validated with the key and line of every mistake."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_COMMAND_PATH = "/axis2/services/SmartCTIWSCommand"

def _packaged(*parts: str) -> Path:
    """A file of the repository's top level (a checkout) or packaged inside smartcti_gateway (a wheel)."""
    here = Path(__file__).resolve().parent
    for base in (here.parent, here):
        candidate = base.joinpath(*parts)
        if candidate.exists():
            return candidate
    return here.parent.joinpath(*parts)


DEFAULT_CONFIG = _packaged("config", "gateway.yaml")


class ConfigError(ValueError):
    """A mistake in the config: ``str()`` names the file, line and key."""


class _Map(dict):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[str, int]
    line: int


class _Loader(yaml.SafeLoader):
    source = "<config>"


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    lines: dict[str, int] = {}
    for k, _ in node.value:
        key, line = str(k.value), k.start_mark.line + 1
        if key in lines:   # YAML would silently keep the last one
            raise ConfigError(f"{loader.source}:{line}: {key}: given twice, at lines {lines[key]} and {line}; "
                              f"keep one")
        lines[key] = line
    m = _Map(loader.construct_mapping(node, deep=True))
    m.line = node.start_mark.line + 1
    m.lines = lines
    return m


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


@dataclass(frozen=True)
class HostAllow:
    """Hosts events may be posted to: networks (CIDRs, addresses) and host names."""

    networks: tuple = ()
    names: tuple[str, ...] = ()


@dataclass
class TlsConfig:
    """HTTPS on a listener: PEM certificate (chain) and private key."""

    cert: str
    key: str
    password: str = field(default="", repr=False)   # of an encrypted key; never shown


@dataclass
class PabxConfig:
    driver: str = "digitro"
    url: str = "http://127.0.0.1:2551/RPC2"
    timeout: float = 5.0
    callback_url: str = ""          # where the PABX posts events; derived from the listener when empty
    allow: tuple | None = None      # networks allowed to post events; None = the addresses of url's host
    ca_file: str = ""               # extra CA bundle to verify an https url
    keepalive: float = 10.0         # seconds between keep-alives
    keepalive_timeout: float = 10.0 # never shorter than 10 s: a busy PABX must not look dead
    grace: float = 30.0             # down this long before SystemStatus / queryAgentState tell Protheus
    reconnect_max: float = 30.0     # cap of the reconnect backoff
    quiet_call: float = 300.0       # a call without news this long is checked against the PABX
    dialect: dict[str, Any] = field(default_factory=dict)


@dataclass
class EventsConfig:
    """Delivery of events to Protheus' SmartCTIWSEventing."""

    timeout: float = 10.0           # one POST; Protheus may take ~1 s per session slot
    wsdl_timeout: float = 10.0
    ttl: float = 120.0              # an event older than this is dropped and counted
    queue_size: int = 1000          # per device and eventing URL
    retry_initial: float = 0.5
    retry_max: float = 10.0
    release_after_99: int = 20      # consecutive "no Protheus session" answers before letting the device go
    report_every: float = 60.0      # seconds between two summary lines about a failing eventing URL
    ca_file: str = ""               # extra CA bundle to verify https eventing URLs


@dataclass
class LinkConfig:
    link_id: int
    name: str = ""
    command_path: str = DEFAULT_COMMAND_PATH
    listen: str = ""                # own listener; empty = the gateway's
    allow: tuple = ()               # networks allowed on the command endpoint; empty = all (warned at start)
    tls: TlsConfig | None = None    # own certificate for its own listener; None = the top-level tls
    eventing_allow: HostAllow | None = None   # where its events may go; None = the top-level eventing_allow
    pabx: PabxConfig = field(default_factory=PabxConfig)
    events: EventsConfig = field(default_factory=EventsConfig)

    @property
    def events_path(self) -> str:
        return f"/pabx/{self.pabx.driver}/{self.link_id}/RPC2"


@dataclass
class SimulatorConfig:
    enabled: bool = False
    listen: str = "127.0.0.1:2551"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoggingConfig:
    dir: str = "logs"               # per-extension daily logs: <dir>/<device>-<linkid>-<DD>.log
    per_extension: bool = False     # on at start? (console keys s / n switch it at run time)


@dataclass
class Config:
    listen: str = "0.0.0.0:8080"
    max_body: int = 64 * 1024
    client_timeout: float = 15.0    # s to send a request's headers, and its body; idle keep-alive too
    log_level: str = "info"
    links: list[LinkConfig] = field(default_factory=list)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    state_file: str = "var/smartcti-state.sqlite"   # the device registry; "" keeps it in memory only
    eventing_allow: HostAllow | None = None         # where events may go; None = any http(s) URL
    # who may read the status page and /metrics (device numbers, agent ids); /healthz and /readyz are open
    status_allow: tuple = field(default_factory=lambda: _default_status_allow())
    tls: TlsConfig | None = None    # HTTPS on the listener(s)
    source: str = ""


def default_state_file(source: str) -> str:
    """The state file of a config that names none: one per config file, so that two configs run from
    one folder never restore each other's devices (``var/smartcti-state-<name>-<hash of its path>.sqlite``)."""
    path = Path(source)
    if source.startswith("<") or not path.suffix:
        return "var/smartcti-state.sqlite"
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = re.sub(r"[^0-9A-Za-z_.-]", "_", path.stem)[:40]
    return f"var/smartcti-state-{stem}-{digest}.sqlite"


def _default_status_allow() -> tuple:
    from .access import parse_networks
    return parse_networks(["127.0.0.0/8", "::1"])


def split_listen(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` -> ("0.0.0.0", 8080); ``"[::1]:8080"`` works too."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


_ENV_VAR = re.compile(r"\$\{([^}]*)\}")


class _Reader:
    def __init__(self, source: str):
        self.source = source

    def fail(self, m: Any, key: str, path: str, message: str) -> ConfigError:
        line = getattr(m, "lines", {}).get(key) or getattr(m, "line", None)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {path}: {message}")

    def mapping(self, value: Any, path: str, parent: Any = None, key: str = "") -> _Map:
        if value is None:
            value = _Map()
            value.lines, value.line = {}, getattr(parent, "lines", {}).get(key, 0)
        if not isinstance(value, dict):
            raise self.fail(parent, key, path, "must be a mapping (key: value lines)")
        return value

    def check_keys(self, m: _Map, path: str, allowed: set[str]) -> None:
        for k in m:
            if k not in allowed:
                raise self.fail(m, str(k), f"{path}.{k}" if path else str(k),
                                f"unknown key; allowed here: {', '.join(sorted(allowed))}")

    def expand(self, m: _Map, key: str, full: str, value: str) -> str:
        """Each ``${VAR}`` in ``value`` -> that environment variable (``http://cti:${NGC_PASSWORD}@ngc/RPC2``)."""
        def var(match: re.Match) -> str:
            if match.group(1) not in os.environ:
                raise self.fail(m, key, full, f"environment variable {match.group(1)} is not set")
            return os.environ[match.group(1)]
        return _ENV_VAR.sub(var, value)

    def get(self, m: _Map, key: str, path: str, kind: type, default: Any, *, check=None, env: bool = True) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in m or m[key] is None:
            return default
        value = m[key]
        if env and isinstance(value, str) and "${" in value:
            value = self.expand(m, key, full, value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(m, key, full, f"must be {kind.__name__}, got {type(value).__name__} {value!r}")
        if check is not None:
            problem = check(value)
            if problem:
                raise self.fail(m, key, full, problem)
        return value


def _listen_problem(v: str) -> str | None:
    try:
        split_listen(v)
    except ValueError as e:
        return str(e)
    return None


def _url_problem(v: str) -> str | None:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        from .access import redact_url
        return f"{redact_url(v)!r} is not an http:// or https:// URL"
    return None


def _path_problem(v: str) -> str | None:
    if not v.startswith("/") or v.endswith("/") or "?" in v:
        return f"{v!r} must start with '/', not end with '/', and have no query"
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", v):
        return f"{v!r} may hold letters, digits and . _ ~ - / only"
    return None


def _text_items(r: _Reader, m: _Map, key: str, path: str, what: str, plural: str,
                example: str) -> list[tuple[str, str]] | None:
    """A list of texts, or one comma-separated text: [(where, value with ${VAR} expanded)]; None when absent."""
    full = f"{path}.{key}" if path else key
    raw = m.get(key)
    if raw is None:
        return None
    if not isinstance(raw, (list, str)):
        raise r.fail(m, key, full, f"must be a list of {plural}, e.g. {example}")
    items = [raw] if isinstance(raw, str) else raw
    out = []
    for i, item in enumerate(items):
        where = full if isinstance(raw, str) else f"{full}[{i}]"
        if not isinstance(item, str):
            raise r.fail(m, key, where, f"must be {'an' if what[0] in 'aeiou' else 'a'} {what} written as text, "
                                        f"got {item!r}")
        out.append((where, r.expand(m, key, where, item)))
    return out


def _networks(r: _Reader, m: _Map, key: str, path: str) -> tuple | None:
    """An address list: CIDRs or single addresses, as a list or one comma-separated string; None when absent."""
    from .access import parse_networks
    items = _text_items(r, m, key, path, "address or network", "addresses or networks",
                        "[10.0.0.0/8, 192.168.10.5, '::1']")
    if items is None:
        return None
    for where, value in items:
        try:
            parse_networks([value])
        except ValueError as e:
            raise r.fail(m, key, where, str(e)) from None
    return parse_networks([value for _, value in items])


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def _host_allow(r: _Reader, m: _Map, key: str, path: str) -> HostAllow | None:
    """``eventing_allow``: CIDRs, addresses or host names that Protheus' eventing URLs may point at."""
    from .access import parse_network
    items = _text_items(r, m, key, path, "network or host name", "networks or host names",
                        "[10.0.0.0/24, protheus.local]")
    if items is None:
        return None
    networks, names = [], []
    for where, value in items:
        for part in re.split(r"[\s,;]+", value.strip()):
            if not part:
                continue
            try:
                networks.append(parse_network(part))
                continue
            except ValueError as e:
                if "/" in part or part.replace(".", "").isdigit() or ":" in part:
                    raise r.fail(m, key, where, str(e)) from None
            if not _HOST_NAME.match(part):
                raise r.fail(m, key, where, f"{part!r} is neither a network (10.0.0.0/24, 192.168.10.5) "
                                            f"nor a host name (protheus.example.com)")
            names.append(part.rstrip(".").lower())
    return HostAllow(tuple(dict.fromkeys(networks)), tuple(dict.fromkeys(names)))


def _tls(r: _Reader, m: _Map, key: str, path: str) -> TlsConfig | None:
    """``tls: {cert: FILE, key: FILE, password: ...}``, the files read and matched at load."""
    from .access import cert_file_problem, tls_problem
    if m.get(key) is None:
        return None
    full = f"{path}.{key}" if path else key
    tm = r.mapping(m[key], full, m, key)
    r.check_keys(tm, full, {"cert", "key", "password"})
    for k in ("cert", "key"):
        if not tm.get(k):
            raise r.fail(tm, k, f"{full}.{k}", "is required: the path of a PEM file")
    cert = r.get(tm, "cert", full, str, "", check=cert_file_problem)
    pem_key = r.get(tm, "key", full, str, "", check=cert_file_problem)
    password = r.get(tm, "password", full, str, "")
    problem = tls_problem(cert, pem_key, password)
    if problem:
        raise r.fail(m, key, full, problem)
    return TlsConfig(cert, pem_key, password)


def parse(data: Any, source: str = "<config>") -> Config:
    r = _Reader(source)
    root = r.mapping(data, "(top level)")
    r.check_keys(root, "", {"tls", "listen", "max_body", "client_timeout", "log_level", "links", "simulator",
                            "logging", "state_file", "status_allow", "eventing_allow"})
    cfg = Config(source=source)
    cfg.state_file = r.get(root, "state_file", "", str, default_state_file(source))
    cfg.listen = r.get(root, "listen", "", str, cfg.listen, check=_listen_problem)
    cfg.max_body = r.get(root, "max_body", "", int, cfg.max_body,
                         check=lambda v: None if 1024 <= v <= 16 * 1024 * 1024 else "must be between 1024 and 16777216")
    cfg.client_timeout = r.get(root, "client_timeout", "", float, cfg.client_timeout,
                               check=lambda v: None if 1 <= v <= 300 else "must be between 1 and 300 seconds")
    cfg.log_level = r.get(root, "log_level", "", str, cfg.log_level,
                          check=lambda v: None if v.lower() in ("debug", "info", "warning", "error") else
                          "must be debug, info, warning or error")

    cfg.tls = _tls(r, root, "tls", "")
    cfg.eventing_allow = _host_allow(r, root, "eventing_allow", "")
    status_allow = _networks(r, root, "status_allow", "")
    if status_allow is not None:
        cfg.status_allow = status_allow

    lm = r.mapping(root.get("logging"), "logging", root, "logging")
    r.check_keys(lm, "logging", {"dir", "per_extension"})
    cfg.logging = LoggingConfig(dir=r.get(lm, "dir", "logging", str, "logs", env=True),
                                per_extension=r.get(lm, "per_extension", "logging", bool, False))

    sim = r.mapping(root.get("simulator"), "simulator", root, "simulator")
    r.check_keys(sim, "simulator", {"enabled", "listen", "options"})
    cfg.simulator = SimulatorConfig(
        enabled=r.get(sim, "enabled", "simulator", bool, False),
        listen=r.get(sim, "listen", "simulator", str, "127.0.0.1:2551", check=_listen_problem),
        options=dict(r.mapping(sim.get("options"), "simulator.options", sim, "options")),
    )
    if cfg.simulator.enabled:
        from .pabx.digitro.simulator import options_from_mapping
        try:
            options_from_mapping(cfg.simulator.options)
        except ValueError as e:
            raise r.fail(sim, "options", "simulator.options", str(e)) from None

    links = root.get("links")
    if not isinstance(links, list) or not links:
        raise r.fail(root, "links", "links", "must be a list with at least one link (- link_id: 1 ...)")
    seen_ids: dict[int, str] = {}
    seen_paths: set[tuple[str, str]] = set()
    tls_by_listen: dict[str, tuple[TlsConfig | None, str]] = {}
    for i, raw in enumerate(links):
        path = f"links[{i}]"
        m = r.mapping(raw, path, root, "links")
        r.check_keys(m, path, {"allow", "tls", "link_id", "name", "command_path", "listen", "pabx", "events",
                               "eventing_allow"})
        if "link_id" not in m:
            raise r.fail(m, "", path, "link_id is required: the K4_LINKID of the Protheus SK4 row of this link")
        link = LinkConfig(link_id=r.get(m, "link_id", path, int, 0,
                                        check=lambda v: None if v > 0 else "must be a positive integer"))
        if link.link_id in seen_ids:
            raise r.fail(m, "link_id", f"{path}.link_id", f"link_id {link.link_id} is already used by {seen_ids[link.link_id]}")
        seen_ids[link.link_id] = path
        link.name = r.get(m, "name", path, str, f"link {link.link_id}")
        link.command_path = r.get(m, "command_path", path, str, DEFAULT_COMMAND_PATH, check=_path_problem)
        link.listen = r.get(m, "listen", path, str, "", check=_listen_problem)
        link.allow = _networks(r, m, "allow", path) or ()
        link.eventing_allow = _host_allow(r, m, "eventing_allow", path)
        link.tls = _tls(r, m, "tls", path)
        if link.tls is not None and not link.listen:
            raise r.fail(m, "tls", f"{path}.tls", "needs the link's own listen: a link on the top-level "
                                                  "listener uses the top-level tls")
        shared = tls_by_listen.setdefault(link.listen or cfg.listen, (link.tls or cfg.tls, path))
        if shared[0] != (link.tls or cfg.tls):
            raise r.fail(m, "tls", f"{path}.tls", f"{link.listen or cfg.listen} is also the listener of "
                                                  f"{shared[1]}, with another tls: one listener has one certificate")
        where = (link.listen or cfg.listen, link.command_path)
        if where in seen_paths:
            raise r.fail(m, "command_path", f"{path}.command_path",
                         f"another link already serves {link.command_path} on {where[0]}")
        seen_paths.add(where)

        pm = r.mapping(m.get("pabx"), f"{path}.pabx", m, "pabx")
        pp = f"{path}.pabx"
        r.check_keys(pm, pp, {"allow", "ca_file", "driver", "url", "timeout", "callback_url", "dialect", "keepalive",
                              "keepalive_timeout", "grace", "reconnect_max", "quiet_call"})
        px = PabxConfig()
        px.driver = r.get(pm, "driver", pp, str, "digitro",
                          check=lambda v: None if v == "digitro" else f"unknown driver {v!r}; available: digitro")
        px.url = r.get(pm, "url", pp, str, px.url, check=_url_problem, env=True)
        px.timeout = r.get(pm, "timeout", pp, float, 5.0,
                           check=lambda v: None if 0.1 <= v <= 60 else "must be between 0.1 and 60 seconds")
        px.callback_url = r.get(pm, "callback_url", pp, str, "", check=_url_problem, env=True)
        for name, low, high in (("keepalive", 0.05, 3600), ("keepalive_timeout", 10, 300), ("grace", 0, 3600),
                                ("reconnect_max", 0.05, 3600), ("quiet_call", 0.05, 86400)):
            setattr(px, name, r.get(pm, name, pp, float, getattr(px, name),
                                    check=lambda v, lo=low, hi=high: None if lo <= v <= hi else
                                    f"must be between {lo:g} and {hi:g} seconds"))
        px.dialect = dict(r.mapping(pm.get("dialect"), f"{pp}.dialect", pm, "dialect"))
        from .pabx.digitro.dialect import Dialect
        try:
            Dialect.with_overrides(px.dialect)
        except (ValueError, TypeError) as e:
            raise r.fail(pm, "dialect", f"{pp}.dialect", str(e)) from None
        px.allow = _networks(r, pm, "allow", pp)
        from .access import ca_file_problem
        px.ca_file = r.get(pm, "ca_file", pp, str, "", check=ca_file_problem)
        link.pabx = px

        em = r.mapping(m.get("events"), f"{path}.events", m, "events")
        ep = f"{path}.events"
        r.check_keys(em, ep, set(EventsConfig.__dataclass_fields__))
        ev = EventsConfig()
        for name, low, high in (("timeout", 0.1, 300), ("wsdl_timeout", 0.1, 300), ("ttl", 0.1, 86400),
                                ("retry_initial", 0.01, 60), ("retry_max", 0.01, 3600), ("report_every", 1, 86400)):
            setattr(ev, name, r.get(em, name, ep, float, getattr(ev, name),
                                    check=lambda v, lo=low, hi=high: None if lo <= v <= hi else
                                    f"must be between {lo:g} and {hi:g} seconds"))
        for name, low, high in (("queue_size", 1, 1_000_000), ("release_after_99", 1, 1_000_000)):
            setattr(ev, name, r.get(em, name, ep, int, getattr(ev, name),
                                    check=lambda v, lo=low, hi=high: None if lo <= v <= hi else
                                    f"must be between {lo} and {hi}"))
        ev.ca_file = r.get(em, "ca_file", ep, str, "", check=ca_file_problem)
        link.events = ev
        cfg.links.append(link)
    return cfg


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    loader = None
    try:
        loader = _Loader(text)
        loader.source = str(path)
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return parse(data, str(path))
