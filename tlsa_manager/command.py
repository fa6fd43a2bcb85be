"""Run a reload command (``rndc reload``, ``systemctl reload postfix``): argv, no shell.

Three rules, each from a real failure:

- wait for the *process*, not for its pipes: ``systemctl``/``postfix reload`` may leave a
  daemon child holding stdout open; waiting for EOF on a pipe reported a reload that
  exited 0 as timed out.  Output goes to /dev/null, stdin is /dev/null.
- the command gets an environment without secrets (:func:`scrubbed_environ`): a reload
  needs no API token or TSIG secret, and a script could log its environment.
- its output is not copied into our errors: it is not ours to show and may quote
  configuration or credentials; the error names the command and its exit status.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from tlsa_manager.errors import TlsaManagerError
from tlsa_manager.secrets import scrubbed_environ


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    hint: str,
    error: type[TlsaManagerError] = TlsaManagerError,
) -> None:
    """Run ``argv`` and wait up to ``timeout`` s for it to exit 0, or raise one line:
    ``{what} but '<argv[0]>' exited 3 ...; {hint}`` (``what`` may be empty)."""
    lead = f"{what} but " if what else ""
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=scrubbed_environ(),
            close_fds=True,
        )
    except OSError as exc:
        raise error(f"{lead}'{argv[0]}' cannot run ({exc.strerror})", hint) from None
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise error(f"{lead}'{argv[0]}' did not exit within {timeout:.0f} s", hint) from None
    if code != 0:
        status = f"exited {code}" if code > 0 else f"was killed by signal {-code}"
        raise error(f"{lead}'{argv[0]}' {status} (run it by hand to see its output)", hint)
