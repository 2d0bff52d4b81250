"""The Asterisk part of ``scripts/bench`` (tests/bench.py runs it after the Dígitro part).

The gateway with ``driver: asterisk`` against a fake AMI peer in the bench process (core 1) that
answers every action at once, as fast as an Asterisk on the same machine would not:

(a) commands: closed-loop SOAP clients sending MakeCall, each one ``Originate`` round trip (the
    fake also says OriginateResponse, as Asterisk does);
(b) events: a burst of AMI queue-member events (QueueMemberAdded, paused, then QueueMemberRemoved,
    alternately, over devices in service), each one a LOGGEDON or LOGGEDOFF SOAP POST to Protheus.

The floor (``python -m tests.bench_asterisk --floor PORT AMI_PORT PROTHEUS_URL``) is the same idea as
the Dígitro floor: aiohttp + lxml, one AMI connection with the least framing that works, one action
round trip per command, one SOAP POST per event; nothing else. Like tests/bench.py, nothing of the
gateway is imported at the top: the floor process must not load it.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time

from .bench import (CMD_PATH, ENDPOINT, Conn, FakePeers, Server, free_port, quantile, serve_until_sigterm,
                    soap_request)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class FakeAmi:
    """Answers every action Success at once; pushes events to every logged-in client on demand."""

    def __init__(self):
        self.writers: list[asyncio.StreamWriter] = []
        self.actions = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(BANNER)
        self.writers.append(writer)
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                self.actions += 1
                fields = dict(line.split(": ", 1) for line in raw.decode().split("\r\n") if ": " in line)
                aid, name = fields.get("ActionID", ""), fields.get("Action", "")
                if name in ("CoreShowChannels", "QueueStatus"):
                    done = "CoreShowChannelsComplete" if name == "CoreShowChannels" else "QueueStatusComplete"
                    writer.write(f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n\r\nEvent: {done}\r\n"
                                 f"ActionID: {aid}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n".encode())
                elif name == "Originate":
                    writer.write(f"Response: Success\r\nActionID: {aid}\r\nMessage: Originate successfully queued"
                                 f"\r\n\r\nEvent: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {aid}\r\n"
                                 f"Response: Success\r\nChannel: {fields.get('Channel', '')}\r\nReason: 4\r\n"
                                 f"Uniqueid: {fields.get('ChannelId', '')}\r\n\r\n".encode())
                elif name == "DialplanExtensionAdd" and fields.get("Replace") != "yes":
                    writer.write(f"Response: Error\r\nActionID: {aid}\r\nMessage: Failed to add extension\r\n\r\n"
                                 .encode())
                else:
                    writer.write(f"Response: Success\r\nActionID: {aid}\r\n\r\n".encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    def burst(self, n: int, devices: list[str], first: int) -> None:
        """``n`` queue-member events, one SOAP event each at Protheus, written in one go."""
        out = []
        for i in range(n):
            seq, device = first + i, devices[i % len(devices)]
            if (i // len(devices)) % 2 == 0:
                out.append(f"Event: QueueMemberAdded\r\nPrivilege: agent,all\r\nQueue: vendas\r\nMemberName: b{seq}\r\n"
                           f"Interface: PJSIP/{device}\r\nStateInterface: PJSIP/{device}\r\nMembership: dynamic\r\n"
                           f"Paused: 1\r\nPausedReason: smartcti-logon\r\n\r\n")
            else:
                out.append(f"Event: QueueMemberRemoved\r\nPrivilege: agent,all\r\nQueue: vendas\r\nMemberName: b{seq}\r\n"
                           f"Interface: PJSIP/{device}\r\nStateInterface: PJSIP/{device}\r\nMembership: dynamic\r\n"
                           f"Paused: 1\r\n\r\n")
        data = "".join(out).encode()
        for w in self.writers:
            w.write(data)


# ------------------------------------------------------------ the floor
def floor_server(port: int, ami_port: int, protheus_url: str) -> None:
    """The unavoidable work: aiohttp + lxml for SOAP, one AMI connection, one round trip per command."""
    import aiohttp
    from aiohttp import web
    from lxml import etree

    soap_ns = "http://schemas.xmlsoap.org/soap/envelope/"
    parser = etree.XMLParser(resolve_entities=False, no_network=True)

    async def main():
        session = aiohttp.ClientSession()
        reader, writer = await asyncio.open_connection("127.0.0.1", ami_port)
        await reader.readline()
        waiting: dict[str, asyncio.Future] = {}
        ids = iter(range(1, 1 << 62))
        posts = asyncio.Semaphore(16)

        async def post(name: str, device: str, agent: str) -> None:
            body = (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{soap_ns}"><soap:Body>'
                    f'<{name} xmlns="http://127.0.0.1/"><CDEVICE>{device}</CDEVICE><ILINKID>2</ILINKID>'
                    f'<CAGENTID>{agent}</CAGENTID><CGROUPID>701</CGROUPID></{name}></soap:Body></soap:Envelope>')
            async with posts:
                async with session.post(protheus_url, data=body.encode(),
                                        headers={"Content-Type": "text/xml; charset=utf-8",
                                                 "SOAPAction": f'"http://127.0.0.1/{name}"'}) as r:
                    etree.fromstring(await r.read(), parser)

        async def read():
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                m = dict(line.split(": ", 1) for line in raw.decode().split("\r\n") if ": " in line)
                if "Event" not in m and m.get("ActionID") in waiting:
                    waiting.pop(m["ActionID"]).set_result(m)
                elif m.get("Event") in ("QueueMemberAdded", "QueueMemberRemoved"):
                    name = "LOGGEDON" if m["Event"] == "QueueMemberAdded" else "LOGGEDOFF"
                    asyncio.ensure_future(post(name, m["Interface"].split("/", 1)[1], m["MemberName"]))

        async def action(fields: str) -> dict:
            aid = f"f{next(ids)}"
            fut = waiting[aid] = asyncio.get_running_loop().create_future()
            writer.write(f"ActionID: {aid}\r\n{fields}\r\n".encode())
            return await fut

        asyncio.ensure_future(read())
        await action("Action: Login\r\nUsername: smartcti\r\nSecret: x\r\n")

        async def command(request):
            root = etree.fromstring(await request.read(), parser)
            op_el = root.find(f"{{{soap_ns}}}Body")[0]
            op = etree.QName(op_el).localname
            args = {etree.QName(c).localname: (c.text or "") for c in op_el}
            if op == "MakeCall":
                reply = await action(f"Action: Originate\r\nChannel: PJSIP/{args.get('device', '')}\r\n"
                                     f"Context: from-internal\r\nExten: {args.get('telephoneNumber', '')}\r\n"
                                     f"Priority: 1\r\nAsync: true\r\n")
            else:
                reply = await action("Action: Ping\r\n")
            value = "0" if reply.get("Response") == "Success" else "24"
            return web.Response(body=f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv='
                                     f'"{soap_ns}"><soapenv:Body><ns:{op}Response xmlns:ns="http://DefaultNamespace">'
                                     f'<ns:return>{value}</ns:return></ns:{op}Response></soapenv:Body>'
                                     f'</soapenv:Envelope>', content_type="text/xml")

        await serve_until_sigterm(port, [(ENDPOINT, command)])
        await session.close()

    asyncio.run(main())


def floor_process(ami: FakeAmi, peers: FakePeers) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "tests.bench_asterisk", "--floor", str(port), str(ami.port),
                   peers.protheus_url], port, "asterisk floor")


def gateway_server(ami: FakeAmi, tmp, state) -> Server:
    import yaml
    port = free_port()
    cfg = {"listen": f"127.0.0.1:{port}", "log_level": "warning", "state_file": str(state),
           "logging": {"dir": str(tmp / "logs-ast")},
           "links": [{"link_id": 2, "command_path": CMD_PATH, "pabx": {
               "driver": "asterisk", "host": "127.0.0.1", "port": ami.port, "username": "smartcti", "secret": "bench",
               "queues": {"701": "vendas"}, "timeout": 5}}]}
    path = tmp / "gateway-asterisk.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return Server([sys.executable, "-m", "smartcti_gateway", "run", "--config", str(path)], port, "gateway (asterisk)")


# ------------------------------------------------------------- the loads
async def make_calls(server: Server, workers: int, duration: float) -> dict:
    conns = [await Conn.open(server.port) for _ in range(workers)]
    reqs = [soap_request("MakeCall", device=f"3{w:03d}", telephoneNumber="4832810000") for w in range(workers)]
    for c, r in zip(conns, reqs):              # warm-up
        await c.request(r)
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + duration

    async def worker(c: Conn, r: bytes):
        nonlocal errors
        while time.monotonic() < stop_at:
            t = time.monotonic()
            status, body = await c.request(r)
            latencies.append(time.monotonic() - t)
            errors += status != 200 or b"<ns:return>0</ns:return>" not in body

    cpu0, t0 = server.cpu(), time.monotonic()
    await asyncio.gather(*(worker(c, r) for c, r in zip(conns, reqs)))
    wall, cpu = time.monotonic() - t0, server.cpu() - cpu0
    for c in conns:
        c.close()
    n = len(latencies)
    return {"commands": n, "errors": errors, "throughput": n / wall, "p50_ms": quantile(latencies, 0.5) * 1e3,
            "p99_ms": quantile(latencies, 0.99) * 1e3, "cpu_us_per_command": cpu / n * 1e6,
            "cpu_ceiling_per_s": n / cpu if cpu else 0.0}


async def event_burst(server: Server, ami: FakeAmi, peers: FakePeers, devices: list[str], n: int,
                      first: int) -> dict:
    async def settled():
        last, since = -1, time.monotonic()
        while time.monotonic() - since < 0.3:
            if peers.protheus_posts != last:
                last, since = peers.protheus_posts, time.monotonic()
            await asyncio.sleep(0.02)
    round_trip = 2 * len(devices)                         # every device logged on, then off again
    n = max(round_trip, n // round_trip * round_trip)
    await settled()
    ami.burst(round_trip, devices, first)                 # warm-up
    await settled()
    posts0, cpu0, t0 = peers.protheus_posts, server.cpu(), time.monotonic()
    ami.burst(n, devices, first + round_trip)
    deadline = t0 + 120
    while peers.protheus_posts - posts0 < n and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    wall, cpu, got = time.monotonic() - t0, server.cpu() - cpu0, peers.protheus_posts - posts0
    return {"events": n, "delivered": got, "throughput": got / wall, "cpu_us_per_event": cpu / max(got, 1) * 1e6}


async def run_asterisk(p: argparse.Namespace, peers: FakePeers, tmp, in_service) -> dict:
    """Floor then gateway, each alone on the server core; the same loads."""
    devices = [f"6{i:03d}" for i in range(p.event_devices)]
    out: dict = {}
    ami = FakeAmi()
    await ami.start()
    try:
        floor = floor_process(ami, peers)
        await floor.start()
        try:
            out["floor"] = {"commands": await make_calls(floor, p.workers, p.duration),
                            "events": await event_burst(floor, ami, peers, devices, p.burst, 10_000_000)}
        finally:
            floor.stop()
        gw = gateway_server(ami, tmp, tmp / "state-asterisk.sqlite")
        await gw.start()
        try:
            g = {"commands": await make_calls(gw, p.workers, p.duration)}
            await in_service(gw, peers, devices)
            g["events"] = await event_burst(gw, ami, peers, devices, p.burst, 20_000_000)
            g["rss_mb"] = gw.rss()
            out["gateway"] = g
        finally:
            gw.stop()
    finally:
        await ami.close()
    return out


def figures(a: dict) -> list[tuple[str, float, float | None, str, bool | None]]:
    """No targets: what they show is where the gateway's own cost lies (docs/performance.md)."""
    g, f = a["gateway"], a["floor"]
    return [
        ("Asterisk: MakeCall/s (measured)", g["commands"]["throughput"], f["commands"]["throughput"], "", None),
        ("Asterisk: MakeCall/s one-core ceiling (1/CPU)", g["commands"]["cpu_ceiling_per_s"],
         f["commands"]["cpu_ceiling_per_s"], "", None),
        ("Asterisk: MakeCall latency p99 ms", g["commands"]["p99_ms"], f["commands"]["p99_ms"], "", None),
        ("Asterisk: CPU µs per command", g["commands"]["cpu_us_per_command"], f["commands"]["cpu_us_per_command"], "",
         None),
        ("Asterisk: AMI event burst: delivered/s", g["events"]["throughput"], f["events"]["throughput"], "", None),
        ("Asterisk: CPU µs per event (burst)", g["events"]["cpu_us_per_event"], f["events"]["cpu_us_per_event"], "",
         None),
    ]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m tests.bench_asterisk")
    ap.add_argument("--floor", nargs=3, metavar=("PORT", "AMI_PORT", "PROTHEUS_URL"), required=True)
    a = ap.parse_args()
    floor_server(int(a.floor[0]), int(a.floor[1]), a.floor[2])
