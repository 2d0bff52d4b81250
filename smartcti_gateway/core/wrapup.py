"""Automatic wrap-up (after-call work, "tabulação automática"), without I/O.

When a call the agent was talking in ends and the device has no other call, the agent is paused at the
switch with ``wrap_up.reason`` for the seconds of the call's ACD group (or the link's): queryAgentState
answers 27 and Protheus hears NOTREADY. When the time is up the agent is made ready again (READY),
unless the agent paused, logged off or became ready meanwhile (a Ready from Protheus ends it early).

The host asks ``steps()`` for what to perform after each PABX event and whenever ``next_deadline()``
passes, performs each step's request and hands the outcome to the engine, like a command's. The deadline
lives on the device (``Device.wrap_up_until``), so the registry keeps it across a restart.
"""
from __future__ import annotations

from .codes import Result
from .commands import Commands, Step
from .model import Call, Device, Switch
from .pabx import AgentState, CallEvent, ConnectionState as CS, PabxError, PabxEvent, SetAgentState
from .pauses import WrapUp

# A wrap-up whose end the PABX refused (or could not hear) is tried again this much later: the agent
# must not stay paused for ever.
RETRY = 5.0
# the device's connection states in which the agent is talking (a held call is still the agent's)
TALKING = (CS.CONNECTED, CS.HELD)
# any call the device still has: no wrap-up while one is left (a consultation, a second line)
BUSY = (CS.CONNECTED, CS.HELD, CS.ALERTING, CS.INITIATED, CS.QUEUED)


class AfterCallWork:
    def __init__(self, commands: Commands, options: WrapUp):
        self.commands = commands       # its outbox takes the notes of a performed step
        self.switch: Switch = commands.switch
        self.notifier = commands.notifier
        self.options = options
        self._owed: list[Step] = []    # steps planned by events, for the host to perform
        # the devices that may have a deadline: those a wrap-up started on, and, once, every device (the
        # registry restores deadlines). Never every device per event: 8,000 of them would cost each event.
        self._watched: set[str] | None = None

    # ------------------------------------------------------------ events
    def talking_in(self, event: PabxEvent) -> Call | None:
        """Before ``event`` is applied: the call it concerns if the device's agent is talking in it."""
        if not self.options.enabled or not isinstance(event, CallEvent):
            return None
        dev = self.switch.device(event.device)
        call = self.switch.calls.get(event.call_id)
        if dev is None or dev.agent is None or call is None or call.connections.get(dev.name) not in TALKING:
            return None
        return call

    def after(self, event: PabxEvent, call: Call | None) -> None:
        """After ``event``: the call the agent talked in is over for the device, and nothing else is left."""
        if call is None:
            return
        dev = self.switch.device(event.device)
        if dev is None or dev.agent is None or dev.agent.state not in (AgentState.READY, AgentState.WORK_AFTER_CALL):
            return
        if dev.name in call.connections and event.call_id in dev.calls:
            return            # still in the call (held, retrieved, transferred into it)
        if any(c.connections.get(dev.name) in BUSY for c in self.switch.calls_of(dev.name)):
            return
        seconds = self.options.seconds_for(call.group)
        if seconds <= 0:
            return
        self._owed.append(self._start(dev, seconds))

    # ------------------------------------------------------------- steps
    def _with_deadline(self) -> list[Device]:
        """The devices that have a wrap-up deadline now; the others are no longer watched."""
        if self._watched is None:
            self._watched = {name for name, dev in self.switch.devices.items() if dev.wrap_up_until}
        out = []
        for name in list(self._watched):
            dev = self.switch.device(name)
            if dev is None or not dev.wrap_up_until:
                self._watched.discard(name)
            else:
                out.append(dev)
        return out

    def steps(self) -> list[Step]:
        """What to perform now: wrap-ups that start, and those whose time is up."""
        owed, self._owed = self._owed, []
        if not owed and not self._watched and self._watched is not None:
            return owed
        now = self.switch.clock()
        for dev in self._with_deadline():
            if dev.wrap_up_until <= now and not dev.wrap_up_ending:
                if dev.agent is None or dev.agent.state is not AgentState.WORK_AFTER_CALL:
                    dev.wrap_up_until = 0.0
                    continue
                owed.append(self._end(dev))
        return owed

    def next_deadline(self) -> float | None:
        deadlines = [d.wrap_up_until for d in self._with_deadline() if not d.wrap_up_ending]
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------- the two steps
    def _start(self, dev: Device, seconds: float) -> Step:
        agent = dev.agent
        now = self.switch.clock()
        dev.wrap_up_until, dev.wrap_up_started, dev.wrap_up_reason = now + seconds, now, self.options.reason
        self._with_deadline()
        self._watched.add(dev.name)
        notes_before = dev.agent_notes
        name = dev.name

        def done(_reply):
            d = self.switch.device(name)
            if d is None or d.agent is None or d.agent.state in (AgentState.LOGGED_OFF, AgentState.NOT_READY):
                return int(Result.SUCCESS)     # logged off or paused by hand meanwhile: theirs wins
            started = self.switch.clock()
            d.wrap_up_until = d.wrap_up_until or started + seconds
            self._watched.add(name)
            d.agent.state = AgentState.WORK_AFTER_CALL
            d.agent.reason = self.options.reason
            self.commands.outbox.extend(self.notifier.agent_confirmed(d, notes_before))
            return int(Result.SUCCESS)

        def failed(e: PabxError):
            d = self.switch.device(name)
            if d is not None:
                d.wrap_up_until = 0.0
            return int(e.code)

        return Step(SetAgentState(name, agent.agent_id, agent.groups, AgentState.NOT_READY, agent.password,
                                  self.options.reason), done, failed)

    def _end(self, dev: Device) -> Step:
        agent = dev.agent
        name = dev.name
        notes_before = dev.agent_notes
        dev.wrap_up_ending = True

        def done(_reply):
            d = self.switch.device(name)
            if d is None:
                return int(Result.SUCCESS)
            d.wrap_up_ending = False
            if d.agent is None or d.agent.state is not AgentState.WORK_AFTER_CALL:
                d.wrap_up_until = 0.0
                return int(Result.SUCCESS)
            d.wrap_up_until = 0.0
            d.agent.state = AgentState.READY
            d.agent.reason = ""
            self.commands.outbox.extend(self.notifier.agent_confirmed(d, notes_before))
            return int(Result.SUCCESS)

        def failed(e: PabxError):
            d = self.switch.device(name)
            if d is not None:
                d.wrap_up_ending = False
                if d.wrap_up_until:
                    d.wrap_up_until = self.switch.clock() + RETRY
                    self._watched.add(name)
            return int(e.code)

        return Step(SetAgentState(name, agent.agent_id, agent.groups, AgentState.READY, agent.password),
                    done, failed)
