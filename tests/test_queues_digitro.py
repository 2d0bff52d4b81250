"""Queue statistics on Dígitro, end to end with the embedded NGC simulator: the NGC sends no queue events,
so the link polls the logged-on agents' groups (QueryGroupCalls) and diffs the waiting lists."""
from __future__ import annotations

import time

import pytest

from .support import RunningGateway, simulated_config, wait_for

ANI, DNIS = "4832810000", "7001"


@pytest.fixture
def gw():
    g = RunningGateway(simulated_config())

    def faster(link):
        link.queue_poll, link.queue_poller.grace = 0.1, 1.0
    g.in_loop(lambda: faster(g.link(1)))
    yield g
    g.close()


def board(gw, service_level=20.0):
    return gw.in_loop(lambda: gw.link(1).queues.snapshot(service_level))


def group(gw, name="701", service_level=20.0):
    return board(gw, service_level).get(name)


def queue_call(gw, ani) -> str:
    status, body = gw.sim("/sim/inbound", {"ani": ani, "dnis": DNIS, "group": "701"})
    assert status == 200, body
    return body["call_id"]


def test_waiting_answered_and_abandoned_from_the_polled_group_calls(gw):
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.code("Logon", device="2001", agentID="1234", groupID="701") == 0      # logged on, not ready
    first = queue_call(gw, ANI)
    waiting = wait_for(lambda: (g := group(gw)) and g.waiting, 10, what="the caller waiting on the board")
    assert [(w.call_id, w.calling) for w in waiting] == [(first, ANI)]
    assert abs(waiting[0].since - time.time()) < 3
    # it waits on: the wait the board shows grows (since stays, the clock runs)
    wait_for(lambda: time.time() - group(gw).waiting[0].since >= 1.2, 5, what="a wait over a second")
    assert group(gw).waiting[0].since == waiting[0].since and group(gw).answered == 0
    # the agent becomes ready: the NGC delivers it, the next poll sees it at the agent
    assert gw.code("Ready", device="2001", agentID="", groupID="") == 0
    g = wait_for(lambda: (g := group(gw, service_level=60)) and g.answered == 1 and g, 10, what="answered on the board")
    assert (g.waiting, g.abandoned, g.service_level) == ([], 0, 1.0)
    assert group(gw, service_level=1.0).service_level == 0.0          # it waited more than a second
    # the agent is busy now: the next caller waits, and hangs up
    second = queue_call(gw, "4832819999")
    wait_for(lambda: [w.call_id for w in group(gw).waiting] == [second], 10, what="the second caller waiting")
    status, body = gw.sim("/sim/hangup", {"call_id": second})
    assert status == 200, body
    g = wait_for(lambda: (g := group(gw)) and g.abandoned == 1 and g, 10, what="abandoned on the board")
    assert (g.waiting, g.answered) == ([], 1)
    metrics = gw.http("GET", "/metrics")[1].decode()
    assert 'smartcti_queue_answered_total{group="701",link="1"} 1.0' in metrics
    assert 'smartcti_queue_abandoned_total{group="701",link="1"} 1.0' in metrics
    assert 'smartcti_queue_waiting{group="701",link="1"} 0.0' in metrics
    # Protheus heard of the call the agent took, and of nothing else
    assert {e["method"] for e in gw.events()} <= {"INSERVICE", "LOGGEDON", "READY", "RINGING"}


def test_nobody_logged_on_no_group_is_polled(gw):
    queue_call(gw, ANI)
    polls = gw.in_loop(lambda: gw.link(1).queue_poller.groups)
    assert polls == [] and board(gw) == {}


def test_spy_is_not_supported_on_digitro(gw):
    assert gw.code("AgentInService", device="2001", ipaddress=gw.events_url) == 0
    assert gw.link(1).spy_supported is False
    assert gw.run(gw.link(1).spy("2002", "2001", "listen")) == 21
    assert gw.run(gw.link(1).spy("2002", "2001", "shout")) == 3
    assert gw.run(gw.link(1).spy("2001", "2001", "listen")) == 18
