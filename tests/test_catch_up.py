"""Catching a switch up after a restart (issue 15 item 1): monitors and the resync go ``pabx.concurrency``
requests at a time, never one by one and never a storm; an unreachable switch stops it all. The figures
for 8,000 devices are scripts/bench's (docs/performance.md)."""
from __future__ import annotations

import asyncio

import pytest

from smartcti_gateway.core.codes import Result
from smartcti_gateway.core.pabx import PabxError, PabxUnavailable
from smartcti_gateway.pabx.base import bounded, monitor_each

from .support import Peers, RunningGateway, wait_for
from .test_resilience import gateway_for


class Switch:
    """Answers after a moment; counts the requests in flight."""

    def __init__(self, refuse=(), down_at: int | None = None):
        self.in_flight = self.most = self.done = 0
        self.seen: list[str] = []
        self.refuse, self.down_at = set(refuse), down_at

    async def start(self, device: str) -> None:
        self.seen.append(device)
        if self.down_at is not None and len(self.seen) > self.down_at:
            raise PabxUnavailable(Result.OUT_OF_SERVICE, "connection refused")
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.002)
        finally:
            self.in_flight -= 1
        if device in self.refuse:
            raise PabxError(Result.INVALID_DEVICE, "no such extension")
        self.done += 1


@pytest.mark.parametrize("concurrency", [1, 4, 16])
async def test_at_most_concurrency_in_flight_and_each_device_once(concurrency):
    sw = Switch(refuse={"2003", "2050"})
    devices = [str(2000 + i) for i in range(100)]
    refused = await monitor_each(devices, sw.start, "refused %s (%s)", concurrency)
    assert sw.most == concurrency and sorted(sw.seen) == devices and sw.done == 98
    assert sorted(refused) == ["2003", "2050"]


async def test_an_unreachable_switch_stops_it_all():
    sw = Switch(down_at=10)
    with pytest.raises(PabxUnavailable, match="connection refused"):
        await bounded([str(i) for i in range(200)], sw.start, 8)
    assert len(sw.seen) < 30          # the workers stopped at the first loss, not after trying all 200


async def test_nothing_to_do():
    await bounded([], Switch().start, 16)


def test_a_restarted_gateway_catches_up_with_bounded_concurrency(tmp_path):
    """60 devices, 20 agents, four requests at a time: after a restart every device is monitored again and
    every agent is as the NGC says."""
    peers = Peers(extensions="3000-3059")
    state = str(tmp_path / "state.sqlite")
    cfg = gateway_for(peers, concurrency=4)
    devices = [str(3000 + i) for i in range(60)]
    try:
        gw = RunningGateway(cfg, state_file=state)
        try:
            for d in devices:
                assert gw.code("AgentInService", device=d, ipaddress=peers.events_url) == 0
            for d in devices[:20]:
                assert gw.code("Logon", device=d, agentID=f"9{d}", groupID="701") == 0
        finally:
            gw.close()
        gw = RunningGateway(cfg, state_file=state)
        try:
            link = gw.link()
            wait_for(lambda: gw.in_loop(lambda: link.resyncs) >= 1, timeout=10, what="the resync after the restart")
            assert gw.in_loop(lambda: sorted(d for d, dev in link.switch.devices.items() if dev.monitored)) == devices
            agents = gw.in_loop(lambda: {d: dev.agent.agent_id for d, dev in link.switch.devices.items() if dev.agent})
            assert agents == {d: f"9{d}" for d in devices[:20]}
            assert gw.code("queryAgentState", cDevice=devices[0]) == 26
        finally:
            gw.close()
    finally:
        peers.close()
