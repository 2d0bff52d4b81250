"""All 32 operations through real SOAP clients built from the served WSDL, against the simulated NGC.

The same call-centre scenario runs with zeep and with PHP's SoapClient; the
values each client decodes are checked, and the simulator's state shows the
commands really reached the PABX.
"""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import zeep

from smartcti_gateway.core.operations import OPERATIONS

from .support import CMD_PATH, RunningGateway, simulated_config, wait_for

INTEROP = Path(__file__).resolve().parent / "interop"


class ZeepCaller:
    def __init__(self, wsdl_url: str):
        self.client = zeep.Client(wsdl_url)

    def __call__(self, op: str, **args):
        return getattr(self.client.service, op)(**args)


class PhpCaller:
    def __init__(self, wsdl_url: str):
        self.wsdl_url = wsdl_url

    def __call__(self, op: str, **args):
        res = subprocess.run(["php", str(INTEROP / "soapclient.php"), self.wsdl_url],
                             input=json.dumps([{"op": op, "args": args}]), capture_output=True, text=True, timeout=60)
        out = json.loads(res.stdout)
        assert res.returncode == 0, out
        return out[0]["return"]


def php_missing():
    if shutil.which("php") is None:
        return "php not installed (scripts/test installs php-cli php-soap)"
    if "soap" not in subprocess.run(["php", "-m"], capture_output=True, text=True).stdout.lower().split():
        return "PHP soap extension missing (scripts/test installs php-soap)"
    return None


@pytest.fixture(params=["zeep", "php"])
def client(request):
    if request.param == "php" and php_missing():
        pytest.skip(php_missing())
    gw = RunningGateway(simulated_config())
    wsdl_url = f"http://{gw.host}{CMD_PATH}?wsdl"
    caller = ZeepCaller(wsdl_url) if request.param == "zeep" else PhpCaller(wsdl_url)
    called: list[str] = []

    def call(op, **args):
        called.append(op)
        return caller(op, **args)

    yield gw, call, called
    gw.close()


def ringing_at(gw, device):
    return wait_for(lambda: next((c for c, s in gw.conn_state(device).items() if s == "alerting"), None),
                    what=f"a call ringing at {device}")


def state_of(gw, device, call_id, state):
    wait_for(lambda: gw.conn_state(device).get(call_id) == state, what=f"{call_id} {state} at {device}")


def test_call_centre_scenario_with_every_operation(client):
    gw, call, called = client
    # link and service
    assert call("SystemStatus") == 0
    assert call("selfTest") == 0
    assert call("showVersion") == "smartcti-gateway 0.1.0"
    for device in ("2001", "2002", "2003", "2004"):
        assert call("AgentInService", device=device, ipaddress=gw.events_url) == 0
    assert call("AgentInService", device="9999", ipaddress=gw.events_url) == 18

    # agent
    assert call("LogonPass", device="2001", agentID="1234", groupID="701,702", agentPass="pw") == 0
    assert call("queryAgentState", cDevice="2001") == 26
    assert call("ReadyPass", device="2001", agentID="1234", groupID="701,702", agentPass="pw") == 0
    assert call("NotReadyPass", device="2001", agentID="", groupID="", agentPass="") == 0
    assert call("queryAgentState", cDevice="2001") == 30
    assert call("Ready", device="2001", agentID="", groupID="") == 0
    assert call("queryAgentState", cDevice="2001") == 28

    # an ACD call rings, is inspected, answered, held, retrieved, recorded
    status, body = gw.sim("/sim/inbound", {"ani": "4832810000", "dnis": "7001", "group": "701"})
    first = body["call_id"]
    state_of(gw, "2001", first, "alerting")
    info = call("GetInfoChamAtiv", cDevice="2001").split("#")
    assert info[2:5] == ["0", "2001", first] and info[8] == "701"
    assert call("getActiveCallInfo", cDevice="2001").split("#")[4] == first
    assert call("GetCallList", groupID="701") == f"CMD#LISTA_CHAMADAS#0#701#{first},2,2001"
    assert call("Answer", device="2001") == 0
    state_of(gw, "2001", first, "connected")
    assert call("Hold", device="2001") == 0
    state_of(gw, "2001", first, "held")
    assert call("Retrieve", device="2001") == 0
    state_of(gw, "2001", first, "connected")
    assert call("StartRec", device="2001") == 0
    assert call("StopRec", device="2001") == 0

    # consultation, alternate, transfer to 2002
    assert call("Consultation", device="2001", deviceTo="2002", Route="") == 0
    consult = ringing_at(gw, "2002")
    gw.sim("/sim/answer", {"device": "2002"})
    state_of(gw, "2001", consult, "connected")
    assert call("Alternate", device="2001") == 0
    state_of(gw, "2001", first, "connected")
    assert call("Alternate", device="2001") == 0
    state_of(gw, "2001", consult, "connected")
    assert call("Transfer", device="2001") == 0
    state_of(gw, "2002", first, "connected")
    assert call("Conference", device="2002") == 19  # nothing on hold to join
    assert call("ConnectionClear", device="2002", CallID="") == 0
    wait_for(lambda: gw.conn_state("2002") == {}, what="2002 idle")

    # outbound, blind transfer, immediate transfer
    assert call("MakeCall", device="2001", telephoneNumber="4832810000") == 0
    out = wait_for(lambda: next(iter(gw.conn_state("2001")), None), what="outbound call")
    wait_for(lambda: any(c["parties"].get("4832810000") == "CONECTADA" for c in gw.sim_state()["calls"]),
             what="outside number answered")
    assert call("OneStepCallTransfer", device="2001", deviceTo="2003") == 0
    state_of(gw, "2003", out, "alerting")
    assert call("ImmediateTransfer", device="2003", deviceTo="2004") == 0
    state_of(gw, "2004", out, "alerting")
    gw.sim("/sim/hangup", {"call_id": out})
    wait_for(lambda: gw.conn_state("2004") == {}, what="outside caller gone")

    # internal call with a password and a route, then a three-party conference
    assert call("MakeCallPass", device="2001", telephoneNumber="2002", agentID="1234", agentPass="pw", route="0") == 0
    internal = ringing_at(gw, "2002")
    gw.sim("/sim/answer", {"device": "2002"})
    state_of(gw, "2001", internal, "connected")
    assert call("Consultation", device="2001", deviceTo="2003", Route="0") == 0
    ringing_at(gw, "2003")
    gw.sim("/sim/answer", {"device": "2003"})
    wait_for(lambda: "connected" in gw.conn_state("2003").values(), what="2003 answered")
    assert call("Conference", device="2001") == 0
    wait_for(lambda: any({"2001", "2002", "2003"} <= set(c["parties"]) for c in gw.sim_state()["calls"]),
             what="three-party conference")
    assert call("ConnectionClear", device="2001", CallID="") == 0

    # follow-me
    assert call("Redirect", device="2004", deviceTo="2003") == 0
    assert gw.sim_state()["devices"]["2004"]["forward_to"] == "2003"
    assert call("Redirect", device="2004", deviceTo="") == 0

    # leaving
    assert call("NotReady", device="2001", agentID="1234", groupID="701,702") == 0
    assert call("Logoff", device="2001", agentID="1234", groupID="701,702") == 0
    assert call("Logon", device="2002", agentID="5678", groupID="703") == 0
    assert call("LogoffPass", device="2002", agentID="5678", groupID="703", agentPass="") == 0
    assert call("queryAgentState", cDevice="2002") == 25
    for device in ("2001", "2002", "2003", "2004"):
        assert call("AgentOutOfService", device=device) == 0

    assert set(called) == set(OPERATIONS), set(OPERATIONS) - set(called)
