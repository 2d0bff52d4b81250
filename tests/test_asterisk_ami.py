"""The AMI framing without sockets: bytes in, messages out; actions as bytes; the bounds on what a peer sends."""
import re

import pytest

from smartcti_gateway.pabx.asterisk.ami import MAX_FIELDS, MAX_LINE, AmiProtocolError, Message, Parser, action
from smartcti_gateway.pabx.asterisk.connection import event_filter
from smartcti_gateway.pabx.asterisk.tracker import Tracker

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def parse(data: bytes, chunk: int = 0) -> tuple[Parser, list[Message]]:
    p = Parser()
    if not chunk:
        return p, p.feed(data)
    out = []
    for i in range(0, len(data), chunk):
        out += p.feed(data[i:i + chunk])
    return p, out


def test_banner_then_messages_in_any_chunking():
    data = (BANNER + b"Response: Success\r\nActionID: sc1\r\nMessage: Authentication accepted\r\n\r\n"
            b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
    for chunk in (0, 1, 7, 64):
        p, msgs = parse(data, chunk)
        assert p.version == "11.0.0"
        assert [m.fields for m in msgs] == [
            {"Response": "Success", "ActionID": "sc1", "Message": "Authentication accepted"},
            {"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"}]
        assert msgs[0].is_response and msgs[0].ok and msgs[0].action_id == "sc1"
        assert msgs[1].event == "FullyBooted" and not msgs[1].is_response


def test_bare_lf_line_ends_and_values_with_colons():
    _, (m,) = parse(BANNER + b"Event: Newchannel\nChannel: PJSIP/2001-0000001a\nCallerIDName: Dr. X: y\n\n")
    assert m["Channel"] == "PJSIP/2001-0000001a" and m["CallerIDName"] == "Dr. X: y"


def test_repeated_keys_are_kept_in_order():
    _, (m,) = parse(BANNER + b"Event: Newchannel\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n\r\n")
    assert m.values("ChanVariable") == ["A=1", "B=2"] and m["ChanVariable"] == "B=2"


def test_an_event_carrying_a_response_field_is_an_event():
    """OriginateResponse has Response and the Originate's ActionID: taking it for the action's answer
    would lose the call's failure."""
    _, (m,) = parse(BANNER + b"Event: OriginateResponse\r\nActionID: sc9\r\nResponse: Failure\r\nReason: 3\r\n\r\n")
    assert m.event == "OriginateResponse" and not m.is_response


def test_command_output_lines_are_kept():
    _, (m,) = parse(BANNER + b"Response: Follows\r\nActionID: sc2\r\nraw output line\r\n--END COMMAND--\r\n\r\n")
    assert m.ok and m.values("Output") == ["raw output line", "--END COMMAND--"]


@pytest.mark.parametrize("data,what", [
    (b"HTTP/1.1 200 OK\r\n\r\n", "not an AMI banner"),
    (BANNER + b"Event: X\r\nK: " + b"v" * (MAX_LINE + 10) + b"\r\n\r\n", "longer than"),
    (BANNER + b"Event: X\r\n" + b"".join(b"K%d: v\r\n" % i for i in range(MAX_FIELDS + 1)), "more than"),
])
def test_what_is_not_ami_or_beyond_the_bounds_is_refused(data, what):
    with pytest.raises(AmiProtocolError, match=what):
        parse(data)


def test_a_huge_line_is_refused_before_it_ends():
    """A peer that never sends a line end cannot make us buffer without limit."""
    p = Parser()
    p.feed(BANNER)
    with pytest.raises(AmiProtocolError):
        for _ in range(10):
            p.feed(b"x" * 4096)


def test_action_bytes_and_no_header_injection():
    raw = action("Originate", "sc5", {"Channel": "PJSIP/2001", "Exten": "123\r\nAction: Command\r\nCommand: core stop"})
    assert raw == (b"Action: Originate\r\nActionID: sc5\r\nChannel: PJSIP/2001\r\n"
                   b"Exten: 123  Action: Command  Command: core stop\r\n\r\n")
    assert raw.count(b"\r\n\r\n") == 1 and raw.count(b"\r\nAction:") == 0


def test_the_event_filter_names_every_event_the_tracker_reads_and_only_those():
    names = Tracker.events()
    assert {"Newchannel", "Newstate", "DialBegin", "DialEnd", "Hangup", "BridgeEnter", "Hold", "Unhold",
            "AttendedTransfer", "QueueMemberAdded", "QueueMemberPause", "OriginateResponse"} <= set(names)
    f = event_filter(names)
    # POSIX ERE as Asterisk's regexec reads it; the same pattern in Python's dialect to check what it matches
    py = re.compile(f.replace("[[:space:]]", r"\s"))
    assert py.match("Event: DialBegin\r\nPrivilege: call,all\r\n")
    assert not py.match("Event: DialBeginX\r\n") and not py.match("Event: VarSet\r\n")
    assert not py.match("Event: Newexten\r\n") and not py.match("Privilege: x\r\nEvent: Hangup\r\n")
