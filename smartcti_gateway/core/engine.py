"""The core of one link, without I/O: the one entry point its host (the link) uses.

In the spirit of h11's ``Connection``: the engine never touches a socket. The host asks it what to
do, does the I/O, and hands the outcome back; every call returns what Protheus must get::

    engine = Engine(version, health)
    step = engine.plan("Hold", {"device": "2001"})      # step.request: what to ask the PABX, or None
    try:
        outcome = engine.complete(step, await driver.execute(step.request))
    except PabxError as e:
        outcome = engine.fail(step, e)
    outcome.value      # the SOAP return value
    outcome.notes      # the SmartCTIWSEventing calls it causes (READY after Ready, INSERVICE...)
    outcome.resync     # devices whose calls must be read again from the PABX

    notes = engine.pabx_event(event)                     # a PABX report -> what Protheus must hear
    notes = engine.resync("2001", agent_info, calls)     # a fresh look at the switch -> catch-up events
    notes = engine.monitored("2001")                     # the PABX monitors it now -> INSERVICE owed

    for step in engine.steps():                          # what the core does by itself (wrap-up), after
        ...                                              # every event and at engine.next_deadline()

The model it keeps (``switch``: devices in service, agents, calls) is read by the status page and
/metrics; the call state transitions are the table ``model.CALL_TRANSITIONS``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .commands import Commands, Step
from .dialler import NO_DIALLER_RULE, DiallerRule
from .health import LinkHealth
from .model import Device, Switch
from .notify import Notification, Notifier, ProtocolOf
from .pabx import AgentInfo, CallInfo, PabxError, PabxEvent
from .pauses import NO_PAUSE_REASONS, NO_WRAP_UP, PauseReasons, WrapUp
from .wrapup import AfterCallWork


@dataclass(frozen=True)
class Outcome:
    value: int | str
    notes: list[Notification] = field(default_factory=list)
    resync: list[str] = field(default_factory=list)


class Engine:
    def __init__(self, version: str, health: LinkHealth | None = None, clock: Callable[[], float] = time.monotonic,
                 *, pop_template: str = "", protocol_of: ProtocolOf | None = None,
                 pause_reasons: PauseReasons = NO_PAUSE_REASONS, wrap_up: WrapUp = NO_WRAP_UP,
                 dialler: DiallerRule = NO_DIALLER_RULE):
        self.switch = Switch(clock)
        notifier = Notifier(self.switch, pop_template=pop_template, protocol_of=protocol_of, dialler=dialler)
        self._commands = Commands(self.switch, version, health, notifier, pause_reasons)
        self._notifier = self._commands.notifier
        self._wrap_up = AfterCallWork(self._commands, wrap_up)

    # ------------------------------------------------------------- commands
    def plan(self, op: str, args: dict[str, str]) -> Step:
        """``op`` is a SmartCTIWSCommand operation (core.operations); missing args count as empty."""
        return self._commands.plan(op, args)

    def complete(self, step: Step, reply: Any = None) -> Outcome:
        """The PABX answered ``step.request`` (or there was none to ask)."""
        return self._outcome(step.done(reply))

    def fail(self, step: Step, error: PabxError) -> Outcome:
        """The PABX refused ``step.request``, or could not be asked (PabxUnavailable)."""
        return self._outcome(step.failed(error))

    def _outcome(self, value: int | str) -> Outcome:
        c = self._commands
        notes, c.outbox = c.outbox, []
        resync, c.resync_wanted = sorted(c.resync_wanted), set()
        return Outcome(value, notes, resync)

    # --------------------------------------------------------------- events
    def pabx_event(self, event: PabxEvent) -> list[Notification]:
        talking = self._wrap_up.talking_in(event)
        notes = self._notifier.on_pabx_event(event)
        self._wrap_up.after(event, talking)
        return notes

    # ------------------------------------------------------- on its own
    def steps(self) -> list[Step]:
        """Requests the core makes by itself now (a wrap-up that starts or ends): perform each like a
        command's (``complete`` / ``fail``); the outcome's notes go to Protheus."""
        return self._wrap_up.steps()

    def next_deadline(self) -> float | None:
        """When ``steps()`` next has something to do by the clock (the earliest wrap-up end), or None."""
        return self._wrap_up.next_deadline()

    def resync(self, name: str, agent: AgentInfo | None, calls: list[CallInfo] | None) -> list[Notification]:
        return self._notifier.resync(name, agent, calls)

    # -------------------------------------------------------------- devices
    def monitored(self, name: str) -> list[Notification]:
        """The PABX monitors ``name`` now: INSERVICE to the sessions that waited for it, if any did."""
        dev = self.switch.device(name)
        if dev is None or dev.monitored:
            return []
        dev.monitored = True
        return self._notifier.in_service_owed(dev)

    def agent_now(self, name: str) -> list[Notification]:
        """The agent's state of ``name`` as it is now, for each of its sessions (see Notifier.agent_now)."""
        dev = self.switch.device(name)
        return self._notifier.agent_now(dev) if dev is not None else []

    def release(self, name: str) -> Device | None:
        return self.switch.release(name)
