"""SmartCTI numbers Protheus understands (smartcti.md §2 and §4.3)."""
from enum import IntEnum


class Result(IntEnum):
    """Result codes of SMARTCTI.CH; 9 is not defined there."""

    SUCCESS = 0
    INVALID_USER = 1
    INVALID_PHONE_NUMBER = 2
    INVALID_OPTION = 3
    FILE_NOT_FOUND = 4
    INVALID_CALL_ID = 5
    CALL_ID_ALREADY_EXISTS = 6
    INVALID_SIZE_BUFFER = 7
    NO_DIAL_TONE = 8
    BUSY = 10
    NO_ANSWER = 11
    ANSWER_MACHINE = 12
    FAX_MACHINE = 13
    DESTINATION_TALK_OFF = 14
    FAILURE_DURING_SEND_FAX = 15
    DISCONNECTED_LINK = 16
    INCOMPLETE_BUFFER = 17
    INVALID_DEVICE = 18
    NO_WAITING_CALL = 19
    PARK_AREA_FULL = 20
    NOT_SUPPORTED_FEATURE = 21
    OUT_OF_SERVICE = 22
    INVALID_GROUP_ID = 23
    INTERNAL_ERROR = 24
    INTERCEPT = 25
    UNKNOWN_ERROR = 99


class AgentStateCode(IntEnum):
    """Values of queryAgentState; 16 (link down) is a Result, never a state."""

    LOGOUT = 25
    LOGIN = 26
    AFTER_CALL_WORK = 27
    READY = 28
    BUSY = 29
    PAUSED = 30
