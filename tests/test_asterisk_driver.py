"""The Asterisk driver's own rules, without Asterisk: what it dials, what it installs."""
import pytest

from smartcti_gateway.core.codes import Result
from smartcti_gateway.core.pabx import PabxError
from smartcti_gateway.pabx.asterisk.driver import dialable, installed_dialplan
from smartcti_gateway.pabx.asterisk.options import AsteriskOptions


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
