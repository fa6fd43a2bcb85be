"""What a zone file's text must be before it is edited: text at all (not empty, not
binary), with its own line endings kept, and in fragment mode really including the
fragment.  Pure functions of the text (zonefile.py reads and writes the files)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import dns.name

from tlsa_manager.errors import ConfigError, ProviderInputError
from tlsa_manager_providers.zonetext import Entry, parse_name, tokens_of

#: a byte that was not UTF-8, as surrogateescape decodes it (many of them: binary data)
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def not_zone_text(text: str) -> str | None:
    """Why ``text`` cannot be a zone file (empty; binary: NUL bytes, or mostly not UTF-8
    in its first 64 KiB), else None.  Otherwise it would read as a zone with no records
    whose origin is its file name."""
    head = text[:65536]
    undecodable = 0 if head.isascii() else len(_NOT_UTF8.findall(head))
    if not text.strip():
        return "it is empty"
    if "\x00" in text or undecodable * 10 > len(head):
        return "it holds binary data"
    return None


def origin_of(text: str, path: Path) -> dns.name.Name:
    """The zone's origin when ``zone`` is not set: its first $ORIGIN, else the file's
    name without ``db.``/``.zone``/``.db`` (as operators name zone files)."""
    for number, line in enumerate(text.splitlines(), 1):
        if line.upper().startswith("$ORIGIN"):
            words = line.split(";", 1)[0].split()
            if len(words) < 2:
                raise ProviderInputError(
                    f"{path}: line {number}: $ORIGIN without a domain name", "write e.g. $ORIGIN example.com."
                )
            return parse_name(words[1], dns.name.root, number)
    name = path.name.removeprefix("db.").removesuffix(".zone").removesuffix(".db")
    return parse_name(name, dns.name.root, 0)


def included_files(lines: Sequence[str], entries: Sequence[Entry], directory: Path) -> list[Path]:
    """The files the zone really $INCLUDEs (directives, not words in comments), resolved
    from ``directory`` (the zone file's own, as named resolves them)."""
    found = []
    for entry in entries:
        if entry.directive == "$INCLUDE":
            words = [t.text for t in tokens_of(lines, entry.first, entry.last)]
            if len(words) > 1:
                found.append(Path(os.path.realpath(directory / words[1].strip('"'))))
    return found


def check_included(zone: Path, fragment: Path, included: Sequence[Path]) -> None:
    """Fragment mode: the zone must really $INCLUDE the fragment, or what is written there
    is served by nobody.  Checked when the zone is read, so ``plan`` says it too, and
    again before writing."""
    if fragment not in included and fragment.name not in {p.name for p in included}:
        raise ConfigError(
            f"{zone} does not $INCLUDE {fragment} (a $INCLUDE in a comment does not count)",
            f'add the line: $INCLUDE "{fragment}"',
        )


def reload_argv(value: object) -> list[str]:
    """``reload``: an argv list run without a shell (a string would need one to split it)."""
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ConfigError(
            "zonefile reload must be a list of strings (no shell)",
            'e.g. reload = ["rndc", "reload", "example.com"]',
        )
    return list(value)


def line_ending(lines: Sequence[str]) -> str:
    """The file's dominant line ending: new lines in a CRLF zone (edited on Windows) end
    in CRLF too, so an edit never leaves the file with mixed endings it did not have."""
    crlf = sum(1 for line in lines if line.endswith("\r\n"))
    return "\r\n" if crlf * 2 > len(lines) else "\n"


def complete_lines(text: str) -> list[str]:
    """The text's lines with their endings; a last line without one gets the file's."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] = lines[-1].removesuffix("\r") + line_ending(lines[:-1] or ["\n"])
    return lines
