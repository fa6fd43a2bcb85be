"""Bad input a user controls (issue 11, items 4-7): every case is one line on stderr with
the documented exit code, no traceback, no secret, and the zone byte-identical after it.

Each case runs the real CLI in a subprocess against a zone-file site; secrets are
fake values that must never come back in any output or file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone
import pytest

from tlsa_manager.records import Tlsa

from robust_helpers import (
    CHAIN,
    NEXT_KEY,
    TOKEN,
    TSIG_SECRET,
    Run,
    no_secret_anywhere,
    sync_args,
    tlsa_manager,
    tree_snapshot,
    zone_site,
)

OWNER = dns.name.from_text("_25._tcp.mail.example.com.")


def served_tlsa(zone_file: Path) -> frozenset[Tlsa]:
    zone = dns.zone.from_file(str(zone_file), origin="example.com.", relativize=False)
    rdataset = zone.get_rdataset(OWNER, dns.rdatatype.TLSA)
    return frozenset(Tlsa.from_rdata(r) for r in rdataset) if rdataset else frozenset()


def config_site(tmp_path: Path, host_lines: str = "", provider_lines: str = "", top: str = "") -> dict[str, Path]:
    site = zone_site(tmp_path)
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(f"""{top}
state_dir = "{site['state']}"
[providers.z]
type = "zonefile"
zone_file = "{site['zone']}"
{provider_lines}
[hosts."mail.example.com"]
provider = "z"
cert = "{CHAIN}"
{host_lines}
""")
    os.chmod(config, 0o600)
    site["config"] = config
    return site


def assert_refused(tmp_path: Path, result: Run, code: int, *fragments: str) -> None:
    result.one_line_error(code, *fragments)
    no_secret_anywhere(tmp_path, result)


# ------------------------------------------------------------------ item 4: secrets


@pytest.mark.parametrize(
    ("provider", "fragment"),
    [
        (f'type = "cloudflare"\napi_token_env = "{TOKEN}"', "api_token_env must name an environment variable"),
        (f'type = "cloudflare"\napi_token_file = "{TOKEN}"', "cannot read the Cloudflare API token (no such file)"),
        (f'type = "rfc2136"\nserver = "127.0.0.1:53"\ntsig_name = "k."\ntsig_secret_env = "{TSIG_SECRET}"',
         "tsig_secret_env must name"),
        (f'type = "rfc2136"\nserver = "127.0.0.1:53"\ntsig_name = "k."\ntsig_secret_file = "{TSIG_SECRET}"',
         "tsig_secret_file"),
    ],
)
def test_secret_pasted_into_a_name_setting_is_not_echoed(tmp_path: Path, provider: str, fragment: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[providers.p]\n{provider}\n[hosts."mail.example.com"]\ncert = "{CHAIN}"\n')
    result = tlsa_manager("--state-dir", tmp_path / "state", "--config", config, "plan")
    assert_refused(tmp_path, result, 2, fragment)


def test_secret_on_the_command_line_is_refused(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    before = site["zone"].read_bytes()
    for option in ("api_token", "tsig_secret", "token"):
        result = tlsa_manager(*sync_args(site, "--provider-option", f"{option}={TOKEN}"))
        assert_refused(tmp_path, result, 2, "where ps shows it", f"{option}_file")
    assert site["zone"].read_bytes() == before


def test_reload_command_gets_no_secrets_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "env.out"
    site = config_site(tmp_path, provider_lines=f'reload = ["sh", "-c", "env > {out}"]')
    result = tlsa_manager("--config", site["config"], "sync",
                          env={"CLOUDFLARE_API_TOKEN": TOKEN, "DNS_TSIG_SECRET": TSIG_SECRET, "KEEP_ME": "1"})
    assert result.code == 0, result
    seen = out.read_text()
    assert "KEEP_ME=1" in seen  # the environment is passed, minus the secrets
    assert TOKEN not in seen and TSIG_SECRET not in seen


def test_world_readable_tsig_key_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tlsa_manager_providers.rfc2136 import Rfc2136Provider

    key = tmp_path / "tsig.key"
    key.write_text(f'key "k." {{ algorithm hmac-sha256; secret "{TSIG_SECRET}"; }};\n')
    os.chmod(key, 0o644)
    with caplog.at_level(logging.WARNING):
        Rfc2136Provider({"server": "127.0.0.1:53", "tsig_key_file": str(key)})
    assert f"chmod 600 {key}" in caplog.text and TSIG_SECRET not in caplog.text
    caplog.clear()
    os.chmod(key, 0o600)
    with caplog.at_level(logging.WARNING):
        Rfc2136Provider({"server": "127.0.0.1:53", "tsig_key_file": str(key)})
    assert "chmod" not in caplog.text


# ------------------------------------------------------------------ item 5: publishing nowhere


def test_key_that_does_not_match_the_cert_publishes_nothing(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    before = site["zone"].read_bytes()
    result = tlsa_manager(*sync_args(site, "--key", NEXT_KEY))
    assert_refused(tmp_path, result, 2, "does not match")
    assert site["zone"].read_bytes() == before


def test_include_only_in_a_comment_is_refused(tmp_path: Path) -> None:
    site = config_site(tmp_path, provider_lines=f'include_file = "{tmp_path}/zones/tlsa.inc"')
    with open(site["zone"], "a") as handle:
        handle.write(f'; $INCLUDE "{tmp_path}/zones/tlsa.inc"  (disabled)\n')
    before = tree_snapshot(tmp_path / "zones")
    for _ in range(2):
        result = tlsa_manager("--config", site["config"], "sync")
        assert_refused(tmp_path, result, 2, "does not $INCLUDE")
    assert tree_snapshot(tmp_path / "zones") == before


def test_include_that_is_real_still_works(tmp_path: Path) -> None:
    site = config_site(tmp_path, provider_lines=f'include_file = "{tmp_path}/zones/tlsa.inc"')
    with open(site["zone"], "a") as handle:
        handle.write('$INCLUDE "tlsa.inc" ; the tool-owned fragment\n')
    (tmp_path / "zones" / "tlsa.inc").write_text("")
    result = tlsa_manager("--config", site["config"], "sync")
    assert result.code == 0 and "4 added" in result.out, result
    assert tlsa_manager("--config", site["config"], "sync").out.count("nothing to change") == 1


def test_fragment_with_lines_tlsa_manager_did_not_write(tmp_path: Path) -> None:
    """A tool-owned fragment holding someone's own lines (another host's TLSA, an A record):
    plan said "add 4" and exit 0, then sync stopped with exit 1 (a failure outside the
    input, as if a server were down). Both now refuse it as the input error it is
    (exit 2), before anything is written."""
    site = config_site(tmp_path, provider_lines=f'include_file = "{tmp_path}/zones/tlsa.inc"')
    with open(site["zone"], "a") as handle:
        handle.write('$INCLUDE "tlsa.inc"\n')
    (tmp_path / "zones" / "tlsa.inc").write_text("; kept by hand\nwww 300 IN A 192.0.2.80\n")
    before = tree_snapshot(tmp_path / "zones")
    for command in ("plan", "sync"):
        result = tlsa_manager("--config", site["config"], command)
        assert_refused(tmp_path, result, 2, "tlsa.inc: line 2 is not a TLSA line tlsa-manager wrote")
    assert tree_snapshot(tmp_path / "zones") == before


CONFIG_CASES = {
    "no certificate": ('', "no certificate", "cert = "),
    "duplicate port": ("ports = [25, 25]", "lists a port twice", None),
    "slack nan": ("slack = nan", "slack", None),
    "slack inf": ("slack = inf", "slack", None),
    "reload table": ("reload = {a = 1}", "reload must be a list", None),
    "records string": ('records = "3 1 1"', "records must be a list", None),
    "records duplicate": ('records = ["3 1 1", "3 1 1"]', "names a kind twice", None),
    "nameservers string": ('nameservers = "ns1"', "nameservers must be a list", None),
    "nameservers number": ("nameservers = [53]", "nameservers must be a non-empty string", None),
    # the resolver's IDNA codec refused it with a UnicodeError: "internal error", exit 1
    "nameserver not a name": ('nameservers = ["\\u0080"]', "is not a valid host name", None),
    # said only when plan/sync parsed it, without naming the key
    "nameserver bad port": ('nameservers = ["192.0.2.1:99999"]', "nameservers: nameserver '192.0.2.1:99999'", None),
    "negative_ttl list": ("negative_ttl = [1]", "negative_ttl", None),
    "next_keys string": ('next_keys = "k.pem"', "next_keys must be a list", None),
    "provider number": ("provider = 1", "provider 1 is not defined", 'provider = "z"'),
    # both were taken, certs silently winning over cert
    "cert and certs": ('certs = ["other.pem"]', "cert and certs are both given", None),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_host_settings_are_one_line_exit_2(tmp_path: Path, case: str) -> None:
    line, fragment, drop = CONFIG_CASES[case]
    site = config_site(tmp_path, host_lines=line)
    if drop:
        text = site["config"].read_text()
        site["config"].write_text("\n".join(x for x in text.splitlines() if not x.startswith(drop)))
    before = tree_snapshot(tmp_path / "zones")
    result = tlsa_manager("--config", site["config"], "sync")
    assert_refused(tmp_path, result, 2, fragment)
    assert tree_snapshot(tmp_path / "zones") == before


DOC_CASES = {
    "hosts differing by case": ('[hosts."MAIL.example.com"]\ncert = "{chain}"\n', "the same host as another"),
    "hosts differing by dot": ('[hosts."mail.example.com."]\ncert = "{chain}"\n', "the same host as another"),
    "ip literal host": ('[hosts."192.0.2.25"]\ncert = "{chain}"\n', "is an IP address"),
    "ipv6 literal host": ('[hosts."2001:db8::25"]\ncert = "{chain}"\n', "is an IP address"),
    # a newline went into every record comment the Cloudflare provider writes
    "instance with a newline": ('instance = "mx1\\nmx2"\n', "instance must be"),
    "empty host": ('[hosts.""]\ncert = "{chain}"\n', "host name is empty"),
    "host not a table": ('hosts."x.example.com" = 1\n', "must be a table"),
    "defaults not a table": ("defaults = 1\n", "defaults must be a table"),
    "providers a list": ("providers = [1]\n", "providers must be a table"),
    "provider timeout string": ('[providers.r]\ntype = "rfc2136"\nserver = "127.0.0.1"\ntimeout = "soon"\n'
                                'tsig_name = "k."\ntsig_secret_env = "X_TSIG"\n'
                                '[hosts."r.example.com"]\nprovider = "r"\ncert = "{chain}"\n', "timeout"),
    "malformed tsig_name": ('[providers.r]\ntype = "rfc2136"\nserver = "127.0.0.1"\ntsig_name = "a..b"\n'
                            'tsig_secret_env = "X_TSIG"\n[hosts."r.example.com"]\nprovider = "r"\ncert = "{chain}"\n',
                            "TSIG key name"),
}


@pytest.mark.parametrize("case", list(DOC_CASES))
def test_bad_config_documents_are_one_line_exit_2(tmp_path: Path, case: str) -> None:
    extra, fragment = DOC_CASES[case]
    site = config_site(tmp_path)
    extra = extra.format(chain=CHAIN)
    if extra.startswith("providers ="):
        site["config"].write_text(extra + f'[hosts."mail.example.com"]\ncert = "{CHAIN}"\n')
    elif extra.startswith(("defaults", "hosts.", "instance")):
        site["config"].write_text(extra + site["config"].read_text())
    else:
        with open(site["config"], "a") as handle:
            handle.write(extra)
    before = tree_snapshot(tmp_path / "zones")
    result = tlsa_manager("--config", site["config"], "sync", env={"X_TSIG": TSIG_SECRET})
    assert_refused(tmp_path, result, 2, fragment)
    assert tree_snapshot(tmp_path / "zones") == before


# ------------------------------------------------------------------ item 6: paths


def test_relative_zone_file_with_a_directory_component(tmp_path: Path) -> None:
    """The README demo shape, run from the folder above the zone."""
    site = zone_site(tmp_path)
    result = tlsa_manager("--state-dir", "state", "sync", "mail.example.com", "--cert", CHAIN,
                          "--zone-file", "zones/db.example.com", cwd=tmp_path)
    assert result.code == 0 and "4 added" in result.out, result
    assert len(served_tlsa(site["zone"])) == 4


def test_config_zone_file_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    site = zone_site(tmp_path / "site")
    config = tmp_path / "site" / "tlsa.toml"
    config.write_text(f'state_dir = "state"\n[providers.z]\ntype = "zonefile"\nzone_file = "zones/db.example.com"\n'
                      f'[hosts."mail.example.com"]\ncert = "{CHAIN}"\n')
    elsewhere = tmp_path / "other"
    (elsewhere / "zones").mkdir(parents=True)
    unrelated = elsewhere / "zones" / "db.example.com"
    shutil.copy(site["zone"], unrelated)
    before = unrelated.read_bytes()
    result = tlsa_manager("--config", config, "sync", cwd=elsewhere)
    assert result.code == 0 and "4 added" in result.out, result
    assert unrelated.read_bytes() == before
    assert len(served_tlsa(site["zone"])) == 4


# ------------------------------------------------------------------ item 7: no internal error


def test_config_that_is_a_directory_or_not_utf8(tmp_path: Path) -> None:
    tlsa_manager("--config", tmp_path, "plan").one_line_error(2, "is a directory")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# caf\xe9\n[hosts]\n")
    tlsa_manager("--config", bad, "plan").one_line_error(2, "not UTF-8")


def test_deeply_nested_config_and_ledger(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100000 + "]" * 100000 + "\n")
    tlsa_manager("--config", deep, "plan").one_line_error(2, str(deep))
    site = config_site(tmp_path)
    site["state"].mkdir(mode=0o700)
    (site["state"] / "ledger.json").write_text("[" * 100000 + "]" * 100000)
    os.chmod(site["state"] / "ledger.json", 0o600)
    tlsa_manager("--config", site["config"], "sync").one_line_error(1, "ledger.json")


@pytest.mark.parametrize(
    "entry",
    [
        {"owners": {"x": {"managed": [1], "history": []}}},
        {"owners": {"x": {"managed": ["3 1 1 zz"], "history": []}}},
        {"owners": {"x": {"managed": [], "history": [{"first": "soon", "last": 1, "views": []}]}}},
        {"owners": {}, "deploys": {"a": {"deployed": 1, "previous": [], "since": 0}}},
        {"owners": {}, "deploys": {"a": {"deployed": {"label": "x"}, "previous": [], "since": 0}}},
        {"owners": []},
    ],
)
def test_malformed_ledger_entry_is_one_line(tmp_path: Path, entry: dict[str, object]) -> None:
    site = config_site(tmp_path)
    site["state"].mkdir(mode=0o700)
    ledger = site["state"] / "ledger.json"
    ledger.write_text(json.dumps({"schema": 1, "hosts": {"mail.example.com": entry}}))
    os.chmod(ledger, 0o600)
    before = tree_snapshot(tmp_path)
    for command in ("sync", "plan", "status"):
        tlsa_manager("--config", site["config"], command).one_line_error(1, "is damaged")
    after = tree_snapshot(tmp_path)
    after.pop("state/lock", None)  # sync took the (empty) lock file; nothing else changed
    assert after == before


def test_provider_option_without_equals(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    tlsa_manager(*sync_args(site, "--provider-option", "zone")).one_line_error(2, "is not KEY=VALUE")


def test_ca_only_file_as_cert(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    pems = CHAIN.read_text().split("-----END CERTIFICATE-----")
    ca_only = tmp_path / "ca.pem"
    ca_only.write_text(pems[1].strip() + "\n-----END CERTIFICATE-----\n")
    site["chain"] = ca_only
    before = site["zone"].read_bytes()
    tlsa_manager(*sync_args(site)).one_line_error(2, "only CA certificates")
    assert site["zone"].read_bytes() == before


ZONE_CASES = {
    "origin without argument": (b"$ORIGIN\n", 2, "$ORIGIN without a domain name"),
    "origin without argument, comment": (b"$ORIGIN ; nothing\n", 2, "$ORIGIN without a domain name"),
    "bad escape in owner": (b"a\\999b IN A 192.0.2.9\n", 2, "does not parse"),
    "label too long": (b"a" * 64 + b" IN A 192.0.2.9\n", 2, "does not parse"),
}


@pytest.mark.parametrize("case", list(ZONE_CASES))
def test_bad_zone_text_is_one_line_and_nothing_changes(tmp_path: Path, case: str) -> None:
    text, code, fragment = ZONE_CASES[case]
    site = zone_site(tmp_path)
    with open(site["zone"], "ab") as handle:
        handle.write(text)
    before = tree_snapshot(tmp_path / "zones")
    tlsa_manager(*sync_args(site)).one_line_error(code, fragment)
    assert tree_snapshot(tmp_path / "zones") == before


@pytest.mark.parametrize(
    "extra",
    [
        b"; caf\xe9 - a latin-1 comment\n",
        b"\\(weird IN A 192.0.2.9 ; an escaped parenthesis in an owner\n",
        b"a\\065b IN TXT \"x\\\"y\" ; escapes\n",
    ],
)
def test_unusual_but_valid_zone_text_is_kept_byte_exact(tmp_path: Path, extra: bytes) -> None:
    site = zone_site(tmp_path)
    with open(site["zone"], "ab") as handle:
        handle.write(extra)
    before = site["zone"].read_bytes()
    result = tlsa_manager(*sync_args(site))
    assert result.code == 0 and "4 added" in result.out, result
    after = site["zone"].read_bytes()
    assert extra in after and after.startswith(before.split(b"2026112501")[0])
    checker = shutil.which("named-checkzone")
    if checker:
        subprocess.run([checker, "-q", "example.com", str(site["zone"])], check=True)


def test_staged_dir_that_is_a_file(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    staged = tmp_path / "staged"
    staged.write_text("not a folder\n")
    result = tlsa_manager(*sync_args(site, "--staged-dir", staged))
    result.one_line_error(2, "staged_dir is not a directory")


def test_hook_with_staged_dir_that_is_a_file(tmp_path: Path) -> None:
    site = config_site(tmp_path, host_lines=f'staged_dir = "{tmp_path}/staged"')
    (tmp_path / "staged").write_text("not a folder\n")
    key = CHAIN.parent / "privkey.pem"
    result = tlsa_manager("--config", site["config"], "hook", "generic", "--cert", CHAIN, "--key", key,
                          "--host", "mail.example.com")
    result.one_line_error(2, "staged_dir")


def test_move_across_file_systems(tmp_path: Path) -> None:
    """A staged file on another file system than the live one: copied beside the target
    and renamed there (a plain rename fails with EXDEV)."""
    from tlsa_manager.fsutil import move_into_place

    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system")
    source = shm / f"tlsa-robust-{os.getpid()}.pem"
    source.write_bytes(CHAIN.read_bytes())
    os.chmod(source, 0o640)
    target = tmp_path / "live.pem"
    target.write_text("old\n")
    try:
        move_into_place(source, target)
    finally:
        source.unlink(missing_ok=True)
    assert target.read_bytes() == CHAIN.read_bytes() and not source.exists()
    assert oct(target.stat().st_mode & 0o777) == "0o640"
