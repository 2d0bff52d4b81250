"""The DigitroCTILink stand-in (tests/ctilink_standin.py): Protheus' commands in, the foreign dialect out.

The NGC side is a small fake foreign NGC written here (an aiohttp XML-RPC server with the handful of
``ura.*`` methods a one-agent migration capture exercises, positional parameters, plain answers, numeric
faults, and a queue drained by ``ura.eventos``); it records every call, so the tests assert on wire values.
The Protheus side is the repo's simulated SmartCTIWSEventing. A last test runs the stand-in against the
repo's NGC simulator speaking tests/fixtures/foreign_dialect.yaml, when that simulator can.
"""
from __future__ import annotations

import asyncio
import re
import xmlrpc.client
from pathlib import Path
from xml.sax.saxutils import escape

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from smartcti_gateway.sim.protheus.eventing import start_protheus_simulator
from tests.ctilink_standin import (
    COMMAND_PATH,
    ENDPOINT_SUFFIX,
    CtiLinkStandIn,
    parse_command,
)

HERE = Path(__file__).resolve().parent
FOREIGN_YAML = HERE / "fixtures" / "foreign_dialect.yaml"

EVENT_LAYOUT = ("ramal", "idChamada", "origem", "discado", "outroRamal", "idAnterior", "fila", "sentido",
                "causa", "operador", "filas", "motivo")


# ---------------------------------------------------------------------------- a fake foreign NGC
class FakeForeignNgc:
    """The foreign dialect's NGC, just enough of it: records calls, queues the events ura.eventos drains."""

    def __init__(self, extensions=("2001", "2002")) -> None:
        self.extensions = set(extensions)
        self.calls: list[tuple[str, tuple]] = []     # every call but ura.eventos
        self.polls = 0
        self.queue: list[list] = []
        self.states: dict[str, str] = {}
        self.busy: set[str] = set()
        self.next_id = 500
        self.runner: web.AppRunner | None = None
        self.url = ""

    def event(self, method: str, ramal: str, **values) -> None:
        row = {k: "" for k in EVENT_LAYOUT}
        row.update({"idChamada": 0, **values}, ramal=ramal)
        self.queue.append([method, *(row[k] for k in EVENT_LAYOUT)])

    def inbound(self, ramal: str, origem: str, discado: str, fila: str = "701") -> int:
        self.next_id += 1
        self.event("ura.evTocando", ramal, idChamada=self.next_id, origem=origem, discado=discado, fila=fila,
                   sentido="IN")
        return self.next_id

    def sent(self, method: str) -> list[tuple]:
        return [params for m, params in self.calls if m == method]

    # -- the methods
    def _ramal(self, ramal) -> str:
        if not isinstance(ramal, str) or ramal not in self.extensions:
            raise xmlrpc.client.Fault(101, f"ramal inexistente: {ramal!r}")
        return ramal

    def _call_id(self, call_id) -> int:
        if not isinstance(call_id, int):
            raise xmlrpc.client.Fault(109, f"idChamada must be an int, not {call_id!r}")
        return call_id

    def dispatch(self, method: str, params: tuple):
        if method == "ura.eventos":
            self.polls += 1
            out, self.queue = self.queue, []
            return out
        self.calls.append((method, params))
        if method == "ura.ping":
            return 0
        if method in ("ura.monitorarRamal", "ura.pararMonitoracao"):
            self._ramal(params[0])
            return 0
        if method == "ura.entrarFila":
            ramal, operador, filas = params
            self._ramal(ramal)
            self.states[ramal] = "LOGADO"
            self.event("ura.evLogado", ramal, operador=operador, filas=filas)
            return 0
        if method == "ura.sairFila":
            ramal, operador = params
            self.states[self._ramal(ramal)] = "DESLOGADO"
            self.event("ura.evDeslogado", ramal, operador=operador)
            return 0
        if method == "ura.ficarLivre":
            (ramal,) = params
            self.states[self._ramal(ramal)] = "LIVRE"
            self.event("ura.evLivre", ramal)
            return 0
        if method == "ura.pausar":
            ramal, motivo = params
            self.states[self._ramal(ramal)] = "PAUSA"
            self.event("ura.evPausa", ramal, motivo=motivo)
            return 0
        if method == "ura.situacaoOperador":
            (ramal,) = params
            return {"codigo": "0", "situacao": self.states.get(self._ramal(ramal), "DESLOGADO")}
        if method == "ura.discar":
            ramal, destino = params
            self._ramal(ramal)
            if destino in self.busy:
                raise xmlrpc.client.Fault(105, "ocupado")
            self.next_id += 1
            for ev in ("ura.evIniciada", "ura.evOriginada"):
                self.event(ev, ramal, idChamada=self.next_id, origem=ramal, discado=destino, sentido="OUT")
            return self.next_id
        simple = {"ura.atender": "ura.evAtendida", "ura.reter": "ura.evRetida",
                  "ura.recuperar": "ura.evRecuperada", "ura.desligar": "ura.evFinalizada"}
        if method in simple:
            ramal, call_id = params
            self.event(simple[method], self._ramal(ramal), idChamada=self._call_id(call_id))
            return 0
        if method == "ura.transferirDireto":
            ramal, call_id, destino = params
            self.event("ura.evFinalizada", self._ramal(ramal), idChamada=self._call_id(call_id))
            return 0
        raise xmlrpc.client.Fault(110, f"metodo desconhecido {method}")

    async def handle(self, request: web.Request) -> web.Response:
        params, method = xmlrpc.client.loads(await request.read())
        try:
            body = xmlrpc.client.dumps((self.dispatch(method, params),), methodresponse=True)
        except xmlrpc.client.Fault as fault:
            body = xmlrpc.client.dumps(fault)
        return web.Response(text=body, content_type="text/xml")

    async def start(self) -> FakeForeignNgc:
        app = web.Application()
        app.router.add_post("/RPC2", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/RPC2"
        return self

    async def close(self) -> None:
        await self.runner.cleanup()


# ---------------------------------------------------------------------------- Protheus' side
def envelope(op: str, **args: str) -> bytes:
    """A request as Protheus' ADVPL client writes it (smartcti.md §1.6)."""
    children = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in args.items())
    return (f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
            f'<{op} xmlns="http://DefaultNamespace">{children}</{op}></soap:Body></soap:Envelope>').encode()


async def soap(standin: CtiLinkStandIn, op: str, **args: str) -> str:
    """The ``ns:return`` of ``op``, posted where Protheus posts it, checking the Axis2 answer shape."""
    headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": f'"urn:{op}"'}
    async with aiohttp.ClientSession() as s, \
            s.post(standin.url + ENDPOINT_SUFFIX, data=envelope(op, **args), headers=headers) as r:
        body = await r.read()
        assert r.status == 200, body
    m = re.search(rf'<ns:{op}Response xmlns:ns="http://DefaultNamespace"><ns:return>(.*?)</ns:return>'
                  rf'</ns:{op}Response>'.encode(), body, re.DOTALL)
    assert m, body
    return m.group(1).decode()


async def code(standin, op, **args) -> int:
    return int(await soap(standin, op, **args))


class Peers:
    def __init__(self, ngc, protheus, standin):
        self.ngc, self.protheus, self.standin = ngc, protheus, standin

    def mark(self) -> int:
        return self.protheus.seq

    async def events(self, count: int, since: int, timeout: float = 5.0) -> list[dict]:
        got = await self.protheus.wait_events(count, since=since, timeout=timeout)
        await asyncio.sleep(0.25)   # nothing more should come
        got = self.protheus.events_since(since)
        assert len(got) == count, [e["method"] for e in got]
        return got


@pytest_asyncio.fixture
async def peers():
    ngc = await FakeForeignNgc().start()
    protheus, runner = await start_protheus_simulator("127.0.0.1", 0, quiet=True)
    standin = await CtiLinkStandIn(ngc.url, link_id=3).start()
    try:
        yield Peers(ngc, protheus, standin)
    finally:
        await standin.close()
        await runner.cleanup()
        await ngc.close()


def check_event(event: dict, method: str, **params: str) -> None:
    assert event["method"] == method, event
    assert event["result"] == 0, event           # valid for a strict ADVPL server, session found
    assert event["soapaction_ok"], event
    for k, v in params.items():
        assert event["params"][k] == v, (k, event["params"])


async def in_service(p: Peers, device="2001") -> int:
    since = p.mark()
    assert await code(p.standin, "AgentInService", device=device, ipaddress=p.protheus.url) == 0
    (ev,) = await p.events(1, since)
    check_event(ev, "INSERVICE", CDEVICE=device, ILINKID="3")
    assert ev["order"] == ["CDEVICE", "ILINKID"]
    return p.mark()


async def logged_on_ready(p: Peers, device="2001", agent="1234", groups="701") -> int:
    since = p.mark()
    assert await code(p.standin, "Logon", device=device, agentID=agent, groupID=groups) == 0
    assert await code(p.standin, "Ready", device=device, agentID="", groupID="") == 0
    on, ready = await p.events(2, since)
    check_event(on, "LOGGEDON", CDEVICE=device, ILINKID="3", CAGENTID=agent, CGROUPID=groups)
    check_event(ready, "READY", CDEVICE=device, CAGENTID=agent, CGROUPID=groups)   # from the logon
    return p.mark()


# ---------------------------------------------------------------------------- tests
async def test_in_service_monitors_and_pushes_inservice(peers):
    p = peers
    assert p.standin.url == f"http://127.0.0.1:{p.standin.port}{COMMAND_PATH}"
    await in_service(p)
    assert p.ngc.sent("ura.monitorarRamal") == [("2001",)]
    # events are polled, nothing registers a listener
    assert {m for m, _ in p.ngc.calls} == {"ura.monitorarRamal"}
    assert p.ngc.polls >= 1


async def test_system_status_and_agent_state(peers):
    p = peers
    assert await code(p.standin, "SystemStatus") == 0
    assert p.ngc.sent("ura.ping") == [()]
    await in_service(p)
    assert await code(p.standin, "queryAgentState", cDevice="2001") == 25       # DESLOGADO
    await logged_on_ready(p)
    assert await code(p.standin, "queryAgentState", cDevice="2001") == 28       # LIVRE
    assert p.ngc.sent("ura.situacaoOperador") == [("2001",), ("2001",)]
    since = p.mark()
    assert await code(p.standin, "NotReady", device="2001", agentID="1234", groupID="701") == 0
    assert p.ngc.sent("ura.pausar") == [("2001", "")]
    (ev,) = await p.events(1, since)
    check_event(ev, "NOTREADY", CDEVICE="2001", CAGENTID="1234", CGROUPID="701")
    assert await code(p.standin, "queryAgentState", cDevice="2001") == 30       # PAUSA


async def test_logon_ready_wire_values(peers):
    p = peers
    await in_service(p)
    await logged_on_ready(p, agent="1234", groups="701,702")
    assert p.ngc.sent("ura.entrarFila") == [("2001", "1234", "701,702")]
    assert p.ngc.sent("ura.ficarLivre") == [("2001",)]
    since = p.mark()
    assert await code(p.standin, "Logoff", device="2001", agentID="1234", groupID="701,702") == 0
    assert p.ngc.sent("ura.sairFila") == [("2001", "1234")]
    (ev,) = await p.events(1, since)
    check_event(ev, "LOGGEDOFF", CAGENTID="1234", CGROUPID="701,702")


async def test_inbound_call_answer_hold_retrieve_hangup(peers):
    p = peers
    await in_service(p)
    since = await logged_on_ready(p)

    call_id = p.ngc.inbound("2001", origem="4832810000", discado="7001")
    (ring,) = await p.events(1, since)
    check_event(ring, "RINGING", CDEVICE="2001", ILINKID="3", CALLID=str(call_id), ANI="4832810000",
                DNIS="7001", ASSOCIATEDDATA="3|4832810000", CALLTYPE="1")
    assert ring["order"] == ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS", "ASSOCIATEDDATA", "CALLTYPE"]

    since = p.mark()
    assert await code(p.standin, "Answer", device="2001") == 0
    assert p.ngc.sent("ura.atender") == [("2001", call_id)]
    assert isinstance(p.ngc.sent("ura.atender")[0][1], int)
    (ans,) = await p.events(1, since)
    check_event(ans, "ANSWERED", CALLID=str(call_id), ANI="4832810000", DNIS="7001")
    info = await soap(p.standin, "GetInfoChamAtiv", cDevice="2001")
    fields = info.split("#")
    assert fields[:5] == ["CMD", "INFOCHAMATIV", "0", "2001", str(call_id)] and fields[8] == "701", info
    assert all(fields), info

    since = p.mark()
    assert await code(p.standin, "Hold", device="2001") == 0
    (held,) = await p.events(1, since)
    check_event(held, "HELD", CALLID=str(call_id), ANI="4832810000", DNIS="7001")
    assert await code(p.standin, "Hold", device="2001") == 3                    # nothing connected now
    since = p.mark()
    assert await code(p.standin, "Retrieve", device="2001") == 0
    (back,) = await p.events(1, since)
    check_event(back, "RETRIEVE", CALLID=str(call_id))
    assert p.ngc.sent("ura.reter") == [("2001", call_id)]
    assert p.ngc.sent("ura.recuperar") == [("2001", call_id)]
    assert await code(p.standin, "Retrieve", device="2001") == 19               # nothing held any more

    since = p.mark()
    assert await code(p.standin, "ConnectionClear", device="2001", CallID="") == 0
    assert p.ngc.sent("ura.desligar") == [("2001", call_id)]
    (gone,) = await p.events(1, since)
    check_event(gone, "CONNECTIONCLEARED", CALLID=str(call_id), ANI="4832810000", DNIS="7001")
    assert await soap(p.standin, "GetInfoChamAtiv", cDevice="2001") == "CMD#INFOCHAMATIV#11"
    assert await code(p.standin, "Answer", device="2001") == 3                  # no call


async def test_make_call_id_flows(peers):
    p = peers
    since = await in_service(p)
    assert await code(p.standin, "MakeCall", device="2001", telephoneNumber="0(48)3281-0000") == 0
    ((ramal, number),) = p.ngc.sent("ura.discar")
    assert (ramal, number) == ("2001", "04832810000")
    call_id = p.ngc.next_id
    started, originated = await p.events(2, since)
    check_event(started, "SERVICEINITIATED", CALLID=str(call_id), ANI="2001", DNIS="04832810000")
    check_event(originated, "ORIGINATED", CALLID=str(call_id), ANI="2001", DNIS="04832810000")
    # the id ura.discar answered is the one the next commands use, as an int
    since = p.mark()
    assert await code(p.standin, "ConnectionClear", device="2001", CallID="") == 0
    assert p.ngc.sent("ura.desligar") == [("2001", call_id)]
    (gone,) = await p.events(1, since)
    check_event(gone, "CONNECTIONCLEARED", CALLID=str(call_id))


async def test_refusals_map_fault_codes(peers):
    p = peers
    await in_service(p)
    p.ngc.busy.add("7002")
    since = p.mark()
    assert await code(p.standin, "MakeCall", device="2001", telephoneNumber="7002") == 10   # fault 105
    assert p.ngc.sent("ura.discar") == [("2001", "7002")]
    assert await code(p.standin, "AgentInService", device="9999", ipaddress=p.protheus.url) == 18  # fault 101
    assert await code(p.standin, "Logon", device="9999", agentID="1", groupID="701") == 18
    await asyncio.sleep(0.3)
    assert p.protheus.events_since(since) == []                                 # no INSERVICE for 9999


async def test_one_step_transfer_and_out_of_service(peers):
    p = peers
    await in_service(p)
    since = await logged_on_ready(p)
    call_id = p.ngc.inbound("2001", origem="4832810000", discado="7001")
    await p.events(1, since)
    since = p.mark()
    assert await code(p.standin, "Answer", device="2001") == 0
    check_event((await p.events(1, since))[0], "ANSWERED", CALLID=str(call_id))
    since = p.mark()
    assert await code(p.standin, "OneStepCallTransfer", device="2001", deviceTo="2002") == 0
    assert p.ngc.sent("ura.transferirDireto") == [("2001", call_id, "2002")]
    (gone,) = await p.events(1, since)
    check_event(gone, "CONNECTIONCLEARED", CALLID=str(call_id))

    assert await code(p.standin, "AgentOutOfService", device="2001") == 0
    assert p.ngc.sent("ura.pararMonitoracao") == [("2001",)]
    since = p.mark()
    p.ngc.inbound("2001", origem="4832810000", discado="7001")
    await asyncio.sleep(0.4)
    assert p.protheus.events_since(since) == []                                 # not in service any more


async def test_device_echoed_as_written_and_failure_cause(peers):
    p = peers
    since = p.mark()
    assert await code(p.standin, "AgentInService", device="2001 ", ipaddress=p.protheus.url + "?WSDL") == 0
    (ev,) = await p.events(1, since)
    check_event(ev, "INSERVICE", CDEVICE="2001 ")
    assert p.ngc.sent("ura.monitorarRamal") == [("2001",)]
    since = p.mark()
    p.ngc.event("ura.evFalhou", "2001", idChamada=777, origem="2001", discado="7003", causa="106")
    (fail,) = await p.events(1, since)
    check_event(fail, "CALLFAILURE", CDEVICE="2001 ", CALLID="777", ANI="2001", DNIS="7003", CAUSE="11")


def test_parse_command_tolerates_what_protheus_sends():
    op, args = parse_command(envelope("logon", device=" 2001", agentid=" 1234 "))
    assert op == "Logon" and args == {"device": " 2001", "agentID": "1234", "groupID": ""}
    with pytest.raises(ValueError):
        parse_command(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
    with pytest.raises(ValueError):
        parse_command(envelope("NoSuchOp"))


async def test_unknown_operation_is_a_fault(peers):
    async with aiohttp.ClientSession() as s, \
            s.post(peers.standin.endpoint, data=envelope("Teleport", device="2001")) as r:
        assert r.status == 500
        assert b"Fault" in await r.read()


# ---------------------------------------------------------------------------- the repo's NGC simulator
async def _foreign_simulator_problem(url: str) -> str | None:
    """Why the repo's NGC simulator at ``url`` does not speak the foreign dialect (yet), or None: asked on
    the wire, with the two calls every conversation starts with."""
    body_ping = xmlrpc.client.dumps((), "ura.ping")
    body_poll = xmlrpc.client.dumps((), "ura.eventos")
    try:
        async with aiohttp.ClientSession() as s:
            for body, ok in ((body_ping, lambda v: v == 0), (body_poll, lambda v: isinstance(v, list))):
                async with s.post(url, data=body, headers={"Content-Type": "text/xml"}) as r:
                    (value,), _method = xmlrpc.client.loads(await r.read())
                if not ok(value):
                    return f"it answered {value!r}"
    except Exception as e:  # noqa: BLE001 - any failure means: not there yet
        return f"{type(e).__name__}: {e}"
    return None


async def _first(protheus, method: str, since: int, timeout: float = 5.0) -> dict:
    """The first ``method`` event Protheus received after ``since`` (the simulator may say more)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [e for e in protheus.events_since(since) if e["method"] == method]
        if found:
            return found[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {method} after #{since}: {[e['method'] for e in protheus.events_since(since)]}")
        await asyncio.sleep(0.01)


async def test_against_the_repo_simulator_speaking_the_foreign_dialect():
    """The stand-in against smartcti_gateway/sim/digitro started with tests/fixtures/foreign_dialect.yaml;
    skipped while that simulator cannot speak it (its own tests: tests/test_foreign_ngc.py)."""
    import yaml

    try:
        from smartcti_gateway.pabx.digitro.dialect import Dialect
        from smartcti_gateway.sim.digitro import options_from_mapping, start_simulator

        dialect = Dialect.with_overrides(yaml.safe_load(FOREIGN_YAML.read_text()))
        sim, sim_runner = await start_simulator("127.0.0.1", 0, options_from_mapping(
            {"answer_after": 0.05, "ring_timeout": 2}), dialect)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"the NGC simulator cannot be started with the foreign dialect yet: {e}")
    problem = await _foreign_simulator_problem(sim.url)
    if problem:
        await sim_runner.cleanup()
        pytest.skip(f"smartcti_gateway/sim/digitro does not serve the foreign dialect yet "
                    f"(ura.ping / ura.eventos: {problem})")
    protheus, protheus_runner = await start_protheus_simulator("127.0.0.1", 0, quiet=True)
    standin = await CtiLinkStandIn(sim.url, link_id=1).start()
    try:
        assert await code(standin, "SystemStatus") == 0
        since = protheus.seq
        assert await code(standin, "AgentInService", device="2001", ipaddress=protheus.url) == 0
        check_event(await _first(protheus, "INSERVICE", since), "INSERVICE", CDEVICE="2001", ILINKID="1")
        assert await code(standin, "Logon", device="2001", agentID="1234", groupID="701") == 0
        check_event(await _first(protheus, "LOGGEDON", since), "LOGGEDON", CDEVICE="2001", CAGENTID="1234")
        since = protheus.seq
        assert await code(standin, "Ready", device="2001", agentID="", groupID="") == 0
        check_event(await _first(protheus, "READY", since), "READY", CDEVICE="2001")
        assert await code(standin, "queryAgentState", cDevice="2001") == 28

        since = protheus.seq
        async with aiohttp.ClientSession() as s, \
                s.post(f"http://127.0.0.1:{sim.port}/sim/inbound",
                       json={"ani": "4832810000", "dnis": "7001", "group": "701"}) as r:
            assert r.status == 200, await r.text()
            call_id = str((await r.json())["call_id"])
        check_event(await _first(protheus, "RINGING", since), "RINGING", CDEVICE="2001", ILINKID="1",
                    CALLID=call_id, ANI="4832810000", ASSOCIATEDDATA="3|4832810000", CALLTYPE="1")
        for op, event in (("Answer", "ANSWERED"), ("Hold", "HELD"), ("Retrieve", "RETRIEVE")):
            since = protheus.seq
            assert await code(standin, op, device="2001") == 0, op
            check_event(await _first(protheus, event, since), event, CDEVICE="2001", CALLID=call_id)
        since = protheus.seq
        assert await code(standin, "ConnectionClear", device="2001", CallID="") == 0
        check_event(await _first(protheus, "CONNECTIONCLEARED", since), "CONNECTIONCLEARED", CALLID=call_id)

        since = protheus.seq
        assert await code(standin, "MakeCall", device="2001", telephoneNumber="2002") == 0
        started = await _first(protheus, "SERVICEINITIATED", since)
        assert started["params"]["CALLID"].isdigit(), started      # the int call id, as text
        check_event(await _first(protheus, "ORIGINATED", since), "ORIGINATED",
                    CALLID=started["params"]["CALLID"])
    finally:
        await standin.close()
        await protheus_runner.cleanup()
        await sim_runner.cleanup()
