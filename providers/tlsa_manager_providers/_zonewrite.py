"""What the zone-file provider writes: the next SOA serial (in place, keeping the line's
formatting) and TLSA lines with absolute owner names (in the zone, or the whole
tool-owned ``$INCLUDE`` fragment).  Reading the zone is :mod:`zonetext`'s job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.name

from tlsa_manager.errors import ProviderInputError, TlsaManagerError
from tlsa_manager.records import Tlsa
from tlsa_manager_providers.zonetext import Entry, tokens_of


def bump_serial(serial: int, today: dt.date) -> int:
    """The next serial (RFC 1982, never 0); YYYYMMDDnn stays in that form."""
    stamp = int(today.strftime("%Y%m%d"))
    if 1_970_010_100 <= serial <= 2_100_123_199 and serial // 100 <= stamp:
        candidate = max(serial + 1, stamp * 100)
    else:
        candidate = (serial + 1) % 2**32
    return candidate or 1


def set_soa_serial(lines: list[str], soa: Entry | None, today: dt.date) -> int:
    """Raise the serial of the SOA entry (at its lines in ``lines``), keeping its formatting."""
    if soa is None:
        raise ProviderInputError("the zone file has no SOA record", "point zone_file at the zone's main file")
    tokens = list(tokens_of(lines, soa.first, soa.last))
    index = next((i for i, t in enumerate(tokens) if t.text.upper() == "SOA"), None)
    if index is None or len(tokens) <= index + 3 or not tokens[index + 3].text.isdigit():
        raise ProviderInputError(
            f"line {soa.first + 1}: the SOA record has no serial number where it belongs",
            "write the SOA as: @ IN SOA ns1 hostmaster ( SERIAL REFRESH RETRY EXPIRE MINIMUM )",
        )
    serial_token = tokens[index + 3]
    new = bump_serial(int(serial_token.text) % 2**32, today)
    line = lines[serial_token.line]
    lines[serial_token.line] = line[: serial_token.start] + str(new) + line[serial_token.end :]
    return new


def render_lines(owner: dns.name.Name, records: Sequence[Tlsa], ttl: int) -> list[str]:
    """Zone-file lines for records at an owner, absolute names: safe under any $ORIGIN."""
    return [f"{owner.to_text()} {ttl} IN TLSA {r.to_text()}\n" for r in sorted(records)]


def fragment_text(records: Mapping[dns.name.Name, tuple[frozenset[Tlsa], int]]) -> str:
    """The whole include fragment for these owners' records and TTLs, sorted."""
    body = ["; written by tlsa-manager: do not edit, changes are overwritten\n"]
    for owner in sorted(records):
        recs, ttl = records[owner]
        body.extend(render_lines(owner, sorted(recs), ttl))
    return "".join(body)


def parse_fragment(text: str, where: Path) -> dict[dns.name.Name, tuple[frozenset[Tlsa], int]]:
    """The include fragment tlsa-manager writes: one TLSA line each, absolute owner names."""
    out: dict[dns.name.Name, tuple[frozenset[Tlsa], int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith(";"):
            continue
        try:
            parts = line.split(None, 4)
            owner = dns.name.from_text(parts[0])
            record = Tlsa.from_text(parts[4].removeprefix("TLSA").strip())
            ttl = int(parts[1])
        except (IndexError, ValueError, dns.exception.DNSException, TlsaManagerError):
            raise ProviderInputError(
                f"{where}: line {number} is not a TLSA line tlsa-manager wrote",
                "the fragment is tool-owned: remove the line (or the file) and sync again",
            ) from None
        recs, _ = out.get(owner, (frozenset(), ttl))
        out[owner] = (recs | {record}, ttl)
    return out
