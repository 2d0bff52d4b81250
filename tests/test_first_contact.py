"""First contact with an NGC whose dialect we did not design for (issue 13, item 6), end to end:
the DigitroCTILink stand-in (tests/ctilink_standin.py, its own code) works a round against the foreign
NGC simulator (tests/fixtures/foreign_dialect.yaml) through ``capture``; ``learn`` reads the dialect off
the recording; the gateway with that dialect then works the same round against the same foreign NGC; and
``replay`` of the recording agrees."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml

from smartcti_gateway.capture import read_capture
from smartcti_gateway.capture.learn import learn
from smartcti_gateway.capture.proxy import CaptureOptions, CaptureProxy
from smartcti_gateway.capture.replay import replay
from smartcti_gateway.pabx.digitro.dialect import Dialect
from smartcti_gateway.sim.digitro import options_from_mapping, start_simulator
from smartcti_gateway.sim.protheus import start_protheus_simulator

from .ctilink_standin import CtiLinkStandIn
from .support import BackgroundLoop, RunningGateway, free_port, in_service, mark, params, wait_device
from .test_capture import http, soap_via

FOREIGN = yaml.safe_load((Path(__file__).parent / "fixtures" / "foreign_dialect.yaml").read_text())
ANI, DNIS = "4832810000", "7001"


def sim_post(port: int, path: str, payload: dict) -> dict:
    status, raw, _ = http(port, "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    assert status == 200, raw
    return json.loads(raw)


def wait_for_event(bg: BackgroundLoop, protheus, name: str, since: int, timeout: float = 5.0) -> dict:
    """The first ``name`` Protheus received after ``since``, waiting for it with a deadline."""
    async def first():
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            found = [e for e in protheus.events_since(since) if e["method"] == name]
            if found:
                return found[0]
            if loop.time() > end:
                raise AssertionError(f"{name} not received by Protheus: "
                                     f"{[e['method'] for e in protheus.events_since(since)]}")
            await asyncio.sleep(0.01)
    return bg.run(first(), timeout + 5)


def record_the_old_middleware(bg: BackgroundLoop, out: Path) -> None:
    """A round with one test agent, DigitroCTILink (the stand-in) behind the recording proxy."""
    sim, sim_runner = bg.run(start_simulator("127.0.0.1", 0, options_from_mapping(
        {"answer_after": 0.05, "ring_timeout": 2}), Dialect.with_overrides(FOREIGN)))
    protheus, protheus_runner = bg.run(start_protheus_simulator("127.0.0.1", 0, quiet=True))

    async def up():
        # the stand-in's port first (the proxy forwards SOAP to it), pointed at the proxy's XML-RPC port
        xmlrpc_port = free_port()
        standin = await CtiLinkStandIn(f"http://127.0.0.1:{xmlrpc_port}/RPC2", link_id=1).start()
        proxy = CaptureProxy(CaptureOptions(out=str(out), xmlrpc_listen=("127.0.0.1", xmlrpc_port),
                                            xmlrpc_upstream=sim.url, soap_listen=("127.0.0.1", 0),
                                            soap_upstream=f"http://127.0.0.1:{standin.port}"))
        await proxy.start()
        return proxy, standin
    proxy, standin = bg.run(up())
    port = proxy.soap.port
    try:
        def saw(name, since):
            return wait_for_event(bg, protheus, name, since)

        assert soap_via(port, "SystemStatus") == "0"
        since = bg.in_loop(lambda: protheus.seq)
        assert soap_via(port, "AgentInService", device="2001", ipaddress=protheus.url) == "0"
        saw("INSERVICE", since)
        assert soap_via(port, "Logon", device="2001", agentID="1234", groupID="701") == "0"
        saw("LOGGEDON", since)
        assert soap_via(port, "Ready", device="2001", agentID="", groupID="") == "0"
        saw("READY", since)
        assert soap_via(port, "queryAgentState", cDevice="2001") == "28"
        since = bg.in_loop(lambda: protheus.seq)
        sim_post(sim.port, "/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
        saw("RINGING", since)
        ringing = saw("RINGING", since)["params"]["CALLID"]
        for op, event, state in (("Answer", "ANSWERED", "3"), ("Hold", "HELD", "4"), ("Retrieve", "RETRIEVE", "3")):
            assert soap_via(port, op, device="2001") == "0", op
            saw(event, since)
            # the supervisor's queue screen (TMKA600) asks meanwhile: the call, in its state, on 2001
            assert soap_via(port, "GetCallList", groupID="701") == f"CMD#LISTA_CHAMADAS#0#701#{ringing},{state},2001"
        assert soap_via(port, "queryAgentState", cDevice="2001") == "29"
        assert soap_via(port, "ConnectionClear", device="2001", CallID="") == "0"
        saw("CONNECTIONCLEARED", since)
        since = bg.in_loop(lambda: protheus.seq)
        assert soap_via(port, "MakeCall", device="2001", telephoneNumber="4899990000") == "0"
        saw("SERVICEINITIATED", since)
        assert soap_via(port, "ConnectionClear", device="2001", CallID="") == "0"
        saw("CONNECTIONCLEARED", since)
        assert soap_via(port, "NotReady", device="2001", agentID="", groupID="") == "0"
        saw("NOTREADY", since)
        assert soap_via(port, "queryAgentState", cDevice="2001") == "30"
        # nobody free: a call waits in the group, and the queue screen shows it (7 = queued, §4.4)
        queued = sim_post(sim.port, "/sim/inbound", {"ani": "4833330000", "dnis": DNIS, "group": "701"})["call_id"]
        assert soap_via(port, "GetCallList", groupID="701") == f"CMD#LISTA_CHAMADAS#0#701#{queued},7,4833330000"
        assert soap_via(port, "Logoff", device="2001", agentID="", groupID="") == "0"
        saw("LOGGEDOFF", since)
    finally:
        bg.run(proxy.stop())
        bg.run(standin.close())
        bg.run(protheus_runner.cleanup())
        bg.run(sim_runner.cleanup())


def test_capture_learn_run_and_replay_against_a_foreign_ngc(tmp_path):
    bg = BackgroundLoop()
    out = tmp_path / "ctilink.jsonl"
    try:
        record_the_old_middleware(bg, out)
    finally:
        bg.stop_loop()
    _, records = read_capture(out)
    dialect, report = learn(records)

    # what was learned is the foreign dialect, for every method and event the round exercised
    for logical in ("monitor_start", "agent_login", "agent_ready", "agent_not_ready", "agent_logout", "answer",
                    "hold", "retrieve", "clear", "make_call", "agent_state", "status", "poll_events"):
        assert dialect["methods"][logical] == FOREIGN["methods"][logical], logical
    assert dialect["methods"]["register_listener"] == ""
    for logical in ("make_call", "answer", "agent_login", "hold"):
        assert dialect["params"][logical] == FOREIGN["params"][logical], logical
    assert dialect["types"]["call_id"] == "int" and dialect["transport"]["events"] == "poll"
    assert dialect["replies"]["default"] == "fault" and dialect["returns"]["make_call"] == "call_id"
    for wire in ("ura.evTocando", "ura.evAtendida", "ura.evRetida", "ura.evRecuperada", "ura.evFinalizada"):
        assert wire in dialect["event_methods"], wire
    assert dialect["event_params"]["default"][:4] == ["device", "call_id", "calling", "called"]
    assert "OneStepCallTransfer" in report.not_exercised
    # the queue screen's lists: where the calls are, which member names a call's state, and its values
    assert dialect["methods"]["group_calls"] == "ura.chamadasDaFila" and dialect["params"]["group_calls"] == ["groups"]
    assert {k: dialect["fields"][k] for k in ("calls", "call_state", "call_id", "device", "calling")} == {
        "calls": "chamadas", "call_state": "situacaoChamada", "call_id": "idChamada", "device": "ramal",
        "calling": "origem"}
    assert dialect["call_states"] == {"CON": "connected", "RET": "held", "FIL": "queued"}

    # the gateway, with that dialect only, works the round against the same foreign NGC
    bg = BackgroundLoop()
    try:
        sim, sim_runner = bg.run(start_simulator("127.0.0.1", 0, options_from_mapping(
            {"answer_after": 0.05, "ring_timeout": 2}), Dialect.with_overrides(FOREIGN)))
        gw = RunningGateway({"listen": "127.0.0.1:0", "links": [{"link_id": 1, "pabx": {
            "url": sim.url, "timeout": 2, "dialect": dialect}}]})
        try:
            since = in_service(gw, "2001")
            # events are polled: the agent waits to see "logged on" before pressing ready, as on screen
            assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
            wait_device(gw, "2001", ["LOGGEDON"], since)
            assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
            wait_device(gw, "2001", ["LOGGEDON", "READY"], since)
            since = mark(gw)
            sim_post(sim.port, "/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
            ringing, = wait_device(gw, "2001", ["RINGING"], since)
            assert params(ringing)["ANI"] == ANI and params(ringing)["CALLID"].isdigit()
            assert gw.code("Answer", device="2001") == 0
            assert gw.code("Hold", device="2001") == 0
            assert gw.code("Retrieve", device="2001") == 0
            wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "RETRIEVE"], since)
            assert gw.code("queryAgentState", cDevice="2001") == 29
            assert gw.code("ConnectionClear", device="2001", CallID="") == 0
            wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "RETRIEVE", "CONNECTIONCLEARED"], since)
            since = mark(gw)
            assert gw.code("MakeCall", device="2001", telephoneNumber="4899990000") == 0
            wait_device(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"], since)
            assert gw.code("ConnectionClear", device="2001", CallID="") == 0
            assert gw.code("NotReady", device="2001", agentID="", groupID="") == 0
            queued = sim_post(sim.port, "/sim/inbound", {"ani": "4833330000", "dnis": DNIS, "group": "701"})["call_id"]
            assert gw.call("GetCallList", groupID="701") == f"CMD#LISTA_CHAMADAS#0#701#{queued},7,4833330000"
        finally:
            gw.close()
            bg.run(sim_runner.cleanup())
    finally:
        bg.stop_loop()

    # and the replay of DigitroCTILink's round agrees
    diffs = asyncio.run(replay(records, dialect))
    assert diffs == [], "\n".join(map(str, diffs))
