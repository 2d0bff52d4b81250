"""Prometheus metrics, read from the gateway's own state at scrape time.

Nothing here runs per SOAP request or per event: the links keep plain
counters (and one latency histogram) and this collector turns them into the
Prometheus text format when /metrics is read.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .core.pabx import AgentState
from .link import Link


class GatewayCollector(Collector):
    def __init__(self, links: Callable[[], list[Link]], protocols: Callable[[], Any] = lambda: None):
        self.links = links
        self.protocols = protocols

    def collect(self) -> Iterator:
        commands = CounterMetricFamily("smartcti_commands", "SOAP commands answered, by operation and result",
                                       labels=["link", "operation", "result"])
        latency = HistogramMetricFamily("smartcti_pabx_request_seconds", "PABX request latency, as the link saw it",
                                        labels=["link"])
        events = CounterMetricFamily("smartcti_events", "Events to Protheus, by event and result "
                                     "(ok, no_session, stale, failed)", labels=["link", "event", "result"])
        dropped = CounterMetricFamily("smartcti_events_dropped", "Events dropped: older than their ttl, or queue "
                                      "overflow", labels=["link", "reason"])
        retries = CounterMetricFamily("smartcti_event_retries", "Event deliveries retried", labels=["link"])
        depth = GaugeMetricFamily("smartcti_event_queue_depth", "Events waiting for Protheus", labels=["link"])
        received = CounterMetricFamily("smartcti_pabx_events_received", "PABX events received",
                                       labels=["link"])
        up = GaugeMetricFamily("smartcti_pabx_up", "1 while the PABX link is up", labels=["link"])
        reconnects = CounterMetricFamily("smartcti_pabx_reconnects", "PABX link reconnections", labels=["link"])
        in_service = GaugeMetricFamily("smartcti_devices_in_service", "Devices held in service by Protheus",
                                       labels=["link"])
        agents = GaugeMetricFamily("smartcti_agents", "Agents by state", labels=["link", "state"])
        calls = GaugeMetricFamily("smartcti_calls", "Calls in progress", labels=["link"])
        queue_waiting = GaugeMetricFamily("smartcti_queue_waiting", "Callers waiting in an ACD group's queue",
                                          labels=["link", "group"])
        queue_answered = CounterMetricFamily("smartcti_queue_answered", "Queue calls an agent took, since start",
                                             labels=["link", "group"])
        queue_abandoned = CounterMetricFamily("smartcti_queue_abandoned", "Queue callers who hung up while "
                                              "waiting, since start", labels=["link", "group"])
        for link in self.links():
            lid = str(link.link_id)
            for (op, result), n in sorted(link.command_counts.items()):
                commands.add_metric([lid, op, result], n)
            latency.add_metric([lid], link.pabx_latency.cumulative(), link.pabx_latency.sum)
            for (name, result), n in sorted(link.delivery.sent_by_event.items()):
                events.add_metric([lid, name, result], n)
            for reason in ("stale", "overflow"):
                dropped.add_metric([lid, reason], link.delivery.counts.get(reason, 0))
            retries.add_metric([lid], link.delivery.counts.get("retries", 0))
            depth.add_metric([lid], link.delivery.depth())
            received.add_metric([lid], link.driver.events_received)
            up.add_metric([lid], 1 if link.health.up else 0)
            reconnects.add_metric([lid], link.health.reconnects)
            sw = link.switch
            in_service.add_metric([lid], len(sw.devices))
            # the state queryAgentState answers and the status page shows (busy comes from the calls)
            by_state = Counter(sw.agent_state(name) for name, d in sw.devices.items() if d.agent is not None)
            for state in AgentState:
                agents.add_metric([lid, state.value], by_state.get(state, 0))
            calls.add_metric([lid], len(link.switch.calls))
            q = link.queues
            for group, n in q.waiting_counts().items():
                queue_waiting.add_metric([lid, group], n)
            for group, n in sorted(q.answered_total.items()):
                queue_answered.add_metric([lid, group], n)
            for group, n in sorted(q.abandoned_total.items()):
                queue_abandoned.add_metric([lid, group], n)
        yield from (commands, latency, events, dropped, retries, depth, received, up, reconnects, in_service,
                    agents, calls, queue_waiting, queue_answered, queue_abandoned)
        protocols = self.protocols()
        if protocols is not None:
            yield from _protocol_metrics(protocols)


def _protocol_metrics(protocols) -> Iterator:
    """The ANS protocols (ans/service.py): issued per channel, failures by kind, today's count."""
    issued = CounterMetricFamily("smartcti_protocols_issued", "ANS protocol numbers issued since start, by channel",
                                 labels=["channel"])
    for channel, n in sorted(protocols.issued.items()):
        issued.add_metric([channel], n)
    failures = CounterMetricFamily("smartcti_protocol_failures", "ANS protocols not issued, or helpers that "
                                   "failed: exhausted (the day ran out), store_failed, external_failed, "
                                   "hook_failed (the beneficiary hook)", labels=["kind"])
    for kind in ("exhausted", "store_failed", "refused", "external_failed", "hook_failed"):
        failures.add_metric([kind], protocols.counts.get(kind, 0))
    hook = CounterMetricFamily("smartcti_protocol_beneficiary_checks", "Beneficiary cards checked by the hook, "
                               "by answer", labels=["answer"])
    for answer in ("valid", "invalid", "failed"):
        hook.add_metric([answer], protocols.counts.get(f"hook_{answer}", 0))
    ivr = CounterMetricFamily("smartcti_protocol_ivr", "The FastAGI protocolo script: sessions, refused (not in "
                              "agi_allow), protocol_errors (not FastAGI), hangups, issued, failures",
                              labels=["what"])
    for what, n in sorted(protocols.ivr_counts.items()):
        ivr.add_metric([what], n)
    today = GaugeMetricFamily("smartcti_protocols_today", "ANS protocol numbers of today (the numbers' time zone)")
    today.add_metric([], protocols.today_count())
    yield from (issued, failures, hook, ivr, today)


def registry_for(links: Callable[[], list[Link]], protocols: Callable[[], Any] = lambda: None) -> CollectorRegistry:
    """A registry whose collector reads ``links()`` (and ``protocols()``) at each scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(links, protocols))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
