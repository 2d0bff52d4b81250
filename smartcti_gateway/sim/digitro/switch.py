"""A simulated Dígitro NGC: the switch's world model, with no I/O.

The simulator speaks the XML-RPC dialect of docs/digitro-xmlrpc.md and takes
every wire name from a :class:`Dialect`, so a site's overrides apply to the
gateway and to the simulator alike. This module holds extensions, ACD groups,
agents, calls and listener channels; it turns one XML-RPC call (already
unmarshalled) into one answer and hands events to an ``EventSink``, or keeps
them for poll_events. The dialect's shape sections (params, types, replies,
returns, event_methods, event_params, transport) say how both look on the wire:
``shape`` reads and writes them, so the handlers below only ever see and make
structs of wire member names. The HTTP server, the /sim control API and event
delivery live in ``server``.

Timers (an outside number answering, failing, not answering) use the running
loop's ``call_later``, so every method must be called from inside the loop.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
import xmlrpc.client
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Protocol

from ...configread import ConfigError
from ...core.pabx import AgentState, ConnectionState, Direction
from ...pabx.digitro.dialect import CHANNEL_UNKNOWN, Dialect
from .shape import Shape, refusal_key, success_key

try:
    from ... import __version__ as _PACKAGE_VERSION
except ImportError:  # pragma: no cover - package metadata missing
    _PACKAGE_VERSION = "0"

log = logging.getLogger(__name__)

CS = ConnectionState

# XML-RPC faultCodes (a fault is only for what is not a call at all).
FAULT_UNKNOWN_METHOD = 1
FAULT_BAD_REQUEST = 2
FAULT_INTERNAL = 3

OUTCOMES = ("answer", "busy", "no-answer", "invalid")
TRUNK = "T01"
CATEGORY = "1"
MAX_FORWARD_HOPS = 5
MAX_POLLED = 10_000     # events waiting for poll_events per channel (transport.events: poll); oldest dropped
RECENT_CALLS = 1_000    # XML-RPC calls kept in Simulator.recent

# Refusal names the simulator uses: default result names. Each is answered as the site's own key for its
# SmartCTI code (dialect.results, e.g. "105": 10 for OCUPADO) if the site added one, else as itself.
REFUSALS = (
    "DISPOSITIVO_INVALIDO", "SENHA_INVALIDA", "AGENTE_INVALIDO", "GRUPO_INVALIDO", "AGENTE_EM_USO",
    "NUMERO_INVALIDO", "OCUPADO", "NAO_ATENDE", "SEM_CHAMADA", "SEM_CHAMADA_EM_ESPERA",
    "CHAMADA_INVALIDA", "ESTADO_INVALIDO", "FORA_DE_SERVICO", "ERRO_INTERNO",
)

# Party kinds
DEVICE, OUTSIDE, GROUP = "device", "outside", "group"


# ------------------------------------------------------------------ options
@dataclass
class SimulatorOptions:
    """What the simulated switch has and how outside numbers behave."""

    extensions: str = "2001-2010,3001-3005"   # number plan: ranges and single numbers
    groups: str = "701-705"                   # ACD groups
    agents: dict[str, str] = field(default_factory=dict)  # agent -> password; empty accepts any agent
    answer_after: float = 1.0                 # s before an outside number answers (or is busy)
    ring_timeout: float = 5.0                 # s before an unanswered outside number fails NAO_ATENDE
    busy_numbers: tuple[str, ...] = ()
    no_answer_numbers: tuple[str, ...] = ()
    # False: like some switches, say nothing about agent changes made by a command (log on/off,
    # ready, not ready); changes made on the phone are reported as always
    agent_events_on_commands: bool = True
    version: str = _PACKAGE_VERSION


def parse_plan(spec: Any, key: str) -> list[str]:
    """``"2001-2010,3001"`` (or a list of such items) -> the numbers, in order, without repeats."""
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    out: dict[str, None] = {}
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        low, sep, high = item.partition("-")
        low, high = low.strip(), (high.strip() if sep else low.strip())
        if not (low.isdigit() and high.isdigit()) or int(low) > int(high):
            raise ValueError(f"{key}: {item!r} is not a number or a range like 2001-2010")
        if int(high) - int(low) > 100_000 or len(out) > 100_000:
            raise ValueError(f"{key}: {item!r} is too large a range")
        for n in range(int(low), int(high) + 1):
            out[str(n).zfill(len(low))] = None
    if not out:
        raise ValueError(f"{key}: empty")
    return list(out)


def _number_list(value: Any, key: str) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    out = tuple(str(i).strip() for i in items if str(i).strip())
    for n in out:
        if not n.isdigit():
            raise ValueError(f"{key}: {n!r} is not a phone number (digits only)")
    return out


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected seconds, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected seconds, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{key}: expected a non-negative number of seconds, got {value!r}")
    return v


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return value


def validate_options(o: SimulatorOptions) -> SimulatorOptions:
    """A normalised copy of ``o``; ValueError names the bad key."""
    ext = parse_plan(o.extensions, "extensions")
    groups = parse_plan(o.groups, "groups")
    clash = set(ext) & set(groups)
    if clash:
        raise ValueError(f"groups: {', '.join(sorted(clash))} also in extensions")
    if not isinstance(o.agents, Mapping):
        raise ValueError("agents: expected a mapping agent -> password")
    return SimulatorOptions(
        extensions=",".join(ext) if not isinstance(o.extensions, str) else o.extensions,
        groups=",".join(groups) if not isinstance(o.groups, str) else o.groups,
        agents={str(k): "" if v is None else str(v) for k, v in o.agents.items()},
        answer_after=_seconds(o.answer_after, "answer_after"),
        ring_timeout=_seconds(o.ring_timeout, "ring_timeout"),
        busy_numbers=_number_list(o.busy_numbers, "busy_numbers"),
        no_answer_numbers=_number_list(o.no_answer_numbers, "no_answer_numbers"),
        agent_events_on_commands=_flag(o.agent_events_on_commands, "agent_events_on_commands"),
        version=str(o.version),
    )


def options_from_mapping(m: Mapping[str, Any] | None) -> SimulatorOptions:
    """Options from the gateway YAML's ``simulator.options``; ValueError names the bad key."""
    if m is None:
        return SimulatorOptions()
    if not isinstance(m, Mapping):
        raise ValueError("expected a mapping of simulator options")
    known = [f.name for f in fields(SimulatorOptions)]
    for key in m:
        if key not in known:
            raise ValueError(f"unknown key {key!r}; known: {', '.join(known)}")
    kwargs = dict(m)
    for key in ("extensions", "groups"):
        if key in kwargs and isinstance(kwargs[key], int):
            kwargs[key] = str(kwargs[key])
    if "agents" in kwargs and kwargs["agents"] is None:
        kwargs["agents"] = {}
    return validate_options(SimulatorOptions(**kwargs))


def options_from_config(options: Mapping[str, Any], where: str) -> SimulatorOptions:
    """``simulator.options`` of the gateway's config (``where``: its file and line); ConfigError if wrong."""
    try:
        return options_from_mapping(options)
    except ValueError as e:
        raise ConfigError(f"{where}: simulator.options: {e}") from None


def _wire_name(table: Mapping[str, Any], value: Any) -> str:
    """The wire name of ``value``: the last entry wins, so a site's added name
    (``events: {TOCANDO: delivered}``) is what the simulator sends."""
    names = [k for k, v in table.items() if v == value]
    if not names:
        raise KeyError(value)
    return names[-1]


# -------------------------------------------------------------------- model
class Refusal(Exception):
    """A refusal, ``name`` one of REFUSALS: answered as the dialect's key for it (``RESULTADO`` = ``name`` in
    the default dialect; a Fault 105 for OCUPADO in one that refuses with numeric faults)."""

    def __init__(self, name: str, message: str = ""):
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name
        self.message = message or name


class ControlError(Exception):
    """A /sim control request that cannot be done; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class EventSink(Protocol):
    def deliver(self, channel: int, url: str, event: dict[str, Any]) -> None: ...
    def close(self, channel: int) -> None: ...


@dataclass(eq=False)
class Party:
    """One party of a call: an extension, an outside number or an ACD group (queued)."""

    name: str
    kind: str
    state: ConnectionState
    call: "Call"
    timer: asyncio.TimerHandle | None = None
    held_at: int = 0


@dataclass(eq=False)
class Call:
    call_id: str
    seq: int
    direction: Direction
    ani: str
    dnis: str
    group: str = ""
    data: str = ""
    trunks: str = ""
    category: str = ""
    parties: dict[str, Party] = field(default_factory=dict)
    recording: bool = False
    alive: bool = True


@dataclass(eq=False)
class Device:
    name: str
    agent: str = ""
    agent_state: AgentState = AgentState.LOGGED_OFF  # LOGGED_OFF, LOGGED_ON, READY or NOT_READY
    groups: list[str] = field(default_factory=list)
    forward_to: str = ""
    ready_since: int = 0


@dataclass(eq=False)
class Channel:
    """A listener: its events are posted to ``url``, or wait in ``pending`` for poll_events
    (transport.events: poll). Channel 0 is every monitor of a dialect without register_listener."""

    id: int
    url: str
    devices: set[str] = field(default_factory=set)
    sequence: int = 0
    pending: collections.deque = field(default_factory=collections.deque)
    polled: int = 0         # events answered by poll_events
    dropped: int = 0        # events dropped from a full ``pending``


class Simulator:
    """The switch. No sockets: ``handle`` answers one XML-RPC call, events go to ``sink``."""

    def __init__(self, options: SimulatorOptions | None = None, dialect: Dialect | None = None,
                 clock: Callable[[], float] = time.time):
        self.options = validate_options(options or SimulatorOptions())
        self.dialect = dialect or Dialect()
        self.clock = clock
        self.sink: EventSink | None = None
        self.port: int | None = None    # set by start_simulator
        self.url: str | None = None
        self._by_phone = False          # the call being handled comes from the phone's keys

        d = self.dialect
        self.F = d.fields
        try:
            self._ev = {n: _wire_name(d.events, n) for n in (
                "service_initiated", "originated", "delivered", "established", "failed", "held", "retrieved",
                "connection_cleared", "transferred", "conferenced", "diverted",
                "logged_on", "logged_off", "ready", "not_ready")}
            self._cs = {s: _wire_name(d.call_states, s) for s in (
                CS.INITIATED, CS.ALERTING, CS.CONNECTED, CS.HELD, CS.QUEUED, CS.FAILED)}
            self._as = {s: _wire_name(d.agent_states, s) for s in (
                AgentState.LOGGED_OFF, AgentState.LOGGED_ON, AgentState.READY, AgentState.NOT_READY,
                AgentState.BUSY)}
            self._dir = {s: _wire_name(d.directions, s) for s in (
                Direction.INBOUND, Direction.OUTBOUND, Direction.DIALLER, Direction.INTERNAL)}
        except KeyError as e:
            raise ValueError(f"the dialect has no name for {e.args[0]!r}") from None
        # how results are said: the default names, or the site's own keys for their codes ("0", "105")
        self.shape = Shape(d)
        self.ok = success_key(d)
        self._result = {r: refusal_key(d, r) for r in REFUSALS}
        missing = [r for r, key in self._result.items() if key is None]
        if missing:
            raise ValueError(f"the dialect's results lack {', '.join(missing)}")
        self._result[CHANNEL_UNKNOWN] = CHANNEL_UNKNOWN     # the driver knows it by name: register again
        self._int_call_ids = d.types.get("call_id") == "int"

        self.devices = {e: Device(e) for e in parse_plan(self.options.extensions, "extensions")}
        self.queues: dict[str, list[str]] = {g: [] for g in parse_plan(self.options.groups, "groups")}
        self.calls: dict[str, Call] = {}
        self.channels: dict[int, Channel] = {}
        self.outcomes: dict[str, tuple[str, float]] = {}
        self._call_counter = 0
        self._channel_counter = 0
        self._tick = 0
        # the last XML-RPC calls as received: (method, params, answer or the Fault raised)
        self.recent: collections.deque[tuple[str, tuple, Any]] = collections.deque(maxlen=RECENT_CALLS)
        # without register_listener there is no listener to register: every monitor is channel 0's
        self._global: Channel | None = None
        if not d.methods.get("register_listener"):
            self._global = self.channels[0] = Channel(0, "")

        self._handlers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {}
        self._logical: dict[str, str] = {}
        for logical, wire in d.methods.items():
            handler = getattr(self, f"_m_{logical}", None)
            if handler is not None and wire:
                self._handlers[wire] = handler
                self._logical[wire] = logical

    # ============================================================ XML-RPC
    def handle(self, method: str, params: tuple, *, phone: bool = False) -> Any:
        """The answer of one XML-RPC call, shaped as the dialect says (default: a struct with RESULTADO);
        raises xmlrpc.client.Fault for a non-call, and for a refusal in a dialect that refuses with one.
        ``phone``: the same change made on the phone's keys, not asked by a command."""
        try:
            answer = self._handle(method, params, phone)
        except xmlrpc.client.Fault as f:
            self.recent.append((method, params, f))
            raise
        self.recent.append((method, params, answer))
        return answer

    def _handle(self, method: str, params: tuple, phone: bool) -> Any:
        handler = self._handlers.get(method)
        if handler is None:
            raise xmlrpc.client.Fault(FAULT_UNKNOWN_METHOD, f"unknown method {method!r}")
        logical = self._logical[method]
        try:
            args = self.shape.args(logical, params)
        except ValueError as e:
            raise xmlrpc.client.Fault(FAULT_BAD_REQUEST, f"{method} {e}") from None
        if args is None:
            if not params:
                args = {}
            elif isinstance(params[0], dict):
                args = self.shape.struct_args(params[0])
            else:
                raise xmlrpc.client.Fault(FAULT_BAD_REQUEST, f"{method} takes one struct")
        try:
            out = self._invoke(handler, args, phone, method)
        except Refusal as r:
            return self.shape.refusal(logical, self._result[r.name], r.message)
        if logical == "poll_events":    # the events themselves, whatever the reply style
            return out
        return self.shape.answer(logical, self.ok, out)

    def _invoke(self, handler: Callable[[Mapping[str, Any]], Any], args: Mapping[str, Any], phone: bool,
                method: str) -> Any:
        """Run one handler on ``args`` (wire member names); raises Refusal, also for a simulator bug."""
        self._by_phone = phone
        try:
            return handler(args)
        except Refusal:
            raise
        except Exception as e:  # noqa: BLE001 - a simulator bug must not kill the request
            log.exception("simulator: %s failed", method)
            raise Refusal("ERRO_INTERNO", f"simulator error: {e}") from None
        finally:
            self._by_phone = False
            self._settle()

    def phone(self, logical: str, **values: str) -> str:
        """The agent's feature keys on the phone (``logical``: agent_login, agent_ready, ...; ``values`` by
        logical field): the switch changes state without being asked. Returns the success result;
        ControlError 409 "<result>: <message>" when the switch refuses."""
        handler = getattr(self, f"_m_{logical}", None)
        if handler is None:
            raise ControlError(400, f"no phone key does {logical}")
        try:
            self._invoke(handler, {self.F[k]: v for k, v in values.items()}, True, f"phone {logical}")
        except Refusal as r:
            raise ControlError(409, f"{self._result[r.name]}: {r.message}") from None
        return self.ok

    # ------------------------------------------------------------ helpers
    def _arg(self, a: Mapping[str, Any], logical: str) -> str:
        v = a.get(self.F[logical], "")
        if isinstance(v, bool):
            return ""
        if isinstance(v, (str, int)):
            return str(v).strip()
        return ""

    def _device(self, a: Mapping[str, Any]) -> Device:
        name = self._arg(a, "device")
        dev = self.devices.get(name)
        if dev is None:
            raise Refusal("DISPOSITIVO_INVALIDO", f"{name!r} is not an extension of this switch")
        return dev

    def _groups_arg(self, a: Mapping[str, Any], required: bool) -> list[str]:
        groups = list(dict.fromkeys(g.strip() for g in self._arg(a, "groups").split(",") if g.strip()))
        for g in groups:
            if g not in self.queues:
                raise Refusal("GRUPO_INVALIDO", f"{g!r} is not an ACD group of this switch")
        if required and not groups:
            raise Refusal("GRUPO_INVALIDO", "no ACD group given")
        return groups

    def _channel(self, a: Mapping[str, Any]) -> Channel:
        if self._global is not None:     # no listener to name: the one every monitor belongs to
            return self._global
        text = self._arg(a, "channel")
        ch = self.channels.get(int(text)) if text.isdigit() else None
        if ch is None:
            raise Refusal("FORA_DE_SERVICO", f"no listener channel {text!r}; register again")
        return ch

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick

    def _parties_of(self, name: str) -> list[Party]:
        return [c.parties[name] for c in self.calls.values() if name in c.parties]

    def _has_calls(self, name: str) -> bool:
        return any(name in c.parties for c in self.calls.values())

    def _active(self, name: str) -> Party | None:
        return next((p for p in self._parties_of(name) if p.state in (CS.CONNECTED, CS.INITIATED)), None)

    def _held(self, name: str) -> Party | None:
        held = [p for p in self._parties_of(name) if p.state is CS.HELD]
        return max(held, key=lambda p: p.held_at) if held else None

    def _pick(self, name: str, call_id: str, states: tuple[ConnectionState, ...],
              none: str = "SEM_CHAMADA", wrong: str = "ESTADO_INVALIDO") -> Party:
        """The device's call named ``call_id``, or its first call in ``states`` (by preference)."""
        mine = self._parties_of(name)
        if call_id:
            for p in mine:
                if p.call.call_id == call_id:
                    if p.state not in states:
                        raise Refusal(wrong, f"call {call_id} is {self._cs[p.state]} at {name}")
                    return p
            raise Refusal("CHAMADA_INVALIDA", f"{call_id!r} is not a call of {name}")
        for state in states:
            found = [p for p in mine if p.state is state]
            if found:
                return max(found, key=lambda p: p.held_at) if state is CS.HELD else found[0]
        raise Refusal(none, f"{name} has no {'/'.join(self._cs[s] for s in states)} call")

    def _devices_in(self, call: Call) -> list[str]:
        return [p.name for p in call.parties.values() if p.kind == DEVICE]

    def _kind(self, number: str) -> str:
        if number in self.devices:
            return DEVICE
        return GROUP if number in self.queues else OUTSIDE

    def _outcome(self, number: str) -> tuple[str, float]:
        if number in self.outcomes:
            return self.outcomes[number]
        o = self.options
        if number in o.busy_numbers:
            return "busy", o.answer_after
        if number in o.no_answer_numbers:
            return "no-answer", o.ring_timeout
        return "answer", o.answer_after

    def _forward_chain(self, target: str, call: Call | None = None) -> list[str]:
        """``[target, hop1, ...]``: where a call to ``target`` ends up after follow-me."""
        chain = [target]
        while len(chain) <= MAX_FORWARD_HOPS:
            dev = self.devices.get(chain[-1])
            nxt = dev.forward_to if dev else ""
            if not nxt or nxt in chain or (call is not None and nxt in call.parties):
                break
            chain.append(nxt)
        return chain

    def _check_destination(self, number: str, caller: str, call: Call | None = None) -> None:
        """Refuse at once what a real NGC refuses at once: bad number, busy extension, invalid number."""
        if not number.isdigit():
            raise Refusal("NUMERO_INVALIDO", f"{number!r} is not a phone number")
        if number == caller or (call is not None and number in call.parties):
            raise Refusal("NUMERO_INVALIDO", f"{number} is already in the call")
        final = self._forward_chain(number)[-1]
        kind = self._kind(final)
        if kind == DEVICE and self._has_calls(final):
            raise Refusal("OCUPADO", f"extension {final} is busy")
        if kind == OUTSIDE and self._outcome(final)[0] == "invalid":
            raise Refusal("NUMERO_INVALIDO", f"{final} does not exist")

    # ------------------------------------------------------------- events
    def _emit(self, device: str, event: str, members: dict[str, Any]) -> None:
        F = self.F
        stamp = None
        for ch in self.channels.values():
            if device not in ch.devices:
                continue
            if stamp is None:
                stamp = time.strftime("%d/%m/%Y %H:%M:%S", time.localtime(self.clock()))
            ch.sequence += 1
            struct = {F["event"]: self._ev[event], F["channel"]: ch.id, F["sequence"]: ch.sequence,
                      F["timestamp"]: stamp, F["device"]: device, **members}
            if self.dialect.polled:     # kept for poll_events; a full queue loses its oldest
                if len(ch.pending) >= MAX_POLLED:
                    ch.pending.popleft()
                    ch.dropped += 1
                ch.pending.append(struct)
            elif self.sink is not None:
                self.sink.deliver(ch.id, ch.url, struct)

    def _emit_call(self, device: str, event: str, call: Call, other: str = "", old: str = "",
                   cause: str = "") -> None:
        F = self.F
        members = {
            F["call_id"]: call.call_id, F["direction"]: self._dir[call.direction],
            F["calling"]: call.ani, F["called"]: call.dnis, F["other_device"]: other,
            F["last_redirection"]: call.group, F["trunks"]: call.trunks,
            F["category"]: call.category, F["data"]: call.data,
        }
        if old:
            members[F["old_call_id"]] = old
        if cause:
            members[F["cause"]] = self._result[cause]
        self._emit(device, event, members)

    def _emit_agent(self, dev: Device, event: str, reason: str | None = None, command: bool = False) -> None:
        if command and not self._by_phone and not self.options.agent_events_on_commands:
            return
        members = {self.F["agent"]: dev.agent, self.F["groups"]: ",".join(dev.groups)}
        if reason is not None:
            members[self.F["reason"]] = reason
        self._emit(dev.name, event, members)

    # ---------------------------------------------------------- call core
    def _new_call(self, direction: Direction, ani: str, dnis: str, data: str = "",
                  outside: bool = False) -> Call:
        self._call_counter += 1
        if self._int_call_ids:        # types.call_id: int -> a number, held as text like any call id
            call_id = str(self._call_counter)
        else:
            stamp = time.strftime("%d/%m/%y %H:%M:%S", time.localtime(self.clock()))
            call_id = f"{stamp} 010A {self._call_counter % 10000:04d}/00"
            while call_id in self.calls:  # a wrapped counter within one second
                self._call_counter += 1
                call_id = f"{stamp} 010A {self._call_counter % 10000:04d}/00"
        call = Call(call_id, self._call_counter, direction, ani, dnis, data=data,
                    trunks=TRUNK if outside else "", category=CATEGORY if outside else "")
        self.calls[call_id] = call
        return call

    def _add_party(self, call: Call, name: str, kind: str, state: ConnectionState) -> Party:
        party = Party(name, kind, state, call)
        call.parties[name] = party
        return party

    def _remove_party(self, call: Call, name: str) -> Party | None:
        """Take ``name`` out of ``call`` without events."""
        party = call.parties.pop(name, None)
        if party is None:
            return None
        if party.timer is not None:
            party.timer.cancel()
            party.timer = None
        if party.kind == GROUP and call.call_id in self.queues.get(name, ()):
            self.queues[name].remove(call.call_id)
        if party.kind == DEVICE and not self._has_calls(name):
            self.devices[name].ready_since = self._next_tick()  # idle from now: longest-idle order
        return party

    def _drop_call(self, call: Call) -> None:
        for name in list(call.parties):
            self._remove_party(call, name)
        call.alive = False
        self.calls.pop(call.call_id, None)

    def _leave(self, call: Call, name: str) -> None:
        """``name`` leaves ``call``: it (if an extension) gets CHAMADA_FINALIZADA; if the call
        ends, so does every extension still in it. A conference goes on silently."""
        party = self._remove_party(call, name)
        if party is None:
            return
        if party.kind == DEVICE:
            self._emit_call(name, "connection_cleared", call, other=name)
        if len(call.parties) < 2:
            for dev in self._devices_in(call):
                self._emit_call(dev, "connection_cleared", call, other=name)
            self._drop_call(call)

    def _deliver(self, call: Call, target: str) -> None:
        """Offer ``call`` to ``target``: ring an extension (after follow-me), queue at a group,
        or ring an outside number, whose outcome then plays out on a timer."""
        chain = self._forward_chain(target, call)
        for frm, to in zip(chain, chain[1:]):
            self._emit_call(frm, "diverted", call, other=to)
        name = chain[-1]
        if name in call.parties:  # callers check this; never leave a call with one party
            log.warning("simulator: %s is already in call %s", name, call.call_id)
            if len(call.parties) < 2:
                for dev in self._devices_in(call):
                    self._emit_call(dev, "connection_cleared", call, other=dev)
                self._drop_call(call)
            return
        kind = self._kind(name)
        if kind == GROUP:
            self._add_party(call, name, GROUP, CS.QUEUED)
            self.queues[name].append(call.call_id)
            call.group = name
            return
        if kind == OUTSIDE:
            outcome, after = self._outcome(name)
            if outcome == "invalid":
                party = self._add_party(call, name, OUTSIDE, CS.FAILED)
                self._fail(party, "NUMERO_INVALIDO")
                return
        party = self._add_party(call, name, kind, CS.ALERTING)
        self._announce_ringing(call, name)
        if kind == DEVICE:
            return
        if outcome == "answer":
            self._schedule(party, after, self._far_answers)
        elif outcome == "busy":
            self._schedule(party, after, lambda p: self._fail(p, "OCUPADO"))
        else:
            self._schedule(party, after, lambda p: self._fail(p, "NAO_ATENDE"))

    def _announce_ringing(self, call: Call, name: str) -> None:
        """CHAMADA_TOCANDO about ``name`` to the other extensions of the call, then to ``name``."""
        for dev in self._devices_in(call):
            if dev != name:
                self._emit_call(dev, "delivered", call, other=name)
        if name in self.devices:
            self._emit_call(name, "delivered", call, other=name)

    def _schedule(self, party: Party, delay: float, action: Callable[[Party], None]) -> None:
        loop = asyncio.get_running_loop()
        party.timer = loop.call_later(max(0.0, delay), self._fire, party, action)

    def _fire(self, party: Party, action: Callable[[Party], None]) -> None:
        party.timer = None
        call = party.call
        if not call.alive or call.parties.get(party.name) is not party or party.state is not CS.ALERTING:
            return
        try:
            action(party)
        except Exception:  # noqa: BLE001
            log.exception("simulator: timer for %s failed", party.name)
        self._settle()

    def _far_answers(self, party: Party) -> None:
        party.state = CS.CONNECTED
        for dev in self._devices_in(party.call):
            self._emit_call(dev, "established", party.call, other=party.name)

    def _fail(self, party: Party, cause: str) -> None:
        """The outside party failed (busy, no answer, invalid): report it, then clear it."""
        party.state = CS.FAILED
        call = party.call
        for dev in self._devices_in(call):
            self._emit_call(dev, "failed", call, other=party.name, cause=cause)
        self._leave(call, party.name)

    def _originate(self, caller: str, number: str) -> Call:
        outside = self._kind(number) == OUTSIDE
        call = self._new_call(Direction.OUTBOUND if outside else Direction.INTERNAL, caller, number,
                              outside=outside)
        me = self._add_party(call, caller, DEVICE, CS.INITIATED)
        self._emit_call(caller, "service_initiated", call, other=caller)
        me.state = CS.CONNECTED
        self._emit_call(caller, "originated", call, other=number)
        self._deliver(call, number)
        return call

    def _answer(self, party: Party) -> None:
        active = self._active(party.name)
        if active is not None and active is not party:
            self._hold(active)
        party.state = CS.CONNECTED
        for dev in self._devices_in(party.call):
            self._emit_call(dev, "established", party.call, other=party.name)

    def _hold(self, party: Party) -> None:
        party.state = CS.HELD
        party.held_at = self._next_tick()
        self._emit_call(party.name, "held", party.call, other=party.name)

    def _retrieve(self, party: Party) -> None:
        party.state = CS.CONNECTED
        self._emit_call(party.name, "retrieved", party.call, other=party.name)

    def _merge(self, keep: Call, gone: Call) -> list[Party]:
        """Move every party of ``gone`` into ``keep``; ``gone`` disappears."""
        moved = []
        for name, party in list(gone.parties.items()):
            if name in keep.parties:  # the same number in both: keep one
                self._remove_party(gone, name)
                continue
            gone.parties.pop(name)
            party.call = keep
            keep.parties[name] = party
            if party.kind == GROUP:
                q = self.queues[name]
                q[q.index(gone.call_id)] = keep.call_id
            moved.append(party)
        keep.recording = keep.recording or gone.recording
        gone.alive = False
        self.calls.pop(gone.call_id, None)
        return moved

    def _transfer_away(self, party: Party, dest: str) -> None:
        """Blind transfer: the device leaves, the rest of the call is offered to ``dest``."""
        call, me = party.call, party.name
        self._remove_party(call, me)
        self._emit_call(me, "connection_cleared", call, other=me)
        for dev in self._devices_in(call):
            self._emit_call(dev, "transferred", call, other=dest)
        self._deliver(call, dest)

    # ------------------------------------------------------------- ACD
    def _free_agent(self, group: str) -> Device | None:
        # A forwarded device gets no ACD call: its agent is not at the desk (and a
        # follow-me back to a group would loop).
        free = [d for d in self.devices.values()
                if d.agent and group in d.groups and d.agent_state is AgentState.READY
                and not d.forward_to and not self._has_calls(d.name)]
        return min(free, key=lambda d: d.ready_since) if free else None

    def _settle(self) -> None:
        """Deliver queued calls to free agents, oldest call first, longest-idle agent first."""
        try:
            for _ in range(10_000):
                best = None
                for group, queue in self.queues.items():
                    if not queue:
                        continue
                    agent = self._free_agent(group)
                    call = self.calls.get(queue[0])
                    if agent is None or call is None:
                        continue
                    if best is None or call.seq < best[0].seq:
                        best = (call, group, agent)
                if best is None:
                    return
                call, group, agent = best
                self._remove_party(call, group)
                call.group = group
                self._deliver(call, agent.name)
        except Exception:  # noqa: BLE001
            log.exception("simulator: ACD dispatch failed")

    def _agent_state(self, dev: Device) -> AgentState:
        if dev.agent_state is not AgentState.LOGGED_OFF and self._has_calls(dev.name):
            return AgentState.BUSY
        return dev.agent_state

    def _agent_of(self, name: str) -> Device | None:
        return next((d for d in self.devices.values() if d.agent == name), None)

    # ================================================== XML-RPC methods
    # listeners
    def _m_register_listener(self, a):
        url = self._arg(a, "callback_url")
        polled = self.dialect.polled and not url     # its events are asked for: no URL needed
        if not polled and not url.startswith(("http://", "https://")):
            raise Refusal("ERRO_INTERNO", f"{self.F['callback_url']} must be an http(s) URL")
        for ch in [c for c in self.channels.values() if c.url == url and not polled]:
            self._close_channel(ch)  # a restarted listener replaces its old channel
        self._channel_counter += 1
        ch = self.channels[self._channel_counter] = Channel(self._channel_counter, url)
        return {self.F["channel"]: ch.id}

    def _close_channel(self, ch: Channel) -> None:
        self.channels.pop(ch.id, None)
        if self.sink is not None:
            self.sink.close(ch.id)

    def _m_unregister_listener(self, a):
        self._close_channel(self._channel(a))
        return {}

    def _m_poll_events(self, a):
        """transport.events: poll -- the channel's events since the last poll, oldest first, each shaped as
        the dialect says (a struct, a positional list, or [method, *params] with event_methods)."""
        ch = self._channel(a)
        items = []
        while ch.pending:
            item = self.shape.poll_item(ch.pending.popleft())
            if item is not None:
                items.append(item)
        ch.polled += len(items)
        return items

    def poll_stats(self, channel: int) -> dict[str, int]:
        """What the poll_events queue of ``channel`` did: sent (answered), dropped (queue full), queued."""
        ch = self.channels.get(channel)
        if ch is None:
            return {"sent": 0, "dropped": 0, "queued": 0}
        return {"sent": ch.polled, "dropped": ch.dropped, "queued": len(ch.pending)}

    def _m_monitor_start(self, a):
        ch = self._channel(a)
        ch.devices.add(self._device(a).name)
        return {}

    def _m_monitor_stop(self, a):
        ch = self._channel(a)
        ch.devices.discard(self._device(a).name)
        return {}

    # calls
    def _m_make_call(self, a):
        dev = self._device(a)
        number = self._arg(a, "number")
        if not number.isdigit():
            raise Refusal("NUMERO_INVALIDO", f"{number!r} is not a phone number")
        if self._active(dev.name) is not None:
            raise Refusal("ESTADO_INVALIDO", f"{dev.name} already has a connected call")
        self._check_destination(number, dev.name)
        call = self._originate(dev.name, number)
        return {self.F["call_id"]: call.call_id}

    def _m_answer(self, a):
        dev = self._device(a)
        p = self._pick(dev.name, self._arg(a, "call_id"), (CS.ALERTING,), wrong="SEM_CHAMADA")
        self._answer(p)
        return {}

    def _m_clear(self, a):
        dev = self._device(a)
        p = self._pick(dev.name, self._arg(a, "call_id"),
                       (CS.CONNECTED, CS.INITIATED, CS.ALERTING, CS.HELD, CS.QUEUED, CS.FAILED))
        self._leave(p.call, dev.name)
        return {}

    def _m_hold(self, a):
        dev = self._device(a)
        self._hold(self._pick(dev.name, self._arg(a, "call_id"), (CS.CONNECTED,)))
        return {}

    def _m_retrieve(self, a):
        dev = self._device(a)
        p = self._pick(dev.name, self._arg(a, "call_id"), (CS.HELD,),
                       none="SEM_CHAMADA_EM_ESPERA", wrong="SEM_CHAMADA_EM_ESPERA")
        if self._active(dev.name) is not None:
            raise Refusal("ESTADO_INVALIDO",
                          f"{dev.name} has a connected call; use {self.dialect.methods['alternate']}")
        self._retrieve(p)
        return {}

    def _held_and_active(self, dev: Device) -> tuple[Party, Party]:
        held = self._held(dev.name)
        if held is None:
            raise Refusal("SEM_CHAMADA_EM_ESPERA", f"{dev.name} has no held call")
        active = self._active(dev.name)
        if active is None:
            raise Refusal("SEM_CHAMADA", f"{dev.name} has no connected call")
        return held, active

    def _m_alternate(self, a):
        held, active = self._held_and_active(self._device(a))
        self._hold(active)
        self._retrieve(held)
        return {}

    def _m_consultation(self, a):
        dev = self._device(a)
        number = self._arg(a, "destination")
        active = self._active(dev.name)
        if active is None:
            raise Refusal("SEM_CHAMADA", f"{dev.name} has no connected call to consult from")
        self._check_destination(number, dev.name, active.call)
        self._hold(active)
        call = self._originate(dev.name, number)
        return {self.F["call_id"]: call.call_id}

    def _m_transfer(self, a):
        dev = self._device(a)
        held, active = self._held_and_active(dev)
        kept, consult = held.call, active.call
        self._remove_party(kept, dev.name)
        self._remove_party(consult, dev.name)
        moved = self._merge(kept, consult)
        self._emit_call(dev.name, "connection_cleared", consult, other=dev.name)
        self._emit_call(dev.name, "connection_cleared", kept, other=dev.name)
        target = moved[0].name if moved else ""
        for name in self._devices_in(kept):
            old = consult.call_id if any(p.name == name for p in moved) else ""
            self._emit_call(name, "transferred", kept, other=target, old=old)
        for party in moved:  # a consulted party still ringing rings on in the kept call
            if party.state is CS.ALERTING:
                self._announce_ringing(kept, party.name)
        if len(kept.parties) < 2:
            for name in self._devices_in(kept):
                self._emit_call(name, "connection_cleared", kept, other=dev.name)
            self._drop_call(kept)
        return {}

    def _m_conference(self, a):
        dev = self._device(a)
        held, active = self._held_and_active(dev)
        kept, consult = held.call, active.call
        self._remove_party(consult, dev.name)
        self._merge(kept, consult)
        held.state = CS.CONNECTED
        for name in self._devices_in(kept):
            self._emit_call(name, "conferenced", kept, other=dev.name, old=consult.call_id)
        return {}

    def _m_single_step_transfer(self, a):
        dev = self._device(a)
        p = self._pick(dev.name, self._arg(a, "call_id"), (CS.CONNECTED, CS.HELD))
        dest = self._arg(a, "destination")
        self._check_destination(dest, dev.name, p.call)
        self._transfer_away(p, dest)
        return {}

    def _m_immediate_transfer(self, a):
        dev = self._device(a)
        p = self._pick(dev.name, self._arg(a, "call_id"), (CS.ALERTING, CS.CONNECTED, CS.HELD))
        dest = self._arg(a, "destination")
        self._check_destination(dest, dev.name, p.call)
        if p.state is CS.ALERTING:
            call = p.call
            self._remove_party(call, dev.name)
            self._emit_call(dev.name, "diverted", call, other=dest)
            self._deliver(call, dest)
        else:
            self._transfer_away(p, dest)
        return {}

    def _m_forward(self, a):
        dev = self._device(a)
        dest = self._arg(a, "destination")
        if dest and (not dest.isdigit() or dest == dev.name):
            raise Refusal("NUMERO_INVALIDO", f"cannot forward {dev.name} to {dest!r}")
        dev.forward_to = dest
        return {}

    def _m_start_recording(self, a):
        dev = self._device(a)
        p = self._pick(dev.name, self._arg(a, "call_id"), (CS.CONNECTED,))
        if p.call.recording:
            raise Refusal("ESTADO_INVALIDO", f"call {p.call.call_id} is already being recorded")
        p.call.recording = True
        return {}

    def _m_attach_data(self, a):
        dev = self._device(a)
        p = self._pick(dev.name, self._arg(a, "call_id"), (CS.ALERTING, CS.CONNECTED, CS.HELD))
        p.call.data = self._arg(a, "data")
        return {}

    def _m_stop_recording(self, a):
        dev = self._device(a)
        p = self._pick(dev.name, self._arg(a, "call_id"), (CS.CONNECTED, CS.HELD))
        if not p.call.recording:
            raise Refusal("ESTADO_INVALIDO", f"call {p.call.call_id} is not being recorded")
        p.call.recording = False
        return {}

    # agents
    def _agent_here(self, dev: Device, a) -> None:
        agent = self._arg(a, "agent")
        if not dev.agent:
            raise Refusal("AGENTE_INVALIDO", f"no agent is logged on {dev.name}")
        if agent and agent != dev.agent:
            raise Refusal("AGENTE_INVALIDO", f"agent {agent} is not logged on {dev.name}")
        self._groups_arg(a, required=False)

    def _m_agent_login(self, a):
        dev = self._device(a)
        agent = self._arg(a, "agent")
        if not agent:
            raise Refusal("AGENTE_INVALIDO", "no agent given")
        groups = self._groups_arg(a, required=True)
        if self.options.agents:
            if agent not in self.options.agents:
                raise Refusal("AGENTE_INVALIDO", f"unknown agent {agent}")
            if self._arg(a, "device_password") != self.options.agents[agent]:
                raise Refusal("SENHA_INVALIDA", f"wrong password for agent {agent}")
        where = self._agent_of(agent)
        if where is not None and where is not dev:
            raise Refusal("AGENTE_EM_USO", f"agent {agent} is logged on {where.name}")
        if dev.agent and dev.agent != agent:
            raise Refusal("AGENTE_EM_USO", f"agent {dev.agent} is logged on {dev.name}")
        if dev.agent == agent:  # logging on to more groups
            dev.groups = list(dict.fromkeys(dev.groups + groups))
        else:
            dev.agent, dev.groups, dev.agent_state = agent, groups, AgentState.LOGGED_ON
        self._emit_agent(dev, "logged_on", command=True)
        return {}

    def _m_agent_logout(self, a):
        dev = self._device(a)
        self._agent_here(dev, a)
        self._emit_agent(dev, "logged_off", command=True)
        dev.agent, dev.groups, dev.agent_state = "", [], AgentState.LOGGED_OFF
        return {}

    def _m_agent_ready(self, a):
        dev = self._device(a)
        self._agent_here(dev, a)
        if dev.agent_state is not AgentState.READY:
            dev.agent_state = AgentState.READY
            dev.ready_since = self._next_tick()
        self._emit_agent(dev, "ready", command=True)
        return {}

    def _m_agent_not_ready(self, a):
        dev = self._device(a)
        self._agent_here(dev, a)
        dev.agent_state = AgentState.NOT_READY
        self._emit_agent(dev, "not_ready", reason=self._arg(a, "reason"), command=True)
        return {}

    # queries
    def _m_agent_state(self, a):
        dev = self._device(a)
        return {self.F["agent_state"]: self._as[self._agent_state(dev)], self.F["agent"]: dev.agent,
                self.F["groups"]: ",".join(dev.groups)}

    def _call_struct(self, p: Party) -> dict[str, Any]:
        F, call = self.F, p.call
        return {
            F["call_id"]: call.call_id, F["call_state"]: self._cs[p.state],
            F["direction"]: self._dir[call.direction], F["calling"]: call.ani, F["called"]: call.dnis,
            F["other_devices"]: ",".join(n for n in call.parties if n != p.name),
            F["last_redirection"]: call.group, F["trunks"]: call.trunks, F["category"]: call.category,
            F["data"]: call.data,
        }

    def _m_device_calls(self, a):
        dev = self._device(a)
        return {self.F["calls"]: [self._call_struct(p) for p in self._parties_of(dev.name)]}

    def _m_group_calls(self, a):
        F = self.F
        groups = self._groups_arg(a, required=True)
        out = []
        for g in groups:
            for cid in self.queues[g]:
                call = self.calls[cid]
                out.append({F["call_id"]: cid, F["call_state"]: self._cs[CS.QUEUED], F["device"]: "",
                            F["calling"]: call.ani})
            for call in self.calls.values():
                if call.group != g or g in call.parties:
                    continue
                agents = [p for p in call.parties.values() if p.kind == DEVICE and p.name != call.ani]
                if agents:
                    out.append({F["call_id"]: call.call_id, F["call_state"]: self._cs[agents[0].state],
                                F["device"]: agents[0].name, F["calling"]: call.ani})
        return {F["calls"]: out}

    def _m_status(self, a):
        if self._arg(a, "channel"):   # a keep-alive: is this listener still registered?
            ch = self._arg(a, "channel")
            if not (ch.isdigit() and int(ch) in self.channels):
                raise Refusal(CHANNEL_UNKNOWN, f"no listener channel {ch!r}; register again")
        return {self.F["status"]: "ATIVO"}

    def _m_version(self, a):
        return {self.F["version"]: f"NGC simulator {self.options.version}"}

    # ======================================================== control API
    def _control_device(self, name: Any) -> Device:
        dev = self.devices.get(str(name))
        if dev is None:
            raise ControlError(404, f"unknown device {name!r}")
        return dev

    def inbound(self, ani: str, dnis: str = "", group: str = "", device: str = "", data: str = "",
                direction: str = "") -> str:
        """A call from outside to ``group`` (queued, ACD) or ``device`` (direct); returns its id."""
        if not ani.isdigit():
            raise ControlError(400, "'ani' must be a phone number (digits)")
        if ani in self.devices or ani in self.queues:
            raise ControlError(400, f"'ani' {ani} is an internal number; use {self.dialect.methods['make_call']}")
        if bool(group) == bool(device):
            raise ControlError(400, "give exactly one of 'group' or 'device'")
        if group and group not in self.queues:
            raise ControlError(404, f"unknown group {group!r}")
        if device:
            self._control_device(device)
        direction = direction or self._dir[Direction.INBOUND]
        d = self.dialect.directions.get(direction)
        if d not in (Direction.INBOUND, Direction.DIALLER):
            raise ControlError(400, f"'direction' must be {self._dir[Direction.INBOUND]} or "
                                    f"{self._dir[Direction.DIALLER]}")
        call = self._new_call(d, ani, dnis, data=data, outside=True)
        self._add_party(call, ani, OUTSIDE, CS.CONNECTED)
        self._deliver(call, group or device)
        self._settle()
        return call.call_id

    def answer(self, device: str) -> str:
        """The device answers its ringing call (as cti.atende)."""
        dev = self._control_device(device)
        try:
            p = self._pick(dev.name, "", (CS.ALERTING,))
        except Refusal as r:
            raise ControlError(409, f"{r.name}: {r.message}") from None
        self._answer(p)
        self._settle()
        return p.call.call_id

    def hangup(self, device: str = "", call_id: str = "") -> str:
        """The far party of the device's active (or only) call hangs up; with ``call_id``, the
        whole call is released (e.g. a caller abandoning a queue)."""
        if call_id:
            call = self.calls.get(call_id)
            if call is None:
                raise ControlError(404, f"unknown call {call_id!r}")
            releaser = next((p.name for p in call.parties.values() if p.kind == OUTSIDE), "")
            for dev in self._devices_in(call):
                self._emit_call(dev, "connection_cleared", call, other=releaser or dev)
            self._drop_call(call)
            self._settle()
            return call_id
        dev = self._control_device(device)
        mine = self._parties_of(dev.name)
        p = self._active(dev.name) or (mine[0] if len(mine) == 1 else None)
        if p is None:
            raise ControlError(409, f"{dev.name} has {'no call' if not mine else 'several calls and none connected'}")
        others = [q for q in p.call.parties.values() if q.name != dev.name]
        far = next((q for q in others if q.kind == OUTSIDE), others[0] if others else None)
        if far is None:  # pragma: no cover - a call always has two parties
            self._leave(p.call, dev.name)
        else:
            self._leave(p.call, far.name)
        self._settle()
        return p.call.call_id

    def set_outcome(self, number: str, outcome: str, after: float | None = None) -> dict[str, Any]:
        """What ``number`` does when dialled; outcome ``default`` forgets the setting."""
        if not number.isdigit() or number in self.devices or number in self.queues:
            raise ControlError(400, "'number' must be an outside phone number (digits)")
        if outcome == "default":
            self.outcomes.pop(number, None)
            kind, after = self._outcome(number)
            return {"number": number, "outcome": kind, "after": after}
        if outcome not in OUTCOMES:
            raise ControlError(400, f"'outcome' must be one of {', '.join(OUTCOMES)} or default")
        if after is None:
            after = {"no-answer": self.options.ring_timeout, "invalid": 0.0}.get(outcome, self.options.answer_after)
        else:
            try:
                after = _seconds(after, "after")
            except ValueError as e:
                raise ControlError(400, str(e)) from None
        self.outcomes[number] = (outcome, after)
        return {"number": number, "outcome": outcome, "after": after}

    def state(self) -> dict[str, Any]:
        """The whole switch as JSON-ready data (wire names for states)."""
        return {
            "devices": {
                d.name: {
                    "agent": d.agent, "agent_state": self._as[self._agent_state(d)], "groups": list(d.groups),
                    "forward_to": d.forward_to,
                    "calls": [{"call_id": p.call.call_id, "state": self._cs[p.state]}
                              for p in self._parties_of(d.name)],
                } for d in self.devices.values()
            },
            "calls": [
                {"call_id": c.call_id, "parties": {n: self._cs[p.state] for n, p in c.parties.items()},
                 "ani": c.ani, "dnis": c.dnis, "group": c.group, "direction": self._dir[c.direction],
                 "data": c.data, "recording": c.recording} for c in self.calls.values()
            ],
            "queues": {g: list(q) for g, q in self.queues.items()},
            "channels": {str(ch.id): {"url": ch.url, "devices": sorted(ch.devices), "sequence": ch.sequence}
                         for ch in self.channels.values()},
        }

    def close(self) -> None:
        """Cancel pending timers (the server is going away)."""
        for call in self.calls.values():
            for p in call.parties.values():
                if p.timer is not None:
                    p.timer.cancel()
                    p.timer = None
        self.sink = None
