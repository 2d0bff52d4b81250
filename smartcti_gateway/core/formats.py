"""The '#'-separated strings Protheus splits (smartcti.md §4.1, §4.4).

Protheus splits them with StrToArray, which drops empty fields and so shifts
every later field: every field it reads must be non-empty, hence placeholders.
"""
from __future__ import annotations

from .codes import Result
from .pabx import CallInfo, ConnectionState, GroupCall

PLACEHOLDER = "-"

# Order in which a device's calls are reported by GetInfoChamAtiv.
_REPORT_ORDER = (
    ConnectionState.CONNECTED,
    ConnectionState.ALERTING,
    ConnectionState.INITIATED,
    ConnectionState.HELD,
    ConnectionState.QUEUED,
)

# GetCallList entry states: only 7 (queued) is read by Protheus (TMKA600).
CALL_LIST_STATES = {
    ConnectionState.QUEUED: "7",
    ConnectionState.ALERTING: "2",
    ConnectionState.CONNECTED: "3",
    ConnectionState.HELD: "4",
    ConnectionState.INITIATED: "1",
    ConnectionState.FAILED: "6",
}


def _field(value: str, placeholder: str = PLACEHOLDER) -> str:
    value = " ".join(value.replace("#", " ").split())
    return value or placeholder


def _list_field(value: str) -> str:
    return _field(value.replace(";", " ").replace(",", " "))


def _advpl_val(text: str) -> int:
    """ADVPL's Val() of a string, integer part: leading blanks skipped, digits up to the first other character."""
    digits = ""
    for ch in text.lstrip():
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


def acd_group(group: str, dnis: str) -> str:
    """GetInfoChamAtiv field 9, which Protheus stores as the call's ACD group (``AGL_GRUPO``).

    The PABX's group when it gave one. Otherwise what Protheus itself computes without the field
    (smartcti.md §10.5, TMKA010 ``TK010Anota``): ``Val()`` of the last five characters of
    ``Str(Val(DNIS))``, i.e. the DNIS's last five digits. The field cannot be left empty (StrToArray
    would shift every later field), and ``0`` would record group 0.
    """
    group = group.strip()
    if group.isdigit():
        return group
    number = str(_advpl_val(dnis)).rjust(10)    # Str(n): right-aligned in (at least) 10 columns
    return str(_advpl_val(number[-5:]))


def choose_call(calls: list[CallInfo]) -> CallInfo | None:
    for state in _REPORT_ORDER:
        for call in calls:
            if call.state is state:
                return call
    return None


def info_cham_ativ(device: str, calls: list[CallInfo] | None, error: Result | None = None) -> str:
    """GetInfoChamAtiv / getActiveCallInfo answer for ``device``.

    ``CMD#INFOCHAMATIV#0#device#callid#associated#ani#dnis#group#trunks#category#data``;
    RC 11 when the device has no call, the §2 code of a failure otherwise.
    """
    head = ["CMD", "INFOCHAMATIV"]
    dev = _field(device)
    if error is not None:
        return "#".join(head + [str(int(error)), dev])
    call = choose_call(calls or [])
    if call is None:
        return "#".join(head + [str(int(Result.NO_ANSWER)), dev])
    return "#".join(
        head
        + [
            "0",
            dev,
            _field(call.call_id),
            _field(",".join(call.other_devices)),
            _field(call.calling),
            _field(call.called),
            acd_group(call.group, call.called),   # Protheus Val()s it into AGL_GRUPO
            _field(call.trunks),
            _field(call.category),
            _field(call.data),
        ]
    )


def call_list(group: str, calls: list[GroupCall]) -> str:
    """GetCallList answer: ``CMD#LISTA_CHAMADAS#0#group#id,state,device;id,state,device``.

    An empty string when there is no call: Protheus reads it as "no calls in the
    queue", whereas a header alone would be split into a one-field entry.
    """
    entries = [
        ",".join((_list_field(c.call_id), CALL_LIST_STATES.get(c.state, "0"), _list_field(c.device or c.calling)))
        for c in calls
    ]
    if not entries:
        return ""
    return f"CMD#LISTA_CHAMADAS#0#{_field(group)}#" + ";".join(entries)
