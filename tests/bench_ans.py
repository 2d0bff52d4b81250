"""The ANS protocol allocator's figures for scripts/bench: numbers issued per second with the fsync each
one costs on this machine's disk (synchronous=FULL, before the caller hears it), and the cost of the
lookup every RINGING of a link with protocols makes (ans/service.py ``for_call``)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from smartcti_gateway.ans.layout import DEFAULT_LAYOUT, Layout, zone
from smartcti_gateway.ans.store import ProtocolStore


def run_ans(p: argparse.Namespace, tmp: Path) -> dict:
    n = 200 if p.smoke else 3000
    store = ProtocolStore(tmp / "protocols.sqlite", Layout(DEFAULT_LAYOUT, "123456"), zone("America/Sao_Paulo"))
    try:
        times = []
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter()
            store.issue("phone", call_id=f"call-{i}", ani="4832810000")
            times.append(time.perf_counter() - s)
        elapsed = time.perf_counter() - t0
        times.sort()
        lookups = 20 * n
        t1 = time.perf_counter()
        for i in range(lookups):
            store.recent_for_call(f"call-{i % n}")
        lookup_s = time.perf_counter() - t1
        return {"issued": n, "issued_per_s": n / elapsed, "issue_p99_ms": times[int(0.99 * (n - 1))] * 1000,
                "lookup_us": lookup_s / lookups * 1e6}
    finally:
        store.close()


def figures(a: dict) -> list[tuple[str, float, float | None, str, bool | None]]:
    return [
        ("ANS protocols issued/s (durable: one fsync each)", a["issued_per_s"], None, ">= 50/s", a["issued_per_s"] >= 50),
        ("ANS protocol issue latency p99 ms", a["issue_p99_ms"], None, "", None),
        ("ANS protocol lookup by call id µs (database)", a["lookup_us"], None, "", None),
    ]
