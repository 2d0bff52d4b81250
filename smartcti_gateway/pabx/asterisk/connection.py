"""One AMI session over TCP: login, actions answered by ActionID, list actions, events to a callback.

The framing is ``ami.py``'s; this module only moves bytes. Every action waits at most ``timeout``;
when the connection breaks, every waiting action fails at once with PabxUnavailable and ``on_lost``
is called, so the link's health sees it at the first request, not after a timeout.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Callable

from ...core.codes import Result
from ...core.pabx import PabxError, PabxUnavailable
from .ami import AmiProtocolError, Message, Parser, action

log = logging.getLogger(__name__)

# the event classes the gateway reads (Login's Events): calls, and queues with their members
EVENT_CLASSES = "call,agent"


def event_filter(events: list[str]) -> str:
    """A ``Filter`` regex (POSIX ERE, matched by Asterisk against the event's text, which begins with
    its ``Event:`` line) that lets only ``events`` through: the rest never leave Asterisk."""
    return "^Event: (" + "|".join(sorted(events)) + ")[[:space:]]"


class AmiConnection:
    def __init__(self, host: str, port: int, username: str, secret: str, *, timeout: float,
                 on_event: Callable[[Message], None], on_lost: Callable[[str], None] = lambda reason: None,
                 name: str = "asterisk", events: list[str] | None = None):
        self.host, self.port, self.username = host, port, username
        self._secret = secret
        self.timeout = timeout
        self.on_event = on_event
        self.on_lost = on_lost
        self.name = name
        self.events = events         # the only events wanted: a Filter after the login; None = all
        self.filtered = False        # Asterisk accepted the Filter
        self.version = ""            # AMI version of the banner
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future] = {}
        self._lists: dict[str, list[Message]] = {}
        self.events_received = 0
        self.rejected = 0

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    def where(self) -> str:
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Connect and log in; PabxUnavailable when Asterisk cannot be reached or refuses the login."""
        await self.close()
        try:
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=2 ** 20)
        except (OSError, TimeoutError) as e:
            raise PabxUnavailable(Result.OUT_OF_SERVICE, f"AMI {self.where()} unreachable ({e or 'timeout'})") from None
        parser = Parser()
        self._task = asyncio.get_running_loop().create_task(self._read(parser))
        reply = await self.send("Login", {"Username": self.username, "Secret": self._secret,
                                          "Events": EVENT_CLASSES})
        self.version = parser.version
        if not reply.ok:
            await self.close()
            raise PabxUnavailable(Result.OUT_OF_SERVICE,
                                  f"AMI {self.where()} refused the login of user {self.username!r} "
                                  f"({reply.get('Message') or 'no reason given'}): check username and secret, and "
                                  f"that manager.conf permits this address")
        if self.events:
            await self._filter()

    async def _filter(self) -> None:
        reply = await self.send("Filter", {"Operation": "Add", "Filter": event_filter(self.events)})
        self.filtered = reply.ok
        if not reply.ok:      # Login's Events still narrows what comes to the classes
            log.info("%s: Asterisk refused the AMI event filter (%s); every event of the classes %s will be read",
                     self.name, reply.get("Message") or "no reason given", EVENT_CLASSES)

    async def close(self, goodbye: bool = False) -> None:
        if goodbye and self.connected:
            try:
                await self.send("Logoff", {}, timeout=min(self.timeout, 2.0))
            except PabxError:
                pass
        task, self._task = self._task, None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing
                pass
        self._fail_waiting("the AMI connection was closed")

    # ------------------------------------------------------------- actions
    async def send(self, name: str, fields: dict[str, str] | list[tuple[str, str]],
                   timeout: float | None = None) -> Message:
        """One action; its response (``Response: Success`` or ``Error``)."""
        if not self.connected:
            raise PabxUnavailable(Result.OUT_OF_SERVICE, f"AMI {self.where()} not connected")
        action_id = f"sc{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._waiting[action_id] = future
        try:
            self._writer.write(action(name, action_id, fields))
            async with asyncio.timeout(timeout or self.timeout):
                return await future
        except TimeoutError:
            raise PabxUnavailable(Result.INTERNAL_ERROR,
                                  f"AMI {name}: no answer from {self.where()} within {timeout or self.timeout:g} s") from None
        except (ConnectionError, RuntimeError) as e:
            raise PabxUnavailable(Result.OUT_OF_SERVICE, f"AMI {name}: {self.where()} unreachable ({e})") from None
        finally:
            self._waiting.pop(action_id, None)

    async def list(self, name: str, fields: dict[str, str] | None = None,
                   timeout: float | None = None) -> tuple[Message, list[Message]]:
        """A list action: its response and the events it sent, up to its ``EventList: Complete``."""
        if not self.connected:
            raise PabxUnavailable(Result.OUT_OF_SERVICE, f"AMI {self.where()} not connected")
        action_id = f"sc{next(self._ids)}"
        loop = asyncio.get_running_loop()
        response, complete = loop.create_future(), loop.create_future()
        self._waiting[action_id] = response
        self._waiting[action_id + "/"] = complete
        self._lists[action_id] = []
        try:
            self._writer.write(action(name, action_id, fields or {}))
            async with asyncio.timeout(timeout or self.timeout):
                reply = await response
                if not reply.ok:
                    return reply, []
                await complete
            return reply, self._lists[action_id]
        except TimeoutError:
            raise PabxUnavailable(Result.INTERNAL_ERROR,
                                  f"AMI {name}: no complete answer from {self.where()} within "
                                  f"{timeout or self.timeout:g} s") from None
        except (ConnectionError, RuntimeError) as e:
            raise PabxUnavailable(Result.OUT_OF_SERVICE, f"AMI {name}: {self.where()} unreachable ({e})") from None
        finally:
            self._waiting.pop(action_id, None)
            self._waiting.pop(action_id + "/", None)
            self._lists.pop(action_id, None)

    # --------------------------------------------------------------- reading
    async def _read(self, parser: Parser) -> None:
        reason = "Asterisk closed the AMI connection"
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for message in parser.feed(data):
                    self._dispatch(message)
        except AmiProtocolError as e:
            self.rejected += 1
            reason = f"Asterisk sent what is not AMI ({e}); reconnecting"
            log.warning("%s: %s", self.name, reason)
        except (ConnectionError, OSError) as e:
            reason = f"the AMI connection broke ({e})"
        except asyncio.CancelledError:
            raise
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self._fail_waiting(reason)
        self.on_lost(reason)

    def _dispatch(self, m: Message) -> None:
        action_id = m.action_id
        if action_id and action_id in self._lists and not m.is_response:
            if m.get("EventList").lower() == "complete":
                done = self._waiting.get(action_id + "/")
                if done is not None and not done.done():
                    done.set_result(m)
            else:
                self._lists[action_id].append(m)
            return
        if m.is_response and action_id:
            future = self._waiting.get(action_id)
            if future is not None and not future.done():
                future.set_result(m)
            return
        if m.event:
            self.events_received += 1
            try:
                self.on_event(m)
            except Exception:  # noqa: BLE001 - one bad event must not stop the stream
                self.rejected += 1
                log.exception("%s: AMI event %s not understood", self.name, m.event)

    def _fail_waiting(self, reason: str) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(PabxUnavailable(Result.OUT_OF_SERVICE, reason))
        self._waiting.clear()
