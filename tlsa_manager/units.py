"""The systemd units (and a cron file) that run tlsa-manager in production.

The unit files ship as package data (``tlsa_manager/data/systemd``) with the
placeholder ``@TLSA_MANAGER@`` where the command goes and ``@STATE_DIR@`` where the
catalog service may write; :func:`install` writes them with the path of the installed
command filled in (systemd needs an absolute path, and ``systemd-analyze verify``
checks it exists), followed by the ``--config`` / ``--state-dir`` the installing
command was given: a unit that ran the defaults instead would manage other hosts, or
none, every 15 minutes without a word.  Three timers: ``sync`` every 15 minutes
(staged chains go live once their gate opens), ``check`` + metrics every 15 minutes,
``catalog update`` once a day.

Words are quoted for the reader that runs them: systemd's ExecStart rules (double
quotes, ``%%`` and ``$$``) for units, ``/bin/sh`` plus cron's own ``%`` for the cron
file; a path with a control character (a newline would end the line) is refused.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from tlsa_manager.errors import InputError, UsageError
from tlsa_manager.fsutil import atomic_write, check_trusted_dir

PLACEHOLDER = "@TLSA_MANAGER@"
STATE_PLACEHOLDER = "@STATE_DIR@"
TIMERS = ("tlsa-manager-sync.timer", "tlsa-manager-check.timer", "tlsa-manager-catalog.timer")


def command_path() -> list[str]:
    """The words of the installed ``tlsa-manager`` command: next to this Python, else
    on PATH, else this Python running the module."""
    beside = Path(sys.executable).parent / "tlsa-manager"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("tlsa-manager")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "tlsa_manager"]


def global_options(config: str | None, state_dir: str | None) -> list[str]:
    """The ``--config`` / ``--state-dir`` words the units carry, as absolute paths (a
    unit runs in ``/``, so a relative path would name another file)."""
    words: list[str] = []
    for option, value in (("--config", config), ("--state-dir", state_dir)):
        if value is None:
            continue
        if not value:
            raise UsageError(f"{option} is empty", f"give the path, or leave {option} out for the default")
        words += [option, os.path.abspath(value)]
    for word in words:
        if any(ord(c) < 32 or ord(c) == 127 for c in word):
            raise UsageError(
                f"{word!r} has a control character, which a unit or cron line cannot carry",
                "rename the file or folder",
            )
    return words


def systemd_quote(word: str, *, exec_line: bool = True) -> str:
    """One word as systemd reads it: in double quotes (C escapes for ``\\`` and ``"``),
    ``%`` doubled (specifiers) and, on an Exec line, ``$`` doubled (variables)."""
    text = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if exec_line:
        text = text.replace("$", "$$")
    return text if text == word and _plain(word) else f'"{text}"'


def _plain(word: str) -> bool:
    return bool(word) and all(c.isalnum() or c in "/._-+=:,@" for c in word)


def cron_quote(word: str) -> str:
    """One word as ``/bin/sh`` reads it, with cron's ``%`` (a newline to cron) escaped."""
    return shlex.quote(word).replace("%", "\\%")


def unit_texts(command: Sequence[str], state_dir: str) -> dict[str, str]:
    """File name -> content of every unit, with the ``command`` words (the program and
    the global options) and the state directory in place of the placeholders."""
    folder = resources.files("tlsa_manager") / "data" / "systemd"
    exec_words = " ".join(systemd_quote(w) for w in command)
    state = systemd_quote(state_dir, exec_line=False)
    return {
        item.name: item.read_text().replace(PLACEHOLDER, exec_words).replace(STATE_PLACEHOLDER, state)
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith((".service", ".timer"))
    }


def install(directory: Path, command: Sequence[str] | None, state_dir: str) -> list[Path]:
    """Write every unit into ``directory`` atomically (mode 0644); returns the paths.
    ``command`` is the program and its global options; ``state_dir`` is where the
    catalog service may write (its sandbox makes the rest of the system read-only)."""
    if not directory.exists():
        raise InputError(f"{directory}: no such directory", "create it or give --dir")
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory", "give the folder of the unit files as --dir")
    # systemd runs these units as root: a folder another user may write is refused (exit 3)
    check_trusted_dir(directory, "unit folder")
    written = []
    for name, text in unit_texts(command or command_path(), state_dir).items():
        path = directory / name
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link", "remove it (systemctl disable) and try again")
        atomic_write(path, text.encode(), 0o644)
        written.append(path)
    return written


def cron_text(command: Sequence[str] | None = None) -> str:
    """The same schedule for machines without systemd (a /etc/cron.d file); ``command``
    as for :func:`install`."""
    cmd = " ".join(cron_quote(w) for w in (command or command_path()))
    return (
        "# /etc/cron.d/tlsa-manager: the schedule of the systemd timers, for machines without systemd\n"
        f"*/15 * * * * root {cmd} -q sync --all --wait-lock 600\n"
        f"7-59/15 * * * * root mkdir -p /var/lib/prometheus/node-exporter && {cmd} -q metrics "
        "--output /var/lib/prometheus/node-exporter/tlsa-manager.prom\n"
        f"23 4 * * * root {cmd} -q catalog update\n"
    )
