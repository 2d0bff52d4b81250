"""Automatic wrap-up and pause reasons through the whole gateway, on the Dígitro simulator: the wire, what
Protheus hears, and a restart in the middle of a wrap-up. The timing itself is proved on an injected clock
(tests/test_core_wrapup.py); here a short wrap-up is waited for with deadlines."""
from __future__ import annotations

import pytest

from .support import (Peers, RunningGateway, agent_ready, device_events, in_service, mark, names, simulated_config,
                      wait_device, wait_for)
from .test_resilience import gateway_for, last_seq, names_for

ANI, DNIS = "4832810000", "7001"
REASONS = [{"code": "1", "name": "Almoço", "pabx": "almoco", "dialler_status_id": "3"},
           {"code": "2", "name": "Treinamento", "pabx": "treino", "dialler_status_id": "7"}]


def config(seconds: float = 0.8, echo: bool = True, **link) -> dict:
    cfg = simulated_config(agent_events_on_commands=echo)
    cfg["links"][0].update({"wrap_up": {"seconds": seconds, "groups": {"702": 0}}, "pause_reasons": REASONS,
                            "default_pause_reason": "1", **link})
    return cfg


def sent(gw, method: str) -> list:
    """The params of every ``method`` call the simulated NGC received."""
    return [params for m, params, _ in gw.in_loop(lambda: list(gw.gateway.simulator.recent)) if m == method]


def answered_then_cleared(gw, device="2001", group="701") -> str:
    _, body = gw.sim("/sim/inbound", {"ani": ANI, "dnis": DNIS, "group": group})
    wait_for(lambda: gw.conn_state(device).get(body["call_id"]) == "alerting", what="ringing")
    assert gw.code("Answer", device=device) == 0
    wait_for(lambda: gw.conn_state(device).get(body["call_id"]) == "connected", what="answered")
    assert gw.code("ConnectionClear", device=device, CallID="") == 0
    return body["call_id"]


@pytest.mark.parametrize("echo", [False, True], ids=["ngc-silent", "ngc-echoes-commands"])
def test_after_a_call_after_call_work_then_ready_by_itself(echo):
    """An NGC that reports the pause and the ready it was asked for, or one that does not: the same events."""
    gw = RunningGateway(config(echo=echo))
    try:
        in_service(gw, "2001")
        if echo:
            since = agent_ready(gw, groups="701,702")
        else:          # a silent NGC: the gateway tells what its commands did (tests/test_e2e_events.py)
            since = mark(gw)
            assert gw.code("Logon", device="2001", agentID="1234", groupID="701,702") == 0
            assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
            wait_device(gw, "2001", ["LOGGEDON", "READY"], since)
            since = mark(gw)
        answered_then_cleared(gw)
        wait_device(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "NOTREADY"], since)
        assert gw.code("queryAgentState", cDevice="2001") == 27
        pause, = [p for p in sent(gw, "cti.pausa")]
        assert pause[0]["MOTIVO"] == "pos-atendimento" and pause[0]["AGENTE"] == "1234"
        # ... and ready again by itself, told to Protheus
        wait_device(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "NOTREADY", "READY"], since)
        assert gw.code("queryAgentState", cDevice="2001") == 28
        assert len(sent(gw, "cti.disponivel")) == 2          # Protheus' Ready, then the wrap-up's end
        # a call of a group without wrap-up leaves the agent ready
        since = mark(gw)
        gw.in_loop(lambda: gw.gateway.simulator.recent.clear())
        answered_then_cleared(gw, group="702")
        wait_device(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
        assert gw.code("queryAgentState", cDevice="2001") == 28 and sent(gw, "cti.pausa") == []
    finally:
        gw.close()


def test_protheus_ready_ends_it_early_and_notready_keeps_the_agent_paused_with_the_default_reason():
    gw = RunningGateway(config(seconds=30))
    try:
        in_service(gw, "2001")
        since = agent_ready(gw)
        answered_then_cleared(gw)
        wait_device(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "NOTREADY"], since)
        assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
        wait_device(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "NOTREADY", "READY"], since)
        assert gw.in_loop(lambda: gw.link().switch.device("2001").wrap_up_until) == 0
        # Protheus' NotReady carries no reason: the default one goes to the NGC, and it names it on the board
        assert gw.code("NotReady", device="2001", agentID="", groupID="") == 0
        assert sent(gw, "cti.pausa")[-1][0]["MOTIVO"] == "almoco"
        link = gw.link()
        assert gw.in_loop(lambda: link.pause_reasons.name_of(link.switch.device("2001").agent.reason)) == "Almoço"
        assert gw.code("queryAgentState", cDevice="2001") == 30
    finally:
        gw.close()


def test_a_pause_made_on_the_phone_with_a_known_reason_is_named_an_unknown_one_raw():
    gw = RunningGateway(config())
    try:
        in_service(gw, "2001")
        since = agent_ready(gw)
        sim = gw.gateway.simulator
        link = gw.link()
        for raw, name in (("treino", "Treinamento"), ("banheiro", "banheiro")):
            gw.in_loop(lambda raw=raw: sim.phone("agent_not_ready", device="2001", reason=raw))
            wait_for(lambda raw=raw: gw.in_loop(lambda: link.switch.device("2001").agent.reason) == raw,
                     what=f"pause {raw} reported")
            assert gw.in_loop(lambda: link.pause_reasons.name_of(link.switch.device("2001").agent.reason)) == name
        assert "NOTREADY" in names(device_events(gw, "2001", since))
    finally:
        gw.close()


def test_a_restart_in_the_middle_of_a_wrap_up_does_not_leave_the_agent_paused(tmp_path):
    peers = Peers()
    state = str(tmp_path / "state.sqlite")
    cfg = gateway_for(peers)
    cfg["links"][0]["wrap_up"] = {"seconds": 2.5}
    try:
        gw = RunningGateway(cfg, state_file=state)
        try:
            assert gw.code("AgentInService", device="2001", ipaddress=peers.events_url) == 0
            assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
            assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
            since = last_seq(peers)
            call_id = peers.sim_call(lambda s: s.inbound(ANI, DNIS, group="701"))
            wait_for(lambda: gw.conn_state("2001").get(call_id) == "alerting", what="ringing")
            assert gw.code("Answer", device="2001") == 0
            wait_for(lambda: gw.conn_state("2001").get(call_id) == "connected", what="answered")
            assert gw.code("ConnectionClear", device="2001", CallID="") == 0
            wait_for(lambda: names_for(peers, "2001", since)[-1:] == ["NOTREADY"], what="after-call work")
        finally:
            gw.close()                                   # stopped with the agent in after-call work
        since = last_seq(peers)
        gw = RunningGateway(cfg, state_file=state)
        try:
            assert gw.code("queryAgentState", cDevice="2001") == 27      # still in it after the restart
            wait_for(lambda: names_for(peers, "2001", since)[-1:] == ["READY"], timeout=8,
                     what="ready again after the rest of the wrap-up")
            assert peers.sim_call(lambda s: s.state())["devices"]["2001"]["agent_state"] == "LIVRE"
            assert gw.code("queryAgentState", cDevice="2001") == 28
        finally:
            gw.close()
    finally:
        peers.close()


def test_bad_wrap_up_and_pause_reason_keys_name_the_line():
    from smartcti_gateway.config import ConfigError, parse
    base = {"links": [{"link_id": 1, "pabx": {"url": "http://ngc/RPC2"}}]}
    for link, message in (
            ({"wrap_up": {"seconds": -1}}, "links[0].wrap_up.seconds: must be between 0 and 3600"),
            ({"wrap_up": {"second": 3}}, "links[0].wrap_up.second: unknown key"),
            ({"pause_reasons": [{"code": "1", "name": "A", "pabx": "a"}, {"code": "1", "name": "B", "pabx": "b"}]},
             "code '1' is already used by pause reason 1 (A)"),
            ({"pause_reasons": [{"code": "1", "name": "A"}]}, "links[0].pause_reasons[0].pabx: is required"),
            ({"pause_reasons": [{"code": "1", "name": "A", "pabx": "a"}], "default_pause_reason": "9"},
             "'9' is not a code of pause_reasons (1)"),
            ({"default_pause_reason": "1"}, "the link has no pause_reasons")):
        data = {"links": [{**base["links"][0], **link}]}
        with pytest.raises(ConfigError) as e:
            parse(data, "gw.yaml")
        assert message in str(e.value), (link, str(e.value))
