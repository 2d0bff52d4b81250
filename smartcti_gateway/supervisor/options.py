"""The ``supervisor:`` section of the config (docs/supervisor.md), checked at load with the line of every
mistake. No section, no board: /supervisor is not served."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..configread import Map, Reader, between
from ..networks import opens_all, parse_networks
from .passwords import hash_problem

KEYS = {"users", "phones", "trusted_header", "trusted_proxies", "session_minutes", "service_level_seconds",
        "audit_log", "allow"}
PROXY_ONLY = "proxy"      # a user's value: signs in only through the reverse proxy (trusted_header)
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
FORBIDDEN_HEADERS = {"host", "cookie", "origin", "referer", "content-type", "content-length", "authorization",
                     "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-csrf-token"}


@dataclass
class SupervisorConfig:
    users: dict[str, str] = field(default_factory=dict, repr=False)   # name -> scrypt hash, or "proxy"
    phones: dict[str, str] = field(default_factory=dict)    # name -> the supervisor's own extension (listen...)
    trusted_header: str = ""         # e.g. X-Remote-User; "" = only the login form
    trusted_proxies: tuple = ()      # the reverse proxies whose trusted_header is believed
    session_minutes: float = 480.0   # idle minutes before a session ends (each request slides it)
    service_level_seconds: float = 20.0
    audit_log: str = ""              # "" = <logging.dir>/supervisor-audit.log
    allow: tuple | None = None       # who may reach /supervisor at all (TCP peer); None = any address


def _networks(r: Reader, m: Map, key: str, path: str) -> tuple | None:
    raw = m.get(key)
    if raw is None:
        return None
    items = [raw] if isinstance(raw, str) else raw
    full = f"{path}.{key}"
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise r.fail(m, key, full, "must be a list of addresses or networks, e.g. [10.0.0.5, 10.1.0.0/24]")
    try:
        return parse_networks([r.expand(m, key, full, i) for i in items])
    except ValueError as e:
        raise r.fail(m, key, full, str(e)) from None


def _names(r: Reader, m: Map, key: str, path: str) -> Map:
    full = f"{path}.{key}"
    um = r.mapping(m.get(key), full, m, key)
    for name in um:
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            raise r.fail(um, str(name), f"{full}.{name}", "a user name has letters, digits and . _ @ - only "
                                                        "(at most 64, starting with a letter or digit)")
    return um


def parse(r: Reader, root: Map) -> SupervisorConfig | None:
    m = r.section(root, "supervisor", KEYS)
    if m is None:
        return None
    path = "supervisor"
    sc = SupervisorConfig()

    sc.trusted_header = r.get(m, "trusted_header", path, str, "", check=lambda v: None if not v or (
        HEADER_NAME.fullmatch(v) and v.lower() not in FORBIDDEN_HEADERS) else
        "must be the name of the header your reverse proxy sets to the signed-in user, e.g. X-Remote-User")
    sc.trusted_proxies = _networks(r, m, "trusted_proxies", path) or ()
    if sc.trusted_header and not sc.trusted_proxies:
        raise r.fail(m, "trusted_header", f"{path}.trusted_header",
                     "needs trusted_proxies: the addresses of the reverse proxy, the only ones whose "
                     f"{sc.trusted_header} header is believed")
    if opens_all(sc.trusted_proxies):
        raise r.fail(m, "trusted_proxies", f"{path}.trusted_proxies",
                     "must not hold every address: anybody could then name himself in the trusted header")

    um = _names(r, m, "users", path)
    if not um:
        raise r.fail(m, "users", f"{path}.users", "is required: at least one supervisor, as name: \"<hash>\" "
                                                  "(make the hash with: smartcti-gateway hash-password)")
    for name in um:
        where = f"{path}.users.{name}"
        value = r.get(um, name, f"{path}.users", str, "")
        if value == PROXY_ONLY:
            if not sc.trusted_header:
                raise r.fail(um, name, where, f"{PROXY_ONLY!r} means this user signs in only through the reverse "
                                              "proxy, but supervisor.trusted_header is not set")
        else:
            problem = hash_problem(value)
            if problem:
                raise r.fail(um, name, where, f"the password of user {name!r} {problem}; make one with "
                                              f"smartcti-gateway hash-password (or write \"{PROXY_ONLY}\" for a "
                                              "user who signs in only through the reverse proxy)")
        sc.users[name] = value

    pm = _names(r, m, "phones", path)
    for name in pm:
        where = f"{path}.phones.{name}"
        if name not in sc.users:
            raise r.fail(pm, name, where, f"{name!r} is not one of supervisor.users")
        sc.phones[name] = r.get(pm, name, f"{path}.phones", str, "", check=lambda v: None if re.fullmatch(
            r"[A-Za-z0-9*#/@._-]{1,64}", v) else "must be the supervisor's own extension, e.g. \"2099\"")

    sc.session_minutes = r.get(m, "session_minutes", path, float, sc.session_minutes,
                               check=between(1, 7 * 24 * 60, "minutes"))
    sc.service_level_seconds = r.get(m, "service_level_seconds", path, float, sc.service_level_seconds,
                                     check=between(1, 3600))
    sc.audit_log = r.get(m, "audit_log", path, str, "", check=lambda v: None if v.strip() == v and "\n" not in v
                         else "must be a file path")
    sc.allow = _networks(r, m, "allow", path)
    return sc
