"""The performance benchmark of docs/performance.md: ``scripts/bench`` (``python -m tests.bench``).

One run, one machine, measures:

(a) the command path: concurrent SOAP clients sending a realistic mix (MakeCall, Hold, Retrieve,
    queryAgentState, SystemStatus, Ready, NotReady) through the gateway to a PABX answering at once;
(b) the event path: a burst, a steady 300/s and a sustained 1,000/s of PABX events (``cti.evento``)
    through the gateway to a Protheus endpoint answering at once;
(c) scale: 8,000 devices in service and 2,000 logged-on agents (resident memory), and start-up to
    ready, empty and with the 8,000 devices restored from the state file;
(d) the Asterisk driver: MakeCall (one AMI Originate round trip) and a burst of AMI events, against a
    fake AMI peer and an AMI floor of its own (tests/bench_asterisk.py).

The same load is also run against the *floor*: a minimal aiohttp + lxml pass-through (this file,
``--floor-server``) doing only the unavoidable work (parse the SOAP request, one XML-RPC round trip,
write the answer; read an XML-RPC event, one SOAP POST). Every gateway figure is printed with its
ratio to the floor's.

The gateway (and, alone, the floor) runs as a separate process pinned to core 0; this process -- the
load generator, the fake PABX and the fake Protheus, one event loop -- is pinned to core 1. Server CPU
is read from /proc (schedstat of every thread, in ns), resident memory from /proc/<pid>/status.

Prints a markdown table, writes bench/results.json; exits 0 even when a target is missed (a
benchmark reports; MISSED is printed). ``--smoke`` is the seconds-long run the suite does.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.json"
CMD_PATH = "/axis2/services/SmartCTIWSCommand"
ENDPOINT = CMD_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/"
EVENTS_PATH = "/pabx/digitro/1/RPC2"
PROTHEUS_PATH = "/ws/SMARTCTIWSEVENTING.apw"
CALL_ID = "01/01/26 00:00:00 010A 0001/00"
SERVER_CORE, CLIENT_CORE = 0, 1


# ------------------------------------------------------------------ helpers
# free_port and envelope repeat tests/support.py on purpose: the floor process runs this module,
# and importing support would load the whole gateway into the floor and inflate its figures.
def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envelope(op: str, **args: str) -> bytes:
    """As Protheus' ADVPL client writes it (tests/support.py protheus_envelope)."""
    children = "".join(f"<{k}>{v}</{k}>" for k, v in args.items())
    return (f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            f'<{op} xmlns="http://DefaultNamespace">{children}</{op}></soap:Body></soap:Envelope>').encode()


def http_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: {len(body)}\r\n\r\n").encode() + body


def soap_request(op: str, **args: str) -> bytes:
    return http_request(ENDPOINT, envelope(op, **args),
                        {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": f'"urn:{op}"'})


def event_request(seq: int, device: str, turn: int) -> bytes:
    """The ``turn``-th event of ``device``: its agent (the same one all along, as on a floor) ready, then
    paused, then ready again... Each one changes the agent's state, so each one reaches Protheus."""
    kind = "AGENTE_DISPONIVEL" if turn % 2 == 0 else "AGENTE_EM_PAUSA"
    body = xmlrpc.client.dumps(({"EVENTO": kind, "ID_CANAL": "1", "SEQUENCIA": seq, "DATA_HORA": "",
                                 "DISPOSITIVO": device, "AGENTE": f"8{device}", "GRUPO_DAC": "701"},),
                               "cti.evento").encode()
    return http_request(EVENTS_PATH, body, {"Content-Type": "text/xml"})


class Conn:
    """A raw HTTP/1.1 keep-alive connection: the cheapest client, so that core 1 is not the limit."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Conn":
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if not m:
            raise RuntimeError(f"answer without Content-Length: {head[:200]!r}")
        return status, await self.reader.readexactly(int(m.group(1)))

    def close(self) -> None:
        self.writer.close()


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of ``pid`` (schedstat, ns precision); /proc/<pid>/stat otherwise."""
    total, found = 0, False
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                found = True
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    if found:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pin(cores: set[int]) -> bool:
    try:
        if len(os.sched_getaffinity(0)) > max(cores):
            os.sched_setaffinity(0, cores)
            return True
    except (AttributeError, OSError):
        pass
    return False


def pinned_cmd(cmd: list[str]) -> list[str]:
    if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1:
        return ["taskset", "-c", str(SERVER_CORE), *cmd]
    return cmd


# ---------------------------------------------------------- the fake peers
class FakePeers:
    """A PABX and a Protheus that answer at once, in this process's loop (core 1)."""

    def __init__(self):
        ok = {"RESULTADO": "OK"}
        replies = {
            "cti.gera_chamada": {**ok, "ID_CHAMADA": CALL_ID},
            "cti.estado_agente": {**ok, "ESTADO": "LIVRE", "AGENTE": "1234", "GRUPO_DAC": "701"},
            "cti.chamadas_dispositivo": {**ok, "CHAMADAS": []},
            "cti.chamadas_grupo": {**ok, "CHAMADAS": []},
            "cti.registra_retorno": {**ok, "ID_CANAL": "1"},
            "cti.status": {**ok, "ESTADO": "ATIVO"},
            "cti.versao": {**ok, "VERSAO": "bench"},
        }
        self.canned = {m: xmlrpc.client.dumps((v,), methodresponse=True).encode() for m, v in replies.items()}
        self.default = xmlrpc.client.dumps((ok,), methodresponse=True).encode()
        self.pabx_calls: dict[str, int] = {}
        self.arrivals: dict[int, float] = {}     # event sequence -> arrival time at Protheus
        # per device, the sequences of the events sent and not yet arrived: a device's events reach
        # Protheus in order, so the next post naming the device is the oldest of them
        self.expected: dict[str, collections.deque[int]] = collections.defaultdict(collections.deque)
        self.protheus_posts = 0

    async def start(self) -> None:
        from aiohttp import web
        from smartcti_gateway.sim.protheus.eventing import wsdl
        self.pabx_port, self.protheus_port = free_port(), free_port()
        self.pabx_url = f"http://127.0.0.1:{self.pabx_port}/RPC2"
        self.protheus_url = f"http://127.0.0.1:{self.protheus_port}{PROTHEUS_PATH}"
        wsdl_text = wsdl(f"http://127.0.0.1:{self.protheus_port}/", self.protheus_url)
        method_re = re.compile(rb"<methodName>([^<]*)</methodName>")
        device_re = re.compile(rb"CDEVICE>([^<]*)<")
        answer = (b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
                  b'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><XRESPONSE>'
                  b'<XRESULT>0</XRESULT></XRESPONSE></soap:Body></soap:Envelope>')

        async def pabx(request):
            body = await request.read()
            m = method_re.search(body)
            name = m.group(1).decode() if m else ""
            self.pabx_calls[name] = self.pabx_calls.get(name, 0) + 1
            return web.Response(body=self.canned.get(name, self.default), content_type="text/xml")

        async def protheus_post(request):
            body = await request.read()
            now = time.monotonic()
            self.protheus_posts += 1
            m = device_re.search(body)
            waiting = self.expected.get(m.group(1).decode()) if m else None
            if waiting:
                self.arrivals[waiting.popleft()] = now
            return web.Response(body=answer, content_type="text/xml")

        async def protheus_get(request):
            return web.Response(text=wsdl_text, content_type="text/xml")

        self.runners = []
        for port, routes in ((self.pabx_port, [web.post("/RPC2", pabx)]),
                             (self.protheus_port, [web.post(PROTHEUS_PATH, protheus_post),
                                                   web.get(PROTHEUS_PATH, protheus_get)])):
            app = web.Application()
            app.add_routes(routes)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)

    async def close(self) -> None:
        for r in self.runners:
            await r.cleanup()


# ------------------------------------------------------------ the floor
def floor_server(port: int, pabx_url: str, protheus_url: str) -> None:
    """The unavoidable work, nothing else: one aiohttp listener, lxml for SOAP, stdlib for XML-RPC."""
    import aiohttp
    from aiohttp import web
    from lxml import etree

    soap_ns = "http://schemas.xmlsoap.org/soap/envelope/"
    # the PABX round trip of each operation, as the gateway makes it (the same method and members);
    # SystemStatus needs none: the gateway answers it from its keep-alive, the floor from a flag
    def agent(a):
        return {"DISPOSITIVO": a.get("device", ""), "AGENTE": a.get("agentID", ""), "SENHA_DISPOSITIVO": "",
                "GRUPO_DAC": a.get("groupID", "")}
    trips = {
        "MakeCall": ("cti.gera_chamada", lambda a: {"DISPOSITIVO": a.get("device", ""), "SENHA_DISPOSITIVO": "",
                                                     "IDENTIDADE_DESTINO": a.get("telephoneNumber", ""),
                                                     "ROTA": "", "CONTA": ""}),
        "Hold": ("cti.coloca_espera", lambda a: {"DISPOSITIVO": a.get("device", ""), "ID_CHAMADA": ""}),
        "Retrieve": ("cti.recupera_espera", lambda a: {"DISPOSITIVO": a.get("device", ""), "ID_CHAMADA": ""}),
        "queryAgentState": ("cti.estado_agente", lambda a: {"DISPOSITIVO": a.get("cDevice", "")}),
        "Ready": ("cti.disponivel", agent), "NotReady": ("cti.pausa", agent), "Logon": ("cti.login_dac", agent),
    }
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    async def main():
        session = aiohttp.ClientSession()
        link_up = True

        async def command(request):
            root = etree.fromstring(await request.read(), parser)
            op_el = root.find(f"{{{soap_ns}}}Body")[0]
            op = etree.QName(op_el).localname
            args = {etree.QName(c).localname: (c.text or "") for c in op_el}
            if op == "SystemStatus" or op not in trips:
                value = "0" if link_up else "22"
            else:
                method, struct = trips[op]
                payload = xmlrpc.client.dumps((struct(args),), method)
                async with session.post(pabx_url, data=payload, headers={"Content-Type": "text/xml"}) as r:
                    reply = xmlrpc.client.loads(await r.read())[0][0]
                value = "28" if op == "queryAgentState" else ("0" if reply.get("RESULTADO") == "OK" else "24")
            return web.Response(body=f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv='
                                     f'"{soap_ns}"><soapenv:Body><ns:{op}Response xmlns:ns="http://DefaultNamespace">'
                                     f'<ns:return>{value}</ns:return></ns:{op}Response></soapenv:Body>'
                                     f'</soapenv:Envelope>', content_type="text/xml")

        async def event(request):
            s = xmlrpc.client.loads(await request.read())[0][0]
            name = "READY" if s["EVENTO"] == "AGENTE_DISPONIVEL" else "NOTREADY"
            body = (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{soap_ns}"><soap:Body>'
                    f'<{name} xmlns="http://127.0.0.1/"><CDEVICE>{s["DISPOSITIVO"]}</CDEVICE><ILINKID>1</ILINKID>'
                    f'<CAGENTID>{s["AGENTE"]}</CAGENTID><CGROUPID>{s["GRUPO_DAC"]}</CGROUPID></{name}>'
                    f'</soap:Body></soap:Envelope>')
            async with session.post(protheus_url, data=body.encode(),
                                    headers={"Content-Type": "text/xml; charset=utf-8",
                                             "SOAPAction": f'"http://127.0.0.1/{name}"'}) as r:
                etree.fromstring(await r.read(), parser)
            return web.Response(body=xmlrpc.client.dumps(({"RESULTADO": "OK"},), methodresponse=True).encode(),
                                content_type="text/xml")

        await serve_until_sigterm(port, [(ENDPOINT, command), (EVENTS_PATH, event)])
        await session.close()

    asyncio.run(main())


async def serve_until_sigterm(port: int, posts: list[tuple[str, object]]) -> None:
    """A floor's listener: aiohttp on 127.0.0.1:``port`` with these POST routes, until SIGTERM."""
    from aiohttp import web
    app = web.Application()
    for path, handler in posts:
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


# ------------------------------------------------------- server processes
class Server:
    """The gateway or the floor as a pinned subprocess."""

    def __init__(self, cmd: list[str], port: int, name: str):
        self.cmd, self.port, self.name = cmd, port, name

    async def start(self, timeout: float = 60) -> float:
        """Spawn; seconds until SystemStatus answers 0."""
        t0 = time.monotonic()
        self.proc = subprocess.Popen(pinned_cmd(self.cmd), cwd=ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        req = soap_request("SystemStatus")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                c = await Conn.open(self.port)
                try:
                    status, body = await c.request(req)
                finally:
                    c.close()
                if status == 200 and b"<ns:return>0</ns:return>" in body:
                    return time.monotonic() - t0
            except (OSError, asyncio.IncompleteReadError):
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{self.name} not ready after {timeout} s")
            await asyncio.sleep(0.005)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mb(self.pid)

    def kill(self) -> None:
        """kill -9: nothing of the process's shutdown runs (the NGC keeps its listener and monitors)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        err = self.proc.stderr.read().decode(errors="replace").strip()
        if err:
            print(f"[{self.name} stderr, last lines]\n" + "\n".join(err.splitlines()[-10:]), file=sys.stderr)


def gateway_server(peers: FakePeers, tmp: Path, state: Path, profile: Path | None = None) -> Server:
    port = free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "log_level": "warning", "state_file": str(state),
           "logging": {"dir": str(tmp / "logs")},
           "links": [{"link_id": 1, "pabx": {"url": peers.pabx_url, "timeout": 5}}]}
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
    return Server([sys.executable, *prof, "-m", "smartcti_gateway", "run", "--config", str(path)], port, "gateway")


def floor_process(peers: FakePeers) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "tests.bench", "--floor-server", str(port), peers.pabx_url,
                   peers.protheus_url], port, "floor")


# ------------------------------------------------------------- the loads
MIX = ("MakeCall", "Hold", "Retrieve", "queryAgentState", "SystemStatus", "Ready", "NotReady")


def mix_requests(device: str) -> list[bytes]:
    agent = dict(device=device, agentID="", groupID="")
    return [soap_request("MakeCall", device=device, telephoneNumber="4832810000"),
            soap_request("Hold", device=device), soap_request("Retrieve", device=device),
            soap_request("queryAgentState", cDevice=device), soap_request("SystemStatus"),
            soap_request("Ready", **agent), soap_request("NotReady", **agent)]


async def command_load(server: Server, workers: int, duration: float) -> dict:
    """``workers`` closed-loop clients, each on its own device, for ``duration`` s (after a warm-up)."""
    conns = [await Conn.open(server.port) for _ in range(workers)]
    reqs = [mix_requests(f"3{w:03d}") for w in range(workers)]
    for w, (c, r) in enumerate(zip(conns, reqs)):       # warm-up, and the agents logged on
        await c.request(soap_request("Logon", device=f"3{w:03d}", agentID="1234", groupID="701"))
        for raw in r:
            await c.request(raw)
    latencies: list[float] = []
    errors = 0
    stop_at = 0.0

    async def worker(c: Conn, r: list[bytes], offset: int):
        nonlocal errors
        i = offset
        while time.monotonic() < stop_at:
            t = time.monotonic()
            status, body = await c.request(r[i % len(r)])
            latencies.append(time.monotonic() - t)
            if status != 200 or b"<ns:return>" not in body:
                errors += 1
            i += 1

    cpu0, t0 = server.cpu(), time.monotonic()
    stop_at = t0 + duration
    await asyncio.gather(*(worker(c, r, w) for w, (c, r) in enumerate(zip(conns, reqs))))
    wall, cpu = time.monotonic() - t0, server.cpu() - cpu0
    for c in conns:
        c.close()
    n = len(latencies)
    return {"commands": n, "errors": errors, "seconds": round(wall, 3), "throughput": n / wall,
            "p50_ms": quantile(latencies, 0.5) * 1e3, "p99_ms": quantile(latencies, 0.99) * 1e3,
            "cpu_us_per_command": cpu / n * 1e6, "server_core_busy": cpu / wall,
            "cpu_ceiling_per_s": n / cpu if cpu else 0.0, "rss_mb": server.rss()}


class EventSender:
    """Sends ``cti.evento`` over a pool of keep-alive connections; sequence numbers are global."""

    def __init__(self, server: Server, peers: FakePeers, devices: list[str], connections: int = 16):
        self.server, self.peers, self.devices, self.n_conn = server, peers, devices, connections
        self.seq = 0
        self.sent: dict[int, float] = {}
        self.turns: dict[str, int] = {}
        self.errors = 0

    async def open(self):
        self.pool: asyncio.Queue[Conn] = asyncio.Queue()
        for _ in range(self.n_conn):
            self.pool.put_nowait(await Conn.open(self.server.port))

    async def send_one(self) -> int:
        seq = self.seq
        self.seq += 1
        device = self.devices[seq % len(self.devices)]
        turn = self.turns[device] = self.turns.get(device, -1) + 1
        raw = event_request(seq, device, turn)
        c = await self.pool.get()
        try:
            self.sent[seq] = time.monotonic()
            self.peers.expected[device].append(seq)
            status, body = await c.request(raw)
            if status != 200 or b"OK" not in body:
                self.errors += 1
        finally:
            self.pool.put_nowait(c)
        return seq

    async def wait_delivered(self, seqs: range, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s in self.peers.arrivals for s in seqs):
                return True
            await asyncio.sleep(0.01)
        return all(s in self.peers.arrivals for s in seqs)

    def close(self):
        while not self.pool.empty():
            self.pool.get_nowait().close()

    async def burst(self, count: int) -> dict:
        first = self.seq
        cpu0, t0 = self.server.cpu(), time.monotonic()
        todo = iter(range(count))

        async def lane():
            for _ in todo:
                await self.send_one()
        await asyncio.gather(*(lane() for _ in range(self.n_conn)))
        accepted = time.monotonic() - t0
        seqs = range(first, self.seq)
        done = await self.wait_delivered(seqs, timeout=30 + count / 100)
        arrived = [self.peers.arrivals[s] for s in seqs if s in self.peers.arrivals]
        last = max(arrived) if arrived else time.monotonic()
        cpu = self.server.cpu() - cpu0
        return {"events": count, "delivered": len(arrived), "all_delivered": done,
                "accept_per_s": count / accepted, "throughput": len(arrived) / (last - t0),
                "cpu_us_per_event": cpu / max(1, len(arrived)) * 1e6, "server_core_busy": cpu / (last - t0)}

    async def steady(self, rate: float, duration: float, drain: float) -> dict:
        """Open loop: event i is sent at t0 + i/rate, whatever happened to the earlier ones."""
        first = self.seq
        count = max(1, int(rate * duration))
        cpu0, t0 = self.server.cpu(), time.monotonic()
        tasks = []
        for i in range(count):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self.send_one()))
        await asyncio.gather(*tasks)
        sent_done = time.monotonic()
        seqs = range(first, first + count)
        run_end = t0 + duration
        await self.wait_delivered(seqs, timeout=max(0.0, run_end + drain - time.monotonic()))
        lat = [self.peers.arrivals[s] - self.sent[s] for s in seqs if s in self.peers.arrivals]
        arrived = [self.peers.arrivals[s] for s in seqs if s in self.peers.arrivals]
        cpu = self.server.cpu() - cpu0
        span = (max(arrived) - t0) if arrived else duration
        return {"rate": rate, "events": count, "delivered": len(lat), "send_seconds": round(sent_done - t0, 3),
                "delivered_per_s": len(lat) / max(span, duration),
                "kept_up": len(lat) == count and sent_done - t0 < duration * 1.1 + 0.2,
                "p50_ms": quantile(lat, 0.5) * 1e3, "p99_ms": quantile(lat, 0.99) * 1e3,
                "max_ms": max(lat) * 1e3 if lat else 0.0,
                "cpu_us_per_event": cpu / max(1, len(lat)) * 1e6}


async def event_path(server: Server, peers: FakePeers, devices: list[str], p: argparse.Namespace) -> dict:
    sender = EventSender(server, peers, devices)
    await sender.open()
    try:
        for _ in range(50):                                   # warm-up: the WSDL is read on the first event
            await sender.send_one()
        await sender.wait_delivered(range(0, sender.seq), timeout=30)
        out = {"burst": await sender.burst(p.burst)}
        await asyncio.sleep(0.5)
        out["steady"] = await sender.steady(300, p.duration, drain=2.0)
        await asyncio.sleep(0.5)
        out["sustained"] = await sender.steady(p.sustained_rate, p.duration, drain=1.0)
        out["errors"] = sender.errors
        return out
    finally:
        sender.close()


async def in_service(server: Server, peers: FakePeers, devices: list[str], workers: int = 16,
                     agents: list[str] = ()) -> float:
    """AgentInService for ``devices``, then Logon + Ready for ``agents``; seconds taken."""
    t0 = time.monotonic()
    todo = iter([soap_request("AgentInService", device=d, ipaddress=peers.protheus_url) for d in devices] +
                [raw for a in agents for raw in (
                    soap_request("Logon", device=a, agentID=f"9{a}", groupID="701"),
                    soap_request("Ready", device=a, agentID="", groupID=""))])
    bad = 0

    async def lane():
        nonlocal bad
        c = await Conn.open(server.port)
        try:
            for raw in todo:
                status, body = await c.request(raw)
                bad += b"<ns:return>0</ns:return>" not in body
        finally:
            c.close()
    await asyncio.gather(*(lane() for _ in range(workers)))
    if bad:
        raise RuntimeError(f"{bad} in-service/logon requests did not answer 0")
    return time.monotonic() - t0


# --------------------------------------------------------------- the run
def machine() -> dict:
    model = ""
    try:
        model = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "pinned": bool(shutil.which("taskset")) and (os.cpu_count() or 1) > 1}


async def run(p: argparse.Namespace) -> dict:
    pin({CLIENT_CORE})
    peers = FakePeers()
    await peers.start()
    tmp = Path(tempfile.mkdtemp(prefix="smartcti-bench-"))
    state = tmp / "state.sqlite"
    ev_devices = [f"4{i:03d}" for i in range(p.event_devices)]
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "smoke": p.smoke,
                     "parameters": {k: v for k, v in vars(p).items() if k != "floor_server"}}
    try:
        # ---- the floor, alone on core 0
        floor = floor_process(peers)
        await floor.start()
        try:
            results["floor"] = {"idle_rss_mb": floor.rss(),
                                "commands": await command_load(floor, p.workers, p.duration),
                                "events": await event_path(floor, peers, ev_devices, p)}
        finally:
            floor.stop()
        peers.arrivals.clear()
        peers.expected.clear()
        # ---- the gateway, alone on core 0
        gw = gateway_server(peers, tmp, state, tmp / "gateway.prof" if p.profile else None)
        startup_empty = await gw.start()
        g: dict = {"startup_empty_s": startup_empty, "idle_rss_mb": gw.rss()}
        try:
            g["commands"] = await command_load(gw, p.workers, p.duration)
            await in_service(gw, peers, ev_devices)
            g["events"] = await event_path(gw, peers, ev_devices, p)
            # ---- scale: devices in service and agents logged on and ready
            # (the command clients' devices are logged-on agents too, not in service)
            devices = [f"5{i:04d}" for i in range(p.devices - len(ev_devices))]
            agents = devices[:max(0, p.agents - p.workers)]
            secs = await in_service(gw, peers, devices, agents=agents)
            await asyncio.sleep(1.0)   # INSERVICE events delivered, queues drained
            g["scale"] = {"devices": len(devices) + len(ev_devices), "agents": len(agents) + p.workers,
                          "setup_seconds": secs, "rss_mb": gw.rss()}
        finally:
            # kill -9: the NGC, still running, is caught up by the next process (under --profile a graceful
            # stop, or cProfile would write nothing)
            if p.profile:
                gw.stop()
            else:
                gw.kill()
        # ---- start-up with the registry restored, against the same PABX
        before = dict(peers.pabx_calls)
        gw2 = gateway_server(peers, tmp, state)
        t0 = time.monotonic()
        g["startup_restored_s"] = await gw2.start()
        try:
            devices_n, agents_n = g["scale"]["devices"], g["scale"]["agents"]
            waited: list[float] = []
            probe = asyncio.ensure_future(served_meanwhile(gw2.port, devices[0] if devices else "2001", waited))
            g.update(await caught_up(peers, before, t0, devices_n, agents_n))
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, asyncio.IncompleteReadError):
                await probe
            g["catch_up_latency_ms"] = {"p50": quantile(waited, 0.5), "p99": quantile(waited, 0.99),
                                        "max": max(waited, default=0.0), "n": len(waited)}
            g["restored_rss_mb"] = gw2.rss()
        finally:
            gw2.stop()
        results["gateway"] = g
        # ---- the Asterisk driver against a fake AMI peer, and its own floor
        from .bench_asterisk import run_asterisk
        results["asterisk"] = await run_asterisk(p, peers, tmp, in_service)
        # ---- the ANS protocol allocator on this machine's disk
        from .bench_ans import run_ans
        results["ans"] = run_ans(p, tmp)
        if p.profile:
            results["profile"] = profile_text(tmp / "gateway.prof")
    finally:
        await peers.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


async def caught_up(peers: FakePeers, before: dict, t0: float, devices: int, agents: int,
                    limit: float = 120) -> dict:
    """Seconds from the restart until every device is monitored again (cti.monitora), every logged-on
    agent's state read (cti.estado_agente: the agents' devices go first) and every device's calls read
    (cti.chamadas_dispositivo), as the PABX saw the requests come."""
    marks = {"monitored_again_s": ("cti.monitora", devices), "agents_read_s": ("cti.estado_agente", agents),
             "resync_done_s": ("cti.chamadas_dispositivo", devices)}
    out: dict[str, float] = {}
    deadline = time.monotonic() + limit
    while len(out) < len(marks) and time.monotonic() < deadline:
        for key, (method, n) in marks.items():
            if key not in out and peers.pabx_calls.get(method, 0) - before.get(method, 0) >= n:
                out[key] = time.monotonic() - t0
        await asyncio.sleep(0.005)
    return {key: out.get(key, float("inf")) for key in marks}


async def served_meanwhile(port: int, device: str, latencies: list[float]) -> None:
    """queryAgentState every 20 ms while the switch is caught up: what Protheus' polls wait meanwhile."""
    req = soap_request("queryAgentState", cDevice=device)
    c = await Conn.open(port)
    try:
        while True:
            t = time.monotonic()
            await c.request(req)
            latencies.append((time.monotonic() - t) * 1000)
            await asyncio.sleep(0.02)
    finally:
        c.close()


def profile_text(path: Path, top: int = 25) -> str:
    import io
    import pstats
    if not path.exists():
        return "(no profile written)"
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(r"smartcti_gateway|aiohttp/(client|web_protocol)|sqlite|lxml", top)
    return out.getvalue()


# ------------------------------------------------------------- the table
def figures(r: dict) -> list[tuple[str, float, float | None, str, bool | None]]:
    """(figure, gateway, floor or None, target text, met or None)."""
    g, f = r["gateway"], r["floor"]
    gc, fc, ge, fe = g["commands"], f["commands"], g["events"], f["events"]
    ratio_cmd = gc["cpu_ceiling_per_s"] / fc["cpu_ceiling_per_s"] if fc["cpu_ceiling_per_s"] else 0.0
    sustained = ge["sustained"]
    rows = [
        ("commands/s (measured, %d clients)" % r["parameters"]["workers"], gc["throughput"], fc["throughput"], "", None),
        ("commands/s one-core ceiling (1/CPU)", gc["cpu_ceiling_per_s"], fc["cpu_ceiling_per_s"],
         ">= 60% of floor", ratio_cmd >= 0.6),
        ("command latency p50 ms", gc["p50_ms"], fc["p50_ms"], "", None),
        ("command latency p99 ms", gc["p99_ms"], fc["p99_ms"], "", None),
        ("CPU µs per command", gc["cpu_us_per_command"], fc["cpu_us_per_command"], "<= 1.1× floor",
         gc["cpu_us_per_command"] <= 1.1 * fc["cpu_us_per_command"]),
        ("server core busy during commands", gc["server_core_busy"], fc["server_core_busy"], "", None),
        ("event burst: delivered/s", ge["burst"]["throughput"], fe["burst"]["throughput"], "", None),
        ("CPU µs per event (burst)", ge["burst"]["cpu_us_per_event"], fe["burst"]["cpu_us_per_event"],
         "<= 1.2× floor", ge["burst"]["cpu_us_per_event"] <= 1.2 * fe["burst"]["cpu_us_per_event"]),
        ("CPU µs per event at %d/s" % sustained["rate"], sustained["cpu_us_per_event"],
         fe["sustained"]["cpu_us_per_event"], "", None),
        ("events at 300/s: added latency p50 ms", ge["steady"]["p50_ms"], fe["steady"]["p50_ms"], "", None),
        ("events at 300/s: added latency p99 ms", ge["steady"]["p99_ms"], fe["steady"]["p99_ms"], "<= 20 ms",
         ge["steady"]["p99_ms"] <= 20 and ge["steady"]["delivered"] == ge["steady"]["events"]),
        ("events at %d/s: delivered/s" % sustained["rate"], sustained["delivered_per_s"],
         fe["sustained"]["delivered_per_s"], ">= 1000/s sustained",
         sustained["kept_up"] and sustained["rate"] >= 1000 and sustained["delivered_per_s"] >= 0.97 * sustained["rate"]),
        ("events at %d/s: added latency p99 ms" % sustained["rate"], sustained["p99_ms"], fe["sustained"]["p99_ms"],
         "", None),
        ("RSS MB idle", g["idle_rss_mb"], f["idle_rss_mb"], "", None),
        ("RSS MB, %d devices + %d agents" % (g["scale"]["devices"], g["scale"]["agents"]), g["scale"]["rss_mb"], None,
         "<= 200 MB", g["scale"]["rss_mb"] <= 200),
        ("RSS MB after restart with them restored", g["restored_rss_mb"], None, "<= 200 MB", g["restored_rss_mb"] <= 200),
        ("start-up to ready s, empty", g["startup_empty_s"], None, "<= 2 s", g["startup_empty_s"] <= 2),
        ("start-up to ready s, %d devices restored" % g["scale"]["devices"], g["startup_restored_s"], None, "<= 2 s",
         g["startup_restored_s"] <= 2),
        ("kill -9, restart: every device monitored again s", g["monitored_again_s"], None, "<= 3 s",
         g["monitored_again_s"] <= 3),
        ("kill -9, restart: every agent's state read s", g["agents_read_s"], None, "<= 3 s", g["agents_read_s"] <= 3),
        ("kill -9, restart: the whole resync done s", g["resync_done_s"], None, "", None),
        ("queryAgentState latency during it p99 ms", g["catch_up_latency_ms"]["p99"], None, "", None),
    ]
    if "asterisk" in r:
        from .bench_asterisk import figures as asterisk_figures
        rows += asterisk_figures(r["asterisk"])
    if "ans" in r:
        from .bench_ans import figures as ans_figures
        rows += ans_figures(r["ans"])
    return rows


def fmt(v: float | None) -> str:
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def table(r: dict) -> str:
    lines = ["| figure | gateway | floor | gateway/floor | target | met? |", "|---|---|---|---|---|---|"]
    for name, gv, fv, target, met in figures(r):
        ratio = f"{gv / fv:.2f}" if fv else "–"
        verdict = "" if met is None else ("yes" if met else "**MISSED**")
        lines.append(f"| {name} | {fmt(gv)} | {fmt(fv)} | {ratio} | {target} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="seconds-long run (what the suite does)")
    ap.add_argument("--duration", type=float, help="seconds per measurement (default 10; smoke 0.5)")
    ap.add_argument("--workers", type=int, default=16, help="concurrent SOAP clients (default 16)")
    ap.add_argument("--burst", type=int, help="events in the burst (default 5000; smoke 300)")
    ap.add_argument("--sustained-rate", type=float, default=1000, help="events/s to sustain (default 1000)")
    ap.add_argument("--devices", type=int, help="devices in service for the scale figure (default 8000; smoke 200)")
    ap.add_argument("--agents", type=int, help="agents logged on and ready (default 2000; smoke 50)")
    ap.add_argument("--event-devices", type=int, default=100, help="devices the events are spread over (default 100)")
    ap.add_argument("--profile", action="store_true", help="run the gateway under cProfile; the top of it goes "
                                                           "into results.json and stdout")
    ap.add_argument("--output", default=str(RESULTS), help="results file (default %(default)s)")
    ap.add_argument("--floor-server", nargs=3, metavar=("PORT", "PABX_URL", "PROTHEUS_URL"), help=argparse.SUPPRESS)
    p = ap.parse_args(argv)
    if p.floor_server:
        floor_server(int(p.floor_server[0]), p.floor_server[1], p.floor_server[2])
        return 0
    p.duration = p.duration or (0.5 if p.smoke else 10.0)
    p.burst = p.burst or (300 if p.smoke else 5000)
    p.devices = p.devices or (200 if p.smoke else 8000)
    p.agents = p.agents or (50 if p.smoke else 2000)
    if p.smoke:
        p.event_devices = min(p.event_devices, 20)
    results = asyncio.run(run(p))
    md = table(results)
    results["table"] = md
    m = results["machine"]
    print(f"\nsmartcti-gateway benchmark{' (smoke)' if p.smoke else ''}, {results['date']}: {m['nproc']} cores, "
          f"{m['cpu']}, Python {m['python']}; server pinned to core {SERVER_CORE}, load and peers on core "
          f"{CLIENT_CORE}\n")
    print(md)
    missed = [name for name, _, _, _, met in figures(results) if met is False]
    print("\nMISSED: " + "; ".join(missed) if missed else "\nevery target met")
    if p.profile:
        print("\ngateway profile (cProfile; its overhead slows every figure of a --profile run):\n" + results["profile"])
    out = Path(p.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
