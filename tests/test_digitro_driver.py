"""The Dígitro driver against a scripted XML-RPC peer on loopback: wire names, refusals, events."""
import xmlrpc.client

import aiohttp
import pytest
from aiohttp import web

from smartcti_gateway.core import pabx as p
from smartcti_gateway.core.codes import Result
from smartcti_gateway.pabx.digitro.dialect import Dialect
from smartcti_gateway.pabx.digitro.driver import DigitroDriver


class ScriptedNgc:
    """Answers each method from ``replies`` and records (method, struct)."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.replies: dict[str, object] = {}

    async def handle(self, request: web.Request) -> web.Response:
        params, method = xmlrpc.client.loads(await request.read())
        self.calls.append((method, params[0]))
        reply = self.replies.get(method, {"RESULTADO": "OK"})
        if isinstance(reply, xmlrpc.client.Fault):
            body = xmlrpc.client.dumps(reply, methodresponse=True)
        elif isinstance(reply, bytes):
            return web.Response(body=reply, content_type="text/xml")
        else:
            body = xmlrpc.client.dumps((reply,), methodresponse=True)
        return web.Response(text=body, content_type="text/xml")


@pytest.fixture
async def ngc():
    peer = ScriptedNgc()
    app = web.Application()
    app.router.add_post("/RPC2", peer.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    peer.url = f"http://127.0.0.1:{runner.addresses[0][1]}/RPC2"
    yield peer
    await runner.cleanup()


async def started(ngc, **kw) -> tuple[DigitroDriver, list]:
    events: list = []
    drv = DigitroDriver(ngc.url, callback_url="http://127.0.0.1:9/pabx/digitro/1/RPC2", timeout=1, **kw)
    ngc.replies["cti.registra_retorno"] = {"RESULTADO": "OK", "ID_CANAL": "42"}
    await drv.start(events.append)
    return drv, events


async def test_registers_the_callback_and_monitors_with_the_channel(ngc):
    drv, _ = await started(ngc)
    try:
        await drv.execute(p.MonitorStart("2001"))
        assert ngc.calls == [("cti.registra_retorno", {"URL_RETORNO": "http://127.0.0.1:9/pabx/digitro/1/RPC2"}),
                             ("cti.monitora", {"ID_CANAL": "42", "DISPOSITIVO": "2001"})]
    finally:
        await drv.close()
    assert ngc.calls[-1] == ("cti.remove_retorno", {"ID_CANAL": "42"})


async def test_request_wire_shapes(ngc):
    drv, _ = await started(ngc)
    ngc.replies["cti.gera_chamada"] = {"RESULTADO": "OK", "ID_CHAMADA": "08/07/24 10:46:19 010A 0974/00"}
    try:
        assert await drv.execute(p.MakeCall("2001", "4832810000", "0", "pw")) == "08/07/24 10:46:19 010A 0974/00"
        await drv.execute(p.SetAgentState("2001", "1234", ("701", "702"), p.AgentState.READY, "pw"))
        await drv.execute(p.HoldCall("2001", "X"))
        await drv.execute(p.SingleStepTransfer("2001", "2002", "X"))
        await drv.execute(p.SetForwarding("2001", ""))
    finally:
        await drv.close()
    assert ngc.calls[:5] == [   # the listener is registered by the link's first contact, not here
        ("cti.gera_chamada", {"DISPOSITIVO": "2001", "SENHA_DISPOSITIVO": "pw", "IDENTIDADE_DESTINO": "4832810000",
                              "ROTA": "0", "CONTA": ""}),
        ("cti.disponivel", {"DISPOSITIVO": "2001", "AGENTE": "1234", "SENHA_DISPOSITIVO": "pw", "GRUPO_DAC": "701,702"}),
        ("cti.coloca_espera", {"DISPOSITIVO": "2001", "ID_CHAMADA": "X"}),
        ("cti.transfere_direto", {"DISPOSITIVO": "2001", "ID_CHAMADA": "X", "DISPOSITIVO_DESTINO": "2002"}),
        ("cti.siga_me", {"DISPOSITIVO": "2001", "DISPOSITIVO_DESTINO": ""}),
    ]


async def test_replies_become_neutral_values(ngc):
    drv, _ = await started(ngc)
    ngc.replies["cti.estado_agente"] = {"RESULTADO": "OK", "ESTADO": "PAUSA", "AGENTE": "1234", "GRUPO_DAC": "701,702"}
    ngc.replies["cti.chamadas_dispositivo"] = {"RESULTADO": "OK", "CHAMADAS": [
        {"ID_CHAMADA": "A", "ESTADO": "CONECTADA", "SENTIDO": "ENTRADA", "NUMERO_ORIGINADOR": "4832810000",
         "NUMERO_DISCADO_ORIGINAL": "7001", "DISPOSITIVOS_ASSOCIADOS": "4832810000", "ULTIMO_REDIRECIONAMENTO": "701",
         "TRONCOS_ASSOCIADOS": "T01", "CATEGORIA": "1", "DADOS": "3|4832810000"}]}
    ngc.replies["cti.chamadas_grupo"] = {"RESULTADO": "OK", "CHAMADAS": [
        {"ID_CHAMADA": "Q", "ESTADO": "FILA", "DISPOSITIVO": "", "NUMERO_ORIGINADOR": "4830000000"}]}
    try:
        assert await drv.execute(p.QueryAgentState("2001")) == p.AgentInfo(p.AgentState.NOT_READY, "1234", ("701", "702"))
        assert await drv.execute(p.SnapshotDevice("2001")) == [p.CallInfo(
            "A", p.ConnectionState.CONNECTED, "4832810000", "7001", ("4832810000",), "701", "T01", "1", "3|4832810000",
            p.Direction.INBOUND)]
        assert await drv.execute(p.QueryGroupCalls("701")) == [p.GroupCall("Q", p.ConnectionState.QUEUED, "", "4830000000")]
        assert ngc.calls[-1] == ("cti.chamadas_grupo", {"GRUPO_DAC": "701"})
    finally:
        await drv.close()


@pytest.mark.parametrize("reply,code", [
    ({"RESULTADO": "DISPOSITIVO_INVALIDO"}, Result.INVALID_DEVICE),
    ({"RESULTADO": "OCUPADO", "MENSAGEM": "ramal ocupado"}, Result.BUSY),
    ({"RESULTADO": "E-UNHEARD-OF"}, Result.INTERNAL_ERROR),
    (xmlrpc.client.Fault(17, "no such device"), Result.INTERNAL_ERROR),
    (b"<not xml-rpc", Result.INVALID_SIZE_BUFFER),
    ({"no": "result"}, Result.INTERNAL_ERROR),
])
async def test_refusals_map_to_smartcti_codes(ngc, reply, code):
    drv, _ = await started(ngc)
    ngc.replies["cti.atende"] = reply
    try:
        with pytest.raises(p.PabxError) as e:
            await drv.execute(p.AnswerCall("2001"))
        assert e.value.code == code and not isinstance(e.value, p.PabxUnavailable)
    finally:
        await drv.close()


async def test_site_overrides_apply_to_names_and_codes(ngc):
    d = Dialect.with_overrides({"methods": {"answer": "ngc.atender"}, "fields": {"device": "RAMAL"},
                                "results": {"17": 18}})
    drv, _ = await started(ngc, dialect=d)
    ngc.replies["ngc.atender"] = xmlrpc.client.Fault(17, "no such device")
    try:
        with pytest.raises(p.PabxError) as e:
            await drv.execute(p.AnswerCall("2001", "X"))
        assert e.value.code == Result.INVALID_DEVICE
        assert ngc.calls[-1] == ("ngc.atender", {"RAMAL": "2001", "ID_CHAMADA": "X"})
    finally:
        await drv.close()


async def test_unreachable_ngc_is_out_of_service():
    drv = DigitroDriver("http://127.0.0.1:9/RPC2", callback_url="http://127.0.0.1:9/cb", timeout=1)
    await drv.start(lambda e: None)   # logs a warning, does not raise
    try:
        with pytest.raises(p.PabxUnavailable) as e:
            await drv.execute(p.QuerySystemStatus())
        assert e.value.code == Result.OUT_OF_SERVICE and "unreachable" in e.value.detail
    finally:
        await drv.close()


# ------------------------------------------------------------------ events
@pytest.fixture
async def intake():
    events: list = []
    drv = DigitroDriver("http://127.0.0.1:9/RPC2", events_path="/pabx/digitro/1/RPC2")
    drv._on_event = events.append
    app = web.Application(client_max_size=65536)
    for route in drv.routes():            # what the gateway adds to the link's listener
        app.router.add_route(route.method, route.path, route.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/pabx/digitro/1/RPC2"
    async with aiohttp.ClientSession() as s:
        async def post(body: bytes):
            async with s.post(url, data=body, headers={"Content-Type": "text/xml"}) as r:
                return r.status, await r.read()
        yield post, events, drv
    await runner.cleanup()


def event(**members) -> bytes:
    return xmlrpc.client.dumps((members,), "cti.evento").encode()


async def test_call_and_agent_events(intake):
    post, events, _ = intake
    status, body = await post(event(EVENTO="CHAMADA_TOCANDO", ID_CANAL="42", SEQUENCIA=1, DISPOSITIVO="2001",
                                    ID_CHAMADA="A", SENTIDO="ENTRADA", NUMERO_ORIGINADOR="4832810000",
                                    NUMERO_DISCADO_ORIGINAL="7001", ULTIMO_REDIRECIONAMENTO="701", DADOS="2|123",
                                    DISPOSITIVO_ASSOCIADO="", TRONCOS_ASSOCIADOS="T01", CATEGORIA="1"))
    assert status == 200 and xmlrpc.client.loads(body)[0] == ({"RESULTADO": "OK"},)
    await post(event(EVENTO="CHAMADA_FALHOU", DISPOSITIVO="2001", ID_CHAMADA="B", CAUSA="NAO_ATENDE"))
    await post(event(EVENTO="CHAMADA_TRANSFERIDA", DISPOSITIVO="2002", ID_CHAMADA="A", ID_CHAMADA_ANTERIOR="B"))
    await post(event(EVENTO="AGENTE_EM_PAUSA", DISPOSITIVO="2001", AGENTE="1234", GRUPO_DAC="701,702", MOTIVO="almoço"))
    assert events == [
        p.CallEvent(p.CallEventType.DELIVERED, "2001", "A", calling="4832810000", called="7001", group="701",
                    data="2|123", direction=p.Direction.INBOUND, trunks="T01", category="1"),
        p.CallEvent(p.CallEventType.FAILED, "2001", "B", cause=Result.NO_ANSWER),
        p.CallEvent(p.CallEventType.TRANSFERRED, "2002", "A", old_call_id="B"),
        p.AgentEvent(p.AgentEventType.NOT_READY, "2001", "1234", ("701", "702"), "almoço"),
    ]


@pytest.mark.parametrize("body,fault", [
    (b"garbage", "unreadable XML-RPC request"),
    (xmlrpc.client.dumps(({},), "cti.outro").encode(), "unknown method 'cti.outro'"),
    (xmlrpc.client.dumps(("x",), "cti.evento").encode(), "the event must be one struct"),
    (event(EVENTO="CHAMADA_VOANDO", DISPOSITIVO="2001", ID_CHAMADA="A"), "unknown EVENTO 'CHAMADA_VOANDO'"),
    (event(EVENTO="CHAMADA_TOCANDO", ID_CHAMADA="A"), "CHAMADA_TOCANDO without DISPOSITIVO"),
    (event(EVENTO="CHAMADA_TOCANDO", DISPOSITIVO="2001"), "CHAMADA_TOCANDO without ID_CHAMADA"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><methodCall><methodName>&a;</methodName></methodCall>',
     "DTDs and entities are not accepted"),
])
async def test_bad_events_get_a_fault_and_the_next_one_works(intake, body, fault):
    post, events, drv = intake
    status, answer = await post(body)
    assert status == 200
    with pytest.raises(xmlrpc.client.Fault) as f:
        xmlrpc.client.loads(answer)
    assert fault in f.value.faultString
    assert drv.events_rejected == 1
    status, answer = await post(event(EVENTO="AGENTE_LOGADO", DISPOSITIVO="2001", AGENTE="1", GRUPO_DAC="701"))
    assert xmlrpc.client.loads(answer)[0] == ({"RESULTADO": "OK"},)
    assert events == [p.AgentEvent(p.AgentEventType.LOGGED_ON, "2001", "1", ("701",))]


async def test_an_event_that_breaks_the_handler_does_not_break_the_intake(intake):
    post, events, drv = intake

    def explode(ev):
        raise RuntimeError("boom")
    drv._on_event = explode
    status, answer = await post(event(EVENTO="AGENTE_LOGADO", DISPOSITIVO="2001"))
    assert status == 200 and xmlrpc.client.loads(answer)[0] == ({"RESULTADO": "OK"},)
