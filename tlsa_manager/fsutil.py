"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Temp file in the same directory, fsync, rename, fsync of the directory; the mode and
(when we may) the owner of the file being replaced are kept, so a zone file or a
Postfix key file keeps the permissions its server needs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tlsa_manager.errors import InputError


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically, keeping an existing file's mode/owner."""
    directory = path.parent
    try:
        existing = path.stat()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise InputError(f"{path}: cannot inspect ({exc.strerror})", "check the path") from None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except FileNotFoundError:
        raise InputError(f"{directory}: no such directory", "create it first") from None
    except PermissionError:
        raise InputError(f"{directory}: permission denied", "run as a user that may write it") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif existing is not None:
            os.chmod(tmp, existing.st_mode & 0o7777)
        if existing is not None and hasattr(os, "chown"):
            with contextlib.suppress(PermissionError):
                os.chown(tmp, existing.st_uid, existing.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX: the directory entry lives in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
