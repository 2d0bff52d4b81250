"""The gateway's protocol service: one per gateway, shared by every link, the IVR and the HTTP API.

It decides where a number comes from (``protocol.mode``: our allocator, an external generator whose
numbers we store and carry, or off), checks a beneficiary's card against the site's hook, follows the
number as its call rings, is answered and ends, and keeps the counters /metrics and the status page show.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter, OrderedDict

import aiohttp

from ..urls import redact_url
from .layout import Layout, zone
from .options import ProtocolConfig
from .store import ProtocolError, ProtocolStore, Record

log = logging.getLogger("smartcti_gateway.ans")

CHANNELS = ("phone", "chat", "web", "app", "presencial", "email", "whatsapp", "other")
EXTERNAL_NUMBER = re.compile(r"^[0-9A-Za-z.\-/]{1,40}$")
DAY = 86400.0


def masked_card(card: str) -> str:
    """A beneficiary's card number for a log line: its last 4 digits only."""
    return ("*" * max(0, len(card) - 4) + card[-4:]) if card else ""


class Protocols:
    def __init__(self, cfg: ProtocolConfig, *, clock=time.time):
        self.cfg = cfg
        self.tz = zone(cfg.timezone)
        self.layout = Layout(cfg.layout, cfg.registro_ans)
        self.store = ProtocolStore(cfg.database, self.layout, self.tz, clock=clock)
        self.clock = clock
        self.counts: Counter[str] = Counter()             # failures, hook results, exhausted…
        self.issued: Counter[str] = Counter()             # channel -> numbers issued since start
        self.ivr_counts: dict[str, int] = {}              # the FastAGI server's (ans/agi_server.py), if it runs
        self._by_call: OrderedDict[str, str] = OrderedDict()   # call id -> number: the event path's cache
        self._http: aiohttp.ClientSession | None = None
        self._retention: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()         # external generator asked for a ringing call

    # ---------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._retention = asyncio.get_running_loop().create_task(self._retain())
        for warning in self.cfg.warnings:
            log.warning("%s", warning)
        log.info("ANS protocols: %s, registry %s, layout %s, day of %s; %d issued today (%s)",
                 {"gateway": "issued by the gateway", "external": f"made by {redact_url(self.cfg.external.url)}",
                  "off": "off"}[self.cfg.mode], self.cfg.registro_ans or "-", self.cfg.layout, self.cfg.timezone,
                 self.today_count(), self.cfg.database)

    async def close(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            try:
                await self._retention
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        if self._http is not None:
            await self._http.close()
        self.store.close()

    async def _retain(self) -> None:
        while True:
            cutoff = self.clock() - self.cfg.retention_days * DAY
            purged = self.store.purge(cutoff)
            if purged:
                log.info("ANS protocols: %d record(s) older than %d days deleted (protocol.retention_days)",
                         purged, self.cfg.retention_days)
            await asyncio.sleep(DAY / 4)

    # --------------------------------------------------------------- issue
    async def issue(self, channel: str, *, call_id: str = "", ani: str = "", beneficiary: str = "",
                    reference: str = "", dnis: str = "", link_id: int | None = None, device: str = "",
                    call_ids: tuple[str, ...] = (), **_extra) -> Record:
        """A number for an attendance (the one it has, if the call asked before). ProtocolError if none.
        ``call_ids``: other ids the record is found under too (the IVR's own channel)."""
        record = await self._issue_any(channel, call_id=call_id, ani=ani, beneficiary=beneficiary,
                                       reference=reference, dnis=dnis, link_id=link_id, device=device)
        for other in call_ids:
            if other and other != call_id:
                self._remember(other, record.number)
                record = self.store.update(record.number, call_id=other) or record
        return record

    async def _issue_any(self, channel: str, *, call_id: str, ani: str, beneficiary: str, reference: str,
                         dnis: str, link_id: int | None, device: str) -> Record:
        if self.cfg.mode == "off":
            raise ProtocolError("protocol numbers are off (protocol.mode: off)")
        if self.cfg.mode == "external":
            known = self.store.recent_for_call(call_id) if call_id else ""
            if known:
                return self.store.get(known)
            number = await self._external(channel, call_id, ani, beneficiary, reference, dnis)
            if number:
                return self._issue(channel, call_id=call_id, ani=ani, beneficiary=beneficiary, reference=reference,
                                   dnis=dnis, link_id=link_id, device=device, number=number, source="external")
            if not self.cfg.external.fallback:
                raise ProtocolError(f"the external generator {redact_url(self.cfg.external.url)} gave no number")
            return self._issue(channel, call_id=call_id, ani=ani, beneficiary=beneficiary, reference=reference,
                               dnis=dnis, link_id=link_id, device=device, source="fallback")
        return self._issue(channel, call_id=call_id, ani=ani, beneficiary=beneficiary, reference=reference,
                           dnis=dnis, link_id=link_id, device=device)

    def _issue(self, channel: str, **kw) -> Record:
        try:
            record, new = self.store.issue(channel, **kw)
        except ProtocolError as e:
            kind = type(e).__name__
            self.counts["exhausted" if kind == "DayExhausted" else "store_failed" if kind == "StoreFailed"
                        else "refused"] += 1
            log.error("ANS protocol not issued for a %s attendance%s: %s", channel,
                      f" (call {kw.get('call_id')})" if kw.get("call_id") else "", e)
            raise
        if new:
            self.issued[channel] += 1
            log.info("ANS protocol %s issued (%s%s%s%s)", record.number, channel,
                     f", call {kw['call_id']}" if kw.get("call_id") else "",
                     f", ANI {kw['ani']}" if kw.get("ani") else "",
                     f", card {masked_card(kw.get('beneficiary', ''))}" if kw.get("beneficiary") else "")
        if kw.get("call_id"):
            self._remember(kw["call_id"], record.number)
        return record

    def issue_now(self, channel: str, **kw) -> str:
        """For the event path, which cannot wait: our own allocator only; "" when no number can be had now
        (mode external: the generator is asked in the background, and the record gets the call id)."""
        if self.cfg.mode == "off":
            return ""
        if self.cfg.mode == "external":
            task = asyncio.get_running_loop().create_task(self._issue_quietly(channel, kw))
            self._pending.add(task)                # kept until done: the loop holds tasks only weakly
            task.add_done_callback(self._pending.discard)
            return ""
        try:
            return self._issue(channel, **kw).number
        except ProtocolError:
            return ""

    async def _issue_quietly(self, channel: str, kw: dict) -> None:
        try:
            await self.issue(channel, **kw)
        except ProtocolError:
            pass

    async def _external(self, channel, call_id, ani, beneficiary, reference, dnis) -> str:
        ext = self.cfg.external
        headers = {"Authorization": f"Bearer {ext.token}"} if ext.token else {}
        body = {"channel": channel, "call_id": call_id, "ani": ani, "beneficiary": beneficiary,
                "reference": reference, "dnis": dnis, "registro_ans": self.cfg.registro_ans}
        try:
            async with asyncio.timeout(ext.timeout):
                async with self._http.post(ext.url, json=body, headers=headers) as r:
                    data = await r.json(content_type=None) if r.status < 300 else None
                    if r.status >= 300:
                        raise ValueError(f"HTTP {r.status}")
            number = str((data or {}).get("protocol", "")).strip() if isinstance(data, dict) else ""
            if not EXTERNAL_NUMBER.match(number):
                raise ValueError(f"no usable 'protocol' in its answer ({number[:60]!r})")
            return number
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self.counts["external_failed"] += 1
            log.error("ANS protocol: the external generator %s failed (%s)%s", redact_url(ext.url),
                      str(e) or type(e).__name__, "; issuing one of our own (protocol.external.fallback)"
                      if ext.fallback else "; no number for this attendance")
            return ""

    # ------------------------------------------------------------ the hook
    async def check_beneficiary(self, card: str, ani: str = "") -> bool | None:
        """The site's hook on the card typed: True / False, None when there is no hook or it failed.
        Never raises, never waits past ``beneficiary_hook.timeout``."""
        hook = self.cfg.beneficiary_hook
        if not hook.url:
            return None
        headers = {"Authorization": f"Bearer {hook.token}"} if hook.token else {}
        try:
            async with asyncio.timeout(hook.timeout):
                async with self._http.post(hook.url, json={"beneficiary": card, "ani": ani}, headers=headers) as r:
                    if r.status in (404, 422):
                        self.counts["hook_invalid"] += 1
                        return False
                    if r.status >= 300:
                        raise ValueError(f"HTTP {r.status}")
                    data = await r.json(content_type=None) if r.content_length != 0 else {}
            valid = bool(data.get("valid", True)) if isinstance(data, dict) else True
            self.counts["hook_valid" if valid else "hook_invalid"] += 1
            return valid
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self.counts["hook_failed"] += 1
            log.warning("ANS protocol: the beneficiary hook %s failed for card %s (%s); the number is issued "
                        "anyway", redact_url(hook.url), masked_card(card), str(e) or type(e).__name__)
            return None

    # -------------------------------------------------------- the call's life
    def mark(self, number: str, status: str, note: str = "") -> None:
        self.store.update(number, status=status, note=note)

    def for_call(self, call_id: str) -> str:
        """The number a call carries ("" for none): the event path asks this for every RINGING."""
        number = self._by_call.get(call_id)
        if number is None:
            number = self.store.recent_for_call(call_id) if call_id else ""
            if number:
                self._remember(call_id, number)
        return number or ""

    def _remember(self, call_id: str, number: str) -> None:
        self._by_call[call_id] = number
        self._by_call.move_to_end(call_id)
        while len(self._by_call) > 20000:
            self._by_call.popitem(last=False)

    def call_seen(self, number: str, call_id: str, link_id: int, *, status: str = "", device: str = "",
                  agent: str = "") -> None:
        """A link saw the call carrying ``number``: at a device, answered, ended."""
        if call_id and self._by_call.get(call_id) != number:
            self._remember(call_id, number)
        note = f"link {link_id}{' device ' + device if device else ''}"
        if self.store.update(number, status=status, call_id=call_id, link_id=link_id, device=device, agent=agent,
                             note=note) is None and EXTERNAL_NUMBER.match(number) and self.store.get(number) is None:
            # made by the site's own dialplan or IVR (a PROTOCOLO_ANS the gateway did not issue): kept too
            try:
                self.store.issue("phone", call_id=call_id, number=number, source="pabx", link_id=link_id,
                                 device=device)
                self.store.update(number, status=status, agent=agent, note=note)
            except ProtocolError as e:
                log.warning("ANS protocol %s seen on call %s could not be recorded: %s", number, call_id, e)

    def recorded(self, number: str, file: str) -> None:
        self.store.update(number, recording=file)

    # ------------------------------------------------------------- reports
    def today_count(self) -> int:
        return self.store.count_day(self.store.today())
