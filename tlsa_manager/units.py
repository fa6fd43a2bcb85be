"""The systemd units (and a cron file) that run tlsa-manager in production.

The unit files ship as package data (``tlsa_manager/data/systemd``) with the
placeholder ``@TLSA_MANAGER@`` where the command goes; :func:`install` writes them
with the path of the installed command filled in (systemd needs an absolute path,
and ``systemd-analyze verify`` checks it exists).  Three timers: ``sync`` every
15 minutes (staged chains go live once their gate opens), ``check`` + metrics every
15 minutes, ``catalog update`` once a day.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from tlsa_manager.errors import InputError
from tlsa_manager.fsutil import atomic_write, check_trusted_dir

PLACEHOLDER = "@TLSA_MANAGER@"
TIMERS = ("tlsa-manager-sync.timer", "tlsa-manager-check.timer", "tlsa-manager-catalog.timer")


def command_path() -> str:
    """The installed ``tlsa-manager`` command: next to this Python, else on PATH,
    else this Python running the module."""
    beside = Path(sys.executable).parent / "tlsa-manager"
    if beside.is_file():
        return str(beside)
    found = shutil.which("tlsa-manager")
    if found:
        return str(Path(found).resolve())
    return f"{sys.executable} -m tlsa_manager"


def unit_texts(command: str) -> dict[str, str]:
    """File name -> content of every unit, with ``command`` in place of the placeholder."""
    folder = resources.files("tlsa_manager") / "data" / "systemd"
    return {
        item.name: item.read_text().replace(PLACEHOLDER, command)
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith((".service", ".timer"))
    }


def install(directory: Path, command: str | None = None) -> list[Path]:
    """Write every unit into ``directory`` atomically (mode 0644); returns the paths."""
    if not directory.exists():
        raise InputError(f"{directory}: no such directory", "create it or give --dir")
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory", "give the folder of the unit files as --dir")
    # systemd runs these units as root: a folder another user may write is refused (exit 3)
    check_trusted_dir(directory, "unit folder")
    written = []
    for name, text in unit_texts(command or command_path()).items():
        path = directory / name
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link", "remove it (systemctl disable) and try again")
        atomic_write(path, text.encode(), 0o644)
        written.append(path)
    return written


def cron_text(command: str | None = None) -> str:
    """The same schedule for machines without systemd (a /etc/cron.d file)."""
    cmd = command or command_path()
    return (
        "# /etc/cron.d/tlsa-manager: the schedule of the systemd timers, for machines without systemd\n"
        f"*/15 * * * * root {cmd} -q sync --all --wait-lock 600\n"
        f"7-59/15 * * * * root mkdir -p /var/lib/prometheus/node-exporter && {cmd} -q metrics "
        "--output /var/lib/prometheus/node-exporter/tlsa-manager.prom\n"
        f"23 4 * * * root {cmd} -q catalog update\n"
    )
