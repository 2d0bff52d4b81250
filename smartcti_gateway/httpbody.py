"""Reading a request body within a deadline, for every endpoint a stranger can reach."""
from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web


class BodyTimeout(Exception):
    """The body did not arrive in time; ``response`` (HTTP 408) has already been sent."""

    def __init__(self, response: web.Response):
        super().__init__("request body timeout")
        self.response = response


async def read_body(request: web.Request, timeout: float | None, refusal: Callable[[], bytes],
                    content_type: str) -> bytes:
    """The whole body (the app's client_max_size gives 413 beyond it), or BodyTimeout after ``timeout`` s.

    On timeout the 408 answer (``refusal()``) is flushed and the connection closed at once:
    a stalled client has nothing more to say, and aiohttp would otherwise linger on it.
    """
    if request.content.is_eof():      # the whole body came with the head (Protheus' and the NGC's do)
        return await request.read()
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        resp = web.Response(status=408, body=refusal(), headers={"Content-Type": content_type})
        resp.force_close()
        await resp.prepare(request)
        await resp.write_eof()
        if request.transport is not None:
            request.transport.close()
        raise BodyTimeout(resp) from None
