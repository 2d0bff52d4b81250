"""SmartCTI commands planned as PABX requests, without I/O (smartcti.md §1.3).

``Commands.plan(op, args)`` returns a ``Step``: the neutral request to send
to the switch (or None when the gateway answers alone), and two functions
that turn the switch's reply, or its refusal, into the SOAP return value
while updating the model. The caller does the I/O in between::

    step = commands.plan("Ready", {"device": "2001", "agentID": "", "groupID": ""})
    try:
        value = step.done(await driver.execute(step.request))
    except PabxError as e:
        value = step.failed(e)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import formats
from .codes import AgentStateCode, Result
from .health import LinkHealth
from .model import Agent, Switch
from .notify import Notification, Notifier
from .operations import OPERATIONS
from .pabx import (
    AgentInfo,
    AgentState,
    AlternateCall,
    AnswerCall,
    ClearConnection,
    ConferenceCall,
    ConnectionState as CS,
    ConsultationCall,
    Direction,
    HoldCall,
    ImmediateTransfer,
    MakeCall,
    MonitorStart,
    MonitorStop,
    PabxError,
    PabxUnavailable,
    QueryAgentState,
    QueryGroupCalls,
    QuerySystemStatus,
    Request,
    RetrieveCall,
    SetAgentState,
    SetForwarding,
    SingleStepTransfer,
    SnapshotDevice,
    StartRecording,
    StopRecording,
    TransferCall,
)

Value = int | str


@dataclass
class Step:
    request: Request | None
    done: Callable[[Any], Value]
    failed: Callable[[PabxError], Value]


def _code(e: PabxError) -> Value:
    return int(e.code)


def _ok(_reply: Any = None) -> Value:
    return int(Result.SUCCESS)


def answer(value: Value) -> Step:
    """A step answered by the gateway alone."""
    return Step(None, lambda _r: value, _code)


def split_groups(text: str) -> tuple[str, ...]:
    """``"701, 702,,703"`` -> ("701", "702", "703")."""
    return tuple(g for g in (p.strip() for p in text.split(",")) if g)


AGENT_STATE_CODES = {
    AgentState.LOGGED_OFF: AgentStateCode.LOGOUT,
    AgentState.LOGGED_ON: AgentStateCode.LOGIN,
    AgentState.WORK_AFTER_CALL: AgentStateCode.AFTER_CALL_WORK,
    AgentState.READY: AgentStateCode.READY,
    AgentState.BUSY: AgentStateCode.BUSY,
    AgentState.NOT_READY: AgentStateCode.PAUSED,
}


class Commands:
    def __init__(self, switch: Switch, version: str):
        self.switch = switch
        self.version = version
        self.notifier = Notifier(switch)
        self.health: LinkHealth | None = None   # set by the link; None = always up
        # Events owed to Protheus because of a command (INSERVICE); the caller drains it.
        self.outbox: list[Notification] = []

    def plan(self, op: str, args: dict[str, str]) -> Step:
        """``op`` must be a key of OPERATIONS; missing args count as empty."""
        spec = OPERATIONS[op]
        full = {p: args.get(p, "").strip() for p in spec.params}
        if "device" in full or "cDevice" in full:
            device = full.get("device", full.get("cDevice", ""))
            if not device and op not in ("AgentOutOfService",):
                return answer(formats.info_cham_ativ("", None, Result.INVALID_DEVICE)
                              if spec.returns == "string" else int(Result.INVALID_DEVICE))
        step = getattr(self, "_" + op)(full, args)
        h = self.health
        if step.request is None or h is None or h.up:
            return step
        return self._while_down(op, full, step, h)

    def _while_down(self, op: str, a: dict[str, str], step: Step, h: LinkHealth) -> Step:
        """The PABX link is down: answer at once instead of waiting for a timeout."""
        if op in ("SystemStatus", "selfTest"):
            # within the grace period a blip must not close every call listener in Protheus
            return answer(int(Result.OUT_OF_SERVICE) if h.reported_down else int(Result.SUCCESS))
        if op == "queryAgentState" and not h.reported_down:
            return answer(self._known_agent_code(a["cDevice"]))
        return answer(step.failed(PabxUnavailable(Result.OUT_OF_SERVICE, f"PABX link down: {h.reason}")))

    def _known_agent_code(self, name: str) -> int:
        dev = self.switch.device(name)
        state = dev.agent.state if dev is not None and dev.agent is not None else AgentState.LOGGED_OFF
        return int(AGENT_STATE_CODES[state])

    # ------------------------------------------------------------ service
    def _AgentInService(self, a, raw) -> Step:
        name, url = a["device"], a["ipaddress"]
        wire = raw.get("device", name)

        def done(_reply):
            dev = self.switch.put_in_service(name, wire, url)
            if url:
                self.outbox.append(self.notifier.in_service(dev, url))
            return int(Result.SUCCESS)

        if self.switch.is_monitored(name):
            return answer(done(None))

        return Step(MonitorStart(name), done, _code)

    def _AgentOutOfService(self, a, _raw) -> Step:
        if not self.switch.take_out_of_service(a["device"]):
            return answer(int(Result.SUCCESS))
        # Released locally whatever the switch says: Protheus only logs the answer.
        return Step(MonitorStop(a["device"]), _ok, lambda e: int(Result.SUCCESS))

    # -------------------------------------------------------------- agent
    def _agent_step(self, a: dict[str, str], state: AgentState) -> Step:
        name = a["device"]
        dev = self.switch.device(name)
        known = dev.agent if dev is not None else None
        agent_id = a["agentID"] or (known.agent_id if known else "")
        groups = split_groups(a["groupID"]) or (known.groups if known else ())
        password = a.get("agentPass", "") or (known.password if known else "")
        if state is AgentState.LOGGED_ON and not agent_id:
            return answer(int(Result.INVALID_USER))

        def done(_reply):
            d = self.switch.ensure_device(name)
            if d.agent is None or (agent_id and d.agent.agent_id != agent_id):
                d.agent = Agent(agent_id, groups, state, password)
            else:
                d.agent.state = state
                d.agent.groups = groups or d.agent.groups
                d.agent.password = password or d.agent.password
            return int(Result.SUCCESS)

        return Step(SetAgentState(name, agent_id, groups, state, password), done, _code)

    def _Logon(self, a, _raw):
        return self._agent_step(a, AgentState.LOGGED_ON)

    _LogonPass = _Logon

    def _Logoff(self, a, _raw):
        return self._agent_step(a, AgentState.LOGGED_OFF)

    _LogoffPass = _Logoff

    def _Ready(self, a, _raw):
        return self._agent_step(a, AgentState.READY)

    _ReadyPass = _Ready

    def _NotReady(self, a, _raw):
        return self._agent_step(a, AgentState.NOT_READY)

    _NotReadyPass = _NotReady

    # --------------------------------------------------------------- calls
    def _MakeCall(self, a, _raw) -> Step:
        name, number = a["device"], a["telephoneNumber"]
        if not number:
            return answer(int(Result.INVALID_PHONE_NUMBER))

        def done(call_id):
            if call_id and self.switch.device(name) is not None:
                self.switch.note_call(name, str(call_id), CS.INITIATED, Direction.OUTBOUND)
            return int(Result.SUCCESS)

        req = MakeCall(name, number, a.get("route", ""), a.get("agentPass", ""))
        return Step(req, done, _code)

    _MakeCallPass = _MakeCall

    def _active(self, name: str) -> str:
        return self.switch.call_id_in_state(name, CS.CONNECTED, CS.ALERTING, CS.INITIATED)

    def _Answer(self, a, _raw):
        return Step(AnswerCall(a["device"], self.switch.call_id_in_state(a["device"], CS.ALERTING)), _ok, _code)

    def _ConnectionClear(self, a, _raw):
        call_id = a["CallID"] or self._active(a["device"])
        return Step(ClearConnection(a["device"], call_id), _ok, _code)

    def _Hold(self, a, _raw):
        return Step(HoldCall(a["device"], self.switch.call_id_in_state(a["device"], CS.CONNECTED)), _ok, _code)

    def _Retrieve(self, a, _raw):
        return Step(RetrieveCall(a["device"], self.switch.call_id_in_state(a["device"], CS.HELD)), _ok, _code)

    def _Alternate(self, a, _raw):
        return Step(AlternateCall(a["device"]), _ok, _code)

    def _Conference(self, a, _raw):
        return Step(ConferenceCall(a["device"]), _ok, _code)

    def _Transfer(self, a, _raw):
        return Step(TransferCall(a["device"]), _ok, _code)

    def _Consultation(self, a, _raw):
        if not a["deviceTo"]:
            return answer(int(Result.INVALID_PHONE_NUMBER))
        name = a["device"]

        def done(call_id):
            if call_id and self.switch.device(name) is not None:
                self.switch.note_call(name, str(call_id), CS.INITIATED, Direction.OUTBOUND)
            return int(Result.SUCCESS)

        return Step(ConsultationCall(name, a["deviceTo"], a["Route"]), done, _code)

    def _OneStepCallTransfer(self, a, _raw):
        if not a["deviceTo"]:
            return answer(int(Result.INVALID_PHONE_NUMBER))
        call_id = self.switch.call_id_in_state(a["device"], CS.CONNECTED)
        return Step(SingleStepTransfer(a["device"], a["deviceTo"], call_id), _ok, _code)

    def _ImmediateTransfer(self, a, _raw):
        if not a["deviceTo"]:
            return answer(int(Result.INVALID_PHONE_NUMBER))
        call_id = self.switch.call_id_in_state(a["device"], CS.CONNECTED, CS.ALERTING)
        return Step(ImmediateTransfer(a["device"], a["deviceTo"], call_id), _ok, _code)

    def _Redirect(self, a, _raw):
        return Step(SetForwarding(a["device"], a["deviceTo"]), _ok, _code)

    def _StartRec(self, a, _raw):
        return Step(StartRecording(a["device"], self.switch.call_id_in_state(a["device"], CS.CONNECTED)), _ok, _code)

    def _StopRec(self, a, _raw):
        return Step(StopRecording(a["device"], self.switch.call_id_in_state(a["device"], CS.CONNECTED)), _ok, _code)

    # ------------------------------------------------------------ queries
    def _SystemStatus(self, _a, _raw):
        return Step(QuerySystemStatus(), _ok, _code)

    _selfTest = _SystemStatus

    def _showVersion(self, _a, _raw):
        return answer(self.version)

    def _queryAgentState(self, a, _raw) -> Step:
        name = a["cDevice"]

        def done(info: AgentInfo):
            dev = self.switch.device(name)
            if dev is not None:
                if info.state is AgentState.LOGGED_OFF:
                    if dev.agent is not None:
                        dev.agent.state = AgentState.LOGGED_OFF
                elif dev.agent is None or (info.agent_id and info.agent_id != dev.agent.agent_id):
                    dev.agent = Agent(info.agent_id, info.groups, info.state)
                else:
                    dev.agent.state = info.state
            return int(AGENT_STATE_CODES[info.state])

        def failed(e: PabxError):
            if isinstance(e, PabxUnavailable):
                return int(Result.DISCONNECTED_LINK)
            # A refusal (e.g. unknown device) is not a state: say what we know.
            return self._known_agent_code(name)

        return Step(QueryAgentState(name), done, failed)

    def _GetInfoChamAtiv(self, a, _raw) -> Step:
        name = a["cDevice"]

        def done(calls):
            self.switch.apply_snapshot(name, calls)
            return formats.info_cham_ativ(name, calls)

        return Step(SnapshotDevice(name), done, lambda e: formats.info_cham_ativ(name, None, e.code))

    _getActiveCallInfo = _GetInfoChamAtiv

    def _GetCallList(self, a, _raw) -> Step:
        group = a["groupID"]
        if not group:
            return answer("")
        return Step(QueryGroupCalls(group), lambda calls: formats.call_list(group, calls), lambda e: "")
