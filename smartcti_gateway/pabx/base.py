"""The contract between a link and its PABX driver: everything the rest of the gateway may use of one.

A driver turns the core's neutral requests (``core.pabx``) into its switch's protocol and the
switch's reports into neutral events. The link drives it:

* lifecycle: ``start(on_event, on_lost)`` once (no network contact yet: the link's first
  ``reconnect`` is the first contact), ``close()`` at the end; a driver that holds a connection
  calls ``on_lost(reason)`` the moment it breaks, so the link reconnects without waiting for its
  next keep-alive;
* ``execute(request)``: perform one request, return its reply or raise ``PabxError`` carrying a
  SmartCTI code (``PabxUnavailable`` when the switch could not be asked at all); the link bounds it
  with its timeout;
* link health: ``keepalive()`` every ``pabx.keepalive`` seconds (False: the switch no longer knows
  us, register again), ``reconnect(devices)`` after an outage and at start (listener and monitors;
  returns the devices the switch refused); the resync that follows uses ``execute``;
* what the operator sees: ``target`` (what it talks to, without passwords), ``describe()`` (the
  start-up line), ``events_received`` / ``events_rejected`` (metrics and the status page);
* inbound HTTP: ``routes()`` the endpoints the switch posts to (Dígitro's XML-RPC callback; none for
  a switch the driver reads from a socket it opened, as AMI), guarded by ``pabx.allow`` or, by
  default, by the addresses of ``peer_host``; ``listening()`` tells it where the link's listener is;
* ``trace``: per-extension log lines (passwords masked before it is called).

Nothing outside ``pabx/`` touches any other attribute of a driver.
"""
from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from ..core.pabx import PabxError, PabxEvent, PabxUnavailable, Request
from ..extlog import NO_TRACE, Trace

log = logging.getLogger(__name__)

EventSink = Callable[[PabxEvent], None]
LostSink = Callable[[str], None]


def _nobody(reason: str) -> None:
    pass


@dataclass(frozen=True)
class Route:
    """An HTTP endpoint a driver needs on the link's listener (the switch posts its events there)."""

    method: str
    path: str
    handler: Callable[[Any], Awaitable[Any]]    # aiohttp handler: request -> response


@dataclass(frozen=True)
class Common:
    """The options every link's PABX section has, whatever the driver, as a driver receives them."""

    link_id: int
    name: str                 # "link 1": labels its log lines
    timeout: float            # no request waits longer
    body_timeout: float       # seconds for the switch to send a posted body (inbound routes)


class Driver(ABC):
    """One switch for one link."""

    events_received = 0      # PABX events taken in (a driver counts them, or reads them from its connection)
    concurrency = 16         # requests in flight while the switch is caught up (links[].pabx.concurrency)
    events_rejected = 0      # PABX reports refused as unreadable or unknown
    # the switch reports its queues' callers itself (QueueEvent); otherwise the link polls QueryGroupCalls
    reports_queues = False
    spy_supported = False      # a supervisor can listen to, whisper to and barge into calls (the Spy request)
    # every execute() answers or fails within common.timeout by itself (its round trip runs under that
    # deadline): the link arms no timer of its own for it, one less per command
    bounds_requests = False

    def __init__(self, common: Common):
        self.common = common
        self.name = common.name
        self.trace: Trace = NO_TRACE

    # ------------------------------------------------------------ lifecycle
    async def start(self, on_event: EventSink, on_lost: LostSink = _nobody) -> None:
        """Get ready; events go to ``on_event``, a broken connection to ``on_lost``. No contact yet."""

    async def close(self) -> None:
        """Say goodbye to the switch when that is polite, and free what was opened."""

    # ------------------------------------------------------------- requests
    @abstractmethod
    async def execute(self, request: Request) -> Any:
        """Perform ``request``; its reply, or PabxError with a SmartCTI code."""

    # ---------------------------------------------------------- link health
    @abstractmethod
    async def keepalive(self) -> bool:
        """Is the switch there and does it still know us? False: it must be registered with again.
        Raises PabxUnavailable when the switch cannot be reached."""

    @abstractmethod
    async def reconnect(self, devices: list[str]) -> list[str]:
        """Register again (listener, login) and monitor ``devices``; returns those the switch refused."""

    # --------------------------------------------------------- what is shown
    @property
    @abstractmethod
    def target(self) -> str:
        """What the driver talks to, fit for a log line or a page (no password)."""

    def describe(self) -> str:
        """One line for the start-up log."""
        return f"PABX {self.target}"

    # ---------------------------------------------------------- inbound HTTP
    def routes(self) -> list[Route]:
        """The endpoints the switch posts to, on the link's listener; none by default."""
        return []

    @property
    def peer_host(self) -> str:
        """The host the switch posts from, when ``pabx.allow`` does not say: its addresses are allowed."""
        return ""

    peer_key = ""          # the key of its pabx section that names peer_host, for messages ("url")
    peer_name = "PABX"     # what the operator calls the switch ("NGC")

    def listening(self, scheme: str, host: str, port: int) -> None:
        """The link's listener is bound at ``scheme://host:port`` (host as the listen setting has it)."""


async def bounded(items: list, work: Callable[[Any], Awaitable[None]], concurrency: int) -> None:
    """``work(item)`` for every item, in their order, at most ``concurrency`` at a time: a switch caught up
    after a restart without a storm it cannot take. The first PabxUnavailable stops the rest and is raised."""
    pending = iter(items)
    lost: list[PabxUnavailable] = []

    async def worker() -> None:
        for item in pending:          # one iterator shared by the workers: each item taken once
            if lost:
                return
            try:
                await work(item)
            except PabxUnavailable as e:
                lost.append(e)
                return

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(items))))))
    if lost:
        raise lost[0]


async def monitor_each(devices: list[str], start: Callable[[str], Awaitable[None]], refused_line: str,
                       concurrency: int = 1) -> list[str]:
    """``start`` each device (a reconnect's monitors), ``concurrency`` at a time; returns those the switch
    refused, each logged with ``refused_line % (device, detail)``. An unreachable switch stops it all
    (PabxUnavailable)."""
    refused = []

    async def one(device: str) -> None:
        try:
            await start(device)
        except PabxUnavailable:
            raise
        except PabxError as e:
            refused.append(device)
            log.warning(refused_line, device, e.detail)
    await bounded(devices, one, concurrency)
    return refused


@dataclass(frozen=True)
class DriverSpec:
    """What the registry knows of one driver: its options and how to build it."""

    name: str
    keys: frozenset[str]                                # its own keys in a link's pabx section
    parse: Callable[..., Any]                           # (reader, mapping, path, link_id) -> its options
    create: Callable[[Any, Common], Driver]             # (options, common) -> the driver
