"""Safety at the edges of the planner's assumptions (issue 12): one test per class of
failure, each failing on the code before its fix.  Real files, real BIND where the
class is about files or servers; the pure planner where it is about a rule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_quiet import site as quiet_site  # noqa: F401  (a fixture: one host on a zone file)

from tlsa_manager.catalog import load_bundled
from tlsa_manager.config import HostSpec
from tlsa_manager.engine import StagedChanged
from tlsa_manager.hostports import LivePorts
from tlsa_manager.provider import Provider

import pki
from conftest import CliRunner
from servers import Bind
from test_sync_cli import SyncSite, le_shaped_chain, site  # noqa: F401  (fixture)

if TYPE_CHECKING:
    from tlsa_manager.simulation import World

    from cloudflare_fake import FakeCloudflare

HOST = "mx.edges.example"


# ---------------------------------------------------------------- 5: deploy what was gated


def _files(tmp: Path) -> tuple[HostSpec, Path, Path]:
    live, staged = tmp / "live", tmp / "staged"
    leaf, chain = le_shaped_chain(HOST, "ye1.pem")
    pki.write(live / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
    staged.mkdir()
    spec = HostSpec(HOST, "none", certs=(live / "ecdsa.pem",), staged_dir=staged)
    return spec, live / "ecdsa.pem", staged / "ecdsa.pem"


def _unused_provider(spec: HostSpec) -> Provider:
    """A provider for ports whose deploy never asks it (a zone file nobody reads)."""
    from tlsa_manager_providers.zonefile import ZoneFileProvider

    assert spec.staged_dir is not None
    return ZoneFileProvider({"zone_file": str(spec.staged_dir.parent / "unused.db")})


def test_deploy_refuses_a_staged_file_replaced_after_its_gate(tmp_path: Path) -> None:
    spec, live, staged = _files(tmp_path)
    gated_leaf, chain = le_shaped_chain(HOST, "ye2.pem")
    pki.write(staged, gated_leaf.key_pem, gated_leaf.pem, chain)
    ports = LivePorts(spec, _unused_provider(spec), load_bundled())
    gated = ports.chains().staged[0]  # what the gate was computed for
    # A second renewal lands under the same name before the deploy.
    newer_leaf, chain = le_shaped_chain(HOST, "ye3.pem")
    pki.write(staged, newer_leaf.key_pem, newer_leaf.pem, chain)
    before = live.read_bytes()
    with pytest.raises(StagedChanged, match="changed after its gate"):
        ports.deploy(gated)
    assert live.read_bytes() == before  # the unpublished chain never went live
    assert newer_leaf.pem in staged.read_bytes()  # and stays staged for the next gate
    assert not [p for p in staged.parent.iterdir() if p.name.startswith(".")]


def test_deploy_of_the_gated_file_swaps_it_in(tmp_path: Path) -> None:
    spec, live, staged = _files(tmp_path)
    leaf, chain = le_shaped_chain(HOST, "ye2.pem")
    pki.write(staged, leaf.key_pem, leaf.pem, chain)
    ports = LivePorts(spec, _unused_provider(spec), load_bundled())
    ports.deploy(ports.chains().staged[0])
    assert leaf.pem in live.read_bytes() and not staged.exists()
    assert not list(staged.parent.iterdir())


def test_hook_stages_only_under_the_ledger_lock(cli: CliRunner, site: SyncSite, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from tlsa_manager.ledger import Ledger

    leaf, chain = le_shaped_chain(site["host"], "ye2.pem")
    lineage = site["tmp"] / "lineage"
    pki.write(lineage / "privkey.pem", leaf.key_pem)
    pki.write(lineage / "fullchain.pem", leaf.pem, chain)
    monkeypatch.setenv("RENEWED_LINEAGE", str(lineage))
    monkeypatch.setenv("RENEWED_DOMAINS", site["host"])
    with Ledger(site["tmp"] / "state").locked():  # another run is between its gate and its deploy
        result = cli("--config", site["config"], "hook", "certbot", "--wait-lock", "0")
    assert result.code == 1 and "holds" in result.err
    assert not (site["staged"] / "ecdsa.pem").exists()
    assert not os.listdir(site["staged"])


# ---------------------------------------------------------------- 8: never exceed the budget


def test_the_published_rrset_never_exceeds_the_budget() -> None:
    from test_policy_planner import chain, key, make, owner_input, r211, r311

    from tlsa_manager.policy import HostPolicy
    from tlsa_manager.records import Tlsa

    live, staged, nxt = chain("live"), chain("staged", issuer="YE2"), key("next")
    foreign = {Tlsa.from_text(f"3 1 1 {i:064x}") for i in range(2)}  # someone else's, kept
    published = frozenset({r311(live), r211("YE1"), *foreign})
    p = make([live], [staged], [nxt], owners=[owner_input(published, {"ns1": published})],
             policy=HostPolicy(budget=6))
    result = p.changes[0].result
    assert len(result) == 6
    assert {r311(staged), r211("YE2")} <= result  # by priority: the staged chain first
    assert r311(nxt) not in result and r211("YE3") not in result
    h13 = [h for h in p.hazards if h.code == "H13" and "left out" in h.message]
    assert h13 and "left out (next, issuer-backup)" in h13[0].message.replace("addition(s) are ", "")


def test_a_budget_below_the_live_chains_records_still_publishes_them_all() -> None:
    """Two key types at budget 3: the live chains need 4 records ("3 1 1" and "2 1 1"
    of each).  The desired set used to be cut at 3, leaving one live record out (the
    plan then broke a kind for a live chain, H2 fatal); all 4 go in, with a fatal H13,
    and someone else's record stays."""
    from test_policy_planner import chain, make, owner_input, r211, r311

    from tlsa_manager.policy import HostPolicy
    from tlsa_manager.records import Tlsa

    ec, rsa = chain("ec"), chain("rsa", "rsa", "YR1")
    foreign = frozenset({Tlsa.from_text(f"3 1 1 {1:064x}")})
    for budget in (3, 4):
        p = make([ec, rsa], owners=[owner_input(foreign, {"ns1": foreign})], policy=HostPolicy(budget=budget))
        result = p.changes[0].result
        assert result == {r311(ec), r211("YE1"), r311(rsa), r211("YR1")} | foreign, budget
        assert not [h for h in p.hazards if "after this change" in h.message], budget
        assert [h for h in p.hazards if h.code == "H13" and h.severity.name == "FATAL"], budget


def test_a_foreign_record_on_a_full_rrset_makes_the_staged_chain_wait_not_the_budget_break() -> None:
    """The soak case (seeds 20261122/24/26): the live chains' records, those of a chain
    staged from an issuer outside the catalog and someone else's record fill the budget;
    the chain the MTA presents (H27) needs one more.  Our staged records go (the staged
    chain waits), never a live one, the RRset stays within the budget, and a record
    that is not ours is never touched."""
    import os

    from test_policy_planner import K211, chain, make, owner_input, r211, r311

    from tlsa_manager.facts import CertFacts, ChainFacts
    from tlsa_manager.policy import HostPolicy
    from tlsa_manager.records import Tlsa

    outside_ca = CertFacts(os.urandom(40), os.urandom(80), "XCA")
    staged = ChainFacts("staged", CertFacts(os.urandom(40), os.urandom(80), "staged"), "ecdsa", (outside_ca,),
                        issuer_name="XCA")
    xca = outside_ca.record(K211)
    assert xca is not None
    ec, rsa = chain("ec"), chain("rsa", "rsa", "YR1")
    presented = chain("presented")  # the MTA presents it (H27): live too, same issuer YE1
    foreign = Tlsa.from_text(f"3 1 1 {1:064x}")
    ours = frozenset({r311(ec), r211("YE1"), r311(rsa), r211("YR1"), r311(staged), xca})
    published = ours | {foreign}
    policy = HostPolicy(budget=7)
    p = make([ec, rsa, presented], [staged], owners=[owner_input(published, {"ns1": published}, managed=ours)],
             policy=policy)
    change = p.changes[0]
    assert r311(presented) in change.add
    assert len(change.result) <= 7 and foreign in change.result
    assert {r311(ec), r211("YE1"), r311(rsa), r211("YR1"), r311(presented)} <= change.result
    assert change.delete and change.delete <= {r311(staged), xca}
    assert not [h for h in p.hazards if h.code == "H13" and h.severity.name == "FATAL"]
    h13 = [h.message for h in p.hazards if h.code == "H13" and "removed" in h.message]
    assert h13 and "of ours no live chain needs are removed" in h13[0]
    # records the ledger does not know as ours are never removed: the live record still
    # goes in, over the budget, and the fatal H13 says so
    p = make([ec, rsa, presented], [staged], owners=[owner_input(published, {"ns1": published})], policy=policy)
    assert r311(presented) in p.changes[0].add and not p.changes[0].delete
    assert [h for h in p.hazards if h.code == "H13" and h.severity.name == "FATAL"]


# ---------------------------------------------------------------- 1: TTL memory


def test_a_long_ttl_counts_until_every_server_stopped_serving_it() -> None:
    """TTL lowered while ns2 is stale at 1 day; the next observation, 3 days later, shows the
    new key's records everywhere.  ns2's 1-day RRset may have been served until just
    before that observation, so the wait is 2 x 1 day from it, not 2 x 300 s."""
    from test_policy_planner import ISSUERS, KNOWN, T0, chain, make, r311

    from tlsa_manager.observations import ServerView
    from tlsa_manager.planner import OwnerInput
    from tlsa_manager.policy import desired
    from tlsa_manager.provider import RRset
    from tlsa_manager.records import owner_name

    owner = owner_name("mail.example.com")
    live, staged = chain("live"), chain("staged", issuer="YE1")
    old = desired([live], issuers=ISSUERS).as_set()
    new = old | {r311(staged)}
    day = 86400
    h = KNOWN.observe(T0, [ServerView("ns1", old, day), ServerView("ns2", old, day)])
    h = h.observe(T0 + 60, [ServerView("ns1", old, 300), ServerView("ns2", old, day)])
    later = T0 + 3 * day
    views = (ServerView("ns1", new, 300), ServerView("ns2", new, 300))
    h = h.observe(later, views)
    assert h.max_ttl() == day  # remembered: ns2 served it until somewhere before `later`
    p = make([live], [staged], owners=[OwnerInput(owner, RRset(owner, new, 300), views, h)], now=later + 1000)
    assert not p.gates[0].ready and p.gates[0].opens_at == later + 2 * day + 300


# ---------------------------------------------------------------- 2: lost ledger


def _sim(**kw: Any) -> World:
    from test_simulation import ISSUERS

    from tlsa_manager.simulation import World

    return World(ISSUERS, servers=kw.pop("servers", {"ns1": 0, "ns2": 60}), **kw)


def test_a_lost_ledger_after_a_ttl_decrease_waits_the_ttl_ceiling() -> None:
    from tlsa_manager.ledger import LedgerData

    hour = 3600
    world = _sim(ttl=8 * hour, ttl_ceiling=86400)
    world.run([(0, {"do": "sync"}), (hour, {"do": "ttl", "ttl": 300})], until=2 * hour, timer=600)
    assert world.primary.ttl == 300
    world.saved = LedgerData()  # the ledger is deleted (restored from an old backup, a new disk...)
    world.run([(2 * hour + 1, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"})],
              until=5 * 86400, timer=600)
    deploy = next(line for line in world.timeline if "  deploy " in line)
    assert deploy.replace(" ", "").startswith("T+2d2h"), deploy  # history began at 2 h: 2 x 1 day later
    assert not world.violations and not world.deferrals


@pytest.mark.parametrize("probe", [True, False])
def test_a_lost_ledger_never_removes_what_the_mta_may_still_present(probe: bool) -> None:
    """Killed between rename and reload, then the ledger is lost: with prune = true the next
    run must not remove the old key's record, which the MTA still presents."""
    from tlsa_manager.policy import HostPolicy

    hour = 3600
    world = _sim(ttl=300, policy=HostPolicy(prune=True), can_probe=probe)
    world.run([(0, {"do": "sync"}),
               (hour - 1, {"do": "mta-stuck"}),  # the deploy's reload will not take
               (hour, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"})],
              until=2 * hour, timer=600)
    assert any("  deploy " in line for line in world.timeline)
    assert world.saved.host("mail.example.com").deploys  # unconfirmed...
    world.run_event({"do": "lose-ledger"})  # ...and then the journal is gone
    world.run([], until=3 * hour, timer=600)
    old = world.serving["ecdsa"]
    assert old.label.startswith("ecdsa#1") and old.covered_by(world.primary.records)
    assert not world.violations
    if probe:  # the probe showed the old chain: it counts as live until the MTA presents the file
        world.run_event({"do": "mta-stuck", "stuck": False})
        world.run([], until=hour * 5, timer=600)
        # no reload by the tool while the live file's gate is closed: with the history lost
        # that is 2 x the TTL ceiling (journal._live_gate_passed), then it reloads
        assert world.serving["ecdsa"] == old and old.covered_by(world.primary.records)
        world.run([], until=3 * 86400, timer=600)
        assert world.serving["ecdsa"] == world.live["ecdsa"] and not old.covered_by(world.primary.records)
    assert not world.violations


# ---------------------------------------------------------------- 3: clock steps


def test_clock_step_detection() -> None:
    from tlsa_manager.clock import ClockSample, future, step

    before = ClockSample(1000.0, 50.0, "b")
    assert step(before, ClockSample(1000.0 + 3600, 50.0 + 3600, "b"), 300) is None
    assert "stepped forward by 10800 s" in (step(before, ClockSample(1000 + 4 * 3600, 50 + 3600, "b"), 300) or "")
    assert step(before, ClockSample(1000 + 4 * 3600, 10, "c"), 300) is None  # a reboot: cannot tell
    assert "in the future" in (future([5000.0], 1000.0, 300) or "")
    # slack = 0: the clocks read a few microseconds apart are not a step
    assert step(before, ClockSample(1000.002, 50.0, "b"), 0) is None
    assert "stepped back by 5 s" in (step(before, ClockSample(995.0, 50.0, "b"), 0) or "")


def test_a_host_with_slack_zero_syncs(quiet_site: Path) -> None:  # noqa: F811
    """``slack = "0s"`` is accepted; every run used to stop with 'the wall clock stepped
    back by 0 s ... during this run' (exit 1)."""
    from test_quiet import HOST, run

    config = quiet_site
    config.write_text(config.read_text() + 'slack = "0s"\n')
    for _ in range(3):
        result = run("--config", config, "sync", HOST)
        assert result.returncode == 0 and "stepped" not in result.stderr, result


def test_a_clock_stepped_forward_does_not_open_a_gate_early() -> None:
    """The host clock is 3 h behind while the new key's records go out; NTP then steps it
    forward.  The wall clock now says the records were served for hours: they were not."""
    hour = 3600
    world = _sim(ttl=hour, skew=-3 * hour)
    world.run([(0, {"do": "sync"}),
               (hour, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"}),
               (hour + 20 * 60, {"do": "clock-step", "seconds": 3 * hour})], until=4 * 86400, timer=600)
    assert any("stepped forward" in line for line in world.timeline)
    assert not world.violations and not world.deferrals
    assert any("  deploy " in line for line in world.timeline)


# ---------------------------------------------------------------- 7: the MTA serves another chain


def test_an_mta_presenting_another_chain_is_covered_and_blocks_deploys() -> None:
    hour = 3600
    world = _sim(ttl=300, mta_other=True)
    other = world.serving["ecdsa"]
    assert other != world.live["ecdsa"]
    world.run([(0, {"do": "sync"}),
               (hour, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"})],
              until=DAY, timer=600)
    assert other.covered_by(world.primary.records)  # probed before the first publish
    assert not any("  deploy " in line for line in world.timeline)  # H27 blocks the rollover
    assert any("not confirmed" in line for line in world.timeline)
    world.run_event({"do": "mta-fixed"})
    world.run([], until=2 * DAY, timer=600)
    assert any("  deploy " in line for line in world.timeline)
    assert world.serving["ecdsa"] == world.live["ecdsa"] and not other.covered_by(world.primary.records)
    assert not world.violations


DAY = 86400


# ---------------------------------------------------------------- 6: unobserved servers


def test_rfc2136_without_nameservers_watches_the_zones_ns_not_the_host(bind: Bind) -> None:
    """Real BIND: the NS lookup goes to the zone apex (example.test), found by SOA."""
    from test_rfc2136 import provider

    from servers import ZONE

    spec = HostSpec(f"mx.{ZONE}", "bind")
    ports = LivePorts(spec, provider(bind), load_bundled())
    zone = ports.zone()
    assert zone is not None and zone.to_text() == f"{ZONE}."
    names = sorted(e.name for e in ports.endpoints())
    assert names == [f"ns1.{ZONE} (127.0.0.1)", f"ns2.{ZONE} (127.0.0.1)"]


def test_with_no_server_to_ask_a_new_key_waits_for_an_explicit_propagation_delay() -> None:
    hour = 3600
    events: list[tuple[float, dict[str, Any]]] = [(0, {"do": "sync"}), (DAY, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"})]
    blind = _sim(ttl=300, servers={"ns1": 0, "ns2": 3 * hour, "ns3": 60}, unobserved=True)
    blind.run(events, until=4 * DAY, timer=600)
    assert not any("  deploy " in line for line in blind.timeline)
    assert not blind.violations  # the lagging secondary no longer breaks mail
    vouched = _sim(ttl=300, servers={"ns1": 0, "ns2": 3 * hour}, unobserved=True, propagation_delay=4 * hour)
    vouched.run(events, until=4 * DAY, timer=600)
    deploy = next(line for line in vouched.timeline if "  deploy " in line)
    assert deploy.replace(" ", "").startswith("T+1d4h"), deploy
    assert not vouched.violations
    # A same-key renewal by the same issuer adds no record a sender must have fetched.
    same = _sim(ttl=300, unobserved=True)
    same.run([(0, {"do": "sync"}), (DAY, {"do": "renew", "key_type": "ecdsa", "new_key": False, "issuer": "YE1"})],
             until=2 * DAY, timer=600)
    assert any("  deploy " in line for line in same.timeline) and not same.violations


# ---------------------------------------------------------------- 4: two machines, one owner


def test_two_instances_on_one_owner_never_remove_each_others_records(cli: CliRunner, cf_fake: FakeCloudflare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two MTAs behind one MX name, each with its own key and its own tlsa-manager, both
    publishing through Cloudflare with prune off: each removes only what it published."""
    from tlsa_manager.records import Tlsa

    monkeypatch.setenv("CF_TEST_TOKEN", cf_fake.token)
    host = "mx.example.test"
    configs, keys = [], []
    for name in ("mx-a", "mx-b"):
        leaf, chain = le_shaped_chain(host, "ye1.pem")
        pki.write(tmp_path / name / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
        config = tmp_path / name / "config.toml"
        config.write_text(f"""
state_dir = "{tmp_path / name / 'state'}"
instance = "{name}"
[providers.cf]
type = "cloudflare"
api_token_env = "CF_TEST_TOKEN"
api_url = "{cf_fake.base_url}"
[hosts."{host}"]
provider = "cf"
cert = "{tmp_path / name / 'ecdsa.pem'}"
""")
        configs.append(config)
        keys.append(Tlsa.from_text(cli("records", tmp_path / name / "ecdsa.pem", "--usage", "3").out))
    zone = cf_fake.zone("example.test")

    def published() -> frozenset[Tlsa]:
        return frozenset(Tlsa.from_text("{usage} {selector} {matching_type} {certificate}".format(**r["data"]))
                         for r in zone.records.values())

    for _ in range(2):
        for config in configs:
            result = cli("--config", config, "sync", host)
            assert result.code == 0, result.err
    assert set(keys) <= published()  # each machine's "3 1 1" stays
    comments = {r["comment"] for r in zone.records.values()}
    assert comments == {"managed by tlsa-manager [mx-a]", "managed by tlsa-manager [mx-b]"}


def _two_instances(shared_marks: bool) -> tuple[World, World]:
    hour = 3600
    from tlsa_manager.policy import HostPolicy
    from tlsa_manager.records import parse_params

    only_ee = HostPolicy(kinds=(parse_params("3 1 1"),))  # so a missing key record defers mail
    a = _sim(ttl=300, ttl_ceiling=3600, policy=only_ee)
    b = a.add_instance("B:", ttl_ceiling=3600, policy=only_ee)
    for w in (a, b):
        w.shared_marks = shared_marks
    a.run([(0, {"do": "sync"}), (60, {"do": "sync", "instance": 1}),
           (hour, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"}),
           (hour + 5, {"do": "interleave", "step": "applied", "other": 1}),
           (2 * hour, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE3", "instance": 1})],
          until=DAY, timer=600)
    return a, b


def test_two_instances_in_the_simulation_keep_each_others_keys() -> None:
    a, b = _two_instances(shared_marks=False)
    assert any("  deploy B:" in line for line in a.timeline) and any("  deploy ecdsa#" in line for line in a.timeline)
    assert b.live["ecdsa"].covered_by(a.primary.records) and a.live["ecdsa"].covered_by(a.primary.records)
    assert not a.violations and not a.deferrals
    # With one marker for everyone (the old Cloudflare comment) each removes the other's key.
    old_a, _ = _two_instances(shared_marks=True)
    assert old_a.deferrals


def test_a_signature_made_after_our_clock_is_a_step() -> None:
    from tlsa_manager.clock import signed_future

    now = 1_790_000_000.0
    assert signed_future([], now, 300) is None  # unsigned: no signal
    assert signed_future([now - 3600, now + 200], now, 300) is None  # within the slack
    found = signed_future([now - 3600, now + 2 * 3600], now, 300)
    assert found is not None and "7200 s behind the DNS" in found


def _behind_then_stepped_across_a_reboot(**kw: Any) -> World:
    """The host boots with its clock 3 h behind, a new key's records go out, then the host
    reboots and NTP steps the clock forward: the boot-time clock cannot tell, and no
    ledger time is in the future."""
    hour = 3600
    world = _sim(ttl=hour, skew=-3 * hour, **kw)
    world.run([(0, {"do": "sync"}),
               (hour, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"}),
               (hour + 20 * 60 - 10, {"do": "reboot"}),
               (hour + 20 * 60 - 10, {"do": "clock-step", "seconds": 3 * hour})], until=4 * 86400, timer=600)
    return world


def test_a_clock_behind_the_rrsig_inception_restarts_the_history() -> None:
    """BIND dates each RRSIG an hour before it signs: after our UPDATE the new signature
    is 2 h "in the future" of a clock 3 h behind.  The history restarts (blind), so the
    later step forward cannot make the records look served for hours."""
    world = _behind_then_stepped_across_a_reboot(signer_backdate=3600)
    assert any("behind the DNS" in line for line in world.timeline)
    assert not any("stepped forward" in line for line in world.timeline)  # across the reboot
    assert not world.violations and not world.deferrals
    assert any("  deploy " in line for line in world.timeline)


def test_without_signatures_the_same_step_across_a_reboot_opens_the_gate_early() -> None:
    """The control: an unsigned zone gives no such signal, and the gate opens early."""
    world = _behind_then_stepped_across_a_reboot()
    assert not any("behind the DNS" in line for line in world.timeline)
    assert world.violations


def test_a_real_rrsig_shows_a_clock_three_hours_behind(bind: Bind) -> None:
    """Real BIND signs our change at once, dating the RRSIG back an hour: against a clock
    3 h behind real time that inception is 2 h "in the future"; against the real clock
    it is not."""
    import time

    import dns.name

    from tlsa_manager.clock import signed_future
    from tlsa_manager.dnsview import DnsView, parse_endpoint

    from conftest import nsupdate_add
    from servers import ZONE

    owner = dns.name.from_text(f"_25._tcp.rrsig-clock.{ZONE}")
    nsupdate_add(bind, owner, "3 1 1 " + "ab" * 32)
    [view] = DnsView([parse_endpoint(bind.primary.endpoint)]).observe([owner])[owner]
    assert view.records and view.signed_at is not None  # validated, and its inception read
    now = time.time()
    assert now - 2 * 3600 < view.signed_at <= now  # BIND: the signing time less an hour
    assert signed_future([view.signed_at], now, 300) is None
    behind = signed_future([view.signed_at], now - 3 * 3600, 300)
    assert behind is not None and "behind the DNS" in behind
