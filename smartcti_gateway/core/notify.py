"""PABX events translated into the 13 SmartCTI events Protheus listens to (smartcti.md §3).

Pure functions over the model: ``Notifier.on_pabx_event`` applies a neutral
event to the ``Switch`` and returns the notifications owed to Protheus, each
addressed to the device as Protheus wrote it and to every eventing URL that
holds the device in service. The delivery adapter only has to send them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .codes import Result
from .dialler import NO_DIALLER_RULE, DiallerRule
from .model import Call, Device, Switch
from .pabx import (
    AgentEvent,
    AgentEventType,
    AgentInfo,
    AgentState,
    CallEvent,
    CallInfo,
    CallEventType as E,
    ConnectionState as CS,
    Direction,
    PabxEvent,
)

# Parameters of each SmartCTIWSEventing operation after CDEVICE and ILINKID, in WSDL order (§3.2).
EVENT_PARAMS: dict[str, tuple[str, ...]] = {
    "INSERVICE": (),
    "RINGING": ("CALLID", "ANI", "DNIS", "ASSOCIATEDDATA", "CALLTYPE"),
    "SERVICEINITIATED": ("CALLID", "ANI", "DNIS"),
    "ORIGINATED": ("CALLID", "ANI", "DNIS"),
    "CALLFAILURE": ("CALLID", "ANI", "DNIS", "CAUSE"),
    "ANSWERED": ("CALLID", "ANI", "DNIS"),
    "HELD": ("CALLID", "ANI", "DNIS"),
    "RETRIEVE": ("CALLID", "ANI", "DNIS"),
    "CONNECTIONCLEARED": ("CALLID", "ANI", "DNIS"),
    "LOGGEDON": ("CAGENTID", "CGROUPID"),
    "LOGGEDOFF": ("CAGENTID", "CGROUPID"),
    "READY": ("CAGENTID", "CGROUPID"),
    "NOTREADY": ("CAGENTID", "CGROUPID"),
}
INTEGER_PARAMS = frozenset({"ILINKID", "CALLTYPE", "CAUSE"})

# RINGING.CALLTYPE: 1 and 3 pop a screen in Protheus, 2 does not (§3.3).
CALL_TYPE_INBOUND, CALL_TYPE_OUTBOUND, CALL_TYPE_DIALLER = 1, 2, 3

_AGENT_EVENTS = {
    AgentEventType.LOGGED_ON: "LOGGEDON",
    AgentEventType.LOGGED_OFF: "LOGGEDOFF",
    AgentEventType.READY: "READY",
    AgentEventType.NOT_READY: "NOTREADY",
    AgentEventType.WORK_AFTER_CALL: "NOTREADY",  # after-call work: not taking calls
}

_SIMPLE_CALL_EVENTS = {
    E.SERVICE_INITIATED: "SERVICEINITIATED",
    E.ORIGINATED: "ORIGINATED",
    E.ESTABLISHED: "ANSWERED",
    E.HELD: "HELD",
    E.RETRIEVED: "RETRIEVE",
    E.CONNECTION_CLEARED: "CONNECTIONCLEARED",
    E.DIVERTED: "CONNECTIONCLEARED",  # the call left this device: close its pop
}


_AGENT_STATE_EVENTS = {
    AgentState.LOGGED_OFF: AgentEventType.LOGGED_OFF,
    AgentState.LOGGED_ON: AgentEventType.LOGGED_ON,
    AgentState.READY: AgentEventType.READY,
    AgentState.NOT_READY: AgentEventType.NOT_READY,
    AgentState.WORK_AFTER_CALL: AgentEventType.WORK_AFTER_CALL,
}

# (state the model had, state the switch reports) -> events that bring the model (and Protheus) there.
_RESYNC_STEPS: dict[tuple[CS | None, CS], tuple[E, ...]] = {
    (None, CS.ALERTING): (E.DELIVERED,),
    # a call that appeared and was answered while the gateway was not looking: RINGING first, which pops
    # the screen (its CALLTYPE follows the call's direction: an outbound one pops nothing), then ANSWERED
    (None, CS.CONNECTED): (E.DELIVERED, E.ESTABLISHED),
    (None, CS.HELD): (E.DELIVERED, E.ESTABLISHED, E.HELD),
    (CS.ALERTING, CS.CONNECTED): (E.ESTABLISHED,),
    (CS.ALERTING, CS.HELD): (E.ESTABLISHED, E.HELD),
    (CS.INITIATED, CS.CONNECTED): (E.ESTABLISHED,),
    (CS.INITIATED, CS.HELD): (E.ESTABLISHED, E.HELD),
    (CS.CONNECTED, CS.HELD): (E.HELD,),
    (CS.HELD, CS.CONNECTED): (E.RETRIEVED,),
}


def clean(value: str) -> str:
    """Protheus pastes values between single quotes in a macro: no quotes, no line breaks (§3.4)."""
    if "'" in value or "\n" in value or "\r" in value:
        value = value.replace("'", "").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return value


@dataclass(frozen=True)
class Notification:
    """One SmartCTIWSEventing call owed to every URL in ``urls``."""

    name: str                       # "RINGING"
    device: str                     # the device key (trimmed)
    cdevice: str                    # CDEVICE, exactly as Protheus sent it
    values: tuple[str | int, ...]   # EVENT_PARAMS[name], in order
    urls: tuple[str, ...]

    def params(self, link_id: int) -> list[tuple[str, str | int]]:
        """Every parameter in WSDL order, CDEVICE and ILINKID first."""
        return [("CDEVICE", self.cdevice), ("ILINKID", link_id), *zip(EVENT_PARAMS[self.name], self.values)]


def associated_data(data: str, ani: str) -> str:
    """``type|value`` for RINGING: the PABX's call data when it is typed (``2|11122233344``), else ``3|<ANI>``."""
    head, bar, _ = data.partition("|")
    if bar and head.strip().isdigit():
        return data
    return f"3|{ani}"


# The fields an ASSOCIATEDDATA template (protocol.associated_data) may use.
POP_FIELDS = ("protocolo", "ani", "dnis", "callid", "dados")
_POP_FIELD = re.compile(r"\{([a-z]+)\}")


def pop_template_problem(template: str) -> str | None:
    """Why ``template`` cannot be an ASSOCIATEDDATA template, or None."""
    unknown = sorted({m for m in _POP_FIELD.findall(template) if m not in POP_FIELDS})
    if unknown:
        return (f"{template!r} uses {', '.join('{' + u + '}' for u in unknown)}; a template may use "
                f"{', '.join('{' + f + '}' for f in POP_FIELDS)}")
    head, bar, _ = template.partition("|")
    if not bar or not head.strip().isdigit():
        return (f"{template!r} must start with the data type Protheus reads, then '|': e.g. '5|{{protocolo}};{{ani}}' "
                f"(type 5: the P_TMKGETAS customer hook) or '3|{{ani}}' (smartcti.md §3.3)")
    return None


def pop_data(template: str, data: str, ani: str, dnis: str, call_id: str, protocol: str) -> str:
    """RINGING.ASSOCIATEDDATA: the template filled in; without a template, or for a call that carries no
    protocol while the template wants one, what the gateway always sent (associated_data)."""
    default = associated_data(data, ani)
    if not template or ("{protocolo}" in template and not protocol):
        return default
    values = {"protocolo": protocol, "ani": ani, "dnis": dnis, "callid": call_id, "dados": default}
    return _POP_FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


# Asked when a call that pops a screen (CALLTYPE 1 or 3) rings with no ANS protocol known:
# (device, call id, ANI, DNIS) -> the call's protocol, "" for none. The host may issue one (ans/).
ProtocolOf = Callable[[str, str, str, str], str]


# CALLFAILURE.CAUSE: Protheus' listeners have a message for 2, 8, 10, 11, 20 and 25 only, and word 25 as
# "atendida por um correio de voz" (smartcti.md §10.7); any other cause shows "O PABX retornou uma
# informação não esperada". Each PABX cause goes out as the code whose message fits it (docs/events.md).
FAILURE_CAUSES: dict[Result, Result] = {
    Result.INVALID_PHONE_NUMBER: Result.INVALID_PHONE_NUMBER,  # "o número de telefone é inválido"
    Result.INTERCEPT: Result.INVALID_PHONE_NUMBER,             # operator's message: the number does not exist
    Result.NO_DIAL_TONE: Result.NO_DIAL_TONE,                  # "todas as linhas estão ocupadas"
    Result.OUT_OF_SERVICE: Result.NO_DIAL_TONE,                # no trunk, congestion
    Result.BUSY: Result.BUSY,                                  # "o número de telefone está ocupado"
    Result.NO_ANSWER: Result.NO_ANSWER,                        # "o número de telefone não atende"
    Result.DESTINATION_TALK_OFF: Result.NO_ANSWER,             # the far end dropped before answering
    Result.ANSWER_MACHINE: Result.INTERCEPT,                   # 25: "atendida por um correio de voz"
    Result.FAX_MACHINE: Result.INTERCEPT,                      # a machine answered: the same advice
    Result.PARK_AREA_FULL: Result.PARK_AREA_FULL,              # "todas as posições de estacionamento"
}


def failure_cause(cause: Result) -> int:
    """The CALLFAILURE.CAUSE whose message in Protheus says what happened; others pass as they are."""
    return int(FAILURE_CAUSES.get(cause, cause))


# How long a confirmed agent change's echo from the switch is waited for.
ECHO_WAIT = 10.0


class Notifier:
    def __init__(self, switch: Switch, *, pop_template: str = "", protocol_of: ProtocolOf | None = None,
                 dialler: DiallerRule = NO_DIALLER_RULE):
        self.switch = switch
        self.dialler = dialler      # which calls a dialler delivered (CALLTYPE 3), when the PABX does not say
        self.switch_echoes = True   # does the switch report the changes the gateway's commands make?
        self.pop_template = pop_template
        self.protocol_of = protocol_of

    def _pop(self, dev: Device, call: Call | None, ev: CallEvent, data: str, ani: str, dnis: str,
             kind: int) -> str:
        """ASSOCIATEDDATA of a RINGING; the call's ANS protocol first found (or issued) here if it pops a screen."""
        protocol = ev.protocol or (call.protocol if call else "")
        if not protocol and self.protocol_of is not None and kind in (CALL_TYPE_INBOUND, CALL_TYPE_DIALLER):
            protocol = self.protocol_of(dev.name, ev.call_id, ani, dnis)
        if call is not None and protocol:
            call.protocol = protocol
        return pop_data(self.pop_template, data, ani, dnis, ev.call_id, protocol)

    def agent_now(self, dev: Device) -> list[Notification]:
        """The agent's state as it is now (LOGGEDON, READY, NOTREADY, LOGGEDOFF), for every session: what a
        listener must show again when the event that told it went stale while Protheus was away."""
        agent = dev.agent
        if agent is None:
            return []
        kind = _AGENT_STATE_EVENTS.get(agent.state)
        if kind is None:
            return []
        return self._notify(dev, _AGENT_EVENTS[kind], agent.agent_id, ",".join(agent.groups))

    def in_service(self, device: Device, url: str, spelling: str = "") -> Notification:
        """INSERVICE, the answer to a successful AgentInService, for the session that asked."""
        return Notification("INSERVICE", device.name, spelling or device.wire_name, (), (url,))

    def in_service_owed(self, device: Device) -> list[Notification]:
        """INSERVICE for every session of a device Protheus put in service while the PABX was away."""
        return [Notification("INSERVICE", device.name, spelling, (), urls) for spelling, urls in device.by_spelling()]

    def agent_confirmed(self, dev: Device, notes_before: int) -> list[Notification]:
        """LOGGEDON / READY / NOTREADY / LOGGEDOFF after Protheus' command succeeded (smartcti.md §3.5,
        §10.2): the listener's Pausa/Disponível button moves only on these events, and some PABXs say
        nothing about a change a command made. Nothing when the PABX's own event already told Protheus
        since the command was planned.

        Every change told here is remembered until the PABX's echo comes (``Device.agent_echoes``), so
        that the echo is not told twice, and an echo that comes after a later change of the gateway's
        is stale and changes nothing (a LOGGEDON delivered after the next Ready's answer must not undo
        the Ready)."""
        state = dev.agent.state if dev.agent is not None else AgentState.LOGGED_OFF
        kind = _AGENT_STATE_EVENTS.get(state)     # busy: the calls tell it
        if kind is None:
            return []
        name = _AGENT_EVENTS[kind]
        if dev.agent_notes > notes_before and dev.agent_note[:1] == (name,):
            self.switch_echoes = True
            return []          # the PABX's report overtook the answer: told, and no echo to wait for
        self._expire(dev.agent_echoes)
        dev.agent_echoes.append((name, self.switch.clock()))
        return self._agent(dev, AgentEvent(kind, dev.name))

    def on_pabx_event(self, event: PabxEvent) -> list[Notification]:
        dev = self.switch.devices.get(event.device)
        if dev is None:
            return []
        if isinstance(event, AgentEvent):
            return self._agent_report(dev, event)
        held_before = any(self.switch.calls.get(c) is not None and
                          self.switch.calls[c].connections.get(dev.name) is CS.HELD
                          for c in (event.call_id, event.old_call_id) if c)
        old = self.switch.calls.get(event.old_call_id) if event.old_call_id else None
        had_old = event.old_call_id in dev.calls if event.old_call_id else False
        before = self.switch.calls.get(event.call_id)
        self.switch.apply(event)
        # a clearing event may drop the call from the model: still report what was known of it
        call = self.switch.calls.get(event.call_id) or before
        return self._call(dev, event, call, held_before, old if had_old else None)

    # ------------------------------------------------------------ resync
    def resync(self, name: str, agent: AgentInfo | None, calls: list[CallInfo] | None) -> list[Notification]:
        """What Protheus must hear so that it is right again, from a fresh look at the switch.

        After a reconnect (or for a quiet call) the switch's view replaces the
        model's: a call that ended meanwhile gets its CONNECTIONCLEARED, one that
        appeared gets RINGING / ANSWERED / HELD, an agent whose state changed on the
        phone gets LOGGEDON / READY / NOTREADY / LOGGEDOFF.
        """
        dev = self.switch.devices.get(name)
        if dev is None:
            return []
        notes: list[Notification] = []
        if agent is not None:
            notes += self._resync_agent(dev, agent)
        if calls is not None:
            notes += self._resync_calls(dev, calls)
        return notes

    def _resync_agent(self, dev: Device, info: AgentInfo) -> list[Notification]:
        known = dev.agent.state if dev.agent is not None else AgentState.LOGGED_OFF
        if info.state is AgentState.BUSY or info.state is known:
            return []   # busy is the calls' business, not an agent change
        if known is AgentState.WORK_AFTER_CALL and info.state is AgentState.NOT_READY and dev.wrap_up_until:
            return []   # the wrap-up's own pause, as the switch sees it
        kind = _AGENT_STATE_EVENTS[info.state]
        dev.agent_echoes.clear()    # the switch's present word: no report still on its way counts
        return self.on_pabx_event(AgentEvent(kind, dev.name, info.agent_id, info.groups))

    def _resync_calls(self, dev: Device, calls: list[CallInfo]) -> list[Notification]:
        notes: list[Notification] = []
        seen = {c.call_id: c for c in calls}
        for call in self.switch.calls_of(dev.name):
            if call.call_id not in seen:      # ended while we were not looking
                notes += self.on_pabx_event(CallEvent(E.CONNECTION_CLEARED, dev.name, call.call_id))
        for info in calls:
            known = self.switch.calls.get(info.call_id)
            before = known.connections.get(dev.name) if known is not None and info.call_id in dev.calls else None
            if known is not None:
                known.touched = self.switch.clock()
            for t in _RESYNC_STEPS.get((before, info.state), ()):
                ev = CallEvent(t, dev.name, info.call_id, calling=info.calling, called=info.called,
                               group=info.group, data=info.data, direction=info.direction,
                               trunks=info.trunks, category=info.category, protocol=info.protocol)
                notes += self.on_pabx_event(ev)
        return notes

    # ------------------------------------------------------------------
    def _notify(self, dev: Device, name: str, *values: str | int) -> list[Notification]:
        """``name`` for every session of ``dev``, each with the spelling of the device it sent."""
        if not dev.sessions:
            return []
        cleaned = tuple(clean(v) if isinstance(v, str) else v for v in values)
        return [Notification(name, dev.name, clean(spelling), cleaned, urls) for spelling, urls in dev.by_spelling()]

    def _agent_report(self, dev: Device, ev: AgentEvent) -> list[Notification]:
        """An agent event from the switch, measured against the changes the gateway confirmed.

        The switch reports in its own order. A report of the oldest change still awaiting its echo,
        when later ones are waiting too, is stale: it was overtaken by a later command's answer, and
        the model and Protheus keep the later state. A report of the newest is its echo (told only if
        Protheus heard otherwise since). Any other report is news, and no earlier echo will come after
        it. A switch that let an echo go unanswered is taken for one that does not echo commands, and
        nothing it reports is stale until it echoes one again."""
        name = _AGENT_EVENTS[ev.type]
        echoes = dev.agent_echoes
        if echoes:
            self._expire(echoes)
            pending = [e[0] for e in echoes]
            if len(pending) > 1 and pending[0] == name and self.switch_echoes:
                del echoes[0]
                return []
            echo = pending[-1:] == [name]
            echoes.clear()
            if echo:
                self.switch_echoes = True
                self.switch.apply(ev)
                return [] if self._agent_note(dev, ev) == dev.agent_note else self._agent(dev, ev)
        self.switch.apply(ev)
        return self._agent(dev, ev)

    def _expire(self, echoes: list) -> None:
        now = self.switch.clock()
        kept = [e for e in echoes if now - e[1] <= ECHO_WAIT]
        if len(kept) < len(echoes):
            self.switch_echoes = False
            echoes[:] = kept

    @staticmethod
    def _agent_note(dev: Device, ev: AgentEvent) -> tuple:
        return (_AGENT_EVENTS[ev.type], ev.agent_id or (dev.agent.agent_id if dev.agent else ""),
                ev.groups or (dev.agent.groups if dev.agent else ()))

    def _agent(self, dev: Device, ev: AgentEvent) -> list[Notification]:
        """Protheus told of an agent change; remembered as the last told."""
        note = dev.agent_note = self._agent_note(dev, ev)
        dev.agent_notes += 1
        return self._notify(dev, note[0], note[1], ",".join(note[2]))

    def _call_type(self, dev: Device, call: Call | None, ev: CallEvent, ani: str) -> int:
        """RINGING.CALLTYPE: 1 and 3 open a customer screen in Protheus, any other value does not
        (smartcti.md §10.6); a colleague's call (internal, a consultation) must not."""
        direction = ev.direction if ev.direction is not Direction.UNKNOWN else (
            call.direction if call else Direction.UNKNOWN)
        if ev.other_device and ev.other_device != ev.device:
            return CALL_TYPE_OUTBOUND          # the far end of this device's call is ringing
        if direction is Direction.DIALLER or self._by_dialler(call, ev):
            return CALL_TYPE_DIALLER
        if direction in (Direction.OUTBOUND, Direction.INTERNAL) or self._from_colleague(dev, ani):
            return CALL_TYPE_OUTBOUND
        return CALL_TYPE_INBOUND

    def _by_dialler(self, call: Call | None, ev: CallEvent) -> bool:
        """The link's ``dialler`` rule: the call's DNIS, ACD group or a variable says a dialler delivered it."""
        if not self.dialler:
            return False
        return self.dialler.matches(ev.called or (call.called if call else ""), ev.group or (call.group if call else ""),
                                    {**(call.variables if call else {}), **dict(ev.variables)},
                                    ev.data or (call.data if call else ""))

    def _from_colleague(self, dev: Device, ani: str) -> bool:
        """The caller is another extension this link serves: a PABX that does not say "internal"."""
        return bool(ani) and ani != dev.name and ani in self.switch.devices

    def _call(self, dev: Device, ev: CallEvent, call: Call | None, held_before: bool,
              old: Call | None) -> list[Notification]:
        ani = ev.calling or (call.calling if call else "")
        dnis = ev.called or (call.called if call else "")
        if ev.type in (E.SERVICE_INITIATED, E.ORIGINATED):
            ani = ani or dev.name
        t = ev.type
        if t is E.DELIVERED:
            data = ev.data or (call.data if call else "")
            kind = self._call_type(dev, call, ev, ani)
            return self._notify(dev, "RINGING", ev.call_id, ani, dnis, self._pop(dev, call, ev, data, ani, dnis, kind),
                                kind)
        if t is E.FAILED:
            return self._notify(dev, "CALLFAILURE", ev.call_id, ani, dnis, failure_cause(ev.cause))
        if t is E.TRANSFERRED:
            # This device now talks to whoever was transferred to it: end the old
            # leg in Protheus, then pop the transferred caller as an answered call.
            out: list[Notification] = []
            if old is not None:
                out += self._notify(dev, "CONNECTIONCLEARED", old.call_id, old.calling, old.called)
            data = ev.data or (call.data if call else "")
            kind = (CALL_TYPE_DIALLER if call and call.direction is Direction.DIALLER or self._by_dialler(call, ev) else
                    CALL_TYPE_OUTBOUND if self._from_colleague(dev, ani) else CALL_TYPE_INBOUND)
            out += self._notify(dev, "RINGING", ev.call_id, ani, dnis, self._pop(dev, call, ev, data, ani, dnis, kind),
                                kind)
            out += self._notify(dev, "ANSWERED", ev.call_id, ani, dnis)
            return out
        if t is E.CONFERENCED:
            # Joined into one call: a leg that was on hold is talking again.
            return self._notify(dev, "RETRIEVE", ev.call_id, ani, dnis) if held_before else []
        return self._notify(dev, _SIMPLE_CALL_EVENTS[t], ev.call_id, ani, dnis)
