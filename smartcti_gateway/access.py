"""Who may call the gateway: address lists on each endpoint, and where Protheus' events may be posted.

* ``Policy``: the networks allowed on one endpoint (a link's SmartCTIWSCommand
  endpoint, a link's PABX events endpoint), checked against the TCP peer
  (``request.remote``; X-Forwarded-For is never read). IPv4-mapped IPv6
  peers (``::ffff:10.0.0.1``) match IPv4 rules.
* ``AccessGuard``: one listener's route path -> Policy, checked by the
  wrapper (``guarded``) of each protected handler. A refused request gets HTTP 403 (a SOAP Fault on the command
  endpoint) and one WARNING per address per minute, so a scan cannot flood
  the log.
* ``EventingAllow``: the hosts a link may post Protheus' events to (``eventing_allow``).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Callable
from urllib.parse import urlsplit

from aiohttp import web

from .config import Config, LinkConfig
from .networks import Network, is_ip, opens_all, peer_address, resolve
from .pabx.base import Driver
from .protheus.soap import CLIENT, fault
from .ratelimit import OncePer
from .urls import redact_url

log = logging.getLogger("smartcti_gateway.access")


class Policy:
    """The addresses allowed on one endpoint. ``networks is None``: open to all."""

    CACHE = 4096          # recent decisions kept, by peer address string
    REFRESH_EVERY = 30.0  # a name-derived list (the PABX's host) is resolved again at most this often

    def __init__(self, networks: tuple[Network, ...] | None, *, link_id: int, endpoint: str, setting: str,
                 hostname: str = "", clock: Callable[[], float] = time.monotonic):
        self.networks = networks
        self.link_id = link_id
        self.endpoint = endpoint        # "command" or "events"
        self.setting = setting          # the config key that lists the addresses, for messages
        self.hostname = hostname        # set when the list is the resolution of this name
        self.clock = clock
        self._cache: dict[str, bool] = {}
        self._resolved_at = clock()

    @property
    def open(self) -> bool:
        return self.networks is None

    def allows(self, remote: str | None) -> bool:
        if self.networks is None:
            return True
        if remote is None:
            return False
        known = self._cache.get(remote)
        if known is None:
            ip = peer_address(remote)
            known = ip is not None and any(ip.version == n.version and ip in n for n in self.networks)
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[remote] = known
        return known

    async def refresh(self) -> bool:
        """Resolve ``hostname`` again (at most every REFRESH_EVERY s); True when the list changed."""
        if not self.hostname or self.clock() - self._resolved_at < self.REFRESH_EVERY:
            return False
        self._resolved_at = self.clock()
        try:
            networks = await resolve(self.hostname)
        except OSError:
            return False
        if set(networks) == set(self.networks or ()):
            return False
        log.info("link %d: %s now resolves to %s; events accepted from there", self.link_id, self.hostname,
                 ", ".join(str(n.network_address) for n in networks))
        self.networks = networks
        self._cache.clear()
        return True

    def refusal(self, remote: str | None) -> str:
        what = "call" if self.endpoint == "command" else "post PABX events to"
        return f"address {remote or '(unknown)'} is not allowed to {what} link {self.link_id}"


class EventingAllow:
    """Where one link may post Protheus events (``eventing_allow``): the host of an eventing URL must be
    one of the names, or every address it resolves to must be in one of the networks."""

    def __init__(self, networks: tuple[Network, ...], names: tuple[str, ...], setting: str):
        self.networks = networks
        self.names = frozenset(names)
        self.setting = setting

    async def problem(self, url: str) -> str:
        """Why events may not go to ``url``, or ""."""
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if host in self.names:
            return ""
        refusal = (f"the host {host!r} of ipaddress {redact_url(url)[:120]!r} is not in {self.setting}; add it "
                   f"there if that Protheus server is yours")
        if not self.networks:
            return refusal
        try:
            resolved = await resolve(host)
        except (OSError, UnicodeError, ValueError):
            return f"cannot resolve {host!r}, the host of ipaddress {redact_url(url)[:120]!r}; {self.setting} is set"
        for net in resolved:
            ip = net.network_address
            if not any(ip.version == n.version and ip in n for n in self.networks):
                return refusal
        return ""


def eventing_allow(cfg: Config, lc: LinkConfig) -> EventingAllow | None:
    """The check of ``lc``'s eventing URLs, or None when any http(s) URL may be used."""
    allow = lc.eventing_allow if lc.eventing_allow is not None else cfg.eventing_allow
    if allow is None:
        return None
    index, _ = _where(cfg, lc)
    setting = f"links[{index}].eventing_allow" if lc.eventing_allow is not None else "eventing_allow"
    return EventingAllow(allow.networks, allow.names, setting)


def _where(cfg: Config, lc: LinkConfig) -> tuple[int, str]:
    index = next(i for i, l in enumerate(cfg.links) if l is lc)
    return index, cfg.source or "the config"


def command_policy(cfg: Config, lc: LinkConfig) -> Policy:
    """Who may call ``lc``'s SmartCTIWSCommand; warns at start when that is everybody."""
    index, source = _where(cfg, lc)
    setting = f"links[{index}].allow"
    if not lc.allow:
        log.warning("link %d: its command endpoint %s accepts commands from any address; set %s in %s to "
                    "the Protheus servers' addresses (e.g. allow: [10.0.0.0/24, 192.168.10.5])",
                    lc.link_id, lc.command_path, setting, source)
        return Policy(None, link_id=lc.link_id, endpoint="command", setting=setting)
    if opens_all(lc.allow):
        log.info("link %d: %s opens the command endpoint to all addresses", lc.link_id, setting)
    return Policy(tuple(lc.allow), link_id=lc.link_id, endpoint="command", setting=setting)


async def events_policy(cfg: Config, lc: LinkConfig, driver: Driver) -> Policy:
    """Who may post to ``lc``'s PABX endpoints: ``pabx.allow``, or else the addresses of the driver's peer."""
    index, source = _where(cfg, lc)
    setting = f"links[{index}].pabx.allow"
    paths = ", ".join(r.path for r in driver.routes())
    if lc.pabx.allow is not None:
        if not lc.pabx.allow:
            log.warning("link %d: %s is empty: the PABX events endpoint %s accepts events from any address",
                        lc.link_id, setting, paths)
            return Policy(None, link_id=lc.link_id, endpoint="events", setting=setting)
        return Policy(tuple(lc.pabx.allow), link_id=lc.link_id, endpoint="events", setting=setting)
    host = driver.peer_host
    try:
        networks = await resolve(host)
    except (OSError, UnicodeError) as e:
        whose = f"the host of links[{index}].pabx.{driver.peer_key}" if driver.peer_key else f"the {driver.peer_name}'s host"
        log.warning("link %d: cannot resolve %r, %s (%s): the PABX events endpoint %s accepts events from any "
                    "address; set %s in %s to the %s's addresses",
                    lc.link_id, host, whose, e, paths, setting, source, driver.peer_name)
        return Policy(None, link_id=lc.link_id, endpoint="events", setting=setting)
    return Policy(networks, link_id=lc.link_id, endpoint="events", setting=setting,
                  hostname="" if is_ip(host) else host)


# --------------------------------------------------------------- the guard
class AccessGuard:
    """Route path -> Policy for one listener (aiohttp application).

    The protected routes' handlers are wrapped (``guarded``) rather than the application given a
    middleware: aiohttp's middleware chain cost 14 µs of CPU per command (scripts/bench), the wrapper
    one dictionary lookup. At start-up the guard refuses to serve a protected path whose handler it
    does not wrap, so no route is left open by mistake."""

    LOG_EVERY = 60.0     # one WARNING per refused address per this many seconds

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.routes: dict[str, tuple[Policy, bool]] = {}   # path -> (policy, answer with a SOAP Fault)
        self.refused = 0
        self._once = OncePer(self.LOG_EVERY, clock=clock)

    def protect(self, paths: Iterable[str], policy: Policy, *, soap: bool = False) -> None:
        for path in paths:
            self.routes[path] = (policy, soap)

    def guarded(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        """``handler`` behind the policy of the path it is served on (none protected: it just runs)."""
        routes = self.routes

        async def guarded(request: web.Request) -> web.StreamResponse:
            resource = request.match_info.route.resource
            entry = routes.get(resource.canonical) if resource is not None else None
            if entry is None:
                return await handler(request)
            policy, soap = entry
            remote = request.remote
            if policy.allows(remote) or (policy.hostname and await policy.refresh() and policy.allows(remote)):
                return await handler(request)
            return self._refuse(request, policy, soap, remote)

        guarded.guarded_by = self         # type: ignore[attr-defined]
        return guarded

    def install(self, app: web.Application) -> None:
        async def every_protected_route_is_guarded(app: web.Application) -> None:
            for resource in app.router.resources():
                if resource.canonical not in self.routes:
                    continue
                for route in resource:
                    if getattr(route.handler, "guarded_by", None) is not self:
                        raise RuntimeError(f"{route.method} {resource.canonical} is protected by an access list "
                                           f"but its handler is not wrapped by AccessGuard.guarded")
        app.on_startup.append(every_protected_route_is_guarded)

    def _refuse(self, request: web.Request, policy: Policy, soap: bool, remote: str | None) -> web.Response:
        self.refused += 1
        message = policy.refusal(remote)
        self._log(remote or "(unknown)", policy, request.path)
        if soap and request.method == "POST":
            return web.Response(status=403, body=fault(CLIENT, message),
                                headers={"Content-Type": "text/xml; charset=UTF-8"})
        return web.Response(status=403, text=message + "\n")

    def _log(self, address: str, policy: Policy, path: str) -> None:
        more = self._once(address)
        if more is None:
            return
        where = "command endpoint" if policy.endpoint == "command" else "PABX events endpoint"
        log.warning("link %d: refused %s to its %s %s: not in %s%s%s", policy.link_id, address, where, path,
                    policy.setting, f" (resolved from {policy.hostname})" if policy.hostname else "",
                    f"; {more} more refusal(s) of this address since the last message" if more else "")


def install(app: web.Application) -> AccessGuard:
    guard = AccessGuard()
    guard.install(app)
    return guard


async def protect_link(guard: AccessGuard, cfg: Config, lc: LinkConfig, command_routes: list[str],
                       driver: Driver) -> None:
    """The access lists of ``lc``'s command endpoint (``command_routes``: every URL shape) and of the
    endpoints its PABX driver posts to, if it has any."""
    guard.protect(command_routes, command_policy(cfg, lc), soap=True)
    routes = driver.routes()
    if routes:
        guard.protect([r.path for r in routes], await events_policy(cfg, lc, driver))
