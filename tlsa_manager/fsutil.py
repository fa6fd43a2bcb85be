"""Root-safe file handling: read only regular files, write only through fresh temp files.

tlsa-manager runs as root in directories other users can often write (``/var/lib/bind``
is root:bind 0775).  So, everywhere:

- a file is *read* through :func:`read_regular`: opened without blocking, checked to be a
  regular file (a FIFO would hang the run, ``/dev/zero`` would fill memory) and read up
  to a size cap;
- a file is *written* through :func:`atomic_write`: a fresh temp file created by
  ``mkstemp`` (``O_CREAT|O_EXCL|O_NOFOLLOW``) in the target's own directory, mode and
  owner set on the open descriptor (never through a path someone could swap), optionally
  validated, fsynced and renamed over the target; a symlink or a non-regular file at the
  target is refused, never silently replaced;
- a directory that holds trusted state is checked with :func:`check_private` (owned by
  us or root, writable by nobody else).

A reader sees the old file or the new one, never half of one; the mode and (when we
may) the owner of a replaced file are kept, so a zone file or a Postfix key file keeps
the permissions its server needs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from tlsa_manager.errors import InputError, TlsaManagerError, UnsafeError

#: Largest file read by default: certificates, keys, configs, ledgers are far smaller.
DEFAULT_LIMIT = 16 * 1024 * 1024
#: Zone files can be large (200,000 lines is about 10 MB); this still bounds memory.
ZONE_LIMIT = 512 * 1024 * 1024


def read_regular(
    path: Path,
    *,
    limit: int = DEFAULT_LIMIT,
    error: type[TlsaManagerError] = InputError,
    what: str = "file",
) -> bytes:
    """The bytes of a regular file, or one ``error`` line saying why not.

    Opened with O_NONBLOCK so a FIFO cannot block us, then checked with fstat on the
    open descriptor (no race with a rename); devices, sockets and directories are
    refused, and at most ``limit`` bytes are read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise _explained(exc, path, error, f"a {what}", "read") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path}: is a directory, not a {what}", "name the file inside it")
        if not stat.S_ISREG(info.st_mode):
            raise error(
                f"{path}: is not a regular file (a FIFO, device or socket)",
                f"point at the {what} itself",
            )
        if info.st_size > limit:
            raise error(
                f"{path}: is {info.st_size} bytes, more than the {limit} a {what} may have",
                f"point at the {what} itself",
            )
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise error(f"{path}: is larger than the {limit} bytes a {what} may have", "check the file")
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})", "check the file") from None
    finally:
        os.close(fd)


def _explained(
    exc: OSError, path: Path, error: type[TlsaManagerError], what: str, action: str
) -> TlsaManagerError:
    """One line for an OS failure on ``path``: what is wrong and what to do."""
    if isinstance(exc, FileNotFoundError):
        return error(f"{path}: no such file or directory", "check the path (or create it first)")
    if isinstance(exc, IsADirectoryError):
        return error(f"{path}: is a directory, not {what}", "name the file inside it")
    if isinstance(exc, NotADirectoryError):
        return error(f"{path}: is not {what}", "check the path")
    if isinstance(exc, PermissionError):
        return error(f"{path}: permission denied", f"run as a user that may {action} it")
    return error(f"{path}: cannot {action} it ({exc.strerror})", "check the path and the disk")


def make_dir(path: Path, mode: int, error: type[TlsaManagerError] = InputError, what: str = "folder") -> None:
    """Create ``path`` (and parents) with ``mode`` if missing; one line if that fails."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise error(
            f"{path}: cannot create the {what} ({exc.strerror})",
            f"point the {what} at a folder this user may write",
        ) from None


def decode_text(data: bytes, path: Path, error: type[TlsaManagerError] = InputError) -> str:
    """UTF-8 text, or one line naming the first byte that is not.  A byte-order mark
    (some Windows editors write one) is not part of the text: TOML would reject it."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{path}: line {line} is not UTF-8 (byte 0x{data[exc.start]:02x})",
            "save the file as UTF-8",
        ) from None


def atomic_write(
    path: Path,
    data: bytes,
    mode: int | None = None,
    *,
    check: Callable[[Path], None] | None = None,
    error: type[TlsaManagerError] = InputError,
) -> None:
    """Replace ``path`` with ``data`` atomically, keeping an existing file's mode/owner.

    ``check`` sees the finished temp file (e.g. ``named-checkzone``) before the rename;
    if it raises, the target is untouched.  A symlink or a non-regular file at ``path``
    is refused: replacing a link by a file would leave its target, the file that counts,
    unchanged while we report success.
    """
    directory = path.parent
    try:
        existing: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise error(f"{path}: cannot inspect ({exc.strerror})", "check the path") from None
    if existing is not None and stat.S_ISLNK(existing.st_mode):
        raise error(
            f"{path}: is a symbolic link; tlsa-manager replaces only regular files",
            f"name the real file ({os.path.realpath(path)}) instead",
        )
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise error(f"{path}: is not a regular file", "name a regular file")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _explained(exc, directory, error, "a directory", "write") from None
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                # Mode and owner on the descriptor: the path could be swapped under us.
                if mode is not None:
                    os.fchmod(handle.fileno(), mode)
                elif existing is not None:
                    os.fchmod(handle.fileno(), existing.st_mode & 0o7777)
                if existing is not None:
                    with contextlib.suppress(PermissionError):
                        os.fchown(handle.fileno(), existing.st_uid, existing.st_gid)
                os.fsync(handle.fileno())
            if check is not None:
                check(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise error(
                f"{path}: cannot write ({exc.strerror})", "check the directory and the disk"
            ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)


def move_into_place(source: Path, target: Path, error: type[TlsaManagerError] = InputError) -> None:
    """Rename ``source`` over ``target``; across file systems copy it beside the target
    first (a temp file in the target's directory) and rename that, then remove the source."""
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise error(f"cannot move {source} to {target} ({exc.strerror})", "check both folders") from None
        info = os.stat(source)
        atomic_write(target, read_regular(source, error=error), mode=info.st_mode & 0o7777, error=error)
        with contextlib.suppress(PermissionError):
            os.chown(target, -1, info.st_gid, follow_symlinks=False)
        with contextlib.suppress(FileNotFoundError):
            source.unlink()
    fsync_dir(target.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX: the directory entry lives in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def check_private(path: Path, info: os.stat_result, what: str, fix: str) -> None:
    """Refuse (exit 3) a file or directory that someone other than us or root could change."""
    if not _trusted_owner(info.st_uid):
        raise UnsafeError(
            f"{path}: the {what} is owned by uid {info.st_uid}, not by this user or root; "
            "another user could have forged it",
            fix,
        )
    if info.st_mode & 0o022:
        raise UnsafeError(
            f"{path}: the {what} is writable by others (mode {stat.S_IMODE(info.st_mode):o}); "
            "another user could forge it",
            fix,
        )


def check_trusted_dir(directory: Path, what: str = "state directory") -> bool:
    """Refuse (exit 3) a directory of trusted state that another user could change: it,
    and every folder above it, must be ours or root's and writable by nobody else.
    False when it does not exist (nothing in it to trust)."""
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UnsafeError(
            f"{directory}: cannot inspect the {what} ({exc.strerror})", "check the path"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeError(f"{directory}: the {what} is not a directory", "check --state-dir")
    check_private(directory, info, what, f"chmod 700 {directory} and chown it to this user (or root)")
    check_ancestors(directory, what)
    return True


def check_ancestors(directory: Path, what: str) -> None:
    """Every folder above ``directory`` must be ours or root's, and writable by nobody
    else unless sticky (like /tmp): otherwise ``directory`` itself could be swapped."""
    current = Path(os.path.abspath(directory)).parent
    while True:
        try:
            info = os.stat(current)
        except OSError:
            return
        sticky = bool(info.st_mode & stat.S_ISVTX)
        if not _trusted_owner(info.st_uid) or (info.st_mode & 0o022 and not sticky):
            raise UnsafeError(
                f"{current}: a folder above the {what} {directory} can be changed by another user "
                f"(owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o})",
                f"chmod go-w {current}, or move the {what} elsewhere",
            )
        if current.parent == current:
            return
        current = current.parent
