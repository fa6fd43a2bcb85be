"""Argument parsing and the error -> exit code contract of every command.

Every :class:`TlsaManagerError` becomes one line on stderr and its exit code; a
traceback appears only under ``--debug``.  Only the parser of the command being run is
built, and only its module imported (``COMMANDS``): the others appear in ``--help`` by
name and help line alone, so ``tlsa-manager --help`` stays about as fast as Python.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from tlsa_manager import __version__
from tlsa_manager.errors import ExitCode, TlsaManagerError, UsageError

if TYPE_CHECKING:
    from tlsa_manager.cli.common import Subparsers

#: command -> (module in this package that adds its parser and runs it, help line).
#: The help lines live here so that ``--help`` imports no command module.
COMMANDS: dict[str, tuple[str, str]] = {
    "records": ("records", "print TLSA records for a certificate, chain or key file"),
    "catalog": ("catalog", "the Let's Encrypt issuer catalog"),
    "plan": ("hosts", "read-only: what sync would change, gates, hazards"),
    "sync": ("hosts", "converge safely; deploy staged chains whose gate has passed"),
    "status": ("hosts", "the ledger: managed records, last observations, staged chains"),
    "export": ("hosts", "the desired records for manual DNS"),
    "hook": ("hook", "post-renewal hook: stage the new chain, pre-publish, deploy if safe"),
    "key": ("key", "next keys for a zero-wait rollover: make them, or a CSR from one"),
    "check": ("check", "live DANE verification of a domain's MX hosts or one host"),
    "metrics": (
        "monitoring",
        "write Prometheus metrics (node_exporter textfile format) of a live check and the state",
    ),
    "exporter": ("monitoring", "serve the same metrics on http://ADDR/metrics"),
    "install-units": ("units", "install the systemd service and timer files (or print a cron file)"),
    "simulate": ("simulate", "replay a renewal timeline through the planner"),
}


#: commands whose output JSON could not hold, and what they write instead: ``--json``
#: is refused for them (exit 2) rather than ignored (docs/cli.md, "JSON")
NO_JSON: dict[str, str] = {
    "metrics": "the Prometheus text format",
    "exporter": "the Prometheus text format over HTTP",
    "install-units": "unit files, or a cron file",
}


def refuse_json(args: argparse.Namespace) -> None:
    """``--json`` where no JSON comes out is a usage error, not a silent no-op."""
    what = NO_JSON.get(args.command)
    if getattr(args, "nagios", False):
        what = "one Nagios status line (--nagios)"
    if args.json and what:
        raise UsageError(f"{args.command} --json: it writes {what}, not JSON", "leave out --json")


class CommandModule(Protocol):
    """What every module of a command group provides."""

    def add_parser(self, sub: Subparsers, name: str, help: str) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", f"see '{self.prog} --help'")


def _path_arg(text: str) -> str:
    """A path option's value: an empty one (``--state-dir ''``, an unset variable) is a
    mistake, not a request for the default."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a path, or leave the option out for the default")
    return text


def _at_with_sign(argv: list[str]) -> list[str]:
    """``--at -3h`` as ``--at=-3h``: argparse would take ``-3h`` for an option."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            return [*out, word, *words]
        following = next(words, None) if word == "--at" else None
        if following is not None and following[:1] == "-" and following[1:2].isdigit():
            out.append(f"--at={following}")
        else:
            out.extend(w for w in (word, following) if w is not None)
    return out


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes, before or after its name (`sync HOST --state-dir X`
    works like `--state-dir X sync HOST`).  After the command they default to SUPPRESS, so
    an option given before it is not reset by the command's own parser."""

    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    g = parser.add_argument_group("global options (before or after the command)")
    g.add_argument("--config", type=_path_arg, default=d(None), help="configuration file (TOML)")
    g.add_argument(
        "--state-dir", type=_path_arg, default=d(None), help="state directory (default /var/lib/tlsa-manager)"
    )
    g.add_argument("--json", action="store_true", default=d(False), help="print one JSON document on stdout")
    g.add_argument("-v", "--verbose", action="count", default=d(0), help="say more on stderr")
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=d(False),
        help="only errors and the hazards that set the exit code (stderr); no progress, notes, warnings",
    )
    g.add_argument("--debug", action="store_true", default=d(False), help="show tracebacks and debug logs")


class CommandParser(Parser):
    """A command's parser: it takes the global options too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_options(self, defaults=False)


class _Unbuilt:
    """Stands in for the parser of a command this run does not use: every call is a
    no-op.  Building all thirteen parsers costs more than the rest of ``--help``."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


class _NeedsFullParser(Exception):
    """The command guessed from argv was not the one argparse chose: build them all."""


class _LazySubParsers(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommands whose parsers are built only for the command being run; the others
    appear in ``--help`` and in "invalid choice" errors by name and help line alone."""

    wanted: str | None = None

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if self.wanted is None or name == self.wanted:
            return super().add_parser(name, **kwargs)
        self._choices_actions.append(self._ChoicesPseudoAction(name, (), kwargs.get("help")))
        self._name_parser_map[name] = _Unbuilt()
        return _Unbuilt()

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        if isinstance(self._name_parser_map.get(values[0]), _Unbuilt):
            raise _NeedsFullParser
        super().__call__(parser, namespace, values, option_string)


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word of argv: the first word that is not a global option or its value."""
    takes_value = {"--config", "--state-dir"}
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--":
            return None
        elif word in takes_value:
            skip = True
        elif not word.startswith("-"):
            return word
    return ""  # no command at all: `--help`, `--version`


#: commands that go over a fleet once and end: the cyclic garbage collector is paused
#: while they run.  A 1,000-host run made three full collections of its whole heap
#: (certificates, names, the ledger: 35-115 ms each), 0.4-0.5 s of its 2-2.9 s of CPU,
#: to find next to nothing: what a run allocates is freed by reference counting, and its
#: peak memory measured the same with the collector paused (docs/performance.md).
ONE_PASS_COMMANDS = frozenset({"sync", "plan", "hook", "status", "export"})


@contextmanager
def collector_paused(command: str, restore: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector around a one-pass command; with ``restore``
    turn it on again afterwards (``main`` called by another program: the tests, a
    caller's process).  The process of a command does not: the collection that would
    follow at once, of a heap about to be freed, was 0.1 s of a 1,000-host run.  It
    freezes its heap instead: the interpreter collects once more as it exits, paused or
    not, and that walk of every object was 0.14-0.19 s of CPU after a 1,000-host `plan`
    (0.025 s frozen; docs/performance.md)."""
    paused = command in ONE_PASS_COMMANDS and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused and restore:
            gc.enable()
        elif paused:
            gc.freeze()


def command_module(name: str) -> CommandModule:
    """The module of the command group that ``name`` belongs to (imported now)."""
    module: Any = importlib.import_module(f"tlsa_manager.cli.{COMMANDS[name][0]}")
    return module  # type: ignore[no-any-return]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's own parser is built in full
    (and only its module imported)."""
    parser = Parser(
        prog="tlsa-manager",
        description="Keep the DANE TLSA records of mail servers correct through renewals.",
    )
    parser.register("action", "lazy_parsers", _LazySubParsers)
    parser.add_argument("--version", action="version", version=f"tlsa-manager {__version__}")
    _add_global_options(parser, defaults=True)
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=CommandParser, action="lazy_parsers"
    )
    sub.wanted = command  # type: ignore[attr-defined]
    sub.required = True
    for name, (_module, text) in COMMANDS.items():
        if command is None or name == command:
            command_module(name).add_parser(sub, name, text)
        else:
            sub.add_parser(name, help=text)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    import logging

    level = logging.WARNING
    if args.debug:
        level = logging.DEBUG
    elif args.verbose:
        level = logging.INFO
    elif args.quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    called = argv is not None  # by another program, which gets its collector back
    argv = _at_with_sign(list(sys.argv[1:] if argv is None else argv))
    if "dehydrated" in argv:  # its events' own arguments may look like options
        from tlsa_manager.dehydrated import cut_event_args

        argv = cut_event_args(argv)
    debug = "--debug" in argv
    args: argparse.Namespace | None = None
    try:
        try:
            args = build_parser(_command_in(argv)).parse_args(argv)
        except _NeedsFullParser:
            args = build_parser().parse_args(argv)
        args.port_given = getattr(args, "port", None) is not None
        if getattr(args, "port", 0) is None:
            args.port = 25
        _configure_logging(args)
        from tlsa_manager.cli.common import set_quiet

        set_quiet(bool(args.quiet))
        refuse_json(args)
        with collector_paused(args.command, restore=called):
            code = int(command_module(args.command).run(args))
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except TlsaManagerError as exc:
        if debug:
            raise
        sys.stderr.write(f"tlsa-manager: error: {exc.one_line()}\n")
        if args is not None and args.json and exc.exit_code != ExitCode.USAGE:
            # `--json` is one document or exit 2: a failure, a refusal or a hazard that
            # stops the command says so in JSON too (stdout was left empty)
            from tlsa_manager.cli.common import emit_json

            emit_json({"error": exc.one_line(), "exit_code": int(exc.exit_code)})
        return int(exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:  # a bug of ours: one line unless --debug
        if debug:
            raise
        sys.stderr.write(
            f"tlsa-manager: internal error: {type(exc).__name__}: {exc}; "
            "run again with --debug for the traceback and please report it\n"
        )
        return int(ExitCode.FAILURE)
    except KeyboardInterrupt:
        sys.stderr.write("tlsa-manager: interrupted\n")
        return 130


def run() -> None:
    sys.exit(main())
