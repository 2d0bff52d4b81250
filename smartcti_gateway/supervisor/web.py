"""The supervisor's routes under /supervisor: login and logout, the board, its event stream, its JSON
and the actions. One object for the whole gateway (its sessions are shared by every listener).

Every route answers only ``supervisor.allow`` (the TCP peer), and everything but the login form and the
static files needs a signed-in supervisor; every POST needs the session's CSRF token and, when the
browser sends one, an Origin of this server.
"""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Awaitable, Callable, Protocol
from urllib.parse import quote

from aiohttp import web

from ..core.codes import Result
from ..httpbody import BodyTimeout, read_body
from ..ratelimit import OncePer
from . import actions, i18n, pages
from .audit import AuditLog
from .auth import BASE, COOKIE, CSRF_HEADER, Auth, Identity, Refused
from .board import build, signature
from .options import SupervisorConfig
from .sessions import LoginLimiter, Sessions

log = logging.getLogger("smartcti_gateway.supervisor")

LANG_COOKIE = "smartcti_supervisor_lang"
STATIC = Path(__file__).resolve().parent / "static"
ASSET_TYPES = {"board.js": "text/javascript", "board.css": "text/css"}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
IDENTITY = web.RequestKey("supervisor_identity", object)   # the request's Identity (a proxy user's new cookie)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Source(Protocol):
    links: list


class Supervisor:
    TICK = 1.0            # the stream looks for a change this often (and sends at most one snapshot)
    HEARTBEAT = 15.0      # a comment line after this long without a snapshot, so proxies keep the stream
    MAX_STREAMS = 200

    def __init__(self, source: Source, cfg: SupervisorConfig, *, logs_dir: str | Path = "logs",
                 body_timeout: float = 15.0):
        self.source = source
        self.cfg = cfg
        self.sessions = Sessions(cfg.session_minutes)
        self.limiter = LoginLimiter()
        self.auth = Auth(cfg, self.sessions)
        self.audit = AuditLog(cfg.audit_log or Path(logs_dir) / "supervisor-audit.log")
        self.body_timeout = body_timeout
        self.tick, self.heartbeat = self.TICK, self.HEARTBEAT
        self.assets = {name: (STATIC / name).read_bytes() for name in ASSET_TYPES}
        self._closing = asyncio.Event()
        self._streams: set[asyncio.Task] = set()
        self._cached: tuple[float, dict, str] | None = None
        self._limited = OncePer(60.0)

    def add_routes(self, app: web.Application) -> None:
        for method, path, handler in (
                ("GET", BASE, self.page), ("GET", BASE + "/", self.slash),
                ("GET", BASE + "/login", self.login_form), ("POST", BASE + "/login", self.login),
                ("POST", BASE + "/logout", self.logout), ("GET", BASE + "/events", self.events),
                ("GET", BASE + "/api/board", self.api_board), ("POST", BASE + "/api/actions", self.api_action),
                ("GET", BASE + "/static/{name}", self.static)):
            app.router.add_route(method, path, self._guarded(handler, api="/api/" in path or path.endswith("events")))

    async def close(self) -> None:
        """End the event streams (a listener would wait for them otherwise) and every session."""
        self._closing.set()
        if self._streams:
            await asyncio.wait(list(self._streams), timeout=2.0)
        self.sessions.end_all()

    # ------------------------------------------------------------- plumbing
    def _guarded(self, handler: Handler, api: bool) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.auth.allowed(request):
                return _error(403, f"address {request.remote} is not in supervisor.allow", api)
            try:
                resp = await handler(request)
            except Refused as e:
                resp = _error(e.status, e.message, api)
            if not resp.prepared:
                who = request.get(IDENTITY)
                if who is not None and who.new:
                    self.auth.set_cookie(resp, request, who.session)
                for k, v in SECURITY_HEADERS.items():
                    resp.headers.setdefault(k, v)
            return resp
        return guarded

    def _who(self, request: web.Request, *, touch: bool = True) -> Identity | None:
        who = self.auth.identify(request, touch=touch)
        request[IDENTITY] = who
        return who

    def _lang(self, request: web.Request, who: Identity | None = None) -> str:
        asked = i18n.language(request.query.get("lang"))
        if asked and who is not None:
            who.session.lang = asked
        return (asked or (who.session.lang if who else "") or i18n.language(request.cookies.get(LANG_COOKIE))
                or i18n.DEFAULT)

    @staticmethod
    def _keep_lang(resp: web.StreamResponse, request: web.Request, lang: str) -> None:
        if request.cookies.get(LANG_COOKIE) != lang:
            resp.set_cookie(LANG_COOKIE, lang, path=BASE, max_age=365 * 86400, httponly=True, samesite="Strict")

    def snapshot(self) -> tuple[dict, str]:
        """The board now, computed at most once per half tick whoever asks (every stream, the API)."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= self.tick / 2:
            board = build(self.source.links, service_level_seconds=self.cfg.service_level_seconds)
            self._cached = (now, board, signature(board))
        return self._cached[1], self._cached[2]

    def _post_problem(self, request: web.Request, who: Identity, token: str | None) -> str | None:
        problem = self.auth.origin_problem(request)
        if problem is None and not self.auth.csrf_ok(who.session, token):
            problem = f"missing or wrong CSRF token (the {CSRF_HEADER} header, or the csrf form field)"
        if problem:
            log.warning("supervisor: refused a POST to %s by %s from %s: %s", request.path, who.user,
                        self.auth.client_address(request), problem)
        return problem

    async def _form(self, request: web.Request):
        async with asyncio.timeout(self.body_timeout):
            return await request.post()

    # ------------------------------------------------------------ the pages
    async def slash(self, request: web.Request) -> web.StreamResponse:
        return _redirect(BASE)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.assets:
            return web.Response(status=404, text="not found\n")
        return web.Response(body=self.assets[name], content_type=ASSET_TYPES[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def page(self, request: web.Request) -> web.StreamResponse:
        who = self._who(request)
        if who is None:
            lang = i18n.language(request.query.get("lang"))
            return _redirect(BASE + "/login" + (f"?lang={lang}" if lang else ""))
        lang = self._lang(request, who)
        board, _ = self.snapshot()
        resp = web.Response(text=pages.board_page(lang, user=who.user, csrf=who.session.csrf, board=board,
                                                  phone=self.cfg.phones.get(who.user, "")),
                            content_type="text/html", charset="utf-8")
        self._keep_lang(resp, request, lang)
        return resp

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self._who(request) is not None:
            return _redirect(BASE)
        lang = self._lang(request)
        resp = _html(pages.login_page(lang))
        self._keep_lang(resp, request, lang)
        return resp

    async def login(self, request: web.Request) -> web.StreamResponse:
        address = self.auth.client_address(request)
        lang = self._lang(request)
        t = i18n.labels(lang)
        problem = self.auth.origin_problem(request)
        if problem:
            log.warning("supervisor: refused a login from %s: %s", address, problem)
            return _html(pages.login_page(lang, message=t["refused_origin"]), 403)
        wait = self.limiter.wait(address)
        if wait:
            more = self._limited(address)
            if more is not None:
                log.warning("supervisor: login attempts from %s refused for %.0f s after %d failures%s", address,
                            wait, self.limiter.failures, f" ({more} more refused since)" if more else "")
            resp = _html(pages.login_page(lang, message=t["too_many"].format(seconds=int(wait) + 1)), 429)
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        try:
            form = await self._form(request)
        except TimeoutError:
            return _error(408, "the form did not arrive in time", False)
        lang = i18n.language(str(form.get("lang", ""))) or lang
        user = str(form.get("user", "")).strip()[:64]
        password = str(form.get("password", ""))
        failures = self.limiter.failed(address)   # counted first: attempts made at the same time count too
        if user and password and await self.auth.check_password(user, password):
            self.limiter.succeeded(address)
            old = request.cookies.get(COOKIE)
            if old:
                self.sessions.end(old)
            session = self.sessions.create(user, lang=lang)
            log.info("supervisor: %s signed in from %s", user, address)
            self.audit.write(user=user, address=address, action="login", result=0, message="signed in")
            resp = _redirect(BASE)
            self.auth.set_cookie(resp, request, session)
            self._keep_lang(resp, request, lang)
            return resp
        log.warning("supervisor: failed login for user %r from %s (%d failure(s) from there in %.0f min)",
                    user, address, failures, self.limiter.window / 60)
        self.audit.write(user=user, address=address, action="login", result=1, message="wrong user or password")
        return _html(pages.login_page(lang, message=t["bad_login"], user=user), 401)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        who = self._who(request, touch=False)
        if who is None:
            return _redirect(BASE + "/login")
        try:
            form = await self._form(request)
        except TimeoutError:
            return _error(408, "the form did not arrive in time", False)
        problem = self._post_problem(request, who, request.headers.get(CSRF_HEADER) or str(form.get("csrf", "")))
        if problem:
            return _error(403, problem, False)
        self.sessions.end(who.session.id)
        who.new = False
        log.info("supervisor: %s signed out", who.user)
        self.audit.write(user=who.user, address=self.auth.client_address(request), action="logout", result=0,
                         message="signed out")
        resp = _redirect(BASE + "/login")
        self.auth.clear_cookie(resp)
        return resp

    # ------------------------------------------------------------------ API
    async def api_board(self, request: web.Request) -> web.StreamResponse:
        who = self._who(request)
        if who is None:
            return _error(401, "sign in first: POST /supervisor/login", True)
        board, _ = self.snapshot()
        return web.json_response(board, headers={CSRF_HEADER: who.session.csrf})

    async def api_action(self, request: web.Request) -> web.StreamResponse:
        who = self._who(request)
        if who is None:
            return _error(401, "sign in first: POST /supervisor/login", True)
        problem = self._post_problem(request, who, request.headers.get(CSRF_HEADER))
        if problem:
            return _error(403, problem, True)
        address = self.auth.client_address(request)
        action = None
        try:
            if request.content_type != "application/json":
                raise actions.BadAction(Result.INVALID_OPTION, "the body must be JSON (Content-Type: application/json)")
            body = await read_body(request, self.body_timeout, lambda: b'{"ok": false, "result": 99, '
                                   b'"message": "the body did not arrive in time"}', "application/json")
            action = actions.parse(body)
            link = actions.find_link(self.source.links, action)
            outcome = await actions.perform(link, action, action.phone or self.cfg.phones.get(who.user, ""))
        except BodyTimeout as e:
            return e.response
        except actions.BadAction as e:
            outcome = e.outcome()
        self._cached = None        # the next snapshot shows what the action changed
        a = action or actions.Action(0, "", "")
        log.info("supervisor: %s %s %s on link %s -> %d (%s)", who.user, a.action or "(unreadable action)",
                 a.device, a.link or "-", outcome.result, outcome.message)
        self.audit.write(user=who.user, address=address, link=a.link or "", action=a.action, device=a.device,
                         reason=a.reason, call_id=a.call_id, result=outcome.result, message=outcome.message)
        return web.json_response(outcome.json(), status=outcome.status)

    # --------------------------------------------------------------- stream
    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the board's JSON each time it changes (looked at every ``tick``), a comment
        every ``heartbeat`` seconds of quiet, ``event: expired`` and the end when the session ends. The
        stream itself does not keep the session alive: a board left open signs out like any other."""
        who = self._who(request)
        if who is None:
            return _error(401, "sign in first: POST /supervisor/login", True)
        if len(self._streams) >= self.MAX_STREAMS:
            return _error(503, "too many open boards", True)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "X-Accel-Buffering": "no", **SECURITY_HEADERS})
        if who.new:
            self.auth.set_cookie(resp, request, who.session)
        task = asyncio.current_task()
        self._streams.add(task)
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 3000\n\n")
            last, quiet = None, time.monotonic()
            while not self._closing.is_set():
                if not self.sessions.alive(who.session):
                    await resp.write(b"event: expired\ndata: {}\n\n")
                    break
                board, sig = self.snapshot()
                if sig != last:
                    await resp.write(f"data: {pages.script_json(board)}\n\n".encode())
                    last, quiet = sig, time.monotonic()
                elif time.monotonic() - quiet >= self.heartbeat:
                    await resp.write(b": keep-alive\n\n")
                    quiet = time.monotonic()
                try:
                    async with asyncio.timeout(self.tick):
                        await self._closing.wait()
                except TimeoutError:
                    pass
        except (ConnectionError, RuntimeError):
            pass        # the browser went away (RuntimeError: aiohttp's "cannot write to closing transport")
        finally:
            self._streams.discard(task)
        return resp


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": quote(location, safe="/?=&")})


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _error(status: int, message: str, api: bool) -> web.Response:
    if api:
        return web.json_response({"ok": False, "result": 1 if status in (401, 403) else 99, "message": message},
                                 status=status)
    return web.Response(status=status, text=message + "\n")
