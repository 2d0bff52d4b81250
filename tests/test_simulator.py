"""The Dígitro NGC simulator over real HTTP on loopback.

A stdlib-marshalled XML-RPC client drives it; a tiny aiohttp XML-RPC receiver
records the cti.evento callbacks, so every test checks the exact events a
gateway would get (EVENTO, ID_CHAMADA, SEQUENCIA order).
"""
from __future__ import annotations

import asyncio
import json
import time
import xmlrpc.client
from typing import Any, Callable

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from smartcti_gateway.sim.digitro import server as simulator_http
from smartcti_gateway.pabx.digitro.dialect import Dialect
from smartcti_gateway.sim.digitro import (Simulator, SimulatorOptions, options_from_mapping,
                                                     start_simulator)

ANI = "1133334444"
DNIS = "40040000"
OUT = "1155550000"


async def wait_for(predicate: Callable[[], Any], timeout: float = 2.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
        await asyncio.sleep(0.005)


class Harness:
    """A simulator, an HTTP session and an event receiver with one registered channel."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.seen = 0  # events already returned by next()

    async def start(self, options: SimulatorOptions | None = None, dialect: Dialect | None = None) -> "Harness":
        self.sim, self.runner = await start_simulator("127.0.0.1", 0, options, dialect)
        self.base = f"http://127.0.0.1:{self.sim.port}"
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/cb", self._callback)
        self.receiver = web.AppRunner(app, access_log=None)
        await self.receiver.setup()
        await web.TCPSite(self.receiver, "127.0.0.1", 0).start()
        self.callback_url = f"http://127.0.0.1:{self.receiver.addresses[0][1]}/cb"
        reply = await self.rpc("cti.registra_retorno", URL_RETORNO=self.callback_url)
        self.channel = reply["ID_CANAL"]
        return self

    async def close(self) -> None:
        await self.session.close()
        await self.runner.cleanup()
        await self.receiver.cleanup()

    async def _callback(self, request: web.Request) -> web.Response:
        params, method = xmlrpc.client.loads(await request.read())
        assert method == "cti.evento"
        self.received.append(params[0])
        return web.Response(body=xmlrpc.client.dumps(({"RESULTADO": "OK"},), methodresponse=True),
                            content_type="text/xml")

    # -------------------------------------------------------------- XML-RPC
    async def raw(self, body: bytes) -> Any:
        async with self.session.post(self.sim.url, data=body, headers={"Content-Type": "text/xml"}) as resp:
            assert resp.status == 200
            return xmlrpc.client.loads(await resp.read())[0][0]

    async def rpc(self, method: str, **members: Any) -> dict:
        return await self.raw(xmlrpc.client.dumps((members,), method).encode())

    async def ok(self, method: str, **members: Any) -> dict:
        reply = await self.rpc(method, **members)
        assert reply["RESULTADO"] == "OK", reply
        return reply

    async def refused(self, name: str, method: str, **members: Any) -> dict:
        reply = await self.rpc(method, **members)
        assert reply["RESULTADO"] == name, reply
        assert reply.get("MENSAGEM"), reply
        return reply

    async def monitor(self, *devices: str) -> None:
        for dev in devices:
            await self.ok("cti.monitora", ID_CANAL=self.channel, DISPOSITIVO=dev)

    # ---------------------------------------------------------- control API
    async def control(self, path: str, payload: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        if payload is None and raw is None:
            async with self.session.get(self.base + path) as resp:
                return resp.status, await resp.json()
        body = raw if raw is not None else json.dumps(payload).encode()
        async with self.session.post(self.base + path, data=body,
                                     headers={"Content-Type": "application/json"}) as resp:
            return resp.status, await resp.json()

    async def sim_ok(self, path: str, payload: dict) -> dict:
        status, body = await self.control(path, payload)
        assert status == 200, body
        return body

    async def state(self) -> dict:
        return (await self.control("/sim/state"))[1]

    # --------------------------------------------------------------- events
    async def next(self, n: int, timeout: float = 2.0) -> list[dict]:
        """The next ``n`` events received (waiting for them)."""
        await wait_for(lambda: len(self.received) >= self.seen + n, timeout, f"{n} more events")
        got = self.received[self.seen:self.seen + n]
        self.seen += n
        return got

    async def quiet(self) -> None:
        """Everything emitted so far has arrived, and nothing beyond what next() returned."""
        await wait_for(lambda: len(self.received) >= self.sim.channels[self.channel].sequence,
                       what="all emitted events")
        extra = [(e["EVENTO"], e["DISPOSITIVO"]) for e in self.received[self.seen:]]
        assert not extra, f"unexpected events {extra}"


def brief(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["EVENTO"], e["DISPOSITIVO"]) for e in events]


@pytest_asyncio.fixture
async def make():
    made: list[Harness] = []

    async def factory(dialect: Dialect | None = None, **options: Any) -> Harness:
        opts = SimulatorOptions(**{"answer_after": 0.05, "ring_timeout": 0.1, **options})
        h = await Harness().start(opts, dialect)
        made.append(h)
        return h

    yield factory
    for h in made:
        await h.close()


@pytest_asyncio.fixture
async def h(make) -> Harness:
    return await make()


async def login_ready(h: Harness, device: str, agent: str, groups: str = "701", ready: bool = True) -> None:
    await h.ok("cti.login_dac", DISPOSITIVO=device, AGENTE=agent, SENHA_DISPOSITIVO="", GRUPO_DAC=groups)
    if ready:
        await h.ok("cti.disponivel", DISPOSITIVO=device, AGENTE="", GRUPO_DAC="")


async def connected_inbound(h: Harness, device: str) -> str:
    """An outside call straight to ``device``, answered; returns its id (events consumed)."""
    call_id = (await h.sim_ok("/sim/inbound", {"ani": ANI, "dnis": DNIS, "device": device}))["call_id"]
    await h.sim_ok("/sim/answer", {"device": device})
    await h.next(2)
    return call_id


# ====================================================================== ACD
@pytest.mark.asyncio
async def test_inbound_acd_call_to_ready_agent_answer_and_far_hangup(h):
    await h.monitor("2001")
    await login_ready(h, "2001", "100")
    call_id = (await h.sim_ok("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701",
                                               "data": "2|11122233344"}))["call_id"]
    assert len(call_id) == len("08/07/24 10:46:19 010A 0974/00") and " 010A " in call_id
    assert call_id.endswith("0001/00")

    logged, ready, ringing = await h.next(3)
    assert (logged["EVENTO"], logged["AGENTE"], logged["GRUPO_DAC"]) == ("AGENTE_LOGADO", "100", "701")
    assert (ready["EVENTO"], ready["AGENTE"], ready["GRUPO_DAC"]) == ("AGENTE_DISPONIVEL", "100", "701")
    assert ringing["EVENTO"] == "CHAMADA_TOCANDO"
    assert {k: ringing[k] for k in ("ID_CHAMADA", "DISPOSITIVO", "SENTIDO", "NUMERO_ORIGINADOR",
                                    "NUMERO_DISCADO_ORIGINAL", "ULTIMO_REDIRECIONAMENTO", "DADOS",
                                    "TRONCOS_ASSOCIADOS", "CATEGORIA", "DISPOSITIVO_ASSOCIADO")} == {
        "ID_CHAMADA": call_id, "DISPOSITIVO": "2001", "SENTIDO": "ENTRADA", "NUMERO_ORIGINADOR": ANI,
        "NUMERO_DISCADO_ORIGINAL": DNIS, "ULTIMO_REDIRECIONAMENTO": "701", "DADOS": "2|11122233344",
        "TRONCOS_ASSOCIADOS": "T01", "CATEGORIA": "1", "DISPOSITIVO_ASSOCIADO": "2001"}
    assert (await h.ok("cti.estado_agente", DISPOSITIVO="2001"))["ESTADO"] == "OCUPADO"

    await h.ok("cti.atende", DISPOSITIVO="2001", ID_CHAMADA="")
    [answered] = await h.next(1)
    assert (answered["EVENTO"], answered["ID_CHAMADA"], answered["DISPOSITIVO_ASSOCIADO"]) == (
        "CHAMADA_ATENDIDA", call_id, "2001")
    calls = (await h.ok("cti.chamadas_dispositivo", DISPOSITIVO="2001"))["CHAMADAS"]
    assert calls == [{"ID_CHAMADA": call_id, "ESTADO": "CONECTADA", "SENTIDO": "ENTRADA", "NUMERO_ORIGINADOR": ANI,
                      "NUMERO_DISCADO_ORIGINAL": DNIS, "DISPOSITIVOS_ASSOCIADOS": ANI,
                      "ULTIMO_REDIRECIONAMENTO": "701", "TRONCOS_ASSOCIADOS": "T01", "CATEGORIA": "1",
                      "DADOS": "2|11122233344"}]

    assert (await h.sim_ok("/sim/hangup", {"device": "2001"}))["call_id"] == call_id
    [cleared] = await h.next(1)
    assert (cleared["EVENTO"], cleared["ID_CHAMADA"], cleared["DISPOSITIVO_ASSOCIADO"]) == (
        "CHAMADA_FINALIZADA", call_id, ANI)
    await h.quiet()

    assert [e["SEQUENCIA"] for e in h.received] == [1, 2, 3, 4, 5]
    assert {e["ID_CANAL"] for e in h.received} == {h.channel}
    assert all(e["DATA_HORA"] for e in h.received)
    agent = await h.ok("cti.estado_agente", DISPOSITIVO="2001")
    assert (agent["ESTADO"], agent["AGENTE"], agent["GRUPO_DAC"]) == ("LIVRE", "100", "701")
    state = await h.state()
    assert state["calls"] == [] and state["devices"]["2001"]["calls"] == []


@pytest.mark.asyncio
async def test_queued_calls_wait_until_an_agent_is_ready(h):
    await h.monitor("2001", "2002")
    await login_ready(h, "2001", "100", ready=False)
    await login_ready(h, "2002", "101", groups="701,702", ready=False)
    assert brief(await h.next(2)) == [("AGENTE_LOGADO", "2001"), ("AGENTE_LOGADO", "2002")]
    assert (await h.ok("cti.estado_agente", DISPOSITIVO="2002"))["ESTADO"] == "LOGIN"

    first = (await h.sim_ok("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"}))["call_id"]
    second = (await h.sim_ok("/sim/inbound", {"ani": "1144445555", "dnis": DNIS, "group": "701"}))["call_id"]
    queued = (await h.ok("cti.chamadas_grupo", GRUPO_DAC="701"))["CHAMADAS"]
    assert queued == [
        {"ID_CHAMADA": first, "ESTADO": "FILA", "DISPOSITIVO": "", "NUMERO_ORIGINADOR": ANI},
        {"ID_CHAMADA": second, "ESTADO": "FILA", "DISPOSITIVO": "", "NUMERO_ORIGINADOR": "1144445555"}]
    state = await h.state()
    assert state["queues"]["701"] == [first, second]
    assert state["calls"][0]["parties"] == {ANI: "CONECTADA", "701": "FILA"}

    await h.ok("cti.disponivel", DISPOSITIVO="2002", AGENTE="101", GRUPO_DAC="")
    ready, ringing = await h.next(2)
    assert brief([ready, ringing]) == [("AGENTE_DISPONIVEL", "2002"), ("CHAMADA_TOCANDO", "2002")]
    assert ringing["ID_CHAMADA"] == first and ringing["ULTIMO_REDIRECIONAMENTO"] == "701"

    await h.ok("cti.disponivel", DISPOSITIVO="2001", AGENTE="", GRUPO_DAC="")
    ready, ringing = await h.next(2)
    assert brief([ready, ringing]) == [("AGENTE_DISPONIVEL", "2001"), ("CHAMADA_TOCANDO", "2001")]
    assert ringing["ID_CHAMADA"] == second

    calls = (await h.ok("cti.chamadas_grupo", GRUPO_DAC="701"))["CHAMADAS"]
    assert {(c["ID_CHAMADA"], c["ESTADO"], c["DISPOSITIVO"]) for c in calls} == {
        (first, "TOCANDO", "2002"), (second, "TOCANDO", "2001")}
    assert (await h.state())["queues"]["701"] == []
    await h.quiet()


@pytest.mark.asyncio
async def test_acd_rings_the_agent_free_longest(h):
    await h.monitor("2001", "2002")
    await login_ready(h, "2001", "100")
    await login_ready(h, "2002", "101")
    await h.next(4)
    a = (await h.sim_ok("/sim/inbound", {"ani": ANI, "group": "701"}))["call_id"]
    assert brief(await h.next(1)) == [("CHAMADA_TOCANDO", "2001")]
    await h.sim_ok("/sim/answer", {"device": "2001"})
    await h.sim_ok("/sim/hangup", {"device": "2001"})
    assert [(e["EVENTO"], e["ID_CHAMADA"]) for e in await h.next(2)] == [
        ("CHAMADA_ATENDIDA", a), ("CHAMADA_FINALIZADA", a)]
    # 2001 is free again, but 2002 has been free longer
    b = (await h.sim_ok("/sim/inbound", {"ani": ANI, "group": "701", "direction": "DISCADOR"}))["call_id"]
    [ringing] = await h.next(1)
    assert (ringing["EVENTO"], ringing["DISPOSITIVO"], ringing["ID_CHAMADA"], ringing["SENTIDO"]) == (
        "CHAMADA_TOCANDO", "2002", b, "DISCADOR")
    # a paused agent gets no call, and goes back to PAUSA after its call
    await h.ok("cti.pausa", DISPOSITIVO="2002", AGENTE="101", GRUPO_DAC="", MOTIVO="3")
    [paused] = await h.next(1)
    assert (paused["EVENTO"], paused["MOTIVO"]) == ("AGENTE_EM_PAUSA", "3")
    assert (await h.ok("cti.estado_agente", DISPOSITIVO="2002"))["ESTADO"] == "OCUPADO"
    await h.sim_ok("/sim/hangup", {"device": "2002"})
    await h.next(1)
    assert (await h.ok("cti.estado_agente", DISPOSITIVO="2002"))["ESTADO"] == "PAUSA"
    await h.ok("cti.logout_dac", DISPOSITIVO="2002", AGENTE="", GRUPO_DAC="")
    [out] = await h.next(1)
    assert (out["EVENTO"], out["AGENTE"], out["GRUPO_DAC"]) == ("AGENTE_DESLOGADO", "101", "701")
    assert (await h.ok("cti.estado_agente", DISPOSITIVO="2002"))["ESTADO"] == "LOGOUT"
    await h.quiet()


# ================================================================ outbound
@pytest.mark.asyncio
async def test_outbound_answered(h):
    await h.monitor("2001")
    call_id = (await h.ok("cti.gera_chamada", DISPOSITIVO="2001", SENHA_DISPOSITIVO="", IDENTIDADE_DESTINO=OUT,
                          ROTA="", CONTA=""))["ID_CHAMADA"]
    events = await h.next(4)
    assert [(e["EVENTO"], e["ID_CHAMADA"], e["DISPOSITIVO_ASSOCIADO"]) for e in events] == [
        ("CHAMADA_INICIADA", call_id, "2001"), ("CHAMADA_ORIGINADA", call_id, OUT),
        ("CHAMADA_TOCANDO", call_id, OUT), ("CHAMADA_ATENDIDA", call_id, OUT)]
    assert {e["SENTIDO"] for e in events} == {"SAIDA"}
    assert events[0]["NUMERO_ORIGINADOR"] == "2001" and events[0]["NUMERO_DISCADO_ORIGINAL"] == OUT
    # a second call while connected is refused
    await h.refused("ESTADO_INVALIDO", "cti.gera_chamada", DISPOSITIVO="2001", IDENTIDADE_DESTINO="1177778888")
    await h.ok("cti.finaliza", DISPOSITIVO="2001", ID_CHAMADA=call_id)
    [cleared] = await h.next(1)
    assert (cleared["EVENTO"], cleared["DISPOSITIVO_ASSOCIADO"]) == ("CHAMADA_FINALIZADA", "2001")
    await h.quiet()


@pytest.mark.asyncio
async def test_outbound_busy_and_no_answer(h):
    await h.monitor("2001")
    assert (await h.sim_ok("/sim/outcome", {"number": OUT, "outcome": "busy", "after": 0.01}))["after"] == 0.01
    busy = (await h.ok("cti.gera_chamada", DISPOSITIVO="2001", IDENTIDADE_DESTINO=OUT))["ID_CHAMADA"]
    events = await h.next(5)
    assert [e["EVENTO"] for e in events] == ["CHAMADA_INICIADA", "CHAMADA_ORIGINADA", "CHAMADA_TOCANDO",
                                             "CHAMADA_FALHOU", "CHAMADA_FINALIZADA"]
    assert {e["ID_CHAMADA"] for e in events} == {busy}
    assert (events[3]["CAUSA"], events[3]["DISPOSITIVO_ASSOCIADO"]) == ("OCUPADO", OUT)
    assert (await h.state())["calls"] == []

    await h.sim_ok("/sim/outcome", {"number": "1166667777", "outcome": "no-answer"})  # after = ring_timeout
    started = time.monotonic()
    await h.ok("cti.gera_chamada", DISPOSITIVO="2001", IDENTIDADE_DESTINO="1166667777")
    events = await h.next(5)
    assert time.monotonic() - started >= 0.09
    assert [e["EVENTO"] for e in events[3:]] == ["CHAMADA_FALHOU", "CHAMADA_FINALIZADA"]
    assert events[3]["CAUSA"] == "NAO_ATENDE"

    await h.sim_ok("/sim/outcome", {"number": "1100000000", "outcome": "invalid"})
    for number in ("1100000000", "12ab", ""):
        await h.refused("NUMERO_INVALIDO", "cti.gera_chamada", DISPOSITIVO="2001", IDENTIDADE_DESTINO=number)
    await h.quiet()


@pytest.mark.asyncio
async def test_busy_and_no_answer_numbers_from_options(make):
    h = await make(busy_numbers=("1150000000",), no_answer_numbers=("1160000000",))
    await h.monitor("2001")
    for number, cause in (("1150000000", "OCUPADO"), ("1160000000", "NAO_ATENDE")):
        await h.ok("cti.gera_chamada", DISPOSITIVO="2001", IDENTIDADE_DESTINO=number)
        events = await h.next(5)
        assert events[3]["CAUSA"] == cause and events[4]["EVENTO"] == "CHAMADA_FINALIZADA"
    await h.quiet()


@pytest.mark.asyncio
async def test_internal_call_and_busy_extension(h):
    await h.monitor("2001", "2002", "2003")
    call_id = (await h.ok("cti.gera_chamada", DISPOSITIVO="2001", IDENTIDADE_DESTINO="2002"))["ID_CHAMADA"]
    events = await h.next(4)
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["DISPOSITIVO_ASSOCIADO"]) for e in events] == [
        ("CHAMADA_INICIADA", "2001", "2001"), ("CHAMADA_ORIGINADA", "2001", "2002"),
        ("CHAMADA_TOCANDO", "2001", "2002"), ("CHAMADA_TOCANDO", "2002", "2002")]
    assert {e["SENTIDO"] for e in events} == {"INTERNA"} and {e["ID_CHAMADA"] for e in events} == {call_id}

    await h.refused("OCUPADO", "cti.gera_chamada", DISPOSITIVO="2003", IDENTIDADE_DESTINO="2002")
    await h.refused("NUMERO_INVALIDO", "cti.gera_chamada", DISPOSITIVO="2003", IDENTIDADE_DESTINO="2003")

    await h.ok("cti.atende", DISPOSITIVO="2002", ID_CHAMADA=call_id)
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["DISPOSITIVO_ASSOCIADO"]) for e in await h.next(2)] == [
        ("CHAMADA_ATENDIDA", "2001", "2002"), ("CHAMADA_ATENDIDA", "2002", "2002")]
    await h.ok("cti.finaliza", DISPOSITIVO="2002", ID_CHAMADA="")
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["DISPOSITIVO_ASSOCIADO"]) for e in await h.next(2)] == [
        ("CHAMADA_FINALIZADA", "2002", "2002"), ("CHAMADA_FINALIZADA", "2001", "2002")]
    await h.quiet()


# ================================================================ features
@pytest.mark.asyncio
async def test_hold_and_retrieve(h):
    await h.monitor("2001")
    call_id = await connected_inbound(h, "2001")
    await h.refused("SEM_CHAMADA_EM_ESPERA", "cti.recupera_espera", DISPOSITIVO="2001", ID_CHAMADA="")
    await h.refused("SEM_CHAMADA_EM_ESPERA", "cti.pendulo", DISPOSITIVO="2001")
    await h.ok("cti.coloca_espera", DISPOSITIVO="2001", ID_CHAMADA=call_id)
    assert (await h.state())["calls"][0]["parties"] == {ANI: "CONECTADA", "2001": "ESPERA"}
    await h.refused("SEM_CHAMADA", "cti.coloca_espera", DISPOSITIVO="2001", ID_CHAMADA="")
    await h.refused("SEM_CHAMADA", "cti.pendulo", DISPOSITIVO="2001")
    await h.ok("cti.recupera_espera", DISPOSITIVO="2001", ID_CHAMADA="")
    assert [(e["EVENTO"], e["ID_CHAMADA"]) for e in await h.next(2)] == [
        ("CHAMADA_RETIDA", call_id), ("CHAMADA_RECUPERADA", call_id)]
    await h.quiet()


@pytest.mark.asyncio
async def test_consultation_alternate_and_transfer(h):
    await h.monitor("2001", "3001")
    held = await connected_inbound(h, "2001")
    consult = (await h.ok("cti.consulta", DISPOSITIVO="2001", DISPOSITIVO_DESTINO="3001", ROTA=""))["ID_CHAMADA"]
    assert consult != held
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["ID_CHAMADA"]) for e in await h.next(5)] == [
        ("CHAMADA_RETIDA", "2001", held), ("CHAMADA_INICIADA", "2001", consult),
        ("CHAMADA_ORIGINADA", "2001", consult), ("CHAMADA_TOCANDO", "2001", consult),
        ("CHAMADA_TOCANDO", "3001", consult)]
    await h.ok("cti.atende", DISPOSITIVO="3001", ID_CHAMADA="")
    assert brief(await h.next(2)) == [("CHAMADA_ATENDIDA", "2001"), ("CHAMADA_ATENDIDA", "3001")]

    await h.ok("cti.pendulo", DISPOSITIVO="2001")
    assert [(e["EVENTO"], e["ID_CHAMADA"]) for e in await h.next(2)] == [
        ("CHAMADA_RETIDA", consult), ("CHAMADA_RECUPERADA", held)]
    await h.ok("cti.pendulo", DISPOSITIVO="2001")
    assert [(e["EVENTO"], e["ID_CHAMADA"]) for e in await h.next(2)] == [
        ("CHAMADA_RETIDA", held), ("CHAMADA_RECUPERADA", consult)]

    await h.ok("cti.transfere", DISPOSITIVO="2001")
    events = await h.next(3)
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["ID_CHAMADA"]) for e in events] == [
        ("CHAMADA_FINALIZADA", "2001", consult), ("CHAMADA_FINALIZADA", "2001", held),
        ("CHAMADA_TRANSFERIDA", "3001", held)]
    assert events[2]["ID_CHAMADA_ANTERIOR"] == consult and events[2]["NUMERO_ORIGINADOR"] == ANI
    state = await h.state()
    assert [(c["call_id"], c["parties"]) for c in state["calls"]] == [
        (held, {ANI: "CONECTADA", "3001": "CONECTADA"})]
    assert state["devices"]["2001"]["calls"] == []
    calls = (await h.ok("cti.chamadas_dispositivo", DISPOSITIVO="3001"))["CHAMADAS"]
    assert [(c["ID_CHAMADA"], c["ESTADO"], c["DISPOSITIVOS_ASSOCIADOS"]) for c in calls] == [
        (held, "CONECTADA", ANI)]
    await h.refused("SEM_CHAMADA_EM_ESPERA", "cti.transfere", DISPOSITIVO="3001")

    await h.sim_ok("/sim/hangup", {"device": "3001"})
    [cleared] = await h.next(1)
    assert (cleared["EVENTO"], cleared["DISPOSITIVO"], cleared["ID_CHAMADA"]) == ("CHAMADA_FINALIZADA", "3001", held)
    await h.quiet()


@pytest.mark.asyncio
async def test_transfer_before_the_consulted_party_answers(h):
    await h.monitor("2001", "3001")
    held = await connected_inbound(h, "2001")
    consult = (await h.ok("cti.consulta", DISPOSITIVO="2001", DISPOSITIVO_DESTINO="3001"))["ID_CHAMADA"]
    await h.next(5)
    await h.ok("cti.transfere", DISPOSITIVO="2001")
    events = await h.next(4)
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["ID_CHAMADA"], e.get("ID_CHAMADA_ANTERIOR", "")) for e in events] == [
        ("CHAMADA_FINALIZADA", "2001", consult, ""), ("CHAMADA_FINALIZADA", "2001", held, ""),
        ("CHAMADA_TRANSFERIDA", "3001", held, consult), ("CHAMADA_TOCANDO", "3001", held, "")]
    assert (await h.state())["calls"][0]["parties"] == {ANI: "CONECTADA", "3001": "TOCANDO"}
    await h.ok("cti.atende", DISPOSITIVO="3001")
    assert [(e["EVENTO"], e["ID_CHAMADA"]) for e in await h.next(1)] == [("CHAMADA_ATENDIDA", held)]
    await h.quiet()


@pytest.mark.asyncio
async def test_conference(h):
    await h.monitor("2001", "3001")
    held = await connected_inbound(h, "2001")
    await h.refused("SEM_CHAMADA_EM_ESPERA", "cti.conferencia", DISPOSITIVO="2001")
    consult = (await h.ok("cti.consulta", DISPOSITIVO="2001", DISPOSITIVO_DESTINO="3001"))["ID_CHAMADA"]
    await h.next(5)
    await h.ok("cti.atende", DISPOSITIVO="3001")
    await h.next(2)
    await h.ok("cti.conferencia", DISPOSITIVO="2001")
    events = await h.next(2)
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["ID_CHAMADA"], e["ID_CHAMADA_ANTERIOR"]) for e in events] == [
        ("CHAMADA_EM_CONFERENCIA", "2001", held, consult), ("CHAMADA_EM_CONFERENCIA", "3001", held, consult)]
    state = await h.state()
    assert [(c["call_id"], c["parties"]) for c in state["calls"]] == [
        (held, {ANI: "CONECTADA", "2001": "CONECTADA", "3001": "CONECTADA"})]
    # the controller leaves: the others stay together
    await h.ok("cti.finaliza", DISPOSITIVO="2001")
    assert brief(await h.next(1)) == [("CHAMADA_FINALIZADA", "2001")]
    assert (await h.state())["calls"][0]["parties"] == {ANI: "CONECTADA", "3001": "CONECTADA"}
    await h.sim_ok("/sim/hangup", {"device": "3001"})
    assert brief(await h.next(1)) == [("CHAMADA_FINALIZADA", "3001")]
    await h.quiet()


@pytest.mark.asyncio
async def test_single_step_transfer(h):
    await h.monitor("2001", "2002")
    call_id = await connected_inbound(h, "2001")
    await h.refused("SEM_CHAMADA", "cti.transfere_direto", DISPOSITIVO="3001", DISPOSITIVO_DESTINO="2002")
    await h.ok("cti.gera_chamada", DISPOSITIVO="3001", IDENTIDADE_DESTINO="3002")  # not monitored: no events
    await h.refused("OCUPADO", "cti.transfere_direto", DISPOSITIVO="2001", ID_CHAMADA="", DISPOSITIVO_DESTINO="3001")
    await h.refused("NUMERO_INVALIDO", "cti.transfere_direto", DISPOSITIVO="2001", DISPOSITIVO_DESTINO=ANI)
    await h.ok("cti.transfere_direto", DISPOSITIVO="2001", ID_CHAMADA=call_id, DISPOSITIVO_DESTINO="2002")
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["ID_CHAMADA"]) for e in await h.next(2)] == [
        ("CHAMADA_FINALIZADA", "2001", call_id), ("CHAMADA_TOCANDO", "2002", call_id)]
    assert (await h.state())["calls"][0]["parties"] == {ANI: "CONECTADA", "2002": "TOCANDO"}
    await h.quiet()


@pytest.mark.asyncio
async def test_follow_me_and_immediate_transfer_divert(h):
    await h.monitor("2001", "2002", "2003")
    await h.ok("cti.siga_me", DISPOSITIVO="2001", DISPOSITIVO_DESTINO="2002")
    assert (await h.state())["devices"]["2001"]["forward_to"] == "2002"
    call_id = (await h.sim_ok("/sim/inbound", {"ani": ANI, "dnis": DNIS, "device": "2001"}))["call_id"]
    events = await h.next(2)
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["DISPOSITIVO_ASSOCIADO"]) for e in events] == [
        ("CHAMADA_DESVIADA", "2001", "2002"), ("CHAMADA_TOCANDO", "2002", "2002")]
    assert {e["ID_CHAMADA"] for e in events} == {call_id}

    await h.ok("cti.transfere_imediato", DISPOSITIVO="2002", ID_CHAMADA="", DISPOSITIVO_DESTINO="2003")
    assert [(e["EVENTO"], e["DISPOSITIVO"], e["DISPOSITIVO_ASSOCIADO"]) for e in await h.next(2)] == [
        ("CHAMADA_DESVIADA", "2002", "2003"), ("CHAMADA_TOCANDO", "2003", "2003")]
    assert (await h.state())["calls"][0]["parties"] == {ANI: "CONECTADA", "2003": "TOCANDO"}

    await h.ok("cti.siga_me", DISPOSITIVO="2001", DISPOSITIVO_DESTINO="")
    assert (await h.state())["devices"]["2001"]["forward_to"] == ""
    await h.refused("NUMERO_INVALIDO", "cti.siga_me", DISPOSITIVO="2001", DISPOSITIVO_DESTINO="20x1")
    await h.quiet()


@pytest.mark.asyncio
async def test_recording_flag(h):
    await h.monitor("2001")
    await h.refused("SEM_CHAMADA", "cti.inicia_gravacao", DISPOSITIVO="2001", ID_CHAMADA="")
    call_id = await connected_inbound(h, "2001")
    await h.ok("cti.inicia_gravacao", DISPOSITIVO="2001", ID_CHAMADA=call_id)
    assert (await h.state())["calls"][0]["recording"] is True
    await h.refused("ESTADO_INVALIDO", "cti.inicia_gravacao", DISPOSITIVO="2001", ID_CHAMADA="")
    await h.ok("cti.encerra_gravacao", DISPOSITIVO="2001", ID_CHAMADA="")
    assert (await h.state())["calls"][0]["recording"] is False
    await h.refused("ESTADO_INVALIDO", "cti.encerra_gravacao", DISPOSITIVO="2001", ID_CHAMADA="")


# ================================================================ refusals
@pytest.mark.asyncio
async def test_refusals(h):
    await h.refused("DISPOSITIVO_INVALIDO", "cti.gera_chamada", DISPOSITIVO="9999", IDENTIDADE_DESTINO=OUT)
    await h.refused("DISPOSITIVO_INVALIDO", "cti.monitora", ID_CANAL=h.channel, DISPOSITIVO="701")
    await h.refused("FORA_DE_SERVICO", "cti.monitora", ID_CANAL=99, DISPOSITIVO="2001")
    await h.refused("GRUPO_INVALIDO", "cti.login_dac", DISPOSITIVO="2001", AGENTE="100", GRUPO_DAC="799")
    await h.refused("GRUPO_INVALIDO", "cti.login_dac", DISPOSITIVO="2001", AGENTE="100", GRUPO_DAC="")
    await h.refused("GRUPO_INVALIDO", "cti.chamadas_grupo", GRUPO_DAC="799")
    await h.refused("AGENTE_INVALIDO", "cti.disponivel", DISPOSITIVO="2001", AGENTE="", GRUPO_DAC="")
    await h.ok("cti.login_dac", DISPOSITIVO="2001", AGENTE="100", GRUPO_DAC="701,702")
    await h.refused("AGENTE_EM_USO", "cti.login_dac", DISPOSITIVO="2002", AGENTE="100", GRUPO_DAC="701")
    await h.refused("AGENTE_EM_USO", "cti.login_dac", DISPOSITIVO="2001", AGENTE="101", GRUPO_DAC="701")
    await h.refused("AGENTE_INVALIDO", "cti.pausa", DISPOSITIVO="2001", AGENTE="101", GRUPO_DAC="")
    await h.refused("SEM_CHAMADA", "cti.atende", DISPOSITIVO="2001", ID_CHAMADA="")
    await h.refused("SEM_CHAMADA", "cti.finaliza", DISPOSITIVO="2001", ID_CHAMADA="")
    await h.refused("CHAMADA_INVALIDA", "cti.finaliza", DISPOSITIVO="2001",
                    ID_CHAMADA="01/01/24 00:00:00 010A 9999/00")
    await h.refused("SEM_CHAMADA", "cti.consulta", DISPOSITIVO="2001", DISPOSITIVO_DESTINO="2002")
    await h.refused("SEM_CHAMADA_EM_ESPERA", "cti.transfere", DISPOSITIVO="2001")
    assert (await h.ok("cti.status"))["ESTADO"] == "ATIVO"
    assert (await h.ok("cti.versao"))["VERSAO"].startswith("NGC simulator ")
    agent = await h.ok("cti.estado_agente", DISPOSITIVO="2001")
    assert (agent["ESTADO"], agent["AGENTE"], agent["GRUPO_DAC"]) == ("LOGIN", "100", "701,702")


@pytest.mark.asyncio
async def test_agent_passwords(make):
    h = await make(agents={"100": "secret"})
    await h.refused("SENHA_INVALIDA", "cti.login_dac", DISPOSITIVO="2001", AGENTE="100", SENHA_DISPOSITIVO="x",
                    GRUPO_DAC="701")
    await h.refused("AGENTE_INVALIDO", "cti.login_dac", DISPOSITIVO="2001", AGENTE="555", SENHA_DISPOSITIVO="",
                    GRUPO_DAC="701")
    await h.ok("cti.login_dac", DISPOSITIVO="2001", AGENTE="100", SENHA_DISPOSITIVO="secret", GRUPO_DAC="701")


@pytest.mark.asyncio
async def test_listener_channels(h):
    await h.ok("cti.encerra_monitoracao", ID_CANAL=h.channel, DISPOSITIVO="2001")  # not monitored: fine
    await h.monitor("2001")
    await h.ok("cti.login_dac", DISPOSITIVO="2001", AGENTE="100", GRUPO_DAC="701")
    await h.next(1)
    await h.ok("cti.encerra_monitoracao", ID_CANAL=str(h.channel), DISPOSITIVO="2001")
    await h.ok("cti.logout_dac", DISPOSITIVO="2001", AGENTE="100", GRUPO_DAC="")
    await h.quiet()
    # registering the same URL again replaces the old channel
    new = (await h.ok("cti.registra_retorno", URL_RETORNO=h.callback_url))["ID_CANAL"]
    assert new != h.channel
    await h.refused("FORA_DE_SERVICO", "cti.monitora", ID_CANAL=h.channel, DISPOSITIVO="2001")
    await h.ok("cti.remove_retorno", ID_CANAL=new)
    await h.refused("FORA_DE_SERVICO", "cti.remove_retorno", ID_CANAL=new)
    await h.refused("ERRO_INTERNO", "cti.registra_retorno", URL_RETORNO="ftp://x")


@pytest.mark.asyncio
async def test_undeliverable_events_are_dropped_and_counted(h, monkeypatch):
    monkeypatch.setattr(simulator_http, "POST_BACKOFF", 0.01)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/cb"  # bound, not listening: refused
        channel = (await h.ok("cti.registra_retorno", URL_RETORNO=dead))["ID_CANAL"]
        await h.ok("cti.monitora", ID_CANAL=channel, DISPOSITIVO="2001")
        started = time.monotonic()
        await h.ok("cti.login_dac", DISPOSITIVO="2001", AGENTE="100", GRUPO_DAC="701")
        await h.ok("cti.disponivel", DISPOSITIVO="2001")
        assert time.monotonic() - started < 0.5  # the handler never waits for the listener
        stats = await wait_for(lambda: h.sim.sink.stats[channel]["dropped"] == 2 and h.sim.sink.stats[channel])
    assert stats["sent"] == 0
    ch = (await h.state())["channels"][str(channel)]
    assert (ch["url"], ch["devices"], ch["dropped"], ch["sequence"]) == (dead, ["2001"], 2, 2)


# ============================================================= robustness
@pytest.mark.asyncio
async def test_faults_for_what_is_not_a_call(h):
    with pytest.raises(xmlrpc.client.Fault) as e:
        await h.rpc("cti.nao_existe", DISPOSITIVO="2001")
    assert e.value.faultCode == 1 and "cti.nao_existe" in e.value.faultString
    with pytest.raises(xmlrpc.client.Fault):
        await h.rpc("cti.evento", EVENTO="X")  # the gateway's method, not the NGC's
    for body in (b"<methodCall><methodName>cti.status</methodName><params>", b"", b"\xff\xfe garbage",
                 xmlrpc.client.dumps(({"RESULTADO": "OK"},), methodresponse=True).encode(),
                 xmlrpc.client.dumps(("2001",), "cti.estado_agente").encode()):
        with pytest.raises(xmlrpc.client.Fault):
            await h.raw(body)
    # odd member types are refusals, not crashes
    await h.refused("DISPOSITIVO_INVALIDO", "cti.estado_agente", DISPOSITIVO=["2001"])
    assert (await h.ok("cti.estado_agente", DISPOSITIVO=2001))["ESTADO"] == "LOGOUT"
    assert (await h.ok("cti.status"))["ESTADO"] == "ATIVO"


@pytest.mark.asyncio
async def test_control_api_errors(h):
    cases = [
        ("/sim/inbound", None, b"{not json", 400),
        ("/sim/inbound", [1, 2], None, 400),
        ("/sim/inbound", {"dnis": DNIS, "group": "701"}, None, 400),
        ("/sim/inbound", {"ani": ANI}, None, 400),
        ("/sim/inbound", {"ani": ANI, "group": "701", "device": "2001"}, None, 400),
        ("/sim/inbound", {"ani": ANI, "group": "701", "direction": "SAIDA"}, None, 400),
        ("/sim/inbound", {"ani": {"x": 1}, "group": "701"}, None, 400),
        ("/sim/inbound", {"ani": ANI, "group": "799"}, None, 404),
        ("/sim/inbound", {"ani": ANI, "device": "9999"}, None, 404),
        ("/sim/answer", {}, None, 400),
        ("/sim/answer", {"device": "9999"}, None, 404),
        ("/sim/answer", {"device": "2001"}, None, 409),
        ("/sim/hangup", {}, None, 400),
        ("/sim/hangup", {"device": "2001"}, None, 409),
        ("/sim/hangup", {"call_id": "nope"}, None, 404),
        ("/sim/outcome", {"number": OUT}, None, 400),
        ("/sim/outcome", {"number": OUT, "outcome": "explode"}, None, 400),
        ("/sim/outcome", {"number": OUT, "outcome": "busy", "after": "soon"}, None, 400),
        ("/sim/outcome", {"number": OUT, "outcome": "busy", "after": -1}, None, 400),
        ("/sim/outcome", {"number": "2001", "outcome": "busy"}, None, 400),
    ]
    for path, payload, raw, status in cases:
        got, body = await h.control(path, payload, raw)
        assert (got, sorted(body)) == (status, ["error"]), (path, payload, raw, body)
        assert body["error"]


@pytest.mark.asyncio
async def test_abandoned_queued_call_and_state_shape(h):
    call_id = (await h.sim_ok("/sim/inbound", {"ani": ANI, "group": "702"}))["call_id"]
    state = await h.state()
    assert set(state) >= {"devices", "calls", "queues"}
    assert set(state["devices"]) == {str(n) for n in [*range(2001, 2011), *range(3001, 3006)]}
    assert state["devices"]["2001"] == {"agent": "", "agent_state": "LOGOUT", "groups": [], "forward_to": "",
                                        "calls": []}
    assert state["queues"] == {"701": [], "702": [call_id], "703": [], "704": [], "705": []}
    assert (await h.sim_ok("/sim/hangup", {"call_id": call_id}))["call_id"] == call_id
    state = await h.state()
    assert state["calls"] == [] and state["queues"]["702"] == []


# ========================================================= dialect, options
@pytest.mark.asyncio
async def test_site_dialect_applies_to_the_simulator(make):
    dialect = Dialect.with_overrides({
        "methods": {"make_call": "ngc.discar"},
        "fields": {"device": "RAMAL", "number": "NUMERO_DESTINO"},
        "events": {"TOCANDO": "delivered"},
    })
    h = await make(dialect=dialect)
    await h.ok("cti.monitora", ID_CANAL=h.channel, RAMAL="2001")
    with pytest.raises(xmlrpc.client.Fault):
        await h.rpc("cti.gera_chamada", DISPOSITIVO="2001", IDENTIDADE_DESTINO="2002")
    call_id = (await h.ok("ngc.discar", RAMAL="2001", NUMERO_DESTINO=OUT))["ID_CHAMADA"]
    events = await h.next(4)
    assert [e["EVENTO"] for e in events] == ["CHAMADA_INICIADA", "CHAMADA_ORIGINADA", "TOCANDO", "CHAMADA_ATENDIDA"]
    assert events[0]["RAMAL"] == "2001" and events[0]["ID_CHAMADA"] == call_id


def test_options_from_mapping():
    o = options_from_mapping({"extensions": "2001-2003,3001", "groups": 701, "answer_after": 2,
                              "busy_numbers": [1150000000], "agents": {100: 1234}})
    assert (o.groups, o.answer_after, o.busy_numbers, o.agents) == ("701", 2.0, ("1150000000",), {"100": "1234"})
    assert list(Simulator(o).devices) == ["2001", "2002", "2003", "3001"]
    assert options_from_mapping({}) == SimulatorOptions()
    for bad, key in (({"answer_after": "soon"}, "answer_after"), ({"ring_timeout": -1}, "ring_timeout"),
                     ({"extensions": "20a1"}, "extensions"), ({"groups": "2001"}, "groups"),
                     ({"colour": "blue"}, "colour"), ({"no_answer_numbers": "11x"}, "no_answer_numbers"),
                     ({"extensions": "2010-2001"}, "extensions")):
        with pytest.raises(ValueError, match=key):
            options_from_mapping(bad)


@pytest.mark.asyncio
async def test_world_model_without_http():
    """The switch runs without sockets: events go to whatever sink it is given."""
    class Sink:
        def __init__(self):
            self.events = []

        def deliver(self, channel, url, event):
            self.events.append(event)

        def close(self, channel):
            pass

    sim = Simulator(SimulatorOptions(answer_after=0.01), clock=lambda: 1720428379.0)
    sim.sink = sink = Sink()
    channel = sim.handle("cti.registra_retorno", ({"URL_RETORNO": "http://x/cb"},))["ID_CANAL"]
    sim.handle("cti.monitora", ({"ID_CANAL": channel, "DISPOSITIVO": "2005"},))
    reply = sim.handle("cti.gera_chamada", ({"DISPOSITIVO": "2005", "IDENTIDADE_DESTINO": OUT},))
    assert reply["ID_CHAMADA"] == time.strftime("%d/%m/%y %H:%M:%S", time.localtime(1720428379.0)) + " 010A 0001/00"
    await wait_for(lambda: len(sink.events) == 4)
    assert [e["EVENTO"] for e in sink.events][-1] == "CHAMADA_ATENDIDA"
    sim.close()
