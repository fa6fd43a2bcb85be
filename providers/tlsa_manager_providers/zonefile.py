"""A zone file edited in place, or a tool-owned fragment for ``$INCLUDE``.  In place, only
the TLSA records at the managed owner names change: every other line, comment, ``$ORIGIN``,
``$TTL`` and ``$INCLUDE`` stays byte for byte; new records are written with absolute owner
names where the old ones stood (or at the end).  The SOA serial goes up by RFC 1982 (a
YYYYMMDDnn serial keeps that form).  The result is parsed with dnspython (and
``named-checkzone`` when present) before it replaces the file atomically with its mode
and owner kept; then an optional reload command runs (argv, no shell)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.ttl
import dns.zone

from tlsa_manager import provider_settings as shared
from tlsa_manager.command import run_command
from tlsa_manager.errors import ConfigError, ProviderError, ProviderInputError
from tlsa_manager.fsutil import ZONE_LIMIT, atomic_write, read_regular
from tlsa_manager.provider import Capabilities, ChangeSet, OwnerChange, Provider, RRset, conflict
from tlsa_manager.records import Tlsa
from tlsa_manager_providers._checkzone import CHECK, named_checkzone
from tlsa_manager_providers._zoneinput import (
    check_included,
    complete_lines,
    included_files,
    line_ending,
    not_zone_text,
    origin_of,
    reload_argv,
)
from tlsa_manager_providers._zonewrite import (
    bump_serial,
    fragment_text,
    parse_fragment,
    render_lines,
    set_soa_serial,
)
from tlsa_manager_providers.zonetext import Entry, TlsaRead, TtlState, find_tlsa, first_soa, parse_entries

__all__ = ["ZoneFileProvider", "bump_serial", "parse_entries", "render_lines"]
MAX_INCLUDE_DEPTH = 8


class ZoneFileProvider(Provider):
    """Publishes by editing a zone file (or a fragment it $INCLUDEs)."""

    name = "zonefile"
    capabilities = Capabilities(atomic=True, compare_and_swap=True, eventual_propagation=False)
    settings: ClassVar[Mapping[str, str]] = {
        "zone_file": "the zone's master file",
        **shared.zone("from the first $ORIGIN or the file name"),
        "include_file": "write TLSA records to this fragment (the zone file must $INCLUDE it)",
        "reload": "command to run after a change, as an argv list (no shell)",
        **CHECK,
        **shared.nameservers("default: the file itself"),
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if not config.get("zone_file"):
            raise ConfigError("zonefile provider needs zone_file", 'add zone_file = "/etc/bind/db.zone"')
        #: the path as configured (absolute: a later chdir cannot change what it names)
        self.link = Path(os.path.abspath(str(config["zone_file"])))
        #: the file that counts: a symlinked zone is edited at its target, resolved once
        self.path = Path(os.path.realpath(self.link))
        self.include = (
            Path(os.path.realpath(os.path.abspath(str(config["include_file"]))))
            if config.get("include_file")
            else None
        )
        self.reload = reload_argv(config.get("reload", []))
        self.check = config.get("check", True)
        if not isinstance(self.check, bool):  # "false" in quotes is a string, and true in Python
            raise ConfigError(
                f"zonefile check must be true or false, not {self.check!r}", "write check = false (no quotes)"
            )
        self._origin: dns.name.Name | None = None
        self._zone: tuple[str, list[str], list[Entry]] | None = None
        self._written: tuple[str, dict[dns.name.Name, RRset]] | None = None

    # -- helpers ---------------------------------------------------------------

    def _read_text(self, path: Path) -> str:
        """The file's text; bytes that are not UTF-8 (a latin-1 comment) survive the
        round trip unchanged (surrogateescape), so an edit stays byte-exact."""
        self.requests += 1
        data = read_regular(path, limit=ZONE_LIMIT, error=ProviderInputError, what="zone file")
        return data.decode("utf-8", "surrogateescape")

    def _zone_text(self) -> str:
        """The zone file's text, refused at once when it cannot be a zone file: empty, or
        binary (NUL bytes, mostly not text).  Otherwise it would be read as a zone that
        has no records, whose origin is its file name."""
        text = self._read_text(self.path)
        why = not_zone_text(text)
        if why is not None:
            raise ProviderInputError(
                f"{self.path} is not a zone file ({why})",
                "point zone_file (--zone-file) at the zone's master file, as named loads it",
            )
        return text

    def origin(self) -> dns.name.Name:
        """The zone's origin: ``zone``, else the first $ORIGIN, else the file name (once per run)."""
        if self._origin is None:
            self._origin = self._find_origin()
        return self._origin

    def zone_for(self, owner: dns.name.Name) -> dns.name.Name:
        """The file's zone: a fleet's servers are then looked up once, not once per host."""
        return self.origin()

    def _find_origin(self) -> dns.name.Name:
        if self.config.get("zone"):
            try:
                return dns.name.from_text(str(self.config["zone"]))
            except dns.exception.DNSException as exc:
                raise ConfigError(
                    f"zonefile zone {self.config['zone']!r} is not a domain name ({exc})",
                    'e.g. zone = "example.com"',
                ) from None
        return origin_of(self._zone_text(), self.path)

    @contextlib.contextmanager
    def _in_dir(self) -> Iterator[None]:
        """$INCLUDE paths are relative to the zone file's folder, as for named."""
        old = os.getcwd()
        os.chdir(self.link.parent)
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
        except (dns.exception.DNSException, OSError, ValueError, RecursionError) as exc:
            raise ProviderInputError(
                f"{self.path}: the zone does not parse ({exc})", "fix the zone file; nothing was changed"
            ) from None

    def _current(self) -> tuple[str, list[str], list[Entry]]:
        """The zone file's text, lines and entries: scanned once per content of the file,
        however often a run reads it (a 200,000-line zone must not be parsed six times)."""
        text = self._zone_text()
        if self._zone is None or self._zone[0] != text:
            lines = complete_lines(text)
            try:
                entries = parse_entries(lines, self.origin())
            except ProviderInputError as exc:
                raise ProviderInputError(f"{self.path}: {exc.message}", exc.hint) from None
            if first_soa(entries) is None and not any(e.directive == "$INCLUDE" for e in entries):
                raise ProviderInputError(
                    f"{self.path} is not a zone file (no SOA record)",
                    "point zone_file (--zone-file) at the zone's master file, as named loads it",
                )
            self._zone = (text, lines, entries)
        return self._zone

    def _read_fragment(self) -> str:
        assert self.include is not None
        try:
            return self._read_text(self.include)
        except ProviderError as exc:
            if "no such" in exc.message:
                return ""
            raise

    def _check_in_zone(self, owners: Sequence[dns.name.Name]) -> None:
        """A host outside the file's zone is a configuration mistake: said when reading
        (so ``plan`` says it too), never first found when writing."""
        origin = self.origin()
        outside = next((o for o in owners if not o.is_subdomain(origin)), None)
        if outside is not None:
            raise ProviderInputError(
                f"{outside} is outside the zone {origin} of {self.path}",
                "give the host a provider for its own zone, or fix the host name",
            )

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        known = self._written
        if known and all(o in known[1] for o in owners) and self._read_text(self.path) == known[0]:
            return {o: known[1][o] for o in owners}
        _text, lines, entries = self._current()  # first: is it a zone file at all?
        self._check_in_zone(owners)
        if self.include is not None:
            self._check_included(lines, entries)
            parse_fragment(self._read_fragment(), self.include)  # tool-owned: said by plan too

        def include(name: str, origin: dns.name.Name, ttls: TtlState, depth: int = 1) -> TlsaRead:
            if depth > MAX_INCLUDE_DEPTH:
                raise ProviderInputError(f"{self.path}: $INCLUDE nested too deeply", "flatten the includes")
            path = Path(name) if os.path.isabs(name) else self.link.parent / name
            inc_lines = self._read_text(path).splitlines(keepends=True)
            try:
                inc = parse_entries(inc_lines, origin)
                return find_tlsa(inc_lines, inc, owners, lambda n, o, t: include(n, o, t, depth + 1), ttls)
            except ProviderInputError as exc:
                raise ProviderInputError(f"{path}: {exc.message}", exc.hint) from None

        try:
            found, _ttls = find_tlsa(lines, entries, owners, include)
        except ProviderInputError as exc:
            if exc.message.startswith("/"):
                raise
            raise ProviderInputError(f"{self.path}: {exc.message}", exc.hint) from None
        out = {}
        for owner in owners:
            records, ttl = found.get(owner, (set(), None))
            out[owner] = RRset(owner, frozenset(records), ttl) if records else RRset(owner)
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
        lines = complete_lines(text)
        return self._render(lines, parse_entries(lines, self.origin()), changes, today)

    def _render(
        self, lines: Sequence[str], entries: Sequence[Entry], changes: Sequence[OwnerChange], today: dt.date
    ) -> str:
        by_owner: dict[dns.name.Name | None, list[tuple[int, Entry]]] = {}  # one pass, not one per change
        for k, e in enumerate(entries):
            if e.rdtype == "TLSA":
                by_owner.setdefault(e.owner, []).append((k, e))
        drop: set[int] = set()
        dropped: list[int] = []
        insert_at: dict[int, tuple[dns.name.Name, list[str]]] = {}
        append: list[str] = []
        eol = line_ending(lines)
        for change in changes:
            mine = by_owner.get(change.owner, [])
            new = [line[:-1] + eol for line in render_lines(change.owner, sorted(change.result), change.ttl)]
            for k, entry in mine:
                drop.update(range(entry.first, entry.last + 1))
                dropped.append(k)
            if mine:
                insert_at[mine[0][1].first] = (change.owner, new)
            else:
                append.extend(new)
        prefix = self._owners_to_write_out(entries, dropped, drop, insert_at)
        soa = first_soa(entries)
        out: list[str] = []
        soa_at = -1
        for index, line in enumerate(lines):
            if index in insert_at:
                out.extend(insert_at[index][1])
            if index in drop:
                continue
            if soa is not None and index == soa.first:
                soa_at = len(out)
            out.append(prefix[index] + line if index in prefix else line)
        out.extend(append)
        moved = None
        if soa is not None and soa_at >= 0:
            moved = Entry(soa_at, soa_at + soa.last - soa.first, None, True, "SOA")
        set_soa_serial(out, moved, today)
        return "".join(out)

    @staticmethod
    def _owners_to_write_out(
        entries: Sequence[Entry],
        dropped: Sequence[int],
        drop: set[int],
        insert_at: Mapping[int, tuple[dns.name.Name, list[str]]],
    ) -> dict[int, str]:
        """Lines with an implicit owner that followed a removed TLSA line: their owner is
        written out (same meaning), unless what now precedes them has that owner already."""
        prefix: dict[int, str] = {}
        for k in sorted(set(dropped)):
            n = k + 1
            while n < len(entries) and entries[n].directive is not None:
                n += 1
            if n >= len(entries):
                continue
            entry = entries[n]
            if entry.explicit_owner or entry.first in drop or entry.owner is None:
                continue
            previous: dns.name.Name | None = None
            j = n - 1
            while j >= 0:
                before = entries[j]
                if before.directive is None:
                    if before.first not in drop:
                        previous = before.owner
                        break
                    inserted = insert_at.get(before.first)
                    if inserted and inserted[1]:
                        previous = inserted[0]
                        break
                j -= 1
            if entry.owner != previous:
                prefix[entry.first] = entry.owner.to_text()
        return prefix

    def _check(self, candidate: Path, text: str) -> None:
        """named-checkzone on the candidate when installed (fast, and the real loader);
        else dnspython parses the whole candidate zone."""
        checker = shutil.which("named-checkzone")
        if not (self.check and checker):
            self._parse(text)
        else:
            problem = self._named_checkzone(checker, candidate)
            if problem is not None:
                if self._named_checkzone(checker, self.path) is not None:
                    raise ProviderInputError(
                        f"{self.path}: the zone does not parse as it is, before any change "
                        f"(named-checkzone: {problem})",
                        "fix the zone file; nothing was changed",
                    )
                raise ProviderError(
                    f"named-checkzone rejects the new {self.path.name}: {problem}",
                    "nothing was changed; fix the zone",
                )

    def _named_checkzone(self, checker: str, path: Path) -> str | None:
        return named_checkzone(checker, self.origin(), path, self.link.parent, self.path.name)

    def _apply_in_place(self, changes: Sequence[OwnerChange]) -> None:
        _text, lines, entries = self._current()
        self._check_in_zone([c.owner for c in changes])
        new_text = self._render(lines, entries, changes, dt.datetime.now(dt.UTC).date())
        self._write_checked(self.path, new_text)
        # What we just wrote is known: the next read of these owners needs no new scan.
        self._written = (
            new_text,
            {c.owner: RRset(c.owner, c.result, c.ttl) if c.result else RRset(c.owner) for c in changes},
        )

    def _write_checked(self, path: Path, text: str) -> None:
        """Write a fresh temp file beside the zone (mkstemp: O_EXCL|O_NOFOLLOW, never a
        fixed name someone could plant a link at), check it, then rename it into place."""
        self.requests += 1
        self._zone = None
        self._written = None
        atomic_write(
            path,
            text.encode("utf-8", "surrogateescape"),
            check=lambda candidate: self._check(candidate, text),
            error=ProviderError,
        )

    def _check_included(self, lines: Sequence[str], entries: Sequence[Entry]) -> None:
        assert self.include is not None
        check_included(self.path, self.include, included_files(lines, entries, self.link.parent))

    def _apply_fragment(self, changes: Sequence[OwnerChange]) -> None:
        assert self.include is not None
        zone_text, zone_lines, entries = self._current()
        self._check_included(zone_lines, entries)
        old_fragment = self._read_fragment()
        fragment_zone = parse_fragment(old_fragment, self.include)
        records: dict[dns.name.Name, tuple[frozenset[Tlsa], int]] = dict(fragment_zone)
        for change in changes:
            records[change.owner] = (change.result, change.ttl)
        atomic_write(self.include, fragment_text(records).encode(), error=ProviderError)
        try:
            lines = zone_text.splitlines(keepends=True)
            set_soa_serial(
                lines, first_soa(parse_entries(lines, self.origin())), dt.datetime.now(dt.UTC).date()
            )
            self._write_checked(self.path, "".join(lines))
        except Exception:
            atomic_write(self.include, old_fragment.encode("utf-8", "surrogateescape"), error=ProviderError)
            raise

    def _run_reload(self) -> None:
        if self.reload:
            what, hint = "the zone file was updated", "reload the name server by hand"
            run_command(self.reload, timeout=60, what=what, hint=hint, error=ProviderError)
