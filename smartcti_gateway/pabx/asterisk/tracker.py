"""Asterisk's channels and queue members as the gateway needs them: AMI events in, the core's neutral
events out, no I/O. Tested by replaying recorded AMI streams.

A SmartCTI device is an interface (``PJSIP/2001``); its calls are its channels (``PJSIP/2001-0000001a``).
The call id the core and Protheus see is the channel's ``Linkedid`` (the oldest channel of the call),
handed on from a dialling channel to the one it dials; a consultation the gateway starts from a
device gets an id of its own, and a transfer hands the held call's id to the consulted party.

| AMI | neutral event (for a monitored device's channel) |
|---|---|
| Newchannel, state Ring (the phone dialled); or our Originate's channel | ServiceInitiated |
| DialBegin from the device's channel | Originated |
| DialState RINGING from the device's channel | Delivered, naming the far party |
| Newstate Ringing of the device's channel (it is called), once DialBegin said who calls | Delivered (ANI = the caller, DNIS = the number it dialled, group = the queue of AgentCalled) |
| Newstate Up of a called channel; DialEnd ANSWER of a dialling one | Established |
| DialEnd BUSY / NOANSWER / CONGESTION / CHANUNAVAIL; OriginateResponse Failure | Failed (10, 11, 8, 2) |
| Hold / Unhold (the phone held) | Held / Retrieved |
| AttendedTransfer (made by the phone) | Transferred, to the target |
| Hangup | ConnectionCleared |
| QueueMemberAdded / Removed | LoggedOn / LoggedOff (MemberName = agent id, queues = ACD groups) |
| QueueMemberPause (paused in every queue, or not) | NotReady (PausedReason) / Ready |
| QueueCallerJoin / QueueCallerLeave / QueueCallerAbandon / AgentConnect (any queue) | QueueEvent Joined / Left / Abandoned (HoldTime) / Answered (HoldTime) |

Asterisk publishes from several threads: a phone may say Ringing before the Dial or Queue that calls it
says DialBegin, and the far half of a Local channel may dial before the near half's DialBegin. The
tracker waits for what it needs rather than trusting the order (tests/test_asterisk_replay.py bends
recorded streams that way).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...core.codes import Result
from ...core.pabx import (AgentEvent, AgentEventType as A, AgentInfo, AgentState, CallEvent, CallEventType as E,
                          CallInfo, ConnectionState as CS, Direction, GroupCall, PabxEvent, QueueEvent,
                          QueueEventKind as Q)
from .ami import Message

UNKNOWN = "<unknown>"
# The channel variable the ANS protocol rides on (the gateway's IVR sets it, or the site's dialplan); seen
# in the events with ``channelvars = PROTOCOLO_ANS`` in manager.conf (docs/protocolo-ans.md).
PROTOCOL_VARIABLE = "PROTOCOLO_ANS"
MAX_VARIABLES = 32           # channelvars kept per channel (a dialler's mark, the protocol)
LOGON_REASON = "smartcti-logon"     # the pause of an agent logged on and not yet Ready

DIAL_FAILURES = {"BUSY": Result.BUSY, "NOANSWER": Result.NO_ANSWER, "CONGESTION": Result.NO_DIAL_TONE,
                 "CHANUNAVAIL": Result.INVALID_PHONE_NUMBER}
# OriginateResponse Reason (ast_control_frame_type): the device itself did not take the call
ORIGINATE_FAILURES = {"3": Result.NO_ANSWER, "5": Result.BUSY, "8": Result.NO_DIAL_TONE}


def _num(value: str) -> str:
    return "" if value in (UNKNOWN, "") else value


def _wait(value: str) -> float | None:
    """A HoldTime or Wait (whole seconds); None when it is missing or not a number."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < 10 ** 7 else None


@dataclass
class Chan:
    uniqueid: str
    name: str
    linkedid: str
    device: str = ""             # the SmartCTI device when the channel is one of a device's
    state: str = ""              # ChannelStateDesc
    caller: str = ""             # CallerIDNum
    connected: str = ""          # ConnectedLineNum
    # its connected line before a transfer gave it another party: a late event that still says so is stale
    connected_before: str = ""
    exten: str = ""
    context: str = ""
    call_id: str = ""            # the core's id of the call this channel is in now
    dnis: str = ""               # the number the call was made to
    group: str = ""              # the ACD group (queue) that offered it
    peer: str = ""               # uniqueid of the other party (dial or bridge)
    bridge: str = ""
    dialling: str = ""           # the number this channel dials (a device's outbound call)
    originated: bool = False     # made by our Originate: its first ring is the agent's own pick-up
    reported: str = ""           # the last state told to the core
    held: dict[str, str] = field(default_factory=dict)   # call id -> uniqueid of the party held by us
    held_dialling: dict[str, str] = field(default_factory=dict)   # call id -> what it dialled, if it did
    gone: bool = False           # left by a transfer: its hang-up is not news
    awaiting_dial: bool = False  # rings, but the DialBegin naming its caller has not come yet
    first_exten: str = ""        # the number it first dialled into: a caller's DNIS, even after a transfer
    protocol: str = ""           # the ANS protocol of the call (PROTOCOLO_ANS), once seen
    variables: dict[str, str] = field(default_factory=dict)   # every channelvars value seen (a dialler's mark)

    @property
    def remote(self) -> str:
        """The other party's number on a called channel: its connected line (its own CallerID may be the
        device's own number on a PJSIP endpoint)."""
        return self.connected or self.caller


@dataclass
class Member:
    agent: str
    paused: bool = False
    reason: str = ""


class Tracker:
    def __init__(self, prefix: str, group_of: Callable[[str], str], emit: Callable[[PabxEvent], None]):
        self.prefix = prefix
        self.group_of = group_of              # queue -> SmartCTI ACD group
        self.emit = emit
        self.monitored: set[str] = set()
        self.chans: dict[str, Chan] = {}
        self.members: dict[str, dict[str, Member]] = {}     # device -> queue -> member
        self.joining: set[tuple[str, str]] = set()           # (device, queue) added, its QueueMemberAdded to come
        self.originates: dict[str, str] = {}                 # our Originate's channel id -> number
        self.unanswered: dict[str, Chan] = {}                # hung up before its OriginateResponse came
        self.queue_entries: dict[str, dict[str, Message]] = {}   # queue -> caller uniqueid -> QueueCallerJoin
        self.forwarding: dict[str, str] = {}                 # device -> follow-me number
        self.spies: set[str] = set()                         # uniqueids of supervisors' ChanSpy channels
        self.divert: Callable[[Chan, str], None] = lambda chan, number: None

    # ------------------------------------------------------------ names
    def device_of(self, channel: str) -> str:
        """``PJSIP/2001-0000001a`` -> ``2001``; "" for a channel that is not a device's."""
        if not channel.startswith(self.prefix):
            return ""
        rest = channel[len(self.prefix):]
        return rest.rsplit("-", 1)[0] if "-" in rest else rest

    def interface(self, device: str) -> str:
        return f"{self.prefix}{device}"

    def _device_of_interface(self, interface: str) -> str:
        return interface[len(self.prefix):] if interface.startswith(self.prefix) else ""

    def mine(self, c: Chan | None) -> bool:
        # a supervisor's ChanSpy (Spy) rings the supervisor's phone: no call of theirs for Protheus
        return c is not None and c.device in self.monitored and c.uniqueid not in self.spies

    def colleague(self, c: Chan | None) -> bool:
        """An extension, not a trunk: both are ``PJSIP/<name>-…``, but a trunk is no device Protheus knows
        and does not call with its own name as its number."""
        return c is not None and bool(c.device) and (c.device in self.monitored or c.caller == c.device)

    # ----------------------------------------------------------- events in
    @classmethod
    def events(cls) -> list[str]:
        """The AMI events the tracker reads: the gateway asks Asterisk for these only."""
        return sorted(name[4:] for name in dir(cls) if name.startswith("_on_"))

    def on_event(self, m: Message) -> None:
        handler = getattr(self, "_on_" + m.event, None)
        if handler is not None:
            handler(m)

    def _chan(self, m: Message, prefix: str = "") -> Chan | None:
        uid = m.get(prefix + "Uniqueid")
        if not uid:
            return None
        c = self.chans.get(uid)
        name = m.get(prefix + "Channel")
        if c is None:
            c = self.chans[uid] = Chan(uid, name, m.get(prefix + "Linkedid") or uid, self.device_of(name))
            c.call_id = c.linkedid
            c.originated = uid in self.originates
            if c.originated:
                c.dialling = self.originates[uid]
        elif name and name != c.name:      # renamed (a masquerade)
            c.name, c.device = name, self.device_of(name)
        c.state = m.get(prefix + "ChannelStateDesc") or c.state
        # a number once known stays known: some events of a call say <unknown> for it again
        c.caller = _num(m.get(prefix + "CallerIDNum", "")) or c.caller
        connected = _num(m.get(prefix + "ConnectedLineNum", ""))
        if connected and connected != c.connected_before:
            if connected != c.connected:
                c.connected_before = ""          # a change of its own: the old party may come back
            c.connected = connected
        if m.get(prefix + "Exten") not in ("", "s"):
            c.exten = m.get(prefix + "Exten")
            c.first_exten = c.first_exten or c.exten
        c.context = m.get(prefix + "Context") or c.context
        if prefix + "ChanVariable" in m.fields:
            for pair in m.values(prefix + "ChanVariable"):
                name, _, value = pair.partition("=")
                name = name.lstrip("_")
                if name == PROTOCOL_VARIABLE and value:
                    c.protocol = value
                if name and value and len(c.variables) < MAX_VARIABLES:
                    c.variables[name] = value[:200]
        return c

    def _call_event(self, kind: E, c: Chan, **kw) -> None:
        peer = self.chans.get(c.peer)
        if not c.protocol:
            c.protocol = peer.protocol if peer is not None else ""
        # the caller's channel carries what the dialplan or the dialler set: the agent's call has it too
        variables = {**(peer.variables if peer is not None else {}), **c.variables}
        self.emit(CallEvent(kind, c.device, c.call_id, protocol=c.protocol,
                            variables=tuple(sorted(variables.items())), **kw))

    def _on_Newchannel(self, m: Message) -> None:
        c = self._chan(m)
        if c is not None and c.name.startswith("Local/") and c.name.endswith(";1"):
            self._consultation_leg(c)
        if not self.mine(c):
            return
        if c.originated:          # MakeCall: the agent's phone is called first; for SmartCTI it is going off-hook
            c.reported = "initiated"
            self._call_event(E.SERVICE_INITIATED, c, calling=c.device, called=c.dialling, direction=Direction.OUTBOUND)
        elif c.state == "Ring":   # the phone dialled
            c.dialling = c.exten
            c.reported = "initiated"
            self._call_event(E.SERVICE_INITIATED, c, calling=c.device, called=c.exten, direction=Direction.OUTBOUND)

    def _on_Newstate(self, m: Message) -> None:
        c = self._chan(m)
        if not self.mine(c) or c.originated or c.dialling:
            return
        if c.state == "Ringing" and not c.reported:
            if not c.peer:            # rings before Dial/Queue said who calls (threads race): wait for DialBegin
                c.awaiting_dial = True
                return
            self._offered(c)
        elif c.state == "Up" and (c.reported == "delivered" or c.awaiting_dial):
            if c.awaiting_dial:       # rang with no DialBegin at all (an Originate of the device by someone else)
                self._offered(c)
            c.reported = "established"
            self._call_event(E.ESTABLISHED, c, calling=c.remote, called=c.dnis or c.exten)

    def _offered(self, c: Chan) -> None:
        """``c``, a device's channel, rings: Delivered, or follow-me sends its caller on."""
        c.awaiting_dial = False
        if c.device in self.forwarding:     # follow-me: the caller is sent on, the device never rings
            c.gone = True
            self.divert(c, self.forwarding[c.device])
            return
        c.reported = "delivered"
        peer = self.chans.get(c.peer)
        internal = self.colleague(peer) and peer.device != c.device
        self._call_event(E.DELIVERED, c, calling=c.remote, called=c.dnis or c.exten, group=c.group,
                         direction=Direction.INTERNAL if internal else Direction.INBOUND)

    def _consultation_leg(self, local: Chan) -> None:
        """A Local channel made by the Dial of a consultation we started carries the consultation's id at
        once: its other half may ring the consulted party before that Dial's DialBegin is told."""
        for c in self.chans.values():
            if c.linkedid == local.linkedid and c.held and c.reported == "initiated" and not c.peer and self.mine(c):
                local.call_id = c.call_id
                return

    def _half(self, c: Chan) -> Chan | None:
        """The other half of a Local channel (``;1`` <-> ``;2``)."""
        if not c.name.startswith("Local/") or c.name[-2:] not in (";1", ";2"):
            return None
        other = c.name[:-1] + ("2" if c.name.endswith(";1") else "1")
        return next((x for x in self.chans.values() if x.name == other), None)

    def _local_origin(self, c: Chan) -> Chan:
        """A Local channel's ``;2`` half dials for its ``;1`` half: the call is the ``;1``'s."""
        if c.name.endswith(";2"):
            return self._half(c) or c
        return c

    def far_end(self, c: Chan) -> Chan:
        """Who is really at the end of ``c``: through a Local channel not yet optimised away (a consultation
        dials ``Local/<number>@context``), the party its other half talks to."""
        seen = set()
        while c.uniqueid not in seen:
            seen.add(c.uniqueid)
            half = self._half(c)
            beyond = self.chans.get(half.peer) if half is not None else None
            if beyond is None:
                break
            c = beyond
        return c

    def _far(self, caller: Chan, dest: Chan | None) -> str:
        """The party a device's outbound call reaches: its device, or the number dialled."""
        if self.colleague(dest) and dest.device != caller.device:
            return dest.device
        return caller.dialling or caller.exten

    def _on_DialBegin(self, m: Message) -> None:
        caller, dest = self._chan(m), self._chan(m, "Dest")
        if dest is None:
            return
        if caller is None:        # Originate dialling the device itself
            return
        caller.peer, dest.peer = dest.uniqueid, caller.uniqueid
        source = self._local_origin(caller)
        dest.call_id = source.call_id
        dest.protocol = dest.protocol or source.protocol or caller.protocol
        dest.dnis = source.dialling or source.dnis or source.first_exten or caller.first_exten or caller.exten
        if dest.awaiting_dial and self.mine(dest):
            self._offered(dest)
        if self.mine(caller):
            caller.dialling = caller.dialling or caller.exten
            if caller.reported in ("", "initiated"):
                caller.reported = "originated"
                self._call_event(E.ORIGINATED, caller, calling=caller.device, called=caller.dialling,
                                 other_device=self._far(caller, dest), direction=Direction.OUTBOUND)

    def _on_DialState(self, m: Message) -> None:
        caller, dest = self._chan(m), self._chan(m, "Dest")
        if self.mine(caller) and caller.dialling and m.get("DialStatus") == "RINGING" and caller.reported == "originated":
            caller.reported = "ringing"
            self._call_event(E.DELIVERED, caller, calling=caller.device, called=caller.dialling,
                             other_device=self._far(caller, dest))

    def _on_DialEnd(self, m: Message) -> None:
        caller, dest = self._chan(m), self._chan(m, "Dest")
        if caller is None or not self.mine(caller) or not caller.dialling:
            return
        status = m.get("DialStatus")
        if status == "ANSWER" and caller.reported in ("originated", "ringing"):
            caller.reported = "established"
            self._call_event(E.ESTABLISHED, caller, calling=caller.device, called=caller.dialling,
                             other_device=self._far(caller, dest))
        elif status in DIAL_FAILURES and caller.reported in ("originated", "ringing"):
            caller.reported = "failed"
            self._call_event(E.FAILED, caller, calling=caller.device, called=caller.dialling,
                             cause=DIAL_FAILURES[status])

    def _on_OriginateResponse(self, m: Message) -> None:
        uid = m.get("Uniqueid")
        if m.get("Response") != "Success" and uid not in self.chans:
            self.spies.discard(uid)           # a supervisor who did not pick up
        number = self.originates.pop(uid, None)
        gone = self.unanswered.pop(uid, None)
        if number is None or m.get("Response") == "Success":
            if gone is not None:
                self._clear(gone)
            return
        c = self.chans.get(uid)
        device = c.device if c is not None else (gone.device if gone is not None else self.device_of(m.get("Channel")))
        if device in self.monitored:
            cause = ORIGINATE_FAILURES.get(m.get("Reason"), Result.INVALID_DEVICE)
            self.emit(CallEvent(E.FAILED, device, uid, calling=device, called=number, cause=cause))
            if c is None:         # hung up already, or no channel was ever made: nothing else will clear it
                self.emit(CallEvent(E.CONNECTION_CLEARED, device, uid, calling=device, called=number))

    def _on_Hangup(self, m: Message) -> None:
        c = self._chan(m)
        if c is None:
            return
        del self.chans[c.uniqueid]
        if c.uniqueid in self.spies:          # a supervisor's ChanSpy ended
            self.spies.discard(c.uniqueid)
            return
        if c.uniqueid in self.originates and c.reported == "initiated":
            # the agent's phone never took our Originate: OriginateResponse, which follows, says why
            self.unanswered[c.uniqueid] = c
            return
        self.originates.pop(c.uniqueid, None)
        if self.mine(c) and c.reported and not c.gone:
            for held in list(c.held):
                self.emit(CallEvent(E.CONNECTION_CLEARED, c.device, held))
            self._clear(c)

    def _clear(self, c: Chan) -> None:
        calling, called = (c.device, c.dialling) if c.dialling else (c.remote, c.dnis or c.exten)
        self._call_event(E.CONNECTION_CLEARED, c, calling=calling, called=called)
        c.reported = ""

    def _on_Hold(self, m: Message) -> None:
        c = self._chan(m)
        if self.mine(c) and c.reported == "established":
            c.reported = "held"
            self._call_event(E.HELD, c)

    def _on_Unhold(self, m: Message) -> None:
        c = self._chan(m)
        if self.mine(c) and c.reported == "held":
            c.reported = "established"
            self._call_event(E.RETRIEVED, c)

    def _on_BridgeEnter(self, m: Message) -> None:
        c = self._chan(m)
        if c is None:
            return
        c.bridge = m.get("BridgeUniqueid")
        others = [o for o in self.chans.values() if o.bridge == c.bridge and o is not c]
        if len(others) == 1:
            c.peer, others[0].peer = others[0].uniqueid, c.uniqueid

    def _on_BridgeLeave(self, m: Message) -> None:
        """The two left in a bridge talk to each other: after a Local channel's optimisation (its far
        side swapped in, then it leaves) or a conference's third party leaving."""
        c = self._chan(m)
        if c is None:
            return
        bridge, c.bridge = c.bridge, ""
        left = [o for o in self.chans.values() if bridge and o.bridge == bridge]
        if len(left) == 2:
            one, two = left
            one.peer, two.peer = two.uniqueid, one.uniqueid

    def _on_AttendedTransfer(self, m: Message) -> None:
        """A phone's own attended transfer (REFER with Replaces, or a feature code): the party its first
        call held is now with the party of its second. The transferer's two legs hang up on their own
        (ConnectionCleared of both calls); the target, if it is a device, is told it has the first call."""
        if m.get("Result") != "Success":
            return
        first = self.chans.get(m.get("OrigTransfererUniqueid"))
        second = self.chans.get(m.get("SecondTransfererUniqueid"))
        if first is None or second is None:
            return
        transferee, target = self.chans.get(first.peer), self.chans.get(second.peer)
        if transferee is None or target is None:
            return
        target = self.far_end(target)
        if transferee.uniqueid == target.uniqueid:
            return
        transferee.peer, target.peer = target.uniqueid, transferee.uniqueid
        if self.mine(target):
            consult_call = target.call_id
            target.call_id = first.call_id
            target.dnis = first.dnis or transferee.first_exten or first.exten
            target.connected_before = target.connected
            target.connected, target.group = transferee.caller, first.group
            target.reported = "established"
            target.dialling = ""
            self.emit(CallEvent(E.TRANSFERRED, target.device, target.call_id, calling=target.connected,
                                called=target.dnis, old_call_id=consult_call, group=target.group))

    def _on_AgentCalled(self, m: Message) -> None:
        dest = self._chan(m, "Dest")
        caller = self._chan(m)
        if dest is not None:
            dest.group = self.group_of(m.get("Queue"))
            if caller is not None:
                dest.dnis = caller.exten or dest.dnis

    # queue callers: the supervisor's queue statistics (core/queues.py), whoever is monitored
    def _queue_call_id(self, m: Message) -> str:
        """The id the caller's call has for the core (the agent's channel gets the same one): the tracked
        channel's, else its Linkedid."""
        c = self.chans.get(m.get("Uniqueid"))
        return c.call_id if c is not None else (m.get("Linkedid") or m.get("Uniqueid"))

    def _queue_event(self, kind: Q, m: Message, waited: str = "", agent: str = "") -> None:
        queue = m.get("Queue")
        if queue and m.get("Uniqueid"):
            self.emit(QueueEvent(kind, self.group_of(queue), self._queue_call_id(m), _num(m.get("CallerIDNum")),
                                 _wait(waited), agent))

    def _on_QueueCallerJoin(self, m: Message) -> None:
        self.queue_entries.setdefault(m.get("Queue"), {})[m.get("Uniqueid")] = m
        self._queue_event(Q.JOINED, m)

    def _on_QueueCallerLeave(self, m: Message) -> None:
        self.queue_entries.get(m.get("Queue"), {}).pop(m.get("Uniqueid"), None)
        self._queue_event(Q.LEFT, m)

    def _on_QueueCallerAbandon(self, m: Message) -> None:
        """The caller hung up while waiting; QueueCallerLeave follows."""
        self.queue_entries.get(m.get("Queue"), {}).pop(m.get("Uniqueid"), None)
        self._queue_event(Q.ABANDONED, m, m.get("HoldTime"))

    def _on_AgentConnect(self, m: Message) -> None:
        """A member answered a queue caller (after its QueueCallerLeave); HoldTime is the wait, ring included."""
        agent = self.device_of(m.get("DestChannel")) or self._device_of_interface(m.get("Interface"))
        self._queue_event(Q.ANSWERED, m, m.get("HoldTime"), agent)

    # queue members: the agents
    def _member_device(self, m: Message) -> str:
        return self._device_of_interface(m.get("Interface") or m.get("Location") or m.get("StateInterface"))

    def _on_QueueMemberAdded(self, m: Message) -> None:
        device = self._member_device(m)
        if not device:
            return
        self.joining.discard((device, m.get("Queue")))
        queues = self.members.setdefault(device, {})
        first = not queues
        queues[m.get("Queue")] = Member(m.get("MemberName") or m.get("Interface"), m.get("Paused") == "1",
                                        m.get("PausedReason"))
        if device in self.monitored:
            self.emit(AgentEvent(A.LOGGED_ON, device, queues[m.get("Queue")].agent, self.groups_of(device)))
            if first and not self.aggregate_paused(device)[0]:
                self.emit(AgentEvent(A.READY, device, queues[m.get("Queue")].agent, self.groups_of(device)))

    def _on_QueueMemberRemoved(self, m: Message) -> None:
        device = self._member_device(m)
        queues = self.members.get(device)
        if not queues or m.get("Queue") not in queues:
            return
        agent = queues.pop(m.get("Queue")).agent
        if not queues:
            del self.members[device]
            if device in self.monitored:
                self.emit(AgentEvent(A.LOGGED_OFF, device, agent))

    def _on_QueueMemberPause(self, m: Message) -> None:
        device = self._member_device(m)
        member = self.members.get(device, {}).get(m.get("Queue"))
        if member is None:
            return
        before = self.aggregate_paused(device)
        member.paused, member.reason = m.get("Paused") == "1", m.get("PausedReason")
        after = self.aggregate_paused(device)
        if device in self.monitored and after != before:
            paused, reason = after
            if not paused:
                self.emit(AgentEvent(A.READY, device, member.agent, self.groups_of(device)))
            elif reason != LOGON_REASON:
                self.emit(AgentEvent(A.NOT_READY, device, member.agent, self.groups_of(device), reason))

    _on_QueueMemberPaused = _on_QueueMemberPause      # its name before Asterisk 12.2

    def aggregate_paused(self, device: str) -> tuple[bool, str]:
        """Paused in every queue (then offered no call), and why; the reason of the first queue."""
        members = list(self.members.get(device, {}).values())
        if not members or not all(x.paused for x in members):
            return False, ""
        return True, members[0].reason

    def groups_of(self, device: str) -> tuple[str, ...]:
        return tuple(self.group_of(q) for q in self.members.get(device, {}))

    # --------------------------------------------- what the gateway itself did
    def held_by_us(self, c: Chan, peer: Chan) -> None:
        """The gateway put ``peer`` on hold and ``c`` (the device's leg) aside."""
        c.reported = "held"
        c.peer = peer.uniqueid
        self._call_event(E.HELD, c)

    def retrieved_by_us(self, c: Chan, held: Chan) -> None:
        """``c`` and ``held`` are bridged again; a consultation that was going on has ended."""
        consulting = next((cid for cid, uid in c.held.items() if uid == held.uniqueid), None)
        if consulting is not None:
            del c.held[consulting]
            if c.reported and c.call_id != consulting:
                self._clear(c)                   # the consultation's own leg
            c.call_id, c.dialling = consulting, c.held_dialling.pop(consulting, "")
        c.peer, held.peer = held.uniqueid, c.uniqueid
        c.reported = "established"
        self._call_event(E.RETRIEVED, c)

    def consulting(self, c: Chan, held: Chan, call_id: str, number: str) -> None:
        """``c`` leaves its call (``held`` waits) to dial ``number``: a new call ``call_id``. Told before the
        Redirect is sent: the dialling's events may come before its answer."""
        if c.reported != "held":
            self._call_event(E.HELD, c)
        c.held[c.call_id] = held.uniqueid
        c.held_dialling[c.call_id] = c.dialling
        c.call_id, c.dialling, c.reported, c.peer = call_id, number, "initiated", ""
        self._call_event(E.SERVICE_INITIATED, c, calling=c.device, called=number, direction=Direction.OUTBOUND)

    def transferred(self, c: Chan, held: Chan, other: Chan) -> None:
        """The held party and the consulted one are bridged together; the device's leg leaves both calls."""
        (held_call,) = c.held
        consult_call = c.call_id
        self._clear(c)
        self.emit(CallEvent(E.CONNECTION_CLEARED, c.device, held_call))   # the core knows its numbers
        c.call_id, c.dialling, c.reported = held_call, "", ""
        c.held.clear()
        c.held_dialling.clear()
        c.gone = True
        held.peer, other.peer = other.uniqueid, held.uniqueid
        other = self.far_end(other)
        if self.mine(other):
            other.call_id = held.call_id
            other.dnis = held.dnis or held.exten
            other.connected_before = other.connected
            other.connected, other.group = held.caller, c.group or held.group
            other.reported = "established"
            self.emit(CallEvent(E.TRANSFERRED, other.device, held.call_id, calling=held.caller,
                                called=other.dnis, old_call_id=consult_call, group=other.group))

    def conferenced(self, c: Chan, held: Chan, other: Chan) -> None:
        """The three are together in one conference, which carries the held call's id."""
        (held_call,) = c.held
        consult_call = c.call_id
        c.held.clear()
        c.call_id, c.reported, c.dialling = held_call, "established", c.held_dialling.pop(held_call, "")
        self.emit(CallEvent(E.CONFERENCED, c.device, held_call, old_call_id=consult_call))
        other = self.far_end(other)
        if self.mine(other):
            other.call_id = held_call
            self.emit(CallEvent(E.CONFERENCED, other.device, held_call, old_call_id=consult_call))

    def alternated(self, c: Chan, held: Chan, other: Chan) -> None:
        """The consulted party waits now, and the device talks to the one that was held."""
        (held_call,) = c.held
        active, active_dialling = c.call_id, c.dialling
        c.held = {active: other.uniqueid}
        self._call_event(E.HELD, c)
        c.call_id, c.peer, c.reported = held_call, held.uniqueid, "established"
        c.dialling = c.held_dialling.pop(held_call, "")
        c.held_dialling[active] = active_dialling
        self._call_event(E.RETRIEVED, c)

    def not_consulting(self, c: Chan, call_id: str) -> None:
        """The Redirect of a consultation was refused: ``c`` is back on its held call."""
        held_call = next(iter(c.held), None)
        if held_call is None or c.call_id != call_id:
            return
        c.call_id, c.dialling = held_call, c.held_dialling.pop(held_call, "")
        c.peer = c.held.pop(held_call)
        c.reported = "held"

    # ------------------------------------------------------- snapshots in
    def load_channels(self, rows: list[Message]) -> None:
        """CoreShowChannels after a (re)connect: the channels as they are now; those gone are forgotten."""
        before = self.chans
        self.chans = {}
        self.unanswered.clear()       # their OriginateResponse was lost with the connection: the resync clears them
        for row in rows:
            uid = row.get("Uniqueid")
            if uid in before:       # a channel still there keeps what only events taught us
                self.chans[uid] = before[uid]
            c = self._chan(row)
            if c is None:
                continue
            c.bridge = row.get("BridgeId")
            if not c.reported:
                c.reported = {"Ring": "initiated", "Ringing": "delivered", "Up": "established"}.get(c.state, "")
                if c.state == "Ring" or (c.state == "Up" and row.get("Application") == "Dial"):
                    c.dialling = c.dialling or c.exten
        for c in self.chans.values():
            if c.bridge and not c.peer:
                others = [o for o in self.chans.values() if o.bridge == c.bridge and o is not c]
                if len(others) == 1:
                    c.peer = others[0].uniqueid
        self.spies &= set(self.chans)

    def load_members(self, rows: list[Message]) -> None:
        """QueueStatus after a (re)connect: who is logged on where, paused or not; who waits (told as
        Joined, with the Wait so far), and who no longer does (Left: what became of them is not known)."""
        before = self.queue_entries
        self.members = {}
        self.queue_entries = {}
        for row in rows:
            if row.event == "QueueMember":
                device = self._member_device(row)
                if device:
                    self.members.setdefault(device, {})[row.get("Queue")] = Member(
                        row.get("Name") or row.get("Location"), row.get("Paused") == "1", row.get("PausedReason"))
            elif row.event == "QueueEntry":
                self.queue_entries.setdefault(row.get("Queue"), {})[row.get("Uniqueid")] = row
        for queue, entries in before.items():
            for uid, m in entries.items():
                if uid not in self.queue_entries.get(queue, {}):
                    self._queue_event(Q.LEFT, m)
        for queue, entries in self.queue_entries.items():
            for uid, row in entries.items():
                if uid not in before.get(queue, {}):
                    self._queue_event(Q.JOINED, row, row.get("Wait"))

    # ------------------------------------------------------------- queries
    def channels_of(self, device: str) -> list[Chan]:
        return [c for c in self.chans.values() if c.device == device]

    def channel_for(self, device: str, call_id: str = "", *states: str) -> Chan | None:
        """The device's channel of ``call_id`` (any when empty), preferring the first of ``states``."""
        chans = [c for c in self.channels_of(device) if not call_id or c.call_id == call_id or call_id in c.held]
        for state in states or ("established", "ringing", "originated", "delivered", "initiated", "held"):
            for c in chans:
                if c.reported == state:
                    return c
        return chans[0] if chans else None

    def calls_of(self, device: str) -> list[CallInfo]:
        out = []
        for c in self.channels_of(device):
            if c.gone:
                continue
            state = {"initiated": CS.INITIATED, "originated": CS.CONNECTED, "ringing": CS.CONNECTED,
                     "delivered": CS.ALERTING, "established": CS.CONNECTED, "held": CS.HELD}.get(c.reported)
            if state is None:
                continue
            peer = self.chans.get(c.peer)
            others = (peer.device,) if self.colleague(peer) else ()
            if c.dialling:
                out.append(CallInfo(c.call_id, state, calling=c.device, called=c.dialling, other_devices=others,
                                    direction=Direction.OUTBOUND))
            else:
                out.append(CallInfo(c.call_id, state, calling=c.remote, called=c.dnis or c.exten,
                                    other_devices=others, group=c.group, direction=Direction.INBOUND,
                                    protocol=c.protocol))
            for call_id, held_uid in c.held.items():
                held = self.chans.get(held_uid)
                out.append(CallInfo(call_id, CS.HELD, calling=held.caller if held else "",
                                    called=held.exten if held else ""))
        return out

    def agent_of(self, device: str) -> AgentInfo:
        queues = self.members.get(device, {})
        if not queues:
            return AgentInfo(AgentState.LOGGED_OFF)
        agent = next(iter(queues.values())).agent
        paused, reason = self.aggregate_paused(device)
        state = (AgentState.LOGGED_ON if reason == LOGON_REASON else AgentState.NOT_READY) if paused else AgentState.READY
        return AgentInfo(state, agent, self.groups_of(device))

    def waiting(self, queue: str) -> list[GroupCall]:
        """The callers waiting in ``queue``, oldest first (GetCallList)."""
        entries = sorted(self.queue_entries.get(queue, {}).values(), key=lambda e: int(e.get("Position") or 0))
        out = []
        for e in entries:
            c = self.chans.get(e.get("Uniqueid"))
            out.append(GroupCall(c.call_id if c else e.get("Uniqueid"), CS.QUEUED, "", _num(e.get("CallerIDNum"))))
        return out
