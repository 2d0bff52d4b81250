"""The call and agent state machines of the core, fed with neutral events (no sockets)."""
from smartcti_gateway.core import pabx as p
from smartcti_gateway.core.model import Switch

CS = p.ConnectionState
E = p.CallEventType


def switch(*devices: str) -> Switch:
    sw = Switch()
    for d in devices:
        sw.put_in_service(d, d, f"http://protheus/{d}")
    return sw


def ev(t, device, call_id, **kw):
    return p.CallEvent(t, device, call_id, **kw)


def states(sw: Switch, call_id: str) -> dict:
    return dict(sw.calls[call_id].connections)


def test_inbound_call_life():
    sw = switch("2001")
    sw.apply(ev(E.DELIVERED, "2001", "A", calling="4830000000", called="7001", group="701",
                direction=p.Direction.INBOUND, data="3|4830000000"))
    call = sw.calls["A"]
    assert call.connections == {"2001": CS.ALERTING}
    assert (call.calling, call.called, call.group, call.direction) == ("4830000000", "7001", "701", p.Direction.INBOUND)
    sw.apply(ev(E.ESTABLISHED, "2001", "A", other_device="2001"))
    assert states(sw, "A") == {"2001": CS.CONNECTED}
    sw.apply(ev(E.HELD, "2001", "A"))
    assert sw.call_in_state("2001", CS.HELD).call_id == "A"
    sw.apply(ev(E.RETRIEVED, "2001", "A"))
    assert states(sw, "A") == {"2001": CS.CONNECTED}
    sw.apply(ev(E.CONNECTION_CLEARED, "2001", "A", other_device="4830000000"))
    assert "A" not in sw.calls and sw.device("2001").calls == []


def test_outbound_call_life_and_blanks_do_not_erase():
    sw = switch("2001")
    sw.apply(ev(E.SERVICE_INITIATED, "2001", "B"))
    assert states(sw, "B") == {"2001": CS.INITIATED} and sw.calls["B"].direction is p.Direction.OUTBOUND
    sw.apply(ev(E.ORIGINATED, "2001", "B", called="4832810000", other_device="4832810000"))
    sw.apply(ev(E.DELIVERED, "2001", "B", other_device="4832810000", direction=p.Direction.OUTBOUND))
    assert states(sw, "B") == {"2001": CS.CONNECTED, "4832810000": CS.ALERTING}
    sw.apply(ev(E.ESTABLISHED, "2001", "B", other_device="4832810000"))
    assert states(sw, "B") == {"2001": CS.CONNECTED, "4832810000": CS.CONNECTED}
    assert sw.calls["B"].called == "4832810000"


def test_failed_call_records_the_cause():
    sw = switch("2001")
    sw.apply(ev(E.SERVICE_INITIATED, "2001", "C"))
    sw.apply(ev(E.FAILED, "2001", "C", cause=p.Result.BUSY))
    assert states(sw, "C") == {"2001": CS.FAILED}
    assert sw.device("2001").last_failure == p.Result.BUSY
    sw.apply(ev(E.CONNECTION_CLEARED, "2001", "C"))
    assert sw.calls == {}


def test_consultation_then_transfer_rekeys():
    sw = switch("2001", "2002")
    sw.apply(ev(E.ESTABLISHED, "2001", "A", calling="4830000000"))
    sw.apply(ev(E.HELD, "2001", "A"))
    sw.apply(ev(E.SERVICE_INITIATED, "2001", "B"))
    sw.apply(ev(E.DELIVERED, "2002", "B", calling="2001", direction=p.Direction.INTERNAL))
    sw.apply(ev(E.ESTABLISHED, "2001", "B", other_device="2002"))
    sw.apply(ev(E.ESTABLISHED, "2002", "B", other_device="2002"))
    assert sw.call_in_state("2001", CS.HELD).call_id == "A"
    assert sw.call_in_state("2001", CS.CONNECTED).call_id == "B"
    # transfer: 2001 leaves both calls, 2002 now holds the original caller under call id A
    sw.apply(ev(E.CONNECTION_CLEARED, "2001", "A"))
    sw.apply(ev(E.CONNECTION_CLEARED, "2001", "B"))
    sw.apply(ev(E.TRANSFERRED, "2002", "A", old_call_id="B", other_device="4830000000", calling="4830000000"))
    assert sw.device("2001").calls == []
    assert sw.device("2002").calls == ["A"]
    assert sw.calls["A"].calling == "4830000000"
    assert sw.calls["A"].connections["2002"] is CS.CONNECTED
    assert "B" not in sw.calls


def test_diverted_call_leaves_the_device():
    sw = switch("2001")
    sw.apply(ev(E.DELIVERED, "2001", "A"))
    sw.apply(ev(E.DIVERTED, "2001", "A", other_device="2005"))
    assert sw.device("2001").calls == [] and "A" not in sw.calls


def test_events_for_unknown_devices_are_ignored():
    sw = switch("2001")
    assert sw.apply(ev(E.DELIVERED, "2999", "Z")) is None
    assert sw.calls == {}


def test_agent_events():
    sw = switch("2001")
    A = p.AgentEventType
    sw.apply(p.AgentEvent(A.LOGGED_ON, "2001", "1234", ("701", "702")))
    agent = sw.device("2001").agent
    assert (agent.agent_id, agent.groups, agent.state) == ("1234", ("701", "702"), p.AgentState.LOGGED_ON)
    sw.apply(p.AgentEvent(A.READY, "2001", "1234"))
    assert agent.state is p.AgentState.READY and agent.groups == ("701", "702")
    sw.apply(p.AgentEvent(A.NOT_READY, "2001", "1234", reason="lunch"))
    assert agent.state is p.AgentState.NOT_READY and agent.reason == "lunch"
    sw.apply(p.AgentEvent(A.WORK_AFTER_CALL, "2001", "1234"))
    assert agent.state is p.AgentState.WORK_AFTER_CALL
    sw.apply(p.AgentEvent(A.LOGGED_OFF, "2001", "1234"))
    assert agent.state is p.AgentState.LOGGED_OFF


def test_snapshot_replaces_known_calls():
    sw = switch("2001")
    sw.apply(ev(E.DELIVERED, "2001", "OLD"))
    sw.apply_snapshot("2001", [p.CallInfo("NEW", CS.CONNECTED, calling="1", other_devices=("4830000000",))])
    assert sw.device("2001").calls == ["NEW"] and "OLD" not in sw.calls
    assert states(sw, "NEW") == {"2001": CS.CONNECTED, "4830000000": CS.CONNECTED}


def test_out_of_service_releases_at_once():
    sw = switch("2001", "2002")
    sw.put_in_service("2001", "2001", "http://protheus/2001")
    assert sw.device("2001").event_urls == ["http://protheus/2001"] and sw.device("2001").in_service == 2
    sw.apply(p.CallEvent(E.DELIVERED, "2001", "C1", other_device="2002"))
    sw.apply(p.CallEvent(E.DELIVERED, "2002", "C1"))
    dev = sw.device("2001")
    assert sw.release("2001") is dev              # however many AgentInService came before
    assert sw.device("2001") is None and not sw.is_in_service("2001")
    assert "2001" not in sw.calls["C1"].connections and sw.device("2002").calls == ["C1"]
    assert sw.release("2001") is None and sw.release("nope") is None
    assert sw.apply(p.CallEvent(E.ESTABLISHED, "2001", "C1")) is None   # its events are not looked at


def test_docs_show_the_call_transitions_the_core_uses():
    """docs/events.md holds the rendered CALL_TRANSITIONS table: changing one without the other fails."""
    from pathlib import Path
    from smartcti_gateway.core.model import CALL_TRANSITIONS, transitions_table
    docs = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text(encoding="utf-8")
    assert transitions_table() in docs
    assert {event for event, _ in CALL_TRANSITIONS} == set(E)     # every event type has its row
