"""Is the issuer catalog current?  Its age, what an update changed, and the hazard of
a Let's Encrypt chain it does not know.

Let's Encrypt can start signing from a new intermediate at any time.  A catalog that
does not know it cannot list that CA's siblings in "2 1 1", so the host is one random
issuer switch away from a gap.  The symptom shows before the damage: a live or
staged chain whose leaf was issued by ``O=Let's Encrypt`` but whose issuer is not in
the catalog.  That is H26, and its fix is ``tlsa-manager catalog update``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlsa_manager.facts import ChainFacts, facts_from_chain
from tlsa_manager.hazards import STALE_CATALOG, Hazard

if TYPE_CHECKING:  # the planner imports this module; it never loads certificates
    from tlsa_manager.catalog import Catalog
    from tlsa_manager.certs import Chain

LETS_ENCRYPT = "Let's Encrypt"


def stale_catalog(chains: Sequence[ChainFacts], owner: str = "") -> list[Hazard]:
    """H26 for each chain issued by Let's Encrypt from a CA the catalog does not know (pure).

    A leaf that names a catalog CA (YE1) which did not sign it gets H26 too, since its
    issuer is unknown all the same, but the message says what is true: the catalog knows
    YE1, the leaf is not YE1's."""
    out = []
    for chain in chains:
        if chain.issuer_name is None and chain.leaf_issuer_org == LETS_ENCRYPT:
            ca = chain.leaf_issuer_cn or "an unknown CA"
            if chain.named_issuer:
                out.append(_not_signed_by(chain, chain.named_issuer, owner))
                continue
            out.append(
                STALE_CATALOG.hazard(
                    f"{chain.label} is issued by {ca} of Let's Encrypt, which the issuer catalog does "
                    f'not know: its "2 1 1" siblings cannot be pre-published, so the next issuer switch '
                    "may leave the chain uncovered",
                    "run 'tlsa-manager catalog update' (the timer does it daily)",
                    owner,
                )
            )
    return out


def _not_signed_by(chain: ChainFacts, ca: str, owner: str) -> Hazard:
    return STALE_CATALOG.hazard(
        f"{chain.label} names {ca} of Let's Encrypt as its issuer, but {ca}'s key (in the issuer "
        f'catalog) did not sign it: its issuer is unknown, so its "2 1 1" siblings cannot be '
        "pre-published and the next issuer switch may leave the chain uncovered",
        f"check that the file holds the certificate Let's Encrypt issued for this host (a test or "
        f"staging certificate only borrows the name {ca}); if it does, run 'tlsa-manager catalog "
        f"update' in case {ca} has a new key",
        owner,
    )


def facts_with_issuer(chain: Chain, label: str, catalog: Catalog) -> ChainFacts:
    """A loaded chain's facts with the catalog's word on its issuer: the CA that signed the
    leaf, or, when none did, the catalog CA the leaf names all the same (for H26)."""
    issuer = catalog.issuer_of(chain)
    facts = facts_from_chain(chain, label, issuer.name if issuer else None)
    named = named_issuer(chain, catalog) if issuer is None else None
    return dataclasses.replace(facts, named_issuer=named) if named else facts


def named_issuer(chain: Chain, catalog: Catalog) -> str | None:
    """The catalog CA whose name the leaf gives as its issuer, signer or not (None if none)."""
    if chain.leaf is None:
        return None
    named = catalog.named_by(chain.leaf)
    return named[0][0].name if named else None


def bundled_as_of() -> dt.datetime:
    """The date of the newest Let's Encrypt data the bundled catalog was built from."""
    root = resources.files("tlsa_manager") / "data" / "letsencrypt"
    text = json.loads((root / "as-of.json").read_text())["as_of"]
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def catalog_as_of(state_dir: Path | None) -> tuple[dt.datetime, str]:
    """When the catalog in use was current, and which one it is (refreshed or bundled).

    A refreshed catalog is as old as its manifest file (written by ``catalog update``).
    """
    from tlsa_manager.catalog import MANIFEST, refreshed_dir

    if state_dir is not None:
        manifest = refreshed_dir(state_dir) / MANIFEST
        try:
            mtime = manifest.stat().st_mtime
        except OSError:
            pass
        else:
            return dt.datetime.fromtimestamp(mtime, dt.UTC), "refreshed"
    return bundled_as_of(), "bundled"


def catalog_age(state_dir: Path | None, now: dt.datetime) -> tuple[float, str]:
    """Seconds since the catalog in use was current, and which one it is."""
    when, origin = catalog_as_of(state_dir)
    return max(0.0, (now - when).total_seconds()), origin


def age_text(seconds: float) -> str:
    days = int(seconds // 86400)
    return f"{days} d" if days else f"{int(seconds // 3600)} h"


def catalog_summary(state_dir: Path | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """For `status`: which catalog is in use, as of when, and how old that is."""
    as_of, origin = catalog_as_of(state_dir)
    age = max(0.0, ((now or dt.datetime.now(dt.UTC)) - as_of).total_seconds())
    return {"origin": origin, "as_of": as_of.isoformat(), "age_seconds": int(age)}


def catalog_line(summary: dict[str, Any]) -> str:
    as_of = dt.datetime.fromisoformat(summary["as_of"])
    return (
        f"catalog: {summary['origin']}, current as of {as_of:%Y-%m-%d %H:%MZ} "
        f"({age_text(summary['age_seconds'])} old)"
    )


def catalog_changes(old: Catalog, new: Catalog) -> list[str]:
    """What an update changed, one line per CA key: added, removed, status changed (pure)."""
    before = {i.spki_sha256: i for i in old.issuers}
    after = {i.spki_sha256: i for i in new.issuers}
    lines = []
    for spki, issuer in sorted(after.items(), key=lambda kv: kv[1].name):
        previous = before.get(spki)
        if previous is None:
            lines.append(f"added {issuer.name} ({issuer.key_description}, {issuer.status})")
        elif previous.status != issuer.status:
            lines.append(f"{issuer.name}: {previous.status} -> {issuer.status}")
    for spki, issuer in sorted(before.items(), key=lambda kv: kv[1].name):
        if spki not in after:
            lines.append(f"removed {issuer.name} ({issuer.status})")
    return lines
