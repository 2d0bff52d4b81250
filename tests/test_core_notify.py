"""PABX events -> SmartCTI notifications (smartcti.md §3), without sockets.

Every test feeds neutral events to ``Notifier.on_pabx_event`` and asserts the
exact notifications: event name, CDEVICE as Protheus wrote it, the values in
WSDL order and the eventing URLs.
"""
from __future__ import annotations

import pytest

from smartcti_gateway.core import pabx as p
from smartcti_gateway.core.codes import Result
from smartcti_gateway.core.commands import Commands
from smartcti_gateway.core.model import Switch
from smartcti_gateway.core.notify import (
    EVENT_PARAMS,
    INTEGER_PARAMS,
    Notification,
    Notifier,
    associated_data,
    clean,
)

E = p.CallEventType
A = p.AgentEventType
A_S = p.AgentState
D = p.Direction
CS = p.ConnectionState

URL = "http://protheus:8080/ws/SMARTCTIWSEVENTING.apw"
URL2 = "http://listener:8080/ws/SMARTCTIWSEVENTING.apw"
ANI = "4832810000"


def setup(*devices: str, url: str = URL) -> Notifier:
    """A switch with ``devices`` in service (CDEVICE = the name itself) at ``url``."""
    switch = Switch()
    for name in devices:
        switch.put_in_service(name, name, url)
    return Notifier(switch)


def ev(type_: E, device: str, call_id: str, **kw) -> p.CallEvent:
    return p.CallEvent(type_, device, call_id, **kw)


def N(name: str, device: str, *values, cdevice: str | None = None, urls=(URL,)) -> Notification:
    """The expected notification."""
    return Notification(name, device, device if cdevice is None else cdevice, tuple(values), tuple(urls))


def feed(n: Notifier, *events) -> list[Notification]:
    out: list[Notification] = []
    for e in events:
        out += n.on_pabx_event(e)
    return out


# ------------------------------------------------------------------ inbound
def test_inbound_acd_call_rings_with_calltype_1_and_phone_identification():
    n = setup("2001")
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001", group="500",
                             direction=D.INBOUND))
    assert out == [N("RINGING", "2001", "C1", ANI, "7001", f"3|{ANI}", 1)]
    assert type(out[0].values[-1]) is int
    out = n.on_pabx_event(ev(E.ESTABLISHED, "2001", "C1", calling=ANI, called="7001", direction=D.INBOUND))
    assert out == [N("ANSWERED", "2001", "C1", ANI, "7001")]
    out = n.on_pabx_event(ev(E.CONNECTION_CLEARED, "2001", "C1", calling=ANI, called="7001"))
    assert out == [N("CONNECTIONCLEARED", "2001", "C1", ANI, "7001")]
    assert n.switch.calls == {} and n.switch.devices["2001"].calls == []


def test_inbound_unknown_direction_is_calltype_1():
    n = setup("2001")
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001"))
    assert out == [N("RINGING", "2001", "C1", ANI, "7001", f"3|{ANI}", 1)]


def test_typed_call_data_is_passed_as_associated_data():
    n = setup("2001")
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001",
                             data="2|11122233344", direction=D.INBOUND))
    assert out == [N("RINGING", "2001", "C1", ANI, "7001", "2|11122233344", 1)]


@pytest.mark.parametrize("data", ["cliente 123", "abc|123", "|123", " x|1", "11122233344"])
def test_call_data_without_numeric_type_identifies_by_phone(data):
    n = setup("2001")
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001", data=data,
                             direction=D.INBOUND))
    assert out == [N("RINGING", "2001", "C1", ANI, "7001", f"3|{ANI}", 1)]


def test_associated_data_rules():
    assert associated_data("", ANI) == f"3|{ANI}"
    assert associated_data("2|11122233344", ANI) == "2|11122233344"
    assert associated_data("4|ADE_CODCON=1|ADE_CHAVE=2", ANI) == "4|ADE_CODCON=1|ADE_CHAVE=2"
    assert associated_data("1|", ANI) == "1|"
    assert associated_data("no type", ANI) == f"3|{ANI}"
    assert associated_data("x|y", "") == "3|"


def test_call_data_known_from_the_model_is_used_when_the_event_lacks_it():
    n = setup("2001")
    n.on_pabx_event(ev(E.DELIVERED, "2001", "C2", calling=ANI, called="7001", data="2|99988877766",
                       direction=D.INBOUND))
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C2"))   # re-announced bare
    assert out == [N("RINGING", "2001", "C2", ANI, "7001", "2|99988877766", 1)]


def test_dialler_call_is_calltype_3():
    n = setup("2001")
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="8000", direction=D.DIALLER))
    assert out == [N("RINGING", "2001", "C1", ANI, "8000", f"3|{ANI}", 3)]


def test_dialler_direction_known_from_the_model():
    n = setup("2001")
    n.switch.note_call("2001", "C1", CS.QUEUED, D.DIALLER)
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="8000"))
    assert out == [N("RINGING", "2001", "C1", ANI, "8000", f"3|{ANI}", 3)]


# ----------------------------------------------------------------- outbound
def test_outbound_call_sequence():
    n = setup("2001")
    out = feed(
        n,
        ev(E.SERVICE_INITIATED, "2001", "C9"),
        ev(E.ORIGINATED, "2001", "C9", called=ANI),
        ev(E.DELIVERED, "2001", "C9", calling="2001", called=ANI, other_device=ANI, direction=D.OUTBOUND),
        ev(E.ESTABLISHED, "2001", "C9", calling="2001", called=ANI, other_device=ANI, direction=D.OUTBOUND),
        ev(E.CONNECTION_CLEARED, "2001", "C9", calling="2001", called=ANI, other_device=ANI),
    )
    assert out == [
        N("SERVICEINITIATED", "2001", "C9", "2001", ""),
        N("ORIGINATED", "2001", "C9", "2001", ANI),
        N("RINGING", "2001", "C9", "2001", ANI, "3|2001", 2),
        N("ANSWERED", "2001", "C9", "2001", ANI),
        N("CONNECTIONCLEARED", "2001", "C9", "2001", ANI),
    ]
    assert n.switch.calls == {}


def test_originated_keeps_a_known_calling_number():
    n = setup("2001")
    out = n.on_pabx_event(ev(E.ORIGINATED, "2001", "C9", calling="4830000000", called=ANI))
    assert out == [N("ORIGINATED", "2001", "C9", "4830000000", ANI)]


def test_delivered_to_other_device_is_calltype_2_even_for_an_inbound_call():
    # the far end ringing is never a screen pop for this device
    n = setup("2001")
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="2002", other_device="2002",
                             direction=D.INBOUND))
    assert out == [N("RINGING", "2001", "C1", ANI, "2002", f"3|{ANI}", 2)]


def test_outbound_direction_delivered_to_self_is_calltype_2():
    n = setup("2001")
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling="2001", called=ANI, other_device="2001",
                             direction=D.OUTBOUND))
    assert out == [N("RINGING", "2001", "C1", "2001", ANI, "3|2001", 2)]


def test_failed_call_reports_cause_as_integer():
    n = setup("2001")
    out = feed(
        n,
        ev(E.SERVICE_INITIATED, "2001", "C9", calling="2001"),
        ev(E.FAILED, "2001", "C9", calling="2001", called=ANI, cause=Result.BUSY),
    )
    assert out == [
        N("SERVICEINITIATED", "2001", "C9", "2001", ""),
        N("CALLFAILURE", "2001", "C9", "2001", ANI, 10),
    ]
    assert type(out[1].values[-1]) is int
    assert n.switch.devices["2001"].last_failure is Result.BUSY


def test_failed_falls_back_to_the_model_for_ani_and_dnis():
    n = setup("2001")
    feed(n, ev(E.ORIGINATED, "2001", "C9", calling="2001", called=ANI))
    out = n.on_pabx_event(ev(E.FAILED, "2001", "C9", cause=Result.NO_ANSWER))
    assert out == [N("CALLFAILURE", "2001", "C9", "2001", ANI, 11)]


# --------------------------------------------------------- hold, retrieve
def test_hold_and_retrieve():
    n = setup("2001")
    feed(n, ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001"),
         ev(E.ESTABLISHED, "2001", "C1", calling=ANI, called="7001"))
    out = feed(n, ev(E.HELD, "2001", "C1"), ev(E.RETRIEVED, "2001", "C1"))
    assert out == [N("HELD", "2001", "C1", ANI, "7001"), N("RETRIEVE", "2001", "C1", ANI, "7001")]
    assert n.switch.calls["C1"].connections["2001"] is CS.CONNECTED


def _consultation(n: Notifier) -> list[Notification]:
    """2001 answers C1 from outside, holds it and consults 2002 on C2 (answered)."""
    return feed(
        n,
        ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001", direction=D.INBOUND),
        ev(E.ESTABLISHED, "2001", "C1", calling=ANI, called="7001", direction=D.INBOUND),
        ev(E.HELD, "2001", "C1", calling=ANI, called="7001", direction=D.INBOUND),
        ev(E.SERVICE_INITIATED, "2001", "C2", calling="2001", direction=D.INTERNAL),
        ev(E.ORIGINATED, "2001", "C2", calling="2001", called="2002", other_device="2002", direction=D.INTERNAL),
        ev(E.DELIVERED, "2001", "C2", calling="2001", called="2002", other_device="2002", direction=D.INTERNAL),
        ev(E.DELIVERED, "2002", "C2", calling="2001", called="2002", direction=D.INTERNAL),
        ev(E.ESTABLISHED, "2002", "C2", calling="2001", called="2002", direction=D.INTERNAL),
        ev(E.ESTABLISHED, "2001", "C2", calling="2001", called="2002", other_device="2002",
           direction=D.INTERNAL),
    )


def test_consultation_then_transfer():
    n = setup("2001", "2002")
    out = _consultation(n)
    assert out == [
        N("RINGING", "2001", "C1", ANI, "7001", f"3|{ANI}", 1),
        N("ANSWERED", "2001", "C1", ANI, "7001"),
        N("HELD", "2001", "C1", ANI, "7001"),
        N("SERVICEINITIATED", "2001", "C2", "2001", ""),
        N("ORIGINATED", "2001", "C2", "2001", "2002"),
        N("RINGING", "2001", "C2", "2001", "2002", "3|2001", 2),
        # a colleague's consultation rings at 2002: no customer screen there (smartcti.md §10.6)
        N("RINGING", "2002", "C2", "2001", "2002", "3|2001", 2),
        N("ANSWERED", "2002", "C2", "2001", "2002"),
        N("ANSWERED", "2001", "C2", "2001", "2002"),
    ]
    # the transfer as the Dígitro simulator reports it: the transferring device leaves both
    # calls, then the target gets TRANSFERRED of the kept call re-keyed from the consultation
    out = feed(
        n,
        ev(E.CONNECTION_CLEARED, "2001", "C2", calling="2001", called="2002", other_device="2001"),
        ev(E.CONNECTION_CLEARED, "2001", "C1", calling=ANI, called="7001", other_device="2001"),
        ev(E.TRANSFERRED, "2002", "C1", calling=ANI, called="7001", other_device="2002", old_call_id="C2",
           direction=D.INBOUND),
    )
    assert out == [
        N("CONNECTIONCLEARED", "2001", "C2", "2001", "2002"),
        N("CONNECTIONCLEARED", "2001", "C1", ANI, "7001"),
        N("CONNECTIONCLEARED", "2002", "C2", "2001", "2002"),
        N("RINGING", "2002", "C1", ANI, "7001", f"3|{ANI}", 1),
        N("ANSWERED", "2002", "C1", ANI, "7001"),
    ]
    assert n.switch.devices["2001"].calls == []
    assert n.switch.devices["2002"].calls == ["C1"]
    assert "C2" not in n.switch.calls
    assert n.switch.calls["C1"].connections["2002"] is CS.CONNECTED
    out = n.on_pabx_event(ev(E.CONNECTION_CLEARED, "2002", "C1"))
    assert out == [N("CONNECTIONCLEARED", "2002", "C1", ANI, "7001")]


def test_transfer_keeps_typed_data_and_dialler_type_of_the_transferred_call():
    n = setup("2002")
    n.on_pabx_event(ev(E.DELIVERED, "2002", "C2", calling="2001", called="2002", direction=D.INTERNAL))
    n.on_pabx_event(ev(E.ESTABLISHED, "2002", "C2", calling="2001", called="2002", direction=D.INTERNAL))
    out = n.on_pabx_event(ev(E.TRANSFERRED, "2002", "C1", calling=ANI, called="8000", other_device="2002",
                             old_call_id="C2", data="2|11122233344", direction=D.DIALLER))
    assert out == [
        N("CONNECTIONCLEARED", "2002", "C2", "2001", "2002"),
        N("RINGING", "2002", "C1", ANI, "8000", "2|11122233344", 3),
        N("ANSWERED", "2002", "C1", ANI, "8000"),
    ]
    assert n.switch.devices["2002"].calls == ["C1"] and "C2" not in n.switch.calls


def test_transferred_without_old_leg_rings_and_answers_only():
    n = setup("2002")
    out = n.on_pabx_event(ev(E.TRANSFERRED, "2002", "C1", calling=ANI, called="7001", other_device="2002",
                             direction=D.INBOUND))
    assert out == [
        N("RINGING", "2002", "C1", ANI, "7001", f"3|{ANI}", 1),
        N("ANSWERED", "2002", "C1", ANI, "7001"),
    ]
    # an old call id this device never had is not cleared in Protheus
    n2 = setup("2002")
    out = n2.on_pabx_event(ev(E.TRANSFERRED, "2002", "C1", calling=ANI, called="7001", old_call_id="CX"))
    assert [x.name for x in out] == ["RINGING", "ANSWERED"]


def test_conference_retrieves_only_the_device_whose_leg_was_held():
    n = setup("2001", "2002")
    _consultation(n)
    out = feed(
        n,
        ev(E.CONFERENCED, "2001", "C1", calling=ANI, called="7001", other_device="2001", old_call_id="C2"),
        ev(E.CONFERENCED, "2002", "C1", calling=ANI, called="7001", other_device="2001", old_call_id="C2"),
    )
    assert out == [N("RETRIEVE", "2001", "C1", ANI, "7001")]
    assert n.switch.devices["2001"].calls == ["C1"]
    assert n.switch.devices["2002"].calls == ["C1"]
    assert n.switch.calls["C1"].connections["2001"] is CS.CONNECTED
    assert n.switch.calls["C1"].connections["2002"] is CS.CONNECTED
    assert "C2" not in n.switch.calls


def test_conference_of_a_device_held_on_the_old_call_is_a_retrieve():
    n = setup("2003")
    feed(n, ev(E.ESTABLISHED, "2003", "C5", calling=ANI, called="2003"), ev(E.HELD, "2003", "C5"))
    out = n.on_pabx_event(ev(E.CONFERENCED, "2003", "C1", calling=ANI, called="7001", old_call_id="C5"))
    assert out == [N("RETRIEVE", "2003", "C1", ANI, "7001")]


@pytest.mark.parametrize("kind", [E.CONNECTION_CLEARED, E.DIVERTED])
def test_clearing_event_without_numbers_reports_what_the_model_knew(kind):
    # the model forgets the call when its last monitored party leaves; ANI/DNIS must survive that
    n = setup("2001")
    n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001", direction=D.INBOUND))
    out = n.on_pabx_event(ev(kind, "2001", "C1"))
    assert out == [N("CONNECTIONCLEARED", "2001", "C1", ANI, "7001")]
    assert "C1" not in n.switch.calls


def test_diverted_clears_the_call_on_this_device():
    n = setup("2001")
    n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001", direction=D.INBOUND))
    out = n.on_pabx_event(ev(E.DIVERTED, "2001", "C1", calling=ANI, called="7001", other_device="2005"))
    assert out == [N("CONNECTIONCLEARED", "2001", "C1", ANI, "7001")]
    assert n.switch.devices["2001"].calls == []


# ------------------------------------------------------------------ agents
def test_agent_events_with_agent_and_groups():
    n = setup("2001")
    out = feed(
        n,
        p.AgentEvent(A.LOGGED_ON, "2001", "1234", ("500", "501")),
        p.AgentEvent(A.READY, "2001", "1234", ("500", "501")),
        p.AgentEvent(A.NOT_READY, "2001", "1234", ("500", "501"), reason="3"),
        p.AgentEvent(A.WORK_AFTER_CALL, "2001", "1234", ("500", "501")),
        p.AgentEvent(A.LOGGED_OFF, "2001", "1234", ("500", "501")),
    )
    assert out == [
        N("LOGGEDON", "2001", "1234", "500,501"),
        N("READY", "2001", "1234", "500,501"),
        N("NOTREADY", "2001", "1234", "500,501"),
        N("NOTREADY", "2001", "1234", "500,501"),
        N("LOGGEDOFF", "2001", "1234", "500,501"),
    ]
    assert n.switch.devices["2001"].agent.state is p.AgentState.LOGGED_OFF


def test_agent_and_groups_filled_from_the_model():
    n = setup("2001")
    n.on_pabx_event(p.AgentEvent(A.LOGGED_ON, "2001", "1234", ("500", "501", "502")))
    out = feed(
        n,
        p.AgentEvent(A.READY, "2001"),
        p.AgentEvent(A.NOT_READY, "2001"),
        p.AgentEvent(A.WORK_AFTER_CALL, "2001"),
        p.AgentEvent(A.LOGGED_OFF, "2001"),
    )
    assert out == [
        N("READY", "2001", "1234", "500,501,502"),
        N("NOTREADY", "2001", "1234", "500,501,502"),
        N("NOTREADY", "2001", "1234", "500,501,502"),
        N("LOGGEDOFF", "2001", "1234", "500,501,502"),
    ]


def test_agent_event_without_any_known_agent_sends_blanks():
    n = setup("2001")
    assert n.on_pabx_event(p.AgentEvent(A.LOGGED_OFF, "2001")) == [N("LOGGEDOFF", "2001", "", "")]
    assert n.on_pabx_event(p.AgentEvent(A.READY, "2001")) == [N("READY", "2001", "", "")]


def test_single_group():
    n = setup("2001")
    assert n.on_pabx_event(p.AgentEvent(A.LOGGED_ON, "2001", "77", ("500",))) == [
        N("LOGGEDON", "2001", "77", "500")]


# ------------------------------------------------------ values and routing
def test_single_quotes_and_line_breaks_are_removed():
    n = setup("2001")
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C'1", calling="48'3281\r\n0000", called="70\n01",
                             data="2|111'222\r333", direction=D.INBOUND))
    assert out == [N("RINGING", "2001", "C1", "483281 0000", "70 01", "2|111222 333", 1)]
    out = n.on_pabx_event(p.AgentEvent(A.LOGGED_ON, "2001", "O'Neil\n", ("5'00", "50\r1")))
    assert out == [N("LOGGEDON", "2001", "ONeil ", "500,50 1")]
    for note in out:
        for v in note.values:
            assert "'" not in str(v) and "\n" not in str(v) and "\r" not in str(v)


def test_clean():
    assert clean("plain 123|x") == "plain 123|x"
    assert clean("a'b") == "ab"
    assert clean("a\r\nb") == "a b"
    assert clean("a\nb\rc") == "a b c"
    assert clean("''") == ""


def test_cdevice_is_echoed_as_protheus_wrote_it():
    switch = Switch()
    switch.put_in_service("2001", " 2001 ", URL)
    n = Notifier(switch)
    out = n.on_pabx_event(ev(E.DELIVERED, "2001", "C1", calling=ANI, called="7001"))
    assert out == [N("RINGING", "2001", "C1", ANI, "7001", f"3|{ANI}", 1, cdevice=" 2001 ")]
    assert out[0].params(3)[:2] == [("CDEVICE", " 2001 "), ("ILINKID", 3)]
    out = n.on_pabx_event(p.AgentEvent(A.READY, "2001", "1", ("500",)))
    assert out[0].cdevice == " 2001 " and out[0].device == "2001"


def test_devices_not_in_service_or_without_urls_get_nothing():
    switch = Switch()
    switch.put_in_service("2002", "2002", "")    # in service, but Protheus gave no URL
    switch.put_in_service("2003", "2003", URL)
    switch.release("2003")                       # in service once, now released
    n = Notifier(switch)
    for dev in ("2002", "2003", "9999"):
        assert n.on_pabx_event(ev(E.DELIVERED, dev, "C" + dev, calling=ANI, called="7001")) == []
        assert n.on_pabx_event(p.AgentEvent(A.READY, dev, "1", ("500",))) == []
    # the model is still updated for devices in service
    assert switch.devices["2002"].calls == ["C2002"]
    assert "9999" not in switch.devices and "2003" not in switch.devices


def test_two_urls_give_one_notification_with_both():
    switch = Switch()
    switch.put_in_service("2001", "2001", URL)
    switch.put_in_service("2001", "2001", URL2)
    switch.put_in_service("2001", "2001", URL)   # a third process on the same URL: no duplicate
    n = Notifier(switch)
    out = n.on_pabx_event(ev(E.HELD, "2001", "C1", calling=ANI, called="7001"))
    assert out == [N("HELD", "2001", "C1", ANI, "7001", urls=(URL, URL2))]


def test_notification_urls_are_a_snapshot():
    n = setup("2001")
    out = n.on_pabx_event(ev(E.HELD, "2001", "C1"))
    n.switch.put_in_service("2001", "2001", URL2)
    assert out[0].urls == (URL,)


SAMPLE_VALUES = {
    "CALLID": "C1", "ANI": ANI, "DNIS": "7001", "ASSOCIATEDDATA": f"3|{ANI}", "CALLTYPE": 1, "CAUSE": 10,
    "CAGENTID": "1234", "CGROUPID": "500,501",
}

EXPECTED_ORDER = {
    "INSERVICE": ["CDEVICE", "ILINKID"],
    "RINGING": ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS", "ASSOCIATEDDATA", "CALLTYPE"],
    "SERVICEINITIATED": ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS"],
    "ORIGINATED": ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS"],
    "CALLFAILURE": ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS", "CAUSE"],
    "ANSWERED": ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS"],
    "HELD": ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS"],
    "RETRIEVE": ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS"],
    "CONNECTIONCLEARED": ["CDEVICE", "ILINKID", "CALLID", "ANI", "DNIS"],
    "LOGGEDON": ["CDEVICE", "ILINKID", "CAGENTID", "CGROUPID"],
    "LOGGEDOFF": ["CDEVICE", "ILINKID", "CAGENTID", "CGROUPID"],
    "READY": ["CDEVICE", "ILINKID", "CAGENTID", "CGROUPID"],
    "NOTREADY": ["CDEVICE", "ILINKID", "CAGENTID", "CGROUPID"],
}


def test_event_params_cover_the_13_operations():
    assert set(EVENT_PARAMS) == set(EXPECTED_ORDER)
    assert len(EVENT_PARAMS) == 13
    assert INTEGER_PARAMS == {"ILINKID", "CALLTYPE", "CAUSE"}


@pytest.mark.parametrize("name", sorted(EXPECTED_ORDER))
def test_params_order(name):
    names = EXPECTED_ORDER[name][2:]
    note = Notification(name, "2001", " 2001", tuple(SAMPLE_VALUES[x] for x in names), (URL,))
    assert note.params(7) == [("CDEVICE", " 2001"), ("ILINKID", 7), *((x, SAMPLE_VALUES[x]) for x in names)]


def test_notifications_from_events_have_one_value_per_parameter():
    n = setup("2001", "2002")
    out = _consultation(n) + feed(
        n,
        ev(E.FAILED, "2001", "C7", cause=Result.INVALID_PHONE_NUMBER),
        p.AgentEvent(A.LOGGED_ON, "2001", "1", ("500",)),
    )
    for note in out:
        assert len(note.values) == len(EVENT_PARAMS[note.name]), note
        for (param, value) in note.params(1):
            assert isinstance(value, int) if param in INTEGER_PARAMS else isinstance(value, str), (note, param)


# -------------------------------------------------------------- in service
def test_in_service_notification():
    switch = Switch()
    dev = switch.put_in_service("2001", " 2001", URL)
    switch.put_in_service("2001", " 2001", URL2)
    note = Notifier(switch).in_service(dev, URL2)
    assert note == Notification("INSERVICE", "2001", " 2001", (), (URL2,))
    assert note.params(4) == [("CDEVICE", " 2001"), ("ILINKID", 4)]


def test_agent_in_service_puts_inservice_in_the_outbox():
    c = Commands(Switch(), "test")
    step = c.plan("AgentInService", {"device": " 2001 ", "ipaddress": URL})
    assert step.request == p.MonitorStart("2001")
    assert c.outbox == []          # nothing before the switch accepted the device
    assert step.done(None) == 0
    assert c.outbox == [Notification("INSERVICE", "2001", " 2001 ", (), (URL,))]
    # a second process (the listener) on another URL: answered alone, its own INSERVICE
    step = c.plan("AgentInService", {"device": "2001", "ipaddress": URL2})
    assert step.request is None and step.done(None) == 0
    assert c.outbox[1:] == [Notification("INSERVICE", "2001", "2001", (), (URL2,))]
    # and events now go to both URLs, each with the spelling its session sent (smartcti.md §3.4)
    out = c.notifier.on_pabx_event(ev(E.HELD, "2001", "C1"))
    assert out == [N("HELD", "2001", "C1", "", "", cdevice=" 2001 ", urls=(URL,)),
                   N("HELD", "2001", "C1", "", "", cdevice="2001", urls=(URL2,))]


def test_agent_in_service_refused_or_without_url_owes_nothing():
    c = Commands(Switch(), "test")
    step = c.plan("AgentInService", {"device": "2001", "ipaddress": URL})
    assert step.failed(p.PabxError(Result.INVALID_DEVICE)) == 18
    assert c.outbox == []
    step = c.plan("AgentInService", {"device": "2001", "ipaddress": ""})
    step.done(None)
    assert c.outbox == []


# ----------------------------------------------- findings of smartcti.md §10
def test_internal_call_rings_without_a_customer_screen():
    """RINGING with callType 1 or 3 pops a customer screen (§10.6): not for a colleague's call."""
    n = setup("2001", "2002")
    out = n.on_pabx_event(ev(E.DELIVERED, "2002", "C1", calling="2001", called="2002", direction=D.INTERNAL))
    assert out == [N("RINGING", "2002", "C1", "2001", "2002", "3|2001", 2)]
    # a PABX that does not say "internal": the caller is an extension this link serves
    out = n.on_pabx_event(ev(E.DELIVERED, "2002", "C3", calling="2001", called="2002"))
    assert out[0].values[-1] == 2
    # an outside caller still pops
    out = n.on_pabx_event(ev(E.DELIVERED, "2002", "C4", calling=ANI, called="7001"))
    assert out[0].values[-1] == 1


def test_a_colleague_transferred_to_another_rings_without_a_customer_screen():
    n = setup("2001", "2002", "2003")
    n.on_pabx_event(ev(E.DELIVERED, "2002", "C2", calling="2001", called="2002", direction=D.INTERNAL))
    out = n.on_pabx_event(ev(E.TRANSFERRED, "2002", "C1", calling="2003", called="2001", other_device="2002",
                             old_call_id="C2"))
    assert [x.name for x in out] == ["CONNECTIONCLEARED", "RINGING", "ANSWERED"] and out[1].values[-1] == 2


@pytest.mark.parametrize("cause,sent", [
    (Result.INVALID_PHONE_NUMBER, 2), (Result.INTERCEPT, 2), (Result.NO_DIAL_TONE, 8), (Result.OUT_OF_SERVICE, 8),
    (Result.BUSY, 10), (Result.NO_ANSWER, 11), (Result.DESTINATION_TALK_OFF, 11), (Result.ANSWER_MACHINE, 25),
    (Result.FAX_MACHINE, 25), (Result.PARK_AREA_FULL, 20), (Result.UNKNOWN_ERROR, 99), (Result.INTERNAL_ERROR, 24),
])
def test_callfailure_causes_are_those_protheus_has_a_message_for(cause, sent):
    """§10.7: the listeners word 2, 8, 10, 11, 20 and 25 (25 = voicemail); others read "unexpected"."""
    n = setup("2001")
    n.on_pabx_event(ev(E.ORIGINATED, "2001", "C9", calling="2001", called=ANI))
    out = n.on_pabx_event(ev(E.FAILED, "2001", "C9", cause=cause))
    assert out == [N("CALLFAILURE", "2001", "C9", "2001", ANI, sent)]


def _agent_on(n: Notifier, state=A.READY):
    n.switch.devices["2001"].agent = None
    n.on_pabx_event(p.AgentEvent(A.LOGGED_ON, "2001", "1234", ("701",)))
    if state is not None:
        n.on_pabx_event(p.AgentEvent(state, "2001", "1234", ("701",)))


@pytest.mark.parametrize("echo", ["after", "before", "never"])
@pytest.mark.parametrize("op,state,event", [("Ready", A.READY, "READY"), ("NotReady", A.NOT_READY, "NOTREADY")])
def test_ready_and_not_ready_are_confirmed_exactly_once(op, state, event, echo):
    """§10.2: the listener's Pausa/Disponível button moves only on READY/NOTREADY events."""
    c = Commands(Switch(), "test")
    c.plan("AgentInService", {"device": "2001", "ipaddress": URL}).done(None)
    c.plan("Logon", {"device": "2001", "agentID": "1234", "groupID": "701"}).done(None)
    c.outbox.clear()
    step = c.plan(op, {"device": "2001"})
    told = []
    if echo == "before":       # the PABX's event overtook the command's answer
        told += c.notifier.on_pabx_event(p.AgentEvent(state, "2001", "1234", ("701",)))
    assert step.done(None) == 0
    told += c.outbox
    if echo == "after":
        told += c.notifier.on_pabx_event(p.AgentEvent(state, "2001", "1234", ("701",)))
    assert [x.name for x in told] == [event]
    assert told[0].values == ("1234", "701")
    # the same command again (the button out of step): told again, once
    c.outbox.clear()
    c.plan(op, {"device": "2001"}).done(None)
    assert [x.name for x in c.outbox] == [event]
    # a change on the phone afterwards is told as always
    other = A.NOT_READY if state is A.READY else A.READY
    assert [x.name for x in c.notifier.on_pabx_event(p.AgentEvent(other, "2001", "1234", ("701",)))] == \
        ["NOTREADY" if event == "READY" else "READY"]


def test_a_refused_ready_is_not_confirmed():
    c = Commands(Switch(), "test")
    c.plan("AgentInService", {"device": "2001", "ipaddress": URL}).done(None)
    c.outbox.clear()
    assert c.plan("Ready", {"device": "2001"}).failed(p.PabxError(Result.INVALID_USER)) == 1
    assert c.outbox == []


def test_a_switch_that_reports_late_has_every_echo_absorbed_in_order():
    """Polled events: the PABX's reports of Logon, Ready and NotReady come after all three answers.
    Protheus hears LOGGEDON, READY, NOTREADY once each, in that order; a report after the echoes' wait
    is news again."""
    clock = [100.0]
    c = Commands(Switch(lambda: clock[0]), "test", notifier=None)
    c.plan("AgentInService", {"device": "2001", "ipaddress": URL}).done(None)
    c.outbox.clear()
    for op, args in (("Logon", {"agentID": "1234", "groupID": "701"}), ("Ready", {}), ("NotReady", {})):
        assert c.plan(op, {"device": "2001", **args}).done(None) == 0
    told = [x.name for x in c.outbox]
    for kind in (A.LOGGED_ON, A.READY, A.NOT_READY):       # the late reports
        told += [x.name for x in c.notifier.on_pabx_event(p.AgentEvent(kind, "2001", "1234", ("701",)))]
        assert c.switch.agent_state("2001") is A_S.NOT_READY
    assert told == ["LOGGEDON", "READY", "NOTREADY"]
    clock[0] += 11                                            # the agent presses ready on the phone, later
    assert [x.name for x in c.notifier.on_pabx_event(p.AgentEvent(A.READY, "2001", "1234", ("701",)))] == ["READY"]


@pytest.mark.parametrize("echo", ["after", "before", "never"])
def test_logon_and_logoff_are_confirmed_once_whether_the_switch_reports_them_or_not(echo):
    """smartcti.md §3.5: LOGGEDON and LOGGEDOFF follow the commands; a PABX that reports them is not
    heard twice."""
    c = Commands(Switch(), "test")
    c.plan("AgentInService", {"device": "2001", "ipaddress": URL}).done(None)
    c.outbox.clear()
    told = []
    for op, args, kind in (("Logon", {"agentID": "1234", "groupID": "701"}, A.LOGGED_ON),
                           ("Logoff", {}, A.LOGGED_OFF)):
        step = c.plan(op, {"device": "2001", **args})
        if echo == "before":
            told += c.notifier.on_pabx_event(p.AgentEvent(kind, "2001", "1234", ("701",)))
        assert step.done(None) == 0
        told += c.outbox
        c.outbox.clear()
        if echo == "after":
            told += c.notifier.on_pabx_event(p.AgentEvent(kind, "2001", "1234", ("701",)))
    assert [(x.name, x.values) for x in told] == [("LOGGEDON", ("1234", "701")), ("LOGGEDOFF", ("1234", "701"))]


def test_a_logon_report_overtaken_by_the_ready_answer_undoes_nothing():
    """Seen in CI on the simulated NGC: its LOGGEDON came after the answer to the next Ready. Protheus
    heard READY, LOGGEDON, READY, and queryAgentState said 26 when the NGC died before its READY came."""
    c = Commands(Switch(), "test")
    c.plan("AgentInService", {"device": "2001", "ipaddress": URL}).done(None)
    c.outbox.clear()
    assert c.plan("Logon", {"device": "2001", "agentID": "1234", "groupID": "701"}).done(None) == 0
    assert c.plan("Ready", {"device": "2001"}).done(None) == 0
    told = [x.name for x in c.outbox]
    told += [x.name for x in c.notifier.on_pabx_event(p.AgentEvent(A.LOGGED_ON, "2001", "1234", ("701",)))]
    assert c.switch.agent_state("2001") is A_S.READY
    assert c.plan("queryAgentState", {"cDevice": "2001"}).failed(p.PabxUnavailable(Result.OUT_OF_SERVICE)) == 28
    told += [x.name for x in c.notifier.on_pabx_event(p.AgentEvent(A.READY, "2001", "1234", ("701",)))]
    assert told == ["LOGGEDON", "READY"]
    # a change on the phone afterwards is news again
    assert [x.name for x in c.notifier.on_pabx_event(p.AgentEvent(A.NOT_READY, "2001", "1234", ("701",)))] == \
        ["NOTREADY"]
    assert c.switch.agent_state("2001") is A_S.NOT_READY


def test_a_report_that_is_news_means_no_earlier_echo_will_come():
    """A pause on the phone reported after the gateway's Ready answered but before its echo: the PABX
    may have done the pause first, so the Ready's echo that follows is the truth and is told."""
    c = Commands(Switch(), "test")
    c.plan("AgentInService", {"device": "2001", "ipaddress": URL}).done(None)
    _agent_on(c.notifier, A.NOT_READY)
    c.outbox.clear()
    assert c.plan("Ready", {"device": "2001"}).done(None) == 0
    told = [x.name for x in c.outbox]
    for kind in (A.NOT_READY, A.READY):
        told += [x.name for x in c.notifier.on_pabx_event(p.AgentEvent(kind, "2001", "1234", ("701",)))]
    assert told == ["READY", "NOTREADY", "READY"]
    assert c.switch.agent_state("2001") is A_S.READY


def test_the_switchs_present_word_is_not_taken_for_a_stale_echo():
    """A resync (queryAgentState's answer) says how the agent is now, whatever echo is still awaited."""
    c = Commands(Switch(), "test")
    c.plan("AgentInService", {"device": "2001", "ipaddress": URL}).done(None)
    c.plan("Logon", {"device": "2001", "agentID": "1234", "groupID": "701"}).done(None)
    c.plan("Ready", {"device": "2001"}).done(None)
    c.outbox.clear()
    assert c.plan("queryAgentState", {"cDevice": "2001"}).done(
        p.AgentInfo(A_S.LOGGED_ON, "1234", ("701",))) == 26
    assert [x.name for x in c.outbox] == ["LOGGEDON"]


def test_a_switch_that_does_not_echo_commands_has_no_stale_reports():
    """Once an echo went unanswered, a change on the phone that matches an older confirmed change is
    the agent's, not a late echo: Ready and NotReady from Protheus, then ready on the phone."""
    clock = [100.0]
    c = Commands(Switch(lambda: clock[0]), "test")
    c.plan("AgentInService", {"device": "2001", "ipaddress": URL}).done(None)
    c.plan("Logon", {"device": "2001", "agentID": "1234", "groupID": "701"}).done(None)
    clock[0] += 11                                 # no LOGGEDON came
    for op in ("Ready", "NotReady"):
        assert c.plan(op, {"device": "2001"}).done(None) == 0
    c.outbox.clear()
    assert [x.name for x in c.notifier.on_pabx_event(p.AgentEvent(A.READY, "2001", "1234", ("701",)))] == \
        ["READY"]
    assert c.switch.agent_state("2001") is A_S.READY
