"""Who is asking: the session cookie, or a trusted reverse proxy's user header; and whether a POST may
change anything (its CSRF token, its Origin).

The reverse proxy's header is believed only when the TCP peer is one of ``trusted_proxies``, and only
for a user listed in ``users`` (so one list says who may supervise, and the audit log names people the
config knows). A proxy user gets a server-side session too, for its CSRF token.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from ..networks import peer_address
from ..ratelimit import OncePer
from . import passwords
from .options import PROXY_ONLY, SupervisorConfig
from .sessions import Session, Sessions

log = logging.getLogger("smartcti_gateway.supervisor")

BASE = "/supervisor"
COOKIE = "smartcti_supervisor"
CSRF_HEADER = "X-CSRF-Token"
MAX_PASSWORD = 1024


@dataclass
class Identity:
    user: str
    session: Session
    new: bool = False        # a session made now (a proxy user): its cookie goes on this answer


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _in(ip, networks) -> bool:
    return ip is not None and any(ip.version == n.version and ip in n for n in networks)


class Auth:
    def __init__(self, cfg: SupervisorConfig, sessions: Sessions):
        self.cfg = cfg
        self.sessions = sessions
        self._checks = asyncio.Semaphore(2)   # scrypt takes 16 MiB each: a flood of logins queues here
        self._ignored = OncePer(60.0)

    # ------------------------------------------------------------- addresses
    def allowed(self, request: web.Request) -> bool:
        return self.cfg.allow is None or _in(peer_address(request.remote), self.cfg.allow)

    def from_proxy(self, request: web.Request) -> bool:
        return bool(self.cfg.trusted_proxies) and _in(peer_address(request.remote), self.cfg.trusted_proxies)

    def client_address(self, request: web.Request) -> str:
        """The address to log and rate-limit: the TCP peer, or behind a trusted proxy the nearest address
        of X-Forwarded-For that is not one of the proxies."""
        peer = request.remote or "(unknown)"
        if not self.from_proxy(request):
            return peer
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        for hop in reversed(hops):
            ip = peer_address(hop)
            if ip is None:
                break
            if not _in(ip, self.cfg.trusted_proxies):
                return str(ip)
        return peer

    def secure(self, request: web.Request) -> bool:
        return request.secure or (self.from_proxy(request) and
                                  request.headers.get("X-Forwarded-Proto", "").lower() == "https")

    # --------------------------------------------------------------- identity
    def identify(self, request: web.Request, *, touch: bool = True) -> Identity | None:
        """The signed-in supervisor of this request, or None. Refused (403): a trusted proxy named a user
        the config does not list."""
        session = self.sessions.get(request.cookies.get(COOKIE), touch=touch)
        header = self.cfg.trusted_header
        named = request.headers.get(header, "").strip() if header else ""
        if named and not self.from_proxy(request):
            more = self._ignored(request.remote or "")
            if more is not None:
                log.warning("supervisor: ignored the %s header from %s, which is not in "
                            "supervisor.trusted_proxies%s", header, request.remote,
                            f" ({more} more since the last message)" if more else "")
            named = ""
        if not named:
            return Identity(session.user, session) if session is not None else None
        if named not in self.cfg.users:
            raise Refused(403, f"the reverse proxy signed in {named[:64]!r}, who is not one of supervisor.users")
        if session is not None and session.user == named and session.via == "proxy":
            return Identity(named, session)
        return Identity(named, self.sessions.create(named, via="proxy", lang=session.lang if session else ""),
                        new=True)

    async def check_password(self, user: str, password: str) -> bool:
        """Constant work whether the user exists or not; the hash is checked off the event loop."""
        hashed = self.cfg.users.get(user, "")
        password = password[:MAX_PASSWORD]
        async with self._checks:
            if not hashed or hashed == PROXY_ONLY:
                return await asyncio.to_thread(passwords.check_nobody, password)
            return await asyncio.to_thread(passwords.verify_password, password, hashed)

    # ----------------------------------------------------------------- CSRF
    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode("utf-8", "replace"), session.csrf.encode())

    def origin_problem(self, request: web.Request) -> str | None:
        """Why this POST looks cross-origin, or None. No Origin (a script, an old browser) passes: the CSRF
        token still has to be right."""
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return "a cross-site request (Sec-Fetch-Site)"
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        ours = {request.host.lower()}
        if self.from_proxy(request):
            ours.update(h.strip().lower() for h in request.headers.get("X-Forwarded-Host", "").split(",") if h)
        if not netloc or netloc not in ours:
            return f"Origin {origin[:100]!r} is not this server ({', '.join(sorted(ours))})"
        return None

    # --------------------------------------------------------------- cookie
    def set_cookie(self, response: web.StreamResponse, request: web.Request, session: Session) -> None:
        response.set_cookie(COOKIE, session.id, path=BASE, httponly=True, samesite="Strict",
                            secure=self.secure(request))

    @staticmethod
    def clear_cookie(response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path=BASE)
