"""A real gateway (with its embedded NGC simulator) on loopback, driven like Protheus drives it.

The gateway runs on its own event loop in a background thread, so tests can
use blocking clients (raw HTTP, zeep, PHP in a subprocess) as Protheus does.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import time
from typing import Any, Callable
from xml.sax.saxutils import escape

from smartcti_gateway.config import parse
from smartcti_gateway.gateway import Gateway
from smartcti_gateway.sim.protheus.eventing import start_protheus_simulator

CMD_PATH = "/axis2/services/SmartCTIWSCommand"
ENDPOINT = CMD_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def protheus_envelope(op: str, **args: str) -> bytes:
    """A request shaped as Protheus' ADVPL client writes it (smartcti.md §1.6)."""
    children = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in args.items())
    return (f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            f'<{op} xmlns="http://DefaultNamespace">{children}</{op}></soap:Body></soap:Envelope>').encode()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value {value!r}")
        time.sleep(0.01)


class BackgroundLoop:
    """An event loop on its own thread, so blocking test code can drive async servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def in_loop(self, fn: Callable[[], Any]) -> Any:
        async def call():
            return fn()
        return self.run(call())

    def stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class RunningGateway(BackgroundLoop):
    """``starting=True``: return as soon as the listeners serve, while the links still make their first
    contact with the PABX (``self.starting`` is that start)."""

    def __init__(self, config: dict, state_file: str | None = None, *, starting: bool = False):
        if "state_file" not in config:
            import tempfile
            config = {**config, "state_file": state_file or
                      tempfile.NamedTemporaryFile(prefix="smartcti-", suffix=".sqlite", delete=False).name}
        self.cfg = parse(config, "<test>")
        super().__init__()
        self.gateway = Gateway(self.cfg)
        # a simulated Protheus SmartCTIWSEventing, the MV_TKCTIEV of every test device
        self.protheus, self._protheus_runner = self.run(start_protheus_simulator("127.0.0.1", 0, quiet=True))
        self.events_url = self.protheus.url
        self.starting = asyncio.run_coroutine_threadsafe(self.gateway.start(), self.loop)
        if starting:
            wait_for(lambda: self.in_loop(lambda: self.gateway.ports), what="listener bound")
        else:
            self.starting.result(30)
        self.port = self.gateway.port()
        self.host = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        try:
            self.starting.result(30)
            self.run(self.gateway.stop())
            self.run(self._protheus_runner.cleanup())
        finally:
            self.stop_loop()

    # ----------------------------------------------------------- HTTP
    def http(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             port: int | None = None) -> tuple[int, bytes, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read(), dict(resp.getheaders())
        finally:
            conn.close()

    def soap(self, op: str, path: str = ENDPOINT, **args: str) -> tuple[int, bytes]:
        status, body, _ = self.http("POST", path, protheus_envelope(op, **args),
                                    {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": f'"urn:{op}"'})
        return status, body

    def call(self, op: str, path: str = ENDPOINT, **args: str) -> str:
        """The ``ns:return`` text of ``op``, checking the Axis2 shape of the answer."""
        status, body = self.soap(op, path, **args)
        assert status == 200, body
        m = re.search(rf'<ns:{op}Response xmlns:ns="http://DefaultNamespace"><ns:return>(.*?)</ns:return>'
                      rf'</ns:{op}Response>'.encode(), body, re.S)
        assert m, body
        return m.group(1).decode("utf-8")

    def code(self, op: str, **args: str) -> int:
        return int(self.call(op, **args))

    # ------------------------------------------------------ simulator
    @property
    def sim_port(self) -> int:
        return self.gateway.simulator.port

    def sim(self, path: str, payload: dict | None = None) -> tuple[int, Any]:
        body = json.dumps(payload).encode() if payload is not None else None
        method = "POST" if payload is not None else "GET"
        status, raw, _ = self.http(method, path, body, {"Content-Type": "application/json"}, port=self.sim_port)
        return status, json.loads(raw or b"null")

    def sim_state(self) -> dict:
        return self.sim("/sim/state")[1]

    # ------------------------------------------------------ Protheus
    def events(self, since: int = 0) -> list[dict]:
        return self.in_loop(lambda: self.protheus.events_since(since))

    def wait_events(self, count: int, since: int = 0, timeout: float = 5.0) -> list[dict]:
        """The first ``count`` events Protheus received after ``since``, waiting for them."""
        return self.run(self.protheus.wait_events(count, since=since, timeout=timeout), timeout + 5)

    # ---------------------------------------------------- gateway view
    def link(self, link_id: int = 1):
        return self.gateway.link(link_id)

    def conn_state(self, device: str, link_id: int = 1) -> dict[str, str]:
        """{call_id: state value} of ``device`` as the gateway's model sees it."""
        def read():
            sw = self.link(link_id).switch
            return {c.call_id: c.connections[device].value for c in sw.calls_of(device) if device in c.connections}
        return self.in_loop(read)


def simulated_config(sim_port: int | None = None, gw_port: int | None = None, **sim_options) -> dict:
    sim_port = sim_port or free_port()
    options = {"answer_after": 0.05, "ring_timeout": 0.3}
    options.update(sim_options)
    return {
        "listen": f"127.0.0.1:{gw_port or 0}",
        "links": [{"link_id": 1, "pabx": {"url": f"http://127.0.0.1:{sim_port}/RPC2", "timeout": 2}}],
        "simulator": {"enabled": True, "listen": f"127.0.0.1:{sim_port}", "options": options},
    }


class Peers(BackgroundLoop):
    """A simulated NGC and a simulated Protheus on a background loop, for a gateway run elsewhere
    (another RunningGateway, or a gateway process that a test kills)."""

    def __init__(self, sim_port: int | None = None, **sim_options):
        from smartcti_gateway.sim.digitro import options_from_mapping, start_simulator
        super().__init__()
        options = {"answer_after": 0.05, "ring_timeout": 0.3, **sim_options}
        self.sim_port = sim_port or free_port()
        self.sim, self.sim_runner = self.run(start_simulator("127.0.0.1", self.sim_port, options_from_mapping(options)))
        self.protheus, self.protheus_runner = self.run(start_protheus_simulator("127.0.0.1", 0, quiet=True))
        self.events_url = self.protheus.url

    def events(self, since: int = 0) -> list[dict]:
        return self.in_loop(lambda: self.protheus.events_since(since))

    def sim_call(self, fn):
        return self.in_loop(lambda: fn(self.sim))

    def close(self) -> None:
        try:
            self.run(self.sim_runner.cleanup())
            self.run(self.protheus_runner.cleanup())
        finally:
            self.stop_loop()


class Switchable:
    """A forwarding HTTP proxy that a test can cut, to lose traffic between the gateway and the NGC."""

    def __init__(self, loop_owner, target: str):
        self.owner, self.target, self.up, self.forwarded = loop_owner, target, True, 0

    async def start(self):
        import aiohttp
        from aiohttp import web

        async def forward(request):
            if not self.up:
                # a cut cable: the connection dies without an answer
                request.transport.close()
                return web.Response(status=503)
            body = await request.read()
            async with aiohttp.ClientSession() as s:
                async with s.post(self.target, data=body, headers={"Content-Type": "text/xml"}) as r:
                    self.forwarded += 1
                    return web.Response(status=r.status, body=await r.read(), content_type="text/xml")

        app = web.Application()
        app.router.add_post("/{tail:.*}", forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}/RPC2"
        return self


# ------------------------------------------------- events seen by Protheus
def device_events(gw, device, since=0):
    return [e for e in gw.events(since) if e["params"].get("CDEVICE") == device]


def names(events):
    return [e["method"] for e in events]


def wait_device(gw, device, expected, since=0, timeout=5.0):
    """Wait until ``device`` has received exactly the event names ``expected`` after ``since``."""
    def done():
        got = device_events(gw, device, since)
        return got if len(got) >= len(expected) else None
    try:
        got = wait_for(done, timeout, what=f"{expected} at {device}")
    except AssertionError:
        raise AssertionError(f"{device} received {names(device_events(gw, device, since))}, expected {expected}")
    assert names(got) == expected, names(got)
    return got


def mark(gw) -> int:
    events = gw.events()
    return events[-1]["seq"] if events else 0


def in_service(gw, *devices):
    for d in devices:
        assert gw.code("AgentInService", device=d, ipaddress=gw.events_url) == 0
    for d in devices:
        wait_device(gw, d, ["INSERVICE"])
    return mark(gw)


def agent_ready(gw, device="2001", agent="1234", groups="701"):
    since = mark(gw)
    assert gw.code("Logon", device=device, agentID=agent, groupID=groups) == 0
    assert gw.code("Ready", device=device, agentID="", groupID="") == 0
    wait_device(gw, device, ["LOGGEDON", "READY"], since)
    return mark(gw)


def params(event):
    return event["params"]


def self_signed_certificate(folder) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 / localhost in ``folder``: (cert.pem, key.pem)."""
    import subprocess
    from pathlib import Path
    cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return str(cert), str(key)
