"""``smartcti-gateway capture``: the recording proxy, on loopback, with real peers.

The gateway stands in for DigitroCTILink on both sides (it speaks XML-RPC to an NGC and is a
SmartCTIWSCommand for Protheus); the NGC is the repo's simulator, Protheus the simulated
SmartCTIWSEventing. Byte-level checks use a small aiohttp upstream that keeps what it received.
Synchronisation is by answers, events and queues, never by sleeping.
"""
from __future__ import annotations

import asyncio
import gzip
import json
import os
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path

import pytest
from aiohttp import web

from smartcti_gateway.capture import CaptureError, body_bytes, read_capture
from smartcti_gateway.capture.mask import mask_bytes
from smartcti_gateway.capture.proxy import CaptureOptions, CaptureProxy
from smartcti_gateway.capture.rewrite import Rewrite, rewrite_wsdl, wsdl_query
from smartcti_gateway.cli import main

from .support import (
    ENDPOINT,
    BackgroundLoop,
    Peers,
    RunningGateway,
    free_port,
    mark,
    protheus_envelope,
    wait_device,
)

LOCAL = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ helpers

async def serve_any(handler, **app_options) -> tuple[web.AppRunner, int, str]:
    """``handler`` for every method and path on a loopback port: (runner, port, its URL)."""
    app = web.Application(**app_options)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOCAL, 0).start()
    port = runner.addresses[0][1]
    return runner, port, f"http://{LOCAL}:{port}"

class Upstream:
    """An HTTP server that keeps every request as it came and answers what the test tells it."""

    def __init__(self, bg: BackgroundLoop):
        self.bg = bg
        self.received: list[dict] = []
        self.release = None     # asyncio.Event for /stream, created on the loop
        bg.run(self._start())

    async def _start(self):
        self.release = asyncio.Event()

        async def any_request(request: web.Request):
            body = await request.read()
            self.received.append({"method": request.method, "path": request.raw_path,
                                  "headers": [(k.decode(), v.decode("latin-1")) for k, v in request.raw_headers],
                                  "body": body})
            if request.raw_path.startswith("/stream"):
                resp = web.StreamResponse(status=299, reason="Odd But Fine")
                resp.headers["X-Upstream-Odd"] = "a  b"
                resp.headers["Content-Type"] = "text/plain"
                await resp.prepare(request)
                await resp.write(b"first-part;")
                await self.release.wait()
                try:
                    await resp.write(b"second-part")
                    await resp.write_eof()
                except ConnectionError:     # the proxy stopped in the middle (a test of that)
                    pass
                return resp
            if request.raw_path.startswith("/gzip"):
                answer = xmlrpc.client.dumps(({"RESULTADO": "OK", "SENHA": "gzip-secret-5"},), methodresponse=True)
                return web.Response(body=gzip.compress(answer.encode()), content_type="text/xml",
                                    headers={"Content-Encoding": "gzip"})
            return web.Response(body=b"<answer>" + body[:64] + b"</answer>", content_type="text/xml",
                                headers={"X-Upstream-Odd": "a  b", "Set-Cookie": "sid=cookie-secret-77"})

        self.runner, self.port, self.url = await serve_any(any_request, client_max_size=64 << 20)

    def close(self):
        self.bg.loop.call_soon_threadsafe(self.release.set)
        self.bg.run(self.runner.cleanup())


@pytest.fixture
def bg():
    loop = BackgroundLoop()
    yield loop
    loop.stop_loop()


@pytest.fixture
def upstream(bg):
    u = Upstream(bg)
    yield u
    u.close()


def start_proxy(bg: BackgroundLoop, out, **options) -> CaptureProxy:
    async def start():
        proxy = CaptureProxy(CaptureOptions(out=str(out), **options))
        await proxy.start()
        return proxy
    return bg.run(start())


def http(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    import http.client
    conn = http.client.HTTPConnection(LOCAL, port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheaders()
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, *, shutdown: bool = False, timeout: float = 10) -> bytes:
    """Send ``data`` on a new connection; everything received until the peer closes."""
    with socket.create_connection((LOCAL, port), timeout=timeout) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def of(records, side=None, dir=None):
    return [r for r in records if (side is None or r["side"] == side) and (dir is None or r["dir"] == dir)]


def soap_via(port: int, op: str, **args) -> str:
    status, body, _ = http(port, "POST", ENDPOINT, protheus_envelope(op, **args),
                           {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": f'"urn:{op}"'})
    assert status == 200, body
    m = re.search(rb"<ns:return>(.*?)</ns:return>", body)
    assert m, body
    return m.group(1).decode()


# ------------------------------------------------------- the gateway through it
def test_gateway_works_through_the_proxy_and_everything_is_recorded(bg, tmp_path):
    """SystemStatus, AgentInService, an inbound call: the NGC's callbacks and the events to Protheus
    come back through the proxy; the capture holds each message with its callback URL rewritten."""
    out = tmp_path / "cap.jsonl"
    peers = Peers()
    gw_port = free_port()
    proxy = start_proxy(bg, out, xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=peers.sim.url,
                        soap_listen=(LOCAL, 0), soap_upstream=f"http://{LOCAL}:{gw_port}{ENDPOINT}")
    xport, sport = proxy.xmlrpc.port, proxy.soap.port
    gw = RunningGateway({"listen": f"{LOCAL}:{gw_port}",
                         "links": [{"link_id": 1, "pabx": {"url": f"http://{LOCAL}:{xport}/RPC2", "timeout": 2}}]})
    try:
        assert soap_via(sport, "SystemStatus") == "0"
        assert soap_via(sport, "AgentInService", device="2001", ipaddress=gw.events_url) == "0"
        wait_device(gw, "2001", ["INSERVICE"])
        since = mark(gw)
        assert soap_via(sport, "LogonPass", device="2001", agentID="1234", groupID="701",
                        agentPass="pw-9876") == "0"
        wait_device(gw, "2001", ["LOGGEDON"], since)
        since = mark(gw)
        status, raw, _ = http(peers.sim_port, "POST", "/sim/inbound",
                              json.dumps({"ani": "4832810000", "dnis": "7001", "device": "2001"}).encode(),
                              {"Content-Type": "application/json"})
        assert status == 200, raw
        call_id = json.loads(raw)["call_id"]
        (ringing,) = wait_device(gw, "2001", ["RINGING"], since)
        assert ringing["params"]["CALLID"] == call_id and ringing["params"]["ANI"] == "4832810000"
    finally:
        gw.close()
        summary = bg.run(proxy.stop())
        peers.close()

    header, records = read_capture(out)
    assert header["format"] == "smartcti-capture" and header["version"] == 1
    assert header["sides"]["xmlrpc"] == {"listen": f"{LOCAL}:{xport}", "upstream": peers.sim.url,
                                         "callback_base": f"http://{LOCAL}:{xport}/_cb/"}
    assert header["program"].startswith("smartcti-gateway ")
    assert records[-1]["side"] == "capture" and records[-1]["dir"] == "end"

    # the registration: URL_RETORNO pointed at the proxy, the original kept in the record
    gw_events = f"http://{LOCAL}:{gw_port}/pabx/digitro/1/RPC2"
    (reg,) = [r for r in of(records, "xmlrpc", "to_pabx") if r["parsed"]["method"] == "cti.registra_retorno"]
    assert reg["rewritten"] == {"from": gw_events, "to": f"http://{LOCAL}:{xport}/_cb/0/pabx/digitro/1/RPC2"}
    assert reg["parsed"]["params"][0]["URL_RETORNO"] == gw_events
    (answer,) = [r for r in records if r["dir"] == "from_pabx" and r["conn"] == reg["conn"]]
    assert answer["http"]["status"] == 200 and answer["parsed"]["result"]["RESULTADO"] == "OK"
    assert answer["seq"] > reg["seq"]

    # the NGC's events came through /_cb/0 and were forwarded to the gateway
    callbacks = of(records, "xmlrpc", "callback_to_gateway")
    assert callbacks and all(r["http"]["path"] == "/_cb/0/pabx/digitro/1/RPC2" and r["upstream"] == gw_events
                             for r in callbacks)
    evented = [r["parsed"]["params"][0]["EVENTO"] for r in callbacks]
    assert all(r["parsed"]["method"] == "cti.evento" for r in callbacks)
    assert any(r["parsed"]["params"][0].get("ID_CHAMADA") == call_id for r in callbacks), evented
    cb_answers = {r["conn"]: r for r in of(records, "xmlrpc", "callback_answer")}
    assert all(cb_answers[r["conn"]]["http"]["status"] == 200 for r in callbacks)
    assert all(cb_answers[r["conn"]]["parsed"] == {"result": {"RESULTADO": "OK"}} for r in callbacks)

    # SOAP: the eventing URL rewritten, the events to Protheus came back through /_ev/0
    (ais,) = [r for r in of(records, "soap", "to_middleware") if r["parsed"]["operation"] == "AgentInService"]
    ev_path = "/" + gw.events_url.split("/", 3)[3]
    assert ais["rewritten"] == {"from": gw.events_url, "to": f"http://{LOCAL}:{sport}/_ev/0{ev_path}"}
    assert ais["parsed"]["args"] == {"device": "2001", "ipaddress": gw.events_url}
    (status_ans,) = [r for r in of(records, "soap", "from_middleware")
                     if r["parsed"] and r["parsed"].get("operation") == "SystemStatus"]
    assert status_ans["parsed"]["return"] == "0"
    events = of(records, "soap", "event_to_protheus")
    ops = [r["parsed"]["operation"] for r in events if r["http"]["method"] == "POST"]
    assert "INSERVICE" in ops and "RINGING" in ops
    assert all(r["http"]["path"].startswith(f"/_ev/0{ev_path}") for r in events)
    ring = next(r for r in events if r["parsed"] and r["parsed"]["operation"] == "RINGING")
    assert ring["parsed"]["args"]["CALLID"] == call_id
    ring_answer = next(r for r in of(records, "soap", "event_answer") if r["conn"] == ring["conn"])
    assert ring_answer["parsed"] == {"operation": "RINGING", "return": "0"}

    # the password of LogonPass: masked in the SOAP request and in the NGC call the gateway made of it
    logon = next(r for r in of(records, "soap", "to_middleware") if r["parsed"]["operation"] == "LogonPass")
    assert logon["parsed"]["args"]["agentPass"] == "***" and "<agentPass>***</agentPass>" in logon["body"]
    login = next(r for r in of(records, "xmlrpc", "to_pabx") if r["parsed"]["method"] == "cti.login_dac")
    assert login["parsed"]["params"][0]["SENHA_DISPOSITIVO"] == "***"
    assert b"pw-9876" not in out.read_bytes()

    # every exchange has its answer; the summary says what came through
    for r in records:
        if r["dir"] in ("to_pabx", "callback_to_gateway", "to_middleware", "event_to_protheus"):
            assert any(a["conn"] == r["conn"] and a["seq"] > r["seq"] and "http" in a and "status" in a["http"]
                       for a in records), r
    assert summary["methods"]["cti.registra_retorno"] == 1 and "cti.evento" in summary["methods"]
    assert {"AgentInService", "SystemStatus", "INSERVICE", "RINGING"} <= set(summary["operations"])
    assert {r["from"] for r in summary["rewritten"]} == {gw_events, gw.events_url}
    assert summary["messages"]["xmlrpc"]["callback_to_gateway"] == len(callbacks)
    assert summary["size"] == out.stat().st_size


# ----------------------------------------------------------- bytes unchanged
def test_bodies_and_headers_pass_byte_for_byte_except_the_rewritten_urls(bg, upstream, tmp_path):
    out = tmp_path / "cap.jsonl"
    proxy = start_proxy(bg, out, xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=upstream.url + "/RPC2")
    port = proxy.xmlrpc.port
    cb = f"{LOCAL}:{upstream.port}"
    body = (b"<?xml version='1.0' encoding='ISO-8859-1'?>\r\n<methodCall>  <methodName>cti.registra_retorno"
            b"</methodName>\n<params><param><value><struct>"
            b"<member><name>URL_RETORNO</name><value><string>http://user:pw@" + cb.encode() +
            b"/events?a=1&amp;b=2</string></value></member>"
            b"<member><name>NOME</name><value>Jo\xe3o  da  Silva</value></member>"
            b"<member><name>OUTRO</name><value>   https://10.255.255.1/x   </value></member>"
            b"</struct></value></param>"
            b"<param><value><string>http://" + cb.encode() + b"/second</string></value></param>"
            b"<param><value><string>not a url: http:/x</string></value></param>"
            b"</params></methodCall>\r\n")
    headers = {"Content-Type": "text/xml; charset=ISO-8859-1", "X-Odd-Case": "Value  with  spaces",
               "User-Agent": "Apache XML RPC 3.1 (Sun HTTP Transport)", "Authorization": "Basic dXNlcjpwdw=="}
    status, answer, resp_headers = http(port, "POST", "/RPC2?x=%41", body, headers)
    assert status == 200
    got = upstream.received[-1]
    mine = f"127.0.0.1:{port}".encode()
    expected = (body.replace(b"http://user:pw@" + cb.encode() + b"/events", b"http://user:pw@" + mine + b"/_cb/0/events")
                .replace(b"https://10.255.255.1/x", b"http://" + mine + b"/_cb/1/x")
                .replace(b"http://" + cb.encode() + b"/second", b"http://" + mine + b"/_cb/0/second"))
    assert got["body"] == expected and got["method"] == "POST" and got["path"] == "/RPC2?x=%41"
    names = [k for k, _ in got["headers"]]
    # what the client sent, in its case; Host names the upstream; nothing added
    assert sorted(names) == sorted(["Host", "Accept-Encoding", "Content-Length", *headers]) or \
        sorted(names) == sorted(["Host", "Content-Length", *headers]), names
    assert dict(got["headers"])["Host"] == f"{LOCAL}:{upstream.port}"
    assert dict(got["headers"])["Content-Length"] == str(len(expected))
    assert dict(got["headers"])["X-Odd-Case"] == "Value  with  spaces"
    assert dict(got["headers"])["Authorization"] == "Basic dXNlcjpwdw=="
    assert answer == b"<answer>" + expected[:64] + b"</answer>"
    assert ("X-Upstream-Odd", "a  b") in resp_headers and ("Set-Cookie", "sid=cookie-secret-77") in resp_headers

    # a body without URL: not one byte changes, Content-Length neither
    plain = b"<?xml version='1.0'?><methodCall><methodName>cti.status</methodName><params/></methodCall>"
    http(port, "POST", "/RPC2", plain, {"Content-Type": "text/xml"})
    assert upstream.received[-1]["body"] == plain
    assert dict(upstream.received[-1]["headers"])["Content-Length"] == str(len(plain))

    # the callback: /_cb/0/... reaches the original base with the rest of the path and the query
    status, answer, _ = http(port, "POST", "/_cb/0/events?a=1&b=2", b"<event/>", {"Content-Type": "text/xml"})
    assert status == 200 and upstream.received[-1]["path"] == "/events?a=1&b=2"
    assert upstream.received[-1]["body"] == b"<event/>"

    # a streamed answer passes as a stream: the first part arrives before the upstream writes the rest
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"first-part;" not in data:
            data += s.recv(4096)
        bg.loop.call_soon_threadsafe(upstream.release.set)
        while not data.endswith(b"0\r\n\r\n"):
            data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 299 Odd But Fine\r\n")
    assert b"\r\nX-Upstream-Odd: a  b\r\n" in data and b"Transfer-Encoding: chunked" in data

    # Expect: 100-continue, a chunked request body, a compressed answer: as they came
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        s.sendall(b"POST /gzip HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n"
                  b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert upstream.received[-1]["body"] == b"hello world"
    head, _, gz = data.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head and b"gzip-secret-5" in gzip.decompress(gz)

    bg.run(proxy.stop())
    _, records = read_capture(out)
    gz_answer = next(r for r in of(records, "xmlrpc", "from_pabx") if r.get("decoded") == "gzip")
    assert gz_answer["parsed"] == {"result": {"RESULTADO": "OK", "SENHA": "***"}}
    assert "<name>SENHA</name>\n<value><string>***</string></value>" in gz_answer["body"]
    assert gz_answer["size_on_wire"] == len(gz) and b"gzip-secret-5" not in out.read_bytes()
    reg = of(records, "xmlrpc", "to_pabx")[0]
    # the record keeps what the client sent (masked), the rewrites beside it
    assert body_bytes(reg) == mask_bytes(body) and reg["size"] == len(body) and not reg["truncated"]
    assert "body_b64" in reg    # ISO-8859-1 "ã": not UTF-8
    assert reg["rewritten"] == {"from": f"http://user:***@{cb}/events?a=1&b=2",
                                "to": f"http://user:***@127.0.0.1:{port}/_cb/0/events?a=1&b=2"}
    assert [r["to"] for r in reg["rewritten_all"]] == [
        f"http://user:***@127.0.0.1:{port}/_cb/0/events?a=1&b=2", f"http://127.0.0.1:{port}/_cb/1/x",
        f"http://127.0.0.1:{port}/_cb/0/second"]
    assert reg["parsed"]["params"][0]["NOME"] == "João  da  Silva"
    assert dict(reg["http"]["headers"])["Authorization"] == "Basic ***"
    ans = of(records, "xmlrpc", "from_pabx")[0]
    assert dict(ans["http"]["headers"])["Set-Cookie"] == "***"
    (cb_rec,) = of(records, "xmlrpc", "callback_to_gateway")
    assert cb_rec["upstream"] == f"http://{cb}/events?a=1&b=2"
    stream = [r for r in of(records, "xmlrpc", "from_pabx") if r["http"]["status"] == 299]
    assert stream[0]["body"] == "first-part;second-part" and stream[0]["http"]["reason"] == "Odd But Fine"


def test_big_bodies_stream_both_ways_and_are_recorded_up_to_the_cap(bg, upstream, tmp_path):
    out = tmp_path / "cap.jsonl"
    proxy = start_proxy(bg, out, soap_listen=(LOCAL, 0), soap_upstream=upstream.url, body_cap=1000)
    big = bytes(range(256)) * (5 * 4096 + 7)      # 5 MB: more than what is read whole, streamed
    status, _, _ = http(proxy.soap.port, "PUT", "/big", big, {"Content-Type": "application/octet-stream"})
    assert status == 200 and upstream.received[-1]["body"] == big
    small = b"x" * 5000
    http(proxy.soap.port, "POST", "/small", small)
    assert upstream.received[-1]["body"] == small
    bg.run(proxy.stop())
    _, records = read_capture(out)
    reqs = of(records, "soap", "to_middleware")
    assert reqs[0]["size"] == len(big) and reqs[0]["truncated"] and body_bytes(reqs[0]) == big[:1000]
    assert reqs[1]["size"] == 5000 and reqs[1]["truncated"] and body_bytes(reqs[1]) == small[:1000]
    assert reqs[1]["parsed"] is None


def test_stop_ends_in_flight_exchanges_within_two_seconds_and_records_them(bg, upstream, tmp_path):
    out = tmp_path / "cap.jsonl"
    proxy = start_proxy(bg, out, xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=upstream.url,
                        callback_host="cti-proxy.example")
    s = socket.create_connection((LOCAL, proxy.xmlrpc.port), timeout=10)
    try:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"first-part;" not in data:          # the upstream now holds the rest back
            data += s.recv(4096)
        t = time.monotonic()
        summary = bg.run(proxy.stop())
        assert time.monotonic() - t < 4
    finally:
        s.close()
    _, records = read_capture(out)
    (answer,) = of(records, "xmlrpc", "from_pabx")
    assert answer["incomplete"] and answer["body"] == "first-part;" and "stopped" in answer["error"]
    assert records[-1]["dir"] == "end" and summary["messages"]["xmlrpc"] == {"from_pabx": 1, "to_pabx": 1}
    header, _ = read_capture(out)
    assert header["sides"]["xmlrpc"]["callback_base"] == f"http://cti-proxy.example:{proxy.xmlrpc.port}/_cb/"


def test_the_callback_host_of_a_wildcard_listener_is_this_machine_towards_the_upstream(tmp_path):
    proxy = CaptureProxy(CaptureOptions(out=str(tmp_path / "c.jsonl"), xmlrpc_listen=("0.0.0.0", 0),
                                        xmlrpc_upstream="http://127.0.0.1:2551/RPC2"))
    try:
        assert proxy.xmlrpc.callback_host == "127.0.0.1"
        assert proxy._callback_host("10.1.2.3", "http://127.0.0.1:1/") == "10.1.2.3"
    finally:
        proxy.recorder.close()


# ---------------------------------------------------------------- SOAP side
def test_soap_ipaddress_rewritten_and_events_forwarded(bg, upstream, tmp_path):
    out = tmp_path / "cap.jsonl"
    proxy = start_proxy(bg, out, soap_listen=(LOCAL, 0), soap_upstream=upstream.url + "/axis/services/X")
    port = proxy.soap.port
    evurl = f"http://{LOCAL}:{upstream.port}/ws/SMARTCTIWSEVENTING.apw"
    env = (b'<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/'
           b'soap/envelope/"><SOAP-ENV:Body><AgentInService xmlns="http://DefaultNamespace"><device> 2001 </device>'
           b"<ipaddress> " + evurl.encode() + b" </ipaddress></AgentInService></SOAP-ENV:Body></SOAP-ENV:Envelope>")
    status, _, _ = http(port, "POST", "/axis/services/SmartCTIWSCommand", env, {"SOAPAction": '""'})
    assert status == 200
    sent = upstream.received[-1]
    assert sent["path"] == "/axis/services/SmartCTIWSCommand"
    assert sent["body"] == env.replace(evurl.encode(), f"http://127.0.0.1:{port}/_ev/0/ws/SMARTCTIWSEVENTING.apw".encode())
    # another operation holding a URL is not touched
    other = env.replace(b"AgentInService", b"AgentOutOfService")
    http(port, "POST", "/axis/services/SmartCTIWSCommand", other)
    assert upstream.received[-1]["body"] == other
    # DigitroCTILink reads the WSDL, then posts an event: both reach Protheus
    status, _, _ = http(port, "GET", "/_ev/0/ws/SMARTCTIWSEVENTING.apw?WSDL")
    assert status == 200 and upstream.received[-1]["method"] == "GET"
    assert upstream.received[-1]["path"] == "/ws/SMARTCTIWSEVENTING.apw?WSDL"
    event = (b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
             b'<RINGING xmlns="http://x/"><CDEVICE>2001</CDEVICE><ILINKID>1</ILINKID><CALLID>77</CALLID>'
             b"</RINGING></soap:Body></soap:Envelope>")
    status, _, _ = http(port, "POST", "/_ev/0/ws/SMARTCTIWSEVENTING.apw", event)
    assert status == 200 and upstream.received[-1]["body"] == event
    bg.run(proxy.stop())
    _, records = read_capture(out)
    first = of(records, "soap", "to_middleware")[0]
    assert first["rewritten"] == {"from": evurl, "to": f"http://127.0.0.1:{port}/_ev/0/ws/SMARTCTIWSEVENTING.apw"}
    assert first["parsed"] == {"operation": "AgentInService", "args": {"device": " 2001 ", "ipaddress": f" {evurl} "}}
    assert "rewritten" not in of(records, "soap", "to_middleware")[1]
    ev = of(records, "soap", "event_to_protheus")
    assert [r["http"]["method"] for r in ev] == ["GET", "POST"]
    assert ev[1]["parsed"] == {"operation": "RINGING", "args": {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "77"}}
    assert len(of(records, "soap", "event_answer")) == 2


# ---------------------------------------------------------------- WSDL addresses
WSDL_TEMPLATE = (
    '<?xml version="1.0" encoding="UTF-8"?>\r\n'
    '<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
    'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/" '
    'xmlns:http="http://schemas.xmlsoap.org/wsdl/http/" targetNamespace="http://DefaultNamespace">\n'
    '  <wsdl:documentation>served by {up}/axis/services/SmartCTIWSCommand</wsdl:documentation>\n'
    '  <wsdl:import namespace="urn:x" location="{up}/axis/services/Types?wsdl"/>\n'
    '  <wsdl:service name="SmartCTIWSCommand">\n'
    '    <wsdl:port name="SmartCTIWSCommandHttpSoap11Endpoint" binding="ns:SmartCTIWSCommandSoap11Binding">\n'
    '      <soap:address location="{up}/axis/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint/"/>\n'
    '    </wsdl:port>\n'
    '    <wsdl:port name="SmartCTIWSCommandHttpSoap12Endpoint" binding="ns:SmartCTIWSCommandSoap12Binding">\n'
    "      <soap12:address\tlocation = '{up}/axis/services/SmartCTIWSCommand?a=1&amp;b=2' />\n"
    '    </wsdl:port>\n'
    '    <wsdl:port name="Elsewhere" binding="ns:SmartCTIWSCommandHttpBinding">\n'
    '      <http:address location="http://10.9.8.7:8080/axis/services/SmartCTIWSCommand"/>\n'
    '    </wsdl:port>\n'
    '  </wsdl:service>\n'
    '</wsdl:definitions>\n')


def wsdl_of(up: str, soap11: str | None = None, soap12: str | None = None) -> bytes:
    """The WSDL naming ``up``; ``soap11``/``soap12``: the base written instead in that address only."""
    text = WSDL_TEMPLATE.replace("{up}", up)
    if soap11:
        text = text.replace(f'<soap:address location="{up}', f'<soap:address location="{soap11}')
    if soap12:
        text = text.replace(f"location = '{up}", f"location = '{soap12}")
    return text.encode()


def test_wsdl_addresses_on_the_upstream_are_pointed_at_the_proxy_and_nothing_else_changes():
    up = "http://Tomcat.Example:80"       # the upstream "http://tomcat.example": host case, default port
    body = wsdl_of("http://tomcat.example", soap11=up, soap12="HTTP://TOMCAT.EXAMPLE")
    new, rewrites = rewrite_wsdl(body, "http://tomcat.example", "http://cti-proxy:8090")
    expected = (
        b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
        b'<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
        b'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/" '
        b'xmlns:http="http://schemas.xmlsoap.org/wsdl/http/" targetNamespace="http://DefaultNamespace">\n'
        b'  <wsdl:documentation>served by http://tomcat.example/axis/services/SmartCTIWSCommand</wsdl:documentation>\n'
        b'  <wsdl:import namespace="urn:x" location="http://tomcat.example/axis/services/Types?wsdl"/>\n'
        b'  <wsdl:service name="SmartCTIWSCommand">\n'
        b'    <wsdl:port name="SmartCTIWSCommandHttpSoap11Endpoint" binding="ns:SmartCTIWSCommandSoap11Binding">\n'
        b'      <soap:address location="http://cti-proxy:8090/axis/services/SmartCTIWSCommand.'
        b'SmartCTIWSCommandHttpSoap11Endpoint/"/>\n'
        b'    </wsdl:port>\n'
        b'    <wsdl:port name="SmartCTIWSCommandHttpSoap12Endpoint" binding="ns:SmartCTIWSCommandSoap12Binding">\n'
        b"      <soap12:address\tlocation = 'http://cti-proxy:8090/axis/services/SmartCTIWSCommand?a=1&amp;b=2' />\n"
        b'    </wsdl:port>\n'
        b'    <wsdl:port name="Elsewhere" binding="ns:SmartCTIWSCommandHttpBinding">\n'
        b'      <http:address location="http://10.9.8.7:8080/axis/services/SmartCTIWSCommand"/>\n'
        b'    </wsdl:port>\n'
        b'  </wsdl:service>\n'
        b'</wsdl:definitions>\n')
    assert new == expected
    assert rewrites == [
        Rewrite(f"{up}/axis/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint/",
                "http://cti-proxy:8090/axis/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint/", -1),
        Rewrite("HTTP://TOMCAT.EXAMPLE/axis/services/SmartCTIWSCommand?a=1&b=2",
                "http://cti-proxy:8090/axis/services/SmartCTIWSCommand?a=1&b=2", -1)]

    # another scheme or port is another server; any prefix, attributes before location, user-info kept
    other = (b"<definitions><port><wsdlsoap:address xmlns:wsdlsoap=\"urn:s\" location=\"https://tomcat.example/x\"/>"
             b"<address location='http://tomcat.example:8080/x'/>"
             b"<soap:address a='location=\"http://tomcat.example/y\"' location=\"http://u@tomcat.example/z\"/>"
             b"<soap:addressing location=\"http://tomcat.example/w\"/></port></definitions>")
    new, rewrites = rewrite_wsdl(other, "http://tomcat.example:80", "http://cti-proxy:8090/_ev/0")
    assert new == other.replace(b'"http://u@tomcat.example/z"', b'"http://u@cti-proxy:8090/_ev/0/z"')
    assert [r.replacement for r in rewrites] == ["http://u@cti-proxy:8090/_ev/0/z"]
    # not XML: left as it is
    text = b'see <soap:address location="http://tomcat.example/x"/>'
    assert rewrite_wsdl(text, "http://tomcat.example", "http://cti-proxy:8090") == (text, [])

    # hostile bodies stay fast: an address whose attributes never end, values never closed
    for hostile in (b"<x><a:address" + b' a=""' * 500_000 + b" location", b"<x>" + b'<address a="location' * 300_000):
        t = time.perf_counter()
        assert rewrite_wsdl(hostile, "http://tomcat.example", "http://cti-proxy:8090") == (hostile, [])
        assert time.perf_counter() - t < 2.0

    assert wsdl_query("/x?wsdl") and wsdl_query("/x?WSDL") and wsdl_query("/x?wsdl=a.wsdl")
    assert wsdl_query("/x?WSDL&x=1") and wsdl_query("/_ev/0?Wsdl")
    assert not wsdl_query("/x") and not wsdl_query("/x?wsdlx") and not wsdl_query("/x?a=wsdl")
    assert not wsdl_query("/wsdl")


class WsdlUpstream:
    """DigitroCTILink's Tomcat (or Protheus' eventing server) serving a WSDL that names its own address,
    to any request on any path: plain, chunked (path with ``chunked``) or gzip-encoded (``gzip``)."""

    def __init__(self, bg: BackgroundLoop):
        self.bg = bg
        bg.run(self._start())

    async def _start(self):
        async def any_request(request: web.Request):
            await request.read()
            body = self.wsdl
            if "chunked" in request.path:
                resp = web.StreamResponse(headers={"Content-Type": "text/xml;charset=UTF-8"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                for i in range(0, len(body), 100):
                    await resp.write(body[i:i + 100])
                await resp.write_eof()
                return resp
            if "gzip" in request.path:
                return web.Response(body=gzip.compress(body), headers={"Content-Type": "text/xml",
                                                                       "Content-Encoding": "gzip"})
            return web.Response(body=body, headers={"Content-Type": "text/xml;charset=UTF-8"})

        self.runner, self.port, self.url = await serve_any(any_request)
        self.wsdl = wsdl_of(self.url)

    def close(self):
        self.bg.run(self.runner.cleanup())


@pytest.fixture
def wsdl_upstream(bg):
    u = WsdlUpstream(bg)
    yield u
    u.close()


def test_a_wsdl_read_through_the_proxy_names_the_proxy(bg, wsdl_upstream, tmp_path):
    """GET ?wsdl on the command path and on an eventing path: the client gets its addresses on the
    proxy (the Host it used, /_ev/<n> for Protheus' one), the file what the upstream sent."""
    out = tmp_path / "cap.jsonl"
    up = wsdl_upstream.url
    proxy = start_proxy(bg, out, soap_listen=(LOCAL, 0), soap_upstream=up + "/axis/services/SmartCTIWSCommand")
    port = proxy.soap.port
    mine = f"http://{LOCAL}:{port}"
    original = wsdl_upstream.wsdl

    status, body, headers = http(port, "GET", "/axis/services/SmartCTIWSCommand?wsdl")
    assert status == 200 and body == wsdl_of(up, soap11=mine, soap12=mine)
    assert dict(headers)["Content-Length"] == str(len(body)) and "Transfer-Encoding" not in dict(headers)
    assert b'location="http://10.9.8.7:8080/axis/services/SmartCTIWSCommand"' in body
    # the Host the client used names the proxy; chunked answers stay chunked
    status, body, headers = http(port, "GET", "/axis/services/chunked?WSDL&x=1",
                                 headers={"Host": "cti-proxy.example:8090"})
    assert status == 200 and body == wsdl_of(up, soap11="http://cti-proxy.example:8090",
                                             soap12="http://cti-proxy.example:8090")
    assert dict(headers)["Transfer-Encoding"] == "chunked"
    # no Host (HTTP/1.0): the proxy's own address
    reply = raw_exchange(port, b"GET /axis/services/SmartCTIWSCommand?wsdl HTTP/1.0\r\n\r\n")
    assert reply.partition(b"\r\n\r\n")[2] == wsdl_of(up, soap11=mine, soap12=mine)
    # an eventing WSDL read through /_ev/0 (after an AgentInService made it reachable there)
    env = protheus_envelope("AgentInService", device="2001", ipaddress=up + "/ws/SMARTCTIWSEVENTING.apw")
    assert http(port, "POST", "/axis/services/SmartCTIWSCommand", env)[0] == 200
    status, body, _ = http(port, "GET", "/_ev/0/ws/SMARTCTIWSEVENTING.apw?WSDL")
    assert status == 200 and body == wsdl_of(up, soap11=mine + "/_ev/0", soap12=mine + "/_ev/0")
    bg.run(proxy.stop())

    _, records = read_capture(out)
    answers = of(records, "soap", "from_middleware")
    # the file keeps the WSDL as the upstream sent it, what was changed beside it
    first = answers[0]
    assert body_bytes(first) == original and first["size"] == len(original)
    soap11 = "/axis/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint/"
    soap12 = "/axis/services/SmartCTIWSCommand?a=1&b=2"
    assert first["rewritten"] == {"from": up + soap11, "to": mine + soap11}
    assert first["rewritten_all"] == [{"from": up + soap11, "to": mine + soap11},
                                      {"from": up + soap12, "to": mine + soap12}]
    assert answers[1]["rewritten"] == {"from": up + soap11, "to": "http://cti-proxy.example:8090" + soap11}
    assert body_bytes(answers[1]) == original and body_bytes(answers[2]) == original
    assert "rewritten" not in answers[3]            # the AgentInService answer
    (ev_answer,) = of(records, "soap", "event_answer")
    assert body_bytes(ev_answer) == original
    assert ev_answer["rewritten"] == {"from": up + soap11, "to": mine + "/_ev/0" + soap11}
    (ev,) = of(records, "soap", "event_to_protheus")
    assert ev["http"]["method"] == "GET" and ev["upstream"] == up + "/ws/SMARTCTIWSEVENTING.apw?WSDL"
    requests = of(records, "soap", "to_middleware")
    assert [r["http"]["path"] for r in requests[:3]] == [
        "/axis/services/SmartCTIWSCommand?wsdl", "/axis/services/chunked?WSDL&x=1",
        "/axis/services/SmartCTIWSCommand?wsdl"]


def test_only_wsdl_answers_to_get_are_rewritten_and_compressed_ones_pass_with_a_note(bg, wsdl_upstream, tmp_path):
    out = tmp_path / "cap.jsonl"
    proxy = start_proxy(bg, out, soap_listen=(LOCAL, 0), soap_upstream=wsdl_upstream.url)
    port = proxy.soap.port
    original = wsdl_upstream.wsdl
    for method, path in [("GET", "/axis/services/SmartCTIWSCommand"), ("GET", "/x?wsdlx"), ("GET", "/x?a=wsdl"),
                         ("GET", "/SmartCTIWSCommand.wsdl"), ("POST", "/axis/services/SmartCTIWSCommand?wsdl")]:
        status, body, headers = http(port, method, path, b"<x/>" if method == "POST" else None)
        assert status == 200 and body == original, (method, path)
        assert dict(headers)["Content-Length"] == str(len(original))
    with socket.create_connection((LOCAL, port), timeout=10) as s:
        s.sendall(b"GET /gzip?wsdl HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, gz = data.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head and gzip.decompress(gz) == original
    bg.run(proxy.stop())
    _, records = read_capture(out)
    answers = of(records, "soap", "from_middleware")
    assert len(answers) == 6 and not any("rewritten" in r for r in answers)
    assert not any("not_rewritten" in r for r in answers[:5])
    assert answers[5]["decoded"] == "gzip" and body_bytes(answers[5]) == original
    assert answers[5]["not_rewritten"] == (
        f"gzip-encoded answer to a WSDL request: its addresses were not rewritten (a client reading it may "
        f"post to {wsdl_upstream.url} directly)")


# -------------------------------------------------------------------- masking
def test_passwords_are_masked_in_bodies_parsed_headers_and_urls_but_forwarded_intact(bg, upstream, tmp_path):
    out = tmp_path / "cap.jsonl"
    proxy = start_proxy(bg, out, xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=upstream.url,
                        soap_listen=(LOCAL, 0), soap_upstream=upstream.url)
    secrets = [b"xml-senha-1", b"xml-pass-2", b"soap-pass-3", b"soap-senha-4", b"cdata-pw-5", b"url-pw-6",
               b"latin-\xe7-7", b"query-pw-8", b"attr-pw-9"]
    xml = xmlrpc.client.dumps(({"DISPOSITIVO": "2001", "SENHA_DISPOSITIVO": "xml-senha-1",
                                "Password": "xml-pass-2", "URL": "http://admin:url-pw-6@ngc/x?senha=query-pw-8"},),
                              "cti.login_dac").encode()
    status, _, _ = http(proxy.xmlrpc.port, "POST", "/RPC2", xml)
    assert status == 200 and upstream.received[-1]["body"].count(b"xml-senha-1") == 1
    soap = (b'<?xml version="1.0" encoding="ISO-8859-1"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
            b'<s:Body><ns:LogonPass xmlns:ns="http://DefaultNamespace" '
            b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><ns:device>2001</ns:device>'
            b"<ns:agentPass>soap-pass-3</ns:agentPass><SENHA xsi:type=\"string\">soap-senha-4</SENHA>"
            b"<passwd><![CDATA[cdata-pw-5]]></passwd><secretWord>latin-\xe7-7</secretWord>"
            b'<x password="attr-pw-9"/></ns:LogonPass></s:Body></s:Envelope>')
    status, _, _ = http(proxy.soap.port, "POST", "/cmd", soap, {"Cookie": "JSESSIONID=abc"})
    assert status == 200 and upstream.received[-1]["body"] == soap
    bg.run(proxy.stop())

    data = out.read_bytes()
    _, records = read_capture(out)
    for r in records:      # nowhere: not in text, not in base64 bodies
        data += body_bytes(r) if "body" in r or "body_b64" in r else b""
    for secret in secrets:
        assert secret not in data, secret
    assert b"abc" not in data
    x = of(records, "xmlrpc", "to_pabx")[0]
    assert x["parsed"]["params"][0] == {"DISPOSITIVO": "2001", "SENHA_DISPOSITIVO": "***", "Password": "***",
                                        "URL": "http://admin:***@ngc/x?senha=***"}
    assert "<name>SENHA_DISPOSITIVO</name>\n<value><string>***</string></value>" in x["body"]
    s = of(records, "soap", "to_middleware")[0]
    assert s["parsed"]["args"] == {"device": "2001", "agentPass": "***", "SENHA": "***", "passwd": "***",
                                   "secretWord": "***", "x": ""}
    text = body_bytes(s)
    assert b"<ns:agentPass>***</ns:agentPass>" in text and b"<passwd><![CDATA[***]]></passwd>" in text
    assert b'<x password="***"/>' in text and b"<ns:device>2001</ns:device>" in text
    assert dict(s["http"]["headers"])["Cookie"] == "***"


@pytest.mark.parametrize("body", [
    b"<name>senha</name><value>" * 40_000,                 # members that never end
    b"<password><![CDATA[" * 50_000,                       # CDATA that never ends
    b"a" * 1_000_000 + b"://x:y@",                         # a scheme that never ends
    b"?pass" * 200_000 + b"=1",                            # secret-looking keys without a value
    b"passpass" * 125_000 + b": x\n",                      # a header-like line 1 MB long
])
def test_masking_stays_fast_on_hostile_bodies(body):
    t = time.perf_counter()
    mask_bytes(body)
    assert time.perf_counter() - t < 2.0


# ------------------------------------------------------------------------ raw
def test_raw_forwarder_both_ways(bg, tmp_path):
    out = tmp_path / "cap.jsonl"

    async def serve():
        async def echo(reader, writer):
            data = await reader.read()          # until the client's half-close
            writer.write(b"ECHO:" + data + b"\xff\xfe")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(echo, LOCAL, 0)
        return server, server.sockets[0].getsockname()[1]
    server, up_port = bg.run(serve())
    try:
        proxy = start_proxy(bg, out, raw=[((LOCAL, 0), (LOCAL, up_port)), ((LOCAL, 0), (LOCAL, up_port))])
        sent = b"hello \xff\x00 world\r\nSecret: raw-secret-1\r\n"
        assert raw_exchange(proxy.raw[0].port, sent, shutdown=True) == b"ECHO:" + sent + b"\xff\xfe"
        assert raw_exchange(proxy.raw[1].port, b"plain text", shutdown=True) == b"ECHO:plain text\xff\xfe"
        # upstream gone: the client's connection is closed, the forwarder keeps serving
        bg.run(_close(server))
        assert raw_exchange(proxy.raw[0].port, b"anyone?") == b""
        bg.run(proxy.stop())
    finally:
        bg.run(_close(server))
    _, records = read_capture(out)
    first = [r for r in of(records, "raw") if r["conn"] == of(records, "raw")[0]["conn"]]
    assert [(r["dir"], r["event"]) for r in first] == [("c2s", "open"), ("c2s", "data"), ("c2s", "eof"),
                                                        ("s2c", "data"), ("s2c", "eof")]
    assert first[0]["raw"]["upstream"] == f"{LOCAL}:{up_port}"
    c2s = b"".join(body_bytes(r) for r in first if r["event"] == "data" and r["dir"] == "c2s")
    s2c = b"".join(body_bytes(r) for r in first if r["event"] == "data" and r["dir"] == "s2c")
    assert c2s == sent.replace(b"raw-secret-1", b"***") and "body_b64" in first[1]
    assert s2c == b"ECHO:" + sent.replace(b"raw-secret-1", b"***") + b"\xff\xfe"
    second = [r for r in of(records, "raw", "c2s") if r.get("event") == "data" and "body" in r]
    assert second[0]["body"] == "plain text"
    assert "unreachable" in of(records, "raw")[-1]["error"]


async def _close(server):
    server.close()


# ------------------------------------------------------------------ max-bytes
def test_max_bytes_bounds_the_file_and_forwarding_goes_on(bg, upstream, tmp_path, caplog):
    out = tmp_path / "cap.jsonl"
    proxy = start_proxy(bg, out, xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=upstream.url, max_bytes=20000)
    body = b"<methodCall><methodName>m</methodName>" + b"z" * 1500 + b"</methodCall>"
    with caplog.at_level("WARNING", logger="smartcti_gateway.capture"):
        for i in range(30):
            status, answer, _ = http(proxy.xmlrpc.port, "POST", f"/n{i}", body)
            assert status == 200 and answer.startswith(b"<answer>")
        summary = bg.run(proxy.stop())
    assert len(upstream.received) == 30
    assert out.stat().st_size <= 20000
    _, records = read_capture(out)
    assert records[-1]["side"] == "capture" and records[-1]["dir"] == "limit"
    assert records[-1]["max_bytes"] == 20000 and "nothing more is recorded" in records[-1]["message"]
    assert len(records) < 30
    assert summary["limited"] and summary["messages"]["xmlrpc"]["to_pabx"] == 30
    assert any("reached --max-bytes" in r.getMessage() for r in caplog.records)


def test_a_disk_that_fails_stops_the_recording_not_the_forwarding(bg, upstream, tmp_path, caplog):
    proxy = start_proxy(bg, tmp_path / "cap.jsonl", xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=upstream.url)
    real = proxy.recorder._fh

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def close(self):
            real.close()
    proxy.recorder._fh = Full()
    with caplog.at_level("WARNING", logger="smartcti_gateway.capture"):
        for i in range(3):
            status, answer, _ = http(proxy.xmlrpc.port, "POST", f"/n{i}", b"<x/>")
            assert status == 200 and answer == b"<answer><x/></answer>"
        summary = bg.run(proxy.stop())
    assert "No space left on device" in summary["error"] and summary["messages"]["xmlrpc"]["to_pabx"] == 3
    assert any("recording stopped, forwarding goes on" in r.getMessage() for r in caplog.records)
    assert any("writing the file failed" in line for line in CaptureProxy.summary_lines(summary))


# -------------------------------------------------------------- hostile peers
def test_hostile_peers_cannot_crash_it_and_it_keeps_serving(bg, upstream, tmp_path):
    out = tmp_path / "cap.jsonl"
    proxy = start_proxy(bg, out, xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=upstream.url)
    port = proxy.xmlrpc.port
    slow = socket.create_connection((LOCAL, port))           # slowloris: half a request line, kept open
    slow.sendall(b"POST /RPC2 HTTP/1.1\r\nHo")
    try:
        bad_request = re.compile(rb"^HTTP/1\.[01] 4[0-9][0-9] ")
        reply = raw_exchange(port, b"\x00\x01\x02GARBAGE\xff\r\n\r\n")
        assert bad_request.match(reply), reply[:80]
        reply = raw_exchange(port, b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n", shutdown=True)   # no blank line
        assert reply == b"" or bad_request.match(reply), reply[:80]
        reply = raw_exchange(port, b"GET / HTTP/1.1\r\nX-Huge: " + b"a" * 100_000 + b"\r\n\r\n")
        assert bad_request.match(reply), reply[:80]
        reply = raw_exchange(port, b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n")
        assert bad_request.match(reply), reply[:80]
        before = len(upstream.received)
        # closed in the middle of the body: not forwarded, recorded with the reason
        with socket.create_connection((LOCAL, port)) as s:
            s.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        # paths never become anything but a path upstream
        status, _, _ = http(port, "GET", "/../../../etc/passwd")
        assert status == 200 and upstream.received[-1]["path"] in ("/../../../etc/passwd", "/etc/passwd")
        status, text, _ = http(port, "POST", "/_cb/7/x", b"<x/>")
        assert status == 404 and b"no callback URL number matches" in text
        # and it still serves
        status, answer, _ = http(port, "POST", "/RPC2", b"<ok/>")
        assert status == 200 and answer == b"<answer><ok/></answer>"
        assert len(upstream.received) == before + 2
    finally:
        slow.close()
    # upstream down: 502 with a clear text, recorded; still serving after
    dead = start_proxy(bg, tmp_path / "dead.jsonl", soap_listen=(LOCAL, 0),
                       soap_upstream=f"http://{LOCAL}:{free_port()}/axis/services/SmartCTIWSCommand")
    for _ in range(2):
        status, text, _ = http(dead.soap.port, "POST", "/axis/services/SmartCTIWSCommand", b"<x/>")
        assert status == 502 and b"DigitroCTILink at http://127.0.0.1:" in text and b"could not be reached" in text
        assert b"--soap-upstream" in text
    bg.run(dead.stop())
    bg.run(proxy.stop())
    assert sorted(os.listdir(tmp_path)) == ["cap.jsonl", "dead.jsonl"]
    _, records = read_capture(out)
    cut = [r for r in of(records, "xmlrpc", "to_pabx") if "error" in r]
    assert cut and "closed the connection" in cut[0]["error"] and cut[0]["size"] == 10
    assert of(records, "xmlrpc", "callback_answer")[0]["http"]["status"] == 404
    _, records = read_capture(tmp_path / "dead.jsonl")
    answers = of(records, "soap", "from_middleware")
    assert [r["http"]["status"] for r in answers] == [502, 502] and "could not be reached" in answers[0]["error"]


# ------------------------------------------------------------------- overhead
def test_overhead_is_a_few_milliseconds(bg, tmp_path):
    peers = Peers()
    try:
        proxy = start_proxy(bg, tmp_path / "cap.jsonl", xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=peers.sim.url)
        import http.client
        body = xmlrpc.client.dumps(({},), "cti.status").encode()

        def median(port):
            conn = http.client.HTTPConnection(LOCAL, port, timeout=10)
            times = []
            for _ in range(60):
                t = time.perf_counter()
                conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
                assert conn.getresponse().read()
                times.append(time.perf_counter() - t)
            conn.close()
            return statistics.median(times[10:])
        direct, proxied = median(peers.sim_port), median(proxy.xmlrpc.port)
        bg.run(proxy.stop())
    finally:
        peers.close()
    print(f"direct {direct * 1000:.2f} ms, through the proxy {proxied * 1000:.2f} ms")
    assert proxied - direct < 0.010, (direct, proxied)


# --------------------------------------------------------------------- reader
def _capture(tmp_path, lines):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"".join((json.dumps(x) if not isinstance(x, bytes) else x.decode()).encode() + b"\n"
                              for x in lines))
    return path


HEADER = {"format": "smartcti-capture", "version": 1, "started": 1.0, "sides": {}, "program": "x"}


def _rec(seq, **kw):
    return {"t": 1.0 + seq, "seq": seq, "side": "xmlrpc", "dir": "to_pabx", "conn": seq,
            "http": {"method": "POST"}, **kw}


def test_reader_accepts_a_real_capture_and_names_the_bad_line(tmp_path):
    good = _capture(tmp_path, [HEADER, _rec(1, body="x"), _rec(2, body_b64="AAE="),
                               {"t": 5.0, "seq": 3, "side": "capture", "dir": "end", "conn": 0}])
    header, records = read_capture(good)
    assert header["version"] == 1 and [r["seq"] for r in records] == [1, 2, 3]
    assert body_bytes(records[1]) == b"\x00\x01"

    def error(lines=None, raw=None) -> CaptureError:
        path = tmp_path / "bad.jsonl"
        if raw is not None:
            path.write_bytes(raw)
        else:
            path = _capture(tmp_path, lines)
        with pytest.raises(CaptureError) as e:
            read_capture(path)
        assert str(path) in str(e.value)
        return e.value

    data = good.read_bytes()
    e = error(raw=data[:-20])                                         # killed while writing
    assert e.line == 4 and "cut off" in e.message
    e = error(raw=data.replace(b'"seq": 2,', b'"seq": 2'))             # edited by hand
    assert e.line == 3 and "not valid JSON" in e.message
    e = error([{"hello": "world"}, _rec(1)])                            # someone else's JSON lines
    assert e.line == 1 and "not a smartcti-capture file" in e.message
    e = error(raw=b"PK\x03\x04\x00\x00garbage\n")                      # a zip
    assert e.line == 1
    e = error([_rec(1), _rec(2)])                                       # no header
    assert e.line == 1 and "not a smartcti-capture" in e.message
    e = error([{**HEADER, "version": 2}, _rec(1)])
    assert e.line == 1 and "version 2" in e.message
    e = error([HEADER, _rec(1), {k: v for k, v in _rec(2).items() if k != "conn"}])
    assert e.line == 3 and "conn" in e.message
    e = error([HEADER, _rec(2), _rec(1)])
    assert e.line == 3 and "does not increase" in e.message
    e = error([HEADER, _rec(1), _rec(2, side="sip")])
    assert e.line == 3 and "unknown side" in e.message
    e = error([HEADER, _rec(1, dir="c2s")])
    assert e.line == 2 and "unknown dir" in e.message
    e = error([HEADER, {"t": 2.0, "seq": 1, "side": "capture", "dir": "end", "conn": 0}, _rec(2)])
    assert e.line == 3 and "after the last line" in e.message
    e = error([HEADER, _rec(1, body_b64="***")])
    assert e.line == 2 and "base64" in e.message
    e = error(raw=b"")
    assert e.line == 1 and "empty" in e.message


# ------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("argv, message", [
    (["--xmlrpc-listen", "127.0.0.1:0"], "--xmlrpc-listen needs --xmlrpc-upstream"),
    (["--soap-listen", "127.0.0.1:0"], "--soap-listen needs --soap-upstream"),
    (["--soap-upstream", "http://h:8080/x"], "--soap-upstream needs --soap-listen"),
    ([], "nothing to capture"),
    (["--raw-listen", "127.0.0.1:0"], "go in pairs"),
    (["--xmlrpc-listen", "nohost", "--xmlrpc-upstream", "http://h/RPC2"], "is not HOST:PORT"),
    (["--xmlrpc-listen", ":1", "--xmlrpc-upstream", "ftp://h/RPC2"], "not an http:// or https:// URL"),
    (["--raw-listen", ":1", "--raw-upstream", ":5038"], "is not HOST:PORT"),
    (["--raw-listen", ":1", "--raw-upstream", "h:1", "--max-bytes", "100"], "--max-bytes must be at least"),
    (["--raw-listen", ":1", "--raw-upstream", "h:1", "--max-bytes", "lots"], "is not a size"),
])
def test_cli_refuses_incomplete_arguments(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["capture", *argv, "--out", str(tmp_path / "x.jsonl")])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_never_overwrites_a_capture_without_force(tmp_path, caplog):
    out = tmp_path / "x.jsonl"
    out.write_text("previous capture\n")
    with caplog.at_level("ERROR"):
        rc = main(["capture", "--raw-listen", "127.0.0.1:0", "--raw-upstream", "127.0.0.1:9", "--out", str(out)])
    assert rc == 2 and out.read_text() == "previous capture\n"
    assert any("add --force" in r.getMessage() for r in caplog.records)


def test_cli_end_to_end_with_sigterm(tmp_path):
    """The real command in its own process: start messages, one call through, SIGTERM, summary, file."""
    peers = Peers()
    out = tmp_path / "cap.jsonl"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smartcti_gateway", "capture", "--xmlrpc-listen", f"{LOCAL}:{port}",
         "--xmlrpc-upstream", peers.sim.url, "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        seen = []
        while not any("stop with Ctrl+C" in line for line in seen):
            seen.append(lines.get(timeout=20))
        assert any(f"Point DigitroCTILink's URL.Xml-RPC.Server at http://{LOCAL}:{port}/RPC2" in line
                   for line in seen), seen
        reply = xmlrpc.client.ServerProxy(f"http://{LOCAL}:{port}/RPC2").cti.status({})
        assert reply["RESULTADO"] == "OK"
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        peers.close()
    assert proc.returncode == 0, stdout
    assert "capture stopped: 2 message(s) seen" in stdout and "cti.status ×1" in stdout
    assert "xmlrpc: from_pabx 1, to_pabx 1" in stdout and str(out) in stdout
    _, records = read_capture(out)
    assert [r["dir"] for r in records] == ["to_pabx", "from_pabx", "end"]
    assert records[0]["parsed"] == {"method": "cti.status", "params": [{}]}
