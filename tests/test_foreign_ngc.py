"""A foreign NGC (issue 13 item 6): the simulator speaking tests/fixtures/foreign_dialect.yaml, which differs
from the default dialect in every respect the dialect model allows (names, positional parameters, an int call
id, numeric faults as refusals, plain answers, one method per event with positional parameters, events by
polling ``ura.eventos``, no listener to register).

The call-centre scenario runs end to end through the gateway, checked as tests/test_e2e_events.py checks the
default dialect (the exact events and values Protheus received), and on the wire: ``Simulator.recent`` holds
every XML-RPC call the simulator got, as received, with its answer or the Fault it raised. The shaping
functions (sim/digitro/shape.py) have unit tests, and the findings about the gateway's side are the last
section (an xfail one for what is not fixed yet).
"""
from __future__ import annotations

import copy
import xmlrpc.client
from pathlib import Path

import pytest
import yaml

from smartcti_gateway.core.notify import EVENT_PARAMS
from smartcti_gateway.pabx.digitro.dialect import Dialect
from smartcti_gateway.sim.digitro import Simulator, SimulatorOptions
from smartcti_gateway.sim.digitro import switch as switch_module
from smartcti_gateway.sim.digitro.shape import Shape, refusal_key, success_key

from .support import (RunningGateway, device_events, in_service, mark, names, params, simulated_config,
                      wait_device, wait_for)

FOREIGN_YAML = Path(__file__).resolve().parent / "fixtures" / "foreign_dialect.yaml"
FOREIGN: dict = yaml.safe_load(FOREIGN_YAML.read_text(encoding="utf-8"))
ANI, DNIS = "4832810000", "7001"
CALL = ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS"]
AGENT = ["CDEVICE", "ILINKID", "CAGENTID", "CGROUPID"]


def foreign(**sections) -> dict:
    """The foreign dialect, with ``sections`` merged into its sections."""
    d = copy.deepcopy(FOREIGN)
    for name, entries in sections.items():
        d[name] = {**d.get(name, {}), **entries}
    return d


def foreign_config(dialect: dict | None = None, **sim_options) -> dict:
    cfg = simulated_config(**sim_options)
    cfg["links"][0]["pabx"]["dialect"] = dialect or foreign()
    cfg["links"][0]["pabx"]["keepalive"] = 0.2          # ura.ping on the wire soon
    return cfg


@pytest.fixture
def gw():
    g = RunningGateway(foreign_config())
    yield g
    g.close()


# ------------------------------------------------------------------ helpers
def wire(gw, method: str) -> list[tuple[tuple, object]]:
    """(params, answer or Fault) of every ``method`` call the simulator received, oldest first."""
    return [(p, a) for m, p, a in gw.in_loop(lambda: list(gw.gateway.simulator.recent)) if m == method]


def polled(gw) -> list[list]:
    """Every event ``ura.eventos`` answered, as answered."""
    return [item for _, answer in wire(gw, "ura.eventos") for item in answer]


def event_row(method: str, device: str, call_id: int = 0, calling="", called="", other="", old="", group="",
              direction="", cause="", agent="", groups="", reason="") -> list:
    """One ura.eventos element: [method, *event_params.default]."""
    return [method, device, call_id, calling, called, other, old, group, direction, cause, agent, groups, reason]


def caught_up(gw) -> None:
    """Wait until the gateway has polled, and its driver taken, every event the NGC has produced."""
    def done():
        sent = gw.gateway.simulator.poll_stats(0)
        drv = gw.link().driver
        return sent["queued"] == 0 and drv.events_received + drv.events_rejected >= sent["sent"]
    wait_for(lambda: gw.in_loop(done), what="the gateway polled every event")


def command(gw, op: str, device: str = "2001", **args) -> int:
    """``op`` answered by the gateway, then every event it caused taken by the gateway: with polled events, the
    next command must not overtake the PABX's (test_agent_commands_back_to_back_reach_protheus_once_in_order)."""
    code = gw.code(op, device=device, **args)
    caught_up(gw)
    return code


def logged_on(gw, device="2001", agent="1234", groups="701", ready=True) -> int:
    since = mark(gw)
    assert command(gw, "Logon", device, agentID=agent, groupID=groups) == 0
    if ready:
        assert command(gw, "Ready", device, agentID="", groupID="") == 0
    wait_device(gw, device, ["LOGGEDON", "READY"] if ready else ["LOGGEDON"], since)
    return mark(gw)


def is_fault(answer, code: int) -> bool:
    return isinstance(answer, xmlrpc.client.Fault) and answer.faultCode == code


# ------------------------------------------------------------ the NGC is foreign
def test_the_embedded_simulator_speaks_the_links_foreign_dialect(gw):
    sim = gw.gateway.simulator
    assert sim.dialect.methods["make_call"] == "ura.discar" and sim.dialect.polled
    assert gw.code("SystemStatus") == 0
    in_service(gw, "2001")
    # no listener registered: the monitor is positional, answered True (fault style: any answer is success)
    assert wire(gw, "ura.monitorarRamal") == [(("2001",), True)]
    ping = wait_for(lambda: wire(gw, "ura.ping"), what="a keep-alive")
    assert all(p == () and a == 0 and type(a) is int for p, a in ping)     # status: value, 0
    assert all(p == () and isinstance(a, list) for p, a in wire(gw, "ura.eventos"))
    assert {m for m, _, _ in gw.in_loop(lambda: list(sim.recent))} <= set(FOREIGN["methods"].values())
    channels = gw.sim_state()["channels"]
    assert list(channels) == ["0"] and channels["0"]["url"] == "" and channels["0"]["devices"] == ["2001"]
    assert channels["0"]["dropped"] == 0 and channels["0"]["sent"] == len(polled(gw))


def test_inbound_call_rings_is_answered_held_retrieved_and_cleared(gw):
    in_service(gw, "2001")
    since = logged_on(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    call_id = body["call_id"]
    assert call_id.isdigit()                                  # an int call id, as text on the control API
    ringing, = wait_device(gw, "2001", ["RINGING"], since)
    assert ringing["order"] == ["CDEVICE", "ILINKID", *EVENT_PARAMS["RINGING"]]
    assert params(ringing) == {"CDEVICE": "2001", "ILINKID": "1", "CALLID": call_id, "ANI": ANI, "DNIS": DNIS,
                               "ASSOCIATEDDATA": f"3|{ANI}", "CALLTYPE": "1"}
    assert gw.code("Answer", device="2001") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED"], since)
    assert gw.code("queryAgentState", cDevice="2001") == 29          # busy: situacao FALANDO
    assert gw.code("Hold", device="2001") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD"], since)
    assert gw.code("Retrieve", device="2001") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "RETRIEVE"], since)
    gw.sim("/sim/hangup", {"device": "2001"})
    got = wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "RETRIEVE", "CONNECTIONCLEARED"], since)
    for ev in got[1:]:
        assert ev["order"] == CALL
        assert params(ev) == {"CDEVICE": "2001", "ILINKID": "1", "CALLID": call_id, "ANI": ANI, "DNIS": DNIS}
    assert gw.code("queryAgentState", cDevice="2001") == 28

    # on the wire: the call id went out as an int, every command was answered True, events were polled rows
    assert wire(gw, "ura.atender") == [(("2001", int(call_id)), True)]
    for method in ("ura.reter", "ura.recuperar"):
        (args, answer), = wire(gw, method)
        assert args[0] == "2001" and type(args[1]) is int and answer is True
    rows = [r for r in polled(gw) if r[2] == int(call_id)]
    assert rows[0] == event_row("ura.evTocando", "2001", int(call_id), ANI, DNIS, other="2001", group="701",
                                direction="IN")
    assert [r[0] for r in rows] == ["ura.evTocando", "ura.evAtendida", "ura.evRetida", "ura.evRecuperada",
                                    "ura.evFinalizada"]
    state, = wire(gw, "ura.situacaoOperador")[-1:]
    assert state == (("2001",), {"codigo": "0", "situacao": "LIVRE", "operador": "1234", "filas": "701"})


def test_outbound_call_answered_then_cleared(gw):
    since = in_service(gw, "2001")
    assert gw.code("MakeCall", device="2001", telephoneNumber="4833334444") == 0
    got = wait_device(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"], since)
    (args, new_id), = wire(gw, "ura.discar")
    assert args == ("2001", "4833334444") and type(new_id) is int       # a plain answer: returns.make_call
    for e in got:
        assert e["order"] == (CALL + ["ASSOCIATEDDATA", "CALLTYPE"] if e["method"] == "RINGING" else CALL)
        assert (params(e)["CALLID"], params(e)["ANI"], params(e)["DNIS"]) == (str(new_id), "2001", "4833334444")
    assert params(got[2])["CALLTYPE"] == "2"
    assert gw.code("ConnectionClear", device="2001", CallID="") == 0
    wait_device(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
    (args, answer), = wire(gw, "ura.desligar")
    assert args[0] == "2001" and type(args[1]) is int and answer is True
    assert gw.code("ConnectionClear", device="2001", CallID="") == 3         # nothing left: Fault 107
    assert is_fault(wire(gw, "ura.desligar")[-1][1], 107)


@pytest.mark.parametrize("outcome, code, cause", [("busy", 105, "10"), ("no-answer", 106, "11")])
def test_outbound_failure_cause_is_a_numeric_result(gw, outcome, code, cause):
    since = in_service(gw, "2001")
    gw.sim("/sim/outcome", {"number": "4835556666", "outcome": outcome, "after": 0.05})
    assert gw.code("MakeCall", device="2001", telephoneNumber="4835556666") == 0
    got = wait_device(gw, "2001", ["SERVICEINITIATED", "ORIGINATED", "RINGING", "CALLFAILURE", "CONNECTIONCLEARED"],
                      since)
    assert got[3]["order"] == CALL + ["CAUSE"]
    assert params(got[3])["CAUSE"] == cause and params(got[3])["DNIS"] == "4835556666"
    failed, = [r for r in polled(gw) if r[0] == "ura.evFalhou"]
    assert failed[9] == str(code)                                          # causa: the results key


def test_refusals_are_numeric_faults_mapped_through_results(gw):
    in_service(gw, "2001", "2002")
    for op, args, code, method, fault in (
            ("Answer", {"device": "2001"}, 3, "ura.atender", 107),              # no call
            ("Retrieve", {"device": "2001"}, 19, "ura.recuperar", 108),         # nothing held
            ("ConnectionClear", {"device": "2001", "CallID": "77"}, 5, "ura.desligar", 109),
            ("MakeCall", {"device": "9999", "telephoneNumber": "2002"}, 18, "ura.discar", 101),
            ("MakeCall", {"device": "2001", "telephoneNumber": "48x"}, 2, "ura.discar", 104),
            ("Logon", {"device": "2001", "agentID": "1", "groupID": "799"}, 23, "ura.entrarFila", 103),
            ("Logoff", {"device": "2001", "agentID": "", "groupID": ""}, 1, "ura.sairFila", 102)):
        assert gw.code(op, **args) == code, op
        assert is_fault(wire(gw, method)[-1][1], fault), (op, wire(gw, method)[-1])
    assert wire(gw, "ura.desligar")[-1][0] == ("2001", 77)
    # a busy extension: refused at once with Fault 105, SmartCTI 10
    _, body = gw.sim("/sim/inbound", {"ani": "4831110000", "dnis": "2002", "device": "2002"})
    wait_for(lambda: gw.conn_state("2002").get(body["call_id"]) == "alerting", what="2002 ringing")
    assert gw.code("Answer", device="2002") == 0
    wait_for(lambda: gw.conn_state("2002").get(body["call_id"]) == "connected", what="2002 answered")
    assert gw.code("MakeCall", device="2001", telephoneNumber="2002") == 10
    assert wire(gw, "ura.discar")[-1][0] == ("2001", "2002") and is_fault(wire(gw, "ura.discar")[-1][1], 105)


def test_agent_states_from_protheus_and_queries(gw):
    since = in_service(gw, "2001")
    assert gw.code("queryAgentState", cDevice="2001") == 25
    steps = (("Logon", {"agentID": "1234", "groupID": "701,702"}, "LOGGEDON", 26),
             ("Ready", {"agentID": "", "groupID": ""}, "READY", 28),
             ("NotReady", {"agentID": "", "groupID": ""}, "NOTREADY", 30),
             ("Logoff", {"agentID": "", "groupID": ""}, "LOGGEDOFF", 25))
    expected: list[str] = []
    for op, args, event, state in steps:
        assert command(gw, op, **args) == 0, op
        expected.append(event)
        got = wait_device(gw, "2001", expected, since)
        assert gw.code("queryAgentState", cDevice="2001") == state, op
    for e in got:
        assert e["order"] == AGENT
        assert params(e) == {"CDEVICE": "2001", "ILINKID": "1", "CAGENTID": "1234", "CGROUPID": "701,702"}
    assert wire(gw, "ura.entrarFila") == [(("2001", "1234", "701,702"), True)]
    assert wire(gw, "ura.ficarLivre") == [(("2001",), True)]
    assert wire(gw, "ura.pausar") == [(("2001", ""), True)]
    assert wire(gw, "ura.sairFila") == [(("2001", "1234"), True)]        # the gateway names the agent
    situations = [a["situacao"] for _, a in wire(gw, "ura.situacaoOperador")]
    assert situations == ["DESLOGADO", "LOGADO", "LIVRE", "PAUSA", "DESLOGADO"]
    assert {a["codigo"] for _, a in wire(gw, "ura.situacaoOperador")} == {"0"}


def test_agent_changes_on_the_phone(gw):
    since = in_service(gw, "2001")
    for action in ({"action": "login", "agent": "4321", "groups": "703"}, {"action": "ready"},
                   {"action": "pause", "reason": "almoço"}, {"action": "logout"}):
        status, body = gw.sim("/sim/phone", {"device": "2001", **action})
        assert (status, body) == (200, {"result": "0"})
    got = wait_device(gw, "2001", ["LOGGEDON", "READY", "NOTREADY", "LOGGEDOFF"], since)
    assert [(params(e)["CAGENTID"], params(e)["CGROUPID"]) for e in got] == [("4321", "703")] * 4
    assert gw.code("queryAgentState", cDevice="2001") == 25
    assert next(r for r in polled(gw) if r[0] == "ura.evPausa")[12] == "almoço"      # motivo
    status, body = gw.sim("/sim/phone", {"device": "2001", "action": "ready"})
    assert status == 409 and body["error"].startswith("102: ")      # the foreign key of AGENTE_INVALIDO


def test_queued_call_in_get_call_list_then_delivered(gw):
    in_service(gw, "2001")
    logged_on(gw, ready=False)
    _, body = gw.sim("/sim/inbound", {"ani": "4830000000", "dnis": "7002", "group": "701"})
    call_id = body["call_id"]
    assert gw.call("GetCallList", groupID="701") == f"CMD#LISTA_CHAMADAS#0#701#{call_id},7,4830000000"
    (args, answer), = wire(gw, "ura.chamadasDaFila")
    assert args == ("701",) and answer["codigo"] == "0"
    assert answer["chamadas"] == [{"idChamada": int(call_id), "situacaoChamada": "FIL", "ramal": "",
                                   "origem": "4830000000"}]
    since = mark(gw)
    assert command(gw, "Ready", agentID="", groupID="") == 0
    _, ev = wait_device(gw, "2001", ["READY", "RINGING"], since)
    assert params(ev)["CALLID"] == call_id and params(ev)["CALLTYPE"] == "1"


def test_consultation_and_transfer(gw):
    in_service(gw, "2001", "2002")
    since = logged_on(gw)
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
    original = body["call_id"]
    wait_device(gw, "2001", ["RINGING"], since)
    assert gw.code("Answer", device="2001") == 0
    assert gw.code("Consultation", device="2001", deviceTo="2002", Route="") == 0
    (args, consult_id), = wire(gw, "ura.consultar")
    assert args == ("2001", "2002") and type(consult_id) is int          # returns.consultation: the new call
    ring2, = wait_device(gw, "2002", ["RINGING"], since)
    assert params(ring2)["CALLID"] == str(consult_id) and params(ring2)["CALLTYPE"] == "2"
    assert gw.code("Answer", device="2002") == 0
    wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING", "ANSWERED"],
                since)
    assert gw.code("Transfer", device="2001") == 0
    assert wire(gw, "ura.transferir") == [(("2001",), True)]
    got1 = wait_device(gw, "2001", ["RINGING", "ANSWERED", "HELD", "SERVICEINITIATED", "ORIGINATED", "RINGING",
                                    "ANSWERED", "CONNECTIONCLEARED", "CONNECTIONCLEARED"], since)
    assert [params(e)["CALLID"] for e in got1] == [original] * 3 + [str(consult_id)] * 5 + [original]
    got2 = wait_device(gw, "2002", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "RINGING", "ANSWERED"], since)
    assert [params(e)["CALLID"] for e in got2] == [str(consult_id)] * 3 + [original] * 2
    assert params(got2[3]) == {"CDEVICE": "2002", "ILINKID": "1", "CALLID": original, "ANI": ANI, "DNIS": DNIS,
                               "ASSOCIATEDDATA": f"3|{ANI}", "CALLTYPE": "1"}


def test_events_pushed_one_method_per_event_to_the_gateway():
    """The same foreign NGC with callbacks instead of polling: it registers the gateway's URL (positional) and
    posts ``ura.evTocando(ramal, idChamada, ...)``; the gateway reads the positional event."""
    dialect = foreign(methods={"register_listener": "ura.registrar", "unregister_listener": "ura.cancelar"},
                      params={"register_listener": ["callback_url"], "unregister_listener": ["channel"],
                              "monitor_start": ["channel", "device"], "monitor_stop": ["channel", "device"]},
                      transport={"events": "callback"})
    g = RunningGateway(foreign_config(dialect))
    try:
        since = in_service(g, "2001")
        (url,), answer = wire(g, "ura.registrar")[0]
        assert url.startswith("http://127.0.0.1:") and answer == {"ID_CANAL": 1}   # a struct: no returns entry
        assert wire(g, "ura.monitorarRamal") == [(("1", "2001"), True)]
        since = logged_on(g)
        _, body = g.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": "701"})
        ringing, = wait_device(g, "2001", ["RINGING"], since)
        assert params(ringing)["CALLID"] == body["call_id"] and params(ringing)["CALLTYPE"] == "1"
        posts = g.in_loop(lambda: list(g.gateway.simulator.sink.recent))      # the EventPusher's posts
        assert ("ura.evTocando", tuple(event_row("", "2001", int(body["call_id"]), ANI, DNIS, other="2001",
                                                 group="701", direction="IN")[1:])) in posts
        assert {m for m, _ in posts} <= set(FOREIGN["event_methods"])
        assert g.in_loop(lambda: g.link().driver.events_rejected) == 0
        assert g.code("AgentOutOfService", device="2001") == 0
        assert wire(g, "ura.pararMonitoracao") == [(("1", "2001"), True)]
        assert g.sim_state()["channels"]["1"]["devices"] == []
        assert wire(g, "ura.eventos") == []
    finally:
        g.close()


# ------------------------------------------------- the switch alone, and the shaping functions
def foreign_sim(**options) -> Simulator:
    return Simulator(SimulatorOptions(**options), Dialect.with_overrides(FOREIGN), clock=lambda: 1720428379.0)


def test_the_switch_alone_reads_positional_params_and_answers_plain_values_and_faults():
    sim = foreign_sim()
    assert sim.handle("ura.monitorarRamal", ("2001",)) is True
    assert sim.handle("ura.monitorarRamal", ("2002",)) is True
    assert sim.handle("ura.ping", ()) == 0
    assert sim.handle("ura.versao", ()).startswith("NGC simulator ")         # returns.version: the plain value
    with pytest.raises(xmlrpc.client.Fault) as e:
        sim.handle("cti.gera_chamada", ({"DISPOSITIVO": "2001", "IDENTIDADE_DESTINO": "2002"},))
    assert e.value.faultCode == switch_module.FAULT_UNKNOWN_METHOD
    with pytest.raises(xmlrpc.client.Fault) as e:
        sim.handle("ura.discar", ("2001", "2002", "extra"))
    assert e.value.faultCode == switch_module.FAULT_BAD_REQUEST and "at most 2 parameters" in e.value.faultString
    with pytest.raises(xmlrpc.client.Fault) as e:
        sim.handle("ura.discar", ({"ramal": "2001"},))
    assert e.value.faultCode == switch_module.FAULT_BAD_REQUEST
    first = sim.handle("ura.discar", ("2001", "2002"))        # an internal call: no timer
    assert first == 1 and sim.calls["1"].dnis == "2002"
    assert sim.handle("ura.atender", ("2002", "1")) is True   # a numeric string is the same call id
    with pytest.raises(xmlrpc.client.Fault) as e:
        sim.handle("ura.atender", ("2002",))                   # the missing trailing call id is "": none ringing
    assert (e.value.faultCode, e.value.faultString) == (107, "2002 has no TOC call")
    with pytest.raises(xmlrpc.client.Fault) as e:
        sim.handle("ura.discar", ("2003", "2001"))
    assert e.value.faultCode == 105
    calls = sim.handle("ura.chamadasDoRamal", ("2001",))
    assert calls["codigo"] == "0" and [c["idChamada"] for c in calls["chamadas"]] == [1]
    events = sim.handle("ura.eventos", ())
    assert [e[0] for e in events] == ["ura.evIniciada", "ura.evOriginada", "ura.evTocando", "ura.evTocando",
                                      "ura.evAtendida", "ura.evAtendida"]
    assert [(e[1], e[2]) for e in events] == [("2001", 1)] * 3 + [("2002", 1), ("2001", 1), ("2002", 1)]
    assert sim.handle("ura.eventos", ()) == []                # drained
    assert sim.poll_stats(0) == {"sent": 6, "dropped": 0, "queued": 0}
    assert [m for m, _, _ in sim.recent][:3] == ["ura.monitorarRamal", "ura.monitorarRamal", "ura.ping"]
    assert isinstance(sim.recent[4][2], xmlrpc.client.Fault)
    sim.close()


def test_the_poll_queue_is_bounded_and_counts_what_it_drops(monkeypatch):
    monkeypatch.setattr(switch_module, "MAX_POLLED", 3)
    sim = foreign_sim()
    sim.handle("ura.monitorarRamal", ("2001",))
    sim.handle("ura.entrarFila", ("2001", "1234", "701"))
    for _ in range(2):
        sim.handle("ura.ficarLivre", ("2001",))
        sim.handle("ura.pausar", ("2001", "cafe"))
    assert sim.poll_stats(0) == {"sent": 0, "dropped": 2, "queued": 3}
    assert [e[0] for e in sim.handle("ura.eventos", ())] == ["ura.evPausa", "ura.evLivre", "ura.evPausa"]
    assert sim.poll_stats(0) == {"sent": 3, "dropped": 2, "queued": 0}


def test_a_foreign_dialect_needs_a_key_for_every_refusal():
    d = Dialect.with_overrides(FOREIGN)
    d.results = {"0": 0, "105": 10}
    with pytest.raises(ValueError, match="the dialect's results lack DISPOSITIVO_INVALIDO"):
        Simulator(dialect=d)


def test_result_keys():
    default, d = Dialect(), Dialect.with_overrides(FOREIGN)
    assert success_key(default) == "OK" and success_key(d) == "0"
    assert refusal_key(default, "OCUPADO") == "OCUPADO" and refusal_key(d, "OCUPADO") == "105"
    assert refusal_key(d, "SENHA_INVALIDA") == refusal_key(d, "AGENTE_INVALIDO") == "102"
    assert refusal_key(d, "FORA_DE_SERVICO") == "FORA_DE_SERVICO"     # no foreign key for 22: the name
    assert refusal_key(Dialect(results={"0": 0}), "OCUPADO") is None


def test_shape_reads_positional_params_by_layout_and_types():
    s = Shape(Dialect.with_overrides(FOREIGN))
    assert s.args("make_call", ("2001", "4833334444")) == {"ramal": "2001", "destino": "4833334444"}
    assert s.args("answer", ("2001",)) == {"ramal": "2001", "idChamada": ""}        # missing trailing: ""
    assert s.args("answer", ("2001", 17)) == {"ramal": "2001", "idChamada": "17"}   # int: read as text
    assert s.args("answer", ("2001", 0)) == {"ramal": "2001", "idChamada": ""}      # 0: the driver's "none"
    assert s.args("status", ()) == {}
    with pytest.raises(ValueError, match="at most 0 parameters"):
        s.args("status", ("x",))
    with pytest.raises(ValueError, match="not a struct"):
        s.args("answer", ("2001", {"idChamada": 1}))
    assert Shape(Dialect()).args("make_call", ({"DISPOSITIVO": "2001"},)) is None       # one struct
    assert s.struct_args({"idChamada": 5, "ramal": "2001"}) == {"idChamada": "5", "ramal": "2001"}


def test_shape_answers_by_reply_style():
    s = Shape(Dialect.with_overrides(FOREIGN))
    assert s.answer("make_call", "0", {"idChamada": "7"}) == 7                  # fault + returns: the value
    assert s.answer("hold", "0", {}) is True                                     # fault, nothing to say
    assert s.answer("register_listener", "0", {"ID_CANAL": 3}) == {"ID_CANAL": 3}   # fault, no returns: a struct
    assert s.answer("agent_state", "0", {"situacao": "LIVRE"}) == {"codigo": "0", "situacao": "LIVRE"}
    assert s.answer("device_calls", "0", {"chamadas": [{"idChamada": "7"}]}) == \
        {"codigo": "0", "chamadas": [{"idChamada": 7}]}                          # types reach nested structs
    assert s.answer("status", "0", {"ESTADO": "ATIVO"}) == 0                     # value: the result itself
    with pytest.raises(xmlrpc.client.Fault) as e:
        s.refusal("make_call", "105", "extension 2002 is busy")
    assert (e.value.faultCode, e.value.faultString) == (105, "extension 2002 is busy")
    with pytest.raises(xmlrpc.client.Fault) as e:
        s.refusal("hold", "CANAL_INVALIDO", "register again")
    assert e.value.faultCode == "CANAL_INVALIDO"                                 # a textual key stays text
    assert s.refusal("status", "105", "") == 105
    assert s.refusal("agent_state", "101", "no") == {"codigo": "101", "texto": "no"}
    default = Shape(Dialect())
    out = {"ID_CHAMADA": "x"}
    assert default.answer("make_call", "OK", out) == {"RESULTADO": "OK", "ID_CHAMADA": "x"}
    assert default.refusal("make_call", "OCUPADO", "busy") == {"RESULTADO": "OCUPADO", "MENSAGEM": "busy"}
    assert Shape(Dialect.with_overrides({"types": {"result": "int"}, "replies": {"default": "value"},
                                         "results": {"0": 0}})).answer("hold", "0", {}) == 0


def test_shape_of_events():
    d = Dialect.with_overrides(FOREIGN)
    s = Shape(d)
    event = {"EVENTO": "evTocando", "ID_CANAL": 0, "SEQUENCIA": 4, "ramal": "2001", "idChamada": "7",
             "origem": ANI, "discado": DNIS, "sentido": "IN"}
    row = ("2001", 7, ANI, DNIS, "", "", "", "IN", "", "", "", "")
    assert s.event_call(event) == ("ura.evTocando", row)
    assert s.poll_item(event) == ["ura.evTocando", *row]
    assert s.poll_item({**event, "EVENTO": "CHAMADA_TOCANDO"}) is None          # no method says it
    assert s.poll_item({**event, "EVENTO": "evLogado", "idChamada": ""})[2] == 0   # an int field without value
    # one event method with positional parameters (no event_methods): a positional list
    positional = Shape(Dialect.with_overrides({"event_params": {"default": ["event", "device", "call_id"]},
                                               "types": {"call_id": "int"}}))
    struct = {"EVENTO": "CHAMADA_TOCANDO", "DISPOSITIVO": "2001", "ID_CHAMADA": "9"}
    assert positional.event_call(struct) == ("cti.evento", ("CHAMADA_TOCANDO", "2001", 9))
    assert positional.poll_item(struct) == ["CHAMADA_TOCANDO", "2001", 9]
    # the default: the struct itself, untouched
    default = Shape(Dialect())
    method, (same,) = default.event_call(struct)
    assert method == "cti.evento" and same is struct and default.poll_item(struct) is struct


def test_the_default_dialect_switch_is_unchanged():
    sim = Simulator(SimulatorOptions(answer_after=0.01), clock=lambda: 1720428379.0)
    assert sim.ok == "OK" and 0 not in sim.channels                     # a listener is registered, not global
    channel = sim.handle("cti.registra_retorno", ({"URL_RETORNO": "http://x/cb"},))["ID_CANAL"]
    assert sim.handle("cti.monitora", ({"ID_CANAL": channel, "DISPOSITIVO": "2005"},)) == {"RESULTADO": "OK"}
    assert sim.handle("cti.gera_chamada", ({"DISPOSITIVO": "2005", "IDENTIDADE_DESTINO": "2005"},)) == \
        {"RESULTADO": "NUMERO_INVALIDO", "MENSAGEM": "2005 is already in the call"}
    with pytest.raises(xmlrpc.client.Fault, match="cti.gera_chamada takes one struct"):
        sim.handle("cti.gera_chamada", ("2005",))
    sim.close()


# ------------------------------------------------------------ findings about the gateway's side
def test_agent_out_of_service_stops_the_monitor_at_an_ngc_without_listener(gw):
    """Found here: the driver sent monitor_stop only with a listener channel, and without register_listener there
    is none, so the NGC went on monitoring (and reporting) a device out of service."""
    in_service(gw, "2001")
    assert gw.code("AgentOutOfService", device="2001") == 0
    assert wire(gw, "ura.pararMonitoracao") == [(("2001",), True)]
    assert gw.sim_state()["channels"]["0"]["devices"] == []


def test_a_call_id_that_is_no_number_is_refused_not_sent_as_zero(gw):
    """Found here: the driver sent an int call id that is no number as 0, which is also what it sends for 'no
    call id'; the NGC then cleared the connected call and the gateway answered 0."""
    in_service(gw, "2001")
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": "2001", "device": "2001"})
    wait_for(lambda: gw.conn_state("2001").get(body["call_id"]) == "alerting", what="ringing")
    assert gw.code("Answer", device="2001") == 0
    wait_for(lambda: gw.conn_state("2001").get(body["call_id"]) == "connected", what="answered")
    # the default dialect answers 5 (tests/test_e2e_commands.py test_commands_without_a_call)
    try:
        assert gw.code("ConnectionClear", device="2001", CallID="01/01/26 00:00:00 010A 9999/00") == 5
    finally:
        calls = gw.sim_state()["calls"]
    assert [c["call_id"] for c in calls] == [body["call_id"]]              # the connected call is still there


def test_agent_commands_back_to_back_reach_protheus_once_in_order(gw):
    sim = gw.gateway.simulator
    since = in_service(gw, "2001")
    poll = sim._handlers["ura.eventos"]
    gw.in_loop(lambda: sim._handlers.__setitem__("ura.eventos", lambda a: []))   # the NGC is slow to report
    try:
        assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
        assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
        assert gw.code("NotReady", device="2001", agentID="", groupID="") == 0
        wait_for(lambda: len(device_events(gw, "2001", since)) >= 2, what="the READY/NOTREADY confirmations")
    finally:
        gw.in_loop(lambda: sim._handlers.__setitem__("ura.eventos", poll))
    gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "device": "2001"})   # a later event proves the rest arrived
    wait_for(lambda: "RINGING" in names(device_events(gw, "2001", since)), what="RINGING")
    # today: ['READY', 'NOTREADY', 'LOGGEDON', 'READY', 'NOTREADY', 'RINGING'] (a READY after the NOTREADY)
    assert names(device_events(gw, "2001", since)) == ["LOGGEDON", "READY", "NOTREADY", "RINGING"]
