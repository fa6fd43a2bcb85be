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
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tlsa_manager.errors import StateError, UnsafeError, UsageError
from tlsa_manager.facts import chain_from_json, chain_to_json
from tlsa_manager.fsutil import (
    atomic_write,
    check_private,
    check_trusted_dir,
    decode_text,
    make_dir,
    read_regular,
)
from tlsa_manager.observations import History, Observation, ServerView
from tlsa_manager.records import Tlsa
from tlsa_manager.state import DeployIntent, HostRecord, LedgerData, OwnerRecord

#: the data model lives in tlsa_manager.state; these names stay importable from here
__all__ = ["DeployIntent", "HostRecord", "Ledger", "LedgerData", "OwnerRecord", "decode", "encode"]

SCHEMA = 1
FILE_NAME = "ledger.json"
LOCK_NAME = "lock"
#: A ledger is history of a few hosts: far below this; the cap keeps a planted file harmless.
LEDGER_LIMIT = 64 * 1024 * 1024


#: what :func:`encode` keeps between saves of one run: per host and owner, the owner
#: record's JSON with the objects it was made from (compared by identity, and kept
#: alive so that no identity is reused)
EncodeMemo = dict[tuple[str, str], tuple[frozenset[Tlsa], History, str]]


def encode(data: LedgerData, memo: EncodeMemo | None = None) -> str:
    """One host per line, each line by the C JSON encoder: a ledger of a thousand
    hosts is written in milliseconds, and a diff of two ledgers stays per host.

    With ``memo`` (the same dict for every save of a run) an owner whose managed set
    and history are the very objects of the last save is not encoded again: a run
    saves after every phase, and most phases touch few owners.  The text is the same
    as without it: ``json.dumps(..., sort_keys=True)`` of the host, assembled in key
    order."""
    used: EncodeMemo = {}
    lines = []
    for host, hr in sorted(data.hosts.items()):
        owners = []
        for owner, rec in sorted(hr.owners.items()):
            key = (host, owner)
            hit = memo.get(key) if memo is not None else None
            if hit is not None and hit[0] is rec.managed and hit[1] is rec.history:
                text = hit[2]
            else:
                text = json.dumps(
                    {
                        "managed": sorted(r.to_text() for r in rec.managed),
                        "history": [_obs_to_json(o) for o in rec.history.entries],
                        "since": rec.history.since,
                        "blind": rec.history.blind,
                    },
                    sort_keys=True,
                )
            used[key] = (rec.managed, rec.history, text)
            owners.append(json.dumps(owner) + ": " + text)
        deploys = {label: _intent_to_json(i) for label, i in hr.deploys.items()}
        negative = "" if hr.negative_ttl is None else f'"negative_ttl": {json.dumps(hr.negative_ttl)}, '
        lines.append(
            f'{json.dumps(host)}: {{"clock": {json.dumps(hr.clock, sort_keys=True)}, '
            f'"deploys": {json.dumps(deploys, sort_keys=True)}, {negative}'
            f'"owners": {{{", ".join(owners)}}}, "unverified": {json.dumps(hr.unverified)}}}'
        )
    if memo is not None:
        memo.clear()
        memo.update(used)
    return '{"hosts": {\n' + ",\n".join(lines) + "\n}, " + f'"schema": {SCHEMA}}}\n'


def decode(text: str, source: str = "ledger") -> LedgerData:
    try:
        doc = json.loads(text)
    except RecursionError:
        raise StateError(
            f"{source} is nested too deeply to be a ledger",
            "restore it from backup or move it aside knowingly: a new ledger restarts all gates",
        ) from None
    except ValueError as exc:
        raise StateError(
            f"{source} is not valid JSON ({exc})",
            "restore it from backup or move it aside knowingly: a new ledger restarts all gates",
        ) from None
    if not isinstance(doc, dict) or "schema" not in doc:
        raise StateError(f"{source} is not a tlsa-manager ledger", "check --state-dir")
    if doc["schema"] != SCHEMA or isinstance(doc["schema"], bool):
        raise StateError(
            f"{source} has schema {doc['schema']!r}; this version reads schema {SCHEMA}",
            "use the tlsa-manager version that wrote it",
        )
    try:
        data = LedgerData()
        for host, hdoc in doc["hosts"].items():
            hr = data.host(host)
            hr.deploys = {str(k): _intent_from_json(v) for k, v in dict(hdoc.get("deploys", {})).items()}
            neg = hdoc.get("negative_ttl")
            hr.negative_ttl = int(neg) if neg is not None else None
            hr.clock = dict(hdoc.get("clock", {}))
            hr.unverified = bool(hdoc.get("unverified", False))
            for owner, odoc in hdoc["owners"].items():
                hr.owners[owner] = OwnerRecord(
                    frozenset(Tlsa.from_text(t) for t in odoc["managed"]),
                    _history_from_json(odoc),
                )
    except (KeyError, TypeError, ValueError, AttributeError, UsageError, OverflowError) as exc:
        raise StateError(
            f"{source} is damaged ({type(exc).__name__}: {exc})",
            "restore it from backup or move it aside knowingly: a new ledger restarts all gates",
        ) from None
    return data


def _intent_to_json(intent: DeployIntent) -> dict[str, Any]:
    return {
        "deployed": chain_to_json(intent.deployed),
        "previous": [chain_to_json(c) for c in intent.previous],
        "since": intent.since,
    }


def _intent_from_json(doc: dict[str, Any]) -> DeployIntent:
    """A damaged entry fails here, when the ledger is read, not later in the engine."""
    return DeployIntent(
        chain_from_json(doc["deployed"]),
        tuple(chain_from_json(c) for c in doc["previous"]),
        float(doc["since"]),
    )


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
                **({"provider_copy": True} if v.provider_copy else {}),
            }
            for v in o.views
        ],
    }


def _history_from_json(odoc: dict[str, Any]) -> History:
    entries = tuple(_obs_from_json(o) for o in odoc["history"])
    since = odoc.get("since", entries[0].first if entries else None)
    return History(entries, None if since is None else float(since), bool(odoc.get("blind", False)))


def _obs_from_json(doc: dict[str, Any]) -> Observation:
    views = tuple(
        ServerView(
            str(v["server"]),
            None if v["records"] is None else frozenset(Tlsa.from_text(t) for t in v["records"]),
            v.get("ttl"),
            v.get("error"),
            bool(v.get("provider_copy", False)),
        )
        for v in doc["views"]
    )
    return Observation(float(doc["first"]), float(doc["last"]), views)


class Ledger:
    """The ledger file in a state directory, used inside :meth:`locked`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / FILE_NAME
        #: what this object last wrote and the file it made: a save of the same text to
        #: the same, untouched file is skipped (a run saves after every phase)
        self._written: tuple[str, tuple[int, int, int]] | None = None
        self._memo: EncodeMemo = {}

    def check_trusted(self) -> bool:
        """Refuse a state directory or ledger another user could have written (exit 3).

        The ledger decides when a new key may go live: whoever can rewrite its history
        can open a deploy gate at once.  So the directory, every folder above it and the
        ledger must be owned by this user or root and writable by nobody else.  False if
        the directory does not exist yet (nothing to trust, nothing to read).
        """
        if not check_trusted_dir(self.state_dir):
            return False
        for name in (FILE_NAME, LOCK_NAME):
            try:
                finfo = os.lstat(self.state_dir / name)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(finfo.st_mode):
                raise UnsafeError(
                    f"{self.state_dir / name}: is not a regular file (a link or special file)",
                    "remove it; tlsa-manager writes only regular files it created",
                )
            check_private(
                self.state_dir / name,
                finfo,
                "ledger",
                f"chmod 600 {self.state_dir / name} and check its history",
            )
        return True

    def load(self) -> LedgerData:
        if not self.check_trusted():
            return LedgerData()
        try:
            raw = read_regular(self.path, limit=LEDGER_LIMIT, error=StateError, what="ledger")
        except StateError as exc:
            if "no such" in exc.message:
                return LedgerData()
            raise
        return decode(decode_text(raw, self.path, StateError), str(self.path))

    def save(self, data: LedgerData) -> None:
        text = encode(data, self._memo)
        if self._written is not None and self._written == (text, self._stamp()):
            return
        atomic_write(self.path, text.encode(), mode=0o600, error=StateError)
        self._written = (text, self._stamp())

    def _stamp(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return (-1, -1, -1)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @contextlib.contextmanager
    def locked(self, wait: float = 0.0) -> Iterator[Ledger]:
        """Hold the exclusive lock; wait up to ``wait`` seconds for another run."""
        make_dir(self.state_dir, 0o700, StateError, "state directory (--state-dir)")
        self.check_trusted()
        try:
            fd = os.open(
                self.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise StateError(
                f"{self.state_dir / LOCK_NAME}: cannot open the lock ({exc.strerror})",
                "set --state-dir to a directory this user may write",
            ) from None
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
