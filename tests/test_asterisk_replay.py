"""AMI streams recorded from the lab's Asterisk 20 and 22 (tests/fixtures/ami, re-recorded with
SMARTCTI_RECORD_AMI=1 scripts/test -k asterisk_lab), replayed through the tracker and the core without
Asterisk or sockets: the SmartCTI events Protheus would get, with their values.

A recording starts with the gateway's own Originate as a pseudo-event when the scenario made one.
The same streams are then bent the ways a field site bends them: events out of order as Asterisk's
threads publish them, fields of other versions, unknown events, garbage.
"""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from smartcti_gateway.core.engine import Engine
from smartcti_gateway.core.notify import EVENT_PARAMS
from smartcti_gateway.pabx.asterisk.ami import Message
from smartcti_gateway.pabx.asterisk.options import AsteriskOptions
from smartcti_gateway.pabx.asterisk.tracker import Tracker

FIXTURES = Path(__file__).parent / "fixtures" / "ami"
DEVICES = ("2001", "2002", "2003", "2004")
ANI = "4832810000"
C = "<call>"          # the call id: whatever the recording has, the same one throughout
CALL_EVENTS = {name for name, params in EVENT_PARAMS.items() if params[:1] == ("CALLID",)}


def replay(events: list[dict], devices=DEVICES) -> list[tuple]:
    """(device, event name, values...) of every SmartCTI event but INSERVICE."""
    engine = Engine("test")
    for d in devices:
        engine.complete(engine.plan("AgentInService", {"device": d, "ipaddress": "http://127.0.0.1:9/ev"}))
        engine.monitored(d)
    notes = []
    options = AsteriskOptions(queues={"701": "vendas", "702": "suporte"})
    tracker = Tracker("PJSIP/", options.group_of, lambda ev: notes.extend(engine.pabx_event(ev)))
    tracker.monitored.update(devices)
    for e in events:
        if e.get("Event") == "_GatewayOriginate":
            tracker.originates[e["ChannelId"]] = e["Number"]
            continue
        tracker.on_event(Message(dict(e), list(e.items())))
    return [(n.device, n.name, *n.values) for n in notes if n.name != "INSERVICE"]


def recorded(name: str) -> list[Path]:
    return sorted(FIXTURES.glob(f"{name}.ast*.json"))


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def abstract(got: list[tuple]) -> list[tuple]:
    """The call id as C (checked to be one id for the whole scenario) so expectations read like docs/events.md."""
    ids = {g[2] for g in got if g[1] in CALL_EVENTS}
    assert len(ids) <= 1, ids
    return [(*g[:2], C, *g[3:]) if g[1] in CALL_EVENTS else g for g in got]


EXPECTED = {
    "agent_states": [("2001", "LOGGEDON", "1234", "701"), ("2001", "READY", "1234", "701"),
                     ("2001", "NOTREADY", "1234", "701"), ("2001", "READY", "1234", "701"),
                     ("2001", "LOGGEDOFF", "1234", "701")],
    "queue_call_answered_cleared": [
        ("2001", "LOGGEDON", "1234", "701"), ("2001", "READY", "1234", "701"),
        ("2001", "RINGING", C, ANI, "7001", f"3|{ANI}", 1), ("2001", "ANSWERED", C, ANI, "7001"),
        ("2001", "CONNECTIONCLEARED", C, ANI, "7001")],
    "queue_call_customer_hangs_up": [
        ("2001", "RINGING", C, ANI, "7001", f"3|{ANI}", 1), ("2001", "ANSWERED", C, ANI, "7001"),
        ("2001", "CONNECTIONCLEARED", C, ANI, "7001")],
    "queue_autopause": [  # app_queue pauses the member at the ring timeout, before it hangs the ring up
        ("2004", "LOGGEDON", "4321", "702"), ("2004", "READY", "4321", "702"),
        ("2004", "RINGING", C, ANI, "7002", f"3|{ANI}", 1), ("2004", "NOTREADY", "4321", "702"),
        ("2004", "CONNECTIONCLEARED", C, ANI, "7002")],
    "make_call_answered": [
        ("2003", "SERVICEINITIATED", C, "2003", "4833334444"), ("2003", "ORIGINATED", C, "2003", "4833334444"),
        ("2003", "RINGING", C, "2003", "4833334444", "3|2003", 2), ("2003", "ANSWERED", C, "2003", "4833334444"),
        ("2003", "CONNECTIONCLEARED", C, "2003", "4833334444")],
    "make_call_busy": [
        ("2003", "SERVICEINITIATED", C, "2003", "4833330000"), ("2003", "ORIGINATED", C, "2003", "4833330000"),
        ("2003", "CALLFAILURE", C, "2003", "4833330000", 10), ("2003", "CONNECTIONCLEARED", C, "2003", "4833330000")],
    "make_call_not_picked_up": [
        ("2003", "SERVICEINITIATED", C, "2003", "4833334444"), ("2003", "CALLFAILURE", C, "2003", "4833334444", 11),
        ("2003", "CONNECTIONCLEARED", C, "2003", "4833334444")],
    "phone_hold_resume": [
        ("2001", "RINGING", C, ANI, "7001", f"3|{ANI}", 1), ("2001", "ANSWERED", C, ANI, "7001"),
        ("2001", "HELD", C, ANI, "7001"), ("2001", "RETRIEVE", C, ANI, "7001")],
    "phone_blind_transfer": [
        ("2001", "RINGING", C, ANI, "7001", f"3|{ANI}", 1), ("2001", "ANSWERED", C, ANI, "7001"),
        ("2001", "CONNECTIONCLEARED", C, ANI, "7001"),
        ("2002", "RINGING", C, ANI, "7001", f"3|{ANI}", 1), ("2002", "ANSWERED", C, ANI, "7001")],
}
# Two devices' events interleave as the threads of Asterisk publish them: compared per device
PER_DEVICE = {
    "phone_dials_colleague": {
        "2001": [("SERVICEINITIATED", C, "2001", "2002"), ("ORIGINATED", C, "2001", "2002"),
                 ("RINGING", C, "2001", "2002", "3|2001", 2), ("ANSWERED", C, "2001", "2002"),
                 ("CONNECTIONCLEARED", C, "2001", "2002")],
        "2002": [("RINGING", C, "2001", "2002", "3|2001", 2), ("ANSWERED", C, "2001", "2002"),
                 ("CONNECTIONCLEARED", C, "2001", "2002")]},
}


def by_device(got: list[tuple]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for g in got:
        out.setdefault(g[0], []).append(g[1:])
    return out


def cases():
    for name in [*EXPECTED, *PER_DEVICE]:
        paths = recorded(name)
        assert paths, f"no recording of {name} in {FIXTURES}"
        yield from (pytest.param(name, p, id=p.stem) for p in paths)


@pytest.mark.parametrize("name,path", list(cases()))
def test_recorded_stream_gives_the_smartcti_sequence(name, path):
    got = abstract(replay(load(path)))
    if name in EXPECTED:
        assert got == EXPECTED[name]
    else:
        assert by_device(got) == PER_DEVICE[name]


def test_both_builds_are_recorded():
    for name in [*EXPECTED, *PER_DEVICE]:
        assert {p.stem.rsplit(".", 1)[1] for p in recorded(name)} >= {"ast20", "ast22"}, name


# ------------------------------------------------------------- bent streams
def _index(events, event, channel_prefix):
    return next(i for i, e in enumerate(events) if e["Event"] == event and e.get("Channel", "").startswith(channel_prefix))


@pytest.mark.parametrize("path", recorded("queue_call_answered_cleared"), ids=lambda p: p.stem)
def test_the_phone_ringing_before_the_queue_says_who_calls(path):
    """Seen on both builds: the agent's Newstate Ringing may come before AgentCalled and DialBegin."""
    events = load(path)
    ring = _index(events, "Newstate", "PJSIP/2001-")
    called = next(i for i, e in enumerate(events) if e["Event"] == "AgentCalled")
    assert called < ring
    events.insert(called, events.pop(ring))
    assert abstract(replay(events)) == EXPECTED["queue_call_answered_cleared"]


@pytest.mark.parametrize("path", recorded("make_call_not_picked_up"), ids=lambda p: p.stem)
def test_originate_failure_told_before_or_after_the_hangup(path):
    events = load(path)
    response = next(i for i, e in enumerate(events) if e["Event"] == "OriginateResponse")
    hangup = _index(events, "Hangup", "PJSIP/2003-")
    events[response], events[hangup] = events[hangup], events[response]
    assert abstract(replay(events)) == EXPECTED["make_call_not_picked_up"]


def _without(events, *fields):
    out = copy.deepcopy(events)
    for e in out:
        for f in fields:
            e.pop(f, None)
    return out


@pytest.mark.parametrize("path", recorded("queue_call_answered_cleared") + recorded("agent_states"),
                         ids=lambda p: p.stem)
def test_fields_older_versions_lack_change_nothing(path):
    """Asterisk 18 and early 20s have no TechCause, older queues no PausedReason/LastPause/LoginTime/
    Wrapuptime; Asterisk before 12.2 named QueueMemberPause QueueMemberPaused."""
    name = path.stem.rsplit(".", 1)[0]
    events = _without(load(path), "TechCause", "LastPause", "LoginTime", "InCall", "Wrapuptime", "Tenantid")
    for e in events:
        if e["Event"] == "QueueMemberPause":
            e["Event"] = "QueueMemberPaused"
    assert abstract(replay(events)) == EXPECTED[name]


@pytest.mark.parametrize("path", recorded("queue_call_answered_cleared"), ids=lambda p: p.stem)
def test_unknown_events_and_garbage_fields_change_nothing(path):
    rng = random.Random(623)
    events = []
    for e in load(path):
        events.append({"Event": "VarSet", "Variable": "X", "Value": "\x00" * 3})
        e = dict(e)
        e["SystemName"] = "pbx-a"
        e[f"X-{rng.randint(0, 99)}"] = "<unknown>"
        events.append(e)
    events += [{"Event": "Hangup"}, {"Event": "DialBegin", "Uniqueid": "nobody"}, {"Event": "BridgeEnter"},
               {"Event": "AttendedTransfer", "Result": "Success"}, {"Event": "OriginateResponse"}, {}]
    assert abstract(replay(events)) == EXPECTED["queue_call_answered_cleared"]


@pytest.mark.parametrize("path", recorded("queue_call_answered_cleared"), ids=lambda p: p.stem)
def test_a_device_not_monitored_hears_nothing(path):
    assert replay(load(path), devices=("2002",)) == []


# ------------------------------------------------------------- a phone's own attended transfer
def _snap(prefix: str, channel: str, uid: str, linked: str, num: str, connected: str = "<unknown>",
          state: str = "Up", exten: str = "", context: str = "from-internal") -> dict:
    return {f"{prefix}Channel": channel, f"{prefix}ChannelStateDesc": state, f"{prefix}CallerIDNum": num,
            f"{prefix}ConnectedLineNum": connected, f"{prefix}Exten": exten, f"{prefix}Context": context,
            f"{prefix}Uniqueid": uid, f"{prefix}Linkedid": linked}


def _phone_transfer() -> list[dict]:
    """The agent's phone (2001) holds the customer, calls 2002 and transfers with REFER/Replaces."""
    cust = ("PJSIP/trunk-00000001", "1.1", "1.1", ANI)
    a1 = ("PJSIP/2001-00000002", "1.2", "1.1", "2001")
    a2 = ("PJSIP/2001-00000003", "1.3", "1.3", "2001")
    b = ("PJSIP/2002-00000004", "1.4", "1.3", "2002")
    ev = [
        {"Event": "Newchannel", **_snap("", *cust, state="Ring", exten="7001", context="from-trunk")},
        {"Event": "Newchannel", **_snap("", *a1, state="Down")},
        {"Event": "DialBegin", **_snap("", *cust, exten="7001"), **_snap("Dest", *a1, state="Down")},
        {"Event": "Newstate", **_snap("", *a1, connected=ANI, state="Ringing")},
        {"Event": "Newstate", **_snap("", *a1, connected=ANI)},
        {"Event": "DialEnd", **_snap("", *cust), **_snap("Dest", *a1), "DialStatus": "ANSWER"},
        {"Event": "BridgeEnter", **_snap("", *cust), "BridgeUniqueid": "br1"},
        {"Event": "BridgeEnter", **_snap("", *a1), "BridgeUniqueid": "br1"},
        {"Event": "Hold", **_snap("", *a1)},
        {"Event": "Newchannel", **_snap("", *a2, state="Ring", exten="2002")},
        {"Event": "Newchannel", **_snap("", *b, state="Down")},
        {"Event": "DialBegin", **_snap("", *a2, state="Ring", exten="2002"), **_snap("Dest", *b, state="Down")},
        {"Event": "Newstate", **_snap("", *b, connected="2001", state="Ringing")},
        {"Event": "DialState", **_snap("", *a2, exten="2002"), **_snap("Dest", *b), "DialStatus": "RINGING"},
        {"Event": "Newstate", **_snap("", *b, connected="2001")},
        {"Event": "DialEnd", **_snap("", *a2, exten="2002"), **_snap("Dest", *b), "DialStatus": "ANSWER"},
        {"Event": "BridgeEnter", **_snap("", *a2), "BridgeUniqueid": "br2"},
        {"Event": "BridgeEnter", **_snap("", *b), "BridgeUniqueid": "br2"},
        {"Event": "BridgeLeave", **_snap("", *a2), "BridgeUniqueid": "br2"},
        {"Event": "BridgeEnter", **_snap("", *cust), "BridgeUniqueid": "br2", "SwapUniqueid": "1.3"},
        {"Event": "AttendedTransfer", "Result": "Success", "DestType": "Bridge", "DestBridgeUniqueid": "br2",
         **_snap("OrigTransferer", *a1), **_snap("SecondTransferer", *a2), "OrigBridgeUniqueid": "br1",
         "SecondBridgeUniqueid": "br2"},
        {"Event": "BridgeLeave", **_snap("", *a1), "BridgeUniqueid": "br1"},
        {"Event": "Hangup", **_snap("", *a2), "Cause": "16"},
        {"Event": "Hangup", **_snap("", *a1), "Cause": "16"},
        {"Event": "Hangup", **_snap("", *cust), "Cause": "16"},
        {"Event": "Hangup", **_snap("", *b), "Cause": "16"},
    ]
    return ev


def test_attended_transfer_made_by_the_phone():
    """Asterisk swaps the customer into the second bridge (as cacofonisk's recorded xfer_abbcac shows) and
    says AttendedTransfer; the agent's two legs hang up. 2002 must get the customer as Dígitro gives it."""
    got = by_device(replay(_phone_transfer()))
    assert got["2001"] == [
        ("RINGING", "1.1", ANI, "7001", f"3|{ANI}", 1), ("ANSWERED", "1.1", ANI, "7001"), ("HELD", "1.1", ANI, "7001"),
        ("SERVICEINITIATED", "1.3", "2001", "2002"), ("ORIGINATED", "1.3", "2001", "2002"),
        ("RINGING", "1.3", "2001", "2002", "3|2001", 2), ("ANSWERED", "1.3", "2001", "2002"),
        ("CONNECTIONCLEARED", "1.3", "2001", "2002"), ("CONNECTIONCLEARED", "1.1", ANI, "7001")]
    assert got["2002"] == [
        ("RINGING", "1.3", "2001", "2002", "3|2001", 2), ("ANSWERED", "1.3", "2001", "2002"),
        ("CONNECTIONCLEARED", "1.3", "2001", "2002"),
        ("RINGING", "1.1", ANI, "7001", f"3|{ANI}", 1), ("ANSWERED", "1.1", ANI, "7001"),
        ("CONNECTIONCLEARED", "1.1", ANI, "7001")]


def test_a_late_event_with_the_old_connected_line_does_not_undo_a_transfer():
    """Seen in CI under load: after the transfer an event of 2002's channel still named 2001 as its
    connected line, and GetInfoChamAtiv gave 2001 as the customer's number."""
    ev = _phone_transfer()
    at = next(i for i, e in enumerate(ev) if e["Event"] == "AttendedTransfer") + 1
    b = ("PJSIP/2002-00000004", "1.4", "1.3", "2002")
    ev[at:at] = [{"Event": "Newstate", **_snap("", *b, connected="2001")}]
    ev = [e for e in ev if e["Event"] != "Hangup"]
    tracker = Tracker("PJSIP/", lambda q: q, lambda _ev: None)
    tracker.monitored.update(DEVICES)
    for e in ev:
        tracker.on_event(Message(dict(e), list(e.items())))
    (info,) = tracker.calls_of("2002")
    assert (info.call_id, info.calling) == ("1.1", ANI)
    # a change of its own is taken, and then the old party may be right again
    tracker.on_event(Message.of(Event="Newstate", **_snap("", *b, connected="4830000009")))
    assert tracker.calls_of("2002")[0].calling == "4830000009"
    tracker.on_event(Message.of(Event="Newstate", **_snap("", *b, connected="2001")))
    assert tracker.calls_of("2002")[0].calling == "2001"


def test_a_local_channel_optimised_away_leaves_its_far_side_as_the_peer():
    """The gateway's consultation dials Local/<number>@<context>: once both sides of the Local pair are
    bridged, Asterisk swaps the far side into the agent's bridge and the Local channel leaves and hangs
    up. The agent's peer is then the far side: the one Retrieve must hang up (CI saw "No such channel")."""
    agent = ("PJSIP/2001-00000002", "1.2", "1.1", "2001")
    local1 = ("Local/4830000001@from-internal-00000001;1", "1.3", "1.1", "2001")
    far = ("Local/4830000001@outside-00000002;2", "1.6", "1.1", "4830000001")
    tracker = Tracker("PJSIP/", lambda q: q, lambda ev: None)
    for chan in (agent, local1, far):
        tracker.on_event(Message.of(Event="Newchannel", **_snap("", *chan)))
    for chan in (agent, local1):
        tracker.on_event(Message.of(Event="BridgeEnter", BridgeUniqueid="br1", **_snap("", *chan)))
    assert tracker.chans["1.2"].peer == "1.3"
    tracker.on_event(Message.of(Event="BridgeEnter", BridgeUniqueid="br1", SwapUniqueid="1.3", **_snap("", *far)))
    tracker.on_event(Message.of(Event="BridgeLeave", BridgeUniqueid="br1", **_snap("", *local1)))
    tracker.on_event(Message.of(Event="Hangup", Cause="16", **_snap("", *local1)))
    assert tracker.chans["1.2"].peer == "1.6" and tracker.chans["1.6"].peer == "1.2"


@pytest.mark.parametrize("path", recorded("phone_hold_resume"), ids=lambda p: p.stem)
def test_a_reconnect_keeps_what_events_taught_of_channels_still_there(path):
    """After an AMI reconnect CoreShowChannels lists the channels; one still there keeps its call id, DNIS,
    group and held state; one gone is forgotten."""
    events = load(path)
    held_at = _index(events, "Hold", "PJSIP/2001-") + 1
    notes = []
    tracker = Tracker("PJSIP/", AsteriskOptions(queues={"701": "vendas"}).group_of, notes.append)
    tracker.monitored.add("2001")
    for e in events[:held_at]:
        tracker.on_event(Message(dict(e), list(e.items())))
    (before,) = tracker.calls_of("2001")
    agent = tracker.channel_for("2001")
    rows = [Message.of(Event="CoreShowChannel", Channel=agent.name, Uniqueid=agent.uniqueid, Linkedid=agent.linkedid,
                       ChannelStateDesc="Up", CallerIDNum="2001", Exten="", BridgeId="", Application="AppQueue")]
    tracker.load_channels(rows)
    (after,) = tracker.calls_of("2001")
    assert after == before and after.call_id == agent.call_id and after.called == "7001" and after.group == "701"
    assert list(tracker.chans) == [agent.uniqueid]
