"""The capture file: JSON lines written by a thread, so forwarding never waits for the disk.

The event loop hands over plain dicts whose body is still bytes (``_body``); the writer thread parses
(``parsed``), masks secrets, encodes the body (``body`` text when UTF-8, else ``body_b64``) and writes
one line per message, flushing at least once a second and on close. ``--max-bytes`` bounds the file:
the record that would cross the bound is replaced by one last ``{"side": "capture", "dir": "limit"}``
line, and nothing more is written (forwarding goes on). A clean stop ends the file with a
``{"side": "capture", "dir": "end"}`` line holding the counts.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any, BinaryIO

from .limits import BODY_CAP
from .mask import mask_bytes, mask_value
from .parse import parse_soap, parse_xmlrpc
from .reader import FORMAT, VERSION

log = logging.getLogger("smartcti_gateway.capture")

RESERVE = 2048              # room always left for the last line (limit or end)
FLUSH_EVERY = 1.0           # s
QUEUE_BYTES = 64 << 20      # bodies waiting for the writer before records are dropped

_PARSERS: dict[str, Callable[[bytes], Any]] = {"xmlrpc": parse_xmlrpc, "soap": parse_soap}


def body_fields(data: bytes, size: int) -> dict[str, Any]:
    """``body`` (UTF-8 text) or ``body_b64`` of ``data`` masked; ``size`` the whole body's length."""
    masked = mask_bytes(data)
    out: dict[str, Any]
    try:
        out = {"body": masked.decode("utf-8")}
    except UnicodeDecodeError as e:
        # a cut at the cap may split one UTF-8 character: the text up to it is still text
        if size > len(data) and e.start >= len(masked) - 3:
            try:
                out = {"body": masked[:e.start].decode("utf-8")}
            except UnicodeDecodeError:
                out = {"body_b64": base64.b64encode(masked).decode("ascii")}
        else:
            out = {"body_b64": base64.b64encode(masked).decode("ascii")}
    out["size"] = size
    out["truncated"] = size > len(data)
    return out


def _coding(rec: dict[str, Any]) -> str:
    headers = (rec.get("http") or {}).get("headers") or ()
    coding = next((v.strip().lower() for k, v in headers if k.lower() == "content-encoding"), "")
    return coding if coding not in ("", "identity") else ""


def _decoded(coding: str, body: bytes) -> bytes | None:
    """``body`` with its gzip or deflate Content-Encoding undone; None when it cannot be."""
    if coding not in ("gzip", "x-gzip", "deflate"):
        return None
    for wbits in ((zlib.MAX_WBITS | 32,) if coding != "deflate" else (zlib.MAX_WBITS, -zlib.MAX_WBITS)):
        try:
            d = zlib.decompressobj(wbits)
            out = d.decompress(body, 16 << 20)
            if not d.unconsumed_tail:
                return out
        except zlib.error:
            continue
    return None


def _dumps(rec: dict[str, Any]) -> bytes:
    return (json.dumps(rec, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")


class Recorder:
    """One capture file. ``record`` is called on the event loop; a thread does the rest."""

    def __init__(self, path: str, max_bytes: int, *, body_cap: int = BODY_CAP,
                 on_limit: Callable[[str], None] | None = None, force: bool = False):
        self.path = path
        self.max_bytes = max_bytes
        self.body_cap = body_cap
        self.on_limit = on_limit or (lambda message: None)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
        if not force:
            # an existing capture is never overwritten by accident: only an empty file is reused
            try:
                if os.path.getsize(path) > 0:
                    raise FileExistsError(path)
            except FileNotFoundError:
                pass
        fd = os.open(path, flags, 0o600)
        self._fh: BinaryIO = os.fdopen(fd, "wb", buffering=1 << 20)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._thread: threading.Thread | None = None
        self.seq = 0
        self.written = 0
        self.records_written = 0
        self.limited = False        # set by the writer when --max-bytes was reached
        self.limit_at: float | None = None
        self.dropped = 0            # records dropped because the writer could not keep up
        self.closed = False
        self.counts: Counter[tuple[str, str]] = Counter()   # messages forwarded (whether recorded or not)
        self.methods: Counter[str] = Counter()     # XML-RPC methods seen (requests and callbacks)
        self.operations: Counter[str] = Counter()  # SOAP operations seen (commands and events)
        self.error: str | None = None

    # -------------------------------------------------------------- loop side
    def start(self, header: dict[str, Any]) -> None:
        line = _dumps({"format": FORMAT, "version": VERSION, **header})
        self._fh.write(line)
        self._fh.flush()
        self.written = len(line)
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def record(self, rec: dict[str, Any], body: bytes | None = None, size: int | None = None,
               parse: str | None = None) -> None:
        """Queue one message. ``body`` at most ``body_cap`` bytes of it, ``size`` its whole length."""
        self.counts[(rec["side"], rec["dir"])] += 1
        if self.closed or self.error is not None:   # closed, or the writer stopped (disk full)
            return
        n = len(body) if body else 0
        with self._lock:
            if self._queued + n > QUEUE_BYTES:
                self.dropped += 1
                return
            self._queued += n
        rec = {"t": rec.pop("t", None) or time.time(), "seq": self.next_seq(), **rec}
        self._q.put((rec, body, size if size is not None else n, parse))

    def close(self, end: dict[str, Any] | None = None) -> None:
        """Write what is queued, then the end line (unless --max-bytes was reached), flush, close."""
        if self.closed:
            return
        self.closed = True
        if end is not None:
            end = {"t": time.time(), "seq": self.next_seq(), "side": "capture", "dir": "end", "conn": 0, **end}
        self._q.put(("stop", end))
        if self._thread is not None:
            self._thread.join(30)
        else:
            self._fh.close()

    # ------------------------------------------------------------ the writer
    def _run(self) -> None:
        dirty = False
        deadline = time.monotonic() + FLUSH_EVERY
        try:
            while True:
                try:
                    item = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    item = None
                if item is not None and item[0] == "stop":
                    end = item[1]
                    if end is not None and not self.limited:
                        end["dropped"] = self.dropped
                        self._write(end, final=True)
                    break
                if item is not None:
                    self._message(*item)
                    dirty = True
                if time.monotonic() >= deadline:
                    if dirty:
                        self._fh.flush()
                        dirty = False
                    deadline = time.monotonic() + FLUSH_EVERY
        except Exception as e:  # noqa: BLE001 - a full disk must not stop the forwarding
            self.error = f"{type(e).__name__}: {e}"
            self.limited = True
            self.on_limit(f"cannot write {self.path} ({self.error}); recording stopped, forwarding goes on")
        finally:
            try:
                self._fh.flush()
                self._fh.close()
            except OSError as e:
                self.error = self.error or f"{type(e).__name__}: {e}"

    def _message(self, rec: dict[str, Any], body: bytes | None, size: int, parse: str | None) -> None:
        with self._lock:
            self._queued -= len(body) if body else 0
        parsed = None
        coding = _coding(rec) if body else ""
        if coding:
            # a compressed body is kept decoded (and masked: secrets cannot be masked in compressed bytes)
            plain = _decoded(coding, body) if size <= len(body) else None
            if plain is None:
                rec["body_omitted"] = (f"{coding}-encoded body that could not be decoded here: not recorded, "
                                       f"so that no password can be read from it")
                body = b""
            else:
                rec["decoded"] = coding
            rec["size_on_wire"] = size
            size = len(plain) if plain is not None else 0
            body = plain[:self.body_cap] if plain is not None else b""
        if parse is not None and body:
            parsed = _PARSERS[parse](body) if size <= len(body) else None
            if parsed is not None:
                if "method" in parsed:
                    self.methods[str(parsed["method"])] += 1
                elif "operation" in parsed and "args" in parsed:
                    self.operations[str(parsed["operation"])] += 1
                parsed = mask_value(parsed)
        if self.limited:
            return
        if body is not None:
            rec.update(body_fields(body, size))
        if parse is not None:
            rec["parsed"] = parsed
        self._write(rec)

    def _write(self, rec: dict[str, Any], final: bool = False) -> None:
        line = _dumps(rec)
        if self.written + len(line) + (0 if final else RESERVE) > self.max_bytes:
            if final:
                line = _dumps({k: rec[k] for k in ("t", "seq", "side", "dir", "conn")})
            if not final or self.written + len(line) > self.max_bytes:
                self._limit(rec)
                return
        self._fh.write(line)
        self.written += len(line)
        self.records_written += 1

    def _limit(self, rec: dict[str, Any]) -> None:
        self.limited = True
        self.limit_at = time.time()
        message = (f"--max-bytes {self.max_bytes} reached: nothing more is recorded after this line "
                   f"(forwarding went on)")
        line = _dumps({"t": self.limit_at, "seq": rec["seq"], "side": "capture", "dir": "limit", "conn": 0,
                       "max_bytes": self.max_bytes, "message": message})
        if self.written + len(line) <= self.max_bytes:
            self._fh.write(line)
            self.written += len(line)
        self._fh.flush()
        self.on_limit(f"{self.path} reached --max-bytes ({self.max_bytes} bytes): recording stopped, "
                      f"forwarding goes on. Stop with Ctrl+C and start another capture (another --out) "
                      f"to record more")
