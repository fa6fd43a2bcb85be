"""Hazardous states (dane-rules.md §I): one catalog of codes, severities and fixes.

Shared by the planner and by ``check``: both report the same code for the same
state, so an operator can look a code up once in docs/hazards.md, which is generated
from :data:`CATALOG` (``scripts/hazards-doc``) and tested against it.  Every finding
is made through its :class:`Kind` by name (``hazards.SERVERS_DISAGREE.hazard(...)``),
never from a code written as a string, so a code cannot drift between two modules.
A code is never reused: a state no longer reported keeps its number, marked retired.
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
    """One finding: code (H1...H27), severity, what is wrong, what to do."""

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


@dataclass(frozen=True)
class Kind:
    """One row of the catalog: a hazardous state and how it is reported.

    ``severity`` is the usual one; ``escalation`` says when a finding is reported
    more (or less) severe.  ``fix`` is the general remedy for the docs: a finding
    carries the fix for its own case.
    """

    code: str
    severity: Severity
    escalation: str
    meaning: str
    fix: str
    source: str
    #: why the state is no longer reported (the code stays reserved)
    retired: str = ""

    def hazard(self, message: str, fix: str, owner: str = "", severity: Severity | None = None) -> Hazard:
        """A finding of this kind (at the usual severity unless ``severity`` is given)."""
        if self.retired:
            raise ValueError(f"{self.code} is retired: {self.retired}")
        return Hazard(self.code, severity or self.severity, message, fix, owner)


# fmt: off
_F, _R, _I = Severity.FATAL, Severity.RISK, Severity.INFO

# One layout for every row: code, usual severity, escalation; meaning; fix; source.

LIVE_UNMATCHED = Kind(
    "H1", _F, "",
    "a live chain, on any address or algorithm, matches no usable record",
    "publish its 3 1 1 record at once (tlsa-manager sync)",
    "RFC 7672 §3.2, §9.1",
)
KIND_OFF_LIVE = Kind(
    "H2", _F, "",
    "a record kind (usage, selector, matching type) matches only past or future chains",
    "keep or add the live chain's record of that kind before anything else",
    "RFC 7671 §8",
)
EE_WHOLE_CERT = Kind(
    "H3", _R, "fatal if it is the only kind",
    '"3 0 x" published: it pins the whole certificate, which changes at every renewal',
    'replace it with "3 1 1" (pre-publish 3 1 1, then remove it)',
    "VD-7022",
)
TA_WHOLE_CERT = Kind(
    "H4", _R, "",
    '"2 0 x" for a CA that cross-signs and reissues its certificates',
    'use "2 1 1" instead',
    "VD-2019, VD-X3",
)
DIGEST_AGILITY = Kind(
    "H5", _F, "",
    "SHA2-512 records cover other keys than the SHA2-256 records of the same usage and selector",
    "publish SHA2-512 for exactly the keys that have SHA2-256, or drop it",
    "RFC 7671 §9",
)
TLSA_INSECURE = Kind(
    "H6", _I, "",
    "a TLSA RRset is published but the zone or its delegation is not signed: DANE is inert",
    "sign the zone (and the delegation)",
    "RFC 7672 §2.2",
)
LOOKUP_FAILS = Kind(
    "H7", _F, "risk for signatures about to lapse and for a server that cannot be read",
    "a TLSA, MX or address lookup is bogus or its signatures about to lapse, or a server cannot be read",
    "fix the signatures / DS of the zone; keep the signer running; repair or remove the server",
    "RFC 7672 §2.1.1-2.1.2; TBX",
)
MX_INSECURE = Kind(
    "H8", _I, "",
    "the MX RRset or the MX host's A/AAAA is not DNSSEC-signed: senders do not apply DANE",
    "sign the zone",
    "RFC 7672 §2.2.1-2.2.2",
)
TA_NOT_SENT = Kind(
    "H9", _R, "",
    '"2 x x" for a certificate the server does not send (a root, a dropped cross-sign, no CA sent)',
    "pin the intermediates; serve fullchain.pem, not cert.pem",
    "RFC 7671 §5.2.2; VD-X1; LE-134172",
)
TA_NAME_OR_DATES = Kind(
    "H10", _F, "",
    "DANE-TA matches, but the leaf does not name the MX host or the chain is outside its dates",
    "the certificate must name the MX host and be within its dates",
    "RFC 7672 §3.2.2",
)
RETIRED_CA = Kind(
    "H11", _I, 'fatal if they are the only "2 1 1" records',
    "records for a retired CA that no live chain uses",
    "remove them once no live chain uses that CA (sync does this)",
    "VD-2021, VD-X3, LE-CERTS",
)
ISSUER_MISSING = Kind(
    "H12", _R, "",
    "an active or backup intermediate of a key type in use is missing from the DANE-TA records",
    "add its 2 1 1 record (sync does this)",
    "LE-INT24, LE-GENY, LE-CERTS",
)
TOO_MANY_RECORDS = Kind(
    "H13", _R, "fatal when the live chain's own records need more than the budget",
    "more records at one name than the budget (some senders fail above about 12)",
    "drop retired issuers and unused key types, or raise budget",
    "VD-X3; RFC 7671 §10.1.1",
)
PKIX_USAGE = Kind(
    "H14", _I, "",
    "usage 0 or 1 records, which SMTP senders treat as unusable",
    "remove them; use 3 1 1 / 2 1 1",
    "RFC 7672 §3.1.3, §2.2",
)
WRONG_OWNER = Kind(
    "H15", _I, "fatal for a doubled zone suffix (a missing trailing dot)",
    "TLSA at an owner senders never look up (not `_25._tcp.<mx-host>`, or a doubled zone suffix)",
    "publish at _25._tcp.<mx-host>; write host names fully qualified",
    "RFC 7672 §2.2.3; B1",
)
CNAME_MX = Kind(
    "H16", _R, "",
    "the MX host is a CNAME (RFC 2181 §10.3)",
    "point the MX at the real host name",
    "RFC 7672 §2.2.2-2.2.3",
)
CNAME_OWNER = Kind(
    "H17", _R, "",
    "the TLSA owner is a CNAME (to a shared RRset)",
    "publish the TLSA RRset at the owner itself",
    "RFC 7672 §2.2.3; RFC 7671 §6",
)
SERVERS_DISAGREE = Kind(
    "H18", _R, "fatal if a version some server serves fails a live chain",
    "the authoritative servers serve different TLSA RRsets (a lagging secondary); deploy gates stay closed",
    "fix zone transfers to the lagging server (NOTIFY, IXFR, allow-transfer, TSIG)",
    "F1",
)
KEY_TYPE_UNMATCHED = Kind(
    "H19", _F, "",
    "RSA and ECDSA chains are live but the records cover only one of them",
    "publish the 3 1 1 record of every live key (tlsa-manager sync)",
    "TBX; RFC 7671 §8",
)
NO_STARTTLS = Kind(
    "H20", _F, "",
    "STARTTLS (or the port's TLS) is not offered while TLSA is published",
    "enable STARTTLS for every client",
    "RFC 7672 §2.2, §9.2",
)
SHARED_KEY = Kind(
    "H21", _R, "",
    "every MX host uses the same key",
    "give each MX host its own key",
    "TBX",
)
NEXT_KEY_UNSTAGED = Kind(
    "H22", _R, "",
    "the next key cannot be pre-published (certbot `--new-key` without staging)",
    "-",
    "CB; D2",
    retired="never a state with tlsa-manager: the hook stages every renewed chain, and the planner "
    "keeps a new key staged until its records are in every cache (docs/hooks.md); next keys "
    "(`auto_next_keys`, `key next`) are pre-published, docs/key-rollover.md",
)
TTL_INCONSISTENT = Kind(
    "H23", _I, "",
    "the TTL differs between servers or changed recently; waits use the largest",
    "keep one TTL and change it as a step of its own",
    "RFC 2136 §7.12; F3",
)
STAGED_MISMATCH = Kind(
    "H24", _R, "",
    "the staged key and certificate do not match, or the staged chain does not verify (blocks its deploy)",
    "stage a certificate that matches its key and verifies",
    "DB-T, DB-S",
)
EMPTY_RRSET = Kind(
    "H25", _F, "",
    "a change would leave the RRset empty (refused: nothing is removed)",
    "check the configuration: the host has no live key?",
    "E1, E6",
)
STALE_CATALOG = Kind(
    "H26", _R, "",
    "a live or staged Let's Encrypt chain whose issuer the catalog does not know",
    "run 'tlsa-manager catalog update' (the timer does it daily)",
    "LE-CERTS; issue 18",
)
MTA_OTHER_CHAIN = Kind(
    "H27", _R, "",
    "the MTA presents another chain than the configured live file (deploys of that key type wait)",
    "point the MTA at the configured certificate file and reload it",
    "issue 18",
)

#: every kind, in code order; docs/hazards.md is this table
CATALOG: tuple[Kind, ...] = (
    LIVE_UNMATCHED, KIND_OFF_LIVE, EE_WHOLE_CERT, TA_WHOLE_CERT, DIGEST_AGILITY, TLSA_INSECURE,
    LOOKUP_FAILS, MX_INSECURE, TA_NOT_SENT, TA_NAME_OR_DATES, RETIRED_CA, ISSUER_MISSING,
    TOO_MANY_RECORDS, PKIX_USAGE, WRONG_OWNER, CNAME_MX, CNAME_OWNER, SERVERS_DISAGREE,
    KEY_TYPE_UNMATCHED, NO_STARTTLS, SHARED_KEY, NEXT_KEY_UNSTAGED, TTL_INCONSISTENT,
    STAGED_MISMATCH, EMPTY_RRSET, STALE_CATALOG, MTA_OTHER_CHAIN,
)
# fmt: on


def kind_of(code: str) -> Kind:
    """The catalog row of a code (KeyError for a code that does not exist)."""
    return {k.code: k for k in CATALOG}[code]


def worst(hazards: list[Hazard]) -> Severity | None:
    for level in (Severity.FATAL, Severity.RISK, Severity.INFO):
        if any(h.severity is level for h in hazards):
            return level
    return None


def markdown() -> str:
    """docs/hazards.md, from the catalog (tests/test_hazards.py holds the file to it)."""
    rows = [
        f"| {k.code} | {_cell(k.meaning)} | {k.severity}"
        + (f"; {k.escalation}" if k.escalation else "")
        + f" | {_cell(k.fix)} | {_cell(k.source)} |"
        for k in CATALOG
        if not k.retired
    ]
    retired = [f"- **{k.code}**, {k.meaning}: retired, {k.retired}." for k in CATALOG if k.retired]
    return "\n".join(
        [
            "# Hazard codes",
            "",
            "<!-- generated from tlsa_manager/hazards.py by scripts/hazards-doc: edit the catalog there -->",
            "",
            "What `plan`, `sync`, `status`, `hook` and `check` report, one code per state (the",
            "planner and `check` use the same catalog). Severity: **fatal**, a DANE sender defers",
            "mail now or will at the next renewal; **risk**, failure is conditional or for some",
            "senders only; **info**, protection is reduced. Each finding names its own fix; the",
            "column below is the general one. Sources are the tags of the DANE rulebook",
            "(dane-rules.md §0) and RFC sections.",
            "",
            "| code | state | severity | fix | source |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Codes are never reused:",
            "",
            *retired,
            "",
        ]
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
