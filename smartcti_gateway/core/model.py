"""What one link knows about its switch: devices in service, agents and calls.

Plain data and pure updates, no I/O: the command planner reads it, PABX
events update it (``Switch.apply``). A call is a set of connections, one
per party, each with a CSTA connection state.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .codes import Result
from .pabx import (
    AgentEvent,
    AgentEventType,
    AgentState,
    CallEvent,
    CallEventType,
    CallInfo,
    ConnectionState as CS,
    Direction,
    PabxEvent,
)


@dataclass
class Call:
    call_id: str
    direction: Direction = Direction.UNKNOWN
    calling: str = ""          # ANI
    called: str = ""           # DNIS
    group: str = ""            # ACD group that delivered it
    trunks: str = ""
    category: str = ""
    data: str = ""
    protocol: str = ""         # ANS attendance protocol (RN 623), once known
    variables: dict[str, str] = field(default_factory=dict)   # what the PABX reported (a dialler's mark)
    connections: dict[str, CS] = field(default_factory=dict)  # party -> state
    touched: float = 0.0       # when the switch last said anything about it (Switch.clock)
    started: float = 0.0       # when the gateway first heard of it (Switch.clock)
    answered: float = 0.0      # when a party first got connected in it; 0 while nobody has

    def update_from(self, ev: CallEvent | CallInfo) -> None:
        """Fill what the switch reported; never erase known values with blanks."""
        for name in ("calling", "called", "group", "trunks", "category", "data", "protocol"):
            value = getattr(ev, name)
            if value:
                setattr(self, name, value)
        if ev.direction is not Direction.UNKNOWN:
            self.direction = ev.direction
        for name, value in getattr(ev, "variables", ()):
            self.variables[name] = value


@dataclass
class Agent:
    agent_id: str
    groups: tuple[str, ...] = ()
    state: AgentState = AgentState.LOGGED_ON
    password: str = field(default="", repr=False)  # kept in memory only, never logged or stored
    reason: str = ""           # the PABX's own pause reason, as it gave it (pause_reasons names it)
    since: float = -1.0        # clock() when ``state`` last changed: the supervisor's "time in state"
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.since < 0:
            self.since = self.clock()

    def __setattr__(self, name, value) -> None:
        if name == "state" and "clock" in self.__dict__ and self.__dict__.get("state") is not value:
            object.__setattr__(self, "since", self.clock())
        object.__setattr__(self, name, value)


@dataclass
class Device:
    """A device Protheus holds in service (AgentInService), from then until its AgentOutOfService."""

    name: str                  # trimmed, the key
    wire_name: str = ""        # the spelling of the latest AgentInService (logs, status page)
    # the Protheus sessions holding it: (eventing URL, the device exactly as that session wrote it), in
    # the order they came. Each session's events carry its own spelling as CDEVICE: Protheus routes
    # them by that string, padding included (smartcti.md §3.4)
    sessions: dict[tuple[str, str], None] = field(default_factory=dict)
    in_service: int = 0        # AgentInService received since the device was taken (two per user)
    monitored: bool = True     # False while the PABX could not be asked: INSERVICE is owed until it can
    agent: Agent | None = None
    calls: list[str] = field(default_factory=list)  # call ids, oldest first
    last_failure: Result | None = None
    # the last agent event Protheus was told and how many so far; the agent changes the gateway
    # confirmed whose report from the PABX has not come yet, (event name, when), oldest first (core/notify.py)
    agent_note: tuple = ()
    agent_notes: int = 0
    agent_echoes: list = field(default_factory=list)
    # automatic wrap-up (core/wrapup.py): when the agent is made ready again (clock), 0 = none; when it
    # started, and the pause reason the PABX was given for it (its echo is not the agent pausing)
    wrap_up_until: float = 0.0
    wrap_up_started: float = 0.0
    wrap_up_reason: str = ""
    wrap_up_ending: bool = False    # its end is being performed (not planned twice)

    @property
    def event_urls(self) -> list[str]:
        return list(dict.fromkeys(url for url, _ in self.sessions))

    def by_spelling(self) -> list[tuple[str, tuple[str, ...]]]:
        """[(CDEVICE, its eventing URLs)], one entry per distinct spelling, in the order sessions came."""
        groups: dict[str, list[str]] = {}
        for url, spelling in self.sessions:
            groups.setdefault(spelling, []).append(url)
        return [(spelling, tuple(urls)) for spelling, urls in groups.items()]


# Which of a device's calls a command means, in order of preference.
ACTIVE_ORDER = (CS.CONNECTED, CS.ALERTING, CS.INITIATED, CS.HELD, CS.QUEUED)

# How a PABX call event changes the connections of the monitored device and of the other party the
# event names (the far end ringing, the answering or releasing party, the transfer target).
# (event, names another party?) -> (change of this device, change of the other party); None: no change.
# Read with "True/False" first, then "None" (either way). docs/events.md shows this table.
BECOMES, JOINS, LEAVES = "becomes", "joins as", "leaves the call"
Change = tuple  # (BECOMES | JOINS | LEAVES, ConnectionState | None); JOINS keeps a state already there
E_ = CallEventType
CALL_TRANSITIONS: dict[tuple[CallEventType, bool | None], tuple[Change | None, Change | None]] = {
    (E_.SERVICE_INITIATED, None): ((BECOMES, CS.INITIATED), None),
    (E_.ORIGINATED, None): ((BECOMES, CS.CONNECTED), (JOINS, CS.INITIATED)),
    (E_.DELIVERED, False): ((BECOMES, CS.ALERTING), None),
    (E_.DELIVERED, True): ((JOINS, CS.CONNECTED), (BECOMES, CS.ALERTING)),
    (E_.ESTABLISHED, None): ((BECOMES, CS.CONNECTED), (BECOMES, CS.CONNECTED)),
    (E_.FAILED, None): ((BECOMES, CS.FAILED), None),
    (E_.HELD, None): ((BECOMES, CS.HELD), None),
    (E_.RETRIEVED, None): ((BECOMES, CS.CONNECTED), (JOINS, CS.CONNECTED)),
    (E_.TRANSFERRED, None): ((BECOMES, CS.CONNECTED), (JOINS, CS.CONNECTED)),
    (E_.CONFERENCED, None): ((BECOMES, CS.CONNECTED), (JOINS, CS.CONNECTED)),
    (E_.DIVERTED, None): ((LEAVES, None), (LEAVES, None)),
    (E_.CONNECTION_CLEARED, None): ((LEAVES, None), (LEAVES, None)),
}


def _change(call: "Call", party: str, change: Change) -> None:
    what, state = change
    if what is BECOMES:
        call.connections[party] = state
    elif what is JOINS:
        call.connections.setdefault(party, state)
    else:
        call.connections.pop(party, None)


def transitions_table() -> str:
    """CALL_TRANSITIONS as the Markdown table docs/events.md shows (a test keeps the two the same)."""
    def text(change: Change | None) -> str:
        if change is None:
            return "-"
        what, state = change
        return what if state is None else f"{what} {state.value}"

    rows = ["| PABX event | names another party | this device | the other party |", "|---|---|---|---|"]
    for (event, other), (mine, theirs) in CALL_TRANSITIONS.items():
        named = {None: "either", True: "yes", False: "no"}[other]
        rows.append(f"| {event.value} | {named} | {text(mine)} | {text(theirs) if other is not False else '-'} |")
    return "\n".join(rows)


class Switch:
    """The link's model of the switch. Only devices Protheus holds in service get an entry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.devices: dict[str, Device] = {}
        self.calls: dict[str, Call] = {}
        self.clock = clock

    # ---------------------------------------------------------------- devices
    def device(self, name: str) -> Device | None:
        return self.devices.get(name)

    def put_in_service(self, name: str, wire_name: str, event_url: str) -> Device:
        """One Protheus process holds the device in service, with the spelling it wrote and its eventing URL."""
        dev = self.devices.get(name)
        if dev is None:
            dev = self.devices[name] = Device(name)
        dev.wire_name = wire_name or name
        dev.in_service += 1
        if event_url:
            dev.sessions[(event_url, dev.wire_name)] = None
        return dev

    def release(self, name: str) -> Device | None:
        """Protheus holds the device no more (smartcti.md §10.1): forget it and its calls; the released
        device, or None when it was not in service."""
        dev = self.devices.get(name)
        if dev is None:
            return None
        for call_id in list(dev.calls):
            self._detach(name, call_id)
        del self.devices[name]
        return dev

    def is_in_service(self, name: str) -> bool:
        return name in self.devices

    def agent_state(self, name: str) -> AgentState:
        """The agent state of a device: what queryAgentState answers, the status page shows and /metrics
        counts. The agent's own state (logged on, ready, paused, after-call work), or busy while the
        device is in a call, as a PABX reports it."""
        dev = self.devices.get(name)
        agent = dev.agent if dev is not None else None
        if agent is None or agent.state is AgentState.LOGGED_OFF:
            return AgentState.LOGGED_OFF
        if any(self.calls[c].connections.get(name) in ACTIVE_ORDER for c in dev.calls if c in self.calls):
            return AgentState.BUSY
        return agent.state

    # ------------------------------------------------------------------ calls
    def calls_of(self, name: str) -> list[Call]:
        dev = self.devices.get(name)
        if dev is None:
            return []
        return [self.calls[c] for c in dev.calls if c in self.calls]

    def call_in_state(self, name: str, *states: CS) -> Call | None:
        """The device's most recent call whose connection is in one of ``states``, by preference order."""
        calls = self.calls_of(name)
        for state in states:
            for call in reversed(calls):
                if call.connections.get(name) is state:
                    return call
        return None

    def call_id_in_state(self, name: str, *states: CS) -> str:
        call = self.call_in_state(name, *states)
        return call.call_id if call else ""

    def note_call(self, name: str, call_id: str, state: CS, direction: Direction = Direction.UNKNOWN) -> Call:
        """Record a call the device has just placed (before its events arrive)."""
        call = self._call(call_id)
        call.connections.setdefault(name, state)
        if direction is not Direction.UNKNOWN and call.direction is Direction.UNKNOWN:
            call.direction = direction
        self._attach(name, call_id)
        return call

    def _call(self, call_id: str) -> Call:
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = Call(call_id, started=self.clock())
        call.touched = self.clock()
        return call

    def new_agent(self, agent_id: str, groups: tuple[str, ...] = (), state: AgentState = AgentState.LOGGED_ON,
                  password: str = "") -> Agent:
        """An agent whose time in state runs on this switch's clock."""
        return Agent(agent_id, groups, state, password, clock=self.clock)

    @staticmethod
    def _answered(call: Call, now: float) -> None:
        if not call.answered and any(s is CS.CONNECTED for s in call.connections.values()):
            call.answered = now

    def restore_call(self, name: str, call_id: str, state: CS, calling: str = "", called: str = "",
                     group: str = "", direction: Direction = Direction.UNKNOWN) -> Call:
        """A call the device was in when the gateway stopped (registry.py); the resync checks it."""
        call = self._call(call_id)
        call.connections[name] = state
        call.calling, call.called, call.group = call.calling or calling, call.called or called, call.group or group
        if call.direction is Direction.UNKNOWN:
            call.direction = direction
        self._attach(name, call_id)
        return call

    def quiet_devices(self, older_than: float) -> list[str]:
        """Devices with a call the switch has said nothing about for ``older_than`` seconds."""
        limit = self.clock() - older_than
        return sorted({p for c in self.calls.values() if c.touched < limit
                       for p in c.connections if p in self.devices})

    def _attach(self, name: str, call_id: str) -> None:
        dev = self.devices.get(name)
        if dev is not None and call_id not in dev.calls:
            dev.calls.append(call_id)

    def _detach(self, name: str, call_id: str) -> None:
        dev = self.devices.get(name)
        if dev is not None and call_id in dev.calls:
            dev.calls.remove(call_id)
        call = self.calls.get(call_id)
        if call is None:
            return
        call.connections.pop(name, None)
        if not any(p in self.devices and p in call.connections for p in call.connections):
            del self.calls[call_id]

    def _rekey(self, name: str, old_id: str, new_id: str) -> Call:
        """A transfer or conference merged ``old_id`` into ``new_id`` for this device."""
        old = self.calls.get(old_id)
        new = self._call(new_id)
        if old is not None and old is not new:
            for attr in ("calling", "called", "group", "trunks", "category", "data", "protocol"):
                if not getattr(new, attr):
                    setattr(new, attr, getattr(old, attr))
            if new.direction is Direction.UNKNOWN:
                new.direction = old.direction
        self._detach(name, old_id)
        self._attach(name, new_id)
        return new

    # ----------------------------------------------------------------- events
    def apply(self, event: PabxEvent) -> Device | None:
        """Update the model from a PABX event; returns the device it concerns, if known."""
        dev = self.devices.get(event.device)
        if dev is None:
            return None
        if isinstance(event, AgentEvent):
            self._apply_agent(dev, event)
        else:
            self._apply_call(dev, event)
        return dev

    def _apply_agent(self, dev: Device, ev: AgentEvent) -> None:
        if ev.type is AgentEventType.LOGGED_OFF:
            if dev.agent is not None:
                dev.agent.state = AgentState.LOGGED_OFF
            dev.wrap_up_until = 0.0
            return
        if dev.agent is None or (ev.agent_id and ev.agent_id != dev.agent.agent_id):
            dev.agent = self.new_agent(ev.agent_id)
        if ev.groups:
            dev.agent.groups = ev.groups
        if ev.type is AgentEventType.NOT_READY and self.wrap_up_echo(dev, ev.reason):
            dev.agent.state = AgentState.WORK_AFTER_CALL    # the switch's report of the wrap-up's own pause
            return
        dev.agent.reason = ev.reason
        dev.agent.state = {
            AgentEventType.LOGGED_ON: AgentState.LOGGED_ON,
            AgentEventType.READY: AgentState.READY,
            AgentEventType.NOT_READY: AgentState.NOT_READY,
            AgentEventType.WORK_AFTER_CALL: AgentState.WORK_AFTER_CALL,
        }[ev.type]
        if dev.agent.state is not AgentState.WORK_AFTER_CALL:
            dev.wrap_up_until = 0.0      # paused, ready or logged on otherwise meanwhile: no wrap-up to end

    # how long after a wrap-up started a pause reported without a reason is still taken for its echo
    WRAP_UP_ECHO = 10.0

    def wrap_up_echo(self, dev: Device, reason: str) -> bool:
        """Is a NOT_READY the switch reports for ``dev`` the wrap-up's own pause? With the wrap-up's reason,
        yes; without one, only in the seconds after it started (an NGC may not echo its MOTIVO)."""
        if not dev.wrap_up_until:
            return False
        if reason:
            return reason.strip().casefold() == dev.wrap_up_reason.strip().casefold()
        return self.clock() - dev.wrap_up_started <= self.WRAP_UP_ECHO

    def _apply_call(self, dev: Device, ev: CallEvent) -> None:
        me = dev.name
        other = ev.other_device if ev.other_device and ev.other_device != me else ""
        t = ev.type
        if t in (CallEventType.TRANSFERRED, CallEventType.CONFERENCED) and ev.old_call_id:
            call = self._rekey(me, ev.old_call_id, ev.call_id)
        else:
            call = self._call(ev.call_id)
            self._attach(me, ev.call_id)
        call.update_from(ev)
        if t is CallEventType.SERVICE_INITIATED and call.direction is Direction.UNKNOWN:
            call.direction = Direction.OUTBOUND
        if t is CallEventType.FAILED:
            dev.last_failure = ev.cause
        mine, theirs = CALL_TRANSITIONS.get((t, bool(other))) or CALL_TRANSITIONS[(t, None)]
        if other and theirs is not None:
            _change(call, other, theirs)
        if mine is not None and mine[0] is LEAVES:
            self._detach(me, ev.call_id)
        elif mine is not None:
            _change(call, me, mine)
        self._answered(call, self.clock())

    # --------------------------------------------------------------- snapshot
    def apply_snapshot(self, name: str, calls: list[CallInfo]) -> None:
        """Replace what we know of the device's calls by what the switch reported."""
        dev = self.devices.get(name)
        if dev is None:
            return
        seen = set()
        for info in calls:
            seen.add(info.call_id)
            call = self._call(info.call_id)
            call.update_from(info)
            call.connections[name] = info.state
            for party in info.other_devices:
                call.connections.setdefault(party, CS.CONNECTED)
            self._answered(call, self.clock())
            self._attach(name, info.call_id)
        for call_id in [c for c in dev.calls if c not in seen]:
            self._detach(name, call_id)
