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
from .model import Switch
from .notify import Notification, Notifier
from .operations import OPERATIONS
from .pauses import NO_PAUSE_REASONS, PauseReasons
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
    detail: str = ""     # why the gateway refused on its own, for the operator's log


def _code(e: PabxError) -> Value:
    return int(e.code)


def _ok(_reply: Any = None) -> Value:
    return int(Result.SUCCESS)


def answer(value: Value, detail: str = "") -> Step:
    """A step answered by the gateway alone; ``detail`` says why when it is a refusal."""
    return Step(None, lambda _r: value, _code, detail)


def eventing_url_problem(url: str) -> str:
    """Why ``AgentInService.ipaddress`` (Protheus' MV_TKCTIEV) cannot be where events go, or ""."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or rest[0] in "/?#":
        return (f"ipaddress {text[:80]!r} is not an http:// or https:// URL; Protheus sends its MV_TKCTIEV "
                "there (http://<protheus>:<port>/SMARTCTIWSEVENTING.apw): correct MV_TKCTIEV")
    return ""


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
    """The planner. Its owner (core.engine.Engine) drains ``outbox`` and ``resync_wanted`` after each step."""

    def __init__(self, switch: Switch, version: str, health: LinkHealth | None = None,
                 notifier: Notifier | None = None, pause_reasons: PauseReasons = NO_PAUSE_REASONS):
        self.switch = switch
        self.version = version
        self.notifier = notifier or Notifier(switch)
        self.pause_reasons = pause_reasons
        self.health = health     # the link's; None = always up
        # Events owed to Protheus because of a command (INSERVICE, READY...); the caller drains it.
        self.outbox: list[Notification] = []
        # Devices whose calls the PABX sees otherwise than the model; the caller reads them again.
        self.resync_wanted: set[str] = set()

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
        # The PABX link is down: answer at once instead of waiting for a timeout.
        return answer(step.failed(PabxUnavailable(Result.OUT_OF_SERVICE, f"PABX link down: {h.reason}")))

    def tell_down(self) -> bool:
        """Must Protheus hear that the PABX is away? Any non-zero SystemStatus, or queryAgentState 16,
        closes a call listener (smartcti.md §10.3): while devices are in service, a short outage is kept
        from them for the grace period. With none in service there is no listener to protect, and the
        "Teste" button of TMKXMID is told the truth at once."""
        h = self.health
        if h is None or h.up:
            return False
        return h.reported_down or not self.switch.devices

    def _known_agent_code(self, name: str) -> int:
        return int(AGENT_STATE_CODES[self.switch.agent_state(name)])

    # ------------------------------------------------------------ service
    def _AgentInService(self, a, raw) -> Step:
        name, url = a["device"], a["ipaddress"]
        wire = raw.get("device", name)
        if url:
            problem = eventing_url_problem(url)
            if problem:
                return answer(int(Result.DISCONNECTED_LINK), problem)

        def done(_reply):
            was_pending = self.switch.is_in_service(name) and not self.switch.devices[name].monitored
            dev = self.switch.put_in_service(name, wire, url)
            dev.monitored = True
            if was_pending:
                self.outbox.extend(self.notifier.in_service_owed(dev))
            elif url:
                self.outbox.append(self.notifier.in_service(dev, url, dev.wire_name))
            return int(Result.SUCCESS)

        def failed(e: PabxError):
            if not isinstance(e, PabxUnavailable):
                return int(e.code)
            # Protheus' Connect() never retries (smartcti.md §10.4): take the device now, monitor it
            # when the PABX is back, and send INSERVICE then.
            dev = self.switch.put_in_service(name, wire, url)
            dev.monitored = False
            return int(Result.SUCCESS)

        dev = self.switch.device(name)
        if dev is not None and dev.monitored:
            return answer(done(None))
        if dev is not None:       # waiting for the PABX already: one more session waits too
            return answer(failed(PabxUnavailable(Result.OUT_OF_SERVICE)))
        return Step(MonitorStart(name), done, failed)

    def _AgentOutOfService(self, a, _raw) -> Step:
        # One AgentOutOfService means Protheus holds the device no more, however many AgentInService
        # came before (smartcti.md §10.1). Released here whatever the PABX says: Protheus only logs it.
        dev = self.switch.release(a["device"])
        if dev is None or not dev.monitored:
            return answer(int(Result.SUCCESS))
        return Step(MonitorStop(a["device"]), _ok, lambda e: int(Result.SUCCESS))

    # -------------------------------------------------------------- agent
    def _agent_step(self, a: dict[str, str], state: AgentState, reason: str = "") -> Step:
        name = a["device"]
        dev = self.switch.device(name)
        known = dev.agent if dev is not None else None
        agent_id = a["agentID"] or (known.agent_id if known else "")
        groups = split_groups(a["groupID"]) or (known.groups if known else ())
        password = a.get("agentPass", "") or (known.password if known else "")
        if state is AgentState.LOGGED_ON and not agent_id:
            return answer(int(Result.INVALID_USER))
        notes_before = dev.agent_notes if dev is not None else 0

        def done(_reply):
            d = self.switch.device(name)
            if d is None:        # not in service: nothing to remember, nobody to tell
                return int(Result.SUCCESS)
            if d.agent is None or (agent_id and d.agent.agent_id != agent_id):
                d.agent = self.switch.new_agent(agent_id, groups, state, password)
            else:
                d.agent.state = state
                d.agent.groups = groups or d.agent.groups
                d.agent.password = password or d.agent.password
            d.agent.reason = reason
            d.wrap_up_until = 0.0       # ready, paused or logged off by Protheus: a wrap-up ends here
            self.outbox.extend(self.notifier.agent_confirmed(d, notes_before))
            return int(Result.SUCCESS)

        return Step(SetAgentState(name, agent_id, groups, state, password, reason), done, _code)

    def _Logon(self, a, _raw):
        return self._agent_step(a, AgentState.LOGGED_ON)

    _LogonPass = _Logon

    def _Logoff(self, a, _raw):
        return self._agent_step(a, AgentState.LOGGED_OFF)

    _LogoffPass = _Logoff

    def _Ready(self, a, _raw):
        return self._agent_step(a, AgentState.READY)

    _ReadyPass = _Ready

    def _NotReady(self, a, raw):
        """Protheus' NotReady carries no reason: the link's default_pause_reason goes to the PABX. A
        supervisor's pause (supervisor/) passes the code of one of the link's pause_reasons as ``reason``."""
        code = str(raw.get("reason", "") or "").strip()
        reason = self.pause_reasons.by_code(code) if code else self.pause_reasons.default
        if code and reason is None:
            known = ", ".join(r.code for r in self.pause_reasons.reasons) or "none configured"
            return answer(int(Result.INVALID_OPTION), f"pause reason {code!r} is not in pause_reasons ({known})")
        return self._agent_step(a, AgentState.NOT_READY, reason.pabx if reason is not None else "")

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
        call_id = self.switch.call_id_in_state(a["device"], CS.CONNECTED)
        call = self.switch.calls.get(call_id)
        return Step(StartRecording(a["device"], call_id, call.protocol if call else ""), _ok, _code)

    def _StopRec(self, a, _raw):
        return Step(StopRecording(a["device"], self.switch.call_id_in_state(a["device"], CS.CONNECTED)), _ok, _code)

    # ------------------------------------------------------------ queries
    def _SystemStatus(self, _a, _raw):
        # Answered from the link's health, which keep-alives and every request judge: a poll must never
        # be the one that tells Protheus of a fault before the grace period says so (smartcti.md §10.3).
        return answer(int(Result.OUT_OF_SERVICE) if self.tell_down() else int(Result.SUCCESS))

    _selfTest = _SystemStatus

    def _showVersion(self, _a, _raw):
        return answer(self.version)

    def _queryAgentState(self, a, _raw) -> Step:
        name = a["cDevice"]

        def done(info: AgentInfo):
            dev = self.switch.device(name)
            if dev is None:      # not in service: the PABX's word as it is
                return int(AGENT_STATE_CODES[info.state])
            if info.state is AgentState.BUSY:
                # busy is the calls' business: a PABX busy without a call in the model means a call
                # event was missed, and the link reads the device's calls again
                if self.switch.agent_state(name) is not AgentState.BUSY:
                    self.resync_wanted.add(name)
            else:
                # the PABX's word replaces the model's, and Protheus hears the change as after a resync:
                # a listener would otherwise show the old state until the agent's next change (a Ready
                # whose report was lost in a stall; found by scripts/soak)
                if dev.agent is not None and info.agent_id and info.agent_id != dev.agent.agent_id:
                    dev.agent = self.switch.new_agent(info.agent_id, info.groups, AgentState.LOGGED_OFF)
                self.outbox.extend(self.notifier.resync(name, info, None))
            return self._known_agent_code(name)

        def failed(e: PabxError):
            if isinstance(e, PabxUnavailable) and self.tell_down():
                return int(Result.DISCONNECTED_LINK)
            # A refusal (e.g. unknown device), or an outage within the grace period: what we know.
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
