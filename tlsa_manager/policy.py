"""The desired TLSA set of one host (pure); the hazard lint of an RRset is :mod:`tlsa_manager.lint`.

Rules (dane-rules.md): "3 1 1" for every live, staged and next key (C2, C6); "2 1 1"
for the issuer of every live and staged chain and for every active and backup
catalog intermediate of each key type in use (D5, I-8), never a root or cross-sign
(D7) and never a retired CA unless a live chain still uses it (D9); no fragile or
unusable kind without an option whose name says it is unsafe (I-5); SHA2-512 only
next to SHA2-256 (I-6); at most ``budget`` records, by a documented priority (D9).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tlsa_manager.advice import kind_warnings
from tlsa_manager.catalog import Catalog
from tlsa_manager.derive import DEFAULT_KINDS
from tlsa_manager.errors import ConfigError, UnsafeError
from tlsa_manager.facts import CertFacts, ChainFacts
from tlsa_manager.hazards import TA_NOT_SENT, TOO_MANY_RECORDS, Hazard
from tlsa_manager.memo import by_identity, frozen_hash, memo_method, pure_cache
from tlsa_manager.records import (
    MatchingType,
    Params,
    Tlsa,
    Usage,
    params_text,
)

#: Roles in priority order: what survives when the budget is exceeded.
ROLES = ("live", "staged", "next", "issuer-active", "issuer-backup")
UNSAFE_OPTION = "unsafe_allow_fragile_kinds"


@dataclass(frozen=True)
class IssuerFacts:
    """A catalog CA key as the policy needs it: name, key type, status, certificates."""

    name: str
    key_type: str
    status: str
    certs: tuple[CertFacts, ...]

    def __hash__(self) -> int:
        return frozen_hash(self)

    @memo_method  # frozen value object, asked on every plan
    def records(self, params: Params) -> frozenset[Tlsa]:
        return frozenset(r for c in self.certs if (r := c.record(params)) is not None)

    @memo_method
    def records_of(self, kinds: frozenset[Params]) -> frozenset[Tlsa]:
        """Its records of every kind in ``kinds`` (lint asks this for each plan)."""
        return frozenset(r for k in kinds for r in self.records(k))


class Issuers(tuple[IssuerFacts, ...]):
    """A catalog's issuers: a tuple that hashes its elements once.

    Every plan passes the same issuers to the memoized ``desired`` and ``lint``, whose
    keys hashed each of its ~25 elements in Python on every call.  Equal to (and hashed
    as) the plain tuple of the same elements; pickled as one, without the kept hash
    (``bytes`` hashes are salted per process).
    """

    def __hash__(self) -> int:
        known: int | None = self.__dict__.get("_hash")
        if known is None:
            known = self.__dict__["_hash"] = tuple.__hash__(self)
        return known

    def __reduce__(self) -> tuple[type[Issuers], tuple[tuple[IssuerFacts, ...]]]:
        return (Issuers, (tuple(self),))


def issuers_from_catalog(catalog: Catalog, *, roots: bool = False) -> tuple[IssuerFacts, ...]:
    """Every non-root catalog CA key (any status), or with ``roots`` every root, as IssuerFacts."""
    from tlsa_manager.facts import cert_facts

    return Issuers(
        IssuerFacts(i.name, i.key_type, i.status, tuple(cert_facts(c.certificate) for c in i.certs))
        for i in catalog.issuers
        if i.is_root == roots
    )


@dataclass(frozen=True)
class HostPolicy:
    """The per-host settings that shape the desired set (config reference: docs/config.md)."""

    kinds: tuple[Params, ...] = DEFAULT_KINDS
    budget: int = 12
    unsafe_allow_fragile_kinds: bool = False
    pin_backup_issuers: bool = True
    prune: bool = False

    def __hash__(self) -> int:
        return frozen_hash(self)  # a key of ``desired``'s memo on every plan


@dataclass(frozen=True, order=True)
class DesiredRecord:
    """A record to publish, why, and for which role (priority order of ``ROLES``)."""

    priority: int
    record: Tlsa
    role: str = field(compare=False)
    reason: str = field(compare=False)

    def texts(self) -> tuple[str, str]:
        """``(record text, "role: reason")`` as a plan lists it; kept, since the catalog's
        records are the same objects in every host's desired set."""
        known: tuple[str, str] | None = self.__dict__.get("_texts")
        if known is None:
            known = (self.record.to_text(), f"{self.role}: {self.reason}")
            object.__setattr__(self, "_texts", known)
        return known


@dataclass(frozen=True)
class DesiredSet:
    """The records a host should publish (in priority order), the hazards found on the way
    and the record kinds they were derived for."""

    records: tuple[DesiredRecord, ...]
    hazards: tuple[Hazard, ...] = ()
    kinds: tuple[Params, ...] = DEFAULT_KINDS

    def as_set(self) -> frozenset[Tlsa]:
        known: frozenset[Tlsa] | None = self.__dict__.get("_as_set")
        if known is None:  # asked per owner and per staged chain of every plan
            known = frozenset(d.record for d in self.records)
            object.__setattr__(self, "_as_set", known)
        return known

    def reasons(self) -> tuple[tuple[str, str], ...]:
        """``(record text, "role: reason")`` of every record, sorted, as a plan lists them;
        kept, as :meth:`as_set` (a run plans each host twice on the same desired set)."""
        known: tuple[tuple[str, str], ...] | None = self.__dict__.get("_reasons")
        if known is None:
            known = tuple(sorted(d.texts() for d in self.records))
            object.__setattr__(self, "_reasons", known)
        return known

    def reason_for(self, record: Tlsa) -> str:
        return next((d.reason for d in self.records if d.record == record), "")


def validate_kinds(kinds: Sequence[Params], unsafe: bool) -> None:
    """Refuse kinds that break at renewal or are unusable, unless explicitly allowed."""
    if not kinds:
        raise ConfigError("no record kinds configured", 'use records = ["3 1 1", "2 1 1"]')
    for kind in kinds:
        warnings = kind_warnings(kind)
        if warnings and not unsafe:
            raise UnsafeError(
                f"refusing to publish {warnings[0]}",
                f"set {UNSAFE_OPTION} = true for this host only if you accept that",
            )
        usage, selector, mtype = kind
        if mtype is MatchingType.SHA2_512 and (usage, selector, MatchingType.SHA2_256) not in kinds:
            raise ConfigError(
                f'"{params_text(kind)}" needs "{int(usage)} {int(selector)} 1" next to it',
                "senders must find SHA2-256 for the same keys (RFC 7671 §9); add it",
            )


@functools.lru_cache(maxsize=64)
def _validated(kinds: tuple[Params, ...], unsafe: bool) -> bool:
    """validate_kinds, once per configuration (it raises; an error is never cached)."""
    validate_kinds(kinds, unsafe)
    return True


def catalog_issued(chain: ChainFacts, issuers: Sequence[IssuerFacts]) -> bool:
    """True when the CA that signed the chain's leaf is a key of the catalog.

    Only then may the next certificate come from one of that CA's catalog siblings;
    a private CA, a test ACME server or another public CA has no siblings we know of,
    so its chain is pinned by its own issuer alone (issue 13, item 1).
    """
    if not chain.cas:
        return False
    return chain.cas[0].spki_der in _catalog(issuers).spkis


def catalog_key_types(
    chains: Sequence[ChainFacts], next_keys: Sequence[ChainFacts], issuers: Sequence[IssuerFacts]
) -> frozenset[str]:
    """Key types whose next certificate may come from any catalog CA of that type.

    The key types of the chains a catalog CA issued, plus those of the next keys when
    the host gets any of its certificates from the catalog's CAs (a next key has no
    issuer yet; it will be issued by the same CA operator as the host's chains).
    """
    known = {c.key_type for c in chains if catalog_issued(c, issuers)}
    if known:
        known |= {k.key_type for k in next_keys}
    return frozenset(known)


_PRIORITY = {role: index for index, role in enumerate(ROLES)}


class _Catalog:
    """What every host asks of the same catalog issuers, worked out once per run: the
    keys of its CAs, and per record kind, key types and statuses the issuer records
    with their reasons (the same for every host that uses those key types)."""

    def __init__(self, issuers: Sequence[IssuerFacts]) -> None:
        self.issuers = issuers
        self.spkis = frozenset(c.spki_der for i in issuers for c in i.certs)
        self.wanted: dict[tuple[Params, frozenset[str], tuple[str, ...]], tuple[DesiredRecord, ...]] = {}
        self.pins: dict[frozenset[str], tuple[IssuerFacts, ...]] = {}

    def pinned(self, key_types: frozenset[str]) -> tuple[IssuerFacts, ...]:
        """The active and backup CAs of ``key_types``, in catalog order."""
        known = self.pins.get(key_types)
        if known is None:
            known = self.pins[key_types] = tuple(
                i for i in self.issuers if i.key_type in key_types and i.status in ("active", "backup")
            )
        return known

    def candidates(
        self, kind: Params, key_types: frozenset[str], statuses: tuple[str, ...]
    ) -> tuple[DesiredRecord, ...]:
        key = (kind, key_types, statuses)
        known = self.wanted.get(key)
        if known is None:
            kind_text = params_text(kind)
            known = self.wanted[key] = tuple(
                DesiredRecord(
                    _PRIORITY[f"issuer-{issuer.status}"],
                    record,
                    f"issuer-{issuer.status}",
                    f"{kind_text} of {issuer.name}, {issuer.status} "
                    f"{issuer.key_type.upper()} issuer that may sign the next certificate",
                )
                for issuer in self.issuers
                if issuer.key_type in key_types and issuer.status in statuses
                for record in issuer.records(kind)
            )
        return known


@by_identity
def _catalog(issuers: Sequence[IssuerFacts]) -> _Catalog:
    return _Catalog(issuers)


def pinned_issuers(issuers: Sequence[IssuerFacts], key_types: frozenset[str]) -> tuple[IssuerFacts, ...]:
    """The catalog's active and backup CAs of ``key_types`` (the lint of every owner asks)."""
    return _catalog(issuers).pinned(key_types)


@by_identity
def _by_kinds(cas: Sequence[IssuerFacts]) -> dict[frozenset[Params], frozenset[Tlsa]]:
    return {}


def catalog_records(cas: Sequence[IssuerFacts], kinds: frozenset[Params]) -> frozenset[Tlsa]:
    """Every record of ``kinds`` of the catalog CAs ``cas``: once per run and set of kinds
    (the lint of every owner asks it of the same catalog)."""
    table = _by_kinds(cas)
    known = table.get(kinds)
    if known is None:
        known = table[kinds] = frozenset(r for ca in cas for k in kinds for r in ca.records(k))
    return known


@by_identity
def retired_issuers(issuers: Sequence[IssuerFacts]) -> tuple[IssuerFacts, ...]:
    """The catalog's retired CAs (one tuple per catalog, so :func:`catalog_records` keeps it)."""
    return tuple(i for i in issuers if i.status == "retired")


def _order(d: DesiredRecord) -> tuple[int, int, int, int, bytes]:
    """DesiredRecord's order (priority, then the record's fields) without its Python ``__lt__``."""
    r = d.record
    return (d.priority, r.usage, r.selector, r.mtype, r.data)


@pure_cache(maxsize=4096)  # the same chains and policy run after run
def desired(
    live: Sequence[ChainFacts],
    staged: Sequence[ChainFacts] = (),
    next_keys: Sequence[ChainFacts] = (),
    issuers: Sequence[IssuerFacts] = (),
    policy: HostPolicy | None = None,
    owner: str = "",
) -> DesiredSet:
    """The records one owner should carry, each with its role and a one-line reason."""
    policy = policy or HostPolicy()
    _validated(tuple(policy.kinds), policy.unsafe_allow_fragile_kinds)
    hazards: list[Hazard] = []
    kinds = list(policy.kinds)
    ta_kinds = [k for k in kinds if k[0] in (Usage.DANE_TA, Usage.PKIX_TA)]
    bare = [c for c in (*live, *staged) if not c.cas]
    if ta_kinds and bare:
        kinds = [k for k in kinds if k not in ta_kinds]
        hazards.append(
            TA_NOT_SENT.hazard(
                f"{bare[0].label} sends no CA certificate, so no DANE-TA record can match it; "
                "publishing only end-entity records",
                "serve fullchain.pem (leaf and intermediate), not cert.pem",
                owner,
            )
        )
    # record -> the candidate of the lowest priority (the first of equals)
    chosen: dict[Tlsa, DesiredRecord] = {}

    def want(candidate: DesiredRecord) -> None:
        known = chosen.get(candidate.record)
        if known is None or candidate.priority < known.priority:
            chosen[candidate.record] = candidate

    key_types: frozenset[str] | None = None
    for kind in kinds:
        kind_text = params_text(kind)
        end_entity = kind[0] in (Usage.DANE_EE, Usage.PKIX_EE)
        for role, chains in (("live", live), ("staged", staged), ("next", next_keys)):
            priority = _PRIORITY[role]
            for chain in chains:
                if end_entity:
                    record = chain.leaf.record(kind)
                    if record is not None:
                        why = f"{kind_text} of the {role} key ({chain.label})"
                        want(DesiredRecord(priority, record, role, why))
                elif chain.cas and role != "next":
                    record = chain.cas[0].record(kind)
                    if record is not None:
                        issuer_label = chain.issuer_name or chain.cas[0].name
                        why = f"{kind_text} of {issuer_label}, the issuer of the {role} chain ({chain.label})"
                        want(DesiredRecord(priority, record, role, why))
        if end_entity or not issuers:
            continue
        if key_types is None:
            key_types = catalog_key_types((*live, *staged), next_keys, issuers)
        statuses = ("active", "backup") if policy.pin_backup_issuers else ("active",)
        for candidate in _catalog(issuers).candidates(kind, key_types, statuses):
            want(candidate)
    ordered = sorted(chosen.values(), key=_order)
    # the live chains' own records are never cut (they sort first): leaving one out
    # broke a kind for a live chain (H2); over the budget they are the planner's fatal H13
    cut = max(policy.budget, sum(1 for d in ordered if d.role == "live"))
    if len(ordered) > cut:
        dropped = ordered[cut:]
        ordered = ordered[:cut]
        roles = sorted({d.role for d in dropped}, key=ROLES.index)
        hazards.append(
            TOO_MANY_RECORDS.hazard(
                f"{len(chosen)} records wanted but the budget is {policy.budget}; left out "
                f"{len(dropped)} ({', '.join(roles)})",
                "use one key type, or raise budget if your senders handle larger RRsets",
                owner,
            )
        )
    return DesiredSet(tuple(ordered), tuple(hazards), tuple(kinds))


def group_by_kind(records: Iterable[Tlsa]) -> dict[Params, frozenset[Tlsa]]:
    groups: dict[Params, set[Tlsa]] = {}
    for r in records:
        groups.setdefault(r.params, set()).add(r)
    return {k: frozenset(v) for k, v in groups.items()}
