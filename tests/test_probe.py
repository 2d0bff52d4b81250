"""probe-pabx against real HTTP servers on loopback: what it calls, what it drafts, what it says."""
from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest
import yaml
from aiohttp import web

from smartcti_gateway.cli import main
from smartcti_gateway.pabx.digitro.dialect import METHODS, Dialect
from smartcti_gateway.probe import (
    MAX_METHODS,
    MAX_TEXT,
    keyword_score,
    match_methods,
    words,
)
from smartcti_gateway.sim.digitro import start_simulator
from tests.support import BackgroundLoop, free_port, self_signed_certificate

# a foreign vocabulary: what an NGC of another release could list
FOREIGN = {
    "pbx.atenderChamada": "Atende a chamada que toca no DISPOSITIVO.",
    "pbx.desligar": "Finaliza a chamada em andamento.",
    "pbx.loginAgente": "Login do agente nos grupos DAC.",
    "pbx.logoutAgente": "Logout do agente.",
    "pbx.pausarAgente": "Coloca o agente em pausa.",
    "pbx.registrarEventos": "Registra a URL de retorno dos eventos.",
    "pbx.versao": "Versao do NGC.",
    "pbx.discar": "Gera uma chamada.",
    "pbx.transferir": "Transfere a chamada.",
    "pbx.colocarEmEspera": "Coloca a chamada em espera.",
    "pbx.iniciarGravacao": "Inicia a gravacao.",
    "pbx.estadoAgente": "Estado do agente.",
    "pbx.consultarEstadoAgente": "Estado do agente (outra forma).",
    "misc.unrelated": "Nothing a CTI needs.",
}
SYSTEM = {"system.listMethods", "system.methodSignature", "system.methodHelp"}


class _Quiet(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)

    def log_message(self, *args):   # no access lines in the test output
        pass


class RecordingServer(SimpleXMLRPCServer):
    """The stdlib's XML-RPC server with introspection, recording every method called (system.* too)."""

    def __init__(self, methods: dict[str, str], signatures: bool = True):
        super().__init__(("127.0.0.1", 0), requestHandler=_Quiet, logRequests=False, allow_none=True)
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.with_signatures = signatures
        self.register_introspection_functions()
        for name, doc in methods.items():
            self.register_function(self._method(name, doc), name)

    def _method(self, name: str, doc: str):
        def fn(*args):
            return {"RESULTADO": "OK"}      # a real NGC would act here: the probe must never get this far
        fn.__doc__ = doc
        fn.__name__ = name.replace(".", "_")
        return fn

    def _dispatch(self, method, params):
        with self.lock:
            self.calls.append(method)
        return super()._dispatch(method, params)

    def system_methodSignature(self, method_name):
        if self.with_signatures and method_name in self.funcs and not method_name.startswith("system."):
            return [["struct", "struct"]]
        return super().system_methodSignature(method_name)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/RPC2"


@pytest.fixture
def serve_xmlrpc():
    servers: list[tuple[RecordingServer, threading.Thread]] = []

    def start(methods: dict[str, str], **kw) -> RecordingServer:
        server = RecordingServer(methods, **kw)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def loop():
    bg = BackgroundLoop()
    yield bg
    bg.stop_loop()


@pytest.fixture
def serve_aiohttp(loop):
    """An aiohttp app on loopback, served by the background loop; returns its base URL."""
    runners: list[web.AppRunner] = []

    def start(handler, path: str = "/RPC2", ssl_context: ssl.SSLContext | None = None) -> str:
        async def up() -> str:
            app = web.Application()
            app.router.add_route("*", path, handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
            await site.start()
            runners.append(runner)
            return f"{'https' if ssl_context else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
        return loop.run(up())

    yield start
    for runner in runners:
        loop.run(runner.cleanup())


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["probe-pabx", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------ introspection
def test_foreign_vocabulary_draft_from_introspection_only(serve_xmlrpc, capsys, tmp_path):
    server = serve_xmlrpc(FOREIGN)
    draft = tmp_path / "dialect.yaml"
    code, out, err = run(capsys, server.url, "--count", "3", "--draft", str(draft))
    assert code == 0, err
    assert err == ""

    # only introspection reached the server: 3 latency samples of listMethods, then signature + help each
    assert set(server.calls) == SYSTEM
    assert server.calls.count("system.listMethods") == 3
    assert server.calls.count("system.methodHelp") == len(FOREIGN)
    assert server.calls.count("system.methodSignature") == len(FOREIGN)

    text = draft.read_text(encoding="utf-8")
    loaded = yaml.safe_load(text)
    assert list(loaded) == ["methods"]
    methods = loaded["methods"]
    assert methods == {
        "register_listener": "pbx.registrarEventos",
        "make_call": "pbx.discar",
        "answer": "pbx.atenderChamada",
        "clear": "pbx.desligar",
        "hold": "pbx.colocarEmEspera",
        "transfer": "pbx.transferir",
        "start_recording": "pbx.iniciarGravacao",
        "agent_login": "pbx.loginAgente",
        "agent_logout": "pbx.logoutAgente",
        "agent_not_ready": "pbx.pausarAgente",
        "version": "pbx.versao",
    }
    d = Dialect.with_overrides(loaded)          # the config accepts the draft as it is
    assert d.methods["answer"] == "pbx.atenderChamada" and d.methods["hold"] == "pbx.colocarEmEspera"
    assert d.methods["retrieve"] == METHODS["retrieve"]     # not listed: the current name stays

    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert all(line.startswith(("#", "methods:", "  ")) or not line.strip()
               for line in text.splitlines())
    uncertain = [c for c in comments if c.startswith("#  agent_state:")]    # one line per candidate
    assert uncertain == ["#  agent_state: pbx.consultarEstadoAgente  # confidence 0.50, several methods match equally",
                         "#  agent_state: pbx.estadoAgente  # another candidate"]
    i = comments.index("# Listed methods no logical method matched (unknown):")
    assert comments[i + 1] == "#   misc.unrelated  signature: struct (struct); help: Nothing a CTI needs."
    assert not any("misc.unrelated" in c for c in comments[:i])
    assert any("retrieve (cti.recupera_espera)" in c for c in comments)   # said missing, not mapped

    # an uncertain line, uncommented, is still a valid override
    fixed = text.replace("#  agent_state: pbx.consultar", "  agent_state: pbx.consultar")
    assert Dialect.with_overrides(yaml.safe_load(fixed)).methods["agent_state"] == "pbx.consultarEstadoAgente"

    assert f"written to {draft}" in out
    assert "Called only: system.listMethods x3, system.methodSignature x14, system.methodHelp x14" in out
    assert "nothing that changes the PABX's state" in out
    assert re.search(r"^  answer +pbx\.atenderChamada +0\.80 keywords$", out, re.MULTILINE)
    assert "UNCERTAIN" in out
    assert "Unknown methods (no logical method matched): misc.unrelated" in out
    assert "signatures: yes, help: yes" in out


def test_json_report_parses_with_latency_figures(serve_xmlrpc, capsys):
    server = serve_xmlrpc(FOREIGN, signatures=False)
    code, out, err = run(capsys, server.url, "--json", "--count", "4")
    assert code == 0, err
    report = json.loads(out)
    assert report["exit_code"] == 0 and report["outcome"] == "introspection"
    for key in ("tcp_connect_ms", "round_trip_ms"):
        lat = report["latency"][key]
        assert len(lat["samples"]) == 4
        assert 0 <= lat["min"] <= lat["median"] <= lat["max"]
        assert lat["min"] == min(lat["samples"]) and lat["max"] == max(lat["samples"])
    assert report["latency"]["round_trip_method"] == "system.listMethods"
    assert report["calls"]["system.listMethods"] == 4
    # the stdlib answers "signatures not supported": asked once, then no more
    assert report["calls"]["system.methodSignature"] == 1 == server.calls.count("system.methodSignature")
    assert report["introspection"]["signatures"] is False and report["introspection"]["help"] is True
    assert report["matches"]["clear"]["wire"] == "pbx.desligar"
    assert report["matches"]["clear"]["confident"] is True
    assert report["matches"]["agent_state"]["confident"] is False
    assert {c["method"] for c in report["matches"]["agent_state"]["candidates"]} == \
        {"pbx.estadoAgente", "pbx.consultarEstadoAgente"}
    assert report["unknown"] == ["misc.unrelated"]
    assert report["draft"] == yaml.safe_load(report["draft_yaml"])
    Dialect.with_overrides(report["draft"])
    helps = {m["name"]: m.get("help") for m in report["introspection"]["methods"]}
    assert helps["pbx.desligar"] == "Finaliza a chamada em andamento."
    assert set(server.calls) == SYSTEM


def test_an_ngc_listing_the_current_names_drafts_the_current_dialect(serve_xmlrpc, capsys):
    current = {wire: "" for logical, wire in METHODS.items() if wire and logical != "event"}
    server = serve_xmlrpc(current)
    code, out, err = run(capsys, server.url, "--count", "1")
    assert code == 0, err
    draft_text = out.split("--- draft pabx.dialect (YAML) ---\n", 1)[1]
    draft = yaml.safe_load(draft_text)
    assert draft == {"methods": {k: v for k, v in METHODS.items() if v and k != "event"}}
    assert Dialect.with_overrides(draft).methods == Dialect().methods
    assert "# Listed methods no logical method matched" not in draft_text
    assert set(server.calls) == SYSTEM


def test_introspection_is_bounded(serve_aiohttp, capsys):
    """600 methods listed: 500 examined; a help text of 5000 characters kept at MAX_TEXT."""
    called: list[str] = []
    names = [f"x.metodo{i:03d}" for i in range(600)]

    async def handler(request: web.Request) -> web.Response:
        _params, method = xmlrpc.client.loads(await request.read())
        called.append(method)
        if method == "system.listMethods":
            body = xmlrpc.client.dumps((names,), methodresponse=True)
        elif method == "system.methodHelp":
            body = xmlrpc.client.dumps(("h" * 5000,), methodresponse=True)
        else:
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(1, f"unknown method {method!r}"), methodresponse=True)
        return web.Response(text=body, content_type="text/xml")

    base = serve_aiohttp(handler)
    code, out, err = run(capsys, base + "/RPC2", "--json", "--count", "1")
    assert code == 0, err
    report = json.loads(out)
    assert report["introspection"]["listed"] == 600 and report["introspection"]["examined"] == MAX_METHODS
    assert called.count("system.methodHelp") == MAX_METHODS
    assert called.count("system.methodSignature") == 1          # a fault for the first: not asked again
    assert set(called) == SYSTEM
    assert all(len(m["help"]) <= MAX_TEXT for m in report["introspection"]["methods"])
    assert "only the first 500 were examined" in " ".join(report["notes"])


def test_an_answer_over_1_mb_is_not_read(serve_aiohttp, capsys):
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/xml"})
        await resp.prepare(request)
        chunk = b"<" * 65536
        for _ in range(20):           # 1.25 MB, without Content-Length
            await resp.write(chunk)
        return resp

    base = serve_aiohttp(handler)
    code, _out, err = run(capsys, base + "/RPC2", "--count", "1")
    assert code == 1
    assert err.count("\n") == 1 and "more than 1 MB" in err and "stopped reading" in err


# ------------------------------------------------------------------ without introspection
def test_the_ngc_simulator_has_no_introspection(loop, capsys, tmp_path):
    sim, runner = loop.run(start_simulator("127.0.0.1", 0))
    try:
        draft = tmp_path / "d.yaml"
        code, out, err = run(capsys, sim.url, "--count", "2", "--draft", str(draft))
        state = loop.in_loop(sim.state)
    finally:
        loop.run(runner.cleanup())
    assert code == 1
    assert err.count("\n") == 1
    assert "speaks XML-RPC but offers no introspection" in err
    assert "unknown method 'system.listMethods'" in err
    assert "smartcti-gateway capture" in err and "docs/migration.md" in err
    assert "cti.versao (the current dialect's read-only version query) answered" in out
    assert "NGC simulator" in out
    assert "Called only: system.listMethods x2, cti.versao x1" in out
    assert "HTTP round trip of system.listMethods" in out and "TCP connect" in out
    assert not draft.exists() and "no draft written" in out
    assert state["channels"] == {}            # nothing registered, nothing changed


def test_http_404(serve_aiohttp, capsys):
    async def handler(request):
        return web.Response(status=404, text="not here")

    base = serve_aiohttp(handler, "/other")
    code, _out, err = run(capsys, base + "/RPC2", "--count", "1")
    assert code == 1
    assert err.count("\n") == 1
    assert "answered HTTP 404 Not Found to an XML-RPC POST: nothing at this path" in err
    assert "http://HOST:2551/RPC2" in err and "smartcti-gateway capture" in err


def test_a_server_answering_html(serve_aiohttp, capsys):
    async def handler(request):
        return web.Response(text="<!DOCTYPE html><html><head><title>NGC Explorer</title></head><body>login"
                                 "</body></html>", content_type="text/html")

    base = serve_aiohttp(handler)
    code, out, err = run(capsys, base + "/RPC2", "--count", "1")
    assert code == 1
    assert err.count("\n") == 1
    assert "answered an HTML page ('NGC Explorer'), not XML-RPC" in err and "Check the URL" in err
    assert "Called only: system.listMethods x1;" in out


def test_a_server_answering_something_else(serve_aiohttp, capsys):
    async def handler(request):
        return web.json_response({"hello": "world"})

    base = serve_aiohttp(handler)
    code, out, _err = run(capsys, base + "/RPC2", "--json", "--count", "1")
    assert code == 1
    report = json.loads(out)
    assert report["outcome"] == "not-xml-rpc" and report["exit_code"] == 1
    assert "with something that is not XML-RPC (application/json" in report["message"]
    assert report["latency"]["round_trip_ms"]["samples"]


# ------------------------------------------------------------------ no answer
def test_unreachable_port_is_one_line_and_exit_2(capsys):
    port = free_port()
    code, out, err = run(capsys, f"http://127.0.0.1:{port}/RPC2")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"probe-pabx: cannot connect to 127.0.0.1:{port} (connection refused): nothing listens")


def test_a_slow_server_times_out(serve_aiohttp, loop, capsys):
    release = asyncio.Event()
    arrived = threading.Event()

    async def handler(request):
        arrived.set()
        await release.wait()
        return web.Response(text="late")

    base = serve_aiohttp(handler)
    try:
        code, _out, err = run(capsys, base + "/RPC2", "--timeout", "0.3", "--count", "1")
    finally:
        loop.loop.call_soon_threadsafe(release.set)
    assert arrived.is_set()
    assert code == 2
    assert err.count("\n") == 1
    assert "accepted the connection but did not answer system.listMethods within 0.3 s" in err
    assert "--timeout" in err


def test_bad_urls(capsys):
    code, _out, err = run(capsys, "ftp://ngc/RPC2")
    assert code == 2 and "is not an http:// or https:// URL" in err
    code, _out, err = run(capsys, "http://ngc:port/RPC2")
    assert code == 2 and "is not a usable URL" in err


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


async def _list_methods(request: web.Request) -> web.Response:
    _, method = xmlrpc.client.loads(await request.read())
    if method == "system.listMethods":
        return web.Response(text=xmlrpc.client.dumps((["pbx.desligar"],), methodresponse=True), content_type="text/xml")
    return web.Response(text=xmlrpc.client.dumps(xmlrpc.client.Fault(1, "no"), methodresponse=True),
                        content_type="text/xml")


def test_tls_untrusted_then_trusted_with_ca_file(serve_aiohttp, capsys, cert):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    base = serve_aiohttp(_list_methods, ssl_context=ctx)
    code, out, err = run(capsys, base + "/RPC2", "--count", "1")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "TLS: the certificate of 127.0.0.1:" in err and "is not trusted" in err and "--ca-file" in err
    code, out, err = run(capsys, base + "/RPC2", "--count", "1", "--ca-file", cert[0], "--json")
    assert code == 0, err
    assert json.loads(out)["draft"] == {"methods": {"clear": "pbx.desligar"}}


def test_https_to_a_plain_http_server(serve_aiohttp, capsys):
    base = serve_aiohttp(_list_methods)
    code, _out, err = run(capsys, base.replace("http://", "https://") + "/RPC2", "--count", "1")
    assert code == 2 and err.count("\n") == 1
    assert "TLS with 127.0.0.1:" in err and "use http:// in the URL" in err


# ------------------------------------------------------------------ secrets
def test_a_password_in_the_url_is_never_printed(serve_xmlrpc, capsys, tmp_path):
    server = serve_xmlrpc(FOREIGN)
    url = server.url.replace("http://", "http://admin:S3cr3t%21pw@")
    draft = tmp_path / "d.yaml"
    printed = ""
    for extra in ([], ["--json"], ["--draft", str(draft)]):
        code, out, err = run(capsys, url, "--count", "1", *extra)
        assert code == 0, err
        printed += out + err
    assert "admin:***@127.0.0.1" in printed
    text = draft.read_text(encoding="utf-8")
    assert "admin:***@" in text
    port = free_port()
    code, out, err = run(capsys, f"http://admin:S3cr3t%21pw@127.0.0.1:{port}/RPC2", "--json")
    assert code == 2
    printed += out + err + text
    for secret in ("S3cr3t", "S3cr3t%21pw", "S3cr3t!pw"):
        assert secret not in printed


def test_an_existing_file_that_is_not_a_draft_is_never_overwritten(serve_xmlrpc, capsys, tmp_path):
    server = serve_xmlrpc(FOREIGN)
    config = tmp_path / "gateway.yaml"
    config.write_text("links: []\n", encoding="utf-8")
    code, _out, err = run(capsys, server.url, "--draft", str(config))
    assert code == 1 and "is not a draft written by probe-pabx" in err
    assert config.read_text(encoding="utf-8") == "links: []\n"
    assert server.calls == []                 # refused before any network traffic
    draft = tmp_path / "draft.yaml"
    assert run(capsys, server.url, "--count", "1", "--draft", str(draft))[0] == 0
    assert run(capsys, server.url, "--count", "1", "--draft", str(draft))[0] == 0   # its own draft: replaced


# ------------------------------------------------------------------ matching
def test_words_and_keywords():
    assert words("pbx.atenderChamada") == ["pbx", "atender", "chamada"]
    assert words("CTI.Transfere_Direto") == ["cti", "transfere", "direto"]
    assert words("ngc.versão") == ["ngc", "versao"]
    assert keyword_score("answer", "pbx.atenderChamada") == 1
    assert keyword_score("answer", "pbx.loginAtendente") == 0          # an attendant is not an answer
    assert keyword_score("transfer", "cti.transfere_direto") == 0
    assert keyword_score("single_step_transfer", "cti.transfere_direto") == 2
    assert keyword_score("agent_ready", "pbx.agenteNaoDisponivel") == 0
    assert keyword_score("agent_not_ready", "pbx.agenteNaoDisponivel") == 2
    assert keyword_score("make_call", "pbx.desligar") == 0


@pytest.mark.parametrize("listed, logical, wire", [
    (["ngc.MakeCall", "ngc.HangUp", "ngc.Answer"], "make_call", "ngc.MakeCall"),
    (["ngc.MakeCall", "ngc.HangUp", "ngc.Answer"], "clear", "ngc.HangUp"),
    (["pabx.logon", "pabx.logoff", "pabx.notReady", "pabx.ready"], "agent_not_ready", "pabx.notReady"),
    (["pabx.logon", "pabx.logoff", "pabx.notReady", "pabx.ready"], "agent_ready", "pabx.ready"),
    (["pabx.logon", "pabx.logoff"], "agent_logout", "pabx.logoff"),
    (["a.subscribe", "a.unsubscribe"], "register_listener", "a.subscribe"),
    (["a.subscribe", "a.unsubscribe"], "unregister_listener", "a.unsubscribe"),
    (["x.hold", "x.retrieve", "x.record", "x.conference", "x.getAgentState"], "agent_state", "x.getAgentState"),
    (["x.hold", "x.retrieve", "x.record"], "retrieve", "x.retrieve"),
    (["x.monitorStart", "x.monitorStop"], "monitor_stop", "x.monitorStop"),
    (["x.monitorStart", "x.monitorStop"], "monitor_start", "x.monitorStart"),
])
def test_english_vocabularies_match(listed, logical, wire):
    matches, _ = match_methods(listed)
    assert matches[logical].wire == wire and matches[logical].confident


def test_the_current_name_wins_and_system_methods_never_match():
    matches, unknown = match_methods(["system.listMethods", "system.status", "cti.atende", "pbx.atender"])
    assert matches["answer"].wire == "cti.atende" and matches["answer"].how == "exact"
    assert matches["status"].wire is None
    assert unknown == ["pbx.atender"]
    assert "event" not in matches
