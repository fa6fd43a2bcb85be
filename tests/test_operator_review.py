"""What an operator's review of the CLI found: each case as the operator typed it (the
CLI as a subprocess), with the exit code and the one line it must print."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pki
from conftest import CLI, EXAMPLES, openssl, openssl_tlsa_data

EXAMPLE = EXAMPLES / "mail.example.com"
HOST = "mail.example.com"


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    """The error contract: the exit code, one line on stderr naming the problem, no traceback."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def zonefile_site(tmp_path: Path, host_lines: str, zone_text: str | None = None) -> Path:
    """A config publishing mail.example.com into a copy of the example zone; returns it."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    zone = tmp_path / "db.example.com"
    if zone_text is None:
        shutil.copy(EXAMPLES / "db.example.com", zone)
    else:
        zone.write_text(zone_text)
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(
        f'state_dir = "{state}"\n[providers.file]\ntype = "zonefile"\nzone_file = "{zone}"\n'
        f'[hosts."{HOST}"]\nprovider = "file"\n{host_lines}'
    )
    return config


def tlsa_lines(zone: Path) -> list[str]:
    return sorted(line for line in zone.read_text().splitlines() if " TLSA " in line)


# ---------------------------------------------------------------- 1. hook with a leaf-only file


def test_example_leaf_is_not_signed_by_the_issuer_it_names() -> None:
    """The example's leaf names YE1, but openssl does not verify it against the bundled
    YE1: the example is a synthetic chain, so the catalog must not vouch for it."""
    verify = subprocess.run(
        ["openssl", "verify", "-partial_chain", "-CAfile", str(EXAMPLES.parent / "tlsa_manager" / "data"
         / "letsencrypt" / "ye1.pem"), str(EXAMPLE / "cert.pem")],
        capture_output=True, text=True,
    )
    assert verify.returncode != 0
    assert "YE1" in openssl("x509", "-in", str(EXAMPLE / "cert.pem"), "-noout", "-issuer").decode()


def _leaf_only_site(tmp_path: Path) -> tuple[Path, Path, dict[str, pki.Issued], pki.Issued]:
    """A host live with a chain of a test catalog's TE1 (its catalog in the state dir), synced."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    _root, cas = pki.make_test_catalog(state / "catalog", "Review Root X1")
    live = pki.make_leaf([HOST], cas["TE1"])
    pki.write(tmp_path / "live" / "ecdsa.pem", live.key_pem, live.pem, cas["TE1"].pem)
    config = zonefile_site(tmp_path, f'cert = "{tmp_path / "live" / "ecdsa.pem"}"\n'
                                     f'staged_dir = "{tmp_path / "staged"}"\n')
    first = run("--config", config, "sync")
    assert first.returncode == 0 and "4 added" in first.stdout, first.stdout + first.stderr
    return config, tmp_path / "db.example.com", cas, live


def test_hook_completes_a_leaf_only_file_from_the_catalog(tmp_path: Path) -> None:
    """`hook generic --cert cert.pem` (certbot's leaf-only file): the issuer comes from the
    catalog, the staged chain carries it, and no "2 1 1" record is withdrawn."""
    config, zone, cas, _live = _leaf_only_site(tmp_path)
    before = tlsa_lines(zone)
    renewed = pki.make_leaf([HOST], cas["TE2"])  # Let's Encrypt picked the sibling
    cert = pki.write(tmp_path / "renewal" / "cert.pem", renewed.pem)
    key = pki.write(tmp_path / "renewal" / "privkey.pem", renewed.key_pem)
    result = run("--config", config, "hook", "generic", "--cert", cert, "--key", key, "--host", HOST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "H9" not in result.stdout and "H26" not in result.stdout and "removed" in result.stdout
    assert " 0 removed" in result.stdout
    staged = (tmp_path / "staged" / "ecdsa.pem").read_bytes()
    assert staged.count(b"BEGIN CERTIFICATE") == 2 and cas["TE2"].pem in staged
    te2 = pki.write(tmp_path / "te2.pem", cas["TE2"].pem)
    assert f"2 1 1 {openssl_tlsa_data(te2, 1, 1)}" in "\n".join(tlsa_lines(zone))
    assert set(before) <= set(tlsa_lines(zone))  # every issuer record is still there


def test_hook_refuses_a_leaf_only_file_of_an_unknown_issuer(tmp_path: Path) -> None:
    """A leaf-only file whose issuer the catalog does not know: a hazard (exit 4), nothing
    staged, nothing removed; never a silent withdrawal of the issuer records."""
    config, zone, _cas, _live = _leaf_only_site(tmp_path)
    before = tlsa_lines(zone)
    other = pki.make_ca("Other CA", pki.make_key("p384"))
    renewed = pki.make_leaf([HOST], other)
    cert = pki.write(tmp_path / "renewal" / "cert.pem", renewed.pem)
    key = pki.write(tmp_path / "renewal" / "privkey.pem", renewed.key_pem)
    result = run("--config", config, "hook", "generic", "--cert", cert, "--key", key, "--host", HOST)
    one_line_error(result, 4, "H9", "not in the issuer catalog", "nothing staged", "full chain")
    assert not (tmp_path / "staged" / "ecdsa.pem").exists()
    assert tlsa_lines(zone) == before


def test_hook_refuses_the_example_leaf_whose_named_issuer_did_not_sign_it(tmp_path: Path) -> None:
    """The example's cert.pem names YE1 but YE1's key did not sign it: refused as a hazard,
    and the YE1-3 records of the live fullchain stay."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(EXAMPLE / "fullchain.pem", live / "fullchain.pem")
    config = zonefile_site(tmp_path, f'cert = "{live / "fullchain.pem"}"\nkey = "{EXAMPLE / "privkey.pem"}"\n'
                                     f'staged_dir = "{tmp_path / "staged"}"\n')
    assert run("--config", config, "sync").returncode == 0
    zone = tmp_path / "db.example.com"
    before = tlsa_lines(zone)
    result = run("--config", config, "hook", "generic", "--cert", EXAMPLE / "cert.pem",
                 "--key", EXAMPLE / "privkey.pem", "--host", HOST)
    one_line_error(result, 4, "H9", "YE1", "no catalog certificate of that name signed it")
    assert tlsa_lines(zone) == before and sum(" 2 1 1 " in line for line in before) == 3


def test_hook_given_the_live_certificate_stages_nothing(tmp_path: Path) -> None:
    """`hook generic --cert live/fullchain.pem` (a hook run twice, or pointed at the live
    file): the live file already holds it, so nothing is staged and no deploy waits."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(EXAMPLE / "fullchain.pem", live / "fullchain.pem")
    shutil.copy(EXAMPLE / "privkey.pem", live / "privkey.pem")
    config = zonefile_site(tmp_path, f'cert = "{live / "fullchain.pem"}"\nkey = "{live / "privkey.pem"}"\n'
                                     f'staged_dir = "{tmp_path / "staged"}"\n')
    assert run("--config", config, "sync").returncode == 0
    result = run("--config", config, "hook", "generic", "--cert", live / "fullchain.pem",
                 "--key", live / "privkey.pem", "--host", HOST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is already live; nothing staged" in result.stdout and "deploy" not in result.stdout, result.stdout
    assert not (tmp_path / "staged").exists() or not list((tmp_path / "staged").iterdir())


# ---------------------------------------------------------------- 2. a write that does not happen


def _status_managed(config: Path) -> int:
    status = run("--config", config, "status")
    assert status.returncode == 0, status.stderr
    return status.stdout.count("managed:")


def test_host_outside_the_zone_is_a_config_error_for_plan_and_sync(tmp_path: Path) -> None:
    """plan said "add 4" and sync then failed with exit 1: the zone is checked when read,
    so both say it (exit 2), nothing is written and the ledger records nothing."""
    config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\n')
    config.write_text(config.read_text().replace(f'[hosts."{HOST}"]', '[hosts."mail.other.org"]'))
    zone_before = (tmp_path / "db.example.com").read_text()
    for command in ("plan", "sync"):
        one_line_error(run("--config", config, command), 2, "_25._tcp.mail.other.org.",
                       "outside the zone example.com.")
    assert (tmp_path / "db.example.com").read_text() == zone_before
    assert _status_managed(config) == 0


def test_a_write_refused_as_bad_input_leaves_no_managed_records(tmp_path: Path) -> None:
    """named-checkzone rejects the zone as it is (CNAME and other data): "nothing was
    changed", so status must not list the four records as managed."""
    if shutil.which("named-checkzone") is None:  # the machine has bind9 (scripts/test)
        raise AssertionError("named-checkzone is not installed")
    text = (EXAMPLES / "db.example.com").read_text() + "www IN CNAME mail\nwww IN A 192.0.2.80\n"
    config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\n', zone_text=text)
    one_line_error(run("--config", config, "sync"), 2, "does not parse as it is", "nothing was changed")
    assert (tmp_path / "db.example.com").read_text() == text
    assert _status_managed(config) == 0



def test_fragment_the_zone_does_not_include_is_found_by_plan(tmp_path: Path) -> None:
    """include_file the zone never $INCLUDEs: plan says so (exit 2), not only sync."""
    config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\n')
    fragment = tmp_path / "db.example.com.tlsa"
    config.write_text(config.read_text().replace('type = "zonefile"\n', f'type = "zonefile"\ninclude_file = "{fragment}"\n'))
    for command in ("plan", "sync"):
        one_line_error(run("--config", config, command), 2, f"does not $INCLUDE {fragment}")
    assert not fragment.exists() and _status_managed(config) == 0

# ---------------------------------------------------------------- 3. files that are not what they should be


def test_empty_binary_or_soa_less_zone_file_is_not_a_zone_file(tmp_path: Path) -> None:
    """Was "outside the zone" (exit 1): the file is not a zone file at all."""
    files = {
        "empty.zone": (b"", "it is empty"),
        "random.bin": (bytes(range(256)) * 8, "it holds binary data"),
        "hosts.txt": (b"; a comment\nfoo IN A 192.0.2.1\n", "no SOA record"),
    }
    for name, (data, why) in files.items():
        zone = tmp_path / name
        zone.write_bytes(data)
        for command in ("plan", "sync"):
            result = run("--state-dir", tmp_path / "state", command, HOST, "--cert", EXAMPLE / "fullchain.pem",
                         "--zone-file", zone)
            one_line_error(result, 2, f"{zone} is not a zone file ({why})", "--zone-file")
        assert zone.read_bytes() == data


def test_private_key_given_as_cert_is_refused(tmp_path: Path) -> None:
    """A private key is not what the MTA serves: exit 2 naming the file, nothing written."""
    zone = tmp_path / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    for command in ("plan", "sync"):
        result = run("--state-dir", tmp_path / "state", command, HOST, "--cert", EXAMPLE / "privkey.pem",
                     "--zone-file", zone)
        one_line_error(result, 2, "privkey.pem: holds a key but no certificate", "--cert", "--key")
    assert zone.read_text() == (EXAMPLES / "db.example.com").read_text()


# ---------------------------------------------------------------- 4. probe, and flags next to --config


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when this returns: nobody listens


def test_unreachable_probe_is_said_to_be_unreachable(tmp_path: Path) -> None:
    """A configured probe that does not answer was reported as "set probe = ...", a hint
    to set what is set: the note now names the address and why."""
    port = _closed_port()
    config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\nprobe = "127.0.0.1"\n'
                                     f"probe_port = {port}\n")
    result = run("--config", config, "sync")
    assert result.returncode == 0, result.stderr
    assert f"probe 127.0.0.1:{port} is unreachable" in result.stdout, result.stdout
    assert "set probe" not in result.stdout


def test_invalid_probe_address_is_refused_at_config_load(tmp_path: Path) -> None:
    for value in ('"not an address:xx"', '"127.0.0.1:25"', '""'):
        config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\nprobe = {value}\n')
        one_line_error(run("--config", config, "plan"), 2, 'hosts."mail.example.com".probe must be')
    for value in ('"::1"', '"localhost"', '"mx1.example.com"'):
        config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\nprobe = {value}\n')
        assert run("--config", config, "export").returncode == 0


def test_one_off_flags_next_to_config_are_refused_by_name(tmp_path: Path) -> None:
    """--ttl / --record next to --config were silently ignored: refused, naming the flag."""
    config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\n')
    zone_before = (tmp_path / "db.example.com").read_text()
    for flags, name in ((["--ttl", "300"], "--ttl"), (["--record", "3 1 1"], "--record"),
                        (["--cert", EXAMPLE / "fullchain.pem"], "--cert")):
        for command in ("plan", "sync", "export"):
            result = run("--config", config, command, HOST, *flags)
            one_line_error(result, 2, f"{name} cannot be combined with --config", str(config))
    assert (tmp_path / "db.example.com").read_text() == zone_before
    # without a file and without --cert, the flag describes nothing: said, not ignored
    one_line_error(run("--state-dir", tmp_path / "state", "plan", HOST, "--ttl", "300"), 2, "--ttl needs --cert")


# ---------------------------------------------------------------- 5. smaller ones


def test_empty_state_dir_or_config_is_a_usage_error(tmp_path: Path) -> None:
    """`--state-dir ''` (an unset variable in a script) silently used the default."""
    for option in ("--state-dir", "--config"):
        one_line_error(run(option, "", "status"), 2, f"argument {option}: is empty")
    # the same in the file: `state_dir = ""` silently used /var/lib/tlsa-manager
    config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\n')
    text = config.read_text()
    config.write_text(text.replace(f'state_dir = "{tmp_path / "state"}"', 'state_dir = ""'))
    one_line_error(run("--config", config, "status"), 2, "state_dir must be a path (a string), not empty")


def test_state_dir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    """Was exit 3 (refused as unsafe) for plan and exit 1 for sync: it is a wrong argument."""
    afile = tmp_path / "afile"
    afile.write_text("")
    zone = tmp_path / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    for command in ("plan", "sync"):
        result = run("--state-dir", afile, command, HOST, "--cert", EXAMPLE / "fullchain.pem", "--zone-file", zone)
        one_line_error(result, 2, f"{afile}: the state directory is not a directory")
    one_line_error(run("--state-dir", afile, "status"), 2, "is not a directory")


def test_config_mistakes_name_the_right_key(tmp_path: Path) -> None:
    """zone_file = 5 is "must be a path (a string)"; a mistake in [defaults] names
    defaults.KEY, not the first host that inherits it."""
    config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\n')
    text = config.read_text()
    config.write_text(text.replace(f'zone_file = "{tmp_path / "db.example.com"}"', "zone_file = 5"))
    one_line_error(run("--config", config, "plan"), 2, "providers.file.zone_file must be a path (a string), not a number")
    for defaults, words in (('ttl = "x"', "defaults.ttl must be a whole number"),
                            ('slack = "-5m"', "defaults.slack:"),
                            ('probe = "a b"', "defaults.probe must be an IP address"),
                            ("colour = 1", "defaults: unknown key(s) colour")):
        config.write_text(f"{text}\n[defaults]\n{defaults}\n")
        result = run("--config", config, "plan")
        one_line_error(result, 2, words)
        assert "hosts." not in result.stderr


def test_config_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    config = zonefile_site(tmp_path, f'cert = "{EXAMPLE / "fullchain.pem"}"\n')
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    result = run("--config", config, "plan")
    assert result.returncode == 0 and "add 4" in result.stdout, result.stderr


def test_check_of_an_ip_address_says_it_needs_a_name() -> None:
    for target in ("192.0.2.25", "2001:db8::25"):
        one_line_error(run("check", target), 2, "an IP address is not a mail domain or an MX host name")


def test_idn_host_gets_its_a_label(tmp_path: Path) -> None:
    zone = tmp_path / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    result = run("--state-dir", tmp_path / "state", "plan", "mail.exämple.com", "--cert", EXAMPLE / "fullchain.pem",
                 "--zone-file", zone)
    one_line_error(result, 2, "mail.xn--exmple-cua.com")
    assert "mail.exämple.com".encode("idna") == b"mail.xn--exmple-cua.com"  # the A-label, by Python's codec
    one_line_error(run("check", "exämple.com"), 2, "xn--exmple-cua.com")


def test_at_accepts_signed_durations_and_says_which_forms(tmp_path: Path) -> None:
    zone = tmp_path / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    base: list[str | Path] = ["--state-dir", tmp_path / "state", "plan", HOST, "--cert", EXAMPLE / "fullchain.pem", "--zone-file", zone]
    for at in (["--at", "-3h"], ["--at=-3h"], ["--at", "+6h"]):
        result = run(*base, *at)
        assert result.returncode == 0 and "add 4" in result.stdout, result.stderr
    for bad in ("3h", "yesterday", "-3x"):
        one_line_error(run(*base, "--at", bad), 2, f"--at {bad!r} is not a time", "+DURATION", "-DURATION", "ISO 8601")


def test_crlf_zone_keeps_its_line_ending(tmp_path: Path) -> None:
    """A CRLF zone with one LF line: the records written end in CRLF (the dominant ending),
    every other line stays byte for byte."""
    original = (EXAMPLES / "db.example.com").read_bytes().replace(b"\n", b"\r\n") + b"extra IN A 192.0.2.9\n"
    zone = tmp_path / "db.example.com"
    zone.write_bytes(original)
    result = run("--state-dir", tmp_path / "state", "sync", HOST, "--cert", EXAMPLE / "fullchain.pem",
                 "--zone-file", zone)
    assert result.returncode == 0, result.stderr
    lines = zone.read_bytes().splitlines(keepends=True)
    tlsa = [line for line in lines if line.startswith(b"_25._tcp.")]
    assert len(tlsa) == 4 and all(line.endswith(b"\r\n") for line in tlsa)
    assert [line for line in lines if not line.endswith(b"\r\n")] == [b"extra IN A 192.0.2.9\n"]
