"""Pause reasons and automatic wrap-up: the tables a call centre configures per link, no I/O.

A pause reason has four names that must agree: its ``code`` (what a supervisor picks, what a dialler's
"ID Status" is mapped from), its ``name`` (what people read), the ``pabx`` reason the switch is given and
reports back (Asterisk QueuePause Reason, the NGC's MOTIVO) and the dialler's ``dialler_status_id``.
Protheus' NotReady carries no reason: ``default`` is used for it.

Wrap-up (after-call work, "tabulação automática"): after a call the agent took part in ends, the agent
is paused at the switch with ``WrapUp.reason`` for the link's seconds (or its ACD group's), then made
ready again by the gateway, unless the agent paused, logged off or became ready meanwhile.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PauseReason:
    code: str
    name: str
    pabx: str
    dialler_status_id: str = ""


@dataclass(frozen=True)
class PauseReasons:
    reasons: tuple[PauseReason, ...] = ()
    default_code: str = ""

    @property
    def default(self) -> PauseReason | None:
        return self.by_code(self.default_code) if self.default_code else None

    def by_code(self, code: str) -> PauseReason | None:
        return next((r for r in self.reasons if r.code == code), None)

    def by_pabx(self, raw: str) -> PauseReason | None:
        """The reason the switch reported (compared without case or surrounding blanks)."""
        key = raw.strip().casefold()
        return next((r for r in self.reasons if r.pabx.strip().casefold() == key), None) if key else None

    def name_of(self, raw: str) -> str:
        """What people read for a reason the switch reported: its configured name, or the raw text."""
        reason = self.by_pabx(raw)
        return reason.name if reason is not None else raw


NO_PAUSE_REASONS = PauseReasons()


@dataclass(frozen=True)
class WrapUp:
    seconds: float = 0.0                                  # 0 = off
    groups: dict[str, float] = field(default_factory=dict)   # ACD group -> its own seconds (0 = off there)
    reason: str = "pos-atendimento"                       # the pause reason the switch is given meanwhile

    @property
    def enabled(self) -> bool:
        return self.seconds > 0 or any(v > 0 for v in self.groups.values())

    def seconds_for(self, group: str) -> float:
        """After a call of ``group`` (its ACD group; "" when none): the link's seconds unless the group has its own."""
        return self.groups.get(group, self.seconds) if group else self.seconds


NO_WRAP_UP = WrapUp()
