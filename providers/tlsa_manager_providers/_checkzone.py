"""named-checkzone, BIND's own loader, run on a zone file before it replaces the live one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dns.name

from tlsa_manager.secrets import scrubbed_environ

#: the setting that turns the check off (the zone-file provider reads it, default on)
CHECK = {"check": "run named-checkzone before replacing the file (default: when installed)"}


def named_checkzone(checker: str, origin: dns.name.Name, path: Path, cwd: Path, shown: str) -> str | None:
    """None if named would load the file, else its last message line, naming the file
    ``shown`` (a candidate's temp name means nothing to the operator).  The environment
    is scrubbed of secrets; ``cwd`` is the zone's folder, where its $INCLUDEs resolve."""
    result = subprocess.run(
        [checker, "-i", "none", origin.to_text(), str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        cwd=cwd,
        env=scrubbed_environ(),
    )
    if result.returncode == 0:
        return None
    detail = [
        line for line in (result.stdout + result.stderr).strip().splitlines() if "zone" in line.lower()
    ] or ["error"]
    return detail[0].replace(str(path) + ":", "line").replace(str(path), shown)
