"""Every SmartCTIWSCommand operation over HTTP, as Protheus sends it, against the simulated NGC."""
import asyncio
import re

import pytest
from aiohttp import web

from smartcti_gateway.core.operations import OPERATIONS

from .support import ENDPOINT, RunningGateway, free_port, simulated_config, wait_for



@pytest.fixture
def gw():
    g = RunningGateway(simulated_config())
    yield g
    g.close()


def logged_on(gw, device="2001", agent="1234", groups="701", ready=True):
    assert gw.code("AgentInService", device=device, ipaddress=gw.events_url) == 0
    assert gw.code("Logon", device=device, agentID=agent, groupID=groups) == 0
    if ready:
        assert gw.code("Ready", device=device, agentID="", groupID="") == 0


def ringing(gw, device="2001", group="701", ani="4832810000", dnis="7001") -> str:
    status, body = gw.sim("/sim/inbound", {"ani": ani, "dnis": dnis, "group": group})
    assert status == 200, body
    call_id = body["call_id"]
    wait_for(lambda: gw.conn_state(device).get(call_id) == "alerting", what=f"{call_id} ringing at {device}")
    return call_id


def connected(gw, device="2001") -> str:
    call_id = ringing(gw, device)
    assert gw.code("Answer", device=device) == 0
    wait_for(lambda: gw.conn_state(device).get(call_id) == "connected", what="answered")
    return call_id


def sim_call(gw, call_id):
    return next((c for c in gw.sim_state()["calls"] if c["call_id"] == call_id), None)


# ------------------------------------------------------------------- link
def test_system_status_self_test_and_version(gw):
    assert gw.code("SystemStatus") == 0
    assert gw.code("selfTest") == 0
    assert gw.call("showVersion") == "smartcti-gateway 0.1.0"


def test_every_url_shape_answers(gw):
    for path in ("/axis2/services/SmartCTIWSCommand", "/axis2/services/SmartCTIWSCommand.jws",
                 "/axis2/services/SmartCTIWSCommand.SmartCTIWSCommandHttpSoap11Endpoint",
                 ENDPOINT):
        assert gw.call("SystemStatus", path=path) == "0", path


def test_all_operations_answer_with_their_type(gw):
    """Every one of the 32 operations answers 200 with an int or a string, even with empty arguments."""
    for name, op in OPERATIONS.items():
        value = gw.call(name, **{p: "" for p in op.params})
        if op.returns == "int":
            assert re.fullmatch(r"\d+", value), (name, value)


# ---------------------------------------------------------------- service
def test_agent_in_service_and_wrong_device(gw):
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0  # the listener process
    assert gw.code("AgentInService", device="9999", ipaddress=gw.events_url) == 18
    assert gw.code("AgentInService", device="", ipaddress=gw.events_url) == 18
    dev = gw.in_loop(lambda: gw.link().switch.device("2001"))
    assert dev.in_service == 2 and dev.event_urls == [gw.events_url]
    # one AgentOutOfService releases it, whatever number of AgentInService came (smartcti.md §10.1)
    assert gw.code("AgentOutOfService", device="2001") == 0
    assert gw.in_loop(lambda: gw.link().switch.device("2001")) is None
    assert all("2001" not in ch["devices"] for ch in gw.sim_state()["channels"].values())   # monitor stopped
    assert gw.code("AgentOutOfService", device="2001") == 0


# ------------------------------------------------------------------ agent
def test_agent_states_through_query_agent_state(gw):
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.code("queryAgentState", cDevice="2001") == 25
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701,702") == 0
    assert gw.code("queryAgentState", cDevice="2001") == 26
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    assert gw.code("queryAgentState", cDevice="2001") == 28
    assert gw.code("NotReady", device="2001", agentID="1234", groupID="701,702") == 0
    assert gw.code("queryAgentState", cDevice="2001") == 30
    assert gw.code("ReadyPass", device="2001", agentID="", groupID="", agentPass="") == 0
    assert gw.code("NotReadyPass", device="2001", agentID="", groupID="", agentPass="") == 0
    assert gw.code("Logoff", device="2001", agentID="", groupID="") == 0
    assert gw.code("queryAgentState", cDevice="2001") == 25
    agent = gw.sim_state()["devices"]["2001"]
    assert agent["agent_state"] == "LOGOUT"


def test_logon_refusals(gw):
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.code("Logon", device="2001", agentID="1234", groupID="999") == 23
    assert gw.code("Logon", device="2001", agentID="", groupID="701") == 1
    assert gw.code("LogonPass", device="2001", agentID="1234", groupID="701", agentPass="x") == 0
    assert gw.code("LogoffPass", device="2001", agentID="1234", groupID="701", agentPass="x") == 0


def test_wrong_password_is_invalid_user():
    g = RunningGateway(simulated_config(agents={"1234": "s3cret"}))
    try:
        assert g.code("AgentInService", device="2001", ipaddress=g.events_url) == 0
        assert g.code("LogonPass", device="2001", agentID="1234", groupID="701", agentPass="wrong") == 1
        assert g.code("LogonPass", device="2001", agentID="1234", groupID="701", agentPass="s3cret") == 0
    finally:
        g.close()


# ------------------------------------------------------------------ calls
def test_inbound_acd_call_answered_held_recorded_cleared(gw):
    logged_on(gw)
    call_id = ringing(gw)
    info = gw.call("GetInfoChamAtiv", cDevice="2001").split("#")
    assert info[:5] == ["CMD", "INFOCHAMATIV", "0", "2001", call_id]
    assert info[6:9] == ["4832810000", "7001", "701"]
    assert gw.code("Answer", device="2001") == 0
    wait_for(lambda: gw.conn_state("2001").get(call_id) == "connected", what="answered")
    assert gw.code("queryAgentState", cDevice="2001") == 29
    assert gw.code("Hold", device="2001") == 0
    wait_for(lambda: gw.conn_state("2001").get(call_id) == "held", what="held")
    assert gw.code("Retrieve", device="2001") == 0
    wait_for(lambda: gw.conn_state("2001").get(call_id) == "connected", what="retrieved")
    assert gw.code("Retrieve", device="2001") == 19  # nothing on hold any more
    assert gw.code("StartRec", device="2001") == 0
    assert sim_call(gw, call_id)["recording"] is True
    assert gw.code("StopRec", device="2001") == 0
    assert sim_call(gw, call_id)["recording"] is False
    assert gw.call("getActiveCallInfo", cDevice="2001").split("#")[2] == "0"
    assert gw.code("ConnectionClear", device="2001", CallID="") == 0
    wait_for(lambda: gw.conn_state("2001") == {}, what="cleared")
    assert gw.call("GetInfoChamAtiv", cDevice="2001") == "CMD#INFOCHAMATIV#11#2001"
    assert gw.code("queryAgentState", cDevice="2001") == 28


def test_far_party_hangup_clears_the_call(gw):
    logged_on(gw)
    call_id = connected(gw)
    status, _ = gw.sim("/sim/hangup", {"device": "2001"})
    assert status == 200
    wait_for(lambda: call_id not in gw.conn_state("2001"), what="far hang-up seen")
    assert sim_call(gw, call_id) is None


def test_commands_without_a_call(gw):
    logged_on(gw)
    assert gw.code("Answer", device="2001") == 3
    assert gw.code("Hold", device="2001") == 3
    assert gw.code("ConnectionClear", device="2001", CallID="") == 3
    assert gw.code("ConnectionClear", device="2001", CallID="01/01/26 00:00:00 010A 9999/00") == 5
    assert gw.code("Retrieve", device="2001") == 19
    assert gw.code("StartRec", device="2001") == 3
    assert gw.code("Transfer", device="2001") in (3, 19)
    assert gw.code("Hold", device="9999") == 18


def test_queued_call_in_get_call_list_then_delivered(gw):
    logged_on(gw, ready=False)
    status, body = gw.sim("/sim/inbound", {"ani": "4830000000", "dnis": "7002", "group": "701"})
    call_id = body["call_id"]
    listing = gw.call("GetCallList", groupID="701")
    assert listing == f"CMD#LISTA_CHAMADAS#0#701#{call_id},7,4830000000"
    assert gw.call("GetCallList", groupID="702") == ""
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    wait_for(lambda: gw.conn_state("2001").get(call_id) == "alerting", what="queued call delivered")
    entry = gw.call("GetCallList", groupID="701").split("#")[4]
    assert entry.split(",")[1] != "7"


def test_outbound_answered_busy_no_answer(gw):
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.code("AgentInService", device="2002", ipaddress=gw.events_url) == 0
    # answered by the outside number
    assert gw.code("MakeCall", device="2001", telephoneNumber="4832810000") == 0
    wait_for(lambda: "connected" in gw.conn_state("2001").values() and
             any(c["parties"].get("4832810000") == "CONECTADA" for c in gw.sim_state()["calls"]),
             what="outside number answered")
    assert gw.code("ConnectionClear", device="2001", CallID="") == 0
    wait_for(lambda: gw.conn_state("2001") == {}, what="cleared")
    # internal extension busy: refused at once
    connected_call = connected_to_2002(gw)
    assert gw.code("MakeCall", device="2001", telephoneNumber="2002") == 10
    gw.sim("/sim/hangup", {"device": "2002"})
    wait_for(lambda: connected_call not in gw.conn_state("2002"), what="2002 free")
    # outside number that does not answer: the call fails later with cause 11
    gw.sim("/sim/outcome", {"number": "4833334444", "outcome": "no-answer", "after": 0.1})
    assert gw.code("MakeCall", device="2001", telephoneNumber="4833334444") == 0
    wait_for(lambda: gw.in_loop(lambda: gw.link().switch.device("2001").last_failure) == 11, what="no answer")
    gw.sim("/sim/outcome", {"number": "4835556666", "outcome": "busy", "after": 0.05})
    assert gw.code("MakeCall", device="2001", telephoneNumber="4835556666") == 0
    wait_for(lambda: gw.in_loop(lambda: gw.link().switch.device("2001").last_failure) == 10, what="busy")
    assert gw.code("MakeCallPass", device="2001", telephoneNumber="48x", agentID="", agentPass="", route="0") == 2
    assert gw.code("MakeCall", device="2001", telephoneNumber="") == 2
    assert gw.code("MakeCall", device="9999", telephoneNumber="2002") == 18


def connected_to_2002(gw) -> str:
    status, body = gw.sim("/sim/inbound", {"ani": "4831110000", "dnis": "2002", "device": "2002"})
    call_id = body["call_id"]
    wait_for(lambda: gw.conn_state("2002").get(call_id) == "alerting", what="2002 ringing")
    assert gw.code("Answer", device="2002") == 0
    wait_for(lambda: gw.conn_state("2002").get(call_id) == "connected", what="2002 answered")
    return call_id


def test_consultation_then_transfer(gw):
    logged_on(gw)
    assert gw.code("AgentInService", device="2002", ipaddress=gw.events_url) == 0
    original = connected(gw)
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    wait_for(lambda: gw.conn_state("2001").get(original) == "held", what="original held")
    consult = wait_for(lambda: next((c for c, s in gw.conn_state("2002").items() if s == "alerting"), None),
                       what="2002 ringing")
    assert gw.code("Answer", device="2002") == 0
    wait_for(lambda: gw.conn_state("2002").get(consult) == "connected", what="consultation answered")
    assert gw.code("Transfer", device="2001") == 0
    wait_for(lambda: gw.conn_state("2001") == {}, what="2001 out of both calls")
    wait_for(lambda: gw.conn_state("2002") == {original: "connected"}, what="2002 with the caller")
    call = sim_call(gw, original)
    assert set(call["parties"]) == {"4832810000", "2002"}


def test_consultation_then_conference_and_alternate(gw):
    logged_on(gw)
    assert gw.code("AgentInService", device="2002", ipaddress=gw.events_url) == 0
    original = connected(gw)
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    consult = wait_for(lambda: next((c for c, s in gw.conn_state("2002").items() if s == "alerting"), None),
                       what="2002 ringing")
    assert gw.code("Answer", device="2002") == 0
    wait_for(lambda: gw.conn_state("2001").get(consult) == "connected", what="consultation answered")
    assert gw.code("Alternate", device="2001") == 0
    wait_for(lambda: gw.conn_state("2001") == {original: "connected", consult: "held"}, what="alternated")
    assert gw.code("Alternate", device="2001") == 0
    wait_for(lambda: gw.conn_state("2001") == {original: "held", consult: "connected"}, what="alternated back")
    assert gw.code("Conference", device="2001") == 0
    wait_for(lambda: len(gw.conn_state("2001")) == 1 and "connected" in gw.conn_state("2001").values(),
             what="one conference call")
    (conf_id,) = gw.conn_state("2001")
    assert set(sim_call(gw, conf_id)["parties"]) == {"2001", "2002", "4832810000"}


def test_one_step_and_immediate_transfer_and_redirect(gw):
    logged_on(gw)
    for d in ("2002", "2003", "2004"):
        assert gw.code("AgentInService", device=d, ipaddress=gw.events_url) == 0
    first = connected(gw)
    assert gw.code("OneStepCallTransfer", device="2001", deviceTo="2002") == 0
    wait_for(lambda: gw.conn_state("2002").get(first) == "alerting", what="blind transfer rings 2002")
    wait_for(lambda: gw.conn_state("2001") == {}, what="2001 left")
    # immediate transfer of a ringing call, straight from 2002 to 2003
    assert gw.code("ImmediateTransfer", device="2002", deviceTo="2003") == 0
    wait_for(lambda: gw.conn_state("2003").get(first) == "alerting", what="moved to 2003")
    assert gw.conn_state("2002") == {}
    # follow-me: 2004 forwards to 2001; a direct call to 2004 rings 2001
    assert gw.code("Redirect", device="2004", deviceTo="2001") == 0
    assert gw.sim_state()["devices"]["2004"]["forward_to"] == "2001"
    _, body = gw.sim("/sim/inbound", {"ani": "4830001111", "dnis": "2004", "device": "2004"})
    wait_for(lambda: gw.conn_state("2001").get(body["call_id"]) == "alerting", what="follow-me")
    assert gw.code("Redirect", device="2004", deviceTo="") == 0
    assert not gw.sim_state()["devices"]["2004"]["forward_to"]
    assert gw.code("OneStepCallTransfer", device="2001", deviceTo="") == 2


# ------------------------------------------------------------- PABX down
def test_pabx_down_fails_fast_and_reports_it():
    """With no grace period (grace: 0), Protheus is told at once; test_resilience covers the grace."""
    cfg = simulated_config()
    cfg["links"][0]["pabx"]["grace"] = 0
    g = RunningGateway(cfg)
    try:
        check_pabx_down(g)
    finally:
        g.close()


def check_pabx_down(gw):
    logged_on(gw)
    gw.run(gw.gateway._sim_runner.cleanup())   # the NGC goes away
    # the polls do not judge the link (SystemStatus does not even ask the PABX): a command finds it gone
    assert gw.code("MakeCall", device="2001", telephoneNumber="4832810000") == 22
    assert gw.code("SystemStatus") == 22      # and with no grace period, Protheus is told at once
    assert gw.code("selfTest") == 22
    assert gw.code("queryAgentState", cDevice="2001") == 16
    assert gw.code("Hold", device="2001") == 22
    assert gw.call("GetInfoChamAtiv", cDevice="2001") == "CMD#INFOCHAMATIV#22#2001"
    assert gw.call("GetCallList", groupID="701") == ""
    assert gw.call("showVersion") == "smartcti-gateway 0.1.0"


def test_pabx_that_never_answers_is_bounded_by_the_timeout():
    """A hung NGC costs no SOAP call more than the link's timeout: the link is down (it never answered the
    registration), so commands fail fast; test_multilink shows a hang after start answering 24 at the timeout."""
    stall = asyncio.Event()

    async def hang(request):
        await stall.wait()
        return web.Response(text="")

    port = free_port()
    loop_holder = {}

    cfg = {"listen": "127.0.0.1:0",
           "links": [{"link_id": 3, "pabx": {"url": f"http://127.0.0.1:{port}/RPC2", "timeout": 0.3, "grace": 0}}]}
    g = RunningGateway(cfg)
    try:
        async def start_hung():
            app = web.Application()
            app.router.add_post("/RPC2", hang)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            loop_holder["runner"] = runner
        g.run(start_hung())
        import time
        t0 = time.monotonic()
        assert g.code("SystemStatus") == 22
        assert g.code("queryAgentState", cDevice="2001") == 16
        assert g.code("MakeCall", device="2001", telephoneNumber="4832810000") == 22   # fails fast
        elapsed = time.monotonic() - t0
        assert elapsed < 3 * 0.3 + 1.0, elapsed
    finally:
        g.loop.call_soon_threadsafe(stall.set)
        if "runner" in loop_holder:
            g.run(loop_holder["runner"].cleanup())
        g.close()
