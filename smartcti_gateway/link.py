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
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from .core.codes import Result
from .core.commands import Commands
from .core.health import LinkHealth
from .core.model import Switch
from .core.operations import SECRET_PARAMS
from .core.pabx import AgentEvent, AgentState, PabxError, PabxEvent, PabxUnavailable, QueryAgentState, Request, SnapshotDevice
from .extlog import NO_TRACE, Trace
from .metrics import Latency
from .protheus.delivery import DeliveryOptions, EventDelivery
from .protheus.eventing import EventingClient
from .registry import Registry

log = logging.getLogger("smartcti_gateway.link")

# Polled every MV_TMKTIME ms by every listener: logged at debug level only.
QUIET_OPERATIONS = frozenset({"SystemStatus", "queryAgentState"})
# Operations that change what must survive a restart (registry.py).
PERSISTED_OPERATIONS = frozenset({
    "AgentInService", "AgentOutOfService", "Logon", "LogonPass", "Logoff", "LogoffPass",
    "Ready", "ReadyPass", "NotReady", "NotReadyPass"})


class Driver(Protocol):
    url: str

    async def start(self, on_event: Any) -> None: ...
    async def close(self) -> None: ...
    async def execute(self, request: Request) -> Any: ...
    async def keepalive(self) -> bool: ...
    async def reconnect(self, devices: list[str]) -> list[str]: ...


@dataclass
class HealthOptions:
    keepalive: float = 10.0          # seconds between keep-alives
    keepalive_timeout: float = 10.0  # a keep-alive without answer by then is missed
    grace: float = 30.0              # down this long before SystemStatus / queryAgentState say so
    reconnect_max: float = 30.0      # backoff cap between reconnect attempts
    quiet_call: float = 300.0        # a call without news this long is checked against the PABX


def masked(args: dict[str, str]) -> str:
    return ", ".join(f"{k}={'***' if k in SECRET_PARAMS and v else repr(v)}" for k, v in args.items())


class Link:
    def __init__(self, link_id: int, name: str, driver: Driver, *, timeout: float, version: str,
                 eventing: EventingClient | None = None, delivery: DeliveryOptions | None = None,
                 health: HealthOptions | None = None, registry: Registry | None = None):
        self.link_id = link_id
        self.name = name
        self.driver = driver
        self.timeout = timeout
        self.switch = Switch()
        self.commands = Commands(self.switch, version)
        self.eventing = eventing or EventingClient()
        self.delivery = EventDelivery(link_id, self.eventing, delivery, on_release=self._release)
        self.trace: Trace = NO_TRACE
        self.ho = health or HealthOptions()
        self.health = LinkHealth(grace=self.ho.grace, backoff_max=self.ho.reconnect_max, clock=time.monotonic)
        self.commands.health = self.health
        self.registry = registry
        # restored now, before any listener serves: an event or command must find the devices
        self.restored = registry.restore(link_id, self.switch) if registry else []
        self.resyncs = 0
        self.last_resync_seconds = 0.0
        self.quiet_calls_closed = 0
        self.command_counts: Counter[tuple[str, str]] = Counter()   # (operation, result) -> n, for /metrics
        self.pabx_latency = Latency()
        self._saved: dict[str, tuple] = {}   # device -> what the registry last got of it
        self._wake: asyncio.Event | None = None
        self._supervisor: asyncio.Task | None = None

    def set_trace(self, trace: Trace) -> None:
        """Where per-extension lines go: commands here, PABX traffic in the driver, events in delivery."""
        self.trace = trace
        self.delivery.trace = trace
        if hasattr(self.driver, "trace"):
            self.driver.trace = trace

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._wake = asyncio.Event()
        await self.eventing.start()
        restored = self.restored
        await self.driver.start(self.on_event)
        if restored:
            log.info("link %d: %d device(s) restored from the registry (%d in service); "
                     "checking them against the PABX", self.link_id, len(restored),
                     sum(1 for d in restored if d.in_service))
            await self._reconnect()
        elif getattr(self.driver, "callback_url", "") and not getattr(self.driver, "channel", "x"):
            self._down("PABX unreachable at start")
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self, drain: float = 5.0) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        await self.driver.close()
        await self.delivery.close(drain)
        await self.eventing.close()

    # ------------------------------------------------------------- commands
    async def handle(self, op: str, args: dict[str, str]) -> int | str:
        """The SOAP operation ``op``: never raises for a PABX problem, never waits past the timeout."""
        step = self.commands.plan(op, args)
        detail = ""
        if step.request is None:
            value = step.done(None)
        else:
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await self.driver.execute(step.request)
            except TimeoutError:
                error: PabxError = PabxUnavailable(
                    Result.INTERNAL_ERROR, f"no answer from the PABX within {self.timeout:g} s")
                detail = error.detail
                self._down(detail)
                value = step.failed(error)
            except PabxError as e:
                detail = e.detail
                if isinstance(e, PabxUnavailable):
                    self._down(detail)
                value = step.failed(e)
            else:
                value = step.done(reply)
            self.pabx_latency.observe(time.monotonic() - started)
        self.command_counts[(op, str(value) if isinstance(value, int) else "text")] += 1
        if self.commands.outbox:
            self.delivery.submit(self.commands.outbox)
            self.commands.outbox = []
        device = (args.get("device") or args.get("cDevice") or "").strip()
        if self.registry is not None and op in PERSISTED_OPERATIONS and value == 0 and device:
            self._persist(device)
        if device and self.trace.on:
            self.trace(device, f"CMD {op}({masked(args)}) -> {value!r}{f' ({detail})' if detail else ''}")
        level = logging.DEBUG if op in QUIET_OPERATIONS and not detail else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "link %d: %s(%s) -> %r%s", self.link_id, op, masked(args), value,
                    f" ({detail})" if detail else "")
        return value

    # --------------------------------------------------------------- events
    def on_event(self, event: PabxEvent) -> None:
        """A PABX event: update the model, queue what Protheus must hear."""
        notes = self.commands.notifier.on_pabx_event(event)
        if notes:
            self.delivery.submit(notes)
        if isinstance(event, AgentEvent) and self.registry is not None:
            self._persist(event.device)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("link %d: event %s -> %s", self.link_id, event, [n.name for n in notes])

    def event_urls(self) -> list[str]:
        """Every distinct Protheus eventing URL of the devices in service."""
        return list(dict.fromkeys(u for d in self.switch.devices.values() for u in d.event_urls))

    def _release(self, device: str, url: str) -> None:
        """Protheus answered 99 too many times in a row for ``device`` at ``url``: stop serving it there."""
        dev = self.switch.device(device)
        if dev is not None and url in dev.event_urls:
            dev.event_urls.remove(url)
            if not dev.event_urls:
                dev.in_service = 0
            if self.registry is not None:
                self._persist(device)

    def _persist(self, device: str) -> None:
        """Store what must survive a restart, when it changed: who holds the device in service, where its
        events go, who is logged on it with which groups. Ready/paused is read back by the resync after a
        restart, so an agent toggling it (from Protheus or on the phone) costs no disk write."""
        dev = self.switch.device(device)
        if dev is None or self.registry is None:
            return
        agent = dev.agent
        key = (dev.wire_name, tuple(dev.event_urls), dev.in_service,
               (agent.agent_id, agent.groups, agent.state is AgentState.LOGGED_OFF) if agent else None)
        if self._saved.get(device) == key:
            return
        self._saved[device] = key
        try:
            self.registry.save(self.link_id, dev)
        except Exception:  # noqa: BLE001 - a full disk must not stop the telephony
            log.exception("link %d: could not store %s in the registry %s; a restart would forget it",
                          self.link_id, device, self.registry.path)

    # ----------------------------------------------------------- link health
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
        devices = sorted(d.name for d in self.switch.devices.values() if d.in_service > 0)
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
        notes = await self._resync([d for d in devices if d not in refused])
        self.resyncs += 1
        self.last_resync_seconds = time.monotonic() - started
        log.info("link %d: resync done in %.2f s, %d event(s) sent to Protheus to catch up", self.link_id,
                 self.last_resync_seconds, notes)
        return True

    async def _resync(self, devices: list[str], agent: bool = True) -> int:
        sent = 0
        for name in devices:
            try:
                info = await self.driver.execute(QueryAgentState(name)) if agent else None
                calls = await self.driver.execute(SnapshotDevice(name))
            except PabxUnavailable as e:
                self._down(e.detail)
                return sent
            except PabxError as e:
                log.warning("link %d: cannot resync %s: %s", self.link_id, name, e.detail)
                continue
            notes = self.commands.notifier.resync(name, info, calls)
            if notes:
                sent += len(notes)
                self.delivery.submit(notes)
                if self.registry is not None:
                    self._persist(name)
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
