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
    # each of these was an internal error (KeyError, TypeError, ...) at run time
    ('[[events]]\nat = "0s"\ndo = "stop"\nserver = "nsX"\n', "event 1 (stop): unknown server 'nsX'"),
    ('[[events]]\nat = "0s"\ndo = "lag"\nserver = "nsX"\nseconds = 5\n', "unknown server 'nsX'"),
    ('[world]\nservers = { ns1 = "0s" }\n[[events]]\nat = "0s"\ndo = "down"\n', "unknown server 'ns2'"),
    ('[[events]]\nat = "0s"\ndo = "renew"\nkey_type = "dsa"\n', "key_type 'dsa' is not ecdsa or rsa"),
    ('[[events]]\nat = "0s"\ndo = "renew"\nkey_type = ["rsa"]\n', "key_type = ['rsa'] is not a string"),
    ('[[events]]\nat = "0s"\ndo = "renew"\nkey_type = "rsa"\n', "no live rsa chain to renew"),
    ("[world]\nrecords = 5\n", "world.records = 5 is not a list"),
    ('[world]\nissuers = ["YE1"]\n', "world.issuers = ['YE1'] is not a table"),
    ('[world]\nseed = "abc"\n', "world.seed = 'abc' is not an integer"),
    # and these ran without a word, doing something else than written
    ('[[events]]\nat = "0s"\ndo = "crash"\nstep = "nowhere"\n', "step 'nowhere' is not a checkpoint"),
    ('[[events]]\nat = "0s"\ndo = "renew"\nnew_key = "no"\n', "new_key = 'no' is not true or false"),
    ('[[events]]\nat = "0s"\ndo = "mta-stuck"\nstuck = "no"\n', "stuck = 'no' is not true or false"),
    ('[world]\nissuers = { dsa = "YE1" }\n', "world.issuers names a key type other than ecdsa, rsa"),
    # a world of thousands of servers ran for minutes
    ("[world]\nservers = { " + ", ".join(f"n{i} = 0" for i in range(1000)) + " }\n", "1,000 servers, more than 64"),
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
    # events cost more than timer runs: 49,000 renewals (under the step limit) ran for minutes
    from tlsa_manager.simulation.scenario import MAX_EVENTS

    renewal = '[[events]]\nat = "%ds"\ndo = "renew"\nnew_key = true\nissuer = "YE2"\n'
    path.write_text('[world]\ntimer = "off"\n' + "".join(renewal % (i * 60) for i in range(49_000)))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tlsa_manager", "simulate", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 20
    assert result.returncode == 2 and f"49,000 events, more than the limit of {MAX_EVENTS:,}" in result.stderr


def test_missing_scenario(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("simulate", tmp_path / "nope.toml")
    assert result.code == 2 and "no such scenario file" in result.err


def test_a_scenario_saved_with_a_byte_order_mark_runs(cli: CliRunner, tmp_path: Path) -> None:
    """Notepad writes a BOM before the first line; TOML rejects it, so it is not text."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbf[world]\ntimer = "1h"\nuntil = "1d"\n[[events]]\nat = "1h"\ndo = "sync"\n')
    result = cli("simulate", path)
    assert result.code == 0, result.err
