"""The protocol API on the gateway's listener, for the channels that are not the phone (chat, web, app,
the front desk) and for Protheus customisations that look a call's number up by its CALLID.

    POST  /protocols                 {"channel": "chat", "ani": "...", "beneficiary": "...", "call_id": "...",
                                      "reference": "..."}  -> 201 {"protocol": "<20 digits>", ...}
    GET   /protocols/<number>        -> the record
    GET   /protocols?call_id=<id>    /  ?beneficiary=<card>   -> {"protocols": [...]}
    PATCH /protocols/<number>        {"status": "closed", "note": "..."}  -> the record
    GET   /protocols.csv?from=AAAA-MM-DD&to=AAAA-MM-DD        -> the audit export

Allowed from ``protocol.api_allow`` (loopback unless set) and, when ``protocol.api_token`` is set, with
``Authorization: Bearer <token>`` only. Bad input gets 400 saying what is wrong.
"""
from __future__ import annotations

import hmac
import json
import logging
import re
from datetime import datetime, time as dtime, timedelta

from aiohttp import web

from ..networks import peer_address
from .service import CHANNELS, Protocols
from .store import ProtocolError

log = logging.getLogger("smartcti_gateway.ans.api")

MAX_FIELD = 200
TEXT_FIELDS = ("ani", "beneficiary", "call_id", "reference", "dnis")
STATUSES = ("open", "in_progress", "answered", "closed", "cancelled")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ProtocolApi:
    def __init__(self, protocols: Protocols):
        self.protocols = protocols
        self._refused: set[str] = set()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/protocols", self.create)
        app.router.add_get("/protocols", self.find)
        app.router.add_get("/protocols.csv", self.export)
        app.router.add_get("/protocols/{number}", self.show)
        app.router.add_patch("/protocols/{number}", self.change)

    # ------------------------------------------------------------- access
    def _denied(self, request: web.Request) -> web.Response | None:
        cfg = self.protocols.cfg
        address = peer_address(request.remote)
        if address is None or not any(address in net for net in cfg.api_allow):
            if request.remote not in self._refused:
                self._refused.add(request.remote or "")
                log.warning("protocol API: refused %s (not in protocol.api_allow); add its address there if it "
                            "is one of the operator's channels", request.remote)
            return _error(403, "this address may not use the protocol API (protocol.api_allow)")
        if cfg.api_token:
            given = request.headers.get("Authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), cfg.api_token.encode()):
                return web.json_response({"error": "a bearer token is required (Authorization: Bearer <token>)"},
                                         status=401, headers={"WWW-Authenticate": 'Bearer realm="protocols"'})
        return None

    def _public(self, record) -> dict:
        return record.public(self.protocols.tz)

    # ----------------------------------------------------------- handlers
    async def create(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied:
            return denied
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            return _error(400, "the body must be a JSON object, e.g. {\"channel\": \"chat\", \"ani\": \"4832810000\"}")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        channel = body.get("channel")
        if channel not in CHANNELS:
            return _error(400, f"channel must be one of {', '.join(CHANNELS)}; got {channel!r}")
        values = {}
        if "external_reference" in body and "reference" not in body:
            body["reference"] = body["external_reference"]
        for key in TEXT_FIELDS:
            value = body.get(key, "")
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                return _error(400, f"{key} must be text; got {type(value).__name__}")
            if len(value) > MAX_FIELD or any(ord(ch) < 32 for ch in value):
                return _error(400, f"{key} must be at most {MAX_FIELD} characters, without control characters")
            values[key] = value.strip()
        if not values["ani"] and not values["beneficiary"] and not values["call_id"]:
            return _error(400, "say who the attendance is for: ani, beneficiary or call_id")
        unknown = sorted(set(body) - set(TEXT_FIELDS) - {"channel", "external_reference"})
        if unknown:
            return _error(400, f"unknown field(s) {', '.join(unknown)}; allowed: channel, {', '.join(TEXT_FIELDS)}")
        before = self.protocols.store.recent_for_call(values["call_id"]) if values["call_id"] else ""
        try:
            record = await self.protocols.issue(channel, **values)
        except ProtocolError as e:
            return _error(503, str(e))
        out = self._public(record)
        return web.json_response(out, status=200 if before == record.number else 201,
                                 headers={"Location": f"/protocols/{record.number}"})

    async def show(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied:
            return denied
        number = request.match_info["number"]
        if not re.fullmatch(r"[0-9A-Za-z.\-]{1,40}", number):
            return _error(400, f"{number[:60]!r} is not a protocol number")
        record = self.protocols.store.get(number)
        if record is None:
            return _error(404, f"no protocol {number}")
        return web.json_response(self._public(record))

    async def find(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied:
            return denied
        q = request.query
        if "call_id" in q and q["call_id"].strip():
            records = self.protocols.store.by_call(q["call_id"].strip())
        elif "beneficiary" in q and q["beneficiary"].strip():
            records = self.protocols.store.by_beneficiary(q["beneficiary"].strip())
        else:
            return _error(400, "ask by call_id or beneficiary: /protocols?call_id=<CALLID> or "
                               "/protocols?beneficiary=<card>")
        return web.json_response({"protocols": [self._public(r) for r in records]})

    async def change(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied:
            return denied
        number = request.match_info["number"]
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            return _error(400, "the body must be a JSON object, e.g. {\"status\": \"closed\"}")
        if not isinstance(body, dict) or body.get("status") not in STATUSES:
            return _error(400, f"status must be one of {', '.join(STATUSES)}")
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > 500:
            return _error(400, "note must be text of at most 500 characters")
        if self.protocols.store.get(number) is None:
            return _error(404, f"no protocol {number}")
        record = self.protocols.store.update(number, status=body["status"], note=note.strip())
        if record is None:
            return _error(503, "the record could not be written (see the gateway's log)")
        return web.json_response(self._public(record))

    async def export(self, request: web.Request) -> web.StreamResponse:
        denied = self._denied(request)
        if denied:
            return denied
        tz = self.protocols.tz
        try:
            first = datetime.strptime(request.query.get("from", "2000-01-01"), "%Y-%m-%d")
            last = datetime.strptime(request.query["to"], "%Y-%m-%d") if "to" in request.query else None
        except ValueError:
            return _error(400, "from and to are days written AAAA-MM-DD, e.g. ?from=2026-11-01&to=2026-11-30")
        since = datetime.combine(first.date(), dtime(0), tz).timestamp()
        until = datetime.combine(last.date() + timedelta(days=1), dtime(0), tz).timestamp() if last else None
        name = f"protocolos-{first:%Y%m%d}{'-' + format(last, '%Y%m%d') if last else ''}.csv"
        response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                               "Content-Disposition": f'attachment; filename="{name}"'})
        await response.prepare(request)
        await response.write("\ufeff".encode())       # a BOM: Excel opens it as UTF-8
        for line in self.protocols.store.export_csv(since, until):
            await response.write(line.encode("utf-8"))
        await response.write_eof()
        return response
