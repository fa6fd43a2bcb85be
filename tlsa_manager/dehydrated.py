"""dehydrated's hook events: only ``deploy_cert`` hands over a certificate.

dehydrated calls its one hook script for every event (``startup_hook``,
``deploy_challenge``, ``generate_csr``, ``unchanged_cert``, ``exit_hook``, ... and, at
every start, a made-up name to check that the script ignores events it does not know),
and stops when the script fails.  A script that passes everything on to
``tlsa-manager hook dehydrated "$@"`` must therefore succeed, silently, on every event
but ``deploy_cert``: nothing on stdout either, since dehydrated takes the hook's stdout
for ``generate_csr`` as the CSR to sign (docs/hooks.md).  Pure: no imports, no I/O, so
the CLI can ask before anything else is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

DEPLOY = "deploy_cert"


def other_event(args: Sequence[str]) -> str | None:
    """The event these hook arguments are, when it is not ``deploy_cert`` (nothing to do).

    An event is a word without a dot (``startup_hook``, or a name a later dehydrated
    adds); ``deploy_cert`` and the undocumented ``DOMAIN KEYFILE CERTFILE FULLCHAINFILE``
    form (a domain has a dot) give None, and so do no arguments at all (a usage error)."""
    if not args or args[0] == DEPLOY or "." in args[0] or args[0].startswith("-"):
        return None
    return args[0]


def cut_event_args(argv: list[str]) -> list[str]:
    """``argv`` without the arguments of an event other than ``deploy_cert``, and with
    options written after ``hook dehydrated`` moved before ``dehydrated``.

    They are never used, and some start with "-" (an ACME token of
    ``deploy_challenge`` is base64url): argparse would take them for options and
    stop with "unrecognized arguments" (exit 2), which makes dehydrated abort."""
    for i in range(len(argv) - 2):
        if argv[i] == "hook" and argv[i + 1] == "dehydrated":
            j = i + 2  # past the options given between the client and "$@"
            while j < len(argv) and argv[j].startswith("-") and argv[j] != "--":
                j += 2 if argv[j] in _TAKE_VALUE else 1
            # the options go before the client: argparse ends "args" (nargs="*") at the
            # first option and would call the event after them an unrecognized argument
            head = [*argv[:i], "hook", *argv[i + 2 : j], "dehydrated"]
            return head + (argv[j : j + 1] if other_event(argv[j:]) is not None else argv[j:])
    return argv


#: the hook's options that take a value (``--config FILE``): "global options (before or
#: after the command)", so a hook script may write them after ``hook dehydrated``
_TAKE_VALUE = frozenset({"--config", "--state-dir", "--cert", "--key", "--host", "--wait-lock"})
