"""Every rule of the desired set and the planner, and every hazard, with its reason text."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dns.name
import pytest

from tlsa_manager.catalog import load_bundled
from tlsa_manager.errors import ConfigError, UnsafeError
from tlsa_manager.facts import CertFacts, ChainFacts
from tlsa_manager.hazards import Hazard
from tlsa_manager.lint import lint
from tlsa_manager.observations import History, ServerView
from tlsa_manager.planner import OwnerInput, Plan, PlanInput, plan
from tlsa_manager.policy import HostPolicy, IssuerFacts, desired, issuers_from_catalog
from tlsa_manager.provider import RRset
from tlsa_manager.records import Tlsa, owner_name, parse_params

ISSUERS = issuers_from_catalog(load_bundled())
BY_NAME = {i.name: i for i in ISSUERS}
K311, K211, K312, K301, K201 = (parse_params(k) for k in ("3 1 1", "2 1 1", "3 1 2", "3 0 1", "2 0 1"))
OWNER = owner_name("mail.example.com")
T0 = 1_800_000_000.0
#: a ledger that has watched the name for a week (not a blind, new history)
KNOWN = History(since=T0 - 7 * 86400)


def chain(label: str, key_type: str = "ecdsa", issuer: str | None = "YE1", *, problem: str | None = None) -> ChainFacts:
    cas = (BY_NAME[issuer].certs[0],) if issuer else ()
    return ChainFacts(label, CertFacts(os.urandom(40), os.urandom(80), label), key_type, cas,
                      problem=problem, issuer_name=issuer)


def key(label: str, key_type: str = "ecdsa") -> ChainFacts:
    return ChainFacts(label, CertFacts(os.urandom(40)), key_type)


def r311(c: ChainFacts) -> Tlsa:
    record = c.leaf.record(K311)
    assert record is not None
    return record


def r211(name: str) -> Tlsa:
    return next(iter(BY_NAME[name].records(K211)))


# ---------------------------------------------------------------- desired set


def test_default_desired_set_is_live_key_and_every_active_and_backup_issuer() -> None:
    live = chain("live")
    want = desired([live], issuers=ISSUERS)
    assert want.as_set() == {r311(live), r211("YE1"), r211("YE2"), r211("YE3")}
    roles = {d.record: (d.role, d.reason) for d in want.records}
    assert roles[r311(live)] == ("live", "3 1 1 of the live key (live)")
    assert roles[r211("YE1")][0] == "live"
    assert "the issuer of the live chain" in roles[r211("YE1")][1]
    assert roles[r211("YE3")][0] == "issuer-backup"
    assert "backup ECDSA issuer that may sign the next certificate" in roles[r211("YE3")][1]


def test_staged_and_next_keys_get_3_1_1() -> None:
    live, staged, nxt = chain("live"), chain("staged", issuer="YE2"), key("next")
    want = desired([live], [staged], [nxt], ISSUERS).as_set()
    assert {r311(live), r311(staged), r311(nxt)} <= want


def test_retired_issuer_only_while_a_live_chain_uses_it() -> None:
    old = chain("old", issuer="E7")
    want = desired([old], issuers=ISSUERS).as_set()
    assert r211("E7") in want and r211("E8") not in want
    assert r211("YE1") in want  # the issuers that may sign the next certificate
    new = desired([chain("new", issuer="YE1")], issuers=ISSUERS).as_set()
    assert r211("E7") not in new


def test_never_a_root_or_cross_sign() -> None:
    want = desired([chain("live")], issuers=ISSUERS).as_set()
    roots = [i for i in load_bundled().issuers if i.is_root]
    assert not {i.record for i in roots} & want


def test_rsa_and_ecdsa_each_get_their_issuers() -> None:
    want = desired([chain("ec"), chain("rsa", "rsa", "YR2")], issuers=ISSUERS).as_set()
    assert {r211(n) for n in ("YE1", "YE2", "YE3", "YR1", "YR2", "YR3")} <= want
    assert len(want) == 8


@pytest.mark.parametrize("kind", ["3 0 1", "2 0 1", "1 1 1", "0 1 1", "3 1 0"])
def test_fragile_kinds_refused_without_the_unsafe_option(kind: str) -> None:
    policy = HostPolicy(kinds=(parse_params(kind),))
    with pytest.raises(UnsafeError, match="unsafe_allow_fragile_kinds"):
        desired([chain("live")], policy=policy)
    allowed = desired([chain("live")], policy=HostPolicy(kinds=(parse_params(kind),), unsafe_allow_fragile_kinds=True))
    assert allowed.records


def test_sha512_only_alongside_sha256() -> None:
    with pytest.raises(ConfigError, match='needs "3 1 1" next to it'):
        desired([chain("live")], policy=HostPolicy(kinds=(K312,)))
    both = desired([chain("live")], policy=HostPolicy(kinds=(K311, K312))).as_set()
    assert {r.kind for r in both} == {"3 1 1", "3 1 2"}


def test_budget_keeps_priority_and_reports_h13() -> None:
    live, staged, nxt = chain("live"), chain("staged", issuer="YE2"), key("next")
    want = desired([live], [staged], [nxt], ISSUERS, HostPolicy(budget=5))
    assert len(want.records) == 5
    kept = want.as_set()
    assert {r311(live), r311(staged), r311(nxt), r211("YE1"), r211("YE2")} == kept
    h13 = [h for h in want.hazards if h.code == "H13"]
    assert h13 and "left out 1 (issuer-backup)" in h13[0].message


def test_chain_without_ca_drops_dane_ta_with_h9() -> None:
    bare = chain("cert.pem only", issuer=None)
    want = desired([bare], issuers=ISSUERS)
    assert {r.kind for r in want.as_set()} == {"3 1 1"}
    assert any(h.code == "H9" and "serve fullchain.pem" in h.fix for h in want.hazards)


# ---------------------------------------------------------------- lint (hazards)


def codes(hazards: Iterable[Hazard]) -> set[str]:
    return {h.code for h in hazards}


def test_h1_live_chain_unmatched() -> None:
    live = chain("live")
    hazards = lint(frozenset({r311(chain("other"))}), [live])
    assert "H1" in codes(hazards)
    assert "DANE senders defer mail now" in next(h for h in hazards if h.code == "H1").message


def test_h19_one_of_two_algorithms_uncovered() -> None:
    ec, rsa = chain("ec"), chain("rsa", "rsa", "YR1")
    assert "H19" in codes(lint(frozenset({r311(ec)}), [ec, rsa]))


def test_h2_kind_matches_only_future_chain() -> None:
    live, future = chain("live"), chain("future", issuer="YE2")
    hazards = lint(frozenset({r311(live), r211("YE2")}), [live], [future])
    assert "H2" in codes(hazards)


def test_h3_h4_h14() -> None:
    live = chain("live")
    rec301 = live.leaf.record(K301)
    rec201 = live.cas[0].record(K201)
    assert rec301 and rec201
    hazards = lint(frozenset({rec301, r311(live), rec201, Tlsa.from_text("1 1 1 " + "ab" * 32)}), [live])
    found = {h.code: h for h in hazards}
    assert found["H3"].severity == "risk" and "changes at every renewal" in found["H3"].message
    assert "cross-signs" in found["H4"].message
    assert "unusable" in found["H14"].message
    only = lint(frozenset({rec301}), [live])
    assert next(h for h in only if h.code == "H3").severity == "fatal"


def test_h5_sha512_covering_other_keys() -> None:
    live, nxt = chain("live"), key("next")
    r512 = nxt.leaf.record(K312)
    assert r512
    hazards = lint(frozenset({r311(live), r512}), [live], next_keys=[nxt])
    assert "H5" in codes(hazards)


def test_h9_root_pinned() -> None:
    live = chain("live")
    roots = issuers_from_catalog_roots()
    root_record = next(iter(roots[0].records(K211)))
    assert "H9" in codes(lint(frozenset({r311(live), r211("YE1"), root_record}), [live], catalog_roots=roots))


def issuers_from_catalog_roots() -> list[IssuerFacts]:
    from tlsa_manager.facts import cert_facts

    return [IssuerFacts(i.name, i.key_type, i.status, tuple(cert_facts(c.certificate) for c in i.certs))
            for i in load_bundled().issuers if i.is_root]


def test_unknown_issuer_is_pinned_alone_without_catalog_siblings() -> None:
    """Issue 13.1: a chain from a CA the catalog does not know gets its own issuer's 2 1 1 and no
    YE1-3, also for its next key; lint does not ask for YE1-3 either."""
    private = ChainFacts("live", CertFacts(os.urandom(40), os.urandom(80), "live"), "ecdsa",
                         (CertFacts(os.urandom(40), os.urandom(80), "Private CA"),))
    nxt = key("next")
    want = desired([private], next_keys=[nxt], issuers=ISSUERS)
    own = private.cas[0].record(K211)
    assert want.as_set() == {r311(private), own, r311(nxt)}
    assert not [h for h in lint(want.as_set(), [private], issuers=ISSUERS) if h.code == "H12"]
    mixed = desired([private, chain("rsa live", "rsa", "YR1")], issuers=ISSUERS).as_set()
    assert {r211("YR1"), r211("YR2"), r211("YR3")} <= mixed and not {r211("YE1"), r211("YE2")} & mixed


def test_h11_retired_and_h12_missing_sibling() -> None:
    live = chain("live")
    hazards = lint(frozenset({r311(live), r211("YE1"), r211("E5")}), [live], issuers=ISSUERS)
    found = {h.code: h for h in hazards}
    assert "retired CA E5" in found["H11"].message and found["H11"].severity == "info"
    assert {h.message.split(" lacks ")[1].split(" ")[0] for h in hazards if h.code == "H12"} == {"YE2", "YE3"}


def test_h13_too_many_records() -> None:
    live = chain("live")
    many = frozenset({r311(live)} | {Tlsa.from_text(f"3 1 1 {i:064x}") for i in range(12)})
    assert "H13" in codes(lint(many, [live]))


# ---------------------------------------------------------------- planner


def owner_input(records: frozenset[Tlsa], servers: Mapping[str, frozenset[Tlsa] | None], history: History | None = None,
                now: float = T0, ttl: int = 3600, managed: frozenset[Tlsa] = frozenset()) -> OwnerInput:
    views = tuple(ServerView(s, r, ttl if r else None) for s, r in servers.items())
    hist = (history or KNOWN).observe(now, views)
    return OwnerInput(OWNER, RRset(OWNER, records, ttl if records else None), views, hist, managed)


def make(live: Sequence[ChainFacts], staged: Sequence[ChainFacts] = (), nxt: Sequence[ChainFacts] = (),
         owners: Sequence[OwnerInput] = (), now: float = T0, policy: HostPolicy | None = None, **kw: Any) -> Plan:
    policy = policy or HostPolicy()
    want = desired(live, staged, nxt, ISSUERS, policy)
    return plan(PlanInput("mail.example.com", tuple(owners), want, now, tuple(live), tuple(staged), tuple(nxt),
                          ISSUERS, (), policy, **kw))


def test_first_run_adds_everything_at_once() -> None:
    live = chain("live")
    p = make([live], owners=[owner_input(frozenset(), {"ns1": frozenset(), "ns2": frozenset()})])
    assert p.additions == 4 and p.removals == 0
    assert p.summary() == "mail.example.com: add 4"
    assert p.changes[0].expected == frozenset()


def test_removal_only_of_managed_records_matching_nothing() -> None:
    live, old = chain("live"), chain("old")
    current = desired([live], issuers=ISSUERS).as_set() | {r311(old)}
    servers = {"ns1": current, "ns2": current}
    kept = make([live], owners=[owner_input(current, servers)])
    assert kept.removals == 0 and kept.unmanaged  # not ours: reported and kept
    removed = make([live], owners=[owner_input(current, servers, managed=frozenset({r311(old)}))])
    assert removed.removals == 1 and removed.changes[0].delete == {r311(old)}
    pruned = make([live], owners=[owner_input(current, servers)], policy=HostPolicy(prune=True))
    assert pruned.removals == 1


def test_never_removes_what_live_staged_or_next_may_present() -> None:
    live, staged, nxt = chain("live"), chain("staged", issuer="E7"), key("next")
    current = frozenset({r311(live), r311(staged), r311(nxt), r211("E7")})
    p = make([live], [staged], [nxt], owners=[owner_input(current, {"ns1": current}, managed=current)],
             policy=HostPolicy(prune=True))
    assert not any(c.delete for c in p.changes)


def test_gate_opens_two_ttls_after_every_server_serves_it() -> None:
    live, staged = chain("live"), chain("staged", issuer="YE2")
    want = desired([live], [staged], issuers=ISSUERS).as_set()
    old = desired([live], issuers=ISSUERS).as_set()
    history = KNOWN.observe(T0 - 7200, [ServerView("ns1", want, 3600), ServerView("ns2", old, 3600)])
    lagging = make([live], [staged], owners=[owner_input(want, {"ns1": want, "ns2": old}, history, now=T0)])
    gate = lagging.gates[0]
    assert not gate.ready and gate.opens_at is None and "not yet served by ns2" in gate.reason
    assert any(h.code == "H18" and "ns2" in h.message for h in lagging.hazards)
    seen = KNOWN.observe(T0, [ServerView("ns1", want, 3600), ServerView("ns2", want, 3600)])
    p = make([live], [staged], owners=[owner_input(want, {"ns1": want, "ns2": want}, seen, now=T0 + 100)])
    assert p.gates[0].t_sync == T0 and p.gates[0].opens_at == T0 + 2 * 3600 + 300
    assert not p.gates[0].ready and "not before" in p.summary()
    later = make([live], [staged], owners=[owner_input(want, {"ns1": want, "ns2": want}, seen, now=T0 + 7500)],
                 now=T0 + 7500)
    assert later.gates[0].ready and "deploy staged now" in later.summary()


def test_unknown_history_keeps_gate_closed_and_unreachable_server_too() -> None:
    live, staged = chain("live"), chain("staged", issuer="YE2")
    want = desired([live], [staged], issuers=ISSUERS).as_set()
    p = make([live], [staged], owners=[owner_input(want, {"ns1": want, "ns2": None})])
    assert p.gates[0].opens_at is None and "ns2 (no answer)" in p.gates[0].reason


def test_unreadable_server_is_h7_as_in_check() -> None:
    """One code per condition: a server that cannot be read is H7 (a lame server), as
    `check` reports it, not H18 (servers that answer and disagree)."""
    live = chain("live")
    want = desired([live], issuers=ISSUERS).as_set()
    p = make([live], owners=[owner_input(want, {"ns1": want, "ns2": None})])
    unread = [h for h in p.hazards if "cannot read ns2" in h.message]
    assert [(h.code, h.severity) for h in unread] == [("H7", "risk")]
    assert not any(h.code == "H18" for h in p.hazards)


def test_lowered_ttl_counts_with_old_value_and_negative_ttl_when_absent() -> None:
    live, staged = chain("live"), chain("staged", issuer="YE2")
    want = desired([live], [staged], issuers=ISSUERS).as_set()
    history = KNOWN.observe(T0 - 600, [ServerView("ns1", want, 86400)])
    p = make([live], [staged], owners=[owner_input(want, {"ns1": want}, history, ttl=300, now=T0)])
    assert p.gates[0].wait == 2 * 86400 + 300
    assert any(h.code == "H23" for h in p.hazards)
    absent = KNOWN.observe(T0 - 600, [ServerView("ns1", frozenset(), None)])
    q = make([live], [staged], owners=[owner_input(want, {"ns1": want}, absent, ttl=300)], negative_ttl=3600)
    assert q.gates[0].wait == 2 * 3600 + 300


def test_staged_problem_blocks_deploy_h24() -> None:
    live = chain("live")
    bad = chain("staged", problem="the key does not match the certificate")
    want = desired([live], [bad], issuers=ISSUERS).as_set()
    p = make([live], [bad], owners=[owner_input(want, {"ns1": want})])
    assert not p.gates[0].ready and "does not match" in p.gates[0].reason
    assert any(h.code == "H24" for h in p.hazards)


def test_h15_wrong_port_and_doubled_suffix() -> None:
    live = chain("live")
    owner = OwnerInput(dns.name.from_text("_587._tcp.mail.example.com.example.com."), RRset(OWNER), (), History())
    p = make([live], owners=[owner])
    messages = [h.message for h in p.hazards if h.code == "H15"]
    assert any("not the port-25 owner" in m for m in messages)
    assert any("repeats its zone suffix" in m for m in messages)


def test_ttl_change_is_its_own_step() -> None:
    live = chain("live")
    current = desired([live], issuers=ISSUERS).as_set()
    p = make([live], owners=[owner_input(current, {"ns1": current}, ttl=3600)], default_ttl=300)
    assert p.changes[0].ttl_change and p.changes[0].ttl == 300 and "TTL 3600 -> 300" in p.summary()
    busy = make([live], [chain("staged", issuer="YE2")], owners=[owner_input(current, {"ns1": current})],
                default_ttl=300)
    assert busy.changes[0].ttl == 3600  # records are added at the RRset's TTL; TTL later


def test_plan_is_json_and_pinned_by_checksum() -> None:
    import json

    live = chain("live")
    p = make([live], owners=[owner_input(frozenset(), {"ns1": frozenset()})])
    doc = json.loads(p.to_json())
    assert doc["summary"] == p.summary() and len(doc["changes"][0]["add"]) == 4
    assert doc["checksum"] == p.checksum() and len(doc["checksum"]) == 16
    assert all(reason for reason in doc["reasons"].values())


def test_h2_says_what_is_served_when_nothing_changes() -> None:
    """Someone else's "3 0 1" of another certificate beside our records: nothing to add
    or remove, yet H2 said "after this change a record kind would not match"."""
    live = chain("live")
    current = desired([live], issuers=ISSUERS).as_set() | {Tlsa.from_text("3 0 1 " + "ab" * 32)}
    p = make([live], owners=[owner_input(current, {"ns1": current, "ns2": current})])
    h2 = [h for h in p.hazards if h.code == "H2"]
    assert not p.changes or all(c.is_noop for c in p.changes)
    assert h2 and h2[0].message.startswith("a record kind served does not match the live chain"), h2
