"""The gateway's YAML configuration, validated with the key and line of every mistake.

The keys every link has live here; the keys of one PABX driver are read by that driver
(``pabx/<name>/options.py``), picked by ``pabx.driver`` from the registry (``pabx.DRIVERS``).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import callcentre_options
from .ans import options as protocol_options
from .configread import ConfigError, Map, Reader, between, listen_problem, load_yaml, split_listen
from .networks import parse_network, parse_networks
from .core.dialler import NO_DIALLER_RULE, DiallerRule
from .core.pauses import NO_PAUSE_REASONS, NO_WRAP_UP, PauseReasons, WrapUp
from .pabx import DRIVERS
from .supervisor import options as supervisor_options
from .tls import TlsConfig, ca_file_problem, cert_file_problem, tls_problem

__all__ = ["Config", "ConfigError", "DEFAULT_CONFIG", "LinkConfig", "load", "parse", "split_listen"]

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


@dataclass(frozen=True)
class HostAllow:
    """Hosts events may be posted to: networks (CIDRs, addresses) and host names."""

    networks: tuple = ()
    names: tuple[str, ...] = ()


@dataclass
class PabxConfig:
    """A link's pabx section: the keys every driver has, and ``options``, the driver's own."""

    driver: str = "digitro"
    timeout: float = 5.0
    allow: tuple | None = None      # networks allowed to post to the driver's endpoints; None = its peer's addresses
    keepalive: float = 10.0         # seconds between keep-alives
    keepalive_timeout: float = 10.0 # never shorter than 10 s: a busy PABX must not look dead
    grace: float = 30.0             # down this long before SystemStatus / queryAgentState tell Protheus
    reconnect_max: float = 30.0     # cap of the reconnect backoff
    quiet_call: float = 300.0       # a call without news this long is checked against the PABX
    concurrency: int = 16           # requests in flight toward the PABX while it is caught up (reconnect, resync)
    options: Any = None             # the driver's own options (pabx/<driver>/options.py)


COMMON_PABX_KEYS = frozenset({"driver", "timeout", "allow", "keepalive", "keepalive_timeout", "grace",
                              "reconnect_max", "quiet_call", "concurrency"})


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
    wrap_up: WrapUp = NO_WRAP_UP                    # after-call work, then ready by itself (callcentre_options.py)
    pause_reasons: PauseReasons = NO_PAUSE_REASONS  # with default_pause_reason, for Protheus' NotReady
    dialler: DiallerRule = NO_DIALLER_RULE          # which calls a dialler delivered (CALLTYPE 3)


@dataclass
class SimulatorConfig:
    """The embedded simulated NGC. Its options are read by the simulator itself (sim/digitro), when it
    starts or at check-config: production code never loads it."""

    enabled: bool = False
    listen: str = "127.0.0.1:2551"
    options: dict[str, Any] = field(default_factory=dict)
    where: str = ""                 # "file:line" of simulator.options, for the simulator's error messages


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
    protocol: protocol_options.ProtocolConfig | None = None   # ANS attendance protocols; None = off
    supervisor: supervisor_options.SupervisorConfig | None = None   # the supervisor's board; None = off
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
    return parse_networks(["127.0.0.0/8", "::1"])


def tls_of(cfg: Config, lc: LinkConfig) -> TlsConfig | None:
    """The certificate of ``lc``'s listener: its own ``tls`` (with its own ``listen``) or the top-level one."""
    return lc.tls or cfg.tls


def scheme(cfg: Config, lc: LinkConfig) -> str:
    return "https" if tls_of(cfg, lc) else "http"


def _path_problem(v: str) -> str | None:
    if not v.startswith("/") or v.endswith("/") or "?" in v:
        return f"{v!r} must start with '/', not end with '/', and have no query"
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", v):
        return f"{v!r} may hold letters, digits and . _ ~ - / only"
    return None


def _text_items(r: Reader, m: Map, key: str, path: str, what: str, plural: str,
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


def _networks(r: Reader, m: Map, key: str, path: str) -> tuple | None:
    """An address list: CIDRs or single addresses, as a list or one comma-separated string; None when absent."""
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


def _host_allow(r: Reader, m: Map, key: str, path: str) -> HostAllow | None:
    """``eventing_allow``: CIDRs, addresses or host names that Protheus' eventing URLs may point at."""
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


def _tls(r: Reader, m: Map, key: str, path: str) -> TlsConfig | None:
    """``tls: {cert: FILE, key: FILE, password: ...}``, the files read and matched at load."""
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


def _pabx(r: Reader, pm: Map, pp: str, link_id: int) -> PabxConfig:
    """The keys every driver has, then the driver's own, read by the driver."""
    px = PabxConfig()
    px.driver = r.get(pm, "driver", pp, str, px.driver, check=lambda v: None if v in DRIVERS else
                      f"unknown driver {v!r}; available: {', '.join(sorted(DRIVERS))}")
    spec = DRIVERS[px.driver]
    r.check_keys(pm, pp, set(COMMON_PABX_KEYS | spec.keys))
    px.timeout = r.get(pm, "timeout", pp, float, px.timeout, check=between(0.1, 60))
    for name, low, high in (("keepalive", 0.05, 3600), ("keepalive_timeout", 10, 300), ("grace", 0, 3600),
                            ("reconnect_max", 0.05, 3600), ("quiet_call", 0.05, 86400)):
        setattr(px, name, r.get(pm, name, pp, float, getattr(px, name), check=between(low, high)))
    px.concurrency = r.get(pm, "concurrency", pp, int, px.concurrency, check=between(1, 256, "requests"))
    px.allow = _networks(r, pm, "allow", pp)
    px.options = spec.parse(r, pm, pp, link_id)
    return px


def parse(data: Any, source: str = "<config>") -> Config:
    r = Reader(source)
    root = r.mapping(data, "(top level)")
    r.check_keys(root, "", {"tls", "listen", "max_body", "client_timeout", "log_level", "links", "simulator",
                            "logging", "state_file", "status_allow", "eventing_allow", "protocol",
                            "supervisor"})
    cfg = Config(source=source)
    cfg.state_file = r.get(root, "state_file", "", str, default_state_file(source))
    cfg.listen = r.get(root, "listen", "", str, cfg.listen, check=listen_problem)
    cfg.max_body = r.get(root, "max_body", "", int, cfg.max_body,
                         check=lambda v: None if 1024 <= v <= 16 * 1024 * 1024 else "must be between 1024 and 16777216")
    cfg.client_timeout = r.get(root, "client_timeout", "", float, cfg.client_timeout, check=between(1, 300))
    cfg.log_level = r.get(root, "log_level", "", str, cfg.log_level,
                          check=lambda v: None if v.lower() in ("debug", "info", "warning", "error") else
                          "must be debug, info, warning or error")

    cfg.tls = _tls(r, root, "tls", "")
    cfg.protocol = protocol_options.parse(r, root)
    cfg.supervisor = supervisor_options.parse(r, root)
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
    line = getattr(sim, "lines", {}).get("options") or getattr(sim, "line", 0)
    cfg.simulator = SimulatorConfig(
        enabled=r.get(sim, "enabled", "simulator", bool, False),
        listen=r.get(sim, "listen", "simulator", str, "127.0.0.1:2551", check=listen_problem),
        options=dict(r.mapping(sim.get("options"), "simulator.options", sim, "options")),
        where=f"{source}:{line}" if line else source,
    )

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
                               "eventing_allow", *callcentre_options.KEYS})
        if "link_id" not in m:
            raise r.fail(m, "", path, "link_id is required: the K4_LINKID of the Protheus SK4 row of this link")
        link = LinkConfig(link_id=r.get(m, "link_id", path, int, 0,
                                        check=lambda v: None if v > 0 else "must be a positive integer"))
        if link.link_id in seen_ids:
            raise r.fail(m, "link_id", f"{path}.link_id", f"link_id {link.link_id} is already used by {seen_ids[link.link_id]}")
        seen_ids[link.link_id] = path
        link.name = r.get(m, "name", path, str, f"link {link.link_id}")
        link.command_path = r.get(m, "command_path", path, str, DEFAULT_COMMAND_PATH, check=_path_problem)
        link.listen = r.get(m, "listen", path, str, "", check=listen_problem)
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

        link.pabx = _pabx(r, r.mapping(m.get("pabx"), f"{path}.pabx", m, "pabx"), f"{path}.pabx", link.link_id)
        link.wrap_up = callcentre_options.wrap_up(r, m, path)
        link.pause_reasons = callcentre_options.pause_reasons(r, m, path)
        link.dialler = callcentre_options.dialler(r, m, path)

        em = r.mapping(m.get("events"), f"{path}.events", m, "events")
        ep = f"{path}.events"
        r.check_keys(em, ep, set(EventsConfig.__dataclass_fields__))
        ev = EventsConfig()
        for name, low, high in (("timeout", 0.1, 300), ("wsdl_timeout", 0.1, 300), ("ttl", 0.1, 86400),
                                ("retry_initial", 0.01, 60), ("retry_max", 0.01, 3600), ("report_every", 1, 86400)):
            setattr(ev, name, r.get(em, name, ep, float, getattr(ev, name), check=between(low, high)))
        for name, low, high in (("queue_size", 1, 1_000_000), ("release_after_99", 1, 1_000_000)):
            setattr(ev, name, r.get(em, name, ep, int, getattr(ev, name), check=between(low, high, "")))
        ev.ca_file = r.get(em, "ca_file", ep, str, "", check=ca_file_problem)
        link.events = ev
        cfg.links.append(link)
    return cfg


def load(path: str | Path) -> Config:
    data, source = load_yaml(path)
    return parse(data, source)
