"""Load the chains of a large run in two processes: this one and a forked child.

A run loads every host's certificate files before it plans (0.25 ms a host: reading,
parsing, the key check).  For a large run (:data:`THRESHOLD` hosts or more) a child
forked here loads the second half of the hosts while this process loads the first
half; the child hands back what each host's :class:`HostFiles` remembered (its chain
cache, keyed by the files' stat stamps) through a pipe, pickled.  Nothing else is
shared: the child's results only fill the caches, so each host's chains are still
asked for by this process, and a file changed since the child read it (another
stamp), a host whose files failed in the child, or anything that went wrong with the
child (no fork, a crash, a short read) is simply loaded here, with its own facts and
its own error message, as without the child.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tlsa_manager.hostfiles import HostFiles

#: hosts in a run from which half of them are loaded by a child
THRESHOLD = 200


class Pending:
    """The child's half, until this process first asks for one of its hosts."""

    def __init__(self, pid: int, fd: int, files: Sequence[HostFiles]) -> None:
        self.pid = pid
        self.fd = fd
        self.files = list(files)

    def collect(self) -> None:
        """Read the child's caches into its hosts' (or nothing, if it failed); reap it."""
        for files in self.files:
            files.pending = None
        chunks = []
        try:
            while chunk := os.read(self.fd, 1 << 20):
                chunks.append(chunk)
        except OSError:
            chunks = []
        finally:
            os.close(self.fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        try:
            caches: list[dict[Any, Any]] = pickle.loads(b"".join(chunks))
        except Exception:  # a child that died half-way: its hosts are loaded here instead
            return
        if len(caches) != len(self.files):
            return
        for files, cache in zip(self.files, caches, strict=True):
            for key, facts in cache.items():
                files.remember(key, facts)


def prefetch(hosts: Sequence[HostFiles]) -> None:
    """Have a forked child load the second half of a large run's chains (see the module)."""
    if len(hosts) < THRESHOLD or not hasattr(os, "fork") or threading.active_count() > 1:
        return  # a fork with other threads running could copy a lock they hold
    theirs = list(hosts[len(hosts) // 2 :])
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return
    if pid == 0:  # pragma: no cover  (the child: measured by what the parent receives)
        _child(read_end, write_end, theirs)
    os.close(write_end)
    pending = Pending(pid, read_end, theirs)
    for files in theirs:
        files.pending = pending


def _child(read_end: int, write_end: int, hosts: Sequence[HostFiles]) -> None:
    """Load each host's chains (errors are the parent's to find again), send the caches."""
    try:
        os.close(read_end)
        caches = []
        for files in hosts:
            with contextlib.suppress(Exception):
                files.chains()
            caches.append(files.cache())
        data = pickle.dumps(caches, pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as out:
            out.write(data)
    finally:
        os._exit(0)
