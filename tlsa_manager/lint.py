"""The hazard lint of a published TLSA RRset against the chains it serves (pure).

One small rule per hazardous state (dane-rules.md §I), each a function of the
:class:`Context` returning its findings; :data:`RULES` runs them in order.  Rules about
one record kind (usage, selector, matching type) run kind by kind, as :func:`per_kind`
composes them, so the findings of one kind stay together.  The planner lints what it
is about to leave published; ``check`` lints what a server was seen to serve.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tlsa_manager.facts import ChainFacts
from tlsa_manager.hazards import (
    DIGEST_AGILITY,
    EE_WHOLE_CERT,
    ISSUER_MISSING,
    KEY_TYPE_UNMATCHED,
    KIND_OFF_LIVE,
    LIVE_UNMATCHED,
    PKIX_USAGE,
    RETIRED_CA,
    TA_NOT_SENT,
    TA_WHOLE_CERT,
    TOO_MANY_RECORDS,
    Hazard,
    Kind,
    Severity,
)
from tlsa_manager.memo import pure_cache
from tlsa_manager.policy import (
    IssuerFacts,
    catalog_key_types,
    catalog_records,
    group_by_kind,
    pinned_issuers,
    retired_issuers,
)
from tlsa_manager.records import MatchingType, Params, Selector, Tlsa, Usage, params_text


@dataclass(frozen=True)
class Context:
    """What every rule may look at: the RRset, the chains, the catalog, the budget."""

    records: frozenset[Tlsa]
    live: Sequence[ChainFacts]
    staged: Sequence[ChainFacts]
    next_keys: Sequence[ChainFacts]
    issuers: Sequence[IssuerFacts]
    catalog_roots: Sequence[IssuerFacts]
    budget: int
    owner: str

    @functools.cached_property
    def groups(self) -> dict[Params, frozenset[Tlsa]]:
        return group_by_kind(self.records)

    @property
    def everything(self) -> tuple[ChainFacts, ...]:
        return (*self.live, *self.staged, *self.next_keys)

    def finding(self, kind: Kind, message: str, fix: str, severity: Severity | None = None) -> list[Hazard]:
        """One finding at this owner, as the list a rule returns."""
        return [kind.hazard(message, fix, self.owner, severity)]


Rule = Callable[[Context], list[Hazard]]
KindRule = Callable[[Context, Params, frozenset[Tlsa]], list[Hazard]]


def live_unmatched(ctx: Context) -> list[Hazard]:
    """H1 (H19 when both key types are live): a live chain no usable record authenticates."""
    kind = KEY_TYPE_UNMATCHED if len({c.key_type for c in ctx.live}) > 1 else LIVE_UNMATCHED
    return [
        kind.hazard(
            f"the live chain {chain.label} matches no usable record: DANE senders defer mail now",
            "publish its 3 1 1 record at once (tlsa-manager sync)",
            ctx.owner,
        )
        for chain in ctx.live
        if not chain.authenticates(ctx.records)
    ]


def kind_off_live(ctx: Context, kind: Params, group: frozenset[Tlsa]) -> list[Hazard]:
    """H2: records of this kind match only past or future chains."""
    if not ctx.live or any(c.matching(kind) & group for c in ctx.live):
        return []
    text = params_text(kind)
    return ctx.finding(
        KIND_OFF_LIVE,
        f'"{text}" records match only past or future chains, not the live one',
        f'add the "{text}" record of the live chain before anything else',
    )


def whole_cert(ctx: Context, kind: Params, group: frozenset[Tlsa]) -> list[Hazard]:
    """H3 / H4: selector 0 pins a whole certificate.  The leaf's ("3 0 x") changes at every
    renewal (fatal when it is the only kind); a CA's ("2 0 x") when it is cross-signed or
    reissued with the same key."""
    usage, selector, _ = kind
    if selector is not Selector.CERT:
        return []
    text = params_text(kind)
    if usage is Usage.DANE_EE:
        return ctx.finding(
            EE_WHOLE_CERT,
            f'"{text}" pins the whole certificate, which changes at every renewal',
            'replace it with "3 1 1" (pre-publish 3 1 1, then remove it)',
            Severity.FATAL if len(ctx.groups) == 1 else Severity.RISK,
        )
    if usage is Usage.DANE_TA:
        return ctx.finding(
            TA_WHOLE_CERT,
            f'"{text}" pins one certificate of a CA that cross-signs and reissues',
            'use "2 1 1" instead',
        )
    return []


def pkix_usage(ctx: Context, kind: Params, group: frozenset[Tlsa]) -> list[Hazard]:
    """H14: usages 0 and 1 are unusable for SMTP."""
    usage = kind[0]
    if usage not in (Usage.PKIX_TA, Usage.PKIX_EE):
        return []
    return ctx.finding(
        PKIX_USAGE,
        f'"{params_text(kind)}" uses usage {int(usage)}, which SMTP senders treat as unusable',
        "remove it; use 3 1 1 / 2 1 1",
    )


def digest_agility(ctx: Context, kind: Params, group: frozenset[Tlsa]) -> list[Hazard]:
    """H5: SHA2-512 must cover the same chains as SHA2-256 of the same usage and selector."""
    usage, selector, mtype = kind
    if mtype is not MatchingType.SHA2_512:
        return []
    sha256 = (usage, selector, MatchingType.SHA2_256)
    weaker = ctx.groups.get(sha256, frozenset())
    covered_512 = {c.label for c in ctx.everything if c.matching(kind) & group}
    covered_256 = {c.label for c in ctx.everything if c.matching(sha256) & weaker}
    if covered_512 == covered_256:
        return []
    return ctx.finding(
        DIGEST_AGILITY,
        f'"{params_text(kind)}" and "{int(usage)} {int(selector)} 1" cover different keys',
        "publish SHA2-512 for exactly the keys that have SHA2-256, or drop it",
    )


def per_kind(*rules: KindRule) -> Rule:
    """The kind rules as one rule: each kind in order, every rule on it."""

    def run(ctx: Context) -> list[Hazard]:
        return [
            h for kind, group in sorted(ctx.groups.items()) for rule in rules for h in rule(ctx, kind, group)
        ]

    return run


def root_pinned(ctx: Context) -> list[Hazard]:
    """H9: a "2 x x" record of a catalog root, which Let's Encrypt chains may not send."""
    roots = catalog_records(ctx.catalog_roots, frozenset(ctx.groups))
    return [
        TA_NOT_SENT.hazard(
            f"{record.kind} pins a root key that Let's Encrypt chains may not send",
            "pin the intermediates instead (2 1 1 of YE1-3 / YR1-3)",
            ctx.owner,
        )
        for record in sorted(ctx.records & roots)
    ]


def retired_ca(ctx: Context) -> list[Hazard]:
    """H11: records of a retired CA no live chain uses (fatal when they are all of DANE-TA)."""
    # joined as sets, the records keep their hashes (a set built one by one hashes each again)
    used_by_live = frozenset().union(*(c.matching(k) for c in ctx.live for k in ctx.groups))
    ta_groups = [g for k, g in ctx.groups.items() if k[0] is Usage.DANE_TA]
    out = []
    left, kinds = ctx.records - used_by_live, frozenset(ctx.groups)  # once, not per issuer
    retired = retired_issuers(ctx.issuers)
    for issuer in retired if left and catalog_records(retired, kinds) & left else ():
        stale = issuer.records_of(kinds) & left
        if stale:
            only = all(g <= stale for g in ta_groups) and bool(ta_groups)
            out.append(
                RETIRED_CA.hazard(
                    f"records for the retired CA {issuer.name} are published",
                    "remove them once no live chain uses that CA (sync does this)",
                    ctx.owner,
                    Severity.FATAL if only else Severity.INFO,
                )
            )
    return out


def issuer_missing(ctx: Context) -> list[Hazard]:
    """H12: a DANE-TA kind lacks an active or backup catalog CA of a key type in use."""
    key_types = catalog_key_types(ctx.live, (), ctx.issuers)
    return [
        ISSUER_MISSING.hazard(
            f'"{params_text(kind)}" lacks {issuer.name} ({issuer.status}), which may '
            "sign the next certificate",
            f"add the {params_text(kind)} record of {issuer.name} (sync does this)",
            ctx.owner,
        )
        for kind in ctx.groups
        if kind[0] is Usage.DANE_TA
        for issuer in pinned_issuers(ctx.issuers, key_types)
        if not issuer.records(kind) & ctx.records
    ]


def over_budget(ctx: Context) -> list[Hazard]:
    """H13: more records at one name than some senders accept."""
    if len(ctx.records) <= ctx.budget:
        return []
    return ctx.finding(
        TOO_MANY_RECORDS,
        f"{len(ctx.records)} records at one name; some senders fail above about {ctx.budget}",
        "drop retired issuers and unused key types",
    )


#: the rules, in the order their findings are reported
RULES: tuple[Rule, ...] = (
    live_unmatched,
    per_kind(kind_off_live, whole_cert, pkix_usage, digest_agility),
    root_pinned,
    retired_ca,
    issuer_missing,
    over_budget,
)


@pure_cache(maxsize=4096)  # the same RRset and chains run after run
def lint(
    records: frozenset[Tlsa],
    live: Sequence[ChainFacts],
    staged: Sequence[ChainFacts] = (),
    next_keys: Sequence[ChainFacts] = (),
    issuers: Sequence[IssuerFacts] = (),
    catalog_roots: Sequence[IssuerFacts] = (),
    budget: int = 12,
    owner: str = "",
) -> list[Hazard]:
    """Hazards of a published RRset against what is live (H1-H5, H9, H11-H14, H19)."""
    if not records:
        return []
    ctx = Context(records, live, staged, next_keys, issuers, catalog_roots, budget, owner)
    return [h for rule in RULES for h in rule(ctx)]
