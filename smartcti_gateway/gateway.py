"""The daemon, and the composition root: listeners, links and their drivers, and the embedded simulator,
built from the config, started and stopped together."""
from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from . import __version__, access, httplog, tls
from .ans.api import ProtocolApi
from .ans.service import Protocols
from .config import Config, LinkConfig, scheme, split_listen, tls_of
from .core.pabx import PabxError, QuerySystemStatus, QueryVersion
from .extlog import ExtensionLog, Trace
from .link import HealthOptions, Link
from .pabx import DRIVERS
from .pabx.base import Common
from .protheus.command_service import add_command_routes
from .protheus.delivery import DeliveryOptions
from .protheus.eventing import EventingClient
from .registry import Registry
from .status import Status
from .supervisor.web import Supervisor
from .urls import redact_url

log = logging.getLogger("smartcti_gateway")

VERSION_TEXT = f"smartcti-gateway {__version__}"


class ListenError(OSError):
    """A listener could not be opened; ``key`` is the config key that holds its address."""

    def __init__(self, key: str, listen: str, error: OSError):
        super().__init__(error.errno, f"cannot listen on {listen} ({key}): {error.strerror or error}")
        self.key, self.listen, self.error = key, listen, error


def fault_note(text: str) -> str:
    """`` (faultstring)`` of a SOAP Fault answer, for the self-test's report; "" otherwise."""
    m = re.search(r"<faultstring>(.*?)</faultstring>", text or "", re.S)
    return f" ({m.group(1).strip()[:200]})" if m else ""


class Gateway:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.links: list[Link] = []
        self.runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}       # listen string -> bound port
        self.simulator = None
        self._sim_runner: web.AppRunner | None = None
        self.bad_requests: httplog.BadRequestLog | None = None
        # a relative dir is relative to the working directory (scripts/run: the repository)
        self.extlog = ExtensionLog(Path(cfg.logging.dir), enabled=cfg.logging.per_extension)
        self.registry = Registry(cfg.state_file, owner=cfg.source) if cfg.state_file else None
        pc = cfg.protocol
        # one allocator for every link and channel (ans/): the IVR, the API and the calls as they ring
        self.protocols = Protocols(pc) if pc is not None and pc.mode != "off" else None
        self.agi = None
        self.status = Status(self, cfg.status_allow)
        self.supervisor = (Supervisor(self, cfg.supervisor, logs_dir=cfg.logging.dir, body_timeout=cfg.client_timeout)
                           if cfg.supervisor is not None else None)   # the board at /supervisor (docs/supervisor.md)

    async def start(self) -> None:
        self.bad_requests = httplog.install()   # a malformed request: one warning per client address
        if self.cfg.simulator.enabled:
            await self._start_simulator()
        if self.protocols is not None:
            await self._start_protocols()

        by_listener: dict[str, list[LinkConfig]] = {}
        keys: dict[str, str] = {}    # listen -> the config key that holds it, for messages
        for i, lc in enumerate(self.cfg.links):
            by_listener.setdefault(lc.listen or self.cfg.listen, []).append(lc)
            keys.setdefault(lc.listen or self.cfg.listen, f"links[{i}].listen" if lc.listen else "listen")

        started: list[tuple[Link, LinkConfig]] = []
        for listen, link_cfgs in by_listener.items():
            app = web.Application(client_max_size=self.cfg.max_body)
            guard = access.install(app)   # links[].allow, links[].pabx.allow
            self.status.add_routes(app)
            if self.supervisor is not None:
                self.supervisor.add_routes(app)
            if self.protocols is not None:
                ProtocolApi(self.protocols).add_routes(app)   # protocol.api_allow, protocol.api_token
            for lc in link_cfgs:
                link = self._link(lc)
                command_routes = add_command_routes(app, lc.command_path, link.handle, name=f"link{lc.link_id}",
                                                    body_timeout=self.cfg.client_timeout, wrap=guard.guarded)
                for route in link.driver.routes():
                    app.router.add_route(route.method, route.path, guard.guarded(route.handler))
                await access.protect_link(guard, self.cfg, lc, command_routes, link.driver)
                self.links.append(link)
                started.append((link, lc))
            # keepalive_timeout: aiohttp arms it at connect and after each answer, and closes the connection
            # if no complete request head has arrived by then; so it bounds both idle keep-alive and
            # clients that stall inside the headers. The body is bounded in the handlers (HTTP 408).
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                   keepalive_timeout=self.cfg.client_timeout)
            await runner.setup()
            host, port = split_listen(listen)
            site = web.TCPSite(runner, host, port, reuse_address=True,
                               ssl_context=tls.server_context(tls_of(self.cfg, link_cfgs[0])))
            try:
                await site.start()
            except OSError as e:
                await runner.cleanup()
                raise ListenError(keys[listen], listen, e) from None
            bound = runner.addresses[0][1] if runner.addresses else port
            self.ports[listen] = bound
            self.runners.append(runner)
            shown = "<this host>" if host in ("0.0.0.0", "::", "") else host
            for lc in link_cfgs:
                log.info("link %d (%s): serving SmartCTIWSCommand; in Protheus set K4_LINKID = %d and "
                         "K4_CMD_URL = %s://%s:%d%s", lc.link_id, lc.name, lc.link_id, scheme(self.cfg, lc), shown,
                         bound, lc.command_path)

        for link, lc in started:
            listen = lc.listen or self.cfg.listen
            link.driver.listening(scheme(self.cfg, lc), split_listen(listen)[0], self.ports[listen])
            await link.start()
            log.info("link %d: %s", lc.link_id, link.driver.describe())

    def _link(self, lc: LinkConfig) -> Link:
        """The driver the config names, and the link around it."""
        px, ev = lc.pabx, lc.events
        driver = DRIVERS[px.driver].create(px.options, Common(lc.link_id, f"link {lc.link_id}", px.timeout,
                                                              self.cfg.client_timeout))
        driver.concurrency = px.concurrency
        allow = access.eventing_allow(self.cfg, lc)
        link = Link(lc.link_id, lc.name, driver, timeout=px.timeout, version=VERSION_TEXT,
                    registry=self.registry, eventing_check=allow.problem if allow else None,
                    protocols=self.protocols,
                    pop_template=self.cfg.protocol.associated_data if self.cfg.protocol else "",
                    pause_reasons=lc.pause_reasons, wrap_up=lc.wrap_up, dialler=lc.dialler,
                    health=HealthOptions(keepalive=px.keepalive, keepalive_timeout=px.keepalive_timeout,
                                         grace=px.grace, reconnect_max=px.reconnect_max, quiet_call=px.quiet_call),
                    eventing=EventingClient(timeout=ev.timeout, wsdl_timeout=ev.wsdl_timeout,
                                            ssl_context=tls.client_context(ev.ca_file)),
                    delivery=DeliveryOptions(ttl=ev.ttl, queue_size=ev.queue_size, retry_initial=ev.retry_initial,
                                             retry_max=ev.retry_max, release_after_99=ev.release_after_99,
                                             report_every=ev.report_every))
        link.set_trace(Trace(self.extlog, lc.link_id))
        return link

    async def _start_protocols(self) -> None:
        """The protocol numbers' service, and the IVR's FastAGI server when protocol.agi_listen is set."""
        from .ans.agi_server import AgiServer
        await self.protocols.start()
        pc = self.cfg.protocol
        if not pc.agi_listen:
            return
        self.agi = AgiServer(self.protocols, pc.ivr, pc.agi_allow)
        host, port = split_listen(pc.agi_listen)
        try:
            await self.agi.start(host, port)
        except OSError as e:
            raise ListenError("protocol.agi_listen", pc.agi_listen, e) from None
        self.ports[pc.agi_listen] = self.agi.port
        self.protocols.ivr_counts = self.agi.counts     # for /metrics
        log.info("ANS protocol IVR (FastAGI) listening on %s:%d: in the dialplan, "
                 "same => n,AGI(agi://<this host>:%d/protocolo) before Queue()", host, self.agi.port, self.agi.port)

    async def _start_simulator(self) -> None:
        """The embedded simulated NGC (sim/digitro), speaking the dialect of the links that use it."""
        from .pabx.digitro.dialect import Dialect
        from .sim.digitro import options_from_config, start_simulator
        sc = self.cfg.simulator
        options = options_from_config(sc.options, sc.where)
        host, port = split_listen(sc.listen)
        try:
            self.simulator, self._sim_runner = await start_simulator(
                host, port, options, Dialect.with_overrides(self._simulator_dialect()))
        except OSError as e:
            raise ListenError("simulator.listen", sc.listen, e) from None
        log.info("embedded NGC simulator listening on http://%s:%d/RPC2 (control API under /sim/)",
                 host, self.simulator.port)

    def _simulator_dialect(self) -> dict:
        """The dialect overrides of the Dígitro link that points at the simulator (else the first one's)."""
        digitro = [lc for lc in self.cfg.links if lc.pabx.driver == "digitro"]
        _, port = split_listen(self.cfg.simulator.listen)
        for lc in digitro:
            if urlsplit(lc.pabx.options.url).port == port:
                return lc.pabx.options.dialect
        return digitro[0].pabx.options.dialect if digitro else {}

    def not_serving(self) -> list[str]:
        """Problems with the listeners, for /readyz and the status page."""
        return [f"link {lc.link_id}: its listener {lc.listen or self.cfg.listen} is not serving"
                for lc in self.cfg.links if (lc.listen or self.cfg.listen) not in self.ports]

    async def stop(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.close()    # its event streams end first: a listener would wait for them
        for link in self.links:
            try:
                # close() drains the event queues for up to 5 s itself; the PABX goodbye takes a timeout more
                await asyncio.wait_for(link.close(drain=5.0), timeout=5.0 + link.timeout + 1.0)
            except Exception:  # noqa: BLE001 - stopping must go on
                log.exception("link %d: error while closing", link.link_id)
        for runner in self.runners:
            await runner.cleanup()
        if self.agi is not None:
            await self.agi.close()
        if self.protocols is not None:
            await self.protocols.close()
        if self._sim_runner is not None:
            await self._sim_runner.cleanup()
        self.extlog.close()
        if self.bad_requests is not None:
            httplog.remove(self.bad_requests)
        if self.registry is not None:
            self.registry.close()

    # ------------------------------------------------------ operator reports
    def _command_url(self, lc: LinkConfig) -> str:
        listen = lc.listen or self.cfg.listen
        host, _ = split_listen(listen)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
        host = f"[{host}]" if ":" in host else host
        return (f"{scheme(self.cfg, lc)}://{host}:{self.ports[listen]}{lc.command_path}"
                ".SmartCTIWSCommandHttpSoap11Endpoint/")

    async def versions(self) -> list[str]:
        """Gateway version, and per link the PABX's version and each Protheus eventing URL's reachability."""
        lines = [VERSION_TEXT]
        for link in self.links:
            try:
                pabx = f"PABX {await link.ask(QueryVersion())}"
            except PabxError as e:
                pabx = f"PABX unreachable ({e.detail or 'no answer'})"
            lines.append(f"link {link.link_id} ({link.name}): {pabx} at {link.driver.target}")
            for url in link.event_urls():
                lines.append(f"  Protheus {redact_url(url)}: {await self._wsdl_check(link, url)}")
        return lines

    async def _wsdl_check(self, link: Link, url: str) -> str:
        schema = await link.eventing.schema(url, refresh=True)
        if schema.source == "wsdl":
            return f"WSDL read, namespace {schema.operations['RINGING'].namespace}"
        return "WSDL not readable: using the ADVPL conventions (see the log)"

    async def self_test(self) -> list[tuple[str, bool, str]]:
        """End to end, per link: a real SOAP request to our own endpoint, the PABX link, the eventing WSDLs."""
        import aiohttp
        results: list[tuple[str, bool, str]] = []
        body = ('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
                '<SystemStatus xmlns="http://DefaultNamespace"/></soap:Body></soap:Envelope>').encode()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            for lc, link in zip(self.cfg.links, self.links):
                name = f"link {lc.link_id}"
                url = self._command_url(lc)
                try:
                    async with http.post(url, data=body, ssl=tls.self_test_context(tls_of(self.cfg, lc)),
                                         headers={"Content-Type": "text/xml; charset=UTF-8",
                                                  "SOAPAction": '"urn:SystemStatus"'}) as r:
                        text = await r.text()
                    ok = r.status == 200 and "<ns:return>0</ns:return>" in text
                    value = (text.split("<ns:return>")[1].split("<")[0] if "<ns:return>" in text
                             else f"HTTP {r.status}{fault_note(text)}")
                    note = ""
                    if not link.health.up and link.switch.devices and not link.health.reported_down:
                        note = (f" (PABX link down; SystemStatus turns non-zero after the {link.health.grace:g} s "
                                f"grace period)")
                    elif not link.health.up:
                        note = (" (PABX link down; no device is in service, so SystemStatus says so at once)"
                                if not link.switch.devices else " (PABX link down)")
                    results.append((f"{name}: SOAP SystemStatus at {url}", ok, f"returned {value}{note}"))
                except (aiohttp.ClientError, TimeoutError) as e:
                    results.append((f"{name}: SOAP SystemStatus at {url}", False, str(e) or "timeout"))
                try:
                    await link.ask(QuerySystemStatus())
                    results.append((f"{name}: PABX at {link.driver.target}", True, "answering"))
                except PabxError as e:
                    results.append((f"{name}: PABX at {link.driver.target}", False,
                                    e.detail or "no answer"))
                urls = link.event_urls()
                if not urls:
                    results.append((f"{name}: Protheus eventing", True, "no device in service yet"))
                for ev_url in urls:
                    check = await self._wsdl_check(link, ev_url)
                    results.append((f"{name}: Protheus eventing {redact_url(ev_url)}", check.startswith("WSDL read"),
                                    check))
        return results

    def link(self, link_id: int) -> Link:
        return next(l for l in self.links if l.link_id == link_id)

    def port(self, listen: str | None = None) -> int:
        return self.ports[listen or self.cfg.listen]
