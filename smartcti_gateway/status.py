"""What an administrator looks at: /healthz, /readyz, /metrics and a status page at /.

/healthz and /readyz say nothing private and are open to all (load balancers,
container health checks). The status page and /metrics show device numbers
and agent ids, so they answer only the addresses in ``status_allow``
(loopback by default). The page is plain HTML that refreshes itself: no
JavaScript framework, no CDN, readable on a phone.
"""
from __future__ import annotations

import time
from datetime import datetime
from html import escape
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from . import __version__
from .core.commands import AGENT_STATE_CODES
from .link import Link
from .metrics import registry_for, render
from .networks import peer_address


class Source(Protocol):
    """What the page reads of the daemon (the Gateway): its links, and listeners that do not serve."""

    links: list[Link]

    def not_serving(self) -> list[str]: ...

REFRESH_SECONDS = 3
MAX_ROWS = 500


class Status:
    def __init__(self, source: Source, allow: tuple = ()):
        self.gw = source
        self.allow = allow
        self.started = time.time()
        self.registry = registry_for(lambda: source.links, lambda: getattr(source, "protocols", None))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/", self.page)

    def _allowed(self, request: web.Request) -> bool:
        ip = peer_address(request.remote)
        return ip is not None and any(ip.version == n.version and ip in n for n in self.allow)

    def _refused(self, request: web.Request) -> web.Response:
        return web.Response(status=403, text=f"address {request.remote} is not in status_allow; add it to the "
                                             f"config to see the status page and /metrics\n")

    # ---------------------------------------------------------- endpoints
    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    def problems(self) -> list[str]:
        out = list(self.gw.not_serving())
        for link in self.gw.links:
            if not link.health.up:
                since = time.monotonic() - (link.health.down_since or time.monotonic())
                out.append(f"link {link.link_id}: PABX link down for {since:.0f} s ({link.health.reason})")
        return out

    async def readyz(self, request: web.Request) -> web.Response:
        problems = self.problems()
        if problems:
            return web.Response(status=503, text="not ready\n" + "\n".join(problems) + "\n")
        return web.Response(text="ready\n")

    async def metrics(self, request: web.Request) -> web.Response:
        if not self._allowed(request):
            return self._refused(request)
        return web.Response(body=render(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def page(self, request: web.Request) -> web.Response:
        if not self._allowed(request):
            return self._refused(request)
        return web.Response(text=self.html(), content_type="text/html", charset="utf-8")

    # --------------------------------------------------------------- page
    def html(self) -> str:
        now = time.monotonic()
        problems = self.problems()
        links, queues, devices, calls = [], [], [], []
        for link in self.gw.links:
            h, d = link.health, link.delivery
            state = "up" if h.up else f"DOWN {now - (h.down_since or now):.0f} s: {h.reason}"
            last = f"{now - h.last_ok:.0f} s ago" if h.last_ok else "-"
            links.append([link.link_id, link.name, link.driver.target, state, last, h.reconnects,
                          link.resyncs, link.driver.events_received])
            c = d.counts
            queues.append([link.link_id, d.depth(), c.get("sent", 0), c.get("no_session", 0), c.get("stale", 0),
                           c.get("overflow", 0), c.get("failed", 0), c.get("retries", 0)])
            for dev in sorted(link.switch.devices.values(), key=lambda x: x.name):
                a = dev.agent
                states = ", ".join(f"{c.call_id[-12:]} {c.connections.get(dev.name).value}"
                                   for c in link.switch.calls_of(dev.name) if dev.name in c.connections)
                # the state queryAgentState answers, with its code: one source of truth with /metrics
                state = link.switch.agent_state(dev.name)
                shown = f"{state.value} ({int(AGENT_STATE_CODES[state])})" if a is not None else "-"
                devices.append([link.link_id, dev.name if dev.monitored else f"{dev.name} (waiting for the PABX)",
                                dev.in_service, a.agent_id if a else "-", ",".join(a.groups) if a else "-", shown,
                                states or "-"])
            for call in link.switch.calls.values():
                parties = ", ".join(f"{p} {s.value}" for p, s in call.connections.items())
                calls.append([link.link_id, call.call_id, call.direction.value, call.calling or "-",
                              call.called or "-", call.group or "-", call.protocol or "-", parties])
        verdict = ('<p class="ok">Ready</p>' if not problems else
                   "".join(f'<p class="bad">{escape(p)}</p>' for p in problems))
        up = time.time() - self.started
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>smartcti-gateway status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0.8rem; color: #222; }}
h1 {{ font-size: 1.3rem; margin: 0 0 0.3rem; }} h2 {{ font-size: 1.05rem; margin: 1.2rem 0 0.3rem; }}
.ok {{ color: #0a6b2b; font-weight: 600; }} .bad {{ color: #b00020; font-weight: 600; }}
.scroll {{ overflow-x: auto; }} table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; white-space: nowrap; }}
th {{ background: #f3f3f3; }} small {{ color: #666; }}
</style></head><body>
<h1>smartcti-gateway {escape(__version__)}</h1>
<small>up {up / 3600:.1f} h · refreshes every {REFRESH_SECONDS} s · {time.strftime('%Y-%m-%d %H:%M:%S')}</small>
{verdict}
<h2>Links</h2>{_table(["link", "name", "PABX", "state", "last keep-alive", "reconnects", "resyncs",
                        "PABX events"], links)}
<h2>Events to Protheus</h2>{_table(["link", "waiting", "sent", "no session (99)", "stale", "overflow",
                                    "failed", "retries"], queues)}
<h2>Calls in progress ({len(calls)})</h2>{_table(["link", "call id", "direction", "ANI", "DNIS", "group",
                                                 "ANS protocol", "parties"], calls)}
{self._protocols()}
<h2>Devices in service ({len(devices)})</h2>{_table(["link", "device", "Protheus processes", "agent", "groups",
                                                    "agent state", "calls"], devices)}
</body></html>
"""

    def _protocols(self) -> str:
        """Today's ANS protocol count and the last numbers issued (ans/), when the site issues them."""
        protocols = getattr(self.gw, "protocols", None)
        if protocols is None:
            return ""
        rows = [[r.number, datetime.fromtimestamp(r.created, protocols.tz).strftime("%d/%m %H:%M:%S"), r.channel, r.status,
                 r.ani or "-", r.device or "-", r.agent or "-"] for r in protocols.store.latest(10)]
        return (f"<h2>ANS protocols: {protocols.today_count()} today</h2>"
                + _table(["protocol", "issued", "channel", "status", "ANI", "device", "agent"], rows))


def _table(head: list[str], rows: list[list]) -> str:
    if not rows:
        return "<p><small>none</small></p>"
    shown = rows[:MAX_ROWS]
    more = f"<p><small>{len(rows) - MAX_ROWS} more not shown</small></p>" if len(rows) > MAX_ROWS else ""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in shown)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>{more}'
