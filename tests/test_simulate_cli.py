"""`simulate`: the example scenarios replay through the real planner and say what a sender sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLES, CliRunner

SCENARIOS = sorted((EXAMPLES / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_example_scenarios(cli: CliRunner, path: Path) -> None:
    result = cli("simulate", path)
    if path.stem.startswith("direct-install"):
        assert result.code == 4
        assert "moment(s) when a DANE sender would defer mail" in result.out
        assert "not covered by a cacheable RRset" in result.out
    else:
        assert result.code == 0, result.out
        assert result.out.rstrip().endswith("no moment when a DANE sender would defer mail")
        assert "DANE sender: accepts" in result.out


def test_new_key_scenario_timeline(cli: CliRunner) -> None:
    doc = cli("--json", "simulate", EXAMPLES / "scenarios" / "new-key.toml").json()
    lines = [line for line in doc["timeline"] if line.startswith("T+")]
    assert any("renewal: ecdsa#2(YE2) staged (new key)" in line for line in lines)
    deploy = next(line for line in lines if "  deploy ecdsa#2(YE2)" in line)
    # ns2 lags 10 min; the 30-min timer first sees it at 1d30m; gate = +2h5m -> 1d3h (next tick)
    assert deploy.replace(" ", "").startswith("T+1d3hdeploy")
    assert any("remove 1" in line for line in lines)
    assert doc["violations"] == []


@pytest.mark.parametrize(("content", "fragment"), [
    ("[world\n", "not valid TOML"),
    ('[[events]]\nat = "1d"\n', "needs 'at' and 'do'"),
    ('[[events]]\nat = "soon"\ndo = "sync"\n', "is not a duration"),
    ('[[events]]\nat = "1d"\ndo = "explode"\n', "unknown scenario event 'explode'"),
    ('[[events]]\nat = "1d"\ndo = "renew"\nissuer = "ZZ9"\n', "unknown issuer 'ZZ9'"),
    ('[world]\nrecords = ["3 0 1"]\n[[events]]\nat = "0s"\ndo = "sync"\n', "unsafe_allow_fragile_kinds"),
    ('[world]\nkey_types = ["dsa"]\n', "world.key_types must list ecdsa and/or rsa"),  # was an IndexError
    ('[world]\nkey_types = "ecdsa"\n', "world.key_types must list ecdsa and/or rsa"),
    # each of these used to run the default scenario without a word
    ("", "the scenario is empty (no [world] and no [[events]])"),
    ('# nothing here\ndescription = "x"\n', "the scenario is empty"),
    ('[world]\nunitl = "3d"\n', "unknown key in [world] 'unitl'"),
    ('descripton = "x"\n[world]\n', "unknown top-level key 'descripton'"),
    ('[[events]]\nat = "1d"\ndo = "renew"\nnew_keys = true\n', "unknown field of event 1 (renew) 'new_keys'"),
    ('[[events]]\nat = "1d"\ndo = "sync"\nserver = "ns2"\n', "unknown field of event 1 (sync) 'server'"),
    ("[world]\nservers = {}\n", "world.servers must name at least one authoritative server"),
    ("world = 3\n", "world must be a table"),
    ("events = [1]\n", "events must be [[events]] tables"),
])
def test_bad_scenarios(cli: CliRunner, tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(content)
    result = cli("simulate", path)
    assert result.code in (2, 3), result
    assert result.err.count("\n") == 1 and fragment in result.err


def test_step_limit_is_checked_before_running(tmp_path: Path) -> None:
    """A timer every second for ten years is refused at once with the count and the limit
    (it ran for hours); one step under the limit is accepted."""
    import subprocess
    import sys
    import time

    from tlsa_manager.simulation.scenario import MAX_STEPS

    path = tmp_path / "s.toml"
    path.write_text('[world]\ntimer = "1s"\nuntil = "3650d"\n')
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tlsa_manager", "simulate", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 20
    assert result.returncode == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result
    assert "315,360,000 steps" in result.stderr and f"limit of {MAX_STEPS:,}" in result.stderr
    # events count too: MAX_STEPS timer runs plus one event is one too many
    path.write_text(f'[world]\ntimer = "1s"\nuntil = "{MAX_STEPS}s"\n[[events]]\nat = "0s"\ndo = "sync"\n')
    result = subprocess.run([sys.executable, "-m", "tlsa_manager", "simulate", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"{MAX_STEPS + 1:,} steps" in result.stderr


def test_missing_scenario(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("simulate", tmp_path / "nope.toml")
    assert result.code == 2 and "no such scenario file" in result.err
