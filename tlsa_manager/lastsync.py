"""When each host last finished a sync without error (for monitoring).

A separate small file next to the ledger, ``STATE_DIR/last-sync.json``: the ledger
says what was observed and published, this says that the whole run got through,
which is what an alert on "sync has not succeeded for an hour" needs.  Written
atomically under the ledger lock by the run that succeeded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tlsa_manager.fsutil import atomic_write

FILE = "last-sync.json"


def load(state_dir: Path) -> dict[str, float]:
    """Host name -> Unix time of its last successful sync (empty if never, or unreadable)."""
    try:
        doc = json.loads((state_dir / FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): float(v) for k, v in doc.items() if isinstance(v, int | float)}


def record(state_dir: Path, hosts: Iterable[str], when: float) -> None:
    names = list(hosts)
    if not names:
        return
    doc = load(state_dir)
    doc.update({name: when for name in names})
    atomic_write(state_dir / FILE, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), 0o644)
