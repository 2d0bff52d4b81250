"""Console keys, when standard input is a terminal (as DigitroCTILink's window had).

q quit gracefully, s / n per-extension logs on / off, v versions,
t self-test, h help. Without a terminal (service, container) there is no
console; SIGTERM and SIGINT stop the gateway the same way as q.
"""
from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Callable, TextIO

from .gateway import Gateway

HELP = """keys: q quit (links closed, event queues drained)   s per-extension logs on   n off
      v versions (gateway, PABX, Protheus)   t self-test   h this help"""


class Console:
    def __init__(self, gateway: Gateway, stop: Callable[[], None], *, stdin: TextIO = sys.stdin,
                 out: TextIO = sys.stdout):
        self.gateway = gateway
        self.stop = stop
        self.stdin = stdin
        self.out = out
        self._restore: Callable[[], None] = lambda: None
        self._busy: asyncio.Task | None = None

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def start(self) -> bool:
        """Listen to keys if stdin is a terminal; False (and nothing done) otherwise."""
        try:
            if not self.stdin.isatty():
                return False
        except (ValueError, AttributeError):
            return False
        loop = asyncio.get_running_loop()
        if os.name == "nt":  # pragma: no cover - Windows console
            import msvcrt

            def reader():
                while True:
                    ch = msvcrt.getwch()
                    loop.call_soon_threadsafe(self.on_key, ch)
                    if ch.lower() == "q":
                        return
            threading.Thread(target=reader, daemon=True, name="console").start()
        else:
            import termios
            import tty
            fd = self.stdin.fileno()
            saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            self._restore = lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            loop.add_reader(fd, self._read, fd)
            self._remove_reader = lambda: loop.remove_reader(fd)
        self.say(HELP)
        return True

    def close(self) -> None:
        remove = getattr(self, "_remove_reader", None)
        if remove is not None:
            remove()
        self._restore()

    def _read(self, fd: int) -> None:
        data = os.read(fd, 32)
        if not data:          # terminal gone: stop listening, keep serving
            self.close()
            return
        for ch in data.decode("utf-8", "replace"):
            self.on_key(ch)

    def on_key(self, ch: str) -> None:
        key = ch.lower()
        if key == "q":
            self.say("q: stopping — closing the PABX links and draining the event queues…")
            self.stop()
        elif key == "s":
            self.gateway.extlog.set_enabled(True)
            self.say(f"s: per-extension logs ON in {self.gateway.extlog.directory.resolve()}")
        elif key == "n":
            self.gateway.extlog.set_enabled(False)
            self.say("n: per-extension logs OFF")
        elif key in ("v", "t"):
            if self._busy is not None and not self._busy.done():
                self.say(f"{key}: still working on the previous key, wait a moment")
                return
            self._busy = asyncio.get_running_loop().create_task(self._versions() if key == "v" else self._self_test())
        elif key in ("h", "?"):
            self.say(HELP)
        elif key.strip():
            self.say(f"{ch!r}: unknown key. {HELP}")

    async def _versions(self) -> None:
        self.say("v: " + "\n   ".join(await self.gateway.versions()))

    async def _self_test(self) -> None:
        self.say("t: self-test…")
        results = await self.gateway.self_test()
        for name, ok, detail in results:
            self.say(f"   {'PASS' if ok else 'FAIL'}  {name}: {detail}")
        failed = sum(1 for _, ok, _ in results if not ok)
        self.say(f"t: {len(results) - failed} passed, {failed} failed")
