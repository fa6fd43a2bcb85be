"""A zone file edited in place, or a tool-owned fragment for ``$INCLUDE``.

In place, only the TLSA records at the managed owner names change: every other line,
comment, ``$ORIGIN``, ``$TTL`` and ``$INCLUDE`` stays byte for byte; new records are
written with absolute owner names where the old ones stood (or at the end).  The SOA
serial goes up by RFC 1982 (a YYYYMMDDnn serial keeps that form).  The result is
parsed with dnspython (and ``named-checkzone`` when present) before it replaces the
file atomically with its mode and owner kept; then an optional reload command runs
(argv, no shell).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.ttl
import dns.zone

from tlsa_manager.errors import ConfigError, ProviderError
from tlsa_manager.fsutil import atomic_write
from tlsa_manager.provider import Capabilities, ChangeSet, OwnerChange, Provider, RRset, conflict
from tlsa_manager.records import Tlsa

DIRECTIVES = ("$ORIGIN", "$TTL", "$INCLUDE", "$GENERATE")
_CLASSES = {"IN", "CH", "HS", "CS"}


@dataclass
class Entry:
    """One logical line of a zone file (a record may span lines inside parentheses)."""

    first: int
    last: int
    owner: dns.name.Name | None
    explicit_owner: bool
    rdtype: int | None
    directive: str | None = None


@dataclass(frozen=True)
class Token:
    line: int
    start: int
    end: int
    text: str


def _tokens(lines: Sequence[str], first: int, last: int) -> Iterator[Token]:
    """Tokens of lines[first..last], without comments and parentheses; quoted strings whole."""
    for index in range(first, last + 1):
        line = lines[index]
        i = 0
        while i < len(line):
            c = line[i]
            if c == ";":
                break
            if c in " \t\r\n()":
                i += 1
                continue
            start = i
            if c == '"':
                i += 1
                while i < len(line) and line[i] != '"':
                    i += 2 if line[i] == "\\" else 1
                i += 1
            else:
                while i < len(line) and line[i] not in " \t\r\n();":
                    i += 1
            yield Token(index, start, i, line[start:i])


def _paren_delta(line: str) -> int:
    depth, quoted, i = 0, False, 0
    while i < len(line):
        c = line[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ";":
            break
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        i += 1
    return depth


def parse_entries(lines: Sequence[str], origin: dns.name.Name) -> list[Entry]:
    """Split a zone file into entries, tracking $ORIGIN and the implicit owner."""
    entries: list[Entry] = []
    current_origin = origin
    last_owner: dns.name.Name | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith(";"):
            i += 1
            continue
        first = i
        depth = _paren_delta(line)
        while depth > 0 and i + 1 < len(lines):
            i += 1
            depth += _paren_delta(lines[i])
        tokens = list(_tokens(lines, first, i))
        if not tokens:
            i += 1
            continue
        head = tokens[0].text.upper()
        if head in DIRECTIVES:
            if head == "$ORIGIN" and len(tokens) > 1:
                current_origin = dns.name.from_text(tokens[1].text, current_origin)
            entries.append(Entry(first, i, None, False, None, head))
            i += 1
            continue
        explicit = line[:1] not in (" ", "\t")
        owner: dns.name.Name | None
        rest = tokens
        if explicit:
            text = tokens[0].text
            owner = current_origin if text == "@" else dns.name.from_text(text, current_origin)
            rest = tokens[1:]
            last_owner = owner
        else:
            owner = last_owner
        rdtype = None
        for token in rest:
            word = token.text.upper()
            if word in _CLASSES or word.startswith("CLASS"):
                continue
            try:
                dns.ttl.from_text(token.text)
                continue
            except dns.exception.DNSException:
                pass
            try:
                rdtype = int(dns.rdatatype.from_text(word))
            except dns.exception.DNSException:
                rdtype = None
            break
        entries.append(Entry(first, i, owner, explicit, rdtype))
        i += 1
    return entries


def bump_serial(serial: int, today: dt.date) -> int:
    """The next serial (RFC 1982, never 0); YYYYMMDDnn stays in that form."""
    stamp = int(today.strftime("%Y%m%d"))
    if 1_970_010_100 <= serial <= 2_100_123_199 and serial // 100 <= stamp:
        candidate = max(serial + 1, stamp * 100)
    else:
        candidate = (serial + 1) % 2**32
    return candidate or 1


def set_soa_serial(lines: list[str], entries: Sequence[Entry], today: dt.date) -> int:
    """Raise the serial of the (first) SOA entry in place, keeping its formatting."""
    soa = next((e for e in entries if e.rdtype == dns.rdatatype.SOA), None)
    if soa is None:
        raise ProviderError("the zone file has no SOA record", "point zone_file at the zone's main file")
    tokens = list(_tokens(lines, soa.first, soa.last))
    index = next(i for i, t in enumerate(tokens) if t.text.upper() == "SOA")
    serial_token = tokens[index + 3]
    new = bump_serial(int(serial_token.text), today)
    line = lines[serial_token.line]
    lines[serial_token.line] = line[: serial_token.start] + str(new) + line[serial_token.end :]
    return new


def render_lines(owner: dns.name.Name, records: Sequence[Tlsa], ttl: int) -> list[str]:
    """Zone-file lines for records at an owner, absolute names: safe under any $ORIGIN."""
    return [f"{owner.to_text()} {ttl} IN TLSA {r.to_text()}\n" for r in sorted(records)]


class ZoneFileProvider(Provider):
    """Publishes by editing a zone file (or a fragment it $INCLUDEs)."""

    name = "zonefile"
    capabilities = Capabilities(atomic=True, compare_and_swap=True, eventual_propagation=False)
    settings: ClassVar[Mapping[str, str]] = {
        "zone_file": "the zone's master file",
        "zone": "zone origin (default: the SOA owner / first $ORIGIN / file name)",
        "include_file": "write TLSA records to this fragment (the zone file must $INCLUDE it)",
        "reload": "command to run after a change, as an argv list (no shell)",
        "check": "run named-checkzone before replacing the file (default: when installed)",
        "nameservers": "authoritative servers to poll, host:port list (default: the file itself)",
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if not config.get("zone_file"):
            raise ConfigError(
                "zonefile provider needs zone_file", 'add zone_file = "/etc/bind/db.example.com"'
            )
        self.path = Path(str(config["zone_file"]))
        self.include = Path(str(config["include_file"])) if config.get("include_file") else None
        reload = config.get("reload", [])
        if isinstance(reload, str) or not all(isinstance(a, str) for a in reload):
            raise ConfigError(
                "zonefile reload must be a list of strings (no shell)",
                'e.g. reload = ["rndc", "reload", "example.com"]',
            )
        self.reload = list(reload)
        self.check = config.get("check", True)

    # -- helpers ---------------------------------------------------------------

    def _read_text(self, path: Path) -> str:
        self.requests += 1
        try:
            return path.read_text()
        except FileNotFoundError:
            raise ProviderError(f"{path}: no such zone file", "check zone_file") from None
        except OSError as exc:
            raise ProviderError(f"{path}: cannot read ({exc.strerror})", "check permissions") from None

    def origin(self) -> dns.name.Name:
        if self.config.get("zone"):
            return dns.name.from_text(str(self.config["zone"]))
        for line in self._read_text(self.path).splitlines():
            if line.upper().startswith("$ORIGIN"):
                return dns.name.from_text(line.split()[1])
        name = self.path.name.removeprefix("db.").removesuffix(".zone").removesuffix(".db")
        return dns.name.from_text(name)

    @contextlib.contextmanager
    def _in_dir(self) -> Iterator[None]:
        """$INCLUDE paths are relative to the zone file's folder, as for named."""
        old = os.getcwd()
        os.chdir(self.path.parent)
        try:
            yield
        finally:
            os.chdir(old)

    def _parse(self, text: str) -> dns.zone.Zone:
        try:
            with self._in_dir():
                return dns.zone.from_text(
                    text, origin=self.origin(), relativize=False, allow_include=True, check_origin=True
                )
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            raise ProviderError(
                f"{self.path}: the zone does not parse ({exc})", "fix the zone file; nothing was changed"
            ) from None

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        zone = self._parse(self._read_text(self.path))
        out = {}
        for owner in owners:
            rdataset = zone.get_rdataset(owner, dns.rdatatype.TLSA)
            if rdataset is None:
                out[owner] = RRset(owner)
            else:
                out[owner] = RRset(owner, frozenset(Tlsa.from_rdata(r) for r in rdataset), rdataset.ttl)
        return out

    # -- apply -------------------------------------------------------------------

    def apply(self, changeset: ChangeSet) -> None:
        changes = self.pending(changeset)
        if not changes:
            return
        current = self.read([c.owner for c in changes])
        for change in changes:
            if current[change.owner].records != change.expected:
                raise conflict(change.owner, change.expected, current[change.owner].records)
        if self.include is not None:
            self._apply_fragment(changes)
        else:
            self._apply_in_place(changes)
        self.writes += 1
        self._run_reload()

    def render(self, text: str, changes: Sequence[OwnerChange], today: dt.date) -> str:
        """The zone text after the changes (pure: no I/O)."""
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        entries = parse_entries(lines, self.origin())
        by_first = {e.first: e for e in entries}
        drop: set[int] = set()
        insert_at: dict[int, tuple[dns.name.Name, list[str]]] = {}
        append: list[str] = []
        for change in changes:
            mine = [e for e in entries if e.owner == change.owner and e.rdtype == dns.rdatatype.TLSA]
            new = render_lines(change.owner, sorted(change.result), change.ttl)
            for entry in mine:
                drop.update(range(entry.first, entry.last + 1))
            if mine:
                insert_at[mine[0].first] = (change.owner, new)
            else:
                append.extend(new)
        out: list[str] = []
        last_owner: dns.name.Name | None = None
        for index, line in enumerate(lines):
            if index in insert_at:
                owner, new = insert_at[index]
                out.extend(new)
                last_owner = owner
            if index in drop:
                continue
            kept = by_first.get(index)
            if kept is not None and kept.directive is None and kept.owner is not None:
                if not kept.explicit_owner and kept.owner != last_owner:
                    # It followed a removed TLSA line: write its owner out, same meaning.
                    line = kept.owner.to_text() + line
                last_owner = kept.owner
            out.append(line)
        out.extend(append)
        set_soa_serial(out, parse_entries(out, self.origin()), today)
        return "".join(out)

    def _check(self, candidate: Path, text: str) -> None:
        self._parse(text)
        checker = shutil.which("named-checkzone")
        if self.check and checker:
            result = subprocess.run(
                [checker, "-q", "-i", "none", self.origin().to_text(), str(candidate)],
                capture_output=True,
                text=True,
                cwd=self.path.parent,
            )
            if result.returncode != 0:
                detail = (result.stdout + result.stderr).strip().splitlines()
                raise ProviderError(
                    f"named-checkzone rejects the new {self.path.name}: {detail[-1] if detail else 'error'}",
                    "nothing was changed; fix the zone",
                )

    def _apply_in_place(self, changes: Sequence[OwnerChange]) -> None:
        text = self._read_text(self.path)
        for change in changes:
            if not change.owner.is_subdomain(self.origin()):
                raise ProviderError(
                    f"{change.owner} is outside the zone {self.origin()}", "use the zone file of that zone"
                )
        new_text = self.render(text, changes, dt.datetime.now(dt.UTC).date())
        self._write_checked(self.path, new_text)

    def _write_checked(self, path: Path, text: str) -> None:
        """Validate a candidate next to the file, then rename it into place."""
        self.requests += 1
        candidate = path.with_name(f".{path.name}.tlsa-manager-check")
        try:
            candidate.write_text(text)
            self._check(candidate, text)
        finally:
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
        atomic_write(path, text.encode())

    def _apply_fragment(self, changes: Sequence[OwnerChange]) -> None:
        assert self.include is not None
        zone_text = self._read_text(self.path)
        if str(self.include) not in zone_text and self.include.name not in zone_text:
            raise ConfigError(
                f"{self.path} does not $INCLUDE {self.include}", f'add the line: $INCLUDE "{self.include}"'
            )
        old_fragment = self.include.read_text() if self.include.exists() else ""
        fragment_zone = self._parse_fragment(old_fragment)
        records: dict[dns.name.Name, tuple[frozenset[Tlsa], int]] = dict(fragment_zone)
        for change in changes:
            records[change.owner] = (change.result, change.ttl)
        body = ["; written by tlsa-manager: do not edit, changes are overwritten\n"]
        for owner in sorted(records):
            recs, ttl = records[owner]
            body.extend(render_lines(owner, sorted(recs), ttl))
        atomic_write(self.include, "".join(body).encode())
        try:
            lines = zone_text.splitlines(keepends=True)
            set_soa_serial(lines, parse_entries(lines, self.origin()), dt.datetime.now(dt.UTC).date())
            self._write_checked(self.path, "".join(lines))
        except Exception:
            atomic_write(self.include, old_fragment.encode())
            raise

    def _parse_fragment(self, text: str) -> dict[dns.name.Name, tuple[frozenset[Tlsa], int]]:
        out: dict[dns.name.Name, tuple[frozenset[Tlsa], int]] = {}
        for line in text.splitlines():
            if not line.strip() or line.startswith(";"):
                continue
            parts = line.split(None, 4)
            owner = dns.name.from_text(parts[0])
            record = Tlsa.from_text(parts[4].removeprefix("TLSA").strip())
            recs, _ = out.get(owner, (frozenset(), int(parts[1])))
            out[owner] = (recs | {record}, int(parts[1]))
        return out

    def _run_reload(self) -> None:
        if not self.reload:
            return
        try:
            result = subprocess.run(self.reload, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProviderError(
                f"the zone file was updated but the reload command failed ({exc})",
                "reload the name server by hand",
            ) from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ProviderError(
                f"the zone file was updated but '{self.reload[0]}' exited {result.returncode}"
                f"{': ' + detail[-1] if detail else ''}",
                "reload the name server by hand",
            )
