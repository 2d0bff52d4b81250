"""Automatic wrap-up and pause reasons in the core, without sockets, on an injected clock."""
from __future__ import annotations

from smartcti_gateway.core import pabx as p
from smartcti_gateway.core.codes import Result
from smartcti_gateway.core.engine import Engine
from smartcti_gateway.core.pauses import PauseReason, PauseReasons, WrapUp

E, A, S = p.CallEventType, p.AgentEventType, p.AgentState
URL = "http://protheus:8080/ws/SMARTCTIWSEVENTING.apw"
REASONS = PauseReasons((PauseReason("1", "Almoço", "almoco", "3"), PauseReason("2", "Treinamento", "treino", "7")),
                       "1")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine(wrap: WrapUp = WrapUp(10, {"702": 30}), reasons: PauseReasons = REASONS) -> tuple[Engine, Clock]:
    clock = Clock()
    eng = Engine("test", clock=clock, pause_reasons=reasons, wrap_up=wrap)
    return eng, clock


def command(eng: Engine, op: str, reply=None, **args):
    """(request, value, names of the events Protheus is told)."""
    step = eng.plan(op, args)
    outcome = eng.complete(step, reply)
    return step.request, outcome.value, [n.name for n in outcome.notes]


def perform(eng: Engine, error: p.PabxError | None = None) -> list[tuple[p.Request, list[str]]]:
    """Every step the core wants now, performed (or refused with ``error``)."""
    done = []
    for step in eng.steps():
        outcome = eng.fail(step, error) if error else eng.complete(step, None)
        done.append((step.request, [n.name for n in outcome.notes]))
    return done


def ready_agent(eng: Engine, device: str = "2001") -> None:
    command(eng, "AgentInService", device=device, ipaddress=URL)
    command(eng, "Logon", device=device, agentID="1234", groupID="701")
    command(eng, "Ready", device=device, agentID="", groupID="")


def call_ends(eng: Engine, group: str = "701", device: str = "2001", call_id: str = "c1") -> list[str]:
    names = []
    for t in (E.DELIVERED, E.ESTABLISHED, E.CONNECTION_CLEARED):
        names += [n.name for n in eng.pabx_event(p.CallEvent(t, device, call_id, calling="4832810000",
                                                             called="7001", group=group))]
    return names


def state(eng: Engine, device: str = "2001") -> int:
    """queryAgentState, the switch answering what it was told last (a wrap-up's pause: paused)."""
    dev = eng.switch.device(device)
    said = {S.WORK_AFTER_CALL: S.NOT_READY}.get(dev.agent.state, dev.agent.state) if dev.agent else S.LOGGED_OFF
    return command(eng, "queryAgentState", p.AgentInfo(said, dev.agent.agent_id if dev.agent else ""),
                   cDevice=device)[1]


def test_after_a_call_the_agent_is_in_after_call_work_then_ready_by_itself():
    eng, clock = engine()
    ready_agent(eng)
    assert call_ends(eng) == ["RINGING", "ANSWERED", "CONNECTIONCLEARED"]
    (request, told), = perform(eng)
    assert request == p.SetAgentState("2001", "1234", ("701",), S.NOT_READY, "", "pos-atendimento")
    assert told == ["NOTREADY"]
    assert state(eng) == 27                     # after-call work
    assert eng.next_deadline() == 1010.0
    clock.now = 1009.9
    assert perform(eng) == []
    clock.now = 1010.0
    (request, told), = perform(eng)
    assert request == p.SetAgentState("2001", "1234", ("701",), S.READY, "")
    assert told == ["READY"] and state(eng) == 28
    assert eng.next_deadline() is None and perform(eng) == []


def test_the_groups_own_seconds_and_a_group_without_wrap_up():
    eng, clock = engine(WrapUp(10, {"702": 30, "703": 0}))
    ready_agent(eng)
    call_ends(eng, group="702")
    perform(eng)
    assert eng.next_deadline() == 1030.0
    clock.now = 1030.0
    perform(eng)
    call_ends(eng, group="703", call_id="c2")
    assert perform(eng) == [] and state(eng) == 28


def test_the_switchs_echo_of_the_pause_keeps_after_call_work_and_is_not_told_twice():
    eng, clock = engine()
    ready_agent(eng)
    call_ends(eng)
    steps = eng.steps()
    # the NGC reports the pause before it answers the request (callback mode)
    assert [n.name for n in eng.pabx_event(p.AgentEvent(A.NOT_READY, "2001", "1234", ("701",),
                                                        "pos-atendimento"))] == ["NOTREADY"]
    assert state(eng) == 27
    assert [n.name for n in eng.complete(steps[0], None).notes] == []      # told once
    clock.now = 1010
    assert [told for _, told in perform(eng)] == [["READY"]]
    assert eng.pabx_event(p.AgentEvent(A.READY, "2001", "1234", ("701",))) == []   # the end's echo


def test_a_pause_ready_or_logoff_meanwhile_wins():
    for op, args, then in (("NotReady", {}, 30), ("Ready", {}, 28), ("Logoff", {}, 25)):
        eng, clock = engine()
        ready_agent(eng)
        call_ends(eng)
        perform(eng)
        _, value, told = command(eng, op, device="2001", agentID="", groupID="", **args)
        assert value == 0
        clock.now = 1010
        assert perform(eng) == [], op               # nothing made ready by the gateway
        assert state(eng) == then, op
    # a pause on the phone with another reason, too
    eng, clock = engine()
    ready_agent(eng)
    call_ends(eng)
    perform(eng)
    eng.pabx_event(p.AgentEvent(A.NOT_READY, "2001", "1234", (), "almoco"))   # Protheus shows NOTREADY already
    assert eng.switch.device("2001").agent.reason == "almoco"
    clock.now = 1010
    assert perform(eng) == [] and state(eng) == 30


def test_a_reasonless_pause_long_after_the_start_is_the_agents():
    eng, clock = engine(WrapUp(60))
    ready_agent(eng)
    call_ends(eng)
    perform(eng)
    clock.now = 1030                               # past the echo window
    eng.pabx_event(p.AgentEvent(A.NOT_READY, "2001", "1234"))
    clock.now = 1060
    assert perform(eng) == [] and state(eng) == 30


def test_no_wrap_up_while_another_call_is_left_or_for_an_agent_not_ready():
    eng, clock = engine()
    ready_agent(eng)
    eng.pabx_event(p.CallEvent(E.DELIVERED, "2001", "c1", calling="4832810000", group="701"))
    eng.pabx_event(p.CallEvent(E.ESTABLISHED, "2001", "c1"))
    eng.pabx_event(p.CallEvent(E.HELD, "2001", "c1"))
    eng.pabx_event(p.CallEvent(E.SERVICE_INITIATED, "2001", "c2"))      # a consultation
    eng.pabx_event(p.CallEvent(E.CONNECTION_CLEARED, "2001", "c1"))
    assert perform(eng) == []
    eng.pabx_event(p.CallEvent(E.CONNECTION_CLEARED, "2001", "c2"))    # never talked in c2: no wrap-up
    assert perform(eng) == []
    # a call that rang and was not answered is no after-call work either
    eng.pabx_event(p.CallEvent(E.DELIVERED, "2001", "c3", group="701"))
    eng.pabx_event(p.CallEvent(E.CONNECTION_CLEARED, "2001", "c3"))
    assert perform(eng) == []
    # paused before the call ended: stays paused
    command(eng, "NotReady", device="2001", agentID="", groupID="")
    call_ends(eng, call_id="c4")
    assert perform(eng) == [] and state(eng) == 30


def test_off_by_default():
    eng, _ = engine(WrapUp())
    ready_agent(eng)
    call_ends(eng)
    assert perform(eng) == [] and eng.next_deadline() is None and state(eng) == 28


def test_an_end_the_switch_refuses_is_tried_again_and_a_refused_start_is_no_wrap_up():
    eng, clock = engine()
    ready_agent(eng)
    call_ends(eng)
    perform(eng)
    clock.now = 1010
    (request, told), = perform(eng, p.PabxUnavailable(Result.OUT_OF_SERVICE, "down"))
    assert told == [] and state(eng) == 27 and eng.next_deadline() == 1015.0
    clock.now = 1015
    assert [told for _, told in perform(eng)] == [["READY"]]
    call_ends(eng, call_id="c2")
    (request, told), = perform(eng, p.PabxError(Result.INVALID_OPTION, "no"))
    assert told == [] and state(eng) == 28 and eng.next_deadline() is None


def test_the_resync_does_not_take_the_wrap_up_pause_for_the_agents():
    eng, clock = engine()
    ready_agent(eng)
    call_ends(eng)
    perform(eng)
    assert eng.resync("2001", p.AgentInfo(S.NOT_READY, "1234", ("701",)), []) == []
    assert state(eng) == 27


def test_pause_reasons_protheus_gets_the_default_a_supervisor_picks_one():
    eng, _ = engine()
    ready_agent(eng)
    request, value, told = command(eng, "NotReady", device="2001", agentID="", groupID="")
    assert request.reason == "almoco" and value == 0 and told == ["NOTREADY"]
    assert eng.switch.device("2001").agent.reason == "almoco"
    request, value, _ = command(eng, "NotReady", device="2001", agentID="", groupID="", reason="2")
    assert request.reason == "treino" and value == 0
    step = eng.plan("NotReady", {"device": "2001", "agentID": "", "groupID": "", "reason": "9"})
    assert step.request is None and step.done(None) == 3 and "'9' is not in pause_reasons (1, 2)" in step.detail
    assert REASONS.name_of("TREINO ") == "Treinamento" and REASONS.name_of("cafe") == "cafe"
    # without pause_reasons: no reason, as before
    eng, _ = engine(reasons=PauseReasons())
    ready_agent(eng)
    request, value, _ = command(eng, "NotReady", device="2001", agentID="", groupID="")
    assert request.reason == "" and value == 0


def test_time_in_state_and_call_times_run_on_the_switch_clock():
    eng, clock = engine(WrapUp())
    ready_agent(eng)
    agent = eng.switch.device("2001").agent
    assert agent.since == 1000.0
    clock.now = 1005
    eng.pabx_event(p.CallEvent(E.DELIVERED, "2001", "c1", group="701"))
    clock.now = 1007
    eng.pabx_event(p.CallEvent(E.ESTABLISHED, "2001", "c1"))
    call = eng.switch.calls["c1"]
    assert (call.started, call.answered) == (1005.0, 1007.0)
    clock.now = 1009
    command(eng, "NotReady", device="2001", agentID="", groupID="")
    assert agent.since == 1009.0
    command(eng, "NotReady", device="2001", agentID="", groupID="")
    assert agent.since == 1009.0          # the same state again: the time in it goes on


def test_a_state_the_pabx_reports_to_queryagentstate_reaches_protheus_too():
    """scripts/soak found agents ready at the PABX and in queryAgentState but NOTREADY on Protheus' screen:
    a Ready whose report was lost in a stall. The poll that sees the difference now tells Protheus."""
    eng, _ = engine(WrapUp())
    ready_agent(eng)
    command(eng, "NotReady", device="2001", agentID="", groupID="")
    _, value, told = command(eng, "queryAgentState", p.AgentInfo(S.READY, "1234", ("701",)), cDevice="2001")
    assert (value, told) == (28, ["READY"])
    _, value, told = command(eng, "queryAgentState", p.AgentInfo(S.READY, "1234", ("701",)), cDevice="2001")
    assert (value, told) == (28, [])                        # the same again: nothing new
    _, value, told = command(eng, "queryAgentState", p.AgentInfo(S.LOGGED_OFF, "", ()), cDevice="2001")
    assert (value, told) == (25, ["LOGGEDOFF"])
