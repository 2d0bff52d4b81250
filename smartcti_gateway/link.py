"""One SmartCTI link: a LinkID, its command service, its PABX driver and its model.

This is where a SOAP operation meets the PABX: the core plans the command,
the driver performs the request within the link's timeout, the core turns
the outcome into the value Protheus reads. A supervisor task keeps the PABX
link alive: keep-alives, reconnection with backoff, and a resync after every
reconnect so that Protheus is right again; it also checks calls the PABX has
been quiet about, so no call stays open forever.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .core.codes import Result
from .core.commands import Step, answer, eventing_url_problem
from .core.engine import Engine, Outcome
from .core.notify import Notification
from .core.dialler import NO_DIALLER_RULE, DiallerRule
from .core.pauses import NO_PAUSE_REASONS, NO_WRAP_UP, PauseReasons, WrapUp
from .core.health import LinkHealth
from .core.operations import SECRET_PARAMS
from .core.pabx import (AgentEvent, AgentState, AttachCallData, CallEvent, CallEventType, MonitorStart,
                        MonitorStop, PabxError, PabxEvent, PabxUnavailable, QueryAgentState, Request, SnapshotDevice,
                        StartRecording)
from .core.pabx import ConnectionState, QueryGroupCalls, QueueEvent, SPY_MODES, Spy   # queues and supervision
from .core.queues import DEFAULT_TIMEZONE, PolledQueues, QueueStats
from .extlog import NO_TRACE, Trace, clip
from .latency import Latency
from .pabx.base import Driver, bounded
from .protheus.delivery import DeliveryOptions, EventDelivery
from .protheus.eventing import EventingClient
from .registry import Registry

if TYPE_CHECKING:
    from .ans.service import Protocols

log = logging.getLogger("smartcti_gateway.link")

PROTOCOL_VARIABLE = "PROTOCOLO_ANS"     # the ANS protocol's name on a call at the PABX

# Polled every MV_TMKTIME ms by every listener: logged at debug level only.
QUIET_OPERATIONS = frozenset({"SystemStatus", "queryAgentState"})
# Operations that change what must survive a restart (registry.py).
PERSISTED_OPERATIONS = frozenset({
    "AgentInService", "AgentOutOfService", "Logon", "LogonPass", "Logoff", "LogoffPass",
    "Ready", "ReadyPass", "NotReady", "NotReadyPass"})


@dataclass
class HealthOptions:
    keepalive: float = 10.0          # seconds between keep-alives
    keepalive_timeout: float = 10.0  # a keep-alive without answer by then is missed
    grace: float = 30.0              # down this long before SystemStatus / queryAgentState say so
    reconnect_max: float = 30.0      # backoff cap between reconnect attempts
    quiet_call: float = 300.0        # a call without news this long is checked against the PABX


def masked(args: dict[str, str]) -> str:
    """A command's arguments for a log line: passwords as ***, every value cut to a sane length."""
    return ", ".join(f"{k}={'***' if k in SECRET_PARAMS and v else repr(clip(v))}" for k, v in args.items())


# Checks an eventing URL against the site's eventing_allow: why it is refused, or "".
UrlCheck = Callable[[str], Awaitable[str]]


class Link:
    def __init__(self, link_id: int, name: str, driver: Driver, *, timeout: float, version: str,
                 eventing: EventingClient | None = None, delivery: DeliveryOptions | None = None,
                 health: HealthOptions | None = None, registry: Registry | None = None,
                 eventing_check: UrlCheck | None = None, protocols: Protocols | None = None,
                 pop_template: str = "", pause_reasons: PauseReasons = NO_PAUSE_REASONS,
                 wrap_up: WrapUp = NO_WRAP_UP, dialler: DiallerRule = NO_DIALLER_RULE):
        self.link_id = link_id
        self.name = name
        self.driver = driver
        self.timeout = timeout
        self.ho = health or HealthOptions()
        self.health = LinkHealth(grace=self.ho.grace, backoff_max=self.ho.reconnect_max, clock=time.monotonic)
        self.protocols = protocols
        self.engine = Engine(version, self.health, pop_template=pop_template,
                             protocol_of=self._protocol_of if protocols is not None else None,
                             pause_reasons=pause_reasons, wrap_up=wrap_up, dialler=dialler)
        self.switch = self.engine.switch          # what the status page and /metrics read
        self.pause_reasons = pause_reasons        # names what the PABX reports (the supervisor's board)
        self.eventing = eventing or EventingClient()
        self.delivery = EventDelivery(link_id, self.eventing, delivery, on_release=self._release,
                                      on_agent_owed=self._agent_again)
        self.trace: Trace = NO_TRACE
        self.registry = registry
        # restored now, before any listener serves: an event or command must find the devices
        self.restored = registry.restore(link_id, self.switch) if registry else []
        for dev in self.restored:
            if dev.wrap_up_until:
                dev.wrap_up_reason = wrap_up.reason
        self.resyncs = 0
        self.last_resync_seconds = 0.0
        self.quiet_calls_closed = 0
        self.command_counts: Counter[tuple[str, str]] = Counter()   # (operation, result) -> n, for /metrics
        self.pabx_latency = Latency()
        self._saved: dict[str, tuple] = {}   # device -> what the registry last got of it
        self.eventing_check = eventing_check
        self._wake: asyncio.Event | None = None
        self._supervisor: asyncio.Task | None = None
        self._first_contact: asyncio.Event | None = None   # set once the first try to reach the PABX ended
        self._locks: dict[str, list] = {}    # device -> [lock, users]: its AgentInService/OutOfService in turn
        self._background: set[asyncio.Task] = set()
        self._init_queues()                  # queues and supervision
        self._calls_dirty: set[str] = set()  # devices whose calls changed since the registry last had them
        self._core_clock: asyncio.Task | None = None     # performs what the core does by the clock (wrap-up)
        self._core_wake: asyncio.Event | None = None

    def set_trace(self, trace: Trace) -> None:
        """Where per-extension lines go: commands here, PABX traffic in the driver, events in delivery.
        Only devices in service get a file."""
        trace.serves = self.switch.is_in_service
        self.trace = self.delivery.trace = self.driver.trace = trace

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._first_contact = asyncio.Event()
        await self.eventing.start()
        restored = self.restored
        if restored and self.eventing_check is not None:
            await self._check_restored_urls()
        await self.driver.start(self.on_event, self._down)
        if restored:
            log.info("link %d: %d device(s) restored from the registry; checking them against the PABX",
                     self.link_id, len(restored))
        try:
            await self._reconnect()       # the first contact: event listener, monitors, resync
        finally:
            self._first_contact.set()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        self._start_queues()
        self._core_wake = asyncio.Event()
        self._core_clock = asyncio.get_running_loop().create_task(self._keep_core_time())
        if self.registry is not None:
            self._in_background(self._keep_calls_saved())

    async def close(self, drain: float = 5.0) -> None:
        for task in [self._supervisor, self._core_clock, *self._background]:
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        self._save_calls()
        await self.driver.close()
        await self.delivery.close(drain)
        await self.eventing.close()

    # ------------------------------------------------------------- commands
    async def handle(self, op: str, args: dict[str, str]) -> int | str:
        """The SOAP operation ``op``: never raises for a PABX problem, never waits past the timeout."""
        device = (args.get("device") or args.get("cDevice") or "").strip()
        if op in ("AgentInService", "AgentOutOfService") and device:
            # one device's monitor requests in the order Protheus sent them: a Close() is followed at
            # once by a new AgentInService, whose MonitorStart must not overtake the MonitorStop
            async with self._device_turn(device):
                return await self._handle(op, args, device)
        if op in ("SystemStatus", "selfTest") and not self._first_contact_done():
            # just started, nobody in service: wait for the first try to reach the PABX, so that the
            # "Teste" button right after a migration is told the truth, not a hopeful 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._first_contact.wait()
        return await self._handle(op, args, device)

    def _first_contact_done(self) -> bool:
        return self._first_contact is None or self._first_contact.is_set() or bool(self.switch.devices)

    @contextlib.asynccontextmanager
    async def _device_turn(self, device: str):
        entry = self._locks.get(device)
        if entry is None:
            entry = self._locks[device] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[device]

    async def _plan(self, op: str, args: dict[str, str]) -> Step:
        if op == "AgentInService" and self.eventing_check is not None:
            url = args.get("ipaddress", "").strip()
            if url and not eventing_url_problem(url):
                problem = await self.eventing_check(url)
                if problem:
                    return answer(int(Result.DISCONNECTED_LINK), problem)
        return self.engine.plan(op, args)

    async def _handle(self, op: str, args: dict[str, str], device: str) -> int | str:
        step = await self._plan(op, args)
        if op == "AgentOutOfService" and device:
            # nothing more for it: what waits is dropped now, retries stop (docs/events.md)
            self.delivery.forget(device)
        detail = step.detail
        if step.request is None:
            outcome = self.engine.complete(step)
        else:
            started = time.monotonic()
            try:
                reply = await self.ask(step.request)
                if isinstance(step.request, StartRecording) and step.request.protocol and self.protocols \
                        and isinstance(reply, str) and reply:
                    self.protocols.recorded(step.request.protocol, reply)   # the recording's file name
                outcome = self.engine.complete(step, reply)
            except PabxError as e:
                detail = e.detail
                if isinstance(e, PabxUnavailable):
                    self._unavailable(op, detail)
                outcome = self.engine.fail(step, e)
            self.pabx_latency.observe(time.monotonic() - started)
        value = self._deliver(outcome)
        self.command_counts[(op, str(value) if isinstance(value, int) else "text")] += 1
        if self.registry is not None and op in PERSISTED_OPERATIONS and value == 0 and device:
            self._persist(device)
        if device and self.trace.on:
            self.trace(device, f"CMD {op}({masked(args)}) -> {value!r}{f' ({clip(detail, 300)})' if detail else ''}")
        level = logging.DEBUG if op in QUIET_OPERATIONS and not detail else logging.INFO
        if step.detail:
            level = logging.WARNING    # refused by the gateway itself: the operator must hear why
        if log.isEnabledFor(level):
            log.log(level, "link %d: %s(%s) -> %r%s", self.link_id, op, masked(args), value,
                    f" ({clip(detail, 300)})" if detail else "")
        return value

    def _deliver(self, outcome: Outcome) -> int | str:
        """What the core's outcome owes Protheus goes out; the value is the SOAP answer."""
        if outcome.notes:
            self.delivery.submit(outcome.notes)
        if outcome.resync:
            self._in_background(self._resync(outcome.resync, agent=False))
        return outcome.value

    async def ask(self, request: Request) -> Any:
        """One request to the PABX, never longer than the link's timeout (then PabxUnavailable, code 24)."""
        try:
            if self.driver.bounds_requests and self.driver.common.timeout <= self.timeout:
                return await self.driver.execute(request)
            async with asyncio.timeout(self.timeout):
                return await self.driver.execute(request)
        except TimeoutError:
            raise PabxUnavailable(Result.INTERNAL_ERROR,
                                  f"no answer from the PABX within {self.timeout:g} s") from None

    def _in_background(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --------------------------------------------------------------- events
    def on_event(self, event: PabxEvent) -> None:
        """A PABX event: update the model, queue what Protheus must hear."""
        if self._queue_event(event):         # a queue's report: statistics only, never Protheus
            return
        following = self.protocols is not None and isinstance(event, CallEvent)
        before = self.switch.calls.get(event.call_id) if following else None
        notes = self.engine.pabx_event(event)
        if notes:
            self.delivery.submit(notes)
        if following:
            self._follow_protocol(event, self.switch.calls.get(event.call_id) or before)
        if isinstance(event, AgentEvent) and self.registry is not None:
            self._persist(event.device)
        elif self.registry is not None:
            self._calls_dirty.add(event.device)
            if event.other_device in self.switch.devices:
                self._calls_dirty.add(event.other_device)
        self._core_steps()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("link %d: event %s -> %s", self.link_id, event, [n.name for n in notes])

    async def _keep_calls_saved(self, every: float = 1.0) -> None:
        """The calls of the devices whose calls changed, to the registry once a second in one transaction:
        after a kill -9 the resync clears those the PABX no longer has (a CONNECTIONCLEARED the dead
        process owed). A call that begins and ends within the second costs no write."""
        while True:
            await asyncio.sleep(every)
            self._save_calls()

    def _save_calls(self) -> None:
        if self.registry is None or not self._calls_dirty:
            return
        devices, self._calls_dirty = self._calls_dirty, set()
        try:
            self.registry.save_calls(self.link_id, self.switch, devices)
        except Exception:  # noqa: BLE001 - a full disk must not stop the telephony
            log.exception("link %d: could not store the calls of %d device(s) in the registry %s", self.link_id,
                          len(devices), self.registry.path)

    def _agent_again(self, device: str, url: str, cdevice: str) -> None:
        """An agent event for this session went stale while Protheus was away: its current state, again."""
        notes = [Notification(n.name, n.device, n.cdevice, n.values, (url,)) for n in self.engine.agent_now(device)
                 if n.cdevice == cdevice and url in n.urls]
        if notes:
            log.info("link %d: %s's agent state (%s) sent again to %s: the event that told it went stale",
                     self.link_id, device, notes[0].name, url)
            self.delivery.submit(notes)

    # ------------------------------------------- what the core does by itself
    def _core_steps(self) -> None:
        """Perform, in the background, what the core asks by itself now (a wrap-up that starts or ends)."""
        steps = self.engine.steps()
        for step in steps:
            self._in_background(self._perform(step))
        if steps and self._core_wake is not None:
            self._core_wake.set()          # a new deadline, maybe earlier than the one waited for

    async def _perform(self, step: Step) -> None:
        request = step.request
        try:
            outcome = self.engine.complete(step, await self.ask(request))
        except PabxError as e:
            outcome = self.engine.fail(step, e)
            log.warning("link %d: %s of %s for the wrap-up refused by the PABX (%s); %s", self.link_id,
                        getattr(request, "state", request), request.device, e.detail or e.code.name,
                        "tried again in a few seconds" if getattr(request, "state", None) is AgentState.READY
                        else "no wrap-up after this call")
        else:
            if self.trace.on:
                self.trace(request.device, f"WRAP-UP {getattr(request, 'state', request)} -> {outcome.value!r}")
        self._deliver(outcome)
        self._persist(request.device)
        if self._core_wake is not None:
            self._core_wake.set()

    async def _keep_core_time(self) -> None:
        """Sleep until the core's next deadline (engine.next_deadline), then perform what is due."""
        while True:
            try:
                deadline = self.engine.next_deadline()
                wait = None if deadline is None else max(0.0, deadline - self.switch.clock())
                self._core_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._core_wake.wait(), wait)
                self._core_steps()
                self._core_wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the clock must outlive any surprise
                log.exception("link %d: wrap-up timer error; going on", self.link_id)
                await asyncio.sleep(1)

    # ------------------------------------------------------- ANS protocols
    def _protocol_of(self, device: str, call_id: str, ani: str, dnis: str) -> str:
        """A call that pops a screen rings with no ANS protocol on it: the one issued for it (by the IVR,
        the API), or a new one when ``protocol.issue_at_ringing`` (a Dígitro site, a call that skipped the IVR)."""
        number = self.protocols.for_call(call_id)
        if not number and self.protocols.cfg.issue_at_ringing:
            number = self.protocols.issue_now("phone", call_id=call_id, ani=ani, dnis=dnis, link_id=self.link_id,
                                              device=device)
            if number:      # on the call at the PABX too, where it can carry it (CDR, a later transfer)
                self._in_background(self._attach(device, call_id, number))
        return number

    async def _attach(self, device: str, call_id: str, number: str) -> None:
        try:
            await self.ask(AttachCallData(device, call_id, PROTOCOL_VARIABLE, number))
        except PabxError as e:
            log.debug("link %d: protocol %s not attached to call %s at the PABX (%s)", self.link_id, number,
                      call_id, e.detail)

    def _follow_protocol(self, event: CallEvent, call) -> None:
        """The record follows its call: where it rang, who answered, when it ended; the extension's log
        names the number."""
        t = event.type
        number = event.protocol or (call.protocol if call is not None else "")
        if not number and t in (CallEventType.ESTABLISHED, CallEventType.CONNECTION_CLEARED):
            # issued after the call rang (the API asked with its CALLID): from now on it travels with it
            number = self.protocols.for_call(event.call_id)
            if number and call is not None:
                call.protocol = number
        if not number:
            return
        status = {CallEventType.DELIVERED: "ringing", CallEventType.ESTABLISHED: "answered",
                  CallEventType.TRANSFERRED: "answered"}.get(t, "")
        if t is CallEventType.CONNECTION_CLEARED and event.call_id not in self.switch.calls:
            status = "ended"
        if not status:
            return
        dev = self.switch.device(event.device)
        agent = dev.agent.agent_id if dev is not None and dev.agent is not None and status == "answered" else ""
        self.protocols.call_seen(number, event.call_id, self.link_id, status=status,
                                 device=event.device if status != "ended" else "", agent=agent)
        if status == "ringing" and self.trace.on:
            self.trace(event.device, f"PROTOCOLO ANS {number} (call {event.call_id})")

    def event_urls(self) -> list[str]:
        """Every distinct Protheus eventing URL of the devices in service."""
        return list(dict.fromkeys(u for d in self.switch.devices.values() for u in d.event_urls))

    def _release(self, device: str, url: str, cdevice: str) -> None:
        """Protheus answered 99 too many times in a row for the session (``url``, ``cdevice``) of
        ``device``: stop serving it; once no session is left, release the device as an AgentOutOfService
        would."""
        dev = self.switch.device(device)
        if dev is None or (url, cdevice) not in dev.sessions:
            return
        del dev.sessions[(url, cdevice)]
        if not dev.sessions:
            self.engine.release(device)
            self.delivery.forget(device)
            if dev.monitored:
                self._in_background(self._stop_monitor(device))
        if self.registry is not None:
            self._persist(device)

    async def _stop_monitor(self, device: str) -> None:
        async with self._device_turn(device):
            if self.switch.is_in_service(device):
                return          # taken again meanwhile
            try:
                await self.ask(MonitorStop(device))
            except PabxError as e:
                log.info("link %d: could not stop monitoring %s at the PABX (%s)", self.link_id, device, e.detail)

    async def _check_restored_urls(self) -> None:
        """Restored eventing URLs that the site's eventing_allow no longer allows are dropped."""
        for dev in list(self.switch.devices.values()):
            for url, spelling in list(dev.sessions):
                problem = await self.eventing_check(url)
                if problem:
                    log.warning("link %d: %s no longer sends events to %s (%s)", self.link_id, dev.name,
                                url, problem)
                    del dev.sessions[(url, spelling)]
            if not dev.sessions:
                self.engine.release(dev.name)
            self._persist(dev.name)

    def _persist(self, device: str) -> None:
        """Store what must survive a restart, when it changed: who holds the device in service, where its
        events go, who is logged on it with which groups. Ready/paused is read back by the resync after a
        restart, so an agent toggling it (from Protheus or on the phone) costs no disk write. A device
        released by Protheus is forgotten."""
        if self.registry is None:
            return
        dev = self.switch.device(device)
        agent = dev.agent if dev is not None else None
        key = None if dev is None else (
            tuple(dev.sessions), dev.wire_name, dev.in_service, dev.monitored,
            (agent.agent_id, agent.groups, agent.state is AgentState.LOGGED_OFF) if agent else None,
            dev.wrap_up_until)
        if self._saved.get(device) == key:
            return
        try:
            if dev is None:
                self.registry.forget(self.link_id, device)
                self._saved.pop(device, None)
            else:
                # a wrap-up's end, in wall-clock time: it must outlive this process
                wrap_up_at = time.time() + (dev.wrap_up_until - self.switch.clock()) if dev.wrap_up_until else None
                self.registry.save(self.link_id, dev, wrap_up_at)
                self._saved[device] = key
        except Exception:  # noqa: BLE001 - a full disk must not stop the telephony
            log.exception("link %d: could not store %s in the registry %s; a restart would forget it",
                          self.link_id, device, self.registry.path)

    # ----------------------------------------------------------- link health
    def _unavailable(self, op: str, reason: str) -> None:
        """A command could not reach the PABX. A poll (queryAgentState, every few seconds from every
        listener) does not judge the link: it has the link's own keep-alive run now, which does."""
        if op in QUIET_OPERATIONS:
            if self._wake is not None:
                self._wake.set()
        else:
            self._down(reason)

    def _down(self, reason: str) -> None:
        if self.health.failed(reason):
            log.warning("link %d: PABX link down (%s); commands fail fast with 22 until it is back. "
                        "Protheus is told after %g s.", self.link_id, reason, self.health.grace)
            if self._wake is not None:
                self._wake.set()

    async def _supervise(self) -> None:
        while True:
            try:
                if self.health.up:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=self.ho.keepalive)
                    except TimeoutError:
                        pass
                    self._wake.clear()
                    if self.health.up:
                        await self._keepalive()
                    if self.health.up:
                        await self._monitor_pending()
                    if self.health.up:
                        await self._check_quiet_calls()
                else:
                    await asyncio.sleep(self.health.next_retry())
                    await self._reconnect()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the supervisor must outlive any surprise
                log.exception("link %d: supervisor error; going on", self.link_id)
                await asyncio.sleep(1)

    async def _keepalive(self) -> None:
        try:
            async with asyncio.timeout(self.ho.keepalive_timeout):
                registered = await self.driver.keepalive()
        except TimeoutError:
            self._down(f"keep-alive not answered within {self.ho.keepalive_timeout:g} s")
            return
        except PabxUnavailable as e:
            self._down(e.detail)
            return
        except PabxError as e:   # it answered, with a refusal: alive
            log.warning("link %d: keep-alive refused: %s", self.link_id, e.detail)
            self.health.ok()
            return
        self.health.ok()
        if not registered:
            log.warning("link %d: the PABX no longer knows our event listener (it restarted?); registering again",
                        self.link_id)
            await self._reconnect()

    async def _reconnect(self) -> bool:
        """Register the listener and monitors again, then resync every device in service."""
        devices = sorted(self.switch.devices)
        started = time.monotonic()
        try:
            refused = await self.driver.reconnect(devices)
        except PabxError as e:
            self._down(e.detail)
            if not isinstance(e, PabxUnavailable):
                log.warning("link %d: reconnect refused: %s", self.link_id, e.detail)
            return False
        was_down = not self.health.up
        down_for = time.monotonic() - self.health.down_since if self.health.down_since else 0.0
        self.health.ok()
        if was_down:
            log.info("link %d: PABX link back after %.1f s; resyncing %d device(s)", self.link_id, down_for,
                     len(devices))
        for name in refused:
            self._refused_at_monitor(name)
        self._monitored([d for d in devices if d not in refused])
        notes = await self._resync([d for d in devices if d not in refused])
        await self._monitor_pending()
        self.resyncs += 1
        self.last_resync_seconds = time.monotonic() - started
        log.info("link %d: resync done in %.2f s, %d event(s) sent to Protheus to catch up", self.link_id,
                 self.last_resync_seconds, notes)
        return True

    def _monitored(self, names: list[str]) -> None:
        """The PABX monitors these now: INSERVICE to the sessions that waited for it."""
        for name in names:
            notes = self.engine.monitored(name)
            if notes:
                self.delivery.submit(notes)
                log.info("link %d: %s monitored now that the PABX answers; INSERVICE sent to its Protheus "
                         "session(s)", self.link_id, name)
                self._persist(name)

    def _refused_at_monitor(self, name: str) -> None:
        dev = self.switch.device(name)
        if dev is None:
            return
        if not dev.monitored:
            log.warning("link %d: the PABX refused to monitor %s, which Protheus put in service while the "
                        "PABX was away; its call listener gets no events. Check the extension in Protheus "
                        "(it must exist at the PABX), then have the user open the station again",
                        self.link_id, name)
        self.engine.release(name)
        self.delivery.forget(name)
        self._persist(name)

    async def _monitor_pending(self) -> None:
        """Devices put in service while a reconnect was under way: monitor them now."""
        for name in [d.name for d in self.switch.devices.values() if not d.monitored]:
            try:
                await self.ask(MonitorStart(name))
            except PabxUnavailable as e:
                self._down(e.detail)
                return
            except PabxError:
                self._refused_at_monitor(name)
                continue
            self._monitored([name])

    async def _resync(self, devices: list[str], agent: bool = True) -> int:
        """Each device's agent and calls read again from the PABX and told to Protheus where they changed:
        ``pabx.concurrency`` devices at a time, those with an agent logged on first (their state is what
        the floor sees). Returns how many events it sent."""
        sent = 0

        def with_agent_first(name: str) -> int:
            dev = self.switch.device(name)
            return 0 if dev is not None and dev.agent is not None and dev.agent.state is not AgentState.LOGGED_OFF else 1

        async def one(name: str) -> None:
            nonlocal sent
            try:
                info = await self.ask(QueryAgentState(name)) if agent else None
                calls = await self.ask(SnapshotDevice(name))
            except PabxUnavailable:
                raise
            except PabxError as e:
                log.warning("link %d: cannot resync %s: %s", self.link_id, name, e.detail)
                return
            notes = self.engine.resync(name, info, calls)
            self._calls_dirty.add(name)
            if notes:
                sent += len(notes)
                self.delivery.submit(notes)
                if self.registry is not None:
                    self._persist(name)
        try:
            await bounded(sorted(devices, key=with_agent_first), one, self.driver.concurrency)
        except PabxUnavailable as e:
            self._down(e.detail)
        return sent

    async def _check_quiet_calls(self) -> None:
        """Calls the PABX has said nothing about for a while: ask it; close those that are gone."""
        devices = self.switch.quiet_devices(self.ho.quiet_call)
        if not devices:
            return
        before = len(self.switch.calls)
        await self._resync(devices, agent=False)
        closed = max(0, before - len(self.switch.calls))
        if closed:
            self.quiet_calls_closed += closed
            log.warning("link %d: %d call(s) ended without the PABX saying so; closed after checking",
                        self.link_id, closed)

    # ---- queues and supervision
    def _init_queues(self) -> None:
        """The queue statistics the supervisor's board and /metrics read (``self.queues``), "today" in the
        site's zone (the ANS protocol's, when configured)."""
        zone = self.protocols.cfg.timezone if self.protocols is not None else DEFAULT_TIMEZONE
        self.queues = QueueStats(zone=zone)
        self.queue_poll = QUEUE_POLL            # s between polls of a switch without queue events; 0: none
        self.queue_poller = PolledQueues(grace=ABANDON_GRACE)
        self._reached: dict[str, None] = {}    # call ids agents got lately (DELIVERED, ESTABLISHED...), oldest first

    def _queue_event(self, event: Any) -> bool:
        """True when ``event`` was a queue's, taken here; a call reaching an agent is noted for the polls."""
        if isinstance(event, QueueEvent):
            self.queues.on_event(event)
            return True
        if isinstance(event, CallEvent) and event.type in REACHED_EVENTS and not self.driver.reports_queues:
            self._reached.pop(event.call_id, None)
            self._reached[event.call_id] = None
            while len(self._reached) > MAX_REACHED:
                del self._reached[next(iter(self._reached))]
        return False

    def _start_queues(self) -> None:
        if not self.driver.reports_queues and self.queue_poll > 0:     # 0: no polls (capture replay)
            self._in_background(self._poll_queues())

    async def _poll_queues(self) -> None:
        """A switch without queue events (Dígitro): the waiting lists of the logged-on agents' groups,
        every ``queue_poll`` s while the link is up, diffed into queue events (core.queues.PolledQueues)."""
        while True:
            await asyncio.sleep(max(0.0, self.queue_poll))
            if self.queue_poll <= 0:
                return                       # switched off meanwhile (capture/replay.py does)
            try:
                if self.health.up and not await self._poll_queues_once():
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - statistics must never stop the link
                log.exception("link %d: queue poll error; going on", self.link_id)

    async def _poll_queues_once(self) -> bool:
        """One round; False when the switch cannot list a group's calls at all (no statistics then)."""
        groups = sorted({g for d in self.switch.devices.values() if d.agent is not None
                         and d.agent.state is not AgentState.LOGGED_OFF for g in d.agent.groups if g})[:MAX_POLLED]
        for ev in self.queue_poller.keep_only(set(groups)):
            self.queues.on_event(ev)
        for group in groups:
            try:
                calls = await self.ask(QueryGroupCalls(group))
            except PabxUnavailable:
                return True                  # the keep-alive judges the link; polled again once it is up
            except PabxError as e:
                if e.code is Result.NOT_SUPPORTED_FEATURE:
                    log.info("link %d: the PABX cannot list a group's calls (%s): no queue statistics",
                             self.link_id, e.detail)
                    return False
                log.debug("link %d: calls of group %s not listed: %s", self.link_id, group, e.detail)
                continue
            if isinstance(calls, list):
                for ev in self.queue_poller.poll(group, calls, self._reached_calls(), time.time()):
                    self.queues.on_event(ev)
        return True

    def _reached_calls(self) -> set[str]:
        """Call ids at an agent: told by an event lately, or in the model with a device ringing or talking."""
        reached = set(self._reached)
        for call_id, call in self.switch.calls.items():
            if any(state in AT_AGENT and party in self.switch.devices for party, state in call.connections.items()):
                reached.add(call_id)
        return reached

    @property
    def spy_supported(self) -> bool:
        """Whether ``spy`` can work here (the board shows its buttons); elsewhere it answers 21."""
        return self.driver.spy_supported

    async def spy(self, supervisor_device: str, target_device: str, mode: str) -> int:
        """The supervisor at ``supervisor_device`` listens to, whispers to or barges into the call of
        ``target_device``; the supervisor's phone rings first. A SmartCTI code: 0 asked, 3 no call there
        (or no such mode), 18 no such device, 21 the PABX cannot, 22/24 it is not answering."""
        supervisor, target = supervisor_device.strip(), target_device.strip()
        if mode not in SPY_MODES:
            return int(Result.INVALID_OPTION)
        if not supervisor or not target or supervisor == target or max(len(supervisor), len(target)) > 64:
            return int(Result.INVALID_DEVICE)
        try:
            await self.ask(Spy(supervisor, target, mode))
        except PabxError as e:
            log.info("link %d: supervisor at %s could not %s %s: %s", self.link_id, supervisor, mode, target,
                     e.detail or e.code.name)
            return int(e.code)
        log.info("link %d: supervisor at %s: %s on %s", self.link_id, supervisor, mode, target)   # an audit line
        for device in (supervisor, target):
            if self.trace.on:
                self.trace(device, f"SUPERVISOR {supervisor} {mode} {target}")
        return 0


QUEUE_POLL = 2.0            # s between two polls of the groups' calls (Dígitro)
ABANDON_GRACE = 5.0         # s a call gone from the waiting list has to show up at an agent, else abandoned
MAX_POLLED = 200            # groups polled per round
MAX_REACHED = 10_000        # call ids kept as "an agent got it"
REACHED_EVENTS = frozenset({CallEventType.DELIVERED, CallEventType.ESTABLISHED, CallEventType.TRANSFERRED})
AT_AGENT = frozenset({ConnectionState.ALERTING, ConnectionState.CONNECTED, ConnectionState.HELD})
