"""Root-safe files (issue 11, items 1-3 and 8): planted symlinks, symlinked zones, a ledger
another user could forge, FIFOs and devices, a reload whose child keeps its pipes open.

The attacks are made as user ``nobody`` against a root run where they need a second
user (the tests run as root); dnspython reading the zone file is the oracle for what a
name server would load.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone
import pytest

from tlsa_manager.errors import ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager_providers.zonefile import ZoneFileProvider

from robust_helpers import as_nobody, shared_dir, sync_args, tlsa_manager, tree_snapshot, zone_site

__all__ = ["shared_dir"]  # the fixture, imported for pytest

OWNER = dns.name.from_text("_25._tcp.mail.example.com.")
NEW = Tlsa.from_text("3 1 1 " + "bb" * 32)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks need root and user nobody")


def served_tlsa(zone_file: Path) -> frozenset[Tlsa]:
    """What a name server loading this file would serve (dnspython as the oracle)."""
    zone = dns.zone.from_file(str(zone_file), origin="example.com.", relativize=False)
    rdataset = zone.get_rdataset(OWNER, dns.rdatatype.TLSA)
    return frozenset(Tlsa.from_rdata(r) for r in rdataset) if rdataset else frozenset()


# ------------------------------------------------------------------ item 1: planted links


def test_link_planted_at_the_old_candidate_name_is_not_followed(shared_dir: Path) -> None:
    """nobody may write the zone folder (root:nogroup 0775, like /var/lib/bind); it plants
    a link where root used to write its check copy; root's sync must not write through it."""
    site = zone_site(shared_dir)
    victim = shared_dir / "profile.sh"
    victim.write_text("# root's login script\n")
    os.chown(site["zones"], 0, 65534)
    os.chmod(site["zones"], 0o775)
    as_nobody("ln", "-s", str(victim), str(site["zones"] / ".db.example.com.tlsa-manager-check"))
    result = tlsa_manager(*sync_args(site))
    assert result.code == 0, result
    assert victim.read_text() == "# root's login script\n"
    assert len(served_tlsa(site["zone"])) == 4
    assert os.path.islink(site["zones"] / ".db.example.com.tlsa-manager-check")
    leftovers = [p.name for p in site["zones"].iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_lock_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    site["state"].mkdir(mode=0o700)
    elsewhere = tmp_path / "created-by-root"
    os.symlink(elsewhere, site["state"] / "lock")
    result = tlsa_manager(*sync_args(site))
    result.one_line_error(3, "lock")
    assert not elsewhere.exists()


def test_ledger_that_is_a_link_is_refused(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    site["state"].mkdir(mode=0o700)
    target = tmp_path / "elsewhere.json"
    target.write_text('{"schema": 1, "hosts": {}}\n')
    os.symlink(target, site["state"] / "ledger.json")
    before = site["zone"].read_bytes()
    result = tlsa_manager(*sync_args(site))
    result.one_line_error(3, "ledger.json")
    assert site["zone"].read_bytes() == before and target.read_text() == '{"schema": 1, "hosts": {}}\n'


# ------------------------------------------------------------------ item 2: symlinked zone


def test_symlinked_zone_is_edited_at_its_target(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "db.example.com"
    shutil.move(site["zone"], real)
    os.chmod(real, 0o640)
    os.symlink(real, site["zone"])
    result = tlsa_manager(*sync_args(site))
    assert result.code == 0 and "4 added" in result.out, result
    assert site["zone"].is_symlink() and os.readlink(site["zone"]) == str(real)
    assert len(served_tlsa(real)) == 4  # the file the server loads has the records
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    again = tlsa_manager(*sync_args(site))
    assert again.code == 0 and "nothing to change" in again.out, again


def test_zone_link_to_a_fifo_is_refused_quickly(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    site["zone"].unlink()
    os.symlink(fifo, site["zone"])
    result = tlsa_manager(*sync_args(site), timeout=30)
    result.one_line_error(2, "not a regular file")


# ------------------------------------------------------------------ item 3: the ledger's trust


def _first_sync(site: dict[str, Path]) -> None:
    result = tlsa_manager(*sync_args(site))
    assert result.code == 0, result
    assert stat.S_IMODE(site["state"].stat().st_mode) == 0o700  # created private


def test_world_writable_state_dir_is_refused_and_nothing_changes(shared_dir: Path) -> None:
    """nobody rewrites the history in a world-writable state dir; root's run refuses it."""
    site = zone_site(shared_dir)
    _first_sync(site)
    os.chmod(site["state"], 0o777)
    forged = {"schema": 1, "hosts": {}}
    as_nobody("sh", "-c", f"rm -f {site['state']}/ledger.json && echo '{json.dumps(forged)}' > "
              f"{site['state']}/ledger.json")
    before = tree_snapshot(shared_dir)
    for command in (sync_args(site), ["--state-dir", site["state"], "plan", "mail.example.com",
                                      "--cert", site["chain"], "--zone-file", site["zone"]]):
        result = tlsa_manager(*command)
        result.one_line_error(3, f"chmod 700 {site['state']}")
    assert tree_snapshot(shared_dir) == before


def test_ledger_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    _first_sync(site)
    os.chown(site["state"] / "ledger.json", 65534, 65534)
    result = tlsa_manager(*sync_args(site))
    result.one_line_error(3, "ledger.json", "not by this user or root")
    # the fix says what fixes it: chmod alone leaves the owner, and the next run refuses again
    assert f"chown {os.geteuid()} {site['state'] / 'ledger.json'}" in result.err, result.err


def test_group_writable_ledger_is_refused(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    _first_sync(site)
    os.chmod(site["state"] / "ledger.json", 0o660)
    tlsa_manager(*sync_args(site)).one_line_error(3, "chmod 600")


def test_state_dir_under_a_folder_others_can_write_is_refused(shared_dir: Path) -> None:
    open_parent = shared_dir / "open"
    open_parent.mkdir()
    os.chmod(open_parent, 0o777)  # not sticky: nobody could rename the state dir away
    site = zone_site(shared_dir)
    site["state"] = open_parent / "state"
    tlsa_manager(*sync_args(site)).one_line_error(3, str(open_parent))


def test_unprivileged_user_with_its_own_state_dir_works(shared_dir: Path) -> None:
    """The checks accept a state dir owned by the running user (not only root)."""
    site = zone_site(shared_dir)
    os.chown(site["zones"], 65534, 65534)
    os.chown(site["zone"], 65534, 65534)
    site["state"] = site["zones"] / "state"
    result = tlsa_manager(*sync_args(site), user="nobody")
    assert result.code == 0 and "4 added" in result.out, result
    assert site["state"].stat().st_uid == 65534
    assert stat.S_IMODE(site["state"].stat().st_mode) == 0o700


# ------------------------------------------------------------------ item 8: FIFOs, devices, pipes


@pytest.mark.parametrize("which", ["cert", "config", "zone"])
def test_fifo_input_is_refused_not_waited_for(tmp_path: Path, which: str) -> None:
    site = zone_site(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    if which == "cert":
        site["chain"] = fifo
        args = sync_args(site)
    elif which == "zone":
        site["zone"] = fifo
        args = sync_args(site)
    else:
        args = ["--state-dir", site["state"], "--config", fifo, "plan"]
    started = time.monotonic()
    result = tlsa_manager(*args, timeout=30)
    assert time.monotonic() - started < 25
    result.one_line_error(2, "not a regular file")
    if which == "zone":  # the lock was released: the next run is not blocked
        site["zone"] = tmp_path / "zones" / "db.example.com"
        assert tlsa_manager(*sync_args(site)).code == 0


def test_device_as_certificate_is_refused(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    site["chain"] = Path("/dev/zero")
    tlsa_manager(*sync_args(site), timeout=30).one_line_error(2, "/dev/zero")


def test_oversized_certificate_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.pem"
    with open(big, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: no disk used
    tlsa_manager("records", big, timeout=30).one_line_error(2, "more than")


def _zone_change(zone: Path, reload: list[str]) -> ZoneFileProvider:
    provider = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com", "reload": reload})
    change = OwnerChange(OWNER, frozenset(), frozenset({NEW}), frozenset(), 300, 300)
    started = time.monotonic()
    provider.apply(ChangeSet((change,)))
    assert time.monotonic() - started < 15
    return provider


def test_reload_whose_child_keeps_stdout_open_is_not_waited_for(tmp_path: Path) -> None:
    """`systemctl reload`-like: the command exits 0 at once, a daemon child lives on with
    the same stdout.  Waiting for the pipe would take 60 s and report a failure."""
    site = zone_site(tmp_path)
    _zone_change(site["zone"], ["sh", "-c", "sleep 20 & echo started; exit 0"])
    assert NEW in served_tlsa(site["zone"])


def test_failed_reload_names_the_command_not_its_output(tmp_path: Path) -> None:
    site = zone_site(tmp_path)
    with pytest.raises(ProviderError) as caught:
        _zone_change(site["zone"], ["sh", "-c", "echo 'secret \"c2VjcmV0\";' >&2; exit 3"])
    assert "'sh' exited 3" in caught.value.one_line() and "c2VjcmV0" not in caught.value.one_line()


def test_unwritable_zone_directory_is_one_line(shared_dir: Path) -> None:
    site = zone_site(shared_dir)
    os.chown(site["zones"], 0, 0)
    os.chmod(site["zones"], 0o755)
    os.chown(site["zone"], 65534, 65534)  # nobody may write the file, not its folder
    before = site["zone"].read_bytes()
    site["state"].mkdir()
    os.chown(site["state"], 65534, 65534)
    result = tlsa_manager(*sync_args(site), user="nobody")
    assert result.code in (1, 2), result
    result.one_line_error(result.code, "permission denied")
    assert site["zone"].read_bytes() == before


def test_unwritable_state_directory_is_one_line(shared_dir: Path) -> None:
    site = zone_site(shared_dir)
    os.chown(site["zones"], 65534, 65534)
    os.chown(site["zone"], 65534, 65534)
    site["state"].mkdir(mode=0o755)  # root's, readable: nobody may not write it
    result = tlsa_manager(*sync_args(site), user="nobody")
    result.one_line_error(1, str(site["state"]))


COMMANDS = {
    "records": ["records", "{f}"],
    "catalog show": ["catalog", "show", "{f}"],
    "simulate": ["simulate", "{f}"],
    "check --records": ["check", "--records", "{f}", "mail.example.com"],
    "plan --config": ["--config", "{f}", "plan"],
    "sync --config": ["--config", "{f}", "sync"],
    "status --config": ["--config", "{f}", "status"],
    "export --config": ["--config", "{f}", "export"],
    "hook --config": ["--config", "{f}", "hook", "generic", "--cert", "x", "--key", "y", "--host", "z"],
}


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_a_file_that_is_not_a_regular_file(
    tmp_path: Path, command: str, kind: str
) -> None:
    """Every command that reads a file the user names: a FIFO, a directory or a device
    is one line, exit 2, at once (never a hang, never an internal error)."""
    target = {"fifo": tmp_path / "fifo", "directory": tmp_path, "device": Path("/dev/zero")}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    args = [a.format(f=target) for a in COMMANDS[command]]
    result = tlsa_manager("--state-dir", tmp_path / "state", *args, timeout=30)
    result.one_line_error(2, str(target))
