"""Who may call the gateway, and over what: address lists, TLS, and URLs shown without their passwords.

* ``Policy``: the networks allowed on one endpoint (a link's SmartCTIWSCommand
  endpoint, a link's PABX events endpoint), checked against the TCP peer
  (``request.remote``; X-Forwarded-For is never read). IPv4-mapped IPv6
  peers (``::ffff:10.0.0.1``) match IPv4 rules.
* ``AccessGuard``: the aiohttp middleware of one listener, route path ->
  Policy. A refused request gets HTTP 403 (a SOAP Fault on the command
  endpoint) and one WARNING per address per minute, so a scan cannot flood
  the log.
* ``server_context`` / ``client_context``: optional HTTPS on the listener;
  HTTPS towards Protheus and the PABX is always verified, with an optional
  extra CA bundle (``ca_file``) for a site's own CA or a self-signed server.
* ``redact_url``: a URL fit for a log line or a report (no password).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable, Union
from urllib.parse import urlsplit

from aiohttp import web

from .ratelimit import OncePer

if TYPE_CHECKING:
    from .config import Config, LinkConfig, TlsConfig

log = logging.getLogger("smartcti_gateway.access")

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_LIST_SPLIT = re.compile(r"[\s,;]+")


# ------------------------------------------------------------------ secrets
_USERINFO = re.compile(r"^(?P<pre>(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//|)(?P<info>[^/?#]*)@")
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:[^=&;#]*(?:pass|pwd|senha|secret|token|key|auth)[^=&;#]*)=)[^&;#]*")


def redact_url(url: str) -> str:
    """``url`` without its secrets: ``http://user:pass@ngc/RPC2`` -> ``http://user:***@ngc/RPC2``.

    The password of the user-info part and the value of query keys that look
    like secrets (password, pwd, senha, token, key, secret, auth) become
    ``***``. Never raises, whatever the string.
    """
    if not isinstance(url, str):
        return url
    if "@" in url:
        m = _USERINFO.match(url)
        if m and ":" in m.group("info"):
            user = m.group("info").partition(":")[0]
            url = f"{m.group('pre')}{user}:***@{url[m.end():]}"
    if "=" in url:
        url = _SECRET_QUERY.sub(r"\1***", url)
    return url


# ----------------------------------------------------------------- networks
def _plain(net: Network) -> Network:
    """An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) as the IPv4 network it means."""
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(_MAPPED):  # type: ignore[arg-type]
        return ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


def parse_network(text: str) -> Network:
    """``"10.0.0.0/8"``, ``"192.168.10.5"``, ``"::1"`` -> a network; ValueError saying what is wrong."""
    t = text.strip()
    try:
        return _plain(ipaddress.ip_network(t, strict=True))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(t, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or network (examples: 10.0.0.0/8, 192.168.10.5, "
                         f"'::1'; host names are not accepted)") from None
    raise ValueError(f"{text!r} has bits set after the /{loose.prefixlen} prefix: write {loose} for the "
                     f"network, or {t.partition('/')[0]} alone for one address")


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Each value may hold several entries separated by commas or blanks; duplicates are dropped."""
    out: dict[Network, None] = {}
    for value in values:
        for part in _LIST_SPLIT.split(value.strip()):
            if part:
                out[parse_network(part)] = None
    return tuple(out)


def peer_address(remote: str | None) -> Address | None:
    """``request.remote`` as an address; an IPv4-mapped IPv6 peer as IPv4; None if it is not an IP."""
    if not remote:
        return None
    try:
        ip = ipaddress.ip_address(remote.partition("%")[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
        return ip.ipv4_mapped  # type: ignore[union-attr]
    return ip


def _opens_all(networks: tuple[Network, ...]) -> bool:
    return any(n.prefixlen == 0 for n in networks)


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


async def resolve(host: str) -> tuple[Network, ...]:
    """Every address of ``host`` (an IP literal is itself), as /32 or /128 networks. OSError if none."""
    try:
        return (_plain(ipaddress.ip_network(host.strip("[]"))),)
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    nets = {_plain(ipaddress.ip_network(info[4][0].partition("%")[0])): None for info in infos}
    if not nets:
        raise OSError(f"{host} has no address")
    return tuple(nets)


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
    if _opens_all(lc.allow):
        log.info("link %d: %s opens the command endpoint to all addresses", lc.link_id, setting)
    return Policy(tuple(lc.allow), link_id=lc.link_id, endpoint="command", setting=setting)


async def events_policy(cfg: Config, lc: LinkConfig) -> Policy:
    """Who may post PABX events to ``lc``: ``pabx.allow``, or else the addresses of ``pabx.url``'s host."""
    index, source = _where(cfg, lc)
    setting = f"links[{index}].pabx.allow"
    if lc.pabx.allow is not None:
        if not lc.pabx.allow:
            log.warning("link %d: %s is empty: the PABX events endpoint %s accepts events from any address",
                        lc.link_id, setting, lc.events_path)
            return Policy(None, link_id=lc.link_id, endpoint="events", setting=setting)
        return Policy(tuple(lc.pabx.allow), link_id=lc.link_id, endpoint="events", setting=setting)
    host = urlsplit(lc.pabx.url).hostname or ""
    try:
        networks = await resolve(host)
    except (OSError, UnicodeError) as e:
        log.warning("link %d: cannot resolve %r, the host of links[%d].pabx.url (%s): the PABX events endpoint "
                    "%s accepts events from any address; set %s in %s to the NGC's addresses",
                    lc.link_id, host, index, e, lc.events_path, setting, source)
        return Policy(None, link_id=lc.link_id, endpoint="events", setting=setting)
    return Policy(networks, link_id=lc.link_id, endpoint="events", setting=setting,
                  hostname="" if _is_ip(host) else host)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.partition("%")[0])
        return True
    except ValueError:
        return False


# --------------------------------------------------------------- middleware
class AccessGuard:
    """Route path -> Policy for one listener (aiohttp application)."""

    LOG_EVERY = 60.0     # one WARNING per refused address per this many seconds

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.routes: dict[str, tuple[Policy, bool]] = {}   # path -> (policy, answer with a SOAP Fault)
        self.refused = 0
        self._once = OncePer(self.LOG_EVERY, clock=clock)

    def protect(self, paths: Iterable[str], policy: Policy, *, soap: bool = False) -> None:
        for path in paths:
            self.routes[path] = (policy, soap)

    def install(self, app: web.Application) -> None:
        routes = self.routes

        @web.middleware
        async def access(request: web.Request, handler):
            resource = request.match_info.route.resource
            entry = routes.get(resource.canonical) if resource is not None else None
            if entry is None:
                return await handler(request)
            policy, soap = entry
            remote = request.remote
            if policy.allows(remote) or (policy.hostname and await policy.refresh() and policy.allows(remote)):
                return await handler(request)
            return self._refuse(request, policy, soap, remote)

        app.middlewares.append(access)

    def _refuse(self, request: web.Request, policy: Policy, soap: bool, remote: str | None) -> web.Response:
        self.refused += 1
        message = policy.refusal(remote)
        self._log(remote or "(unknown)", policy, request.path)
        if soap and request.method == "POST":
            from .protheus.soap import CLIENT, fault
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


def fault_note(text: str) -> str:
    """`` (faultstring)`` of a SOAP Fault answer, for the self-test's report; "" otherwise."""
    m = re.search(r"<faultstring>(.*?)</faultstring>", text or "", re.S)
    return f" ({m.group(1).strip()[:200]})" if m else ""


def install(app: web.Application) -> AccessGuard:
    guard = AccessGuard()
    guard.install(app)
    return guard


async def protect_link(guard: AccessGuard, cfg: Config, lc: LinkConfig, command_routes: list[str]) -> None:
    """The access lists of ``lc``'s command endpoint (``command_routes``: every URL shape) and PABX
    events endpoint."""
    guard.protect(command_routes, command_policy(cfg, lc), soap=True)
    guard.protect([lc.events_path], await events_policy(cfg, lc))


# ---------------------------------------------------------------------- TLS
def tls_of(cfg: Config, lc: LinkConfig) -> TlsConfig | None:
    """The certificate of ``lc``'s listener: its own ``tls`` (with its own ``listen``) or the top-level one."""
    return lc.tls or cfg.tls


def scheme(cfg: Config, lc: LinkConfig) -> str:
    return "https" if tls_of(cfg, lc) else "http"


def server_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    """The listener's TLS (1.2 or later), or None for plain HTTP."""
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert, tls.key, password=tls.password or None)
    return ctx


def client_context(ca_file: str = "") -> ssl.SSLContext | None:
    """For https URLs: the system's CAs plus ``ca_file``; None (aiohttp's verified default) without one.

    Verification (certificate chain and host name) is always on; there is no way to turn it off.
    """
    if not ca_file:
        return None
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


def self_test_context(tls: TlsConfig | None) -> ssl.SSLContext | bool:
    """For the console self-test calling our own listener at 127.0.0.1: trust exactly our certificate.

    The chain is verified against the configured certificate; the host name is not checked, since the
    certificate names the host Protheus uses, not 127.0.0.1.
    """
    if tls is None:
        return True
    ctx = ssl.create_default_context(cafile=tls.cert)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.check_hostname = False
    return ctx


def _readable(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        return f"cannot read {path!r}: {e.strerror or e}"
    return None


def cert_file_problem(path: str) -> str | None:
    return _readable(path)


def tls_problem(cert: str, key: str, password: str = "") -> str | None:
    """Why ``cert`` and ``key`` cannot serve HTTPS, or None."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key, password=password or None)
    except ssl.SSLError as e:
        return (f"{cert!r} and {key!r} cannot be used ({e.reason or e}): a PEM certificate (chain) and its "
                f"PEM private key are expected, matching each other" + (", with the right password" if password
                                                                           else ""))
    except OSError as e:
        return f"cannot read the certificate or key: {e.strerror or e}"
    return None


def ca_file_problem(path: str) -> str | None:
    """Why ``path`` is not a usable CA bundle, or None."""
    problem = _readable(path)
    if problem:
        return problem
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except ssl.SSLError as e:
        return f"{path!r} is not a PEM CA bundle ({e.reason or e})"
    return None


def requests_session(ctx: ssl.SSLContext | None = None):
    """A requests Session for zeep's WSDL reads: https verified with ``ctx`` (None: the system's CAs),
    and a redirect followed only to the same scheme (never http -> file, https -> http...)."""
    import requests
    from requests.adapters import HTTPAdapter

    class _SameScheme(requests.Session):
        def get_redirect_target(self, resp):
            target = super().get_redirect_target(resp)
            if target and urlsplit(target).scheme and urlsplit(target).scheme.lower() != \
                    urlsplit(resp.url).scheme.lower():
                log.warning("the WSDL at %s redirects to %s, another scheme: not followed",
                            redact_url(resp.url), redact_url(target)[:120])
                return None
            return target

    session = _SameScheme()
    if ctx is None:
        return session

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["ssl_context"] = ctx
            super().init_poolmanager(*args, **kwargs)

        def proxy_manager_for(self, *args, **kwargs):
            kwargs["ssl_context"] = ctx
            return super().proxy_manager_for(*args, **kwargs)

    session.mount("https://", _Adapter())
    return session
