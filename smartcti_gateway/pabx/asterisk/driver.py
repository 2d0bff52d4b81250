"""Asterisk over AMI: the core's neutral requests as AMI actions, AMI events (through the tracker) as
neutral events. docs/asterisk.md says what each SmartCTI operation does on Asterisk.

Hold, retrieve, consultation, alternate, transfer and conference are done on the server, so they
work with any phone: the held party waits in a context of the gateway's own (music on hold), the
agent's leg in another (silence) or dialling the consultation; ``Bridge`` joins two waiting parties,
``BridgeAdd`` a third to them (a conference). That dialplan is installed over AMI at every connect and removed at close: a
site adds nothing to its own.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from typing import Any, Callable

from ...core import pabx as p
from ...core.codes import Result
from ..base import Common, Driver, EventSink, LostSink, monitor_each
from .ami import Message
from .connection import AmiConnection
from .options import AsteriskOptions
from .tracker import LOGON_REASON, Chan, Member, Tracker

log = logging.getLogger(__name__)

HOLD, PARK, DIAL, JOIN = "smartcti-hold", "smartcti-park", "smartcti-dial", "smartcti-join"


def installed_dialplan(o: AsteriskOptions) -> list[tuple[str, str, int, str, str]]:
    """(context, extension, priority, application, data): what the gateway needs of its own."""
    return [
        # a party put on hold: music on hold until it is bridged back
        (HOLD, "s", 1, "Answer", ""),
        (HOLD, "s", 2, "MusicOnHold", o.music_class),
        (HOLD, "s", 3, "Wait", "86400"),
        # the agent's own leg while its call is held: silence until it is bridged back
        (PARK, "s", 1, "Wait", "86400"),
        # the agent's leg dialling a consultation, as the agent: back to silence when it ends
        (DIAL, "_[0-9*#+]!", 1, "Set", "CALLERID(all)=${SMARTCTI_DEVICE} <${SMARTCTI_DEVICE}>"),
        (DIAL, "_[0-9*#+]!", 2, "Dial", f"Local/${{EXTEN}}@{o.context},60,g"),
        (DIAL, "_[0-9*#+]!", 3, "Goto", f"{PARK},s,1"),
        # a third party joining the bridge of two (a conference): BridgeAdd needs no confbridge.conf
        (JOIN, "s", 1, "BridgeAdd", "${SMARTCTI_JOIN}"),
        (JOIN, "s", 2, "Hangup", ""),
    ]


_SAFE_FILE = re.compile(r"[^A-Za-z0-9._-]")
_DIALABLE = re.compile(r"^\+?[0-9*#]{1,40}$")
_SEPARATORS = re.compile(r"[\s().-]")


def dialable(number: str) -> str:
    """The number as an extension of the dialplan: digits, * and #, a leading +; the separators people
    type ((48) 3333-4444) dropped. Anything else is refused (2): a comma or an & in an extension would
    become Dial options or a second channel in the gateway's own Dial(Local/${EXTEN}@...)."""
    clean = _SEPARATORS.sub("", number)
    if not _DIALABLE.match(clean):
        raise p.PabxError(Result.INVALID_PHONE_NUMBER, f"{number!r} is not a number Asterisk can dial")
    return clean


class AsteriskDriver(Driver):
    peer_name = "Asterisk"
    reports_queues = True      # QueueCallerJoin, AgentConnect... (tracker.py)
    spy_supported = True       # ChanSpy (_spy)

    def __init__(self, o: AsteriskOptions, common: Common):
        super().__init__(common)
        self.o = o
        self._on_event: EventSink = lambda ev: None
        self._on_lost: LostSink = lambda reason: None
        self.tracker = Tracker(o.device_prefix, o.group_of, self._emit)
        self.tracker.divert = self._divert
        self.conn = AmiConnection(o.host, o.port, o.username, o.secret, timeout=common.timeout,
                                  on_event=self._ami_event, on_lost=self._lost, name=common.name,
                                  events=Tracker.events())
        self._changed = asyncio.Event()
        self._installed = False
        self._background: set[asyncio.Task] = set()
        self.lost_reason = ""

    @classmethod
    def from_options(cls, o: AsteriskOptions, common: Common) -> "AsteriskDriver":
        return cls(o, common)

    # ------------------------------------------------------ what is shown
    @property
    def target(self) -> str:
        return f"AMI {self.o.username}@{self.o.host}:{self.o.port}"

    def describe(self) -> str:
        return f"Asterisk {self.target} (devices {self.o.device_prefix}<device>, dialling in {self.o.context})"

    @property
    def events_received(self) -> int:
        return self.conn.events_received

    @property
    def events_rejected(self) -> int:
        return self.conn.rejected

    # ------------------------------------------------------------ lifecycle
    async def start(self, on_event: EventSink, on_lost: LostSink = lambda reason: None) -> None:
        self._on_event = on_event
        self._on_lost = on_lost

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self.conn.connected and self._installed:
            for context, exten, priority, _app, _data in installed_dialplan(self.o):
                try:
                    await self.conn.send("DialplanExtensionRemove",
                                         {"Context": context, "Extension": exten, "Priority": str(priority)})
                except p.PabxError:
                    break
        await self.conn.close(goodbye=True)

    def _connected(self) -> None:
        if not self.conn.connected:
            raise p.PabxUnavailable(Result.OUT_OF_SERVICE, self.lost_reason or f"AMI {self.conn.where()} not connected")

    def _lost(self, reason: str) -> None:
        """The AMI connection broke: the link is told at once (it logs the one line and reconnects)."""
        self.lost_reason = reason
        self._on_lost(reason)

    # ---------------------------------------------------------- link health
    async def keepalive(self) -> bool:
        """The keep-alive is the first line of the gateway's dialplan, added again without Replace: refused
        while it is there; accepted when a ``dialplan reload`` (which says nothing on AMI) wiped it, and
        then the rest is put back too. One round trip, like a Ping."""
        self._connected()
        context, exten, priority, app, data = installed_dialplan(self.o)[0]
        reply = await self.conn.send("DialplanExtensionAdd", {
            "Context": context, "Extension": exten, "Priority": str(priority), "Application": app,
            "ApplicationData": data})
        if reply.ok:
            await self._install()
            # said once it is true: the line says "installed again"
            log.warning("%s: the gateway's dialplan (contexts smartcti-*) was gone from Asterisk, a 'dialplan "
                        "reload' probably; installed again", self.name)
        return True

    async def reconnect(self, devices: list[str]) -> list[str]:
        """Log in again, install the gateway's dialplan, read every channel and queue member afresh."""
        await self.conn.open()
        self.lost_reason = ""
        await self._install()
        settings = await self.conn.send("CoreSettings", {})
        log.info("%s: logged in to Asterisk %s (AMI %s) as %s; %s", self.name,
                 settings.get("AsteriskVersion") or "?", self.conn.version, self.o.username,
                 "events filtered to those the gateway reads" if self.conn.filtered else
                 "every event of its classes read (Asterisk refused the event filter)")
        _, channels = await self.conn.list("CoreShowChannels")
        _, members = await self.conn.list("QueueStatus")
        self.tracker.load_channels(channels)
        self.tracker.load_members(members)

        async def monitor(device: str) -> None:
            await self._check_device(device)
            self.tracker.monitored.add(device)
        return await monitor_each(devices, monitor, f"{self.name}: Asterisk does not know device %s (%s)",
                                  self.concurrency)

    async def _install(self) -> None:
        for context, exten, priority, app, data in installed_dialplan(self.o):
            reply = await self.conn.send("DialplanExtensionAdd", {
                "Context": context, "Extension": exten, "Priority": str(priority), "Application": app,
                "ApplicationData": data, "Replace": "yes"})
            if not reply.ok:
                raise p.PabxError(Result.NOT_SUPPORTED_FEATURE,
                                  f"AMI DialplanExtensionAdd {context},{exten},{priority}: {reply.get('Message')} "
                                  f"(pbx_config must be loaded and the manager user needs write class 'system')")
        self._installed = True

    # ------------------------------------------------------------- events
    def _ami_event(self, m: Message) -> None:
        try:
            self.tracker.on_event(m)
        finally:
            self._changed.set()        # whoever waits for a channel to change looks again (_until)

    def _emit(self, event: p.PabxEvent) -> None:
        if self.trace.on:
            self.trace(event.device, f"PABX event {event}")
        self._on_event(event)

    def _divert(self, c: Chan, number: str) -> None:
        """Follow-me: a call rings at a device forwarded elsewhere; send its caller there."""
        caller = self.tracker.chans.get(c.peer)
        if caller is not None:
            self._in_background(self._act("Redirect", {"Channel": caller.name, "Context": self.o.context,
                                                       "Exten": number, "Priority": "1"}, Result.INVALID_OPTION))

    def _in_background(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _moment(self) -> float:
        """How long a command waits for an event Asterisk sends a little after its reply: well inside
        the command's own deadline (``timeout``), which would take the link down."""
        return min(1.5, self.common.timeout / 4)

    async def _until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                async with asyncio.timeout(left):
                    await self._changed.wait()
            except TimeoutError:
                return predicate()
        return True

    # ------------------------------------------------------------- requests
    async def execute(self, req: p.Request) -> Any:
        handler = _HANDLERS.get(type(req))
        if handler is None:
            raise p.PabxError(Result.NOT_SUPPORTED_FEATURE, f"{type(req).__name__} is not supported on Asterisk")
        if getattr(req, "number", ""):
            req = dataclasses.replace(req, number=dialable(req.number))
        self._connected()
        return await handler(self, req)

    async def _act(self, name: str, fields: dict[str, str], refusal: Result, device: str = "") -> Message:
        """One action that must succeed; its Error becomes PabxError(refusal) saying what Asterisk said."""
        if device and self.trace.on:
            self.trace(device, f"AMI> {name} {fields}")
        reply = await self.conn.send(name, fields)
        if device and self.trace.on:
            self.trace(device, f"AMI< {name} {reply.get('Response')} {reply.get('Message')}")
        if not reply.ok:
            message = reply.get("Message") or "refused"
            code = Result.NOT_SUPPORTED_FEATURE if "ermission denied" in message else refusal
            raise p.PabxError(code, f"AMI {name}: {message}")
        return reply

    async def _check_device(self, device: str) -> None:
        if self.o.device_prefix == "PJSIP/":
            reply = await self.conn.send("PJSIPShowEndpoint", {"Endpoint": device})
            if not reply.ok:
                raise p.PabxError(Result.INVALID_DEVICE, f"AMI PJSIPShowEndpoint {device}: {reply.get('Message')}")

    def _chan(self, device: str, call_id: str = "", *states: str) -> Chan:
        c = self.tracker.channel_for(device, call_id, *states)
        if c is None:
            raise p.PabxError(Result.INVALID_OPTION, f"{device} has no call{' ' + call_id if call_id else ''}")
        return c

    async def _bridge(self, one: Chan, two: Chan, device: str) -> None:
        """``Bridge`` the two. A channel that was running an application (Dial) when it was redirected
        leaves it a moment later: until then Asterisk cannot add it, so it is asked again."""
        deadline = time.monotonic() + self.common.timeout
        while True:
            reply = await self.conn.send("Bridge", {"Channel1": one.name, "Channel2": two.name, "Tone": "no"})
            if reply.ok:
                return
            if "Unable to add" not in reply.get("Message") or time.monotonic() > deadline:
                raise p.PabxError(Result.INVALID_OPTION, f"AMI Bridge: {reply.get('Message')}")
            await asyncio.sleep(0.05)

    def _peer(self, c: Chan) -> Chan:
        peer = self.tracker.chans.get(c.peer)
        if peer is None:
            raise p.PabxError(Result.INVALID_OPTION, f"{c.name} is talking to nobody the gateway can see")
        return peer


# ------------------------------------------------------- request handlers
async def _monitor_start(drv: AsteriskDriver, r: p.MonitorStart):
    await drv._check_device(r.device)
    drv.tracker.monitored.add(r.device)


async def _monitor_stop(drv: AsteriskDriver, r: p.MonitorStop):
    drv.tracker.monitored.discard(r.device)


async def _set_agent_state(drv: AsteriskDriver, r: p.SetAgentState):
    t, o = drv.tracker, drv.o
    interface = t.interface(r.device)
    if r.state is p.AgentState.LOGGED_ON:
        groups = r.groups or t.groups_of(r.device)
        if not groups:
            raise p.PabxError(Result.INVALID_GROUP_ID, "Logon without an ACD group: the queue is not known")
        joining = {(r.device, o.queue_of(g)) for g in groups}
        t.joining |= joining              # QueueMemberAdded may come before the reply: marked first
        try:
            for group in groups:
                reply = await drv.conn.send("QueueAdd", {"Queue": o.queue_of(group), "Interface": interface,
                                                         "MemberName": r.agent_id, "Paused": "true",
                                                         "Reason": LOGON_REASON})
                if not reply.ok and "lready" not in reply.get("Message"):
                    raise p.PabxError(Result.INVALID_GROUP_ID,
                                      f"AMI QueueAdd {o.queue_of(group)}: {reply.get('Message')}")
                if not reply.ok:                # a member already: no QueueMemberAdded will come
                    t.joining.discard((r.device, o.queue_of(group)))
                # a member now, even before its QueueMemberAdded comes: a Ready right after must find it
                t.members.setdefault(r.device, {}).setdefault(o.queue_of(group),
                                                              Member(r.agent_id, True, LOGON_REASON))
            # Asterisk replies before its QueueMemberAdded is out (a stasis message): answered only once
            # it is in, LOGGEDON reaches Protheus before the READY of the Ready it sends next
            await drv._until(lambda: not (t.joining & joining), drv._moment())
        finally:
            t.joining -= joining
    elif r.state is p.AgentState.LOGGED_OFF:
        queues = [o.queue_of(g) for g in r.groups] if r.groups else list(t.members.get(r.device, {}))
        if not queues:
            raise p.PabxError(Result.INVALID_USER, f"no agent is logged on {r.device}")
        for queue in queues:
            reply = await drv.conn.send("QueueRemove", {"Queue": queue, "Interface": interface})
            if not reply.ok and "ot there" not in reply.get("Message"):
                raise p.PabxError(Result.INVALID_GROUP_ID, f"AMI QueueRemove {queue}: {reply.get('Message')}")
    else:
        if not t.members.get(r.device):
            raise p.PabxError(Result.INVALID_USER, f"no agent is logged on {r.device}")
        paused = r.state is p.AgentState.NOT_READY
        fields = {"Interface": interface, "Paused": "true" if paused else "false"}
        if paused:
            fields["Reason"] = getattr(r, "reason", "") or "pausa"
        await drv._act("QueuePause", fields, Result.INVALID_USER, r.device)
        # as QueueAdd's: the reply comes before the QueueMemberPause that queryAgentState reads
        await drv._until(lambda: t.aggregate_paused(r.device)[0] == paused, drv._moment())


async def _agent_state(drv: AsteriskDriver, r: p.QueryAgentState) -> p.AgentInfo:
    return drv.tracker.agent_of(r.device)


async def _snapshot(drv: AsteriskDriver, r: p.SnapshotDevice) -> list[p.CallInfo]:
    return drv.tracker.calls_of(r.device)


async def _group_calls(drv: AsteriskDriver, r: p.QueryGroupCalls) -> list[p.GroupCall]:
    queue = drv.o.queue_of(r.device)
    reply, rows = await drv.conn.list("QueueStatus", {"Queue": queue})
    if not reply.ok:
        raise p.PabxError(Result.INVALID_GROUP_ID, f"AMI QueueStatus {queue}: {reply.get('Message')}")
    entries = [m for m in rows if m.event == "QueueEntry"]
    drv.tracker.queue_entries[queue] = {m.get("Uniqueid"): m for m in entries}
    return drv.tracker.waiting(queue)


async def _make_call(drv: AsteriskDriver, r: p.MakeCall) -> str:
    if r.device not in drv.tracker.monitored:     # a device in service was checked when it was taken
        await drv._check_device(r.device)
    call_id = f"smartcti-{uuid.uuid4().hex[:16]}"
    drv.tracker.originates[call_id] = r.number
    try:
        await drv._act("Originate", {
            "Channel": drv.tracker.interface(r.device), "Context": drv.o.context, "Exten": r.number, "Priority": "1",
            "CallerID": f'"{r.device}" <{r.device}>', "Timeout": str(int(drv.o.originate_timeout * 1000)),
            "Async": "true", "ChannelId": call_id}, Result.INVALID_DEVICE, r.device)
    except p.PabxError:
        drv.tracker.originates.pop(call_id, None)
        raise
    return call_id


async def _answer(drv: AsteriskDriver, r: p.AnswerCall):
    c = drv._chan(r.device, r.call_id, "delivered")
    if c.reported != "delivered":
        raise p.PabxError(Result.INVALID_OPTION, f"{r.device} has no call ringing")
    reply = await drv.conn.send("PJSIPNotify", {"Endpoint": r.device, "Variable": "Event=talk"})
    if not reply.ok:
        raise p.PabxError(Result.NOT_SUPPORTED_FEATURE,
                          f"Asterisk cannot ask the phone to answer ({reply.get('Message')}): answer on the phone")
    if not await drv._until(lambda: c.reported != "delivered", drv.o.answer_wait):
        raise p.PabxError(Result.NOT_SUPPORTED_FEATURE,
                          f"the phone of {r.device} did not answer on request (it does not take the 'talk' NOTIFY): "
                          f"answer on the phone")


async def _clear(drv: AsteriskDriver, r: p.ClearConnection):
    c = drv._chan(r.device, r.call_id)
    if r.call_id and r.call_id in c.held:          # the held party of a consultation
        held = drv.tracker.chans.get(c.held[r.call_id])
        if held is not None:
            await drv._act("Hangup", {"Channel": held.name}, Result.INVALID_CALL_ID, r.device)
        return
    await drv._act("Hangup", {"Channel": c.name}, Result.INVALID_CALL_ID, r.device)


async def _hold(drv: AsteriskDriver, r: p.HoldCall):
    c = drv._chan(r.device, r.call_id, "established")
    if c.reported != "established":
        raise p.PabxError(Result.INVALID_OPTION, f"{r.device} has no call to hold")
    peer = drv._peer(c)
    await drv._act("Redirect", {"Channel": peer.name, "Context": HOLD, "Exten": "s", "Priority": "1",
                                "ExtraChannel": c.name, "ExtraContext": PARK, "ExtraExten": "s",
                                "ExtraPriority": "1"}, Result.INVALID_OPTION, r.device)
    drv.tracker.held_by_us(c, peer)


async def _retrieve(drv: AsteriskDriver, r: p.RetrieveCall):
    c = drv.tracker.channel_for(r.device, r.call_id, "held", "established", "originated", "ringing")
    if c is None:
        raise p.PabxError(Result.NO_WAITING_CALL, f"{r.device} has no call on hold")
    if c.reported == "held":
        held = drv._peer(c)
    elif c.held:                                   # consulting: back to the held call, the consultation ends
        held = drv.tracker.chans.get(next(iter(c.held.values())))
        if held is None:
            raise p.PabxError(Result.NO_WAITING_CALL, f"{r.device} has no call on hold")
        await _hang_up_consulted(drv, c, held)
    else:
        raise p.PabxError(Result.NO_WAITING_CALL, f"{r.device} has no call on hold")
    await drv._bridge(c, held, r.device)
    drv.tracker.retrieved_by_us(c, held)


async def _hang_up(drv: AsteriskDriver, chan: Chan) -> None:
    """Hang ``chan`` up; one that is gone already ("No such channel") is what was wanted."""
    reply = await drv.conn.send("Hangup", {"Channel": chan.name})
    if not reply.ok and "o such channel" not in (reply.get("Message") or ""):
        raise p.PabxError(Result.INVALID_OPTION, f"AMI Hangup: {reply.get('Message') or 'refused'}")


async def _hang_up_consulted(drv: AsteriskDriver, c: Chan, held: Chan) -> None:
    """Whoever ``c`` talks to in its consultation hangs up. A Local channel of the dialling may have been
    optimised away meanwhile ("No such channel"): then the party swapped in for it is the one."""
    for _ in range(3):
        consulted = drv.tracker.chans.get(c.peer)
        if consulted is None or consulted.uniqueid == held.uniqueid:
            return
        await _hang_up(drv, consulted)
        await drv._until(lambda: consulted.uniqueid not in drv.tracker.chans, drv.common.timeout)


async def _consultation(drv: AsteriskDriver, r: p.ConsultationCall) -> str:
    c = drv._chan(r.device, "", "established", "held")
    if c.reported not in ("established", "held") or c.held:
        raise p.PabxError(Result.INVALID_OPTION, f"{r.device} has no call to consult from")
    peer = drv._peer(c)
    call_id = f"{c.call_id}-c{len(drv.tracker.chans)}"
    await drv._act("Setvar", {"Channel": c.name, "Variable": "SMARTCTI_DEVICE", "Value": r.device},
                   Result.INVALID_OPTION, r.device)
    was_held = c.reported == "held"
    drv.tracker.consulting(c, peer, call_id, r.number)
    try:
        if was_held:                               # already on hold: the agent's leg only goes dialling
            await drv._act("Redirect", {"Channel": c.name, "Context": DIAL, "Exten": r.number, "Priority": "1"},
                           Result.INVALID_PHONE_NUMBER, r.device)
        else:
            await drv._act("Redirect", {"Channel": peer.name, "Context": HOLD, "Exten": "s", "Priority": "1",
                                        "ExtraChannel": c.name, "ExtraContext": DIAL, "ExtraExten": r.number,
                                        "ExtraPriority": "1"}, Result.INVALID_PHONE_NUMBER, r.device)
    except p.PabxError:
        drv.tracker.not_consulting(c, call_id)
        raise
    return call_id


def _consultation_of(drv: AsteriskDriver, device: str) -> tuple[Chan, Chan, Chan] | None:
    c = next((x for x in drv.tracker.channels_of(device) if x.held), None)
    if c is None:
        return None
    held = drv.tracker.chans.get(next(iter(c.held.values())))
    other = drv.tracker.chans.get(c.peer)
    if held is None or other is None or other is held:
        return None
    return c, held, other


async def _consult_parties(drv: AsteriskDriver, device: str) -> tuple[Chan, Chan, Chan]:
    """(the agent's leg, the held party, the consulted party) of a consultation of ``device``. Asked right
    after the consulted party answered, the events that pair the legs may still be on their way: they
    are waited for a moment."""
    if _consultation_of(drv, device) is None:
        await drv._until(lambda: _consultation_of(drv, device) is not None, drv._moment())
    parties = _consultation_of(drv, device)
    if parties is None:
        raise p.PabxError(Result.INVALID_OPTION, f"{device} has no consultation going on")
    return parties


_GONE = ("does not exist", "o such channel")


async def _on_consultation(drv: AsteriskDriver, device: str, act) -> None:
    """``act(c, held, other)`` on the parties of ``device``'s consultation. If Asterisk says the consulted
    party is gone -- a Local channel of the dialling optimised away after the tracker last heard of it --
    once more with the party swapped in for it, when its events say which one that is."""
    c, held, other = await _consult_parties(drv, device)
    try:
        await act(c, held, other)
        return
    except p.PabxError as e:
        if not any(word in e.detail for word in _GONE):
            raise
        gone, first = other.uniqueid, e

    def swapped() -> bool:
        parties = _consultation_of(drv, device)
        return parties is not None and parties[2].uniqueid != gone
    if not await drv._until(swapped, drv._moment()):
        raise first
    c, held, other = await _consult_parties(drv, device)
    await act(c, held, other)


async def _transfer(drv: AsteriskDriver, r: p.TransferCall):
    async def act(c: Chan, held: Chan, other: Chan):
        await drv._bridge(held, other, r.device)
        drv.tracker.transferred(c, held, other)
        # the agent's leg may already be gone: its Dial ended when the consulted party left for the new bridge
        await _hang_up(drv, c)
    await _on_consultation(drv, r.device, act)


async def _conference(drv: AsteriskDriver, r: p.ConferenceCall):
    """The consulted party waits, the device and the held party are bridged, the consulted one joins them."""
    async def act(c: Chan, held: Chan, other: Chan):
        await drv._act("Setvar", {"Channel": other.name, "Variable": "SMARTCTI_JOIN", "Value": c.name},
                       Result.INVALID_OPTION, r.device)
        await drv._act("Redirect", {"Channel": other.name, "Context": HOLD, "Exten": "s", "Priority": "1"},
                       Result.INVALID_OPTION, r.device)
        await drv._bridge(c, held, r.device)
        await drv._act("Redirect", {"Channel": other.name, "Context": JOIN, "Exten": "s", "Priority": "1"},
                       Result.INVALID_OPTION, r.device)
        drv.tracker.conferenced(c, held, other)
    await _on_consultation(drv, r.device, act)


async def _alternate(drv: AsteriskDriver, r: p.AlternateCall):
    async def act(c: Chan, held: Chan, other: Chan):
        await drv._act("Redirect", {"Channel": other.name, "Context": HOLD, "Exten": "s", "Priority": "1",
                                    "ExtraChannel": c.name, "ExtraContext": PARK, "ExtraExten": "s",
                                    "ExtraPriority": "1"}, Result.INVALID_OPTION, r.device)
        await drv._bridge(c, held, r.device)
        drv.tracker.alternated(c, held, other)
    await _on_consultation(drv, r.device, act)


async def _single_step(drv: AsteriskDriver, r: p.SingleStepTransfer):
    c = drv._chan(r.device, r.call_id, "established")
    await drv._act("BlindTransfer", {"Channel": c.name, "Context": drv.o.context, "Exten": r.number},
                   Result.INVALID_OPTION, r.device)


async def _immediate(drv: AsteriskDriver, r: p.ImmediateTransfer):
    c = drv._chan(r.device, r.call_id, "delivered", "established")
    if c.reported == "delivered":                  # still ringing: its caller goes elsewhere at once
        caller = drv._peer(c)
        await drv._act("Redirect", {"Channel": caller.name, "Context": drv.o.context, "Exten": r.number,
                                    "Priority": "1"}, Result.INVALID_PHONE_NUMBER, r.device)
    else:
        await drv._act("BlindTransfer", {"Channel": c.name, "Context": drv.o.context, "Exten": r.number},
                       Result.INVALID_OPTION, r.device)


async def _forward(drv: AsteriskDriver, r: p.SetForwarding):
    """Follow-me: kept by the gateway (a call that rings the device goes to the number) and, for dialplans
    that read it (FreePBX's), in AstDB as CF/<device> (the family of FreePBX's unconditional forward, *72)."""
    if r.number:
        drv.tracker.forwarding[r.device] = r.number
        await drv._act("DBPut", {"Family": "CF", "Key": r.device, "Val": r.number}, Result.NOT_SUPPORTED_FEATURE)
    else:
        drv.tracker.forwarding.pop(r.device, None)
        await drv.conn.send("DBDel", {"Family": "CF", "Key": r.device})


async def _start_recording(drv: AsteriskDriver, r: p.StartRecording):
    c = drv._chan(r.device, r.call_id, "established")
    # the ANS protocol first: an audit finds the recording of an attendance by its number
    protocol = f"{r.protocol}-" if r.protocol else ""
    name = _SAFE_FILE.sub("_", f"smartcti-{protocol}{c.call_id}-{time.strftime('%Y%m%d-%H%M%S')}.wav")
    path = f"{drv.o.recordings.rstrip('/')}/{name}" if drv.o.recordings else name
    await drv._act("MixMonitor", {"Channel": c.name, "File": path}, Result.INVALID_OPTION, r.device)
    return path


async def _attach_data(drv: AsteriskDriver, r: p.AttachCallData):
    """On the caller's channel, inherited by what it calls next (a transfer): ``__PROTOCOLO_ANS``."""
    c = drv._chan(r.device, r.call_id)
    caller = drv.tracker.chans.get(c.peer) or c
    await drv._act("Setvar", {"Channel": caller.name, "Variable": f"__{r.name}", "Value": r.value},
                   Result.INVALID_OPTION, r.device)


async def _stop_recording(drv: AsteriskDriver, r: p.StopRecording):
    c = drv._chan(r.device, r.call_id, "established")
    await drv._act("StopMixMonitor", {"Channel": c.name}, Result.INVALID_OPTION, r.device)


# ChanSpy's options (app_chanspy.c): q no beep or name, E exit when the spied channel hangs up, S exit when
# there is none (the call ended before the supervisor answered); w talk to the agent, B to both parties
SPY_OPTIONS = {"listen": "qES", "whisper": "qESw", "barge": "qESB"}
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_/.@:+;-]{1,200}$")


async def _spy(drv: AsteriskDriver, r: p.Spy) -> str:
    """The supervisor's phone is called (Originate, as MakeCall's); when it answers, it runs ChanSpy on the
    target's channel in that call. Its channel is no call for Protheus (tracker.spies)."""
    if r.mode not in SPY_OPTIONS:
        raise p.PabxError(Result.INVALID_OPTION, f"{r.mode!r} is not a way to supervise: {', '.join(SPY_OPTIONS)}")
    if not r.device or not r.target or r.device == r.target:
        raise p.PabxError(Result.INVALID_DEVICE, "the supervisor and the agent must be two devices")
    for device in (r.device, r.target):
        await drv._check_device(device)
    chans = [c for c in drv.tracker.channels_of(r.target) if not c.gone and c.uniqueid not in drv.tracker.spies]
    target = next((c for c in chans if c.state == "Up"), None)
    if target is None:
        raise p.PabxError(Result.INVALID_OPTION, f"{r.target} has no call to {r.mode}")
    if not _CHANNEL_NAME.match(target.name):     # ChanSpy's arguments are comma-separated
        raise p.PabxError(Result.INVALID_OPTION, f"channel {target.name!r} cannot be named to ChanSpy")
    call_id = f"smartcti-spy-{uuid.uuid4().hex[:16]}"
    drv.tracker.spies.add(call_id)
    try:
        await drv._act("Originate", {
            "Channel": drv.tracker.interface(r.device), "Application": "ChanSpy",
            "Data": f"{target.name},{SPY_OPTIONS[r.mode]}", "CallerID": f'"{r.mode} {r.target}" <{r.target}>',
            "Timeout": str(int(drv.o.originate_timeout * 1000)), "Async": "true", "ChannelId": call_id},
            Result.INVALID_DEVICE, r.device)
    except p.PabxError:
        drv.tracker.spies.discard(call_id)
        raise
    return call_id


async def _status(drv: AsteriskDriver, r: p.QuerySystemStatus):
    await drv.keepalive()


async def _version(drv: AsteriskDriver, r: p.QueryVersion) -> str:
    reply = await drv._act("CoreSettings", {}, Result.INTERNAL_ERROR)
    return f"Asterisk {reply.get('AsteriskVersion')} (AMI {reply.get('AMIversion') or drv.conn.version})"


_HANDLERS: dict[type, Callable[..., Any]] = {
    p.MonitorStart: _monitor_start,
    p.MonitorStop: _monitor_stop,
    p.SetAgentState: _set_agent_state,
    p.QueryAgentState: _agent_state,
    p.SnapshotDevice: _snapshot,
    p.QueryGroupCalls: _group_calls,
    p.MakeCall: _make_call,
    p.AnswerCall: _answer,
    p.ClearConnection: _clear,
    p.HoldCall: _hold,
    p.RetrieveCall: _retrieve,
    p.ConsultationCall: _consultation,
    p.TransferCall: _transfer,
    p.ConferenceCall: _conference,
    p.AlternateCall: _alternate,
    p.SingleStepTransfer: _single_step,
    p.ImmediateTransfer: _immediate,
    p.SetForwarding: _forward,
    p.StartRecording: _start_recording,
    p.StopRecording: _stop_recording,
    p.AttachCallData: _attach_data,
    p.QuerySystemStatus: _status,
    p.QueryVersion: _version,
    p.Spy: _spy,
}
