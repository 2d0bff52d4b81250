"""Queue statistics without I/O (core/queues.py), their events from Asterisk's AMI text (the tracker), the
supervisor's ChanSpy as the bytes the driver sends, and the link keeping queue events from Protheus."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from smartcti_gateway.core.codes import Result
from smartcti_gateway.core.engine import Engine
from smartcti_gateway.core.pabx import (CallEvent, CallEventType as E, ConnectionState as CS, GroupCall, PabxError,
                                        QueueEvent, QueueEventKind as K, Spy)
from smartcti_gateway.core.queues import (BRASILIA, MAX_GROUPS, MAX_WAITING, PolledQueues, QueueStats, diff_waiting,
                                          site_zone)
from smartcti_gateway.pabx.asterisk.ami import Message, Parser, action
from smartcti_gateway.pabx.asterisk.driver import AsteriskDriver
from smartcti_gateway.pabx.asterisk.options import AsteriskOptions
from smartcti_gateway.pabx.asterisk.tracker import Chan, Tracker
from smartcti_gateway.pabx.base import Common

# 2026-03-10 14:00 in São Paulo (UTC−3)
NOON = datetime(2026, 3, 10, 14, 0, tzinfo=BRASILIA).timestamp()


class Clock:
    def __init__(self, t: float = NOON):
        self.t = t

    def __call__(self) -> float:
        return self.t


def ev(kind, call_id="c1", group="701", **kw) -> QueueEvent:
    return QueueEvent(kind, group, call_id, **kw)


# ------------------------------------------------------------------ QueueStats
def test_a_caller_waits_then_is_answered_within_or_outside_the_service_level():
    clock = Clock()
    q = QueueStats(clock)
    q.on_event(ev(K.JOINED, calling="4832810000"))
    clock.t += 12
    (w,) = q.snapshot(20)["701"].waiting
    assert (w.call_id, w.calling, w.since) == ("c1", "4832810000", NOON)
    q.on_event(ev(K.LEFT))                      # Asterisk: QueueCallerLeave, then AgentConnect
    q.on_event(ev(K.ANSWERED, waited=12, agent="2001"))
    g = q.snapshot(20)["701"]
    assert (g.waiting, g.answered, g.abandoned, g.service_level) == ([], 1, 0, 1.0)
    assert q.snapshot(11)["701"].service_level == 0.0     # any threshold, at snapshot time
    assert q.snapshot(12)["701"].service_level == 1.0     # "within" includes the threshold itself


def test_the_wait_is_measured_when_the_pabx_does_not_say_it():
    clock = Clock()
    q = QueueStats(clock)
    q.on_event(ev(K.JOINED))
    clock.t += 30.2
    q.on_event(ev(K.ANSWERED))
    assert q.snapshot(30)["701"].service_level == 0.0 and q.snapshot(31)["701"].service_level == 1.0


def test_abandoned_and_service_level_of_several_calls():
    clock = Clock()
    q = QueueStats(clock)
    for i, wait in enumerate([5, 15, 25, 40]):
        q.on_event(ev(K.JOINED, f"a{i}"))
        q.on_event(ev(K.ANSWERED, f"a{i}", waited=wait))
    q.on_event(ev(K.JOINED, "x"))
    q.on_event(ev(K.ABANDONED, "x", waited=3))
    q.on_event(ev(K.LEFT, "x"))                 # Asterisk: Abandon, then Leave: not counted twice
    g = q.snapshot(20)["701"]
    assert (g.answered, g.abandoned, g.service_level, g.waiting) == (4, 1, 0.5, [])
    assert q.answered_total["701"] == 4 and q.abandoned_total["701"] == 1
    assert q.snapshot(20)["701"].answered == 4                                  # reading changes nothing


def test_nothing_answered_today_has_no_service_level_and_waiting_is_oldest_first():
    clock = Clock()
    q = QueueStats(clock)
    q.on_event(ev(K.JOINED, "late", waited=0))
    q.on_event(ev(K.JOINED, "early", waited=50))            # the gateway came up while it waited
    g = q.snapshot(20)["701"]
    assert g.service_level is None and [w.call_id for w in g.waiting] == ["early", "late"]
    assert g.waiting[0].since == NOON - 50
    q.on_event(ev(K.JOINED, "late", calling="48"))          # told again: still one call, same since
    assert [(w.call_id, w.since) for w in q.snapshot(20)["701"].waiting] == [("early", NOON - 50), ("late", NOON)]


def test_a_caller_who_leaves_without_answer_or_abandon_is_neither():
    q = QueueStats(Clock())
    q.on_event(ev(K.JOINED))
    q.on_event(ev(K.LEFT))                       # the queue's timeout sent it elsewhere
    g = q.snapshot(20)["701"]
    assert (g.waiting, g.answered, g.abandoned) == ([], 0, 0)


def test_the_day_starts_again_at_midnight_in_sao_paulo_not_utc():
    clock = Clock(datetime(2026, 3, 10, 23, 50, tzinfo=BRASILIA).timestamp())
    q = QueueStats(clock, zone="America/Sao_Paulo")
    q.on_event(ev(K.JOINED, "a"))
    q.on_event(ev(K.ANSWERED, "a", waited=1))
    q.on_event(ev(K.JOINED, "b"))                # waits across midnight
    clock.t += 15 * 60                           # 00:05 in São Paulo, 03:05 UTC
    g = q.snapshot(20)["701"]
    assert (g.answered, g.service_level, [w.call_id for w in g.waiting]) == (0, None, ["b"])
    assert q.answered_total["701"] == 1          # /metrics counters never go back
    q2 = QueueStats(Clock(datetime(2026, 3, 11, 1, 0, tzinfo=timezone.utc).timestamp()))   # 22:00 of the 10th there
    q2.on_event(ev(K.ANSWERED, "z", waited=1))
    q2.clock = Clock(datetime(2026, 3, 11, 2, 59, tzinfo=timezone.utc).timestamp())       # 23:59 there
    assert q2.snapshot(20)["701"].answered == 1
    q2.clock = Clock(datetime(2026, 3, 11, 3, 0, tzinfo=timezone.utc).timestamp())        # midnight there
    assert "701" not in q2.snapshot(20)          # nothing today, nobody waiting


def test_without_tzdata_the_zone_is_a_fixed_utc_minus_3():
    assert site_zone("Not/AZone") is BRASILIA
    assert BRASILIA.utcoffset(None) == timedelta(hours=-3)


def test_bounded_memory_waiting_calls_and_groups():
    q = QueueStats(Clock())
    for i in range(MAX_WAITING + 5):
        q.on_event(ev(K.JOINED, f"c{i}"))
    g = q.snapshot(20)["701"]
    assert len(g.waiting) == MAX_WAITING and g.dropped == 5
    for i in range(MAX_GROUPS + 3):
        q.on_event(ev(K.JOINED, "x", group=f"g{i}"))
    assert len(q.snapshot(20)) == MAX_GROUPS and q.groups_dropped == 4      # "701" was one of them


@pytest.mark.parametrize("waited", ["nan", "-4", "x", None, float("inf"), "1e400"])
def test_a_bad_wait_from_the_pabx_is_measured_instead(waited):
    clock = Clock()
    q = QueueStats(clock)
    q.on_event(ev(K.JOINED))
    clock.t += 7
    q.on_event(ev(K.ANSWERED, waited=waited))
    assert q.snapshot(7)["701"].service_level == 1.0 and q.snapshot(6)["701"].service_level == 0.0


def test_events_without_group_or_id_change_nothing():
    q = QueueStats(Clock())
    q.on_event(ev(K.JOINED, group=""))
    q.on_event(ev(K.JOINED, call_id=""))
    q.on_event("not an event")
    assert [(name, g.waiting, g.answered) for name, g in q.snapshot(20).items()] == [("701", [], 0)]


# ------------------------------------------------------------------ polled waiting lists (Dígitro)
def queued(cid, ani="4832810000"):
    return GroupCall(cid, CS.QUEUED, "", ani)


def test_diff_joined_left_then_answered_when_it_reaches_an_agent():
    events, state = diff_waiting("701", {}, [queued("c1")], set(), 100.0, 5)
    assert [(e.kind, e.call_id, e.calling) for e in events] == [(K.JOINED, "c1", "4832810000")]
    events, state = diff_waiting("701", state, [queued("c1")], set(), 102.0, 5)
    assert events == []
    events, state = diff_waiting("701", state, [], set(), 104.0, 5)          # gone; the ring not seen yet
    assert [e.kind for e in events] == [K.LEFT] and state["c1"].left_at == 104.0
    events, state = diff_waiting("701", state, [], {"c1"}, 106.0, 5)         # the model has it at an agent
    assert [(e.kind, e.waited) for e in events] == [(K.ANSWERED, 4.0)] and state == {}


def test_diff_listed_at_an_agent_is_answered_at_once():
    _, state = diff_waiting("701", {}, [queued("c1")], set(), 100.0, 5)
    events, state = diff_waiting("701", state, [GroupCall("c1", CS.ALERTING, "2001", "48")], set(), 103.0, 5)
    assert [(e.kind, e.waited, e.agent) for e in events] == [(K.LEFT, None, ""), (K.ANSWERED, 3.0, "2001")]


def test_diff_gone_and_never_at_an_agent_is_abandoned_after_the_grace():
    _, state = diff_waiting("701", {}, [queued("c1")], set(), 100.0, 5)
    events, state = diff_waiting("701", state, [], set(), 108.0, 5)
    assert [e.kind for e in events] == [K.LEFT]
    events, state = diff_waiting("701", state, [], set(), 112.0, 5)
    assert events == [] and "c1" in state
    events, state = diff_waiting("701", state, [], set(), 113.0, 5)
    assert [(e.kind, e.waited) for e in events] == [(K.ABANDONED, 8.0)] and state == {}


def test_diff_back_in_the_queue_waits_on_with_its_first_since():
    _, state = diff_waiting("701", {}, [queued("c1")], set(), 100.0, 5)
    _, state = diff_waiting("701", state, [], set(), 102.0, 5)
    events, state = diff_waiting("701", state, [queued("c1")], set(), 104.0, 5)
    assert [(e.kind, e.waited) for e in events] == [(K.JOINED, 4.0)] and state["c1"].left_at is None


def test_polled_queues_feed_the_stats_and_count_an_answered_call_once():
    clock = Clock(1000.0)
    q, poller = QueueStats(clock), PolledQueues(grace=5)

    def poll(calls, reached=frozenset()):
        for e in poller.poll("701", calls, reached, clock.t):
            q.on_event(e)

    poll([queued("c1"), queued("c2", "4899")])
    clock.t += 2
    poll([queued("c2", "4899"), GroupCall("c1", CS.CONNECTED, "2001", "4832810000")])
    clock.t += 2
    poll([queued("c2", "4899"), GroupCall("c1", CS.CONNECTED, "2001", "4832810000"),
          GroupCall("c3", CS.ALERTING, "2002", "4877")])       # c3 reached 2002 before any poll saw it wait
    clock.t += 2
    poll([GroupCall("c1", CS.CONNECTED, "2001", "4832810000"), GroupCall("c3", CS.CONNECTED, "2002", "4877")])
    clock.t += 6
    poll([])
    g = q.snapshot(1)["701"]
    assert (g.answered, g.abandoned, g.waiting) == (2, 1, [])
    assert q.snapshot(2)["701"].service_level == 1.0 and q.snapshot(1)["701"].service_level == 0.5
    assert poller.keep_only(set()) == [] and poller.groups == []


def test_a_group_no_longer_polled_has_nobody_waiting():
    clock = Clock(1000.0)
    q, poller = QueueStats(clock), PolledQueues()
    for e in poller.poll("701", [queued("c1")], set(), clock.t):
        q.on_event(e)
    assert len(q.snapshot(20)["701"].waiting) == 1
    for e in poller.keep_only({"702"}):
        q.on_event(e)
    assert q.snapshot(20)["701"].waiting == []


def test_garbage_in_a_polled_list_is_skipped():
    events, state = diff_waiting("701", {}, [None, "x", GroupCall("", CS.QUEUED), queued("c1")], set(), 1.0, 5)
    assert [e.call_id for e in events] == ["c1"]


# ------------------------------------------------------------------ from Asterisk's AMI text
SNAP = ("Channel: Local/7001@incoming-00000001;2\r\nChannelState: 6\r\nChannelStateDesc: Up\r\n"
        "CallerIDNum: 4832810001\r\nCallerIDName: 4832810001\r\nConnectedLineNum: 4832810001\r\n"
        "Context: incoming\r\nExten: 7001\r\nPriority: 2\r\nUniqueid: 1796143143.5\r\nLinkedid: 1796143143.4\r\n")
AGENT = ("DestChannel: PJSIP/2001-00000000\r\nDestChannelState: 6\r\nDestChannelStateDesc: Up\r\n"
         "DestUniqueid: 1796143141.2\r\nDestLinkedid: 1796143143.4\r\nInterface: PJSIP/2001\r\nMemberName: 1234\r\n")


def ami(*frames: str) -> list[Message]:
    parser = Parser()
    parser.feed(b"Asterisk Call Manager/11.0.0\r\n")
    return parser.feed("".join(f + "\r\n" for f in frames).encode())


def tracked(*frames: str) -> list:
    got = []
    t = Tracker("PJSIP/", AsteriskOptions(queues={"701": "vendas"}).group_of, got.append)
    for m in ami(*frames):
        t.on_event(m)
    return got


def test_tracker_queue_answered_as_recorded_from_asterisk_22():
    got = tracked(f"Event: QueueCallerJoin\r\nPrivilege: agent,all\r\n{SNAP}Queue: vendas\r\nPosition: 1\r\nCount: 1\r\n",
                  f"Event: AgentCalled\r\n{SNAP}{AGENT}Queue: vendas\r\n",
                  f"Event: QueueCallerLeave\r\n{SNAP}Queue: vendas\r\nPosition: 1\r\nCount: 0\r\n",
                  f"Event: AgentConnect\r\n{SNAP}{AGENT}Queue: vendas\r\nHoldTime: 2\r\nRingTime: 0\r\n")
    assert got == [QueueEvent(K.JOINED, "701", "1796143143.4", "4832810001"),
                   QueueEvent(K.LEFT, "701", "1796143143.4", "4832810001"),
                   QueueEvent(K.ANSWERED, "701", "1796143143.4", "4832810001", 2.0, "2001")]


def test_tracker_queue_abandoned_and_an_unmapped_queue_is_its_own_group():
    got = tracked(f"Event: QueueCallerJoin\r\n{SNAP}Queue: suporte\r\nPosition: 1\r\n",
                  f"Event: QueueCallerAbandon\r\n{SNAP}Queue: suporte\r\nPosition: 1\r\nOriginalPosition: 1\r\n"
                  f"HoldTime: 1\r\n",
                  f"Event: QueueCallerLeave\r\n{SNAP}Queue: suporte\r\nPosition: 1\r\nCount: 0\r\n")
    assert [(e.kind, e.group, e.waited) for e in got] == [(K.JOINED, "suporte", None), (K.ABANDONED, "suporte", 1.0),
                                                          (K.LEFT, "suporte", None)]


def test_tracker_queue_events_with_garbage_fields_do_not_crash():
    got = tracked("Event: AgentConnect\r\nQueue: vendas\r\nHoldTime: soon\r\nUniqueid: 1.1\r\n",
                  "Event: QueueCallerJoin\r\nQueue: \r\nUniqueid: 1.2\r\n",
                  "Event: QueueCallerAbandon\r\nQueue: vendas\r\n",
                  "Event: QueueCallerLeave\r\nUniqueid: 1.3\r\n")
    assert got == [QueueEvent(K.ANSWERED, "701", "1.1", "", None, "")]


def test_the_events_asked_of_asterisk_include_the_queue_callers():
    assert {"QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentConnect"} <= set(Tracker.events())


def test_after_a_reconnect_queuestatus_says_who_waits_and_who_no_longer_does():
    got = []
    t = Tracker("PJSIP/", AsteriskOptions().group_of, got.append)
    t.on_event(Message.of(Event="QueueCallerJoin", Queue="vendas", Uniqueid="9.1", Linkedid="9.0", CallerIDNum="48"))
    t.load_channels([Message.of(Event="CoreShowChannel", Channel="Local/7001@incoming-00000007;2", Uniqueid="8.1",
                                Linkedid="8.0", ChannelStateDesc="Up")])
    t.load_members([Message.of(Event="QueueEntry", Queue="vendas", Uniqueid="8.1", CallerIDNum="4899", Wait="42")])
    assert got[1:] == [QueueEvent(K.LEFT, "vendas", "9.0", "48"), QueueEvent(K.JOINED, "vendas", "8.0", "4899", 42.0)]


def test_queue_events_reach_no_protheus_session_through_the_core():
    engine = Engine("test")
    engine.complete(engine.plan("AgentInService", {"device": "2001", "ipaddress": "http://127.0.0.1:9/ev"}))
    assert engine.pabx_event(QueueEvent(K.ANSWERED, "701", "c1", "48", 2.0, "2001")) == []


# ------------------------------------------------------------------ the supervisor's ChanSpy
class RecordingAmi:
    """Stands for the AMI connection: every action answered Success, its bytes kept."""

    connected = True

    def __init__(self, refuse: set[str] = frozenset()):
        self.sent: list[bytes] = []
        self.refuse = refuse

    async def send(self, name, fields, timeout=None):
        self.sent.append(action(name, "id", fields))
        ok = name not in self.refuse
        return Message.of(Response="Success" if ok else "Error", Message="" if ok else "No such endpoint")


def spy_driver(refuse=frozenset()) -> AsteriskDriver:
    drv = AsteriskDriver(AsteriskOptions(secret="x", originate_timeout=20), Common(2, "link 2", 5.0, 5.0))
    drv.conn = RecordingAmi(refuse)
    agent = Chan("1.2", "PJSIP/2001-0000000a", "1.0", "2001", state="Up", reported="established", call_id="1.0")
    drv.tracker.chans[agent.uniqueid] = agent
    return drv


@pytest.mark.parametrize("mode,options", [("listen", "qES"), ("whisper", "qESw"), ("barge", "qESB")])
def test_spy_originates_the_supervisors_phone_into_chanspy_on_the_agents_channel(mode, options):
    drv = spy_driver()
    call_id = asyncio.run(drv.execute(Spy("2099", "2001", mode)))
    originate = drv.conn.sent[-1].decode()
    assert originate.startswith("Action: Originate\r\n")
    lines = dict(line.split(": ", 1) for line in originate.strip().split("\r\n"))
    assert (lines["Channel"], lines["Application"], lines["Data"]) == ("PJSIP/2099", "ChanSpy",
                                                                       f"PJSIP/2001-0000000a,{options}")
    assert (lines["Async"], lines["Timeout"], lines["ChannelId"]) == ("true", "20000", call_id)
    assert lines["CallerID"] == f'"{mode} 2001" <2001>'
    assert call_id.startswith("smartcti-spy-") and call_id in drv.tracker.spies
    assert [m.split(b"\r\n")[0] for m in drv.conn.sent] == [b"Action: PJSIPShowEndpoint"] * 2 + [b"Action: Originate"]


@pytest.mark.parametrize("request_,code", [
    (Spy("2099", "2001", "sing"), Result.INVALID_OPTION),
    (Spy("2099", "2002", "listen"), Result.INVALID_OPTION),          # 2002 has no call
    (Spy("2001", "2001", "listen"), Result.INVALID_DEVICE),
    (Spy("", "2001", "listen"), Result.INVALID_DEVICE),
])
def test_spy_refusals(request_, code):
    drv = spy_driver()
    with pytest.raises(PabxError) as e:
        asyncio.run(drv.execute(request_))
    assert e.value.code is code
    assert not any(m.startswith(b"Action: Originate") for m in drv.conn.sent) and not drv.tracker.spies


def test_spy_of_an_unknown_endpoint_is_18():
    drv = spy_driver(refuse={"PJSIPShowEndpoint"})
    with pytest.raises(PabxError) as e:
        asyncio.run(drv.execute(Spy("2099", "2001", "listen")))
    assert e.value.code is Result.INVALID_DEVICE


def test_the_supervisors_chanspy_channel_is_no_call_for_protheus():
    got = []
    t = Tracker("PJSIP/", AsteriskOptions().group_of, got.append)
    t.monitored.add("2099")
    t.spies.add("smartcti-spy-1")
    snap = dict(Channel="PJSIP/2099-00000003", Uniqueid="smartcti-spy-1", Linkedid="smartcti-spy-1",
                CallerIDNum="2001")
    for event, state in (("Newchannel", "Down"), ("Newstate", "Ringing"), ("Newstate", "Up"), ("Hangup", "Up")):
        t.on_event(Message.of(Event=event, ChannelStateDesc=state, **snap))
    assert got == [] and not t.spies


# ------------------------------------------------------------------ the link
def test_the_link_keeps_queue_events_from_protheus_and_notes_calls_at_agents():
    from smartcti_gateway.link import Link

    class NoPabx(AsteriskDriver):
        reports_queues = False

    drv = NoPabx(AsteriskOptions(secret="x"), Common(1, "link 1", 5.0, 5.0))
    link = Link(1, "link 1", drv, timeout=1, version="t")
    link.engine.complete(link.engine.plan("AgentInService", {"device": "2001", "ipaddress": "http://127.0.0.1:9/e"}))
    submitted = []
    link.delivery.submit = submitted.extend
    link.on_event(QueueEvent(K.JOINED, "701", "c1", "48"))
    assert submitted == [] and [w.call_id for w in link.queues.snapshot(20)["701"].waiting] == ["c1"]
    link.on_event(CallEvent(E.DELIVERED, "2001", "c1", calling="48", called="7001"))
    assert [n.name for n in submitted] == ["RINGING"] and "c1" in link._reached_calls()
