"""The supervisor's pieces without I/O: the board's data from fake links, sessions and their expiry, the
failed-login limiter, the audit line, the action requests."""
import asyncio
import json
from types import SimpleNamespace as NS

import pytest

from smartcti_gateway.core.model import Switch
from smartcti_gateway.core.pabx import AgentState
from smartcti_gateway.core.pabx import ConnectionState as CS
from smartcti_gateway.core.pauses import PauseReason, PauseReasons
from smartcti_gateway.supervisor import actions, audit, board, i18n
from smartcti_gateway.supervisor.pages import board_page, script_json
from smartcti_gateway.supervisor.sessions import LoginLimiter, Sessions


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeSwitch:
    """What the board reads of core/model.py's Switch, and nothing more."""

    def __init__(self, clock):
        self.clock, self.devices, self.calls, self.states = clock, {}, {}, {}

    def agent_state(self, name):
        return self.states.get(name, AgentState.LOGGED_OFF)

    def calls_of(self, name):
        return [self.calls[c] for c in self.devices[name].calls if c in self.calls]


def device(name, agent=None, calls=()):
    return NS(name=name, agent=agent, calls=list(calls))


def agent(agent_id, groups, state, since, reason=""):
    return NS(agent_id=agent_id, groups=tuple(groups), state=state, since=since, reason=reason)


def call(call_id, calling, parties, started, answered=0.0, group="701", called="7001"):
    return NS(call_id=call_id, calling=calling, called=called, group=group, direction=NS(value="inbound"),
              connections=parties, started=started, answered=answered)


def Reasons():
    return PauseReasons((PauseReason("1", "Almoço", "almoco", "3"), PauseReason("2", "Banheiro", "banheiro")), "1")


class Queues:
    def __init__(self, stats):
        self.stats, self.asked = stats, []

    def snapshot(self, service_level_seconds):
        self.asked.append(service_level_seconds)
        return self.stats


def a_link(clock, *, queues=None, reasons=None, spy=False):
    sw = FakeSwitch(clock)
    sw.devices = {
        "2001": device("2001", agent("1234", ["701"], AgentState.READY, 990.0), ["c1"]),
        "2002": device("2002", agent("5678", ["701", "702"], AgentState.NOT_READY, 700.0, "almoco")),
        "2003": device("2003"),
    }
    sw.states = {"2001": AgentState.BUSY, "2002": AgentState.NOT_READY}
    sw.calls = {"c1": call("c1", "4832810000", {"2001": CS.ALERTING, "4832810000": CS.CONNECTED}, started=995.0)}
    link = NS(link_id=1, name="Dígitro", switch=sw, health=NS(up=True, reason=""))
    if queues is not None:
        link.queues = queues
    if reasons is not None:
        link.pause_reasons = reasons
    if spy:
        async def spy_(supervisor, target, mode):
            return 0
        link.spy = spy_
    return link


def test_agents_with_state_time_in_state_reason_and_current_call():
    clock = Clock(1000.0)
    link = a_link(clock, reasons=Reasons())
    view = board.build([link], service_level_seconds=20, now=5000.0)["links"][0]
    agents = {a["device"]: a for a in view["agents"]}
    assert list(agents) == ["2001", "2002", "2003"]
    busy = agents["2001"]
    assert (busy["agent"], busy["state"], busy["groups"]) == ("1234", "busy", ["701"])
    assert busy["seconds"] == 5            # busy since its call rang, not since it became ready
    assert busy["call"] == {"call_id": "c1", "calling": "4832810000", "called": "7001", "group": "701",
                            "direction": "inbound", "state": "alerting", "seconds": 5}
    paused = agents["2002"]
    assert (paused["state"], paused["seconds"], paused["reason"], paused["reason_name"]) == \
        ("not_ready", 300, "almoco", "Almoço")
    assert (paused["reason_code"], paused["dialler_status_id"]) == ("1", "3")      # as the dialler knows it
    assert paused["call"] is None
    assert agents["2003"]["state"] == "logged_off" and agents["2003"]["seconds"] is None
    assert view["pause_reasons"] == [{"code": "1", "name": "Almoço"}, {"code": "2", "name": "Banheiro"}]
    clock.t = 1010.0
    again = {a["device"]: a for a in board.build([link], service_level_seconds=20, now=5010)["links"][0]["agents"]}
    assert again["2002"]["seconds"] == 310 and again["2001"]["call"]["seconds"] == 15


def test_a_connected_call_counts_from_its_answer():
    clock = Clock(1000.0)
    link = a_link(clock)
    link.switch.calls["c1"].connections["2001"] = CS.CONNECTED
    link.switch.calls["c1"].answered = 998.0
    a = board.build([link], service_level_seconds=20, now=0)["links"][0]["agents"][0]
    assert a["call"]["state"] == "connected" and a["call"]["seconds"] == 2 and a["seconds"] == 5


def test_without_queue_statistics_the_numbers_are_unknown():
    view = board.build([a_link(Clock())], service_level_seconds=20, now=5000.0)["links"][0]
    assert view["queues"] is False and view["spy"] is False and view["pause_reasons"] == []
    groups = {g["group"]: g for g in view["groups"]}
    assert list(groups) == ["701", "702"]
    g = groups["701"]
    assert (g["waiting"], g["answered"], g["abandoned"], g["service_level"]) == (None, None, None, None)
    assert g["counts"] == {"busy": 1, "not_ready": 1}
    assert [(a["device"], a["state"]) for a in g["agents"]] == [("2001", "busy"), ("2002", "not_ready")]
    assert [a["device"] for a in groups["702"]["agents"]] == ["2002"]
    assert view["agents"][1]["reason_name"] == "almoco"      # no pause_reasons: the raw reason


def test_with_queue_statistics():
    stats = {"701": NS(waiting=[NS(call_id="q2", calling="4833330002", since=4990.0),
                                NS(call_id="q1", calling="4833330001", since=4950.0)],
                       answered=12, abandoned=3, service_level=0.875),
             "705": NS(waiting=[], answered=0, abandoned=0, service_level=None)}
    queues = Queues(stats)
    view = board.build([a_link(Clock(), queues=queues)], service_level_seconds=30, now=5000.0)["links"][0]
    assert queues.asked == [30] and view["queues"] is True
    groups = {g["group"]: g for g in view["groups"]}
    assert list(groups) == ["701", "702", "705"]
    g = groups["701"]
    assert g["waiting"] == [{"call_id": "q1", "calling": "4833330001", "seconds": 50},
                            {"call_id": "q2", "calling": "4833330002", "seconds": 10}]      # oldest first
    assert (g["answered"], g["abandoned"], g["service_level"]) == (12, 3, 0.875)
    assert groups["705"]["service_level"] is None and groups["705"]["waiting"] == []
    assert groups["702"]["waiting"] == [] and groups["702"]["answered"] == 0     # no calls in it today


def test_queue_statistics_that_fail_leave_the_board_standing(caplog):
    class Broken:
        def snapshot(self, _):
            raise RuntimeError("boom")

    view = board.build([a_link(Clock(), queues=Broken())], service_level_seconds=20, now=0)["links"][0]
    assert view["queues"] is False and view["groups"][0]["waiting"] is None
    assert "queue statistics of link 1 failed" in caplog.text


def test_spy_is_offered_where_the_link_has_it():
    assert board.build([a_link(Clock(), spy=True)], service_level_seconds=20)["links"][0]["spy"] is True


def test_the_signature_ignores_elapsed_time_only():
    clock = Clock(1000.0)
    link = a_link(clock)
    first = board.signature(board.build([link], service_level_seconds=20, now=5000))
    clock.t = 1030.0
    assert board.signature(board.build([link], service_level_seconds=20, now=5030)) == first
    link.switch.states["2001"] = AgentState.READY
    assert board.signature(board.build([link], service_level_seconds=20, now=5030)) != first


def test_the_real_switch_model():
    """core/model.py as it is: a device, its agent, a call; the board reads it without fakes."""
    clock = Clock(50.0)
    sw = Switch(clock=clock)
    dev = sw.put_in_service("2001", "2001", "http://protheus/ev")
    dev.agent = sw.new_agent("1234", ("701",), AgentState.READY)
    clock.t = 80.0
    sw.note_call("2001", "c9", CS.ALERTING)
    sw.calls["c9"].calling = "4832810000"
    clock.t = 83.0
    view = board.build([NS(link_id=3, name="x", switch=sw)], service_level_seconds=20, now=0)["links"][0]
    a = view["agents"][0]
    assert (a["device"], a["agent"], a["state"]) == ("2001", "1234", "busy")
    assert a["call"]["calling"] == "4832810000" and a["call"]["state"] == "alerting" and a["call"]["seconds"] == 3
    assert a["seconds"] == 3 and [g["group"] for g in view["groups"]] == ["701"]


# ------------------------------------------------------------------ the page
def test_values_from_the_pabx_cannot_close_the_json_script():
    hostile = "</script><img src=x onerror=alert(1)>&"
    text = script_json({"agent": hostile})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"agent": hostile}
    page = board_page("pt", user="maria", csrf="tok\"en", phone="", board={"links": [{"agent": hostile}]})
    assert hostile not in page and 'content="tok&quot;en"' in page


def test_every_label_in_both_languages():
    for key, texts in i18n.LABELS.items():
        assert len(texts) == len(i18n.LANGUAGES) and all(texts), key
    assert i18n.labels("pt")["state_work_after_call"] == "Pós-atendimento"
    assert i18n.labels("en")["state_work_after_call"] == "After-call work"
    assert i18n.labels("xx") == i18n.labels("pt")


def test_the_script_uses_only_labels_of_the_table():
    import re

    from smartcti_gateway.supervisor.web import STATIC
    js = (STATIC / "board.js").read_text(encoding="utf-8")
    used = set(re.findall(r"\bL\.(\w+)", js))
    used |= {f"{p}_{s}" for p in ("state",) for s in board.STATE_ORDER}
    used |= {f"action_{a}" for a in actions.ACTIONS} | {f"confirm_{a}" for a in actions.ACTIONS}
    used |= {f"call_{s}" for s in board.CALL_ORDER}
    used |= {f"result_{int(code)}" for code in actions.MESSAGES if code}
    assert used - set(i18n.LABELS) == set()
    assert "innerHTML" not in js and "eval(" not in js


# ------------------------------------------------------------------ sessions
def test_sessions_expire_and_slide():
    clock = Clock(0.0)
    sessions = Sessions(10, clock=clock)
    s = sessions.create("maria")
    assert len(s.id) >= 40 and len(s.csrf) >= 40 and s.id != s.csrf
    clock.t = 599.0
    assert sessions.get(s.id) is s                  # slides to 1199
    clock.t = 1198.0
    assert sessions.get(s.id, touch=False) is s     # no slide
    clock.t = 1199.0
    assert sessions.get(s.id) is None and not sessions.alive(s) and len(sessions) == 0
    assert sessions.get("nonsense") is None and sessions.get(None) is None


def test_sessions_are_bounded_and_end():
    clock = Clock(0.0)
    sessions = Sessions(10, clock=clock, limit=3)
    made = []
    for i in range(4):
        clock.t = i
        made.append(sessions.create(f"u{i}"))
    assert len(sessions) == 3 and made[0].ended and sessions.get(made[0].id) is None
    sessions.end(made[1].id)
    assert not sessions.alive(made[1])
    sessions.end_all()
    assert len(sessions) == 0 and all(s.ended for s in made)


def test_the_login_limiter():
    clock = Clock(0.0)
    limiter = LoginLimiter(failures=3, window=60, clock=clock)
    for i in range(3):
        assert limiter.wait("10.0.0.1") == 0
        clock.t = i * 10
        assert limiter.failed("10.0.0.1") == i + 1
    assert limiter.wait("10.0.0.1") == 40           # until the first failure is 60 s old
    assert limiter.wait("10.0.0.2") == 0
    clock.t = 60
    assert limiter.wait("10.0.0.1") == 0             # the first one aged out
    limiter.failed("10.0.0.1")
    assert limiter.wait("10.0.0.1") > 0
    limiter.succeeded("10.0.0.1")
    assert limiter.wait("10.0.0.1") == 0


# --------------------------------------------------------------------- audit
def test_an_audit_line_cannot_be_forged():
    line = audit.line(user="maria", address="10.0.0.7", link=1, action="pause", device='20"01\nfake=1 x',
                      reason="almoço", call_id="21/11/26 16:02:10 010A 0001/00", result=0, message="done")
    assert line.endswith("\n") and line.count("\n") == 1
    assert ' user=maria address=10.0.0.7 link=1 action=pause device="20\\"01\\nfake=1 x" reason=almoço ' in line
    assert 'call_id="21/11/26 16:02:10 010A 0001/00" result=0 message=done\n' in line


def test_the_audit_file_is_created_0640(tmp_path):
    log = audit.AuditLog(tmp_path / "sub" / "audit.log")
    log.write(user="maria", action="ready", result=0)
    log.write(user="maria", action="logoff", result=0)
    f = tmp_path / "sub" / "audit.log"
    assert oct(f.stat().st_mode & 0o777) == "0o640"
    assert [l.split()[2] for l in f.read_text().splitlines()] == ["address=", "address="]
    assert len(f.read_text().splitlines()) == 2


# ------------------------------------------------------------------- actions
@pytest.mark.parametrize("body, result, what", [
    (b"{", 3, "not JSON"),
    (b"[]", 3, "JSON object"),
    (b'{"link": 1, "action": "reboot", "device": "2001"}', 3, "unknown action"),
    (b'{"link": 1, "action": "ready"}', 18, "'device' is required"),
    (b'{"link": true, "action": "ready", "device": "2001"}', 3, "'link'"),
    (b'{"link": 1, "action": "ready", "device": "2001", "devcie": 1}', 3, "unknown key"),
    (b'{"link": 1, "action": "ready", "device": ["2001"]}', 3, "must be text"),
    (b'{"link": 1, "action": "ready", "device": "20\\n01"}', 3, "control characters"),
])
def test_bad_action_requests(body, result, what):
    with pytest.raises(actions.BadAction) as e:
        actions.parse(body)
    assert e.value.result == result and what in e.value.message
    assert e.value.outcome().status == 400


def test_actions_are_checked_against_the_link():
    link = a_link(Clock(), reasons=Reasons())
    ok = actions.parse(b'{"link": "1", "action": "hangup", "device": "2001", "call_id": "c1"}')
    assert ok.link == 1 and actions.find_link([link], ok) is link
    for body, code in ((b'{"link": 2, "action": "ready", "device": "2001"}', 3),
                       (b'{"link": 1, "action": "ready", "device": "9999"}', 18),
                       (b'{"link": 1, "action": "hangup", "device": "2001", "call_id": "other"}', 5),
                       (b'{"link": 1, "action": "hangup", "device": "2002"}', 19),
                       (b'{"link": 1, "action": "pause", "device": "2002", "reason": "7"}', 3)):
        with pytest.raises(actions.BadAction) as e:
            actions.find_link([link], actions.parse(body))
        assert e.value.result == code, body


def test_actions_go_through_the_links_command_path():
    link = a_link(Clock())
    asked = []

    async def handle(op, args):
        asked.append((op, args))
        return 0 if op != "Logoff" else 18
    link.handle = handle

    async def run():
        out = []
        for body in (b'{"link": 1, "action": "ready", "device": "2001"}',
                     b'{"link": 1, "action": "pause", "device": "2001", "reason": "1"}',
                     b'{"link": 1, "action": "logoff", "device": "2001"}',
                     b'{"link": 1, "action": "hangup", "device": "2001"}',
                     b'{"link": 1, "action": "listen", "device": "2001"}'):
            out.append(await actions.perform(link, actions.parse(body), "2099"))
        return out

    ready, pause, logoff, hangup, listen = asyncio.run(run())
    assert asked == [("Ready", {"device": "2001", "agentID": "", "groupID": ""}),
                     ("NotReady", {"device": "2001", "agentID": "", "groupID": "", "reason": "1"}),
                     ("Logoff", {"device": "2001", "agentID": "", "groupID": ""}),
                     ("ConnectionClear", {"device": "2001", "CallID": ""})]
    assert ready.json() == {"ok": True, "result": 0, "message": "done"} and pause.ok and hangup.ok
    assert logoff.json() == {"ok": False, "result": 18, "message": "refused: the PABX does not know this device"}
    assert listen.result == 21 and not listen.ok and "Asterisk" in listen.message


def test_spy_where_the_link_offers_it():
    link = a_link(Clock(), spy=True)
    seen = []

    async def spy(supervisor, target, mode):
        seen.append((supervisor, target, mode))
        return 0
    link.spy = spy
    out = asyncio.run(actions.perform(link, actions.parse(b'{"link":1,"action":"whisper","device":"2001"}'), "2099"))
    assert out.ok and seen == [("2099", "2001", "whisper")]
    with pytest.raises(actions.BadAction) as e:
        asyncio.run(actions.perform(link, actions.parse(b'{"link":1,"action":"barge","device":"2001"}'), ""))
    assert e.value.result == 2 and "supervisor.phones" in e.value.message


def test_a_surprise_in_the_link_is_code_99(caplog):
    link = a_link(Clock())

    async def handle(op, args):
        raise KeyError("surprise")
    link.handle = handle
    out = asyncio.run(actions.perform(link, actions.parse(b'{"link":1,"action":"ready","device":"2001"}')))
    assert out.json() == {"ok": False, "result": 99, "message": "internal error; see the gateway's log"}
    assert "surprise" in caplog.text
