"""The Asterisk driver's own rules, without Asterisk: what it dials, what it installs, how it meets
a channel that vanished under it."""
import asyncio

import pytest

from smartcti_gateway.core.codes import Result
from smartcti_gateway.core.pabx import PabxError, TransferCall
from smartcti_gateway.pabx.asterisk.ami import Message
from smartcti_gateway.pabx.asterisk.driver import AsteriskDriver, _transfer, dialable, installed_dialplan
from smartcti_gateway.pabx.asterisk.options import AsteriskOptions
from smartcti_gateway.pabx.base import Common


@pytest.mark.parametrize("typed,dialled", [
    ("4833334444", "4833334444"), ("(48) 3333-4444", "4833334444"), ("+55 48 3333.4444", "+554833334444"),
    ("*72", "*72"), ("2002#", "2002#"),
])
def test_numbers_people_type_are_dialled_as_digits(typed, dialled):
    assert dialable(typed) == dialled


@pytest.mark.parametrize("number", ["48x", "2002,60,G(x)", "2002&PJSIP/2003", "2002@other-context", "", "1" * 41,
                                    "2002\r\nAction: Command", "++55"])
def test_what_is_not_a_number_is_refused_with_2(number):
    with pytest.raises(PabxError) as e:
        dialable(number)
    assert e.value.code is Result.INVALID_PHONE_NUMBER


def test_the_installed_dialplan_stays_in_its_own_contexts_and_dials_through_the_sites():
    o = AsteriskOptions(context="from-internal", music_class="calm")
    rows = installed_dialplan(o)
    assert {r[0] for r in rows} == {"smartcti-hold", "smartcti-park", "smartcti-dial", "smartcti-join"}
    assert ("smartcti-hold", "s", 2, "MusicOnHold", "calm") in rows
    assert ("smartcti-dial", "_[0-9*#+]!", 2, "Dial", "Local/${EXTEN}@from-internal,60,g") in rows
    assert rows[0] == ("smartcti-hold", "s", 1, "Answer", "")       # the keep-alive adds this one again


def test_a_transfer_whose_consulted_local_channel_was_just_optimised_away_goes_to_the_party_swapped_in():
    """CI under load: Transfer answered 3, "AMI Bridge: Channel2 does not exist: Local/2002@from-internal;1".
    The consultation's Local pair had been optimised away after the tracker last heard of it; the events
    saying which channel took its place come a moment after Asterisk's refusal. The transfer is made to it."""
    def snap(channel, uid, num):
        return {"Channel": channel, "Uniqueid": uid, "Linkedid": "1.1", "CallerIDNum": num,
                "ChannelStateDesc": "Up", "ConnectedLineNum": "", "Exten": "", "Context": "from-internal"}
    customer = snap("Local/7001@incoming-00000001;2", "1.1", "4832810000")
    agent = snap("PJSIP/2001-00000002", "1.2", "2001")
    local = snap("Local/2002@from-internal-00000007;1", "1.3", "2001")
    colleague = snap("PJSIP/2002-00000009", "1.5", "2002")

    async def scenario():
        drv = AsteriskDriver(AsteriskOptions(), Common(2, "link 2", 2.0, 2.0))
        drv.tracker.monitored.update({"2001", "2002"})
        for chan in (customer, agent, local):
            drv._ami_event(Message.of(Event="Newchannel", **chan))
        for chan in (agent, local):
            drv._ami_event(Message.of(Event="BridgeEnter", BridgeUniqueid="br2", **chan))
        a = drv.tracker.chans["1.2"]
        drv.tracker.consulting(a, drv.tracker.chans["1.1"], "c1", "2002")
        a.peer, a.reported = "1.3", "established"
        sent = []

        class Ami:
            async def send(self, name, fields):
                sent.append((name, dict(fields)))
                if name == "Bridge" and fields["Channel2"] == local["Channel"]:
                    # Asterisk refuses, then tells the swap: the colleague's channel in, the Local one out
                    loop = asyncio.get_running_loop()
                    loop.call_soon(drv._ami_event, Message.of(Event="Newchannel", **colleague))
                    loop.call_soon(drv._ami_event, Message.of(Event="BridgeEnter", BridgeUniqueid="br2",
                                                              SwapUniqueid="1.3", **colleague))
                    loop.call_soon(drv._ami_event, Message.of(Event="BridgeLeave", BridgeUniqueid="br2", **local))
                    loop.call_soon(drv._ami_event, Message.of(Event="Hangup", Cause="16", **local))
                    return Message.of(Response="Error", Message=f"Channel2 does not exist: {local['Channel']}")
                return Message.of(Response="Success")
        drv.conn = Ami()
        await _transfer(drv, TransferCall("2001"))
        return sent

    sent = asyncio.run(scenario())
    bridges = [(f["Channel1"], f["Channel2"]) for name, f in sent if name == "Bridge"]
    assert bridges == [(customer["Channel"], local["Channel"]), (customer["Channel"], colleague["Channel"])]
    assert ("Hangup", {"Channel": agent["Channel"]}) in sent
