"""Reading a capture back (for ``learn`` and ``replay``): every line checked, errors with their line.

``read_capture(path)`` returns ``(header, records)``: the header line as a dict and every following
line as a dict, in file order (message records, and the ``side: "capture"`` control lines ``limit``
and ``end`` when present). A file that is not a complete, unedited capture raises ``CaptureError``
naming the line: bad JSON, a missing or foreign header, another format version, a record without its
required keys, a ``seq`` that does not increase, a last line cut off, lines after the end line.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

__all__ = ["DIRECTIONS", "FORMAT", "VERSION", "CaptureError", "body_bytes", "read_capture"]

FORMAT = "smartcti-capture"
VERSION = 1

DIRECTIONS: dict[str, frozenset[str]] = {
    "xmlrpc": frozenset({"to_pabx", "from_pabx", "callback_to_gateway", "callback_answer"}),
    "soap": frozenset({"to_middleware", "from_middleware", "event_to_protheus", "event_answer"}),
    "raw": frozenset({"c2s", "s2c"}),
    "capture": frozenset({"limit", "end"}),
}
REQUIRED = ("t", "seq", "side", "dir", "conn")


class CaptureError(Exception):
    """The file is not a readable capture; ``line`` is the 1-based line at fault (0: the file itself)."""

    def __init__(self, path: str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_header(path: str, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CaptureError(path, 1, f"not a smartcti-capture file (its first line has format {found!r}; a capture "
                                    f"starts with {{\"format\": \"{FORMAT}\", ...}})")
    if obj.get("version") != VERSION:
        raise CaptureError(path, 1, f"capture format version {obj.get('version')!r} is not supported "
                                    f"(this program reads version {VERSION}); use the smartcti-gateway that wrote it")
    if not _is_number(obj.get("started")) or not isinstance(obj.get("sides"), dict):
        raise CaptureError(path, 1, "the header lacks 'started' or 'sides': the file was edited or is damaged")
    return obj


def _check_record(path: str, n: int, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CaptureError(path, n, f"a record must be a JSON object, not {type(obj).__name__}")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise CaptureError(path, n, f"record without {', '.join(missing)}: the file was edited or is damaged")
    if not _is_number(obj["t"]) or not _is_int(obj["seq"]) or not _is_int(obj["conn"]):
        raise CaptureError(path, n, "record with a non-numeric t, seq or conn: the file was edited or is damaged")
    side, direction = obj["side"], obj["dir"]
    if not isinstance(side, str) or side not in DIRECTIONS:
        raise CaptureError(path, n, f"unknown side {side!r} (expected one of {', '.join(DIRECTIONS)})")
    if direction not in DIRECTIONS[side]:
        raise CaptureError(path, n, f"unknown dir {direction!r} for side {side} "
                                    f"(expected one of {', '.join(sorted(DIRECTIONS[side]))})")
    if side in ("xmlrpc", "soap") and not isinstance(obj.get("http"), dict):
        raise CaptureError(path, n, f"{side} record without its 'http' object")
    if "body" in obj and not isinstance(obj["body"], str):
        raise CaptureError(path, n, "'body' must be text")
    if "body_b64" in obj:
        try:
            base64.b64decode(obj["body_b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise CaptureError(path, n, "'body_b64' is not valid base64") from None
    return obj


def read_capture(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, records) of a capture file; raises CaptureError (with the line number) if it is not one."""
    name = os.fspath(path)
    try:
        fh = open(name, "rb")  # noqa: SIM115 - closed by the with below, after the error mapping
    except OSError as e:
        raise CaptureError(name, 0, f"cannot read the file: {e.strerror or e}") from None
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    last_seq = 0
    ended_at = 0
    n = 0
    with fh:
        for n, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                raise CaptureError(name, n, "the last line is cut off (the capture was killed while writing, or "
                                            "the file was copied before the capture stopped)")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CaptureError(name, n, f"not UTF-8 (byte {e.start} of the line): the file was edited or "
                                            f"is damaged") from None
            if not text.strip():
                raise CaptureError(name, n, "empty line: the file was edited")
            try:
                obj = json.loads(text)
            except ValueError as e:
                raise CaptureError(name, n, f"not valid JSON ({e}): the file was edited or is damaged") from None
            if n == 1:
                header = _check_header(name, obj)
                continue
            if ended_at:
                raise CaptureError(name, n, f"a record after the last line of the capture (line {ended_at}): "
                                            f"two files were joined or the file was edited")
            rec = _check_record(name, n, obj)
            if rec["seq"] <= last_seq:
                raise CaptureError(name, n, f"seq {rec['seq']} does not increase (the line before has "
                                            f"{last_seq}): lines were moved, repeated or edited")
            last_seq = rec["seq"]
            if rec["side"] == "capture":
                ended_at = n
            records.append(rec)
    if header is None:
        raise CaptureError(name, 1, "the file is empty, not a smartcti-capture file")
    return header, records


def body_bytes(record: dict[str, Any]) -> bytes:
    """The recorded body of a record as bytes (masked, and cut at the cap when ``truncated``)."""
    if "body_b64" in record:
        return base64.b64decode(record["body_b64"])
    return str(record.get("body", "")).encode("utf-8")
