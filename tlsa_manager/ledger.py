"""The ledger: what tlsa-manager published and what every server was seen serving.

A JSON file in the state directory (default /var/lib/tlsa-manager/ledger.json),
written atomically (temp file, fsync, rename) under an exclusive lock, so a renewal
hook and a timer never interleave.  A corrupt file or one of an unknown schema is an
error, never silently reset: a reset would forget when records were first served
and could open a deploy gate early.  A missing file is an empty ledger: unknown
history means "not yet seen".
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlsa_manager.errors import StateError, UsageError
from tlsa_manager.fsutil import atomic_write
from tlsa_manager.observations import History, Observation, ServerView
from tlsa_manager.records import Tlsa

SCHEMA = 1
FILE_NAME = "ledger.json"
LOCK_NAME = "lock"


@dataclass
class OwnerRecord:
    """Per owner name: records we published (managed) and the observation history."""

    managed: frozenset[Tlsa] = frozenset()
    history: History = field(default_factory=History)


@dataclass
class HostRecord:
    owners: dict[str, OwnerRecord] = field(default_factory=dict)
    #: deploys not yet confirmed (the MTA may still present the chain they replaced), by
    #: deployed chain label: {"deployed": chain, "previous": [chains], "since": epoch}.
    #: Owned by the engine; the chains are public bytes only.
    deploys: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the negative TTL the last sync's gates used (from the SOA), so that `status`,
    #: which never asks the network, computes the same gate times
    negative_ttl: int | None = None

    def owner(self, name: str) -> OwnerRecord:
        return self.owners.setdefault(name, OwnerRecord())


@dataclass
class LedgerData:
    hosts: dict[str, HostRecord] = field(default_factory=dict)

    def host(self, name: str) -> HostRecord:
        return self.hosts.setdefault(name, HostRecord())

    def copy(self) -> LedgerData:
        """An independent copy (the values inside are immutable and shared)."""
        return LedgerData(
            {
                name: HostRecord(
                    {o: OwnerRecord(r.managed, r.history) for o, r in h.owners.items()},
                    json.loads(json.dumps(h.deploys)),
                    h.negative_ttl,
                )
                for name, h in self.hosts.items()
            }
        )

    # -- JSON ---------------------------------------------------------------

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "schema": SCHEMA,
                    "hosts": {
                        host: {
                            "owners": {
                                owner: {
                                    "managed": sorted(r.to_text() for r in rec.managed),
                                    "history": [_obs_to_json(o) for o in rec.history.entries],
                                }
                                for owner, rec in sorted(hr.owners.items())
                            },
                            "deploys": hr.deploys,
                            **({"negative_ttl": hr.negative_ttl} if hr.negative_ttl is not None else {}),
                        }
                        for host, hr in sorted(self.hosts.items())
                    },
                },
                indent=1,
                sort_keys=True,
            )
            + "\n"
        )

    @classmethod
    def from_json(cls, text: str, source: str = "ledger") -> LedgerData:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise StateError(
                f"{source} is not valid JSON ({exc})",
                "restore it from backup or move it aside knowingly: a new ledger restarts all gates",
            ) from None
        if not isinstance(doc, dict) or "schema" not in doc:
            raise StateError(f"{source} is not a tlsa-manager ledger", "check --state-dir")
        if doc["schema"] != SCHEMA:
            raise StateError(
                f"{source} has schema {doc['schema']!r}; this version reads schema {SCHEMA}",
                "use the tlsa-manager version that wrote it",
            )
        try:
            data = cls()
            for host, hdoc in doc["hosts"].items():
                hr = data.host(host)
                hr.deploys = dict(hdoc.get("deploys", {}))
                neg = hdoc.get("negative_ttl")
                hr.negative_ttl = int(neg) if neg is not None else None
                for owner, odoc in hdoc["owners"].items():
                    hr.owners[owner] = OwnerRecord(
                        frozenset(Tlsa.from_text(t) for t in odoc["managed"]),
                        History(tuple(_obs_from_json(o) for o in odoc["history"])),
                    )
        except (KeyError, TypeError, ValueError, AttributeError, UsageError) as exc:
            raise StateError(
                f"{source} is damaged ({type(exc).__name__}: {exc})",
                "restore it from backup or move it aside knowingly: a new ledger restarts all gates",
            ) from None
        return data


def _obs_to_json(o: Observation) -> dict[str, Any]:
    return {
        "first": o.first,
        "last": o.last,
        "views": [
            {
                "server": v.server,
                "records": None if v.records is None else sorted(r.to_text() for r in v.records),
                "ttl": v.ttl,
                "error": v.error,
            }
            for v in o.views
        ],
    }


def _obs_from_json(doc: dict[str, Any]) -> Observation:
    views = tuple(
        ServerView(
            str(v["server"]),
            None if v["records"] is None else frozenset(Tlsa.from_text(t) for t in v["records"]),
            v.get("ttl"),
            v.get("error"),
        )
        for v in doc["views"]
    )
    return Observation(float(doc["first"]), float(doc["last"]), views)


class Ledger:
    """The ledger file in a state directory, used inside :meth:`locked`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / FILE_NAME

    def load(self) -> LedgerData:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return LedgerData()
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read ({exc.strerror})", "check permissions") from None
        return LedgerData.from_json(text, str(self.path))

    def save(self, data: LedgerData) -> None:
        atomic_write(self.path, data.to_json().encode(), mode=0o600)

    @contextlib.contextmanager
    def locked(self, wait: float = 0.0) -> Iterator[Ledger]:
        """Hold the exclusive lock; wait up to ``wait`` seconds for another run."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(
                f"{self.state_dir}: cannot create ({exc.strerror})",
                "set --state-dir to a writable directory",
            ) from None
        fd = os.open(self.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise StateError(
                            f"another tlsa-manager run holds {self.state_dir / LOCK_NAME}",
                            "let it finish (a hook and a timer never run at once); try again later",
                        ) from None
                    time.sleep(0.1)
            yield self
        finally:
            os.close(fd)
