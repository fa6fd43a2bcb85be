"""A zone file's TLSA records in every spelling named accepts (RFC 3597's ``TYPE52`` and
``\\#``, ``CLASS1``, relative or absolute owner, TTL left out) are the records they are:
the tool read only ``TLSA`` lines, so a ``TYPE52`` record was invisible, ``plan`` called
the zone broken and ``sync`` appended a duplicate of it.  named-compilezone (the real
BIND loader) is the oracle for what each spelling means."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dns.name
import pytest

from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager_providers.zonefile import ZoneFileProvider

from conftest import EXAMPLES, CliRunner
from servers import require

LEAF = Tlsa.from_text("3 1 1 " + "0123456789abcdef" * 4)
ISSUER = Tlsa.from_text("2 1 1 " + "fedcba9876543210" * 4)
OWNER = dns.name.from_text("_25._tcp.mail.example.com.")
HEAD = "$ORIGIN example.com.\n@ 600 IN SOA ns1 hostmaster 2026010101 7200 3600 1209600 300\n  IN NS ns1\nns1 IN A 192.0.2.1\n"


def generic(record: Tlsa) -> str:
    """RFC 3597 rdata: ``\\# LENGTH HEX`` of the wire form (usage, selector, mtype, data)."""
    wire = bytes([record.usage, record.selector, record.mtype]) + record.data
    return f"\\# {len(wire)} {wire.hex()}"


SPELLINGS = {
    "TYPE52 generic, absolute owner": f"_25._tcp.mail.example.com. 3600 IN TYPE52 {generic(LEAF)}\n"
                                      f"_25._tcp.mail.example.com. 3600 IN TYPE52 {generic(ISSUER)}\n",
    "type52 presentation, CLASS1, relative owner": f"_25._tcp.mail 3600 CLASS1 type52 {LEAF.to_text()}\n"
                                                   f"_25._tcp.mail 3600 CLASS01 TYPE052 {ISSUER.to_text()}\n",
    "TLSA generic in parentheses, implicit owner": f"_25._tcp.mail 3600 IN TLSA {generic(LEAF)[:8]} (\n"
                                                   f"   {generic(LEAF)[8:]} )\n"
                                                   f"    3600 TYPE52 {generic(ISSUER)}\n",
    "TTL left out ($TTL)": f"$TTL 3600\n_25._tcp.mail IN TYPE52 {generic(LEAF)}\n_25._tcp.mail TLSA {ISSUER.to_text()}\n",
    "TTL left out (the last one given)": f"www 3600 IN A 192.0.2.80\n_25._tcp.mail TYPE52 {generic(LEAF)}\n"
                                         f"_25._tcp.mail IN TLSA {generic(ISSUER)}\n",
    "class after the TTL, TTL in units": f"_25._tcp.mail IN 1h TYPE52 {generic(LEAF)}\n_25._tcp.mail 1H CLASS1 TLSA {ISSUER.to_text()}\n",
    # two TTLs in one RRset: named keeps the first ("TTL set to prior TTL"), not the lowest
    "two TTLs (named keeps the first)": f"_25._tcp.mail 3600 IN TYPE52 {generic(LEAF)}\n"
                                        f"_25._tcp.mail.example.com. 300 IN TLSA {ISSUER.to_text()}\n",
    # no $TTL and no TTL on the SOA: named uses its MINIMUM as the default (not the last TTL)
    "TTL left out everywhere (the SOA's minimum)": "$ORIGIN example.com.\n@ IN SOA ns1 hm ( 1 7200 3600 1209600 1h )\n"
                                                   f"  IN NS ns1\nns1 900 IN A 192.0.2.1\n_25._tcp.mail TYPE52 {generic(LEAF)}\n"
                                                   f"_25._tcp.mail IN TLSA {ISSUER.to_text()}\n",
}


def named_tlsa(zone: Path, *options: str) -> dict[dns.name.Name, tuple[set[Tlsa], int]]:
    """The TLSA RRsets of example.com as named loads the file: named-compilezone's
    canonical dump (one TTL per RRset)."""
    dump = subprocess.run(["named-compilezone", *options, "-q", "-i", "none", "-o", "-", "example.com", str(zone)],
                          capture_output=True, text=True, check=True).stdout
    out: dict[dns.name.Name, tuple[set[Tlsa], int]] = {}
    for line in dump.splitlines():
        owner, ttl, _cls, rdtype, rdata = line.split(None, 4)
        if rdtype == "TLSA":
            name = dns.name.from_text(owner)
            records, seen = out.get(name, (set(), int(ttl)))
            assert seen == int(ttl), dump
            out[name] = (records | {Tlsa.from_text(rdata)}, seen)
    return out


def named_view(zone: Path) -> tuple[set[Tlsa], int]:
    """The TLSA RRset at OWNER as named loads the file."""
    return named_tlsa(zone)[OWNER]


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_each_spelling_reads_as_named_loads_it(tmp_path: Path, spelling: str) -> None:
    require("named-compilezone")
    zone = tmp_path / "db.example.com"
    body = SPELLINGS[spelling]
    zone.write_text(("" if body.startswith("$ORIGIN") else HEAD) + body + "www2 IN A 192.0.2.81\n")
    assert named_view(zone) == ({LEAF, ISSUER}, 3600)  # the oracle: both records, TTL 3600
    read = ZoneFileProvider({"zone_file": str(zone)}).read([OWNER])[OWNER]
    assert (set(read.records), read.ttl) == named_view(zone)


def test_a_generic_record_is_replaced_not_kept_beside_the_new_one(tmp_path: Path) -> None:
    """A key change at an owner whose old record is written ``TYPE52 \\# ...``: before, the
    old record was not seen (a conflict: "the file changed"), or kept beside the new one."""
    require("named-compilezone")
    zone = tmp_path / "db.example.com"
    foreign = "; a comment\nwww IN TYPE1 \\# 4 c0000250\n"
    zone.write_text(HEAD + f"_25._tcp.mail 300 IN TYPE52 {generic(LEAF)}\n" + foreign)
    new = Tlsa.from_text("3 1 1 " + "ab" * 32)
    change = OwnerChange(OWNER, frozenset({LEAF}), frozenset({new}), frozenset({LEAF}), 300, 300)
    ZoneFileProvider({"zone_file": str(zone)}).apply(ChangeSet((change,)))
    assert named_view(zone) == ({new}, 300)
    assert zone.read_text().endswith(foreign)  # the foreign generic line kept byte for byte


def test_sync_and_plan_see_records_written_in_generic_syntax(cli: CliRunner, tmp_path: Path) -> None:
    """The user's report: the zone's TLSA records rewritten by hand (or by a tool) as
    ``TYPE52 \\# ...`` / ``CLASS1``; ``plan`` then showed a fatal hazard and ``sync``
    appended copies of records already there.  Now: nothing to do, the file untouched."""
    require("named-compilezone")
    zone = tmp_path / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    host: list[str | Path] = ["mail.example.com", "--cert", EXAMPLES / "mail.example.com" / "fullchain.pem", "--zone-file", zone]
    assert cli("sync", *host).code == 0
    published = named_view(zone)
    lines = []
    for n, line in enumerate(zone.read_text().splitlines(keepends=True)):
        if " IN TLSA " in line:
            owner, ttl, _cls, _type, rdata = line.split(None, 4)
            record = Tlsa.from_text(rdata)
            line = (f"{owner} {ttl} IN TYPE52 {generic(record)}\n" if n % 2 else
                    f"_25._tcp.mail CLASS1 TYPE52 ( {record.to_text()} )\n")
        lines.append(line)
    zone.write_text("".join(lines))
    before = zone.read_text()
    assert named_view(zone) == published  # the same records to named
    plan = cli("plan", *host)
    assert plan.code == 0 and "nothing to do" in plan.out, plan.out + plan.err
    synced = cli("sync", *host)
    assert synced.code == 0 and "nothing to change" in synced.out, synced.out + synced.err
    assert zone.read_text() == before


def _spellings(record: Tlsa) -> list[str]:
    """The rdata of one record in the forms named reads: presentation, split hex in
    parentheses with a comment, generic, generic split across lines, upper-case hex."""
    wire = generic(record).split()[2]
    return [record.to_text(), f"{record.to_text()[:26]} ( {record.to_text()[26:40]} ; a comment\n   {record.to_text()[40:]} )",
            generic(record), f"\\# {len(wire) // 2} ( {wire[:7]} ; x\n {wire[7:]} )",
            f"\\# {len(wire) // 2} {wire.upper()[:10]} {wire[10:]}"]


def test_random_spellings_read_as_named_loads_them(tmp_path: Path) -> None:
    """Owner (absolute, relative, other case, escaped, under another $ORIGIN, implicit),
    TTL (none, seconds, units, several in one RRset), class (none, IN, CLASS1, class01;
    before or after the TTL), type (TLSA, TYPE52, type052), rdata spelling, and lines of
    other owners, $TTL and $INCLUDE in between, drawn at random (seeded): the records
    and TTL read are named-compilezone's every time (named keeps an RRset's first TTL
    within a run of lines of one owner, exactly as written, and the last run's TTL)."""
    import random

    require("named-compilezone")
    draw = random.Random(3597)
    records = [LEAF, ISSUER, Tlsa.from_text("3 0 1 " + "aa55" * 16)]
    owners = ["_25._tcp.mail.example.com.", "_25._tcp.mail", "_25._TCP.Mail", "\\095\\050\\053._tcp.mail"]
    between = ["www IN A 192.0.2.7\n", "$TTL 900\n", '_25._tcp.mail TXT "t"\n', f"$INCLUDE {tmp_path / 'extra.inc'}\n"]
    (tmp_path / "extra.inc").write_text(f"_25._tcp.mail 1200 TLSA {LEAF.to_text()}\nftp IN A 192.0.2.21\n")
    zone = tmp_path / "db.example.com"
    for _ in range(40):
        text, ours = draw.choice(["$TTL 3600\n", ""]) + HEAD, False
        for k, record in enumerate(records):
            fields = [draw.choice(["", "3600", "1h", "600"]), draw.choice(["", "IN", "CLASS1", "class01"])]
            head = " ".join(f for f in draw.sample(fields, 2) if f)
            rdata = f"{draw.choice(['TLSA', 'tlsa', 'TYPE52', 'type052'])} {draw.choice(_spellings(record))}"
            where = draw.choice([*owners, "$ORIGIN", "implicit" if k else owners[0]])
            if where == "$ORIGIN":
                text += f"$ORIGIN _tcp.mail.example.com.\n_25 {head} {rdata}\n$ORIGIN example.com.\n"
            elif where == "implicit" and ours:  # the line before is one of ours
                text += f"    {head} {rdata}\n"
            else:
                text += f"{owners[1] if where == 'implicit' else where} {head} {rdata}\n"
            ours = where != "$ORIGIN" and draw.random() < 0.6
            text += "" if ours else draw.choice(between)
        zone.write_text(text + "www IN A 192.0.2.80\n")
        want = named_view(zone)
        read = ZoneFileProvider({"zone_file": str(zone)}).read([OWNER])[OWNER]
        assert (set(read.records), read.ttl) == want and want[0] == set(records), text
