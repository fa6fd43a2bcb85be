"""Zone-file text as the zone-file provider reads it: entries, owners, TLSA records, TTLs.

One pass over the lines, fast enough for a 200,000-line zone (docs/performance.md):
a plain line is split by ``str.split``; only lines with parentheses, quotes or escapes
go through the character tokenizer; an owner name is turned into a ``dns.name.Name``
only when someone asks for it (the TLSA owners, the lines next to an edit).  Checking
that the *whole* zone is valid is left to ``named-checkzone`` (or dnspython) on the
candidate before it replaces the file.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype
import dns.ttl

from tlsa_manager.errors import ProviderInputError, TlsaManagerError
from tlsa_manager.records import Tlsa

DIRECTIVES = ("$ORIGIN", "$TTL", "$INCLUDE", "$GENERATE")
_CLASSES = {"IN", "CH", "HS", "CS"}
_SPECIAL = ("(", '"', "\\")


@dataclass(frozen=True)
class Token:
    line: int
    start: int
    end: int
    text: str


class Entry:
    """One logical line of a zone file (a record may span lines inside parentheses).

    ``owner`` is computed on first use: most entries of a big zone are never asked.
    """

    __slots__ = (
        "_owner",
        "arg",
        "directive",
        "explicit_owner",
        "first",
        "last",
        "owner_key",
        "rdtype",
        "ttl",
        "type_at",
    )

    def __init__(
        self,
        first: int,
        last: int,
        owner_key: tuple[str, dns.name.Name, int] | None,
        explicit_owner: bool,
        rdtype: str | None,
        directive: str | None = None,
        ttl: str | None = None,
        arg: str | None = None,
        type_at: int = -1,
    ) -> None:
        self.first, self.last = first, last
        self.owner_key = owner_key
        self.explicit_owner = explicit_owner
        self.rdtype = rdtype  # upper-case mnemonic: "TLSA", "SOA", ... (also when written TYPE52)
        self.directive = directive
        self.ttl = ttl  # the record's TTL as written, if any
        self.arg = arg  # a directive's first argument
        self.type_at = type_at  # index of the type among the entry's words; the rdata follows
        self._owner: dns.name.Name | None = None

    @property
    def owner(self) -> dns.name.Name | None:
        if self._owner is None and self.owner_key is not None:
            text, origin, line = self.owner_key
            self._owner = origin if text == "@" else parse_name(text, origin, line)
        return self._owner


def parse_name(text: str, origin: dns.name.Name, line: int) -> dns.name.Name:
    """A domain name from zone text, or one ProviderInputError line naming where."""
    try:
        return dns.name.from_text(text, origin)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ProviderInputError(
            f"line {line}: {text!r} is not a domain name ({exc})", "fix the zone file; nothing was changed"
        ) from None


def tokens_of(lines: Sequence[str], first: int, last: int) -> Iterator[Token]:
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
                i = min(i + 1, len(line))
            else:
                while i < len(line) and line[i] not in " \t\r\n();":
                    i += 2 if line[i] == "\\" else 1  # an escaped "(" or ";" is part of the name
                i = min(i, len(line))
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
        elif c == "\\":
            i += 1
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


def _words(lines: Sequence[str], first: int, last: int) -> list[str]:
    if first == last:
        line = lines[first]
        if not any(s in line for s in _SPECIAL):
            return line.split(";", 1)[0].split()
    return [t.text for t in tokens_of(lines, first, last)]


def parse_entries(lines: Sequence[str], origin: dns.name.Name) -> list[Entry]:
    """Split a zone file into entries, tracking $ORIGIN and the implicit owner.

    The hot loop of a big zone: plain lines are split by ``str.split`` (C speed), and
    only lines with parentheses, quotes or escapes use the character tokenizer.  The
    cyclic garbage collector is paused meanwhile: 200,000 new objects with no cycles
    would otherwise trigger it over and over (a third of the time).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parse_entries(lines, origin)
    finally:
        if enabled:
            gc.enable()


def _parse_entries(lines: Sequence[str], origin: dns.name.Name) -> list[Entry]:
    entries: list[Entry] = []
    append = entries.append
    current_origin = origin
    owner_key: tuple[str, dns.name.Name, int] | None = None
    count = len(lines)
    i = 0
    while i < count:
        line = lines[i]
        head_char = line[:1]
        if head_char in (" ", "\t"):
            stripped = line.lstrip()
            if not stripped or stripped[0] == ";":
                i += 1
                continue
        elif head_char in (";", "\n", "\r", ""):
            i += 1
            continue
        first = i
        if "(" in line or '"' in line or "\\" in line:
            if "(" in line:
                depth = _paren_delta(line)
                while depth > 0 and i + 1 < count:
                    i += 1
                    depth += _paren_delta(lines[i])
            words = [t.text for t in tokens_of(lines, first, i)]
        elif ";" in line:
            words = line[: line.index(";")].split()
        else:
            words = line.split()
        if not words:
            i += 1
            continue
        head = words[0]
        if head[0] == "$" and head.upper() in DIRECTIVES:
            head = head.upper()
            if head == "$ORIGIN":
                if len(words) < 2:
                    raise ProviderInputError(
                        f"line {first + 1}: $ORIGIN without a domain name", "write e.g. $ORIGIN example.com."
                    )
                current_origin = parse_name(words[1], current_origin, first + 1)
            # A directive's owner_key records the origin in effect (for $INCLUDE).
            arg = words[1] if len(words) > 1 else None
            append(Entry(first, i, ("@", current_origin, first + 1), False, None, head, None, arg))
            i += 1
            continue
        explicit = head_char not in (" ", "\t")
        start = 0
        if explicit:
            owner_key = (head, current_origin, first + 1)
            start = 1
        rdtype = None
        ttl = None
        type_at = start
        for word in words[start:]:
            if word[0].isdigit():
                ttl = word
                type_at += 1
                continue
            upper = word.upper()
            if upper in _CLASSES or upper.startswith("CLASS"):
                type_at += 1
                continue
            rdtype = _mnemonic(upper) if upper.startswith("TYPE") else upper
            break
        append(Entry(first, i, owner_key, explicit, rdtype, None, ttl, None, type_at))
        i += 1
    return entries


def _mnemonic(word: str) -> str:
    """The type's mnemonic for RFC 3597's ``TYPEnn`` (``TYPE52`` and ``TYPE052`` are TLSA
    to named and dnspython alike); any other word as it is."""
    number = word[4:]
    if number.isascii() and number.isdigit() and int(number) <= 65535:
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(int(number)))
    return word


Found = dict[dns.name.Name, tuple[set[Tlsa], int | None]]
#: named's TTL state, which an $INCLUDEd file takes over and hands back: the default
#: ($TTL, or the SOA's minimum) and the last TTL in force
TtlState = tuple[int | None, int | None]
TlsaRead = tuple[Found, TtlState]


def find_tlsa(
    lines: Sequence[str],
    entries: Sequence[Entry],
    owners: Sequence[dns.name.Name],
    include: Callable[[str, dns.name.Name, TtlState], TlsaRead] | None = None,
    ttls: TtlState = (None, None),
) -> TlsaRead:
    """The TLSA records (and TTL) at ``owners``, with named's TTL rules ($TTL, else the
    last explicit TTL, else an SOA's minimum that becomes the default, as named's "no TTL
    specified; using SOA MINTTL instead"), and named's TTL of an RRset whose lines give
    several: the first of a run of lines with the same owner, the last run's winning
    (:func:`_same_run`); ``include(file, origin, ttls)`` reads an $INCLUDEd file the same
    way.  Returns the records and the TTL state at the end (an $INCLUDE hands it back)."""
    wanted = {o: o for o in owners}
    labels = {o.labels[0].decode("ascii", "replace").lower() for o in owners if o.labels}
    # Owners by their lower-case text: an owner written without escapes is looked up
    # without parsing it into a name and comparing names (dnspython's hash and compare
    # walk every byte; a fleet's zone has thousands of TLSA lines).
    by_text = {o.to_text().lower(): o for o in owners}
    origin_text: dict[int, str] = {}
    out: Found = {}
    default_ttl, last_ttl = ttls
    last_at: dict[int, int] = {}  # id of the owner (one of ``owners``) -> its last TLSA entry
    for index, entry in enumerate(entries):
        if entry.directive == "$TTL" and entry.arg:
            default_ttl = _ttl(entry.arg, entry.first)
        elif entry.directive == "$INCLUDE" and include is not None and entry.arg:
            words = _words(lines, entry.first, entry.last)
            assert entry.owner_key is not None
            here = entry.owner_key[1]
            origin = parse_name(words[2], here, entry.first + 1) if len(words) > 2 else here
            last_at.clear()  # named starts a new run at an $INCLUDE and after it
            found_there, (default_ttl, last_ttl) = include(
                entry.arg.strip('"'), origin, (default_ttl, last_ttl)
            )
            for name, (records, ttl) in found_there.items():
                _add(out, name, records, ttl)
        if entry.directive is not None:
            continue
        if entry.ttl is not None and default_ttl is None:
            last_ttl = _ttl(entry.ttl, entry.first)
        elif entry.rdtype == "SOA" and default_ttl is None and last_ttl is None:
            default_ttl = _soa_minimum(lines, entry)
        if entry.rdtype != "TLSA" or entry.owner_key is None:
            continue
        text, origin, _line = entry.owner_key
        if text != "@" and "\\" not in text and text.split(".", 1)[0].lower() not in labels:
            continue  # cheap test first: the first label must be "_25" (or the port's)
        found = None
        if text != "@" and "\\" not in text:
            if not text.endswith("."):
                if id(origin) not in origin_text:
                    origin_text[id(origin)] = origin.to_text()
                text = f"{text}.{origin_text[id(origin)]}"
            found = by_text.get(text.lower())
        if found is None:  # not one of ours by its text: dnspython decides, as it always did
            parsed = entry.owner
            if parsed not in wanted:
                continue
            assert parsed is not None
            found = wanted[parsed]  # the caller's object: ``last_at`` is keyed by its id
        owner = found
        # The rdata follows the type: "3 1 1 HEX" or RFC 3597's "\# 35 0301..." (both read
        # by dnspython as named reads them).
        words = _words(lines, entry.first, entry.last)
        try:
            record = Tlsa.from_text(" ".join(words[entry.type_at + 1 :]))
        except TlsaManagerError:
            raise ProviderInputError(
                f"line {entry.first + 1}: not a valid TLSA record", "fix the zone file; nothing was changed"
            ) from None
        ttl = (
            _ttl(entry.ttl, entry.first)
            if entry.ttl is not None
            else (default_ttl if default_ttl is not None else last_ttl)
        )
        before = last_at.get(id(owner))
        last_at[id(owner)] = index
        if before is not None and _same_run(entries, before, index):
            ttl = out[owner][1]  # named: "TTL set to prior TTL", also for the lines after it
            last_ttl = ttl if default_ttl is None else last_ttl
        _add(out, owner, {record}, ttl)
    return out, (default_ttl, last_ttl)


def _same_run(entries: Sequence[Entry], start: int, end: int) -> bool:
    """Whether entries[start..end] are one run of named's loader: every record has the
    owner of the first, exactly (case included).  Within a run an RRset keeps its first
    TTL; a later run of the same RRset sets the TTL it is loaded with."""
    first = entries[start]
    key = first.owner_key
    assert key is not None
    for entry in entries[start + 1 : end + 1]:
        other = entry.owner_key
        if entry.directive is not None or other is key:
            continue
        if other is not None and other[0] == key[0] and other[1] is key[1]:
            continue  # the same text under the same $ORIGIN: no name to parse (a fleet's zone)
        if entry.owner is None or first.owner is None or entry.owner.labels != first.owner.labels:
            return False
    return True


def _soa_minimum(lines: Sequence[str], entry: Entry) -> int | None:
    """The SOA's MINIMUM field (any spelling named reads); None when the SOA does not
    parse (named-checkzone then says why, before anything is written)."""
    import dns.rdata
    import dns.rdataclass

    assert entry.owner_key is not None
    text = " ".join(_words(lines, entry.first, entry.last)[entry.type_at + 1 :])
    try:
        soa = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text, origin=entry.owner_key[1])
    except (dns.exception.DNSException, ValueError):
        return None
    return int(soa.minimum)  # type: ignore[attr-defined]


def _add(
    out: Found,
    owner: dns.name.Name,
    records: set[Tlsa],
    ttl: int | None,
) -> None:
    """Merge records into an RRset, with the TTL named loads it with (the caller's, see
    :func:`find_tlsa`; dnspython would keep the lowest)."""
    old, old_ttl = out.get(owner, (set(), None))
    out[owner] = (old | records, ttl if ttl is not None else old_ttl)


def _ttl(text: str, line: int) -> int:
    try:
        return int(dns.ttl.from_text(text))
    except dns.exception.DNSException:
        raise ProviderInputError(f"line {line + 1}: {text!r} is not a TTL", "fix the zone file") from None


def first_soa(entries: Sequence[Entry]) -> Entry | None:
    return next((e for e in entries if e.rdtype == "SOA"), None)
