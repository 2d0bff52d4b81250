"""The daemon: listeners, links and their drivers, and the embedded simulator, started and stopped together."""
from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from . import __version__
from .config import Config, LinkConfig, split_listen
from .extlog import ExtensionLog
from .link import Link
from .pabx.digitro.dialect import Dialect
from .pabx.digitro.driver import DigitroDriver
from .protheus.command_service import add_command_routes
from .protheus.delivery import DeliveryOptions
from .protheus.eventing import EventingClient

log = logging.getLogger("smartcti_gateway")

VERSION_TEXT = f"smartcti-gateway {__version__}"


def local_address_towards(url: str) -> str:
    """The address of this host as the PABX at ``url`` would see it (no packet is sent)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, parts.port or 80))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


class Gateway:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.links: list[Link] = []
        self.runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}       # listen string -> bound port
        self.simulator = None
        self._sim_runner: web.AppRunner | None = None
        # a relative dir is relative to the working directory (scripts/run: the repository)
        self.extlog = ExtensionLog(Path(cfg.logging.dir), enabled=cfg.logging.per_extension)

    async def start(self) -> None:
        if self.cfg.simulator.enabled:
            from .pabx.digitro.simulator import options_from_mapping, start_simulator
            host, port = split_listen(self.cfg.simulator.listen)
            dialect = Dialect.with_overrides(self.cfg.links[0].pabx.dialect)
            self.simulator, self._sim_runner = await start_simulator(
                host, port, options_from_mapping(self.cfg.simulator.options), dialect)
            log.info("embedded NGC simulator listening on http://%s:%d/RPC2 (control API under /sim/)",
                     host, self.simulator.port)

        by_listener: dict[str, list[LinkConfig]] = {}
        for lc in self.cfg.links:
            by_listener.setdefault(lc.listen or self.cfg.listen, []).append(lc)

        drivers: list[tuple[Link, LinkConfig]] = []
        for listen, link_cfgs in by_listener.items():
            app = web.Application(client_max_size=self.cfg.max_body)
            for lc in link_cfgs:
                driver = DigitroDriver(lc.pabx.url, dialect=Dialect.with_overrides(lc.pabx.dialect),
                                       timeout=lc.pabx.timeout, name=f"link {lc.link_id}")
                ev = lc.events
                link = Link(lc.link_id, lc.name, driver, timeout=lc.pabx.timeout, version=VERSION_TEXT,
                            eventing=EventingClient(timeout=ev.timeout, wsdl_timeout=ev.wsdl_timeout),
                            delivery=DeliveryOptions(ttl=ev.ttl, queue_size=ev.queue_size,
                                                     retry_initial=ev.retry_initial, retry_max=ev.retry_max,
                                                     release_after_99=ev.release_after_99))
                link.set_trace(lambda device, text, _id=lc.link_id: self.extlog.write(device, _id, text))
                add_command_routes(app, lc.command_path, link.handle, name=f"link{lc.link_id}")
                driver.add_event_route(app, lc.events_path)
                self.links.append(link)
                drivers.append((link, lc))
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            host, port = split_listen(listen)
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            bound = runner.addresses[0][1] if runner.addresses else port
            self.ports[listen] = bound
            self.runners.append(runner)
            shown = "<this host>" if host in ("0.0.0.0", "::", "") else host
            for lc in link_cfgs:
                log.info("link %d (%s): serving SmartCTIWSCommand; in Protheus set K4_LINKID = %d and "
                         "K4_CMD_URL = http://%s:%d%s", lc.link_id, lc.name, lc.link_id, shown, bound, lc.command_path)

        for link, lc in drivers:
            listen = lc.listen or self.cfg.listen
            host, _ = split_listen(listen)
            if host in ("0.0.0.0", "::", ""):
                host = local_address_towards(lc.pabx.url)
            link.driver.callback_url = lc.pabx.callback_url or f"http://{host}:{self.ports[listen]}{lc.events_path}"
            await link.start()
            log.info("link %d: PABX %s, events expected at %s", lc.link_id, lc.pabx.url, link.driver.callback_url)

    async def stop(self) -> None:
        for link in self.links:
            try:
                await asyncio.wait_for(link.close(), timeout=5)
            except Exception:  # noqa: BLE001 - stopping must go on
                log.exception("link %d: error while closing", link.link_id)
        for runner in self.runners:
            await runner.cleanup()
        if self._sim_runner is not None:
            await self._sim_runner.cleanup()
        self.extlog.close()

    def link(self, link_id: int) -> Link:
        return next(l for l in self.links if l.link_id == link_id)

    def port(self, listen: str | None = None) -> int:
        return self.ports[listen or self.cfg.listen]
