"""What ``check`` found: per endpoint, per MX host and overall, and the Nagios line (pure).

The DANE status of a host is one explicit state, :class:`DaneState`: the lookups
decide it once (:func:`tlsa_manager.checkhazards.dane_state`), and everything after
(handshakes, verdicts, the overall verdict) reads it instead of re-deriving it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tlsa_manager.hazards import Hazard, Severity, worst
from tlsa_manager.records import Tlsa


class Dane(StrEnum):
    """Whether senders apply DANE to a host (RFC 7672 §2.2)."""

    IN_FORCE = "in force"  # secure TLSA records at a secure host: senders authenticate
    NOT_IN_FORCE = "not in force"  # no records, or some lookup insecure: plain opportunistic TLS
    BOGUS = "bogus"  # a lookup fails DNSSEC validation: senders defer mail
    ERROR = "error"  # a lookup failed, or the host has no address: not known

    @property
    def probes(self) -> bool:
        """Whether the handshakes are worth making (the lookups gave an answer)."""
        return self in (Dane.IN_FORCE, Dane.NOT_IN_FORCE)


@dataclass(frozen=True)
class DaneState:
    """A host's DANE status, the sentence that explains it, and the hazards it implies."""

    status: Dane
    detail: str
    hazards: tuple[Hazard, ...] = ()


def _pick(obj: object, *names: str) -> dict[str, Any]:
    """The named attributes of ``obj`` as a JSON object, in that order."""
    return {name: getattr(obj, name) for name in names}


@dataclass
class Endpoint:
    host: str
    address: str
    algorithm: str
    verdict: str  # pass | fail | no-starttls | no-tls | not-applicable | unreachable
    detail: str
    spki: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return _pick(self, "host", "address", "algorithm", "verdict", "detail")


@dataclass
class HostCheck:
    host: str
    preference: int | None
    dane: Dane
    detail: str
    tlsa: list[Tlsa] = field(default_factory=list)
    tlsa_owner: str = ""
    endpoints: list[Endpoint] = field(default_factory=list)
    hazards: list[Hazard] = field(default_factory=list)
    #: what each authoritative server serves at the TLSA owner, one line per server
    authoritative: list[str] = field(default_factory=list)

    def settle(self, state: DaneState) -> None:
        """Take the state the lookups decided."""
        self.dane, self.detail = state.status, state.detail
        self.hazards += state.hazards

    def as_dict(self) -> dict[str, Any]:
        return {
            **_pick(self, "host", "preference"),
            "dane": str(self.dane),
            **_pick(self, "detail", "tlsa_owner"),
            "tlsa": [r.to_text() for r in self.tlsa],
            "authoritative": self.authoritative,
            "endpoints": [e.as_dict() for e in self.endpoints],
            "hazards": [h.as_dict() for h in self.hazards],
        }


@dataclass
class CheckResult:
    target: str
    mx: str
    hosts: list[HostCheck]
    hazards: list[Hazard]

    @property
    def all_hazards(self) -> list[Hazard]:
        return self.hazards + [h for host in self.hosts for h in host.hazards]

    @property
    def verdict(self) -> str:
        endpoints = [e for h in self.hosts for e in h.endpoints]
        if any(h.dane is Dane.BOGUS for h in self.hosts) or any(
            e.verdict in ("fail", "no-starttls", "no-tls") for e in endpoints
        ):
            return "fail"
        if any(h.dane is Dane.ERROR for h in self.hosts) or any(
            e.verdict == "unreachable" for e in endpoints
        ):
            return "unknown"
        if all(h.dane is Dane.IN_FORCE for h in self.hosts) and endpoints:
            return "pass"
        return "dane not in force"

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mx": self.mx,
            "verdict": self.verdict,
            "hosts": [h.as_dict() for h in self.hosts],
            "hazards": [h.as_dict() for h in self.hazards],
        }


def nagios(result: CheckResult) -> tuple[int, str]:
    """Exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and the one status line with perfdata."""
    endpoints = [e for h in result.hosts for e in h.endpoints]
    passed = sum(1 for e in endpoints if e.verdict == "pass")
    failed = sum(1 for e in endpoints if e.verdict in ("fail", "no-starttls"))
    level = worst(result.all_hazards)
    verdict = result.verdict
    if verdict == "fail" or level is Severity.FATAL:
        code, word = 2, "CRITICAL"
    elif verdict == "unknown":
        code, word = 3, "UNKNOWN"
    elif verdict != "pass" or level is Severity.RISK:
        code, word = 1, "WARNING"
    else:
        code, word = 0, "OK"
    first = next((h for h in result.all_hazards if h.severity is Severity.FATAL), None) or next(
        iter(result.all_hazards), None
    )
    why = f"; {first.code} {first.message}" if first else ""
    status = f"DANE {word} - {result.target}: {verdict}, {passed}/{len(endpoints)} endpoints verified{why}"
    # names come from the DNS: a "|" there would start the perfdata, a newline a long text
    status = " ".join(status.replace("|", "/").split())
    perfdata = (
        f"hosts={len(result.hosts)} endpoints={len(endpoints)} verified={passed} failed={failed} "
        f"hazards={len(result.all_hazards)}"
    )
    return code, f"{status} | {perfdata}"
