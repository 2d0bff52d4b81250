"""``smartcti-gateway learn CAPTURE -o dialect.yaml``: the NGC's dialect, read off a capture of DigitroCTILink.

No I/O but the file: the records (capture/reader.py) in, a ``pabx.dialect`` override and a report out.
Three correlations do the work:

* each SOAP command Protheus sent is matched with the XML-RPC calls DigitroCTILink made while it answered
  it (time), and among those with the one that shares its values (device, number, agent, group, call id):
  that gives the method's wire name, its parameters (one struct's member names, or positional order),
  their wire types, and how a success and a refusal look (a result member, a plain value, a Fault) with
  the SOAP code DigitroCTILink answered for each;
* each NGC event (posted to DigitroCTILink's callback, or answered to a poll) is matched with the SOAP
  events DigitroCTILink then pushed to Protheus for the same device: that gives the event's name (a type
  member, or one method per event), its fields and the states and causes it carries;
* queryAgentState's SOAP answer (25…30) names the NGC's agent states;
* a list of calls the NGC answered (group_calls for GetCallList, device_calls) names the calls' states:
  each entry's call is in the state its last SOAP event said (RINGING alerting, ANSWERED connected, HELD
  held…), or queued when GetCallList listed it with 7 (the one code Protheus itself reads, §4.4).

What differs from the default dialect is written; what was seen but not understood, and the operations
the capture never exercised, are reported so the technician knows what to do once more.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..pabx.digitro.dialect import Dialect

# SOAP operation -> the logical method DigitroCTILink must have called for it
OPERATION_METHODS = {
    "AgentInService": "monitor_start", "AgentOutOfService": "monitor_stop",
    "Logon": "agent_login", "LogonPass": "agent_login", "Logoff": "agent_logout", "LogoffPass": "agent_logout",
    "Ready": "agent_ready", "ReadyPass": "agent_ready", "NotReady": "agent_not_ready",
    "NotReadyPass": "agent_not_ready", "MakeCall": "make_call", "MakeCallPass": "make_call",
    "Answer": "answer", "ConnectionClear": "clear", "Hold": "hold", "Retrieve": "retrieve",
    "Alternate": "alternate", "Conference": "conference", "Consultation": "consultation",
    "Transfer": "transfer", "OneStepCallTransfer": "single_step_transfer",
    "ImmediateTransfer": "immediate_transfer", "Redirect": "forward", "StartRec": "start_recording",
    "StopRec": "stop_recording", "queryAgentState": "agent_state", "GetCallList": "group_calls",
    "SystemStatus": "status", "showVersion": "version",
}
# what a technician does with one test agent during a capture (docs/migration.md)
ROUND = ("AgentInService", "Logon", "Ready", "inbound call (RINGING)", "Answer", "Hold", "Retrieve",
         "OneStepCallTransfer", "MakeCall", "NotReady", "Logoff")
# SOAP argument -> the logical field its value travels in toward the NGC
ARG_FIELDS = {"device": "device", "cDevice": "device", "telephoneNumber": "number", "deviceTo": "destination",
              "agentID": "agent", "groupID": "groups", "CallID": "call_id", "Route": "route", "route": "route"}
# SOAP event -> neutral event name (dialect.events values)
EVENT_KINDS = {"SERVICEINITIATED": "service_initiated", "ORIGINATED": "originated", "RINGING": "delivered",
               "ANSWERED": "established", "CALLFAILURE": "failed", "HELD": "held", "RETRIEVE": "retrieved",
               "CONNECTIONCLEARED": "connection_cleared", "LOGGEDON": "logged_on", "LOGGEDOFF": "logged_off",
               "READY": "ready", "NOTREADY": "not_ready"}
# SOAP event parameter -> logical field of the NGC's event
EVENT_FIELDS = {"CDEVICE": "device", "CALLID": "call_id", "ANI": "calling", "DNIS": "called",
                "CAGENTID": "agent", "CGROUPID": "groups"}
# queryAgentState's answer -> neutral agent state (smartcti.md §2)
AGENT_CODES = {25: "logged_off", 26: "logged_on", 27: "work_after_call", 28: "ready", 29: "busy", 30: "not_ready"}
# the SOAP event last pushed for a call -> the state of its connection (a call list entry's state)
CALL_EVENT_STATES = {"SERVICEINITIATED": "initiated", "ORIGINATED": "connected", "RINGING": "alerting",
                     "ANSWERED": "connected", "RETRIEVE": "connected", "HELD": "held", "CALLFAILURE": "failed"}
QUEUED_CODE = "7"         # GetCallList's state of a call waiting in the group (smartcti.md §4.4)
EVENT_WINDOW = 2.0        # s between an NGC event and the SOAP events DigitroCTILink pushed for it
_STATE_WORDS = re.compile(r"estado|situac|state|status", re.I)   # a member naming an agent's state
POLL_MIN_CALLS = 3        # a method called this often outside any command, answering arrays: the event poll


class LearnError(ValueError):
    """The capture holds nothing to learn from (no XML-RPC side, no SOAP side)."""


@dataclass
class Call:
    t: float
    method: str
    params: list
    answer: Any = None          # parsed answer: {"result": v} or {"fault": {...}}
    used: bool = False


@dataclass
class Report:
    learned: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    not_exercised: list[str] = field(default_factory=list)
    samples: Counter = field(default_factory=Counter)

    def text(self) -> str:
        lines = ["learned:"] + [f"  {x}" for x in self.learned]
        if self.unmapped:
            lines += ["seen but not understood (add by hand, or capture them once more):"]
            lines += [f"  {x}" for x in self.unmapped]
        if self.not_exercised:
            lines += ["never exercised by this capture (do them once more with the test agent, then learn "
                      "again):"] + [f"  {x}" for x in self.not_exercised]
        return "\n".join(lines)


def _pairs(records: list[dict], request_dir: str, answer_dir: str, side: str) -> list[tuple[dict, dict | None]]:
    answers = {r["conn"]: r for r in records if r.get("side") == side and r.get("dir") == answer_dir}
    return [(r, answers.get(r["conn"])) for r in records
            if r.get("side") == side and r.get("dir") == request_dir and r.get("parsed")]


def _text(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


def _wire_type(v: Any) -> str:
    return "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "str"


def _empty(v: Any) -> bool:
    return v in ("", 0, None, False)


def _assign(votes: dict[int, Counter], width: int) -> list[str]:
    """One field per position and one position per field: the strongest votes first (a device number
    also shows up as the 'other device' of a call; its own position is where it shows most)."""
    layout = ["?"] * width
    taken: set[str] = set()
    ranked = sorted(((n, i, f) for i, c in votes.items() for f, n in c.items() if f != "?"), reverse=True)
    for n, i, f in ranked:
        if layout[i] == "?" and f not in taken:
            layout[i] = f
            taken.add(f)
    return layout


class Learner:
    def __init__(self, records: list[dict]):
        self.records = records
        self.default = Dialect()
        self.report = Report()
        self.out: dict[str, dict] = defaultdict(dict)
        self.calls = [Call(r["t"], r["parsed"]["method"], list(r["parsed"].get("params") or []),
                           (a or {}).get("parsed"))
                      for r, a in _pairs(records, "to_pabx", "from_pabx", "xmlrpc") if "method" in r["parsed"]]
        self.commands = [(r, a) for r, a in _pairs(records, "to_middleware", "from_middleware", "soap")
                         if "operation" in r["parsed"]]
        self.soap_events = [r for r, _ in _pairs(records, "event_to_protheus", "event_answer", "soap")
                            if r["parsed"].get("operation") in EVENT_KINDS or r["parsed"].get("operation") == "INSERVICE"]
        if not self.calls and not self.commands:
            raise LearnError("the capture holds neither XML-RPC calls to the NGC nor SOAP commands from Protheus: "
                             "record with both --xmlrpc-listen/--xmlrpc-upstream and --soap-listen/--soap-upstream")
        self.call_ids: set[str] = {_text(e["parsed"]["args"].get("CALLID", "")) for e in self.soap_events} - {""}
        self._remembered: dict[str, dict[str, str]] = {}     # device -> agent and groups logged on it
        self._slots: dict[str, dict] = {"direction": defaultdict(list), "cause": defaultdict(list)}
        self._slot_names: dict[str, Any] = {}                 # direction / cause -> its member or position
        self.field_votes: dict[str, Counter] = defaultdict(Counter)
        self.type_votes: dict[str, Counter] = defaultdict(Counter)

    # ------------------------------------------------------------ commands
    def _values(self, args: dict) -> dict[str, str]:
        """SOAP argument values -> logical field, for matching what the NGC was sent."""
        out = {}
        for name, value in args.items():
            logical = ARG_FIELDS.get(name)
            if logical and _text(value).strip():
                out[_text(value).strip()] = logical
            if name == "agentPass" and value:
                out[_text(value)] = "device_password"
        return out

    def _field_of(self, value: Any, values: dict[str, str]) -> str:
        text = _text(value).strip()
        if text in values:
            return values[text]
        if text in self.call_ids:
            return "call_id"
        return ""

    def _window(self, request: dict, answer: dict | None) -> list[Call]:
        end = answer["t"] if answer else request["t"] + 5.0
        return [c for c in self.calls if request["t"] <= c.t <= end and not c.used]

    def learn_commands(self) -> None:
        methods: dict[str, Counter] = defaultdict(Counter)
        examples: dict[str, list[tuple[Call, dict, str]]] = defaultdict(list)
        for request, answer in self.commands:
            op = request["parsed"]["operation"]
            logical = OPERATION_METHODS.get(op)
            if logical is None:
                continue
            args = request["parsed"].get("args") or {}
            values = self._values(args)
            device = _text(args.get("device") or args.get("cDevice") or "").strip()
            # what Protheus left empty the middleware may fill from what it remembers (the agent logged on)
            for value, known in self._remembered.get(device, {}).items():
                values.setdefault(value, known)
            if op in ("Logon", "LogonPass") and (answer or {}).get("parsed", {}).get("return") == "0":
                self._remembered[device] = {v: f for v, f in values.items() if f in ("agent", "groups")}
            window = self._window(request, answer)
            if not window:
                continue
            best = max(window, key=lambda c: (self._shared(c, values), -abs(c.t - request["t"])))
            if values and not self._shared(best, values) and logical not in ("status", "version"):
                continue
            best.used = True
            methods[logical][best.method] += 1
            returned = _text((answer or {}).get("parsed", {}).get("return", "")) if answer else ""
            examples[logical].append((best, values, returned))
        self.reply_votes: Counter = Counter()
        for logical, votes in methods.items():
            wire, n = votes.most_common(1)[0]
            self.report.samples[logical] = n
            if wire != self.default.methods.get(logical):
                self.out["methods"][logical] = wire
            self.report.learned.append(f"{logical}: {wire} ({n} sample{'s' * (n != 1)})")
            self._learn_params(logical, [e for e in examples[logical] if e[0].method == wire])
        self._learn_results(examples)

    def _shared(self, call: Call, values: dict[str, str]) -> int:
        flat = call.params[0].values() if len(call.params) == 1 and isinstance(call.params[0], dict) else call.params
        return sum(1 for v in flat if self._field_of(v, values))

    def _learn_params(self, logical: str, examples: list[tuple[Call, dict, str]]) -> None:
        positional: list[Counter] = []
        plain = False                       # parameters not in one struct (none at all counts)
        for call, values, _ in examples:
            if len(call.params) == 1 and isinstance(call.params[0], dict):
                for member, v in call.params[0].items():
                    f = self._field_of(v, values) or ("device_password" if v == "***" else "")
                    if f:
                        self.field_votes[f][member] += 1
                        self.type_votes[f][_wire_type(v)] += 1
            else:
                plain = True
                while len(positional) < len(call.params):
                    positional.append(Counter())
                for i, v in enumerate(call.params):
                    f = self._field_of(v, values) or ("device_password" if v == "***" else "")
                    if f or not _empty(v):          # an empty value says nothing of its position
                        positional[i][f or "?"] += 1
                    if f:
                        self.type_votes[f][_wire_type(v)] += 1
        if plain:
            layout = _assign(dict(enumerate(positional)), len(positional))
            if "?" in layout:
                self.report.unmapped.append(f"{logical}: parameter(s) {', '.join(str(i + 1) for i, f in enumerate(layout) if f == '?')} "
                                            f"of {len(layout)} carry no value Protheus sent; written as 'account'")
                layout = [f if f != "?" else "account" for f in layout]
            self.out["params"][logical] = layout

    def _learn_results(self, examples: dict[str, list[tuple[Call, dict, str]]]) -> None:
        """How success and refusal look: a result member, a plain value, or a Fault; each refusal's code."""
        styles: dict[str, Counter] = defaultdict(Counter)
        result_member: Counter = Counter()
        for logical, items in examples.items():
            for call, _, returned in items:
                ans = call.answer or {}
                code = int(returned) if returned.lstrip("-").isdigit() else None
                if logical == "agent_state" and code in AGENT_CODES:
                    code = 0            # queryAgentState answers the state: the call itself succeeded
                if "fault" in ans:
                    styles[logical]["fault"] += 1
                    if code is not None:
                        self._result(_text(ans["fault"].get("code")), code)
                    continue
                result = ans.get("result")
                if isinstance(result, dict):
                    for member, v in result.items():
                        if code == 0 and isinstance(v, str) and v.strip():
                            result_member[(member, v)] += 1
                    styles[logical]["struct"] += 1
                    continue
                if code == 0:
                    styles[logical]["plain"] += 1
                    if _text(result) in self.call_ids and logical in ("make_call", "consultation"):
                        self.out["returns"][logical] = "call_id"
                elif code is not None:
                    styles[logical]["value"] += 1
                    self._result(_text(result), code)
        faults = any(c["fault"] for c in styles.values())
        if result_member:
            (member, ok), _ = result_member.most_common(1)[0]
            if member != self.default.fields["result"]:
                self.out["fields"]["result"] = member
            if ok != "OK":
                self.out["results"][ok] = 0
        chosen: dict[str, str] = {}
        for logical, c in styles.items():
            if c["struct"] and not c["plain"]:
                chosen[logical] = "struct"
            elif c["value"] or (c["plain"] and not faults and logical == "status"):
                chosen[logical] = "value"
            else:
                chosen[logical] = "fault" if (c["plain"] or c["fault"]) else "struct"
        if chosen:
            default = Counter(chosen.values()).most_common(1)[0][0]
            if default != "struct":
                self.out["replies"]["default"] = default
            for logical, style in chosen.items():
                if style != default:
                    self.out["replies"][logical] = style

    def _result(self, value: str, code: int) -> None:
        if value and self.default.results.get(value) != code:
            self.out["results"][value] = code

    # -------------------------------------------------------------- events
    def learn_events(self) -> None:
        events = self._ngc_events()
        if not events:
            self.report.unmapped.append("no NGC event in the capture: was an inbound call made?")
            return
        names: dict[str, Counter] = defaultdict(Counter)
        for t, method, params in events:
            soap = self._following_soap_event(t, params)
            if soap is None:
                continue
            kind = EVENT_KINDS.get(soap["parsed"]["operation"])
            if kind is None:
                continue
            args = soap["parsed"]["args"]
            values = {_text(v).strip(): EVENT_FIELDS[k] for k, v in args.items()
                      if k in EVENT_FIELDS and _text(v).strip()}
            self._slot_samples(soap["parsed"]["operation"], args, params, values)
            if len(params) == 1 and isinstance(params[0], dict):
                struct = params[0]
                type_member = self._type_member(struct)
                for member, v in struct.items():
                    f = values.get(_text(v).strip())
                    if f and member != type_member:
                        self.field_votes[f][member] += 1
                names[f"{type_member}={struct.get(type_member)}" if type_member else method][kind] += 1
            else:
                positional = self.out.setdefault("_event_positions", {})
                self.event_width = max(getattr(self, "event_width", 0), len(params))
                for i, v in enumerate(params):
                    f = values.get(_text(v).strip())
                    if f or not _empty(v):
                        positional.setdefault(i, Counter())[f or "?"] += 1
                names[method][kind] += 1
        self._event_names(names)

    def _slot_samples(self, operation: str, args: dict, params: list, values: dict[str, str]) -> None:
        """What the NGC event carried beside the fields Protheus was told, against what DigitroCTILink made
        of it: a RINGING's CALLTYPE (the call's direction), a CALLFAILURE's CAUSE."""
        wanted = {"RINGING": ("direction", _text(args.get("CALLTYPE", "")).strip()),
                  "CALLFAILURE": ("cause", _text(args.get("CAUSE", "")).strip())}.get(operation)
        if wanted is None or not wanted[1]:
            return
        slots = params[0].items() if len(params) == 1 and isinstance(params[0], dict) else enumerate(params)
        for slot, v in slots:
            text = _text(v).strip()
            if text and text not in values and not _empty(v):
                self._slots[wanted[0]][slot].append((text, wanted[1]))

    def _learn_slots(self) -> None:
        """The member (or position) whose value follows the call's direction, and the one that follows the
        failure's cause: each value always gives the same answer, and, for the direction, at least two
        directions were seen (a lone inbound call cannot tell the direction from a constant)."""
        kinds = {"1": "inbound", "3": "dialler"}
        for what, table, default in (("direction", "directions", self.default.directions),
                                     ("cause", "results", self.default.results)):
            best = None
            for slot, samples in self._slots[what].items():
                if slot in self._slot_names.values():      # the direction's slot is no cause
                    continue
                mapping: dict[str, set] = defaultdict(set)
                for value, answer in samples:
                    mapping[value].add(answer)
                if any(len(a) > 1 for a in mapping.values()):
                    continue
                answers = {next(iter(a)) for a in mapping.values()}
                if what == "direction" and (len(answers) < 2 or not answers <= set(kinds) | {"2"}):
                    continue
                rank = (len(samples), all(v.isdigit() for v, _ in samples))   # codes are often numbers
                if best is None or rank > best_rank:
                    best, best_rank = slot, rank
            if best is None:
                continue
            for value, answer in self._slots[what][best]:
                if what == "direction":
                    learned = kinds.get(answer)
                    if learned and (value not in default or default[value].value != learned):
                        self.out[table][value] = learned
                elif answer.isdigit() and default.get(value) != int(answer):
                    self.out[table][value] = int(answer)
            self._slot_names[what] = best
            self.report.learned.append(f"{what}: {'parameter ' + str(best + 1) if isinstance(best, int) else best} "
                                       f"({len(self._slots[what][best])} samples)")

    def _ngc_events(self) -> list[tuple[float, str, list]]:
        """(time, method, params) of each event the NGC gave: posted to the callback, or in a poll's answer."""
        out = [(r["t"], r["parsed"]["method"], list(r["parsed"].get("params") or []))
               for r, _ in _pairs(self.records, "callback_to_gateway", "callback_answer", "xmlrpc")
               if "method" in r["parsed"]]
        if out:
            self.transport = "callback"
            return out
        polls = Counter(c.method for c in self.calls if not c.used and isinstance((c.answer or {}).get("result"), list))
        method = next((m for m, n in polls.most_common() if n >= POLL_MIN_CALLS), None)
        if method is None:
            return []
        self.transport = "poll"
        self.out["methods"]["poll_events"] = method
        if all(not c.params for c in self.calls if c.method == method):
            self.out["params"]["poll_events"] = []          # asked with no parameter at all
        self.out["transport"] = {"events": "poll", "poll_interval": self._poll_interval(method)}
        self.report.learned.append(f"events: polled with {method} every {self.out['transport']['poll_interval']:g} s")
        for c in self.calls:
            if c.method == method:
                c.used = True
        for c in self.calls:
            if c.method != method:
                continue
            for item in c.answer["result"]:
                if isinstance(item, list) and item and isinstance(item[0], str) and "." in item[0]:
                    out.append((c.t, item[0], item[1:]))
                elif isinstance(item, dict):
                    out.append((c.t, "", [item]))
                elif isinstance(item, list):
                    out.append((c.t, "", item))
        return out

    def _poll_interval(self, method: str) -> float:
        times = [c.t for c in self.calls if c.method == method]
        gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
        return round(max(0.05, min(60.0, gaps[len(gaps) // 2])), 2) if gaps else 1.0

    def _following_soap_event(self, t: float, params: list) -> dict | None:
        """The SOAP event DigitroCTILink pushed for this NGC event: for the same device, near in time (before
        it too: a middleware may confirm a command before the NGC reports it), and the one whose values the
        NGC event carries best (an agent's READY has its agent and group, a RINGING its call id and ANI).
        Of those, the earliest not paired yet: a middleware tells a device's changes in the order the NGC
        made them, whether it confirms a command at once or waits for the NGC's report, and the report
        may come after the next command's confirmation (a LOGGEDON confirmed, Ready and its READY, then
        the NGC's report of the logon)."""
        flat = {_text(v).strip() for v in (params[0].values() if len(params) == 1 and isinstance(params[0], dict)
                                           else params)} - {""}
        best, best_key = None, None
        for e in self.soap_events:
            if e.get("_used") or e["parsed"]["operation"] == "INSERVICE" or abs(e["t"] - t) > EVENT_WINDOW:
                continue
            args = e["parsed"]["args"]
            if _text(args.get("CDEVICE", "")).strip() not in flat:
                continue
            carried = [_text(v).strip() for k, v in args.items() if k in EVENT_FIELDS and _text(v).strip()]
            score = sum(1 for v in carried if v in flat) - sum(1 for v in carried if v not in flat)
            key = (score, -e["t"])
            if best_key is None or key > best_key:
                best, best_key = e, key
        if best is not None:
            best["_used"] = True
        return best

    def _type_member(self, struct: dict) -> str:
        member = self.default.fields["event"]
        if member in struct:
            return member
        return self.out.get("fields", {}).get("event", "")

    def _event_names(self, names: dict[str, Counter]) -> None:
        self._learn_slots()
        for key, votes in names.items():
            kind, n = votes.most_common(1)[0]
            if "=" in key:
                member, value = key.split("=", 1)
                if value not in self.default.events or self.default.events[value] != kind:
                    self.out["events"][value] = kind
            else:
                name = key.rsplit(".", 1)[-1]
                self.out["events"][name] = kind
                self.out["event_methods"][key] = name
            self.report.learned.append(f"event {key} -> {kind} ({n} sample{'s' * (n != 1)})")
        positions = self.out.pop("_event_positions", None)
        if positions:
            layout = _assign(positions, max(max(positions) + 1, getattr(self, "event_width", 0)))
            unknown = [str(i + 1) for i, f in enumerate(layout) if f == "?"]
            if unknown:
                self.report.unmapped.append(f"event parameter(s) {', '.join(unknown)} carry nothing Protheus was told; "
                                            f"written as fields the gateway does not read")
            for what, slot in self._slot_names.items():
                if isinstance(slot, int) and slot < len(layout) and layout[slot] == "?" and what not in layout:
                    layout[slot] = what
            spare = iter(f for f in ("other_device", "old_call_id", "last_redirection", "direction", "cause",
                                     "reason", "trunks", "category", "data") if f not in layout)
            self.out["event_params"]["default"] = [f if f != "?" else next(spare, "data") for f in layout]

    # ------------------------------------------------------- agent states
    def learn_agent_states(self) -> None:
        """The member of agent_state's answer that names the state, and its values: the one whose value
        follows queryAgentState's SOAP answer (25…30)."""
        wire = self.out.get("methods", {}).get("agent_state", self.default.methods["agent_state"])
        samples: list[tuple[str, dict]] = []
        for request, answer in self.commands:
            if request["parsed"]["operation"] != "queryAgentState" or not answer:
                continue
            returned = _text(answer["parsed"].get("return", ""))
            state = AGENT_CODES.get(int(returned)) if returned.isdigit() else None
            call = next((c for c in self.calls if c.used and c.method == wire and request["t"] <= c.t <= answer["t"]),
                        None)
            result = (call.answer or {}).get("result") if call else None
            if state is not None and isinstance(result, dict):
                samples.append((state, result))
        if not samples:
            return
        members = {m for _, r in samples for m, v in r.items() if isinstance(v, str) and v}
        default = self.default.fields["agent_state"]
        fitting = []
        for m in members:
            by_state: dict[str, set] = defaultdict(set)
            for state, r in samples:
                by_state[state].add(r.get(m))
            values = [next(iter(v)) for v in by_state.values() if len(v) == 1]
            if len(values) == len(by_state) and len(set(values)) == len(values) and (len(values) > 1 or m == default
                                                                                  or _STATE_WORDS.search(m)):
                fitting.append(m)
        if len(fitting) > 1:
            fitting = [m for m in fitting if _STATE_WORDS.search(m)] or fitting
        if len(fitting) != 1:
            self.report.unmapped.append(f"agent states: no single member of {wire}'s answer follows the state "
                                        f"({', '.join(sorted(members)) or 'none'}); ask queryAgentState in more states")
            return
        member = fitting[0]
        if member != default:
            self.out["fields"]["agent_state"] = member
        for state, r in samples:
            value = r[member]
            known = self.default.agent_states.get(value)
            if known is None or known.value != state:
                self.out["agent_states"][value] = state
        self.report.learned.append(f"agent states: {member} ({len(samples)} sample{'s' * (len(samples) != 1)})")

    # -------------------------------------------------------- call states
    def _listed_queued(self, at: float) -> set[str]:
        """Call ids a GetCallList answered as queued (7) by the command being answered at ``at``."""
        out: set[str] = set()
        for request, answer in self.commands:
            if request["parsed"]["operation"] != "GetCallList" or not answer or not request["t"] <= at <= answer["t"]:
                continue
            body = _text(answer["parsed"].get("return", "")).split("#", 4)[-1]
            for entry in body.split(";"):
                parts = entry.split(",")
                if len(parts) >= 2 and parts[1].strip() == QUEUED_CODE:
                    out.add(parts[0].strip())
        return out

    def _state_of(self, entry: dict, at: float, queued: set[str]) -> tuple[str, str, dict] | None:
        """The state of a call list entry's call at ``at``, its call id and the arguments of its last SOAP
        event: from that event (on the device the entry names, when it names one), or queued when GetCallList
        said so."""
        values = {_text(v).strip() for v in entry.values() if not isinstance(v, (dict, list))}
        for call_id in values & (self.call_ids | queued):
            last = None
            for e in self.soap_events:
                a = e["parsed"].get("args") or {}
                if e["t"] <= at and _text(a.get("CALLID", "")) == call_id and e["parsed"]["operation"] in CALL_EVENT_STATES:
                    if last is None or _text(a.get("CDEVICE", "")) in values or \
                            _text((last["parsed"].get("args") or {}).get("CDEVICE", "")) not in values:
                        last = e
            if last is not None:
                return CALL_EVENT_STATES[last["parsed"]["operation"]], call_id, last["parsed"].get("args") or {}
            if call_id in queued:
                return "queued", call_id, {}
        return None

    def _vote_entry_members(self, entry: dict, call_id: str, args: dict) -> None:
        """An entry's members by the values they share with what Protheus was told of its call."""
        told = {call_id: "call_id"}
        for soap, logical in (("CDEVICE", "device"), ("ANI", "calling"), ("DNIS", "called")):
            value = _text(args.get(soap, "")).strip() or next(
                (_text((e["parsed"].get("args") or {}).get(soap, "")).strip() for e in self.soap_events
                 if _text((e["parsed"].get("args") or {}).get("CALLID", "")) == call_id and
                 _text((e["parsed"].get("args") or {}).get(soap, "")).strip()), "")
            if value and value not in told:
                told[value] = logical
        for member, v in entry.items():
            logical = told.get(_text(v).strip())
            if logical:
                self.field_votes[logical][member] += 1

    def learn_call_states(self) -> None:
        """The member of a call list answer that holds the calls, the entries' member naming the state, and
        its values (group_calls, device_calls: GetCallList, the resync's look at a device)."""
        samples: list[tuple[str, dict]] = []
        holders: Counter = Counter()
        for c in self.calls:
            result = (c.answer or {}).get("result")
            if not isinstance(result, dict):
                continue
            queued = self._listed_queued(c.t)
            for member, value in result.items():
                if not (isinstance(value, list) and value and all(isinstance(x, dict) for x in value)):
                    continue
                for entry in value:
                    found = self._state_of(entry, c.t, queued)
                    if found is not None:
                        state, call_id, args = found
                        samples.append((state, entry))
                        holders[member] += 1
                        self._vote_entry_members(entry, call_id, args)
        if not samples:
            if any(r["parsed"]["operation"] == "GetCallList" for r, _ in self.commands):
                self.report.unmapped.append("call states: GetCallList was asked, but no list the NGC answered "
                                            "holds a call Protheus was told of; ask it again during a call")
            else:
                self.report.not_exercised.append("GetCallList (the queue screen, TMKA600) during a call, with it "
                                                 "held, and with a call waiting: the calls' states")
            return
        holder = holders.most_common(1)[0][0]
        if holder != self.default.fields["calls"]:
            self.out["fields"]["calls"] = holder
        members = {m for _, e in samples for m, v in e.items() if isinstance(v, (str, int)) and _text(v).strip()}
        default = self.default.fields["call_state"]
        fitting = []
        for m in members:
            by_state: dict[str, set] = defaultdict(set)
            for state, e in samples:
                by_state[state].add(_text(e.get(m, "")).strip())
            values = [next(iter(v)) for v in by_state.values() if len(v) == 1]
            if len(values) == len(by_state) and "" not in values and len(set(values)) == len(values) and \
                    (len(values) > 1 or m == default or _STATE_WORDS.search(m)):
                fitting.append(m)
        if len(fitting) > 1:
            fitting = [m for m in fitting if _STATE_WORDS.search(m)] or fitting
        if len(fitting) != 1:
            self.report.unmapped.append(f"call states: no single member of the calls in {holder} follows the "
                                        f"call's state ({', '.join(sorted(members)) or 'none'}); ask GetCallList "
                                        f"with calls in more states (ringing, answered, held, waiting)")
            return
        member = fitting[0]
        if member != default:
            self.out["fields"]["call_state"] = member
        seen = {}
        for state, e in samples:
            value = _text(e[member]).strip()
            seen[value] = state
            known = self.default.call_states.get(value)
            if known is None or known.value != state:
                self.out["call_states"][value] = state
        self.report.learned.append(f"call states: {member} of {holder} ({len(samples)} sample"
                                   f"{'s' * (len(samples) != 1)}: {', '.join(f'{v}={k}' for v, k in sorted(seen.items()))})")

    # ------------------------------------------------------------- result
    def learn(self) -> tuple[dict, Report]:
        self.transport = "callback"
        self.learn_commands()
        self.learn_events()
        for what, slot in self._slot_names.items():
            if isinstance(slot, str) and slot != self.default.fields[what]:
                self.out["fields"][what] = slot
        self.learn_agent_states()
        self.learn_call_states()
        for f, votes in self.field_votes.items():
            member, n = votes.most_common(1)[0]
            if member != self.default.fields.get(f):
                self.out["fields"][f] = member
        for f, votes in self.type_votes.items():
            kind = votes.most_common(1)[0][0]
            if kind != "str" and f not in ("device_password",):
                self.out["types"][f] = kind
        if self.transport == "poll" and self.default.methods["register_listener"] not in {c.method for c in self.calls}:
            self.out["methods"]["register_listener"] = ""
        seen_ops = {r["parsed"]["operation"] for r, _ in self.commands}
        seen_events = {e["parsed"]["operation"] for e in self.soap_events}
        for step in ROUND:
            if step.startswith("inbound"):
                if "RINGING" not in seen_events:
                    self.report.not_exercised.append(step)
            elif step not in seen_ops and f"{step}Pass" not in seen_ops:
                self.report.not_exercised.append(step)
        dialect = {k: dict(v) for k, v in self.out.items() if v}
        Dialect.with_overrides(dialect)      # what is written must load
        return dialect, self.report


def learn(records: list[dict]) -> tuple[dict, Report]:
    """The dialect override a capture shows, and the report of how it was learned."""
    return Learner(records).learn()


# ------------------------------------------------------------ command line
def write_dialect(dialect: dict, report: Report, source: str) -> str:
    """The YAML of ``pabx.dialect``, with the report as comments above it."""
    import yaml
    head = [f"# learned by smartcti-gateway learn from {source}",
            "# put this mapping under links[].pabx.dialect of the driver: digitro link (docs/migration.md);",
            f"# check it first: smartcti-gateway replay {source} --dialect <this file>", "#"]
    head += [f"# {line}" for line in report.text().splitlines()]
    body = yaml.safe_dump(dialect, allow_unicode=True, sort_keys=False, default_flow_style=None) if dialect \
        else "{}   # nothing differs from the default dialect\n"
    return "\n".join(head) + "\n" + body


def add_learn_parser(subparsers):
    p = subparsers.add_parser("learn", help="learn the NGC's XML-RPC dialect from a capture of DigitroCTILink")
    p.add_argument("capture", help="the file smartcti-gateway capture wrote")
    p.add_argument("-o", "--output", required=True, help="where to write the dialect (YAML)")
    p.add_argument("--force", action="store_true", help="overwrite the output file")
    p.set_defaults(func=run_learn)
    return p


def run_learn(args) -> int:
    import sys
    from pathlib import Path

    from .reader import CaptureError, read_capture
    out = Path(args.output)
    if out.exists() and not args.force:
        print(f"learn: {out} exists; give another -o, or --force to overwrite it", file=sys.stderr)
        return 2
    try:
        _, records = read_capture(args.capture)
        dialect, report = learn(records)
    except (CaptureError, LearnError, OSError) as e:
        print(f"learn: {e}", file=sys.stderr)
        return 2
    out.write_text(write_dialect(dialect, report, args.capture), encoding="utf-8")
    print(report.text())
    print(f"learn: wrote {out} ({len(dialect)} section(s) differ from the default dialect)")
    return 0
