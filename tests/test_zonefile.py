"""The zone-file provider: byte-for-byte edits, serials, validation, atomic replace, a real BIND loads it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest

from tlsa_manager.errors import ConfigError, ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager_providers.zonefile import ZoneFileProvider, bump_serial

from servers import free_port, require

OLD = Tlsa.from_text("3 1 1 " + "aa" * 32)
NEW = Tlsa.from_text("3 1 1 " + "bb" * 32)
OWNER = dns.name.from_text("_25._tcp.mail.example.com.")

ZONE = """; example.com, hand-written
$ORIGIN example.com.
$TTL 3600
@   IN  SOA ns1 hostmaster (
        2026112401 ; serial
        7200 3600 1209600 300 )
    IN  NS  ns1
ns1 IN  A   192.0.2.1
mail IN A 192.0.2.25   ; the MX
_25._tcp.mail 300 IN TLSA 3 1 1 {old}
              300 IN TLSA 2 1 1 {ye1}
    IN  TXT "after the TLSA lines (implicit owner)"
$INCLUDE extra.inc
www IN  A   192.0.2.80
"""
YE1 = "6ebcefb4210b088654a38b03fea3d7d1c711b4fb1ddc363a45f9b1a4e53da01e"


@pytest.fixture
def zone(tmp_path: Path) -> Path:
    (tmp_path / "extra.inc").write_text("ftp IN A 192.0.2.21\n")
    path = tmp_path / "db.example.com"
    path.write_text(ZONE.format(old=OLD.data.hex(), ye1=YE1))
    os.chmod(path, 0o640)
    return path


def change(expected: set[Tlsa], add: set[Tlsa], delete: set[Tlsa], ttl: int = 300) -> ChangeSet:
    return ChangeSet((OwnerChange(OWNER, frozenset(expected), frozenset(add), frozenset(delete), ttl, ttl),))


def test_only_managed_lines_change(zone: Path) -> None:
    before = zone.read_text()
    ye1 = Tlsa.from_text(f"2 1 1 {YE1}")
    provider = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com"})
    provider.apply(change({OLD, ye1}, {NEW}, {OLD}))
    serial = bump_serial(2026112401, dt.datetime.now(dt.UTC).date())
    expected = before.replace("2026112401 ; serial", f"{serial} ; serial").replace(
        f"_25._tcp.mail 300 IN TLSA 3 1 1 {OLD.data.hex()}\n              300 IN TLSA 2 1 1 {YE1}\n",
        f"_25._tcp.mail.example.com. 300 IN TLSA 2 1 1 {YE1}\n"
        f"_25._tcp.mail.example.com. 300 IN TLSA 3 1 1 {NEW.data.hex()}\n")
    assert expected != before
    assert zone.read_text() == expected  # every other byte, comment and directive kept
    assert provider.read([OWNER])[OWNER].records == {NEW, ye1}
    assert oct(os.stat(zone).st_mode & 0o777) == "0o640"


def test_implicit_owner_after_removed_line_keeps_its_meaning(tmp_path: Path) -> None:
    path = tmp_path / "db.example.com"
    path.write_text(f"$ORIGIN example.com.\n@ 300 IN SOA ns1 hm 1 60 60 600 60\n  300 IN NS ns1\nns1 300 IN A 192.0.2.1\n"
                    f"_25._tcp.mail 300 IN TLSA 3 1 1 {OLD.data.hex()}\nwww 300 IN A 192.0.2.80\n"
                    f"_25._tcp.mail 300 IN TLSA 2 1 1 {YE1}\n        300 IN TXT \"belongs to _25._tcp.mail\"\n")
    provider = ZoneFileProvider({"zone_file": str(path), "zone": "example.com"})
    ye1 = Tlsa.from_text(f"2 1 1 {YE1}")
    provider.apply(change({OLD, ye1}, {NEW}, {OLD}))
    import dns.rdatatype as rt
    import dns.zone

    z = dns.zone.from_file(str(path), origin="example.com", relativize=False)
    assert z.get_rdataset("_25._tcp.mail.example.com.", rt.TXT) is not None
    assert z.get_rdataset("www.example.com.", rt.TXT) is None
    assert provider.read([OWNER])[OWNER].records == {NEW, ye1}


def test_serial_forms() -> None:
    today = dt.date(2026, 11, 25)
    assert bump_serial(2026112401, today) == 2026112500
    assert bump_serial(2026112507, today) == 2026112508
    assert bump_serial(2026120100, today) == 2026120101  # already ahead: just +1
    assert bump_serial(41, today) == 42
    assert bump_serial(2**32 - 1, today) == 1  # RFC 1982 wrap, never 0


def test_rejected_zone_leaves_file_untouched(zone: Path) -> None:
    before = zone.read_bytes()
    provider = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com"})
    zone.write_text(zone.read_text().replace("ns1 IN  A   192.0.2.1\n", "ns1 IN  A   999.0.2.1\n"))
    broken = zone.read_bytes()
    with pytest.raises(ProviderError, match="does not parse"):
        provider.apply(change({OLD, Tlsa.from_text(f"2 1 1 {YE1}")}, {NEW}, set()))
    assert zone.read_bytes() == broken != before
    assert not [p for p in zone.parent.iterdir() if p.name.startswith(".")]


def test_conflict_when_file_changed(zone: Path) -> None:
    from tlsa_manager.errors import ProviderConflict

    provider = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com"})
    with pytest.raises(ProviderConflict, match="changed since it was read"):
        provider.apply(change({OLD}, {NEW}, {OLD}))


def test_reload_command_runs_without_shell(zone: Path, tmp_path: Path) -> None:
    marker = tmp_path / "reloaded; rm -rf /"
    provider = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com",
                                 "reload": ["touch", str(marker)]})
    provider.apply(change({OLD, Tlsa.from_text(f"2 1 1 {YE1}")}, {NEW}, set()))
    assert marker.exists()
    failing = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com", "reload": ["false"]})
    expected = failing.read([OWNER])[OWNER].records
    with pytest.raises(ProviderError, match="was updated but 'false' exited 1"):
        failing.apply(change(set(expected), {Tlsa.from_text("3 1 1 " + "cc" * 32)}, set()))
    with pytest.raises(ConfigError, match="list of strings"):
        ZoneFileProvider({"zone_file": str(zone), "reload": "rndc reload"})


def test_include_fragment_mode(tmp_path: Path) -> None:
    fragment = tmp_path / "tlsa.inc"
    main = tmp_path / "db.example.com"
    main.write_text(f"$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 hm 7 60 60 600 60\n  IN NS ns1\n"
                    f"ns1 IN A 192.0.2.1\n$INCLUDE {fragment}\n")
    fragment.write_text("")
    provider = ZoneFileProvider({"zone_file": str(main), "zone": "example.com", "include_file": str(fragment)})
    provider.apply(ChangeSet((OwnerChange(OWNER, frozenset(), frozenset({NEW}), ttl=600),)))
    assert "IN SOA ns1 hm 8 60 60 600 60" in main.read_text()
    assert f"_25._tcp.mail.example.com. 600 IN TLSA 3 1 1 {NEW.data.hex()}" in fragment.read_text()
    assert provider.read([OWNER])[OWNER].records == {NEW}
    main.write_text(main.read_text().replace(f"$INCLUDE {fragment}\n", ""))
    with pytest.raises(ConfigError, match="does not \\$INCLUDE"):
        provider.apply(ChangeSet((OwnerChange(OWNER, frozenset(), frozenset({OLD}), ttl=600),)))


def test_a_real_bind_serves_the_written_file(zone: Path) -> None:
    require("named", "named-checkzone")
    provider = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com"})
    provider.apply(change({OLD, Tlsa.from_text(f"2 1 1 {YE1}")}, {NEW}, {OLD}))
    root = Path(tempfile.mkdtemp(prefix="tlsa-zf-"))
    os.chmod(root, 0o755)
    shutil.copy(zone, root / "db.example.com")
    shutil.copy(zone.parent / "extra.inc", root / "extra.inc")
    port = free_port()
    (root / "named.conf").write_text(
        f'options {{ directory "{root}"; pid-file "{root}/named.pid"; listen-on port {port} {{ 127.0.0.1; }};'
        f' listen-on-v6 {{ none; }}; recursion no; }};\n'
        f'zone "example.com" {{ type primary; file "db.example.com"; }};\n')
    subprocess.run(["chown", "-R", "bind:bind", str(root)], check=True)
    proc = subprocess.Popen(["named", "-u", "bind", "-f", "-c", str(root / "named.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        answer = None
        for _ in range(100):
            try:
                answer = dns.query.udp(dns.message.make_query(OWNER, dns.rdatatype.TLSA), "127.0.0.1",
                                       port=port, timeout=0.5)
                break
            except Exception:
                time.sleep(0.1)
        assert answer is not None
        served = {Tlsa.from_rdata(r) for rrset in answer.answer for r in rrset}
        assert served == {NEW, Tlsa.from_text(f"2 1 1 {YE1}")}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("value", ["false", "no", 0])
def test_check_must_be_a_boolean(zone: Path, value: object) -> None:
    """Before: `check = "false"` (in quotes) was a non-empty string, so named-checkzone
    still ran, the opposite of what was asked, and nothing said so."""
    with pytest.raises(ConfigError, match=r"zonefile check must be true or false, not .*no quotes"):
        ZoneFileProvider({"zone_file": str(zone), "check": value})
    assert ZoneFileProvider({"zone_file": str(zone), "check": False}).check is False
