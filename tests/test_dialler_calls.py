"""Calls a dialler delivered pop as CALLTYPE 3 (issue 14 item 6): by the PABX's own word, or by the link's
``dialler`` rule (DNIS, ACD group, a call variable). Unit tests of the rule, then the gateway on the Dígitro
simulator; the Asterisk channel variable is in tests/test_asterisk_wrapup.py."""
from __future__ import annotations

import pytest

from smartcti_gateway.config import ConfigError, parse
from smartcti_gateway.core.dialler import DiallerRule, data_variables

from .support import RunningGateway, agent_ready, in_service, params, simulated_config, wait_device

ANI = "4832810000"


def test_the_rule():
    rule = DiallerRule(frozenset({"7009"}), frozenset({"709"}), "DISCADOR")
    assert rule.matches("7009", "", {}) and rule.matches("", "709", {})
    assert rule.matches("7001", "701", {"discador": "1"})
    assert rule.matches("7001", "701", {}, data="PROTOCOLO_ANS=1;DISCADOR=campanha7")
    for off in ("", "0", "no", "false", "NAO"):
        assert not rule.matches("7001", "701", {"DISCADOR": off}), off
    assert not rule.matches("7001", "701", {}, data="OUTRO=1")
    assert not DiallerRule() and not DiallerRule().matches("7009", "709", {"DISCADOR": "1"})
    assert data_variables("a=1|b=2, c=3 d=") == {"A": "1", "B": "2", "C": "3", "D": ""}


@pytest.mark.parametrize("dialler, message", [
    ({}, "says nothing: give dnis, groups or variable"),
    ({"dnis": [""]}, "links[0].dialler.dnis[0]: must be a number written as text"),
    ({"variable": "a b"}, "'a b' is not a variable name"),
    ({"group": ["709"]}, "links[0].dialler.group: unknown key"),
])
def test_bad_rules_name_the_key(dialler, message):
    with pytest.raises(ConfigError) as e:
        parse({"links": [{"link_id": 1, "pabx": {"url": "http://ngc/RPC2"}, "dialler": dialler}]}, "gw.yaml")
    assert message in str(e.value)


def test_dialler_calls_pop_as_calltype_3_and_the_others_as_before():
    cfg = simulated_config()
    cfg["links"][0]["dialler"] = {"dnis": ["7009"], "groups": ["702"], "variable": "DISCADOR"}
    gw = RunningGateway(cfg)
    try:
        in_service(gw, "2001")
        since = agent_ready(gw, groups="701,702")
        kinds = []
        for call in ({"dnis": "7009", "device": "2001"}, {"dnis": "7002", "group": "702"},
                     {"dnis": "7001", "group": "701", "data": "DISCADOR=1"},
                     {"dnis": "7001", "group": "701", "data": "DISCADOR=0"}, {"dnis": "7001", "group": "701"}):
            _, body = gw.sim("/sim/inbound", {"ani": ANI, **call})
            ringing = wait_device(gw, "2001", ["RINGING"], since)[0]
            assert params(ringing)["CALLID"] == body["call_id"]
            kinds.append(params(ringing)["CALLTYPE"])
            gw.sim("/sim/hangup", {"call_id": body["call_id"]})
            since = wait_device(gw, "2001", ["RINGING", "CONNECTIONCLEARED"], since)[-1]["seq"]
        assert kinds == ["3", "3", "3", "1", "1"]
    finally:
        gw.close()
