"""The call-centre scenario on a real Asterisk (each build of ../shared/asterisk) with real SIP phones.

Protheus is the simulated SmartCTIWSEventing; the PABX is Asterisk with a stock-looking dialplan (the
phones' context, an outside line, two queues: tests/asterisk_lab.py); the agents' phones are baresip.
Each test drives SmartCTI commands as Protheus sends them and the phones as the agents use them, and
checks, per device, the events Protheus received: the same sequences as on Dígitro
(tests/test_e2e_events.py, docs/events.md). The lab is reset between tests.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from smartcti_gateway.core.notify import EVENT_PARAMS
from smartcti_gateway.pabx.asterisk.tracker import Tracker

from .asterisk_lab import (AGI_PORT_VARIABLE, AMI_SECRET, AMI_USER, EXTENSIONS, HOW_TO_GET_ONE, HOW_TO_GET_PHONES,
                           OUTSIDE_BUSY, PROTOCOL_NUMBER, Lab, baresip, builds)
from .support import RunningGateway, device_events, in_service, mark, names, params, wait_device, wait_for

BUILDS = builds()
FIXTURES = Path(__file__).parent / "fixtures" / "ami"
ANI, DNIS = "4832810000", "7001"
LINK = "2"
CALL_WAIT = 15.0        # s for anything that goes through a phone


@pytest.fixture(scope="module", params=BUILDS or [None], ids=lambda b: f"asterisk-{b.name}" if b else "none")
def lab(request):
    if request.param is None:
        pytest.skip(HOW_TO_GET_ONE)
    if baresip() is None:
        pytest.skip(HOW_TO_GET_PHONES)
    lab = Lab(request.param).start()
    SEEN.append(lab)
    try:
        for ext in EXTENSIONS:
            lab.phone(ext)
        yield lab
    finally:
        SEEN.remove(lab)
        lab.stop()


SEEN: list[Lab] = []        # the lab of the module's current build: its events go into a failed wait


def what_asterisk_did(last: int = 60) -> str:
    """The lab's last AMI events, one line each: what a failed wait shows besides the gateway's events."""
    if not SEEN:
        return ""
    lines = [f"{e.get('Event')} {e.get('Channel', '')} {e.get('DestChannel', '')} "
             f"{e.get('DialStatus') or e.get('Result') or e.get('ChannelStateDesc') or ''}".rstrip()
             for e in SEEN[-1].ami.events[-last:]]
    return "\nAsterisk's last events:\n  " + "\n  ".join(lines)


def config(lab: Lab, **pabx) -> dict:
    return {"listen": "127.0.0.1:0", "links": [{"link_id": int(LINK), "pabx": {
        "driver": "asterisk", "host": "127.0.0.1", "port": lab.ami_port, "username": AMI_USER, "secret": AMI_SECRET,
        "queues": {"701": "vendas", "702": "suporte"}, "timeout": 5, "answer_wait": 0.3, **pabx}}]}


@pytest.fixture(autouse=True)
def refusals_shown(caplog):
    """A command the lab refuses says why in the failure's log (CI under load once saw a bare 3)."""
    caplog.set_level("INFO", logger="smartcti_gateway.link")


@pytest.fixture
def gw(lab):
    g = RunningGateway(config(lab))
    try:
        yield g
    finally:
        g.close()
        lab.reset()


def wait(gw, device, expected, since):
    try:
        return wait_device(gw, device, expected, since, timeout=CALL_WAIT)
    except AssertionError as e:
        raise AssertionError(f"{e}{what_asterisk_did()}") from None


def agent_ready(gw, device="2001", agent="1234", group="701") -> int:
    since = mark(gw)
    assert gw.code("Logon", device=device, agentID=agent, groupID=group) == 0
    assert gw.code("Ready", device=device, agentID="", groupID="") == 0
    wait(gw, device, ["LOGGEDON", "READY"], since)
    return since


def customer_on(gw, lab, device="2001", number=DNIS) -> tuple[str, int]:
    """An outside caller reaches the queue of ``number``; ``device``'s agent picks up on the phone.
    Answer is asked first, as Protheus' button does: baresip does not take the 'talk' NOTIFY (21)."""
    since = mark(gw)
    lab.outside_call(number, ANI)
    ringing, = wait(gw, device, ["RINGING"], since)
    assert gw.code("Answer", device=device) == 21
    lab.phones[device].accept()
    wait(gw, device, ["RINGING", "ANSWERED"], since)
    return params(ringing)["CALLID"], since


def bridged(lab: Lab, *channel_prefixes: str) -> bool:
    """Whether channels starting with these names share one bridge in Asterisk."""
    bridges = {}
    for c in lab.channels():
        if c.get("BridgeId"):
            bridges.setdefault(c["BridgeId"], []).append(c["Channel"])
    return any(all(any(ch.startswith(p) for ch in chans) for p in channel_prefixes) for chans in bridges.values())


def keep_stream(lab: Lab, name: str, since: int, originate: tuple[str, str] | None = None) -> None:
    """With SMARTCTI_RECORD_AMI=1, the AMI events the gateway reads from ``since`` on are written to
    tests/fixtures/ami/<name>.ast<build>.json: the unit tests replay them without Asterisk.
    ``originate`` = (ChannelId, number) of the gateway's own Originate, kept as a first pseudo-event."""
    if not os.environ.get("SMARTCTI_RECORD_AMI"):
        return
    wanted = set(Tracker.events())
    events = [e for e in lab.ami.events[since:] if e.get("Event") in wanted]
    if originate:
        events.insert(0, {"Event": "_GatewayOriginate", "ChannelId": originate[0], "Number": originate[1]})
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.ast{lab.build.name}.json").write_text(json.dumps(events, indent=1) + "\n")


def application_of(lab: Lab, prefix: str) -> str:
    return next((c.get("Application", "") for c in lab.channels() if c["Channel"].startswith(prefix)), "")


# ------------------------------------------------------------------ the link
def test_link_up_with_the_least_manager_classes_and_the_event_filter(gw, lab):
    """The lab's manager user has only the classes docs/asterisk.md asks for; Asterisk sends only the
    events the gateway reads; the gateway's dialplan is in place, and the version is Asterisk's."""
    assert gw.code("SystemStatus") == 0 and gw.code("selfTest") == 0
    versions = "\n".join(gw.run(gw.gateway.versions()))     # smartcti-gateway --version's report
    assert "link 2 (" in versions and f"PABX Asterisk {lab.version()} (AMI " in versions, versions
    driver = gw.link(int(LINK)).driver
    assert gw.in_loop(lambda: driver.conn.filtered) is True
    contexts = {e.get("Context") for e in lab.ami.list_action("ShowDialPlan", "ShowDialPlanComplete")}
    assert {"smartcti-hold", "smartcti-park", "smartcti-dial", "smartcti-join"} <= contexts
    before, seen = gw.in_loop(lambda: driver.events_received), len(lab.ami.events)
    lab.ami.action("UserEvent", UserEvent="NotForTheGateway")
    lab.ami.action("Originate", Channel="Local/4830000001@outside", Application="Wait", Data="0.2", Async="true")
    for half in (";1", ";2"):
        lab.ami.wait_event(lambda e: e.get("Event") == "Hangup" and e.get("Channel", "").endswith(half), since=seen)
    # the lab's own user reads everything (Newexten, VarSet, UserEvent...); the gateway, exactly the events of
    # the call its filter lets through (Tracker.events()), however many of each the build sends
    wanted = set(Tracker.events())

    def names() -> list[str]:
        return [e.get("Event", "") for e in lab.ami.events[seen:]]
    wait_for(lambda: gw.in_loop(lambda: driver.events_received) - before >= sum(n in wanted for n in names()) >= 4,
             5, what="the call's events at the gateway")
    assert gw.in_loop(lambda: driver.events_received) - before == sum(n in wanted for n in names()), names()
    assert {"UserEvent", "Newexten"} <= set(names()) - wanted


def test_the_gateways_dialplan_leaves_with_it(lab):
    g = RunningGateway(config(lab))
    try:
        assert g.code("SystemStatus") == 0
    finally:
        g.close()
    contexts = {e.get("Context") for e in lab.ami.list_action("ShowDialPlan", "ShowDialPlanComplete")}
    assert not {c for c in contexts if c and c.startswith("smartcti-")}, contexts


def test_a_dialplan_reload_does_not_lose_the_gateways_dialplan(lab):
    """'dialplan reload' wipes contexts added over AMI and says nothing on AMI: the keep-alive notices."""
    g = RunningGateway(config(lab, keepalive=0.3))
    try:
        assert "Dialplan reloaded" in lab.ami.action("Command", Command="dialplan reload").get("Output", "")
        wait_for(lambda: {"smartcti-hold", "smartcti-join"} <= {
            e.get("Context") for e in lab.ami.list_action("ShowDialPlan", "ShowDialPlanComplete")}, 5,
            what="the gateway's contexts back")
    finally:
        g.close()
        lab.reset()


def test_a_wrong_secret_says_so_in_one_line_and_never_shows_the_secret(lab, caplog):
    wrong = "not-the-secret-93b1"
    g = RunningGateway(config(lab, secret=wrong, keepalive=0.5, grace=0), starting=True)
    try:
        wait_for(lambda: g.code("SystemStatus") == 22, 10, what="SystemStatus down")
        lines = [r.getMessage() for r in caplog.records if "refused the login" in r.getMessage()]
        assert lines and f"user {AMI_USER!r}" in lines[0] and "check username and secret" in lines[0]
        status, page, _ = g.http("GET", "/status")
        _, metrics, _ = g.http("GET", "/metrics")
        everything = "\n".join(r.getMessage() for r in caplog.records).encode() + page + metrics
        assert wrong.encode() not in everything and AMI_SECRET.encode() not in everything
    finally:
        g.close()


def test_refusals_are_smartcti_codes(gw, lab):
    assert gw.code("AgentInService", device="2999", ipaddress=gw.events_url) == 18      # no such endpoint
    in_service(gw, "2001")
    assert gw.code("Logon", device="2001", agentID="1234", groupID="799") == 23        # no such queue
    assert gw.code("Logoff", device="2001", agentID="", groupID="") == 1               # not logged on
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 1
    assert gw.code("Answer", device="2001") == 3                                       # nothing rings
    assert gw.code("Hold", device="2001") == 3
    assert gw.code("Retrieve", device="2001") == 19
    assert gw.code("Transfer", device="2001") == 3
    assert gw.code("StartRec", device="2001") == 3
    assert gw.code("MakeCall", device="2999", telephoneNumber="4833334444") == 18
    assert gw.code("MakeCallPass", device="2001", telephoneNumber="48x", agentID="", agentPass="", route="") == 2
    assert gw.call("GetInfoChamAtiv", cDevice="2001") == "CMD#INFOCHAMATIV#11#2001"
    assert gw.call("GetCallList", groupID="701") == ""
    assert lab.channels() == []                                                        # nothing was done


# ------------------------------------------------------------------ agents
def test_agent_logon_ready_pause_logoff_are_queue_membership(gw, lab):
    since = in_service(gw, "2001")
    seen = len(lab.ami.events)
    assert gw.code("queryAgentState", cDevice="2001") == 25
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    wait(gw, "2001", ["LOGGEDON"], since)
    (member,) = lab.members()
    assert (member["Queue"], member["Location"], member["Name"], member["Paused"]) == ("vendas", "PJSIP/2001", "1234",
                                                                                       "1")
    assert gw.code("queryAgentState", cDevice="2001") == 26
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    assert gw.code("queryAgentState", cDevice="2001") == 28
    assert gw.code("NotReadyPass", device="2001", agentID="", groupID="", agentPass="") == 0
    assert gw.code("ReadyPass", device="2001", agentID="", groupID="", agentPass="") == 0
    assert gw.code("NotReady", device="2001", agentID="", groupID="") == 0
    assert gw.code("queryAgentState", cDevice="2001") == 30
    assert lab.members()[0]["Paused"] == "1"
    # the supervisor takes the pause off at the Asterisk side: Protheus is told
    lab.ami.action("QueuePause", Interface="PJSIP/2001", Paused="false")
    wait(gw, "2001", ["LOGGEDON", "READY", "NOTREADY", "READY", "NOTREADY", "READY"], since)
    assert gw.code("LogoffPass", device="2001", agentID="", groupID="", agentPass="") == 0
    got = wait(gw, "2001", ["LOGGEDON", "READY", "NOTREADY", "READY", "NOTREADY", "READY", "LOGGEDOFF"], since)
    assert all(params(e)["CAGENTID"] == "1234" for e in got)
    assert params(got[0])["CGROUPID"] == "701"
    assert lab.members() == [] and gw.code("queryAgentState", cDevice="2001") == 25
    keep_stream(lab, "agent_states", seen)


def test_the_queue_pauses_an_agent_who_lets_a_call_ring_out(gw, lab):
    since = in_service(gw, "2004")
    seen = len(lab.ami.events)
    agent_ready(gw, "2004", "4321", "702")
    lab.outside_call("7002", ANI)
    lab.phones["2004"].ringing()       # and nobody picks up: suporte rings 3 s, then autopause
    # app_queue pauses the member before it hangs up the ring (rna() runs at the ring timeout)
    got = wait(gw, "2004", ["LOGGEDON", "READY", "RINGING", "NOTREADY", "CONNECTIONCLEARED"], since)
    assert params(got[2])["DNIS"] == "7002" and params(got[3])["CGROUPID"] == "702"
    assert gw.code("queryAgentState", cDevice="2004") == 30
    keep_stream(lab, "queue_autopause", seen)


# ------------------------------------------------------------------ calls
def test_inbound_queue_call_pops_is_answered_and_cleared(gw, lab):
    in_service(gw, "2001")
    seen = len(lab.ami.events)
    since = agent_ready(gw)
    lab.outside_call(DNIS, ANI)
    ringing, = wait(gw, "2001", ["RINGING"], since + 2)
    call_id = params(ringing)["CALLID"]
    assert ringing["order"] == ["CDEVICE", "ILINKID", *EVENT_PARAMS["RINGING"]]
    assert params(ringing) == {"CDEVICE": "2001", "ILINKID": LINK, "CALLID": call_id, "ANI": ANI, "DNIS": DNIS,
                               "ASSOCIATEDDATA": f"3|{ANI}", "CALLTYPE": "1"}
    assert gw.call("GetInfoChamAtiv", cDevice="2001") == f"CMD#INFOCHAMATIV#0#2001#{call_id}#-#{ANI}#{DNIS}#701#-#-#-"
    assert gw.code("Answer", device="2001") == 21          # baresip cannot be told to answer: the agent picks up
    lab.phones["2001"].accept()
    wait(gw, "2001", ["RINGING", "ANSWERED"], since + 2)
    # ANSWERED comes with the answer (DialEnd); the bridge is made a moment later
    wait_for(lambda: bridged(lab, "PJSIP/2001-", "Local/7001@incoming"), 5, what="the agent with the customer")
    assert gw.code("queryAgentState", cDevice="2001") == 29
    assert gw.call("getActiveCallInfo", cDevice="2001").split("#")[2] == "0"
    assert gw.code("ConnectionClear", device="2001", CallID="") == 0
    got = wait(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since + 2)
    for ev in got[1:]:
        assert params(ev) == {"CDEVICE": "2001", "ILINKID": LINK, "CALLID": call_id, "ANI": ANI, "DNIS": DNIS}
    wait_for(lambda: gw.call("GetInfoChamAtiv", cDevice="2001") == "CMD#INFOCHAMATIV#11#2001", 5, what="no call")
    keep_stream(lab, "queue_call_answered_cleared", seen)


def test_agent_out_of_service_hears_nothing_more(gw, lab):
    in_service(gw, "2001")
    agent_ready(gw)
    since = mark(gw)
    assert gw.code("AgentOutOfService", device="2001") == 0
    lab.outside_call(DNIS, ANI)
    lab.phones["2001"].ringing()                 # the queue still offers the call: Protheus is not told
    wait_for(lambda: any(c["Channel"].startswith("PJSIP/2001-") for c in lab.channels()), 5, what="2001 rings")
    driver = gw.link(int(LINK)).driver
    assert "2001" not in gw.in_loop(lambda: driver.tracker.monitored)     # Asterisk's events for it are dropped
    assert names(device_events(gw, "2001", since)) == []


def test_the_customer_hanging_up_clears_the_call(gw, lab):
    in_service(gw, "2001")
    agent_ready(gw)
    seen = len(lab.ami.events)
    call_id, since = customer_on(gw, lab)
    lab.ami.action("Hangup", Channel="/^Local\\/7001@incoming-.*;1$/")
    got = wait(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    assert params(got[-1])["CALLID"] == call_id and params(got[-1])["ANI"] == ANI
    keep_stream(lab, "queue_call_customer_hangs_up", seen)


def test_hold_plays_music_to_the_customer_and_retrieve_brings_them_back(gw, lab):
    in_service(gw, "2001")
    agent_ready(gw)
    call_id, since = customer_on(gw, lab)
    assert gw.code("Hold", device="2001") == 0
    wait(gw, "2001", ["RINGING", "ANSWERED", "HELD"], since)
    wait_for(lambda: application_of(lab, "Local/7001@incoming-") in ("MusicOnHold", "Wait") and
             not bridged(lab, "PJSIP/2001-", "Local/7001@incoming"), 5, what="the customer waiting alone")
    assert gw.code("Retrieve", device="2001") == 0
    got = wait(gw, "2001", ["RINGING", "ANSWERED", "HELD", "RETRIEVE"], since)
    assert {params(e)["CALLID"] for e in got} == {call_id}
    wait_for(lambda: bridged(lab, "PJSIP/2001-", "Local/7001@incoming"), 5, what="talking again")
    assert gw.code("Retrieve", device="2001") == 19


def test_consultation_and_transfer(gw, lab):
    in_service(gw, "2001", "2002")
    agent_ready(gw)
    original, since = customer_on(gw, lab)
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    ring2, = wait(gw, "2002", ["RINGING"], since)
    consult = params(ring2)["CALLID"]
    # a colleague's consultation: no customer screen at 2002 (smartcti.md §10.6)
    assert consult != original and params(ring2)["ANI"] == "2001" and params(ring2)["CALLTYPE"] == "2"
    lab.phones["2002"].accept()
    wait(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"], since)
    assert gw.code("Transfer", device="2001") == 0
    got1 = wait(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING",
                             "ANSWERED", "CONNECTIONCLEARED", "CONNECTIONCLEARED"], since)
    assert [params(e)["CALLID"] for e in got1] == [original] * 3 + [consult] * 5 + [original]
    got2 = wait(gw, "2002", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "RINGING", "ANSWERED"], since)
    assert [params(e)["CALLID"] for e in got2] == [consult, consult, consult, original, original]
    # 2002 now has the customer: its screen pops with the customer's data
    assert params(got2[3]) == {"CDEVICE": "2002", "ILINKID": LINK, "CALLID": original, "ANI": ANI, "DNIS": DNIS,
                               "ASSOCIATEDDATA": f"3|{ANI}", "CALLTYPE": "1"}
    wait_for(lambda: bridged(lab, "PJSIP/2002-", "Local/7001@incoming") and
             not any(c["Channel"].startswith("PJSIP/2001-") for c in lab.channels()), 5, what="customer with 2002")
    assert gw.call("GetInfoChamAtiv", cDevice="2002").startswith(f"CMD#INFOCHAMATIV#0#2002#{original}#-#{ANI}#")


def test_consultation_then_retrieve_ends_the_consultation(gw, lab):
    in_service(gw, "2001", "2002")
    agent_ready(gw)
    original, since = customer_on(gw, lab)
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    lab.phones["2002"].accept()
    wait(gw, "2002", ["RINGING", "ANSWERED"], since)
    assert gw.code("Retrieve", device="2001") == 0
    got = wait(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED",
                            "CONNECTIONCLEARED", "RETRIEVE"], since)
    assert params(got[-1])["CALLID"] == original
    wait(gw, "2002", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    wait_for(lambda: bridged(lab, "PJSIP/2001-", "Local/7001@incoming"), 5, what="the agent with the customer again")


def test_consultation_of_an_outside_number(gw, lab):
    """The supervisor's mobile: the consultation dials through the site's context and its outside line."""
    in_service(gw, "2001")
    agent_ready(gw)
    original, since = customer_on(gw, lab)
    assert gw.code("Consultation", device="2001", deviceTo="(48) 3000-0001", Route="") == 0
    got = wait(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"],
               since)
    assert [params(e)["DNIS"] for e in got[3:]] == ["4830000001"] * 4
    assert gw.code("Retrieve", device="2001") == 0
    wait(gw, "2001", names(got) + ["CONNECTIONCLEARED", "RETRIEVE"], since)
    wait_for(lambda: bridged(lab, "PJSIP/2001-", "Local/7001@incoming"), 5, what="back with the customer")
    wait_for(lambda: not any("4830000001" in c["Channel"] for c in lab.channels()), 5,
             what="the outside line's channels gone")


def test_consultation_and_conference(gw, lab):
    in_service(gw, "2001", "2002")
    agent_ready(gw)
    original, since = customer_on(gw, lab)
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    lab.phones["2002"].accept()
    wait(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"], since)
    assert gw.code("Conference", device="2001") == 0
    got = wait(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING",
                            "ANSWERED", "RETRIEVE"], since)
    assert params(got[-1])["CALLID"] == original
    wait_for(lambda: bridged(lab, "PJSIP/2001-", "PJSIP/2002-", "Local/7001@incoming"), 5, what="three in a bridge")
    # the agent leaves; the colleague stays with the customer until the customer hangs up
    assert gw.code("ConnectionClear", device="2001", CallID="") == 0
    wait(gw, "2001", names(got) + ["CONNECTIONCLEARED"], since)
    wait_for(lambda: bridged(lab, "PJSIP/2002-", "Local/7001@incoming"), 5, what="the colleague with the customer")
    lab.ami.action("Hangup", Channel="/^Local\\/7001@incoming-.*;1$/")
    got2 = wait(gw, "2002", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    assert params(got2[0])["CALLTYPE"] == "2"


def test_alternate_swaps_the_held_and_the_consulted(gw, lab):
    in_service(gw, "2001", "2002")
    agent_ready(gw)
    original, since = customer_on(gw, lab)
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    consult = params(wait(gw, "2002", ["RINGING"], since)[0])["CALLID"]
    lab.phones["2002"].accept()
    start = ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"]
    wait(gw, "2001", start, since)
    assert gw.code("Alternate", device="2001") == 0
    got = wait(gw, "2001", start + ["HELD", "RETRIEVE"], since)
    assert [params(e)["CALLID"] for e in got[-2:]] == [consult, original]
    wait_for(lambda: bridged(lab, "PJSIP/2001-", "Local/7001@incoming"), 5, what="back with the customer")
    assert gw.code("Alternate", device="2001") == 0
    got = wait(gw, "2001", start + ["HELD", "RETRIEVE", "HELD", "RETRIEVE"], since)
    assert [params(e)["CALLID"] for e in got[-2:]] == [original, consult]
    wait_for(lambda: bridged(lab, "PJSIP/2001-", "PJSIP/2002-"), 5, what="back with the colleague")


def test_make_call_answered_then_cleared(gw, lab):
    since = in_service(gw, "2003")
    seen = len(lab.ami.events)
    number = "4833334444"
    assert gw.code("MakeCall", device="2003", telephoneNumber=number) == 0
    lab.phones["2003"].accept()       # Originate rings the agent's own phone first
    got = wait(gw, "2003", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"], since)
    assert len({params(e)["CALLID"] for e in got}) == 1
    assert all((params(e)["ANI"], params(e)["DNIS"]) == ("2003", number) for e in got)
    assert params(got[2])["CALLTYPE"] == "2"
    assert gw.code("ConnectionClear", device="2003", CallID="") == 0
    wait(gw, "2003", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    keep_stream(lab, "make_call_answered", seen, (params(got[0])["CALLID"], number))


def test_make_call_to_a_busy_number_fails_with_cause_10(gw, lab):
    since = in_service(gw, "2003")
    seen = len(lab.ami.events)
    assert gw.code("MakeCall", device="2003", telephoneNumber=OUTSIDE_BUSY) == 0
    lab.phones["2003"].accept()
    got = wait(gw, "2003", ["SERVICEINITIATED", "ORIGINATED", "CALLFAILURE", "CONNECTIONCLEARED"], since)
    failure = got[2]
    assert failure["order"] == ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS", "CAUSE"]
    assert (params(failure)["CAUSE"], params(failure)["DNIS"]) == ("10", OUTSIDE_BUSY)
    keep_stream(lab, "make_call_busy", seen, (params(failure)["CALLID"], OUTSIDE_BUSY))


def test_make_call_the_agent_does_not_pick_up(gw, lab):
    g = RunningGateway(config(lab, originate_timeout=5))
    try:
        since = in_service(g, "2003")
        seen = len(lab.ami.events)
        assert g.code("MakeCall", device="2003", telephoneNumber="4833334444") == 0
        lab.phones["2003"].ringing()
        got = wait(g, "2003", ["SERVICEINITIATED", "CALLFAILURE", "CONNECTIONCLEARED"], since)
        assert params(got[1])["CAUSE"] == "11"
        keep_stream(lab, "make_call_not_picked_up", seen, (params(got[1])["CALLID"], "4833334444"))
    finally:
        g.close()


def test_a_call_dialled_on_the_phone_to_a_colleague(gw, lab):
    since = in_service(gw, "2001", "2002")
    seen = len(lab.ami.events)
    lab.phones["2001"].dial("2002")
    ring2, = wait(gw, "2002", ["RINGING"], since)
    assert (params(ring2)["ANI"], params(ring2)["DNIS"], params(ring2)["CALLTYPE"]) == ("2001", "2002", "2")
    lab.phones["2002"].accept()
    got1 = wait(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"], since)
    assert {params(e)["CALLID"] for e in got1} == {params(ring2)["CALLID"]}
    wait(gw, "2002", ["RINGING", "ANSWERED"], since)
    lab.phones["2002"].hangup()
    wait(gw, "2001", names(got1) + ["CONNECTIONCLEARED"], since)
    wait(gw, "2002", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    keep_stream(lab, "phone_dials_colleague", seen)


def test_one_step_transfer_sends_the_customer_to_a_colleague(gw, lab):
    in_service(gw, "2001", "2002")
    agent_ready(gw)
    original, since = customer_on(gw, lab)
    assert gw.code("OneStepCallTransfer", device="2001", deviceTo="2002") == 0
    wait(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    ring2, = wait(gw, "2002", ["RINGING"], since)
    assert [params(ring2)[k] for k in ("CALLID", "ANI", "DNIS", "CALLTYPE")] == [original, ANI, DNIS, "1"]
    lab.phones["2002"].accept()
    wait(gw, "2002", ["RINGING", "ANSWERED"], since)
    wait_for(lambda: bridged(lab, "PJSIP/2002-", "Local/7001@incoming"), 5, what="customer with 2002")


def test_immediate_transfer_of_a_ringing_call(gw, lab):
    in_service(gw, "2001", "2002")
    since = agent_ready(gw)
    lab.outside_call(DNIS, ANI)
    wait(gw, "2001", ["RINGING"], since + 2)
    original = params(wait(gw, "2001", ["RINGING"], since + 2)[0])["CALLID"]
    assert gw.code("ImmediateTransfer", device="2001", deviceTo="2002") == 0
    wait(gw, "2001", ["RINGING", "CONNECTIONCLEARED"], since + 2)
    ring2, = wait(gw, "2002", ["RINGING"], since)
    assert [params(ring2)[k] for k in ("CALLID", "ANI", "DNIS", "CALLTYPE")] == [original, ANI, DNIS, "1"]


def test_redirect_is_follow_me_to_another_number(gw, lab):
    in_service(gw, "2001", "2003")
    since = agent_ready(gw)
    assert gw.code("Redirect", device="2001", deviceTo="2003") == 0
    assert lab.ami.action("DBGet", Family="CF", Key="2001").get("Response") == "Success"
    lab.outside_call(DNIS, ANI)
    ring3, = wait(gw, "2003", ["RINGING"], since)
    assert params(ring3)["ANI"] == ANI
    lab.phones["2003"].accept()
    wait(gw, "2003", ["RINGING", "ANSWERED"], since)
    assert names(device_events(gw, "2001", since + 2)) == []      # 2001 never rang
    assert gw.code("Redirect", device="2001", deviceTo="") == 0
    assert lab.ami.action("DBGet", Family="CF", Key="2001").get("Response") == "Error"


def test_hold_and_resume_on_the_phone(gw, lab):
    in_service(gw, "2001")
    agent_ready(gw)
    seen = len(lab.ami.events)
    call_id, since = customer_on(gw, lab)
    lab.phones["2001"].command("hold")
    wait(gw, "2001", ["RINGING", "ANSWERED", "HELD"], since)
    lab.phones["2001"].command("resume")
    got = wait(gw, "2001", ["RINGING", "ANSWERED", "HELD", "RETRIEVE"], since)
    assert {params(e)["CALLID"] for e in got} == {call_id}
    keep_stream(lab, "phone_hold_resume", seen)


def test_blind_transfer_on_the_phone(gw, lab):
    in_service(gw, "2001", "2002")
    agent_ready(gw)
    seen = len(lab.ami.events)
    original, since = customer_on(gw, lab)
    lab.phones["2001"].command("transfer", "2002")
    wait(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    ring2, = wait(gw, "2002", ["RINGING"], since)
    assert [params(ring2)[k] for k in ("CALLID", "ANI", "DNIS", "CALLTYPE")] == [original, ANI, DNIS, "1"]
    lab.phones["2002"].accept()
    wait(gw, "2002", ["RINGING", "ANSWERED"], since)
    keep_stream(lab, "phone_blind_transfer", seen)


def test_recording_file_carries_the_call_id(gw, lab):
    in_service(gw, "2001")
    agent_ready(gw)
    call_id, _ = customer_on(gw, lab)
    seen = len(lab.ami.events)
    assert gw.code("StartRec", device="2001") == 0
    start = lab.ami.wait_event(lambda e: e.get("Event") == "MixMonitorStart", since=seen)
    assert start["Channel"].startswith("PJSIP/2001-")
    monitor = lab.scratch / "spool" / "monitor"
    (rec,) = wait_for(lambda: [f for f in monitor.iterdir() if call_id in f.name], 5, what="a recording of the call")
    assert rec.name.startswith(f"smartcti-{call_id}-") and rec.suffix == ".wav"
    # the phone's audio goes in (16-bit 8 kHz: 16,000 bytes a second after the 44 of the header)
    wait_for(lambda: rec.stat().st_size > 44 + 8000, 10, what="half a second of the call recorded")
    seen = len(lab.ami.events)
    assert gw.code("StopRec", device="2001") == 0
    stop = lab.ami.wait_event(lambda e: e.get("Event") == "MixMonitorStop", since=seen)
    assert stop["Channel"].startswith("PJSIP/2001-")


def test_get_call_list_shows_the_callers_waiting_in_the_queue(gw, lab):
    in_service(gw, "2001")
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0      # logged on, not ready
    assert gw.call("GetCallList", groupID="701") == ""
    lab.outside_call(DNIS, "4899990001")
    wait_for(lambda: "4899990001" in gw.call("GetCallList", groupID="701"), 10, what="the first one waiting")
    lab.outside_call(DNIS, "4899990002")
    wait_for(lambda: gw.call("GetCallList", groupID="701").count("4899990") == 2, 10, what="two waiting")
    listing = gw.call("GetCallList", groupID="701")
    assert listing.index("4899990001") < listing.index("4899990002"), listing     # oldest first


def test_asterisk_restart_is_resynchronised(gw, lab):
    """Asterisk dies with a call up and an agent ready: after it is back, Protheus hears the call ended
    and the agent logged off (the queue members were not persistent)."""
    in_service(gw, "2001")
    agent_ready(gw)
    call_id, since = customer_on(gw, lab)
    lab.restart()
    # the core corrects the agent first, then the calls (notify.Notifier.resync)
    got = wait(gw, "2001", ["RINGING", "ANSWERED", "LOGGEDOFF", "CONNECTIONCLEARED"], since)
    assert params(got[3])["CALLID"] == call_id
    wait_for(lambda: gw.code("SystemStatus") == 0, 15, what="link up again")
    assert gw.code("queryAgentState", cDevice="2001") == 25
    # and it serves again: the agent logs on and takes the next call
    since = agent_ready(gw)
    lab.outside_call(DNIS, ANI)
    wait(gw, "2001", ["LOGGEDON", "READY", "RINGING"], since)


# ------------------------------------------------------------ the ANS protocol IVR
def ans_config(lab: Lab, folder: Path, **ivr) -> dict:
    cfg = config(lab)
    cfg["protocol"] = {"registro_ans": "123456", "database": str(folder / "protocols.sqlite"),
                       "agi_listen": "127.0.0.1:0", "associated_data": "5|{protocolo};{ani}",
                       "ivr": {"intro": "protocolo-intro", "repeat_key": "", **ivr}}
    return cfg


@pytest.fixture
def gw_ans(lab, tmp_path):
    g = RunningGateway(ans_config(lab, tmp_path))
    try:
        # the dialplan's AGI() reaches the gateway's FastAGI port through a global variable
        lab.ami.action("Setvar", Variable=AGI_PORT_VARIABLE, Value=str(g.gateway.agi.port))
        yield g
    finally:
        g.close()
        lab.reset()


def protocol_records(gw, **query) -> list[dict]:
    from urllib.parse import urlencode
    status, body, _ = gw.http("GET", f"/protocols?{urlencode(query)}")
    assert status == 200, body
    return json.loads(body)["protocols"]


def caller_in_the_ivr(gw, lab) -> tuple[int, dict, str]:
    """Agent 2001 ready, an outside caller dials the IVR: (mark, the AGIExecStart of SAY DIGITS, the number)."""
    in_service(gw, "2001")
    agent_ready(gw)
    since, seen = mark(gw), len(lab.ami.events)
    lab.outside_call(PROTOCOL_NUMBER, ANI)
    said = lab.ami.wait_event(lambda e: e.get("Event") == "AGIExecStart" and
                              e.get("Command", "").startswith("SAY DIGITS"), timeout=CALL_WAIT, since=seen)
    return since, said, said["Command"].split()[2]


def test_the_ivr_issues_speaks_and_the_agents_pop_carries_the_number(gw_ans, lab):
    """An outside caller dials the IVR: AGI(agi://…/protocolo) issues the number, sets PROTOCOLO_ANS and
    speaks it, then Queue() rings the agent, whose RINGING carries it through the template; the record
    follows the call under the CALLID Protheus sees, and the recording is named after it."""
    gw = gw_ans
    since, said, number = caller_in_the_ivr(gw, lab)
    assert len(number) == 20 and number.startswith("123456")
    ringing, = wait(gw, "2001", ["RINGING"], since)
    p = params(ringing)
    assert p["ASSOCIATEDDATA"] == f"5|{number};{ANI}" and p["CALLTYPE"] == "1"
    # the agent's channel carries the variable too (inherited: __PROTOCOLO_ANS)
    agent_chan = next(c["Channel"] for c in lab.channels() if c["Channel"].startswith("PJSIP/2001-"))
    assert lab.ami.action("Getvar", Channel=agent_chan, Variable="PROTOCOLO_ANS").get("Value") == number
    assert gw.code("Answer", device="2001") == 21
    lab.phones["2001"].accept()
    wait(gw, "2001", ["RINGING", "ANSWERED"], since)
    (record,) = protocol_records(gw, call_id=p["CALLID"])
    assert (record["protocol"], record["channel"], record["device"], record["agent"], record["status"]) == (
        number, "phone", "2001", "1234", "answered")
    assert record["ani"] == ANI
    assert gw.code("StartRec", device="2001") == 0
    monitor = lab.scratch / "spool" / "monitor"
    (rec,) = wait_for(lambda: [f for f in monitor.iterdir() if number in f.name], 5, what="the recording")
    assert rec.name.startswith(f"smartcti-{number}-")
    assert wait_for(lambda: protocol_records(gw, call_id=p["CALLID"])[0]["recording"], 5).endswith(rec.name)


def test_a_caller_who_hangs_up_during_the_announcement(gw_ans, lab):
    gw = gw_ans
    since, said, number = caller_in_the_ivr(gw, lab)
    lab.ami.action("Hangup", Channel=said["Channel"])
    record = wait_for(lambda: (r := gw.http("GET", f"/protocols/{number}")) and
                      json.loads(r[1])["status"] == "caller_hung_up" and json.loads(r[1]), CALL_WAIT,
                      what="the record says the caller hung up")
    assert [h["status"] for h in record["history"]] == ["issued", "caller_hung_up"]
    wait_for(lambda: 'smartcti_protocol_ivr_total{what="hangups"} 1.0' in gw.http("GET", "/metrics")[1].decode(),
             5, what="the IVR's hang-up counted in /metrics")
    # the AGI session is closed on our side, the call never reached the queue
    wait_for(lambda: not any(c["Channel"].startswith("Local/") for c in lab.channels()), CALL_WAIT,
             what="the caller's channels gone")
    assert "RINGING" not in names(device_events(gw, "2001", since))


def test_a_queue_call_that_skipped_the_ivr_gets_its_number_as_it_rings(lab, tmp_path):
    """No AGI in this call's dialplan (7001): the number is issued as the agent's phone rings, pops with the
    call, and is put on the caller's channel (inherited, for the CDR and a later transfer)."""
    g = RunningGateway(ans_config(lab, tmp_path))
    try:
        in_service(g, "2001")
        agent_ready(g)
        since = mark(g)
        lab.outside_call(DNIS, ANI)
        ringing, = wait(g, "2001", ["RINGING"], since)
        p = params(ringing)
        (record,) = protocol_records(g, call_id=p["CALLID"])
        number = record["protocol"]
        assert p["ASSOCIATEDDATA"] == f"5|{number};{ANI}"
        caller = next(c["Channel"] for c in lab.channels() if c["Channel"].endswith(";2"))
        wait_for(lambda: lab.ami.action("Getvar", Channel=caller, Variable="PROTOCOLO_ANS").get("Value") == number,
                 5, what="PROTOCOLO_ANS on the caller's channel")
    finally:
        g.close()
        lab.reset()


# ------------------------------------------------------------ queues and supervision
def queue_board(gw, group="701", service_level=20.0):
    return gw.in_loop(lambda: gw.link(int(LINK)).queues.snapshot(service_level)).get(group)


def test_queue_board_a_caller_waits_for_the_paused_agent_then_is_answered(gw, lab):
    """The only agent of vendas is paused: the caller waits on the board, the wait growing; the agent
    becomes ready and answers: answered 1, the wait (Asterisk's HoldTime) within 60 s, not within 1 s."""
    import time
    since = in_service(gw, "2001")
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0      # paused: logged on, not ready
    lab.outside_call(DNIS, ANI)
    (waiting,) = wait_for(lambda: (g := queue_board(gw)) and g.waiting, CALL_WAIT, what="the caller on the board")
    assert waiting.calling == ANI and waiting.call_id.startswith("17") and queue_board(gw).answered == 0
    caller = next(c for c in lab.channels() if c["Channel"].startswith("Local/7001@incoming-") and
                  c["Channel"].endswith(";1"))
    assert waiting.call_id == caller["Uniqueid"]           # the call's Linkedid: the id the agent's call gets
    wait_for(lambda: time.time() - queue_board(gw).waiting[0].since >= 2.0, 10, what="two seconds of waiting")
    assert queue_board(gw).waiting == [waiting]
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    ringing = wait(gw, "2001", ["LOGGEDON", "READY", "RINGING"], since)[2]
    assert params(ringing)["CALLID"] == waiting.call_id    # the board's waiting call is the agent's call
    assert queue_board(gw).waiting == [waiting]            # in the queue until the agent answers (app_queue)
    lab.phones["2001"].accept()
    wait(gw, "2001", ["LOGGEDON", "READY", "RINGING", "ANSWERED"], since)
    g = wait_for(lambda: (g := queue_board(gw, service_level=60)) and g.answered == 1 and g, 5, what="answered 1")
    assert (g.waiting, g.abandoned, g.service_level) == ([], 0, 1.0)
    assert queue_board(gw, service_level=1).service_level == 0.0
    metrics = gw.http("GET", "/metrics")[1].decode()
    assert f'smartcti_queue_answered_total{{group="701",link="{LINK}"}} 1.0' in metrics
    assert f'smartcti_queue_waiting{{group="701",link="{LINK}"}} 0.0' in metrics


def test_queue_board_a_caller_who_hangs_up_while_waiting_is_abandoned(gw, lab):
    in_service(gw, "2001")
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    lab.outside_call(DNIS, "4899990003")
    wait_for(lambda: (g := queue_board(gw)) and [w.calling for w in g.waiting] == ["4899990003"], CALL_WAIT,
             what="the caller on the board")
    lab.ami.action("Hangup", Channel="/^Local\\/7001@incoming-.*;1$/")
    g = wait_for(lambda: (g := queue_board(gw)) and g.abandoned == 1 and g, CALL_WAIT, what="abandoned 1")
    assert (g.waiting, g.answered, g.service_level) == ([], 0, None)
    assert "RINGING" not in names(device_events(gw, "2001"))


def spy_channel(lab: Lab, supervisor: str) -> dict:
    return next((c for c in lab.channels() if c["Channel"].startswith(f"PJSIP/{supervisor}-")), {})


def test_supervisor_listens_whispers_and_barges_into_an_agents_call(gw, lab):
    """Supervisor 2003 (in service too: the spy rings its phone, but is no call for its Protheus) listens to
    2001's call with a customer; then whispers, then barges; the customer hanging up ends the barge."""
    in_service(gw, "2001", "2003")
    agent_ready(gw)
    call_id, since = customer_on(gw, lab)
    link = gw.link(int(LINK))
    assert link.spy_supported is True
    assert gw.run(link.spy("2003", "2002", "listen")) == 3           # 2002 has no call
    assert gw.run(link.spy("2999", "2001", "listen")) == 18          # no such endpoint
    assert gw.run(link.spy("2003", "2001", "shout")) == 3
    agent_chan = next(c["Channel"] for c in lab.channels() if c["Channel"].startswith("PJSIP/2001-"))
    for mode, options in (("listen", "qES"), ("whisper", "qESw"), ("barge", "qESB")):
        seen = len(lab.ami.events)
        assert gw.run(link.spy("2003", "2001", mode)) == 0
        lab.phones["2003"].accept()                                  # the supervisor picks up
        start = lab.ami.wait_event(lambda e: e.get("Event") == "ChanSpyStart", CALL_WAIT, since=seen)
        assert start["SpyerChannel"].startswith("PJSIP/2003-") and start["SpyeeChannel"] == agent_chan
        chan = spy_channel(lab, "2003")
        assert (chan["Application"], chan["ApplicationData"]) == ("ChanSpy", f"{agent_chan},{options}")
        assert bridged(lab, "PJSIP/2001-", "Local/7001@incoming")     # the agent's call goes on as it was
        if mode != "barge":
            lab.phones["2003"].hangup()
            lab.ami.wait_event(lambda e: e.get("Event") == "ChanSpyStop", CALL_WAIT, since=seen)
            wait_for(lambda: not spy_channel(lab, "2003"), 5, what="the supervisor's channel gone")
    # the customer hangs up: the agent's channel ends, and with it the barge (ChanSpy's E)
    seen = len(lab.ami.events)
    lab.ami.action("Hangup", Channel="/^Local\\/7001@incoming-.*;1$/")
    lab.ami.wait_event(lambda e: e.get("Event") == "ChanSpyStop", CALL_WAIT, since=seen)
    wait_for(lambda: not spy_channel(lab, "2003"), CALL_WAIT, what="the supervisor's channel gone with the call")
    wait(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    assert names(device_events(gw, "2003", since)) == []              # no call of 2003's for Protheus
