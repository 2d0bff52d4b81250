"""The protocol number's layout: a template over the operator's ANS registry, the day and the day's sequence.

The default, ``{registro_ans}{date:%Y%m%d}{seq:06d}``, gives the 20 digits Protheus stores (SUC.UC_PROTANS is
20 characters) and the layout commonly described for RN 395's Anexo I: registry (6) + AAAAMMDD (8) + the
sequence of the day (6). The official annex could not be read (asterisk-ans-dialler.md §1.2), so the layout
is configurable; it is checked at start so that a mistake stops the gateway, not the first caller.
No I/O here.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

DEFAULT_LAYOUT = "{registro_ans}{date:%Y%m%d}{seq:06d}"
DEFAULT_TIMEZONE = "America/Sao_Paulo"
FIELDS = ("registro_ans", "date", "seq")
MAX_LENGTH = 20          # what Protheus' UC_PROTANS holds
NUMBER = re.compile(r"^[0-9]{1,40}$")


class LayoutError(ValueError):
    """The layout or the registry cannot make a valid number: says what is wrong."""


def registro_problem(value: str) -> str | None:
    if not re.fullmatch(r"[0-9]{6}", value or ""):
        return (f"{value!r} is not an ANS registry number: it has 6 digits (the 'Registro ANS' of the operator, "
                f"as in TISS registroANS), e.g. \"123456\"; write it between quotes so leading zeros are kept")
    return None


@dataclass(frozen=True)
class Layout:
    template: str
    registro_ans: str

    @property
    def capacity(self) -> int:
        """The highest sequence number of a day: 999 999 for ``{seq:06d}``."""
        width = _seq_width(self.template)
        return 10 ** width - 1 if width else 999_999

    def render(self, day: date, seq: int) -> str:
        return self.template.format(registro_ans=self.registro_ans, date=day, seq=seq)

    def check(self) -> list[str]:
        """Raises LayoutError when the layout cannot work; returns warnings (a number that is not 20 digits)."""
        problem = registro_problem(self.registro_ans)
        if problem:
            raise LayoutError(problem)
        names = set()
        try:
            for _, name, spec, _ in string.Formatter().parse(self.template):
                if name is not None:
                    names.add(name)
        except ValueError as e:
            raise LayoutError(f"{self.template!r} is not a valid template ({e})") from None
        unknown = names - set(FIELDS)
        if unknown:
            raise LayoutError(f"{self.template!r} uses {', '.join(sorted('{' + n + '}' for n in unknown))}; "
                              f"a layout may use {{registro_ans}}, {{date:%Y%m%d}} and {{seq:06d}}")
        if "seq" not in names or "date" not in names:
            raise LayoutError(f"{self.template!r} must hold {{date:...}} and {{seq:0Nd}}: without both, two "
                              f"attendances would get the same number")
        if not _seq_width(self.template):
            raise LayoutError(f"{self.template!r}: write the sequence with a fixed width, e.g. {{seq:06d}}, so "
                              f"every number of a day has the same length")
        samples = []
        for day, seq in ((date(2025, 1, 1), 1), (date(2099, 12, 31), self.capacity)):
            try:
                samples.append(self.render(day, seq))
            except (ValueError, KeyError, IndexError) as e:
                raise LayoutError(f"{self.template!r} cannot be filled in ({e})") from None
        for sample in samples:
            if not NUMBER.match(sample):
                raise LayoutError(f"{self.template!r} gives {sample!r}: a protocol number is digits only "
                                  f"(the beneficiary types it on a phone keypad)")
        if len({len(s) for s in samples}) != 1:
            raise LayoutError(f"{self.template!r} gives numbers of different lengths ({', '.join(samples)})")
        if len(samples[0]) > MAX_LENGTH:
            raise LayoutError(f"{self.template!r} gives {len(samples[0])} digits; Protheus keeps {MAX_LENGTH} "
                              f"(SUC.UC_PROTANS)")
        if len(samples[0]) != MAX_LENGTH:
            return [f"protocol.layout {self.template!r} gives {len(samples[0])} digits, not the {MAX_LENGTH} of "
                    f"the ANS layout: check it against the operator's reading of the regulation"]
        return []


def _seq_width(template: str) -> int:
    m = re.search(r"\{seq:0?(\d+)d\}", template)
    return int(m.group(1)) if m else 0


# Brasília has had no daylight saving time since 2019: UTC-3 all year.
BRASILIA = timezone(timedelta(hours=-3), "BRT")


def zone(name: str) -> tzinfo:
    """The time zone whose midnight starts a new day of numbers; LayoutError when unknown."""
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - every supported Python has zoneinfo
        ZoneInfo, ZoneInfoNotFoundError = None, Exception
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        if name == DEFAULT_TIMEZONE:   # a machine without tzdata: the fixed offset is exact since 2019
            return BRASILIA
        raise LayoutError(f"{name!r} is not a time zone this machine knows (install tzdata, or write one like "
                          f"America/Sao_Paulo)") from None


def day_of(moment: datetime, tz: tzinfo) -> date:
    """The day of the number: the calendar day in ``tz`` at ``moment`` (an aware datetime)."""
    return moment.astimezone(tz).date()
