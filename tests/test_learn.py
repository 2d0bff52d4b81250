"""``learn``: the dialect read off a capture. A capture of the gateway itself (default dialect) teaches
nothing new; a capture of a middleware speaking another shape (positional parameters, int call ids,
faults, plain answers, one method per event, polling) teaches exactly that shape; bad files and
empty captures get a clear error."""
from __future__ import annotations

import json

import pytest
import yaml

from smartcti_gateway.capture.learn import LearnError, Learner, learn, write_dialect
from smartcti_gateway.cli import main
from smartcti_gateway.pabx.digitro.dialect import Dialect

from .support import ENDPOINT, BackgroundLoop, Peers, RunningGateway, free_port, mark, wait_device
from .test_capture import LOCAL, http, soap_via, start_proxy


class Capture:
    """Records as capture writes them, built by hand: a middleware's conversation on both sides."""

    def __init__(self):
        self.records: list[dict] = []
        self.t = 1000.0
        self.conn = 0

    def _add(self, side, direction, conn, parsed):
        self.t += 0.01
        self.records.append({"t": self.t, "seq": len(self.records) + 1, "side": side, "dir": direction,
                             "conn": conn, "parsed": parsed})

    def command(self, op: str, args: dict, returned: str, *ngc: tuple[str, list, dict]):
        """Protheus sends ``op``; the middleware makes the NGC calls ``ngc`` (method, params, answer)."""
        self.conn += 1
        soap = self.conn
        self._add("soap", "to_middleware", soap, {"operation": op, "args": args})
        for method, params, answer in ngc:
            self.conn += 1
            self._add("xmlrpc", "to_pabx", self.conn, {"method": method, "params": params})
            self._add("xmlrpc", "from_pabx", self.conn, answer)
        self._add("soap", "from_middleware", soap, {"operation": op, "return": returned})

    def poll(self, method: str, events: list):
        self.conn += 1
        self._add("xmlrpc", "to_pabx", self.conn, {"method": method, "params": []})
        self._add("xmlrpc", "from_pabx", self.conn, {"result": events})

    def event(self, op: str, args: dict):
        self.conn += 1
        self._add("soap", "event_to_protheus", self.conn, {"operation": op, "args": args})
        self._add("soap", "event_answer", self.conn, {"operation": op, "return": "0"})


def ok(value=True):
    return {"result": value}


def fault(code):
    return {"fault": {"code": code, "string": "recusado"}}


def foreign_capture() -> list[dict]:
    c = Capture()
    c.poll("ura.eventos", [])
    c.command("AgentInService", {"device": "2001", "ipaddress": "http://protheus/ev"}, "0",
              ("ura.monitorarRamal", ["2001"], ok()))
    c.event("INSERVICE", {"CDEVICE": "2001", "ILINKID": "1"})
    c.command("Logon", {"device": "2001", "agentID": "1234", "groupID": "701"}, "0",
              ("ura.entrarFila", ["2001", "1234", "701"], ok()))
    c.poll("ura.eventos", [["ura.evLogado", "2001", 0, "", "", "", 0, "", "", "", "1234", "701", ""]])
    c.event("LOGGEDON", {"CDEVICE": "2001", "ILINKID": "1", "CAGENTID": "1234", "CGROUPID": "701"})
    c.command("Ready", {"device": "2001", "agentID": "", "groupID": ""}, "0", ("ura.ficarLivre", ["2001"], ok()))
    c.poll("ura.eventos", [["ura.evTocando", "2001", 77, "4832810000", "7001", "", 0, "701", "IN", "", "", "", ""]])
    c.event("RINGING", {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "77", "ANI": "4832810000", "DNIS": "7001",
                        "ASSOCIATEDDATA": "3|4832810000", "CALLTYPE": "1"})
    c.command("Answer", {"device": "2001"}, "0", ("ura.atender", ["2001", 77], ok()))
    c.poll("ura.eventos", [["ura.evAtendida", "2001", 77, "4832810000", "7001", "", 0, "701", "IN", "", "", "", ""]])
    c.event("ANSWERED", {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "77", "ANI": "4832810000", "DNIS": "7001"})
    c.command("queryAgentState", {"cDevice": "2001"}, "29",
              ("ura.situacaoOperador", ["2001"], ok({"codigo": "0", "situacao": "FALANDO", "operador": "1234"})))
    c.command("MakeCall", {"device": "2001", "telephoneNumber": "4833330000"}, "10",
              ("ura.discar", ["2001", "4833330000"], fault(105)))
    c.command("MakeCall", {"device": "2001", "telephoneNumber": "4899990000"}, "0",
              ("ura.discar", ["2001", "4899990000"], ok(78)))
    c.poll("ura.eventos", [["ura.evIniciada", "2001", 78, "2001", "4899990000", "", 0, "", "OUT", "", "", "", ""]])
    c.event("SERVICEINITIATED", {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "78", "ANI": "2001",
                                 "DNIS": "4899990000"})
    c.command("queryAgentState", {"cDevice": "2001"}, "28",
              ("ura.situacaoOperador", ["2001"], ok({"codigo": "0", "situacao": "LIVRE", "operador": "1234"})))
    c.poll("ura.eventos", [["ura.evTocando", "2001", 79, "4833330000", "7001", "", 0, "701", "DISC", "", "", "", ""]])
    c.event("RINGING", {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "79", "ANI": "4833330000", "DNIS": "7001",
                        "ASSOCIATEDDATA": "3|4833330000", "CALLTYPE": "3"})
    c.poll("ura.eventos", [["ura.evFalhou", "2001", 80, "2001", "4899990001", "", 0, "", "OUT", "106", "", "", ""]])
    c.event("CALLFAILURE", {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "80", "ANI": "2001",
                            "DNIS": "4899990001", "CAUSE": "11"})
    c.command("SystemStatus", {}, "0", ("ura.ping", [], ok(0)))
    return c.records


def call_list_capture(second_state: str = "RET") -> list[dict]:
    """A call answered then held, and one waiting, each time with the queue screen's GetCallList."""
    c = Capture()
    c.event("RINGING", {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "77", "ANI": "4832810000", "DNIS": "7001",
                        "ASSOCIATEDDATA": "3|4832810000", "CALLTYPE": "1"})
    c.event("ANSWERED", {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "77", "ANI": "4832810000", "DNIS": "7001"})

    def listing(state, returned, *extra):
        return ("ura.chamadasDaFila", ["701"], ok({"codigo": "0", "lista": [
            {"id": 77, "sit": state, "ramal": "2001", "origem": "4832810000"}, *extra]}))
    c.command("GetCallList", {"groupID": "701"}, "CMD#LISTA_CHAMADAS#0#701#77,3,2001", listing("CON", ""))
    c.event("HELD", {"CDEVICE": "2001", "ILINKID": "1", "CALLID": "77", "ANI": "4832810000", "DNIS": "7001"})
    waiting = {"id": 81, "sit": "FIL", "ramal": "", "origem": "4833330000"}
    c.command("GetCallList", {"groupID": "701"}, "CMD#LISTA_CHAMADAS#0#701#77,4,2001;81,7,4833330000",
              listing(second_state, "", waiting))
    return c.records


def test_call_states_and_the_call_lists_members_follow_what_protheus_was_told():
    dialect, report = learn(call_list_capture())
    assert dialect["call_states"] == {"CON": "connected", "RET": "held", "FIL": "queued"}
    assert {k: dialect["fields"][k] for k in ("calls", "call_state", "call_id", "device", "calling")} == {
        "calls": "lista", "call_state": "sit", "call_id": "id", "device": "ramal", "calling": "origem"}
    assert "call states: sit of lista (3 samples: CON=connected, FIL=queued, RET=held)" in report.learned
    loaded = Dialect.with_overrides(dialect)
    assert loaded.call_states["RET"].value == "held"
    # a member that does not tell held from answered names no state: said, nothing guessed
    dialect, report = learn(call_list_capture(second_state="CON"))
    assert "call_states" not in dialect and "call_state" not in dialect.get("fields", {})
    assert any(line.startswith("call states: no single member of the calls in lista") for line in report.unmapped)


def test_a_foreign_middleware_teaches_its_shape():
    dialect, report = learn(foreign_capture())
    assert dialect["methods"] == {"monitor_start": "ura.monitorarRamal", "agent_login": "ura.entrarFila",
                                  "agent_ready": "ura.ficarLivre", "answer": "ura.atender",
                                  "agent_state": "ura.situacaoOperador", "make_call": "ura.discar",
                                  "status": "ura.ping", "poll_events": "ura.eventos", "register_listener": ""}
    assert dialect["params"]["make_call"] == ["device", "number"]
    assert dialect["params"]["agent_login"] == ["device", "agent", "groups"]
    assert dialect["params"]["answer"] == ["device", "call_id"]
    assert dialect["types"] == {"call_id": "int"}
    assert dialect["results"]["105"] == 10
    assert dialect["replies"]["default"] == "fault" and dialect["replies"]["agent_state"] == "struct"
    assert dialect["returns"] == {"make_call": "call_id"}
    assert dialect["transport"]["events"] == "poll"
    assert dialect["event_methods"]["ura.evTocando"] == "evTocando"
    assert dialect["events"]["evTocando"] == "delivered" and dialect["events"]["evAtendida"] == "established"
    layout = dialect["event_params"]["default"]
    assert layout[:4] == ["device", "call_id", "calling", "called"]
    # the direction follows RINGING's CALLTYPE, the cause CALLFAILURE's CAUSE: their positions and values
    assert layout[7] == "direction" and layout[8] == "cause", layout
    assert dialect["directions"] == {"IN": "inbound", "DISC": "dialler"}
    assert dialect["results"]["106"] == 11
    assert dialect["fields"]["agent_state"] == "situacao"
    assert dialect["agent_states"] == {"FALANDO": "busy"}        # LIVRE means ready already
    assert "Hold" in report.not_exercised and "Logoff" in report.not_exercised
    assert any(line.startswith("make_call: ura.discar (2 samples)") for line in report.learned)
    # what is written loads as a dialect, and says how it was learned
    text = write_dialect(dialect, report, "site.jsonl")
    assert text.startswith("# learned by smartcti-gateway learn from site.jsonl")
    loaded = Dialect.with_overrides(yaml.safe_load(text))
    assert loaded.methods["make_call"] == "ura.discar" and loaded.polled


def record_default_round(tmp_path):
    """The gateway itself, through the proxy, against the simulated NGC: a capture of the default dialect."""
    out = tmp_path / "cap.jsonl"
    bg = BackgroundLoop()
    peers = Peers()
    gw_port = free_port()
    proxy = start_proxy(bg, out, xmlrpc_listen=(LOCAL, 0), xmlrpc_upstream=peers.sim.url,
                        soap_listen=(LOCAL, 0), soap_upstream=f"http://{LOCAL}:{gw_port}{ENDPOINT}")
    gw = RunningGateway({"listen": f"{LOCAL}:{gw_port}", "links": [{"link_id": 1, "pabx": {
        "url": f"http://{LOCAL}:{proxy.xmlrpc.port}/RPC2", "timeout": 2}}]})
    sport = proxy.soap.port
    try:
        assert soap_via(sport, "AgentInService", device="2001", ipaddress=gw.events_url) == "0"
        wait_device(gw, "2001", ["INSERVICE"])
        since = mark(gw)
        assert soap_via(sport, "Logon", device="2001", agentID="1234", groupID="701") == "0"
        assert soap_via(sport, "Ready", device="2001", agentID="", groupID="") == "0"
        http(peers.sim_port, "POST", "/sim/inbound", json.dumps({"ani": "4832810000", "dnis": "7001",
                                                                   "group": "701"}).encode(),
             {"Content-Type": "application/json"})
        wait_device(gw, "2001", ["LOGGEDON", "READY", "RINGING"], since)
        assert soap_via(sport, "Answer", device="2001") == "0"
        assert soap_via(sport, "Hold", device="2001") == "0"
        wait_device(gw, "2001", ["LOGGEDON", "READY", "RINGING", "ANSWERED", "HELD"], since)
        assert soap_via(sport, "queryAgentState", cDevice="2001") == "29"
        assert soap_via(sport, "MakeCall", device="2002", telephoneNumber="abc") != "0"
    finally:
        gw.close()
        bg.run(proxy.stop())
        peers.close()
        bg.stop_loop()
    return out


def test_a_capture_of_the_default_dialect_teaches_nothing_new(tmp_path):
    out = record_default_round(tmp_path)
    assert main(["learn", str(out), "-o", str(tmp_path / "d.yaml")]) == 0
    text = (tmp_path / "d.yaml").read_text()
    assert "{}   # nothing differs from the default dialect" in text
    assert "#   answer: cti.atende (1 sample)" in text and "#   event EVENTO=CHAMADA_TOCANDO -> delivered" in text
    assert "#   Retrieve" in text          # not exercised: said so


def test_bad_captures_and_empty_ones_get_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "smartcti-capture", "version": 1, "started": 1, "sides": {}}\n{"t": 1, oops\n')
    assert main(["learn", str(bad), "-o", str(tmp_path / "d.yaml")]) == 2
    assert f"{bad}:2" in capsys.readouterr().err
    with pytest.raises(LearnError, match="neither XML-RPC calls to the NGC nor SOAP commands"):
        learn([])
    (tmp_path / "d.yaml").write_text("keep")
    good = tmp_path / "empty.jsonl"
    good.write_text('{"format": "smartcti-capture", "version": 1, "started": 1, "sides": {}}\n')
    assert main(["learn", str(good), "-o", str(tmp_path / "d.yaml")]) == 2
    assert (tmp_path / "d.yaml").read_text() == "keep"         # never overwritten without --force


def _soap_event(t: float, operation: str, conn: int, **args) -> list[dict]:
    return [{"t": t, "side": "soap", "dir": "event_to_protheus", "conn": conn,
             "parsed": {"operation": operation, "args": {"CDEVICE": "2001", "ILINKID": "1", **args}}}]


def _ngc_event(t: float, kind: str, conn: int) -> list[dict]:
    struct = {"EVENTO": kind, "ID_CANAL": 1, "DISPOSITIVO": "2001", "AGENTE": "1234", "GRUPO_DAC": "701"}
    return [{"t": t, "side": "xmlrpc", "dir": "callback_to_gateway", "conn": conn,
             "parsed": {"method": "cti.evento", "params": [struct]}}]


@pytest.mark.parametrize("order", ["reports-first", "logon-report-after-the-ready"])
def test_events_are_paired_in_order_when_the_middleware_confirms_at_once(order):
    """Seen in CI: the middleware confirmed LOGGEDON and READY at their answers, and the NGC's report of
    the logon came after the Ready's READY; the nearest later SOAP event taught AGENTE_LOGADO -> ready."""
    agent = {"CAGENTID": "1234", "CGROUPID": "701"}
    times = {"reports-first": (1.00, 1.01, 1.10, 1.11), "logon-report-after-the-ready": (1.00, 1.12, 1.10, 1.13)}
    loggedon, logado, ready, disponivel = times[order]
    logon = [{"t": 0.99, "side": "soap", "dir": "to_middleware", "conn": 0,
              "parsed": {"operation": "Logon", "args": {"device": "2001", "agentID": "1234", "groupID": "701"}}}]
    records = logon + (_soap_event(loggedon, "LOGGEDON", 1, **agent) + _ngc_event(logado, "AGENTE_LOGADO", 2) +
               _soap_event(ready, "READY", 3, **agent) + _ngc_event(disponivel, "AGENTE_DISPONIVEL", 4))
    records.sort(key=lambda r: r["t"])
    learner = Learner(records)
    learner.learn_events()
    assert "AGENTE_LOGADO" not in learner.out["events"] and "AGENTE_DISPONIVEL" not in learner.out["events"]
    assert "event EVENTO=AGENTE_LOGADO -> logged_on (1 sample)" in learner.report.learned
