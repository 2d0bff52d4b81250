"""Link health, resync translation and the registry, without sockets (injected clocks)."""
from unittest import mock

import pytest

from smartcti_gateway.core import pabx as p
from smartcti_gateway.core.commands import Commands
from smartcti_gateway.core.health import LinkHealth
from smartcti_gateway.core.model import Switch
from smartcti_gateway.core.notify import Notifier
from smartcti_gateway.registry import Registry

CS, E = p.ConnectionState, p.CallEventType


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_health_grace_and_recovery():
    clock = Clock()
    h = LinkHealth(grace=30, clock=clock)
    assert h.up and not h.reported_down
    assert h.failed("refused") is True          # this takes it down
    assert h.failed("refused again") is False   # already down
    clock.t += 29.9
    assert not h.up and not h.reported_down
    clock.t += 0.1
    assert h.reported_down
    assert h.ok() is True and h.up and h.reconnects == 1 and h.down_since is None
    assert h.ok() is False


def test_backoff_is_exponential_capped_and_jittered():
    h = LinkHealth(backoff_initial=1, backoff_max=30, clock=Clock())
    h.failed("x")
    with mock.patch("random.uniform", lambda a, b: b):
        delays = []
        for _ in range(8):
            delays.append(h.next_retry())
            h.failed("again")
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    with mock.patch("random.uniform", lambda a, b: a):
        assert h.next_retry() == 15


def planned(c: Commands, op: str, **args):
    step = c.plan(op, args)
    return step.request, (step.done(None) if step.request is None else None)


def test_commands_while_down_fail_fast_but_protheus_is_told_only_after_grace():
    clock = Clock()
    sw = Switch(clock=clock)
    c = Commands(sw, "v")
    c.health = LinkHealth(grace=30, clock=clock)
    sw.put_in_service("2001", "2001", "u")
    c.plan("Logon", {"device": "2001", "agentID": "1234", "groupID": "701"}).done(None)
    c.plan("Ready", {"device": "2001"}).done(None)
    c.health.failed("refused")
    assert planned(c, "MakeCall", device="2001", telephoneNumber="123") == (None, 22)
    assert planned(c, "SystemStatus") == (None, 0)
    assert planned(c, "queryAgentState", cDevice="2001") == (None, 28)
    assert planned(c, "GetInfoChamAtiv", cDevice="2001") == (None, "CMD#INFOCHAMATIV#22#2001")
    assert planned(c, "showVersion") == (None, "v")
    clock.t += 31
    assert planned(c, "SystemStatus") == (None, 22)
    assert planned(c, "selfTest") == (None, 22)
    assert planned(c, "queryAgentState", cDevice="2001") == (None, 16)
    c.health.ok()
    assert planned(c, "SystemStatus") == (None, 0)      # from the link's health, no PABX round trip


def test_resync_tells_protheus_what_changed_while_it_could_not_hear():
    sw = Switch()
    n = Notifier(sw)
    sw.put_in_service("2001", "2001", "http://protheus/ev")
    n.on_pabx_event(p.AgentEvent(p.AgentEventType.READY, "2001", "1234", ("701",)))
    for t in (E.DELIVERED, E.ESTABLISHED):
        n.on_pabx_event(p.CallEvent(t, "2001", "A", calling="4830000000", called="7001"))
    n.on_pabx_event(p.CallEvent(E.DELIVERED, "2001", "B", calling="4830000001"))
    n.on_pabx_event(p.CallEvent(E.ESTABLISHED, "2001", "B"))
    n.on_pabx_event(p.CallEvent(E.HELD, "2001", "B"))
    # meanwhile on the switch: A ended, B was retrieved, C rings, the agent paused on the phone
    notes = n.resync("2001", p.AgentInfo(p.AgentState.NOT_READY, "1234", ("701",)), [
        p.CallInfo("B", CS.CONNECTED, calling="4830000001"),
        p.CallInfo("C", CS.ALERTING, calling="4830000002", called="7001", direction=p.Direction.INBOUND)])
    assert [(x.name, x.values) for x in notes] == [
        ("NOTREADY", ("1234", "701")),
        ("CONNECTIONCLEARED", ("A", "4830000000", "7001")),
        ("RETRIEVE", ("B", "4830000001", "")),
        ("RINGING", ("C", "4830000002", "7001", "3|4830000002", 1)),
    ]
    assert {c.call_id: c.connections["2001"] for c in sw.calls_of("2001")} == {"B": CS.CONNECTED, "C": CS.ALERTING}
    # nothing changed: nothing to say
    assert n.resync("2001", p.AgentInfo(p.AgentState.NOT_READY, "1234"), [
        p.CallInfo("B", CS.CONNECTED), p.CallInfo("C", CS.ALERTING)]) == []
    # busy is about calls, not an agent change
    assert n.resync("2001", p.AgentInfo(p.AgentState.BUSY, "1234"), None) == []


def test_a_call_answered_while_the_gateway_could_not_hear_rings_first():
    """scripts/soak found ANSWERED without RINGING after a PABX outage: no screen pop for a call that
    appeared and was answered meanwhile. The resync now sends RINGING first; its CALLTYPE follows the
    call's direction, so the agent's own outbound call pops nothing."""
    sw = Switch()
    n = Notifier(sw)
    sw.put_in_service("2001", "2001", "http://protheus/ev")
    n.on_pabx_event(p.AgentEvent(p.AgentEventType.READY, "2001", "1234", ("701",)))
    notes = n.resync("2001", None, [
        p.CallInfo("D", CS.CONNECTED, calling="4830000003", called="7001", direction=p.Direction.INBOUND),
        p.CallInfo("E", CS.HELD, calling="2001", called="4833334444", direction=p.Direction.OUTBOUND)])
    assert [(x.name, x.values[0], x.values[-1] if x.name == "RINGING" else None) for x in notes] == [
        ("RINGING", "D", 1), ("ANSWERED", "D", None),
        ("RINGING", "E", 2), ("ANSWERED", "E", None), ("HELD", "E", None)]


def test_quiet_devices():
    clock = Clock()
    sw = Switch(clock=clock)
    sw.put_in_service("2001", "2001", "u")
    sw.put_in_service("2002", "2002", "u")
    sw.apply(p.CallEvent(E.DELIVERED, "2001", "A"))
    clock.t += 200
    sw.apply(p.CallEvent(E.DELIVERED, "2002", "B"))
    clock.t += 150
    assert sw.quiet_devices(300) == ["2001"]
    assert sw.quiet_devices(100) == ["2001", "2002"]


def test_registry_round_trip_and_forgetting(tmp_path):
    reg = Registry(tmp_path / "state.sqlite")
    sw = Switch()
    dev = sw.put_in_service("2001", " 2001", "http://a/ev")
    sw.put_in_service("2001", " 2001", "http://b/ev")
    c = Commands(sw, "v")
    c.plan("LogonPass", {"device": "2001", "agentID": "1234", "groupID": "701,702", "agentPass": "s3cret"}).done(None)
    reg.save(1, dev)
    reg.save(2, sw.put_in_service("3001", "3001", "http://c/ev"))
    reg.close()
    assert b"s3cret" not in (tmp_path / "state.sqlite").read_bytes()

    reg = Registry(tmp_path / "state.sqlite")
    fresh = Switch()
    (restored,) = reg.restore(1, fresh)
    assert (restored.wire_name, restored.in_service, restored.event_urls) == (" 2001", 2, ["http://a/ev", "http://b/ev"])
    assert (restored.agent.agent_id, restored.agent.groups, restored.agent.state) == \
        ("1234", ("701", "702"), p.AgentState.LOGGED_ON)
    assert restored.agent.password == ""
    restored.agent.state = p.AgentState.LOGGED_OFF
    reg.save(1, restored)                 # logged off, still in service: kept
    assert len(reg.restore(1, Switch())) == 1
    assert fresh.release("2001") is restored
    reg.forget(1, "2001")                 # one AgentOutOfService: nothing left to remember
    assert reg.restore(1, Switch()) == []
    assert [d.name for d in reg.restore(2, Switch())] == ["3001"]


def test_registry_keeps_each_spelling_and_whether_the_pabx_monitors_the_device(tmp_path):
    reg = Registry(tmp_path / "state.sqlite")
    sw = Switch()
    sw.put_in_service("2001", "2001", "http://a/ev")
    dev = sw.put_in_service("2001", " 2001 ", "http://b/ev")
    dev.monitored = False                 # taken while the PABX was away: INSERVICE still owed
    reg.save(1, dev)
    reg.close()
    (restored,) = Registry(tmp_path / "state.sqlite").restore(1, Switch())
    assert list(restored.sessions) == [("http://a/ev", "2001"), ("http://b/ev", " 2001 ")]
    assert restored.monitored is False


def test_registry_reads_a_state_file_of_the_earlier_version(tmp_path):
    import sqlite3
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.execute("CREATE TABLE devices (link_id INTEGER NOT NULL, name TEXT NOT NULL, wire_name TEXT NOT NULL, "
               "event_urls TEXT NOT NULL, in_service INTEGER NOT NULL, agent_id TEXT, agent_groups TEXT, "
               "agent_state TEXT, PRIMARY KEY (link_id, name))")
    db.execute("INSERT INTO devices VALUES (1, '2001', ' 2001', '[\"http://a/ev\"]', 2, '1234', '701', 'ready')")
    db.commit()
    db.close()
    (restored,) = Registry(tmp_path / "old.sqlite").restore(1, Switch())
    assert (list(restored.sessions), restored.in_service, restored.monitored) == ([("http://a/ev", " 2001")], 2, True)


def test_a_second_gateway_cannot_take_the_same_state_file(tmp_path):
    from smartcti_gateway.registry import RegistryInUse
    first = Registry(tmp_path / "state.sqlite", owner="/etc/smartcti/a.yaml")
    with pytest.raises(RegistryInUse) as e:
        Registry(tmp_path / "state.sqlite", owner="/etc/smartcti/b.yaml")
    assert "in use by another smartcti-gateway (pid" in str(e.value) and "a.yaml" in str(e.value)
    assert "give this config its own state_file" in str(e.value)
    first.close()
    Registry(tmp_path / "state.sqlite").close()    # free again once the first one stopped
