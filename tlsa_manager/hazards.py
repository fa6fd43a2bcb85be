"""Hazardous states (dane-rules.md §I): codes, severities and the fix for each.

Shared by the planner and by ``check``: both report the same code for the same
state, so an operator can look a code up once in docs/hazards.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    FATAL = "fatal"  # a DANE sender defers mail now, or will at the next renewal
    RISK = "risk"  # failure is conditional, or some senders only
    INFO = "info"  # protection reduced, or hygiene


@dataclass(frozen=True, order=True)
class Hazard:
    """One finding: code (H1...H26), severity, what is wrong, what to do."""

    code: str
    severity: Severity
    message: str
    fix: str
    owner: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": str(self.severity),
            "owner": self.owner,
            "message": self.message,
            "fix": self.fix,
        }

    def one_line(self) -> str:
        where = f"{self.owner}: " if self.owner else ""
        return f"[{self.code} {self.severity}] {where}{self.message}; fix: {self.fix}"


def worst(hazards: list[Hazard]) -> Severity | None:
    for level in (Severity.FATAL, Severity.RISK, Severity.INFO):
        if any(h.severity is level for h in hazards):
            return level
    return None
