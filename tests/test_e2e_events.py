"""Events end to end: simulated NGC -> gateway -> simulated Protheus SmartCTIWSEventing.

Each test drives a sequence of smartcti.md §3.5 and checks, per device, the
exact event names, element names in order and values Protheus received.
"""

import pytest

from smartcti_gateway.core.notify import EVENT_PARAMS
from smartcti_gateway.sim.protheus.eventing import start_protheus_simulator

from .support import (RunningGateway, agent_ready, device_events, free_port, in_service, mark, names, params,
                      simulated_config, wait_device, wait_for)

ANI, DNIS = "4832810000", "7001"


@pytest.fixture
def gw():
    g = RunningGateway(simulated_config())
    yield g
    g.close()


# ------------------------------------------------------------------ wire
def test_in_service_event_shape_and_wire(gw):
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    (ev,) = wait_device(gw, "2001", ["INSERVICE"])
    assert ev["order"] == ["CDEVICE", "ILINKID"]
    assert params(ev) == {"CDEVICE": "2001", "ILINKID": "1"}
    assert ev["namespace"] == gw.protheus.base_url
    assert ev["soapaction"] == gw.protheus.base_url + "INSERVICE"
    assert ev["result"] == 0 and ev["fault"] is None


def test_inbound_call_ringing_answered_cleared(gw):
    since = in_service(gw, "2001")
    since = agent_ready(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    call_id = body["call_id"]
    ringing, = wait_device(gw, "2001", ["RINGING"], since)
    assert ringing["order"] == ["CDEVICE", "ILINKID", *EVENT_PARAMS["RINGING"]]
    assert params(ringing) == {"CDEVICE": "2001", "ILINKID": "1", "CALLID": call_id, "ANI": ANI, "DNIS": DNIS,
                               "ASSOCIATEDDATA": f"3|{ANI}", "CALLTYPE": "1"}
    assert gw.code("Answer", device="2001") == 0
    gw.sim("/sim/hangup", {"device": "2001"})
    got = wait_device(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    for ev in got[1:]:
        assert ev["order"] == ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS"]
        assert params(ev) == {"CDEVICE": "2001", "ILINKID": "1", "CALLID": call_id, "ANI": ANI, "DNIS": DNIS}


def test_screen_pop_data_and_dialler_call(gw):
    since = in_service(gw, "2001")
    since = agent_ready(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701", "data": "2|11122233344"})
    ev, = wait_device(gw, "2001", ["RINGING"], since)
    assert params(ev)["ASSOCIATEDDATA"] == "2|11122233344" and params(ev)["CALLTYPE"] == "1"
    gw.sim("/sim/hangup", {"call_id": body["call_id"]})
    wait_device(gw, "2001", ["RINGING", "CONNECTIONCLEARED"], since)
    since = mark(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701", "direction": "DISCADOR",
                                      "data": "1|000123 01"})
    ev, = wait_device(gw, "2001", ["RINGING"], since)
    assert params(ev)["CALLTYPE"] == "3" and params(ev)["ASSOCIATEDDATA"] == "1|000123 01"


def test_outbound_answered(gw):
    since = in_service(gw, "2001")
    assert gw.code("MakeCall", device="2001", telephoneNumber="4833334444") == 0
    got = wait_device(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"], since)
    call_ids = {params(e)["CALLID"] for e in got}
    assert len(call_ids) == 1
    for e in got:
        assert (params(e)["ANI"], params(e)["DNIS"]) == ("2001", "4833334444")
    assert params(got[2])["CALLTYPE"] == "2"   # no pop for our own outbound call
    assert gw.code("ConnectionClear", device="2001", CallID="") == 0
    wait_device(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)


@pytest.mark.parametrize("outcome,cause", [("busy", "10"), ("no-answer", "11")])
def test_outbound_failure(gw, outcome, cause):
    since = in_service(gw, "2001")
    gw.sim("/sim/outcome", {"number": "4835556666", "outcome": outcome, "after": 0.05})
    assert gw.code("MakeCall", device="2001", telephoneNumber="4835556666") == 0
    got = wait_device(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "CALLFAILURE", "CONNECTIONCLEARED"],
                      since)
    failure = got[3]
    assert failure["order"] == ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS", "CAUSE"]
    assert params(failure)["CAUSE"] == cause and params(failure)["DNIS"] == "4835556666"


def test_hold_and_retrieve(gw):
    since = in_service(gw, "2001")
    since = agent_ready(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    wait_device(gw, "2001", ["RINGING"], since)
    assert gw.code("Answer", device="2001") == 0
    assert gw.code("Hold", device="2001") == 0
    assert gw.code("Retrieve", device="2001") == 0
    got = wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "RETRIEVE"], since)
    assert {params(e)["CALLID"] for e in got} == {body["call_id"]}


def test_consultation_and_transfer(gw):
    in_service(gw, "2001", "2002")
    since = agent_ready(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701", "data": "2|11122233344"})
    original = body["call_id"]
    wait_device(gw, "2001", ["RINGING"], since)
    assert gw.code("Answer", device="2001") == 0
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    ring2, = wait_device(gw, "2002", ["RINGING"], since)
    consult = params(ring2)["CALLID"]
    # a colleague's consultation: no customer screen at 2002 (smartcti.md §10.6)
    assert consult != original and params(ring2)["ANI"] == "2001" and params(ring2)["CALLTYPE"] == "2"
    assert gw.code("Answer", device="2002") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"],
                since)
    assert gw.code("Transfer", device="2001") == 0
    got1 = wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING",
                                    "ANSWERED", "CONNECTIONCLEARED", "CONNECTIONCLEARED"], since)
    assert [params(e)["CALLID"] for e in got1] == [original] * 3 + [consult] * 5 + [original]
    got2 = wait_device(gw, "2002", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "RINGING", "ANSWERED"], since)
    # 2002 now has the customer: its screen pops with the customer's data
    assert [params(e)["CALLID"] for e in got2] == [consult, consult, consult, original, original]
    assert params(got2[3]) == {"CDEVICE": "2002", "ILINKID": "1", "CALLID": original, "ANI": ANI, "DNIS": DNIS,
                               "ASSOCIATEDDATA": "2|11122233344", "CALLTYPE": "1"}


def test_consultation_and_conference(gw):
    in_service(gw, "2001", "2002")
    since = agent_ready(gw)
    gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    wait_device(gw, "2001", ["RINGING"], since)
    assert gw.code("Answer", device="2001") == 0
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    wait_device(gw, "2002", ["RINGING"], since)
    assert gw.code("Answer", device="2002") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"],
                since)
    assert gw.code("Conference", device="2001") == 0
    got = wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING",
                                   "ANSWERED", "RETRIEVE"], since)
    (conf_id,) = gw.conn_state("2001")
    assert params(got[-1])["CALLID"] == conf_id
    gw.sim("/sim/hangup", {"call_id": conf_id})
    wait_device(gw, "2001", names(got) + ["CONNECTIONCLEARED"], since)
    wait_device(gw, "2002", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)


def test_blind_transfer_and_follow_me(gw):
    in_service(gw, "2001", "2002", "2003")
    since = agent_ready(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    wait_device(gw, "2001", ["RINGING"], since)
    assert gw.code("Answer", device="2001") == 0
    assert gw.code("OneStepCallTransfer", device="2001", deviceTo="2002") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    ev, = wait_device(gw, "2002", ["RINGING"], since)
    assert params(ev)["ANI"] == ANI and params(ev)["CALLTYPE"] == "1"
    # follow-me: 2002 redirected to 2003 while the call rings -> the pop moves
    assert gw.code("ImmediateTransfer", device="2002", deviceTo="2003") == 0
    wait_device(gw, "2002", ["RINGING", "CONNECTIONCLEARED"], since)
    ev, = wait_device(gw, "2003", ["RINGING"], since)
    assert params(ev)["CALLID"] == body["call_id"]


def test_agent_changes_from_protheus(gw):
    since = in_service(gw, "2001")
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701,702") == 0
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    assert gw.code("NotReady", device="2001", agentID="", groupID="") == 0
    assert gw.code("Logoff", device="2001", agentID="", groupID="") == 0
    got = wait_device(gw, "2001", ["LOGGEDON", "READY", "NOTREADY", "LOGGEDOFF"], since)
    for e in got:
        assert e["order"] == ["CDEVICE", "ILINKID", "CAGENTID", "CGROUPID"]
        assert params(e) == {"CDEVICE": "2001", "ILINKID": "1", "CAGENTID": "1234", "CGROUPID": "701,702"}


def test_agent_changes_on_the_phone(gw):
    since = in_service(gw, "2001")
    for action in ({"action": "login", "agent": "4321", "groups": "703"}, {"action": "ready"},
                   {"action": "pause", "reason": "almoço"}, {"action": "logout"}):
        status, body = gw.sim("/sim/phone", {"device": "2001", **action})
        assert status == 200, body
    got = wait_device(gw, "2001", ["LOGGEDON", "READY", "NOTREADY", "LOGGEDOFF"], since)
    assert [(params(e)["CAGENTID"], params(e)["CGROUPID"]) for e in got] == [("4321", "703")] * 4
    assert gw.code("queryAgentState", cDevice="2001") == 25


def test_two_processes_of_one_user_get_one_post_per_url(gw):
    """The main session and the call listener both sent AgentInService with the same MV_TKCTIEV."""
    since = in_service(gw, "2001")
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0   # the listener
    wait_device(gw, "2001", ["INSERVICE"], since)
    since = agent_ready(gw)
    assert [e["method"] for e in device_events(gw, "2001", since)] == []
    # one RINGING, not two
    gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    wait_device(gw, "2001", ["RINGING"], since)
    # Protheus sends one AgentOutOfService, when no session is left (smartcti.md §10.1): the stream stops
    assert gw.code("AgentOutOfService", device="2001") == 0
    assert gw.conn_state("2001") == {}       # no longer monitored: its calls are forgotten
    wait_for(lambda: all("2001" not in ch["devices"] for ch in gw.sim_state()["channels"].values()),
             what="monitor stopped at the PABX")
    before = mark(gw)
    gw.sim("/sim/answer", {"device": "2001"})
    gw.sim("/sim/hangup", {"device": "2001"})
    wait_for(lambda: gw.sim_state()["devices"]["2001"]["calls"] == [], what="call gone in the PABX")
    assert gw.in_loop(lambda: gw.link().delivery.depth()) == 0
    assert device_events(gw, "2001", before) == []
    # a later AgentInService takes it again
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    wait_device(gw, "2001", ["INSERVICE"], before)


def test_two_eventing_urls_for_one_device(gw):
    """Two Protheus servers (two MV_TKCTIEV) hold one device: each gets every event once."""
    other, runner = gw.run(start_protheus_simulator("127.0.0.1", 0, quiet=True))
    try:
        assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
        assert gw.code("AgentInService", device="2001", ipaddress=other.url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        wait_device(gw, "2001", ["INSERVICE", "LOGGEDON"])
        got = wait_for(lambda: [e["method"] for e in gw.in_loop(lambda: other.events_since(0))]
                       if len(gw.in_loop(lambda: other.events_since(0))) >= 2 else None, what="second Protheus")
        assert got == ["INSERVICE", "LOGGEDON"]
    finally:
        gw.run(runner.cleanup())


# --------------------------------------------------------------- failures
def test_protheus_without_wsdl_gets_the_advpl_conventions(gw):
    """No ?WSDL answer: namespace scheme://host:port/, upper-case names, SOAPAction ns+METHOD."""
    from aiohttp import web

    async def start_proxy():
        async def post(request):
            status, xml = gw.protheus.handle_post(await request.read(), host=request.host, path=request.path,
                                                  soapaction=request.headers.get("SOAPAction"))
            return web.Response(status=status, text=xml, content_type="text/xml")

        async def get(request):
            return web.Response(status=404, text="no WSDL here")
        app = web.Application()
        app.router.add_post("/ws/SMARTCTIWSEVENTING.apw", post)
        app.router.add_get("/ws/SMARTCTIWSEVENTING.apw", get)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = gw.run(start_proxy())
    try:
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/ws/SMARTCTIWSEVENTING.apw"
        assert gw.code("AgentInService", device="2001", ipaddress=url) == 0
        ev, = wait_device(gw, "2001", ["INSERVICE"])
        assert ev["namespace"] == f"http://127.0.0.1:{port}/"
        assert ev["soapaction"] == f"http://127.0.0.1:{port}/INSERVICE"
        assert ev["result"] == 0
        schema = gw.run(gw.link().eventing.schema(url))
        assert schema.source == "conventions"
    finally:
        gw.run(runner.cleanup())


def test_protheus_answering_99_releases_the_device():
    cfg = simulated_config()
    cfg["links"][0]["events"] = {"release_after_99": 3}
    g = RunningGateway(cfg)
    try:
        g.in_loop(lambda: g.protheus.set_session("2001", 1, False))
        assert g.code("AgentInService", device="2001", ipaddress=g.events_url) == 0
        assert g.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert g.code("Ready", device="2001", agentID="", groupID="") == 0
        got = wait_device(g, "2001", ["INSERVICE", "LOGGEDON", "READY"])
        assert [e["result"] for e in got] == [99, 99, 99]
        counts = g.in_loop(lambda: dict(g.link().delivery.counts))
        assert counts["no_session"] == 3 and counts["released"] == 1
        assert g.in_loop(lambda: g.link().switch.device("2001")) is None    # released, as by AgentOutOfService
        # no more events for it until Protheus puts it in service again
        assert g.code("NotReady", device="2001", agentID="", groupID="") == 0
        g.in_loop(lambda: g.protheus.set_session("2001", 1, True))
        assert g.code("AgentInService", device="2001", ipaddress=g.events_url) == 0
        got = wait_device(g, "2001", ["INSERVICE", "LOGGEDON", "READY", "INSERVICE"])
        assert got[-1]["result"] == 0
    finally:
        g.close()


def test_protheus_down_for_a_while():
    """Events inside their TTL arrive late but in order; an event older than its TTL is dropped and counted,
    and when it told the agent's state, that state is sent again (the listener's button would be wrong)."""
    protheus_port = free_port()
    cfg = simulated_config()
    cfg["links"][0]["events"] = {"ttl": 1.0, "retry_initial": 0.05, "retry_max": 0.1, "timeout": 1}
    g = RunningGateway(cfg)
    runner = None
    try:
        other, runner = g.run(start_protheus_simulator("127.0.0.1", protheus_port, quiet=True))
        url = other.url
        assert g.code("AgentInService", device="2001", ipaddress=url) == 0
        wait_for(lambda: len(g.in_loop(lambda: other.events_since(0))) == 1, what="INSERVICE")
        g.run(runner.cleanup())            # Protheus goes down
        assert g.code("Logon", device="2001", agentID="1234", groupID="701") == 0      # LOGGEDON: will go stale
        wait_for(lambda: g.in_loop(lambda: g.link().delivery.counts["stale"]) == 1, timeout=10,
                 what="LOGGEDON dropped after its ttl")
        assert g.code("Ready", device="2001", agentID="", groupID="") == 0          # inside their TTL
        assert g.code("NotReady", device="2001", agentID="", groupID="") == 0
        wait_for(lambda: g.in_loop(lambda: g.link().delivery.counts["retries"]) >= 1, what="retrying")
        other, runner = g.run(start_protheus_simulator("127.0.0.1", protheus_port, quiet=True))  # back
        got = wait_for(lambda: g.in_loop(lambda: other.events_since(0)) or None, what="events after restart")
        got = wait_for(lambda: (lambda ev: ev if len(ev) >= 2 else None)(g.in_loop(lambda: other.events_since(0))),
                       what="both events")
        got = wait_for(lambda: (lambda ev: ev if len(ev) >= 3 else None)(g.in_loop(lambda: other.events_since(0))),
                       what="the state again, then both events")
        assert [e["method"] for e in got] == ["LOGGEDON", "READY", "NOTREADY"]   # the stale one's state, again
        assert [e["params"]["CAGENTID"] for e in got] == ["1234"] * 3
        counts = g.in_loop(lambda: dict(g.link().delivery.counts))
        assert counts["stale"] == 1 and counts["sent"] >= 4
    finally:
        if runner is not None:
            g.run(runner.cleanup())
        g.close()


def test_protheus_refusing_a_message_makes_the_gateway_read_the_wsdl_again(gw):
    """A Client fault (schema reason) triggers one WSDL refresh and one retry."""
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    wait_device(gw, "2001", ["INSERVICE"])
    link = gw.link()
    schema = gw.run(link.eventing.schema(gw.events_url))
    # simulate a stale cache: the gateway believes the service has another namespace
    from dataclasses import replace
    broken = {n: replace(s, namespace="http://elsewhere/") for n, s in schema.operations.items()}
    gw.in_loop(lambda: setattr(schema, "operations", broken))
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    got = wait_device(gw, "2001", ["INSERVICE", "LOGGEDON", "LOGGEDON"])
    assert [e["result"] for e in got[1:]] == ["fault", 0]
    assert gw.run(link.eventing.schema(gw.events_url)).operations["LOGGEDON"].namespace == gw.protheus.base_url


# ----------------------------------------------------------- findings of smartcti.md §10, end to end
def test_agent_changes_reach_protheus_even_from_a_silent_pabx():
    """§10.2: the listener's Pausa/Disponível button moves only on READY/NOTREADY events; some PABXs
    say nothing about changes made by a command. §3.5: LOGGEDON and LOGGEDOFF follow the commands too."""
    g = RunningGateway(simulated_config(agent_events_on_commands=False))
    try:
        since = in_service(g, "2001")
        assert g.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert g.code("Ready", device="2001", agentID="", groupID="") == 0
        assert g.code("NotReady", device="2001", agentID="", groupID="") == 0
        assert g.code("Ready", device="2001", agentID="", groupID="") == 0
        got = wait_device(g, "2001", ["LOGGEDON", "READY", "NOTREADY", "READY"], since)
        assert [params(e)["CAGENTID"] for e in got] == ["1234"] * 4
        # the agent's own keys on the phone are reported by the PABX, and reach Protheus once, even
        # though they repeat a change made by a command seconds ago
        g.sim("/sim/phone", {"device": "2001", "action": "pause"})
        wait_device(g, "2001", ["LOGGEDON", "READY", "NOTREADY", "READY", "NOTREADY"], since)
        assert g.code("queryAgentState", cDevice="2001") == 30
        assert g.code("Logoff", device="2001", agentID="", groupID="") == 0
        wait_device(g, "2001", ["LOGGEDON", "READY", "NOTREADY", "READY", "NOTREADY", "LOGGEDOFF"], since)
    finally:
        g.close()


def test_ready_is_told_once_when_the_pabx_reports_it_too(gw):
    since = in_service(gw, "2001")
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0    # pressed twice: told twice
    assert gw.code("NotReady", device="2001", agentID="", groupID="") == 0
    # a later event proves every earlier one has arrived (one device's events go in order)
    gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "device": "2001"})
    wait_device(gw, "2001", ["LOGGEDON", "READY", "READY", "NOTREADY", "RINGING"], since)


def test_each_protheus_session_gets_the_device_as_it_wrote_it(gw):
    """Seen: after four sessions registered 2001, one AgentInService for ' 2001 ' relabelled every later event
    of 2001 with CDEVICE ' 2001 '; Protheus matches CDEVICE, so the 2001 sessions got nothing (99)."""
    other, runner = gw.run(start_protheus_simulator("127.0.0.1", 0, quiet=True))
    try:
        for sim, spelling in ((gw.protheus, "2001"), (other, " 2001 ")):
            gw.in_loop(lambda s=sim: setattr(s, "default_open", False))
            gw.in_loop(lambda s=sim, d=spelling: s.set_session(d, 1, True))
        for _ in range(4):
            assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
        assert gw.code("AgentInService", device=" 2001 ", ipaddress=other.url) == 0
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "device": "2001"})
        mine = wait_device(gw, "2001", ["INSERVICE"] * 4 + ["LOGGEDON", "RINGING"])
        theirs = wait_for(lambda: (lambda e: e if len(e) >= 3 else None)(gw.in_loop(lambda: other.events_since(0))),
                          what="events at the second server")
        assert names(theirs) == ["INSERVICE", "LOGGEDON", "RINGING"]
        assert {params(e)["CDEVICE"] for e in theirs} == {" 2001 "}
        # every event found its session: no 99 anywhere
        assert {e["result"] for e in mine + theirs} == {0}
        assert {params(e)["CDEVICE"] for e in gw.events()} == {"2001"}
    finally:
        gw.run(runner.cleanup())


def test_nothing_more_is_retried_after_agent_out_of_service():
    """docs/events.md promised it; seen: retries up to attempt 20 after the AgentOutOfService."""
    cfg = simulated_config()
    cfg["links"][0]["events"] = {"retry_initial": 0.01, "retry_max": 0.02}
    g = RunningGateway(cfg)
    try:
        in_service(g, "2001", "2002")
        g.in_loop(lambda: g.protheus.set_mode("error"))        # Protheus fails every POST: retries
        assert g.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert g.code("Logon", device="2002", agentID="2222", groupID="702") == 0

        def attempts(device):
            return len([e for e in g.events() if e["params"].get("CDEVICE") == device and e["result"] == "error"])
        wait_for(lambda: attempts("2001") >= 3, what="2001 retried")
        assert g.code("AgentOutOfService", device="2001") == 0
        after = attempts("2001")
        seen_2002 = attempts("2002")
        # while 2002 (still in service) keeps being retried, 2001 gets no more attempt
        wait_for(lambda: attempts("2002") >= seen_2002 + 10, what="2002 retried ten more times")
        assert attempts("2001") <= after + 1     # at most the one on the wire when it was released
        assert g.in_loop(lambda: [k for k in g.link().delivery.streams if k[0] == "2001"]) == []
    finally:
        g.in_loop(lambda: g.protheus.set_mode("normal"))
        g.close()
