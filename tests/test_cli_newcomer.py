"""What a newcomer types first: global options on either side of the command, `export`
with only a certificate, `status` with only a state directory, `records` that prints the
set that is safe to publish."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import CLI, EXAMPLES, LE_DATA, CliRunner, Result, openssl_tlsa_data

EXAMPLE = EXAMPLES / "mail.example.com"


def _sync_example(cli: CliRunner, tmp_path: Path, *where: str | Path) -> Result:
    zone = tmp_path / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    return cli("sync", "mail.example.com", "--cert", EXAMPLE / "fullchain.pem", "--zone-file", zone, *where)


def test_global_options_after_the_command(cli: CliRunner, tmp_path: Path) -> None:
    state = tmp_path / "after"
    result = _sync_example(cli, tmp_path, "--state-dir", state, "--json")
    assert result.code == 0, result.err
    assert result.json()["hosts"][0]["host"] == "mail.example.com"  # --json after the command
    assert (state / "ledger.json").exists() or any(state.iterdir())  # --state-dir after the command
    listing = cli("catalog", "list", "--json", "-q")
    assert listing.code == 0 and listing.json()["origin"] == "bundled"


def test_global_option_before_is_not_reset_by_the_command(cli: CliRunner, tmp_path: Path) -> None:
    state = tmp_path / "before"
    zone = tmp_path / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    result = cli("--state-dir", state, "--json", "sync", "mail.example.com",
                 "--cert", EXAMPLE / "fullchain.pem", "--zone-file", zone)
    assert result.code == 0, result.err
    assert result.json()["hosts"][0]["host"] == "mail.example.com"
    assert any(state.iterdir())


def test_export_with_only_a_certificate_prints_the_records(cli: CliRunner) -> None:
    result = cli("export", "mail.example.com", "--cert", EXAMPLE / "fullchain.pem",
                 "--next-key", EXAMPLE / "next-key.pem")
    assert result.code == 0, result.err
    leaf = openssl_tlsa_data(EXAMPLE / "cert.pem", 1, 1)
    nxt = openssl_tlsa_data(EXAMPLE / "next-key.pem", 1, 1, key=True)
    lines = [line for line in result.out.splitlines() if not line.startswith(";")]
    assert f"_25._tcp.mail.example.com. 3600 IN TLSA 3 1 1 {leaf} ; live" in lines
    assert f"_25._tcp.mail.example.com. 3600 IN TLSA 3 1 1 {nxt} ; next" in lines
    for name in ("ye1", "ye2", "ye3"):  # every issuer Let's Encrypt may use for an ECDSA key
        assert any(f"2 1 1 {openssl_tlsa_data(LE_DATA / f'{name}.pem', 1, 1)}" in line for line in lines)
    nsupdate = cli("export", "mail.example.com", "--cert", EXAMPLE / "fullchain.pem", "--format", "nsupdate")
    assert nsupdate.code == 0 and f"update add _25._tcp.mail.example.com. 3600 IN TLSA 3 1 1 {leaf}" in nsupdate.out
    as_json = cli("export", "mail.example.com", "--cert", EXAMPLE / "fullchain.pem", "--format", "json")
    assert as_json.code == 0 and {r["record"] for r in as_json.json()["records"]} >= {f"3 1 1 {leaf}"}


def test_export_json_with_another_format_is_a_usage_error(cli: CliRunner) -> None:
    """`--json` is `--format json`; `--format zone --json` asks for two outputs, and the old
    code silently printed JSON where the user asked for zone lines."""
    cert = ("export", "mail.example.com", "--cert", EXAMPLE / "fullchain.pem")
    for form in ("zone", "nsupdate"):
        both = cli(*cert, "--format", form, "--json")
        assert both.code == 2 and both.out == ""
        assert both.err.count("\n") == 1 and f"--format {form} --json" in both.err and "leave out" in both.err
        before = cli("--json", *cert, "--format", form)  # the global option before the command
        assert before.code == 2 and before.out == ""
    agreeing = cli(*cert, "--format", "json", "--json")
    assert agreeing.code == 0 and agreeing.json()["records"]
    alone = cli(*cert, "--json")
    assert alone.code == 0 and alone.json() == agreeing.json()
    zone = cli(*cert)
    assert zone.code == 0 and zone.out.startswith("; mail.example.com")


def test_status_from_the_ledger_alone(cli: CliRunner, tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert _sync_example(cli, tmp_path, "--state-dir", state).code == 0
    result = cli("status", "--state-dir", state)
    assert result.code == 0, result.err
    leaf = openssl_tlsa_data(EXAMPLE / "cert.pem", 1, 1)
    assert "mail.example.com:" in result.out and f"managed: 3 1 1 {leaf}" in result.out
    unknown = cli("status", "other.example.com", "--state-dir", state)
    assert unknown.code == 2 and unknown.err.count("\n") == 1 and "known: mail.example.com" in unknown.err
    empty = cli("status", "--state-dir", tmp_path / "empty")
    assert empty.code == 0 and "knows no host yet" in empty.out


def test_records_default_is_the_safe_set_and_roots_on_request(cli: CliRunner) -> None:
    default = cli("records", EXAMPLE / "fullchain.pem")
    assert default.code == 0
    assert len(default.out.splitlines()) == 2  # the key and YE1, no cross-signed roots
    assert "left out 2 1 1 for ISRG Root YE, ISRG Root X2" in default.err
    assert "YE2, YE3" in default.err and "export" in default.err
    roots = cli("records", EXAMPLE / "fullchain.pem", "--include-roots")
    assert roots.code == 0 and len(roots.out.splitlines()) == 4
    assert "pins a root key" in roots.err


def test_closed_pipe_is_not_an_error_message() -> None:
    """`tlsa-manager ... | head -1` stops quietly: no 'internal error', no traceback."""
    # The reader has exited long before the CLI writes (interpreter start-up is slower).
    result = subprocess.run(["bash", "-c", f"{' '.join(CLI)} catalog list | true"], capture_output=True, text=True)
    assert result.stderr == ""


def test_export_uses_the_catalog_of_the_configured_state_dir(cli: CliRunner, tmp_path: Path) -> None:
    """`state_dir` in the configuration counts for `export` as for plan, sync and status:
    a catalog refreshed there (here a test CA's) is the one whose issuers are exported."""
    import pki

    state = tmp_path / "configured-state"  # not the fixture's $TLSA_MANAGER_STATE_DIR
    _root, cas = pki.make_test_catalog(state / "catalog", "Export Root X1")
    leaf = pki.make_leaf(["mail.example.com"], cas["TE1"])
    chain = pki.write(tmp_path / "ecdsa.pem", leaf.pem, cas["TE1"].pem)
    zone = tmp_path / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(f'state_dir = "{state}"\n[providers.file]\ntype = "zonefile"\nzone_file = "{zone}"\n'
                      f'[hosts."mail.example.com"]\nprovider = "file"\ncert = "{chain}"\n')
    result = cli("--config", config, "export", "mail.example.com")
    assert result.code == 0, result.err
    for name in ("TE1", "TE2"):  # the configured catalog's active issuers
        ca = pki.write(tmp_path / f"{name}.pem", cas[name].pem)
        assert f"2 1 1 {openssl_tlsa_data(ca, 1, 1)}" in result.out
