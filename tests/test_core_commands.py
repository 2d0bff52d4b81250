"""The command planner, without sockets: requests produced, state kept, values answered."""
import pytest

from smartcti_gateway.core import pabx as p
from smartcti_gateway.core.codes import Result
from smartcti_gateway.core.commands import Commands, split_groups
from smartcti_gateway.core.health import LinkHealth
from smartcti_gateway.core.model import Switch
from smartcti_gateway.core.operations import OPERATIONS

CS = p.ConnectionState


def make() -> Commands:
    return Commands(Switch(), "smartcti-gateway test")


def run(c: Commands, op: str, reply=None, error: p.PabxError | None = None, **args):
    """Plan ``op``, then feed ``reply`` (or ``error``); returns (request, value)."""
    step = c.plan(op, args)
    if step.request is None:
        return None, step.done(None)
    if error is not None:
        return step.request, step.failed(error)
    return step.request, step.done(reply)


def in_service(c: Commands, device="2001", url="http://protheus:8080/ws/SMARTCTIWSEVENTING.apw"):
    return run(c, "AgentInService", device=device, ipaddress=url)


def test_every_operation_has_a_plan():
    c = make()
    for name, op in OPERATIONS.items():
        step = c.plan(name, {param: "2001" for param in op.params})
        assert step.request is not None or step.done(None) is not None, name


def test_agent_in_service_monitors_once_and_counts_processes():
    c = make()
    req, value = in_service(c)
    assert req == p.MonitorStart("2001") and value == 0
    req, value = in_service(c, url="http://other:8080/ws/SMARTCTIWSEVENTING.apw")
    assert req is None and value == 0  # the listener process: no second monitor
    dev = c.switch.device("2001")
    assert dev.in_service == 2
    assert dev.event_urls == ["http://protheus:8080/ws/SMARTCTIWSEVENTING.apw",
                              "http://other:8080/ws/SMARTCTIWSEVENTING.apw"]


def test_one_agent_out_of_service_releases_the_device():
    """smartcti.md §10.1: two AgentInService per user, one AgentOutOfService when none is left."""
    c = make()
    in_service(c)
    in_service(c)                                  # main session and listener
    req, value = run(c, "AgentOutOfService", device="2001")
    assert req == p.MonitorStop("2001") and value == 0
    assert c.switch.device("2001") is None         # forgotten, its events with it
    req, value = run(c, "AgentOutOfService", device="2001")
    assert req is None and value == 0              # already released: nothing to ask the PABX
    # Close() is followed at once by a new AgentInService: the device is taken again
    req, value = in_service(c)
    assert req == p.MonitorStart("2001") and value == 0 and c.switch.device("2001").in_service == 1


def test_agent_in_service_refused_by_pabx_leaves_no_device():
    c = make()
    req, value = run(c, "AgentInService", error=p.PabxError(Result.INVALID_DEVICE), device="9999",
                     ipaddress="http://protheus:8080/ws/SMARTCTIWSEVENTING.apw")
    assert value == 18 and c.switch.device("9999") is None


@pytest.mark.parametrize("url", ["file:///etc/passwd", "not a url", "ftp://protheus/x", "gopher://h:70/",
                                 "http://", "http:///etc/passwd", "javascript:alert(1)", "/etc/passwd",
                                 "C:\\temp\\x.apw", "HTTP//protheus/x"])
def test_agent_in_service_refuses_what_is_not_an_http_url(url):
    c = make()
    step = c.plan("AgentInService", {"device": "2001", "ipaddress": url})
    assert step.request is None and step.done(None) == 16
    assert "is not an http:// or https:// URL" in step.detail and "MV_TKCTIEV" in step.detail
    assert c.switch.device("2001") is None and c.outbox == []


@pytest.mark.parametrize("url", ["http://protheus:8080/ws/SMARTCTIWSEVENTING.apw", "HTTPS://10.0.0.9/x.apw",
                                 " http://protheus/ws/SMARTCTIWSEVENTING.apw?WSDL "])
def test_agent_in_service_takes_http_and_https_urls(url):
    step = make().plan("AgentInService", {"device": "2001", "ipaddress": url})
    assert step.request == p.MonitorStart("2001") and not step.detail


def test_agent_in_service_keeps_the_device_string_as_sent():
    c = make()
    step = c.plan("AgentInService", {"device": " 2001 ", "ipaddress": "http://protheus/ev"})
    assert step.request == p.MonitorStart("2001")
    step.done(None)
    assert c.switch.device("2001").wire_name == " 2001 "


def test_each_session_keeps_its_own_spelling_of_the_device():
    """Seen: one AgentInService for ' 2001 ' relabelled every event of the '2001' sessions."""
    c = make()
    for i in range(4):
        run(c, "AgentInService", device="2001", ipaddress=f"http://p{i}/ev")
    run(c, "AgentInService", device=" 2001 ", ipaddress="http://odd/ev")
    notes = c.notifier.on_pabx_event(p.CallEvent(p.CallEventType.HELD, "2001", "C1"))
    assert sorted((n.cdevice, n.urls) for n in notes) == [
        (" 2001 ", ("http://odd/ev",)), ("2001", ("http://p0/ev", "http://p1/ev", "http://p2/ev", "http://p3/ev"))]
    # two spellings on one Protheus server (a padded field and a trimmed one): each session hears its own
    run(c, "AgentInService", device="2001 ", ipaddress="http://p0/ev")
    notes = c.notifier.on_pabx_event(p.CallEvent(p.CallEventType.RETRIEVED, "2001", "C1"))
    assert [(n.cdevice, n.urls) for n in notes if "http://p0/ev" in n.urls] == [
        ("2001", ("http://p0/ev", "http://p1/ev", "http://p2/ev", "http://p3/ev")), ("2001 ", ("http://p0/ev",))]


def test_agent_in_service_while_the_pabx_is_down_is_taken_and_owes_inservice():
    """smartcti.md §10.4: Connect() never retries; a refusal leaves the user without CTI."""
    c = make()
    c.health = LinkHealth(grace=30, clock=lambda: 0.0)
    c.health.failed("refused")
    req, value = in_service(c)
    assert req is None and value == 0
    dev = c.switch.device("2001")
    assert dev.monitored is False and c.outbox == []         # INSERVICE only once it is monitored
    # up, but the monitor request is the one that finds the PABX gone: the same
    c2 = make()
    step = c2.plan("AgentInService", {"device": "2001", "ipaddress": "http://p/ev"})
    assert step.failed(p.PabxUnavailable(Result.OUT_OF_SERVICE, "refused")) == 0
    assert c2.switch.device("2001").monitored is False and c2.outbox == []
    # a second session while still waiting is answered alone and waits too
    step = c2.plan("AgentInService", {"device": "2001", "ipaddress": "http://listener/ev"})
    assert step.request is None and step.done(None) == 0
    assert c2.switch.device("2001").in_service == 2 and c2.outbox == []
    owed = c2.notifier.in_service_owed(c2.switch.device("2001"))
    assert [(n.name, n.urls) for n in owed] == [("INSERVICE", ("http://p/ev", "http://listener/ev"))]


def test_empty_device_is_invalid_without_asking_the_pabx():
    c = make()
    for op in ("Hold", "MakeCall", "Logon", "queryAgentState"):
        req, value = run(c, op, device="", cDevice="", telephoneNumber="123", agentID="1", groupID="701")
        assert req is None and value == 18, op
    req, value = run(c, "GetInfoChamAtiv", cDevice="")
    assert req is None and value.split("#")[:3] == ["CMD", "INFOCHAMATIV", "18"]


def test_ready_with_empty_agent_and_group_uses_the_logon():
    c = make()
    in_service(c)
    req, value = run(c, "LogonPass", device="2001", agentID="1234", groupID="701, 702", agentPass="s3cret")
    assert req == p.SetAgentState("2001", "1234", ("701", "702"), p.AgentState.LOGGED_ON, "s3cret") and value == 0
    req, value = run(c, "Ready", device="2001", agentID="", groupID="")
    assert req == p.SetAgentState("2001", "1234", ("701", "702"), p.AgentState.READY, "s3cret")
    assert c.switch.device("2001").agent.state is p.AgentState.READY
    req, _ = run(c, "NotReady", device="2001")  # elements missing altogether
    assert req.agent_id == "1234" and req.groups == ("701", "702") and req.state is p.AgentState.NOT_READY
    req, _ = run(c, "Logoff", device="2001", agentID="", groupID="")
    assert req.agent_id == "1234" and req.state is p.AgentState.LOGGED_OFF


def test_password_never_in_request_repr():
    req = p.SetAgentState("2001", "1234", ("701",), p.AgentState.LOGGED_ON, "s3cret")
    assert "s3cret" not in repr(req)
    assert "s3cret" not in repr(p.MakeCall("2001", "123", "", "s3cret"))


def test_logon_without_agent_is_invalid_user():
    req, value = run(make(), "Logon", device="2001", agentID="", groupID="701")
    assert req is None and value == Result.INVALID_USER


def test_split_groups():
    assert split_groups(" 701, 702,,703 ,") == ("701", "702", "703")
    assert split_groups("") == ()


def test_pabx_refusal_is_the_answer():
    c = make()
    _, value = run(c, "Logon", error=p.PabxError(Result.INVALID_GROUP_ID), device="2001", agentID="1", groupID="999")
    assert value == 23


def test_make_call_notes_the_outbound_call():
    c = make()
    in_service(c)
    req, value = run(c, "MakeCallPass", reply="08/07/24 10:46:19 010A 0001/00", device="2001",
                     telephoneNumber="4832810000", agentID="1", agentPass="pw", route="0")
    assert req == p.MakeCall("2001", "4832810000", "0", "pw") and value == 0
    call = c.switch.call_in_state("2001", CS.INITIATED)
    assert call.call_id == "08/07/24 10:46:19 010A 0001/00" and call.direction is p.Direction.OUTBOUND
    # the next hang-up names that call
    req, _ = run(c, "ConnectionClear", device="2001", CallID="")
    assert req == p.ClearConnection("2001", "08/07/24 10:46:19 010A 0001/00")


def test_make_call_without_number():
    req, value = run(make(), "MakeCall", device="2001", telephoneNumber="")
    assert req is None and value == Result.INVALID_PHONE_NUMBER


def test_call_commands_name_the_right_call():
    c = make()
    in_service(c)
    sw = c.switch
    sw.apply(p.CallEvent(p.CallEventType.DELIVERED, "2001", "A", calling="4830000000", called="7001",
                         direction=p.Direction.INBOUND))
    assert run(c, "Answer", device="2001")[0] == p.AnswerCall("2001", "A")
    sw.apply(p.CallEvent(p.CallEventType.ESTABLISHED, "2001", "A"))
    assert run(c, "Hold", device="2001")[0] == p.HoldCall("2001", "A")
    sw.apply(p.CallEvent(p.CallEventType.HELD, "2001", "A"))
    assert run(c, "Retrieve", device="2001")[0] == p.RetrieveCall("2001", "A")
    assert run(c, "Hold", device="2001")[0] == p.HoldCall("2001", "")  # nothing connected: the PABX decides
    assert run(c, "ConnectionClear", device="2001", CallID="B")[0] == p.ClearConnection("2001", "B")
    assert run(c, "Consultation", device="2001", deviceTo="2002", Route="")[0] == p.ConsultationCall("2001", "2002", "")
    assert run(c, "Consultation", device="2001", deviceTo="")[1] == Result.INVALID_PHONE_NUMBER
    assert run(c, "Transfer", device="2001")[0] == p.TransferCall("2001")
    assert run(c, "Conference", device="2001")[0] == p.ConferenceCall("2001")
    assert run(c, "Alternate", device="2001")[0] == p.AlternateCall("2001")
    assert run(c, "Redirect", device="2001", deviceTo="2005")[0] == p.SetForwarding("2001", "2005")
    assert run(c, "Redirect", device="2001", deviceTo="")[0] == p.SetForwarding("2001", "")


def test_system_status():
    # answered from the link's health (keep-alives judge it), never by a PABX round trip of its own
    c = make()
    assert run(c, "SystemStatus") == (None, 0)
    assert run(c, "selfTest") == (None, 0)
    assert run(c, "showVersion") == (None, "smartcti-gateway test")


def test_system_status_tells_the_truth_when_no_listener_can_be_closed():
    clock = [0.0]
    c = make()
    c.health = LinkHealth(grace=30, clock=lambda: clock[0])
    c.health.failed("refused")
    assert run(c, "SystemStatus") == (None, 22)     # nobody in service: the "Teste" button hears it at once
    in_service(c)
    assert run(c, "SystemStatus") == (None, 0)      # listeners exist: the grace period protects them
    clock[0] = 31
    assert run(c, "SystemStatus") == (None, 22)


@pytest.mark.parametrize("state,code", [
    (p.AgentState.LOGGED_OFF, 25), (p.AgentState.LOGGED_ON, 26), (p.AgentState.WORK_AFTER_CALL, 27),
    (p.AgentState.READY, 28), (p.AgentState.BUSY, 29), (p.AgentState.NOT_READY, 30)])
def test_query_agent_state_codes(state, code):
    assert run(make(), "queryAgentState", reply=p.AgentInfo(state, "1234", ("701",)), cDevice="2001")[1] == code


def test_query_agent_state_never_answers_a_non_state():
    clock = [0.0]
    c = make()
    c.health = LinkHealth(grace=30, clock=lambda: clock[0])
    in_service(c)
    run(c, "Logon", device="2001", agentID="1234", groupID="701")
    run(c, "NotReady", device="2001")
    # the poll that discovers the fault is answered as the grace period says (smartcti.md §10.3); the link
    # marks itself down before the step's failure is read, as Link.handle does
    c.health.failed("refused")
    assert run(c, "queryAgentState", error=p.PabxUnavailable(Result.OUT_OF_SERVICE), cDevice="2001")[1] == 30
    assert run(c, "queryAgentState", error=p.PabxUnavailable(Result.INTERNAL_ERROR), cDevice="2001")[1] == 30
    clock[0] = 31
    assert run(c, "queryAgentState", error=p.PabxUnavailable(Result.OUT_OF_SERVICE), cDevice="2001")[1] == 16
    assert run(c, "queryAgentState", error=p.PabxUnavailable(Result.INTERNAL_ERROR), cDevice="2001")[1] == 16
    # a refusal is not a lost link: answer the state we know
    c.health.ok()
    assert run(c, "queryAgentState", error=p.PabxError(Result.INVALID_DEVICE), cDevice="2001")[1] == 30
    assert run(c, "queryAgentState", error=p.PabxError(Result.INVALID_DEVICE), cDevice="2009")[1] == 25


def test_query_agent_state_busy_comes_from_the_calls():
    """One source of truth: what queryAgentState answers is what the page shows and /metrics counts."""
    c = make()
    in_service(c)
    run(c, "Logon", device="2001", agentID="1234", groupID="701")
    run(c, "Ready", device="2001")
    c.notifier.on_pabx_event(p.CallEvent(p.CallEventType.DELIVERED, "2001", "C1", calling="4830000000"))
    c.notifier.on_pabx_event(p.CallEvent(p.CallEventType.ESTABLISHED, "2001", "C1"))
    assert c.switch.agent_state("2001") is p.AgentState.BUSY
    assert run(c, "queryAgentState", reply=p.AgentInfo(p.AgentState.BUSY, "1234"), cDevice="2001")[1] == 29
    assert c.switch.device("2001").agent.state is p.AgentState.READY    # the agent's own state is kept
    c.notifier.on_pabx_event(p.CallEvent(p.CallEventType.CONNECTION_CLEARED, "2001", "C1"))
    assert run(c, "queryAgentState", reply=p.AgentInfo(p.AgentState.READY, "1234"), cDevice="2001")[1] == 28
    # the PABX says busy, the model knows no call: a call event was missed; the link reads the calls again
    assert run(c, "queryAgentState", reply=p.AgentInfo(p.AgentState.BUSY, "1234"), cDevice="2001")[1] == 28
    assert c.resync_wanted == {"2001"}


def test_get_info_cham_ativ_formats():
    c = make()
    in_service(c)
    calls = [p.CallInfo("08/07/24 10:46:19 010A 0974/00", CS.CONNECTED, calling="4832810000", called="7001",
                        other_devices=("4832810000",), group="701", trunks="T01", category="1", data="2|11122233344")]
    req, value = run(c, "GetInfoChamAtiv", reply=calls, cDevice="2001")
    assert req == p.SnapshotDevice("2001")
    assert value == ("CMD#INFOCHAMATIV#0#2001#08/07/24 10:46:19 010A 0974/00#4832810000#4832810000#7001#701"
                     "#T01#1#2|11122233344")
    assert run(c, "GetInfoChamAtiv", reply=[], cDevice="2001")[1] == "CMD#INFOCHAMATIV#11#2001"
    _, value = run(c, "getActiveCallInfo", error=p.PabxUnavailable(Result.OUT_OF_SERVICE), cDevice="2001")
    assert value == "CMD#INFOCHAMATIV#22#2001"


def test_get_info_cham_ativ_fills_every_field():
    """Protheus drops empty fields and then reads field 9: no field may be empty."""
    c = make()
    _, value = run(c, "GetInfoChamAtiv", reply=[p.CallInfo("X", CS.ALERTING)], cDevice="2001")
    fields = value.split("#")
    assert len(fields) == 12 and all(f.strip() for f in fields)
    assert fields[8] == "0"  # DAC group, numeric for Val(): no group, no DNIS


@pytest.mark.parametrize("group,dnis,field9", [
    ("701", "7001", "701"),               # the PABX's group
    ("", "7001", "7001"),                 # none: what Protheus computes from the DNIS itself
    ("", "08007001234", "1234"),          # Val(last five characters of Str(Val(DNIS)))
    ("", "4832817001", "17001"),
    ("", "48 3281-7001", "48"),           # Val() stops at the first non-digit
    ("", "", "0"),
    ("DAC-1", "7002", "7002"),            # a group Val() cannot read: the DNIS fallback
])
def test_get_info_cham_ativ_field_9_is_what_protheus_would_record(group, dnis, field9):
    """smartcti.md §10.5: field 9 cannot be empty, and a placeholder 0 records ACD group 0."""
    _, value = run(make(), "GetInfoChamAtiv", reply=[p.CallInfo("X", CS.CONNECTED, called=dnis, group=group)],
                   cDevice="2001")
    assert value.split("#")[8] == field9


def test_get_call_list():
    c = make()
    calls = [p.GroupCall("01/04/13 16:18:18 010A 801500", CS.QUEUED, "", "4830000000"),
             p.GroupCall("01/04/13 16:18:20 010A 801501", CS.CONNECTED, "2004", "4830000001")]
    req, value = run(c, "GetCallList", reply=calls, groupID="701")
    assert req == p.QueryGroupCalls("701")
    assert value == ("CMD#LISTA_CHAMADAS#0#701#01/04/13 16:18:18 010A 801500,7,4830000000;"
                     "01/04/13 16:18:20 010A 801501,3,2004")
    assert [e.split(",")[1] for e in value.split(";")] == ["7", "3"]
    assert run(c, "GetCallList", reply=[], groupID="701")[1] == ""
    assert run(c, "GetCallList", groupID="")[1] == ""
    assert run(c, "GetCallList", error=p.PabxUnavailable(Result.OUT_OF_SERVICE), groupID="701")[1] == ""
