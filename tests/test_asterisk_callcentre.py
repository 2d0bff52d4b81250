"""Wrap-up, pause reasons and dialler calls on a real Asterisk (each build of ../shared/asterisk) with a SIP
phone: the queue member is paused with the wrap-up's reason after the call and unpaused by the gateway; a
pause's reason goes to QueuePause and one set at the Asterisk side is named from pause_reasons; a call the
dialler marked with a channel variable pops as CALLTYPE 3."""
from __future__ import annotations

from .support import RunningGateway, in_service, wait_for
from .test_asterisk_lab import CALL_WAIT, LINK, config, customer_on, lab, wait  # noqa: F401 - lab is a fixture

REASONS = [{"code": "1", "name": "Almoço", "pabx": "almoco", "dialler_status_id": "3"},
           {"code": "2", "name": "Treinamento", "pabx": "treino", "dialler_status_id": "7"}]


def gateway(lab, seconds: float) -> RunningGateway:
    cfg = config(lab)
    cfg["links"][0].update({"wrap_up": {"seconds": seconds}, "pause_reasons": REASONS, "default_pause_reason": "1"})
    return RunningGateway(cfg)


def ready_in_vendas(gw) -> None:
    """2001 in service, its agent logged on to 701 (the queue vendas) and ready, as Protheus does it."""
    in_service(gw, "2001")
    since = gw.events()[-1]["seq"]
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    wait(gw, "2001", ["LOGGEDON", "READY"], since)


def member(lab) -> dict:
    (m,) = lab.members()
    return m


def test_after_the_call_the_member_is_paused_for_the_wrap_up_then_unpaused(lab):
    gw = gateway(lab, seconds=2)
    try:
        ready_in_vendas(gw)
        _, since = customer_on(gw, lab)
        assert gw.code("ConnectionClear", device="2001", CallID="") == 0
        wait(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "NOTREADY"], since)
        m = member(lab)
        assert (m["Paused"], m.get("PausedReason")) == ("1", "pos-atendimento")
        assert gw.code("queryAgentState", cDevice="2001") == 27
        wait(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED", "NOTREADY", "READY"], since)
        wait_for(lambda: member(lab)["Paused"] == "0", CALL_WAIT, what="unpaused at the queue")
        assert gw.code("queryAgentState", cDevice="2001") == 28
    finally:
        gw.close()
        lab.reset()


def test_pause_reasons_go_to_the_queue_and_come_back_named(lab):
    gw = gateway(lab, seconds=0)
    try:
        ready_in_vendas(gw)
        assert gw.code("NotReady", device="2001", agentID="", groupID="") == 0   # Protheus: the default reason
        wait_for(lambda: member(lab).get("PausedReason") == "almoco", CALL_WAIT, what="paused for lunch")
        link = gw.link(int(LINK))
        lab.ami.action("QueuePause", Interface="PJSIP/2001", Paused="false")
        lab.ami.action("QueuePause", Interface="PJSIP/2001", Paused="true", Reason="treino")   # by the supervisor
        wait_for(lambda: gw.in_loop(lambda: link.switch.device("2001").agent.reason) == "treino", CALL_WAIT,
                 what="the reason reported")
        assert gw.in_loop(lambda: link.pause_reasons.name_of(link.switch.device("2001").agent.reason)) == "Treinamento"
        assert gw.code("queryAgentState", cDevice="2001") == 30
    finally:
        gw.close()
        lab.reset()


def test_a_call_the_dialler_marked_pops_as_calltype_3(lab):
    """The dialler sets DISCADOR on the call (manager.conf channelvars lists it); the link's dialler rule
    names that variable. An unmarked call of the same queue pops as before."""
    cfg = config(lab)
    cfg["links"][0]["dialler"] = {"variable": "DISCADOR"}
    gw = RunningGateway(cfg)
    try:
        ready_in_vendas(gw)
        kinds = []
        for variable in ("__DISCADOR=1", ""):
            since = gw.events()[-1]["seq"]
            lab.outside_call("7001", "4832810000", variable=variable)
            ringing, = wait(gw, "2001", ["RINGING"], since)
            kinds.append(ringing["params"]["CALLTYPE"])
            for c in lab.channels():                   # the caller gives up
                lab.ami.action("Hangup", Channel=c["Channel"])
            wait(gw, "2001", ["RINGING", "CONNECTIONCLEARED"], since)
            lab.phones["2001"].settle()
        assert kinds == ["3", "1"]
    finally:
        gw.close()
        lab.reset()


def test_the_supervisors_actions_through_the_api_on_asterisk(lab, tmp_path):
    """The board's API against the real queue: pause with a reason, ready, listen in from the supervisor's
    phone, hang up the agent's call, log the agent off; each audited."""
    from .test_supervisor_web import HASH, audit_lines, signed_in
    cfg = config(lab)
    cfg["links"][0].update({"pause_reasons": REASONS, "default_pause_reason": "1"})
    cfg["supervisor"] = {"users": {"maria": HASH}, "phones": {"maria": "2003"}, "audit_log": str(tmp_path / "audit.log")}
    gw = RunningGateway(cfg)
    try:
        ready_in_vendas(gw)
        client = signed_in(gw)
        link = int(LINK)
        since = gw.events()[-1]["seq"]
        assert client.act(link=link, action="pause", device="2001", reason="2")[1]["ok"] is True
        wait_for(lambda: member(lab).get("PausedReason") == "treino", CALL_WAIT, what="paused for training")
        assert client.act(link=link, action="ready", device="2001")[1]["ok"] is True
        wait_for(lambda: member(lab)["Paused"] == "0", CALL_WAIT, what="ready at the queue")
        wait(gw, "2001", ["NOTREADY", "READY"], since)          # Protheus' buttons follow the supervisor
        call_id, since = customer_on(gw, lab)
        seen = len(lab.ami.events)
        assert client.act(link=link, action="listen", device="2001")[1]["ok"] is True
        lab.phones["2003"].accept()
        start = lab.ami.wait_event(lambda e: e.get("Event") == "ChanSpyStart", CALL_WAIT, since=seen)
        assert start["SpyerChannel"].startswith("PJSIP/2003-") and start["SpyeeChannel"].startswith("PJSIP/2001-")
        assert client.act(link=link, action="hangup", device="2001", call_id=call_id)[1]["ok"] is True
        wait(gw, "2001", ["RINGING", "ANSWERED", "CONNECTIONCLEARED"], since)
        assert client.act(link=link, action="logoff", device="2001")[1]["ok"] is True
        wait_for(lambda: lab.members() == [], CALL_WAIT, what="the agent out of the queue")
        done = [(a.get("action"), a.get("device"), a.get("result")) for a in audit_lines(tmp_path)
                if a.get("action") in ("pause", "ready", "listen", "hangup", "logoff")]
        assert done == [("pause", "2001", "0"), ("ready", "2001", "0"), ("listen", "2001", "0"),
                        ("hangup", "2001", "0"), ("logoff", "2001", "0")]
    finally:
        gw.close()
        lab.reset()
