"""Per-extension daily logs, as DigitroCTILink wrote them: ``<dir>/<device>-<linkid>-<DD>.log``.

One line per command received, PABX request and answer, PABX event and
event sent to Protheus, each with a timestamp. The log is cyclic, one month
deep: the file of day DD is overwritten when it holds an earlier month. It
can be switched on and off at run time (console keys s and n).
"""
from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, TextIO

log = logging.getLogger("smartcti_gateway.extlog")

_UNSAFE = re.compile(r"[^0-9A-Za-z_.#*+-]")
# Names that are not extensions (typos, probes) share one file instead of creating thousands.
MAX_FILES_PER_DAY = 5000
OTHER = "_other"
SECRET_FIELD = re.compile(r"senha|pass|pwd|secret", re.IGNORECASE)


def clip(value: object, limit: int = 120) -> object:
    """A string fit for a log line: at most ``limit`` characters, with the length of what was cut.
    Whatever a client or the PABX sends (a 10,000-character device, a huge URL) is logged this way."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}…({len(value)} chars)"
    return value


def file_device(device: str) -> str:
    """A device string made safe for a file name."""
    name = _UNSAFE.sub("_", device.strip())[:40].lstrip(".")
    return name or "_"


def masked_struct(struct: dict) -> str:
    """``{K: v, ...}`` with every password-like member shown as ***."""
    return "{" + ", ".join(f"{clip(k, 40)}: {'***' if SECRET_FIELD.search(str(k)) and v else repr(clip(v))}"
                           for k, v in struct.items()) + "}"


class Trace:
    """Where one link writes its per-extension lines; callers test ``on`` before formatting a line.

    Only devices the link serves get a file (``serves``, set by the link): a device string that
    was refused (``CON``, ``../../tmp/x``, a typo) creates none.
    """

    def __init__(self, xl: "ExtensionLog | None" = None, link_id: int = 0,
                 serves: Callable[[str], bool] = lambda device: True):
        self.xl = xl
        self.link_id = link_id
        self.serves = serves

    @property
    def on(self) -> bool:
        return self.xl is not None and self.xl.enabled

    def __call__(self, device: str, text: str) -> None:
        if self.xl is not None and self.serves(device.strip()):
            self.xl.write(device, self.link_id, text)


NO_TRACE = Trace()


class ExtensionLog:
    def __init__(self, directory: str | Path, *, enabled: bool = False, clock: Callable[[], float] = time.time,
                 max_open: int = 128):
        self.directory = Path(directory)
        self.enabled = enabled
        self.clock = clock
        self.max_open = max_open
        self._open: OrderedDict[Path, TextIO] = OrderedDict()
        self._day_files: set[str] = set()
        self._day = ""
        self._failed_dir = False

    def set_enabled(self, on: bool) -> None:
        self.enabled = on
        if not on:
            self.close()

    def write(self, device: str, link_id: int, text: str) -> None:
        if not self.enabled:
            return
        now = self.clock()
        t = time.localtime(now)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{int(now * 1000) % 1000:03d}"
        day = f"{t.tm_mday:02d}"
        if day != self._day:
            self._day, self._day_files = day, set()
            self.close()
        name = f"{file_device(device)}-{link_id}"
        if name not in self._day_files and len(self._day_files) >= MAX_FILES_PER_DAY:
            name, text = f"{OTHER}-{link_id}", f"[{clip(device, 40)!r}] {text}"
        path = self.directory / f"{name}-{day}.log"
        try:
            f = self._file(path, stamp[:7])
            self._day_files.add(name)
            f.write(f"{stamp} {text}\n")
            f.flush()
        except OSError as e:
            if not self._failed_dir:
                self._failed_dir = True
                log.error("cannot write extension logs in %s (%s); check the directory and its permissions. "
                          "Turn them off with the console key n or logging.per_extension: false", self.directory, e)

    def _file(self, path: Path, month: str) -> TextIO:
        f = self._open.get(path)
        if f is not None:
            self._open.move_to_end(path)
            return f
        self.directory.mkdir(parents=True, exist_ok=True)
        mode = "a"
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as old:
                if old.read(7) != month:
                    mode = "w"   # last month's file of this day: the log is one month deep
        except FileNotFoundError:
            pass
        f = open(path, mode, encoding="utf-8")
        self._open[path] = f
        while len(self._open) > self.max_open:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        return f

    def close(self) -> None:
        while self._open:
            _, f = self._open.popitem()
            try:
                f.close()
            except OSError:
                pass
