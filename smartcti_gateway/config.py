"""The gateway's YAML configuration, validated with the key and line of every mistake."""
from __future__ import annotations

import os
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
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    m = _Map(loader.construct_mapping(node, deep=True))
    m.line = node.start_mark.line + 1
    m.lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
    return m


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


@dataclass
class PabxConfig:
    driver: str = "digitro"
    url: str = "http://127.0.0.1:2551/RPC2"
    timeout: float = 5.0
    callback_url: str = ""          # where the PABX posts events; derived from the listener when empty
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


@dataclass
class LinkConfig:
    link_id: int
    name: str = ""
    command_path: str = DEFAULT_COMMAND_PATH
    listen: str = ""                # own listener; empty = the gateway's
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
    log_level: str = "info"
    links: list[LinkConfig] = field(default_factory=list)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = ""


def split_listen(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` -> ("0.0.0.0", 8080); ``"[::1]:8080"`` works too."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


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

    def get(self, m: _Map, key: str, path: str, kind: type, default: Any, *, check=None, env: bool = True) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in m or m[key] is None:
            return default
        value = m[key]
        if env and isinstance(value, str) and value.startswith("${") and value.endswith("}"):
            var = value[2:-1]
            if var not in os.environ:
                raise self.fail(m, key, full, f"environment variable {var} is not set")
            value = os.environ[var]
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
        return f"{v!r} is not an http:// or https:// URL"
    return None


def _path_problem(v: str) -> str | None:
    if not v.startswith("/") or v.endswith("/") or "?" in v:
        return f"{v!r} must start with '/', not end with '/', and have no query"
    return None


def parse(data: Any, source: str = "<config>") -> Config:
    r = _Reader(source)
    root = r.mapping(data, "(top level)")
    r.check_keys(root, "", {"listen", "max_body", "log_level", "links", "simulator", "logging"})
    cfg = Config(source=source)
    cfg.listen = r.get(root, "listen", "", str, cfg.listen, check=_listen_problem)
    cfg.max_body = r.get(root, "max_body", "", int, cfg.max_body,
                         check=lambda v: None if 1024 <= v <= 16 * 1024 * 1024 else "must be between 1024 and 16777216")
    cfg.log_level = r.get(root, "log_level", "", str, cfg.log_level,
                          check=lambda v: None if v.lower() in ("debug", "info", "warning", "error") else
                          "must be debug, info, warning or error")

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
    for i, raw in enumerate(links):
        path = f"links[{i}]"
        m = r.mapping(raw, path, root, "links")
        r.check_keys(m, path, {"link_id", "name", "command_path", "listen", "pabx", "events"})
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
        where = (link.listen or cfg.listen, link.command_path)
        if where in seen_paths:
            raise r.fail(m, "command_path", f"{path}.command_path",
                         f"another link already serves {link.command_path} on {where[0]}")
        seen_paths.add(where)

        pm = r.mapping(m.get("pabx"), f"{path}.pabx", m, "pabx")
        pp = f"{path}.pabx"
        r.check_keys(pm, pp, {"driver", "url", "timeout", "callback_url", "dialect"})
        px = PabxConfig()
        px.driver = r.get(pm, "driver", pp, str, "digitro",
                          check=lambda v: None if v == "digitro" else f"unknown driver {v!r}; available: digitro")
        px.url = r.get(pm, "url", pp, str, px.url, check=_url_problem, env=True)
        px.timeout = r.get(pm, "timeout", pp, float, 5.0,
                           check=lambda v: None if 0.1 <= v <= 60 else "must be between 0.1 and 60 seconds")
        px.callback_url = r.get(pm, "callback_url", pp, str, "", check=_url_problem, env=True)
        px.dialect = dict(r.mapping(pm.get("dialect"), f"{pp}.dialect", pm, "dialect"))
        from .pabx.digitro.dialect import Dialect
        try:
            Dialect.with_overrides(px.dialect)
        except (ValueError, TypeError) as e:
            raise r.fail(pm, "dialect", f"{pp}.dialect", str(e)) from None
        link.pabx = px

        em = r.mapping(m.get("events"), f"{path}.events", m, "events")
        ep = f"{path}.events"
        r.check_keys(em, ep, set(EventsConfig.__dataclass_fields__))
        ev = EventsConfig()
        for name, low, high in (("timeout", 0.1, 300), ("wsdl_timeout", 0.1, 300), ("ttl", 0.1, 86400),
                                ("retry_initial", 0.01, 60), ("retry_max", 0.01, 3600)):
            setattr(ev, name, r.get(em, name, ep, float, getattr(ev, name),
                                    check=lambda v, lo=low, hi=high: None if lo <= v <= hi else
                                    f"must be between {lo:g} and {hi:g} seconds"))
        for name, low, high in (("queue_size", 1, 1_000_000), ("release_after_99", 1, 1_000_000)):
            setattr(ev, name, r.get(em, name, ep, int, getattr(ev, name),
                                    check=lambda v, lo=low, hi=high: None if lo <= v <= hi else
                                    f"must be between {lo} and {hi}"))
        link.events = ev
        cfg.links.append(link)
    return cfg


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    return parse(data, str(path))
