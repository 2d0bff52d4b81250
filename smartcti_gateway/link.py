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
    def __init__(self, link_id: int, name: str, driver: Driver, *, timeout: float, version: str):
        self.link_id = link_id
        self.name = name
        self.driver = driver
        self.timeout = timeout
        self.switch = Switch()
        self.commands = Commands(self.switch, version)

    async def start(self) -> None:
        await self.driver.start(self.on_event)

    async def close(self) -> None:
        await self.driver.close()

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
        level = logging.DEBUG if op in QUIET_OPERATIONS and not detail else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "link %d: %s(%s) -> %r%s", self.link_id, op, masked(args), value,
                    f" ({detail})" if detail else "")
        return value

    def on_event(self, event: PabxEvent) -> None:
        dev = self.switch.apply(event)
        if dev is not None:
            log.debug("link %d: event %s", self.link_id, event)
