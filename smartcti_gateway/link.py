"""One SmartCTI link: a LinkID, its command service, its PABX driver and its model.

This is where a SOAP operation meets the PABX: the core plans the command,
the driver performs the request within the link's timeout, the core turns
the outcome into the value Protheus reads.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from .core.codes import Result
from .core.commands import Commands
from .core.model import Switch
from .core.operations import SECRET_PARAMS
from .core.pabx import PabxError, PabxEvent, PabxUnavailable, Request
from .extlog import NO_TRACE, Trace
from .protheus.delivery import DeliveryOptions, EventDelivery
from .protheus.eventing import EventingClient

log = logging.getLogger("smartcti_gateway.link")

# Polled every MV_TMKTIME ms by every listener: logged at debug level only.
QUIET_OPERATIONS = frozenset({"SystemStatus", "queryAgentState"})


class Driver(Protocol):
    async def start(self, on_event: Any) -> None: ...
    async def close(self) -> None: ...
    async def execute(self, request: Request) -> Any: ...


def masked(args: dict[str, str]) -> str:
    return ", ".join(f"{k}={'***' if k in SECRET_PARAMS and v else repr(v)}" for k, v in args.items())


class Link:
    def __init__(self, link_id: int, name: str, driver: Driver, *, timeout: float, version: str,
                 eventing: EventingClient | None = None, delivery: DeliveryOptions | None = None):
        self.link_id = link_id
        self.name = name
        self.driver = driver
        self.timeout = timeout
        self.switch = Switch()
        self.commands = Commands(self.switch, version)
        self.eventing = eventing or EventingClient()
        self.delivery = EventDelivery(link_id, self.eventing, delivery, on_release=self._release)
        self.trace: Trace = NO_TRACE

    def set_trace(self, trace: Trace) -> None:
        """Where per-extension lines go: commands here, PABX traffic in the driver, events in delivery."""
        self.trace = trace
        self.delivery.trace = trace
        if hasattr(self.driver, "trace"):
            self.driver.trace = trace

    async def start(self) -> None:
        await self.eventing.start()
        await self.driver.start(self.on_event)

    async def close(self, drain: float = 5.0) -> None:
        await self.driver.close()
        await self.delivery.close(drain)
        await self.eventing.close()

    async def handle(self, op: str, args: dict[str, str]) -> int | str:
        """The SOAP operation ``op``: never raises for a PABX problem, never waits past the timeout."""
        step = self.commands.plan(op, args)
        detail = ""
        if step.request is None:
            value = step.done(None)
        else:
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await self.driver.execute(step.request)
            except TimeoutError:
                error: PabxError = PabxUnavailable(
                    Result.INTERNAL_ERROR, f"no answer from the PABX within {self.timeout:g} s")
                detail = error.detail
                value = step.failed(error)
            except PabxError as e:
                detail = e.detail
                value = step.failed(e)
            else:
                value = step.done(reply)
        if self.commands.outbox:
            self.delivery.submit(self.commands.outbox)
            self.commands.outbox = []
        device = args.get("device") or args.get("cDevice") or ""
        if device and self.trace.on:
            self.trace(device.strip(), f"CMD {op}({masked(args)}) -> {value!r}{f' ({detail})' if detail else ''}")
        level = logging.DEBUG if op in QUIET_OPERATIONS and not detail else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "link %d: %s(%s) -> %r%s", self.link_id, op, masked(args), value,
                    f" ({detail})" if detail else "")
        return value

    def on_event(self, event: PabxEvent) -> None:
        """A PABX event: update the model, queue what Protheus must hear."""
        notes = self.commands.notifier.on_pabx_event(event)
        if notes:
            self.delivery.submit(notes)
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
