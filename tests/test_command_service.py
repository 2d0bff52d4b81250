"""SmartCTIWSCommand over HTTP on loopback: routes, WSDL, faults, limits, and
interoperability with independent SOAP clients (zeep, PHP SoapClient, node-soap, gSOAP).

The aiohttp application runs in a background thread with its own event loop, so
synchronous clients (zeep, subprocesses) can load the WSDL from it without
blocking the server.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from aiohttp import web
from lxml import etree

from smartcti_gateway.core.operations import OPERATIONS, SECRET_PARAMS
from smartcti_gateway.protheus.command_service import (
    DEFAULT_PATH,
    ENDPOINT_SUFFIXES,
    add_command_routes,
)
from smartcti_gateway.protheus.soap import SoapFault, response

INTEROP_DIR = Path(__file__).parent / "interop"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "http://DefaultNamespace"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
MAX_BODY = 64 * 1024
OTHER_PATH = "/links/second/SmartCTIWSCommand"
OP_NAMES = list(OPERATIONS)
SECRET = "s3cr\u00eat-pw"
XML_CT = "text/xml; charset=UTF-8"


# ------------------------------------------------------------------ stub backend


def stub_return(op: str, args: dict[str, str]) -> int | str:
    """What the stub handler answers: distinct per operation, checkable by clients."""
    if OPERATIONS[op].returns == "int":
        return -5 if op == "selfTest" else 1000 + OP_NAMES.index(op)
    return f"echo:{op}:ação & <ok>|" + "|".join(args.values())


class Recorder:
    """Calls seen by the stub handler and requests seen by the app (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str, dict[str, str]]] = []  # (link, op, args)
        self.requests: list[tuple[str, str, str, str | None]] = []  # (method, path, content-type, soapaction)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.requests.clear()

    def handler(self, link: str):
        async def handle(op: str, args: dict[str, str]) -> int | str:
            with self._lock:
                self.calls.append((link, op, dict(args)))
            if args.get("device") == "boom":
                raise RuntimeError("stub failure")
            if args.get("device") == "refuse":
                raise SoapFault("soapenv:Client", "refused by the stub")
            if link != "main":
                return 7 if OPERATIONS[op].returns == "int" else f"{link}:{op}"
            return stub_return(op, args)

        return handle

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        with self._lock:
            self.requests.append(
                (request.method, request.rel_url.raw_path, request.headers.get("Content-Type", ""),
                 request.headers.get("SOAPAction"))
            )
        return await handler(request)


class BackgroundServer:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="soap-test-server", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def start(self) -> None:
        self.thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def server(recorder):
    app = web.Application(client_max_size=MAX_BODY, middlewares=[recorder.middleware])
    add_command_routes(app, DEFAULT_PATH, recorder.handler("main"), name="main")
    add_command_routes(app, OTHER_PATH, recorder.handler("second"), name="second")
    srv = BackgroundServer(app)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def rec(recorder, server) -> Recorder:
    recorder.clear()
    return recorder


def http_request(server: BackgroundServer, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def protheus_post(server, path, op, args, soapaction=None):
    """POST shaped like the Protheus client (smartcti.md §1.6)."""
    children = "".join(f"<{k}>{v}</{k}>" for k, v in args.items())
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>'
        f'<{op} xmlns="{TNS}">{children}</{op}></soap:Body></soap:Envelope>'
    ).encode()
    headers = {"Content-Type": "text/xml", "SOAPAction": f'"urn:{soapaction or op}"'}
    return http_request(server, "POST", path, body, headers)


def fault_parts(body: bytes) -> tuple[str, str]:
    root = etree.fromstring(body)
    f = root.find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert f is not None, body
    return f.findtext("faultcode"), f.findtext("faultstring")


LOGON_ARGS = {"device": "2001", "agentID": "1234", "groupID": "701,702"}


# ------------------------------------------------------------------ routes


@pytest.mark.parametrize("suffix", ENDPOINT_SUFFIXES)
def test_post_on_every_url_shape(server, rec, suffix):
    status, headers, body = protheus_post(server, DEFAULT_PATH + suffix, "Logon", LOGON_ARGS)
    assert status == 200
    assert headers["content-type"] == XML_CT
    assert body == response("Logon", 1000 + OP_NAMES.index("Logon"))
    assert rec.calls == [("main", "Logon", LOGON_ARGS)]


@pytest.mark.parametrize("path", [
    DEFAULT_PATH + "/.SmartCTIWSCommandHttpSoap11Endpoint/",     # K4_CMD_URL typed with a trailing / (§10.12)
    DEFAULT_PATH + "/.SmartCTIWSCommandHttpSoap11Endpoint",
    DEFAULT_PATH + "/",
    DEFAULT_PATH + "//",
    DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint//",
    DEFAULT_PATH + ".jws/.SmartCTIWSCommandHttpSoap11Endpoint/",
    DEFAULT_PATH + ".jws/",
    "/" + DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/",  # http://host:8080//axis2/...
    DEFAULT_PATH.replace("/services/", "//services/") + "/.SmartCTIWSCommandHttpSoap11Endpoint/",
])
def test_doubled_and_trailing_slashes_are_served(server, rec, path):
    status, _, body = protheus_post(server, path, "Logon", LOGON_ARGS)
    assert status == 200, body
    assert body == response("Logon", 1000 + OP_NAMES.index("Logon"))
    assert rec.calls == [("main", "Logon", LOGON_ARGS)]
    status, _, body = http_request(server, "GET", path + "?wsdl")
    assert status == 200 and b"<wsdl:definitions" in body


@pytest.mark.parametrize("path", [
    DEFAULT_PATH + "x", DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap12Endpoint/", DEFAULT_PATH + "/extra",
    DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/x", "/axis2/servicesSmartCTIWSCommand",
])
def test_other_paths_are_not_the_service(server, rec, path):
    status, _, _ = protheus_post(server, path, "Logon", LOGON_ARGS)
    assert status == 404 and rec.calls == []


def test_the_four_required_shapes_are_registered():
    assert {"", ".SmartCTIWSCommandHttpSoap11Endpoint", ".SmartCTIWSCommandHttpSoap11Endpoint/",
            ".jws"} <= set(ENDPOINT_SUFFIXES)


def test_string_operation_over_http(server, rec):
    status, _, body = protheus_post(
        server, DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/", "GetInfoChamAtiv", {"cDevice": "2001"}
    )
    assert status == 200
    ret = etree.fromstring(body).find(f".//{{{TNS}}}return")
    assert ret.text == "echo:GetInfoChamAtiv:ação & <ok>|2001"


def test_dispatch_on_body_not_soapaction_or_url(server, rec):
    status, _, body = protheus_post(
        server, DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/", "Hold", {"device": "2001"},
        soapaction="Logon",
    )
    assert status == 200
    assert b"<ns:HoldResponse" in body
    assert rec.calls == [("main", "Hold", {"device": "2001"})]


def test_two_links_on_one_app(server, rec):
    status, _, body = protheus_post(server, OTHER_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/",
                                    "Hold", {"device": "3001"})
    assert status == 200 and body == response("Hold", 7)
    status, _, body = protheus_post(server, DEFAULT_PATH, "Hold", {"device": "2001"})
    assert status == 200 and body == response("Hold", 1000 + OP_NAMES.index("Hold"))
    assert rec.calls == [("second", "Hold", {"device": "3001"}), ("main", "Hold", {"device": "2001"})]


def test_latin1_body_over_http(server, rec):
    body = (
        f'<?xml version="1.0" encoding="ISO-8859-1"?><s:Envelope xmlns:s="{SOAP11}"><s:Body>'
        f'<Logon xmlns="{TNS}"><device>José</device></Logon></s:Body></s:Envelope>'
    ).encode("latin-1")
    status, _, _ = http_request(server, "POST", DEFAULT_PATH, body, {"Content-Type": "text/xml"})
    assert status == 200
    body = body.replace(b' encoding="ISO-8859-1"', b"")
    status, _, _ = http_request(server, "POST", DEFAULT_PATH, body,
                                {"Content-Type": "text/xml; charset=iso-8859-1"})
    assert status == 200
    assert [c[2]["device"] for c in rec.calls] == ["José", "José"]


@pytest.mark.parametrize("query", ["wsdl", "WSDL", "Wsdl", "wsdl=", "x=1&wsdl"])
@pytest.mark.parametrize("suffix", ["", ".SmartCTIWSCommandHttpSoap11Endpoint/", ".jws"])
def test_get_wsdl(server, rec, query, suffix):
    status, headers, body = http_request(server, "GET", f"{DEFAULT_PATH}{suffix}?{query}")
    assert status == 200
    assert headers["content-type"] == XML_CT
    root = etree.fromstring(body)
    (address,) = root.iter(f"{{{WSDL_SOAP}}}address")
    assert address.get("location") == server.url(DEFAULT_PATH + suffix)
    assert rec.calls == []


def test_get_wsdl_uses_the_host_asked(server, rec):
    status, _, body = http_request(server, "GET", f"{DEFAULT_PATH}?wsdl",
                                   headers={"Host": "cti-gw.example:8080"})
    assert status == 200
    (address,) = etree.fromstring(body).iter(f"{{{WSDL_SOAP}}}address")
    assert address.get("location") == f"http://cti-gw.example:8080{DEFAULT_PATH}"


def test_get_without_wsdl_is_a_one_liner(server, rec):
    status, headers, body = http_request(server, "GET", DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert text.count("\n") == 1 and "SmartCTIWSCommand" in text
    assert server.url(DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/?wsdl") in text


def test_unknown_path_is_404(server, rec):
    status, _, _ = protheus_post(server, "/axis2/services/Other", "Logon", LOGON_ARGS)
    assert status == 404
    assert rec.calls == []


# ------------------------------------------------------------------ faults and resilience

BAD_BODIES = {
    "not-xml": (b"this is not xml", "not well-formed XML"),
    "empty": (b"", "Empty request body"),
    "unknown-op": (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><Foo xmlns="{TNS}"/></soap:Body></soap:Envelope>'.encode(),
        "Unknown operation 'Foo'",
    ),
    "soap12": (
        b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
        b'<Hold xmlns="http://DefaultNamespace"/></e:Body></e:Envelope>',
        "SOAP 1.2 is not supported",
    ),
    "doctype": (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>',
        "DTDs and entities are not accepted",
    ),
    "invalid-utf8-in-a-name": (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><Hold xmlns="{TNS}"><dev\xa0ice>'.encode()
        + b"2001</dev\xa0ice></Hold></soap:Body></soap:Envelope>",
        "not well-formed",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_request_is_a_fault_and_server_goes_on(server, rec, case):
    payload, expected = BAD_BODIES[case]
    status, headers, body = http_request(server, "POST", DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/",
                                         payload, {"Content-Type": "text/xml"})
    assert status == 500
    assert headers["content-type"] == XML_CT
    code, string = fault_parts(body)
    assert code == "soapenv:Client"
    assert expected in string
    assert rec.calls == []
    status, _, body = protheus_post(server, DEFAULT_PATH, "Logon", LOGON_ARGS)
    assert status == 200 and b"<ns:return>" in body


def test_handler_exception_is_a_server_fault_and_logged_without_secrets(server, rec, caplog):
    args = {"device": "boom", "agentID": "1234", "groupID": "701", "agentPass": SECRET}
    with caplog.at_level(logging.ERROR, logger="smartcti_gateway.protheus.command_service"):
        status, _, body = protheus_post(server, DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/",
                                        "LogonPass", args)
    assert status == 500
    code, string = fault_parts(body)
    assert code == "soapenv:Server"
    assert string == "internal error: RuntimeError: stub failure"
    records = [r for r in caplog.records if r.name == "smartcti_gateway.protheus.command_service"]
    assert records, "the handler failure must be logged"
    logged = "\n".join(caplog.text.splitlines())
    assert "LogonPass" in logged and "[main]" in logged
    assert SECRET not in logged
    assert rec.calls == [("main", "LogonPass", args)]
    # The server keeps serving.
    status, _, body = protheus_post(server, DEFAULT_PATH, "Logon", LOGON_ARGS)
    assert status == 200 and body == response("Logon", 1000 + OP_NAMES.index("Logon"))


def test_soapfault_from_handler_is_sent_as_is(server, rec):
    status, _, body = protheus_post(server, DEFAULT_PATH, "Hold", {"device": "refuse"})
    assert status == 500
    assert fault_parts(body) == ("soapenv:Client", "refused by the stub")
    status, _, _ = protheus_post(server, DEFAULT_PATH, "Hold", {"device": "1"})
    assert status == 200


def test_body_over_client_max_size_is_413(server, rec):
    filler = "x" * (MAX_BODY + 1024)
    status, _, _ = protheus_post(server, DEFAULT_PATH, "MakeCall", {"device": "1", "telephoneNumber": filler})
    assert status == 413
    assert rec.calls == []
    status, _, _ = protheus_post(server, DEFAULT_PATH, "MakeCall", {"device": "1", "telephoneNumber": "2"})
    assert status == 200
    assert rec.calls == [("main", "MakeCall", {"device": "1", "telephoneNumber": "2"})]


def test_keep_alive_connection_serves_many_requests(server, rec):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for i in range(20):
            body = (f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><Hold xmlns="{TNS}">'
                    f"<device>{i}</device></Hold></soap:Body></soap:Envelope>").encode()
            conn.request("POST", DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/", body,
                         {"Content-Type": "text/xml", "SOAPAction": '"urn:Hold"'})
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
    finally:
        conn.close()
    assert [c[2]["device"] for c in rec.calls] == [str(i) for i in range(20)]


def test_add_command_routes_rejects_bad_paths():
    app = web.Application()

    async def h(op, args):
        return 0

    with pytest.raises(ValueError):
        add_command_routes(app, "axis2/services/SmartCTIWSCommand", h)
    with pytest.raises(ValueError):
        add_command_routes(app, "/", h)


# ------------------------------------------------------------------ interoperability

# Arguments sent by every client: mostly "<param>-<op>", plus non-ASCII and markup,
# an empty string, nulls (xsi:nil or omitted, client's choice) and surrounding blanks.
SPECIAL_ARGS: dict[tuple[str, str], str | None] = {
    ("Logon", "device"): "José & <2001>",
    ("LogonPass", "agentPass"): SECRET,
    ("Ready", "agentID"): "",
    ("Ready", "groupID"): None,
    ("MakeCall", "telephoneNumber"): "  4832223333  ",
    ("MakeCallPass", "route"): None,
    ("ConnectionClear", "CallID"): "",
    ("GetCallList", "groupID"): "701,702",
}


def call_args(op: str) -> dict[str, str | None]:
    return {p: SPECIAL_ARGS.get((op, p), f"{p}-{op}") for p in OPERATIONS[op].params}


def expected_args(op: str) -> dict[str, str]:
    return {p: (v or "").strip() for p, v in call_args(op).items()}


def all_calls() -> list[dict]:
    return [{"op": op, "args": call_args(op)} for op in OP_NAMES]


def check_interop(rec: Recorder, returned: dict[str, object], post_path: str, *,
                  strings_for_ints: bool = False) -> None:
    """All 32 operations reached the stub with the right args, in order, and the
    client decoded the right value; every POST went to the WSDL's address with
    SOAP 1.1 content type and SOAPAction urn:<op>."""
    assert [c[1] for c in rec.calls] == OP_NAMES
    for link, op, args in rec.calls:
        assert link == "main"
        assert list(args) == list(OPERATIONS[op].params), op
        assert args == expected_args(op), op
    assert set(returned) == set(OP_NAMES)
    for op in OP_NAMES:
        want = stub_return(op, expected_args(op))
        got = returned[op]
        if isinstance(want, int) and strings_for_ints:
            got = int(got)  # type: ignore[arg-type]
        assert got == want, op
        assert type(got) is type(want), op
    posts = [r for r in rec.requests if r[0] == "POST"]
    assert len(posts) == len(OP_NAMES)
    for (method, path, ctype, action), op in zip(posts, OP_NAMES):
        assert path == post_path
        assert ctype.lower().startswith("text/xml"), ctype  # SOAP 1.1, not application/soap+xml
        assert (action or "").strip('"') == f"urn:{op}"


def test_interop_zeep(server, rec):
    zeep = pytest.importorskip("zeep")
    wsdl_path = DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint/"
    client = zeep.Client(server.url(wsdl_path + "?wsdl"))
    returned = {}
    for op in OP_NAMES:
        returned[op] = getattr(client.service, op)(**call_args(op))
    check_interop(rec, returned, wsdl_path)


def _run_json_client(cmd: list[str], cwd: Path, calls: list[dict], timeout: float = 60) -> dict[str, object]:
    proc = subprocess.run(cmd, input=json.dumps(calls).encode(), cwd=cwd, capture_output=True,
                          timeout=timeout)
    out = proc.stdout.decode("utf-8", "replace").strip()
    assert proc.returncode == 0, f"{cmd[0]} failed: {out}\n{proc.stderr.decode('utf-8', 'replace')}"
    results = json.loads(out)
    assert [r["op"] for r in results] == [c["op"] for c in calls]
    return {r["op"]: r["return"] for r in results}


def _php_soap_missing() -> str | None:
    php = shutil.which("php")
    if php is None:
        return "php not installed (apt-get install php-cli php-soap)"
    mods = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30).stdout
    if "soap" not in mods.lower().split():
        return "PHP soap extension missing (apt-get install php-soap)"
    return None


def test_interop_php_soapclient(server, rec):
    reason = _php_soap_missing()
    if reason:
        pytest.skip(reason)
    wsdl_path = DEFAULT_PATH
    returned = _run_json_client(["php", str(INTEROP_DIR / "soapclient.php"), server.url(wsdl_path + "?WSDL")],
                                INTEROP_DIR, all_calls())
    check_interop(rec, returned, wsdl_path)


def _node_soap_missing() -> str | None:
    if shutil.which("node") is None:
        return "node not installed"
    probe = subprocess.run(["node", "-e", "require.resolve('soap')"], cwd=INTEROP_DIR,
                           capture_output=True, timeout=30)
    if probe.returncode != 0:
        return f"npm package 'soap' not installed (cd {INTEROP_DIR} && npm ci)"
    return None


def test_interop_node_soap(server, rec):
    reason = _node_soap_missing()
    if reason:
        pytest.skip(reason)
    wsdl_path = DEFAULT_PATH + ".SmartCTIWSCommandHttpSoap11Endpoint"
    returned = _run_json_client(["node", str(INTEROP_DIR / "soapclient.js"), server.url(wsdl_path + "?wsdl")],
                                INTEROP_DIR, all_calls())
    check_interop(rec, returned, wsdl_path)


def _cxx_string(value: str) -> str:
    """A C++ string literal for UTF-8 text (octal escapes are unambiguous)."""
    out = []
    for b in value.encode("utf-8"):
        c = chr(b)
        out.append(c if (c.isalnum() and b < 128) or c in " -_,.:|" else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _gsoap_client_source() -> str:
    lines = [
        '#include "soapSmartCTIWSCommandSoap11BindingProxy.h"',
        '#include "SmartCTIWSCommandSoap11Binding.nsmap"',
        "#include <iostream>",
        "#include <string>",
        "int main() {",
        "  SmartCTIWSCommandSoap11BindingProxy proxy(SOAP_C_UTFSTRING);",
        "  int rc = 0;",
    ]
    for op in OP_NAMES:
        lines.append("  {")
        lines.append(f"    _ns1__{op} req; _ns1__{op}Response res;")
        for i, (param, value) in enumerate(call_args(op).items()):
            if value is not None:
                lines.append(f"    std::string a{i}({_cxx_string(value)}); req.{param} = &a{i};")
        lines.append(f"    if (proxy.{op}(&req, res) != SOAP_OK) {{ proxy.soap_stream_fault(std::cerr); rc = 1; }}")
        if OPERATIONS[op].returns == "int":
            lines.append(f'    else if (res.return_) std::cout << "{op}\\tint\\t" << *res.return_ << "\\n";')
        else:
            lines.append(f'    else if (res.return_) std::cout << "{op}\\tstring\\t" << *res.return_ << "\\n";')
        lines.append(f'    else std::cout << "{op}\\tnil\\t\\n";')
        lines.append("    proxy.destroy();")
        lines.append("  }")
    lines += ["  return rc;", "}", ""]
    return "\n".join(lines)


def test_interop_gsoap(server, rec, tmp_path):
    tools = {t: shutil.which(t) for t in ("wsdl2h", "soapcpp2", "g++")}
    missing = [t for t, p in tools.items() if p is None]
    if missing:
        pytest.skip(f"gSOAP toolchain missing ({', '.join(missing)}; apt-get install gsoap libgsoap-dev g++)")
    import_dir = next((d for d in ("/usr/share/gsoap/import", "/usr/local/share/gsoap/import")
                       if os.path.isdir(d)), None)
    if import_dir is None:
        pytest.skip("gSOAP import directory not found")
    wsdl_path = DEFAULT_PATH + ".jws"

    def run(*cmd: str, timeout: float = 120) -> None:
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"

    run("wsdl2h", "-o", "smartcti.h", server.url(wsdl_path + "?wsdl"))
    # No -1/-2 flag: the WSDL alone must make gSOAP generate a SOAP 1.1 client.
    run("soapcpp2", "-j", "-C", "-x", "-I" + import_dir, "smartcti.h")
    nsmap = (tmp_path / "SmartCTIWSCommandSoap11Binding.nsmap").read_text()
    assert '"SOAP-ENV", "http://schemas.xmlsoap.org/soap/envelope/"' in nsmap
    (tmp_path / "client.cpp").write_text(_gsoap_client_source())
    run("g++", "-O0", "-w", "-o", "client", "client.cpp", "soapC.cpp",
        "soapSmartCTIWSCommandSoap11BindingProxy.cpp", "-lgsoap++", timeout=180)
    proc = subprocess.run([str(tmp_path / "client")], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    returned: dict[str, object] = {}
    for line in proc.stdout.decode("utf-8").splitlines():
        op, kind, value = line.split("\t", 2)
        returned[op] = int(value) if kind == "int" else value
    check_interop(rec, returned, wsdl_path)


def test_secret_params_are_known_parameters():
    # The log redaction above relies on SECRET_PARAMS naming real parameters.
    assert SECRET_PARAMS <= {p for op in OPERATIONS.values() for p in op.params}
