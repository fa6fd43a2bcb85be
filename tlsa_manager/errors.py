"""One exception root for everything a user can cause, with exit codes and hints.

Every error carries a one-line message that says what is wrong and what to do next;
the CLI prints that line and exits with the error's code, and shows a traceback only
under ``--debug``.  Provider errors subclass :class:`TlsaManagerError` too, so "any
failure of ours" is one ``except``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """The documented exit codes of the ``tlsa-manager`` command (docs/cli.md)."""

    OK = 0
    FAILURE = 1  # something outside us failed: DNS server, API, network, file system
    USAGE = 2  # bad flags, bad configuration, bad input files
    UNSAFE = 3  # refused because it would break DANE for a live server
    HAZARD = 4  # `check` / `plan` found a hazard


class TlsaManagerError(Exception):
    """Root of every error tlsa-manager raises on purpose."""

    #: FAILURE unless a subclass names another: ``class X(TlsaManagerError, exit_code=...)``
    exit_code: ExitCode = ExitCode.FAILURE

    def __init_subclass__(cls, exit_code: ExitCode | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        """The message and the hint on one line, as the CLI prints it.

        Names in messages come from the user's files (a host or provider name, a
        path): a control character in one is shown escaped, so that the error stays
        one line and cannot rewrite the terminal or forge a log line."""
        text = f"{self.message}; {self.hint}" if self.hint else self.message
        return text.translate(_ESCAPED)


#: C0 controls and DEL as the escapes Python would write for them
_ESCAPED = {c: repr(chr(c))[1:-1] for c in (*range(0x20), 0x7F)}


class UsageError(TlsaManagerError, exit_code=ExitCode.USAGE):
    """A flag, a value or a combination of them that cannot work."""


class InputError(TlsaManagerError, exit_code=ExitCode.USAGE):
    """A file the user named is missing, unreadable, or not what it should be."""


class ConfigError(TlsaManagerError, exit_code=ExitCode.USAGE):
    """The configuration file is wrong."""


class UnsafeError(TlsaManagerError, exit_code=ExitCode.UNSAFE):
    """An action was refused because it could make DANE senders defer mail."""


class HazardError(TlsaManagerError, exit_code=ExitCode.HAZARD):
    """A hazard (docs/hazards.md) stopped a command before it changed anything."""


class StateError(TlsaManagerError):
    """The ledger (state directory) is corrupt, locked or of an unknown version."""


class NetworkError(TlsaManagerError):
    """A server or API could not be reached or answered with an error."""


class ProviderError(TlsaManagerError):
    """Root of every error a DNS provider raises."""


class ProviderConflict(ProviderError):
    """The published RRset changed between read and apply (compare-and-swap failed)."""

    #: the owner names a write in steps had committed before the step that conflicted
    #: (RFC 2136: the earlier UPDATE messages): those are written, the run counts them
    written: frozenset[Hashable] = frozenset()


class OwnersRefused(ProviderError):
    """A read that answered for every owner but refuses some of them (a CNAME at the
    owner): their hosts stop with their own error, the zone's other hosts go on."""

    def __init__(self, refused: Mapping[Any, TlsaManagerError], found: Mapping[Any, Any]) -> None:
        first = next(iter(refused.values()))
        super().__init__(first.message, first.hint)
        self.refused = dict(refused)
        #: the RRsets read for the owners not refused
        self.found = dict(found)


class ProviderInputError(ProviderError, exit_code=ExitCode.USAGE):
    """A file or setting the provider was given is wrong: a zone file that is missing, not
    a regular file or does not parse.  Still a provider error (one ``except``), but the
    user's input, so exit 2 like every other bad input."""
