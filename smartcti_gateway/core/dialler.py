"""Which calls a dialler delivered: they pop as CALLTYPE 3 (smartcti.md §10.6), on any PABX.

A PABX that says so (Dígitro's SENTIDO for a dialler, ``Direction.DIALLER``) needs no rule. Otherwise a
link's ``dialler`` rule says it: the number the dialler's calls arrive on (``dnis``), the ACD group it
delivers to (``groups``), or a call variable it sets (``variable``: on Asterisk a channel variable named
in manager.conf's ``channelvars``, on Dígitro a ``NAME=value`` pair in the call's DADOS), any value but
empty, 0, no or false.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*([^;|,&\s]*)")
_OFF = frozenset({"", "0", "no", "nao", "não", "false", "n"})


def data_variables(data: str) -> dict[str, str]:
    """``NAME=value`` pairs of a call's data (DADOS), separated by ; | , & or blanks; names in upper case."""
    return {m.group(1).upper(): m.group(2) for m in _PAIR.finditer(data or "")}


@dataclass(frozen=True)
class DiallerRule:
    dnis: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    variable: str = ""

    def __bool__(self) -> bool:
        return bool(self.dnis or self.groups or self.variable)

    def matches(self, dnis: str, group: str, variables: Mapping[str, str], data: str = "") -> bool:
        if dnis and dnis in self.dnis or group and group in self.groups:
            return True
        if not self.variable:
            return False
        name = self.variable.upper()
        value = {k.upper(): v for k, v in variables.items()}.get(name)
        if value is None:
            value = data_variables(data).get(name)
        return value is not None and value.strip().casefold() not in _OFF


NO_DIALLER_RULE = DiallerRule()
