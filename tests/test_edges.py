"""Safety at the edges of the planner's assumptions (issue 12): one test per class of
failure, each failing on the code before its fix.  Real files, real BIND where the
class is about files or servers; the pure planner where it is about a rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tlsa_manager.catalog import load_bundled
from tlsa_manager.config import HostSpec
from tlsa_manager.engine import StagedChanged
from tlsa_manager.hostports import LivePorts

import pki
from test_sync_cli import le_shaped_chain, site  # noqa: F401  (fixture)

HOST = "mx.edges.example"


# ---------------------------------------------------------------- 5: deploy what was gated


def _files(tmp: Path) -> tuple[HostSpec, Path, Path]:
    live, staged = tmp / "live", tmp / "staged"
    leaf, chain = le_shaped_chain(HOST, "ye1.pem")
    pki.write(live / "ecdsa.pem", leaf.key_pem, leaf.pem, chain)
    staged.mkdir()
    spec = HostSpec(HOST, "none", certs=(live / "ecdsa.pem",), staged_dir=staged)
    return spec, live / "ecdsa.pem", staged / "ecdsa.pem"


def test_deploy_refuses_a_staged_file_replaced_after_its_gate(tmp_path: Path) -> None:
    spec, live, staged = _files(tmp_path)
    gated_leaf, chain = le_shaped_chain(HOST, "ye2.pem")
    pki.write(staged, gated_leaf.key_pem, gated_leaf.pem, chain)
    ports = LivePorts(spec, None, load_bundled())  # type: ignore[arg-type]  # deploy never asks the provider
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
    ports = LivePorts(spec, None, load_bundled())  # type: ignore[arg-type]
    ports.deploy(ports.chains().staged[0])
    assert leaf.pem in live.read_bytes() and not staged.exists()
    assert not list(staged.parent.iterdir())


def test_hook_stages_only_under_the_ledger_lock(cli, site, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
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
