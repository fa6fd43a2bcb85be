"""The planner proven by simulation: random timelines through the real engine.

Invariant (I-1): at every instant, every cacheable RRset version covers every chain
the MTA serves, for every record kind it holds.  Hypothesis drives at least 10,000
timelines (TLSA_SIM_TIMELINES overrides); the naive strategies scripts use today
must each produce a violation, which shows the harness can fail.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tlsa_manager.catalog import load_bundled
from tlsa_manager.policy import HostPolicy, issuers_from_catalog
from tlsa_manager.records import parse_params
from tlsa_manager.simulation import World

ISSUERS = issuers_from_catalog(load_bundled())
SIBLINGS = {
    kt: sorted(i.name for i in ISSUERS if i.key_type == kt and i.status in ("active", "backup"))
    for kt in ("ecdsa", "rsa")
}
STEPS = [
    "observed",
    "intent-saved",
    "apply-returned",
    "applied",
    "propagated",
    "before-deploy",
    "deploy-intent",
    "renamed",
    "deployed",
]
TIMELINES = int(os.environ.get("TLSA_SIM_TIMELINES", "10000"))
HOUR = 3600
DAY = 86400


@st.composite
def timelines(draw: st.DrawFn) -> dict[str, Any]:
    key_types = draw(st.sampled_from([("ecdsa",), ("rsa",), ("ecdsa", "rsa")]))
    ttl = draw(st.sampled_from([60, 300, 3600, 4 * HOUR]))
    lag = draw(st.sampled_from([0, 5, 60, 900, 2 * HOUR]))
    gaps = [0, 1, 60, 600, HOUR, 3 * HOUR, DAY]
    event = st.one_of(
        st.builds(
            lambda kt, nk, i: {"do": "renew", "key_type": kt, "new_key": nk, "issuer": i},
            st.sampled_from(key_types),
            st.booleans(),
            st.integers(0, 2),
        ),
        st.sampled_from(
            [
                {"do": "sync"},
                {"do": "stop"},
                {"do": "resume"},
                {"do": "down"},
                {"do": "up"},
                {"do": "fail-next-apply"},
                {"do": "edit"},
                {"do": "parallel"},
                {"do": "mta-stuck"},
                {"do": "mta-stuck", "stuck": False},
            ]
        ),
        st.builds(lambda t: {"do": "ttl", "ttl": t}, st.sampled_from([60, 300, 3600, 4 * HOUR])),
        st.builds(lambda s: {"do": "lag", "seconds": s}, st.sampled_from([0, 30, 900, 3 * HOUR])),
        st.builds(lambda s: {"do": "crash", "step": s}, st.sampled_from(STEPS)),
        st.builds(lambda kt: {"do": "next-key", "key_type": kt}, st.sampled_from(key_types)),
    )
    raw = draw(st.lists(st.tuples(st.sampled_from(gaps), event), min_size=1, max_size=10))
    events, t = [(0.0, {"do": "sync"})], 0.0
    for gap, ev in raw:
        t += gap
        if ev["do"] == "renew":
            ev = dict(
                ev, issuer=SIBLINGS[ev["key_type"]][ev["issuer"] % len(SIBLINGS[ev["key_type"]])]
            )
        events.append((t, ev))
    timer = draw(st.sampled_from([HOUR, 4 * HOUR, DAY]))
    # One day after the last event is past every gate the parameters allow
    # (lag <= 3 h, TTL <= 4 h: gate <= t_sync + 8 h 5 min) unless a server is stopped.
    return {
        "key_types": key_types,
        "ttl": ttl,
        "lag": lag,
        "events": events,
        "until": t + DAY,
        "timer": timer,
    }


def run_timeline(spec: dict[str, Any], seed: int = 0) -> World:
    world = World(
        ISSUERS,
        servers={"ns1": 0, "ns2": spec["lag"]},
        ttl=spec["ttl"],
        key_types=spec["key_types"],
        seed=seed,
        slack=300,
    )
    world.run(spec["events"], until=spec["until"], timer=spec["timer"])
    return world


def test_invariant_holds_over_random_timelines() -> None:
    checked = {"timelines": 0, "deploys": 0, "syncs": 0}

    @settings(
        max_examples=TIMELINES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(timelines())
    def one(spec: dict[str, Any]) -> None:
        world = run_timeline(spec)
        checked["timelines"] += 1
        checked["deploys"] += sum(1 for line in world.timeline if "  deploy " in line)
        checked["syncs"] += sum(
            1 for line in world.timeline if ("timer:" in line or "hook:" in line)
        )
        assert not world.violations, "\n".join(
            [v.describe(world.t0) for v in world.violations[:3]] + world.timeline
        )

    one()
    assert checked["timelines"] >= TIMELINES
    # The timelines must actually exercise rollovers, or the zero above means nothing.
    assert checked["deploys"] > TIMELINES // 4
    print(
        f"\nsimulation: {checked['timelines']} timelines, {checked['syncs']} syncs, "
        f"{checked['deploys']} deploys, 0 violations"
    )


def test_new_key_rollover_waits_for_every_server_and_two_ttls() -> None:
    world = World(ISSUERS, servers={"ns1": 0, "ns2": 2 * HOUR}, ttl=HOUR, slack=300)
    world.run(
        [
            (0, {"do": "sync"}),
            (DAY, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"}),
        ],
        until=3 * DAY,
        timer=600,
    )
    deploy = next(line for line in world.timeline if "  deploy " in line)
    # ns2 serves the new record 2 h after the hook; then 2 x 1 h + 5 min slack.
    # t_sync = 1d2h (first 10-minute timer that sees ns2 serve it), gate = +2h5m.
    assert deploy.replace(" ", "").startswith("T+1d4h10mdeploy"), deploy
    assert not world.violations


def test_renewal_covered_by_prepublished_records_goes_live_at_once() -> None:
    world = World(ISSUERS, servers={"ns1": 0, "ns2": 60}, ttl=HOUR)
    world.run(
        [
            (0, {"do": "sync"}),
            (DAY + 1, {"do": "renew", "key_type": "ecdsa", "new_key": False, "issuer": "YE3"}),
        ],
        until=DAY + 10,
        timer=HOUR,
    )
    # Same key, backup issuer YE3 pre-published long ago: the hook deploys at once.
    assert "T+1d1sdeployecdsa#2(YE3)" in [line.replace(" ", "") for line in world.timeline]
    assert not world.violations


def test_lagging_secondary_keeps_gate_closed() -> None:
    world = World(ISSUERS, servers={"ns1": 0, "ns2": 0}, ttl=300)
    world.run(
        [
            (0, {"do": "sync"}),
            (HOUR, {"do": "stop"}),
            (2 * HOUR, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE1"}),
        ],
        until=3 * DAY,
        timer=HOUR,
    )
    assert not any("  deploy " in line for line in world.timeline)
    assert any("not yet served by ns2" in line for line in world.timeline)
    world.run_event({"do": "resume"})
    world.run([], until=4 * DAY, timer=HOUR)
    assert any("  deploy " in line for line in world.timeline)
    assert not world.violations


def _rollover_killed_between_rename_and_reload() -> World:
    world = World(ISSUERS, servers={"ns1": 0, "ns2": 60}, ttl=300)
    world.run(
        [
            (0, {"do": "sync"}),
            (HOUR, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"}),
            (HOUR + 1, {"do": "crash", "step": "renamed"}),
        ],
        until=DAY,
        timer=600,
    )
    return world


def test_kill_between_rename_and_reload_keeps_the_old_records_until_confirmed() -> None:
    world = _rollover_killed_between_rename_and_reload()
    lines = [line[13:].strip() for line in world.timeline]  # after "T+{elapsed:>9}  "
    killed = next(i for i, line in enumerate(lines) if "killed after step 'renamed'" in line)
    assert any(line.startswith("deploy ") for line in lines[:killed])
    after = lines[killed + 1 :]
    assert after[0].startswith("MTA reloaded: presents ecdsa#2(YE2)")  # the next run finishes the deploy
    assert any("confirmed the deploy of" in line for line in after)
    assert not world.violations
    assert world.serving["ecdsa"] == world.live["ecdsa"]
    assert len([r for r in world.primary.records if r.usage == 3]) == 1  # old 3 1 1 gone afterwards


def test_without_the_deploy_journal_the_same_kill_breaks_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness catches the naive engine: after a kill between rename and reload the
    next run removes the old key's record while the MTA still presents the old key."""
    from tlsa_manager import engine

    monkeypatch.setattr(engine, "_confirm_deploys", lambda *a: None)
    monkeypatch.setattr(engine, "unconfirmed", lambda ledger, host: ())
    world = _rollover_killed_between_rename_and_reload()
    assert world.violations and world.violations[0].chain.startswith("ecdsa#1")


def test_an_mta_that_ignores_the_reload_keeps_the_old_records() -> None:
    world = World(ISSUERS, servers={"ns1": 0, "ns2": 60}, ttl=300)
    world.run(
        [
            (0, {"do": "sync"}),
            (HOUR - 1, {"do": "mta-stuck"}),
            (HOUR, {"do": "renew", "key_type": "ecdsa", "new_key": True, "issuer": "YE2"}),
        ],
        until=DAY,
        timer=600,
    )
    old = world.serving["ecdsa"]
    assert old.label.startswith("ecdsa#1") and world.live["ecdsa"].label.startswith("ecdsa#2")
    assert old.covered_by(world.primary.records) and world.live["ecdsa"].covered_by(world.primary.records)
    assert any("is not confirmed" in line and "stay" in line for line in world.timeline)
    world.run_event({"do": "mta-stuck", "stuck": False})
    world.run([], until=2 * DAY, timer=600)
    assert world.serving["ecdsa"] == world.live["ecdsa"]
    assert not old.covered_by(world.primary.records)
    assert not world.violations


# ---------------------------------------------------------------- naive strategies


def _naive_world(**kw: Any) -> World:
    world = World(
        ISSUERS, servers={"ns1": 0, "ns2": kw.pop("lag", 60)}, ttl=kw.pop("ttl", HOUR), **kw
    )
    world.run([(0, {"do": "sync"})], until=DAY, timer=HOUR)
    assert not world.violations
    return world


def _deploy_now(world: World, key_type: str, *, new_key: bool, issuer: str) -> None:
    """What a plain certbot deploy does: the renewed chain goes live immediately."""
    chain = world.new_chain(key_type, issuer, new_key=new_key, old=world.live[key_type])
    world.staged[key_type] = chain
    world.deploy(chain)


def test_naive_publish_after_deploy_is_caught() -> None:
    world = _naive_world()
    _deploy_now(world, "ecdsa", new_key=True, issuer="YE1")
    world.sync("publish after deploy")
    world.advance(world.clock + 10)
    assert world.violations


def test_naive_3_0_1_is_caught_while_3_1_1_survives() -> None:
    safe = _naive_world(policy=HostPolicy(kinds=(parse_params("3 1 1"),)))
    _deploy_now(safe, "ecdsa", new_key=False, issuer="YE1")
    safe.advance(safe.clock + 10)
    assert not safe.violations  # the control: 3 1 1 survives a same-key renewal
    fragile = _naive_world(
        policy=HostPolicy(kinds=(parse_params("3 0 1"),), unsafe_allow_fragile_kinds=True)
    )
    _deploy_now(fragile, "ecdsa", new_key=False, issuer="YE1")
    fragile.advance(fragile.clock + 10)
    assert fragile.violations


def test_naive_current_issuer_only_is_caught() -> None:
    world = _naive_world()
    # Only the issuer of the live chain is pinned, as many scripts do.
    world.settings = world.settings.__class__(**{**world.settings.__dict__, "issuers": ()})
    world.saved = world.saved.__class__()
    world.publish(frozenset(), HOUR)
    world.advance(world.clock + 2 * HOUR)
    world.sync()
    world.advance(world.clock + 3 * HOUR)
    assert not world.violations
    _deploy_now(world, "ecdsa", new_key=False, issuer="YE2")  # LE picked a sibling
    world.advance(world.clock + 10)
    assert world.violations


def test_naive_delete_then_add_is_caught() -> None:
    world = _naive_world()
    new = world.new_chain("ecdsa", "YE1", new_key=True)
    # Replace the whole RRset with the new key's record, then wait before deploying.
    world.publish(frozenset(new.matching(parse_params("3 1 1"))), HOUR)
    world.advance(world.clock + 3 * HOUR)
    assert world.violations


def test_naive_one_ttl_from_update_is_caught() -> None:
    world = _naive_world(lag=2 * HOUR)
    new = world.new_chain("ecdsa", "YE1", new_key=True)
    world.publish(world.primary.records | new.matching(parse_params("3 1 1")), HOUR)
    world.advance(world.clock + HOUR)  # one TTL after the UPDATE, ns2 still lags
    world.staged["ecdsa"] = new
    world.deploy(new)
    world.advance(world.clock + 10)
    assert world.violations
