"""Why a record kind is fragile or unusable for SMTP with Let's Encrypt (pure).

Shared by ``records`` (which still computes what was asked, and warns) and the
policy (which refuses such kinds unless an option whose name says "unsafe" is set).
Rules: dane-rules.md A5, B2, D1, D6.
"""

from __future__ import annotations

from tlsa_manager.records import MatchingType, Params, Selector, Usage, params_text


def kind_warnings(params: Params) -> list[str]:
    """One sentence per reason this kind should not be published for port 25."""
    usage, selector, mtype = params
    kind = params_text(params)
    warnings = []
    if usage in (Usage.PKIX_TA, Usage.PKIX_EE):
        warnings.append(
            f'"{kind}": usage {int(usage)} ({usage.name.replace("_", "-")}) is unusable for '
            "SMTP (RFC 7672 §3.1.3); senders may ignore it. Use 3 (DANE-EE) or 2 (DANE-TA)"
        )
    if mtype is MatchingType.FULL:
        warnings.append(
            f'"{kind}": matching type 0 puts whole objects in DNS; large answers fragment '
            "(RFC 7671 §10.1.1). Use matching type 1 (SHA2-256)"
        )
    if selector is Selector.CERT and usage is Usage.DANE_EE:
        warnings.append(
            f'"{kind}": pins the whole leaf certificate, which changes at every renewal even '
            'when the key is reused, so mail is deferred after each renewal. Use "3 1 1"'
        )
    if selector is Selector.CERT and usage is Usage.DANE_TA:
        warnings.append(
            f'"{kind}": pins one certificate of the CA; Let\'s Encrypt cross-signs and '
            'reissues its CAs with the same key, which changes this hash. Use "2 1 1"'
        )
    return warnings


def is_fragile(params: Params) -> bool:
    """True for every kind the planner refuses without an explicit unsafe option."""
    return bool(kind_warnings(params))
