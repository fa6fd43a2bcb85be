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
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from tlsa_manager.errors import StateError, UnsafeError
from tlsa_manager.fsutil import (
    atomic_write,
    check_private,
    check_trusted_dir,
    decode_text,
    make_dir,
    read_regular,
)
from tlsa_manager.ledgerjson import SCHEMA, EncodeMemo, decode, encode
from tlsa_manager.state import DeployIntent, HostRecord, LedgerData, OwnerRecord

#: the data model lives in tlsa_manager.state; these names stay importable from here
__all__ = [
    "SCHEMA",
    "DeployIntent",
    "EncodeMemo",
    "HostRecord",
    "Ledger",
    "LedgerData",
    "OwnerRecord",
    "decode",
    "encode",
]

FILE_NAME = "ledger.json"
LOCK_NAME = "lock"
#: A ledger is history of a few hosts: far below this; the cap keeps a planted file harmless.
LEDGER_LIMIT = 64 * 1024 * 1024


class Ledger:
    """The ledger file in a state directory, used inside :meth:`locked`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / FILE_NAME
        #: what this object last wrote and the file it made: a save of the same text to
        #: the same, untouched file is skipped (a run saves after every phase)
        self._written: tuple[str, tuple[int, int, int]] | None = None
        self._memo = EncodeMemo()

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
                f"check its history, then chown {os.geteuid()} {self.state_dir / name} "
                f"&& chmod 600 {self.state_dir / name}",
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
