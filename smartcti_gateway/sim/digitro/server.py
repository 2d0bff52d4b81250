"""The simulated NGC on the network: XML-RPC at /RPC2, the /sim control API, event push.

Events go out as ``cti.evento(struct)`` POSTs to each channel's URL_RETORNO
(or as the dialect shapes them: one method per event, positional parameters):
one asyncio.Queue and one sender task per channel keep them in order, so the
XML-RPC handler never waits for a listener. A failed POST is retried a few
times with a short backoff, then dropped and counted (see /sim/state). With
``transport.events: poll`` nothing is pushed: the switch keeps the events for
its poll_events method.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import xmlrpc.client
from typing import Any, Callable

import aiohttp
from aiohttp import web

from ...pabx.digitro.dialect import Dialect
from .switch import FAULT_BAD_REQUEST, FAULT_INTERNAL, ControlError, Simulator, SimulatorOptions

log = logging.getLogger(__name__)

SIM_KEY = web.AppKey("simulator", Simulator)
PUSHER_KEY: web.AppKey["EventPusher"] = web.AppKey("event_pusher")

POST_ATTEMPTS = 3
POST_BACKOFF = 0.1      # s, doubled after each failed attempt
POST_TIMEOUT = 5.0      # s per attempt
MAX_QUEUED = 10_000     # events waiting per channel before new ones are dropped
RECENT_POSTS = 1_000    # event calls kept in EventPusher.recent


class EventPusher:
    """Delivers events to listener channels, in order per channel, without blocking the caller."""

    def __init__(self, method: str, shape: Callable[[dict[str, Any]], tuple[str, tuple] | None] | None = None):
        self.method = method
        # an event struct -> (method, params) as the dialect posts it; None: the dialect cannot say it
        self.shape = shape or (lambda event: (method, (event,)))
        self._session: aiohttp.ClientSession | None = None
        self._queues: dict[int, asyncio.Queue] = {}
        self._tasks: dict[int, asyncio.Task] = {}
        self.stats: dict[int, dict[str, int]] = {}
        self.recent: collections.deque[tuple[str, tuple]] = collections.deque(maxlen=RECENT_POSTS)  # as posted

    def deliver(self, channel: int, url: str, event: dict[str, Any]) -> None:
        queue = self._queues.get(channel)
        if queue is None:
            self.stats.setdefault(channel, {"sent": 0, "dropped": 0, "rejected": 0})
            if not url:     # a channel nobody registered (a dialect without register_listener): nowhere to post
                self.stats[channel]["dropped"] += 1
                return
            queue = self._queues[channel] = asyncio.Queue(MAX_QUEUED)
            self._tasks[channel] = asyncio.get_running_loop().create_task(
                self._run(channel, url, queue), name=f"ngc-sim-channel-{channel}")
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            self.stats[channel]["dropped"] += 1

    def close(self, channel: int) -> None:
        self._queues.pop(channel, None)
        task = self._tasks.pop(channel, None)
        if task is not None:
            task.cancel()

    def queued(self, channel: int) -> int:
        q = self._queues.get(channel)
        return q.qsize() if q is not None else 0

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for channel in list(self._tasks):
            self.close(channel)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self, channel: int, url: str, queue: asyncio.Queue) -> None:
        while True:
            event = await queue.get()
            try:
                outcome = await self._post(url, event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad event must not stop the channel
                log.exception("simulator: event for channel %s not sent", channel)
                outcome = "dropped"
            self.stats[channel][outcome] += 1

    async def _post(self, url: str, event: dict[str, Any]) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT))
        call = self.shape(event)
        if call is None:
            return "dropped"
        method, params = call
        self.recent.append(call)
        body = xmlrpc.client.dumps(params, methodname=method).encode("utf-8")
        delay = POST_BACKOFF
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                async with self._session.post(url, data=body, headers={"Content-Type": "text/xml"}) as resp:
                    reply = await resp.read()
                    if resp.status == 200:
                        try:
                            xmlrpc.client.loads(reply)
                        except xmlrpc.client.Fault as f:
                            log.warning("simulator: %s refused an event: %s", url, f.faultString)
                            return "rejected"
                        except Exception:  # noqa: BLE001 - delivered; the answer is the listener's business
                            pass
                        return "sent"
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                problem = str(e) or type(e).__name__
            if attempt < POST_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("simulator: event to %s dropped after %d attempts (%s)", url, POST_ATTEMPTS, problem)
        return "dropped"


# ------------------------------------------------------------------ XML-RPC
def _xml(body: str) -> web.Response:
    return web.Response(body=body.encode("utf-8"), content_type="text/xml", charset="utf-8")


def _fault(code: int, message: str) -> web.Response:
    return _xml(xmlrpc.client.dumps(xmlrpc.client.Fault(code, message), methodresponse=True))


async def _rpc(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        params, method = xmlrpc.client.loads(await request.read())
    except Exception as e:  # noqa: BLE001 - whatever arrives, the answer is a fault
        return _fault(FAULT_BAD_REQUEST, f"malformed XML-RPC request: {e}")
    if not method:
        return _fault(FAULT_BAD_REQUEST, "not a methodCall")
    try:
        result = sim.handle(method, params)
        return _xml(xmlrpc.client.dumps((result,), methodresponse=True))
    except xmlrpc.client.Fault as f:
        return _fault(f.faultCode, f.faultString)
    except Exception as e:  # noqa: BLE001
        log.exception("simulator: %s", method)
        return _fault(FAULT_INTERNAL, f"simulator error: {e}")


# -------------------------------------------------------------- control API
def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _body(request: web.Request, *required: str) -> dict[str, Any]:
    try:
        data = json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise ControlError(400, f"bad JSON: {e}") from None
    if not isinstance(data, dict):
        raise ControlError(400, "expected a JSON object")
    for key in required:
        if data.get(key) in (None, ""):
            raise ControlError(400, f"missing key {key!r}")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ControlError(400, f"{key!r} must be a string")
    return str(value).strip()


async def _inbound(request: web.Request) -> web.Response:
    data = await _body(request, "ani")
    call_id = request.app[SIM_KEY].inbound(
        _text(data, "ani"), _text(data, "dnis"), group=_text(data, "group"), device=_text(data, "device"),
        data=_text(data, "data"), direction=_text(data, "direction"))
    return web.json_response({"call_id": call_id})


async def _answer(request: web.Request) -> web.Response:
    data = await _body(request, "device")
    return web.json_response({"call_id": request.app[SIM_KEY].answer(_text(data, "device"))})


async def _hangup(request: web.Request) -> web.Response:
    data = await _body(request)
    if not data.get("device") and not data.get("call_id"):
        raise ControlError(400, "missing key 'device' (or 'call_id')")
    call_id = request.app[SIM_KEY].hangup(device=_text(data, "device"), call_id=_text(data, "call_id"))
    return web.json_response({"call_id": call_id})


async def _outcome(request: web.Request) -> web.Response:
    data = await _body(request, "number", "outcome")
    after = data.get("after")
    if after is not None and (isinstance(after, bool) or not isinstance(after, (int, float))):
        raise ControlError(400, "'after' must be a number of seconds")
    return web.json_response(request.app[SIM_KEY].set_outcome(_text(data, "number"), _text(data, "outcome"), after))


PHONE_ACTIONS = {"login": "agent_login", "logout": "agent_logout", "ready": "agent_ready", "pause": "agent_not_ready"}


async def _phone(request: web.Request) -> web.Response:
    """An agent using the phone's feature keys: the switch changes state without the gateway asking."""
    data = await _body(request, "device", "action")
    action = _text(data, "action")
    if action not in PHONE_ACTIONS:
        raise ControlError(400, f"'action' must be one of {', '.join(PHONE_ACTIONS)}")
    result = request.app[SIM_KEY].phone(
        PHONE_ACTIONS[action], device=_text(data, "device"), agent=_text(data, "agent"),
        groups=_text(data, "groups"), reason=_text(data, "reason"), device_password=_text(data, "password"))
    return web.json_response({"result": result})


async def _state(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    state = sim.state()
    pusher = request.app[PUSHER_KEY]
    for cid, ch in state["channels"].items():
        ch.update(pusher.stats.get(int(cid), {"sent": 0, "dropped": 0, "rejected": 0}))
        ch["queued"] = pusher.queued(int(cid))
        if sim.dialect.polled:      # waiting for poll_events, not for a POST
            ch.update(sim.poll_stats(int(cid)))
    return web.json_response(state)


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ControlError as e:
        return _error(e.status, e.message)
    except web.HTTPException:
        raise
    except Exception as e:  # noqa: BLE001 - never a traceback page
        log.exception("simulator: %s %s", request.method, request.path)
        return _error(500, f"simulator error: {e}")


def build_app(sim: Simulator) -> web.Application:
    """POST /RPC2 (XML-RPC) and the /sim control API of ``sim``."""
    app = web.Application(middlewares=[_errors])
    pusher = EventPusher(sim.dialect.methods["event"], sim.shape.event_call)
    sim.sink = pusher
    app[SIM_KEY] = sim
    app[PUSHER_KEY] = pusher
    app.router.add_post("/RPC2", _rpc)
    app.router.add_post("/sim/inbound", _inbound)
    app.router.add_post("/sim/answer", _answer)
    app.router.add_post("/sim/hangup", _hangup)
    app.router.add_post("/sim/outcome", _outcome)
    app.router.add_post("/sim/phone", _phone)
    app.router.add_get("/sim/state", _state)

    async def cleanup(app: web.Application) -> None:
        sim.close()
        await pusher.aclose()

    app.on_cleanup.append(cleanup)
    return app


async def start_simulator(host: str, port: int, options: SimulatorOptions | None = None,
                          dialect: Dialect | None = None) -> tuple[Simulator, web.AppRunner]:
    """Serve a new simulator on ``host:port`` (0 picks a port: see ``sim.port`` / ``sim.url``)."""
    sim = Simulator(options, dialect)
    runner = web.AppRunner(build_app(sim), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    sim.port = runner.addresses[0][1]
    url_host = f"[{host}]" if ":" in host else (host or "127.0.0.1")
    if url_host in ("0.0.0.0", "[::]"):
        url_host = "127.0.0.1"
    sim.url = f"http://{url_host}:{sim.port}/RPC2"
    return sim, runner
