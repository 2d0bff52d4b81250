"""The PABX-neutral vocabulary shared by the core and every PABX adapter.

Requests are what the gateway asks a switch to do, named after ECMA-269
(CSTA) services; events are CSTA-style reports about one monitored device.
A PABX adapter turns these into its own wire format and back; nothing here
knows about XML-RPC, AMI or sockets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .codes import Result


class PabxError(Exception):
    """The switch refused a request, or could not be reached.

    ``code`` is already a SmartCTI result code (smartcti.md §2); ``detail``
    says what happened, for the operator's log.
    """

    def __init__(self, code: Result | int, detail: str = ""):
        super().__init__(detail or Result(code).name)
        self.code = Result(code)
        self.detail = detail
        self.result = ""   # the switch's own name for the refusal, when it gave one


class PabxUnavailable(PabxError):
    """The switch could not be asked: connection refused or broken, or no answer in time."""


class Direction(Enum):
    UNKNOWN = "unknown"
    INBOUND = "inbound"      # from outside, or an ACD call
    OUTBOUND = "outbound"    # dialled by the device
    DIALLER = "dialler"      # delivered by a predictive dialler
    INTERNAL = "internal"    # extension to extension


class ConnectionState(Enum):
    """CSTA LocalConnectionState of one device in one call."""

    NULL = "null"
    INITIATED = "initiated"
    ALERTING = "alerting"
    CONNECTED = "connected"
    HELD = "held"
    QUEUED = "queued"
    FAILED = "failed"


class AgentState(Enum):
    LOGGED_OFF = "logged_off"
    LOGGED_ON = "logged_on"      # logged on, neither ready nor paused yet
    READY = "ready"
    NOT_READY = "not_ready"
    WORK_AFTER_CALL = "work_after_call"
    BUSY = "busy"


# --------------------------------------------------------------- requests
@dataclass(frozen=True)
class Request:
    """Base of every request; ``device`` is the device acting."""

    device: str


@dataclass(frozen=True)
class MonitorStart(Request):
    pass


@dataclass(frozen=True)
class MonitorStop(Request):
    pass


@dataclass(frozen=True)
class MakeCall(Request):
    number: str
    route: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class AnswerCall(Request):
    call_id: str = ""


@dataclass(frozen=True)
class ClearConnection(Request):
    call_id: str = ""


@dataclass(frozen=True)
class HoldCall(Request):
    call_id: str = ""


@dataclass(frozen=True)
class RetrieveCall(Request):
    call_id: str = ""


@dataclass(frozen=True)
class AlternateCall(Request):
    pass


@dataclass(frozen=True)
class ConsultationCall(Request):
    number: str
    route: str = ""


@dataclass(frozen=True)
class TransferCall(Request):
    """Completes a consultation: held and active calls are joined, the device leaves."""


@dataclass(frozen=True)
class ConferenceCall(Request):
    """Joins the held and the active call into one call with the device in it."""


@dataclass(frozen=True)
class SingleStepTransfer(Request):
    number: str
    call_id: str = ""


@dataclass(frozen=True)
class ImmediateTransfer(Request):
    """Moves the device's call (ringing or connected) to another number at once."""

    number: str
    call_id: str = ""


@dataclass(frozen=True)
class SetForwarding(Request):
    """Follow-me ("Siga-me"): an empty number cancels forwarding."""

    number: str


@dataclass(frozen=True)
class StartRecording(Request):
    call_id: str = ""
    protocol: str = ""         # the call's ANS protocol: part of the recording's file name


@dataclass(frozen=True)
class StopRecording(Request):
    call_id: str = ""


@dataclass(frozen=True)
class AttachCallData(Request):
    """Put ``name=value`` on the call at the PABX (the ANS protocol), where the PABX can carry it."""

    call_id: str = ""
    name: str = ""
    value: str = ""


@dataclass(frozen=True)
class SetAgentState(Request):
    agent_id: str
    groups: tuple[str, ...]
    state: AgentState  # LOGGED_ON, LOGGED_OFF, READY or NOT_READY
    password: str = field(default="", repr=False)
    reason: str = ""   # NOT_READY: the PABX's own pause reason (pause_reasons[].pabx, wrap_up.reason)


@dataclass(frozen=True)
class QueryAgentState(Request):
    pass


@dataclass(frozen=True)
class SnapshotDevice(Request):
    pass


@dataclass(frozen=True)
class QueryGroupCalls(Request):
    """``device`` carries the ACD group number."""


@dataclass(frozen=True)
class QuerySystemStatus(Request):
    device: str = ""


@dataclass(frozen=True)
class QueryVersion(Request):
    device: str = ""


# ---------------------------------------------------------------- replies
@dataclass(frozen=True)
class CallInfo:
    """One call as the switch sees it from one device (SnapshotDevice)."""

    call_id: str
    state: ConnectionState
    calling: str = ""          # ANI
    called: str = ""           # DNIS, the number originally dialled
    other_devices: tuple[str, ...] = ()
    group: str = ""            # last redirection: the ACD group
    trunks: str = ""
    category: str = ""
    data: str = ""
    direction: Direction = Direction.UNKNOWN
    protocol: str = ""         # the ANS attendance protocol the call carries (a channel variable)


@dataclass(frozen=True)
class AgentInfo:
    state: AgentState
    agent_id: str = ""
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupCall:
    """One call of an ACD group (QueryGroupCalls)."""

    call_id: str
    state: ConnectionState     # QUEUED while waiting for an agent
    device: str = ""           # agent device once delivered, else the caller
    calling: str = ""


# ----------------------------------------------------------------- events
class CallEventType(Enum):
    SERVICE_INITIATED = "service_initiated"
    ORIGINATED = "originated"
    DELIVERED = "delivered"
    ESTABLISHED = "established"
    FAILED = "failed"
    HELD = "held"
    RETRIEVED = "retrieved"
    CONNECTION_CLEARED = "connection_cleared"
    TRANSFERRED = "transferred"
    CONFERENCED = "conferenced"
    DIVERTED = "diverted"


@dataclass(frozen=True)
class CallEvent:
    """A report about ``call_id`` for the monitored ``device``.

    ``other_device`` is the party the event is about when it is not the
    monitored device (the alerting device of an outbound call, the answering
    or releasing device, the transfer target). ``old_call_id`` is set when a
    transfer or conference re-keys a call.
    """

    type: CallEventType
    device: str
    call_id: str
    calling: str = ""
    called: str = ""
    other_device: str = ""
    old_call_id: str = ""
    group: str = ""
    data: str = ""
    direction: Direction = Direction.UNKNOWN
    cause: Result = Result.SUCCESS
    trunks: str = ""
    category: str = ""
    protocol: str = ""         # the ANS attendance protocol, when the PABX carries it (Asterisk: PROTOCOLO_ANS)
    variables: tuple[tuple[str, str], ...] = ()   # call variables the PABX reported (Asterisk: ChanVariable)


class AgentEventType(Enum):
    LOGGED_ON = "logged_on"
    LOGGED_OFF = "logged_off"
    READY = "ready"
    NOT_READY = "not_ready"
    WORK_AFTER_CALL = "work_after_call"


@dataclass(frozen=True)
class AgentEvent:
    type: AgentEventType
    device: str
    agent_id: str = ""
    groups: tuple[str, ...] = ()
    reason: str = ""


PabxEvent = CallEvent | AgentEvent


# ------------------------------------------------- queues and supervision
class QueueEventKind(Enum):
    JOINED = "joined"          # a caller began to wait in the group's queue
    ANSWERED = "answered"      # an agent took it (Asterisk: AgentConnect; Dígitro: it reached an agent)
    ABANDONED = "abandoned"    # the caller hung up while waiting
    LEFT = "left"              # no longer waiting, for whatever reason (answered, abandoned, timeout...)


@dataclass(frozen=True)
class QueueEvent:
    """A report about an ACD group's queue, not about a monitored device: the link hands it to its
    queue statistics (core/queues.py), never to the notifier, so Protheus never hears of it.

    ``call_id`` is the id the calls have for the core (Asterisk: the Linkedid), so a waiting call can
    be matched to the agent's call it becomes. ``waited`` is the seconds in the queue when the PABX
    says (Asterisk's HoldTime); ``agent`` the device that answered, when known.
    """

    kind: QueueEventKind
    group: str
    call_id: str
    calling: str = ""
    waited: float | None = None
    agent: str = ""

    @property
    def device(self) -> str:
        """No device: the per-device notifier (which ignores events for unknown devices) drops it."""
        return ""


SPY_MODES = ("listen", "whisper", "barge")


@dataclass(frozen=True)
class Spy(Request):
    """The supervisor at ``device`` listens to (``listen``), talks to the agent only (``whisper``) or
    to both parties (``barge``) of ``target``'s call; the supervisor's phone rings first."""

    target: str
    mode: str = "listen"
