"""The planner's values: what it is given (``PlanInput``) and what it returns (``Plan``).

Immutable and JSON-able: a plan is shown, saved with ``--out`` and applied later only
unchanged (its checksum pins the changes).  Separate from ``planner.py`` so that the
ports, reports and the CLI use plans without the planning rules.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dns.name

from tlsa_manager.facts import ChainFacts
from tlsa_manager.hazards import Hazard, Severity
from tlsa_manager.observations import History, ServerView
from tlsa_manager.policy import DesiredSet, HostPolicy, IssuerFacts
from tlsa_manager.provider import OwnerChange, RRset
from tlsa_manager.records import Tlsa

DEFAULT_SLACK = 300.0
#: The largest TTL assumed for anything served before the history began (a lost
#: ledger, a clock step): what common resolvers cap cached TTLs at (Unbound's
#: cache-max-ttl; configurable per host as ``ttl_ceiling``).
DEFAULT_TTL_CEILING = 86400


@dataclass(frozen=True)
class OwnerInput:
    """Everything known about one owner name (``_25._tcp.host.``) right now."""

    owner: dns.name.Name
    published: RRset
    views: tuple[ServerView, ...]
    history: History
    managed: frozenset[Tlsa] = frozenset()


@dataclass(frozen=True)
class PlanInput:
    """Everything the planner reads for one host, gathered before planning so that the
    planner itself does no I/O and takes the time as ``now``."""

    host: str
    owners: tuple[OwnerInput, ...]
    desired: DesiredSet
    now: float
    live: tuple[ChainFacts, ...] = ()
    staged: tuple[ChainFacts, ...] = ()
    next_keys: tuple[ChainFacts, ...] = ()
    issuers: tuple[IssuerFacts, ...] = ()
    roots: tuple[IssuerFacts, ...] = ()
    policy: HostPolicy = field(default_factory=HostPolicy)
    negative_ttl: int = 0
    default_ttl: int = 3600
    slack: float = DEFAULT_SLACK
    ttl_ceiling: int = DEFAULT_TTL_CEILING
    #: the ledger's history of this host was lost or the clock stepped, and no probe
    #: showed what the MTA presents: no record is removed this run
    history_unknown: bool = False
    #: when no authoritative server can be asked: the time the operator vouches that
    #: every server takes at most to serve a change (None: new keys and issuers wait)
    propagation_delay: float | None = None
    #: hazards found outside the planner's inputs (e.g. H27, the MTA presents another chain)
    notices: tuple[Hazard, ...] = ()


@dataclass(frozen=True)
class Gate:
    """When a staged chain may go live, and why not yet."""

    chain: str
    opens_at: float | None
    t_sync: float | None
    wait: float
    ready: bool
    reason: str
    #: the term that sets the wait (``2 x negative TTL 60 s ...``), or why there is no time yet
    term: str = ""
    #: the exact chain (leaf, certificate, CAs) this gate was computed for: a deploy
    #: goes ahead only with a staged file that still holds exactly this chain
    identity: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "opens_at": iso(self.opens_at),
            "t_sync": iso(self.t_sync),
            "wait_seconds": self.wait,
            "ready": self.ready,
            "reason": self.reason,
            "term": self.term,
        }


@dataclass(frozen=True)
class Plan:
    """The outcome of planning one host: changes, gates, hazards, reasons."""

    host: str
    now: float
    changes: tuple[OwnerChange, ...]
    gates: tuple[Gate, ...]
    hazards: tuple[Hazard, ...]
    unmanaged: tuple[tuple[str, str], ...] = ()
    reasons: tuple[tuple[str, str], ...] = ()

    @property
    def additions(self) -> int:
        return sum(len(c.add) for c in self.changes)

    @property
    def removals(self) -> int:
        return sum(len(c.delete) for c in self.changes)

    @property
    def ttl_changes(self) -> tuple[OwnerChange, ...]:
        return tuple(c for c in self.changes if c.ttl_change)

    @property
    def ready(self) -> tuple[Gate, ...]:
        return tuple(g for g in self.gates if g.ready)

    def summary(self) -> str:
        """One line: ``add 2, remove 1, deploy YR1 chain not before 2026-11-25 14:05Z``."""
        parts = []
        if self.additions:
            parts.append(f"add {self.additions}")
        if self.removals:
            parts.append(f"remove {self.removals}")
        for change in self.ttl_changes:
            parts.append(f"TTL {change.expected_ttl} -> {change.ttl}")
        for gate in self.gates:
            if gate.ready:
                parts.append(f"deploy {gate.chain} now")
            elif gate.opens_at is not None:
                parts.append(f"deploy {gate.chain} not before {short_time(gate.opens_at)}")
            else:
                parts.append(f"deploy {gate.chain}: waiting ({gate.reason})")
        fatal = sum(1 for h in self.hazards if h.severity is Severity.FATAL)
        if fatal:
            parts.append(f"{fatal} fatal hazard{'s' if fatal > 1 else ''}")
        return f"{self.host}: " + (", ".join(parts) if parts else "nothing to do")

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "now": iso(self.now),
            "summary": self.summary(),
            "changes": [
                {
                    "owner": c.owner.to_text(),
                    "ttl": c.ttl,
                    "expected_ttl": c.expected_ttl,
                    "expected": sorted(r.to_text() for r in c.expected),
                    "add": sorted(r.to_text() for r in c.add),
                    "delete": sorted(r.to_text() for r in c.delete),
                }
                for c in self.changes
            ],
            "gates": [g.as_dict() for g in self.gates],
            "hazards": [h.as_dict() for h in self.hazards],
            "unmanaged": [{"owner": o, "record": r} for o, r in self.unmanaged],
            "reasons": dict(self.reasons),
            "checksum": self.checksum(),
        }

    def checksum(self) -> str:
        """Pins the changes: a plan reviewed by a human can be applied only unchanged."""
        body = [
            (
                c.owner.to_text(),
                sorted(map(str, c.expected)),
                sorted(map(str, c.add)),
                sorted(map(str, c.delete)),
                c.ttl,
            )
            for c in self.changes
        ]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_time(ts: float) -> str:
    """To the second: a gate 50 s away must not print as "now" or as the minute before."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@functools.lru_cache(maxsize=65536)  # every owner of a fleet (1,024 was a 10,000-host run's misses)
def name_text(name: dns.name.Name) -> str:
    """``name.to_text()``, remembered: the planner asks it for every owner of every plan.

    An absolute name of plain labels (letters, digits, ``-``, ``_``: every owner name a
    host has) is written as its labels joined by dots, as ``to_text`` writes it, without
    its escaping of each character; anything else goes through ``to_text``."""
    labels = name.labels
    if len(labels) > 1 and not labels[-1] and all(_PLAIN_LABEL.fullmatch(label) for label in labels[:-1]):
        return b".".join(labels).decode("ascii")
    return str(name.to_text())


_PLAIN_LABEL = re.compile(rb"[A-Za-z0-9_-]+")


def chain_identity(chain: ChainFacts) -> str:
    """A digest of everything a sender can match in ``chain``: leaf key, leaf certificate, CAs.

    Two files with the same name but different contents (a second renewal staged
    between gate and deploy) have different identities.
    """
    h = hashlib.sha256()
    for cert in (chain.leaf, *chain.cas):
        for part in (cert.spki_der, cert.cert_der or b""):
            h.update(len(part).to_bytes(4, "big") + part)
    return h.hexdigest()
