"""A supervisor's action on an agent: read and checked from JSON, then done through the link's own command
path (``link.handle``, as if Protheus had asked), so that the model, Protheus' events and the logs stay
what they would be. Listen, whisper and barge go to ``link.spy`` where the link has it (Asterisk).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable

from ..core.codes import Result
from ..core.pabx import PabxError

log = logging.getLogger("smartcti_gateway.supervisor")

AGENT_ACTIONS = {"ready": "Ready", "pause": "NotReady", "logoff": "Logoff"}
SPY_ACTIONS = ("listen", "whisper", "barge")
ACTIONS = (*AGENT_ACTIONS, "hangup", *SPY_ACTIONS)
KEYS = {"link", "action", "device", "reason", "call_id", "phone"}
_TEXT = re.compile(r"[^\x00-\x1f\x7f]*")
LIMITS = {"action": 16, "device": 64, "reason": 64, "call_id": 128, "phone": 64}

MESSAGES = {
    Result.SUCCESS: "done",
    Result.INVALID_USER: "refused: no agent is logged on this device, or the PABX refused the agent",
    Result.INVALID_OPTION: "refused: nothing to do in the device's present state",
    Result.INVALID_CALL_ID: "refused: the call is not on this device any more",
    Result.INVALID_DEVICE: "refused: the PABX does not know this device",
    Result.NOT_SUPPORTED_FEATURE: "this link's PABX does not offer it",
    Result.OUT_OF_SERVICE: "the PABX link is down",
    Result.INTERNAL_ERROR: "the PABX did not answer in time",
}


@dataclass
class Action:
    link: int
    action: str
    device: str
    reason: str = ""
    call_id: str = ""
    phone: str = ""


@dataclass
class Outcome:
    ok: bool
    result: int
    message: str
    status: int = 200       # HTTP status of the answer: 400 for a request that could not be done as written

    def json(self) -> dict:
        return {"ok": self.ok, "result": self.result, "message": self.message}


class BadAction(Exception):
    """The request is wrong as written: HTTP 400, with the SmartCTI code nearest to the reason."""

    def __init__(self, result: Result, message: str):
        super().__init__(message)
        self.result, self.message = int(result), message

    def outcome(self) -> Outcome:
        return Outcome(False, self.result, self.message, 400)


def message_of(code: int) -> str:
    try:
        r = Result(code)
    except ValueError:
        return f"refused with code {code}"
    return MESSAGES.get(r, f"refused: {r.name.lower()} ({int(r)})")


# --------------------------------------------------------------------- reading
def parse(body: bytes) -> Action:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadAction(Result.INVALID_OPTION, f"the body is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise BadAction(Result.INVALID_OPTION, 'the body must be a JSON object: {"link": 1, "action": "ready", '
                                               '"device": "2001"}')
    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        raise BadAction(Result.INVALID_OPTION, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                                               f"{', '.join(sorted(KEYS))}")
    link = data.get("link")
    if isinstance(link, str) and link.strip().isdigit():
        link = int(link)
    if not isinstance(link, int) or isinstance(link, bool) or link <= 0:
        raise BadAction(Result.INVALID_OPTION, "'link' must be the link's id, a positive number")
    text = {k: _text(data, k) for k in LIMITS}
    if text["action"] not in ACTIONS:
        raise BadAction(Result.INVALID_OPTION, f"unknown action {text['action']!r}; one of: {', '.join(ACTIONS)}")
    if not text["device"]:
        raise BadAction(Result.INVALID_DEVICE, "'device' is required: the agent's extension")
    return Action(link, text["action"], text["device"], text["reason"], text["call_id"], text["phone"])


def _text(data: dict, key: str) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadAction(Result.INVALID_OPTION, f"{key!r} must be text")
    value = value.strip()
    if len(value) > LIMITS[key] or not _TEXT.fullmatch(value):
        raise BadAction(Result.INVALID_OPTION, f"{key!r} is too long or holds control characters")
    return value


def find_link(links: Iterable[Any], action: Action) -> Any:
    """The link of the action, after checking the device (and the call, the reason) against it."""
    links = list(links)
    link = next((l for l in links if l.link_id == action.link), None)
    if link is None:
        raise BadAction(Result.INVALID_OPTION, f"no link {action.link}; links: "
                                               f"{', '.join(str(l.link_id) for l in links) or 'none'}")
    dev = link.switch.devices.get(action.device)
    if dev is None:
        raise BadAction(Result.INVALID_DEVICE, f"device {action.device!r} is not in service on link {action.link}")
    if action.action == "hangup" and action.call_id and action.call_id not in dev.calls:
        raise BadAction(Result.INVALID_CALL_ID, f"call {action.call_id!r} is not on device {action.device!r}")
    if action.action == "hangup" and not dev.calls:
        raise BadAction(Result.NO_WAITING_CALL, f"device {action.device!r} has no call to hang up")
    codes = [str(r.code) for r in getattr(getattr(link, "pause_reasons", None), "reasons", ()) or ()]
    if action.action == "pause" and action.reason and codes and action.reason not in codes:
        raise BadAction(Result.INVALID_OPTION, f"unknown pause reason {action.reason!r} on link {action.link}; "
                                               f"configured: {', '.join(codes)}")
    return link


# ------------------------------------------------------------------- doing it
async def perform(link: Any, action: Action, phone: str = "") -> Outcome:
    """Raises only BadAction (a listen without a phone); any surprise is answered as code 99 and logged."""
    try:
        if action.action in SPY_ACTIONS:
            return await _spy(link, action, phone)
        if action.action == "hangup":
            value = await link.handle("ConnectionClear", {"device": action.device, "CallID": action.call_id})
        else:
            args = {"device": action.device, "agentID": "", "groupID": ""}
            if action.action == "pause":
                args["reason"] = action.reason       # the core reads it where it knows pause reasons
            value = await link.handle(AGENT_ACTIONS[action.action], args)
    except BadAction:
        raise
    except Exception:  # noqa: BLE001 - the daemon goes on; the supervisor is told
        log.exception("supervisor: %s on %s (link %d) failed", action.action, action.device, action.link)
        return Outcome(False, int(Result.UNKNOWN_ERROR), "internal error; see the gateway's log")
    code = value if isinstance(value, int) else int(Result.UNKNOWN_ERROR)
    return Outcome(code == 0, code, message_of(code))


async def _spy(link: Any, action: Action, phone: str) -> Outcome:
    spy = getattr(link, "spy", None)
    unsupported = Outcome(False, int(Result.NOT_SUPPORTED_FEATURE), f"{action.action} is not offered by link "
                          f"{action.link}: it needs a PABX that can listen in on calls (Asterisk)")
    if not callable(spy) or getattr(link, "spy_supported", True) is False:
        return unsupported
    if not phone:
        raise BadAction(Result.INVALID_PHONE_NUMBER, "no phone to listen from: give 'phone', or set "
                                                     "supervisor.phones for this user")
    try:
        value = await spy(phone, action.device, action.action)
    except PabxError as e:
        return Outcome(False, int(e.code), e.detail or message_of(int(e.code)))
    code = int(value) if isinstance(value, int) and not isinstance(value, bool) else 0
    if code == Result.NOT_SUPPORTED_FEATURE:
        return unsupported
    return Outcome(code == 0, code, message_of(code))
